//! RecordBatch v2 (magic 2) as a zero-copy view over bytes, its validation, and in-place
//! offset assignment.
//!
//! Layout (big-endian), as in Kafka's protocol guide:
//!
//! | bytes  | field                  | in CRC range |
//! |--------|------------------------|--------------|
//! | 0..8   | base offset            | no           |
//! | 8..12  | batch length           | no           |
//! | 12..16 | partition leader epoch | no           |
//! | 16     | magic (2)              | no           |
//! | 17..21 | CRC-32C                | no           |
//! | 21..23 | attributes             | yes          |
//! | 23..27 | last offset delta      | yes          |
//! | 27..35 | base timestamp         | yes          |
//! | 35..43 | max timestamp          | yes          |
//! | 43..51 | producer id            | yes          |
//! | 51..53 | producer epoch         | yes          |
//! | 53..57 | base sequence          | yes          |
//! | 57..61 | record count           | yes          |
//! | 61..   | records                | yes          |
//!
//! Because the base offset and the partition leader epoch sit outside the CRC's range, the
//! broker assigns them by patching the header without recomputing the checksum.

use crate::error::ErrorCode;
use crate::types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};

/// Bytes before the batch-length field counts: base offset (8) and batch length (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the v2 batch header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Offset of the magic byte; the same in the legacy (magic 0/1) layout.
pub const MAGIC_OFFSET: usize = 16;
/// Offset of the first byte covered by the CRC (the attributes).
pub const CRC_START: usize = 21;
/// The only batch format stored in the log.
pub const MAGIC_V2: i8 = 2;
/// The smallest possible encoded record (length, attributes, timestamp and offset deltas, key
/// and value lengths, header count: seven one-byte fields); bounds the plausible record count.
pub const RECORD_LEN_MIN: usize = 7;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// The codec a batch's records are compressed with (attribute bits 0–2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Records stored as they are.
    None = 0,
    /// gzip (deflate with a gzip header).
    Gzip = 1,
    /// Snappy in the xerial framing Kafka's Java client writes.
    Snappy = 2,
    /// LZ4 frame format.
    Lz4 = 3,
    /// Zstandard frame format.
    Zstd = 4,
}

impl Compression {
    /// The codec for attribute bits 0–2, or `None` for the reserved values 5–7.
    pub fn from_id(id: u8) -> Option<Compression> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The codec's id in the attribute bits.
    pub fn id(self) -> u8 {
        self as u8
    }
}

/// Which clock a batch's timestamps come from (attribute bit 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer when it created the record.
    CreateTime,
    /// Set by the broker when it appended the batch.
    LogAppendTime,
}

/// Why bytes offered as a record batch were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the header or the declared length needs.
    #[error("record batch truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the header or length field requires.
        needed: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// The batch-length field is smaller than a header or negative.
    #[error("record batch length {0} is invalid")]
    InvalidLength(i32),
    /// The magic byte names a format this broker does not store.
    #[error("record batch magic {0} is not supported")]
    UnsupportedMagic(i8),
    /// The stored CRC-32C does not match the bytes.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of attributes..end.
        computed: u32,
    },
    /// The batch is larger than `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge {
        /// The batch's size in bytes.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Attribute bits 0–2 hold a reserved codec id.
    #[error("compression type {0} is not supported")]
    UnsupportedCompression(u8),
    /// Record count and offset deltas disagree, or the count cannot fit in the batch.
    #[error("record batch declares {count} records with last offset delta {last_offset_delta}")]
    InvalidRecordCount {
        /// The declared record count.
        count: i32,
        /// The declared last offset delta.
        last_offset_delta: i32,
    },
    /// A record inside the batch is malformed.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// Decompressing the records failed.
    #[error("cannot decompress {codec:?} records: {reason}")]
    Decompression {
        /// The codec named in the attributes.
        codec: Compression,
        /// What the codec reported.
        reason: String,
    },
}

impl From<&BatchError> for ErrorCode {
    fn from(err: &BatchError) -> ErrorCode {
        match err {
            BatchError::Truncated { .. }
            | BatchError::InvalidLength(_)
            | BatchError::UnsupportedMagic(_)
            | BatchError::CrcMismatch { .. }
            | BatchError::Decompression { .. } => ErrorCode::CorruptMessage,
            BatchError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            BatchError::UnsupportedCompression(_) => ErrorCode::UnsupportedCompressionType,
            BatchError::InvalidRecordCount { .. } | BatchError::InvalidRecord(_) => {
                ErrorCode::InvalidRecord
            }
        }
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The total size (header included) a batch declares, read from the first 12 bytes; `None` if
/// fewer than 12 bytes are present. Works for v2 batches and legacy message sets alike.
pub fn declared_size(buf: &[u8]) -> Option<Result<usize, BatchError>> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let length = be_i32(buf, 8);
    if length < 0 {
        return Some(Err(BatchError::InvalidLength(length)));
    }
    Some(Ok(LOG_OVERHEAD + length as usize))
}

/// A read-only view of exactly one v2 record batch. Construction checks only that the header
/// is present and the length field consistent; call [`Batch::validate`] on untrusted bytes.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    bytes: &'a [u8],
}

impl<'a> Batch<'a> {
    /// Views the batch at the start of `buf`; `buf` may hold more bytes after it.
    pub fn parse(buf: &'a [u8]) -> Result<Batch<'a>, BatchError> {
        if buf.len() < MAGIC_OFFSET + 1 {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let magic = buf[MAGIC_OFFSET] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let length = be_i32(buf, 8);
        if length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::InvalidLength(length));
        }
        let size = LOG_OVERHEAD + length as usize;
        if buf.len() < size {
            return Err(BatchError::Truncated {
                needed: size,
                available: buf.len(),
            });
        }
        Ok(Batch {
            bytes: &buf[..size],
        })
    }

    /// The batch's bytes, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// The batch's size in bytes, header included.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
    /// Offset of the first record.
    pub fn base_offset(&self) -> Offset {
        Offset(be_i64(self.bytes, 0))
    }
    /// The batch-length field: bytes after it.
    pub fn batch_length(&self) -> i32 {
        be_i32(self.bytes, 8)
    }
    /// Epoch of the leader that appended the batch.
    pub fn partition_leader_epoch(&self) -> LeaderEpoch {
        LeaderEpoch(be_i32(self.bytes, 12))
    }
    /// The format version, always 2 for a `Batch`.
    pub fn magic(&self) -> i8 {
        self.bytes[MAGIC_OFFSET] as i8
    }
    /// The CRC-32C stored in the header.
    pub fn crc(&self) -> u32 {
        u32::from_be_bytes(self.bytes[17..21].try_into().expect("4 bytes"))
    }
    /// The raw attribute bits.
    pub fn attributes(&self) -> i16 {
        be_i16(self.bytes, 21)
    }
    /// The codec id in attribute bits 0–2 (may be a reserved value on unvalidated input).
    pub fn compression_id(&self) -> u8 {
        (self.attributes() & ATTR_COMPRESSION_MASK) as u8
    }
    /// The codec, or `None` for a reserved id.
    pub fn compression(&self) -> Option<Compression> {
        Compression::from_id(self.compression_id())
    }
    /// Which clock the timestamps come from.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes() & ATTR_TRANSACTIONAL != 0
    }
    /// Whether the batch holds a control record (a transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes() & ATTR_CONTROL != 0
    }
    /// Offset of the last record relative to the base offset.
    pub fn last_offset_delta(&self) -> i32 {
        be_i32(self.bytes, 23)
    }
    /// Offset of the last record.
    pub fn last_offset(&self) -> Offset {
        self.base_offset().plus(i64::from(self.last_offset_delta()))
    }
    /// The offset after the batch's last record.
    pub fn next_offset(&self) -> Offset {
        self.last_offset().plus(1)
    }
    /// Timestamp of the first record.
    pub fn base_timestamp(&self) -> i64 {
        be_i64(self.bytes, 27)
    }
    /// Largest timestamp in the batch (the append time under `LogAppendTime`).
    pub fn max_timestamp(&self) -> i64 {
        be_i64(self.bytes, 35)
    }
    /// The producer's id, -1 when not idempotent.
    pub fn producer_id(&self) -> ProducerId {
        ProducerId(be_i64(self.bytes, 43))
    }
    /// The producer's epoch.
    pub fn producer_epoch(&self) -> ProducerEpoch {
        ProducerEpoch(be_i16(self.bytes, 51))
    }
    /// Sequence number of the first record, -1 when not idempotent.
    pub fn base_sequence(&self) -> i32 {
        be_i32(self.bytes, 53)
    }
    /// Number of records declared in the header.
    pub fn record_count(&self) -> i32 {
        be_i32(self.bytes, 57)
    }
    /// The encoded (possibly compressed) records after the header.
    pub fn records_bytes(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..]
    }
    /// CRC-32C of attributes..end, the value the header should hold.
    pub fn computed_crc(&self) -> u32 {
        crc32c::crc32c(&self.bytes[CRC_START..])
    }

    /// Checks the stored CRC against the bytes.
    pub fn verify_crc(&self) -> Result<(), BatchError> {
        let computed = self.computed_crc();
        if computed != self.crc() {
            return Err(BatchError::CrcMismatch {
                stored: self.crc(),
                computed,
            });
        }
        Ok(())
    }

    /// Validates a batch from an untrusted source: size limit, CRC, codec and a plausible
    /// record count that agrees with the last offset delta.
    pub fn validate(&self, max_message_bytes: usize) -> Result<(), BatchError> {
        if self.size() > max_message_bytes {
            return Err(BatchError::TooLarge {
                size: self.size(),
                max: max_message_bytes,
            });
        }
        self.verify_crc()?;
        if self.compression().is_none() {
            return Err(BatchError::UnsupportedCompression(self.compression_id()));
        }
        let count = self.record_count();
        let last_offset_delta = self.last_offset_delta();
        let invalid = BatchError::InvalidRecordCount {
            count,
            last_offset_delta,
        };
        if count <= 0 || last_offset_delta != count - 1 {
            return Err(invalid);
        }
        // An uncompressed record takes at least RECORD_LEN_MIN bytes; a compressed one cannot
        // be bounded that way, but no codec expands more than about 255:1 per byte.
        let room = self.records_bytes().len().max(1);
        let plausible = match self.compression() {
            Some(Compression::None) => room / RECORD_LEN_MIN,
            _ => room.saturating_mul(256),
        };
        if count as usize > plausible {
            return Err(invalid);
        }
        Ok(())
    }
}

/// Iterates over the consecutive v2 batches in a buffer. Stops (returns `None`) at the end or
/// at an incomplete trailing batch, which [`Batches::remainder`] then reports; malformed
/// headers are yielded as errors, after which iteration stops.
pub struct Batches<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Batches<'a> {
    /// Iterates over the batches at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Batches<'a> {
        Batches {
            rest: buf,
            failed: false,
        }
    }

    /// Bytes not yet consumed: empty after a clean end, a partial batch otherwise.
    pub fn remainder(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<Batch<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match Batch::parse(self.rest) {
            Ok(batch) => {
                self.rest = &self.rest[batch.size()..];
                Some(Ok(batch))
            }
            Err(BatchError::Truncated { .. }) => None,
            Err(err) => {
                self.failed = true;
                Some(Err(err))
            }
        }
    }
}

/// Writes the base offset into a batch header in place (outside the CRC's range).
pub fn set_base_offset(batch: &mut [u8], offset: Offset) {
    batch[0..8].copy_from_slice(&offset.0.to_be_bytes());
}

/// Writes the partition leader epoch into a batch header in place (outside the CRC's range).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: LeaderEpoch) {
    batch[12..16].copy_from_slice(&epoch.0.to_be_bytes());
}

/// Marks a batch as `LogAppendTime` with `now_ms` as its max timestamp and recomputes the CRC,
/// since both fields sit inside the CRC's range.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = be_i16(batch, 21) | ATTR_TIMESTAMP_TYPE;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[35..43].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

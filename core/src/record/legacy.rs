//! Legacy message sets (magic 0 and 1), which old producers still send, and their conversion
//! into v2 batches — the only format the log stores.
//!
//! Each message in a set is laid out (big-endian) as:
//!
//! | field      | bytes          | notes                                       |
//! |------------|----------------|---------------------------------------------|
//! | offset     | 8              | ignored: the broker assigns offsets         |
//! | length     | 4              | bytes after this field                      |
//! | CRC-32     | 4              | IEEE, over magic..end                       |
//! | magic      | 1              | 0 or 1                                      |
//! | attributes | 1              | bits 0–2 codec, bit 3 timestamp type (v1)   |
//! | timestamp  | 8              | magic 1 only                                |
//! | key        | 4 + n          | length -1 is a null key                     |
//! | value      | 4 + n          | length -1 is a null value                   |
//!
//! A compressed message (a "wrapper") carries a whole inner message set, compressed, as its
//! value; inner messages must be uncompressed and of the wrapper's magic.

use super::batch::{BatchError, Compression, LOG_OVERHEAD, MAGIC_OFFSET};
use super::builder::{BatchBuilder, Record};
use super::compression::{decompress, decompress_lz4_magic0};
use crate::types::Offset;

/// Magic byte of the original message format.
pub const MAGIC_V0: i8 = 0;
/// Magic byte of the message format with timestamps (Kafka 0.10).
pub const MAGIC_V1: i8 = 1;
/// The timestamp Kafka reports for messages that have none (magic 0).
pub const NO_TIMESTAMP: i64 = -1;
/// Bound on the decompressed bytes of all wrappers in one message set, as a multiple of
/// `max_message_bytes`: guards against decompression bombs.
pub const LEGACY_INFLATION_MAX: usize = 16;

/// Bytes from the CRC to the key length in a magic 0 message: CRC, magic, attributes.
const V0_FIXED_LEN: usize = 4 + 1 + 1;
/// The smallest magic 0 message body: fixed fields plus key and value lengths.
const V0_BODY_MIN: usize = V0_FIXED_LEN + 4 + 4;
/// Timestamp-type attribute bit of a magic 1 message (set means log-append time).
const ATTR_LOG_APPEND_TIME: u8 = 0x08;

/// Whether `buf` starts with a legacy (magic 0 or 1) message rather than a v2 batch.
pub fn is_legacy(buf: &[u8]) -> bool {
    matches!(
        buf.get(MAGIC_OFFSET).map(|&b| b as i8),
        Some(MAGIC_V0 | MAGIC_V1)
    )
}

/// One legacy message, its key and value borrowed from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Message<'a> {
    magic: i8,
    attributes: u8,
    timestamp: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

impl Message<'_> {
    fn codec_id(&self) -> u8 {
        self.attributes & 0x07
    }
}

/// Converts a whole legacy message set (one partition's records from a produce request) into
/// uncompressed v2 batches, concatenated. Offsets start at 0 (the log assigns real ones);
/// magic 0 messages get timestamp -1. Each message and each output batch must fit in
/// `max_message_bytes` (output is split into several batches when needed).
///
/// Fails on a CRC mismatch ([`BatchError::CrcMismatch`]), truncated or malformed messages,
/// an unknown magic or codec, nested compression, or decompressed data beyond
/// [`LEGACY_INFLATION_MAX`] times `max_message_bytes`.
pub fn convert_legacy(buf: &[u8], max_message_bytes: usize) -> Result<Vec<u8>, BatchError> {
    let mut budget = max_message_bytes.saturating_mul(LEGACY_INFLATION_MAX);
    let mut records = Vec::new();
    for message in MessageSet::new(buf) {
        let (message, size) = message?;
        if size > max_message_bytes {
            return Err(BatchError::TooLarge {
                size,
                max: max_message_bytes,
            });
        }
        if message.codec_id() == 0 {
            records.push(to_record(&message, None));
        } else {
            unwrap_compressed(&message, &mut budget, &mut records)?;
        }
    }
    if records.is_empty() {
        return Err(BatchError::InvalidRecord(
            "legacy message set holds no messages".into(),
        ));
    }
    pack_batches(&records, max_message_bytes)
}

/// Decompresses a wrapper message and appends its inner messages as records, charging the
/// decompressed size to `budget`.
fn unwrap_compressed(
    wrapper: &Message<'_>,
    budget: &mut usize,
    records: &mut Vec<Record>,
) -> Result<(), BatchError> {
    let codec = match Compression::from_id(wrapper.codec_id()) {
        Some(codec @ (Compression::Gzip | Compression::Snappy | Compression::Lz4)) => codec,
        _ => return Err(BatchError::UnsupportedCompression(wrapper.codec_id())),
    };
    let value = wrapper
        .value
        .ok_or_else(|| BatchError::InvalidRecord("compressed message has a null value".into()))?;
    let inner = if codec == Compression::Lz4 && wrapper.magic == MAGIC_V0 {
        decompress_lz4_magic0(value, *budget)?
    } else {
        decompress(codec, value, *budget)?
    };
    *budget -= inner.len();
    let before = records.len();
    for message in MessageSet::new(&inner) {
        let (message, _) = message?;
        if message.codec_id() != 0 {
            return Err(BatchError::InvalidRecord(
                "nested compressed message".into(),
            ));
        }
        if message.magic != wrapper.magic {
            return Err(BatchError::InvalidRecord(format!(
                "inner message magic {} inside a magic {} wrapper",
                message.magic, wrapper.magic
            )));
        }
        records.push(to_record(&message, Some(wrapper)));
    }
    if records.len() == before {
        return Err(BatchError::InvalidRecord(
            "compressed message set is empty".into(),
        ));
    }
    Ok(())
}

/// The v2 record for a legacy message; inner messages of a log-append-time wrapper take the
/// wrapper's timestamp.
fn to_record(message: &Message<'_>, wrapper: Option<&Message<'_>>) -> Record {
    let timestamp = match wrapper {
        Some(w) if w.magic == MAGIC_V1 && w.attributes & ATTR_LOG_APPEND_TIME != 0 => w.timestamp,
        _ => message.timestamp,
    };
    Record {
        timestamp,
        key: message.key.map(<[u8]>::to_vec),
        value: message.value.map(<[u8]>::to_vec),
        headers: Vec::new(),
    }
}

/// Packs records into as few uncompressed v2 batches as fit in `batch_bytes_max` each.
fn pack_batches(records: &[Record], batch_bytes_max: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    let mut next_offset = 0i64;
    let mut builder = BatchBuilder::new(Offset(next_offset));
    for record in records {
        if builder.push_within(record, batch_bytes_max) {
            continue;
        }
        if builder.is_empty() {
            let mut single = BatchBuilder::new(Offset(next_offset));
            single.push(record);
            let size = single.uncompressed_size();
            return Err(BatchError::TooLarge {
                size,
                max: batch_bytes_max,
            });
        }
        next_offset += i64::from(builder.len());
        out.extend_from_slice(&builder.build());
        builder = BatchBuilder::new(Offset(next_offset));
        if !builder.push_within(record, batch_bytes_max) {
            let size = builder.uncompressed_size();
            return Err(BatchError::TooLarge {
                size,
                max: batch_bytes_max,
            });
        }
    }
    out.extend_from_slice(&builder.build());
    Ok(out)
}

/// Iterates over the messages of a legacy message set, yielding each with its size on the
/// wire; stops after the first error.
struct MessageSet<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> MessageSet<'a> {
    fn new(buf: &'a [u8]) -> MessageSet<'a> {
        MessageSet {
            rest: buf,
            failed: false,
        }
    }
}

impl<'a> Iterator for MessageSet<'a> {
    type Item = Result<(Message<'a>, usize), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match parse_message(self.rest) {
            Ok((message, size)) => {
                self.rest = &self.rest[size..];
                Some(Ok((message, size)))
            }
            Err(err) => {
                self.failed = true;
                Some(Err(err))
            }
        }
    }
}

/// Parses the message at the start of `buf`: the message and its size including the offset
/// and length fields.
fn parse_message(buf: &[u8]) -> Result<(Message<'_>, usize), BatchError> {
    if buf.len() < LOG_OVERHEAD {
        return Err(BatchError::Truncated {
            needed: LOG_OVERHEAD,
            available: buf.len(),
        });
    }
    let length = i32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let body_len = usize::try_from(length).map_err(|_| BatchError::InvalidLength(length))?;
    if body_len < V0_BODY_MIN {
        return Err(BatchError::InvalidLength(length));
    }
    let size = LOG_OVERHEAD + body_len;
    if buf.len() < size {
        return Err(BatchError::Truncated {
            needed: size,
            available: buf.len(),
        });
    }
    let body = &buf[LOG_OVERHEAD..size];
    let stored = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let computed = crc32fast::hash(&body[4..]);
    if stored != computed {
        return Err(BatchError::CrcMismatch { stored, computed });
    }
    let magic = body[4] as i8;
    let attributes = body[5];
    let mut fields = Fields {
        rest: &body[V0_FIXED_LEN..],
    };
    let timestamp = match magic {
        MAGIC_V0 => NO_TIMESTAMP,
        MAGIC_V1 => fields.timestamp()?,
        other => return Err(BatchError::UnsupportedMagic(other)),
    };
    let key = fields.bytes("key")?;
    let value = fields.bytes("value")?;
    if !fields.rest.is_empty() {
        return Err(BatchError::InvalidRecord(format!(
            "legacy message has {} bytes after its value",
            fields.rest.len()
        )));
    }
    Ok((
        Message {
            magic,
            attributes,
            timestamp,
            key,
            value,
        },
        size,
    ))
}

/// A cursor over a legacy message's fields after the attributes.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], BatchError> {
        if len > self.rest.len() {
            return Err(BatchError::InvalidRecord(format!(
                "legacy message {what} of {len} bytes extends past the message"
            )));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn timestamp(&mut self) -> Result<i64, BatchError> {
        let raw = self.take(8, "timestamp")?;
        Ok(i64::from_be_bytes(raw.try_into().expect("8 bytes")))
    }

    fn bytes(&mut self, what: &str) -> Result<Option<&'a [u8]>, BatchError> {
        let raw = self.take(4, what)?;
        match i32::from_be_bytes(raw.try_into().expect("4 bytes")) {
            -1 => Ok(None),
            len if len < 0 => Err(BatchError::InvalidRecord(format!(
                "legacy message {what} has negative length {len}"
            ))),
            len => self.take(len as usize, what).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::batch::{Batch, Batches};
    use crate::record::compression::compress;
    use crate::record::records::decode_records;

    /// A test-side encoder for one legacy message.
    fn message(
        magic: i8,
        attributes: u8,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut body = vec![magic as u8, attributes];
        if magic == MAGIC_V1 {
            body.extend_from_slice(&timestamp.to_be_bytes());
        }
        for field in [key, value] {
            match field {
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(bytes) => {
                    body.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                    body.extend_from_slice(bytes);
                }
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(&0i64.to_be_bytes());
        out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// A wrapper message holding `inner` compressed with `codec`.
    fn wrapper(magic: i8, codec: Compression, inner: &[u8]) -> Vec<u8> {
        let packed = compress(codec, inner);
        message(magic, codec.id(), 1_000, None, Some(&packed))
    }

    fn decoded(converted: &[u8]) -> Vec<(Offset, Record)> {
        let mut out = Vec::new();
        for batch in Batches::new(converted) {
            let batch = batch.expect("batch");
            batch.validate(usize::MAX).expect("valid");
            for record in decode_records(&batch, usize::MAX).expect("records") {
                out.push((record.offset, record.record));
            }
        }
        out
    }

    fn record(timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Record {
        Record {
            timestamp,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: vec![],
        }
    }

    #[test]
    fn legacy_is_legacy_reads_the_magic_byte() {
        assert!(is_legacy(&message(0, 0, 0, None, Some(b"v"))));
        assert!(is_legacy(&message(1, 0, 0, None, Some(b"v"))));
        let mut builder = BatchBuilder::new(Offset(0));
        builder.push(&Record::default());
        assert!(!is_legacy(&builder.build()));
        assert!(!is_legacy(&[0; 16]));
    }

    #[test]
    fn legacy_converts_uncompressed_magic0_and_magic1() {
        let set = [
            message(0, 0, 0, Some(b"k"), Some(b"v0")),
            message(1, 0, 1_234, None, Some(b"v1")),
            message(1, 0, 1_200, Some(b""), None),
        ]
        .concat();
        let converted = convert_legacy(&set, 1 << 20).unwrap();
        let batch = Batch::parse(&converted).unwrap();
        assert_eq!(batch.size(), converted.len(), "one batch");
        assert_eq!(
            decoded(&converted),
            vec![
                (Offset(0), record(NO_TIMESTAMP, Some(b"k"), Some(b"v0"))),
                (Offset(1), record(1_234, None, Some(b"v1"))),
                (Offset(2), record(1_200, Some(b""), None)),
            ]
        );
        assert_eq!(batch.max_timestamp(), 1_234);
    }

    #[test]
    fn legacy_converts_compressed_wrappers() {
        for magic in [MAGIC_V0, MAGIC_V1] {
            for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4] {
                let inner = [
                    message(magic, 0, 5, Some(b"a"), Some(b"1")),
                    message(magic, 0, 6, None, Some(b"2")),
                ]
                .concat();
                let set = [
                    wrapper(magic, codec, &inner),
                    message(magic, 0, 7, None, None),
                ]
                .concat();
                let converted = convert_legacy(&set, 1 << 20).unwrap();
                let ts = |t| if magic == MAGIC_V0 { NO_TIMESTAMP } else { t };
                assert_eq!(
                    decoded(&converted),
                    vec![
                        (Offset(0), record(ts(5), Some(b"a"), Some(b"1"))),
                        (Offset(1), record(ts(6), None, Some(b"2"))),
                        (Offset(2), record(ts(7), None, None)),
                    ],
                    "magic {magic} {codec:?}"
                );
            }
        }
    }

    #[test]
    fn legacy_log_append_time_wrapper_stamps_inner_messages() {
        let inner = message(1, 0, 5, None, Some(b"x"));
        let packed = compress(Compression::Gzip, &inner);
        let set = message(1, 1 | ATTR_LOG_APPEND_TIME, 99, None, Some(&packed));
        let converted = convert_legacy(&set, 1 << 20).unwrap();
        assert_eq!(decoded(&converted)[0].1.timestamp, 99);
    }

    #[test]
    fn legacy_crc_mismatch_is_detected() {
        let mut set = message(1, 0, 0, Some(b"key"), Some(b"value"));
        let last = set.len() - 1;
        set[last] ^= 0x01;
        let err = convert_legacy(&set, 1 << 20).unwrap_err();
        assert!(matches!(err, BatchError::CrcMismatch { .. }), "{err}");
        assert_eq!(
            crate::ErrorCode::from(&err),
            crate::ErrorCode::CorruptMessage
        );
    }

    #[test]
    fn legacy_truncated_and_garbage_input_is_an_error() {
        let set = message(1, 0, 0, Some(b"key"), Some(b"value"));
        for cut in [0, 5, 12, 20, set.len() - 1] {
            assert!(
                convert_legacy(&set[..cut], 1 << 20).is_err(),
                "cut at {cut}"
            );
        }
        let mut trailing = set.clone();
        trailing.extend_from_slice(&[0, 0, 0]);
        assert!(
            convert_legacy(&trailing, 1 << 20).is_err(),
            "partial trailing message"
        );
        // A key length that runs past the message, with a valid CRC.
        let mut body = vec![1, 0];
        body.extend_from_slice(&0i64.to_be_bytes());
        body.extend_from_slice(&100i32.to_be_bytes());
        body.extend_from_slice(&(-1i32).to_be_bytes());
        let mut bad = 0i64.to_be_bytes().to_vec();
        bad.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        bad.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        bad.extend_from_slice(&body);
        assert!(matches!(
            convert_legacy(&bad, 1 << 20),
            Err(BatchError::InvalidRecord(_))
        ));
    }

    #[test]
    fn legacy_rejects_bad_magic_codec_and_nesting() {
        let magic2 = message(2, 0, 0, None, Some(b"v"));
        assert_eq!(
            convert_legacy(&magic2, 1 << 20),
            Err(BatchError::UnsupportedMagic(2))
        );
        let zstd = message(1, 4, 0, None, Some(b"v"));
        assert_eq!(
            convert_legacy(&zstd, 1 << 20),
            Err(BatchError::UnsupportedCompression(4))
        );
        let inner = wrapper(1, Compression::Gzip, &message(1, 0, 0, None, Some(b"v")));
        let nested = wrapper(1, Compression::Gzip, &inner);
        assert!(matches!(
            convert_legacy(&nested, 1 << 20),
            Err(BatchError::InvalidRecord(_))
        ));
        let mixed = wrapper(1, Compression::Gzip, &message(0, 0, 0, None, Some(b"v")));
        assert!(matches!(
            convert_legacy(&mixed, 1 << 20),
            Err(BatchError::InvalidRecord(_))
        ));
        let null_value = message(1, 1, 0, None, None);
        assert!(matches!(
            convert_legacy(&null_value, 1 << 20),
            Err(BatchError::InvalidRecord(_))
        ));
    }

    #[test]
    fn legacy_size_limits_apply() {
        let big = message(1, 0, 0, None, Some(&[7; 1000]));
        let err = convert_legacy(&big, 500).unwrap_err();
        assert!(matches!(err, BatchError::TooLarge { .. }));
        // A bomb: 1 MiB of zeros inflates beyond 16 x 4 KiB.
        let zeros = message(1, 0, 0, None, Some(&vec![0; 1 << 20]));
        let bomb = wrapper(1, Compression::Gzip, &zeros);
        assert!(bomb.len() < 4096);
        let err = convert_legacy(&bomb, 4096).unwrap_err();
        assert!(matches!(err, BatchError::Decompression { .. }), "{err}");
    }

    #[test]
    fn legacy_splits_output_into_batches_within_the_limit() {
        let set: Vec<u8> = (0..10)
            .flat_map(|i| message(1, 0, i, None, Some(&[i as u8; 100])))
            .collect();
        let converted = convert_legacy(&set, 400).unwrap();
        let batches: Vec<_> = Batches::new(&converted).map(Result::unwrap).collect();
        assert!(batches.len() > 1);
        assert!(batches.iter().all(|b| b.size() <= 400));
        let records = decoded(&converted);
        assert_eq!(records.len(), 10);
        for (i, (offset, record)) in records.iter().enumerate() {
            assert_eq!(*offset, Offset(i as i64));
            assert_eq!(record.value.as_deref(), Some(&[i as u8; 100][..]));
        }
    }

    #[test]
    fn legacy_empty_set_is_an_error() {
        assert!(convert_legacy(&[], 1 << 20).is_err());
    }
}

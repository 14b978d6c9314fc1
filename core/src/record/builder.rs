//! Building v2 record batches: used by tests, the legacy-format conversion and control
//! markers. Producers build their own batches; the broker only builds these.

use super::batch::{Compression, CRC_START, HEADER_LEN, MAGIC_V2};
use super::compression::compress;
use super::varint::put_varint;
use super::varint::put_varlong;
use crate::types::{Offset, ProducerEpoch, ProducerId};

/// A record header: a string key and optional bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The header's key.
    pub key: String,
    /// The header's value; `None` is a null value.
    pub value: Option<Vec<u8>>,
}

/// One record as an application sees it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Record {
    /// Create or append time in milliseconds.
    pub timestamp: i64,
    /// The key; `None` is a null key.
    pub key: Option<Vec<u8>>,
    /// The value; `None` is a null value (a tombstone on compacted topics).
    pub value: Option<Vec<u8>>,
    /// Record headers, in order.
    pub headers: Vec<Header>,
}

/// Attribute bits 0–2: the codec.
const ATTR_COMPRESSION_MASK: i16 = 0x07;

/// Assembles records into one v2 batch, optionally compressed.
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    base_offset: Offset,
    /// Attribute bits other than the codec's.
    attributes: i16,
    compression: Compression,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
    base_sequence: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    count: i32,
    /// Offset delta the next record gets (equals `count` unless records were skipped).
    delta_next: i32,
    /// The batch's declared last offset delta, when set explicitly.
    last_offset_delta: Option<i32>,
    records: Vec<u8>,
}

impl BatchBuilder {
    /// A builder for a non-idempotent batch starting at `base_offset`.
    pub fn new(base_offset: Offset) -> BatchBuilder {
        BatchBuilder {
            base_offset,
            attributes: 0,
            compression: Compression::None,
            producer_id: ProducerId(-1),
            producer_epoch: ProducerEpoch(-1),
            base_sequence: -1,
            base_timestamp: None,
            max_timestamp: -1,
            count: 0,
            delta_next: 0,
            last_offset_delta: None,
            records: Vec::new(),
        }
    }

    /// Marks the batch as coming from an idempotent producer.
    pub fn producer(mut self, id: ProducerId, epoch: ProducerEpoch, base_sequence: i32) -> Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets raw attribute bits (transactional, control, timestamp type). Nonzero codec bits
    /// (0–2) select the codec as [`BatchBuilder::compression`] does; a reserved codec id is a
    /// programmer error and panics.
    pub fn attributes(mut self, attributes: i16) -> Self {
        let codec_id = (attributes & ATTR_COMPRESSION_MASK) as u8;
        if codec_id != 0 {
            self.compression = Compression::from_id(codec_id).expect("a defined codec id");
        }
        self.attributes = attributes & !ATTR_COMPRESSION_MASK;
        self
    }

    /// Compresses the records section with `codec` when the batch is built.
    pub fn compression(mut self, codec: Compression) -> Self {
        self.compression = codec;
        self
    }

    /// Number of records added so far.
    pub fn len(&self) -> i32 {
        self.count
    }

    /// Whether no record was added yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The batch's size in bytes if built now without compression.
    pub fn uncompressed_size(&self) -> usize {
        HEADER_LEN + self.records.len()
    }

    /// Appends a record at offset `base + delta`, leaving a gap after the previous record
    /// (compaction keeps records' offsets). `delta` must exceed every delta used so far.
    pub fn push_at_delta(&mut self, delta: i32, record: &Record) {
        assert!(
            delta >= self.delta_next,
            "offset deltas increase within a batch"
        );
        self.delta_next = delta;
        self.push(record);
    }

    /// Declares the batch's last offset delta when records at its end were removed, so the
    /// batch still ends where it did (compaction); at least the last delta pushed.
    pub fn last_offset_delta(mut self, delta: i32) -> Self {
        self.last_offset_delta = Some(delta);
        self
    }

    /// Appends a record; its offset is the next one in the batch.
    pub fn push(&mut self, record: &Record) {
        let body = self.encode_record(record);
        self.append_body(record, &body);
    }

    /// Appends a record only if the uncompressed batch then stays within `batch_bytes_max`;
    /// returns whether it did. Leaves the builder unchanged otherwise.
    pub fn push_within(&mut self, record: &Record, batch_bytes_max: usize) -> bool {
        let body = self.encode_record(record);
        let added = super::varint::varlong_len(body.len() as i64) + body.len();
        if self.uncompressed_size().saturating_add(added) > batch_bytes_max {
            return false;
        }
        self.append_body(record, &body);
        true
    }

    /// Encodes `record` as the batch's next record, without its length prefix.
    fn encode_record(&self, record: &Record) -> Vec<u8> {
        let base_timestamp = self.base_timestamp.unwrap_or(record.timestamp);
        let mut body = Vec::with_capacity(16 + record_payload_len(record));
        body.push(0); // record attributes: unused
        put_varlong(&mut body, record.timestamp.wrapping_sub(base_timestamp));
        put_varint(&mut body, self.delta_next);
        put_bytes(&mut body, record.key.as_deref());
        put_bytes(&mut body, record.value.as_deref());
        put_varint(&mut body, record.headers.len() as i32);
        for header in &record.headers {
            put_bytes(&mut body, Some(header.key.as_bytes()));
            put_bytes(&mut body, header.value.as_deref());
        }
        body
    }

    fn append_body(&mut self, record: &Record, body: &[u8]) {
        self.base_timestamp.get_or_insert(record.timestamp);
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        put_varint(&mut self.records, body.len() as i32);
        self.records.extend_from_slice(body);
        self.count += 1;
        self.delta_next += 1;
    }

    /// Encodes the batch with its CRC, compressing the records section if a codec was set.
    /// Panics if no record was added: Kafka has no empty batch.
    pub fn build(&self) -> Vec<u8> {
        assert!(self.count > 0, "a record batch holds at least one record");
        let compressed;
        let records = if self.compression == Compression::None {
            &self.records[..]
        } else {
            compressed = compress(self.compression, &self.records);
            &compressed[..]
        };
        encode_batch(&BatchFields {
            base_offset: self.base_offset,
            attributes: self.attributes | i16::from(self.compression.id()),
            last_offset_delta: self
                .last_offset_delta
                .unwrap_or(self.delta_next - 1)
                .max(self.delta_next - 1),
            base_timestamp: self.base_timestamp.unwrap_or(-1),
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            record_count: self.count,
            records,
        })
    }
}

/// Every header field of a batch plus its encoded records, for [`encode_batch`].
pub(crate) struct BatchFields<'a> {
    pub base_offset: Offset,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: i32,
    pub record_count: i32,
    pub records: &'a [u8],
}

/// Encodes a batch header around already-encoded records and fills in the CRC.
pub(crate) fn encode_batch(fields: &BatchFields<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + fields.records.len());
    out.extend_from_slice(&fields.base_offset.0.to_be_bytes());
    let length = (HEADER_LEN - 12 + fields.records.len()) as i32;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch, set on append
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&[0; 4]); // CRC, filled below
    out.extend_from_slice(&fields.attributes.to_be_bytes());
    out.extend_from_slice(&fields.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&fields.base_timestamp.to_be_bytes());
    out.extend_from_slice(&fields.max_timestamp.to_be_bytes());
    out.extend_from_slice(&fields.producer_id.0.to_be_bytes());
    out.extend_from_slice(&fields.producer_epoch.0.to_be_bytes());
    out.extend_from_slice(&fields.base_sequence.to_be_bytes());
    out.extend_from_slice(&fields.record_count.to_be_bytes());
    debug_assert_eq!(out.len(), HEADER_LEN);
    out.extend_from_slice(fields.records);
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

fn record_payload_len(record: &Record) -> usize {
    record.key.as_ref().map_or(0, Vec::len) + record.value.as_ref().map_or(0, Vec::len)
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, bytes.len() as i32);
            out.extend_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::batch::Batch;

    fn record(value: &[u8]) -> Record {
        Record {
            timestamp: 10,
            value: Some(value.to_vec()),
            ..Record::default()
        }
    }

    #[test]
    fn builder_compression_sets_codec_bits_and_keeps_others() {
        let mut builder = BatchBuilder::new(Offset(0))
            .attributes(0x10)
            .compression(Compression::Zstd);
        builder.push(&record(b"abc"));
        let bytes = builder.build();
        let batch = Batch::parse(&bytes).unwrap();
        batch.validate(1 << 20).unwrap();
        assert_eq!(batch.compression(), Some(Compression::Zstd));
        assert!(batch.is_transactional());
        assert_eq!(batch.attributes(), 0x10 | 4);
    }

    #[test]
    fn builder_attributes_codec_bits_select_the_codec() {
        let mut builder = BatchBuilder::new(Offset(0)).attributes(0x20 | 1);
        builder.push(&record(b"abc"));
        let bytes = builder.build();
        let batch = Batch::parse(&bytes).unwrap();
        assert_eq!(batch.compression(), Some(Compression::Gzip));
        assert!(batch.is_control());
    }

    #[test]
    fn builder_push_within_respects_the_limit() {
        let mut builder = BatchBuilder::new(Offset(0));
        assert!(
            !builder.push_within(&record(&[0; 100]), HEADER_LEN + 50),
            "too big alone"
        );
        assert!(builder.is_empty());
        assert!(builder.push_within(&record(&[0; 10]), HEADER_LEN + 40));
        let size = builder.uncompressed_size();
        assert!(
            !builder.push_within(&record(&[0; 10]), size + 10),
            "would exceed"
        );
        assert_eq!(builder.len(), 1);
        assert!(builder.push_within(&record(&[0; 10]), size + 40));
        assert_eq!(builder.build().len(), builder.uncompressed_size());
    }
}

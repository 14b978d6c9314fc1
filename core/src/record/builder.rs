//! Building v2 record batches: used by tests, the legacy-format conversion and control
//! markers. Producers build their own batches; the broker only builds these.

use super::batch::{CRC_START, HEADER_LEN, MAGIC_V2};
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

/// Assembles records into one uncompressed v2 batch.
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    base_offset: Offset,
    attributes: i16,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
    base_sequence: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    count: i32,
    records: Vec<u8>,
}

impl BatchBuilder {
    /// A builder for a non-idempotent batch starting at `base_offset`.
    pub fn new(base_offset: Offset) -> BatchBuilder {
        BatchBuilder {
            base_offset,
            attributes: 0,
            producer_id: ProducerId(-1),
            producer_epoch: ProducerEpoch(-1),
            base_sequence: -1,
            base_timestamp: None,
            max_timestamp: -1,
            count: 0,
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

    /// Sets raw attribute bits (transactional, control, timestamp type); compression bits
    /// must be zero since this builder writes uncompressed records.
    pub fn attributes(mut self, attributes: i16) -> Self {
        assert_eq!(attributes & 0x07, 0, "BatchBuilder writes uncompressed batches");
        self.attributes = attributes;
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

    /// Appends a record; its offset is the next one in the batch.
    pub fn push(&mut self, record: &Record) {
        let base_timestamp = *self.base_timestamp.get_or_insert(record.timestamp);
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        let mut body = Vec::with_capacity(16 + record_payload_len(record));
        body.push(0); // record attributes: unused
        put_varlong(&mut body, record.timestamp - base_timestamp);
        put_varint(&mut body, self.count);
        put_bytes(&mut body, record.key.as_deref());
        put_bytes(&mut body, record.value.as_deref());
        put_varint(&mut body, record.headers.len() as i32);
        for header in &record.headers {
            put_bytes(&mut body, Some(header.key.as_bytes()));
            put_bytes(&mut body, header.value.as_deref());
        }
        put_varint(&mut self.records, body.len() as i32);
        self.records.extend_from_slice(&body);
        self.count += 1;
    }

    /// Encodes the batch with its CRC. Panics if no record was added: Kafka has no empty batch.
    pub fn build(&self) -> Vec<u8> {
        assert!(self.count > 0, "a record batch holds at least one record");
        encode_batch(&BatchFields {
            base_offset: self.base_offset,
            attributes: self.attributes,
            last_offset_delta: self.count - 1,
            base_timestamp: self.base_timestamp.unwrap_or(-1),
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            record_count: self.count,
            records: &self.records,
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

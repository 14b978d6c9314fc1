//! Transaction markers: the control batches that commit or abort a producer's transaction.
//!
//! A marker is a batch with the transactional and control attribute bits set, holding one
//! record (Kafka's `EndTransactionMarker`):
//!
//! - key: version (int16, 0) and control type (int16: 0 abort, 1 commit);
//! - value: version (int16, 0) and the transaction coordinator's epoch (int32); Brook
//!   appends the transaction's token (int64, see [`ControlMarker::token`]), which Kafka's
//!   readers skip as a later field.
//!
//! The token makes a marker idempotent per transaction: a partition that holds a marker
//! with a token takes no marker with that token or an older one again, so a marker request
//! delayed past the next transaction's first records cannot end that transaction.

use super::batch::{Batch, BatchError};
use super::builder::{BatchBuilder, Record};
use super::records::{record_section, RecordIter};
use crate::types::{Offset, ProducerEpoch, ProducerId};

/// Attribute bits of a marker batch: transactional (0x10) and control (0x20).
const ATTR_TRANSACTIONAL_CONTROL: i16 = 0x30;
/// Bytes of a marker key: version and type.
const KEY_LEN: usize = 4;
/// Bytes of a marker value: version and coordinator epoch.
const VALUE_LEN: usize = 6;
/// Bound on a compressed marker's records section; a real one is about 20 bytes.
const SECTION_BYTES_MAX: usize = 4096;

/// Which way a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControlType {
    /// The transaction's records are discarded by read-committed consumers.
    Abort = 0,
    /// The transaction's records become visible to read-committed consumers.
    Commit = 1,
}

impl ControlType {
    /// The type for its wire id, or `None` for ids other than abort and commit (such as
    /// KRaft's leader-change records).
    pub fn from_id(id: i16) -> Option<ControlType> {
        match id {
            0 => Some(ControlType::Abort),
            1 => Some(ControlType::Commit),
            _ => None,
        }
    }
}

/// A transaction marker: everything a control batch says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlMarker {
    /// The transactional producer whose transaction ended.
    pub producer_id: ProducerId,
    /// The producer's epoch.
    pub producer_epoch: ProducerEpoch,
    /// Commit or abort.
    pub control_type: ControlType,
    /// Epoch of the transaction coordinator that wrote the marker.
    pub coordinator_epoch: i32,
    /// The marker's timestamp in milliseconds (supplied by the caller).
    pub timestamp: i64,
    /// Which end of the producer's transactions this is: increasing from one transaction to
    /// the next (Brook's coordinator uses the offset of the prepare record in
    /// `__transaction_state`); -1 when unknown (a marker written by another broker).
    pub token: i64,
}

impl ControlMarker {
    /// Encodes the marker as an uncompressed control batch at `base_offset`.
    pub fn encode(&self, base_offset: Offset) -> Vec<u8> {
        let mut key = Vec::with_capacity(KEY_LEN);
        key.extend_from_slice(&0i16.to_be_bytes());
        key.extend_from_slice(&(self.control_type as i16).to_be_bytes());
        let mut value = Vec::with_capacity(VALUE_LEN + 8);
        value.extend_from_slice(&0i16.to_be_bytes());
        value.extend_from_slice(&self.coordinator_epoch.to_be_bytes());
        if self.token >= 0 {
            value.extend_from_slice(&self.token.to_be_bytes());
        }
        let mut builder = BatchBuilder::new(base_offset)
            .producer(self.producer_id, self.producer_epoch, -1)
            .attributes(ATTR_TRANSACTIONAL_CONTROL);
        builder.push(&Record {
            timestamp: self.timestamp,
            key: Some(key),
            value: Some(value),
            headers: Vec::new(),
        });
        builder.build()
    }

    /// Reads the marker from a control batch. Fails if the batch is not a transactional
    /// control batch, does not hold exactly one record, or its key or value is malformed.
    pub fn decode(batch: &Batch<'_>) -> Result<ControlMarker, BatchError> {
        if !batch.is_control() || !batch.is_transactional() {
            return Err(invalid("not a transactional control batch"));
        }
        if batch.record_count() != 1 {
            return Err(invalid("a control batch holds exactly one record"));
        }
        let section = record_section(batch, SECTION_BYTES_MAX)?;
        let mut iter = RecordIter::new(batch, &section);
        let record = iter
            .next()
            .ok_or_else(|| invalid("control record missing"))??;
        if let Some(Err(err)) = iter.next() {
            return Err(err);
        }
        let key = record
            .key
            .ok_or_else(|| invalid("control record key is null"))?;
        let value = record
            .value
            .ok_or_else(|| invalid("control record value is null"))?;
        let control_type = parse_key(key)?;
        let coordinator_epoch = parse_value(value)?;
        let token = match value.get(VALUE_LEN..VALUE_LEN + 8) {
            Some(bytes) => i64::from_be_bytes(bytes.try_into().expect("8 bytes")),
            None => -1,
        };
        Ok(ControlMarker {
            producer_id: batch.producer_id(),
            producer_epoch: batch.producer_epoch(),
            control_type,
            coordinator_epoch,
            timestamp: record.timestamp,
            token,
        })
    }
}

fn invalid(message: &str) -> BatchError {
    BatchError::InvalidRecord(message.to_owned())
}

/// Reads the control type from a marker key. Like Kafka, newer key versions are read as
/// version 0 (later versions may only append fields); negative versions are refused.
fn parse_key(key: &[u8]) -> Result<ControlType, BatchError> {
    if key.len() < KEY_LEN {
        return Err(invalid("control record key shorter than 4 bytes"));
    }
    let version = i16::from_be_bytes([key[0], key[1]]);
    if version < 0 {
        return Err(invalid("control record key version is negative"));
    }
    let id = i16::from_be_bytes([key[2], key[3]]);
    ControlType::from_id(id).ok_or_else(|| {
        BatchError::InvalidRecord(format!(
            "control record type {id} is not a transaction marker"
        ))
    })
}

/// Reads the coordinator epoch from a marker value (version 0 layout; newer versions may
/// only append fields).
fn parse_value(value: &[u8]) -> Result<i32, BatchError> {
    if value.len() < VALUE_LEN {
        return Err(invalid("control record value shorter than 6 bytes"));
    }
    let version = i16::from_be_bytes([value[0], value[1]]);
    if version < 0 {
        return Err(invalid("control record value version is negative"));
    }
    Ok(i32::from_be_bytes([value[2], value[3], value[4], value[5]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::batch::Compression;

    fn marker(control_type: ControlType) -> ControlMarker {
        ControlMarker {
            producer_id: ProducerId(42),
            producer_epoch: ProducerEpoch(3),
            control_type,
            coordinator_epoch: 9,
            timestamp: 1_700_000_000_000,
            token: 77,
        }
    }

    /// A control batch with the given key and value, for malformed-marker tests.
    fn control_batch(key: Option<Vec<u8>>, value: Option<Vec<u8>>) -> Vec<u8> {
        let mut builder = BatchBuilder::new(Offset(0))
            .producer(ProducerId(1), ProducerEpoch(0), -1)
            .attributes(ATTR_TRANSACTIONAL_CONTROL);
        builder.push(&Record {
            timestamp: 0,
            key,
            value,
            headers: vec![],
        });
        builder.build()
    }

    fn decode_bytes(bytes: &[u8]) -> Result<ControlMarker, BatchError> {
        ControlMarker::decode(&Batch::parse(bytes).expect("header"))
    }

    #[test]
    fn control_marker_round_trips_commit_and_abort() {
        for control_type in [ControlType::Commit, ControlType::Abort] {
            let bytes = marker(control_type).encode(Offset(500));
            let batch = Batch::parse(&bytes).unwrap();
            batch.validate(1 << 20).unwrap();
            assert!(batch.is_control() && batch.is_transactional());
            assert_eq!(batch.base_offset(), Offset(500));
            assert_eq!(batch.base_sequence(), -1);
            assert_eq!(batch.compression(), Some(Compression::None));
            assert_eq!(ControlMarker::decode(&batch), Ok(marker(control_type)));
        }
    }

    #[test]
    fn control_marker_wire_layout_matches_kafka() {
        let untokened = ControlMarker {
            token: -1,
            ..marker(ControlType::Commit)
        };
        let bytes = untokened.encode(Offset(0));
        let batch = Batch::parse(&bytes).unwrap();
        let section = record_section(&batch, 100).unwrap();
        let record = RecordIter::new(&batch, &section).next().unwrap().unwrap();
        assert_eq!(record.key, Some(&[0, 0, 0, 1][..]));
        assert_eq!(record.value, Some(&[0, 0, 0, 0, 0, 9][..]));
        assert_eq!(batch.attributes(), 0x30);
        // Brook's token follows Kafka's fields, which a Kafka reader parses the same.
        let bytes = marker(ControlType::Commit).encode(Offset(0));
        let batch = Batch::parse(&bytes).unwrap();
        let section = record_section(&batch, 100).unwrap();
        let record = RecordIter::new(&batch, &section).next().unwrap().unwrap();
        assert_eq!(
            record.value,
            Some(&[0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 77][..])
        );
        assert_eq!(ControlMarker::decode(&batch).unwrap().token, 77);
        assert_eq!(
            decode_bytes(&untokened.encode(Offset(0))).unwrap().token,
            -1
        );
    }

    #[test]
    fn control_marker_rejects_ordinary_batches() {
        let mut builder = BatchBuilder::new(Offset(0));
        builder.push(&Record::default());
        let err = decode_bytes(&builder.build()).unwrap_err();
        assert!(matches!(err, BatchError::InvalidRecord(_)));
    }

    #[test]
    fn control_marker_rejects_malformed_keys_and_values() {
        let good_key = Some(vec![0, 0, 0, 1]);
        let good_value = Some(vec![0, 0, 0, 0, 0, 1]);
        let cases = [
            (None, good_value.clone()),
            (Some(vec![0, 0, 0]), good_value.clone()),
            (Some(vec![0xff, 0xff, 0, 1]), good_value.clone()),
            (Some(vec![0, 0, 0, 2]), good_value.clone()),
            (good_key.clone(), None),
            (good_key.clone(), Some(vec![0, 0, 0, 0, 1])),
        ];
        for (key, value) in cases {
            let bytes = control_batch(key.clone(), value.clone());
            let err = decode_bytes(&bytes).unwrap_err();
            assert!(
                matches!(err, BatchError::InvalidRecord(_)),
                "{key:?} {value:?}: {err}"
            );
        }
        assert!(decode_bytes(&control_batch(good_key, good_value)).is_ok());
    }

    #[test]
    fn control_marker_rejects_two_records() {
        let mut builder = BatchBuilder::new(Offset(0)).attributes(ATTR_TRANSACTIONAL_CONTROL);
        let record = Record {
            key: Some(vec![0, 0, 0, 1]),
            value: Some(vec![0, 0, 0, 0, 0, 1]),
            ..Record::default()
        };
        builder.push(&record);
        builder.push(&record);
        assert!(decode_bytes(&builder.build()).is_err());
    }

    #[test]
    fn control_marker_reads_a_compressed_marker() {
        let mut builder = BatchBuilder::new(Offset(0))
            .attributes(ATTR_TRANSACTIONAL_CONTROL)
            .compression(Compression::Gzip);
        builder.push(&Record {
            key: Some(vec![0, 0, 0, 0]),
            value: Some(vec![0, 0, 0, 0, 0, 4]),
            ..Record::default()
        });
        let decoded = decode_bytes(&builder.build()).unwrap();
        assert_eq!(decoded.control_type, ControlType::Abort);
        assert_eq!(decoded.coordinator_epoch, 4);
    }
}

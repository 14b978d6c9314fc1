//! Reading the records inside a v2 batch.
//!
//! Each record is encoded as (Kafka protocol guide, "Record"):
//!
//! ```text
//! length: varint            bytes after this field
//! attributes: int8          unused
//! timestampDelta: varlong   relative to the batch's base timestamp
//! offsetDelta: varint       relative to the batch's base offset
//! keyLength: varint         -1 for a null key
//! key: byte[]
//! valueLen: varint          -1 for a null value
//! value: byte[]
//! headersCount: varint
//! headers: [headerKeyLength: varint, headerKey: UTF-8, headerValueLength: varint
//!           (-1 for null), value: byte[]]
//! ```
//!
//! [`record_section`] yields the records' bytes (decompressed if needed), [`RecordIter`] walks
//! them without copying, and [`decode_records`] does both and returns owned records. Every
//! malformed input is a [`BatchError::InvalidRecord`]; nothing here panics on bad bytes, and
//! allocations are bounded by the input's size.

use std::borrow::Cow;

use super::batch::{Batch, BatchError, Compression};
use super::builder::{Header, Record};
use super::compression::decompress;
use super::varint::{get_varint, get_varlong};
use crate::types::Offset;

/// The smallest encoded header: a key length and a value length, one byte each.
const HEADER_LEN_MIN: usize = 2;

/// One record read from a batch, borrowing its key, value and headers from the batch bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Absolute offset: the batch's base offset plus the record's offset delta.
    pub offset: Offset,
    /// Absolute timestamp: the batch's base timestamp plus the record's delta.
    pub timestamp: i64,
    /// The record's attribute byte (unused by Kafka today).
    pub attributes: i8,
    /// The key; `None` is a null key.
    pub key: Option<&'a [u8]>,
    /// The value; `None` is a null value.
    pub value: Option<&'a [u8]>,
    /// The headers, in order.
    pub headers: Vec<HeaderRef<'a>>,
}

/// One record header, borrowed from the batch bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    /// The header's key.
    pub key: &'a str,
    /// The header's value; `None` is a null value.
    pub value: Option<&'a [u8]>,
}

/// A record with its absolute offset, as [`decode_records`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedRecord {
    /// The record's offset in the partition (base offset plus offset delta).
    pub offset: Offset,
    /// The record, with its absolute timestamp.
    pub record: Record,
}

impl RecordRef<'_> {
    /// Copies the record out of the batch bytes.
    pub fn to_decoded(&self) -> DecodedRecord {
        let headers = self
            .headers
            .iter()
            .map(|h| Header {
                key: h.key.to_owned(),
                value: h.value.map(<[u8]>::to_vec),
            })
            .collect();
        DecodedRecord {
            offset: self.offset,
            record: Record {
                timestamp: self.timestamp,
                key: self.key.map(<[u8]>::to_vec),
                value: self.value.map(<[u8]>::to_vec),
                headers,
            },
        }
    }
}

/// The batch's records section, decompressed if the batch is compressed (borrowed otherwise).
/// Decompression fails past `decompressed_bytes_max` bytes; a reserved codec id is
/// [`BatchError::UnsupportedCompression`].
pub fn record_section<'a>(
    batch: &Batch<'a>,
    decompressed_bytes_max: usize,
) -> Result<Cow<'a, [u8]>, BatchError> {
    match batch.compression() {
        None => Err(BatchError::UnsupportedCompression(batch.compression_id())),
        Some(Compression::None) => Ok(Cow::Borrowed(batch.records_bytes())),
        Some(codec) => Ok(Cow::Owned(decompress(
            codec,
            batch.records_bytes(),
            decompressed_bytes_max,
        )?)),
    }
}

/// Decodes every record of a batch into owned records with absolute offsets and timestamps.
/// Compressed batches are decompressed up to `decompressed_bytes_max` bytes. The batch's CRC
/// is not checked here; call [`Batch::validate`] first on untrusted bytes.
pub fn decode_records(
    batch: &Batch<'_>,
    decompressed_bytes_max: usize,
) -> Result<Vec<DecodedRecord>, BatchError> {
    let section = record_section(batch, decompressed_bytes_max)?;
    let iter = RecordIter::new(batch, &section);
    let mut out = Vec::with_capacity(iter.capacity_hint());
    for record in iter {
        out.push(record?.to_decoded());
    }
    Ok(out)
}

/// Iterates over the records of an uncompressed records section without copying. Yields an
/// error at the first malformed record and then stops; after the declared number of records
/// it requires the section to be used up.
///
/// Offset deltas must be non-negative, strictly increasing and at most the batch's last
/// offset delta; gaps are allowed, since compaction leaves them.
#[derive(Clone, Debug)]
pub struct RecordIter<'a> {
    rest: &'a [u8],
    base_offset: Offset,
    base_timestamp: i64,
    last_offset_delta: i32,
    declared: i32,
    yielded: i32,
    previous_delta: Option<i32>,
    done: bool,
}

impl<'a> RecordIter<'a> {
    /// Iterates over `section`, the (decompressed) records of `batch`; the record count, base
    /// offset and base timestamp come from the batch header.
    pub fn new(batch: &Batch<'_>, section: &'a [u8]) -> RecordIter<'a> {
        RecordIter {
            rest: section,
            base_offset: batch.base_offset(),
            base_timestamp: batch.base_timestamp(),
            last_offset_delta: batch.last_offset_delta(),
            declared: batch.record_count(),
            yielded: 0,
            previous_delta: None,
            done: false,
        }
    }

    /// How many records to reserve room for: the declared count, capped by what the bytes
    /// could hold, so a lying header cannot force a large allocation.
    pub fn capacity_hint(&self) -> usize {
        let declared = usize::try_from(self.declared).unwrap_or(0);
        declared.min(self.rest.len() / super::batch::RECORD_LEN_MIN)
    }

    fn next_record(&mut self) -> Result<Option<RecordRef<'a>>, BatchError> {
        if self.declared < 0 {
            return Err(invalid(format!("negative record count {}", self.declared)));
        }
        if self.yielded == self.declared {
            if !self.rest.is_empty() {
                return Err(invalid(format!(
                    "{} trailing bytes after {} records",
                    self.rest.len(),
                    self.declared
                )));
            }
            return Ok(None);
        }
        if self.rest.is_empty() {
            return Err(invalid(format!(
                "batch declares {} records but holds {}",
                self.declared, self.yielded
            )));
        }
        let mut reader = Reader::new(self.rest);
        let length = reader.varint("record length")?;
        let length = usize::try_from(length)
            .map_err(|_| invalid(format!("negative record length {length}")))?;
        let body = reader.take(length, "record")?;
        self.rest = reader.rest;
        let record = self.parse_body(body)?;
        self.yielded += 1;
        Ok(Some(record))
    }

    fn parse_body(&mut self, body: &'a [u8]) -> Result<RecordRef<'a>, BatchError> {
        let mut reader = Reader::new(body);
        let attributes = reader.byte("record attributes")? as i8;
        let timestamp_delta = reader.varlong("timestamp delta")?;
        let offset_delta = reader.varint("offset delta")?;
        self.check_offset_delta(offset_delta)?;
        let key = reader.nullable_bytes("key")?;
        let value = reader.nullable_bytes("value")?;
        let headers = reader.headers()?;
        if !reader.rest.is_empty() {
            return Err(invalid(format!(
                "record length is {} bytes longer than its fields",
                reader.rest.len()
            )));
        }
        let timestamp = self
            .base_timestamp
            .checked_add(timestamp_delta)
            .ok_or_else(|| invalid("timestamp delta overflows".to_owned()))?;
        Ok(RecordRef {
            offset: self.base_offset.plus(i64::from(offset_delta)),
            timestamp,
            attributes,
            key,
            value,
            headers,
        })
    }

    fn check_offset_delta(&mut self, delta: i32) -> Result<(), BatchError> {
        let increasing = match self.previous_delta {
            Some(previous) => delta > previous,
            None => true,
        };
        if delta < 0 || delta > self.last_offset_delta || !increasing {
            return Err(invalid(format!(
                "offset delta {delta} out of order (previous {:?}, last {})",
                self.previous_delta, self.last_offset_delta
            )));
        }
        self.previous_delta = Some(delta);
        Ok(())
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordRef<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(err) => {
                self.done = true;
                Some(Err(err))
            }
        }
    }
}

fn invalid(message: String) -> BatchError {
    BatchError::InvalidRecord(message)
}

/// A cursor over untrusted record bytes; every read checks the remaining length.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(rest: &'a [u8]) -> Reader<'a> {
        Reader { rest }
    }

    fn byte(&mut self, what: &str) -> Result<u8, BatchError> {
        let (&first, rest) = self
            .rest
            .split_first()
            .ok_or_else(|| invalid(format!("{what} truncated")))?;
        self.rest = rest;
        Ok(first)
    }

    fn varlong(&mut self, what: &str) -> Result<i64, BatchError> {
        let (value, len) =
            get_varlong(self.rest).ok_or_else(|| invalid(format!("{what} is not a varlong")))?;
        self.rest = &self.rest[len..];
        Ok(value)
    }

    fn varint(&mut self, what: &str) -> Result<i32, BatchError> {
        let (value, len) =
            get_varint(self.rest).ok_or_else(|| invalid(format!("{what} is not a varint")))?;
        self.rest = &self.rest[len..];
        Ok(value)
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], BatchError> {
        if len > self.rest.len() {
            return Err(invalid(format!(
                "{what} of {len} bytes extends past the {} bytes left",
                self.rest.len()
            )));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn nullable_bytes(&mut self, what: &str) -> Result<Option<&'a [u8]>, BatchError> {
        match self.varint(what)? {
            -1 => Ok(None),
            len if len < 0 => Err(invalid(format!("{what} has negative length {len}"))),
            len => self.take(len as usize, what).map(Some),
        }
    }

    fn headers(&mut self) -> Result<Vec<HeaderRef<'a>>, BatchError> {
        let count = self.varint("header count")?;
        let count = usize::try_from(count)
            .map_err(|_| invalid(format!("negative header count {count}")))?;
        if count > self.rest.len() / HEADER_LEN_MIN {
            return Err(invalid(format!("{count} headers cannot fit in the record")));
        }
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            let key = self
                .nullable_bytes("header key")?
                .ok_or_else(|| invalid("header key is null".to_owned()))?;
            let key = std::str::from_utf8(key)
                .map_err(|_| invalid("header key is not UTF-8".to_owned()))?;
            let value = self.nullable_bytes("header value")?;
            headers.push(HeaderRef { key, value });
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::builder::{encode_batch, BatchBuilder, BatchFields};
    use crate::record::varint::{put_varint, put_varlong};
    use crate::types::{ProducerEpoch, ProducerId};

    fn sample_records() -> Vec<Record> {
        vec![
            Record {
                timestamp: 1_000,
                key: Some(b"k1".to_vec()),
                value: Some(b"v1".to_vec()),
                headers: vec![
                    Header {
                        key: "h".into(),
                        value: Some(b"x".to_vec()),
                    },
                    Header {
                        key: "".into(),
                        value: None,
                    },
                ],
            },
            Record {
                timestamp: 990,
                key: None,
                value: None,
                headers: vec![],
            },
            Record {
                timestamp: 5_000,
                key: Some(vec![]),
                value: Some(vec![7; 300]),
                headers: vec![],
            },
        ]
    }

    fn build(records: &[Record]) -> Vec<u8> {
        let mut builder = BatchBuilder::new(Offset(100));
        for record in records {
            builder.push(record);
        }
        builder.build()
    }

    /// A batch around hand-written record bytes, declaring `count` records.
    fn raw_batch(records: &[u8], count: i32) -> Vec<u8> {
        encode_batch(&BatchFields {
            base_offset: Offset(0),
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 10,
            max_timestamp: 10,
            producer_id: ProducerId(-1),
            producer_epoch: ProducerEpoch(-1),
            base_sequence: -1,
            record_count: count,
            records,
        })
    }

    /// One record body (without its length prefix) from parts.
    fn body(offset_delta: i32, key_len: i32, key: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        put_varlong(&mut out, 0);
        put_varint(&mut out, offset_delta);
        put_varint(&mut out, key_len);
        out.extend_from_slice(key);
        out.extend_from_slice(tail);
        out
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, body.len() as i32);
        out.extend_from_slice(body);
        out
    }

    fn decode_err(bytes: &[u8]) -> String {
        let batch = Batch::parse(bytes).expect("header is fine");
        match decode_records(&batch, 1 << 20) {
            Err(BatchError::InvalidRecord(message)) => message,
            other => panic!("expected InvalidRecord, got {other:?}"),
        }
    }

    #[test]
    fn records_decode_round_trips_builder_output() {
        let records = sample_records();
        let bytes = build(&records);
        let batch = Batch::parse(&bytes).unwrap();
        batch.validate(1 << 20).unwrap();
        let decoded = decode_records(&batch, 1 << 20).unwrap();
        assert_eq!(decoded.len(), 3);
        for (i, (got, want)) in decoded.iter().zip(&records).enumerate() {
            assert_eq!(got.offset, Offset(100 + i as i64));
            assert_eq!(&got.record, want);
        }
    }

    #[test]
    fn records_iter_borrows_from_the_batch() {
        let bytes = build(&sample_records());
        let batch = Batch::parse(&bytes).unwrap();
        let section = record_section(&batch, 0).unwrap();
        assert!(
            matches!(section, Cow::Borrowed(_)),
            "uncompressed is not copied"
        );
        let first = RecordIter::new(&batch, &section).next().unwrap().unwrap();
        assert_eq!(first.key, Some(&b"k1"[..]));
        assert_eq!(
            first.headers[0],
            HeaderRef {
                key: "h",
                value: Some(b"x")
            }
        );
        assert_eq!(
            first.headers[1],
            HeaderRef {
                key: "",
                value: None
            }
        );
    }

    #[test]
    fn records_decode_compressed_batches() {
        let records = sample_records();
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut builder = BatchBuilder::new(Offset(7)).compression(codec);
            for record in &records {
                builder.push(record);
            }
            let bytes = builder.build();
            let batch = Batch::parse(&bytes).unwrap();
            batch.validate(1 << 20).unwrap();
            assert_eq!(batch.compression(), Some(codec));
            let decoded = decode_records(&batch, 1 << 20).unwrap();
            let got: Vec<_> = decoded.into_iter().map(|d| d.record).collect();
            assert_eq!(got, records, "{codec:?}");
            let err = decode_records(&batch, 10).unwrap_err();
            assert!(
                matches!(err, BatchError::Decompression { .. }),
                "{codec:?} bomb limit"
            );
        }
    }

    #[test]
    fn records_count_mismatch_is_invalid() {
        let one = framed(&body(0, -1, b"", &[0x01, 0x00]));
        assert!(decode_err(&raw_batch(&one, 2)).contains("declares 2 records"));
        let two = [one.clone(), framed(&body(1, -1, b"", &[0x01, 0x00]))].concat();
        assert!(decode_err(&raw_batch(&two, 1)).contains("trailing"));
    }

    #[test]
    fn records_bad_lengths_are_invalid() {
        // Key longer than the record.
        let long_key = framed(&body(0, 50, b"abc", &[0x01, 0x00]));
        assert!(decode_err(&raw_batch(&long_key, 1)).contains("key"));
        // Negative key length other than -1.
        let negative = framed(&body(0, -2, b"", &[0x01, 0x00]));
        assert!(decode_err(&raw_batch(&negative, 1)).contains("negative"));
        // Record length beyond the section.
        let mut beyond = Vec::new();
        put_varint(&mut beyond, 1000);
        beyond.extend_from_slice(&body(0, -1, b"", &[0x01, 0x00]));
        assert!(decode_err(&raw_batch(&beyond, 1)).contains("extends past"));
        // Record length larger than its fields.
        let padded = framed(&body(0, -1, b"", &[0x01, 0x00, 0xff]));
        assert!(decode_err(&raw_batch(&padded, 1)).contains("longer than its fields"));
        // Negative record length.
        let mut negative_len = Vec::new();
        put_varint(&mut negative_len, -3);
        negative_len.extend_from_slice(&[0; 8]);
        assert!(decode_err(&raw_batch(&negative_len, 1)).contains("negative record length"));
    }

    #[test]
    fn records_bad_headers_are_invalid() {
        // One header whose key is not UTF-8.
        let mut tail = vec![0x01]; // value null
        put_varint(&mut tail, 1); // one header
        put_varint(&mut tail, 2);
        tail.extend_from_slice(&[0xc3, 0x28]);
        put_varint(&mut tail, -1);
        let bad_utf8 = framed(&body(0, -1, b"", &tail));
        assert!(decode_err(&raw_batch(&bad_utf8, 1)).contains("UTF-8"));
        // A header count that cannot fit.
        let mut tail = vec![0x01];
        put_varint(&mut tail, 1_000_000);
        let huge = framed(&body(0, -1, b"", &tail));
        assert!(decode_err(&raw_batch(&huge, 1)).contains("cannot fit"));
    }

    #[test]
    fn records_offset_deltas_must_increase() {
        let first = framed(&body(1, -1, b"", &[0x01, 0x00]));
        let second = framed(&body(1, -1, b"", &[0x01, 0x00]));
        let bytes = raw_batch(&[first, second].concat(), 2);
        assert!(decode_err(&bytes).contains("offset delta"));
    }

    #[test]
    fn records_truncated_varint_is_invalid() {
        let bytes = raw_batch(&[0x80], 1);
        assert!(decode_err(&bytes).contains("varint"));
    }

    #[test]
    fn records_reserved_codec_is_unsupported() {
        let mut bytes = build(&sample_records());
        bytes[22] |= 0x07;
        let batch = Batch::parse(&bytes).unwrap();
        assert_eq!(
            decode_records(&batch, 1 << 20),
            Err(BatchError::UnsupportedCompression(7))
        );
    }

    #[test]
    fn records_iter_stops_after_an_error() {
        let bytes = raw_batch(&[0x80], 3);
        let batch = Batch::parse(&bytes).unwrap();
        let mut iter = RecordIter::new(&batch, batch.records_bytes());
        assert!(matches!(iter.next(), Some(Err(_))));
        assert!(iter.next().is_none());
    }
}

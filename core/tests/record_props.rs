//! Property tests for the record format, checked against an independent implementation:
//! the `kafka-protocol` crate's record batch encoder and decoder.
//!
//! - record batches round-trip both ways between `kafka-protocol` and our codec, for every
//!   compression codec;
//! - any flipped byte in a batch's CRC range is caught by `Batch::validate`;
//! - arbitrary bytes (and corrupted records or legacy messages behind valid CRCs) never make
//!   the parsers panic;
//! - patching the base offset and partition leader epoch keeps the CRC valid.

use brook_core::record::{
    convert_legacy, decode_records, is_legacy, set_base_offset, set_partition_leader_epoch, Batch,
    BatchBuilder, Batches, Compression, Header, Record,
};
use brook_core::{LeaderEpoch, Offset};
use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records as kp;
use proptest::prelude::*;

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];
const LIMIT_BYTES: usize = 1 << 22;

fn kp_codec(codec: Compression) -> kp::Compression {
    match codec {
        Compression::None => kp::Compression::None,
        Compression::Gzip => kp::Compression::Gzip,
        Compression::Snappy => kp::Compression::Snappy,
        Compression::Lz4 => kp::Compression::Lz4,
        Compression::Zstd => kp::Compression::Zstd,
    }
}

fn nullable_bytes(len_max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..len_max))
}

/// Headers with distinct keys: `kafka-protocol` keeps headers in a map.
fn headers() -> impl Strategy<Value = Vec<Header>> {
    prop::collection::btree_map("[a-z\u{e9}\u{4e2d}]{0,6}", nullable_bytes(8), 0..4).prop_map(
        |map| {
            map.into_iter()
                .map(|(key, value)| Header { key, value })
                .collect()
        },
    )
}

/// A record; timestamps stay within an int32 of each other, as `kafka-protocol` requires.
fn record() -> impl Strategy<Value = Record> {
    (
        1_600_000_000_000i64..1_600_001_000_000,
        nullable_bytes(64),
        nullable_bytes(256),
        headers(),
    )
        .prop_map(|(timestamp, key, value, headers)| Record {
            timestamp,
            key,
            value,
            headers,
        })
}

fn records() -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec(record(), 1..12)
}

fn codec() -> impl Strategy<Value = Compression> {
    prop::sample::select(CODECS.to_vec())
}

fn to_kp(record: &Record, offset: i64) -> kp::Record {
    kp::Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: 7,
        producer_epoch: 1,
        timestamp_type: kp::TimestampType::Creation,
        offset,
        sequence: offset as i32,
        timestamp: record.timestamp,
        key: record.key.clone().map(Bytes::from),
        value: record.value.clone().map(Bytes::from),
        headers: record
            .headers
            .iter()
            .map(|h| {
                (
                    StrBytes::from_string(h.key.clone()),
                    h.value.clone().map(Bytes::from),
                )
            })
            .collect(),
    }
}

fn from_kp(record: &kp::Record) -> Record {
    Record {
        timestamp: record.timestamp,
        key: record.key.as_ref().map(|b| b.to_vec()),
        value: record.value.as_ref().map(|b| b.to_vec()),
        headers: record
            .headers
            .iter()
            .map(|(key, value)| Header {
                key: key.to_string(),
                value: value.as_ref().map(|b| b.to_vec()),
            })
            .collect(),
    }
}

fn build(records: &[Record], base_offset: i64, codec: Compression) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Offset(base_offset)).compression(codec);
    for record in records {
        builder.push(record);
    }
    builder.build()
}

proptest! {
    /// Batches written by kafka-protocol decode to the same records with our codec.
    #[test]
    fn record_props_kafka_protocol_batches_decode(
        records in records(), base_offset in 0i64..1 << 40, codec in codec(),
    ) {
        let kp_records: Vec<_> = records
            .iter()
            .enumerate()
            .map(|(i, r)| to_kp(r, base_offset + i as i64))
            .collect();
        let mut buf = BytesMut::new();
        let options = kp::RecordEncodeOptions { version: 2, compression: kp_codec(codec) };
        kp::RecordBatchEncoder::encode(&mut buf, &kp_records, &options).expect("kp encodes");

        let batch = Batch::parse(&buf).expect("parses");
        prop_assert_eq!(batch.size(), buf.len());
        batch.validate(LIMIT_BYTES).expect("validates");
        prop_assert_eq!(batch.compression(), Some(codec));
        prop_assert_eq!(batch.base_offset(), Offset(base_offset));
        prop_assert_eq!(batch.record_count() as usize, records.len());
        prop_assert_eq!(batch.producer_id().0, 7);
        let decoded = decode_records(&batch, LIMIT_BYTES).expect("decodes");
        prop_assert_eq!(decoded.len(), records.len());
        for (i, (got, want)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(got.offset, Offset(base_offset + i as i64));
            prop_assert_eq!(&got.record, want);
        }
    }

    /// Batches we build decode to the same records with kafka-protocol.
    #[test]
    fn record_props_our_batches_decode_with_kafka_protocol(
        records in records(), base_offset in 0i64..1 << 40, codec in codec(),
    ) {
        // kafka-protocol 0.15 misreads null header values (kafka-protocol-rs issue #133,
        // fixed after 0.15.1), so this direction uses empty ones instead.
        let records: Vec<Record> = records.into_iter().map(without_null_header_values).collect();
        let bytes = build(&records, base_offset, codec);
        let mut buf = Bytes::from(bytes);
        // kafka-protocol reads raw snappy blocks only; give it our decompressor, which also
        // reads the xerial framing we write (as Kafka's Java client does).
        let decompress = |data: &mut Bytes, kp_codec_used: kp::Compression| {
            let ours = CODECS.into_iter().find(|c| kp_codec(*c) == kp_codec_used);
            let out = brook_core::record::decompress(ours.expect("known"), data, LIMIT_BYTES)?;
            Ok(Bytes::from(out))
        };
        let set = kp::RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(decompress))
            .expect("kp decodes");
        prop_assert_eq!(set.version, 2);
        prop_assert_eq!(set.compression, kp::RecordCompression::RecordBatch(kp_codec(codec)));
        prop_assert_eq!(set.records.len(), records.len());
        for (i, (got, want)) in set.records.iter().zip(&records).enumerate() {
            prop_assert_eq!(got.offset, base_offset + i as i64);
            prop_assert_eq!(&from_kp(got), want);
        }
    }

    /// Flipping any byte that the CRC covers makes validation fail (never pass, never panic).
    #[test]
    fn record_props_flipped_byte_in_crc_range_is_detected(
        records in records(), codec in codec(), at in any::<prop::sample::Index>(), bit in 0u8..8,
    ) {
        let mut bytes = build(&records, 0, codec);
        let position = 21 + at.index(bytes.len() - 21);
        bytes[position] ^= 1 << bit;
        let verdict = Batch::parse(&bytes).and_then(|batch| batch.validate(LIMIT_BYTES));
        prop_assert!(verdict.is_err(), "flip at {} went unnoticed", position);
    }

    /// Random bytes never make any parser panic.
    #[test]
    fn record_props_random_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512), magic in 0u8..3,
    ) {
        let mut bytes = bytes;
        feed_everything(&bytes);
        // Again with a plausible header, so that parsing gets further.
        if bytes.len() > 16 {
            let length = (bytes.len() - 12) as i32;
            bytes[8..12].copy_from_slice(&length.to_be_bytes());
            bytes[16] = magic;
            feed_everything(&bytes);
        }
    }

    /// Legacy messages with valid CRCs but random contents, plain or as the compressed inner
    /// set of a wrapper, never make the conversion panic.
    #[test]
    fn record_props_random_legacy_messages_never_panic(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..4),
        magic in 0u8..2, codec_index in 1usize..4,
    ) {
        let set: Vec<u8> = bodies
            .iter()
            .flat_map(|body| {
                let mut body = body.clone();
                body.insert(0, magic);
                legacy_frame(&body)
            })
            .collect();
        let _ = convert_legacy(&set, 1 << 16);
        let packed = brook_core::record::compress(CODECS[codec_index], &set);
        let mut wrapper = vec![magic, codec_index as u8];
        if magic == 1 {
            wrapper.extend_from_slice(&0i64.to_be_bytes());
        }
        wrapper.extend_from_slice(&(-1i32).to_be_bytes());
        wrapper.extend_from_slice(&(packed.len() as i32).to_be_bytes());
        wrapper.extend_from_slice(&packed);
        let _ = convert_legacy(&legacy_frame(&wrapper), 1 << 16);
    }

    /// Corrupted compressed data never makes a codec panic or exceed its limit.
    #[test]
    fn record_props_corrupt_compressed_data_never_panics(
        data in prop::collection::vec(0u8..4, 0..2048), codec in codec(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut packed = brook_core::record::compress(codec, &data);
        prop_assume!(!packed.is_empty());
        for (at, value) in flips {
            let position = at.index(packed.len());
            packed[position] = value;
        }
        let limit = data.len() + 16;
        if let Ok(out) = brook_core::record::decompress(codec, &packed, limit) {
            prop_assert!(out.len() <= limit);
        }
        let _ = brook_core::record::decompress_lz4_magic0(&packed, limit);
    }

    /// Random corruption of the records section of a valid batch, with the CRC fixed up so
    /// that decoding gets past validation, never panics.
    #[test]
    fn record_props_corrupt_records_never_panic(
        records in records(), codec in codec(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = build(&records, 0, codec);
        let section = bytes.len() - 61;
        for (at, value) in flips {
            bytes[61 + at.index(section)] = value;
        }
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        let batch = Batch::parse(&bytes).expect("header untouched");
        let _ = decode_records(&batch, LIMIT_BYTES);
    }

    /// Patching the base offset and leader epoch, as the log does on append, keeps the CRC.
    #[test]
    fn record_props_offset_and_epoch_patching_keeps_the_crc(
        records in records(), codec in codec(), offset in 0i64..i64::MAX / 2, epoch in 0i32..i32::MAX,
    ) {
        let mut bytes = build(&records, 0, codec);
        set_base_offset(&mut bytes, Offset(offset));
        set_partition_leader_epoch(&mut bytes, LeaderEpoch(epoch));
        let batch = Batch::parse(&bytes).expect("parses");
        batch.verify_crc().expect("CRC still valid");
        batch.validate(LIMIT_BYTES).expect("still valid");
        prop_assert_eq!(batch.base_offset(), Offset(offset));
        prop_assert_eq!(batch.partition_leader_epoch(), LeaderEpoch(epoch));
        let decoded = decode_records(&batch, LIMIT_BYTES).expect("decodes");
        prop_assert_eq!(decoded[0].offset, Offset(offset));
    }

    /// Legacy message sets written by kafka-protocol (magic 0 and 1, uncompressed or gzip,
    /// snappy, lz4) convert to v2 batches holding the same records.
    #[test]
    fn record_props_legacy_sets_convert(
        records in records(), magic in 0i8..2, codec_index in 0usize..4,
    ) {
        let codec = CODECS[codec_index];
        let plain: Vec<Record> =
            records.into_iter().map(|r| Record { headers: vec![], ..r }).collect();
        let kp_records: Vec<_> =
            plain.iter().enumerate().map(|(i, r)| to_kp(r, i as i64)).collect();
        let mut buf = BytesMut::new();
        let options = kp::RecordEncodeOptions { version: magic, compression: kp_codec(codec) };
        let encoded = kp::RecordBatchEncoder::encode(&mut buf, &kp_records, &options);
        // kafka-protocol writes raw snappy; lz4 with magic 0 it refuses to write.
        prop_assume!(encoded.is_ok());
        prop_assert!(is_legacy(&buf));
        let converted = convert_legacy(&buf, LIMIT_BYTES).expect("converts");
        let mut got = Vec::new();
        for batch in Batches::new(&converted) {
            let batch = batch.expect("batch");
            batch.validate(LIMIT_BYTES).expect("valid");
            got.extend(decode_records(&batch, LIMIT_BYTES).expect("decodes"));
        }
        prop_assert_eq!(got.len(), plain.len());
        for (i, (got, want)) in got.iter().zip(&plain).enumerate() {
            prop_assert_eq!(got.offset, Offset(i as i64));
            let timestamp = if magic == 0 { -1 } else { want.timestamp };
            prop_assert_eq!(&got.record, &Record { timestamp, ..want.clone() });
        }
    }
}

/// Frames a legacy message body (magic onwards) with offset, length and a valid CRC.
fn legacy_frame(body: &[u8]) -> Vec<u8> {
    let mut out = 0i64.to_be_bytes().to_vec();
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn without_null_header_values(record: Record) -> Record {
    let headers = record
        .headers
        .into_iter()
        .map(|h| Header {
            value: Some(h.value.unwrap_or_default()),
            ..h
        })
        .collect();
    Record { headers, ..record }
}

/// Runs every parser over `bytes`, ignoring results: only a panic would fail the test.
fn feed_everything(bytes: &[u8]) {
    if let Ok(batch) = Batch::parse(bytes) {
        let _ = batch.validate(LIMIT_BYTES);
        let _ = decode_records(&batch, 1 << 16);
    }
    for batch in Batches::new(bytes).flatten() {
        let _ = decode_records(&batch, 1 << 16);
    }
    let _ = is_legacy(bytes);
    let _ = convert_legacy(bytes, 1 << 16);
    for codec in CODECS {
        let _ = brook_core::record::decompress(codec, bytes, 1 << 16);
    }
    let _ = brook_core::record::decompress_lz4_magic0(bytes, 1 << 16);
}

//! Compressing and decompressing a batch's records section with the five Kafka codecs.
//!
//! Wire formats, as the clients write them:
//!
//! - **gzip**: one or more gzip members (RFC 1952).
//! - **snappy**: Kafka's Java client writes the xerial `SnappyOutputStream` framing (an 8-byte
//!   magic, two version ints, then blocks of `[u32 BE length][raw snappy block]`); librdkafka
//!   writes one plain raw snappy block. [`decompress`] accepts both; [`compress`] writes xerial.
//! - **lz4**: the standard LZ4 frame format (v2 batches and magic 1 messages). Magic 0 messages
//!   from old clients carry a header checksum computed over the wrong bytes; see
//!   [`decompress_lz4_magic0`].
//! - **zstd**: one or more zstd frames.
//!
//! Every decompression is bounded by a byte limit so that a small compressed input cannot make
//! the broker allocate without bound (a decompression bomb).

use std::io::{Read, Write};

use super::batch::{BatchError, Compression};

/// The xerial snappy stream header: magic, then version 1 and minimum compatible version 1.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Length of the xerial header: magic plus two big-endian int32 versions.
const XERIAL_HEADER_LEN: usize = 16;
/// Uncompressed bytes per xerial block; the Java client's default block size.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// The zstd level Kafka uses by default.
const ZSTD_LEVEL: i32 = 3;
/// Smallest zstd window (log2 bytes) we always accept: level 19 streams use 2^23.
const ZSTD_WINDOW_LOG_MIN: u32 = 23;
/// Largest zstd window (log2 bytes) we accept: zstd's own default decoding limit.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// The LZ4 frame magic number, little-endian on the wire.
const LZ4_FRAME_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];

/// Compresses `data` with `codec` in the format Kafka's Java client writes. Compressing into
/// memory cannot fail; a failure would be a bug in a codec library, hence the panic.
pub fn compress(codec: Compression, data: &[u8]) -> Vec<u8> {
    match codec {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder
                .write_all(data)
                .expect("gzip into memory cannot fail");
            encoder.finish().expect("gzip into memory cannot fail")
        }
        Compression::Snappy => compress_xerial(data),
        Compression::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder
                .write_all(data)
                .expect("lz4 into memory cannot fail");
            encoder.finish().expect("lz4 into memory cannot fail")
        }
        Compression::Zstd => {
            zstd::bulk::compress(data, ZSTD_LEVEL).expect("zstd into memory cannot fail")
        }
    }
}

/// Decompresses `data`, failing with [`BatchError::Decompression`] on malformed input or if the
/// output would exceed `limit_bytes`.
pub fn decompress(
    codec: Compression,
    data: &[u8],
    limit_bytes: usize,
) -> Result<Vec<u8>, BatchError> {
    match codec {
        Compression::None => {
            if data.len() > limit_bytes {
                return Err(over_limit(codec, limit_bytes));
            }
            Ok(data.to_vec())
        }
        Compression::Gzip => {
            read_bounded(codec, flate2::read::MultiGzDecoder::new(data), limit_bytes)
        }
        Compression::Snappy => decompress_snappy(data, limit_bytes),
        Compression::Lz4 => {
            read_bounded(codec, lz4_flex::frame::FrameDecoder::new(data), limit_bytes)
        }
        Compression::Zstd => decompress_zstd(data, limit_bytes),
    }
}

/// Decompresses an LZ4 value from a magic 0 message. Kafka clients before 0.10 computed the
/// frame header checksum over the magic number as well as the descriptor, so a correct decoder
/// rejects their frames; this rewrites the checksum byte before decoding. Frames written
/// correctly decode unchanged.
pub fn decompress_lz4_magic0(data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, BatchError> {
    let mut fixed = data.to_vec();
    if let Some(at) = lz4_descriptor_end(&fixed) {
        fixed[at] = (xxh32_short(&fixed[4..at]) >> 8) as u8;
    }
    decompress(Compression::Lz4, &fixed, limit_bytes)
}

fn over_limit(codec: Compression, limit_bytes: usize) -> BatchError {
    BatchError::Decompression {
        codec,
        reason: format!("decompressed size exceeds the limit of {limit_bytes} bytes"),
    }
}

fn codec_error(codec: Compression, reason: impl std::fmt::Display) -> BatchError {
    BatchError::Decompression {
        codec,
        reason: reason.to_string(),
    }
}

/// Reads a decoder to its end, stopping one byte past `limit_bytes` to detect a bomb.
fn read_bounded(
    codec: Compression,
    reader: impl Read,
    limit_bytes: usize,
) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|err| codec_error(codec, err))?;
    if out.len() > limit_bytes {
        return Err(over_limit(codec, limit_bytes));
    }
    Ok(out)
}

fn decompress_zstd(data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, BatchError> {
    let codec = Compression::Zstd;
    let mut decoder =
        zstd::stream::read::Decoder::with_buffer(data).map_err(|err| codec_error(codec, err))?;
    // A valid stream never refers further back than its output, so a window beyond the
    // limit is only needed by streams we would refuse anyway; the floor keeps frames from
    // compressors that do not pledge a size (the Java client) decodable.
    let needed = usize::BITS - limit_bytes.leading_zeros();
    let window_log = needed.clamp(ZSTD_WINDOW_LOG_MIN, ZSTD_WINDOW_LOG_MAX);
    decoder
        .window_log_max(window_log)
        .map_err(|err| codec_error(codec, err))?;
    read_bounded(codec, decoder, limit_bytes)
}

fn compress_xerial(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + data.len() / 2 + 64);
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for chunk in data.chunks(XERIAL_BLOCK_BYTES) {
        let block = encoder
            .compress_vec(chunk)
            .expect("a 32 KiB block is within snappy's limits");
        let len = u32::try_from(block.len()).expect("a snappy block of 32 KiB input fits u32");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&block);
    }
    out
}

fn decompress_snappy(data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, BatchError> {
    if data.len() >= XERIAL_MAGIC.len() && data[..XERIAL_MAGIC.len()] == XERIAL_MAGIC {
        return decompress_xerial(data, limit_bytes);
    }
    let mut out = Vec::new();
    snappy_block_into(data, &mut out, limit_bytes)?;
    Ok(out)
}

fn decompress_xerial(data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, BatchError> {
    let codec = Compression::Snappy;
    if data.len() < XERIAL_HEADER_LEN {
        return Err(codec_error(codec, "xerial header truncated"));
    }
    let mut rest = &data[XERIAL_HEADER_LEN..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(codec_error(codec, "xerial block length truncated"));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..];
        if len > rest.len() {
            return Err(codec_error(codec, "xerial block extends past the data"));
        }
        snappy_block_into(&rest[..len], &mut out, limit_bytes)?;
        rest = &rest[len..];
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, keeping `out` within `limit_bytes`.
fn snappy_block_into(
    block: &[u8],
    out: &mut Vec<u8>,
    limit_bytes: usize,
) -> Result<(), BatchError> {
    let codec = Compression::Snappy;
    let len = snap::raw::decompress_len(block).map_err(|err| codec_error(codec, err))?;
    if len > limit_bytes.saturating_sub(out.len()) {
        return Err(over_limit(codec, limit_bytes));
    }
    let start = out.len();
    out.resize(start + len, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|err| codec_error(codec, err))?;
    out.truncate(start + written);
    Ok(())
}

/// Index of the header checksum byte of an LZ4 frame, or `None` if `data` does not start with
/// a complete LZ4 frame descriptor.
fn lz4_descriptor_end(data: &[u8]) -> Option<usize> {
    if data.len() < 7 || data[..4] != LZ4_FRAME_MAGIC {
        return None;
    }
    let flags = data[4];
    let mut end = 6; // magic, FLG, BD
    if flags & 0x08 != 0 {
        end += 8; // content size
    }
    if flags & 0x01 != 0 {
        end += 4; // dictionary id
    }
    (end < data.len()).then_some(end)
}

/// XXH32 with seed 0 of fewer than 16 bytes (an LZ4 frame descriptor is at most 14).
fn xxh32_short(input: &[u8]) -> u32 {
    const PRIME1: u32 = 0x9E37_79B1;
    const PRIME2: u32 = 0x85EB_CA77;
    const PRIME3: u32 = 0xC2B2_AE3D;
    const PRIME4: u32 = 0x27D4_EB2F;
    const PRIME5: u32 = 0x1656_67B1;
    debug_assert!(input.len() < 16, "the short path covers descriptors only");
    let mut hash = PRIME5.wrapping_add(input.len() as u32);
    let mut words = input.chunks_exact(4);
    for word in &mut words {
        let lane = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        hash = hash.wrapping_add(lane.wrapping_mul(PRIME3));
        hash = hash.rotate_left(17).wrapping_mul(PRIME4);
    }
    for &byte in words.remainder() {
        hash = hash.wrapping_add(u32::from(byte).wrapping_mul(PRIME5));
        hash = hash.rotate_left(11).wrapping_mul(PRIME1);
    }
    hash ^= hash >> 15;
    hash = hash.wrapping_mul(PRIME2);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(PRIME3);
    hash ^ (hash >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
            .collect()
    }

    #[test]
    fn compression_round_trips_every_codec() {
        for len in [
            0,
            1,
            100,
            XERIAL_BLOCK_BYTES,
            3 * XERIAL_BLOCK_BYTES + 17,
            300_000,
        ] {
            let data = sample(len);
            for codec in CODECS {
                let packed = compress(codec, &data);
                let unpacked = decompress(codec, &packed, data.len()).expect("round trip");
                assert_eq!(unpacked, data, "{codec:?} with {len} bytes");
            }
        }
    }

    #[test]
    fn compression_limit_rejects_a_bomb() {
        let data = vec![0u8; 1 << 20];
        for codec in CODECS {
            let packed = compress(codec, &data);
            let err = decompress(codec, &packed, (1 << 20) - 1).expect_err("over the limit");
            assert!(
                matches!(err, BatchError::Decompression { .. }),
                "{codec:?}: {err}"
            );
            assert!(
                decompress(codec, &packed, 1 << 20).is_ok(),
                "{codec:?} at the limit"
            );
        }
    }

    #[test]
    fn compression_snappy_writes_xerial_framing() {
        let packed = compress(Compression::Snappy, b"hello hello hello");
        assert_eq!(packed[..8], XERIAL_MAGIC);
        assert_eq!(packed[8..16], [0, 0, 0, 1, 0, 0, 0, 1]);
        let block_len = u32::from_be_bytes(packed[16..20].try_into().unwrap()) as usize;
        assert_eq!(packed.len(), 20 + block_len, "one block");
    }

    #[test]
    fn compression_snappy_reads_raw_blocks_as_librdkafka_sends() {
        let data = sample(100_000);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw, data.len()).unwrap(),
            data
        );
        let err = decompress(Compression::Snappy, &raw, data.len() - 1).unwrap_err();
        assert!(matches!(err, BatchError::Decompression { .. }));
    }

    #[test]
    fn compression_snappy_rejects_truncated_xerial() {
        let packed = compress(Compression::Snappy, &sample(1000));
        for cut in [10, 17, 19, packed.len() - 1] {
            assert!(
                decompress(Compression::Snappy, &packed[..cut], 10_000).is_err(),
                "{cut}"
            );
        }
    }

    #[test]
    fn compression_garbage_is_an_error_for_every_codec() {
        let garbage = [0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8];
        for codec in CODECS.into_iter().skip(1) {
            assert!(decompress(codec, &garbage, 1 << 16).is_err(), "{codec:?}");
        }
    }

    #[test]
    fn compression_xxh32_matches_lz4_frame_header_checksum() {
        let frame = compress(Compression::Lz4, b"some bytes");
        let end = lz4_descriptor_end(&frame).expect("descriptor");
        assert_eq!((xxh32_short(&frame[4..end]) >> 8) as u8, frame[end]);
        // Reference values of XXH32 with seed 0.
        assert_eq!(xxh32_short(b""), 0x02CC_5D05);
        assert_eq!(xxh32_short(b"a"), 0x550D_7456);
        assert_eq!(xxh32_short(b"abc"), 0x32D1_53FF);
    }

    #[test]
    fn compression_lz4_magic0_accepts_the_broken_header_checksum() {
        let data = sample(5000);
        let mut frame = compress(Compression::Lz4, &data);
        let end = lz4_descriptor_end(&frame).expect("descriptor");
        // What pre-0.10 clients wrote: the checksum over magic and descriptor.
        let broken = (xxh32_short(&frame[..end]) >> 8) as u8;
        assert_ne!(
            broken, frame[end],
            "the two checksums differ for this frame"
        );
        frame[end] = broken;
        assert!(decompress(Compression::Lz4, &frame, data.len()).is_err());
        assert_eq!(decompress_lz4_magic0(&frame, data.len()).unwrap(), data);
    }
}

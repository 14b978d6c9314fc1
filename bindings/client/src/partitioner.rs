//! Choosing a partition for a record the way the Java client's default partitioner does, so
//! a key lands in the same partition whichever client wrote it: murmur2 of the key bytes,
//! made positive with `& 0x7fffffff`, modulo the partition count. Records without a key
//! stick to one partition until about a batch's worth of bytes went there, then move on
//! round-robin (KIP-480's sticky partitioning, without the load-based choice).

use std::collections::HashMap;

/// Kafka's murmur2 (the Java client's `Utils.murmur2`): 32-bit MurmurHash2 with seed
/// `0x9747b28c`, reading the input as little-endian 4-byte words.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, &byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `partitions` partitions, as the Java client computes it.
/// Panics if `partitions` is not positive (a topic always has a partition).
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// The partitioner state of one producer: the sticky partition of each topic for records
/// without a key.
#[derive(Debug, Default)]
pub struct Partitioner {
    /// Topic → (current sticky partition, bytes sent to it since it was chosen).
    sticky: HashMap<String, (i32, usize)>,
    /// Where a topic's first sticky partition starts, varied per producer.
    start: u32,
}

impl Partitioner {
    /// A partitioner whose first sticky partitions start at `start` (a seed from the caller,
    /// so that several producers spread their keyless records).
    pub fn new(start: u32) -> Partitioner {
        Partitioner {
            sticky: HashMap::new(),
            start,
        }
    }

    /// The partition for a record of `size_bytes` with `key` on a topic of `partitions`
    /// partitions; keyless records switch partition after `batch_bytes` went to one.
    pub fn partition(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        size_bytes: usize,
        partitions: i32,
        batch_bytes: usize,
    ) -> i32 {
        assert!(partitions > 0, "a topic has at least one partition");
        if let Some(key) = key {
            return partition_for_key(key, partitions);
        }
        let start = (self.start % partitions as u32) as i32;
        let entry = self.sticky.entry(topic.to_string()).or_insert((start, 0));
        if entry.1 >= batch_bytes.max(1) {
            *entry = ((entry.0 + 1) % partitions, 0);
        }
        // A topic that shrank in our metadata (or grew) keeps a valid index.
        entry.0 %= partitions;
        entry.1 += size_bytes;
        entry.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own test vectors for `Utils.murmur2` (UtilsTest.testMurmur2).
    #[test]
    fn murmur2_matches_kafka_test_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn keyed_records_use_positive_murmur2_modulo_partitions() {
        // murmur2("foobar") = -790332482; & 0x7fffffff = 1357151166.
        assert_eq!(partition_for_key(b"foobar", 7), 1_357_151_166 % 7);
        let mut partitioner = Partitioner::new(5);
        for n in 1..20 {
            let p = partitioner.partition("t", Some(b"foobar"), 10, n, 100);
            assert_eq!(p, partition_for_key(b"foobar", n));
        }
    }

    #[test]
    fn keyless_records_stick_then_rotate() {
        let mut partitioner = Partitioner::new(1);
        // 100-byte batches, 40-byte records: three records per sticky partition.
        let chosen: Vec<i32> = (0..9)
            .map(|_| partitioner.partition("t", None, 40, 3, 100))
            .collect();
        assert_eq!(chosen, vec![1, 1, 1, 2, 2, 2, 0, 0, 0]);
        // Topics are independent.
        assert_eq!(partitioner.partition("u", None, 40, 3, 100), 1);
    }

    #[test]
    fn sticky_partition_stays_valid_when_partitions_shrink() {
        let mut partitioner = Partitioner::new(4);
        assert_eq!(partitioner.partition("t", None, 1, 5, 100), 4);
        assert_eq!(partitioner.partition("t", None, 1, 2, 100), 0);
    }
}

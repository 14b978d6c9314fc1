//! `brook produce`: one record per stdin line (like `kafka-console-producer`).
//!
//! Lines are gathered into one v2 batch per partition and sent as one Produce request when a
//! batch reaches [`BATCH_BYTES_MAX`], the request reaches [`REQUEST_RECORDS_MAX`] records, stdin
//! has nothing more buffered (so interactive lines go out at once), or at end of input.
//!
//! Partitioning follows Kafka's default partitioner for keyed records — `murmur2(key) &
//! 0x7fffffff` modulo the partition count, so a key lands where a Java producer would put it —
//! and goes round robin over the partitions for records without a key. `--partition` pins
//! every record to one partition.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::time::{SystemTime, UNIX_EPOCH};

use brook_core::record::{BatchBuilder, Compression, Record};
use brook_core::types::Offset;
use brook_core::ErrorCode;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;

use super::client::Client;
use super::topics::topic_name;
use super::{ConnectArgs, ToolError};

/// Largest uncompressed batch per partition (Kafka's `batch.size` default). A single longer
/// line still goes out, alone in its batch.
pub const BATCH_BYTES_MAX: usize = 16 * 1024;
/// Most records in one Produce request.
pub const REQUEST_RECORDS_MAX: usize = 500;
/// How long the broker may wait for acknowledgements.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// Bytes of stdin read ahead; a line is sent once this buffer runs dry.
const STDIN_BUFFER_BYTES: usize = 64 * 1024;
/// Produce versions spoken (v7+ as Kafka 2.1 clients send).
const PRODUCE_VERSIONS: (i16, i16) = (7, 9);

/// Codecs selectable with `--compression`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionArg {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(arg: CompressionArg) -> Compression {
        match arg {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

/// Flags of `brook produce`.
#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// Where the broker is.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The topic to write to (auto-created if the broker allows it).
    pub topic: String,
    /// Split each line at the first SEP into key and value; a line without SEP fails.
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Write every record to this partition instead of choosing by key.
    #[arg(long, value_name = "N")]
    pub partition: Option<i32>,
    /// Acknowledgements to wait for: -1 (all in-sync replicas), 1 (leader) or 0 (none).
    #[arg(long, value_name = "N", default_value_t = -1, allow_negative_numbers = true)]
    pub acks: i16,
    /// Codec for the batches.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
}

/// Reads stdin to its end, producing every line; fails if any record was not acknowledged.
pub fn run(args: ProduceArgs) -> Result<(), ToolError> {
    if !matches!(args.acks, -1..=1) {
        return Err(ToolError::Usage(format!(
            "--acks {} is not -1, 0 or 1",
            args.acks
        )));
    }
    let mut client = Client::connect(&args.connect.bootstrap)?;
    let version = client.version::<ProduceRequest>(PRODUCE_VERSIONS.0, PRODUCE_VERSIONS.1)?;
    let info = super::topic_info(&mut client, &args.topic, true)?;
    let partition_count = info.partitions.len() as i32;
    if partition_count == 0 {
        return Err(ToolError::Usage(format!(
            "topic {} has no partitions",
            args.topic
        )));
    }
    if let Some(partition) = args.partition {
        if !(0..partition_count).contains(&partition) {
            return Err(ToolError::Usage(format!(
                "--partition {partition}: topic {} has partitions 0..={}",
                args.topic,
                partition_count - 1
            )));
        }
    }
    let mut producer = Producer {
        client,
        version,
        topic: args.topic.clone(),
        acks: args.acks,
        compression: args.compression.into(),
        pending: BTreeMap::new(),
        pending_records: 0,
        total: 0,
        failed: 0,
    };
    let mut chooser = Partitioner::new(partition_count, args.partition);
    let mut stdin = BufReader::with_capacity(STDIN_BUFFER_BYTES, std::io::stdin().lock());
    read_lines(
        &mut stdin,
        args.key_separator.as_deref(),
        |line| match line {
            Line::Record { key, value } => {
                let partition = chooser.choose(key.as_deref());
                producer.add(partition, key, value)
            }
            Line::Malformed { number } => {
                eprintln!(
                    "error: line {number}: no key separator {:?} found; record skipped",
                    args.key_separator.as_deref().unwrap_or_default()
                );
                producer.total += 1;
                producer.failed += 1;
                Ok(())
            }
            Line::Idle => producer.flush(),
        },
    )?;
    producer.flush()?;
    if producer.failed > 0 {
        return Err(ToolError::RecordsFailed {
            failed: producer.failed,
            total: producer.total,
        });
    }
    Ok(())
}

/// One event of the stdin reader.
enum Line {
    /// A record to send.
    Record {
        key: Option<Vec<u8>>,
        value: Vec<u8>,
    },
    /// A line without the key separator (1-based line number).
    Malformed { number: u64 },
    /// Nothing more is buffered: the next read may block.
    Idle,
}

/// Calls `on_line` for every line of `input` (without its `\n` or `\r\n`), split at the first
/// `separator` when given, and with [`Line::Idle`] whenever the read-ahead buffer runs dry.
fn read_lines<R: Read>(
    input: &mut BufReader<R>,
    separator: Option<&str>,
    mut on_line: impl FnMut(Line) -> Result<(), ToolError>,
) -> Result<(), ToolError> {
    let mut buf = Vec::new();
    let mut number = 0u64;
    loop {
        buf.clear();
        let read = input
            .read_until(b'\n', &mut buf)
            .map_err(|source| ToolError::Io {
                what: "cannot read stdin",
                source,
            })?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        let line = match separator {
            None => Line::Record {
                key: None,
                value: buf.clone(),
            },
            Some(sep) => match find(&buf, sep.as_bytes()) {
                Some(at) => Line::Record {
                    key: Some(buf[..at].to_vec()),
                    value: buf[at + sep.len()..].to_vec(),
                },
                None => Line::Malformed { number },
            },
        };
        on_line(line)?;
        if input.buffer().is_empty() {
            on_line(Line::Idle)?;
        }
    }
}

/// The position of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Chooses each record's partition.
struct Partitioner {
    partition_count: i32,
    fixed: Option<i32>,
    next_round_robin: i32,
}

impl Partitioner {
    fn new(partition_count: i32, fixed: Option<i32>) -> Partitioner {
        assert!(partition_count > 0, "a topic has partitions");
        Partitioner {
            partition_count,
            fixed,
            next_round_robin: 0,
        }
    }

    fn choose(&mut self, key: Option<&[u8]>) -> i32 {
        if let Some(partition) = self.fixed {
            return partition;
        }
        let partition = match key {
            Some(key) => partition_for_key(key, self.partition_count),
            None => {
                let partition = self.next_round_robin;
                self.next_round_robin = (self.next_round_robin + 1) % self.partition_count;
                partition
            }
        };
        debug_assert!((0..self.partition_count).contains(&partition));
        partition
    }
}

/// The partition Kafka's default partitioner gives a keyed record.
pub fn partition_for_key(key: &[u8], partition_count: i32) -> i32 {
    assert!(partition_count > 0, "a topic has partitions");
    (murmur2(key) & 0x7fff_ffff) % partition_count
}

/// Kafka's 32-bit murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), seed 0x9747b28c.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        if tail.len() >= 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Records waiting to be sent to one partition.
struct PendingBatch {
    builder: BatchBuilder,
}

/// Batches records per partition and sends them.
struct Producer {
    client: Client,
    version: i16,
    topic: String,
    acks: i16,
    compression: Compression,
    pending: BTreeMap<i32, PendingBatch>,
    /// Records in `pending`, over all partitions.
    pending_records: usize,
    /// Records read so far, sent or not.
    total: u64,
    /// Records known to have failed.
    failed: u64,
}

impl Producer {
    /// Adds a record for `partition`, sending first if its batch or the request is full.
    fn add(
        &mut self,
        partition: i32,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<(), ToolError> {
        let record = Record {
            timestamp: now_ms(),
            key,
            value: Some(value),
            headers: Vec::new(),
        };
        self.total += 1;
        if self.pending_records >= REQUEST_RECORDS_MAX || !self.try_push(partition, &record) {
            self.flush()?;
            if !self.try_push(partition, &record) {
                // Longer than a batch on its own: send it alone (the broker judges its size).
                self.batch(partition).builder.push(&record);
                self.pending_records += 1;
            }
        }
        Ok(())
    }

    fn try_push(&mut self, partition: i32, record: &Record) -> bool {
        let pushed = self
            .batch(partition)
            .builder
            .push_within(record, BATCH_BYTES_MAX);
        if pushed {
            self.pending_records += 1;
        }
        pushed
    }

    fn batch(&mut self, partition: i32) -> &mut PendingBatch {
        let compression = self.compression;
        self.pending
            .entry(partition)
            .or_insert_with(|| PendingBatch {
                builder: BatchBuilder::new(Offset(0)).compression(compression),
            })
    }

    /// Sends every pending batch in one Produce request and reports each failed batch.
    fn flush(&mut self) -> Result<(), ToolError> {
        let batches: Vec<(i32, PendingBatch)> = std::mem::take(&mut self.pending)
            .into_iter()
            .filter(|(_, batch)| !batch.builder.is_empty())
            .collect();
        self.pending_records = 0;
        if batches.is_empty() {
            return Ok(());
        }
        let counts: BTreeMap<i32, u64> = batches
            .iter()
            .map(|(partition, batch)| (*partition, batch.builder.len() as u64))
            .collect();
        let partition_data = batches
            .iter()
            .map(|(partition, batch)| {
                PartitionProduceData::default()
                    .with_index(*partition)
                    .with_records(Some(Bytes::from(batch.builder.build())))
            })
            .collect();
        let request = ProduceRequest::default()
            .with_acks(self.acks)
            .with_timeout_ms(PRODUCE_TIMEOUT_MS)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&self.topic))
                .with_partition_data(partition_data)]);
        if self.acks == 0 {
            self.client.send_only(self.version, &request)?;
            return Ok(());
        }
        let response = self.client.call(self.version, &request)?;
        let mut answered = BTreeMap::new();
        for topic in &response.responses {
            for partition in &topic.partition_responses {
                answered.insert(partition.index, partition);
            }
        }
        for (partition, count) in counts {
            let failure = match answered.get(&partition) {
                None => Some("the broker did not answer for it".to_string()),
                Some(answer) if answer.error_code != 0 => {
                    let code = ErrorCode::from_code(answer.error_code);
                    Some(match answer.error_message.as_ref() {
                        Some(message) if !message.is_empty() => format!("{code}: {message}"),
                        _ => code.to_string(),
                    })
                }
                Some(_) => None,
            };
            if let Some(reason) = failure {
                eprintln!(
                    "error: batch of {count} records to {}-{partition} failed: {reason}",
                    self.topic
                );
                self.failed += count;
            }
        }
        Ok(())
    }
}

/// Wall-clock time in milliseconds, the records' create time.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn produce_murmur2_matches_kafka() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (data, expected) in cases {
            assert_eq!(
                murmur2(data),
                *expected,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn produce_partitioner_keys_hash_and_null_keys_round_robin() {
        let mut chooser = Partitioner::new(3, None);
        let chosen: Vec<i32> = (0..4).map(|_| chooser.choose(None)).collect();
        assert_eq!(chosen, [0, 1, 2, 0]);
        let key_partition = chooser.choose(Some(b"user-1"));
        assert_eq!(chooser.choose(Some(b"user-1")), key_partition);
        assert_eq!(key_partition, partition_for_key(b"user-1", 3));
        let mut fixed = Partitioner::new(3, Some(2));
        assert_eq!(fixed.choose(Some(b"user-1")), 2);
        assert_eq!(fixed.choose(None), 2);
    }

    #[test]
    fn produce_lines_split_at_first_separator() {
        let input = b"k1:v1\r\nno-separator\nk2:v:2\n:empty-key".to_vec();
        let mut reader = BufReader::new(&input[..]);
        let mut seen = Vec::new();
        read_lines(&mut reader, Some(":"), |line| {
            match line {
                Line::Record { key, value } => seen.push(format!(
                    "{}={}",
                    String::from_utf8(key.unwrap()).unwrap(),
                    String::from_utf8(value).unwrap()
                )),
                Line::Malformed { number } => seen.push(format!("bad {number}")),
                Line::Idle => {}
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["k1=v1", "bad 2", "k2=v:2", "=empty-key"]);
    }
}

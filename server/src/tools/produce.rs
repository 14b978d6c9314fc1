//! `brook produce`: one record per stdin line (like `kafka-console-producer`).
//!
//! Records go through `brook-client`'s producer, which batches them per partition
//! (`linger.ms` [`LINGER_MS`], so interactive lines go out at once) and retries what can be
//! retried. The tool picks every record's partition itself: Kafka's default partitioner for
//! keyed records — `murmur2(key) & 0x7fffffff` modulo the partition count, so a key lands
//! where a Java producer would put it — and round robin over the partitions for records
//! without a key. `--partition` pins every record to one partition.
//!
//! Delivery reports are collected as they arrive; at most [`PENDING_DELIVERIES_MAX`] wait
//! at once, and a failed record is counted and reported on stderr, once per partition and
//! reason.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read};

use brook_client::{blocking, Acks, Compression, Error, ProducerConfig, ProducerRecord};
pub use brook_client::{murmur2, partition_for_key};
use clap::{Args, ValueEnum};

use super::{ConnectArgs, ToolError};

/// How long the producer waits for more lines before sending a batch.
pub const LINGER_MS: u64 = 5;
/// Most delivery reports waited for at once; reading stdin pauses beyond it.
pub const PENDING_DELIVERIES_MAX: usize = 10_000;
/// Bytes of stdin read ahead.
const STDIN_BUFFER_BYTES: usize = 64 * 1024;

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
    let acks = match args.acks {
        -1 => Acks::All,
        0 => Acks::None,
        1 => Acks::Leader,
        other => {
            return Err(ToolError::Usage(format!(
                "--acks {other} is not -1, 0 or 1"
            )))
        }
    };
    let admin = super::admin(&args.connect.bootstrap)?;
    let info = super::topic_info(&admin, &args.topic, true)?;
    drop(admin);
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
    let mut config = ProducerConfig::new(&args.connect.bootstrap);
    config.client_id = super::CLIENT_ID.to_string();
    config.acks = acks;
    config.compression = args.compression.into();
    config.linger_ms = LINGER_MS;
    // Idempotence needs acks=all; with fewer acks the producer runs without it.
    config.enable_idempotence = acks == Acks::All;
    let producer = blocking::Producer::new(config)?;
    let mut sender = Sender {
        producer,
        topic: args.topic.clone(),
        pending: VecDeque::new(),
        total: 0,
        failures: BTreeMap::new(),
    };
    let mut chooser = Partitioner::new(partition_count, args.partition);
    let mut stdin = BufReader::with_capacity(STDIN_BUFFER_BYTES, std::io::stdin().lock());
    read_lines(
        &mut stdin,
        args.key_separator.as_deref(),
        |line| match line {
            Line::Record { key, value } => {
                let partition = chooser.choose(key.as_deref());
                sender.send(partition, key, value)
            }
            Line::Malformed { number } => {
                eprintln!(
                    "error: line {number}: no key separator {:?} found; record skipped",
                    args.key_separator.as_deref().unwrap_or_default()
                );
                sender.total += 1;
                sender.fail(-1, "no key separator".to_string());
                Ok(())
            }
            Line::Idle => sender.collect(false),
        },
    )?;
    sender.producer.flush(None)?;
    sender.collect(true)?;
    let failed: u64 = sender.failures.values().sum();
    for ((partition, reason), count) in &sender.failures {
        if *partition >= 0 {
            eprintln!(
                "error: {count} records to {}-{partition} failed: {reason}",
                args.topic
            );
        }
    }
    if failed > 0 {
        return Err(ToolError::RecordsFailed {
            failed,
            total: sender.total,
        });
    }
    Ok(())
}

/// Sends records and gathers their delivery reports.
struct Sender {
    producer: blocking::Producer,
    topic: String,
    /// Delivery reports not yet collected, oldest first, with their partitions.
    pending: VecDeque<(i32, blocking::Delivery)>,
    /// Records read so far, sent or not.
    total: u64,
    /// (partition, reason) → records that failed so (partition -1: never sent).
    failures: BTreeMap<(i32, String), u64>,
}

impl Sender {
    fn send(
        &mut self,
        partition: i32,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<(), ToolError> {
        self.total += 1;
        let mut record = ProducerRecord::new(&self.topic, value).partition(partition);
        record.key = key;
        match self.producer.send(record) {
            Ok(delivery) => self.pending.push_back((partition, delivery)),
            // The producer is closed or its queue stayed full: nothing more will go out.
            Err(err @ (Error::Closed | Error::Timeout(_))) => return Err(err.into()),
            Err(err) => self.fail(partition, err.to_string()),
        }
        while self.pending.len() > PENDING_DELIVERIES_MAX {
            let (partition, delivery) = self.pending.pop_front().expect("over the limit");
            if let Err(err) = delivery.wait(None) {
                self.fail(partition, err.to_string());
            }
        }
        Ok(())
    }

    /// Takes the delivery reports that have arrived, or, with `all`, waits for every one.
    fn collect(&mut self, all: bool) -> Result<(), ToolError> {
        while let Some((partition, delivery)) = self.pending.front_mut() {
            let partition = *partition;
            let outcome = if all {
                delivery.wait_for(None)
            } else {
                delivery.try_take()
            };
            let Some(outcome) = outcome else {
                break; // the oldest is still under way, and so are the newer ones
            };
            self.pending.pop_front();
            if let Err(err) = outcome {
                self.fail(partition, err.to_string());
            }
        }
        Ok(())
    }

    fn fail(&mut self, partition: i32, reason: String) {
        *self.failures.entry((partition, reason)).or_default() += 1;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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

//! The producer: `send` picks a partition and hands the record to a background task that
//! batches per partition (`linger_ms`, `batch_size`), compresses, sends one batch per
//! partition at a time to the leader, retries retriable failures with backoff and answers
//! each record's [`DeliveryFuture`].
//!
//! With `enable_idempotence` (the default) the task first gets a producer id
//! (InitProducerId) and numbers each partition's records, so a retry of a batch the broker
//! already wrote is recognised as a duplicate instead of written twice.

mod accumulator;
mod sender;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brook_core::record::{Compression, Header, Record};
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::network::{Network, NetworkConfig};
use crate::partitioner::Partitioner;
use crate::{parse_bool, parse_number, RecordMetadata};

use accumulator::BatchConfig;
use sender::{Command, Sender};

/// How many brokers must have a record before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// No acknowledgement: the record's offset is unknown (-1).
    None,
    /// The leader has written it.
    Leader,
    /// Every in-sync replica has it.
    All,
}

impl Acks {
    /// The value of the Produce request's `acks` field.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Producer settings; [`ProducerConfig::new`] gives the Java client's defaults.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// Comma-separated HOST:PORT list of brokers to bootstrap from.
    pub bootstrap: String,
    /// The client id in every request header.
    pub client_id: String,
    /// Acknowledgement level (`acks`).
    pub acks: Acks,
    /// How long a batch waits for more records before it is sent (`linger.ms`).
    pub linger_ms: u64,
    /// Uncompressed bytes at which a batch is sent without waiting (`batch.size`).
    pub batch_size: usize,
    /// Codec for record batches (`compression.type`).
    pub compression: Compression,
    /// How many times a failed batch is resent (`retries`).
    pub retries: u32,
    /// Pause before resending a failed batch (`retry.backoff.ms`).
    pub retry_backoff_ms: u64,
    /// Upper bound on the time from `send` to the delivery report (`delivery.timeout.ms`).
    pub delivery_timeout_ms: u64,
    /// How long one request may take (`request.timeout.ms`).
    pub request_timeout_ms: u64,
    /// Exactly-once per partition within a producer session (`enable.idempotence`).
    pub enable_idempotence: bool,
    /// The largest record accepted by `send`, encoded (`max.request.size`).
    pub record_bytes_max: usize,
    /// How long `send` may wait for a topic's metadata (`max.block.ms`).
    pub max_block_ms: u64,
    /// Records accepted but not yet acknowledged before `send` waits for room
    /// (the count counterpart of `buffer.memory`).
    pub queued_records_max: usize,
}

impl ProducerConfig {
    /// Defaults for a producer bootstrapping from `bootstrap`.
    pub fn new(bootstrap: &str) -> ProducerConfig {
        ProducerConfig {
            bootstrap: bootstrap.to_string(),
            client_id: "brook-producer".to_string(),
            acks: Acks::All,
            linger_ms: 5,
            batch_size: 16 * 1024,
            compression: Compression::None,
            retries: i32::MAX as u32,
            retry_backoff_ms: 100,
            delivery_timeout_ms: 120_000,
            request_timeout_ms: 30_000,
            enable_idempotence: true,
            record_bytes_max: 1024 * 1024,
            max_block_ms: 60_000,
            queued_records_max: 100_000,
        }
    }

    /// Sets one property by its Java/librdkafka name (`acks`, `linger.ms`, `batch.size`,
    /// `compression.type`, `retries`, `retry.backoff.ms`, `enable.idempotence`, …).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), Error> {
        match key {
            "bootstrap.servers" | "metadata.broker.list" => self.bootstrap = value.to_string(),
            "client.id" => self.client_id = value.to_string(),
            "acks" | "request.required.acks" => self.acks = parse_acks(value)?,
            "linger.ms" | "queue.buffering.max.ms" => self.linger_ms = parse_number(key, value)?,
            "batch.size" => self.batch_size = parse_number(key, value)?,
            "compression.type" | "compression.codec" => {
                self.compression = parse_compression(value)?
            }
            "retries" | "message.send.max.retries" => self.retries = parse_number(key, value)?,
            "retry.backoff.ms" => self.retry_backoff_ms = parse_number(key, value)?,
            "delivery.timeout.ms" | "message.timeout.ms" => {
                self.delivery_timeout_ms = parse_number(key, value)?
            }
            "request.timeout.ms" => self.request_timeout_ms = parse_number(key, value)?,
            "enable.idempotence" => self.enable_idempotence = parse_bool(key, value)?,
            "max.request.size" | "message.max.bytes" => {
                self.record_bytes_max = parse_number(key, value)?
            }
            "max.block.ms" => self.max_block_ms = parse_number(key, value)?,
            "queue.buffering.max.messages" => self.queued_records_max = parse_number(key, value)?,
            _ => return Err(Error::Config(format!("unknown producer property {key}"))),
        }
        Ok(())
    }

    /// Checks that the settings fit together.
    pub fn validate(&self) -> Result<(), Error> {
        if self.enable_idempotence && self.acks != Acks::All {
            return Err(Error::Config(
                "enable.idempotence requires acks=all".to_string(),
            ));
        }
        if self.batch_size == 0 || self.queued_records_max == 0 || self.record_bytes_max == 0 {
            return Err(Error::Config(
                "batch.size, queue.buffering.max.messages and max.request.size must be positive"
                    .to_string(),
            ));
        }
        Ok(())
    }
}

/// A record to send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The topic.
    pub topic: String,
    /// The partition; `None` lets the partitioner choose from the key.
    pub partition: Option<i32>,
    /// The key; `None` is a null key.
    pub key: Option<Vec<u8>>,
    /// The value; `None` is a null value (a tombstone).
    pub value: Option<Vec<u8>>,
    /// Record headers, in order.
    pub headers: Vec<Header>,
    /// Create time in milliseconds; `None` means now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with `value` for `topic`, no key.
    pub fn new(topic: &str, value: impl Into<Vec<u8>>) -> ProducerRecord {
        ProducerRecord {
            topic: topic.to_string(),
            value: Some(value.into()),
            ..ProducerRecord::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sends to this partition instead of the partitioner's choice.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Appends a header.
    pub fn header(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header {
            key: key.to_string(),
            value: Some(value.into()),
        });
        self
    }

    /// Sets the create timestamp in milliseconds since the epoch.
    pub fn timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }
}

/// Resolves to the record's delivery report once the broker answered (or it failed).
#[derive(Debug)]
pub struct DeliveryFuture {
    receiver: oneshot::Receiver<Result<RecordMetadata, Error>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(Error::Closed)))
    }
}

/// An asynchronous producer; cheap to share behind an `Arc`. Dropping it lets the background
/// task finish what was already sent, then stop.
#[derive(Debug)]
pub struct Producer {
    config: ProducerConfig,
    network: Arc<Network>,
    partitioner: Mutex<Partitioner>,
    commands: mpsc::Sender<Command>,
}

impl Producer {
    /// Starts a producer (and its background task) on the current tokio runtime. Brokers are
    /// contacted lazily, at the first `send`.
    pub fn new(config: ProducerConfig) -> Result<Producer, Error> {
        config.validate()?;
        let network = Arc::new(Network::new(NetworkConfig::new(
            &config.bootstrap,
            &config.client_id,
            config.request_timeout_ms,
        )?));
        let (commands, receiver) = mpsc::channel(1024);
        let batch = BatchConfig {
            batch_size: config.batch_size,
            linger: Duration::from_millis(config.linger_ms),
            compression: config.compression,
            delivery_timeout: Duration::from_millis(config.delivery_timeout_ms),
        };
        let sender = Sender::new(config.clone(), batch, Arc::clone(&network), receiver);
        tokio::spawn(sender.run());
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Ok(Producer {
            config,
            network,
            partitioner: Mutex::new(Partitioner::new(seed)),
            commands,
        })
    }

    /// The settings this producer runs with.
    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// Queues `record` and returns the future of its delivery report. Waits only while the
    /// producer's queue is full or the topic's metadata is being fetched.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, Error> {
        let ProducerRecord {
            topic,
            partition,
            key,
            value,
            headers,
            timestamp,
        } = record;
        let record = Record {
            timestamp: timestamp.unwrap_or_else(now_ms),
            key,
            value,
            headers,
        };
        let size = record_size(&record);
        if size > self.config.record_bytes_max {
            return Err(Error::kafka(
                10,
                format!(
                    "a record of {size} bytes exceeds max.request.size {}",
                    self.config.record_bytes_max
                ),
            ));
        }
        let partitions = self.partition_count(&topic).await?;
        let partition = match partition {
            Some(p) if (0..partitions).contains(&p) => p,
            Some(p) => {
                return Err(Error::kafka(
                    3,
                    format!("{topic} has {partitions} partitions, not {p}"),
                ))
            }
            None => self
                .partitioner
                .lock()
                .expect("partitioner lock")
                .partition(
                    &topic,
                    record.key.as_deref(),
                    size,
                    partitions,
                    self.config.batch_size,
                ),
        };
        let (reply, receiver) = oneshot::channel();
        let command = Command::Send {
            tp: crate::TopicPartition::new(&topic, partition),
            record,
            reply,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::Closed)?;
        Ok(DeliveryFuture { receiver })
    }

    /// Sends every queued record now (ignoring linger) and waits until each is answered.
    pub async fn flush(&self) -> Result<(), Error> {
        let (reply, receiver) = oneshot::channel();
        self.commands
            .send(Command::Flush(reply))
            .await
            .map_err(|_| Error::Closed)?;
        receiver.await.map_err(|_| Error::Closed)
    }

    /// The number of partitions of `topic`: from the metadata cache (even if stale, so a
    /// broker being down does not fail `send`), else fetched, retrying retriable failures
    /// for up to `max.block.ms`.
    pub async fn partition_count(&self, topic: &str) -> Result<i32, Error> {
        if let Some(partitions) = self.network.cached_partition_count(topic) {
            return Ok(partitions);
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.max_block_ms);
        loop {
            match self.network.topic(topic, true).await {
                Ok(info) => return Ok(info.partitions.len() as i32),
                Err(err) if err.is_retriable() && tokio::time::Instant::now() < deadline => {
                    let backoff = Duration::from_millis(self.config.retry_backoff_ms.max(1));
                    tokio::time::sleep(backoff).await;
                }
                Err(err) if err.is_retriable() => {
                    return Err(Error::Timeout(format!(
                        "no metadata for {topic} within max.block.ms: {err}"
                    )))
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A record's encoded size, closely enough for limits and sticky partitioning.
fn record_size(record: &Record) -> usize {
    const OVERHEAD: usize = 21;
    let headers: usize = record
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len) + 10)
        .sum();
    OVERHEAD
        + record.key.as_ref().map_or(0, Vec::len)
        + record.value.as_ref().map_or(0, Vec::len)
        + headers
}

fn parse_acks(value: &str) -> Result<Acks, Error> {
    match value {
        "0" => Ok(Acks::None),
        "1" => Ok(Acks::Leader),
        "all" | "-1" => Ok(Acks::All),
        _ => Err(Error::Config(format!(
            "acks must be 0, 1 or all, not {value}"
        ))),
    }
}

/// Parses a `compression.type` name.
pub fn parse_compression(value: &str) -> Result<Compression, Error> {
    match value {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        _ => Err(Error::Config(format!(
            "compression.type must be none, gzip, snappy, lz4 or zstd, not {value}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_use_kafka_names_and_are_validated() {
        let mut config = ProducerConfig::new("b:1");
        config.set("acks", "all").expect("acks");
        config.set("linger.ms", "20").expect("linger");
        config.set("compression.type", "lz4").expect("codec");
        config
            .set("enable.idempotence", "false")
            .expect("idempotence");
        config.set("acks", "1").expect("acks");
        assert_eq!(config.linger_ms, 20);
        assert_eq!(config.compression, Compression::Lz4);
        assert!(config.validate().is_ok());
        assert!(config.set("linger.ms", "soon").is_err());
        assert!(config.set("compression.type", "brotli").is_err());
        assert!(config.set("no.such", "1").is_err());
        config
            .set("enable.idempotence", "true")
            .expect("idempotence");
        assert!(config.validate().is_err(), "idempotence needs acks=all");
    }
}

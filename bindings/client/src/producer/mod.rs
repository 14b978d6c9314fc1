//! The producer: `send` picks a partition and appends the record to its partition's open
//! batch in the shared [`accumulator`] (on the caller's thread, as the Java client does);
//! a background task seals batches by size and `linger_ms`, compresses, sends one batch per
//! partition at a time to the leader, retries retriable failures with backoff and settles
//! each batch's outcome, which its records' [`DeliveryFuture`]s read. The task is woken only
//! when a batch opens or fills, not per record.
//!
//! With `enable_idempotence` (the default) the task first gets a producer id
//! (InitProducerId) and numbers each partition's records, so a retry of a batch the broker
//! already wrote is recognised as a duplicate instead of written twice.

mod accumulator;
mod sender;

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brook_core::record::{Compression, Header, Record};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::error::Error;
use crate::network::{Network, NetworkConfig};
use crate::partitioner::Partitioner;
use crate::{parse_bool, parse_number, RecordMetadata};

use accumulator::{Accumulator, BatchConfig, RecordSlot};
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

/// The record's delivery report once the broker answered (or it failed): `.await` it, or
/// check it without waiting with [`DeliveryFuture::try_take`]. Cheap: it shares its batch's
/// outcome.
#[derive(Debug)]
pub struct DeliveryFuture {
    slot: RecordSlot,
}

impl DeliveryFuture {
    /// The delivery report if it has arrived, without waiting; `None` while pending.
    pub fn try_take(&mut self) -> Option<Result<RecordMetadata, Error>> {
        self.slot
            .outcome
            .get()
            .map(|result| self.slot.report(result))
    }

    /// Waits for the delivery report (without consuming the future).
    pub async fn wait(&self) -> Result<RecordMetadata, Error> {
        let result = self.slot.outcome.wait().await;
        self.slot.report(result)
    }
}

impl IntoFuture for DeliveryFuture {
    type Output = Result<RecordMetadata, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.wait().await })
    }
}

/// The outcome of [`Producer::try_send`].
#[derive(Debug)]
pub enum TrySend {
    /// The record is queued; its delivery report will arrive here.
    Queued(DeliveryFuture),
    /// Queuing would have to wait (no cached metadata for the topic, or the queue is full):
    /// the record, untouched, for [`Producer::send`].
    WouldBlock(ProducerRecord),
    /// The record was refused (too large, no such partition, producer closed).
    Failed(Error),
}

/// What the producer and its background task share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The batches; appended to by `send`, drained by the background task.
    pub accumulator: Mutex<Accumulator>,
    /// Wakes the background task: a batch opened or filled.
    pub wakeup: Notify,
    /// Wakes sends waiting for room in the queue: batches were answered.
    pub room: Notify,
    /// The background task stopped: sends fail with [`Error::Closed`].
    pub stopped: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// The accumulator, locked.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Accumulator> {
        // A panic while holding the lock leaves batch bookkeeping that still adds up.
        self.accumulator.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An asynchronous producer; cheap to share behind an `Arc`. Dropping it lets the background
/// task finish what was already sent, then stop.
#[derive(Debug)]
pub struct Producer {
    config: ProducerConfig,
    network: Arc<Network>,
    partitioner: Mutex<Partitioner>,
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
}

/// The outcome of one attempt to append.
enum Append {
    Queued(DeliveryFuture),
    Full(ProducerRecord),
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
        let (commands, receiver) = mpsc::channel(16);
        let batch = BatchConfig {
            batch_size: config.batch_size,
            linger: Duration::from_millis(config.linger_ms),
            compression: config.compression,
            delivery_timeout: Duration::from_millis(config.delivery_timeout_ms),
        };
        let shared = Arc::new(Shared {
            accumulator: Mutex::new(Accumulator::new(batch)),
            wakeup: Notify::new(),
            room: Notify::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        let sender = Sender::new(
            config.clone(),
            Arc::clone(&shared),
            Arc::clone(&network),
            receiver,
        );
        tokio::spawn(sender.run());
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Ok(Producer {
            config,
            network,
            partitioner: Mutex::new(Partitioner::new(seed)),
            shared,
            commands,
        })
    }

    /// The settings this producer runs with.
    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// Queues `record` and returns the future of its delivery report. Waits only while the
    /// producer's queue is full (at most `max.block.ms`) or the topic's metadata is being
    /// fetched.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, Error> {
        let partitions = self.partition_count(&record.topic).await?;
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.max_block_ms);
        let mut record = record;
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable(); // registered before the check: no wake-up is lost
            match self.append(record, partitions)? {
                Append::Queued(future) => return Ok(future),
                Append::Full(back) => record = back,
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(Error::Timeout(format!(
                    "the producer's queue stayed full ({} records) for max.block.ms",
                    self.config.queued_records_max
                )));
            }
        }
    }

    /// Queues `record` without waiting, when that is possible: the topic's metadata is
    /// cached and the producer's queue has room. Otherwise hands the record back
    /// ([`TrySend::WouldBlock`]) for [`Producer::send`], which may wait. Needs no runtime
    /// context, so the bindings call it straight from the application's thread.
    pub fn try_send(&self, record: ProducerRecord) -> TrySend {
        let Some(partitions) = self.network.cached_partition_count(&record.topic) else {
            return TrySend::WouldBlock(record);
        };
        match self.append(record, partitions) {
            Ok(Append::Queued(future)) => TrySend::Queued(future),
            Ok(Append::Full(record)) => TrySend::WouldBlock(record),
            Err(err) => TrySend::Failed(err),
        }
    }

    /// Appends `record` (partition chosen among `partitions`) to the accumulator, unless
    /// the queue is full.
    fn append(&self, record: ProducerRecord, partitions: i32) -> Result<Append, Error> {
        if self
            .shared
            .stopped
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(Error::Closed);
        }
        if self.shared.lock().records() >= self.config.queued_records_max {
            return Ok(Append::Full(record));
        }
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
        let tp = crate::TopicPartition { topic, partition };
        let appended = self
            .shared
            .lock()
            .append(std::time::Instant::now, &tp, &record);
        if appended.wake {
            self.shared.wakeup.notify_one();
        }
        Ok(Append::Queued(DeliveryFuture {
            slot: appended.slot,
        }))
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

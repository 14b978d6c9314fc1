//! `brook-client`: Brook's Rust client for Brook and any other Kafka-compatible broker — a
//! batching, idempotent [`Producer`], a [`Consumer`] of a consumer group's partitions
//! (`subscribe`, classic protocol with the range and roundrobin assignors, commits) or of
//! hand-assigned ones, and an [`Admin`] client, all async on tokio, plus a [`blocking`]
//! facade for the C and Python bindings. The admin client lists and describes transactions;
//! a transactional producer is not here yet.
//!
//! ```no_run
//! use brook_client::{Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord};
//! use brook_client::TopicPartition;
//! use std::time::Duration;
//!
//! # async fn example() -> Result<(), brook_client::Error> {
//! let producer = Producer::new(ProducerConfig::new("127.0.0.1:9092"))?;
//! let delivery = producer.send(ProducerRecord::new("events", "hello").key("user-1")).await?;
//! let metadata = delivery.await?; // topic, partition, offset, timestamp
//!
//! let mut consumer = Consumer::new(ConsumerConfig::new("127.0.0.1:9092"))?;
//! consumer.assign(vec![TopicPartition::new("events", metadata.partition)])?;
//! consumer.seek(&TopicPartition::new("events", metadata.partition), metadata.offset)?;
//! for record in consumer.poll(Duration::from_secs(1)).await? {
//!     println!("{}-{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
//! }
//!
//! let mut config = ConsumerConfig::new("127.0.0.1:9092");
//! config.group_id = Some("readers".to_string());
//! let mut member = Consumer::new(config)?;
//! member.subscribe(&["events"])?; // joins the group at the first poll
//! let records = member.poll(Duration::from_secs(1)).await?;
//! member.commit().await?; // positions after the records returned
//! member.close().await?; // LeaveGroup: the others get its partitions
//! # Ok(())
//! # }
//! ```
//!
//! Layers, bottom up: `connection` (one broker: frames, headers, ApiVersions), `network`
//! (connections per broker and the metadata cache), then the three clients; the consumer's
//! group protocol is in `group` (coordinator, join/sync, heartbeats, commits) and
//! `assignor` (the leader's assignors and the consumer protocol's byte formats).

mod admin;
mod assignor;
pub mod blocking;
mod connection;
mod consumer;
mod error;
#[cfg(test)]
mod fake_broker_tests;
mod group;
mod network;
mod partitioner;
mod producer;

pub use admin::{
    Admin, AdminConfig, BrokerDescription, ClusterDescription, ConfigEntry, ConfigOp,
    GroupDescription, GroupListing, GroupState, ListTransactionsFilter, MemberDescription,
    NewTopic, OffsetSpec, PartitionDescription, PartitionReassignment, TransactionDescription,
    TransactionListing, TransactionState,
};
pub use assignor::Assignor;
pub use brook_core::record::{Compression, Header};
pub use brook_core::ErrorCode;
pub use consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, IsolationLevel, OffsetReset, PendingCommit,
    RebalanceListener, SESSION_TIMEOUT_MS_MIN,
};
pub use error::Error;
pub use network::{PartitionInfo, TopicInfo};
pub use partitioner::{murmur2, partition_for_key, Partitioner};
pub use producer::{
    parse_compression, Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, TrySend,
};

/// A topic's partition.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// The partition `partition` of `topic`.
    pub fn new(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.to_string(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Where a produced record landed: the delivery report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset, or -1 with acks=0.
    pub offset: i64,
    /// The record's timestamp: create time, or the broker's append time if the topic uses it.
    pub timestamp: i64,
}

/// Parses a numeric property value, naming the property on failure.
pub(crate) fn parse_number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, Error> {
    value
        .trim()
        .parse()
        .map_err(|_| Error::Config(format!("{key} must be a number, not {value:?}")))
}

/// Parses a boolean property value (`true`/`false`).
pub(crate) fn parse_bool(key: &str, value: &str) -> Result<bool, Error> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::Config(format!(
            "{key} must be true or false, not {value:?}"
        ))),
    }
}

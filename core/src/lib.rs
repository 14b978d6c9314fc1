//! `brook-core`: everything in Brook that decides, and nothing that does I/O.
//!
//! This crate holds the Kafka record-batch format ([`record`]), the partition commit log
//! ([`log`]) and the storage abstraction it writes through ([`storage`]), the broker
//! ([`broker`]), the consumer-group coordinator ([`group`]), partition replication
//! ([`replication`]), the cluster metadata with the controller's decisions ([`cluster`]) and
//! the controller quorum's consensus that replicates it ([`quorum`]), the cluster node that
//! combines them ([`node`]) and the driver that server and simulator share ([`driver`]).
//! The transaction coordinator is [`txn`].
//!
//! **Architecture invariant:** no code in this crate opens files or sockets, reads a clock,
//! spawns threads or draws thread-local randomness. Time arrives as [`types::Millis`] values,
//! randomness as seeds, and storage through the [`storage::Storage`] trait that the driver
//! (the `brook` server or the simulator) implements. `tests/no_io.rs` enforces this.

pub mod broker;
pub mod cluster;
pub mod driver;
pub mod error;
pub mod group;
pub mod log;
pub mod node;
pub mod planted;
pub mod protocol;
pub mod quorum;
pub mod record;
pub mod replication;
pub mod storage;
pub mod txn;
pub mod types;

pub use error::ErrorCode;
pub use types::{LeaderEpoch, Millis, NodeId, Offset, ProducerEpoch, ProducerId};

//! The broker state machine: decoded Kafka requests in, responses out.
//!
//! [`Broker`] is the broker of a cluster node ([`crate::node::ClusterNode`]; a single node is
//! a cluster of one): it holds the partition logs of which the committed metadata records
//! make this node a replica (`replica.rs`), and answers every client request but those that
//! go to the controller, which the node answers. It never touches a socket or a clock: time
//! arrives as [`Millis`], storage through a [`StorageProvider`].
//!
//! Its state is a few components, each with one job; the broker's own files turn requests
//! and records into calls on them:
//! - `topics.rs`: the topics, the partitions held here and their directories (and the
//!   metadata file's), with lookups by name, id and index;
//! - `replica.rs`: what this node knows of its cluster (`Member`: image, controller, topics
//!   to ask for) and the acks=all produces waiting for the followers (`ParkedProduces`);
//! - `fetch.rs`: the fetches waiting for data or their deadline (`ParkedFetches`);
//! - `groups.rs`: the consumer groups, their parked requests and their writes (`Groups`).
//!
//! Call order for the node (see `replica.rs` for the member calls):
//! 1. [`Broker::open_member`] once, with the storage provider and the configuration.
//! 2. For each decoded request, [`Broker::handle_request_from`] with what the driver knows of
//!    the connection ([`RequestContext`]; [`Broker::handle_request`] when it knows nothing);
//!    the [`Reply`] says whether to send a response now, send nothing (acks=0), or wait: a
//!    parked fetch completes later.
//! 3. After each request and on every timer, [`Broker::poll_completed_fetches`] yields the
//!    parked fetches that are now answered and [`Broker::poll_completed_responses`] the
//!    parked JoinGroup/SyncGroup requests (a [`Reply::Parked`] id is either kind);
//!    [`Broker::next_deadline`] says when to call [`Broker::handle_tick`], which also runs
//!    retention, the time-based flush and the group timers.
//! 4. [`Broker::close`] on shutdown, which closes every log cleanly.

mod admin;
mod coordination;
mod describe_partitions;
mod elections;
mod fetch;
mod groups;
mod metadata;
mod partition;
mod produce;
mod producer_state;
mod reassignments;
mod replica;
mod topic_admin;
mod topics;
mod transactions;
mod txn_admin;
mod txn_markers;
mod txn_offsets;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestKind, ResponseKind};

use crate::error::ErrorCode;
use crate::group::GroupConfig;
use crate::log::{LogConfig, LogError};
use crate::protocol::{FetchResponseData, Request, SUPPORTED_APIS};
use crate::storage::{Storage, StorageError};
use crate::types::Millis;

pub(crate) use admin::is_internal as is_internal_topic;
pub(crate) use admin::{check_partition_count, duplicates, AdminError, RESOURCE_BROKER};
pub use admin::{FOLLOWER_THROTTLE, LEADER_THROTTLE};
pub(crate) use elections::{election_response, ElectionAnswer};
pub use fetch::ParkedId;
pub use groups::OFFSETS_TOPIC;
pub use metadata::LegacyTopic;
pub(crate) use partition::Partition;
pub(crate) use reassignments::{reassignment_response, ReassignmentAnswer};
pub use replica::REPLICA_FETCH_VERSION;
pub(crate) use topic_admin::deleted_topics;
pub use topic_admin::{validate_topic_name, TopicConfigError, PARTITIONS_MAX, TOPIC_CONFIGS};
pub use transactions::TRANSACTION_STATE_TOPIC;
pub use txn_markers::{MarkerEntry, MarkerMessage};

/// Opens the storage directories the broker keeps its state in.
pub trait StorageProvider {
    /// One directory's storage.
    type Storage: Storage;
    /// Opens (creating if needed) the named directory: `meta` or a partition's `topic-N`.
    fn open_dir(&mut self, name: &str) -> Result<Self::Storage, StorageError>;
    /// Removes a directory and everything in it.
    fn remove_dir(&mut self, name: &str) -> Result<(), StorageError>;
}

impl StorageProvider for crate::storage::MemoryDirs {
    type Storage = crate::storage::SharedStorage;

    fn open_dir(&mut self, name: &str) -> Result<Self::Storage, StorageError> {
        Ok(self.dir(name))
    }

    fn remove_dir(&mut self, name: &str) -> Result<(), StorageError> {
        self.remove(name);
        Ok(())
    }
}

/// The broker's settings; every field has the embedded default `brook server` starts with.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// This broker's node id.
    pub node_id: i32,
    /// Host clients are told to connect to.
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: i32,
    /// Partitions of an auto-created or default topic.
    pub num_partitions: i32,
    /// Replication factor of an auto-created or default topic.
    pub default_replication_factor: i16,
    /// Whether Metadata for an unknown topic creates it.
    pub auto_create_topics: bool,
    /// Broker-wide defaults of the topic configs.
    pub log: LogConfig,
    /// The most bytes one fetch response may carry, whatever the client asks.
    pub fetch_response_bytes_max: i32,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when created.
    pub offsets_topic_partitions: i32,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state` when
    /// created.
    pub transaction_state_partitions: i32,
    /// The group coordinator's timeouts and limits.
    pub group: GroupConfig,
    /// The cluster id every member reports (a cluster's nodes share it, derived from their
    /// voters); `None` for a single node, which makes its own at first start. A data directory that holds another
    /// cluster's id is refused.
    pub cluster_id: Option<String>,
}

impl Default for BrokerConfig {
    fn default() -> BrokerConfig {
        BrokerConfig {
            node_id: 1,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics: true,
            log: LogConfig::default(),
            fetch_response_bytes_max: 55 * 1024 * 1024,
            offsets_topic_partitions: 50,
            transaction_state_partitions: 50,
            group: GroupConfig::default(),
            cluster_id: None,
        }
    }
}

/// Why the broker could not open or persist its state.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A directory could not be read or written.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// A partition log failed to open or close.
    #[error("partition {partition}: {source}")]
    Log {
        /// `topic-N`.
        partition: String,
        /// What the log reported.
        source: LogError,
    },
    /// The metadata file is damaged.
    #[error("metadata file is corrupt: {0}")]
    CorruptMetadata(String),
    /// The data directory belongs to another cluster.
    #[error("the data directory belongs to cluster {stored}, not {expected}")]
    OtherCluster {
        /// The id in the directory.
        stored: String,
        /// The id this node was started with.
        expected: String,
    },
}

/// The most background failures kept between two [`Broker::poll_background_errors`] calls.
pub const BACKGROUND_ERRORS_MAX: usize = 100;

/// What the driver knows of a request's connection that the request itself does not carry.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    /// The client's address as Kafka shows it in DescribeGroups (`/127.0.0.1`); empty when
    /// unknown.
    pub client_host: String,
}

/// What to do with a request's answer.
#[derive(Debug)]
pub enum Reply {
    /// Send this response now.
    Response(Box<ResponseKind>),
    /// Send this Fetch response now (its records go straight from files).
    Fetch(FetchResponseData),
    /// Send nothing (a Produce with acks=0).
    None,
    /// The request waits: a fetch for data or its deadline (it comes back from
    /// [`Broker::poll_completed_fetches`]), a JoinGroup/SyncGroup for the rebalance (it comes
    /// back from [`Broker::poll_completed_responses`]).
    Parked(ParkedId),
}

/// The broker state machine. See the module doc for the call order.
pub struct Broker<P: StorageProvider> {
    config: BrokerConfig,
    cluster_id: String,
    /// The next producer id InitProducerId hands out.
    next_producer_id: i64,
    /// The topics, the partitions held here, and the directories they and the metadata
    /// file live in.
    topics: topics::Topics<P>,
    /// Fetches waiting for data or their `max_wait_ms`.
    fetches: fetch::ParkedFetches,
    /// Failures of background work (retention, compaction, flush) for the driver to log;
    /// at most `BACKGROUND_ERRORS_MAX` are kept.
    background_errors: Vec<String>,
    /// Consumer groups and their parked JoinGroup/SyncGroup requests.
    groups: groups::Groups,
    /// What this broker knows of its cluster (a single node is a cluster of one).
    member: replica::Member,
    /// acks=all produces waiting for the followers.
    produces: replica::ParkedProduces,
    /// The transaction coordinator, its writes and markers.
    transactions: transactions::Transactions,
}

impl<P: StorageProvider> Broker<P> {
    /// The broker's configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The cluster id (persisted at first start).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Names of the topics, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics.names().map(str::to_string).collect()
    }

    /// The id of the topic named `name`, if it exists.
    pub fn topic_id(&self, name: &str) -> Option<uuid::Uuid> {
        self.topics.get(name).map(|t| t.id)
    }

    /// The storage of a partition's log, for drivers that serve its files.
    pub fn partition_storage(&self, topic: &str, partition: i32) -> Option<&P::Storage> {
        Some(self.topics.partition(topic, partition)?.log.storage())
    }

    /// The log of a partition held here, to inspect (the simulator's replica checks).
    pub fn partition_log(
        &self,
        topic: &str,
        partition: i32,
    ) -> Option<&crate::log::PartitionLog<P::Storage>> {
        Some(&self.topics.partition(topic, partition)?.log)
    }

    /// Answers one decoded request from a connection the broker knows nothing about.
    pub fn handle_request(&mut self, now: Millis, request: Request) -> Reply {
        self.handle_request_from(now, &RequestContext::default(), request)
    }

    /// Answers one decoded request that arrived on a connection described by `context`.
    pub fn handle_request_from(
        &mut self,
        now: Millis,
        context: &RequestContext,
        request: Request,
    ) -> Reply {
        let version = request.api_version;
        let client_id = request.client_id.unwrap_or_default();
        let response = match request.body {
            RequestKind::ApiVersions(_) => api_versions(ErrorCode::None),
            RequestKind::Metadata(body) => {
                ResponseKind::Metadata(self.metadata_response(now, body, version))
            }
            RequestKind::Produce(mut body) => {
                let refused = Self::strip_internal_produce(&mut body);
                let timeout_ms = body.timeout_ms;
                match self.handle_produce(now, body, version) {
                    (Some(mut response), pending) => {
                        Self::refuse_internal_produce(&mut response, refused, version);
                        if !pending.is_empty() {
                            // acks=all: answered once the followers hold the records.
                            return Reply::Parked(
                                self.park_produce(now, response, pending, timeout_ms),
                            );
                        }
                        ResponseKind::Produce(response)
                    }
                    (None, _) => return Reply::None,
                }
            }
            RequestKind::Fetch(body) => return self.handle_fetch(now, body, version),
            RequestKind::ListOffsets(body) => {
                ResponseKind::ListOffsets(self.handle_list_offsets(body, version))
            }
            RequestKind::InitProducerId(body) => return self.handle_init_producer_id(now, body),
            RequestKind::AddPartitionsToTxn(body) => {
                return self.handle_add_partitions_to_txn(now, body, version)
            }
            RequestKind::AddOffsetsToTxn(body) => {
                return self.handle_add_offsets_to_txn(now, body, version)
            }
            RequestKind::EndTxn(body) => return self.handle_end_txn(now, body, version),
            RequestKind::TxnOffsetCommit(body) => {
                return self.handle_txn_offset_commit(now, body, version)
            }
            RequestKind::DescribeTransactions(body) => {
                ResponseKind::DescribeTransactions(self.handle_describe_transactions(body))
            }
            RequestKind::ListTransactions(body) => {
                ResponseKind::ListTransactions(self.handle_list_transactions(now, body, version))
            }
            RequestKind::DescribeConfigs(body) => {
                ResponseKind::DescribeConfigs(self.handle_describe_configs(body, version))
            }
            RequestKind::DescribeCluster(body) => {
                ResponseKind::DescribeCluster(self.handle_describe_cluster(body, version))
            }
            RequestKind::DeleteRecords(body) => {
                ResponseKind::DeleteRecords(self.handle_delete_records(body))
            }
            RequestKind::ListPartitionReassignments(body) => {
                ResponseKind::ListPartitionReassignments(self.handle_list_reassignments(body))
            }
            RequestKind::DescribeTopicPartitions(body) => ResponseKind::DescribeTopicPartitions(
                self.handle_describe_topic_partitions(now, body),
            ),
            RequestKind::OffsetForLeaderEpoch(body) => ResponseKind::OffsetForLeaderEpoch(
                self.handle_offset_for_leader_epoch(body, version),
            ),
            RequestKind::FindCoordinator(body) => {
                ResponseKind::FindCoordinator(self.handle_find_coordinator(now, body, version))
            }
            RequestKind::JoinGroup(body) => {
                return self.handle_join_group(now, body, version, &client_id, context)
            }
            RequestKind::SyncGroup(body) => return self.handle_sync_group(now, body, version),
            RequestKind::Heartbeat(body) => {
                ResponseKind::Heartbeat(self.handle_heartbeat(now, body))
            }
            RequestKind::LeaveGroup(body) => {
                ResponseKind::LeaveGroup(self.handle_leave_group(now, body, version))
            }
            RequestKind::OffsetCommit(body) => {
                return self.handle_offset_commit(now, body, version)
            }
            RequestKind::OffsetFetch(body) => {
                ResponseKind::OffsetFetch(self.handle_offset_fetch(body, version))
            }
            RequestKind::OffsetDelete(body) => {
                ResponseKind::OffsetDelete(self.handle_offset_delete(now, body))
            }
            RequestKind::DescribeGroups(body) => {
                ResponseKind::DescribeGroups(self.handle_describe_groups(body, version))
            }
            RequestKind::ListGroups(body) => {
                ResponseKind::ListGroups(self.handle_list_groups(body, version))
            }
            RequestKind::DeleteGroups(body) => {
                ResponseKind::DeleteGroups(self.handle_delete_groups(now, body))
            }
            // CreateTopics, DeleteTopics, CreatePartitions, config changes, ElectLeaders,
            // DescribeQuorum, AlterPartitionReassignments and UnregisterBroker go through the
            // controller: the node answers them (`ClusterNode::handle_request`).
            other => unreachable!(
                "decode_request only lets served APIs through, and the node answers the \
                 controller's: {other:?}"
            ),
        };
        Reply::Response(Box::new(response))
    }

    /// Runs time-based work: expires parked fetches, applies retention, compaction (for
    /// `cleanup.policy=compact`, once per rolled segment) and `flush.ms`.
    pub fn handle_tick(&mut self, now: Millis) {
        self.fetches.expire(now);
        for error in self.topics.tick(now) {
            // Background failures cannot be answered to a client (the next request to the
            // partition meets them); the driver logs them.
            if self.background_errors.len() < BACKGROUND_ERRORS_MAX {
                self.background_errors.push(error);
            }
        }
        self.complete_ready_fetches(now);
        self.complete_parked_produces(now);
        self.complete_group_writes(now);
        self.advance_transactions(now);
        self.tick_groups(now);
    }

    /// Drains the failures of background work since the last call, for the driver to log.
    pub fn poll_background_errors(&mut self) -> Vec<String> {
        std::mem::take(&mut self.background_errors)
    }

    /// When [`Broker::handle_tick`] should next run at the latest.
    pub fn next_deadline(&self) -> Option<Millis> {
        let fetches = self.fetches.next_deadline();
        let groups = self.next_group_deadline();
        let produces = self.next_produce_deadline();
        let group_writes = self.next_group_write_deadline();
        let partitions = self.topics.next_deadline();
        let transactions = self.next_transaction_deadline();
        fetches
            .into_iter()
            .chain(transactions)
            .chain(groups)
            .chain(produces)
            .chain(group_writes)
            .chain(partitions)
            .min()
    }

    /// The partitions (`topic-N`) whose log a storage failure took offline: they answer
    /// `KAFKA_STORAGE_ERROR` until the broker is reopened, which recovers them. Kafka halts a
    /// broker whose every log directory failed; a driver may do the same.
    pub fn offline_partitions(&self) -> Vec<String> {
        self.topics.offline()
    }

    /// Closes every partition log cleanly (clean-shutdown markers written); an offline log
    /// is left for recovery and reported, after the others are closed.
    pub fn close(self) -> Result<(), BrokerError> {
        self.topics.close()
    }
}

/// The ApiVersions response: every served API with its version range.
pub fn api_versions(error: ErrorCode) -> ResponseKind {
    let mut response = ApiVersionsResponse::default();
    response.error_code = error.code();
    response.api_keys = SUPPORTED_APIS
        .iter()
        .map(|&(key, min, max)| {
            let mut version = ApiVersion::default();
            version.api_key = key as i16;
            version.min_version = min;
            version.max_version = max;
            version
        })
        .collect();
    ResponseKind::ApiVersions(response)
}

/// The name of a partition's directory, as Kafka names it.
pub fn partition_dir(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

/// Whether an API is answered by this broker (for drivers deciding how to react to errors).
pub fn is_served(api: ApiKey) -> bool {
    SUPPORTED_APIS.iter().any(|(key, _, _)| *key == api)
}

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod group_tests;
#[cfg(test)]
pub(crate) mod test_node;
#[cfg(test)]
mod tests;

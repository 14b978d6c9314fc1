//! A cluster node: one voter of the metadata quorum, the controller when it leads the
//! quorum, and a member broker — KRaft's combined mode, without I/O.
//!
//! The metadata log is the quorum's log; each entry is a [`LogEntry`]: the records of one
//! controller decision, or a new leader's marker. Every node applies the committed records to
//! its broker ([`Broker::apply_metadata`]); the quorum's leader runs a [`Controller`] over the
//! image once it has applied its own marker (so its image holds every earlier decision).
//! Brokers reach the controller, and followers their leaders, with [`PeerMessage`]s.
//!
//! Call order for a driver: [`ClusterNode::open`]; then, in any order, client requests
//! ([`ClusterNode::handle_request`]), peer messages ([`ClusterNode::handle_peer_message`]) and
//! timers ([`ClusterNode::handle_tick`] at [`ClusterNode::next_deadline`]); after each, send
//! [`ClusterNode::poll_outgoing`] to the peers (they may be lost) and deliver
//! [`ClusterNode::poll_completed`] to the clients waiting.

mod describe_quorum;
mod elections;
mod follow_metadata;
mod held_metadata;
mod messages;
mod metadata;
mod observer;
mod reassignments;
#[cfg(test)]
mod tests;
mod throttle;
mod topics;

use std::collections::BTreeMap;

use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use describe_quorum::ParkedQuorum;
use elections::ParkedElection;
use follow_metadata::ParkedMetadataFetch;
use held_metadata::HeldMetadata;
pub use held_metadata::METADATA_HOLD_MS;
pub use messages::{LogEntry, MessageDecodeError, PeerMessage, TopicChange};
use metadata::MetadataLog;
use observer::Observer;
use reassignments::ParkedReassignment;
use throttle::Throttle;
use topics::ParkedTopics;

use crate::driver::Completed;

use crate::broker::{
    Broker, BrokerConfig, BrokerError, MarkerMessage, ParkedId, Reply, RequestContext,
    StorageProvider, OFFSETS_TOPIC, REPLICA_FETCH_VERSION, TRANSACTION_STATE_TOPIC,
};
use crate::cluster::{
    BrokerRegistration, ClusterImage, Controller, ControllerConfig, MetadataRecord, NewTopic,
};
use crate::error::ErrorCode;
use crate::protocol::{FetchResponseData, Request};
use crate::quorum::{Committed, Quorum, QuorumConfig, QuorumError, Recovered};
use crate::storage::Storage;
use crate::types::{LeaderEpoch, Millis, NodeId};

/// The storage directory of the metadata quorum's files.
pub const QUORUM_DIR: &str = "__cluster_metadata-0";
/// The metadata log's topic name, as DescribeQuorum names it.
pub const QUORUM_TOPIC: &str = "__cluster_metadata";

/// The most controller requests a new quorum leader holds until its controller is active.
const AWAITING_CONTROLLER_MAX: usize = 1_024;

/// The storage directory of the node's own small files.
pub const NODE_DIR: &str = "node";
/// Present while a power loss is not yet reported to the controller: the report must
/// survive restarts until a registration carrying it is applied.
const UNSYNCED_LOSS_FILE: &str = "unsynced-loss";

/// A node's settings.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The broker's settings (its `node_id` is this node's).
    pub broker: BrokerConfig,
    /// The metadata quorum's voters. A node among them votes (and may be the controller);
    /// any other node follows the metadata log as an observer and is a broker only.
    pub voters: Vec<NodeId>,
    /// Where the other nodes send this node peer messages (`HOST:PORT`, registered with
    /// the controller); empty when the voters list is enough to find it (a voter).
    pub peer_listener: String,
    /// Quorum ticks without a leader before this node campaigns; the driver jitters it per
    /// node (from its seed, or at random).
    pub election_tick: usize,
    /// Quorum ticks between the leader's heartbeats.
    pub heartbeat_tick: usize,
    /// Milliseconds per quorum tick.
    pub tick_ms: i64,
    /// `broker.heartbeat.interval.ms`.
    pub broker_heartbeat_ms: i64,
    /// How long a request to the controller or a leader may go unanswered before it is sent
    /// again.
    pub request_timeout_ms: i64,
    /// `replica.fetch.wait.max.ms`: how long a leader holds a follower's fetch for data.
    pub replica_fetch_wait_ms: i32,
    /// Metadata-log entries between two snapshots.
    pub snapshot_interval: u64,
    /// The controller's settings.
    pub controller: ControllerConfig,
    /// Differs at every start of the node process (random, or from the simulator's seed).
    pub incarnation: u64,
    /// The machine lost power (rebooted) since the node last ran, so records it had not
    /// synced may be gone: the controller then no longer counts it as holding them. Kept in
    /// the node's directory until a registration reporting it is applied.
    pub lost_unsynced: bool,
}

impl NodeConfig {
    /// Whether this node is the only voter: a single node, a cluster of one.
    pub fn is_single_voter(&self) -> bool {
        self.voters == [NodeId(self.broker.node_id)]
    }

    /// Kafka's defaults around `broker` and `voters`.
    pub fn new(broker: BrokerConfig, voters: Vec<NodeId>, incarnation: u64) -> NodeConfig {
        let min_insync_replicas = broker.log.min_insync_replicas;
        NodeConfig {
            broker,
            voters,
            peer_listener: String::new(),
            election_tick: 10,
            heartbeat_tick: 2,
            tick_ms: 100,
            broker_heartbeat_ms: 2_000,
            request_timeout_ms: 5_000,
            replica_fetch_wait_ms: 500,
            snapshot_interval: 1_000,
            controller: ControllerConfig {
                min_insync_replicas,
                ..ControllerConfig::default()
            },
            incarnation,
            lost_unsynced: false,
        }
    }
}

/// Why a node could not open or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The broker's state could not be opened or kept.
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
    /// The metadata quorum failed.
    #[error("metadata quorum: {0}")]
    Quorum(#[from] QuorumError),
    /// A committed metadata entry is damaged.
    #[error("metadata log: {0}")]
    Log(String),
    /// The data directory belongs to another node id.
    #[error("the data directory belongs to node {stored}, not node {expected}")]
    OtherNode {
        /// The id the directory was written by.
        stored: i32,
        /// The id this node was started with.
        expected: i32,
    },
    /// A single broker's data directory cannot be adopted as asked.
    #[error("migration: {0}")]
    Migration(String),
}

/// The file in the node's directory that names the node id that wrote it.
const NODE_ID_FILE: &str = "node-id";

/// Checks that the directory is `node`'s (or new, or written before the file existed) and
/// records it so: a directory opened under another id would vote with another's log.
fn claim_node_id<S: Storage>(own: &mut S, node: NodeId) -> Result<(), NodeError> {
    let stored = own.read_all(NODE_ID_FILE).map_err(BrokerError::from)?;
    match stored.as_deref().map(std::str::from_utf8) {
        None => {
            own.write_atomic(NODE_ID_FILE, node.0.to_string().as_bytes())
                .map_err(BrokerError::from)?;
            Ok(())
        }
        Some(Ok(text)) => match text.trim().parse::<i32>() {
            Ok(stored) if stored == node.0 => Ok(()),
            Ok(stored) => Err(NodeError::OtherNode {
                stored,
                expected: node.0,
            }),
            Err(_) => Err(NodeError::Log(format!(
                "{NODE_ID_FILE} is damaged: {text:?}"
            ))),
        },
        Some(Err(_)) => Err(NodeError::Log(format!("{NODE_ID_FILE} is not UTF-8"))),
    }
}

/// One node of the cluster. See the module doc.
pub struct ClusterNode<P: StorageProvider> {
    config: NodeConfig,
    /// The node's own directory (the unreported power loss).
    own: P::Storage,
    /// A power loss not yet reported in an applied registration.
    lost_unsynced: bool,
    node: NodeId,
    /// The metadata log: this node's quorum voter, or its observer when it is not a voter.
    metadata: MetadataLog<P::Storage>,
    broker: Broker<P>,
    controller: Option<Controller>,
    /// The term this node last proposed its leader marker in.
    marker_term: Option<u64>,
    /// As an observer since its start, until it caught up: the image its fetched history
    /// builds, which the broker takes whole once caught up (as a voter takes its replayed
    /// log), so it never acts on roles long replaced.
    replay: Option<ClusterImage>,
    /// Requests for the controller that reached this node as quorum leader before its
    /// controller was active (its marker not yet applied): decided once it is.
    awaiting_controller: Vec<(NodeId, PeerMessage)>,
    /// Messages for peers, in order.
    outbox: Vec<(NodeId, PeerMessage)>,
    /// When the quorum last ticked, the broker last heartbeat and registered.
    last_quorum_tick: Millis,
    last_heartbeat: Option<Millis>,
    last_register: Option<Millis>,
    /// Follower fetches in flight: leader → (correlation, request, sent at).
    fetches_out: BTreeMap<NodeId, (u64, FetchRequest, Millis)>,
    next_correlation: u64,
    /// Follower fetches from peers parked in the broker: id → (follower, correlation).
    fetches_in: BTreeMap<ParkedId, (NodeId, u64)>,
    /// ISR changes sent to the controller: (topic id, partition) → sent at.
    isr_out: BTreeMap<(uuid::Uuid, i32), Millis>,
    /// Topics asked of the controller: name → sent at.
    topics_out: BTreeMap<String, Millis>,
    /// Controller answers to topic changes: (change, name) → (error code, message).
    topic_results: BTreeMap<(TopicChange, String), (i16, String)>,
    /// Clients' CreateTopics and DeleteTopics waiting for their changes.
    topic_changes: BTreeMap<ParkedId, ParkedTopics>,
    /// Clients' ElectLeaders waiting for the controller and the new leaders.
    elections: BTreeMap<ParkedId, ParkedElection>,
    /// Clients' DescribeQuorum waiting for the quorum leader.
    quorum_asks: BTreeMap<ParkedId, ParkedQuorum>,
    /// Clients' AlterPartitionReassignments waiting for the controller and the new records.
    reassignments: BTreeMap<ParkedId, ParkedReassignment>,
    /// As a voter: observers' metadata fetches held until there is more to send.
    metadata_fetches: BTreeMap<NodeId, ParkedMetadataFetch>,
    /// As a voter: each observer's last fetch — the index it had applied, and when.
    observers: BTreeMap<NodeId, (u64, Millis)>,
    /// The replication throttles of reassignments' catch-up: as leader, as follower.
    leader_throttle: Throttle,
    follower_throttle: Throttle,
    /// Numbers this node's parked topic changes, elections and quorum descriptions.
    next_parked: u64,
    /// Peers whose connection the driver reported lost, until they send again.
    peers_down: std::collections::BTreeSet<NodeId>,
    /// When each of `peers_down` was lost (the first report).
    peers_lost_at: BTreeMap<NodeId, Millis>,
    /// Metadata requests held for the controller's decision on a lost leader.
    held_metadata: BTreeMap<ParkedId, HeldMetadata>,
    /// A controlled shutdown began ([`ClusterNode::begin_shutdown`]).
    shutting_down: bool,
    /// When this node last asked a voter to take over the quorum's leadership.
    last_transfer: Option<Millis>,
    completed: Vec<Completed>,
}

impl<P: StorageProvider> ClusterNode<P> {
    /// Opens the node's quorum voter and broker, and replays the committed metadata log.
    pub fn open(mut provider: P, config: NodeConfig, now: Millis) -> Result<Self, NodeError> {
        let node = NodeId(config.broker.node_id);
        let mut own = provider.open_dir(NODE_DIR).map_err(BrokerError::from)?;
        claim_node_id(&mut own, node)?;
        let reported = own
            .read_all(UNSYNCED_LOSS_FILE)
            .map_err(BrokerError::from)?
            .is_some();
        let lost_unsynced = config.lost_unsynced || reported;
        if config.lost_unsynced && !reported {
            own.write_atomic(UNSYNCED_LOSS_FILE, b"1")
                .map_err(BrokerError::from)?;
        }
        let voter_storage = match config.voters.contains(&node) {
            true => Some(provider.open_dir(QUORUM_DIR).map_err(BrokerError::from)?),
            false => None,
        };
        // The broker opens first: a directory it cannot take is refused before the quorum
        // writes its voters there.
        let broker = Broker::open_member(provider, config.broker.clone(), now)?;
        if !broker.legacy_topics().is_empty() && !config.is_single_voter() {
            // Only a node that is the whole cluster can take a single broker's topics as
            // its own: in a larger one, their logs would be on one node and stale replicas
            // elsewhere.
            return Err(NodeError::Migration(format!(
                "the data directory holds a single broker's topics ({}); it opens only as a \
                 one-node cluster (voters: this node alone)",
                broker.legacy_topics().len()
            )));
        }
        let (metadata, recovered) = if let Some(storage) = voter_storage {
            let quorum_config = QuorumConfig {
                node,
                voters: config.voters.clone(),
                election_tick: config.election_tick,
                heartbeat_tick: config.heartbeat_tick,
                snapshot_interval: config.snapshot_interval,
            };
            let (quorum, recovered) = Quorum::open(storage, quorum_config)?;
            (MetadataLog::Voter(Box::new(quorum)), recovered)
        } else {
            let observer = Observer::new(config.voters.clone());
            (MetadataLog::Observer(observer), Recovered::default())
        };
        let config_incarnation = config.incarnation;
        let mut node = ClusterNode {
            config,
            own,
            lost_unsynced,
            node,
            metadata,
            broker,
            controller: None,
            marker_term: None,
            replay: None,
            awaiting_controller: Vec::new(),
            outbox: Vec::new(),
            last_quorum_tick: now,
            last_heartbeat: None,
            last_register: None,
            fetches_out: BTreeMap::new(),
            next_correlation: 0,
            fetches_in: BTreeMap::new(),
            isr_out: BTreeMap::new(),
            topics_out: BTreeMap::new(),
            topic_results: BTreeMap::new(),
            topic_changes: BTreeMap::new(),
            elections: BTreeMap::new(),
            quorum_asks: BTreeMap::new(),
            reassignments: BTreeMap::new(),
            metadata_fetches: BTreeMap::new(),
            observers: BTreeMap::new(),
            leader_throttle: Throttle::default(),
            follower_throttle: Throttle::default(),
            // Numbers of an earlier incarnation are not reused: a late controller answer to
            // one of its requests finds nothing waiting under its number.
            next_parked: incarnation_base(config_incarnation),
            peers_down: Default::default(),
            peers_lost_at: BTreeMap::new(),
            held_metadata: BTreeMap::new(),
            shutting_down: false,
            last_transfer: None,
            completed: Vec::new(),
        };
        // The committed log is replayed into an image first and the broker takes only the
        // result: the partitions' past roles (leaders long replaced) are never acted on.
        let mut image = ClusterImage::new();
        if let Some((_, data)) = recovered.snapshot {
            for record in snapshot_records(&data)? {
                image
                    .apply(&record)
                    .map_err(|err| NodeError::Log(err.to_string()))?;
            }
        }
        for (_, data) in recovered.entries {
            let entry = LogEntry::decode(&data).map_err(|err| NodeError::Log(err.to_string()))?;
            if let LogEntry::Records(records) = entry {
                for record in &records {
                    image
                        .apply(record)
                        .map_err(|err| NodeError::Log(err.to_string()))?;
                }
            }
        }
        node.broker.install_image(now, image)?;
        if node.metadata.observer().is_some() {
            node.replay = Some(ClusterImage::new());
        }
        node.pump(now)?;
        Ok(node)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// The broker, for drivers that read its files (fetch responses).
    pub fn broker(&self) -> &Broker<P> {
        &self.broker
    }

    /// The broker, for tests that look inside it.
    #[cfg(test)]
    pub(crate) fn broker_mut(&mut self) -> &mut Broker<P> {
        &mut self.broker
    }

    /// The committed cluster image this node applied.
    pub fn image(&self) -> &ClusterImage {
        self.broker.image()
    }

    /// Whether the broker serves clients: once its own registration (this incarnation) is
    /// applied — so it has replayed every metadata decision made before it came back — and
    /// the controller unfenced it. Before, its image may name it leader of partitions that
    /// moved while it was away; the driver does not serve clients then.
    pub fn is_serving(&self) -> bool {
        let active = self.image().is_active(self.node);
        // Fenced for its controlled shutdown, it still answers: Metadata names the new
        // leaders, a produce gets NOT_LEADER_OR_FOLLOWER, so clients move without a
        // dropped connection.
        // A single broker's topics not yet adopted would look missing (or be created anew).
        let adopted = self.broker.legacy_topics().is_empty();
        self.caught_up() && adopted && (active || self.shutting_down)
    }

    /// Begins a controlled shutdown (SIGTERM): the node asks the controller to move its
    /// leadership away and fence it, keeps serving meanwhile, and — once its image shows
    /// that — hands the quorum's leadership to another voter if it holds it. The shell
    /// stops the node when [`ClusterNode::shutdown_complete`] says so (or after a timeout).
    pub fn begin_shutdown(&mut self, now: Millis) -> Result<(), NodeError> {
        self.shutting_down = true;
        self.last_heartbeat = None; // ask at once
        self.pump(now)
    }

    /// Whether a controlled shutdown has moved everything it can: this node leads no
    /// partition, is fenced, and does not lead the quorum (unless it is the only voter).
    /// A node not yet registered, or whose every peer is down, has nothing to hand over.
    pub fn shutdown_complete(&self) -> bool {
        let peers = self.image().brokers().keys().chain(&self.config.voters);
        let alone = peers
            .filter(|&&n| n != self.node)
            .all(|n| self.peers_down.contains(n));
        if !self.caught_up() || alone {
            return true;
        }
        self.handed_off() && (!self.metadata.is_leader() || self.config.voters.len() == 1)
    }

    /// Whether the committed image shows this node fenced and leading nothing.
    fn handed_off(&self) -> bool {
        let image = self.image();
        let mut partitions = image.topics().values().flat_map(|t| &t.partitions);
        !image.is_active(self.node) && !partitions.any(|p| p.leader == Some(self.node))
    }

    /// A fresh number for a request this node parks itself (its `ParkedId`).
    fn next_parked_number(&mut self) -> u64 {
        self.next_parked += 1;
        self.next_parked
    }

    /// Whether this incarnation's registration is applied: every metadata decision made
    /// before it — leaders moved while this node was away — is in its image.
    fn caught_up(&self) -> bool {
        self.image()
            .brokers()
            .get(&self.node)
            .is_some_and(|b| b.registration.incarnation == self.config.incarnation)
    }

    /// Whether this node is the active controller.
    pub fn is_controller(&self) -> bool {
        self.controller.is_some()
    }

    /// The quorum leader this node knows of.
    pub fn quorum_leader(&self) -> Option<NodeId> {
        self.metadata.leader()
    }

    /// A client request. CreateTopics, DeleteTopics, CreatePartitions and config changes go
    /// to the controller (answered once
    /// this node's image shows the change, see `topics.rs`); everything else to the broker.
    pub fn handle_request(
        &mut self,
        now: Millis,
        context: &RequestContext,
        request: Request,
    ) -> Result<Reply, NodeError> {
        let reply = match request.body {
            RequestKind::CreateTopics(body) => self.create_topics(now, body),
            RequestKind::DeleteTopics(body) => self.delete_topics(now, body, request.api_version),
            RequestKind::CreatePartitions(body) => self.create_partitions(now, body),
            RequestKind::AlterConfigs(body) => self.alter_configs(now, body),
            RequestKind::IncrementalAlterConfigs(body) => self.incremental_alter_configs(now, body),
            RequestKind::ElectLeaders(body) => self.elect_leaders(now, body, request.api_version),
            RequestKind::DescribeQuorum(body) => self.describe_quorum(now, body),
            RequestKind::AlterPartitionReassignments(body) => self.alter_reassignments(now, body),
            RequestKind::UnregisterBroker(body) => self.unregister_broker(now, body),
            RequestKind::Fetch(mut body) => {
                // Only peers fetch as followers (their fetches come as peer messages): a client
                // naming a replica id is a consumer, or it could move the high watermark.
                body.replica_id = kafka_protocol::messages::BrokerId(-1);
                let request = Request {
                    body: RequestKind::Fetch(body),
                    ..request
                };
                self.broker.handle_request_from(now, context, request)
            }
            RequestKind::Metadata(body) => match self.metadata_hold(now, &body) {
                Some(deadline) => self.hold_metadata(body, request.api_version, deadline),
                None => {
                    let request = Request {
                        body: RequestKind::Metadata(body),
                        ..request
                    };
                    self.broker.handle_request_from(now, context, request)
                }
            },
            _ => self.broker.handle_request_from(now, context, request),
        };
        self.pump(now)?;
        Ok(reply)
    }

    /// The driver lost its connection to `peer` (the process died: its sockets were
    /// closed or reset). The controller fences it at once instead of after
    /// `broker.session.timeout.ms`, so its partitions get new leaders in a moment; a node
    /// that becomes controller later fences the peers still down. Fencing is always safe: a
    /// peer that is in fact alive is unfenced by its next caught-up heartbeat.
    pub fn handle_peer_down(&mut self, now: Millis, peer: NodeId) -> Result<(), NodeError> {
        if peer == self.node {
            return Ok(());
        }
        self.peers_down.insert(peer);
        self.peers_lost_at.entry(peer).or_insert(now);
        self.metadata_fetches.remove(&peer);
        if let Some(observer) = self.metadata.observer() {
            observer.peer_down(peer);
        }
        if let Some(controller) = &mut self.controller {
            let records = controller.fence_broker(peer);
            self.propose(records)?;
        }
        self.pump(now)
    }

    /// A message from peer `from`. Damaged messages are dropped (the sender retries what
    /// matters).
    pub fn handle_peer_message(
        &mut self,
        now: Millis,
        from: NodeId,
        bytes: &[u8],
    ) -> Result<(), NodeError> {
        self.peers_down.remove(&from);
        self.peers_lost_at.remove(&from);
        if let Ok(message) = PeerMessage::decode(bytes) {
            self.dispatch(now, from, message)?;
        }
        self.pump(now)
    }

    /// Acts on one message from `from` (which may be this node, asking its own controller).
    fn dispatch(
        &mut self,
        now: Millis,
        from: NodeId,
        message: PeerMessage,
    ) -> Result<(), NodeError> {
        if self.controller.is_none() && self.metadata.is_leader() && message.waits_for_controller()
        {
            if self.awaiting_controller.len() < AWAITING_CONTROLLER_MAX {
                self.awaiting_controller.push((from, message));
            }
            return Ok(());
        }
        match message {
            PeerMessage::Raft(bytes) => {
                // A damaged or misdirected quorum message is dropped like a lost one.
                let _ = self.metadata.handle_raft(from, &bytes);
            }
            PeerMessage::Register(registration, lost_unsynced) => {
                if let Some(controller) = &mut self.controller {
                    let records = controller.register_broker(now, registration, lost_unsynced);
                    self.propose(records)?;
                }
            }
            PeerMessage::Heartbeat {
                node,
                incarnation,
                caught_up,
                shutting_down,
            } => {
                if let Some(controller) = &mut self.controller {
                    let decided =
                        controller.heartbeat(now, node, incarnation, caught_up, shutting_down);
                    if let Ok(records) = decided {
                        self.propose(records)?;
                    }
                }
            }
            PeerMessage::AlterPartition(change) => {
                let Some(controller) = &mut self.controller else {
                    return Ok(()); // the leader asks again after its timeout
                };
                let (topic_id, partition) = (change.topic_id, change.partition);
                match controller.alter_partition(change) {
                    Ok((_, records)) => self.propose(records)?,
                    Err(_) => {
                        let refused = PeerMessage::AlterPartitionRefused {
                            topic_id,
                            partition,
                        };
                        self.send(now, from, refused)?;
                    }
                }
            }
            // A refused ISR change is asked again after the request timeout (or sooner, once
            // a newer partition record arrives), not at once: a follower that is fenced but
            // still fetching would otherwise be proposed and refused in a loop.
            PeerMessage::AlterPartitionRefused { .. } => {}
            PeerMessage::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
                assignments,
            } => {
                // A stable id from the name and the log position: no randomness in the core.
                let seed = u128::from(crc32c::crc32c(name.as_bytes()))
                    | (u128::from(self.metadata.applied_index()) << 32)
                    | (u128::from(self.metadata.term()) << 96);
                let topic = NewTopic {
                    name: name.clone(),
                    id: uuid::Uuid::from_u128(seed | 1),
                    partitions,
                    replication_factor,
                    configs,
                    assignments,
                    leader_epoch: LeaderEpoch(0),
                };
                self.decide_topic_change(now, from, TopicChange::Create, name, |c| {
                    c.create_topic(topic)
                })?;
            }
            PeerMessage::DeleteTopic { name } => {
                let topic = name.clone();
                self.decide_topic_change(now, from, TopicChange::Delete, name, |c| {
                    c.delete_topic(&topic)
                        .map_err(|code| (code, format!("{topic}: {code:?}")))
                })?;
            }
            PeerMessage::AlterTopicConfigs { name, configs } => {
                let topic = name.clone();
                self.decide_topic_change(now, from, TopicChange::Configs, name, |c| {
                    c.alter_topic_configs(&topic, configs)
                })?;
            }
            PeerMessage::UnregisterBroker { node } => {
                let name = node.0.to_string();
                self.decide_topic_change(now, from, TopicChange::Unregister, name, |c| {
                    c.unregister_broker(node)
                })?;
            }
            PeerMessage::AlterBrokerConfigs { node, changes } => {
                let name = broker_resource_name(node);
                self.decide_topic_change(now, from, TopicChange::BrokerConfigs, name, |c| {
                    c.alter_broker_configs(node, changes)
                })?;
            }
            PeerMessage::CreatePartitions {
                name,
                count,
                assignments,
            } => {
                let topic = name.clone();
                let change = TopicChange::AddPartitions;
                self.decide_topic_change(now, from, change, name, |c| {
                    c.add_partitions(&topic, count, &assignments)
                })?;
            }
            PeerMessage::ElectLeaders {
                request,
                election,
                partitions,
            } => {
                let Some(controller) = &mut self.controller else {
                    return Ok(()); // the client asks again after its timeout
                };
                let (results, records) = controller.elect_leaders(election, partitions.as_deref());
                self.propose(records)?;
                self.send(now, from, PeerMessage::LeadersElected { request, results })?;
            }
            PeerMessage::LeadersElected { request, results } => {
                self.take_election_results(request, results)
            }
            PeerMessage::Reassign {
                request,
                partitions,
            } => {
                let Some(controller) = &mut self.controller else {
                    return Ok(()); // the client asks again after its timeout
                };
                let (results, records) = controller.reassign(&partitions);
                self.propose(records)?;
                self.send(now, from, PeerMessage::Reassigned { request, results })?;
            }
            PeerMessage::Reassigned { request, results } => {
                self.take_reassignment_results(request, results)
            }
            PeerMessage::DescribeQuorum { request } => {
                let state = self.quorum_state(now);
                self.send(now, from, PeerMessage::QuorumDescribed { request, state })?;
            }
            PeerMessage::QuorumDescribed { request, state } => {
                self.take_quorum_state(request, state)
            }
            PeerMessage::TopicChanged {
                change,
                name,
                error_code,
                message,
            } => {
                if change == TopicChange::Create {
                    self.topics_out.remove(&name);
                }
                self.topic_results
                    .insert((change, name), (error_code, message));
            }
            // A node that has not caught up with the metadata log may still believe it leads
            // partitions that moved (with a log a power loss cut short): it answers no
            // follower until its own registration is applied.
            PeerMessage::Fetch {
                correlation,
                request,
            } if self.caught_up() => self.serve_fetch(now, from, correlation, &request)?,
            PeerMessage::Fetch { .. } => {}
            PeerMessage::MetadataFetch { correlation, after } => {
                self.serve_metadata_fetch(now, from, correlation, after)
            }
            PeerMessage::MetadataEntries {
                correlation,
                leader,
                term,
                through,
                latest,
                committed,
            } => {
                let span = (through, latest);
                self.take_metadata_entries(from, correlation, (leader, term), span, committed)
            }
            PeerMessage::FetchResponse {
                correlation,
                response,
            } => self.take_fetch_response(now, from, correlation, &response),
            PeerMessage::Markers(MarkerMessage::Write { request, markers }) => self
                .broker
                .write_markers_for_peer(now, from, request, markers),
            PeerMessage::Markers(MarkerMessage::Written { request, results }) => {
                self.broker.markers_written_by_peer(now, request, results)
            }
        }
        Ok(())
    }

    /// Sends `message` to `to`; to this node, it is acted on at once.
    fn send(&mut self, now: Millis, to: NodeId, message: PeerMessage) -> Result<(), NodeError> {
        if to == self.node {
            let node = self.node;
            return self.dispatch(now, node, message);
        }
        self.outbox.push((to, message));
        Ok(())
    }

    /// Runs the timers: quorum ticks, the broker's heartbeat and registration, the
    /// controller's session checks, the broker's own timers, and retries of requests left
    /// unanswered.
    pub fn handle_tick(&mut self, now: Millis) -> Result<(), NodeError> {
        while now.0 - self.last_quorum_tick.0 >= self.config.tick_ms {
            self.metadata.handle_tick();
            self.last_quorum_tick = Millis(self.last_quorum_tick.0 + self.config.tick_ms);
        }
        if let Some(controller) = &mut self.controller {
            // A one-node cluster's broker has nobody to hand over to: a stall of the process
            // is no reason to fence it. In a larger cluster a stalled node is fenced so the
            // others take over its partitions.
            if self.config.is_single_voter() {
                controller.keep_alive(self.node, self.config.incarnation, now);
            }
            let records = controller.tick(now);
            self.propose(records)?;
        }
        self.broker.handle_tick(now);
        let timeout = self.config.request_timeout_ms;
        let expired = |sent: &Millis| now.0 - sent.0 >= timeout;
        self.fetches_out.retain(|_, (_, _, sent)| !expired(sent));
        let stale: Vec<(uuid::Uuid, i32)> = self
            .isr_out
            .iter()
            .filter(|(_, sent)| expired(sent))
            .map(|(key, _)| *key)
            .collect();
        for (topic_id, partition) in stale {
            self.isr_out.remove(&(topic_id, partition));
            self.broker.isr_change_failed(topic_id, partition);
        }
        self.topics_out.retain(|_, sent| !expired(sent));
        self.pump(now)
    }

    /// When [`ClusterNode::handle_tick`] should next run at the latest.
    pub fn next_deadline(&self) -> Millis {
        let quorum = Millis(self.last_quorum_tick.0 + self.config.tick_ms);
        let broker = self.broker.next_deadline();
        let controller = self.controller.as_ref().and_then(Controller::next_deadline);
        let topics = self.next_topic_change_deadline();
        let elections = self.next_election_deadline();
        let asks = self.next_quorum_deadline();
        let metadata = self.next_metadata_fetch_deadline();
        let moves = self.next_reassignment_deadline();
        let held = self.next_metadata_hold_deadline();
        [
            Some(quorum),
            broker,
            controller,
            topics,
            elections,
            asks,
            metadata,
            moves,
            held,
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("the quorum always ticks")
    }

    /// Drains the messages for peers: (to, bytes).
    pub fn poll_outgoing(&mut self) -> Vec<(NodeId, Vec<u8>)> {
        std::mem::take(&mut self.outbox)
            .into_iter()
            .map(|(to, message)| (to, message.encode()))
            .collect()
    }

    /// Drains the parked client requests answered since the last call.
    pub fn poll_completed(&mut self) -> Vec<Completed> {
        for (id, data) in self.broker.poll_completed_fetches() {
            match self.fetches_in.remove(&id) {
                Some((follower, correlation)) => {
                    self.send_fetch_response(follower, correlation, &data)
                }
                None => self.completed.push(Completed::Fetch(id, data)),
            }
        }
        for (id, response) in self.broker.poll_completed_responses() {
            self.completed
                .push(Completed::Response(id, Box::new(response)));
        }
        std::mem::take(&mut self.completed)
    }

    /// The failures of the broker's background work since the last call.
    pub fn poll_background_errors(&mut self) -> Vec<String> {
        self.broker.poll_background_errors()
    }

    /// Forgets a parked client request whose connection went away.
    pub fn cancel_parked(&mut self, id: ParkedId) {
        let mine = self.topic_changes.remove(&id).is_some()
            || self.elections.remove(&id).is_some()
            || self.quorum_asks.remove(&id).is_some()
            || self.reassignments.remove(&id).is_some()
            || self.held_metadata.remove(&id).is_some();
        if !mine {
            self.broker.cancel_parked(id);
        }
    }

    /// Closes the broker's logs cleanly.
    pub fn close(self) -> Result<(), NodeError> {
        self.broker.close()?;
        Ok(())
    }

    /// Everything that follows an input: the quorum's output (messages, committed entries,
    /// snapshots), the controller's activation, and the broker's requests to its peers.
    fn pump(&mut self, now: Millis) -> Result<(), NodeError> {
        // Committing can make the controller decide, which proposes more: a few rounds.
        for _ in 0..4 {
            let output = self.metadata.poll()?;
            let idle = output.messages.is_empty() && output.committed.is_empty();
            for (to, bytes) in output.messages {
                self.outbox.push((to, PeerMessage::Raft(bytes)));
            }
            for committed in output.committed {
                if let Some(image) = &mut self.replay {
                    replay_step(image, &committed)?;
                    continue;
                }
                match committed {
                    Committed::Entry { data, .. } => self.apply_entry(now, &data)?,
                    Committed::Snapshot { data, .. } => self.install_snapshot(now, &data)?,
                }
            }
            if self.metadata.observer().is_some_and(|o| o.caught_up()) {
                if let Some(image) = self.replay.take() {
                    self.broker.install_image(now, image)?;
                }
            }
            self.update_controller();
            self.adopt_legacy_topics()?;
            if idle {
                break;
            }
        }
        if self.metadata.snapshot_due() {
            let data = LogEntry::Records(self.image().to_records()).encode();
            self.metadata.snapshot(data)?;
        }
        self.broker.set_controller(self.metadata.leader());
        let caught_up = self.caught_up();
        self.broker.set_caught_up(caught_up);
        self.answer_parked_metadata_fetches(now);
        self.send_metadata_fetch(now);
        self.broker_requests(now);
        self.complete_topic_changes(now);
        self.complete_elections(now);
        self.complete_reassignments(now);
        self.release_metadata(now);
        self.expire_quorum_asks(now);
        Ok(())
    }

    /// As the controller of a one-node cluster in a directory a single broker wrote: adopts
    /// that broker's topics into the metadata log once this node's broker is active — each
    /// with its id, partitions and configs, replicated on this node alone, whose logs it
    /// already holds (the broker forgets them as they apply).
    fn adopt_legacy_topics(&mut self) -> Result<(), NodeError> {
        let Some(controller) = &mut self.controller else {
            return Ok(());
        };
        if !controller.image().is_active(self.node) {
            return Ok(());
        }
        let mut records = Vec::new();
        for topic in self.broker.legacy_topics() {
            if controller.image().topic(&topic.name).is_some() {
                continue; // proposed already, or adopted before a crash
            }
            let count = usize::try_from(topic.partitions).unwrap_or(0);
            let adopted = NewTopic {
                name: topic.name.clone(),
                id: topic.id,
                partitions: topic.partitions,
                replication_factor: 1,
                configs: topic.configs.clone(),
                assignments: vec![vec![self.node]; count],
                leader_epoch: topic.leader_epoch,
            };
            let created = controller.create_topic(adopted).map_err(|(_, message)| {
                NodeError::Migration(format!("cannot adopt topic {}: {message}", topic.name))
            })?;
            records.extend(created);
        }
        self.propose(records)
    }

    /// Starts the controller once this node leads the quorum and applied its marker; drops
    /// it when the leadership is gone.
    fn update_controller(&mut self) {
        if !self.metadata.is_leader() {
            self.controller = None;
            self.awaiting_controller.clear(); // their senders ask the next leader
            return;
        }
        let term = self.metadata.term();
        if self.marker_term != Some(term) {
            self.controller = None;
            // The marker commits after every entry of earlier terms: once applied, the
            // image is complete. A refused proposal (a leadership transfer pending) is
            // proposed again at the next input.
            let marker = LogEntry::LeaderMarker { term }.encode();
            if self.metadata.propose(marker).is_ok() {
                self.marker_term = Some(term);
            }
        }
    }

    /// Applies one committed entry.
    fn apply_entry(&mut self, now: Millis, data: &[u8]) -> Result<(), NodeError> {
        match LogEntry::decode(data).map_err(|err| NodeError::Log(err.to_string()))? {
            LogEntry::Records(records) => {
                for record in &records {
                    self.broker.apply_metadata(now, record)?;
                }
            }
            LogEntry::LeaderMarker { term } => {
                if self.metadata.is_leader() && self.metadata.term() == term {
                    let image = self.image().clone();
                    let mut controller = Controller::new(image, now, self.config.controller);
                    let records: Vec<_> = (self.peers_down.iter())
                        .flat_map(|peer| controller.fence_broker(*peer))
                        .collect();
                    self.controller = Some(controller);
                    // This node's own broker asks its new controller at once (its earlier
                    // registration or heartbeat may have found none).
                    self.last_register = None;
                    self.last_heartbeat = None;
                    self.propose(records)?;
                    for (from, message) in std::mem::take(&mut self.awaiting_controller) {
                        self.dispatch(now, from, message)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Replaces the image with a snapshot's.
    fn install_snapshot(&mut self, now: Millis, data: &[u8]) -> Result<(), NodeError> {
        let mut image = ClusterImage::new();
        for record in &snapshot_records(data)? {
            image
                .apply(record)
                .map_err(|err| NodeError::Log(err.to_string()))?;
        }
        self.broker.install_image(now, image)?;
        Ok(())
    }

    /// Proposes a controller decision's records as one entry. A proposal the quorum refuses
    /// (leadership just lost) is dropped with the controller.
    fn propose(&mut self, records: Vec<crate::cluster::MetadataRecord>) -> Result<(), NodeError> {
        if records.is_empty() {
            return Ok(());
        }
        if self
            .metadata
            .propose(LogEntry::Records(records).encode())
            .is_err()
        {
            // The decision is lost (leadership gone, or the proposal refused): drop the
            // controller, whose image holds it, and start a fresh one from the committed image
            // after a new marker.
            self.controller = None;
            self.marker_term = None;
        }
        Ok(())
    }

    /// Sends a request to the controller (the quorum's leader); dropped while there is none
    /// (the broker asks again).
    /// As the controller: makes a topic change a broker asked for, proposes its records and
    /// answers the broker with the outcome (a node that is not the controller ignores it).
    fn decide_topic_change(
        &mut self,
        now: Millis,
        from: NodeId,
        change: TopicChange,
        name: String,
        decide: impl FnOnce(&mut Controller) -> Result<Vec<MetadataRecord>, (ErrorCode, String)>,
    ) -> Result<(), NodeError> {
        let Some(controller) = &mut self.controller else {
            return Ok(());
        };
        let (error_code, message) = match decide(controller) {
            Ok(records) => {
                self.propose(records)?;
                (0, String::new())
            }
            Err((code, message)) => (code.code(), message),
        };
        let answer = PeerMessage::TopicChanged {
            change,
            name,
            error_code,
            message,
        };
        self.send(now, from, answer)
    }

    /// The message of `ask` to ask again of the controller, when the quorum's leadership
    /// moved since it was asked (another leader, or the same one in a later term: the first
    /// lost its leadership with what it held, or none was known then). The caller sends it
    /// once its parked requests are back in place (to this node, it is acted on at once).
    fn ask_again_if_moved(
        &self,
        ask: &mut (PeerMessage, Option<(NodeId, u64)>),
    ) -> Option<PeerMessage> {
        let leader = self.metadata.leader()?;
        let now_leading = Some((leader, self.metadata.term()));
        if now_leading == ask.1 {
            return None;
        }
        ask.1 = now_leading;
        Some(ask.0.clone())
    }

    /// Who leads the quorum now, in which term (where a controller request is sent).
    fn leading(&self) -> Option<(NodeId, u64)> {
        Some((self.metadata.leader()?, self.metadata.term()))
    }

    fn send_to_controller(&mut self, now: Millis, message: PeerMessage) -> Result<(), NodeError> {
        match self.metadata.leader() {
            Some(leader) => self.send(now, leader, message),
            None => Ok(()),
        }
    }

    /// What the broker needs from its peers: registration and heartbeats, follower fetches,
    /// ISR changes, topic creations.
    fn broker_requests(&mut self, now: Millis) {
        let incarnation = self.config.incarnation;
        let registered = self.caught_up();
        if registered && self.lost_unsynced {
            // The controller applied the registration that reported the loss.
            if self.own.delete(UNSYNCED_LOSS_FILE).is_ok() && self.own.sync_dir().is_ok() {
                self.lost_unsynced = false;
            }
        }
        let resend = |last: Option<Millis>, every: i64| last.is_none_or(|t| now.0 - t.0 >= every);
        if !registered
            && resend(
                self.last_register,
                self.config.request_timeout_ms.min(1_000),
            )
        {
            self.last_register = Some(now);
            let registration = BrokerRegistration {
                node: self.node,
                incarnation,
                host: self.config.broker.advertised_host.clone(),
                port: self.config.broker.advertised_port,
                peer: self.config.peer_listener.clone(),
            };
            let message = PeerMessage::Register(registration, self.lost_unsynced);
            let _ = self.send_to_controller(now, message);
        }
        let fenced = !self.image().is_active(self.node);
        let interval = if fenced {
            self.config.tick_ms
        } else {
            self.config.broker_heartbeat_ms
        };
        if registered && resend(self.last_heartbeat, interval) {
            self.last_heartbeat = Some(now);
            let heartbeat = PeerMessage::Heartbeat {
                node: self.node,
                incarnation,
                caught_up: true,
                shutting_down: self.shutting_down,
            };
            let _ = self.send_to_controller(now, heartbeat);
        }
        // Asked again no sooner than raft gives a pending transfer up (an election timeout):
        // meanwhile it refuses proposals, so the controller cannot act.
        let transfer_every = self.config.tick_ms * (self.config.election_tick as i64 + 1);
        if self.shutting_down
            && self.handed_off()
            && self.metadata.is_leader()
            && resend(self.last_transfer, transfer_every)
        {
            self.last_transfer = Some(now);
            self.metadata.transfer_leadership(&self.peers_down);
        }
        if !registered {
            // Its partition roles may be stale until its registration is applied.
            return;
        }
        let fetching = &self.fetches_out;
        let node = self.node;
        let wanted = self
            .broker
            .replica_fetches(self.config.replica_fetch_wait_ms, |leader| {
                leader == node || fetching.contains_key(&leader)
            });
        for (leader, mut request) in wanted {
            self.throttle_own_fetch(now, &mut request);
            if request.topics.is_empty() {
                continue; // only throttled partitions, and the throttle is spent
            }
            let mut body = bytes::BytesMut::new();
            if request.encode(&mut body, REPLICA_FETCH_VERSION).is_err() {
                continue;
            }
            self.next_correlation += 1;
            let correlation = self.next_correlation;
            self.fetches_out.insert(leader, (correlation, request, now));
            let message = PeerMessage::Fetch {
                correlation,
                request: body.to_vec(),
            };
            self.outbox.push((leader, message));
        }
        for (to, message) in self.broker.take_marker_messages() {
            if to != self.node {
                self.outbox.push((to, PeerMessage::Markers(message)));
            }
        }
        for change in self.broker.take_isr_changes() {
            self.isr_out
                .insert((change.topic_id, change.partition), now);
            let _ = self.send_to_controller(now, PeerMessage::AlterPartition(change));
        }
        for name in self.broker.take_topic_requests() {
            if self.topics_out.contains_key(&name) {
                continue;
            }
            self.topics_out.insert(name.clone(), now);
            let broker = &self.config.broker;
            let (partitions, replication_factor, configs) = if name == OFFSETS_TOPIC {
                // Replicated like any topic, on as many brokers as there are, up to three
                // (Kafka's offsets.topic.replication.factor, capped by the cluster's size).
                let registered = self.broker.image().brokers().len();
                let brokers = self.config.voters.len().max(registered).clamp(1, 3);
                let factor = i16::try_from(brokers).expect("at most 3");
                let configs = Broker::<P>::offsets_topic_overrides();
                (broker.offsets_topic_partitions.max(1), factor, configs)
            } else if name == TRANSACTION_STATE_TOPIC {
                // As Kafka's transaction.state.log.replication.factor, capped likewise.
                let registered = self.broker.image().brokers().len();
                let brokers = self.config.voters.len().max(registered).clamp(1, 3);
                let factor = i16::try_from(brokers).expect("at most 3");
                let mut configs = Broker::<P>::offsets_topic_overrides();
                // Kafka's transaction.state.log.min.isr (2), capped by the replicas there are.
                let min_insync = factor.min(2).to_string();
                configs.insert("min.insync.replicas".to_string(), min_insync);
                (broker.transaction_state_partitions.max(1), factor, configs)
            } else {
                let factor = broker.default_replication_factor;
                (broker.num_partitions, factor, BTreeMap::new())
            };
            let request = PeerMessage::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
                assignments: Vec::new(),
            };
            let _ = self.send_to_controller(now, request);
        }
    }

    /// A follower's fetch from a peer: answered now or when the broker completes it.
    fn serve_fetch(
        &mut self,
        now: Millis,
        from: NodeId,
        correlation: u64,
        body: &[u8],
    ) -> Result<(), NodeError> {
        let mut bytes = bytes::Bytes::copy_from_slice(body);
        let Ok(mut request) = FetchRequest::decode(&mut bytes, REPLICA_FETCH_VERSION) else {
            return Ok(());
        };
        if request.replica_id.0 != from.0 {
            return Ok(()); // a peer fetches as itself only
        }
        self.throttle_follower_fetch(now, from, &mut request);
        let request = Request {
            api_key: ApiKey::Fetch,
            api_version: REPLICA_FETCH_VERSION,
            correlation_id: 0,
            client_id: None,
            body: RequestKind::Fetch(request),
        };
        match self.broker.handle_request(now, request) {
            Reply::Fetch(data) => self.send_fetch_response(from, correlation, &data),
            Reply::Parked(id) => {
                self.fetches_in.insert(id, (from, correlation));
            }
            Reply::Response(_) | Reply::None => {}
        }
        Ok(())
    }

    fn send_fetch_response(&mut self, to: NodeId, correlation: u64, data: &FetchResponseData) {
        self.count_throttled_sent(to, data);
        // A partition that vanished between the read and now leaves the follower to retry.
        if let Ok(response) = self
            .broker
            .fetch_response_bytes(REPLICA_FETCH_VERSION, 0, data)
        {
            self.outbox.push((
                to,
                PeerMessage::FetchResponse {
                    correlation,
                    response,
                },
            ));
        }
    }

    /// A leader's answer to this node's follower fetch.
    fn take_fetch_response(&mut self, now: Millis, from: NodeId, correlation: u64, bytes: &[u8]) {
        let Some((expected, _, _)) = self.fetches_out.get(&from) else {
            return;
        };
        if *expected != correlation {
            return;
        }
        let (_, request, _) = self.fetches_out.remove(&from).expect("checked above");
        let Some(response) = decode_fetch_response(bytes) else {
            return;
        };
        self.count_throttled_received(&response);
        self.broker
            .handle_replica_fetch_response(now, &request, response);
    }
}

/// Where an incarnation's parked-request numbers start: the incarnation's low 32 bits
/// moved to the high half, so two incarnations' numbers differ for their first 4 billion
/// requests — whether incarnations count up (the simulator, tests) or are drawn at random
/// (the server).
fn incarnation_base(incarnation: u64) -> u64 {
    (incarnation & 0xFFFF_FFFF) << 32
}

/// The BROKER resource name of dynamic configs for `node` (-1: the empty name, every
/// broker's default).
fn broker_resource_name(node: i32) -> String {
    match node {
        -1 => String::new(),
        node => node.to_string(),
    }
}

/// Applies one committed step to an image being replayed (a leader's marker changes
/// nothing).
fn replay_step(image: &mut ClusterImage, step: &Committed) -> Result<(), NodeError> {
    let records = match step {
        Committed::Entry { data, .. } => {
            match LogEntry::decode(data).map_err(|err| NodeError::Log(err.to_string()))? {
                LogEntry::Records(records) => records,
                LogEntry::LeaderMarker { .. } => return Ok(()),
            }
        }
        Committed::Snapshot { data, .. } => {
            *image = ClusterImage::new();
            snapshot_records(data)?
        }
    };
    for record in &records {
        image
            .apply(record)
            .map_err(|err| NodeError::Log(err.to_string()))?;
    }
    Ok(())
}

/// The records of a metadata snapshot.
fn snapshot_records(data: &[u8]) -> Result<Vec<crate::cluster::MetadataRecord>, NodeError> {
    match LogEntry::decode(data).map_err(|err| NodeError::Log(err.to_string()))? {
        LogEntry::Records(records) => Ok(records),
        LogEntry::LeaderMarker { .. } => Err(NodeError::Log("a snapshot holds records".into())),
    }
}

/// Decodes a whole Fetch response (size prefix and header included) at the replica version.
fn decode_fetch_response(bytes: &[u8]) -> Option<FetchResponse> {
    let body = bytes.get(4..)?;
    let mut body = bytes::Bytes::copy_from_slice(body);
    let header_version = ApiKey::Fetch.response_header_version(REPLICA_FETCH_VERSION);
    ResponseHeader::decode(&mut body, header_version).ok()?;
    FetchResponse::decode(&mut body, REPLICA_FETCH_VERSION).ok()
}

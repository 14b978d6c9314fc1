//! The active controller's decisions: broker sessions and fencing, topic creation and
//! replica assignment, leader election from the ISR, and the leaders' ISR changes.
//!
//! Every method returns the records that carry out its decision, already applied to the
//! controller's own image (the committed image plus what it wrote since), so the next
//! decision sees them. The driver appends the records to the metadata log; once committed,
//! every node applies them to its own [`ClusterImage`]. A controller that loses its
//! leadership is dropped; the next one starts from the committed image
//! ([`Controller::new`]).
//!
//! Election is clean only: a leader is taken from the ISR or, when no in-sync replica can
//! lead, from the eligible leader replicas (KIP-966: replicas that left the ISR while it was
//! below `min.insync.replicas`, so the high watermark has not moved since and they hold every
//! committed record). When the last in-sync replica is fenced it stays in the ISR and the
//! partition waits for it or for an eligible replica. A broker that restarts after its
//! machine lost power (it may have lost unsynced records) leaves every ISR and ELR it was in,
//! even as the last member: it is never elected on records it may no longer have.

mod reassign;

use std::collections::BTreeMap;

pub use reassign::{check_target, Reassigned, Reassignment};

use super::image::ClusterImage;
use super::records::{BrokerRegistration, MetadataRecord, PartitionRecord};
use crate::error::ErrorCode;
use crate::types::{LeaderEpoch, Millis, NodeId};

/// The controller's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`: a broker that has not heartbeaten for this long is fenced.
    pub session_timeout_ms: i64,
    /// `min.insync.replicas` of topics that do not set it.
    pub min_insync_replicas: usize,
    /// `auto.leader.rebalance.enable`: move leadership back to preferred replicas.
    pub auto_leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`, in milliseconds.
    pub imbalance_check_interval_ms: i64,
    /// `leader.imbalance.per.broker.percentage`: a broker whose preferred partitions are led
    /// elsewhere more than this often gets them back.
    pub imbalance_per_broker_percentage: u32,
}

impl Default for ControllerConfig {
    fn default() -> ControllerConfig {
        ControllerConfig {
            session_timeout_ms: 9_000,
            min_insync_replicas: 1,
            auto_leader_rebalance: true,
            imbalance_check_interval_ms: 300_000,
            imbalance_per_broker_percentage: 10,
        }
    }
}

/// Which leader an ElectLeaders request asks for (Kafka's election type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Election {
    /// The preferred replica (the first of the assignment), if it is active and in sync.
    Preferred,
    /// For a partition without a leader: a clean leader if there is one, else any active
    /// replica, which may lack committed records (the operator accepts the loss).
    Unclean,
}

/// The outcome of one partition's election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elected {
    /// The topic's id.
    pub topic_id: uuid::Uuid,
    /// The partition's index.
    pub partition: i32,
    /// The new leader epoch, or why there is none: `ELECTION_NOT_NEEDED`,
    /// `PREFERRED_LEADER_NOT_AVAILABLE`, `ELIGIBLE_LEADERS_NOT_AVAILABLE`,
    /// `UNKNOWN_TOPIC_OR_PARTITION`.
    pub outcome: Result<LeaderEpoch, (ErrorCode, String)>,
}

/// A CreateTopics request as the controller sees it (validated names and configs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopic {
    /// The topic's name.
    pub name: String,
    /// The id the topic gets (the driver draws it: random, or from the simulator's seed).
    pub id: uuid::Uuid,
    /// How many partitions.
    pub partitions: i32,
    /// How many replicas each partition has.
    pub replication_factor: i16,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
    /// Each partition's replicas, led by the first active one (empty: spread over the
    /// active brokers with `replication_factor`).
    pub assignments: Vec<Vec<NodeId>>,
    /// The partitions' first leader epoch: 0 for a new topic; for a topic a one-node
    /// cluster adopts, the newest its logs already hold (a leader may not lead below it).
    pub leader_epoch: LeaderEpoch,
}

/// A leader's request to change its partition's ISR (Kafka's AlterPartition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrChange {
    /// The broker asking: it must be the partition's leader.
    pub leader: NodeId,
    /// The topic's id.
    pub topic_id: uuid::Uuid,
    /// The partition's index.
    pub partition: i32,
    /// The leader epoch the leader leads in.
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch of the state the leader last saw.
    pub partition_epoch: i32,
    /// The ISR the leader wants.
    pub isr: Vec<NodeId>,
}

/// The active controller. See the module doc.
#[derive(Debug)]
pub struct Controller {
    image: ClusterImage,
    /// When each registered broker last heartbeat (or when this controller took over).
    sessions: BTreeMap<NodeId, Millis>,
    config: ControllerConfig,
    /// When the leader balance was last checked (`auto.leader.rebalance.enable`).
    last_balance_check: Millis,
    /// Per partition, the partition epoch at which its replicas (or the reassignment under
    /// way) last changed — as far as this controller knows: at activation every partition
    /// counts as changed at its epoch then. A reassignment asked against an older view is
    /// refused (`reassign.rs`).
    assigned_at: BTreeMap<(uuid::Uuid, i32), i32>,
}

impl Controller {
    /// Becomes the active controller over the committed `image` at `now`: every registered
    /// broker's session starts afresh.
    pub fn new(image: ClusterImage, now: Millis, config: ControllerConfig) -> Controller {
        let sessions = image.brokers().keys().map(|&node| (node, now)).collect();
        let assigned_at = (image.topics().values())
            .flat_map(|t| &t.partitions)
            .map(|p| ((p.topic_id, p.partition), p.partition_epoch))
            .collect();
        Controller {
            image,
            sessions,
            config,
            last_balance_check: now,
            assigned_at,
        }
    }

    /// The image as this controller's records leave it (committed or not).
    pub fn image(&self) -> &ClusterImage {
        &self.image
    }

    /// A broker (re)registers. A running incarnation it replaces is fenced first, so its
    /// partitions elect other leaders; the new one starts fenced until its first heartbeat.
    /// `lost_unsynced`: its machine lost power since it last ran, so records it had not
    /// synced may be gone — it leaves every ISR and ELR.
    pub fn register_broker(
        &mut self,
        now: Millis,
        registration: BrokerRegistration,
        lost_unsynced: bool,
    ) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        if self.image.is_active(registration.node) {
            self.fence(registration.node, &mut records);
        }
        let stays =
            crate::planted::is_planted(crate::planted::PlantedBug::PowerLostReplicaStaysEligible);
        if lost_unsynced && !stays {
            self.forget_replica(registration.node, &mut records);
        }
        self.sessions.insert(registration.node, now);
        self.push(&mut records, MetadataRecord::RegisterBroker(registration));
        records
    }

    /// A broker heartbeats. `caught_up` says it has applied the metadata log up to its own
    /// registration; the first such heartbeat unfences it, and the partitions left without
    /// a leader that it is in sync for elect it. `shutting_down` asks for a controlled
    /// shutdown: the broker is fenced at once — the partitions it leads elect other in-sync
    /// leaders, it leaves the ISRs it is not the last member of — and stays fenced while it
    /// asks, so it can stop once its image shows that it leads nothing.
    ///
    /// Errors: `BROKER_ID_NOT_REGISTERED` for an unknown node, `STALE_BROKER_EPOCH` for an
    /// incarnation that is not the registered one.
    pub fn heartbeat(
        &mut self,
        now: Millis,
        node: NodeId,
        incarnation: u64,
        caught_up: bool,
        shutting_down: bool,
    ) -> Result<Vec<MetadataRecord>, ErrorCode> {
        let broker = self
            .image
            .brokers()
            .get(&node)
            .ok_or(ErrorCode::BrokerIdNotRegistered)?;
        if broker.registration.incarnation != incarnation {
            return Err(ErrorCode::StaleBrokerEpoch);
        }
        let fenced = broker.fenced;
        self.sessions.insert(node, now);
        let mut records = Vec::new();
        if shutting_down {
            if !fenced {
                self.fence(node, &mut records);
            }
        } else if fenced && caught_up {
            self.push(&mut records, MetadataRecord::UnfenceBroker { node });
            self.elect_leaderless(&mut records);
        }
        Ok(records)
    }

    /// Keeps the session of the broker on the controller's own node when nobody could take
    /// over from it (a one-node cluster's only broker): its heartbeats cannot be lost on the
    /// way, so a gap in them means the whole process stalled, and fencing it would only take
    /// every leader away. A broker not registered, or fenced, is left as it is.
    pub fn keep_alive(&mut self, node: NodeId, incarnation: u64, now: Millis) {
        let registered = self.image.brokers().get(&node);
        if registered.is_some_and(|b| b.registration.incarnation == incarnation && !b.fenced) {
            self.sessions.insert(node, now);
        }
    }

    /// Fences the brokers whose session expired by `now`; their partitions elect new leaders.
    pub fn tick(&mut self, now: Millis) -> Vec<MetadataRecord> {
        let expired: Vec<NodeId> = self
            .sessions
            .iter()
            .filter(|&(&node, &at)| {
                self.image.is_active(node) && now.since(at) > self.config.session_timeout_ms
            })
            .map(|(&node, _)| node)
            .collect();
        let mut records = Vec::new();
        for node in expired {
            self.fence(node, &mut records);
        }
        if self.config.auto_leader_rebalance
            && now.since(self.last_balance_check) >= self.config.imbalance_check_interval_ms
        {
            self.last_balance_check = now;
            self.rebalance_leaders(&mut records);
        }
        records
    }

    /// When [`Controller::tick`] could next fence a broker or check the leader balance.
    pub fn next_deadline(&self) -> Option<Millis> {
        let balance = self
            .config
            .auto_leader_rebalance
            .then(|| Millis(self.last_balance_check.0 + self.config.imbalance_check_interval_ms));
        self.sessions
            .iter()
            .filter(|&(&node, _)| self.image.is_active(node))
            .map(|(_, at)| Millis(at.0 + self.config.session_timeout_ms + 1))
            .chain(balance)
            .min()
    }

    /// ElectLeaders: an election of `kind` for each of `partitions` (topic id, index), or
    /// for every partition with `None` (then only those that elected, or could not, are
    /// reported — not those that needed no election).
    pub fn elect_leaders(
        &mut self,
        kind: Election,
        partitions: Option<&[(uuid::Uuid, i32)]>,
    ) -> (Vec<Elected>, Vec<MetadataRecord>) {
        let all: Vec<(uuid::Uuid, i32)>;
        let wanted = match partitions {
            Some(wanted) => wanted,
            None => {
                all = self
                    .partitions()
                    .map(|p| (p.topic_id, p.partition))
                    .collect();
                &all
            }
        };
        let mut records = Vec::new();
        let mut results = Vec::new();
        for &(topic_id, partition) in wanted {
            let outcome = match self.image.partition(topic_id, partition) {
                None => Err((
                    ErrorCode::UnknownTopicOrPartition,
                    format!("no partition {partition} of topic {topic_id}"),
                )),
                Some(current) => {
                    let decided = match kind {
                        Election::Preferred => self.preferred(current),
                        Election::Unclean => self.unclean(current),
                    };
                    decided.map(|next| {
                        let epoch = next.leader_epoch;
                        self.push(&mut records, MetadataRecord::Partition(next));
                        epoch
                    })
                }
            };
            let not_needed = matches!(&outcome, Err((ErrorCode::ElectionNotNeeded, _)));
            if partitions.is_some() || !not_needed {
                results.push(Elected {
                    topic_id,
                    partition,
                    outcome,
                });
            }
        }
        (results, records)
    }

    /// `partition` led by its preferred replica, if it can be.
    fn preferred(
        &self,
        partition: &PartitionRecord,
    ) -> Result<PartitionRecord, (ErrorCode, String)> {
        let Some(&preferred) = partition.replicas.first() else {
            return Err((ErrorCode::PreferredLeaderNotAvailable, "no replicas".into()));
        };
        if partition.leader == Some(preferred) {
            let message = format!("broker {} already leads", preferred.0);
            return Err((ErrorCode::ElectionNotNeeded, message));
        }
        if !self.image.is_active(preferred) || !partition.isr.contains(&preferred) {
            let message = format!("preferred broker {} is not active and in sync", preferred.0);
            return Err((ErrorCode::PreferredLeaderNotAvailable, message));
        }
        let mut next = partition.clone();
        next.leader = Some(preferred);
        next.leader_epoch = LeaderEpoch(partition.leader_epoch.0 + 1);
        next.partition_epoch += 1;
        Ok(next)
    }

    /// `partition`, without a leader, led by a clean replica or else any active one.
    fn unclean(&self, partition: &PartitionRecord) -> Result<PartitionRecord, (ErrorCode, String)> {
        if let Some(leader) = partition.leader {
            let message = format!("broker {} leads", leader.0);
            return Err((ErrorCode::ElectionNotNeeded, message));
        }
        let mut next = partition.clone();
        self.elect(&mut next);
        if next.leader.is_none() {
            // A replica a reassignment is still adding may hold nothing: the others first.
            let active = |n: &&NodeId| self.image.is_active(**n);
            let mut settled = (partition.replicas.iter()).filter(|n| !partition.adding.contains(n));
            let active = (settled.find(active)).or_else(|| partition.adding.iter().find(active));
            let Some(&leader) = active else {
                let message = "no replica is active".to_string();
                return Err((ErrorCode::EligibleLeadersNotAvailable, message));
            };
            // What the ISR and ELR held may be missing at this leader: they start over.
            next.leader = Some(leader);
            next.isr = vec![leader];
            next.elr.clear();
        }
        next.leader_epoch = LeaderEpoch(partition.leader_epoch.0 + 1);
        next.partition_epoch += 1;
        Ok(next)
    }

    /// Kafka's automatic leader rebalance: for each broker whose preferred partitions are
    /// led elsewhere more often than `leader.imbalance.per.broker.percentage`, the
    /// partitions it can lead again (active, in sync) elect it.
    fn rebalance_leaders(&mut self, records: &mut Vec<MetadataRecord>) {
        let mut preferred: BTreeMap<NodeId, (usize, Vec<PartitionRecord>)> = BTreeMap::new();
        for p in self.partitions() {
            let Some(&first) = p.replicas.first() else {
                continue;
            };
            let entry = preferred.entry(first).or_default();
            entry.0 += 1;
            if p.leader != Some(first) {
                entry.1.push(p.clone());
            }
        }
        let limit = u64::from(self.config.imbalance_per_broker_percentage);
        for (total, misled) in preferred.into_values() {
            if (misled.len() as u64) * 100 <= limit * total as u64 {
                continue;
            }
            for partition in misled {
                if let Ok(next) = self.preferred(&partition) {
                    self.push(records, MetadataRecord::Partition(next));
                }
            }
        }
    }

    /// Fences a broker now (a controlled shutdown, or an operator); its partitions elect new
    /// leaders. Nothing happens for a fenced or unknown broker.
    pub fn fence_broker(&mut self, node: NodeId) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        if self.image.is_active(node) {
            self.fence(node, &mut records);
        }
        records
    }

    /// Creates a topic: its partitions' replicas spread over the active brokers, each led
    /// by its first replica.
    ///
    /// Errors: `TOPIC_ALREADY_EXISTS`, `INVALID_PARTITIONS` (fewer than 1),
    /// `INVALID_REPLICATION_FACTOR` (fewer than 1, or more than the active brokers).
    pub fn create_topic(
        &mut self,
        topic: NewTopic,
    ) -> Result<Vec<MetadataRecord>, (ErrorCode, String)> {
        if self.image.topic(&topic.name).is_some() || self.image.topic_by_id(topic.id).is_some() {
            let message = format!("topic {} already exists", topic.name);
            return Err((ErrorCode::TopicAlreadyExists, message));
        }
        if topic.partitions < 1 {
            let message = format!("{} partitions: at least 1 is needed", topic.partitions);
            return Err((ErrorCode::InvalidPartitions, message));
        }
        let active = self.active_brokers();
        let factor = usize::try_from(topic.replication_factor).unwrap_or(0);
        if !topic.assignments.is_empty() {
            let count = usize::try_from(topic.partitions).unwrap_or(0);
            check_assignments(&topic.assignments, count, factor, &self.image)?;
        } else if factor < 1 || factor > active.len() {
            let message = format!(
                "replication factor {} with {} active brokers",
                topic.replication_factor,
                active.len()
            );
            return Err((ErrorCode::InvalidReplicationFactor, message));
        }
        let mut records = Vec::new();
        self.push(
            &mut records,
            MetadataRecord::Topic {
                name: topic.name.clone(),
                id: topic.id,
                configs: topic.configs,
            },
        );
        let lists = match topic.assignments.is_empty() {
            true => spread(&active, &topic.name, 0..topic.partitions, factor),
            false => topic.assignments,
        };
        for (partition, replicas) in (0..topic.partitions).zip(lists) {
            let mut record = self.new_partition(topic.id, partition, replicas);
            record.leader_epoch = topic.leader_epoch;
            self.push(&mut records, MetadataRecord::Partition(record));
        }
        Ok(records)
    }

    /// Grows a topic to `count` partitions. The new partitions get `assignments` (one
    /// replica list each, led by its first active replica) or, without them, replicas
    /// spread over the active brokers as [`Controller::create_topic`] spreads them, with the
    /// replication factor of the topic's first partition.
    ///
    /// Errors: `UNKNOWN_TOPIC_OR_PARTITION`; `INVALID_PARTITIONS` (not more than now);
    /// `INVALID_REPLICA_ASSIGNMENT` (a list of another length than the replication factor,
    /// a broker twice or not registered, no active broker in a list, or as many lists as
    /// new partitions); `INVALID_REPLICATION_FACTOR` (more replicas than active brokers).
    pub fn add_partitions(
        &mut self,
        name: &str,
        count: i32,
        assignments: &[Vec<NodeId>],
    ) -> Result<Vec<MetadataRecord>, (ErrorCode, String)> {
        let topic = self.image.topic(name).ok_or_else(|| {
            (
                ErrorCode::UnknownTopicOrPartition,
                format!("no topic {name}"),
            )
        })?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            let message = format!("{name} has {current} partitions; {count} is not more");
            return Err((ErrorCode::InvalidPartitions, message));
        }
        let factor = (topic.partitions.first()).map_or(1, |p| p.target_replicas().len());
        let topic_id = topic.id;
        let added = (count - current) as usize;
        let active = self.active_brokers();
        let lists: Vec<Vec<NodeId>> = if assignments.is_empty() {
            if factor > active.len() {
                let message = format!(
                    "replication factor {factor} with {} active brokers",
                    active.len()
                );
                return Err((ErrorCode::InvalidReplicationFactor, message));
            }
            spread(&active, name, current..count, factor)
        } else {
            check_assignments(assignments, added, factor, &self.image)?;
            assignments.to_vec()
        };
        let mut records = Vec::new();
        for (partition, replicas) in (current..count).zip(lists) {
            let record = self.new_partition(topic_id, partition, replicas);
            self.push(&mut records, MetadataRecord::Partition(record));
        }
        Ok(records)
    }

    /// The brokers that may lead and join ISRs now, by id.
    fn active_brokers(&self) -> Vec<NodeId> {
        let registered = self.image.brokers().keys().copied();
        registered.filter(|&n| self.image.is_active(n)).collect()
    }

    /// A new partition on `replicas`: its active ones in sync, the first of them leading.
    fn new_partition(
        &self,
        topic_id: uuid::Uuid,
        partition: i32,
        replicas: Vec<NodeId>,
    ) -> PartitionRecord {
        let in_sync = replicas
            .iter()
            .copied()
            .filter(|n| self.image.is_active(*n));
        let mut isr: Vec<NodeId> = in_sync.collect();
        let leader = isr.first().copied();
        isr.sort();
        PartitionRecord {
            topic_id,
            partition,
            leader,
            isr,
            elr: Vec::new(),
            replicas,
            leader_epoch: LeaderEpoch(0),
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// Replaces a topic's config overrides (the asking broker checked them).
    /// Errors: `UNKNOWN_TOPIC_OR_PARTITION`.
    pub fn alter_topic_configs(
        &mut self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<Vec<MetadataRecord>, (ErrorCode, String)> {
        let id = self
            .image
            .topic(name)
            .ok_or_else(|| {
                (
                    ErrorCode::UnknownTopicOrPartition,
                    format!("no topic {name}"),
                )
            })?
            .id;
        let mut records = Vec::new();
        self.push(&mut records, MetadataRecord::TopicConfigs { id, configs });
        Ok(records)
    }

    /// Deletes a topic. Errors: `UNKNOWN_TOPIC_OR_PARTITION`.
    pub fn delete_topic(&mut self, name: &str) -> Result<Vec<MetadataRecord>, ErrorCode> {
        let id = self
            .image
            .topic(name)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?
            .id;
        let mut records = Vec::new();
        self.push(&mut records, MetadataRecord::RemoveTopic { id });
        Ok(records)
    }

    /// UnregisterBroker: `node` leaves the cluster. Errors: `BROKER_ID_NOT_REGISTERED`;
    /// `INVALID_REQUEST` while it runs (stop it first) or holds replicas (move them off it
    /// first, e.g. `brook cluster remove-node`).
    pub fn unregister_broker(
        &mut self,
        node: NodeId,
    ) -> Result<Vec<MetadataRecord>, (ErrorCode, String)> {
        if !self.image.brokers().contains_key(&node) {
            let message = format!("broker {} is not registered", node.0);
            return Err((ErrorCode::BrokerIdNotRegistered, message));
        }
        if self.image.is_active(node) {
            let message = format!("broker {} is running: stop it first", node.0);
            return Err((ErrorCode::InvalidRequest, message));
        }
        let held: Vec<String> = (self.image.topics().values())
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .filter(|(_, p)| p.replicas.contains(&node))
            .map(|(t, p)| format!("{}-{}", t.name, p.partition))
            .take(5)
            .collect();
        if !held.is_empty() {
            let message = format!(
                "broker {} still holds replicas ({}…): move them off it first",
                node.0,
                held.join(", ")
            );
            return Err((ErrorCode::InvalidRequest, message));
        }
        self.sessions.remove(&node);
        let mut records = Vec::new();
        self.push(&mut records, MetadataRecord::UnregisterBroker { node });
        Ok(records)
    }

    /// Changes the dynamic configs of broker `node` (-1: the default of every broker; the
    /// asking node checked the keys and values): each key set, or deleted with `None`, the
    /// others kept. Errors: `INVALID_REQUEST` for a broker that is not registered.
    pub fn alter_broker_configs(
        &mut self,
        node: i32,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<Vec<MetadataRecord>, (ErrorCode, String)> {
        if node != -1 && !self.image.brokers().contains_key(&NodeId(node)) {
            let message = format!("broker {node} is not registered");
            return Err((ErrorCode::InvalidRequest, message));
        }
        let mut configs = self.image.broker_configs(node).cloned().unwrap_or_default();
        for (key, value) in changes {
            match value {
                Some(value) => configs.insert(key, value),
                None => configs.remove(&key),
            };
        }
        let mut records = Vec::new();
        self.push(
            &mut records,
            MetadataRecord::BrokerConfigs { node, configs },
        );
        Ok(records)
    }

    /// Hands out `count` producer ids: returns the first and the record that reserves them.
    pub fn allocate_producer_ids(&mut self, count: i64) -> (i64, Vec<MetadataRecord>) {
        let first = self.image.next_producer_id();
        let mut records = Vec::new();
        let next = first.saturating_add(count.max(1));
        self.push(&mut records, MetadataRecord::ProducerIds { next });
        (first, records)
    }

    /// A leader's ISR change (AlterPartition). Returns the partition's new state with the
    /// records. Errors: `UNKNOWN_TOPIC_OR_PARTITION`; `NOT_LEADER_OR_FOLLOWER` from a broker
    /// that does not lead the partition; `FENCED_LEADER_EPOCH` for another leader epoch;
    /// `INVALID_UPDATE_VERSION` for another partition epoch (the leader saw an older state);
    /// `INVALID_REQUEST` for an ISR without the leader or with a non-replica;
    /// `INELIGIBLE_REPLICA` for a fenced broker added to the ISR.
    pub fn alter_partition(
        &mut self,
        change: IsrChange,
    ) -> Result<(PartitionRecord, Vec<MetadataRecord>), ErrorCode> {
        let current = self
            .image
            .partition(change.topic_id, change.partition)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        if current.leader != Some(change.leader) {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        if current.leader_epoch != change.leader_epoch {
            return Err(ErrorCode::FencedLeaderEpoch);
        }
        if current.partition_epoch != change.partition_epoch {
            return Err(ErrorCode::InvalidUpdateVersion);
        }
        let mut isr = change.isr;
        isr.sort();
        isr.dedup();
        let strangers: Vec<NodeId> = (isr.iter())
            .filter(|n| !current.replicas.contains(n))
            .copied()
            .collect();
        let zombies_welcome =
            crate::planted::is_planted(crate::planted::PlantedBug::ZombieReplicaRejoins);
        if !isr.contains(&change.leader) || (!strangers.is_empty() && !zombies_welcome) {
            return Err(ErrorCode::InvalidRequest);
        }
        let added_fenced = isr
            .iter()
            .any(|&n| !current.isr.contains(&n) && !self.image.is_active(n));
        if added_fenced {
            return Err(ErrorCode::IneligibleReplica);
        }
        let min_isr = self.min_isr(current);
        let mut next = current.clone();
        // Planted bug (zombie-replica-rejoins): the non-replicas become replicas again.
        next.replicas.extend(strangers);
        let removed: Vec<NodeId> = current
            .isr
            .iter()
            .copied()
            .filter(|n| !isr.contains(n))
            .collect();
        next.isr = isr;
        if next.isr.len() < min_isr {
            next.elr.extend(removed);
        }
        normalize_elr(&mut next, min_isr);
        next.partition_epoch += 1;
        self.complete_if_caught_up(&mut next);
        let mut records = Vec::new();
        self.push(&mut records, MetadataRecord::Partition(next.clone()));
        Ok((next, records))
    }

    /// Fences `node` and moves its partitions: it leaves every ISR it is in (unless it is the
    /// last member) — into the ELR when the ISR drops below `min.insync.replicas` — and the
    /// partitions it led elect a new leader.
    fn fence(&mut self, node: NodeId, records: &mut Vec<MetadataRecord>) {
        self.push(records, MetadataRecord::FenceBroker { node });
        let changes: Vec<PartitionRecord> = self
            .partitions()
            .filter(|p| p.isr.contains(&node) || p.leader == Some(node))
            .filter_map(|p| {
                let min_isr = self.min_isr(p);
                let mut next = p.clone();
                if next.isr.len() > 1 {
                    next.isr.retain(|&n| n != node);
                    if next.isr.len() < min_isr {
                        next.elr.push(node);
                    }
                }
                if p.leader == Some(node) {
                    next.leader = None;
                    self.elect(&mut next);
                    next.leader_epoch = LeaderEpoch(p.leader_epoch.0 + 1);
                }
                normalize_elr(&mut next, min_isr);
                (next != *p).then(|| {
                    next.partition_epoch += 1;
                    next
                })
            })
            .collect();
        for change in changes {
            self.push(records, MetadataRecord::Partition(change));
        }
    }

    /// A replica that may have lost unsynced records leaves every ISR and ELR, even as the
    /// last member; partitions left without a leader elect an eligible one, if any.
    fn forget_replica(&mut self, node: NodeId, records: &mut Vec<MetadataRecord>) {
        let changes: Vec<PartitionRecord> = self
            .partitions()
            .filter(|p| p.isr.contains(&node) || p.elr.contains(&node))
            .map(|p| {
                let min_isr = self.min_isr(p);
                let mut next = p.clone();
                next.isr.retain(|&n| n != node);
                next.elr.retain(|&n| n != node);
                if next.leader == Some(node) || next.leader.is_none() {
                    let before = next.leader;
                    next.leader = None;
                    self.elect(&mut next);
                    if next.leader != before {
                        next.leader_epoch = LeaderEpoch(p.leader_epoch.0 + 1);
                    }
                }
                normalize_elr(&mut next, min_isr);
                next.partition_epoch += 1;
                next
            })
            .collect();
        for change in changes {
            self.push(records, MetadataRecord::Partition(change));
        }
    }

    /// Elects a leader for every partition without one that has an active in-sync or
    /// eligible replica.
    fn elect_leaderless(&mut self, records: &mut Vec<MetadataRecord>) {
        let changes: Vec<PartitionRecord> = self
            .partitions()
            .filter(|p| p.leader.is_none())
            .filter_map(|p| {
                let mut next = p.clone();
                self.elect(&mut next);
                next.leader?;
                next.leader_epoch = LeaderEpoch(p.leader_epoch.0 + 1);
                normalize_elr(&mut next, self.min_isr(p));
                next.partition_epoch += 1;
                Some(next)
            })
            .collect();
        for change in changes {
            self.push(records, MetadataRecord::Partition(change));
        }
    }

    /// Sets `partition`'s leader: the first active in-sync replica in assignment order, else
    /// the first active eligible one — which becomes the whole ISR, the members it replaces
    /// staying eligible (they hold every committed record too) — else none.
    fn elect(&self, partition: &mut PartitionRecord) {
        let active = |n: &NodeId| self.image.is_active(*n);
        let in_order = |set: &[NodeId]| {
            partition
                .replicas
                .iter()
                .copied()
                .find(|n| set.contains(n) && active(n))
        };
        if crate::planted::is_planted(crate::planted::PlantedBug::UncleanElection) {
            let all = partition.replicas.clone();
            if let Some(leader) = in_order(&all) {
                partition.isr.retain(|&n| n != leader);
                partition.isr.push(leader);
                partition.elr.retain(|&n| n != leader);
                partition.leader = Some(leader);
                return;
            }
        }
        if let Some(leader) = in_order(&partition.isr) {
            partition.leader = Some(leader);
        } else if let Some(leader) = in_order(&partition.elr) {
            let replaced = std::mem::replace(&mut partition.isr, vec![leader]);
            partition.elr.retain(|&n| n != leader);
            partition.elr.extend(replaced);
            partition.leader = Some(leader);
        } else {
            partition.leader = None;
        }
    }

    /// Every partition of every topic.
    fn partitions(&self) -> impl Iterator<Item = &PartitionRecord> {
        self.image.topics().values().flat_map(|t| &t.partitions)
    }

    /// The topic's `min.insync.replicas`, as it applies to this partition (never more than
    /// its replicas).
    fn min_isr(&self, partition: &PartitionRecord) -> usize {
        let configured = self
            .image
            .topic_by_id(partition.topic_id)
            .and_then(|t| t.configs.get("min.insync.replicas"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(self.config.min_insync_replicas);
        // While a reassignment moves it, the replicas it keeps (not the widened set).
        configured.clamp(1, partition.target_replicas().len().max(1))
    }

    /// Applies a record to the controller's image and adds it to the output.
    fn push(&mut self, records: &mut Vec<MetadataRecord>, record: MetadataRecord) {
        if let MetadataRecord::Partition(next) = &record {
            let current = self.image.partition(next.topic_id, next.partition);
            let same = |c: &&PartitionRecord| {
                (c.replicas == next.replicas && c.adding == next.adding)
                    && c.removing == next.removing
            };
            if current.filter(same).is_none() {
                let key = (next.topic_id, next.partition);
                self.assigned_at.insert(key, next.partition_epoch);
            }
        }
        let applied = self.image.apply(&record);
        assert!(
            applied.is_ok(),
            "the controller writes only records that apply: {applied:?}"
        );
        records.push(record);
    }
}

/// Keeps the ELR to what KIP-966 allows: none once the ISR has `min_isr` members, never an
/// ISR member, sorted, without repeats.
fn normalize_elr(partition: &mut PartitionRecord, min_isr: usize) {
    if partition.isr.len() >= min_isr {
        partition.elr.clear();
    }
    let isr = partition.isr.clone();
    partition.elr.retain(|n| !isr.contains(n));
    partition.elr.sort();
    partition.elr.dedup();
    partition.isr.sort();
}

/// Replica lists for `partitions` of topic `name`, `factor` each, round the active brokers.
/// Kafka starts each topic's assignment at a random broker; a hash of the name spreads
/// topics just as well and keeps the controller free of randomness.
fn spread(
    active: &[NodeId],
    name: &str,
    partitions: std::ops::Range<i32>,
    factor: usize,
) -> Vec<Vec<NodeId>> {
    let first = crc32c::crc32c(name.as_bytes()) as usize;
    partitions
        .map(|partition| {
            let start = first.wrapping_add(partition as usize);
            (0..factor)
                .map(|i| active[start.wrapping_add(i) % active.len()])
                .collect()
        })
        .collect()
}

/// Checks explicit replica lists for `added` new partitions of a topic replicated
/// `factor` times (see [`Controller::add_partitions`]).
pub fn check_assignments(
    assignments: &[Vec<NodeId>],
    added: usize,
    factor: usize,
    image: &ClusterImage,
) -> Result<(), (ErrorCode, String)> {
    let refuse = |message: String| Err((ErrorCode::InvalidReplicaAssignment, message));
    if assignments.len() != added {
        return refuse(format!(
            "{added} new partitions need {added} assignments, not {}",
            assignments.len()
        ));
    }
    for replicas in assignments {
        let mut distinct = replicas.clone();
        distinct.sort();
        distinct.dedup();
        if replicas.len() != factor || distinct.len() != factor {
            return refuse(format!(
                "{replicas:?}: the topic needs {factor} distinct brokers per partition"
            ));
        }
        if let Some(unknown) = replicas.iter().find(|n| !image.brokers().contains_key(n)) {
            return refuse(format!("broker {} is not registered", unknown.0));
        }
        if !replicas.iter().any(|n| image.is_active(*n)) {
            return refuse(format!("{replicas:?}: no active broker to lead"));
        }
    }
    Ok(())
}

//! A broker as a member of a cluster: it holds the partitions the controller's records make
//! it a replica of, leads or follows each as the records say, serves its followers' fetches,
//! applies its leaders' answers, asks the controller for ISR changes, and answers acks=all
//! produces once the followers hold the records.
//!
//! Call order for the node that drives the broker (besides the calls of `mod.rs`):
//! [`Broker::open_member`] instead of `open`; [`Broker::apply_metadata`] for every committed
//! metadata record, in log order; [`Broker::replica_fetches`] for the Fetch requests to send
//! each leader (one in flight per leader), [`Broker::handle_replica_fetch_response`] with each
//! answer; [`Broker::take_isr_changes`] for the AlterPartition requests to send the
//! controller, [`Broker::isr_change_failed`] when one is refused or lost (an accepted one
//! comes back as a partition record); [`Broker::take_topic_requests`] for the topics clients
//! asked to auto-create. Parked acks=all produces come back from
//! [`Broker::poll_completed_responses`].

use std::collections::BTreeMap;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, MetadataResponse, ProduceResponse, ResponseKind,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::metadata::LegacyTopic;
use super::partition::{ReplicaAnswer, ReplicaServe};
use super::{partition_dir, Broker, BrokerError, ParkedId, StorageProvider};
use crate::cluster::{ClusterImage, IsrChange, MetadataRecord, PartitionRecord};
use crate::error::ErrorCode;
use crate::log::EpochEnd;
use crate::protocol::FetchResponseData;
use crate::replication::FollowerFetch;
use crate::types::{LeaderEpoch, Millis, NodeId, Offset};

/// The Fetch version followers send (topic names, last fetched epoch, diverging epoch).
pub const REPLICA_FETCH_VERSION: i16 = 12;

/// What a member broker knows of the cluster.
pub(crate) struct Member {
    node: NodeId,
    image: ClusterImage,
    /// The quorum's leader, which answers for the controller.
    controller: Option<NodeId>,
    /// Topics clients asked for that do not exist, to create with the default settings.
    wanted_topics: Vec<String>,
    /// A 0.1.0 single broker's topics not yet in the metadata log.
    pub(crate) legacy: Vec<LegacyTopic>,
    /// Whether the node has replayed the metadata decisions made while it was away: until
    /// then its image may name it leader of partitions that moved, and it must write
    /// nothing as their leader on its own (transaction markers, coordinator records).
    pub(crate) caught_up: bool,
}

impl Member {
    /// The active controller's id, -1 while there is none (as Metadata and DescribeCluster
    /// answer it).
    pub(crate) fn controller_id(&self) -> i32 {
        self.controller.map_or(-1, |n| n.0)
    }

    /// The brokers clients are told of: the unfenced ones, as (id, host, port).
    pub(crate) fn serving_brokers(&self) -> impl Iterator<Item = (i32, &str, i32)> {
        let brokers = self.image.brokers().iter();
        let serving = brokers.filter(|(_, broker)| !broker.fenced);
        serving.map(|(node, b)| (node.0, b.registration.host.as_str(), b.registration.port))
    }
}

/// acks=all produces waiting for their records to be committed, and those answered since.
#[derive(Default)]
pub(crate) struct ParkedProduces {
    parked: BTreeMap<ParkedId, ParkedProduce>,
    next_park: u64,
    completed: Vec<(ParkedId, ResponseKind)>,
}

/// An acks=all produce answered once every partition's records are committed.
struct ParkedProduce {
    response: ProduceResponse,
    /// (topic, partition, offset after its records, position in the response).
    waiting: Vec<(String, i32, Offset, (usize, usize))>,
    deadline: Millis,
}

/// A partition of a produce that waits for its records to be committed.
pub(crate) struct PendingAck {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset after the appended records.
    pub next_offset: Offset,
}

impl Member {
    pub(crate) fn new(node: NodeId) -> Member {
        Member {
            node,
            image: ClusterImage::new(),
            controller: None,
            wanted_topics: Vec::new(),
            legacy: Vec::new(),
            caught_up: false,
        }
    }
}

impl<P: StorageProvider> Broker<P> {
    /// Opens the broker of a cluster node (a single node is a cluster of one): its
    /// partitions come from the metadata records ([`Broker::apply_metadata`]); the metadata
    /// file gives the cluster id, the producer-id counter and a 0.1.0 directory's topics.
    pub fn open_member(
        provider: P,
        config: super::BrokerConfig,
        now: Millis,
    ) -> Result<Self, BrokerError> {
        let node = NodeId(config.node_id);
        let (mut broker, legacy) = Broker::open_empty(provider, config, now)?;
        broker.member.legacy = legacy;
        // Producer ids must be unique in the cluster: each node hands out its own range
        // (2^32 ids from `node << 32`), so no two nodes ever give out the same id.
        let range_start = i64::from(node.0.max(0)) << 32;
        broker.next_producer_id = broker.next_producer_id.max(range_start);
        broker.persist_meta()?;
        Ok(broker)
    }

    /// The topics of a 0.1.0 single broker's metadata file that the metadata log does not
    /// have yet (see [`LegacyTopic`]).
    pub fn legacy_topics(&self) -> &[LegacyTopic] {
        &self.member.legacy
    }

    /// Forgets the legacy topics the image now has (adopted), keeping the metadata file in
    /// step.
    fn forget_adopted_topics(&mut self) -> Result<(), BrokerError> {
        let member = &mut self.member;
        let before = member.legacy.len();
        let image = &member.image;
        member.legacy.retain(|t| image.topic(&t.name).is_none());
        if member.legacy.len() != before {
            self.persist_meta()?;
        }
        Ok(())
    }

    /// The cluster image as the applied records left it.
    pub fn image(&self) -> &ClusterImage {
        &self.member.image
    }

    /// Tells the broker which node answers for the controller now (for Metadata answers).
    pub fn set_controller(&mut self, controller: Option<NodeId>) {
        self.member.controller = controller;
    }

    /// Whether the node has caught up with the metadata log (its own registration applied):
    /// background writes as a leader (transaction markers, coordinator records) wait for it.
    pub fn set_caught_up(&mut self, caught_up: bool) {
        self.member.caught_up = caught_up;
    }

    /// Applies one committed metadata record: the image changes, and the partitions this
    /// broker is a replica of are opened, led, followed or removed as it says.
    pub fn apply_metadata(
        &mut self,
        now: Millis,
        record: &MetadataRecord,
    ) -> Result<(), BrokerError> {
        let member = &mut self.member;
        member
            .image
            .apply(record)
            .map_err(|err| BrokerError::CorruptMetadata(err.to_string()))?;
        let node = member.node;
        match record {
            MetadataRecord::Topic { name, id, configs } => {
                self.topics.insert(name, *id, configs.clone());
                self.forget_adopted_topics()?;
            }
            MetadataRecord::Partition(record) => self.apply_partition_record(now, node, record)?,
            MetadataRecord::RemoveTopic { id } => {
                if let Some(name) = self.topic_named_by(*id) {
                    self.topics.remove(&name)?;
                }
            }
            MetadataRecord::TopicConfigs { id, configs } => {
                if let Some(name) = self.topic_named_by(*id) {
                    self.apply_member_overrides(now, &name, configs.clone());
                }
            }
            MetadataRecord::RegisterBroker(_)
            | MetadataRecord::FenceBroker { .. }
            | MetadataRecord::UnfenceBroker { .. }
            | MetadataRecord::ProducerIds { .. }
            | MetadataRecord::BrokerConfigs { .. }
            | MetadataRecord::UnregisterBroker { .. } => {}
        }
        self.after_roles_change(now)
    }

    /// Replaces the cluster image with a snapshot's (the metadata log was compacted past
    /// what this broker applied): topics the snapshot lacks go, the others take its topic
    /// and partition records.
    pub fn install_image(&mut self, now: Millis, image: ClusterImage) -> Result<(), BrokerError> {
        let member = &mut self.member;
        let node = member.node;
        member.image = image.clone();
        let gone: Vec<String> = self
            .topics
            .iter()
            .filter(|(name, t)| image.topic(name).map(|i| i.id) != Some(t.id))
            .map(|(name, _)| name.to_string())
            .collect();
        for name in gone {
            self.topics.remove(&name)?;
        }
        for topic in image.topics().values() {
            match self.topics.get(&topic.name) {
                None => self
                    .topics
                    .insert(&topic.name, topic.id, topic.configs.clone()),
                Some(stored) if stored.overrides != topic.configs => {
                    self.apply_member_overrides(now, &topic.name, topic.configs.clone());
                }
                Some(_) => {}
            }
            for partition in &topic.partitions {
                self.apply_partition_record(now, node, partition)?;
            }
        }
        self.forget_adopted_topics()?;
        self.after_roles_change(now)
    }

    /// What follows a change of partition roles: the group coordinator loads and unloads
    /// its partitions, and parked requests whose partitions moved are answered.
    fn after_roles_change(&mut self, now: Millis) -> Result<(), BrokerError> {
        self.sync_coordinated_partitions(now)?;
        self.sync_transaction_partitions(now)?;
        self.complete_parked_produces(now);
        self.complete_group_writes(now);
        self.advance_transactions(now);
        self.complete_ready_fetches(now);
        Ok(())
    }

    /// Asks the controller for a topic that does not exist (the node sends the request).
    pub(crate) fn ask_for_topic(&mut self, name: &str) {
        let wanted = &mut self.member.wanted_topics;
        if !wanted.iter().any(|n| n == name) {
            wanted.push(name.to_string());
        }
    }

    /// The name of the topic with this id, if this broker has it.
    fn topic_named_by(&self, id: uuid::Uuid) -> Option<String> {
        self.topics.by_id(id).map(|(name, _)| name.to_string())
    }

    /// Gives a member's topic the overrides the controller recorded, and every replica's
    /// log (and, as leader, `min.insync.replicas`) the config they make.
    fn apply_member_overrides(
        &mut self,
        now: Millis,
        name: &str,
        overrides: BTreeMap<String, String>,
    ) {
        let log_config = self.member_log_config(name, &overrides);
        let Some(topic) = self.topics.get_mut(name) else {
            return;
        };
        topic.overrides = overrides;
        for (index, partition) in topic.partitions.held_mut() {
            if let Err(err) = partition.set_config(log_config.clone(), now) {
                if self.background_errors.len() < super::BACKGROUND_ERRORS_MAX {
                    let error = format!(
                        "{}: new config not applied: {err}",
                        partition_dir(name, index)
                    );
                    self.background_errors.push(error);
                }
            }
        }
    }

    /// The log config of a member's topic. A committed record is never refused: configs the
    /// broker cannot use (the controller checks them before proposing; an older broker may
    /// not know one) fall back to the broker's defaults, reported as a background error.
    fn member_log_config(
        &mut self,
        name: &str,
        overrides: &std::collections::BTreeMap<String, String>,
    ) -> crate::log::LogConfig {
        match self.log_config_for(overrides) {
            Ok(config) => config,
            Err(err) => {
                if self.background_errors.len() < super::BACKGROUND_ERRORS_MAX {
                    let error = format!("topic {name}: {err}; broker defaults used");
                    self.background_errors.push(error);
                }
                self.broker_config().log.clone()
            }
        }
    }

    fn apply_partition_record(
        &mut self,
        now: Millis,
        node: NodeId,
        record: &PartitionRecord,
    ) -> Result<(), BrokerError> {
        let Some((name, topic)) = self.topics.by_id_mut(record.topic_id) else {
            return Err(BrokerError::CorruptMetadata(format!(
                "partition record for unknown topic {}",
                record.topic_id
            )));
        };
        let name = name.to_string();
        topic.partitions.ensure_count(record.partition + 1);
        if !record.replicas.contains(&node) {
            // Reassigned away (or never here): the replica and its files go.
            return self.topics.remove_partition(&name, record.partition);
        }
        if let Some(partition) = topic.partitions.get_mut(record.partition) {
            return partition
                .apply_record(now, record)
                .map_err(|source| BrokerError::Log {
                    partition: partition_dir(&name, record.partition),
                    source,
                });
        }
        let overrides = topic.overrides.clone();
        let log_config = self.member_log_config(&name, &overrides);
        self.topics
            .open_partition(&name, record, node, log_config, now)
    }

    /// The Fetch requests to send the leaders this broker follows, one per leader, each
    /// naming every partition followed there at this broker's log end (Fetch v12 with the
    /// broker's id as replica id). The driver keeps one in flight per leader: `busy` names
    /// the leaders it has one in flight to, which get none.
    pub fn replica_fetches(
        &self,
        max_wait_ms: i32,
        busy: impl Fn(NodeId) -> bool,
    ) -> Vec<(NodeId, FetchRequest)> {
        let member = &self.member;
        let mut by_leader: BTreeMap<NodeId, FetchRequest> = BTreeMap::new();
        for (name, index, partition) in self.topics.held() {
            let Some(position) = partition.fetch_position() else {
                continue;
            };
            if busy(position.leader) {
                continue;
            }
            let request = by_leader.entry(position.leader).or_insert_with(|| {
                let mut request = FetchRequest::default();
                request.replica_id = BrokerId(member.node.0);
                request.max_wait_ms = max_wait_ms;
                request.min_bytes = 1;
                request.max_bytes = self.config.fetch_response_bytes_max;
                request
            });
            let mut wanted = FetchPartition::default();
            wanted.partition = index;
            wanted.current_leader_epoch = position.current_leader_epoch.0;
            wanted.fetch_offset = position.fetch_offset.0;
            wanted.last_fetched_epoch = position.last_fetched_epoch.map_or(-1, |e| e.0);
            wanted.log_start_offset = partition.log.log_start_offset().0;
            wanted.partition_max_bytes = partition.log.config().max_message_bytes as i32;
            let topic_name = TopicName(StrBytes::from_string(name.to_string()));
            match request.topics.iter_mut().find(|t| t.topic == topic_name) {
                Some(topic) => topic.partitions.push(wanted),
                None => {
                    let mut topic = FetchTopic::default();
                    topic.topic = topic_name;
                    topic.partitions.push(wanted);
                    request.topics.push(topic);
                }
            }
        }
        by_leader.into_iter().collect()
    }

    /// Applies a leader's answer to [`Broker::replica_fetches`]' request: records appended,
    /// diverged tails truncated, out-of-range logs reset, high watermarks taken. Partitions
    /// whose answer is an error are left to the next fetch (or the next metadata record).
    pub fn handle_replica_fetch_response(
        &mut self,
        now: Millis,
        request: &FetchRequest,
        response: FetchResponse,
    ) {
        let mut errors = Vec::new();
        for topic in response.responses {
            let name = topic.topic.0.as_str().to_string();
            for answer in topic.partitions {
                let Some(wanted) = request
                    .topics
                    .iter()
                    .filter(|t| t.topic.0.as_str() == name)
                    .flat_map(|t| &t.partitions)
                    .find(|p| p.partition == answer.partition_index)
                else {
                    continue;
                };
                let reply = match ErrorCode::from_code(answer.error_code) {
                    ErrorCode::None if answer.diverging_epoch.epoch >= 0 => {
                        ReplicaAnswer::Diverging(EpochEnd {
                            epoch: LeaderEpoch(answer.diverging_epoch.epoch),
                            end_offset: Offset(answer.diverging_epoch.end_offset),
                        })
                    }
                    ErrorCode::None => ReplicaAnswer::Records {
                        records: answer.records.unwrap_or_default(),
                        high_watermark: Offset(answer.high_watermark),
                        log_start_offset: Offset(answer.log_start_offset),
                    },
                    ErrorCode::OffsetOutOfRange => ReplicaAnswer::OutOfRange {
                        log_start_offset: Offset(answer.log_start_offset),
                        log_end_offset: Offset(answer.high_watermark),
                    },
                    _ => continue,
                };
                let Some(partition) = self.topics.partition_mut(&name, answer.partition_index)
                else {
                    continue;
                };
                let fetch_offset = Offset(wanted.fetch_offset);
                if let Err(err) = partition.apply_replica_answer(now, fetch_offset, reply) {
                    errors.push(format!(
                        "{name}-{}: replica fetch: {err}",
                        answer.partition_index
                    ));
                }
            }
        }
        for error in errors {
            if self.background_errors.len() < super::BACKGROUND_ERRORS_MAX {
                self.background_errors.push(error);
            }
        }
        self.complete_ready_fetches(now);
    }

    /// The ISR changes to ask the controller for (AlterPartition), at most one in flight per
    /// partition.
    pub fn take_isr_changes(&mut self) -> Vec<IsrChange> {
        let node = self.member.node;
        let mut changes = Vec::new();
        for (_, topic) in self.topics.iter_mut() {
            let topic_id = topic.id;
            for (index, partition) in topic.partitions.held_mut() {
                if let Some((leader_epoch, partition_epoch, isr)) = partition.take_isr_proposal() {
                    changes.push(IsrChange {
                        leader: node,
                        topic_id,
                        partition: index,
                        leader_epoch,
                        partition_epoch,
                        isr,
                    });
                }
            }
        }
        changes
    }

    /// The controller refused an ISR change, or it was lost: it may be asked again.
    pub fn isr_change_failed(&mut self, topic_id: uuid::Uuid, partition: i32) {
        let topic = self.topics.by_id_mut(topic_id);
        if let Some(partition) = topic.and_then(|(_, t)| t.partitions.get_mut(partition)) {
            partition.isr_change_failed();
        }
    }

    /// Topics clients asked for (Metadata with auto-creation) that do not exist; the node
    /// asks the controller to create them with the broker's defaults.
    pub fn take_topic_requests(&mut self) -> Vec<String> {
        std::mem::take(&mut self.member.wanted_topics)
    }

    /// Checks a follower's Fetch before it is read: records each partition's progress and
    /// answers the partitions that get no records (errors, diverged logs) in `data`'s place.
    pub(crate) fn serve_followers(
        &mut self,
        now: Millis,
        request: &FetchRequest,
    ) -> BTreeMap<(String, i32), Result<Option<EpochEnd>, ErrorCode>> {
        let follower = NodeId(request.replica_id.0);
        let eligible = self.image().is_active(follower);
        let mut verdicts = BTreeMap::new();
        for topic in &request.topics {
            let name = topic.topic.0.as_str();
            for wanted in &topic.partitions {
                let verdict = match self.topics.partition_mut(name, wanted.partition) {
                    None => Err(ErrorCode::NotLeaderOrFollower),
                    Some(partition) => {
                        let fetch = FollowerFetch {
                            follower,
                            fetch_offset: Offset(wanted.fetch_offset),
                            last_fetched_epoch: (wanted.last_fetched_epoch >= 0)
                                .then_some(LeaderEpoch(wanted.last_fetched_epoch)),
                            eligible,
                        };
                        match partition.serve_follower(now, fetch, wanted.current_leader_epoch) {
                            Ok(ReplicaServe::Records) => Ok(None),
                            Ok(ReplicaServe::Diverging(end)) => Ok(Some(end)),
                            Err(code) => Err(code),
                        }
                    }
                };
                verdicts.insert((name.to_string(), wanted.partition), verdict);
            }
        }
        self.complete_parked_produces(now);
        self.complete_group_writes(now);
        self.advance_transactions(now);
        verdicts
    }

    /// Puts the follower checks' answers into a read Fetch response: errors and diverging
    /// epochs replace records.
    pub(crate) fn apply_follower_verdicts(
        data: &mut FetchResponseData,
        verdicts: &BTreeMap<(String, i32), Result<Option<EpochEnd>, ErrorCode>>,
    ) {
        for topic in &mut data.topics {
            for partition in &mut topic.partitions {
                match verdicts.get(&(topic.name.clone(), partition.partition_index)) {
                    Some(Err(code)) => {
                        partition.error_code = code.code();
                        partition.records.clear();
                    }
                    Some(Ok(Some(end))) => {
                        // Kafka answers a diverged follower with no error and no records.
                        partition.error_code = ErrorCode::None.code();
                        partition.diverging_epoch = Some((end.epoch.0, end.end_offset.0));
                        partition.records.clear();
                    }
                    _ => {}
                }
            }
        }
    }

    /// Parks an acks=all produce until its partitions' records are committed, or answers
    /// it now when they already are.
    pub(crate) fn park_produce(
        &mut self,
        now: Millis,
        mut response: ProduceResponse,
        pending: Vec<PendingAck>,
        timeout_ms: i32,
    ) -> ParkedId {
        let mut waiting = Vec::new();
        for ack in pending {
            let position = response
                .responses
                .iter()
                .enumerate()
                .find_map(|(t, topic)| {
                    (topic.name.0.as_str() == ack.topic).then(|| {
                        topic
                            .partition_responses
                            .iter()
                            .position(|p| p.index == ack.partition)
                            .map(|p| (t, p))
                    })?
                });
            if let Some(position) = position {
                waiting.push((ack.topic, ack.partition, ack.next_offset, position));
            }
        }
        let produces = &mut self.produces;
        let id = ParkedId::Produce(produces.next_park);
        produces.next_park += 1;
        let deadline = Millis(now.0 + i64::from(timeout_ms.max(0)));
        response.throttle_time_ms = 0;
        produces.parked.insert(
            id,
            ParkedProduce {
                response,
                waiting,
                deadline,
            },
        );
        self.complete_parked_produces(now);
        id
    }

    /// Answers the parked acks=all produces whose records are now committed (or failed, or
    /// timed out).
    pub(crate) fn complete_parked_produces(&mut self, now: Millis) {
        if self.produces.parked.is_empty() {
            return;
        }
        let parked = std::mem::take(&mut self.produces.parked);
        let mut still = BTreeMap::new();
        let mut done = Vec::new();
        for (id, mut produce) in parked {
            let mut remaining = Vec::new();
            for (topic, index, next_offset, (t, p)) in produce.waiting {
                let outcome = self
                    .topics
                    .partition(&topic, index)
                    .map_or(Some(Err(ErrorCode::NotLeaderOrFollower)), |partition| {
                        partition.acks_all_outcome(next_offset)
                    });
                let code = match outcome {
                    Some(Ok(())) => None,
                    Some(Err(code)) => Some(code),
                    None if produce.deadline <= now => Some(ErrorCode::RequestTimedOut),
                    None => {
                        remaining.push((topic, index, next_offset, (t, p)));
                        continue;
                    }
                };
                if let Some(code) = code {
                    let answer = &mut produce.response.responses[t].partition_responses[p];
                    answer.error_code = code.code();
                    answer.base_offset = -1;
                }
            }
            produce.waiting = remaining;
            if produce.waiting.is_empty() {
                done.push((id, ResponseKind::Produce(produce.response)));
            } else {
                still.insert(id, produce);
            }
        }
        self.produces.parked = still;
        self.produces.completed.extend(done);
    }

    /// Drains the answered acks=all produces.
    pub(crate) fn poll_completed_produces(&mut self) -> Vec<(ParkedId, ResponseKind)> {
        std::mem::take(&mut self.produces.completed)
    }

    /// Forgets a parked produce whose connection went away.
    pub(crate) fn cancel_produce(&mut self, id: ParkedId) -> bool {
        if !matches!(id, ParkedId::Produce(_)) {
            return false;
        }
        self.produces.parked.remove(&id);
        true
    }

    /// The earliest deadline of a parked produce.
    pub(crate) fn next_produce_deadline(&self) -> Option<Millis> {
        self.produces.parked.values().map(|p| p.deadline).min()
    }

    /// Answers Metadata from the cluster image: the active brokers, and each topic's
    /// partitions with their leaders, replicas and ISR. An unknown topic is asked of the
    /// controller when auto-creation is on (answered `LEADER_NOT_AVAILABLE` meanwhile).
    pub(crate) fn member_metadata(
        &mut self,
        names: Option<Vec<String>>,
        auto_create: bool,
        version: i16,
    ) -> MetadataResponse {
        let cluster_id = self.cluster_id.clone();
        let member = &mut self.member;
        let image = &member.image;
        let mut response = MetadataResponse::default();
        for (node, host, port) in member.serving_brokers() {
            let mut entry = MetadataResponseBroker::default();
            entry.node_id = BrokerId(node);
            entry.host = StrBytes::from_string(host.to_string());
            entry.port = port;
            response.brokers.push(entry);
        }
        if version >= 2 {
            response.cluster_id = Some(StrBytes::from_string(cluster_id));
        }
        if version >= 1 {
            response.controller_id = BrokerId(member.controller_id());
        }
        let names = names.unwrap_or_else(|| image.topics().keys().cloned().collect());
        let mut wanted = Vec::new();
        for name in names {
            let mut topic = MetadataResponseTopic::default();
            topic.name = Some(TopicName(StrBytes::from_string(name.clone())));
            match image.topic(&name) {
                None => {
                    topic.error_code = match (auto_create, super::validate_topic_name(&name)) {
                        (_, Err(_)) => ErrorCode::InvalidTopicException,
                        (false, Ok(())) => ErrorCode::UnknownTopicOrPartition,
                        // Internal topics are not created on a cluster yet.
                        (true, Ok(())) if name.starts_with("__") => {
                            ErrorCode::UnknownTopicOrPartition
                        }
                        (true, Ok(())) => {
                            wanted.push(name.clone());
                            ErrorCode::LeaderNotAvailable
                        }
                    }
                    .code();
                }
                Some(stored) => {
                    if version >= 10 {
                        topic.topic_id = stored.id;
                    }
                    for p in &stored.partitions {
                        let mut meta = MetadataResponsePartition::default();
                        meta.partition_index = p.partition;
                        meta.leader_id = BrokerId(p.leader.map_or(-1, |n| n.0));
                        if p.leader.is_none() {
                            meta.error_code = ErrorCode::LeaderNotAvailable.code();
                        }
                        if version >= 7 {
                            meta.leader_epoch = p.leader_epoch.0;
                        }
                        meta.replica_nodes = p.replicas.iter().map(|n| BrokerId(n.0)).collect();
                        meta.isr_nodes = p.isr.iter().map(|n| BrokerId(n.0)).collect();
                        topic.partitions.push(meta);
                    }
                }
            }
            response.topics.push(topic);
        }
        for name in wanted {
            if !member.wanted_topics.contains(&name) {
                member.wanted_topics.push(name);
            }
        }
        response
    }
}

//! Consumer groups in the broker: the Kafka requests of the group coordinator, translated to
//! and from [`GroupCoordinator`] calls, and its persistence in `__consumer_offsets`.
//!
//! JoinGroup and SyncGroup may wait: they answer [`Reply::Parked`] with an id from a range
//! of its own (high bit set, so it never meets a parked fetch's id) and come back from
//! [`Broker::poll_completed_responses`] as ready responses.
//!
//! **Invariant:** a commit is applied to the coordinator only after its records are in the
//! `__consumer_offsets` log; on open the log is replayed, so every acknowledged commit
//! survives a restart.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, MetadataResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, ProduceRequest, ProduceResponse, ResponseKind,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{Broker, BrokerError, ParkedId, Reply, RequestContext, StorageProvider};
use crate::error::ErrorCode;
use crate::group::{
    partition_for_group, Answer, CommitRequest, Completion, GroupConfig, GroupCoordinator,
    GroupRecord, GroupState, JoinRequest, MemberIdentity, OffsetValue, SyncRequest, SyncResponse,
};
use crate::record::{decode_records, BatchBuilder, Batches, Record};
use crate::types::{Millis, Offset};

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Parked group requests take ids from here up, far from the parked fetches' ids.
/// The most bytes of one `__consumer_offsets` read while replaying it.
const REPLAY_READ_BYTES_MAX: u64 = 1 << 20;
/// The most bytes a stored batch may decompress to while replaying.
const REPLAY_DECOMPRESSED_BYTES_MAX: usize = 64 << 20;
/// The group type every group here has (ListGroups v5).
const CLASSIC_GROUP_TYPE: &str = "classic";

/// The broker's group state: the coordinator and the parked requests' API versions.
pub(crate) struct Groups {
    coordinator: GroupCoordinator,
    /// Parked JoinGroup/SyncGroup: id → (API, version) to encode the answer in.
    parked: BTreeMap<ParkedId, (ApiKey, i16)>,
    completed: Vec<(ParkedId, ResponseKind)>,
}

impl Groups {
    pub(crate) fn new(config: GroupConfig) -> Groups {
        Groups {
            coordinator: GroupCoordinator::new(config),
            parked: BTreeMap::new(),
            completed: Vec::new(),
        }
    }
}

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn park_id(id: crate::group::ParkId) -> ParkedId {
    ParkedId::Group(id)
}

impl<P: StorageProvider> Broker<P> {
    /// The group coordinator (for tests and the simulator's checkers).
    pub fn group_coordinator(&self) -> &GroupCoordinator {
        &self.groups.coordinator
    }

    /// Drains parked requests other than fetches — group requests (JoinGroup, SyncGroup)
    /// and acks=all produces — that are now answered.
    pub fn poll_completed_responses(&mut self) -> Vec<(ParkedId, ResponseKind)> {
        let mut completed = std::mem::take(&mut self.groups.completed);
        completed.extend(self.poll_completed_produces());
        completed
    }

    /// Forgets any parked request — fetch, group or produce — whose connection went away.
    pub fn cancel_parked(&mut self, id: ParkedId) {
        if self.cancel_produce(id) {
            return;
        }
        match id {
            ParkedId::Group(park) => {
                self.groups.parked.remove(&id);
                self.groups.coordinator.cancel(park);
            }
            ParkedId::Fetch(_) => self.cancel_fetch(id),
            ParkedId::Produce(_) | ParkedId::CreateTopics(_) => {}
        }
    }

    /// Group timers: session and rebalance timeouts.
    pub(crate) fn tick_groups(&mut self, now: Millis) {
        self.groups.coordinator.handle_tick(now);
        self.flush_group_outputs(now);
    }

    /// The next group timer.
    pub(crate) fn next_group_deadline(&self) -> Option<Millis> {
        self.groups.coordinator.next_deadline()
    }

    /// Persists the coordinator's records and turns its completions into responses.
    fn flush_group_outputs(&mut self, now: Millis) {
        let records = self.groups.coordinator.poll_records();
        // Group metadata records (offsets are written and checked separately) carry a
        // generation and its assignment: one that is not stored must not be handed out, or a
        // restart would hand the same generation out again with another assignment. As in
        // Kafka, the SyncGroup answers get an error and the group rebalances.
        let store_failed = !records.is_empty() && self.append_group_records(now, &records).is_err();
        if store_failed {
            let groups: BTreeSet<&str> = records
                .iter()
                .filter(|r| matches!(r, GroupRecord::Group { .. }))
                .map(GroupRecord::group)
                .collect();
            for group in groups {
                self.groups.coordinator.metadata_store_failed(group, now);
            }
        }
        for (id, completion) in self.groups.coordinator.poll_completed() {
            let id = park_id(id);
            let Some((api, version)) = self.groups.parked.remove(&id) else {
                continue; // cancelled
            };
            let response = match completion {
                Completion::Join(answer) => {
                    debug_assert_eq!(api, ApiKey::JoinGroup);
                    ResponseKind::JoinGroup(join_response(answer, version))
                }
                Completion::Sync(answer) if store_failed && answer.error == ErrorCode::None => {
                    debug_assert_eq!(api, ApiKey::SyncGroup);
                    let failed = SyncResponse::error(ErrorCode::CoordinatorNotAvailable);
                    ResponseKind::SyncGroup(sync_response(failed, version))
                }
                Completion::Sync(answer) => {
                    debug_assert_eq!(api, ApiKey::SyncGroup);
                    ResponseKind::SyncGroup(sync_response(answer, version))
                }
            };
            self.groups.completed.push((id, response));
        }
    }

    /// Creates `__consumer_offsets` if it does not exist yet.
    pub(crate) fn ensure_offsets_topic(&mut self, now: Millis) -> Result<(), ErrorCode> {
        if self.member.is_some() {
            // The group coordinator does not run on cluster members yet (its topic would be
            // one broker's, unreplicated).
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        if self.topics.contains_key(OFFSETS_TOPIC) {
            return Ok(());
        }
        let overrides = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("retention.ms".to_string(), "-1".to_string()),
            ("segment.bytes".to_string(), "104857600".to_string()),
            // One commit of many partitions, or a big group's metadata, is one batch.
            ("max.message.bytes".to_string(), "10485760".to_string()),
        ]);
        let partitions = self.config.offsets_topic_partitions.max(1);
        self.create_topic(OFFSETS_TOPIC, partitions, overrides, now)
            .map(|_| ())
    }

    /// Appends records to the `__consumer_offsets` partitions of their groups, one batch per
    /// partition.
    fn append_group_records(
        &mut self,
        now: Millis,
        records: &[GroupRecord],
    ) -> Result<(), ErrorCode> {
        self.ensure_offsets_topic(now)?;
        let topic = self
            .topics
            .get_mut(OFFSETS_TOPIC)
            .ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let count = topic.partitions.count();
        let mut batches: BTreeMap<i32, BatchBuilder> = BTreeMap::new();
        for record in records {
            let partition = partition_for_group(record.group(), count);
            batches
                .entry(partition)
                .or_insert_with(|| BatchBuilder::new(Offset(0)))
                .push(&Record {
                    timestamp: now.0,
                    key: Some(record.encode_key()),
                    value: record.encode_value(),
                    headers: Vec::new(),
                });
        }
        for (index, builder) in batches {
            let partition = topic
                .partitions
                .get_mut(index)
                .filter(|p| p.is_leader())
                .ok_or(ErrorCode::CoordinatorNotAvailable)?;
            let mut bytes = builder.build();
            partition
                .append_as_leader(&mut bytes, now)
                .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
        }
        Ok(())
    }

    /// Replays `__consumer_offsets` into the coordinator (broker open).
    pub(crate) fn load_groups(&mut self, now: Millis) -> Result<(), BrokerError> {
        let Some(topic) = self.topics.get(OFFSETS_TOPIC) else {
            return Ok(());
        };
        let mut loaded = Vec::new();
        for (index, partition) in topic.partitions.held() {
            let log = &partition.log;
            let failed = |source| BrokerError::Log {
                partition: super::partition_dir(OFFSETS_TOPIC, index),
                source,
            };
            let mut offset = log.log_start_offset();
            while offset < log.high_watermark() {
                let Some(slice) = log
                    .read(offset, REPLAY_READ_BYTES_MAX, log.high_watermark())
                    .map_err(failed)?
                else {
                    break;
                };
                assert!(slice.next_offset > offset, "replay makes progress");
                offset = slice.next_offset;
                let bytes = log.read_bytes(&slice).map_err(failed)?;
                for batch in Batches::new(&bytes) {
                    let Ok(batch) = batch else { break };
                    if batch.is_control() {
                        continue;
                    }
                    let Ok(decoded) = decode_records(&batch, REPLAY_DECOMPRESSED_BYTES_MAX) else {
                        continue;
                    };
                    for record in decoded {
                        let key = record.record.key.as_deref();
                        // A record Brook cannot read (a future format) is skipped, as Kafka
                        // skips unknown record types.
                        if let Ok(record) = GroupRecord::decode(key, record.record.value.as_deref())
                        {
                            loaded.push(record);
                        }
                    }
                }
            }
        }
        for record in loaded {
            self.groups.coordinator.load(record, now);
        }
        self.groups.coordinator.check_invariants();
        Ok(())
    }

    /// Metadata hides `__consumer_offsets` unless asked for by name, and marks it internal.
    pub(crate) fn mark_internal_topics(
        &self,
        response: &mut MetadataResponse,
        named: &[String],
        version: i16,
    ) {
        if !named.iter().any(|n| n == OFFSETS_TOPIC) {
            response
                .topics
                .retain(|t| t.name.as_ref().map(|n| n.0.as_str()) != Some(OFFSETS_TOPIC));
        }
        if version >= 1 {
            for topic in &mut response.topics {
                if topic.name.as_ref().map(|n| n.0.as_str()) == Some(OFFSETS_TOPIC) {
                    mark_internal(topic);
                }
            }
        }
    }

    /// Takes the internal topic out of a client's Produce; its partitions are answered
    /// `INVALID_TOPIC_EXCEPTION` by [`Broker::refuse_internal_produce`].
    pub(crate) fn strip_internal_produce(
        request: &mut ProduceRequest,
    ) -> Vec<(TopicName, Vec<i32>)> {
        let mut refused = Vec::new();
        request.topic_data.retain(|topic| {
            if topic.name.0.as_str() == OFFSETS_TOPIC {
                refused.push((
                    topic.name.clone(),
                    topic.partition_data.iter().map(|p| p.index).collect(),
                ));
                false
            } else {
                true
            }
        });
        refused
    }

    /// Adds the refused internal-topic partitions to a Produce answer.
    pub(crate) fn refuse_internal_produce(
        response: &mut ProduceResponse,
        refused: Vec<(TopicName, Vec<i32>)>,
        version: i16,
    ) {
        for (name, partitions) in refused {
            let mut topic = TopicProduceResponse::default();
            topic.name = name;
            for index in partitions {
                let mut answer = PartitionProduceResponse::default();
                answer.index = index;
                answer.error_code = ErrorCode::InvalidTopicException.code();
                answer.base_offset = -1;
                if version >= 8 {
                    answer.error_message = Some(text("cannot append to an internal topic"));
                }
                topic.partition_responses.push(answer);
            }
            response.responses.push(topic);
        }
    }

    /// FindCoordinator (v0–6; batched keys from v4): this broker coordinates every group.
    pub(crate) fn handle_find_coordinator(
        &mut self,
        now: Millis,
        request: FindCoordinatorRequest,
        version: i16,
    ) -> FindCoordinatorResponse {
        let keys: Vec<StrBytes> = if version >= 4 {
            request.coordinator_keys
        } else {
            vec![request.key]
        };
        let error = match request.key_type {
            0 => match self.ensure_offsets_topic(now) {
                Ok(()) => ErrorCode::None,
                Err(_) => ErrorCode::CoordinatorNotAvailable,
            },
            // Transactions have no coordinator of their own yet; a single broker answers.
            1 if self.member.is_some() => ErrorCode::CoordinatorNotAvailable,
            1 => ErrorCode::None,
            _ => ErrorCode::InvalidRequest,
        };
        let (node, host, port) = if error == ErrorCode::None {
            (
                self.config.node_id,
                self.config.advertised_host.clone(),
                self.config.advertised_port,
            )
        } else {
            (-1, String::new(), -1)
        };
        let mut response = FindCoordinatorResponse::default();
        if version >= 4 {
            for key in keys {
                let mut coordinator = Coordinator::default();
                coordinator.key = key;
                coordinator.node_id = BrokerId(node);
                coordinator.host = text(host.clone());
                coordinator.port = port;
                coordinator.error_code = error.code();
                coordinator.error_message = (error != ErrorCode::None).then(|| text(error.name()));
                response.coordinators.push(coordinator);
            }
        } else {
            response.error_code = error.code();
            response.node_id = BrokerId(node);
            response.host = text(host);
            response.port = port;
            if version >= 1 {
                response.error_message = (error != ErrorCode::None).then(|| text(error.name()));
            }
        }
        response
    }

    /// JoinGroup: answered now (errors, repeated joins) or parked until the rebalance.
    pub(crate) fn handle_join_group(
        &mut self,
        now: Millis,
        request: JoinGroupRequest,
        version: i16,
        client_id: &str,
        context: &RequestContext,
    ) -> Reply {
        let join = JoinRequest {
            group_id: request.group_id.0.to_string(),
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|s| s.to_string()),
            client_id: client_id.to_string(),
            client_host: context.client_host.clone(),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: if version >= 1 {
                request.rebalance_timeout_ms
            } else {
                request.session_timeout_ms
            },
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata))
                .collect(),
            require_known_member_id: version >= 4,
        };
        let answer = match self.ensure_offsets_topic(now) {
            Err(_) => Answer::Now(crate::group::JoinResponse::error(
                ErrorCode::CoordinatorNotAvailable,
                &join.member_id,
            )),
            Ok(()) => self.groups.coordinator.handle_join(now, join),
        };
        self.reply_group(now, answer, ApiKey::JoinGroup, version, |a| {
            ResponseKind::JoinGroup(join_response(a, version))
        })
    }

    /// SyncGroup: the leader's assignment; followers wait for it.
    pub(crate) fn handle_sync_group(
        &mut self,
        now: Millis,
        request: SyncGroupRequest,
        version: i16,
    ) -> Reply {
        let sync = SyncRequest {
            group_id: request.group_id.0.to_string(),
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|s| s.to_string()),
            generation_id: request.generation_id,
            protocol_type: request.protocol_type.map(|s| s.to_string()),
            protocol_name: request.protocol_name.map(|s| s.to_string()),
            assignments: request
                .assignments
                .into_iter()
                .map(|a| (a.member_id.to_string(), a.assignment))
                .collect(),
        };
        let answer = self.groups.coordinator.handle_sync(now, sync);
        self.reply_group(now, answer, ApiKey::SyncGroup, version, |a| {
            ResponseKind::SyncGroup(sync_response(a, version))
        })
    }

    fn reply_group<T>(
        &mut self,
        now: Millis,
        answer: Answer<T>,
        api: ApiKey,
        version: i16,
        respond: impl FnOnce(T) -> ResponseKind,
    ) -> Reply {
        let reply = match answer {
            Answer::Now(answer) => Reply::Response(Box::new(respond(answer))),
            Answer::Parked(id) => {
                let id = park_id(id);
                self.groups.parked.insert(id, (api, version));
                Reply::Parked(id)
            }
        };
        // Parked requests of other members may have been answered by this one.
        self.flush_group_outputs(now);
        reply
    }

    /// Heartbeat.
    pub(crate) fn handle_heartbeat(
        &mut self,
        now: Millis,
        request: HeartbeatRequest,
    ) -> HeartbeatResponse {
        let identity = MemberIdentity {
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|s| s.to_string()),
        };
        let code = self.groups.coordinator.handle_heartbeat(
            now,
            request.group_id.0.as_str(),
            &identity,
            request.generation_id,
        );
        self.flush_group_outputs(now);
        let mut response = HeartbeatResponse::default();
        response.error_code = code.code();
        response
    }

    /// LeaveGroup: one member (v0–2) or a batch (v3+).
    pub(crate) fn handle_leave_group(
        &mut self,
        now: Millis,
        request: LeaveGroupRequest,
        version: i16,
    ) -> LeaveGroupResponse {
        let members: Vec<MemberIdentity> = if version >= 3 {
            request
                .members
                .iter()
                .map(|m| MemberIdentity {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                })
                .collect()
        } else {
            vec![MemberIdentity {
                member_id: request.member_id.to_string(),
                group_instance_id: None,
            }]
        };
        let answers =
            self.groups
                .coordinator
                .handle_leave(now, request.group_id.0.as_str(), &members);
        self.flush_group_outputs(now);
        let mut response = LeaveGroupResponse::default();
        let codes = match answers {
            Ok(codes) => codes,
            Err(code) if version < 3 => vec![code],
            Err(code) => vec![code; members.len()],
        };
        if version >= 3 {
            for (identity, code) in members.into_iter().zip(codes) {
                let mut member = MemberResponse::default();
                member.member_id = text(identity.member_id);
                member.group_instance_id = identity.group_instance_id.map(text);
                member.error_code = code.code();
                response.members.push(member);
            }
        } else {
            response.error_code = codes.first().copied().unwrap_or(ErrorCode::None).code();
        }
        response
    }

    /// OffsetCommit: member commits (generation checked) and simple commits (generation -1).
    pub(crate) fn handle_offset_commit(
        &mut self,
        now: Millis,
        request: OffsetCommitRequest,
        version: i16,
    ) -> OffsetCommitResponse {
        let group_id = request.group_id.0.to_string();
        let commit = CommitRequest {
            group_id: group_id.clone(),
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|s| s.to_string()),
            generation_id: if version >= 1 {
                request.generation_id_or_member_epoch
            } else {
                -1
            },
        };
        let verdict = self
            .ensure_offsets_topic(now)
            .map_err(|_| ErrorCode::CoordinatorNotAvailable)
            .and_then(|()| self.groups.coordinator.check_commit(now, &commit));
        let metadata_max = self.groups.coordinator.config().offset_metadata_bytes_max;
        let mut accepted = Vec::new();
        let mut codes: Vec<Vec<ErrorCode>> = Vec::new();
        for topic in &request.topics {
            let name = topic.name.0.as_str();
            let partitions = self.topics.get(name).map_or(0, |t| t.partitions.count());
            let mut topic_codes = Vec::new();
            for partition in &topic.partitions {
                let metadata = partition
                    .committed_metadata
                    .as_ref()
                    .map_or("", |m| m.as_str());
                let code = match verdict {
                    Err(code) => code,
                    Ok(()) if !(0..partitions).contains(&partition.partition_index) => {
                        ErrorCode::UnknownTopicOrPartition
                    }
                    Ok(()) if metadata.len() > metadata_max => ErrorCode::OffsetMetadataTooLarge,
                    Ok(()) => {
                        let value = OffsetValue {
                            offset: partition.committed_offset,
                            leader_epoch: if version >= 6 {
                                partition.committed_leader_epoch
                            } else {
                                -1
                            },
                            metadata: metadata.to_string(),
                            commit_timestamp_ms: now.0,
                        };
                        accepted.push((name.to_string(), partition.partition_index, value));
                        ErrorCode::None
                    }
                };
                topic_codes.push(code);
            }
            codes.push(topic_codes);
        }
        let records: Vec<GroupRecord> = accepted
            .iter()
            .map(|(topic, partition, value)| GroupRecord::Offset {
                group: group_id.clone(),
                topic: topic.clone(),
                partition: *partition,
                value: Some(value.clone()),
            })
            .collect();
        let written = if records.is_empty() {
            Ok(())
        } else {
            self.append_group_records(now, &records)
        };
        match written {
            Ok(()) if !accepted.is_empty() => self
                .groups
                .coordinator
                .apply_commit(now, &group_id, accepted),
            Ok(()) => {}
            Err(code) => {
                for topic_codes in &mut codes {
                    for c in topic_codes.iter_mut().filter(|c| **c == ErrorCode::None) {
                        *c = code;
                    }
                }
            }
        }
        self.flush_group_outputs(now);
        let mut response = OffsetCommitResponse::default();
        for (topic, topic_codes) in request.topics.iter().zip(codes) {
            let mut answer = OffsetCommitResponseTopic::default();
            answer.name = topic.name.clone();
            for (partition, code) in topic.partitions.iter().zip(topic_codes) {
                let mut p = OffsetCommitResponsePartition::default();
                p.partition_index = partition.partition_index;
                p.error_code = code.code();
                answer.partitions.push(p);
            }
            response.topics.push(answer);
        }
        response
    }

    /// The committed offsets a group has for the partitions asked (all when `None`):
    /// (topic, [(partition, offset, leader epoch, metadata)]).
    fn fetch_offsets(
        &self,
        group_id: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> FetchedOffsets {
        let offsets = self.groups.coordinator.committed_offsets(group_id);
        let mut out: FetchedOffsets = Vec::new();
        match wanted {
            None => {
                for ((topic, partition), value) in offsets.into_iter().flatten() {
                    if out.last().map(|(t, _)| t) != Some(topic) {
                        out.push((topic.clone(), Vec::new()));
                    }
                    let entry = (
                        *partition,
                        value.offset,
                        value.leader_epoch,
                        value.metadata.clone(),
                    );
                    out.last_mut().expect("pushed").1.push(entry);
                }
            }
            Some(topics) => {
                for (topic, partitions) in topics {
                    let answers = partitions
                        .into_iter()
                        .map(|partition| {
                            match offsets.and_then(|o| o.get(&(topic.clone(), partition))) {
                                Some(v) => {
                                    (partition, v.offset, v.leader_epoch, v.metadata.clone())
                                }
                                None => (partition, -1, -1, String::new()),
                            }
                        })
                        .collect();
                    out.push((topic, answers));
                }
            }
        }
        out
    }

    /// OffsetFetch: one group (v0–7) or several (v8+).
    pub(crate) fn handle_offset_fetch(
        &mut self,
        request: OffsetFetchRequest,
        version: i16,
    ) -> OffsetFetchResponse {
        let mut response = OffsetFetchResponse::default();
        if version >= 8 {
            for group in request.groups {
                let wanted = group.topics.map(|topics| {
                    topics
                        .into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let fetched = self.fetch_offsets(group.group_id.0.as_str(), wanted);
                let mut answer = OffsetFetchResponseGroup::default();
                answer.group_id = group.group_id;
                for (topic, partitions) in fetched {
                    let mut t = OffsetFetchResponseTopics::default();
                    t.name = TopicName(text(topic));
                    for (index, offset, epoch, metadata) in partitions {
                        let mut p = OffsetFetchResponsePartitions::default();
                        p.partition_index = index;
                        p.committed_offset = offset;
                        p.committed_leader_epoch = epoch;
                        p.metadata = Some(text(metadata));
                        t.partitions.push(p);
                    }
                    answer.topics.push(t);
                }
                response.groups.push(answer);
            }
            return response;
        }
        let wanted = request.topics.map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect()
        });
        for (topic, partitions) in self.fetch_offsets(request.group_id.0.as_str(), wanted) {
            let mut t = OffsetFetchResponseTopic::default();
            t.name = TopicName(text(topic));
            for (index, offset, epoch, metadata) in partitions {
                let mut p = OffsetFetchResponsePartition::default();
                p.partition_index = index;
                p.committed_offset = offset;
                if version >= 5 {
                    p.committed_leader_epoch = epoch;
                }
                p.metadata = Some(text(metadata));
                t.partitions.push(p);
            }
            response.topics.push(t);
        }
        response
    }

    /// OffsetDelete: offsets of topics the group no longer subscribes to.
    pub(crate) fn handle_offset_delete(
        &mut self,
        now: Millis,
        request: OffsetDeleteRequest,
    ) -> OffsetDeleteResponse {
        let group_id = request.group_id.0.to_string();
        let mut asked = Vec::new();
        for topic in &request.topics {
            for partition in &topic.partitions {
                asked.push((topic.name.0.to_string(), partition.partition_index));
            }
        }
        let known: Vec<(String, i32)> = asked
            .iter()
            .filter(|(topic, partition)| {
                self.topics
                    .get(topic.as_str())
                    .is_some_and(|t| t.partitions.exists(*partition))
            })
            .cloned()
            .collect();
        let mut response = OffsetDeleteResponse::default();
        let codes = match self.groups.coordinator.delete_offsets(&group_id, &known) {
            Err(code) => {
                response.error_code = code.code();
                return response;
            }
            Ok(codes) => codes,
        };
        self.flush_group_outputs(now);
        let mut known_codes = known.into_iter().zip(codes);
        let mut next = known_codes.next();
        for topic in request.topics {
            let mut answer = OffsetDeleteResponseTopic::default();
            for partition in topic.partitions {
                let key = (topic.name.0.to_string(), partition.partition_index);
                let code = match &next {
                    Some((k, code)) if *k == key => {
                        let code = *code;
                        next = known_codes.next();
                        code
                    }
                    _ => ErrorCode::UnknownTopicOrPartition,
                };
                let mut p = OffsetDeleteResponsePartition::default();
                p.partition_index = partition.partition_index;
                p.error_code = code.code();
                answer.partitions.push(p);
            }
            answer.name = topic.name;
            response.topics.push(answer);
        }
        response
    }

    /// DescribeGroups.
    pub(crate) fn handle_describe_groups(
        &self,
        request: DescribeGroupsRequest,
        version: i16,
    ) -> DescribeGroupsResponse {
        let mut response = DescribeGroupsResponse::default();
        for group_id in request.groups {
            let description = self.groups.coordinator.describe(group_id.0.as_str());
            let mut group = DescribedGroup::default();
            group.group_id = group_id;
            group.group_state = text(description.state.name());
            group.protocol_type = text(description.protocol_type);
            group.protocol_data = text(description.protocol);
            for member in description.members {
                let mut m = DescribedGroupMember::default();
                m.member_id = text(member.member_id);
                if version >= 4 {
                    m.group_instance_id = member.group_instance_id.map(text);
                }
                m.client_id = text(member.client_id);
                m.client_host = text(member.client_host);
                m.member_metadata = member.metadata;
                m.member_assignment = member.assignment;
                group.members.push(m);
            }
            response.groups.push(group);
        }
        response
    }

    /// ListGroups, with the v4 state filter and the v5 type filter.
    pub(crate) fn handle_list_groups(
        &self,
        request: ListGroupsRequest,
        version: i16,
    ) -> ListGroupsResponse {
        let states: Vec<String> = request
            .states_filter
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let types: Vec<String> = request
            .types_filter
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let mut response = ListGroupsResponse::default();
        if !types.is_empty() && !types.iter().any(|t| t == CLASSIC_GROUP_TYPE) {
            return response;
        }
        for listing in self.groups.coordinator.list() {
            let state = listing.state.name();
            if !states.is_empty() && !states.contains(&state.to_ascii_lowercase()) {
                continue;
            }
            let mut group = ListedGroup::default();
            group.group_id = GroupId(text(listing.group_id));
            group.protocol_type = text(listing.protocol_type);
            if version >= 4 {
                group.group_state = text(state);
            }
            if version >= 5 {
                group.group_type = text(CLASSIC_GROUP_TYPE);
            }
            response.groups.push(group);
        }
        response
    }

    /// DeleteGroups: Empty groups and their offsets.
    pub(crate) fn handle_delete_groups(
        &mut self,
        now: Millis,
        request: DeleteGroupsRequest,
    ) -> DeleteGroupsResponse {
        let mut response = DeleteGroupsResponse::default();
        for group_id in request.groups_names {
            let code = self.groups.coordinator.delete_group(group_id.0.as_str());
            let mut result = DeletableGroupResult::default();
            result.group_id = group_id;
            result.error_code = code.code();
            response.results.push(result);
        }
        self.flush_group_outputs(now);
        response
    }

    /// The state of a group (tests).
    pub fn group_state(&self, group_id: &str) -> GroupState {
        self.groups.coordinator.group_state(group_id)
    }
}

/// (topic, [(partition, offset, leader epoch, metadata)]) per topic.
type FetchedOffsets = Vec<(String, Vec<(i32, i64, i32, String)>)>;

fn mark_internal(topic: &mut MetadataResponseTopic) {
    topic.is_internal = true;
}

fn join_response(answer: crate::group::JoinResponse, version: i16) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    response.error_code = answer.error.code();
    response.generation_id = answer.generation_id;
    if version >= 7 {
        response.protocol_type = answer.protocol_type.map(text);
        response.protocol_name = answer.protocol_name.map(text);
    } else {
        // Not nullable before v7.
        response.protocol_name = Some(text(answer.protocol_name.unwrap_or_default()));
    }
    response.leader = text(answer.leader);
    response.member_id = text(answer.member_id);
    response.members = answer
        .members
        .into_iter()
        .map(|m| {
            let mut member = JoinGroupResponseMember::default();
            member.member_id = text(m.member_id);
            if version >= 5 {
                member.group_instance_id = m.group_instance_id.map(text);
            }
            member.metadata = m.metadata;
            member
        })
        .collect();
    response
}

fn sync_response(answer: crate::group::SyncResponse, version: i16) -> SyncGroupResponse {
    let mut response = SyncGroupResponse::default();
    response.error_code = answer.error.code();
    if version >= 5 {
        response.protocol_type = answer.protocol_type.map(text);
        response.protocol_name = answer.protocol_name.map(text);
    }
    response.assignment = answer.assignment;
    response
}

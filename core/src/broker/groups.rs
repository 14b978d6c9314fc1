//! Consumer groups in the broker: the Kafka requests of the group coordinator, translated to
//! and from [`GroupCoordinator`] calls, and its persistence in `__consumer_offsets`.
//!
//! JoinGroup and SyncGroup may wait for their rebalance, OffsetCommit and a SyncGroup that
//! hands out a generation for their records' replication: they answer [`Reply::Parked`]
//! (`ParkedId::Group` or `ParkedId::GroupWrite`) and come back from
//! [`Broker::poll_completed_responses`] as ready responses. Which groups this broker answers
//! for, and the writes' waits, are in `coordination.rs`.
//!
//! **Invariant:** a commit is applied to the coordinator and answered only after its records
//! are committed in the `__consumer_offsets` log; a new leader of the partition replays the
//! log, so every acknowledged commit survives a restart and a coordinator failover.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
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

use super::admin::is_internal;
use super::coordination::Coordination;
use super::TRANSACTION_STATE_TOPIC;
use super::{Broker, ParkedId, Reply, RequestContext, StorageProvider};
use crate::error::ErrorCode;
use crate::group::{
    partition_for_group, Answer, CommitRequest, Completion, GroupConfig, GroupCoordinator,
    GroupRecord, GroupState, JoinRequest, MemberIdentity, OffsetValue, SyncRequest, SyncResponse,
};
use crate::txn::partition_for_transactional_id;
use crate::types::Millis;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The group type every group here has (ListGroups v5).
const CLASSIC_GROUP_TYPE: &str = "classic";

/// The broker's group state: the coordinator, the parked requests' API versions and the
/// coordinated partitions.
pub(crate) struct Groups {
    pub(super) coordinator: GroupCoordinator,
    /// Parked JoinGroup/SyncGroup: id → (API, version) to encode the answer in.
    pub(super) parked: BTreeMap<ParkedId, (ApiKey, i16)>,
    pub(super) completed: Vec<(ParkedId, ResponseKind)>,
    pub(super) coordination: Coordination,
    /// SyncGroup answers the coordinator gave at once, held with the parked ones until the
    /// flush that follows knows whether a generation is being written.
    now_syncs: Vec<(ParkedId, i16, SyncResponse)>,
}

impl Groups {
    pub(crate) fn new(config: GroupConfig) -> Groups {
        Groups {
            coordinator: GroupCoordinator::new(config),
            parked: BTreeMap::new(),
            completed: Vec::new(),
            coordination: Coordination::default(),
            now_syncs: Vec::new(),
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
        completed.extend(self.poll_completed_transactions());
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
            // A group write still applies when it is committed; only its answer is dropped.
            ParkedId::GroupWrite(_)
            | ParkedId::Produce(_)
            | ParkedId::TopicChange(_)
            | ParkedId::Election(_)
            | ParkedId::Quorum(_)
            | ParkedId::Reassignment(_)
            | ParkedId::Metadata(_)
            | ParkedId::TxnWrite(_) => {}
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

    /// Persists the coordinator's records and turns its completions into responses. SyncGroup
    /// answers that hand out a generation wait until the records storing it are committed.
    fn flush_group_outputs(&mut self, now: Millis) {
        let records = self.groups.coordinator.poll_records();
        // Group metadata records (offsets are written and checked separately) carry a
        // generation and its assignment: one that is not stored must not be handed out, or a
        // new coordinator would hand the same generation out again with another assignment.
        // As in Kafka, the SyncGroup answers get an error and the group rebalances.
        let generations: BTreeSet<String> = records
            .iter()
            .filter(|r| matches!(r, GroupRecord::Group { .. }))
            .map(|r| r.group().to_string())
            .collect();
        let written = match records.is_empty() {
            true => Ok(Vec::new()),
            false => self.write_group_records(now, &records),
        };
        let store_failed = written.is_err();
        if store_failed {
            for group in &generations {
                self.groups.coordinator.metadata_store_failed(group, now);
            }
        }
        let mut syncs = std::mem::take(&mut self.groups.now_syncs);
        for (id, completion) in self.groups.coordinator.poll_completed() {
            let id = park_id(id);
            let Some((api, version)) = self.groups.parked.remove(&id) else {
                continue; // cancelled
            };
            match completion {
                Completion::Join(answer) => {
                    debug_assert_eq!(api, ApiKey::JoinGroup);
                    let response = ResponseKind::JoinGroup(join_response(answer, version));
                    self.groups.completed.push((id, response));
                }
                Completion::Sync(answer) => {
                    debug_assert_eq!(api, ApiKey::SyncGroup);
                    syncs.push((id, version, answer));
                }
            }
        }
        match written {
            Ok(waits) if !generations.is_empty() => {
                self.await_syncs(now, waits, syncs, generations);
            }
            _ => {
                for (id, version, mut answer) in syncs {
                    if store_failed && answer.error == ErrorCode::None {
                        answer = SyncResponse::error(ErrorCode::CoordinatorNotAvailable);
                    }
                    let response = ResponseKind::SyncGroup(sync_response(answer, version));
                    self.groups.completed.push((id, response));
                }
            }
        }
    }

    /// The settings `__consumer_offsets` is created with (through the controller).
    pub(crate) fn offsets_topic_overrides() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("retention.ms".to_string(), "-1".to_string()),
            ("segment.bytes".to_string(), "104857600".to_string()),
            // One commit of many partitions, or a big group's metadata, is one batch.
            ("max.message.bytes".to_string(), "10485760".to_string()),
        ])
    }

    /// Asks the controller for `__consumer_offsets` if it does not exist yet, answering
    /// `COORDINATOR_NOT_AVAILABLE` meanwhile.
    pub(crate) fn ensure_offsets_topic(&mut self, _now: Millis) -> Result<(), ErrorCode> {
        if self.topics.contains(OFFSETS_TOPIC) {
            return Ok(());
        }
        self.ask_for_topic(OFFSETS_TOPIC);
        Err(ErrorCode::CoordinatorNotAvailable)
    }

    /// Metadata hides `__consumer_offsets` unless asked for by name, and marks it internal.
    pub(crate) fn mark_internal_topics(
        &self,
        response: &mut MetadataResponse,
        named: &[String],
        version: i16,
    ) {
        let internal =
            |t: &MetadataResponseTopic| t.name.as_ref().is_some_and(|n| is_internal(n.0.as_str()));
        response.topics.retain(|t| {
            !internal(t)
                || named
                    .iter()
                    .any(|n| Some(n.as_str()) == t.name.as_ref().map(|x| x.0.as_str()))
        });
        if version >= 1 {
            for topic in &mut response.topics {
                if internal(topic) {
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
            if is_internal(topic.name.0.as_str()) {
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

    /// FindCoordinator (v0–6; batched keys from v4): a group's coordinator is the leader of
    /// its `__consumer_offsets` partition.
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
        let internal_topic = match request.key_type {
            0 => self.ensure_offsets_topic(now),
            1 => self.ensure_transaction_state_topic(),
            _ => Ok(()),
        };
        let mut answers = Vec::new();
        for key in keys {
            let found = match request.key_type {
                0 => internal_topic.and_then(|()| {
                    self.coordinator_of(OFFSETS_TOPIC, |count| {
                        partition_for_group(key.as_str(), count)
                    })
                }),
                1 if key.is_empty() => Err(ErrorCode::InvalidRequest),
                1 => internal_topic.and_then(|()| {
                    self.coordinator_of(TRANSACTION_STATE_TOPIC, |count| {
                        partition_for_transactional_id(key.as_str(), count)
                    })
                }),
                _ => Err(ErrorCode::InvalidRequest),
            };
            answers.push((key, found));
        }
        let mut response = FindCoordinatorResponse::default();
        for (key, found) in answers {
            let error = found.as_ref().err().copied().unwrap_or(ErrorCode::None);
            let (node, host, port) = found.unwrap_or((-1, String::new(), -1));
            let message = (error != ErrorCode::None).then(|| text(error.name()));
            if version >= 4 {
                let mut coordinator = Coordinator::default();
                coordinator.key = key;
                coordinator.node_id = BrokerId(node);
                coordinator.host = text(host);
                coordinator.port = port;
                coordinator.error_code = error.code();
                coordinator.error_message = message;
                response.coordinators.push(coordinator);
            } else {
                response.error_code = error.code();
                response.node_id = BrokerId(node);
                response.host = text(host);
                response.port = port;
                if version >= 1 {
                    response.error_message = message;
                }
            }
        }
        response
    }

    /// The broker leading the partition of an internal topic (`__consumer_offsets` for a
    /// group, `__transaction_state` for a transactional id) that `partition_of` picks for
    /// the topic's partition count, as the cluster image names it
    /// (`COORDINATOR_NOT_AVAILABLE` while the partition has none).
    fn coordinator_of(
        &self,
        internal_topic: &str,
        partition_of: impl Fn(i32) -> i32,
    ) -> Result<(i32, String, i32), ErrorCode> {
        let image = self.image();
        let topic = image
            .topic(internal_topic)
            .filter(|t| !t.partitions.is_empty())
            .ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let count = i32::try_from(topic.partitions.len()).expect("partition counts fit i32");
        let index = partition_of(count);
        let leader = topic
            .partitions
            .iter()
            .find(|p| p.partition == index)
            .and_then(|p| p.leader)
            .ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let broker = image
            .brokers()
            .get(&leader)
            .filter(|b| !b.fenced)
            .ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let registration = &broker.registration;
        Ok((leader.0, registration.host.clone(), registration.port))
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
        let answer = match self.serving_group(now, &join.group_id) {
            Err(code) => Answer::Now(crate::group::JoinResponse::error(code, &join.member_id)),
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
        if let Some(code) = self.coordinator_error(&sync.group_id) {
            let answer = sync_response(SyncResponse::error(code), version);
            return Reply::Response(Box::new(ResponseKind::SyncGroup(answer)));
        }
        let group = sync.group_id.clone();
        match self.groups.coordinator.handle_sync(now, sync) {
            // An answer that hands out a generation — the leader's own, or a member's that
            // syncs after the leader while the generation's records are being written —
            // waits with the others for the records storing it.
            Answer::Now(answer) if answer.error == ErrorCode::None => {
                let id = self.hold_sync_answer();
                if let Some(answer) = self.hold_with_stored_generation(&group, id, version, answer)
                {
                    self.groups.now_syncs.push((id, version, answer));
                }
                self.flush_group_outputs(now);
                self.reply_when_done(id)
            }
            answer => self.reply_group(now, answer, ApiKey::SyncGroup, version, |a| {
                ResponseKind::SyncGroup(sync_response(a, version))
            }),
        }
    }

    /// Whether this broker answers for `group` now, creating `__consumer_offsets` first if
    /// there is none (a group's first JoinGroup or OffsetCommit).
    fn serving_group(&mut self, now: Millis, group: &str) -> Result<(), ErrorCode> {
        self.ensure_offsets_topic(now)?;
        self.coordinator_error(group).map_or(Ok(()), Err)
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
        let group = request.group_id.0.as_str();
        let code = match self.coordinator_error(group) {
            Some(code) => code,
            None => {
                let coordinator = &mut self.groups.coordinator;
                coordinator.handle_heartbeat(now, group, &identity, request.generation_id)
            }
        };
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
        let group = request.group_id.0.as_str();
        let answers = match self.coordinator_error(group) {
            Some(code) => Err(code),
            None => self.groups.coordinator.handle_leave(now, group, &members),
        };
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
    ) -> Reply {
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
            .serving_group(now, &group_id)
            .and_then(|()| self.groups.coordinator.check_commit(now, &commit));
        let metadata_max = self.groups.coordinator.config().offset_metadata_bytes_max;
        let mut accepted = Vec::new();
        let mut codes: Vec<Vec<ErrorCode>> = Vec::new();
        for topic in &request.topics {
            let name = topic.name.0.as_str();
            let partitions = self.topics.get(name).map_or(0, |t| t.partitions.count());
            let mut topic_codes = Vec::new();
            for partition in &topic.partitions {
                let metadata = partition.committed_metadata.as_ref();
                let leader_epoch = (version >= 6).then_some(partition.committed_leader_epoch);
                let asked = AskedOffset {
                    partition: partition.partition_index,
                    offset: partition.committed_offset,
                    leader_epoch,
                    metadata: metadata.map_or("", |m| m.as_str()),
                };
                let code = match offset_to_commit(now, verdict, partitions, metadata_max, &asked) {
                    Err(code) => code,
                    Ok(value) => {
                        accepted.push((name.to_string(), partition.partition_index, value));
                        ErrorCode::None
                    }
                };
                topic_codes.push(code);
            }
            codes.push(topic_codes);
        }
        let records = offset_records(&group_id, &accepted);
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
        let reply = match records.is_empty() {
            true => Reply::Response(Box::new(ResponseKind::OffsetCommit(response))),
            false => match self.write_group_records(now, &records) {
                Err(code) => {
                    fail_accepted(&mut response, code);
                    Reply::Response(Box::new(ResponseKind::OffsetCommit(response)))
                }
                Ok(waits) => {
                    let id = self.await_commit(now, waits, group_id, accepted, response);
                    self.reply_when_done(id)
                }
            },
        };
        self.flush_group_outputs(now);
        reply
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
        let stable = version >= 7 && request.require_stable;
        if version >= 8 {
            for group in request.groups {
                let wanted = group.topics.map(|topics| {
                    topics
                        .into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let mut answer = OffsetFetchResponseGroup::default();
                if let Some(code) = self.coordinator_error(group.group_id.0.as_str()) {
                    answer.error_code = code.code();
                    answer.group_id = group.group_id;
                    response.groups.push(answer);
                    continue;
                }
                let fetched = self.fetch_offsets(group.group_id.0.as_str(), wanted);
                let group_id = group.group_id.0.to_string();
                answer.group_id = group.group_id;
                for (topic, partitions) in fetched {
                    let mut t = OffsetFetchResponseTopics::default();
                    for (index, offset, epoch, metadata) in partitions {
                        let mut p = OffsetFetchResponsePartitions::default();
                        p.error_code = self.stability(stable, &group_id, &topic, index).code();
                        p.partition_index = index;
                        p.committed_offset = offset;
                        p.committed_leader_epoch = epoch;
                        p.metadata = Some(text(metadata));
                        t.partitions.push(p);
                    }
                    t.name = TopicName(text(topic));
                    answer.topics.push(t);
                }
                response.groups.push(answer);
            }
            return response;
        }
        if let Some(code) = self.coordinator_error(request.group_id.0.as_str()) {
            response.error_code = code.code();
            return response;
        }
        let wanted = request.topics.map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect()
        });
        let group_id = request.group_id.0.to_string();
        for (topic, partitions) in self.fetch_offsets(&group_id, wanted) {
            let mut t = OffsetFetchResponseTopic::default();
            for (index, offset, epoch, metadata) in partitions {
                let mut p = OffsetFetchResponsePartition::default();
                p.error_code = self.stability(stable, &group_id, &topic, index).code();
                p.partition_index = index;
                p.committed_offset = offset;
                if version >= 5 {
                    p.committed_leader_epoch = epoch;
                }
                p.metadata = Some(text(metadata));
                t.partitions.push(p);
            }
            t.name = TopicName(text(topic));
            response.topics.push(t);
        }
        response
    }

    /// KIP-447: with `require_stable`, an offset a transaction is about to replace is
    /// `UNSTABLE_OFFSET_COMMIT` (the consumer asks again) instead of the stale one.
    fn stability(&self, stable: bool, group: &str, topic: &str, partition: i32) -> ErrorCode {
        let coordinator = &self.groups.coordinator;
        match stable && coordinator.has_pending_txn_offset(group, topic, partition) {
            true => ErrorCode::UnstableOffsetCommit,
            false => ErrorCode::None,
        }
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
        if let Some(code) = self.coordinator_error(&group_id) {
            response.error_code = code.code();
            return response;
        }
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
            let mut group = DescribedGroup::default();
            if let Some(code) = self.coordinator_error(group_id.0.as_str()) {
                group.error_code = code.code();
                group.group_id = group_id;
                response.groups.push(group);
                continue;
            }
            let description = self.groups.coordinator.describe(group_id.0.as_str());
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
            let code = match self.coordinator_error(group_id.0.as_str()) {
                Some(code) => code,
                None => self.groups.coordinator.delete_group(group_id.0.as_str()),
            };
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

/// Gives the partitions of an OffsetCommit answer that were accepted the error of their
/// write.
pub(super) fn fail_accepted(response: &mut OffsetCommitResponse, code: ErrorCode) {
    let partitions = response.topics.iter_mut().flat_map(|t| &mut t.partitions);
    for partition in partitions.filter(|p| p.error_code == ErrorCode::None.code()) {
        partition.error_code = code.code();
    }
}

/// The `__consumer_offsets` records of a group's accepted offsets.
pub(super) fn offset_records(
    group: &str,
    accepted: &[(String, i32, OffsetValue)],
) -> Vec<GroupRecord> {
    accepted
        .iter()
        .map(|(topic, partition, value)| GroupRecord::Offset {
            group: group.to_string(),
            topic: topic.clone(),
            partition: *partition,
            value: Some(value.clone()),
        })
        .collect()
}

/// One partition's offset as an OffsetCommit or TxnOffsetCommit asks to commit it.
pub(super) struct AskedOffset<'a> {
    pub(super) partition: i32,
    pub(super) offset: i64,
    /// The leader epoch, for versions that carry it.
    pub(super) leader_epoch: Option<i32>,
    pub(super) metadata: &'a str,
}

/// The offset to store for one partition of a commit, or why not: the commit's own verdict,
/// a partition the topic does not have, metadata over `offset.metadata.max.bytes`.
pub(super) fn offset_to_commit(
    now: Millis,
    verdict: Result<(), ErrorCode>,
    partitions: i32,
    metadata_max: usize,
    asked: &AskedOffset<'_>,
) -> Result<OffsetValue, ErrorCode> {
    verdict?;
    if !(0..partitions).contains(&asked.partition) {
        return Err(ErrorCode::UnknownTopicOrPartition);
    }
    if asked.metadata.len() > metadata_max {
        return Err(ErrorCode::OffsetMetadataTooLarge);
    }
    Ok(OffsetValue {
        offset: asked.offset,
        leader_epoch: asked.leader_epoch.unwrap_or(-1),
        metadata: asked.metadata.to_string(),
        commit_timestamp_ms: now.0,
    })
}

/// (topic, [(partition, offset, leader epoch, metadata)]) per topic.
type FetchedOffsets = Vec<(String, Vec<(i32, i64, i32, String)>)>;

fn mark_internal(topic: &mut MetadataResponseTopic) {
    topic.is_internal = true;
}

pub(super) fn join_response(answer: crate::group::JoinResponse, version: i16) -> JoinGroupResponse {
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

pub(super) fn sync_response(answer: crate::group::SyncResponse, version: i16) -> SyncGroupResponse {
    let mut response = SyncGroupResponse::default();
    response.error_code = answer.error.code();
    if version >= 5 {
        response.protocol_type = answer.protocol_type.map(text);
        response.protocol_name = answer.protocol_name.map(text);
    }
    response.assignment = answer.assignment;
    response
}

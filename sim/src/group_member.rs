//! Simulated consumer-group members: find the coordinator, join, sync (the leader assigns
//! partitions round robin), fetch from the committed offset at each partition's leader,
//! commit, heartbeat, and rejoin on rebalance — each on its own node, so the fault plan can
//! kill and restart them. Like Kafka's clients they look the coordinator up again when it
//! stops answering or answers that it moved, and carry on in their generation meanwhile;
//! the same code runs against one broker (a cluster of one) and against three nodes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brook_core::ErrorCode;
use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    OffsetCommitRequest, OffsetFetchRequest, ResponseKind, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster_workload::{coordinator_moved, group_error, Router};
use crate::node::now;
use crate::workload::{read_partition, SharedHistory, PARTITIONS, TOPIC};

/// The group every member joins.
pub const GROUP: &str = "sim-group";
/// Members' session timeout (the broker's minimum).
pub const SESSION_TIMEOUT_MS: i32 = 6_000;
/// How often a member commits the positions it moved (as `auto.commit.interval.ms`, short).
const COMMIT_INTERVAL_MS: i64 = 500;
/// Members' rebalance timeout.
pub const REBALANCE_TIMEOUT_MS: i32 = 8_000;

/// What a member observed, for the group checkers.
#[derive(Clone, Debug)]
pub enum GroupEvent {
    /// A member got these partitions in this generation.
    Owned {
        /// The member's index.
        member: usize,
        /// The generation.
        generation: i32,
        /// Its partitions.
        partitions: Vec<i32>,
        /// When the SyncGroup answer arrived.
        at_ms: i64,
    },
    /// A member joined a generation under this member id (simulated ms).
    Joined {
        /// The member's index.
        member: usize,
        /// The id the coordinator gave it.
        member_id: String,
        /// When.
        at_ms: i64,
    },
    /// The fault plan killed a member's process (it restarts with a new member id).
    Killed {
        /// The member's index.
        member: usize,
        /// When.
        at_ms: i64,
    },
    /// A broker loaded the group from `__consumer_offsets` — it restarted, or became the
    /// group's coordinator — with its members, whose sessions start again then (a member
    /// killed before stays until it expires).
    CoordinatorLoaded {
        /// When.
        at_ms: i64,
    },
    /// DescribeGroups listed these member ids (the observer's view of the coordinator).
    Described {
        /// The member ids.
        members: Vec<String>,
        /// When the answer arrived.
        at_ms: i64,
    },
    /// The broker acknowledged a commit.
    Committed {
        /// When the member sent it: the coordinator answers commits of one generation and
        /// the next generation's syncs in its own order, which their arrival need not keep.
        sent_ms: i64,
        /// The generation the member committed in.
        generation: i32,
        /// The partition.
        partition: i32,
        /// The committed offset.
        offset: i64,
    },
    /// A commit whose answer never came (the call timed out or the connection failed). Its
    /// outcome is unknown: like a TCP segment retransmitted after a partition heals, the
    /// request may still reach the coordinator later — after commits the member sent on a new
    /// connection — and, its generation still current, be applied (Kafka takes any commit of
    /// the current generation, lower offsets too), moving the committed offset back.
    CommitUnanswered {
        /// The generation the member committed in.
        generation: i32,
        /// The partition.
        partition: i32,
        /// The offset it asked to commit.
        offset: i64,
    },
}

fn group_id() -> GroupId {
    GroupId(StrBytes::from_static_str(GROUP))
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

/// Where a member is in the protocol.
struct Member {
    index: usize,
    member_id: String,
    router: Router,
    history: SharedHistory,
}

/// One member's life until `stop` against nodes `1..=nodes`: join, consume, commit, rejoin
/// on every rebalance.
pub async fn group_member(index: usize, nodes: i32, stop: Arc<AtomicBool>, history: SharedHistory) {
    let mut member = Member {
        index,
        member_id: String::new(),
        router: Router::new(nodes),
        history,
    };
    while !stop.load(Ordering::Relaxed) {
        match member.join_and_sync().await {
            Some((generation, partitions)) => {
                member.consume(generation, &partitions, &stop).await;
            }
            None => madsim::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Starts `count` member nodes (`member0..`, at `10.0.2.1..`) against nodes `1..=nodes`,
/// each running [`group_member`] until `stop` (again after every restart).
pub fn start_members(
    handle: &madsim::runtime::Handle,
    count: usize,
    nodes: i32,
    stop: &Arc<AtomicBool>,
    history: &SharedHistory,
) -> Vec<madsim::runtime::NodeHandle> {
    (0..count)
        .map(|i| {
            let (stop, history) = (stop.clone(), history.clone());
            let ip = format!("10.0.2.{}", i + 1)
                .parse()
                .expect("literal IP address");
            handle
                .create_node()
                .name(format!("member{i}"))
                .ip(ip)
                .init(move || group_member(i, nodes, stop.clone(), history.clone()))
                .build()
        })
        .collect()
}

/// Asks the coordinator every half second which members the group has (DescribeGroups),
/// until `stop`, so the checkers can see when a killed member is removed.
pub async fn observe_group(nodes: i32, stop: Arc<AtomicBool>, history: SharedHistory) {
    let mut request = DescribeGroupsRequest::default();
    request.groups = vec![group_id()];
    let mut router = Router::new(nodes);
    while !stop.load(Ordering::Relaxed) {
        madsim::time::sleep(Duration::from_millis(500)).await;
        let Some(ResponseKind::DescribeGroups(response)) = router
            .call_coordinator(GROUP, ApiKey::DescribeGroups, 5, &request)
            .await
        else {
            continue;
        };
        let Some(group) = response.groups.first().filter(|g| g.error_code == 0) else {
            continue;
        };
        let members = group
            .members
            .iter()
            .map(|m| m.member_id.as_str().to_string())
            .collect();
        history
            .lock()
            .expect("history")
            .group_events
            .push(GroupEvent::Described {
                members,
                at_ms: now().0,
            });
    }
}

impl Member {
    /// Sends a group request to the coordinator (see [`Router::call_coordinator`]).
    async fn call(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &impl kafka_protocol::protocol::Encodable,
    ) -> Option<ResponseKind> {
        self.router
            .call_coordinator(GROUP, api, version, body)
            .await
    }

    /// Joins (and syncs) a generation: its number and this member's partitions.
    async fn join_and_sync(&mut self) -> Option<(i32, Vec<i32>)> {
        let mut join = JoinGroupRequest::default();
        join.group_id = group_id();
        join.session_timeout_ms = SESSION_TIMEOUT_MS;
        join.rebalance_timeout_ms = REBALANCE_TIMEOUT_MS;
        join.member_id = StrBytes::from_string(self.member_id.clone());
        join.group_instance_id = None;
        join.protocol_type = StrBytes::from_static_str("consumer");
        let mut protocol = JoinGroupRequestProtocol::default();
        protocol.name = StrBytes::from_static_str("sim-roundrobin");
        protocol.metadata = Bytes::from_static(b"sim");
        join.protocols = vec![protocol];
        let Some(ResponseKind::JoinGroup(joined)) = self.call(ApiKey::JoinGroup, 5, &join).await
        else {
            return None;
        };
        match ErrorCode::from_code(joined.error_code) {
            ErrorCode::None => {}
            ErrorCode::MemberIdRequired => {
                self.member_id = joined.member_id.as_str().to_string();
                return None;
            }
            ErrorCode::UnknownMemberId => {
                self.member_id.clear();
                return None;
            }
            _ => return None,
        }
        self.member_id = joined.member_id.as_str().to_string();
        let generation = joined.generation_id;
        self.history
            .lock()
            .expect("history")
            .group_events
            .push(GroupEvent::Joined {
                member: self.index,
                member_id: self.member_id.clone(),
                at_ms: now().0,
            });
        let mut sync = SyncGroupRequest::default();
        sync.group_id = group_id();
        sync.generation_id = generation;
        sync.member_id = joined.member_id.clone();
        sync.group_instance_id = None;
        if joined.leader == joined.member_id {
            let mut members: Vec<String> = joined
                .members
                .iter()
                .map(|m| m.member_id.as_str().to_string())
                .collect();
            members.sort();
            sync.assignments = members
                .iter()
                .enumerate()
                .map(|(slot, id)| {
                    let owned: Vec<String> = (0..PARTITIONS)
                        .filter(|p| *p as usize % members.len() == slot)
                        .map(|p| p.to_string())
                        .collect();
                    let mut assignment = SyncGroupRequestAssignment::default();
                    assignment.member_id = StrBytes::from_string(id.clone());
                    assignment.assignment = Bytes::from(owned.join(","));
                    assignment
                })
                .collect();
        }
        let Some(ResponseKind::SyncGroup(synced)) = self.call(ApiKey::SyncGroup, 3, &sync).await
        else {
            return None;
        };
        if synced.error_code != 0 {
            return None;
        }
        let text = String::from_utf8_lossy(&synced.assignment).into_owned();
        let partitions: Vec<i32> = text.split(',').filter_map(|p| p.parse().ok()).collect();
        self.history
            .lock()
            .expect("history")
            .group_events
            .push(GroupEvent::Owned {
                member: self.index,
                generation,
                partitions: partitions.clone(),
                at_ms: now().0,
            });
        Some((generation, partitions))
    }

    /// The committed offsets of `partitions` (0 where nothing is committed); `None` when the
    /// coordinator did not answer them.
    async fn committed(&mut self, partitions: &[i32]) -> Option<Vec<i64>> {
        let mut request = OffsetFetchRequest::default();
        request.group_id = group_id();
        let mut topic = OffsetFetchRequestTopic::default();
        topic.name = topic_name();
        topic.partition_indexes = partitions.to_vec();
        request.topics = Some(vec![topic]);
        let response = self.call(ApiKey::OffsetFetch, 5, &request).await?;
        let ResponseKind::OffsetFetch(fetched) = &response else {
            return None;
        };
        if group_error(&response) != 0 {
            return None;
        }
        let answers = fetched
            .topics
            .first()
            .map(|t| t.partitions.clone())
            .unwrap_or_default();
        let offsets = partitions
            .iter()
            .map(|p| {
                answers
                    .iter()
                    .find(|a| a.partition_index == *p)
                    .map_or(0, |a| a.committed_offset.max(0))
            })
            .collect();
        Some(offsets)
    }

    /// Consumes its partitions in `generation` until a rebalance, an error or `stop`.
    async fn consume(&mut self, generation: i32, partitions: &[i32], stop: &AtomicBool) {
        let mut positions = None;
        for _ in 0..20 {
            positions = self.committed(partitions).await;
            if positions.is_some() || stop.load(Ordering::Relaxed) {
                break;
            }
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
        let Some(mut positions) = positions else {
            return;
        };
        let mut last_heartbeat = now();
        // What the coordinator acknowledged last, and when it was sent.
        let mut stored = positions.clone();
        let mut last_commit = now();
        while !stop.load(Ordering::Relaxed) {
            // Like real clients, a member that lost its coordinator finds it again and
            // carries on in the generation it knows; only the coordinator's answer ends the
            // generation.
            if !self.fetch(partitions, &mut positions).await {
                madsim::time::sleep(Duration::from_millis(100)).await;
            }
            // A commit at most every COMMIT_INTERVAL_MS when the positions moved, and with
            // every heartbeat: a coordinator that lost its page cache may have lost what it
            // acknowledged.
            let beat_due = now().0 - last_heartbeat.0 >= 1_000;
            let commit_due = now().0 - last_commit.0 >= COMMIT_INTERVAL_MS;
            if (positions != stored && commit_due) || beat_due {
                last_commit = now();
                match self.commit(generation, partitions, &positions).await {
                    Some(true) => stored.clone_from(&positions),
                    Some(false) => return,
                    None => continue,
                }
            }
            if beat_due {
                last_heartbeat = now();
                let mut heartbeat = HeartbeatRequest::default();
                heartbeat.group_id = group_id();
                heartbeat.generation_id = generation;
                heartbeat.member_id = StrBytes::from_string(self.member_id.clone());
                heartbeat.group_instance_id = None;
                match self.call(ApiKey::Heartbeat, 3, &heartbeat).await {
                    Some(ResponseKind::Heartbeat(beat)) if beat.error_code == 0 => {}
                    Some(ResponseKind::Heartbeat(beat)) if coordinator_moved(beat.error_code) => {}
                    Some(_) => return,
                    None => continue,
                }
            }
        }
    }

    /// One fetch of `partitions` from their leaders, from `positions`, which it moves past
    /// what came back: whether any moved.
    async fn fetch(&mut self, partitions: &[i32], positions: &mut [i64]) -> bool {
        let mut by_leader: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (slot, partition) in partitions.iter().enumerate() {
            if let Some(leader) = self.router.leader(*partition).await {
                by_leader.entry(leader).or_default().push(slot);
            }
        }
        let mut progressed = false;
        for (leader, slots) in by_leader {
            let led: Vec<i32> = slots.iter().map(|s| partitions[*s]).collect();
            let from: Vec<i64> = slots.iter().map(|s| positions[*s]).collect();
            let mut request = crate::workload::fetch_request_for(&led, &from, 300);
            for wanted in &mut request.topics[0].partitions {
                wanted.current_leader_epoch = self.router.epoch(wanted.partition);
            }
            let Some(ResponseKind::Fetch(response)) =
                self.router.call(leader, ApiKey::Fetch, 12, &request).await
            else {
                led.iter().for_each(|p| self.router.forget(*p));
                continue;
            };
            for answer in response.responses.iter().flat_map(|t| &t.partitions) {
                let Some(slot) = partitions.iter().position(|p| *p == answer.partition_index)
                else {
                    continue;
                };
                if answer.error_code != 0 {
                    self.router.forget(answer.partition_index);
                    continue;
                }
                let fetched = read_partition(answer, positions[slot], &self.history);
                if let Some(next) = fetched.next {
                    progressed |= next > positions[slot];
                    positions[slot] = next;
                }
            }
        }
        progressed
    }

    /// Commits `positions`: `Some(true)` once acknowledged, `Some(false)` when the
    /// coordinator ended the generation, `None` when it is to be sent again — refused by a
    /// coordinator that is loading, or of unknown outcome (no answer, or the coordinator
    /// moved or timed out after it may have written it).
    async fn commit(
        &mut self,
        generation: i32,
        partitions: &[i32],
        positions: &[i64],
    ) -> Option<bool> {
        if partitions.is_empty() {
            return Some(true);
        }
        let mut request = OffsetCommitRequest::default();
        request.group_id = group_id();
        request.generation_id_or_member_epoch = generation;
        request.member_id = StrBytes::from_string(self.member_id.clone());
        request.group_instance_id = None;
        let mut topic = OffsetCommitRequestTopic::default();
        topic.name = topic_name();
        topic.partitions = partitions
            .iter()
            .zip(positions)
            .map(|(p, offset)| {
                let mut partition = OffsetCommitRequestPartition::default();
                partition.partition_index = *p;
                partition.committed_offset = *offset;
                partition.committed_metadata = None;
                partition
            })
            .collect();
        request.topics = vec![topic];
        let sent_ms = now().0;
        let response = self.call(ApiKey::OffsetCommit, 7, &request).await;
        let code = response.as_ref().map_or(0, group_error);
        let unknown = [
            ErrorCode::NotCoordinator,
            ErrorCode::CoordinatorNotAvailable,
            ErrorCode::RequestTimedOut,
        ];
        let mut history = self.history.lock().expect("history");
        let Some(ResponseKind::OffsetCommit(committed)) =
            response.filter(|_| !unknown.iter().any(|e| e.code() == code))
        else {
            for (partition, offset) in partitions.iter().zip(positions) {
                history.group_events.push(GroupEvent::CommitUnanswered {
                    generation,
                    partition: *partition,
                    offset: *offset,
                });
            }
            return None;
        };
        if coordinator_moved(code) {
            return None; // refused before it was written: sent again
        }
        if code != 0 {
            return Some(false);
        }
        for answer in committed.topics.iter().flat_map(|t| &t.partitions) {
            let slot = partitions.iter().position(|p| *p == answer.partition_index);
            if let Some(slot) = slot {
                history.group_events.push(GroupEvent::Committed {
                    sent_ms,
                    generation,
                    partition: answer.partition_index,
                    offset: positions[slot],
                });
            }
        }
        Some(true)
    }
}

//! Simulated consumer-group members: join, sync (the leader assigns partitions round robin),
//! fetch from the committed offset, commit, heartbeat, and rejoin on rebalance — each on its
//! own node, so the fault plan can kill and restart them.

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

use crate::client::Conn;
use crate::node::now;
use crate::workload::{read_partition, SharedHistory, BROKER_ADDR, PARTITIONS, TOPIC};

/// The group every member joins.
pub const GROUP: &str = "sim-group";
/// Members' session timeout (the broker's minimum).
pub const SESSION_TIMEOUT_MS: i32 = 6_000;
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
    /// The broker restarted: the coordinator reloads its groups with their members, whose
    /// sessions start again then (a member killed before stays until it expires).
    CoordinatorRestarted {
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
    conn: Option<Conn>,
    history: SharedHistory,
}

/// One member's life until `stop`: join, consume, commit, rejoin on every rebalance.
pub async fn group_member(index: usize, stop: Arc<AtomicBool>, history: SharedHistory) {
    let mut member = Member {
        index,
        member_id: String::new(),
        conn: None,
        history,
    };
    while !stop.load(Ordering::Relaxed) {
        if member.conn.is_none() {
            member.conn = Conn::connect(BROKER_ADDR).await.ok();
            if member.conn.is_none() {
                madsim::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        match member.join_and_sync().await {
            Some((generation, partitions)) => {
                member.consume(generation, &partitions, &stop).await;
            }
            None => madsim::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Asks the coordinator every half second which members the group has (DescribeGroups),
/// until `stop`, so the checkers can see when a killed member is removed.
pub async fn observe_group(stop: Arc<AtomicBool>, history: SharedHistory) {
    let mut request = DescribeGroupsRequest::default();
    request.groups = vec![group_id()];
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        madsim::time::sleep(Duration::from_millis(500)).await;
        if conn.is_none() {
            conn = Conn::connect(BROKER_ADDR).await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        let Ok(Some(ResponseKind::DescribeGroups(response))) =
            c.call(ApiKey::DescribeGroups, 5, &request, true).await
        else {
            conn = None;
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
    async fn call(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &impl kafka_protocol::protocol::Encodable,
    ) -> Option<ResponseKind> {
        let conn = self.conn.as_mut()?;
        match conn.call(api, version, body, true).await {
            Ok(response) => response,
            Err(_) => {
                self.conn = None;
                None
            }
        }
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
            });
        Some((generation, partitions))
    }

    /// The committed offsets of `partitions` (0 where nothing is committed).
    async fn committed(&mut self, partitions: &[i32]) -> Option<Vec<i64>> {
        let mut request = OffsetFetchRequest::default();
        request.group_id = group_id();
        let mut topic = OffsetFetchRequestTopic::default();
        topic.name = topic_name();
        topic.partition_indexes = partitions.to_vec();
        request.topics = Some(vec![topic]);
        let Some(ResponseKind::OffsetFetch(fetched)) =
            self.call(ApiKey::OffsetFetch, 5, &request).await
        else {
            return None;
        };
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
        let Some(mut positions) = self.committed(partitions).await else {
            return;
        };
        let mut last_heartbeat = now();
        while !stop.load(Ordering::Relaxed) {
            // Like real clients, a member that lost its connection reconnects and carries on
            // in the generation it knows; only the coordinator's answer ends the generation.
            if self.conn.is_none() {
                self.conn = Conn::connect(BROKER_ADDR).await.ok();
                if self.conn.is_none() {
                    madsim::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            let mut request = crate::workload::fetch_request_for(partitions, &positions, 300);
            request.session_epoch = -1;
            let Some(ResponseKind::Fetch(response)) = self.call(ApiKey::Fetch, 12, &request).await
            else {
                continue;
            };
            let mut progressed = false;
            for answer in response.responses.iter().flat_map(|t| &t.partitions) {
                let Some(slot) = partitions.iter().position(|p| *p == answer.partition_index)
                else {
                    continue;
                };
                let fetched = read_partition(answer, positions[slot], &self.history);
                if let Some(next) = fetched.next {
                    progressed |= next > positions[slot];
                    positions[slot] = next;
                }
            }
            if !progressed {
                madsim::time::sleep(Duration::from_millis(100)).await;
            }
            match self.commit(generation, partitions, &positions).await {
                Some(true) => {}
                Some(false) => return,
                None => continue,
            }
            if now().0 - last_heartbeat.0 >= 1_000 {
                last_heartbeat = now();
                let mut heartbeat = HeartbeatRequest::default();
                heartbeat.group_id = group_id();
                heartbeat.generation_id = generation;
                heartbeat.member_id = StrBytes::from_string(self.member_id.clone());
                heartbeat.group_instance_id = None;
                match self.call(ApiKey::Heartbeat, 3, &heartbeat).await {
                    Some(ResponseKind::Heartbeat(beat)) if beat.error_code == 0 => {}
                    Some(_) => return,
                    None => continue,
                }
            }
        }
    }

    /// Commits `positions`: `Some(false)` when the coordinator ended the generation, `None`
    /// when the connection failed.
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
        let Some(ResponseKind::OffsetCommit(committed)) =
            self.call(ApiKey::OffsetCommit, 7, &request).await
        else {
            let mut history = self.history.lock().expect("history");
            for (partition, offset) in partitions.iter().zip(positions) {
                history.group_events.push(GroupEvent::CommitUnanswered {
                    generation,
                    partition: *partition,
                    offset: *offset,
                });
            }
            return None;
        };
        let mut history = self.history.lock().expect("history");
        for answer in committed.topics.iter().flat_map(|t| &t.partitions) {
            if answer.error_code != 0 {
                return Some(false);
            }
            let slot = partitions.iter().position(|p| *p == answer.partition_index);
            if let Some(slot) = slot {
                history.group_events.push(GroupEvent::Committed {
                    generation,
                    partition: answer.partition_index,
                    offset: positions[slot],
                });
            }
        }
        Some(true)
    }
}

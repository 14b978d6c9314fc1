//! DescribeQuorum (API 55) on a cluster node: the metadata quorum's leader, term, commit
//! index and each voter's log end. Only the quorum's leader knows how far each voter is, so
//! another node asks it (as Kafka's brokers forward the request to the active controller)
//! and parks the request until the answer comes, or `request_timeout_ms` passes
//! (`REQUEST_TIMED_OUT`). Without a known leader: `NOT_LEADER_OR_FOLLOWER`.

use kafka_protocol::messages::describe_quorum_response::{PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::messages::PeerMessage;
use super::{ClusterNode, QUORUM_TOPIC};
use crate::broker::{ParkedId, Reply, StorageProvider};
use crate::driver::Completed;
use crate::error::ErrorCode;
use crate::quorum::QuorumState;
use crate::types::{Millis, NodeId};

/// A client's DescribeQuorum waiting for the quorum leader's answer.
pub(super) struct ParkedQuorum {
    request: DescribeQuorumRequest,
    deadline: Millis,
}

impl<P: StorageProvider> ClusterNode<P> {
    /// A client's DescribeQuorum (see the module doc).
    pub(super) fn describe_quorum(&mut self, now: Millis, request: DescribeQuorumRequest) -> Reply {
        if let Some(state) = self.quorum_state(now) {
            return answer(&request, Ok(&state));
        }
        let Some(leader) = self.metadata.leader() else {
            let refusal = (
                ErrorCode::NotLeaderOrFollower,
                "no quorum leader is known".to_string(),
            );
            return answer(&request, Err(refusal));
        };
        let number = self.next_parked_number();
        let id = ParkedId::Quorum(number);
        let deadline = Millis(now.0 + self.config.request_timeout_ms);
        self.quorum_asks
            .insert(id, ParkedQuorum { request, deadline });
        self.outbox
            .push((leader, PeerMessage::DescribeQuorum { request: number }));
        Reply::Parked(id)
    }

    /// The quorum's state as this node, its leader, knows it: raft's view of the voters, and
    /// the observers that fetched the metadata log from it within a session timeout.
    pub(super) fn quorum_state(&self, now: Millis) -> Option<QuorumState> {
        let mut state = self.metadata.describe()?;
        let recent = self.config.controller.session_timeout_ms;
        state.observers = (self.observers.iter())
            .filter(|(_, (_, at))| now.0 - at.0 <= recent)
            .map(|(node, (applied, _))| (*node, *applied))
            .collect();
        Some(state)
    }

    /// The quorum leader's answer to this node's DescribeQuorum `request` (`None`: it no
    /// longer leads).
    pub(super) fn take_quorum_state(&mut self, request: u64, state: Option<QuorumState>) {
        let id = ParkedId::Quorum(request);
        let Some(parked) = self.quorum_asks.remove(&id) else {
            return;
        };
        let outcome = state.ok_or((
            ErrorCode::NotLeaderOrFollower,
            "the node asked no longer leads the quorum".to_string(),
        ));
        let response = response(&parked.request, outcome.as_ref().map_err(Clone::clone));
        self.completed
            .push(Completed::Response(id, Box::new(response)));
    }

    /// The earliest deadline of a parked DescribeQuorum.
    pub(super) fn next_quorum_deadline(&self) -> Option<Millis> {
        self.quorum_asks.values().map(|q| q.deadline).min()
    }

    /// Answers the parked DescribeQuorums that are out of time.
    pub(super) fn expire_quorum_asks(&mut self, now: Millis) {
        let expired: Vec<ParkedId> = (self.quorum_asks.iter())
            .filter(|(_, q)| q.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let parked = self.quorum_asks.remove(&id).expect("listed above");
            let refusal = (
                ErrorCode::RequestTimedOut,
                "the quorum leader did not answer in time".to_string(),
            );
            let response = response(&parked.request, Err(refusal));
            self.completed
                .push(Completed::Response(id, Box::new(response)));
        }
    }
}

fn answer(
    request: &DescribeQuorumRequest,
    state: Result<&QuorumState, (ErrorCode, String)>,
) -> Reply {
    Reply::Response(Box::new(response(request, state)))
}

/// The response to `request`: the metadata partition described (or refused), any other
/// partition `UNKNOWN_TOPIC_OR_PARTITION`.
fn response(
    request: &DescribeQuorumRequest,
    state: Result<&QuorumState, (ErrorCode, String)>,
) -> ResponseKind {
    let mut response = DescribeQuorumResponse::default();
    for topic in &request.topics {
        let mut data = TopicData::default();
        data.topic_name = topic.topic_name.clone();
        for wanted in &topic.partitions {
            let mut partition = PartitionData::default();
            partition.partition_index = wanted.partition_index;
            let ours = topic.topic_name.0.as_str() == QUORUM_TOPIC && wanted.partition_index == 0;
            match (&state, ours) {
                (_, false) => {
                    partition.error_code = ErrorCode::UnknownTopicOrPartition.code();
                    let message = format!("only {QUORUM_TOPIC} partition 0 has a quorum");
                    partition.error_message = Some(StrBytes::from_string(message));
                }
                (Err((code, message)), true) => {
                    partition.error_code = code.code();
                    partition.error_message = Some(StrBytes::from_string(message.clone()));
                }
                (Ok(state), true) => describe(&mut partition, state),
            }
            data.partitions.push(partition);
        }
        response.topics.push(data);
    }
    ResponseKind::DescribeQuorum(response)
}

fn describe(partition: &mut PartitionData, state: &QuorumState) {
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    partition.leader_id = BrokerId(state.leader.0);
    partition.leader_epoch = i32::try_from(state.term).unwrap_or(i32::MAX);
    partition.high_watermark = clamp(state.committed);
    let replicas = |list: &[(NodeId, u64)]| {
        (list.iter())
            .map(|&(NodeId(node), end)| {
                let mut replica = ReplicaState::default();
                replica.replica_id = BrokerId(node);
                replica.log_end_offset = clamp(end);
                replica.last_fetch_timestamp = -1;
                replica.last_caught_up_timestamp = -1;
                replica
            })
            .collect()
    };
    partition.current_voters = replicas(&state.voters);
    partition.observers = replicas(&state.observers);
}

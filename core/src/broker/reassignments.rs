//! AlterPartitionReassignments (API 45) on a single broker, ListPartitionReassignments
//! (API 46) on any broker, and the response shape a cluster node shares. A single broker
//! holds every replica, so the only target it can take is itself (a no-op) and nothing is
//! ever being reassigned; a cluster node takes AlterPartitionReassignments to the controller
//! (`node/reassignments.rs`) and lists what its image shows under way.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
    UnregisterBrokerRequest, UnregisterBrokerResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{Broker, StorageProvider};
use crate::error::ErrorCode;
use crate::types::NodeId;

/// One partition's answer: (topic, partition, error code, message).
pub type ReassignmentAnswer = (String, i32, i16, Option<String>);

impl<P: StorageProvider> Broker<P> {
    /// AlterPartitionReassignments on a single broker: a target of just this broker needs
    /// nothing, any other is `INVALID_REPLICA_ASSIGNMENT`, a cancellation
    /// `NO_REASSIGNMENT_IN_PROGRESS`; unknown partitions `UNKNOWN_TOPIC_OR_PARTITION`.
    pub(crate) fn handle_alter_reassignments(
        &self,
        request: AlterPartitionReassignmentsRequest,
    ) -> AlterPartitionReassignmentsResponse {
        let own = self.config.node_id;
        let mut answers = Vec::new();
        for topic in &request.topics {
            let name = topic.name.0.to_string();
            for partition in &topic.partitions {
                let index = partition.partition_index;
                let held = (self.topics.get(&name)).and_then(|t| t.partitions.get(index));
                let (code, message) = match (held, &partition.replicas) {
                    (None, _) => (ErrorCode::UnknownTopicOrPartition, "no such partition"),
                    (Some(_), None) => (
                        ErrorCode::NoReassignmentInProgress,
                        "a single broker moves no replicas",
                    ),
                    (Some(_), Some(target)) if target.iter().map(|b| b.0).eq([own]) => {
                        (ErrorCode::None, "")
                    }
                    (Some(_), Some(_)) => (
                        ErrorCode::InvalidReplicaAssignment,
                        "a single broker holds every replica itself",
                    ),
                };
                let message = (code != ErrorCode::None).then(|| message.to_string());
                answers.push((name.clone(), index, code.code(), message));
            }
        }
        reassignment_response(answers)
    }

    /// ListPartitionReassignments: the partitions asked for (`None`: every partition) that a
    /// reassignment is moving, with their replicas and those being added and removed.
    pub(crate) fn handle_list_reassignments(
        &self,
        request: ListPartitionReassignmentsRequest,
    ) -> ListPartitionReassignmentsResponse {
        let mut response = ListPartitionReassignmentsResponse::default();
        let Some(image) = self.image() else {
            return response; // a single broker reassigns nothing
        };
        let ids = |nodes: &[NodeId]| nodes.iter().map(|n| BrokerId(n.0)).collect();
        for topic in image.topics().values() {
            let wanted: Option<&Vec<i32>> = match &request.topics {
                None => None,
                Some(topics) => match topics.iter().find(|t| t.name.0.as_str() == topic.name) {
                    Some(asked) => Some(&asked.partition_indexes),
                    None => continue,
                },
            };
            let mut ongoing = OngoingTopicReassignment::default();
            ongoing.name = TopicName(StrBytes::from_string(topic.name.clone()));
            for partition in &topic.partitions {
                let asked = wanted.is_none_or(|w| w.contains(&partition.partition));
                if !asked || !partition.reassigning() {
                    continue;
                }
                let mut entry = OngoingPartitionReassignment::default();
                entry.partition_index = partition.partition;
                entry.replicas = ids(&partition.replicas);
                entry.adding_replicas = ids(&partition.adding);
                entry.removing_replicas = ids(&partition.removing);
                ongoing.partitions.push(entry);
            }
            if !ongoing.partitions.is_empty() {
                response.topics.push(ongoing);
            }
        }
        response
    }
}

/// UnregisterBroker on a single broker: it is the whole cluster, so there is no other
/// broker to remove and it cannot remove itself (`INVALID_REQUEST`).
pub(crate) fn unregister_alone(request: UnregisterBrokerRequest) -> UnregisterBrokerResponse {
    let mut response = UnregisterBrokerResponse::default();
    response.error_code = ErrorCode::InvalidRequest.code();
    let message = format!(
        "a single broker has no other brokers to unregister (asked for {})",
        request.broker_id.0
    );
    response.error_message = Some(StrBytes::from_string(message));
    response
}

/// An AlterPartitionReassignments response from per-partition answers, grouped by topic in
/// first-seen order (no top-level error: every refusal is a partition's).
pub(crate) fn reassignment_response(
    answers: Vec<ReassignmentAnswer>,
) -> AlterPartitionReassignmentsResponse {
    let mut topics: Vec<ReassignableTopicResponse> = Vec::new();
    for (name, partition, code, message) in answers {
        let position = match topics.iter().position(|t| t.name.0.as_str() == name) {
            Some(position) => position,
            None => {
                let mut topic = ReassignableTopicResponse::default();
                topic.name = TopicName(StrBytes::from_string(name));
                topics.push(topic);
                topics.len() - 1
            }
        };
        let mut result = ReassignablePartitionResponse::default();
        result.partition_index = partition;
        result.error_code = code;
        result.error_message = message.map(StrBytes::from_string);
        topics[position].partitions.push(result);
    }
    let mut response = AlterPartitionReassignmentsResponse::default();
    response.error_message = None;
    response.responses = topics;
    response
}

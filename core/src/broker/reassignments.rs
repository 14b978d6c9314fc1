//! ListPartitionReassignments (API 46) from the image, and the AlterPartitionReassignments
//! response shape; the node takes AlterPartitionReassignments to the controller
//! (`node/reassignments.rs`).

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsResponse, BrokerId, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{Broker, StorageProvider};
use crate::types::NodeId;

/// One partition's answer: (topic, partition, error code, message).
pub type ReassignmentAnswer = (String, i32, i16, Option<String>);

impl<P: StorageProvider> Broker<P> {
    /// ListPartitionReassignments: the partitions asked for (`None`: every partition) that a
    /// reassignment is moving, with their replicas and those being added and removed.
    pub(crate) fn handle_list_reassignments(
        &self,
        request: ListPartitionReassignmentsRequest,
    ) -> ListPartitionReassignmentsResponse {
        let mut response = ListPartitionReassignmentsResponse::default();
        let image = self.image();
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

//! The ElectLeaders (API 43) response shape; the node takes the request to the controller
//! (`node/elections.rs`).

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

/// One partition's answer: (topic, partition, error code, message).
pub type ElectionAnswer = (String, i32, i16, Option<String>);

/// An ElectLeaders response from per-partition answers, grouped by topic in first-seen
/// order, with a top-level error code (v1+).
pub(crate) fn election_response(
    answers: Vec<ElectionAnswer>,
    error_code: i16,
) -> ElectLeadersResponse {
    let mut topics: Vec<ReplicaElectionResult> = Vec::new();
    for (name, partition, code, message) in answers {
        let position = match topics.iter().position(|t| t.topic.0.as_str() == name) {
            Some(position) => position,
            None => {
                let mut topic = ReplicaElectionResult::default();
                topic.topic = TopicName(StrBytes::from_string(name));
                topics.push(topic);
                topics.len() - 1
            }
        };
        let mut result = PartitionResult::default();
        result.partition_id = partition;
        result.error_code = code;
        result.error_message = message.map(StrBytes::from_string);
        topics[position].partition_result.push(result);
    }
    let mut response = ElectLeadersResponse::default();
    response.error_code = error_code;
    response.replica_election_results = topics;
    response
}

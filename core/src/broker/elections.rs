//! ElectLeaders (API 43) on a single broker, and the response shape a cluster node shares.
//! A single broker leads every partition it has, so no election is ever needed; a cluster
//! node takes the request to the controller (`node/elections.rs`).

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{Broker, StorageProvider};
use crate::error::ErrorCode;

/// One partition's answer: (topic, partition, error code, message).
pub type ElectionAnswer = (String, i32, i16, Option<String>);

impl<P: StorageProvider> Broker<P> {
    /// ElectLeaders on a single broker: `ELECTION_NOT_NEEDED` for each partition it has,
    /// `UNKNOWN_TOPIC_OR_PARTITION` for the others; nothing for every partition (null).
    pub(crate) fn handle_elect_leaders(
        &self,
        request: ElectLeadersRequest,
    ) -> ElectLeadersResponse {
        let mut answers = Vec::new();
        for topic in request.topic_partitions.iter().flatten() {
            let name = topic.topic.0.to_string();
            for &partition in &topic.partitions {
                let held = self
                    .topics
                    .get(&name)
                    .and_then(|t| t.partitions.get(partition));
                let (code, message) = match held {
                    Some(_) => (ErrorCode::ElectionNotNeeded, "this broker leads it"),
                    None => (ErrorCode::UnknownTopicOrPartition, "no such partition"),
                };
                answers.push((name.clone(), partition, code.code(), Some(message.into())));
            }
        }
        election_response(answers, 0)
    }
}

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

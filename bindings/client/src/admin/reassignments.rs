//! Partition reassignments (KIP-455): moving a partition's replicas to other brokers
//! (AlterPartitionReassignments, what `kafka-reassign-partitions --execute` sends) and
//! listing the moves under way (ListPartitionReassignments, `--verify`).

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::Admin;
use crate::error::{check, Error};

/// AlterPartitionReassignments versions this client speaks.
const ALTER_VERSIONS: (i16, i16) = (0, 0);
/// ListPartitionReassignments versions this client speaks.
const LIST_VERSIONS: (i16, i16) = (0, 0);

/// One partition's move, asked for or under way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionReassignment {
    /// The topic.
    pub topic: String,
    /// The partition's index.
    pub partition: i32,
    /// Asked for: the target replicas, the preferred leader first (`None` cancels the move).
    /// Under way: every replica now assigned (the target and those still to be removed).
    pub replicas: Option<Vec<i32>>,
    /// Under way: the replicas being added (empty in a request).
    pub adding: Vec<i32>,
    /// Under way: the replicas being removed (empty in a request).
    pub removing: Vec<i32>,
}

impl PartitionReassignment {
    /// A move of `topic`'s `partition` to `target`.
    pub fn to(topic: &str, partition: i32, target: Vec<i32>) -> PartitionReassignment {
        PartitionReassignment {
            topic: topic.to_string(),
            partition,
            replicas: Some(target),
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }
}

impl Admin {
    /// Starts (or replaces, or with `replicas: None` cancels) each move; the first
    /// partition refused is the error. The moves complete in the background once the new
    /// replicas are in sync ([`Admin::list_partition_reassignments`] shows them until then).
    pub async fn alter_partition_reassignments(
        &self,
        moves: &[PartitionReassignment],
    ) -> Result<(), Error> {
        let timeout_ms = self.timeout_ms();
        let response = self
            .network
            .call_controller(ALTER_VERSIONS, |_| alter_request(moves, timeout_ms))
            .await?;
        let message = response.error_message.as_ref().map(|m| m.as_str());
        check(
            response.error_code,
            message,
            "alter partition reassignments",
        )?;
        for topic in &response.responses {
            for partition in &topic.partitions {
                let message = partition.error_message.as_ref().map(|m| m.as_str());
                let context = format!("reassign {}-{}", topic.name.0, partition.partition_index);
                check(partition.error_code, message, &context)?;
            }
        }
        self.network.mark_stale();
        Ok(())
    }

    /// The moves under way, by topic and partition.
    pub async fn list_partition_reassignments(&self) -> Result<Vec<PartitionReassignment>, Error> {
        let response = self
            .network
            .call_controller(LIST_VERSIONS, |_| {
                ListPartitionReassignmentsRequest::default().with_timeout_ms(self.timeout_ms())
            })
            .await?;
        let message = response.error_message.as_ref().map(|m| m.as_str());
        check(response.error_code, message, "list partition reassignments")?;
        let ids = |b: &[BrokerId]| b.iter().map(|b| b.0).collect::<Vec<i32>>();
        let mut moves = Vec::new();
        for topic in &response.topics {
            for p in &topic.partitions {
                moves.push(PartitionReassignment {
                    topic: topic.name.0.to_string(),
                    partition: p.partition_index,
                    replicas: Some(ids(&p.replicas)),
                    adding: ids(&p.adding_replicas),
                    removing: ids(&p.removing_replicas),
                });
            }
        }
        moves.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(moves)
    }
}

fn alter_request(
    moves: &[PartitionReassignment],
    timeout_ms: i32,
) -> AlterPartitionReassignmentsRequest {
    let mut topics: Vec<ReassignableTopic> = Vec::new();
    for m in moves {
        let name = TopicName(StrBytes::from_string(m.topic.clone()));
        let position = match topics.iter().position(|t| t.name == name) {
            Some(position) => position,
            None => {
                topics.push(ReassignableTopic::default().with_name(name));
                topics.len() - 1
            }
        };
        let replicas = (m.replicas.as_ref()).map(|r| r.iter().map(|&n| BrokerId(n)).collect());
        let partition = ReassignablePartition::default()
            .with_partition_index(m.partition)
            .with_replicas(replicas);
        topics[position].partitions.push(partition);
    }
    AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(timeout_ms)
        .with_topics(topics)
}

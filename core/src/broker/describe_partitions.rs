//! DescribeTopicPartitions (API 75, KIP-966): each topic's partitions with their leader,
//! replicas, ISR and eligible leader replicas, paged by a cursor. The partitions come from
//! the same view as Metadata (never auto-creating a topic), with the ELR from the image.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition as PartitionOut,
    DescribeTopicPartitionsResponseTopic as TopicOut,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, MetadataRequest,
};

use super::{Broker, StorageProvider};
use crate::types::Millis;

/// The most partitions one answer carries (Kafka's
/// `max.request.partition.size.limit` default).
const PARTITIONS_PER_RESPONSE_MAX: usize = 2_000;

impl<P: StorageProvider> Broker<P> {
    /// DescribeTopicPartitions: the named topics (every topic when none is named), sorted by
    /// name, from the request's cursor on, at most `response_partition_limit` partitions
    /// (and 2,000); `next_cursor` names where the next page starts.
    pub(crate) fn handle_describe_topic_partitions(
        &mut self,
        now: Millis,
        request: DescribeTopicPartitionsRequest,
    ) -> DescribeTopicPartitionsResponse {
        let mut metadata = MetadataRequest::default();
        metadata.allow_auto_topic_creation = false;
        metadata.topics = (!request.topics.is_empty()).then(|| {
            let named = request.topics.iter().map(|t| {
                let mut topic = MetadataRequestTopic::default();
                topic.name = Some(t.name.clone());
                topic
            });
            named.collect()
        });
        let mut topics = self.handle_metadata(now, metadata, 12).topics;
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics.dedup_by(|a, b| a.name == b.name);
        let limit = usize::try_from(request.response_partition_limit)
            .unwrap_or(0)
            .clamp(1, PARTITIONS_PER_RESPONSE_MAX);
        let cursor = request
            .cursor
            .map(|c| (c.topic_name.0.to_string(), c.partition_index));
        let mut response = DescribeTopicPartitionsResponse::default();
        let mut left = limit;
        for topic in topics {
            let name = topic
                .name
                .as_ref()
                .map(|n| n.0.to_string())
                .unwrap_or_default();
            if cursor.as_ref().is_some_and(|(from, _)| name < *from) {
                continue;
            }
            let first = match &cursor {
                Some((from, partition)) if *from == name => *partition,
                _ => 0,
            };
            let mut out = TopicOut::default();
            out.error_code = topic.error_code;
            out.name = topic.name.clone();
            out.topic_id = topic.topic_id;
            out.is_internal = super::admin::is_internal(&name);
            out.topic_authorized_operations = i32::MIN; // not asked for: Kafka's "omitted"
            let mut partitions = topic.partitions;
            partitions.sort_by_key(|p| p.partition_index);
            for p in partitions
                .into_iter()
                .filter(|p| p.partition_index >= first)
            {
                if left == 0 {
                    let mut next = Cursor::default();
                    next.topic_name = topic.name.clone().unwrap_or_default();
                    next.partition_index = p.partition_index;
                    response.next_cursor = Some(next);
                    break;
                }
                left -= 1;
                let elr = Some(self.image()).and_then(|image| {
                    let stored = image
                        .topic(&name)?
                        .partitions
                        .get(p.partition_index as usize)?;
                    Some(stored.elr.iter().map(|n| BrokerId(n.0)).collect())
                });
                let mut part = PartitionOut::default();
                part.error_code = p.error_code;
                part.partition_index = p.partition_index;
                part.leader_id = p.leader_id;
                part.leader_epoch = p.leader_epoch;
                part.replica_nodes = p.replica_nodes;
                part.isr_nodes = p.isr_nodes;
                part.eligible_leader_replicas = Some(elr.unwrap_or_default());
                part.last_known_elr = Some(Vec::new());
                part.offline_replicas = p.offline_replicas;
                out.partitions.push(part);
            }
            let full = response.next_cursor.is_some();
            if !out.partitions.is_empty() || out.error_code != 0 || !full {
                response.topics.push(out);
            }
            if full {
                break;
            }
        }
        response
    }
}

//! DescribeQuorum (API 55) on a single broker: it runs no metadata quorum, so every
//! partition asked for is refused with a message saying so. A cluster node answers from its
//! quorum (`node/describe_quorum.rs`).

use kafka_protocol::messages::describe_quorum_response::{PartitionData, TopicData};
use kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Broker, StorageProvider};
use crate::error::ErrorCode;

impl<P: StorageProvider> Broker<P> {
    /// DescribeQuorum on a single broker: `INVALID_REQUEST` for each partition.
    pub(crate) fn handle_describe_quorum(
        &self,
        request: DescribeQuorumRequest,
    ) -> DescribeQuorumResponse {
        let mut response = DescribeQuorumResponse::default();
        for topic in request.topics {
            let mut data = TopicData::default();
            data.topic_name = topic.topic_name;
            for wanted in topic.partitions {
                let mut partition = PartitionData::default();
                partition.partition_index = wanted.partition_index;
                partition.error_code = ErrorCode::InvalidRequest.code();
                let message = "a single broker runs no metadata quorum (start it with --voters)";
                partition.error_message = Some(StrBytes::from_static_str(message));
                data.partitions.push(partition);
            }
            response.topics.push(data);
        }
        response
    }
}

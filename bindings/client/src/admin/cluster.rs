//! The admin client's view of the cluster: its id, its brokers and the active controller
//! (DescribeCluster, what `kafka-cluster cluster-id` and `kafka-broker-api-versions` show).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeTopicPartitionsRequest, TopicName,
    UnregisterBrokerRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::Admin;
use crate::error::{check, Error};
use crate::ErrorCode;

/// DescribeCluster versions this client speaks (v1 added the endpoint type).
const DESCRIBE_CLUSTER_VERSIONS: (i16, i16) = (0, 1);

/// One broker as DescribeCluster lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerDescription {
    /// The broker's node id.
    pub id: i32,
    /// The host clients connect to.
    pub host: String,
    /// The port clients connect to.
    pub port: i32,
}

/// The cluster as one broker describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster id.
    pub cluster_id: String,
    /// The active controller's node id, if there is one now.
    pub controller: Option<i32>,
    /// The brokers serving clients, by id.
    pub brokers: Vec<BrokerDescription>,
}

impl Admin {
    /// The cluster's id, brokers and controller, as any broker answers them.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, Error> {
        let response = self
            .network
            .call_any(DESCRIBE_CLUSTER_VERSIONS, |_| {
                DescribeClusterRequest::default()
            })
            .await?;
        let message = response.error_message.as_ref().map(|m| m.as_str());
        check(response.error_code, message, "describe cluster")?;
        let mut brokers: Vec<BrokerDescription> = response
            .brokers
            .iter()
            .map(|b| BrokerDescription {
                id: b.broker_id.0,
                host: b.host.to_string(),
                port: b.port,
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        Ok(ClusterDescription {
            cluster_id: response.cluster_id.to_string(),
            controller: (response.controller_id.0 >= 0).then_some(response.controller_id.0),
            brokers,
        })
    }
}

/// UnregisterBroker versions this client speaks.
const UNREGISTER_BROKER_VERSIONS: (i16, i16) = (0, 0);

impl Admin {
    /// Removes broker `id` from the cluster (what `kafka-cluster unregister --id` sends): a
    /// stopped broker that holds no replica.
    pub async fn unregister_broker(&self, id: i32) -> Result<(), Error> {
        let response = self
            .network
            .call_controller(UNREGISTER_BROKER_VERSIONS, |_| {
                UnregisterBrokerRequest::default().with_broker_id(BrokerId(id))
            })
            .await?;
        let message = response.error_message.as_ref().map(|m| m.as_str());
        check(
            response.error_code,
            message,
            &format!("unregister broker {id}"),
        )?;
        self.network.mark_stale();
        Ok(())
    }
}

/// DescribeTopicPartitions versions this client speaks.
const DESCRIBE_TOPIC_PARTITIONS_VERSIONS: (i16, i16) = (0, 0);
/// Partitions per DescribeTopicPartitions answer (the rest follow by cursor).
const PARTITIONS_PER_PAGE: i32 = 2_000;

/// One partition as DescribeTopicPartitions (KIP-966) describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The leader's node id, or -1.
    pub leader: i32,
    /// The replicas, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// The eligible leader replicas: replicas that left the ISR while it was below
    /// `min.insync.replicas` and may still lead.
    pub eligible: Vec<i32>,
}

impl Admin {
    /// The partitions of `topics` (internal ones too; unknown topics are left out), by
    /// (topic, partition), from DescribeTopicPartitions page by page.
    pub async fn describe_topic_partitions(
        &self,
        topics: &[String],
    ) -> Result<BTreeMap<(String, i32), PartitionDescription>, Error> {
        let mut described = BTreeMap::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let request = |_| {
                let wanted = (topics.iter())
                    .map(|t| {
                        let name = TopicName(StrBytes::from_string(t.clone()));
                        TopicRequest::default().with_name(name)
                    })
                    .collect();
                DescribeTopicPartitionsRequest::default()
                    .with_topics(wanted)
                    .with_response_partition_limit(PARTITIONS_PER_PAGE)
                    .with_cursor(cursor.clone())
            };
            let response = (self.network)
                .call_any(DESCRIBE_TOPIC_PARTITIONS_VERSIONS, request)
                .await?;
            for topic in &response.topics {
                let name = topic
                    .name
                    .as_ref()
                    .map_or_else(String::new, |n| n.0.to_string());
                if topic.error_code == ErrorCode::UnknownTopicOrPartition.code() {
                    continue;
                }
                check(
                    topic.error_code,
                    None,
                    &format!("describe partitions of {name}"),
                )?;
                let ids = |b: &[BrokerId]| b.iter().map(|b| b.0).collect::<Vec<i32>>();
                for p in &topic.partitions {
                    let partition = PartitionDescription {
                        leader: p.leader_id.0,
                        replicas: ids(&p.replica_nodes),
                        isr: ids(&p.isr_nodes),
                        eligible: ids(p.eligible_leader_replicas.as_deref().unwrap_or(&[])),
                    };
                    described.insert((name.clone(), p.partition_index), partition);
                }
            }
            match response.next_cursor {
                Some(next) => {
                    let resume = Cursor::default()
                        .with_topic_name(next.topic_name)
                        .with_partition_index(next.partition_index);
                    if cursor.as_ref() == Some(&resume) {
                        let message = "DescribeTopicPartitions answered the same cursor twice";
                        return Err(Error::Protocol(message.into()));
                    }
                    cursor = Some(resume);
                }
                None => return Ok(described),
            }
        }
    }
}

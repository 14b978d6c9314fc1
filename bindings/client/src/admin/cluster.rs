//! The admin client's view of the cluster: its id, its brokers and the active controller
//! (DescribeCluster, what `kafka-cluster cluster-id` and `kafka-broker-api-versions` show).

use kafka_protocol::messages::DescribeClusterRequest;

use super::Admin;
use crate::error::{check, Error};

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

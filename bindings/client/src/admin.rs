//! The admin client: topics (create, delete, list, describe, add partitions), topic
//! configs (describe, incremental alter), partition offsets, and consumer groups (list,
//! describe, delete, committed offsets; in `admin/groups.rs`), transactions (list, describe;
//! `admin/transactions.rs`), and the cluster's brokers and controller (`admin/cluster.rs`).
//! Topic requests go to the controller when the metadata names one, otherwise to any
//! broker; group and transaction requests go to the coordinator of the group or
//! transactional id (`admin/coordinator.rs`), listings to every broker.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::error::{check, Error};
use crate::network::{Network, NetworkConfig, TopicInfo};
use crate::parse_number;

mod cluster;
mod coordinator;
mod groups;
mod reassignments;
mod transactions;

pub use cluster::{BrokerDescription, ClusterDescription, PartitionDescription};
pub use groups::{GroupDescription, GroupListing, GroupState, MemberDescription, OffsetSpec};
pub use reassignments::PartitionReassignment;
pub use transactions::{
    ListTransactionsFilter, TransactionDescription, TransactionListing, TransactionState,
};

/// The config resource type of a topic (DescribeConfigs, IncrementalAlterConfigs).
const RESOURCE_TOPIC: i8 = 2;
/// The resource type of a broker in config requests.
const RESOURCE_BROKER: i8 = 4;
/// DescribeConfigs config source of a value set on the topic itself (v1+).
const CONFIG_SOURCE_TOPIC: i8 = 1;
/// The config source v0 answers decode with (v0 has none).
const CONFIG_SOURCE_UNKNOWN: i8 = -1;
/// Versions this client speaks of each admin API.
const CREATE_TOPICS_VERSIONS: (i16, i16) = (0, 7);
const DELETE_TOPICS_VERSIONS: (i16, i16) = (0, 6);
const DESCRIBE_CONFIGS_VERSIONS: (i16, i16) = (0, 4);
const ALTER_CONFIGS_VERSIONS: (i16, i16) = (0, 1);
const CREATE_PARTITIONS_VERSIONS: (i16, i16) = (0, 3);

/// Admin client settings.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Comma-separated HOST:PORT list of brokers to bootstrap from.
    pub bootstrap: String,
    /// The client id in every request header.
    pub client_id: String,
    /// How long one request may take, and how long the broker may take to finish a topic
    /// operation (`request.timeout.ms`).
    pub request_timeout_ms: u64,
}

impl AdminConfig {
    /// Defaults for an admin client bootstrapping from `bootstrap`.
    pub fn new(bootstrap: &str) -> AdminConfig {
        AdminConfig {
            bootstrap: bootstrap.to_string(),
            client_id: "brook-admin".to_string(),
            request_timeout_ms: 30_000,
        }
    }

    /// Sets one property by its Java/librdkafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), Error> {
        match key {
            "bootstrap.servers" | "metadata.broker.list" => self.bootstrap = value.to_string(),
            "client.id" => self.client_id = value.to_string(),
            "request.timeout.ms" => self.request_timeout_ms = parse_number(key, value)?,
            _ => return Err(Error::Config(format!("unknown admin property {key}"))),
        }
        Ok(())
    }
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopic {
    /// The topic's name.
    pub name: String,
    /// Number of partitions; -1 for the broker's default.
    pub partitions: i32,
    /// Replicas per partition; -1 for the broker's default.
    pub replication_factor: i16,
    /// Topic config overrides (`retention.ms`, `cleanup.policy`, …).
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with `partitions` partitions of `replication_factor` replicas each.
    pub fn new(name: &str, partitions: i32, replication_factor: i16) -> NewTopic {
        NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor,
            configs: Vec::new(),
        }
    }

    /// Adds a config override.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.configs.push((key.to_string(), value.to_string()));
        self
    }
}

/// One change in an incremental config alteration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOp {
    /// Set the value.
    Set(String),
    /// Remove the override, going back to the default.
    Delete,
    /// Append to a list value.
    Append(String),
    /// Remove from a list value.
    Subtract(String),
}

/// One config entry of a resource, as DescribeConfigs reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The config's name.
    pub name: String,
    /// Its value; `None` if sensitive or unset.
    pub value: Option<String>,
    /// Whether it cannot be altered.
    pub read_only: bool,
    /// Whether the value is the default (not overridden).
    pub is_default: bool,
    /// Whether the value is hidden because it is secret.
    pub is_sensitive: bool,
    /// Whether the value is set on the resource itself (config source TOPIC_CONFIG; before
    /// DescribeConfigs v1, which has no source, whether it is not the default).
    pub is_override: bool,
}

/// An admin client.
#[derive(Debug)]
pub struct Admin {
    config: AdminConfig,
    network: Arc<Network>,
}

impl Admin {
    /// An admin client; brokers are contacted at the first call.
    pub fn new(config: AdminConfig) -> Result<Admin, Error> {
        let network = Network::new(NetworkConfig::new(
            &config.bootstrap,
            &config.client_id,
            config.request_timeout_ms,
        )?);
        Ok(Admin {
            config,
            network: Arc::new(network),
        })
    }

    fn timeout_ms(&self) -> i32 {
        i32::try_from(self.config.request_timeout_ms).unwrap_or(i32::MAX)
    }

    /// Creates `topics`; fails with the first topic's error if any was refused (the others
    /// may have been created).
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<(), Error> {
        self.refresh_controller().await?;
        let timeout_ms = self.timeout_ms();
        let response = self
            .network
            .call_controller(CREATE_TOPICS_VERSIONS, |_| {
                create_topics_request(topics, timeout_ms)
            })
            .await?;
        self.network.mark_stale();
        for result in &response.topics {
            let message = result.error_message.as_ref().map(|m| m.as_str());
            check(
                result.error_code,
                message,
                &format!("create topic {}", result.name.0.as_str()),
            )?;
        }
        Ok(())
    }

    /// Deletes `topics`; fails with the first topic's error if any was refused.
    pub async fn delete_topics(&self, topics: &[&str]) -> Result<(), Error> {
        self.refresh_controller().await?;
        let timeout_ms = self.timeout_ms();
        let response = self
            .network
            .call_controller(DELETE_TOPICS_VERSIONS, |version| {
                delete_topics_request(version, topics, timeout_ms)
            })
            .await?;
        self.network.mark_stale();
        for result in &response.responses {
            let name = result.name.as_ref().map_or("?", |n| n.0.as_str());
            let message = result.error_message.as_ref().map(|m| m.as_str());
            check(result.error_code, message, &format!("delete topic {name}"))?;
        }
        Ok(())
    }

    /// The names of all topics, internal ones included, sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>, Error> {
        let response = self.network.refresh(None, false).await?;
        let mut names: Vec<String> = response
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// A topic's partitions with their leaders, replicas and in-sync replicas.
    pub async fn describe_topic(&self, topic: &str) -> Result<TopicInfo, Error> {
        self.topic_metadata(topic, false).await
    }

    /// Like [`Admin::describe_topic`], but with `allow_auto_create` the broker creates an
    /// unknown topic if its `auto.create.topics.enable` allows, as it does for producers
    /// (the console producer needs the partition count of the topic it creates).
    pub async fn topic_metadata(
        &self,
        topic: &str,
        allow_auto_create: bool,
    ) -> Result<TopicInfo, Error> {
        self.network.mark_stale();
        self.network.topic(topic, allow_auto_create).await
    }

    /// Every config of `topic`, with whether each is a default.
    pub async fn describe_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>, Error> {
        let response = self
            .network
            .call_any(DESCRIBE_CONFIGS_VERSIONS, |_| {
                describe_configs_request(topic)
            })
            .await?;
        let result = response
            .results
            .first()
            .ok_or_else(|| Error::Protocol("DescribeConfigs answered nothing".into()))?;
        let message = result.error_message.as_ref().map(|m| m.as_str());
        check(
            result.error_code,
            message,
            &format!("describe configs of {topic}"),
        )?;
        let entries = result
            .configs
            .iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.as_ref().map(|v| v.to_string()),
                read_only: c.read_only,
                // v0 has is_default; later versions say it with config_source 5 (DEFAULT).
                is_default: c.is_default || c.config_source == 5,
                is_sensitive: c.is_sensitive,
                is_override: match c.config_source {
                    CONFIG_SOURCE_TOPIC => true,
                    CONFIG_SOURCE_UNKNOWN => !c.is_default,
                    _ => false,
                },
            })
            .collect();
        Ok(entries)
    }

    /// Changes some configs of `topic`, leaving the others as they are
    /// (IncrementalAlterConfigs, KIP-339).
    pub async fn alter_configs(
        &self,
        topic: &str,
        changes: &[(&str, ConfigOp)],
    ) -> Result<(), Error> {
        let context = format!("alter configs of {topic}");
        self.alter_resource_configs(RESOURCE_TOPIC, topic, changes, &context)
            .await
    }

    /// Changes dynamic broker configs (`kafka-configs --entity-type brokers`): of broker
    /// `broker`, or with `None` of every broker (`--entity-default`).
    pub async fn alter_broker_configs(
        &self,
        broker: Option<i32>,
        changes: &[(&str, ConfigOp)],
    ) -> Result<(), Error> {
        let name = broker.map_or_else(String::new, |b| b.to_string());
        let context = format!("alter configs of broker {name:?}");
        self.alter_resource_configs(RESOURCE_BROKER, &name, changes, &context)
            .await
    }

    /// IncrementalAlterConfigs of one resource, at the controller.
    async fn alter_resource_configs(
        &self,
        kind: i8,
        name: &str,
        changes: &[(&str, ConfigOp)],
        context: &str,
    ) -> Result<(), Error> {
        self.refresh_controller().await?;
        let response = self
            .network
            .call_controller(ALTER_CONFIGS_VERSIONS, |_| {
                resource_configs_request(kind, name, changes)
            })
            .await?;
        for result in &response.responses {
            let message = result.error_message.as_ref().map(|m| m.as_str());
            check(result.error_code, message, context)?;
        }
        Ok(())
    }

    /// Grows `topic` to `total_partitions` partitions.
    pub async fn create_partitions(&self, topic: &str, total_partitions: i32) -> Result<(), Error> {
        self.refresh_controller().await?;
        let timeout_ms = self.timeout_ms();
        let response = self
            .network
            .call_controller(CREATE_PARTITIONS_VERSIONS, |_| {
                create_partitions_request(topic, total_partitions, timeout_ms)
            })
            .await?;
        self.network.mark_stale();
        for result in &response.results {
            let message = result.error_message.as_ref().map(|m| m.as_str());
            check(
                result.error_code,
                message,
                &format!("create partitions of {topic}"),
            )?;
        }
        Ok(())
    }

    /// Learns the controller (and brokers) if no metadata was fetched yet.
    async fn refresh_controller(&self) -> Result<(), Error> {
        let request = self.network.refresh(Some(&[]), false);
        tokio::time::timeout(
            Duration::from_millis(self.config.request_timeout_ms),
            request,
        )
        .await
        .map_err(|_| Error::Timeout("metadata for the controller".into()))?
        .map(|_| ())
    }
}

fn create_topics_request(topics: &[NewTopic], timeout_ms: i32) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_topics(topics.iter().map(creatable_topic).collect())
        .with_timeout_ms(timeout_ms)
}

fn describe_configs_request(topic: &str) -> DescribeConfigsRequest {
    let resource = DescribeConfigsResource::default()
        .with_resource_type(RESOURCE_TOPIC)
        .with_resource_name(StrBytes::from_string(topic.to_string()))
        .with_configuration_keys(None);
    DescribeConfigsRequest::default().with_resources(vec![resource])
}

/// IncrementalAlterConfigs of one resource (type and name).
fn resource_configs_request(
    kind: i8,
    name: &str,
    changes: &[(&str, ConfigOp)],
) -> IncrementalAlterConfigsRequest {
    let configs = changes
        .iter()
        .map(|(name, op)| alterable_config(name, op))
        .collect();
    let resource = AlterConfigsResource::default()
        .with_resource_type(kind)
        .with_resource_name(StrBytes::from_string(name.to_string()))
        .with_configs(configs);
    IncrementalAlterConfigsRequest::default().with_resources(vec![resource])
}

fn create_partitions_request(topic: &str, count: i32, timeout_ms: i32) -> CreatePartitionsRequest {
    let topic = CreatePartitionsTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_count(count)
        .with_assignments(None);
    CreatePartitionsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(timeout_ms)
}

fn creatable_topic(topic: &NewTopic) -> CreatableTopic {
    let configs = topic
        .configs
        .iter()
        .map(|(name, value)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(name.clone()))
                .with_value(Some(StrBytes::from_string(value.clone())))
        })
        .collect();
    CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.name.clone())))
        .with_num_partitions(topic.partitions)
        .with_replication_factor(topic.replication_factor)
        .with_configs(configs)
}

/// DeleteTopics names topics in `topic_names` up to v5 and in `topics` from v6;
/// kafka-protocol refuses to encode the other field, so exactly one is filled.
fn delete_topics_request(version: i16, topics: &[&str], timeout_ms: i32) -> DeleteTopicsRequest {
    let name = |t: &&str| TopicName(StrBytes::from_string(t.to_string()));
    let request = DeleteTopicsRequest::default().with_timeout_ms(timeout_ms);
    if version >= 6 {
        request.with_topics(
            topics
                .iter()
                .map(|t| DeleteTopicState::default().with_name(Some(name(t))))
                .collect(),
        )
    } else {
        request.with_topic_names(topics.iter().map(name).collect())
    }
}

fn alterable_config(name: &str, op: &ConfigOp) -> AlterableConfig {
    let (operation, value) = match op {
        ConfigOp::Set(v) => (0, Some(v)),
        ConfigOp::Delete => (1, None),
        ConfigOp::Append(v) => (2, Some(v)),
        ConfigOp::Subtract(v) => (3, Some(v)),
    };
    AlterableConfig::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_config_operation(operation)
        .with_value(value.map(|v| StrBytes::from_string(v.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    /// Encodes `request` in every version from `min` to `max`, panicking on the first refusal.
    pub(super) fn encodes<R: Encodable>(request: &R, (min, max): (i16, i16), what: &str) {
        for version in min..=max {
            let mut buf = bytes::BytesMut::new();
            request
                .encode(&mut buf, version)
                .unwrap_or_else(|e| panic!("{what} v{version}: {e}"));
        }
    }

    /// kafka-protocol refuses to encode a field the version lacks; every admin request
    /// must encode in every version this client may pick.
    #[test]
    fn admin_requests_encode_in_every_version() {
        for version in DELETE_TOPICS_VERSIONS.0..=DELETE_TOPICS_VERSIONS.1 {
            let request = delete_topics_request(version, &["a", "b"], 1000);
            encodes(&request, (version, version), "DeleteTopics");
        }
        let topics = [NewTopic::new("t", 3, 1).config("retention.ms", "1")];
        encodes(
            &create_topics_request(&topics, 1000),
            CREATE_TOPICS_VERSIONS,
            "CreateTopics",
        );
        encodes(
            &describe_configs_request("t"),
            DESCRIBE_CONFIGS_VERSIONS,
            "DescribeConfigs",
        );
        let changes = [("a", ConfigOp::Set("1".into())), ("b", ConfigOp::Delete)];
        encodes(
            &resource_configs_request(RESOURCE_TOPIC, "t", &changes),
            ALTER_CONFIGS_VERSIONS,
            "IncrementalAlterConfigs",
        );
        encodes(
            &create_partitions_request("t", 4, 1000),
            CREATE_PARTITIONS_VERSIONS,
            "CreatePartitions",
        );
    }

    #[test]
    fn config_ops_map_to_kafka_operation_ids() {
        assert_eq!(
            alterable_config("a", &ConfigOp::Set("1".into())).config_operation,
            0
        );
        let delete = alterable_config("a", &ConfigOp::Delete);
        assert_eq!((delete.config_operation, delete.value), (1, None));
        assert_eq!(
            alterable_config("a", &ConfigOp::Append("x".into())).config_operation,
            2
        );
        assert_eq!(
            alterable_config("a", &ConfigOp::Subtract("x".into())).config_operation,
            3
        );
    }
}

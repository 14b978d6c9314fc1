//! DescribeConfigs and the config catalog behind it: every topic config with its type, its
//! broker-level synonym and its effective value, and the broker configs clients ask about.
//!
//! **Source rules** (Kafka's `ConfigSource`): a topic override is `TOPIC_CONFIG`; a value the
//! broker was started with is `STATIC_BROKER_CONFIG` when it differs from Brook's built-in
//! default ([`BrokerConfig::default`]) and `DEFAULT_CONFIG` when it does not. Broker configs
//! are read-only here: Brook takes them at startup and AlterConfigs refuses them.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{AdminError, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::broker::topic_admin::validate_topic_name;
use crate::broker::{Broker, BrokerConfig, StorageProvider, TOPIC_CONFIGS};
use crate::record::TimestampType;

/// `ConfigSource.TOPIC_CONFIG`: a per-topic override.
pub(crate) const SOURCE_TOPIC_CONFIG: i8 = 1;
/// `ConfigSource.DYNAMIC_BROKER_CONFIG`: set for this broker while the cluster runs.
pub(crate) const SOURCE_DYNAMIC_BROKER_CONFIG: i8 = 2;
/// `ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG`: set for every broker while the cluster runs.
pub(crate) const SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
/// `ConfigSource.STATIC_BROKER_CONFIG`: set in the broker's startup configuration.
pub(crate) const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
/// `ConfigSource.DEFAULT_CONFIG`: the built-in default.
pub(crate) const SOURCE_DEFAULT_CONFIG: i8 = 5;

/// Broker configs that belong to one node and so have no meaningful built-in default.
const NODE_CONFIGS: &[&str] = &["advertised.listeners", "broker.id", "node.id"];

/// Kafka's `ConfigDef.Type`, as DescribeConfigs v3+ reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i8)]
pub(crate) enum ConfigType {
    /// `BOOLEAN`.
    Boolean = 1,
    /// `STRING`.
    String = 2,
    /// `INT`.
    Int = 3,
    /// `LONG`.
    Long = 5,
    /// `LIST` (comma-separated; IncrementalAlterConfigs may APPEND and SUBTRACT).
    List = 7,
}

/// What Brook knows of one topic config besides its value.
struct TopicConfigSpec {
    name: &'static str,
    /// The broker config that supplies the default (Kafka's synonym).
    broker_name: &'static str,
    kind: ConfigType,
    doc: &'static str,
}

/// One spec per entry of [`TOPIC_CONFIGS`] (a test checks they agree).
const TOPIC_CONFIG_SPECS: &[TopicConfigSpec] = &[
    spec(
        "cleanup.policy",
        "log.cleanup.policy",
        ConfigType::List,
        "delete and/or compact: what happens to old segments (Brook only deletes).",
    ),
    spec(
        "flush.messages",
        "log.flush.interval.messages",
        ConfigType::Long,
        "Sync the log after this many records.",
    ),
    spec(
        "flush.ms",
        "log.flush.interval.ms",
        ConfigType::Long,
        "Sync the log when the oldest unsynced record is this old.",
    ),
    spec(
        "index.interval.bytes",
        "log.index.interval.bytes",
        ConfigType::Int,
        "Bytes of batches between two offset-index entries.",
    ),
    spec(
        "max.message.bytes",
        "message.max.bytes",
        ConfigType::Int,
        "The largest record batch the topic accepts.",
    ),
    spec(
        "message.timestamp.type",
        "log.message.timestamp.type",
        ConfigType::String,
        "CreateTime keeps the producer's timestamp; LogAppendTime stamps the broker's.",
    ),
    spec(
        "min.insync.replicas",
        "min.insync.replicas",
        ConfigType::Int,
        "Replicas that must acknowledge an acks=all write.",
    ),
    spec(
        "retention.bytes",
        "log.retention.bytes",
        ConfigType::Long,
        "Delete old segments while the partition is larger (-1: no limit).",
    ),
    spec(
        "retention.ms",
        "log.retention.ms",
        ConfigType::Long,
        "Delete segments whose newest record is older (-1: keep forever).",
    ),
    spec(
        "segment.bytes",
        "log.segment.bytes",
        ConfigType::Int,
        "Roll to a new segment at this size.",
    ),
    spec(
        "segment.index.bytes",
        "log.index.size.max.bytes",
        ConfigType::Int,
        "The most bytes an offset or time index may hold.",
    ),
    spec(
        "segment.ms",
        "log.roll.ms",
        ConfigType::Long,
        "Roll to a new segment once the active one is this old.",
    ),
];

const fn spec(
    name: &'static str,
    broker_name: &'static str,
    kind: ConfigType,
    doc: &'static str,
) -> TopicConfigSpec {
    TopicConfigSpec {
        name,
        broker_name,
        kind,
        doc,
    }
}

fn topic_spec(name: &str) -> Option<&'static TopicConfigSpec> {
    TOPIC_CONFIG_SPECS.iter().find(|s| s.name == name)
}

/// Whether a topic config holds a comma-separated list (IncrementalAlterConfigs APPEND and
/// SUBTRACT apply only to these).
pub(crate) fn is_list_config(name: &str) -> bool {
    topic_spec(name).is_some_and(|s| s.kind == ConfigType::List)
}

/// The value a topic config has when the topic does not override it, as Kafka spells it.
pub(crate) fn topic_default(config: &BrokerConfig, name: &str) -> Option<String> {
    let log = &config.log;
    let unlimited = |n: Option<i64>| n.unwrap_or(-1).to_string();
    let never = |n: Option<i64>| n.unwrap_or(i64::MAX).to_string();
    let text = match name {
        "cleanup.policy" => "delete".to_string(),
        "flush.messages" => never(log.flush_messages.and_then(|n| i64::try_from(n).ok())),
        "flush.ms" => never(log.flush_ms),
        "index.interval.bytes" => log.index_interval_bytes.to_string(),
        "max.message.bytes" => log.max_message_bytes.to_string(),
        "message.timestamp.type" => match log.timestamp_type {
            TimestampType::CreateTime => "CreateTime".to_string(),
            TimestampType::LogAppendTime => "LogAppendTime".to_string(),
        },
        "min.insync.replicas" => log.min_insync_replicas.to_string(),
        "retention.bytes" => unlimited(log.retention_bytes.and_then(|n| i64::try_from(n).ok())),
        "retention.ms" => unlimited(log.retention_ms),
        "segment.bytes" => log.segment_bytes.to_string(),
        "segment.index.bytes" => log.segment_index_bytes.to_string(),
        "segment.ms" => log.segment_ms.to_string(),
        _ => return None,
    };
    Some(text)
}

/// A broker config's value with its type and documentation.
struct BrokerValue {
    value: String,
    kind: ConfigType,
    doc: &'static str,
}

/// The broker configs Brook reports, by name: the broker-level synonyms of every topic
/// config plus the broker's own settings.
fn broker_values(config: &BrokerConfig) -> BTreeMap<&'static str, BrokerValue> {
    let mut values = BTreeMap::new();
    for spec in TOPIC_CONFIG_SPECS {
        let value = topic_default(config, spec.name).unwrap_or_default();
        let (kind, doc) = (spec.kind, spec.doc);
        values.insert(spec.broker_name, BrokerValue { value, kind, doc });
    }
    let listener = format!(
        "PLAINTEXT://{}:{}",
        config.advertised_host, config.advertised_port
    );
    let own: [(&'static str, String, ConfigType, &'static str); 8] = [
        (
            "advertised.listeners",
            listener,
            ConfigType::String,
            "The address clients are told to connect to.",
        ),
        (
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            ConfigType::Boolean,
            "Whether Metadata for an unknown topic creates it.",
        ),
        (
            "broker.id",
            config.node_id.to_string(),
            ConfigType::Int,
            "This broker's id.",
        ),
        (
            "default.replication.factor",
            config.default_replication_factor.to_string(),
            ConfigType::Int,
            "Replication factor of auto-created topics.",
        ),
        (
            "delete.topic.enable",
            "true".to_string(),
            ConfigType::Boolean,
            "Whether DeleteTopics is allowed.",
        ),
        (
            "fetch.max.bytes",
            config.fetch_response_bytes_max.to_string(),
            ConfigType::Int,
            "The most bytes one fetch response carries.",
        ),
        (
            "node.id",
            config.node_id.to_string(),
            ConfigType::Int,
            "This node's id.",
        ),
        (
            "num.partitions",
            config.num_partitions.to_string(),
            ConfigType::Int,
            "Partitions of auto-created topics.",
        ),
    ];
    for (name, value, kind, doc) in own {
        values.insert(name, BrokerValue { value, kind, doc });
    }
    let throttles = [
        (
            super::dynamic::LEADER_THROTTLE,
            "Bytes per second a leader sends the replicas a reassignment adds (dynamic).",
        ),
        (
            super::dynamic::FOLLOWER_THROTTLE,
            "Bytes per second a reassignment's new replica fetches (dynamic).",
        ),
    ];
    for (name, doc) in throttles {
        let value = i64::MAX.to_string();
        let kind = ConfigType::Long;
        values.insert(name, BrokerValue { value, kind, doc });
    }
    values
}

/// One config as DescribeConfigs reports it, before version-specific encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfigEntry {
    /// The config name.
    pub(crate) name: String,
    /// The effective value.
    pub(crate) value: String,
    /// Where the effective value comes from (`SOURCE_*`).
    pub(crate) source: i8,
    /// The v0 `is_default` flag.
    pub(crate) is_default: bool,
    /// Whether AlterConfigs refuses to change it.
    pub(crate) read_only: bool,
    kind: ConfigType,
    doc: &'static str,
    /// (name, value, source), the effective one first, as Kafka orders synonyms.
    pub(crate) synonyms: Vec<(String, String, i8)>,
}

impl ConfigEntry {
    fn encode(&self, version: i16, flags: DescribeFlags) -> DescribeConfigsResourceResult {
        let mut out = DescribeConfigsResourceResult::default();
        out.name = StrBytes::from_string(self.name.clone());
        out.value = Some(StrBytes::from_string(self.value.clone()));
        out.read_only = self.read_only;
        out.is_sensitive = false;
        // Fields a version lacks must keep their defaults to encode.
        if version == 0 {
            out.is_default = self.is_default;
        }
        if version >= 1 {
            out.config_source = self.source;
            if flags.synonyms {
                out.synonyms = self.synonyms.iter().map(encode_synonym).collect();
            }
        }
        if version >= 3 {
            out.config_type = self.kind as i8;
            out.documentation = flags
                .documentation
                .then(|| StrBytes::from_static_str(self.doc));
        }
        out
    }
}

fn encode_synonym((name, value, source): &(String, String, i8)) -> DescribeConfigsSynonym {
    let mut synonym = DescribeConfigsSynonym::default();
    synonym.name = StrBytes::from_string(name.clone());
    synonym.value = Some(StrBytes::from_string(value.clone()));
    synonym.source = *source;
    synonym
}

/// What a DescribeConfigs request asks to include besides values.
#[derive(Clone, Copy, Debug, Default)]
struct DescribeFlags {
    synonyms: bool,
    documentation: bool,
}

/// The broker-level synonyms of a broker config: its static value when that differs from
/// the built-in default, then the default (node configs have none).
fn broker_synonyms(
    name: &str,
    current: &BTreeMap<&'static str, BrokerValue>,
    defaults: &BTreeMap<&'static str, BrokerValue>,
) -> Vec<(String, String, i8)> {
    let mut synonyms = Vec::new();
    let Some(value) = current.get(name) else {
        return synonyms;
    };
    let default = defaults.get(name).filter(|_| !NODE_CONFIGS.contains(&name));
    if default.map(|d| &d.value) != Some(&value.value) {
        synonyms.push((
            name.to_string(),
            value.value.clone(),
            SOURCE_STATIC_BROKER_CONFIG,
        ));
    }
    if let Some(default) = default {
        synonyms.push((
            name.to_string(),
            default.value.clone(),
            SOURCE_DEFAULT_CONFIG,
        ));
    }
    synonyms
}

/// Every topic config of a topic with these overrides, in [`TOPIC_CONFIGS`] order.
pub(crate) fn topic_entries(
    config: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    let current = broker_values(config);
    let defaults = broker_values(&BrokerConfig::default());
    TOPIC_CONFIGS
        .iter()
        .map(|&name| {
            let spec = topic_spec(name);
            let mut synonyms = Vec::new();
            if let Some(value) = overrides.get(name) {
                synonyms.push((name.to_string(), value.clone(), SOURCE_TOPIC_CONFIG));
            }
            if let Some(spec) = spec {
                synonyms.extend(broker_synonyms(spec.broker_name, &current, &defaults));
            }
            let (value, source) = match synonyms.first() {
                Some((_, value, source)) => (value.clone(), *source),
                None => (
                    topic_default(config, name).unwrap_or_default(),
                    SOURCE_DEFAULT_CONFIG,
                ),
            };
            ConfigEntry {
                name: name.to_string(),
                value,
                source,
                is_default: source != SOURCE_TOPIC_CONFIG,
                read_only: false,
                kind: spec.map_or(ConfigType::String, |s| s.kind),
                doc: spec.map_or("", |s| s.doc),
                synonyms,
            }
        })
        .collect()
}

/// Every broker config Brook reports, sorted by name; read-only but for the dynamic ones,
/// whose values set while the cluster runs (`dynamic`: value and source by name) come first.
pub(crate) fn broker_entries(
    config: &BrokerConfig,
    dynamic: &BTreeMap<&str, (String, i8)>,
) -> Vec<ConfigEntry> {
    let current = broker_values(config);
    let defaults = broker_values(&BrokerConfig::default());
    current
        .iter()
        .map(|(&name, value)| {
            let mut synonyms = broker_synonyms(name, &current, &defaults);
            if let Some((set, source)) = dynamic.get(name) {
                synonyms.insert(0, (name.to_string(), set.clone(), *source));
            }
            let (value, source) = synonyms
                .first()
                .map_or((value.value.clone(), SOURCE_STATIC_BROKER_CONFIG), |s| {
                    (s.1.clone(), s.2)
                });
            ConfigEntry {
                name: name.to_string(),
                value,
                source,
                is_default: source == SOURCE_DEFAULT_CONFIG,
                read_only: !super::dynamic::DYNAMIC_BROKER_CONFIGS.contains(&name),
                kind: current[name].kind,
                doc: current[name].doc,
                synonyms,
            }
        })
        .collect()
}

impl<P: StorageProvider> Broker<P> {
    /// Answers DescribeConfigs for topic and broker resources.
    pub(crate) fn handle_describe_configs(
        &self,
        request: DescribeConfigsRequest,
        version: i16,
    ) -> DescribeConfigsResponse {
        let flags = DescribeFlags {
            synonyms: version >= 1 && request.include_synonyms,
            documentation: version >= 3 && request.include_documentation,
        };
        let mut response = DescribeConfigsResponse::default();
        for resource in request.resources {
            let mut result = DescribeConfigsResult::default();
            result.resource_type = resource.resource_type;
            result.resource_name = resource.resource_name.clone();
            result.error_message = None;
            let name = resource.resource_name.as_str();
            match self.describe_resource(resource.resource_type, name) {
                Ok(entries) => {
                    let wanted = |entry: &&ConfigEntry| match &resource.configuration_keys {
                        None => true,
                        Some(keys) => keys.iter().any(|k| k.as_str() == entry.name),
                    };
                    result.configs = entries
                        .iter()
                        .filter(wanted)
                        .map(|entry| entry.encode(version, flags))
                        .collect();
                }
                Err(err) => {
                    result.error_code = err.code().code();
                    result.error_message = Some(StrBytes::from_string(err.to_string()));
                }
            }
            response.results.push(result);
        }
        response
    }

    /// The configs of one resource, or why it cannot be described.
    fn describe_resource(&self, kind: i8, name: &str) -> Result<Vec<ConfigEntry>, AdminError> {
        match kind {
            RESOURCE_TOPIC => {
                validate_topic_name(name).map_err(AdminError::InvalidTopic)?;
                let topic = self
                    .topics
                    .get(name)
                    .ok_or_else(|| AdminError::UnknownTopic(name.to_string()))?;
                Ok(topic_entries(&self.config, &topic.overrides))
            }
            RESOURCE_BROKER => {
                self.check_broker_resource(name)?;
                Ok(broker_entries(&self.config, &self.dynamic_values(name)))
            }
            other => Err(AdminError::InvalidRequest(format!(
                "resource type {other} is not supported (topics are 2, brokers 4)"
            ))),
        }
    }

    /// The dynamic configs a BROKER resource shows (its own, else the cluster default's),
    /// with their sources.
    fn dynamic_values(&self, name: &str) -> BTreeMap<&'static str, (String, i8)> {
        let mut values = BTreeMap::new();
        let image = self.image();
        let own = (!name.is_empty()).then(|| image.broker_configs(self.config.node_id));
        let default = image.broker_configs(-1);
        for key in super::dynamic::DYNAMIC_BROKER_CONFIGS {
            let own = own.flatten().and_then(|c| c.get(key));
            let found = match (own, default.and_then(|c| c.get(key))) {
                (Some(value), _) => Some((value.clone(), SOURCE_DYNAMIC_BROKER_CONFIG)),
                (None, Some(value)) => Some((value.clone(), SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG)),
                (None, None) => None,
            };
            if let Some(found) = found {
                values.insert(key, found);
            }
        }
        values
    }

    /// A broker resource must name this node, or be empty (the cluster-wide defaults).
    pub(crate) fn check_broker_resource(&self, name: &str) -> Result<(), AdminError> {
        let node = self.config.node_id;
        if name.is_empty() || name.parse::<i32>() == Ok(node) {
            return Ok(());
        }
        Err(AdminError::InvalidRequest(format!(
            "unexpected broker id {name:?}: expected {node} or an empty string"
        )))
    }
}

//! Cluster and topic administration beyond create/delete: configs (DescribeConfigs,
//! AlterConfigs, IncrementalAlterConfigs), CreatePartitions, DescribeCluster, DeleteRecords
//! and OffsetForLeaderEpoch.
//!
//! Every handler filters the request first — unknown resources, bad values, impossible
//! counts are answered with a Kafka error code and message per resource — and only then
//! changes state. Config and partition changes are persisted with the metadata file before
//! they are answered; a storage failure rolls the in-memory change back. The internal
//! topic `__consumer_offsets` is protected from changes that would break it (`internal.rs`).

mod configs;
mod dynamic;
mod internal;

pub(crate) use internal::is_internal;

pub use dynamic::{FOLLOWER_THROTTLE, LEADER_THROTTLE};

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource as IncrementalResource;
use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderPartition;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    BrokerId, DeleteRecordsRequest, DeleteRecordsResponse, DescribeClusterRequest,
    DescribeClusterResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::topic_admin::PARTITIONS_MAX;
use super::{Broker, Partition, StorageProvider, TopicConfigError, TOPIC_CONFIGS};
use crate::error::ErrorCode;
use crate::types::Offset;

/// `ConfigResource.Type.TOPIC`.
pub(crate) const RESOURCE_TOPIC: i8 = 2;
/// `ConfigResource.Type.BROKER`.
pub(crate) const RESOURCE_BROKER: i8 = 4;

/// IncrementalAlterConfigs operation `SET`.
const OP_SET: i8 = 0;
/// IncrementalAlterConfigs operation `DELETE`.
const OP_DELETE: i8 = 1;
/// IncrementalAlterConfigs operation `APPEND` (list configs only).
const OP_APPEND: i8 = 2;
/// IncrementalAlterConfigs operation `SUBTRACT` (list configs only).
const OP_SUBTRACT: i8 = 3;

/// DescribeCluster `endpoint_type` of brokers (v1+); 2 would be controllers.
const ENDPOINT_BROKERS: i8 = 1;
/// DescribeCluster's answer to `include_cluster_authorized_operations`: Brook has no
/// authorizer, so every cluster operation is allowed (CREATE, ALTER, DESCRIBE,
/// CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, CREATE_TOKENS,
/// DESCRIBE_TOKENS, as `AclOperation` bit positions).
const CLUSTER_OPERATIONS_ALL: i32 =
    1 << 5 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11 | 1 << 12 | 1 << 13 | 1 << 14;

/// DeleteRecords: delete up to the high watermark.
const DELETE_TO_HIGH_WATERMARK: i64 = -1;

/// Why an admin request on one resource was refused. All are permanent except `Storage`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AdminError {
    /// The request is malformed for this resource (`INVALID_REQUEST`).
    #[error("{0}")]
    InvalidRequest(String),
    /// The topic name is not a legal one (`INVALID_TOPIC_EXCEPTION`).
    #[error("{0}")]
    InvalidTopic(String),
    /// No topic has this name (`UNKNOWN_TOPIC_OR_PARTITION`).
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    /// A config name or value is refused (`INVALID_CONFIG`).
    #[error(transparent)]
    Config(#[from] TopicConfigError),
    /// An operation that does not apply to the config (`INVALID_CONFIG`).
    #[error("{0}")]
    ConfigOperation(String),
    /// The new partition count is not acceptable (`INVALID_PARTITIONS`).
    #[error("{0}")]
    Partitions(String),
    /// The change would break the internal topic (`TOPIC_AUTHORIZATION_FAILED`).
    #[error("{0}")]
    InternalTopic(String),
    /// A config value the broker's policy for the topic refuses (`POLICY_VIOLATION`).
    #[error("{0}")]
    Policy(String),
}

impl AdminError {
    /// The Kafka error code a client sees.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            AdminError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            AdminError::InvalidTopic(_) => ErrorCode::InvalidTopicException,
            AdminError::UnknownTopic(_) => ErrorCode::UnknownTopicOrPartition,
            AdminError::Config(_) | AdminError::ConfigOperation(_) => ErrorCode::InvalidConfig,
            AdminError::Partitions(_) => ErrorCode::InvalidPartitions,
            AdminError::InternalTopic(_) => ErrorCode::TopicAuthorizationFailed,
            AdminError::Policy(_) => ErrorCode::PolicyViolation,
        }
    }
}

/// Checks CreatePartitions' new `count` for topic `name`, which has `current` partitions:
/// more than now, at most [`PARTITIONS_MAX`], and not the internal topic.
pub(crate) fn check_partition_count(
    name: &str,
    current: i32,
    count: i32,
) -> Result<(), AdminError> {
    internal::check_partitions_change(name)?;
    if count <= current {
        return Err(AdminError::Partitions(format!(
            "topic {name} has {current} partitions; the new count {count} must be higher"
        )));
    }
    if count > PARTITIONS_MAX {
        return Err(AdminError::Partitions(format!(
            "partition count {count} exceeds the maximum of {PARTITIONS_MAX}"
        )));
    }
    Ok(())
}

/// The keys that occur more than once (Kafka refuses every copy of a duplicate resource).
pub(crate) fn duplicates<'a, K: Ord + 'a>(keys: impl Iterator<Item = K>) -> BTreeSet<K> {
    let mut seen = BTreeSet::new();
    let mut twice = BTreeSet::new();
    for key in keys {
        if seen.contains(&key) {
            twice.insert(key);
        } else {
            seen.insert(key);
        }
    }
    twice
}

/// Refuses values the metadata file cannot hold on one line, and empty ones.
fn check_value(name: &str, value: &str) -> Result<(), AdminError> {
    if value.chars().any(char::is_control) {
        return Err(AdminError::Config(TopicConfigError::Invalid {
            name: name.to_string(),
            value: value.to_string(),
            reason: "must not contain control characters".into(),
        }));
    }
    Ok(())
}

/// The items of a list config value, trimmed, without empty ones.
fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

impl<P: StorageProvider> Broker<P> {
    /// The overrides an AlterConfigs resource would give its topic, checked as a whole.
    pub(crate) fn alter_configs_overrides(
        &self,
        resource: &AlterConfigsResource,
    ) -> Result<BTreeMap<String, String>, AdminError> {
        self.check_config_resource(resource.resource_type, &resource.resource_name)?;
        let configs = resource
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str())));
        let overrides = replacement_overrides(configs)?;
        self.check_overrides(&resource.resource_name, &overrides)?;
        Ok(overrides)
    }

    /// The overrides an IncrementalAlterConfigs resource would give its topic, checked as a
    /// whole.
    pub(crate) fn incremental_alter_overrides(
        &self,
        resource: &IncrementalResource,
    ) -> Result<BTreeMap<String, String>, AdminError> {
        self.check_config_resource(resource.resource_type, &resource.resource_name)?;
        let overrides = self.incremental_overrides(resource)?;
        self.check_overrides(&resource.resource_name, &overrides)?;
        Ok(overrides)
    }

    /// Checks a topic's would-be overrides with the topic config parser and the internal
    /// topic's rules; the log config they make.
    fn check_overrides(
        &self,
        name: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Result<crate::log::LogConfig, AdminError> {
        let log_config = self.log_config_for(overrides)?;
        internal::check_overrides(name, overrides)?;
        Ok(log_config)
    }

    /// A resource whose configs may be altered: an existing topic. Broker configs are
    /// taken at startup and refused here.
    fn check_config_resource(&self, kind: i8, name: &str) -> Result<(), AdminError> {
        match kind {
            RESOURCE_TOPIC => {
                super::validate_topic_name(name).map_err(AdminError::InvalidTopic)?;
                if self.topics.contains(name) {
                    Ok(())
                } else {
                    Err(AdminError::UnknownTopic(name.to_string()))
                }
            }
            RESOURCE_BROKER => {
                self.check_broker_resource(name)?;
                Err(AdminError::InvalidRequest(
                    "broker configs are static in Brook: set them when starting the broker".into(),
                ))
            }
            other => Err(AdminError::InvalidRequest(format!(
                "resource type {other} is not supported (topics are 2)"
            ))),
        }
    }

    /// The overrides a topic would have after an IncrementalAlterConfigs resource.
    fn incremental_overrides(
        &self,
        resource: &IncrementalResource,
    ) -> Result<BTreeMap<String, String>, AdminError> {
        let name = resource.resource_name.as_str();
        let mut overrides = self
            .topics
            .get(name)
            .map(|t| t.overrides.clone())
            .ok_or_else(|| AdminError::UnknownTopic(name.to_string()))?;
        let keys = resource.configs.iter().map(|c| c.name.as_str());
        if let Some(key) = duplicates(keys).first() {
            return Err(AdminError::InvalidRequest(format!(
                "config {key} is named twice"
            )));
        }
        for config in &resource.configs {
            let key = config.name.as_str();
            let value = config.value.as_ref().map(|v| v.as_str());
            let default = configs::topic_default(&self.config, key);
            apply_operation(&mut overrides, key, config.config_operation, value, default)?;
        }
        Ok(overrides)
    }

    /// Answers DescribeCluster from the cluster image.
    pub(crate) fn handle_describe_cluster(
        &self,
        request: DescribeClusterRequest,
        version: i16,
    ) -> DescribeClusterResponse {
        let mut response = DescribeClusterResponse::default();
        if version >= 1 {
            response.endpoint_type = request.endpoint_type;
            if request.endpoint_type != ENDPOINT_BROKERS {
                response.error_code = ErrorCode::InvalidRequest.code();
                response.error_message = Some(StrBytes::from_string(format!(
                    "endpoint type {} is not served: Brook has no separate controllers",
                    request.endpoint_type
                )));
                return response;
            }
        }
        response.cluster_id = StrBytes::from_string(self.cluster_id.clone());
        // The unfenced brokers of the metadata, and the active controller (-1 while there is
        // none), as Metadata names them.
        response.controller_id = BrokerId(self.member.controller_id());
        for (node, host, port) in self.member.serving_brokers() {
            let mut entry = DescribeClusterBroker::default();
            entry.broker_id = BrokerId(node);
            entry.host = StrBytes::from_string(host.to_string());
            entry.port = port;
            response.brokers.push(entry);
        }
        if request.include_cluster_authorized_operations {
            response.cluster_authorized_operations = CLUSTER_OPERATIONS_ALL;
        }
        response
    }

    /// Answers DeleteRecords: moves each partition's log start offset forward.
    pub(crate) fn handle_delete_records(
        &mut self,
        request: DeleteRecordsRequest,
    ) -> DeleteRecordsResponse {
        let mut response = DeleteRecordsResponse::default();
        for topic in request.topics {
            let mut answer = DeleteRecordsTopicResult::default();
            for wanted in &topic.partitions {
                let mut result = DeleteRecordsPartitionResult::default();
                result.partition_index = wanted.partition_index;
                let index = wanted.partition_index;
                match self.delete_records(topic.name.0.as_str(), index, wanted.offset) {
                    Ok(low_watermark) => result.low_watermark = low_watermark.0,
                    Err(code) => {
                        result.error_code = code.code();
                        result.low_watermark = -1;
                    }
                }
                answer.partitions.push(result);
            }
            answer.name = topic.name;
            response.topics.push(answer);
        }
        response
    }

    /// Deletes the records of one partition below `offset` (-1: the high watermark); returns
    /// the new log start offset. As in Kafka, an offset at or below the log start offset
    /// changes nothing, and one above the high watermark is `OFFSET_OUT_OF_RANGE`.
    fn delete_records(
        &mut self,
        topic: &str,
        index: i32,
        offset: i64,
    ) -> Result<Offset, ErrorCode> {
        internal::check_delete_records(topic)?;
        // On a cluster only the leader deletes; its followers move their log start up to it
        // when their fetches' answers carry it (as Kafka's do).
        let partition = self.topics.led_mut(topic, index)?;
        let log = &mut partition.log;
        let high_watermark = log.high_watermark();
        let target = match offset {
            DELETE_TO_HIGH_WATERMARK => high_watermark,
            offset => Offset(offset),
        };
        if target < Offset(0) || target > high_watermark {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        log.advance_log_start(target)
            .map_err(|err| ErrorCode::from(&err))?;
        Ok(log.log_start_offset())
    }

    /// Answers OffsetForLeaderEpoch (KIP-101, KIP-279; KIP-320 epoch fencing from v2).
    pub(crate) fn handle_offset_for_leader_epoch(
        &self,
        request: OffsetForLeaderEpochRequest,
        version: i16,
    ) -> OffsetForLeaderEpochResponse {
        let mut response = OffsetForLeaderEpochResponse::default();
        for topic in request.topics {
            let mut answer = OffsetForLeaderTopicResult::default();
            for wanted in &topic.partitions {
                let mut result = EpochEndOffset::default();
                result.partition = wanted.partition;
                let partition = self.topics.led(topic.topic.0.as_str(), wanted.partition);
                match partition.and_then(|p| epoch_end_offset(p, wanted)) {
                    Err(code) => result.error_code = code.code(),
                    Ok((epoch, end_offset)) => {
                        // v0 has no leader_epoch field: it must keep its default to encode.
                        if version >= 1 {
                            result.leader_epoch = epoch;
                        }
                        result.end_offset = end_offset;
                    }
                }
                answer.partitions.push(result);
            }
            answer.topic = topic.topic;
            response.topics.push(answer);
        }
        response
    }
}

/// The (epoch, end offset) answer for one partition, or the KIP-320 fencing error.
///
/// The answer is Kafka's `LeaderEpochFileCache.endOffsetFor` over the log's epoch history
/// (`PartitionLog::end_offset_for_epoch`): `UNDEFINED_EPOCH` or an epoch above every known
/// one → (-1, -1); the latest epoch → the log end offset; an earlier epoch → the largest
/// known epoch at or below it (or itself, if it precedes them all) with the start offset of
/// the next known epoch. The leader's own epoch is in the history from the moment it leads
/// (recorded at the log end), before any batch carries it.
fn epoch_end_offset<S: crate::storage::Storage>(
    partition: &Partition<S>,
    wanted: &OffsetForLeaderPartition,
) -> Result<(i32, i64), ErrorCode> {
    let current = partition.leader_epoch();
    match wanted.current_leader_epoch {
        known if known < 0 || known == current.0 => {}
        older if older < current.0 => return Err(ErrorCode::FencedLeaderEpoch),
        _ => return Err(ErrorCode::UnknownLeaderEpoch),
    }
    let requested = crate::types::LeaderEpoch(wanted.leader_epoch);
    let answer = partition.log.end_offset_for_epoch(requested);
    Ok((answer.epoch.0, answer.end_offset.0))
}

/// Applies one IncrementalAlterConfigs operation to an override set. APPEND and SUBTRACT
/// start from the default when the topic has no override, and a list left empty removes
/// the override (Kafka's rules).
fn apply_operation(
    overrides: &mut BTreeMap<String, String>,
    key: &str,
    operation: i8,
    value: Option<&str>,
    default: Option<String>,
) -> Result<(), AdminError> {
    if !TOPIC_CONFIGS.contains(&key) {
        return Err(TopicConfigError::Unknown(key.to_string()).into());
    }
    if operation == OP_DELETE {
        overrides.remove(key);
        return Ok(());
    }
    let Some(value) = value else {
        return Err(AdminError::InvalidRequest(format!(
            "config {key} has a null value"
        )));
    };
    check_value(key, value)?;
    let current = overrides.get(key).cloned().or(default).unwrap_or_default();
    let items = match operation {
        OP_SET => {
            overrides.insert(key.to_string(), value.to_string());
            return Ok(());
        }
        OP_APPEND | OP_SUBTRACT if !configs::is_list_config(key) => {
            return Err(AdminError::ConfigOperation(format!(
                "config {key} is not a list: APPEND and SUBTRACT apply only to lists"
            )));
        }
        OP_APPEND => {
            let mut items = list_items(&current);
            for item in list_items(value) {
                if !items.contains(&item) {
                    items.push(item);
                }
            }
            items
        }
        OP_SUBTRACT => {
            let removed = list_items(value);
            let mut items = list_items(&current);
            items.retain(|item| !removed.contains(item));
            items
        }
        other => {
            return Err(AdminError::InvalidRequest(format!(
                "unknown config operation {other}"
            )))
        }
    };
    if items.is_empty() {
        overrides.remove(key);
    } else {
        overrides.insert(key.to_string(), items.join(","));
    }
    Ok(())
}

/// The override set an AlterConfigs resource asks for: every named config with a value
/// (a null value leaves the config at its default, as in Kafka).
fn replacement_overrides<'a>(
    configs: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<BTreeMap<String, String>, AdminError> {
    let mut overrides = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (name, value) in configs {
        if !seen.insert(name) {
            return Err(AdminError::InvalidRequest(format!(
                "config {name} is named twice"
            )));
        }
        if !TOPIC_CONFIGS.contains(&name) {
            return Err(TopicConfigError::Unknown(name.to_string()).into());
        }
        if let Some(value) = value {
            check_value(name, value)?;
            overrides.insert(name.to_string(), value.to_string());
        }
    }
    Ok(overrides)
}

#[cfg(test)]
mod tests;

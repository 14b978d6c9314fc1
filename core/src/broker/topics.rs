//! Topic administration: names, configs, Metadata, CreateTopics and DeleteTopics.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{partition_dir, Broker, Partitions, StorageProvider, Topic};
use crate::error::ErrorCode;
use crate::log::LogConfig;
use crate::record::TimestampType;
use crate::types::Millis;

/// The longest topic name Kafka accepts.
pub const TOPIC_NAME_LEN_MAX: usize = 249;
/// The most partitions one topic may have on this broker.
pub const PARTITIONS_MAX: i32 = 10_000;

/// A topic config that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    /// The config name is not one Brook knows.
    #[error("unknown topic config {0}")]
    Unknown(String),
    /// The value does not parse or is out of range.
    #[error("invalid value {value:?} for {name}: {reason}")]
    Invalid {
        /// The config name.
        name: String,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
}

/// Checks a topic name as Kafka does: 1–249 characters of `[a-zA-Z0-9._-]`, not `.`/`..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return Err(format!(
            "topic name is longer than {TOPIC_NAME_LEN_MAX} characters"
        ));
    }
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if let Some(bad) = name.chars().find(|&c| !legal(c)) {
        return Err(format!(
            "topic name contains {bad:?}; only [a-zA-Z0-9._-] are allowed"
        ));
    }
    Ok(())
}

/// Topic configs Brook accepts, with the broker default's textual value as a function.
pub const TOPIC_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "flush.messages",
    "flush.ms",
    "index.interval.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.ms",
];

fn parse_i64(name: &str, value: &str, min: i64) -> Result<i64, TopicConfigError> {
    let invalid = |reason: String| TopicConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason,
    };
    let parsed: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid("not an integer".into()))?;
    if parsed < min {
        return Err(invalid(format!("must be at least {min}")));
    }
    Ok(parsed)
}

/// Applies one config override to a log config.
fn apply_config(log: &mut LogConfig, name: &str, value: &str) -> Result<(), TopicConfigError> {
    let invalid = |reason: &str| TopicConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if value.chars().any(char::is_control) {
        // Values live one per line in the metadata file; control characters are never valid.
        return Err(invalid("contains a control character"));
    }
    match name {
        "retention.ms" => {
            let ms = parse_i64(name, value, -1)?;
            log.retention_ms = (ms >= 0).then_some(ms);
        }
        "retention.bytes" => {
            let bytes = parse_i64(name, value, -1)?;
            log.retention_bytes = (bytes >= 0).then_some(bytes as u64);
        }
        "segment.bytes" => log.segment_bytes = parse_i64(name, value, 1024)? as u64,
        "segment.ms" => log.segment_ms = parse_i64(name, value, 1)?,
        "segment.index.bytes" => log.segment_index_bytes = parse_i64(name, value, 64)? as u64,
        "index.interval.bytes" => log.index_interval_bytes = parse_i64(name, value, 0)? as u64,
        "max.message.bytes" => log.max_message_bytes = parse_i64(name, value, 61)? as usize,
        "flush.messages" => {
            let n = parse_i64(name, value, 1)?;
            log.flush_messages = (n < i64::MAX).then_some(n as u64);
        }
        "flush.ms" => {
            let ms = parse_i64(name, value, 0)?;
            log.flush_ms = (ms < i64::MAX).then_some(ms);
        }
        "message.timestamp.type" => {
            log.timestamp_type = match value {
                "CreateTime" => TimestampType::CreateTime,
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => return Err(invalid("must be CreateTime or LogAppendTime")),
            }
        }
        "cleanup.policy" => {
            let policies: Vec<&str> = value.split(',').map(str::trim).collect();
            if policies.is_empty() || !policies.iter().all(|p| matches!(*p, "delete" | "compact")) {
                return Err(invalid("must be delete, compact or both"));
            }
            log.cleanup_delete = policies.contains(&"delete");
            log.cleanup_compact = policies.contains(&"compact");
        }
        "min.insync.replicas" => {
            let n = parse_i64(name, value, 1)?;
            log.min_insync_replicas = usize::try_from(n).unwrap_or(usize::MAX);
        }
        _ => return Err(TopicConfigError::Unknown(name.to_string())),
    }
    log.validate().map_err(|err| invalid(&err.reason))
}

impl<P: StorageProvider> Broker<P> {
    /// The log config of a topic with these overrides on top of the broker defaults.
    pub(crate) fn log_config_for(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<LogConfig, TopicConfigError> {
        let mut log = self.broker_config().log.clone();
        for (name, value) in overrides {
            apply_config(&mut log, name, value)?;
        }
        Ok(log)
    }

    /// Creates a topic with `partitions` partitions; the caller validated the arguments.
    pub(crate) fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        now: Millis,
    ) -> Result<uuid::Uuid, ErrorCode> {
        let log_config = self
            .log_config_for(&overrides)
            .map_err(|_| ErrorCode::InvalidConfig)?;
        let mut opened = Vec::with_capacity(partitions as usize);
        for index in 0..partitions {
            let partition = self
                .open_partition(name, index, log_config.clone(), now)
                .map_err(|_| ErrorCode::KafkaStorageError)?;
            opened.push(partition);
        }
        let id = topic_id(name, now, self.topics.len());
        self.topics.insert(
            name.to_string(),
            Topic {
                id,
                overrides,
                partitions: Partitions::held_all(opened),
            },
        );
        self.persist_meta()
            .map_err(|_| ErrorCode::KafkaStorageError)?;
        Ok(id)
    }

    /// Answers Metadata, auto-creating unknown topics when allowed.
    pub(crate) fn handle_metadata(
        &mut self,
        now: Millis,
        request: MetadataRequest,
        version: i16,
    ) -> MetadataResponse {
        let all = match &request.topics {
            None => true,
            Some(topics) => version == 0 && topics.is_empty(),
        };
        let auto_create =
            self.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
        if self.member.is_some() {
            let names = match request.topics {
                Some(topics) if !all => Some(
                    topics
                        .into_iter()
                        .filter_map(|t| t.name.map(|n| n.0.as_str().to_string()))
                        .collect(),
                ),
                _ => None,
            };
            return self.member_metadata(names, auto_create, version);
        }
        let names: Vec<String> = match request.topics {
            Some(topics) if !all => topics
                .into_iter()
                .filter_map(|t| t.name.map(|n| n.0.as_str().to_string()))
                .collect(),
            _ => self.topic_names(),
        };
        let mut response = MetadataResponse::default();
        let mut broker = MetadataResponseBroker::default();
        broker.node_id = BrokerId(self.config.node_id);
        broker.host = StrBytes::from_string(self.config.advertised_host.clone());
        broker.port = self.config.advertised_port;
        response.brokers = vec![broker];
        if version >= 2 {
            response.cluster_id = Some(StrBytes::from_string(self.cluster_id.clone()));
        }
        if version >= 1 {
            response.controller_id = BrokerId(self.config.node_id);
        }
        for name in names {
            response
                .topics
                .push(self.metadata_topic(now, &name, auto_create, version));
        }
        response
    }

    fn metadata_topic(
        &mut self,
        now: Millis,
        name: &str,
        auto_create: bool,
        version: i16,
    ) -> MetadataResponseTopic {
        let mut topic = MetadataResponseTopic::default();
        topic.name = Some(TopicName(StrBytes::from_string(name.to_string())));
        if !self.topics.contains_key(name) {
            topic.error_code = match (auto_create, validate_topic_name(name)) {
                (_, Err(_)) => ErrorCode::InvalidTopicException.code(),
                (false, Ok(())) => ErrorCode::UnknownTopicOrPartition.code(),
                // Auto-creation makes the internal topic as the coordinator needs it.
                (true, Ok(())) if name == super::groups::OFFSETS_TOPIC => {
                    match self.ensure_offsets_topic(now) {
                        Ok(()) => ErrorCode::None.code(),
                        Err(code) => code.code(),
                    }
                }
                (true, Ok(())) => {
                    let partitions = self.config.num_partitions;
                    match self.create_topic(name, partitions, BTreeMap::new(), now) {
                        Ok(_) => ErrorCode::None.code(),
                        Err(code) => code.code(),
                    }
                }
            };
            if topic.error_code != 0 {
                return topic;
            }
        }
        let node = BrokerId(self.config.node_id);
        let stored = &self.topics[name];
        if version >= 10 {
            topic.topic_id = stored.id;
        }
        topic.partitions = stored
            .partitions
            .held()
            .map(|(index, partition)| {
                let mut meta = MetadataResponsePartition::default();
                meta.partition_index = index;
                meta.leader_id = node;
                if version >= 7 {
                    meta.leader_epoch = partition.leader_epoch().0;
                }
                meta.replica_nodes = vec![node];
                meta.isr_nodes = vec![node];
                meta
            })
            .collect();
        topic
    }

    /// Answers CreateTopics: validates name, partition count, replication and configs.
    pub(crate) fn handle_create_topics(
        &mut self,
        now: Millis,
        request: CreateTopicsRequest,
        version: i16,
    ) -> CreateTopicsResponse {
        let mut response = CreateTopicsResponse::default();
        for topic in request.topics {
            let name = topic.name.0.as_str().to_string();
            let mut result = CreatableTopicResult::default();
            result.name = topic.name.clone();
            let partitions = match topic.num_partitions {
                -1 => self.config.num_partitions,
                n => n,
            };
            let replication = match topic.replication_factor {
                -1 => self.config.default_replication_factor,
                n => n,
            };
            let overrides: BTreeMap<String, String> = topic
                .configs
                .iter()
                .filter_map(|c| {
                    Some((
                        c.name.as_str().to_string(),
                        c.value.as_ref()?.as_str().to_string(),
                    ))
                })
                .collect();
            let verdict = self.check_new_topic(
                &name,
                partitions,
                replication,
                &topic.assignments,
                &overrides,
            );
            match verdict {
                Err((code, message)) => {
                    result.error_code = code.code();
                    if version >= 1 {
                        result.error_message = Some(StrBytes::from_string(message));
                    }
                }
                Ok(()) if request.validate_only => {}
                Ok(()) => match self.create_topic(&name, partitions, overrides, now) {
                    Ok(id) if version >= 7 => result.topic_id = id,
                    Ok(_) => {}
                    Err(code) => result.error_code = code.code(),
                },
            }
            if result.error_code == 0 && version >= 5 {
                result.num_partitions = partitions;
                result.replication_factor = replication;
            }
            response.topics.push(result);
        }
        response
    }

    fn check_new_topic(
        &self,
        name: &str,
        partitions: i32,
        replication: i16,
        assignments: &[kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment],
        overrides: &BTreeMap<String, String>,
    ) -> Result<(), (ErrorCode, String)> {
        validate_topic_name(name).map_err(|m| (ErrorCode::InvalidTopicException, m))?;
        if name == super::groups::OFFSETS_TOPIC && !self.topics.contains_key(name) {
            // Kafka's answer too: the broker creates it, with the settings it needs
            // (compaction, its partition count), when a group first needs it.
            return Err((
                ErrorCode::InvalidRequest,
                format!("creation of internal topic {name} is prohibited"),
            ));
        }
        if self.topics.contains_key(name) {
            return Err((
                ErrorCode::TopicAlreadyExists,
                format!("topic {name} already exists"),
            ));
        }
        if !(1..=PARTITIONS_MAX).contains(&partitions) && assignments.is_empty() {
            let message = format!("partition count {partitions} is not in 1..={PARTITIONS_MAX}");
            return Err((ErrorCode::InvalidPartitions, message));
        }
        if replication != 1 && assignments.is_empty() {
            let message =
                format!("replication factor {replication} exceeds the 1 broker available");
            return Err((ErrorCode::InvalidReplicationFactor, message));
        }
        let node = self.config.node_id;
        if assignments
            .iter()
            .any(|a| a.broker_ids.iter().any(|b| b.0 != node) || a.broker_ids.len() != 1)
        {
            return Err((
                ErrorCode::InvalidReplicaAssignment,
                format!("only broker {node} exists"),
            ));
        }
        self.log_config_for(overrides)
            .map_err(|err| (ErrorCode::InvalidConfig, err.to_string()))?;
        Ok(())
    }

    /// Answers DeleteTopics: closes and removes every partition of each named topic.
    pub(crate) fn handle_delete_topics(
        &mut self,
        request: DeleteTopicsRequest,
        version: i16,
    ) -> DeleteTopicsResponse {
        let names = deleted_topics(&request);
        let mut response = DeleteTopicsResponse::default();
        for (name, id) in names {
            let name = name.or_else(|| {
                self.topics
                    .iter()
                    .find(|(_, t)| t.id == id && !id.is_nil())
                    .map(|(n, _)| n.clone())
            });
            let mut result = DeletableTopicResult::default();
            result.topic_id = id;
            result.name = name.clone().map(|n| TopicName(StrBytes::from_string(n)));
            if self.member.is_some() {
                // A member's topics belong to the controller, which deletes none yet: removing
                // one replica's files would leave the ISR counting records it no longer has.
                result.error_code = ErrorCode::InvalidRequest.code();
                if version >= 5 {
                    let message = "DeleteTopics is not supported on a cluster member yet";
                    result.error_message = Some(StrBytes::from_static_str(message));
                }
                response.responses.push(result);
                continue;
            }
            result.error_code = match name.and_then(|n| self.topics.remove(&n).map(|t| (n, t))) {
                None => ErrorCode::UnknownTopicOrPartition.code(),
                Some((name, topic)) => {
                    if version >= 6 {
                        result.topic_id = topic.id;
                    }
                    self.remove_topic_files(&name, topic).code()
                }
            };
            response.responses.push(result);
        }
        response
    }

    fn remove_topic_files(&mut self, name: &str, topic: Topic<P::Storage>) -> ErrorCode {
        let count = topic.partitions.count();
        drop(topic);
        if self.persist_meta().is_err() {
            return ErrorCode::KafkaStorageError;
        }
        for index in 0..count {
            if self
                .provider
                .remove_dir(&partition_dir(name, index))
                .is_err()
            {
                return ErrorCode::KafkaStorageError;
            }
        }
        ErrorCode::None
    }
}

/// A topic id derived from the name, creation time and topic count (deterministic).
fn topic_id(name: &str, now: Millis, salt: usize) -> uuid::Uuid {
    let high = u64::from(crc32c::crc32c(name.as_bytes())) << 32 | (salt as u64 & 0xffff_ffff);
    let id = uuid::Uuid::from_u64_pair(high, now.0 as u64 | 1);
    if id.is_nil() {
        uuid::Uuid::from_u128(1)
    } else {
        id
    }
}

/// The topics a DeleteTopics names: (name, or none when only the id is given (v6); id, nil
/// before v6).
pub(crate) fn deleted_topics(request: &DeleteTopicsRequest) -> Vec<(Option<String>, uuid::Uuid)> {
    let by_name = request.topic_names.iter();
    let named = by_name.map(|n| (Some(n.0.as_str().to_string()), uuid::Uuid::nil()));
    let topics = request.topics.iter();
    let given = topics.map(|t| {
        (
            t.name.as_ref().map(|n| n.0.as_str().to_string()),
            t.topic_id,
        )
    });
    named.chain(given).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn topic_configs_apply_and_reject_bad_values() {
        let mut log = LogConfig::default();
        apply_config(&mut log, "retention.ms", "-1").unwrap();
        assert_eq!(log.retention_ms, None);
        apply_config(&mut log, "message.timestamp.type", "LogAppendTime").unwrap();
        assert_eq!(log.timestamp_type, TimestampType::LogAppendTime);
        assert!(matches!(
            apply_config(&mut log, "segment.bytes", "12"),
            Err(TopicConfigError::Invalid { .. })
        ));
        assert!(matches!(
            apply_config(&mut log, "retention.ms", "soon"),
            Err(TopicConfigError::Invalid { .. })
        ));
        assert!(matches!(
            apply_config(&mut log, "no.such", "1"),
            Err(TopicConfigError::Unknown(_))
        ));
        assert!(matches!(
            apply_config(&mut log, "retention.ms", "100\n"),
            Err(TopicConfigError::Invalid { .. })
        ));
    }
}

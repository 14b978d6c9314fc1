//! Topic administration: names, configs, the log config a topic's overrides make, Metadata,
//! and the topics a DeleteTopics names.

use std::collections::BTreeMap;

use kafka_protocol::messages::{DeleteTopicsRequest, MetadataRequest, MetadataResponse};

use super::{Broker, StorageProvider};
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

    /// The answer to a Metadata request (`__consumer_offsets`, when named, is created with its
    /// own settings and marked internal).
    pub fn metadata_response(
        &mut self,
        now: Millis,
        body: MetadataRequest,
        version: i16,
    ) -> MetadataResponse {
        let named: Vec<String> = (body.topics.iter().flatten())
            .filter_map(|t| Some(t.name.as_ref()?.0.to_string()))
            .collect();
        if named.iter().any(|n| n == super::OFFSETS_TOPIC) {
            // Created with its own settings, never auto-created as a plain topic.
            let _ = self.ensure_offsets_topic(now);
        }
        if named.iter().any(|n| n == super::TRANSACTION_STATE_TOPIC) {
            let _ = self.ensure_transaction_state_topic();
        }
        let mut response = self.handle_metadata(now, body, version);
        self.mark_internal_topics(&mut response, &named, version);
        response
    }

    /// Answers Metadata, auto-creating unknown topics when allowed.
    pub(crate) fn handle_metadata(
        &mut self,
        _now: Millis,
        request: MetadataRequest,
        version: i16,
    ) -> MetadataResponse {
        let all = match &request.topics {
            None => true,
            Some(topics) => version == 0 && topics.is_empty(),
        };
        let auto_create =
            self.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
        let names = match request.topics {
            Some(topics) if !all => Some(
                topics
                    .into_iter()
                    .filter_map(|t| t.name.map(|n| n.0.as_str().to_string()))
                    .collect(),
            ),
            _ => None,
        };
        self.member_metadata(names, auto_create, version)
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

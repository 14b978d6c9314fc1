//! Per-partition log settings, named as Kafka's topic configs are.

use crate::record::TimestampType;

/// The settings one partition's log runs with. Defaults are Kafka's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll to a new segment once the active one would exceed this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll once the active segment's first batch is this old.
    pub segment_ms: i64,
    /// `segment.index.bytes`: the most bytes an offset or time index may hold before a roll.
    pub segment_index_bytes: u64,
    /// `retention.ms`: delete segments whose newest record is older; `None` keeps forever.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: delete the oldest segments while the log is larger; `None` = no limit.
    pub retention_bytes: Option<u64>,
    /// `index.interval.bytes`: bytes of batches between two sparse index entries.
    pub index_interval_bytes: u64,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: usize,
    /// `flush.messages`: sync after this many records; `Some(1)` syncs every append, `None`
    /// leaves durability to the page cache and replication.
    pub flush_messages: Option<u64>,
    /// `flush.ms`: sync when the oldest unsynced append is this old; `None` = never by time.
    pub flush_ms: Option<i64>,
    /// `message.timestamp.type`: whether batches keep producer time or get the append time.
    pub timestamp_type: TimestampType,
    /// `cleanup.policy` contains `delete`: retention by time and size applies.
    pub cleanup_delete: bool,
    /// `cleanup.policy` contains `compact`: older records of a key are removed.
    pub cleanup_compact: bool,
    /// `min.insync.replicas`: the in-sync replicas an acks=all produce needs. Replication
    /// reads it, not the log; it lives here because it is a topic config, as in Kafka.
    pub min_insync_replicas: usize,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            segment_index_bytes: 10 << 20,
            retention_ms: Some(7 * 24 * 60 * 60 * 1000),
            retention_bytes: None,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            flush_messages: None,
            flush_ms: None,
            timestamp_type: TimestampType::CreateTime,
            cleanup_delete: true,
            cleanup_compact: false,
            min_insync_replicas: 1,
        }
    }
}

/// A setting outside the range the log can work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log config {name}: {reason}")]
pub struct ConfigError {
    /// The Kafka name of the setting.
    pub name: &'static str,
    /// Why the value was refused.
    pub reason: String,
}

impl LogConfig {
    /// Checks every setting's range, naming the first one that is off.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |name, reason: String| Err(ConfigError { name, reason });
        // Positions inside a segment are 32-bit in the index, as in Kafka.
        if !(1024..=i32::MAX as u64).contains(&self.segment_bytes) {
            return fail(
                "segment.bytes",
                format!("{} not in 1024..=2^31-1", self.segment_bytes),
            );
        }
        if self.segment_ms < 1 {
            return fail(
                "segment.ms",
                format!("{} must be at least 1", self.segment_ms),
            );
        }
        if !(64..=i32::MAX as u64).contains(&self.segment_index_bytes) {
            return fail(
                "segment.index.bytes",
                format!("{} too small", self.segment_index_bytes),
            );
        }
        if matches!(self.retention_ms, Some(ms) if ms < 0) {
            return fail(
                "retention.ms",
                "must be -1 (unlimited) or at least 0".into(),
            );
        }
        if self.max_message_bytes < crate::record::HEADER_LEN {
            return fail(
                "max.message.bytes",
                format!("{} too small", self.max_message_bytes),
            );
        }
        if self.flush_messages == Some(0) {
            return fail("flush.messages", "must be at least 1".into());
        }
        if matches!(self.flush_ms, Some(ms) if ms < 0) {
            return fail("flush.ms", "must not be negative".into());
        }
        if self.min_insync_replicas < 1 {
            return fail("min.insync.replicas", "must be at least 1".into());
        }
        Ok(())
    }
}

//! A partition's segmented commit log.
//!
//! [`PartitionLog`] appends validated record batches, assigning offsets by patching their
//! headers; it keeps segments named by base offset with sparse offset and time indexes in
//! Kafka's file formats; it rolls segments by size and age, applies retention by time and size,
//! truncates on request and recovers from crashes. Reads return *locations* ([`ReadSlice`]) so
//! the server can `sendfile` them.
//!
//! **Architecture invariant:** the log does not decide the high watermark — replication does.
//! The log only records it ([`PartitionLog::set_high_watermark`]) and bounds nothing by it;
//! callers pass the upper bound of a read explicitly.
//!
//! It also keeps the partition's leader-epoch history (`epochs.rs`, KIP-101): the epoch each
//! appended batch carries, where each epoch starts, kept in step with truncation and the log
//! start, persisted in `leader-epoch-checkpoint` and answered by
//! [`PartitionLog::end_offset_for_epoch`] (OffsetForLeaderEpoch).
//!
//! Call order for a driver: [`PartitionLog::open`] once; then any mix of `append`, `read`,
//! `truncate_to`, `advance_log_start`, `apply_retention` and `tick` (which runs the time-based
//! flush policy); finally [`PartitionLog::close`], which leaves a clean-shutdown marker.
//!
//! This file holds the types and the accessors. The public changes (`append`, `roll`,
//! `truncate_to`, `close`, …) are in `offline.rs`, each run behind the offline guard; their
//! bodies (the `*_unguarded` methods) and the reads are in files named for what they do:
//!
//! - `append.rs`: leader and follower appends — validation, offset and epoch assignment,
//!   one storage write per request.
//! - `read.rs`: reads as [`ReadSlice`] locations, ListOffsets by time, and the CRC check
//!   of bytes not checked since open.
//! - `roll.rs`: rolling to a new segment and deleting a segment's files.
//! - `flush.rs`: the flush policy, syncs, the checkpoint files and the clean close.
//! - `truncate.rs`: cutting the log's end (a follower) or all of it (a replica too far behind).
//! - `retention.rs`: moving the log start (DeleteRecords, `retention.ms`, `retention.bytes`).
//! - `invariants.rs`: the relations between offsets and segments, checked after each change.
//! - `recovery.rs` (open), `compaction.rs`, `snapshot.rs` (producer state), `epochs.rs`
//!   (the leader-epoch history) and `segment.rs` (one segment and its index formats).

mod append;
mod compaction;
mod config;
mod epochs;
mod flush;
mod invariants;
mod offline;
mod read;
mod recovery;
mod retention;
mod roll;
mod segment;
mod snapshot;
mod truncate;

use crate::error::ErrorCode;
use crate::record::BatchError;
use crate::storage::{Storage, StorageError};
use crate::types::{LeaderEpoch, Millis, Offset};

pub use compaction::CompactionReport;
pub use config::{ConfigError, LogConfig};
pub use epochs::{
    EpochEnd, EpochEntry, LeaderEpochCache, EPOCH_CHECKPOINT_FILE, UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET,
};
pub use recovery::RecoveryReport;
pub use segment::{index_file, log_file, parse_file_name, time_index_file};
use segment::{BatchSummary, Segment};

/// The most bytes a batch may decompress to when the log looks inside it (ListOffsets).
pub const DECOMPRESSED_BYTES_MAX: usize = 256 << 20;
/// Name of the file that holds the log start offset and recovery point.
pub const CHECKPOINT_FILE: &str = "log.checkpoint";
/// Name of the marker left by a clean close; its presence lets the next open skip the scan.
pub const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The records offered for append are malformed (permanent: the client must fix them).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The requested offset is outside `[log start, log end]`.
    #[error("offset {requested} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: Offset,
        /// The log start offset.
        log_start: Offset,
        /// The log end offset.
        log_end: Offset,
    },
    /// Replicated batches do not continue the log end offset exactly.
    #[error("batch at offset {base} does not follow log end offset {log_end}")]
    OffsetsNotMonotonic {
        /// The offending batch's base offset.
        base: Offset,
        /// The log end offset it should be at or above.
        log_end: Offset,
    },
    /// A segment file holds bytes that are not a valid batch where one must be.
    #[error("segment {file} is corrupt at position {position}: {reason}")]
    CorruptSegment {
        /// The segment file.
        file: String,
        /// Where the bad bytes are.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// The log's settings are out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The storage failed; the partition cannot go on (Kafka's `KAFKA_STORAGE_ERROR`).
    #[error("storage failure: {0}")]
    Storage(#[from] StorageError),
    /// A batch's leader epoch is below the newest epoch in the log (KIP-101): appending it
    /// would break the epoch history, so the appender is a stale leader or copies from one
    /// (permanent for this appender).
    #[error("leader epoch {} is below the log's latest epoch {}", .epoch.0, .latest.0)]
    StaleLeaderEpoch {
        /// The epoch of the refused batch (or of the leader appending it).
        epoch: LeaderEpoch,
        /// The newest epoch in the log's history.
        latest: LeaderEpoch,
    },
    /// An earlier storage failure took the log offline; reopening it (a restart) recovers it.
    #[error("log is offline after a storage failure: {reason}")]
    Offline {
        /// The storage failure that took it offline.
        reason: String,
    },
}

impl From<&LogError> for ErrorCode {
    fn from(err: &LogError) -> ErrorCode {
        match err {
            LogError::Batch(batch) => ErrorCode::from(batch),
            LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            LogError::OffsetsNotMonotonic { .. } => ErrorCode::InvalidRecord,
            LogError::StaleLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch,
            LogError::Config(_) => ErrorCode::InvalidConfig,
            LogError::CorruptSegment { .. } | LogError::Storage(_) | LogError::Offline { .. } => {
                ErrorCode::KafkaStorageError
            }
        }
    }
}

/// What an append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: Offset,
    /// Offset assigned to the last record.
    pub last_offset: Offset,
    /// Number of batches appended.
    pub batch_count: usize,
    /// Number of records appended.
    pub record_count: i64,
    /// The append time stamped on the batches, when the topic uses `LogAppendTime`.
    pub log_append_time: Option<Millis>,
    /// Whether the append was synced to storage before returning.
    pub synced: bool,
}

/// The producer fields of one stored batch ([`PartitionLog::producer_batches_from`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    /// The producer's id.
    pub producer_id: crate::types::ProducerId,
    /// The producer's epoch.
    pub producer_epoch: crate::types::ProducerEpoch,
    /// Sequence of the batch's first record.
    pub base_sequence: i32,
    /// Offset of the batch's first record.
    pub base_offset: Offset,
    /// Offset of the batch's last record.
    pub last_offset: Offset,
    /// Whether it is a transaction marker.
    pub is_control: bool,
    /// Whether it belongs to a transaction (data or marker).
    pub is_transactional: bool,
    /// For a transaction marker: commit or abort (`None` for data, or a control batch that
    /// is not a readable marker).
    pub control_type: Option<crate::record::ControlType>,
    /// For a transaction marker: its token (-1 when it has none).
    pub marker_token: i64,
}

/// Where the bytes of a read are: a run of whole batches in one segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadSlice {
    /// The segment's `.log` file name in the log's storage.
    pub file: String,
    /// Byte position of the first batch in the file.
    pub position: u64,
    /// Number of bytes: whole batches only.
    pub length: u64,
    /// Base offset of the first batch (may be below the offset asked for).
    pub first_offset: Offset,
    /// The offset after the last batch in the slice: where the next read continues.
    pub next_offset: Offset,
}

/// A partition's commit log over a [`Storage`] directory. See the module doc for call order.
pub struct PartitionLog<S: Storage> {
    storage: S,
    config: LogConfig,
    /// Segments in offset order; never empty, the last one is active.
    segments: Vec<Segment>,
    log_start: Offset,
    /// Every offset below this one is synced to storage.
    recovery_point: Offset,
    high_watermark: Offset,
    /// Records appended since the last sync.
    unflushed_records: u64,
    /// When the oldest unsynced append happened.
    unflushed_since: Option<Millis>,
    /// Segments below this base offset were compacted by the last pass.
    compacted_below: Offset,
    /// Where each leader epoch starts; mirrored to `EPOCH_CHECKPOINT_FILE`.
    epochs: LeaderEpochCache,
    /// The history holds an entry the checkpoint lacks (a leader's epoch recorded at the log
    /// end, [`PartitionLog::start_leader_epoch`]); written before the next batch.
    epochs_unsaved: bool,
    /// Buffers reused by every append instead of allocated per call.
    scratch: AppendScratch,
    /// The buffer reads check unverified bytes in (`check_unverified`), kept between reads
    /// so that check allocates nothing; at most `VERIFY_CHUNK` or one batch long.
    verify_scratch: std::cell::RefCell<Vec<u8>>,
    /// Why the log went offline: a storage call failed while changing it, so its files may
    /// not match its state. Every later call fails until the log is reopened (recovered).
    offline: Option<String>,
}

/// What an append builds on its way to storage, kept between appends so the hot path does
/// not allocate: cleared (not freed) at the start of each use. Each grows to what the
/// largest request so far needed — one summary per batch, one index entry per
/// `index.interval.bytes` — so the request size limit bounds it.
#[derive(Debug, Default)]
struct AppendScratch {
    /// The summaries of the batches being appended, in order; `append` and
    /// `append_replicated` fill it and `write_batches` writes what it lists.
    summaries: Vec<BatchSummary>,
    /// Encoded offset-index entries, written with one storage append.
    offset_entries: Vec<u8>,
    /// Encoded time-index entries, written with one storage append.
    time_entries: Vec<u8>,
    /// The epochs the batches being appended start, in order (at most one per batch).
    epoch_starts: Vec<EpochEntry>,
}

impl<S: Storage> PartitionLog<S> {
    /// The log's storage, for drivers that read slices' bytes or inspect files.
    pub fn storage(&self) -> &S {
        &self.storage
    }
    /// The log's settings.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    /// Replaces the settings (AlterConfigs); they apply from the next operation.
    pub fn set_config(&mut self, config: LogConfig) -> Result<(), LogError> {
        config.validate()?;
        self.config = config;
        Ok(())
    }
    /// The first offset a consumer can read.
    pub fn log_start_offset(&self) -> Offset {
        self.log_start
    }
    /// The offset the next appended record gets.
    pub fn log_end_offset(&self) -> Offset {
        self.active().next_offset
    }
    /// Every offset below this one has been synced to storage.
    pub fn recovery_point(&self) -> Offset {
        self.recovery_point
    }
    /// The high watermark last set by replication (capped at the log end offset).
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }
    /// Records the high watermark decided by replication (clamped into the log's range).
    pub fn set_high_watermark(&mut self, offset: Offset) {
        self.high_watermark = offset.clamp(self.log_start, self.log_end_offset());
    }
    /// Total bytes in all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }
    /// The base offset of the active (last) segment: it changes when the log rolls.
    pub fn active_segment_base(&self) -> Offset {
        self.active().base
    }

    /// The newest leader epoch in the log's epoch history, if any.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.latest_epoch()
    }
    /// Where `requested` ends in this log (Kafka's `endOffsetFor`, KIP-101/KIP-279): see
    /// [`LeaderEpochCache::end_offset_for`]; the latest epoch ends at the log end offset.
    pub fn end_offset_for_epoch(&self, requested: LeaderEpoch) -> EpochEnd {
        self.epochs.end_offset_for(requested, self.log_end_offset())
    }
    /// The leader-epoch history, oldest first (tests and inspection).
    pub fn epoch_entries(&self) -> &[EpochEntry] {
        self.epochs.entries()
    }
    /// The leader-epoch history itself.
    pub fn epoch_cache(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_bases(&self) -> Vec<Offset> {
        self.segments.iter().map(|s| s.base).collect()
    }
    /// Sizes in bytes of the segment files, oldest first.
    pub fn segment_sizes(&self) -> Vec<u64> {
        self.segments.iter().map(|s| s.size).collect()
    }
    /// The largest batch timestamp in the log and the offset of the batch holding it.
    pub fn max_timestamp(&self) -> Option<(i64, Offset)> {
        let newest = self.segments.iter().max_by_key(|s| s.max_timestamp)?;
        (newest.max_timestamp >= 0)
            .then_some((newest.max_timestamp, newest.offset_of_max_timestamp))
    }

    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    /// Gives the storage back without syncing or marking a clean shutdown (a crash, in tests).
    pub fn abandon(self) -> S {
        self.storage
    }
}

#[cfg(test)]
mod epoch_tests;
#[cfg(test)]
mod tests;

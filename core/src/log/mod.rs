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

mod compaction;
mod config;
mod epochs;
mod offline;
mod recovery;
mod segment;
mod snapshot;

use crate::error::ErrorCode;
use crate::planted::PlantedBug;
use crate::record::{
    declared_size, set_base_offset, set_log_append_time, set_partition_leader_epoch, Batch,
    BatchError, TimestampType,
};
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
use segment::{BatchSummary, Segment, SegmentFiles, OFFSET_ENTRY_LEN, TIME_ENTRY_LEN};

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

/// Bytes read at a time when a read checks the CRCs of bytes not checked since open.
const VERIFY_CHUNK: usize = 1 << 20;

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

    /// Records that `epoch` starts at the log end: a new leader's first step (Kafka's
    /// `maybeAssignEpochStartOffset`), so OffsetForLeaderEpoch and the followers' divergence
    /// checks know the epoch before any batch carries it. Nothing changes when `epoch` is
    /// already the latest. The entry is kept in memory and written with the checkpoint before
    /// the epoch's first batch: recovery drops an entry at the log end anyway, and the leader
    /// records its epoch again when it comes back.
    pub fn start_leader_epoch(&mut self, epoch: LeaderEpoch) -> Result<(), LogError> {
        if !self.epochs.admits(epoch) {
            return Err(LogError::StaleLeaderEpoch {
                epoch,
                latest: self.epochs.latest_epoch().expect("a history that refuses"),
            });
        }
        let log_end = self.log_end_offset();
        self.epochs_unsaved |= self.epochs.assign(epoch, log_end);
        Ok(())
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

    /// [`PartitionLog::append`] without the offline guard.
    fn append_unguarded(
        &mut self,
        records: &mut [u8],
        leader_epoch: LeaderEpoch,
        now: Millis,
    ) -> Result<AppendInfo, LogError> {
        self.validate_batches(records)?;
        if !self.epochs.admits(leader_epoch) {
            return Err(LogError::StaleLeaderEpoch {
                epoch: leader_epoch,
                latest: self.epochs.latest_epoch().expect("a history that refuses"),
            });
        }
        let log_append_time =
            (self.config.timestamp_type == TimestampType::LogAppendTime).then_some(now);
        let mut next = self.log_end_offset();
        self.scratch.epoch_starts.clear();
        self.scratch.epoch_starts.push(EpochEntry {
            epoch: leader_epoch,
            start_offset: next,
        });
        self.scratch.summaries.clear();
        let mut position = 0;
        while position < records.len() {
            let size = Batch::parse(&records[position..])
                .expect("validated above")
                .size();
            // Exactly one batch: `set_log_append_time` checksums to the end of the slice.
            let bytes = &mut records[position..position + size];
            set_base_offset(bytes, next);
            set_partition_leader_epoch(bytes, leader_epoch);
            if let Some(now) = log_append_time {
                set_log_append_time(bytes, now.0);
            }
            let batch = Batch::parse(bytes).expect("validated above");
            self.scratch.summaries.push(summarize(&batch));
            next = batch.next_offset();
            position += size;
        }
        self.assign_epochs()?;
        self.write_batches(records, now, log_append_time)
    }

    /// [`PartitionLog::append_replicated`] without the offline guard.
    fn append_replicated_unguarded(
        &mut self,
        records: &[u8],
        now: Millis,
    ) -> Result<AppendInfo, LogError> {
        self.validate_batches(records)?;
        let mut log_end = self.log_end_offset();
        let mut latest = self.epochs.latest_epoch();
        self.scratch.summaries.clear();
        self.scratch.epoch_starts.clear();
        let mut position = 0;
        while position < records.len() {
            let batch = Batch::parse(&records[position..]).expect("validated above");
            if batch.base_offset() != log_end {
                return Err(LogError::OffsetsNotMonotonic {
                    base: batch.base_offset(),
                    log_end,
                });
            }
            let epoch = batch.partition_leader_epoch();
            if let Some(latest) = latest.filter(|&latest| epoch < latest) {
                return Err(LogError::StaleLeaderEpoch { epoch, latest });
            }
            if epoch.0 >= 0 && latest.is_none_or(|latest| epoch > latest) {
                latest = Some(epoch);
                self.scratch.epoch_starts.push(EpochEntry {
                    epoch,
                    start_offset: log_end,
                });
            }
            log_end = batch.next_offset();
            self.scratch.summaries.push(summarize(&batch));
            position += batch.size();
        }
        self.assign_epochs()?;
        self.write_batches(records, now, None)
    }

    /// Adds the epochs that the batches about to be written start (`scratch.epoch_starts`,
    /// checked by the caller to follow the history) and persists the history if it grew —
    /// before the batches are written, so a batch on disk always has its epoch in the file;
    /// a crash in between leaves an entry at the log end, which the next open drops.
    fn assign_epochs(&mut self) -> Result<(), LogError> {
        let mut grew = false;
        for entry in &self.scratch.epoch_starts {
            assert!(
                self.epochs.admits(entry.epoch),
                "the caller refused stale epochs"
            );
            grew |= self.epochs.assign(entry.epoch, entry.start_offset);
        }
        if grew || self.epochs_unsaved {
            self.write_epoch_checkpoint()?;
        }
        Ok(())
    }

    /// Persists the leader-epoch history (atomically, durably).
    fn write_epoch_checkpoint(&mut self) -> Result<(), LogError> {
        let bytes = self.epochs.encode();
        self.storage.write_atomic(EPOCH_CHECKPOINT_FILE, &bytes)?;
        self.epochs_unsaved = false;
        Ok(())
    }

    /// Checks that `records` is a run of one or more whole, valid v2 batches.
    fn validate_batches(&self, records: &[u8]) -> Result<(), LogError> {
        if records.is_empty() {
            return Err(BatchError::InvalidRecord("no record batch in the request".into()).into());
        }
        let mut position = 0;
        while position < records.len() {
            let batch = Batch::parse(&records[position..])?;
            batch.validate(self.config.max_message_bytes)?;
            position += batch.size();
        }
        Ok(())
    }

    /// Writes the already-assigned batches `records`, summarized in `scratch.summaries`, to
    /// the active segment (rolling first if needed), updates the indexes and applies the
    /// flush policy.
    fn write_batches(
        &mut self,
        records: &[u8],
        now: Millis,
        log_append_time: Option<Millis>,
    ) -> Result<AppendInfo, LogError> {
        let first = *self.scratch.summaries.first().expect("at least one batch");
        let last = *self.scratch.summaries.last().expect("at least one batch");
        let batch_count = self.scratch.summaries.len();
        self.maybe_roll(
            records.len() as u64,
            first.base_offset,
            last.last_offset,
            now,
        )?;
        let index_interval_bytes = self.config.index_interval_bytes;
        // Disjoint fields, not `active_mut()`: the segment's names are borrowed while the
        // storage and the scratch buffers are written.
        let scratch = &mut self.scratch;
        let segment = self
            .segments
            .last_mut()
            .expect("a log always has an active segment");
        scratch.offset_entries.clear();
        scratch.time_entries.clear();
        // The batches were CRC-checked on their way in: a verified prefix stays whole.
        let verified_before = segment.verified.get() == segment.size;
        let mut position = segment.size;
        for summary in &scratch.summaries {
            let (offset_entry, time_entry) =
                segment.note_batch(position, summary, index_interval_bytes);
            if let Some(entry) = offset_entry {
                scratch.offset_entries.extend_from_slice(&entry.encode());
            }
            if let Some(entry) = time_entry {
                scratch.time_entries.extend_from_slice(&entry.encode());
            }
            position += summary.size;
        }
        segment.last_append = now;
        segment.first_append.get_or_insert(now);
        if verified_before {
            segment.verified.set(segment.size);
        }
        self.storage.append(&segment.files.log, records)?;
        if !scratch.offset_entries.is_empty() {
            self.storage
                .append(&segment.files.index, &scratch.offset_entries)?;
        }
        if !scratch.time_entries.is_empty() {
            self.storage
                .append(&segment.files.time_index, &scratch.time_entries)?;
        }
        let record_count = last.last_offset.0 - first.base_offset.0 + 1;
        self.unflushed_records += record_count as u64;
        self.unflushed_since.get_or_insert(now);
        let synced = self.maybe_flush(now)?;
        self.check_invariants();
        Ok(AppendInfo {
            base_offset: first.base_offset,
            last_offset: last.last_offset,
            batch_count,
            record_count,
            log_append_time,
            synced,
        })
    }

    /// Rolls to a new segment if the active one is full, too old, its index is full, or the
    /// new offsets would not fit its 32-bit relative offsets.
    fn maybe_roll(
        &mut self,
        incoming_bytes: u64,
        first_offset: Offset,
        last_offset: Offset,
        now: Millis,
    ) -> Result<(), LogError> {
        let config = &self.config;
        let segment = self.active();
        if segment.is_empty() {
            return Ok(());
        }
        let full = segment.size + incoming_bytes > config.segment_bytes;
        let aged = segment
            .first_append
            .is_some_and(|first| now.since(first) >= config.segment_ms);
        let index_full = ((segment.offset_index.len() + 1) * OFFSET_ENTRY_LEN) as u64
            > config.segment_index_bytes
            || ((segment.time_index.len() + 1) * TIME_ENTRY_LEN) as u64
                > config.segment_index_bytes;
        let overflow = last_offset.0 - segment.base.0 > i64::from(i32::MAX);
        if full || aged || index_full || overflow {
            self.roll_unguarded(first_offset.max(self.log_end_offset()), now)?;
        }
        Ok(())
    }

    /// [`PartitionLog::roll`] without the offline guard.
    fn roll_unguarded(&mut self, base: Offset, now: Millis) -> Result<Offset, LogError> {
        assert!(
            base >= self.log_end_offset(),
            "a new segment starts at or after the log end"
        );
        if self.active().is_empty() && self.active().base == base {
            return Ok(base);
        }
        self.seal_active()?;
        self.sync_unflushed()?;
        self.active_mut().recent.clear();
        let segment = Segment::new(base, now);
        for name in segment.files.all() {
            self.storage.create(name)?;
        }
        // The new names must survive a crash before anything synced into them is
        // acknowledged: syncing a file does not make its directory entry durable.
        if !crate::planted::is_planted(PlantedBug::SkipDirSync) {
            self.storage.sync_dir()?;
        }
        self.segments.push(segment);
        self.recovery_point = base;
        self.write_checkpoint()?;
        self.check_invariants();
        Ok(base)
    }

    /// Appends the active segment's final time-index entry, as Kafka does on roll and close.
    fn seal_active(&mut self) -> Result<(), LogError> {
        let segment = self
            .segments
            .last_mut()
            .expect("a log always has an active segment");
        if let Some(entry) = segment.next_time_entry() {
            self.storage
                .append(&segment.files.time_index, &entry.encode())?;
        }
        Ok(())
    }

    /// Applies `flush.messages`; returns whether it synced.
    fn maybe_flush(&mut self, now: Millis) -> Result<bool, LogError> {
        let by_count = self
            .config
            .flush_messages
            .is_some_and(|n| self.unflushed_records >= n);
        let by_time = match (self.config.flush_ms, self.unflushed_since) {
            (Some(ms), Some(since)) => now.since(since) >= ms,
            _ => false,
        };
        if (by_count || by_time) && crate::planted::is_planted(PlantedBug::AckBeforeSync) {
            return Ok(true);
        }
        if by_count || by_time {
            self.flush_unguarded()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// [`PartitionLog::tick`] without the offline guard.
    fn tick_unguarded(&mut self, now: Millis) -> Result<(), LogError> {
        self.maybe_flush(now)?;
        Ok(())
    }

    /// [`PartitionLog::flush`] without the offline guard.
    fn flush_unguarded(&mut self) -> Result<(), LogError> {
        self.sync_unflushed()?;
        self.recovery_point = self.log_end_offset();
        Ok(())
    }

    /// Syncs the files of every segment that may hold unsynced bytes.
    fn sync_unflushed(&mut self) -> Result<(), LogError> {
        let recovery_point = self.recovery_point;
        let dirty = self
            .segments
            .iter()
            .filter(|s| s.next_offset > recovery_point || s.base >= recovery_point);
        for segment in dirty {
            for name in segment.files.all() {
                match self.storage.sync(name) {
                    // The fsyncgate mistake: retry, and believe the retry.
                    Err(err) if crate::planted::is_planted(PlantedBug::IgnoreSyncError) => {
                        self.storage.sync(name).map_err(|_| err)?
                    }
                    result => result?,
                }
            }
        }
        self.unflushed_records = 0;
        self.unflushed_since = None;
        Ok(())
    }

    /// Finds the batches to serve from `from`: whole batches of one segment, ending at or
    /// below `upper` (the high watermark or last stable offset), within `max_bytes` — except
    /// that the first batch is returned whole even when larger, so consumers always progress.
    /// `None` when there is nothing below `upper` at `from`.
    pub fn read(
        &self,
        from: Offset,
        max_bytes: u64,
        upper: Offset,
    ) -> Result<Option<ReadSlice>, LogError> {
        self.check_online()?;
        let log_end = self.log_end_offset();
        if from < self.log_start || from > log_end {
            return Err(LogError::OffsetOutOfRange {
                requested: from,
                log_start: self.log_start,
                log_end,
            });
        }
        let upper = upper.min(log_end);
        if from >= upper {
            return Ok(None);
        }
        // The first segment holding a batch that ends at or after `from`; compaction can
        // leave a segment without one (its tail was removed), so look further.
        let index = self.segments.partition_point(|s| s.next_offset <= from);
        let mut found = None;
        for segment in &self.segments[index..] {
            let start = segment.scan_start(from);
            if let Some(hit) = self.find_batch(segment, start, |b| b.last_offset >= from)? {
                found = Some((segment, hit));
                break;
            }
        }
        let Some((segment, (mut position, first))) = found else {
            return Ok(None);
        };
        if first.last_offset >= upper {
            return Ok(None);
        }
        let start = position;
        let mut next_offset = first.last_offset.plus(1);
        position += first.size;
        while position < segment.size && position - start < max_bytes {
            let header = self.read_header(segment, position)?;
            let fits = position - start + header.size <= max_bytes;
            if !fits || header.last_offset >= upper {
                break;
            }
            next_offset = header.last_offset.plus(1);
            position += header.size;
        }
        if let Some((good_end, good_next)) = self.check_unverified(segment, start, position)? {
            position = good_end;
            next_offset = good_next;
        }
        Ok(Some(ReadSlice {
            file: segment.files.log.clone(),
            position: start,
            length: position - start,
            first_offset: first.base_offset,
            next_offset,
        }))
    }

    /// Checks the CRCs of the batches in `[start, end)` of `segment` that were not checked
    /// since it was opened, before they are served. `None` when all are intact; the end and
    /// next offset of the intact batches before a damaged one; an error when the first batch
    /// is damaged — a batch that fails its CRC is never served.
    fn check_unverified(
        &self,
        segment: &Segment,
        start: u64,
        end: u64,
    ) -> Result<Option<(u64, Offset)>, LogError> {
        let verified = segment.verified.get();
        let from = if start <= verified { verified } else { start };
        if from >= end || crate::planted::is_planted(PlantedBug::ServeUnverified) {
            return Ok(None);
        }
        let damaged = self.first_damaged(segment, from, end)?;
        let good_end = damaged.unwrap_or(end);
        if start <= verified {
            segment.verified.set(good_end);
        }
        let Some(bad) = damaged else {
            return Ok(None);
        };
        if bad == start {
            return Err(LogError::CorruptSegment {
                file: segment.files.log.clone(),
                position: bad,
                reason: "the stored batch fails its CRC (damaged on disk); it is not served".into(),
            });
        }
        // The offset after the last intact batch before the damaged one.
        let mut position = start;
        let mut next = segment.base;
        while position < bad {
            let header = self.read_header(segment, position)?;
            next = header.last_offset.plus(1);
            position += header.size;
        }
        Ok(Some((bad, next)))
    }

    /// The position of the first batch in `[from, end)` (whole batches) that fails its CRC,
    /// read in chunks of `VERIFY_CHUNK` through the reused scratch buffer.
    fn first_damaged(
        &self,
        segment: &Segment,
        from: u64,
        end: u64,
    ) -> Result<Option<u64>, LogError> {
        let mut scratch = self.verify_scratch.borrow_mut();
        let mut position = from;
        while position < end {
            let want = ((end - position) as usize).min(VERIFY_CHUNK);
            scratch.resize(want, 0);
            self.storage
                .read_at(&segment.files.log, position, &mut scratch[..want])?;
            let mut offset = 0;
            while offset < want {
                let size = match declared_size(&scratch[offset..want]) {
                    Some(Ok(size)) => size,
                    None if offset > 0 => break, // the next chunk starts with this batch
                    _ => return Ok(Some(position + offset as u64)),
                };
                if offset + size > want {
                    if offset > 0 {
                        break; // the next chunk starts with this batch
                    }
                    // One batch larger than a chunk: check it whole.
                    if position + size as u64 > end {
                        return Ok(Some(position));
                    }
                    scratch.resize(size, 0);
                    self.storage
                        .read_at(&segment.files.log, position, &mut scratch[..size])?;
                }
                let intact = Batch::parse(&scratch[offset..offset + size])
                    .is_ok_and(|batch| batch.verify_crc().is_ok());
                if !intact {
                    return Ok(Some(position + offset as u64));
                }
                offset += size;
            }
            position += offset as u64;
        }
        Ok(None)
    }

    /// Copies a slice's bytes out of storage (the simulator and tests; the server sends them
    /// with `sendfile` instead).
    pub fn read_bytes(&self, slice: &ReadSlice) -> Result<Vec<u8>, LogError> {
        self.check_online()?;
        let mut buf = vec![0; slice.length as usize];
        self.storage
            .read_at(&slice.file, slice.position, &mut buf)?;
        Ok(buf)
    }

    /// Reads and sanity-checks the batch header at `position`: the bytes must look like a v2
    /// batch of this segment, so a damaged index or file never yields garbage locations.
    fn read_header(&self, segment: &Segment, position: u64) -> Result<BatchSummary, LogError> {
        let file = &segment.files.log;
        let corrupt = |reason: String| LogError::CorruptSegment {
            file: file.clone(),
            position,
            reason,
        };
        let batch = match recovery::header_at(&self.storage, file, position, segment.size)? {
            Ok(batch) => batch,
            Err(reason) => return Err(corrupt(reason)),
        };
        if batch.base_offset < segment.base || batch.last_offset >= segment.next_offset {
            return Err(corrupt(format!(
                "batch offset {} outside the segment",
                batch.base_offset
            )));
        }
        Ok(batch)
    }

    /// Walks batch headers from `start` (an index hint) to the first batch matching `found`:
    /// its position and summary, or `None` at the segment's end. If the walk from the hint
    /// meets damage, the hint itself may be bad, so it walks again from the segment start.
    fn find_batch(
        &self,
        segment: &Segment,
        start: u64,
        found: impl Fn(&BatchSummary) -> bool,
    ) -> Result<Option<(u64, BatchSummary)>, LogError> {
        let walk = |mut position: u64| -> Result<Option<(u64, BatchSummary)>, LogError> {
            while position < segment.size {
                let header = self.read_header(segment, position)?;
                if found(&header) {
                    return Ok(Some((position, header)));
                }
                position += header.size;
            }
            Ok(None)
        };
        match walk(start) {
            Err(LogError::CorruptSegment { .. }) if start > 0 => walk(0),
            result => result,
        }
    }

    /// The first offset whose record has a timestamp ≥ `timestamp` (ListOffsets by time),
    /// with that record's timestamp; `None` if every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(Offset, i64)>, LogError> {
        self.check_online()?;
        for segment in self
            .segments
            .iter()
            .filter(|s| s.max_timestamp >= timestamp)
        {
            let start = segment.time_scan_start(timestamp);
            let found = self.find_batch(segment, start, |b| b.max_timestamp >= timestamp)?;
            if let Some((position, batch)) = found {
                return self
                    .record_for_timestamp(segment, position, &batch, timestamp)
                    .map(Some);
            }
        }
        Ok(None)
    }

    /// Looks inside the batch at `position` for its first record (at or after the log start)
    /// whose timestamp is ≥ `timestamp`, as Kafka's ListOffsets answers per record.
    fn record_for_timestamp(
        &self,
        segment: &Segment,
        position: u64,
        summary: &BatchSummary,
        timestamp: i64,
    ) -> Result<(Offset, i64), LogError> {
        let fallback = (
            summary.base_offset.max(self.log_start),
            summary.max_timestamp,
        );
        let mut bytes = vec![0; summary.size as usize];
        self.storage
            .read_at(&segment.files.log, position, &mut bytes)?;
        let batch = Batch::parse(&bytes)?;
        if batch.timestamp_type() == TimestampType::LogAppendTime {
            // Every record of the batch carries the append time.
            return Ok(fallback);
        }
        let records = crate::record::decode_records(&batch, DECOMPRESSED_BYTES_MAX)?;
        let first = records
            .iter()
            .find(|r| r.offset >= self.log_start && r.record.timestamp >= timestamp);
        Ok(first.map_or(fallback, |r| (r.offset, r.record.timestamp)))
    }

    /// [`PartitionLog::truncate_to`] without the offline guard.
    fn truncate_to_unguarded(&mut self, offset: Offset) -> Result<(), LogError> {
        if offset >= self.log_end_offset() {
            // Nothing to cut, but an epoch this broker recorded at the log end as leader,
            // with no batch after it, goes (Kafka's `truncateTo` does the same): a follower
            // must not keep claiming an epoch the new leader's history lacks.
            if self.epochs.truncate_from_end(self.log_end_offset()) {
                self.write_epoch_checkpoint()?;
            }
            return Ok(());
        }
        if offset <= self.log_start {
            return self.truncate_fully_and_start_at_unguarded(offset.max(self.log_start), None);
        }
        while self.segments.len() > 1 && self.active().base >= offset {
            let segment = self.segments.pop().expect("more than one segment");
            self.delete_segment_files(&segment.files)?;
        }
        if offset >= self.log_end_offset() {
            // The cut fell exactly on a segment boundary.
            return self.finish_truncation();
        }
        let segment = self.active().clone();
        let start = segment.scan_start(offset);
        let found = self.find_batch(&segment, start, |b| b.last_offset >= offset)?;
        let (position, cut_offset) = match found {
            Some((position, batch)) => (position, batch.base_offset),
            None => {
                return Err(LogError::CorruptSegment {
                    file: segment.files.log.clone(),
                    position: segment.size,
                    reason: format!("no batch holds offset {offset} below the segment's end"),
                })
            }
        };
        if cut_offset <= self.log_start {
            // Everything from the log start on sits in the batch being cut.
            let start = self.log_start;
            return self.truncate_fully_and_start_at_unguarded(start, None);
        }
        let truncated =
            recovery::truncate_segment(&mut self.storage, &segment, position, cut_offset)?;
        *self.active_mut() = truncated;
        self.finish_truncation()
    }

    /// Pulls the recovery point, high watermark and epoch history back to the new log end.
    fn finish_truncation(&mut self) -> Result<(), LogError> {
        for segment in &mut self.segments {
            segment.recent.clear();
        }
        self.delete_snapshots_above(self.log_end_offset())?;
        // Segments deleted above the cut must stay deleted before the checkpoint says so.
        self.storage.sync_dir()?;
        if self.epochs.truncate_from_end(self.log_end_offset()) {
            self.write_epoch_checkpoint()?;
        }
        self.recovery_point = self.recovery_point.min(self.log_end_offset());
        self.high_watermark = self.high_watermark.min(self.log_end_offset());
        self.write_checkpoint()?;
        self.check_invariants();
        Ok(())
    }

    /// [`PartitionLog::truncate_fully_and_start_at`] without the offline guard.
    fn truncate_fully_and_start_at_unguarded(
        &mut self,
        offset: Offset,
        now: Option<Millis>,
    ) -> Result<(), LogError> {
        let now = now.unwrap_or(self.active().last_append);
        for segment in std::mem::take(&mut self.segments) {
            self.delete_segment_files(&segment.files)?;
        }
        self.delete_snapshots_above(offset)?;
        let segment = Segment::new(offset, now);
        for name in segment.files.all() {
            self.storage.create(name)?;
        }
        self.storage.sync_dir()?;
        self.segments.push(segment);
        self.log_start = offset;
        self.recovery_point = offset;
        self.high_watermark = offset;
        // After the segments are gone: a crash before this leaves stale entries, which the
        // next open cuts at the log end and start, never batches without entries.
        if self.epochs.clear() {
            self.write_epoch_checkpoint()?;
        }
        self.write_checkpoint()?;
        self.check_invariants();
        Ok(())
    }

    /// [`PartitionLog::advance_log_start`] without the offline guard.
    fn advance_log_start_unguarded(&mut self, offset: Offset) -> Result<(), LogError> {
        let log_end = self.log_end_offset();
        if offset > log_end || offset < Offset(0) {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                log_start: self.log_start,
                log_end,
            });
        }
        if offset <= self.log_start {
            return Ok(());
        }
        self.log_start = offset;
        self.high_watermark = self.high_watermark.max(offset);
        self.write_checkpoint()?;
        if self.epochs.truncate_from_start(offset) {
            self.write_epoch_checkpoint()?;
        }
        self.delete_segments_below_start()?;
        self.check_invariants();
        Ok(())
    }

    /// Deletes segments whose every offset is below the log start offset.
    fn delete_segments_below_start(&mut self) -> Result<usize, LogError> {
        let mut deleted = 0;
        while self.segments.len() > 1 && self.segments[1].base <= self.log_start {
            let segment = self.segments.remove(0);
            self.delete_segment_files(&segment.files)?;
            deleted += 1;
        }
        if self.segments.len() == 1 && self.active().next_offset <= self.log_start {
            let start = self.log_start;
            if !self.active().is_empty() || self.active().base < start {
                let now = self.active().last_append;
                self.roll_unguarded(start, now)?;
                let old = self.segments.remove(0);
                self.delete_segment_files(&old.files)?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            self.storage.sync_dir()?;
        }
        Ok(deleted)
    }

    /// [`PartitionLog::apply_retention`] without the offline guard.
    fn apply_retention_unguarded(&mut self, now: Millis) -> Result<usize, LogError> {
        if !self.config.cleanup_delete {
            return Ok(0);
        }
        let mut doomed = 0;
        if let Some(retention_ms) = self.config.retention_ms {
            doomed = self
                .segments
                .iter()
                .take_while(|s| !s.is_empty() && now.since(segment_age_basis(s)) > retention_ms)
                .count();
        }
        if let Some(retention_bytes) = self.config.retention_bytes {
            let mut excess = self.size_bytes().saturating_sub(retention_bytes);
            let by_size = self
                .segments
                .iter()
                .take_while(|s| {
                    let goes = !s.is_empty() && s.size <= excess;
                    excess = excess.saturating_sub(s.size);
                    goes
                })
                .count();
            doomed = doomed.max(by_size);
        }
        if doomed == 0 {
            return Ok(0);
        }
        let new_start = match self.segments.get(doomed) {
            Some(segment) => segment.base,
            None => self.log_end_offset(),
        };
        self.log_start = self.log_start.max(new_start);
        self.high_watermark = self.high_watermark.max(self.log_start);
        self.write_checkpoint()?;
        if self.epochs.truncate_from_start(self.log_start) {
            self.write_epoch_checkpoint()?;
        }
        let deleted = self.delete_segments_below_start()?;
        self.check_invariants();
        Ok(deleted)
    }

    fn delete_segment_files(&mut self, files: &SegmentFiles) -> Result<(), StorageError> {
        for name in files.all() {
            self.storage.delete(name)?;
        }
        Ok(())
    }

    /// Persists the log start offset and recovery point (atomically, durably).
    fn write_checkpoint(&mut self) -> Result<(), LogError> {
        let bytes = recovery::encode_checkpoint(self.log_start, self.recovery_point);
        self.storage.write_atomic(CHECKPOINT_FILE, &bytes)?;
        Ok(())
    }

    /// [`PartitionLog::close`] without the offline guard.
    fn close_unguarded(mut self) -> Result<S, LogError> {
        self.seal_active()?;
        self.flush_unguarded()?;
        self.write_checkpoint()?;
        self.write_epoch_checkpoint()?;
        for segment in &self.segments {
            for name in segment.files.all() {
                self.storage.close(name)?;
            }
        }
        self.storage.write_atomic(CLEAN_SHUTDOWN_FILE, b"")?;
        Ok(self.storage)
    }

    /// Gives the storage back without syncing or marking a clean shutdown (a crash, in tests).
    pub fn abandon(self) -> S {
        self.storage
    }

    /// Checks the relations between the log's offsets and segments (debug builds).
    fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        assert!(
            !self.segments.is_empty(),
            "a log always has an active segment"
        );
        for pair in self.segments.windows(2) {
            assert!(
                pair[0].base < pair[1].base,
                "segments ordered by base offset"
            );
            assert!(
                pair[0].next_offset <= pair[1].base,
                "segments do not overlap"
            );
        }
        for segment in &self.segments {
            assert!(
                segment.next_offset >= segment.base,
                "segment end after its base"
            );
            assert_eq!(
                segment.files,
                SegmentFiles::new(segment.base),
                "cached file names match the base offset"
            );
            assert!(
                segment.size <= i32::MAX as u64,
                "segment positions fit 32 bits"
            );
        }
        assert!(
            self.log_start <= self.log_end_offset(),
            "log start within the log"
        );
        assert!(
            self.recovery_point <= self.log_end_offset(),
            "recovery point within the log"
        );
        assert!(
            self.high_watermark <= self.log_end_offset(),
            "high watermark within the log"
        );
        assert!(self.segments[0].base <= self.log_start.max(self.segments[0].base));
        self.epochs.check_invariants();
        if let Some(first) = self.epochs.entries().first() {
            assert!(
                first.start_offset >= self.log_start,
                "epoch history starts at or after the log start"
            );
        }
        if let Some(latest) = self.epochs.latest_entry() {
            assert!(
                latest.start_offset <= self.log_end_offset(),
                "epoch history ends at or before the log end"
            );
        }
    }
}

/// The time `retention.ms` counts from: the newest timestamp in the segment, or the last
/// append when batches carry no timestamps.
fn segment_age_basis(segment: &Segment) -> Millis {
    if segment.max_timestamp >= 0 {
        Millis(segment.max_timestamp)
    } else {
        segment.last_append
    }
}

fn summarize(batch: &Batch<'_>) -> BatchSummary {
    BatchSummary {
        base_offset: batch.base_offset(),
        last_offset: batch.last_offset(),
        max_timestamp: batch.max_timestamp(),
        leader_epoch: batch.partition_leader_epoch(),
        size: batch.size() as u64,
    }
}

#[cfg(test)]
mod epoch_tests;
#[cfg(test)]
mod tests;

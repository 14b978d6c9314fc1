//! Appending: a leader's batches get offsets and its epoch patched into their headers, a
//! follower's must continue the log end exactly; both are validated, extend the epoch
//! history (persisted first) and are written with one storage append per request.

use super::segment::BatchSummary;
use super::{AppendInfo, EpochEntry, LogError, PartitionLog};
use crate::record::{
    set_base_offset, set_log_append_time, set_partition_leader_epoch, Batch, BatchError,
    TimestampType,
};
use crate::storage::Storage;
use crate::types::{LeaderEpoch, Millis};

impl<S: Storage> PartitionLog<S> {
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

    /// [`PartitionLog::append`] without the offline guard.
    pub(super) fn append_unguarded(
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
    pub(super) fn append_replicated_unguarded(
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
}

pub(super) fn summarize(batch: &Batch<'_>) -> BatchSummary {
    BatchSummary {
        base_offset: batch.base_offset(),
        last_offset: batch.last_offset(),
        max_timestamp: batch.max_timestamp(),
        leader_epoch: batch.partition_leader_epoch(),
        size: batch.size() as u64,
    }
}

//! The offline guard: a storage call that fails while the log changes takes the log
//! offline, as Kafka takes a log directory offline on an `IOException`
//! (`LogDirFailureChannel`). The files may then disagree with the log's state — a partial
//! append on a full disk, pages dropped by a failed sync — so nothing more is written or
//! served (`KAFKA_STORAGE_ERROR`) and a failed sync is never retried (PostgreSQL's
//! "fsyncgate"). Reopening the log — a broker restart — runs recovery from the last durable
//! state and brings it back.

use super::{CompactionReport, LogError, PartitionLog};
use crate::storage::Storage;
use crate::types::{LeaderEpoch, Millis, Offset};

impl<S: Storage> PartitionLog<S> {
    /// Why the log is offline, if a storage failure took it offline.
    pub fn offline_reason(&self) -> Option<&str> {
        self.offline.as_deref()
    }

    /// Fails with [`LogError::Offline`] if the log is offline.
    pub(super) fn check_online(&self) -> Result<(), LogError> {
        match &self.offline {
            Some(reason) => Err(LogError::Offline {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Runs a change of the log: refused while offline; a storage failure takes it offline.
    pub(super) fn guarded<T>(
        &mut self,
        change: impl FnOnce(&mut Self) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        self.check_online()?;
        let result = change(self);
        if let Err(LogError::Storage(err)) = &result {
            self.offline = Some(err.to_string());
        }
        result
    }

    /// Runs background work (retention, compaction, the time-based flush): skipped while
    /// offline — the failure that took the log offline was reported once — and a storage
    /// failure takes the log offline.
    fn guarded_background<T: Default>(
        &mut self,
        work: impl FnOnce(&mut Self) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        if self.offline.is_some() {
            return Ok(T::default());
        }
        self.guarded(work)
    }

    /// Appends the batches in `records` (one produce request's records for this partition,
    /// v2 batches only) as leader: validates them, assigns offsets from the log end offset and
    /// the leader epoch by patching the headers, and writes them in one storage append.
    /// A `leader_epoch` newer than the log's latest starts a new epoch at the log end offset
    /// (persisted first); one below it is refused with [`LogError::StaleLeaderEpoch`] before
    /// anything is patched or written (a stale leader must not extend the log).
    pub fn append(
        &mut self,
        records: &mut [u8],
        leader_epoch: LeaderEpoch,
        now: Millis,
    ) -> Result<super::AppendInfo, LogError> {
        self.guarded(|log| log.append_unguarded(records, leader_epoch, now))
    }

    /// Appends batches that already carry offsets (a follower copying its leader): they must
    /// be valid and continue the log end offset exactly, batch after batch (recovery relies
    /// on offsets being contiguous within a segment until compaction exists). Each batch's own
    /// `partition_leader_epoch` extends the epoch history; a batch whose epoch is below the
    /// latest (in the log or earlier in `records`) refuses the whole request with
    /// [`LogError::StaleLeaderEpoch`] and nothing is written.
    pub fn append_replicated(
        &mut self,
        records: &[u8],
        now: Millis,
    ) -> Result<super::AppendInfo, LogError> {
        self.guarded(|log| log.append_replicated_unguarded(records, now))
    }

    /// Closes the active segment (final time-index entry, sync) and starts a new one at
    /// `base`. Returns the new segment's base offset.
    pub fn roll(&mut self, base: Offset, now: Millis) -> Result<Offset, LogError> {
        self.guarded(|log| log.roll_unguarded(base, now))
    }

    /// Runs the time-based parts of the policy: `flush.ms`. Call it on the driver's timer.
    pub fn tick(&mut self, now: Millis) -> Result<(), LogError> {
        self.guarded_background(|log| log.tick_unguarded(now))
    }

    /// Syncs everything appended so far; afterwards the recovery point is the log end offset.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.guarded(|log| log.flush_unguarded())
    }

    /// Removes every batch holding an offset ≥ `offset` (a follower after a leader change):
    /// the log end becomes `offset`, or the base of the batch containing it. Epochs that
    /// started at or after the new end leave the history. Durable on return.
    pub fn truncate_to(&mut self, offset: Offset) -> Result<(), LogError> {
        self.guarded(|log| log.truncate_to_unguarded(offset))
    }

    /// Deletes every segment and starts an empty log at `offset` (a replica too far behind);
    /// the epoch history is cleared.
    /// `now` defaults to the active segment's last append time for the new segment's clock.
    pub fn truncate_fully_and_start_at(
        &mut self,
        offset: Offset,
        now: Option<Millis>,
    ) -> Result<(), LogError> {
        self.guarded(|log| log.truncate_fully_and_start_at_unguarded(offset, now))
    }

    /// Moves the log start offset forward (DeleteRecords); segments wholly below it go, and so
    /// do the epochs that ended below it (the one covering it now starts there).
    /// `offset` must not exceed the high watermark; the caller checks that against the request.
    pub fn advance_log_start(&mut self, offset: Offset) -> Result<(), LogError> {
        self.guarded(|log| log.advance_log_start_unguarded(offset))
    }

    /// Applies `retention.ms` and `retention.bytes`: deletes the oldest segments that are
    /// too old or push the log over its size limit, rolling first if the active segment
    /// must go too. Returns how many segments were deleted.
    pub fn apply_retention(&mut self, now: Millis) -> Result<usize, LogError> {
        self.guarded_background(|log| log.apply_retention_unguarded(now))
    }

    /// Compacts every segment but the active one, if the log is compacted and a segment was
    /// rolled since the last pass (so each pass has new data to look at).
    pub fn compact(&mut self, now: Millis) -> Result<CompactionReport, LogError> {
        self.guarded_background(|log| log.compact_unguarded(now))
    }

    /// Syncs everything, writes the checkpoint and the clean-shutdown marker, and releases the
    /// files. The next open trusts the files and skips the recovery scan.
    /// An offline log is not closed cleanly: it fails, and the next open recovers it.
    pub fn close(self) -> Result<S, LogError> {
        self.check_online()?;
        self.close_unguarded()
    }
}

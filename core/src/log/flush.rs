//! Durability: the flush policy (`flush.messages`, `flush.ms`), syncing unsynced segments,
//! the checkpoint files (log start and recovery point, leader epochs) and the clean close.

use super::{
    recovery, LogError, PartitionLog, CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE, EPOCH_CHECKPOINT_FILE,
};
use crate::planted::PlantedBug;
use crate::storage::Storage;
use crate::types::Millis;

impl<S: Storage> PartitionLog<S> {
    /// Applies `flush.messages`; returns whether it synced.
    pub(super) fn maybe_flush(&mut self, now: Millis) -> Result<bool, LogError> {
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
    pub(super) fn tick_unguarded(&mut self, now: Millis) -> Result<(), LogError> {
        self.maybe_flush(now)?;
        Ok(())
    }

    /// [`PartitionLog::flush`] without the offline guard.
    pub(super) fn flush_unguarded(&mut self) -> Result<(), LogError> {
        self.sync_unflushed()?;
        self.recovery_point = self.log_end_offset();
        Ok(())
    }

    /// Syncs the files of every segment that may hold unsynced bytes.
    pub(super) fn sync_unflushed(&mut self) -> Result<(), LogError> {
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

    /// Persists the log start offset and recovery point (atomically, durably).
    pub(super) fn write_checkpoint(&mut self) -> Result<(), LogError> {
        let bytes = recovery::encode_checkpoint(self.log_start, self.recovery_point);
        self.storage.write_atomic(CHECKPOINT_FILE, &bytes)?;
        Ok(())
    }

    /// Persists the leader-epoch history (atomically, durably).
    pub(super) fn write_epoch_checkpoint(&mut self) -> Result<(), LogError> {
        let bytes = self.epochs.encode();
        self.storage.write_atomic(EPOCH_CHECKPOINT_FILE, &bytes)?;
        self.epochs_unsaved = false;
        Ok(())
    }

    /// [`PartitionLog::close`] without the offline guard.
    pub(super) fn close_unguarded(mut self) -> Result<S, LogError> {
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
}

//! Segment turnover: rolling to a new active segment (by size, age, index room or offset
//! overflow), sealing the old one, and deleting a segment's files.

use super::segment::{Segment, SegmentFiles, OFFSET_ENTRY_LEN, TIME_ENTRY_LEN};
use super::{LogError, PartitionLog};
use crate::planted::PlantedBug;
use crate::storage::{Storage, StorageError};
use crate::types::{Millis, Offset};

impl<S: Storage> PartitionLog<S> {
    /// Rolls to a new segment if the active one is full, too old, its index is full, or the
    /// new offsets would not fit its 32-bit relative offsets.
    pub(super) fn maybe_roll(
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
    pub(super) fn roll_unguarded(&mut self, base: Offset, now: Millis) -> Result<Offset, LogError> {
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
    pub(super) fn seal_active(&mut self) -> Result<(), LogError> {
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

    pub(super) fn delete_segment_files(
        &mut self,
        files: &SegmentFiles,
    ) -> Result<(), StorageError> {
        for name in files.all() {
            self.storage.delete(name)?;
        }
        Ok(())
    }
}

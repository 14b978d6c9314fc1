//! Moving the log start: DeleteRecords (`advance_log_start`) and retention by time and
//! size; segments wholly below the log start are deleted.

use super::segment::Segment;
use super::{LogError, PartitionLog};
use crate::storage::Storage;
use crate::types::{Millis, Offset};

impl<S: Storage> PartitionLog<S> {
    /// [`PartitionLog::advance_log_start`] without the offline guard.
    pub(super) fn advance_log_start_unguarded(&mut self, offset: Offset) -> Result<(), LogError> {
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
    pub(super) fn apply_retention_unguarded(&mut self, now: Millis) -> Result<usize, LogError> {
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

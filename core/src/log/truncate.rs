//! Truncation: cutting the log back to an offset (a follower after a leader change), or
//! deleting it all and starting again at an offset (a replica too far behind).

use super::segment::Segment;
use super::{recovery, LogError, PartitionLog};
use crate::storage::Storage;
use crate::types::{Millis, Offset};

impl<S: Storage> PartitionLog<S> {
    /// [`PartitionLog::truncate_to`] without the offline guard.
    pub(super) fn truncate_to_unguarded(&mut self, offset: Offset) -> Result<(), LogError> {
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
    pub(super) fn truncate_fully_and_start_at_unguarded(
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
}

//! The relations between the log's offsets and segments, asserted after every change
//! (debug builds).

use super::segment::SegmentFiles;
use super::PartitionLog;
use crate::storage::Storage;

impl<S: Storage> PartitionLog<S> {
    /// Checks the relations between the log's offsets and segments (debug builds).
    pub(super) fn check_invariants(&self) {
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

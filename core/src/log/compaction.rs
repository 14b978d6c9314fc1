//! Log compaction (`cleanup.policy=compact`): in every segment but the active one, a record
//! is dropped when a later record in the log has the same key. Offsets never change — kept
//! records keep theirs, so a compacted log has gaps — and every batch keeps its last offset,
//! so each segment still ends where it did.
//!
//! Not yet: removing tombstones after `delete.retention.ms`, and merging small segments.

use std::collections::HashMap;

use super::segment::Segment;
use super::{LogError, PartitionLog};
use crate::record::{
    decode_records, set_partition_leader_epoch, Batch, BatchBuilder, Batches, Compression,
};
use crate::storage::Storage;
use crate::types::{Millis, Offset};

/// The most bytes a batch may decompress to while compacting.
const DECOMPRESSED_BYTES_MAX: usize = 256 << 20;

/// What one compaction pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Segments rewritten.
    pub segments_rewritten: usize,
    /// Records removed because a later record has the same key.
    pub records_removed: u64,
}

impl<S: Storage> PartitionLog<S> {
    /// Compaction ([`PartitionLog::compact`]) without the offline guard.
    pub(super) fn compact_unguarded(&mut self, now: Millis) -> Result<CompactionReport, LogError> {
        let active_base = self.active().base;
        if !self.config.cleanup_compact || self.compacted_below >= active_base {
            return Ok(CompactionReport::default());
        }
        let latest = self.latest_offsets_by_key()?;
        let mut report = CompactionReport::default();
        for index in 0..self.segments.len() - 1 {
            let (bytes, removed) = self.compacted_segment(index, &latest)?;
            if removed == 0 {
                continue;
            }
            self.rewrite_segment(index, &bytes, now)?;
            report.segments_rewritten += 1;
            report.records_removed += removed;
        }
        self.compacted_below = active_base;
        self.check_invariants();
        Ok(report)
    }

    /// A segment's whole `.log` file.
    fn segment_bytes(&self, index: usize) -> Result<Vec<u8>, LogError> {
        let segment = &self.segments[index];
        let mut bytes = vec![0; segment.size as usize];
        self.storage.read_at(&segment.files.log, 0, &mut bytes)?;
        Ok(bytes)
    }

    /// For every key in the log, the offset of its newest record.
    fn latest_offsets_by_key(&self) -> Result<HashMap<Vec<u8>, Offset>, LogError> {
        let mut latest = HashMap::new();
        for index in 0..self.segments.len() {
            let bytes = self.segment_bytes(index)?;
            for batch in Batches::new(&bytes) {
                let batch = batch?;
                if batch.is_control() {
                    continue;
                }
                for record in decode_records(&batch, DECOMPRESSED_BYTES_MAX)? {
                    if let Some(key) = record.record.key {
                        latest.insert(key, record.offset);
                    }
                }
            }
        }
        Ok(latest)
    }

    /// The segment's batches without superseded records, and how many records were dropped.
    fn compacted_segment(
        &self,
        index: usize,
        latest: &HashMap<Vec<u8>, Offset>,
    ) -> Result<(Vec<u8>, u64), LogError> {
        let bytes = self.segment_bytes(index)?;
        let mut out = Vec::with_capacity(bytes.len());
        let mut removed = 0;
        for batch in Batches::new(&bytes) {
            let batch = batch?;
            if batch.is_control() {
                out.extend_from_slice(batch.as_bytes());
                continue;
            }
            let records = decode_records(&batch, DECOMPRESSED_BYTES_MAX)?;
            let keep = |r: &&crate::record::DecodedRecord| match &r.record.key {
                Some(key) => latest.get(key) == Some(&r.offset),
                None => true,
            };
            let kept: Vec<_> = records.iter().filter(keep).collect();
            removed += (records.len() - kept.len()) as u64;
            if kept.len() == records.len() {
                out.extend_from_slice(batch.as_bytes());
            } else if !kept.is_empty() {
                out.extend_from_slice(&rebuild_batch(&batch, &kept));
            }
        }
        Ok((out, removed))
    }

    /// Replaces a segment's file with `bytes` and rebuilds its indexes. Index files go first,
    /// so a crash in between leaves the log with missing indexes (rebuilt on open), never
    /// with indexes pointing into a file they do not describe.
    fn rewrite_segment(&mut self, index: usize, bytes: &[u8], now: Millis) -> Result<(), LogError> {
        let old = self.segments[index].clone();
        self.storage.delete(&old.files.index)?;
        self.storage.delete(&old.files.time_index)?;
        self.storage.write_atomic(&old.files.log, bytes)?;
        let mut segment = Segment::new(old.base, now);
        segment.last_append = old.last_append;
        segment.first_append = old.first_append;
        let mut offset_entries = Vec::new();
        let mut time_entries = Vec::new();
        let mut position = 0;
        for batch in Batches::new(bytes) {
            let batch = batch?;
            let summary = super::append::summarize(&batch);
            let (offset_entry, time_entry) =
                segment.note_batch(position, &summary, self.config.index_interval_bytes);
            offset_entries.extend(offset_entry.map(|e| e.encode()));
            time_entries.extend(time_entry.map(|e| e.encode()));
            position += summary.size;
        }
        time_entries.extend(segment.next_time_entry().map(|e| e.encode()));
        // The segment still covers the offsets it did; the next one starts where it did.
        segment.next_offset = old.next_offset;
        self.storage
            .write_atomic(&old.files.index, offset_entries.as_flattened())?;
        self.storage
            .write_atomic(&old.files.time_index, time_entries.as_flattened())?;
        self.segments[index] = segment;
        Ok(())
    }
}

/// A batch holding only `kept` of its records, with the same offsets, producer fields,
/// codec, timestamp type, last offset and leader epoch.
fn rebuild_batch(batch: &Batch<'_>, kept: &[&crate::record::DecodedRecord]) -> Vec<u8> {
    let base = batch.base_offset();
    let mut builder = BatchBuilder::new(base)
        .producer(
            batch.producer_id(),
            batch.producer_epoch(),
            batch.base_sequence(),
        )
        .attributes(batch.attributes() & !0x07)
        .compression(batch.compression().unwrap_or(Compression::None))
        .last_offset_delta(batch.last_offset_delta());
    for record in kept {
        builder.push_at_delta((record.offset.0 - base.0) as i32, &record.record);
    }
    let mut bytes = builder.build();
    set_partition_leader_epoch(&mut bytes, batch.partition_leader_epoch());
    bytes
}

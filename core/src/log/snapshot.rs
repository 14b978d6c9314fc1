//! Producer-state snapshots: files named `<20-digit offset>.snapshot` beside the segments,
//! as Kafka keeps them, each holding the state of the partition's idempotent producers as of
//! that offset (every batch below it), so a restart rebuilds that state by loading the
//! newest snapshot and replaying only the batches after it — instead of forgetting producers
//! whose last batch lies in an older segment and then appending their retries again.
//!
//! The log stores the broker's encoding as opaque bytes behind a CRC-32C. A snapshot is
//! written with `write_atomic`, so it is durable when the call returns; snapshots above the
//! log end (after a truncation, or a crash that lost the tail) are deleted, since the batches
//! they describe are gone. The two newest snapshots are kept.

use super::segment::parse_file_name;
use super::segment::BatchSummary;
use super::{LogError, PartitionLog, ProducerBatch};
use crate::storage::Storage;
use crate::types::Offset;

/// Snapshots kept after a new one is written.
const SNAPSHOTS_KEPT: usize = 2;

/// The file name of the snapshot at `offset`.
fn snapshot_file(offset: Offset) -> String {
    format!("{:020}.snapshot", offset.0)
}

impl<S: Storage> PartitionLog<S> {
    /// The offsets of the snapshot files present, oldest first.
    fn snapshot_offsets(&self) -> Result<Vec<Offset>, LogError> {
        let mut offsets: Vec<Offset> = self
            .storage
            .list()?
            .iter()
            .filter_map(|name| parse_file_name(name))
            .filter(|(_, extension)| *extension == "snapshot")
            .map(|(offset, _)| offset)
            .collect();
        offsets.sort();
        Ok(offsets)
    }

    /// Stores `payload` as the producer state as of `offset` (a segment boundary the log has
    /// reached), then deletes all but the newest snapshots.
    pub fn write_producer_snapshot(
        &mut self,
        offset: Offset,
        payload: &[u8],
    ) -> Result<(), LogError> {
        self.guarded(|log| {
            let mut bytes = Vec::with_capacity(4 + payload.len());
            bytes.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
            bytes.extend_from_slice(payload);
            log.storage.write_atomic(&snapshot_file(offset), &bytes)?;
            let offsets = log.snapshot_offsets()?;
            let excess = offsets.len().saturating_sub(SNAPSHOTS_KEPT);
            for old in &offsets[..excess] {
                log.storage.delete(&snapshot_file(*old))?;
            }
            Ok(())
        })
    }

    /// The newest intact snapshot at or below the log end: its offset and payload. Snapshots
    /// above the log end are deleted first; a damaged one is skipped for an older one.
    pub fn producer_snapshot(&mut self) -> Result<Option<(Offset, Vec<u8>)>, LogError> {
        self.guarded(|log| {
            log.delete_snapshots_above(log.log_end_offset())?;
            for offset in log.snapshot_offsets()?.into_iter().rev() {
                let Some(bytes) = log.storage.read_all(&snapshot_file(offset))? else {
                    continue;
                };
                if bytes.len() < 4 {
                    continue;
                }
                let (crc, payload) = bytes.split_at(4);
                if crc32c::crc32c(payload).to_be_bytes() == crc {
                    return Ok(Some((offset, payload.to_vec())));
                }
            }
            Ok(None)
        })
    }

    /// Deletes the snapshots whose offset is above `end`: they describe batches the log no
    /// longer holds.
    pub(super) fn delete_snapshots_above(&mut self, end: Offset) -> Result<(), LogError> {
        for offset in self.snapshot_offsets()? {
            if offset > end {
                self.storage.delete(&snapshot_file(offset))?;
            }
        }
        Ok(())
    }

    /// The idempotent-producer fields of every batch holding an offset at or above `from`,
    /// oldest first: what a restart replays on top of the snapshot at `from`.
    pub fn producer_batches_from(&self, from: Offset) -> Result<Vec<ProducerBatch>, LogError> {
        self.check_online()?;
        let mut out = Vec::new();
        for segment in self.segments.iter().filter(|s| s.next_offset > from) {
            let mut position = segment.scan_start(from);
            while position < segment.size {
                let summary = self.read_header(segment, position)?;
                if summary.last_offset >= from {
                    let mut header = [0u8; crate::record::HEADER_LEN];
                    self.storage
                        .read_at(&segment.files.log, position, &mut header)?;
                    if let Some(mut batch) = producer_fields(&header, &summary) {
                        if batch.is_control {
                            if let Some(marker) = self.marker(segment, position, &summary)? {
                                batch.control_type = Some(marker.control_type);
                                batch.marker_token = marker.token;
                            }
                        }
                        out.push(batch);
                    }
                }
                position += summary.size;
            }
        }
        Ok(out)
    }
}

impl<S: Storage> PartitionLog<S> {
    /// The marker batch at `position` (`None` if it is not a readable transaction marker:
    /// it then ends nothing, as Kafka skips unknown control records).
    fn marker(
        &self,
        segment: &super::segment::Segment,
        position: u64,
        summary: &BatchSummary,
    ) -> Result<Option<crate::record::ControlMarker>, LogError> {
        if summary.size > MARKER_BATCH_BYTES_MAX {
            return Ok(None);
        }
        let mut bytes = vec![0u8; summary.size as usize];
        self.storage
            .read_at(&segment.files.log, position, &mut bytes)?;
        let marker = crate::record::Batch::parse(&bytes)
            .ok()
            .and_then(|batch| crate::record::ControlMarker::decode(&batch).ok());
        Ok(marker)
    }
}

/// The largest control batch read for its marker; a real one is under 100 bytes.
const MARKER_BATCH_BYTES_MAX: u64 = 4096;

/// The producer fields of a batch header, or `None` for a batch without a producer id.
fn producer_fields(header: &[u8], summary: &BatchSummary) -> Option<ProducerBatch> {
    let field = |at: usize, len: usize| &header[at..at + len];
    let producer_id = i64::from_be_bytes(field(43, 8).try_into().expect("8 bytes"));
    if producer_id < 0 {
        return None;
    }
    let attributes = i16::from_be_bytes(field(21, 2).try_into().expect("2 bytes"));
    Some(ProducerBatch {
        producer_id: crate::types::ProducerId(producer_id),
        producer_epoch: crate::types::ProducerEpoch(i16::from_be_bytes(
            field(51, 2).try_into().expect("2 bytes"),
        )),
        base_sequence: i32::from_be_bytes(field(53, 4).try_into().expect("4 bytes")),
        base_offset: summary.base_offset,
        last_offset: summary.last_offset,
        is_control: attributes & 0x20 != 0,
        is_transactional: attributes & 0x10 != 0,
        control_type: None,
        marker_token: -1,
    })
}

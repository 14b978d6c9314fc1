//! Reading: the whole batches of one segment from an offset ([`ReadSlice`] locations),
//! bounded by bytes and an upper offset; ListOffsets by time; and the CRC check of bytes
//! not checked since open, so a batch damaged on disk is never served.

use super::segment::{BatchSummary, Segment};
use super::{recovery, LogError, PartitionLog, ReadSlice, DECOMPRESSED_BYTES_MAX};
use crate::planted::PlantedBug;
use crate::record::{declared_size, Batch, TimestampType};
use crate::storage::Storage;
use crate::types::Offset;

/// Bytes read at a time when a read checks the CRCs of bytes not checked since open.
const VERIFY_CHUNK: usize = 1 << 20;

impl<S: Storage> PartitionLog<S> {
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
    pub(super) fn read_header(
        &self,
        segment: &Segment,
        position: u64,
    ) -> Result<BatchSummary, LogError> {
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
    pub(super) fn find_batch(
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
}

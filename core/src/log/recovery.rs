//! Opening a log: trusting what a clean shutdown left, scanning and repairing what a crash
//! left, and the checkpoint file that says where each begins.

use super::segment::{
    decode_offset_index, decode_time_index, BatchSummary, Segment, SegmentFiles, OFFSET_ENTRY_LEN,
    TIME_ENTRY_LEN,
};
use super::{
    parse_file_name, AppendScratch, LeaderEpochCache, LogConfig, LogError, PartitionLog,
    CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE, EPOCH_CHECKPOINT_FILE,
};
use crate::planted::{is_planted, PlantedBug};
use crate::record::{Batch, HEADER_LEN, LOG_OVERHEAD, MAGIC_OFFSET, MAGIC_V2};
use crate::storage::{Storage, StorageError};
use crate::types::{LeaderEpoch, Millis, Offset};

const CHECKPOINT_MAGIC: &[u8; 6] = b"BRKCP\x01";
const CHECKPOINT_LEN: usize = CHECKPOINT_MAGIC.len() + 8 + 8 + 4;

/// What opening a log found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Whether the previous run closed the log cleanly (no scan was needed).
    pub clean: bool,
    /// Segments whose batches were read and CRC-checked.
    pub segments_scanned: usize,
    /// Bytes cut from the end of a segment because they were torn or corrupt.
    pub bytes_truncated: u64,
    /// Segments deleted because they followed a corrupt one or were stray.
    pub segments_deleted: usize,
    /// Human-readable notes on each repair, for the driver to log.
    pub repairs: Vec<String>,
}

/// Encodes the checkpoint: magic, log start offset, recovery point, CRC-32C of the rest.
pub(super) fn encode_checkpoint(log_start: Offset, recovery_point: Offset) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHECKPOINT_LEN);
    out.extend_from_slice(CHECKPOINT_MAGIC);
    out.extend_from_slice(&log_start.0.to_be_bytes());
    out.extend_from_slice(&recovery_point.0.to_be_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes a checkpoint: (log start, recovery point), or `None` if damaged.
fn decode_checkpoint(bytes: &[u8]) -> Option<(Offset, Offset)> {
    if bytes.len() != CHECKPOINT_LEN || !bytes.starts_with(CHECKPOINT_MAGIC) {
        return None;
    }
    let body = &bytes[..CHECKPOINT_LEN - 4];
    let crc = u32::from_be_bytes(bytes[CHECKPOINT_LEN - 4..].try_into().ok()?);
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let at = CHECKPOINT_MAGIC.len();
    let log_start = i64::from_be_bytes(bytes[at..at + 8].try_into().ok()?);
    let recovery_point = i64::from_be_bytes(bytes[at + 8..at + 16].try_into().ok()?);
    (log_start >= 0 && recovery_point >= 0).then_some((Offset(log_start), Offset(recovery_point)))
}

/// Reads the batch header at `position` of a `.log` file of `file_size` bytes and checks
/// that it can be a v2 batch lying wholly inside the file. The outer error is a storage
/// failure; the inner one says why the bytes are not a batch.
pub(super) fn header_at<S: Storage>(
    storage: &S,
    file: &str,
    position: u64,
    file_size: u64,
) -> Result<Result<BatchSummary, String>, StorageError> {
    if position + HEADER_LEN as u64 > file_size {
        return Ok(Err("batch header runs past the end of the segment".into()));
    }
    let mut header = [0u8; HEADER_LEN];
    storage.read_at(file, position, &mut header)?;
    if header[MAGIC_OFFSET] as i8 != MAGIC_V2 {
        return Ok(Err(format!(
            "magic {} where a batch starts",
            header[MAGIC_OFFSET] as i8
        )));
    }
    let length = i32::from_be_bytes(header[8..12].try_into().expect("4 bytes"));
    let size = LOG_OVERHEAD as u64 + u64::try_from(length).unwrap_or(0);
    if size < HEADER_LEN as u64 || position + size > file_size {
        return Ok(Err(format!(
            "batch length {length} does not fit the segment"
        )));
    }
    let base = i64::from_be_bytes(header[0..8].try_into().expect("8 bytes"));
    let delta = i32::from_be_bytes(header[23..27].try_into().expect("4 bytes"));
    if base < 0 || delta < 0 {
        return Ok(Err(format!(
            "batch offset {base} with delta {delta} is impossible"
        )));
    }
    Ok(Ok(BatchSummary {
        base_offset: Offset(base),
        last_offset: Offset(base.saturating_add(i64::from(delta))),
        max_timestamp: i64::from_be_bytes(header[35..43].try_into().expect("8 bytes")),
        leader_epoch: LeaderEpoch(i32::from_be_bytes(
            header[12..16].try_into().expect("4 bytes"),
        )),
        size,
    }))
}

impl<S: Storage> PartitionLog<S> {
    /// Opens the log in `storage`, creating it if empty. After a clean close the files are
    /// trusted; otherwise every segment from the checkpointed recovery point on is scanned,
    /// its CRCs verified, a torn or corrupt tail truncated (with every later segment) and its
    /// indexes rebuilt. Damaged or missing index files of trusted segments are rebuilt too.
    /// The leader-epoch history is recovered by the rule in `epochs.rs`'s module doc.
    pub fn open(
        mut storage: S,
        config: LogConfig,
        now: Millis,
    ) -> Result<(PartitionLog<S>, RecoveryReport), LogError> {
        config.validate()?;
        let names = storage.list()?;
        let mut report = RecoveryReport {
            clean: names.iter().any(|n| n == CLEAN_SHUTDOWN_FILE),
            ..RecoveryReport::default()
        };
        // From here on a crash must look unclean: the marker's removal must be durable
        // before anything is written that a trusted open would not check.
        if report.clean {
            storage.delete(CLEAN_SHUTDOWN_FILE)?;
            storage.sync_dir()?;
        }
        let checkpoint = storage
            .read_all(CHECKPOINT_FILE)?
            .and_then(|b| decode_checkpoint(&b));
        if checkpoint.is_none() && !names.is_empty() && !report.clean {
            report
                .repairs
                .push("no valid checkpoint: scanning every segment".into());
        }
        let bases = segment_bases(&mut storage, &names, &mut report)?;
        let recovery_point = match (report.clean, checkpoint) {
            (true, _) => Offset(i64::MAX),
            (false, Some((_, point))) => point,
            (false, None) => Offset(0),
        };
        let stored_epochs = storage.read_all(EPOCH_CHECKPOINT_FILE)?;
        // The newest epoch the history file names: it is written before a batch of a new
        // epoch is, so a scanned batch of a newer one is damage (see `scan_segment`).
        let newest_epoch = (stored_epochs.as_deref())
            .and_then(LeaderEpochCache::decode)
            .and_then(|epochs| epochs.latest_epoch());
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
        let mut first_scanned = None;
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let follows = segments.last().is_none_or(|prev| prev.next_offset <= base);
            if !follows {
                report
                    .repairs
                    .push(format!("segment {base} overlaps the one before: deleted"));
                delete_from(&mut storage, &bases[i..], &mut report)?;
                break;
            }
            let trusted = report.clean || next_base.is_some_and(|next| next <= recovery_point);
            let loaded = match trusted {
                true => load_segment(&mut storage, base, next_base, now, &mut report)?,
                false => None,
            };
            let (segment, intact) = match loaded {
                Some(segment) => (segment, true),
                None => {
                    first_scanned = first_scanned.or(Some(segments.len()));
                    let scan = Scan { base, newest_epoch };
                    scan_segment(&mut storage, &config, scan, now, &mut report)?
                }
            };
            let ends_before_next = next_base.is_none_or(|next| segment.next_offset <= next);
            segments.push(segment);
            if !intact || !ends_before_next {
                delete_from(&mut storage, &bases[i + 1..], &mut report)?;
                break;
            }
        }
        let first_base = segments.first().map(|s| s.base);
        let log_start = match checkpoint {
            Some((start, _)) => start.max(first_base.unwrap_or(start)),
            None => first_base.unwrap_or(Offset(0)),
        };
        if segments.is_empty() {
            let segment = Segment::new(log_start, now);
            for name in segment.files.all() {
                storage.create(name)?;
            }
            segments.push(segment);
        }
        // Repairs (deleted segments, created files) are durable before the checkpoint below
        // describes the log they left.
        storage.sync_dir()?;
        let log_end = segments.last().expect("at least one segment").next_offset;
        let mut log = PartitionLog {
            storage,
            config,
            segments,
            log_start: log_start.min(log_end),
            recovery_point: log_end,
            high_watermark: log_start.min(log_end),
            unflushed_records: 0,
            unflushed_since: None,
            compacted_below: Offset(0),
            epochs: LeaderEpochCache::new(),
            epochs_unsaved: false,
            scratch: AppendScratch::default(),
            verify_scratch: Default::default(),
            offline: None,
        };
        log.epochs = log.recover_epochs(stored_epochs.as_deref(), first_scanned, &mut report)?;
        if log_start > log_end {
            report.repairs.push(format!(
                "log start {log_start} beyond recovered end {log_end}"
            ));
            log.truncate_fully_and_start_at(log_start, Some(now))?;
        }
        if is_planted(PlantedBug::DropTailOnRecovery) && !report.clean && log_end > log_start {
            log.truncate_to(log_end.plus(-1))?;
        }
        log.write_checkpoint()?;
        // A new, empty log needs no file yet: a missing one means "rebuild", which is free
        // here. Otherwise the file is rewritten only if recovery changed the history.
        let encoded = log.epochs.encode();
        let current = match stored_epochs.as_deref() {
            Some(stored) => stored == encoded.as_slice(),
            None => log.epochs.entries().is_empty() && log.size_bytes() == 0,
        };
        if !current {
            log.write_epoch_checkpoint()?;
        }
        log.check_invariants();
        Ok((log, report))
    }

    /// The leader-epoch history of the opened log, by the rule in `epochs.rs`'s module doc:
    /// the stored file cut at the log end and re-derived from the segments from index
    /// `first_scanned` on, or rebuilt from every segment when the file is missing, damaged or
    /// disagrees with the batches; then cut at the log start.
    fn recover_epochs(
        &self,
        stored: Option<&[u8]>,
        first_scanned: Option<usize>,
        report: &mut RecoveryReport,
    ) -> Result<LeaderEpochCache, LogError> {
        let log_end = self.log_end_offset();
        let mut epochs = match stored.map(LeaderEpochCache::decode) {
            Some(Some(mut epochs)) => {
                epochs.truncate_from_end(log_end);
                let tail = first_scanned.unwrap_or(self.segments.len());
                if let Some(segment) = self.segments.get(tail) {
                    epochs.truncate_from_end(segment.base);
                }
                let agrees = self.assign_batch_epochs(&mut epochs, tail, report)?;
                if !agrees {
                    report
                        .repairs
                        .push("leader-epoch checkpoint disagrees with the batches: rebuilt".into());
                }
                agrees.then_some(epochs)
            }
            Some(None) => {
                report
                    .repairs
                    .push("damaged leader-epoch checkpoint: rebuilt from the batches".into());
                None
            }
            None => {
                if self.size_bytes() > 0 {
                    report
                        .repairs
                        .push("no leader-epoch checkpoint: rebuilt from the batches".into());
                }
                None
            }
        };
        if epochs.is_none() {
            let mut rebuilt = LeaderEpochCache::new();
            if !self.assign_batch_epochs(&mut rebuilt, 0, report)? {
                report.repairs.push(
                    "a batch's leader epoch goes backwards: epoch history kept up to it".into(),
                );
            }
            epochs = Some(rebuilt);
        }
        let mut epochs = epochs.expect("recovered or rebuilt");
        epochs.truncate_from_start(self.log_start);
        Ok(epochs)
    }

    /// Assigns to `epochs` the leader epoch of every batch in the segments from index `from`
    /// on, oldest first. Returns `false` (stopping there) at a batch whose epoch is below the
    /// history's newest: the history and the log disagree. A batch header that cannot be read
    /// ends the walk with a repair note; the read path reports that damage when it is reached.
    fn assign_batch_epochs(
        &self,
        epochs: &mut LeaderEpochCache,
        from: usize,
        report: &mut RecoveryReport,
    ) -> Result<bool, LogError> {
        for segment in self.segments.iter().skip(from) {
            let mut position = 0;
            while position < segment.size {
                let header = match self.read_header(segment, position) {
                    Ok(header) => header,
                    Err(LogError::CorruptSegment { reason, .. }) => {
                        report.repairs.push(format!(
                            "segment {}: epoch history stops at position {position}: {reason}",
                            segment.base
                        ));
                        return Ok(true);
                    }
                    Err(err) => return Err(err),
                };
                let epoch = header.leader_epoch;
                position += header.size;
                if epoch.0 < 0 {
                    continue; // a batch without an epoch adds no entry (Kafka)
                }
                if !epochs.admits(epoch) {
                    return Ok(false);
                }
                epochs.assign(epoch, header.base_offset);
            }
        }
        Ok(true)
    }
}

/// The base offsets of the `.log` files, sorted; stray index files are deleted.
fn segment_bases<S: Storage>(
    storage: &mut S,
    names: &[String],
    report: &mut RecoveryReport,
) -> Result<Vec<Offset>, StorageError> {
    let mut bases: Vec<Offset> = names
        .iter()
        .filter_map(|name| parse_file_name(name))
        .filter(|(_, extension)| *extension == "log")
        .map(|(base, _)| base)
        .collect();
    bases.sort();
    for name in names {
        if let Some((base, "index" | "timeindex")) = parse_file_name(name) {
            if bases.binary_search(&base).is_err() {
                report
                    .repairs
                    .push(format!("stray index file {name} deleted"));
                storage.delete(name)?;
            }
        }
    }
    Ok(bases)
}

/// Deletes the files of the given segments (those after a corrupt one).
fn delete_from<S: Storage>(
    storage: &mut S,
    bases: &[Offset],
    report: &mut RecoveryReport,
) -> Result<(), StorageError> {
    for &base in bases {
        for name in SegmentFiles::new(base).all() {
            storage.delete(name)?;
        }
        report.segments_deleted += 1;
        report
            .repairs
            .push(format!("segment {base} deleted: it follows damaged data"));
    }
    Ok(())
}

/// Loads a trusted segment from its index files, walking only the batch headers after the
/// last index entry. `None` if anything does not add up (the caller then scans it).
fn load_segment<S: Storage>(
    storage: &mut S,
    base: Offset,
    next_base: Option<Offset>,
    now: Millis,
    report: &mut RecoveryReport,
) -> Result<Option<Segment>, StorageError> {
    let mut segment = Segment::new(base, now);
    let file = &segment.files.log;
    let size = storage.size(file)?;
    let index_bytes = storage.read_all(&segment.files.index)?.unwrap_or_default();
    segment.size = size;
    segment.offset_index = decode_offset_index(&index_bytes, size);
    let mut position = segment
        .offset_index
        .last()
        .map_or(0, |e| u64::from(e.position));
    let mut next_offset = base;
    let mut max_seen = (-1i64, base);
    while position < size {
        let summary = match header_at(storage, file, position, size)? {
            Ok(summary) if summary.base_offset >= next_offset => summary,
            _ => return Ok(None),
        };
        if summary.max_timestamp > max_seen.0 {
            max_seen = (summary.max_timestamp, summary.last_offset);
        }
        next_offset = summary.last_offset.plus(1);
        position += summary.size;
    }
    if next_base.is_some_and(|next| next_offset > next) {
        return Ok(None);
    }
    segment.next_offset = next_offset;
    let time_bytes = storage
        .read_all(&segment.files.time_index)?
        .unwrap_or_default();
    segment.time_index = decode_time_index(&time_bytes, (next_offset.0 - base.0) as u64);
    let indexed = segment
        .time_index
        .last()
        .map(|e| (e.timestamp, base.plus(i64::from(e.relative_offset))));
    let (max_timestamp, offset_of_max) = indexed.filter(|i| i.0 >= max_seen.0).unwrap_or(max_seen);
    segment.max_timestamp = max_timestamp;
    segment.offset_of_max_timestamp = offset_of_max;
    segment.bytes_since_index_entry = size
        - segment
            .offset_index
            .last()
            .map_or(0, |e| u64::from(e.position));
    segment.first_append = (size > 0).then_some(now);
    let offset_entries = segment.offset_index.len() * OFFSET_ENTRY_LEN;
    let time_entries = segment.time_index.len() * TIME_ENTRY_LEN;
    if offset_entries != index_bytes.len() || time_entries != time_bytes.len() {
        report
            .repairs
            .push(format!("segment {base}: damaged index entries dropped"));
        write_indexes(storage, &segment)?;
    }
    Ok(Some(segment))
}

/// Reads every batch of a segment, verifying lengths, CRCs and offset order; truncates the
/// file at the first bad byte and rewrites both indexes. Returns the segment and whether it
/// was intact.
/// What a segment's scan checks its batches against.
struct Scan {
    /// The segment's base offset.
    base: Offset,
    /// The newest epoch of the stored leader-epoch history, when the file is intact.
    newest_epoch: Option<LeaderEpoch>,
}

fn scan_segment<S: Storage>(
    storage: &mut S,
    config: &LogConfig,
    scan: Scan,
    now: Millis,
    report: &mut RecoveryReport,
) -> Result<(Segment, bool), StorageError> {
    let Scan { base, newest_epoch } = scan;
    let mut segment = Segment::new(base, now);
    let file = segment.files.log.clone();
    let size = storage.size(&file)?;
    let mut buf = Vec::new();
    let mut problem = None;
    report.segments_scanned += 1;
    while segment.size < size {
        let position = segment.size;
        let summary = match header_at(storage, &file, position, size)? {
            Ok(summary) => summary,
            Err(reason) => {
                problem = Some(reason);
                break;
            }
        };
        buf.resize(summary.size as usize, 0);
        storage.read_at(&file, position, &mut buf)?;
        let verdict = Batch::parse(&buf).and_then(|batch| {
            if is_planted(PlantedBug::SkipRecoveryCrc) {
                return Ok(batch);
            }
            batch.verify_crc().map(|()| batch)
        });
        if let Err(err) = verdict {
            problem = Some(err.to_string());
            break;
        }
        // The base offset sits outside the CRC's range, so damage there passes the check
        // above. Within a segment this log writes contiguous offsets (appends and replicated
        // appends continue the log end), so without compaction any jump is damage. The
        // first batch may start after the segment's base, but within 32-bit reach of it.
        let expected = (segment.size > 0).then_some(segment.next_offset);
        // Compaction leaves gaps, so a compacted log only requires offsets to increase.
        let jumped = expected.is_some_and(|next| match config.cleanup_compact {
            true => summary.base_offset < next,
            false => summary.base_offset != next,
        });
        let out_of_reach =
            summary.base_offset < base || summary.last_offset.0 - base.0 > i64::from(i32::MAX);
        if jumped || out_of_reach {
            problem = Some(format!(
                "batch offset {} does not continue the segment at {}",
                summary.base_offset, segment.next_offset
            ));
            break;
        }
        // The leader epoch sits outside the CRC's range as well. The history file names an
        // epoch before the first batch of it is written, so an epoch newer than the file's
        // newest is damage — kept, it would make the log refuse every leader after.
        if newest_epoch.is_some_and(|newest| summary.leader_epoch > newest) {
            problem = Some(format!(
                "batch leader epoch {} is newer than the history's newest, {}",
                summary.leader_epoch.0,
                newest_epoch.map_or(-1, |e| e.0)
            ));
            break;
        }
        segment.note_batch(position, &summary, config.index_interval_bytes);
    }
    if let Some(reason) = &problem {
        let cut = size - segment.size;
        report.bytes_truncated += cut;
        report.repairs.push(format!(
            "segment {base}: {cut} bytes truncated at position {}: {reason}",
            segment.size
        ));
        storage.truncate(&file, segment.size)?;
    }
    segment.next_time_entry();
    segment.first_append = (segment.size > 0).then_some(now);
    storage.sync(&file)?;
    write_indexes(storage, &segment)?;
    Ok((segment, problem.is_none()))
}

/// Rewrites a segment's index files from its in-memory indexes, durably.
fn write_indexes<S: Storage>(storage: &mut S, segment: &Segment) -> Result<(), StorageError> {
    let offset_bytes: Vec<u8> = segment
        .offset_index
        .iter()
        .flat_map(|e| e.encode())
        .collect();
    let time_bytes: Vec<u8> = segment.time_index.iter().flat_map(|e| e.encode()).collect();
    for (name, bytes) in [
        (&segment.files.index, offset_bytes),
        (&segment.files.time_index, time_bytes),
    ] {
        storage.create(name)?;
        storage.truncate(name, 0)?;
        storage.append(name, &bytes)?;
        storage.sync(name)?;
    }
    Ok(())
}

/// Cuts a segment at `position`, where the batch starting at `cut_offset` begins, and trims
/// its indexes to match; durable on return.
pub(super) fn truncate_segment<S: Storage>(
    storage: &mut S,
    segment: &Segment,
    position: u64,
    cut_offset: Offset,
) -> Result<Segment, StorageError> {
    let mut cut = segment.clone();
    cut.size = position;
    cut.verified.set(cut.verified.get().min(position));
    cut.next_offset = cut_offset;
    let keep = cut
        .offset_index
        .partition_point(|e| u64::from(e.position) < position);
    cut.offset_index.truncate(keep);
    let relative_end = cut_offset.0 - cut.base.0;
    let keep = cut
        .time_index
        .partition_point(|e| i64::from(e.relative_offset) < relative_end);
    cut.time_index.truncate(keep);
    match cut.time_index.last() {
        Some(last) => {
            cut.max_timestamp = last.timestamp;
            cut.offset_of_max_timestamp = cut.base.plus(i64::from(last.relative_offset));
        }
        None => {
            cut.max_timestamp = -1;
            cut.offset_of_max_timestamp = cut.base;
        }
    }
    cut.bytes_since_index_entry =
        position - cut.offset_index.last().map_or(0, |e| u64::from(e.position));
    if position == 0 {
        cut.first_append = None;
    }
    storage.truncate(&cut.files.log, position)?;
    storage.sync(&cut.files.log)?;
    write_indexes(storage, &cut)?;
    Ok(cut)
}

//! One segment of a partition log: its `.log` file of batches and its two sparse indexes,
//! held in memory and mirrored to `.index` and `.timeindex` files in Kafka's formats.

use crate::types::{LeaderEpoch, Millis, Offset};

/// Bytes per offset-index entry: relative offset (4) and file position (4).
pub const OFFSET_ENTRY_LEN: usize = 8;
/// Bytes per time-index entry: timestamp (8) and relative offset (4).
pub const TIME_ENTRY_LEN: usize = 12;

/// The `.log` file name for a segment: the base offset in 20 digits, as Kafka names it.
pub fn log_file(base: Offset) -> String {
    format!("{:020}.log", base.0)
}

/// The offset-index file name for a segment.
pub fn index_file(base: Offset) -> String {
    format!("{:020}.index", base.0)
}

/// The time-index file name for a segment.
pub fn time_index_file(base: Offset) -> String {
    format!("{:020}.timeindex", base.0)
}

/// The base offset a segment file name encodes, with its extension; `None` for other files.
pub fn parse_file_name(name: &str) -> Option<(Offset, &str)> {
    let (stem, extension) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base = stem.parse::<i64>().ok()?;
    Some((Offset(base), extension))
}

/// A segment's three file names, formatted once when the segment is created or opened:
/// every append, read and sync names a file, and formatting the names there cost about 5 %
/// of append time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFiles {
    /// The `.log` file of batches.
    pub log: String,
    /// The `.index` file (offset index).
    pub index: String,
    /// The `.timeindex` file (time index).
    pub time_index: String,
}

impl SegmentFiles {
    /// The file names of the segment starting at `base`.
    pub fn new(base: Offset) -> SegmentFiles {
        SegmentFiles {
            log: log_file(base),
            index: index_file(base),
            time_index: time_index_file(base),
        }
    }

    /// All three names, `.log` first, for creating, syncing, closing or deleting them together.
    pub fn all(&self) -> [&str; 3] {
        [&self.log, &self.index, &self.time_index]
    }
}

/// An offset-index entry: the last offset of a batch and where that batch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Offset relative to the segment's base.
    pub relative_offset: u32,
    /// Byte position of the batch in the `.log` file.
    pub position: u32,
}

/// A time-index entry: the largest timestamp seen so far and the batch offset holding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest timestamp up to this point of the segment.
    pub timestamp: i64,
    /// Offset (relative to the segment's base) of the batch that holds it.
    pub relative_offset: u32,
}

impl OffsetEntry {
    /// The entry's on-disk bytes.
    pub fn encode(&self) -> [u8; OFFSET_ENTRY_LEN] {
        let mut out = [0; OFFSET_ENTRY_LEN];
        out[..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        out[4..].copy_from_slice(&self.position.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> OffsetEntry {
        OffsetEntry {
            relative_offset: u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")),
            position: u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes")),
        }
    }
}

impl TimeEntry {
    /// The entry's on-disk bytes.
    pub fn encode(&self) -> [u8; TIME_ENTRY_LEN] {
        let mut out = [0; TIME_ENTRY_LEN];
        out[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..].copy_from_slice(&self.relative_offset.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> TimeEntry {
        TimeEntry {
            timestamp: i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
            relative_offset: u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes")),
        }
    }
}

/// Decodes an offset index, keeping the longest prefix of entries that could be real:
/// positions and offsets strictly increasing, positions inside a log of `log_size` bytes.
/// Anything after the first implausible entry (a torn write, zero fill, damage) is dropped.
pub fn decode_offset_index(bytes: &[u8], log_size: u64) -> Vec<OffsetEntry> {
    let mut entries: Vec<OffsetEntry> = Vec::with_capacity(bytes.len() / OFFSET_ENTRY_LEN);
    for chunk in bytes.chunks_exact(OFFSET_ENTRY_LEN) {
        let entry = OffsetEntry::decode(chunk);
        let increasing = entries.last().is_none_or(|last| {
            entry.relative_offset > last.relative_offset && entry.position > last.position
        });
        if !increasing || entry.position == 0 || u64::from(entry.position) >= log_size {
            break;
        }
        entries.push(entry);
    }
    entries
}

/// Decodes a time index the same way: timestamps and offsets strictly increasing, offsets
/// below `relative_end` (the segment's next offset minus its base).
pub fn decode_time_index(bytes: &[u8], relative_end: u64) -> Vec<TimeEntry> {
    let mut entries: Vec<TimeEntry> = Vec::with_capacity(bytes.len() / TIME_ENTRY_LEN);
    for chunk in bytes.chunks_exact(TIME_ENTRY_LEN) {
        let entry = TimeEntry::decode(chunk);
        let increasing = entries.last().is_none_or(|last| {
            entry.timestamp > last.timestamp && entry.relative_offset >= last.relative_offset
        });
        if !increasing || u64::from(entry.relative_offset) >= relative_end {
            break;
        }
        entries.push(entry);
    }
    entries
}

/// A segment's state as the log keeps it in memory.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Offset of the first record the segment may hold; its file names encode it.
    pub base: Offset,
    /// The segment's file names (derived from `base`).
    pub files: SegmentFiles,
    /// Bytes in the `.log` file.
    pub size: u64,
    /// The offset after the segment's last batch (equals `base` when empty).
    pub next_offset: Offset,
    /// Largest batch max-timestamp in the segment, -1 if none.
    pub max_timestamp: i64,
    /// Offset of the batch with the largest timestamp.
    pub offset_of_max_timestamp: Offset,
    /// When the driver first appended to the segment (or opened it, after a restart):
    /// `segment.ms` counts from it.
    pub first_append: Option<Millis>,
    /// When the driver last appended to (or opened) the segment; retention falls back on it
    /// for batches without timestamps.
    pub last_append: Millis,
    /// Batch bytes appended since the last offset-index entry.
    pub bytes_since_index_entry: u64,
    /// The sparse offset index.
    pub offset_index: Vec<OffsetEntry>,
    /// The sparse time index.
    pub time_index: Vec<TimeEntry>,
    /// Bytes from the segment's start whose batch CRCs have been checked since it was opened
    /// or created (appended here, or served once): a read checks what lies beyond before
    /// serving it, so a batch damaged on disk is never served.
    pub verified: std::cell::Cell<u64>,
    /// The last offset and position of the batches most recently appended here (at most
    /// [`RECENT_BATCHES`]): reads near the end — followers and consumers keeping up — find
    /// their batch without scanning headers from the last index entry. Filled as batches are
    /// noted (appends, recovery scans, compaction rewrites — positions that stay valid),
    /// emptied whenever positions could change (truncation) and when a roll seals it.
    pub recent: std::collections::VecDeque<(Offset, u64)>,
}

/// How many recently appended batches a segment remembers the positions of.
pub const RECENT_BATCHES: usize = 64;

impl Segment {
    /// An empty segment starting at `base`.
    pub fn new(base: Offset, now: Millis) -> Segment {
        Segment {
            base,
            files: SegmentFiles::new(base),
            size: 0,
            next_offset: base,
            max_timestamp: -1,
            offset_of_max_timestamp: base,
            first_append: None,
            last_append: now,
            bytes_since_index_entry: 0,
            offset_index: Vec::new(),
            time_index: Vec::new(),
            verified: std::cell::Cell::new(0),
            recent: std::collections::VecDeque::new(),
        }
    }

    /// Whether the segment holds no batch.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The offset relative to the base, for index entries.
    pub fn relative(&self, offset: Offset) -> u32 {
        let relative = offset.0 - self.base.0;
        debug_assert!(
            (0..=i64::from(u32::MAX)).contains(&relative),
            "relative offset {relative}"
        );
        relative as u32
    }

    /// Where to start scanning for `offset`: the position of the remembered recent batch that
    /// holds it (or the segment's end, past its last batch) when it lies after the first
    /// remembered one; otherwise the position of the last indexed batch whose last offset is
    /// below `offset` — the batch after it is the first that can hold `offset` — or 0 when no
    /// entry helps.
    pub fn scan_start(&self, offset: Offset) -> u64 {
        if self.recent.front().is_some_and(|&(last, _)| last < offset) {
            // Past the first remembered batch: the batch holding `offset` is remembered (or
            // `offset` is at the end): start right at it.
            let at = self.recent.partition_point(|&(last, _)| last < offset);
            return self
                .recent
                .get(at)
                .map_or(self.size, |&(_, position)| position);
        }
        let target = offset.0 - self.base.0;
        let below = self
            .offset_index
            .partition_point(|e| i64::from(e.relative_offset) < target);
        match below {
            0 => 0,
            n => u64::from(self.offset_index[n - 1].position),
        }
    }

    /// Where to start scanning for the first batch with max timestamp ≥ `timestamp`.
    pub fn time_scan_start(&self, timestamp: i64) -> u64 {
        let below = self.time_index.partition_point(|e| e.timestamp < timestamp);
        match below {
            0 => 0,
            n => {
                let offset = self
                    .base
                    .plus(i64::from(self.time_index[n - 1].relative_offset));
                self.scan_start(offset)
            }
        }
    }

    /// Records a batch appended at `position` in the in-memory state; returns the index entries
    /// to persist (offset entry, time entry) if the index interval was crossed.
    pub fn note_batch(
        &mut self,
        position: u64,
        batch: &BatchSummary,
        index_interval_bytes: u64,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        debug_assert_eq!(position, self.size, "batches are appended at the end");
        debug_assert!(batch.base_offset >= self.next_offset, "offsets increase");
        if batch.max_timestamp > self.max_timestamp {
            self.max_timestamp = batch.max_timestamp;
            self.offset_of_max_timestamp = batch.last_offset;
        }
        let mut entries = (None, None);
        if self.bytes_since_index_entry >= index_interval_bytes && position > 0 {
            let offset_entry = OffsetEntry {
                relative_offset: self.relative(batch.last_offset),
                position: position as u32,
            };
            self.offset_index.push(offset_entry);
            entries.0 = Some(offset_entry);
            entries.1 = self.next_time_entry();
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += batch.size;
        if self.recent.len() == RECENT_BATCHES {
            self.recent.pop_front();
        }
        self.recent.push_back((batch.last_offset, position));
        self.size += batch.size;
        self.next_offset = batch.last_offset.plus(1);
        entries
    }

    /// A time-index entry for the newest max timestamp, if it is newer than the last entry.
    pub fn next_time_entry(&mut self) -> Option<TimeEntry> {
        let newer = self
            .time_index
            .last()
            .is_none_or(|last| self.max_timestamp > last.timestamp);
        if self.max_timestamp < 0 || !newer {
            return None;
        }
        let entry = TimeEntry {
            timestamp: self.max_timestamp,
            relative_offset: self.relative(self.offset_of_max_timestamp),
        };
        self.time_index.push(entry);
        Some(entry)
    }
}

/// What the log needs to know of a batch to index it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSummary {
    /// Offset of the first record.
    pub base_offset: Offset,
    /// Offset of the last record.
    pub last_offset: Offset,
    /// The batch's max timestamp.
    pub max_timestamp: i64,
    /// The epoch of the leader that appended it (-1: none).
    pub leader_epoch: LeaderEpoch,
    /// Bytes the batch takes, header included.
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_file_names_are_twenty_digit_base_offsets() {
        assert_eq!(log_file(Offset(0)), "00000000000000000000.log");
        assert_eq!(index_file(Offset(42)), "00000000000000000042.index");
        assert_eq!(time_index_file(Offset(7)), "00000000000000000007.timeindex");
        assert_eq!(
            parse_file_name("00000000000000000042.index"),
            Some((Offset(42), "index"))
        );
        assert_eq!(parse_file_name("42.log"), None);
        assert_eq!(parse_file_name("log.checkpoint"), None);
    }

    #[test]
    fn segment_files_are_named_from_the_base_offset() {
        let segment = Segment::new(Offset(42), Millis(0));
        assert_eq!(segment.files, SegmentFiles::new(Offset(42)));
        assert_eq!(
            segment.files.all(),
            [
                log_file(Offset(42)).as_str(),
                index_file(Offset(42)).as_str(),
                time_index_file(Offset(42)).as_str(),
            ]
        );
    }

    #[test]
    fn offset_index_decoding_stops_at_zero_fill_and_bad_entries() {
        let mut bytes = Vec::new();
        for (offset, position) in [(3u32, 4100u32), (9, 8300), (15, 12_500)] {
            let entry = OffsetEntry {
                relative_offset: offset,
                position,
            };
            bytes.extend_from_slice(&entry.encode());
        }
        bytes.extend_from_slice(&[0; 16]); // preallocated tail
        assert_eq!(decode_offset_index(&bytes, 20_000).len(), 3);
        assert_eq!(
            decode_offset_index(&bytes, 9000).len(),
            2,
            "position past end of log"
        );
        bytes[11] = 1; // damage the second entry: its offset goes backwards
        assert_eq!(decode_offset_index(&bytes, 20_000).len(), 1);
    }

    #[test]
    fn segment_scan_start_uses_the_last_entry_below_the_target() {
        let mut segment = Segment::new(Offset(100), Millis(0));
        segment.offset_index = vec![
            OffsetEntry {
                relative_offset: 9,
                position: 5000,
            },
            OffsetEntry {
                relative_offset: 19,
                position: 9000,
            },
        ];
        assert_eq!(segment.scan_start(Offset(105)), 0);
        assert_eq!(
            segment.scan_start(Offset(109)),
            0,
            "offset 109 is in the indexed batch"
        );
        assert_eq!(segment.scan_start(Offset(110)), 5000);
        assert_eq!(segment.scan_start(Offset(150)), 9000);
    }
}

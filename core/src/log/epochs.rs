//! The leader-epoch cache (KIP-101, KIP-279): for each leader epoch the log holds batches of,
//! the offset of its first batch — Kafka's `LeaderEpochFileCache`. A follower asks its new
//! leader where one of its own epochs ends (OffsetForLeaderEpoch) and truncates there, instead
//! of trusting the high watermark, so a leader change never leaves replicas with different
//! records at the same offset.
//!
//! The entries are kept in order: epochs strictly increasing, start offsets non-decreasing,
//! every start offset within `[log start, log end]` of the log that owns the cache.
//!
//! **Persistence.** The partition directory holds the history in `leader-epoch-checkpoint`,
//! Kafka's text format: a version line (`0`), an entry-count line, then one `epoch offset`
//! line per entry, each line ending in `\n`. The log replaces it atomically (`write_atomic`)
//! when an append is about to start a new epoch — *before* the batch is written, so a batch on
//! disk always has its epoch in the file — after every truncation and log start advance, and
//! on clean close.
//!
//! **Recovery rule** (`PartitionLog::open`): a missing or damaged file is rebuilt from the
//! batch headers of every segment. Otherwise the stored history is cut at the log end offset
//! (a crash may have lost batches whose epoch was recorded first); if the open scanned any
//! segment, the history is also cut at the first scanned segment's base and re-derived from
//! the `partition_leader_epoch` of every batch from there to the end (a batch whose epoch is
//! below the history's newest means the file disagrees with the log: full rebuild; a scanned
//! batch of an epoch *newer* than the file's newest is damage — the epoch field lies outside
//! the CRC — and the scan cuts the log there, as at a torn batch). Last, the
//! history is cut at the log start offset ([`LeaderEpochCache::truncate_from_start`]).
//! Batches without an epoch (negative) add no entry, as in Kafka.

use crate::types::{LeaderEpoch, Offset};

/// Name of the file that holds the leader-epoch history in the partition directory.
pub const EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// OffsetForLeaderEpoch's `UNDEFINED_EPOCH`: no epoch is known.
pub const UNDEFINED_EPOCH: LeaderEpoch = LeaderEpoch(-1);
/// OffsetForLeaderEpoch's `UNDEFINED_EPOCH_OFFSET`: no end offset is known.
pub const UNDEFINED_EPOCH_OFFSET: Offset = Offset(-1);
/// The only version of the checkpoint file's format.
const FILE_VERSION: u32 = 0;

/// One entry of the history: `epoch` starts at `start_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: LeaderEpoch,
    /// The offset of the first batch of that epoch.
    pub start_offset: Offset,
}

/// The answer to "where does this epoch end" ([`LeaderEpochCache::end_offset_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEnd {
    /// The largest known epoch at or below the one asked for (or the one asked for when it
    /// precedes every known epoch); [`UNDEFINED_EPOCH`] when there is no answer.
    pub epoch: LeaderEpoch,
    /// The offset after the last record of that epoch; [`UNDEFINED_EPOCH_OFFSET`] when there
    /// is no answer.
    pub end_offset: Offset,
}

impl EpochEnd {
    /// The "no answer" pair: (`UNDEFINED_EPOCH`, `UNDEFINED_EPOCH_OFFSET`).
    pub const UNDEFINED: EpochEnd = EpochEnd {
        epoch: UNDEFINED_EPOCH,
        end_offset: UNDEFINED_EPOCH_OFFSET,
    };
}

/// A partition's leader-epoch history: ordered (epoch, start offset) entries. See the module
/// doc for its invariants, file and recovery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    /// Epochs strictly increasing, start offsets non-decreasing; epochs and offsets ≥ 0.
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// An empty history.
    pub fn new() -> LeaderEpochCache {
        LeaderEpochCache::default()
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest entry, if any.
    pub fn latest_entry(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The newest epoch, if any.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.latest_entry().map(|entry| entry.epoch)
    }

    /// Whether a batch of `epoch` may follow the history: not below its newest epoch.
    /// (An epoch without an entry — negative — may follow an empty history only.)
    pub fn admits(&self, epoch: LeaderEpoch) -> bool {
        self.latest_epoch().is_none_or(|latest| epoch >= latest)
    }

    /// Records that batches of `epoch` start at `start_offset`, the log end offset where a
    /// batch of that epoch is appended. Adds an entry only when `epoch` is newer than the
    /// latest one; returns whether it did. A negative epoch adds nothing. The caller refuses
    /// older epochs first ([`LeaderEpochCache::admits`]); one that gets here anyway, or a start
    /// offset below the latest entry's, is a bug: asserted in debug builds, ignored otherwise.
    pub fn assign(&mut self, epoch: LeaderEpoch, start_offset: Offset) -> bool {
        if epoch.0 < 0 {
            debug_assert!(self.entries.is_empty(), "epoch {epoch:?} after the history");
            return false;
        }
        debug_assert!(
            start_offset.0 >= 0,
            "start offset {start_offset} is negative"
        );
        if let Some(latest) = self.latest_entry() {
            let in_order = epoch >= latest.epoch && start_offset >= latest.start_offset;
            debug_assert!(in_order, "{epoch:?} at {start_offset} after {latest:?}");
            if !in_order || epoch == latest.epoch {
                return false;
            }
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.check_invariants();
        true
    }

    /// Where `requested` ends, by Kafka's `LeaderEpochFileCache.endOffsetFor`: `UNDEFINED_EPOCH`
    /// → undefined; the latest epoch → (it, `log_end`); an epoch above every known one (or an
    /// empty history) → undefined; otherwise the largest known epoch ≤ `requested` — or
    /// `requested` itself when it precedes every known epoch — with the start offset of the
    /// first known epoch above `requested`.
    pub fn end_offset_for(&self, requested: LeaderEpoch, log_end: Offset) -> EpochEnd {
        if requested == UNDEFINED_EPOCH {
            return EpochEnd::UNDEFINED;
        }
        if self.latest_epoch() == Some(requested) {
            return EpochEnd {
                epoch: requested,
                end_offset: log_end,
            };
        }
        let above = self.entries.partition_point(|e| e.epoch <= requested);
        let Some(higher) = self.entries.get(above) else {
            return EpochEnd::UNDEFINED;
        };
        let epoch = match above.checked_sub(1) {
            Some(floor) => self.entries[floor].epoch,
            None => requested,
        };
        EpochEnd {
            epoch,
            end_offset: higher.start_offset,
        }
    }

    /// The log was truncated to `end_offset` (it is the new log end): drops every entry that
    /// starts at or after it. Returns whether anything changed.
    pub fn truncate_from_end(&mut self, end_offset: Offset) -> bool {
        if end_offset.0 < 0 {
            return false;
        }
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// The log start advanced to `start_offset`: entries starting at or below it are dropped
    /// except the last of them, which now starts at `start_offset` (its epoch still covers
    /// the records there). Returns whether anything changed.
    pub fn truncate_from_start(&mut self, start_offset: Offset) -> bool {
        let below = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        let Some(last_below) = below.checked_sub(1) else {
            return false;
        };
        let moved = EpochEntry {
            epoch: self.entries[last_below].epoch,
            start_offset,
        };
        let changed = last_below > 0 || self.entries[0] != moved;
        self.entries.drain(..last_below);
        self.entries[0] = moved;
        self.check_invariants();
        changed
    }

    /// Drops every entry (the log was emptied). Returns whether anything changed.
    pub fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// The checkpoint file's bytes: `0`, the entry count, then `epoch offset` lines.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{FILE_VERSION}\n{}\n", self.entries.len());
        for entry in &self.entries {
            out.push_str(&format!("{} {}\n", entry.epoch.0, entry.start_offset.0));
        }
        out.into_bytes()
    }

    /// Parses the checkpoint file; `None` if it is damaged: not UTF-8, another version, a
    /// count that does not match the lines, a malformed or negative number, entries out of
    /// order, or anything after the last entry.
    pub fn decode(bytes: &[u8]) -> Option<LeaderEpochCache> {
        let text = std::str::from_utf8(bytes).ok()?;
        if !text.ends_with('\n') {
            return None; // a torn or truncated last line
        }
        let mut lines = text.lines();
        if lines.next()?.parse::<u32>().ok()? != FILE_VERSION {
            return None;
        }
        let count = lines.next()?.parse::<usize>().ok()?;
        let mut cache = LeaderEpochCache::new();
        for line in lines {
            let mut fields = line.split_whitespace();
            let epoch = fields.next()?.parse::<i32>().ok()?;
            let start_offset = fields.next()?.parse::<i64>().ok()?;
            let follows = cache.latest_entry().is_none_or(|latest| {
                epoch > latest.epoch.0 && start_offset >= latest.start_offset.0
            });
            if fields.next().is_some() || epoch < 0 || start_offset < 0 || !follows {
                return None;
            }
            cache.entries.push(EpochEntry {
                epoch: LeaderEpoch(epoch),
                start_offset: Offset(start_offset),
            });
        }
        (cache.entries.len() == count).then_some(cache)
    }

    /// Checks the order of the entries (debug builds).
    pub fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        for entry in &self.entries {
            assert!(entry.epoch.0 >= 0, "epochs are not negative");
            assert!(entry.start_offset.0 >= 0, "start offsets are not negative");
        }
        for pair in self.entries.windows(2) {
            assert!(pair[0].epoch < pair[1].epoch, "epochs strictly increase");
            assert!(
                pair[0].start_offset <= pair[1].start_offset,
                "start offsets do not decrease"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::new();
        for &(epoch, start) in entries {
            assert!(cache.assign(LeaderEpoch(epoch), Offset(start)));
        }
        cache
    }

    fn pairs(cache: &LeaderEpochCache) -> Vec<(i32, i64)> {
        cache
            .entries()
            .iter()
            .map(|e| (e.epoch.0, e.start_offset.0))
            .collect()
    }

    fn end(cache: &LeaderEpochCache, requested: i32, log_end: i64) -> (i32, i64) {
        let answer = cache.end_offset_for(LeaderEpoch(requested), Offset(log_end));
        (answer.epoch.0, answer.end_offset.0)
    }

    #[test]
    fn epochs_assign_adds_only_newer_epochs() {
        let mut cache = LeaderEpochCache::new();
        assert!(cache.assign(LeaderEpoch(0), Offset(0)));
        assert!(
            !cache.assign(LeaderEpoch(0), Offset(5)),
            "same epoch, later batch"
        );
        assert!(cache.assign(LeaderEpoch(2), Offset(5)));
        assert_eq!(pairs(&cache), [(0, 0), (2, 5)]);
        assert_eq!(cache.latest_epoch(), Some(LeaderEpoch(2)));
        assert!(cache.admits(LeaderEpoch(2)) && cache.admits(LeaderEpoch(3)));
        assert!(!cache.admits(LeaderEpoch(1)));
        let mut empty = LeaderEpochCache::new();
        assert!(empty.admits(LeaderEpoch(-1)));
        assert!(
            !empty.assign(LeaderEpoch(-1), Offset(0)),
            "no epoch, no entry"
        );
        assert!(empty.entries().is_empty());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "after")]
    fn epochs_assign_of_an_older_epoch_is_a_bug() {
        cache(&[(3, 10)]).assign(LeaderEpoch(2), Offset(20));
    }

    /// KIP-101/KIP-279: `LeaderEpochFileCache.endOffsetFor`, case by case.
    #[test]
    fn epochs_end_offset_for_follows_kafka() {
        let history = cache(&[(1, 10), (2, 20), (5, 40)]);
        // The latest epoch ends at the log end.
        assert_eq!(end(&history, 5, 55), (5, 55));
        // A known earlier epoch ends where the next one starts.
        assert_eq!(end(&history, 1, 55), (1, 20));
        assert_eq!(end(&history, 2, 55), (2, 40));
        // A gap: epochs 3 and 4 had no batches here; the answer is the largest epoch below
        // with the start of the next one above.
        assert_eq!(end(&history, 3, 55), (2, 40));
        assert_eq!(end(&history, 4, 55), (2, 40));
        // Below the first known epoch: the requested epoch, ending where the first starts.
        assert_eq!(end(&history, 0, 55), (0, 10));
        // Above the latest, or UNDEFINED_EPOCH: undefined.
        assert_eq!(end(&history, 6, 55), (-1, -1));
        assert_eq!(end(&history, -1, 55), (-1, -1));
        // An empty history knows nothing.
        assert_eq!(end(&LeaderEpochCache::new(), 0, 55), (-1, -1));
    }

    #[test]
    fn epochs_truncate_from_end_drops_entries_at_or_after_the_new_end() {
        let mut history = cache(&[(1, 10), (2, 20), (5, 40)]);
        assert!(!history.truncate_from_end(Offset(41)));
        assert!(history.truncate_from_end(Offset(40)));
        assert_eq!(pairs(&history), [(1, 10), (2, 20)]);
        assert!(history.truncate_from_end(Offset(15)));
        assert_eq!(pairs(&history), [(1, 10)]);
        assert!(
            !history.truncate_from_end(Offset(-1)),
            "a negative end is ignored"
        );
        assert!(history.truncate_from_end(Offset(0)));
        assert!(pairs(&history).is_empty());
    }

    #[test]
    fn epochs_truncate_from_start_moves_the_covering_entry() {
        let mut history = cache(&[(1, 10), (2, 20), (5, 40)]);
        assert!(!history.truncate_from_start(Offset(5)), "below every entry");
        assert!(
            !history.truncate_from_start(Offset(10)),
            "exactly at the first"
        );
        assert!(history.truncate_from_start(Offset(25)));
        assert_eq!(pairs(&history), [(2, 25), (5, 40)]);
        assert!(history.truncate_from_start(Offset(40)));
        assert_eq!(pairs(&history), [(5, 40)]);
        assert!(history.truncate_from_start(Offset(70)));
        assert_eq!(pairs(&history), [(5, 70)]);
    }

    #[test]
    fn epochs_file_round_trips_in_kafka_text_format() {
        let history = cache(&[(0, 0), (3, 17), (4, 17)]);
        let bytes = history.encode();
        assert_eq!(bytes, b"0\n3\n0 0\n3 17\n4 17\n");
        assert_eq!(LeaderEpochCache::decode(&bytes), Some(history));
        assert_eq!(
            LeaderEpochCache::decode(b"0\n0\n"),
            Some(LeaderEpochCache::new())
        );
    }

    #[test]
    fn epochs_file_damage_is_refused_not_panicked_on() {
        for damaged in [
            &b""[..],
            b"0\n",
            b"1\n0\n",
            b"0\n2\n0 0\n",
            b"0\n1\n0 0\n1 5\n",
            b"0\n1\n0 0",
            b"0\n1\n0\n",
            b"0\n1\n0 0 0\n",
            b"0\n1\n-1 0\n",
            b"0\n1\n0 -3\n",
            b"0\n2\n3 0\n2 5\n",
            b"0\n2\n2 9\n3 5\n",
            b"0\n1\nx 0\n",
            b"0\n1\n0 0\n\n",
            b"\xff\xfe\n",
            b"0\n99999999999999999999999\n",
        ] {
            assert_eq!(LeaderEpochCache::decode(damaged), None, "{damaged:?}");
        }
    }

    /// The history against a brute-force model: the epoch of every offset in the log.
    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            /// Append `count` records with the latest epoch raised by `raise`.
            Append { raise: i32, count: i64 },
            /// Truncate the end to `fraction`‰ of the way from the start to the end.
            TruncateEnd { fraction: i64 },
            /// Advance the start to `fraction`‰ of the way to the end (strictly below it).
            TruncateStart { fraction: i64 },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0..3i32, 1..5i64).prop_map(|(raise, count)| Op::Append { raise, count }),
                1 => (0..1000i64).prop_map(|fraction| Op::TruncateEnd { fraction }),
                1 => (0..1000i64).prop_map(|fraction| Op::TruncateStart { fraction }),
            ]
        }

        /// Kafka's answer computed from the epochs of the offsets `[start, start + len)`.
        fn model_end(epochs: &[i32], start: i64, requested: i32) -> (i32, i64) {
            let latest = epochs.last().copied();
            if requested == -1 {
                return (-1, -1);
            }
            let log_end = start + epochs.len() as i64;
            if latest == Some(requested) {
                return (requested, log_end);
            }
            let higher = epochs.iter().position(|&e| e > requested);
            let Some(higher) = higher else {
                return (-1, -1);
            };
            let floor = epochs.iter().filter(|&&e| e <= requested).max();
            (*floor.unwrap_or(&requested), start + higher as i64)
        }

        proptest! {
            #[test]
            fn epochs_end_offset_for_matches_a_model(ops in proptest::collection::vec(op(), 1..40)) {
                let mut history = LeaderEpochCache::new();
                let mut epochs: Vec<i32> = Vec::new();
                let mut start = 0i64;
                let mut latest = 0i32;
                for op in ops {
                    let log_end = start + epochs.len() as i64;
                    match op {
                        Op::Append { raise, count } => {
                            latest += raise;
                            history.assign(LeaderEpoch(latest), Offset(log_end));
                            epochs.extend(std::iter::repeat_n(latest, count as usize));
                        }
                        Op::TruncateEnd { fraction } => {
                            let keep = epochs.len() as i64 * fraction / 1000;
                            history.truncate_from_end(Offset(start + keep));
                            epochs.truncate(keep as usize);
                            latest = history.latest_epoch().map_or(latest, |e| e.0);
                        }
                        Op::TruncateStart { fraction } => {
                            if epochs.is_empty() {
                                continue;
                            }
                            let drop = (epochs.len() as i64 - 1) * fraction / 1000;
                            history.truncate_from_start(Offset(start + drop));
                            epochs.drain(..drop as usize);
                            start += drop;
                        }
                    }
                    let log_end = start + epochs.len() as i64;
                    let max = epochs.iter().copied().max().unwrap_or(0);
                    for requested in -1..=max + 1 {
                        let answer = history.end_offset_for(LeaderEpoch(requested), Offset(log_end));
                        prop_assert_eq!(
                            (answer.epoch.0, answer.end_offset.0),
                            model_end(&epochs, start, requested),
                            "requested {} history {:?} epochs {:?} from {}",
                            requested, history, epochs, start
                        );
                    }
                }
            }
        }
    }
}

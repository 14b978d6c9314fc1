//! Per-partition state of idempotent producers: each producer's epoch and the sequence
//! ranges of its last five batches, so a retried batch is answered with its original offset
//! and a gap is refused (KIP-98).
//!
//! Transactions (KIP-98) add two things per partition: the transactions still open here
//! (a transactional producer's first data offset, until its marker is committed), whose
//! earliest start bounds the last stable offset that read_committed consumers read to; and
//! the aborted transactions (producer, first offset, marker offset) that such a consumer is
//! told about so it drops their records. Both come back from snapshots and log replay,
//! like the sequences, so a follower and a restarted broker hold the same.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::error::ErrorCode;
use crate::record::ControlType;
use crate::types::{Offset, ProducerEpoch, ProducerId};

/// How many batches per producer are remembered for de-duplication (Kafka's value).
pub const BATCHES_REMEMBERED: usize = 5;
/// The most producers one partition tracks; the least recently used is forgotten first.
pub const PRODUCERS_MAX: usize = 10_000;
/// The version byte that starts [`ProducerStates::encode`]'s snapshot bytes (2 adds the
/// transactions; version 1 snapshots, which have none, still load).
const SNAPSHOT_VERSION: u8 = 2;
/// The snapshot version written before transactions.
const SNAPSHOT_VERSION_IDEMPOTENT: u8 = 1;

/// A batch an idempotent producer wrote: its sequence range and where it landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSequence {
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
    /// Offset the batch's first record got.
    pub base_offset: Offset,
}

/// The verdict on an incoming idempotent batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceVerdict {
    /// Append it.
    Append,
    /// It was already written: answer with the original batch's offsets.
    Duplicate(BatchSequence),
    /// Refuse it with this code.
    Refuse(ErrorCode),
}

#[derive(Clone, Debug)]
struct ProducerEntry {
    epoch: ProducerEpoch,
    batches: VecDeque<BatchSequence>,
    last_used: u64,
    /// The token of the last transaction marker written for the producer (-1: none).
    marker_token: i64,
}

/// What a marker may do at this partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerCheck {
    /// Write it.
    Write,
    /// A marker with its token (or a later one) is here already: it ends nothing more.
    Written,
}

/// A transaction with records in this partition whose end is not committed yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OpenTxn {
    /// The offset of its first record here.
    first_offset: Offset,
    /// The offset of its marker, once written (it stays unstable until that is committed).
    marker: Option<Offset>,
}

/// An aborted transaction as Fetch reports it to read_committed consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer whose records to drop.
    pub producer_id: ProducerId,
    /// The offset of the transaction's first record in this partition.
    pub first_offset: Offset,
    /// The offset of its abort marker.
    pub last_offset: Offset,
}

/// The idempotent and transactional producers writing to one partition.
#[derive(Clone, Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<ProducerId, ProducerEntry>,
    clock: u64,
    /// Transactions not yet stable, by producer (a producer has at most one open).
    open: BTreeMap<ProducerId, OpenTxn>,
    /// Aborted transactions, in marker order.
    aborted: Vec<AbortedTxn>,
}

impl ProducerStates {
    /// Checks a batch's producer epoch and sequence range against what was written.
    pub fn check(
        &self,
        id: ProducerId,
        epoch: ProducerEpoch,
        first: i32,
        last: i32,
    ) -> SequenceVerdict {
        let Some(entry) = self.producers.get(&id) else {
            // Unknown producer (new, or its state was forgotten): accept, as Kafka does since
            // KIP-360 rather than failing the producer.
            return SequenceVerdict::Append;
        };
        let zombie_accepted =
            crate::planted::is_planted(crate::planted::PlantedBug::AcceptZombieEpoch);
        if epoch < entry.epoch && !zombie_accepted {
            return SequenceVerdict::Refuse(ErrorCode::InvalidProducerEpoch);
        }
        if epoch < entry.epoch {
            return SequenceVerdict::Append;
        }
        if epoch > entry.epoch {
            return match first {
                0 => SequenceVerdict::Append,
                _ => SequenceVerdict::Refuse(ErrorCode::OutOfOrderSequenceNumber),
            };
        }
        if let Some(seen) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == first && b.last_sequence == last)
        {
            if crate::planted::is_planted(crate::planted::PlantedBug::AcceptDuplicates) {
                return SequenceVerdict::Append;
            }
            return SequenceVerdict::Duplicate(*seen);
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| next_sequence(b.last_sequence));
        if first == expected {
            SequenceVerdict::Append
        } else {
            SequenceVerdict::Refuse(ErrorCode::OutOfOrderSequenceNumber)
        }
    }

    /// Whether no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Records the batches a log holds after the state's snapshot offset, oldest first (after
    /// a restart), so a producer retrying across the restart is still de-duplicated.
    pub fn replay(&mut self, batches: &[crate::log::ProducerBatch]) {
        for batch in batches {
            if batch.is_control {
                if let Some(control) = batch.control_type {
                    let (id, epoch) = (batch.producer_id, batch.producer_epoch);
                    let (offset, token) = (batch.base_offset, batch.marker_token);
                    self.record_marker(id, epoch, control, offset, token);
                }
                continue;
            }
            let delta = (batch.last_offset.0 - batch.base_offset.0) as i32;
            let sequence = BatchSequence {
                first_sequence: batch.base_sequence,
                last_sequence: batch.base_sequence.wrapping_add(delta),
                base_offset: batch.base_offset,
            };
            self.record(batch.producer_id, batch.producer_epoch, sequence);
            if batch.is_transactional {
                self.begin_transaction(batch.producer_id, batch.base_offset);
            }
        }
    }

    /// Notes a transactional data batch at `offset`: it opens the producer's transaction
    /// here unless one is open already.
    pub fn begin_transaction(&mut self, id: ProducerId, offset: Offset) {
        let open = self.open.entry(id).or_insert(OpenTxn {
            first_offset: offset,
            marker: None,
        });
        if open.marker.is_some() {
            // The previous transaction ended (its marker waits to be committed, or is):
            // this batch starts the next one.
            *open = OpenTxn {
                first_offset: offset,
                marker: None,
            };
        }
    }

    /// Whether a marker of `epoch` with `token` may end `id`'s transaction:
    /// `INVALID_PRODUCER_EPOCH` when the partition has seen a newer epoch of the producer,
    /// [`MarkerCheck::Written`] when it holds this transaction's marker (or a later one's).
    pub fn check_marker(
        &self,
        id: ProducerId,
        epoch: ProducerEpoch,
        token: i64,
    ) -> Result<MarkerCheck, ErrorCode> {
        let written = self
            .producers
            .get(&id)
            .is_some_and(|e| token >= 0 && token <= e.marker_token);
        self.check_epoch(id, epoch)?;
        Ok(match written {
            true => MarkerCheck::Written,
            false => MarkerCheck::Write,
        })
    }

    /// `INVALID_PRODUCER_EPOCH` when the partition has seen a newer epoch of `id` (a
    /// transactional write from a fenced instance).
    pub fn check_epoch(&self, id: ProducerId, epoch: ProducerEpoch) -> Result<(), ErrorCode> {
        match self.producers.get(&id) {
            Some(entry)
                if epoch < entry.epoch
                    && !crate::planted::is_planted(
                        crate::planted::PlantedBug::AcceptZombieEpoch,
                    ) =>
            {
                Err(ErrorCode::InvalidProducerEpoch)
            }
            _ => Ok(()),
        }
    }

    /// Records a transaction marker at `offset`: the producer's transaction here ends (an
    /// abort is remembered for read_committed fetches) and its epoch becomes the marker's,
    /// which fences any older instance's batches.
    pub fn record_marker(
        &mut self,
        id: ProducerId,
        epoch: ProducerEpoch,
        control: ControlType,
        offset: Offset,
        token: i64,
    ) {
        self.clock += 1;
        let clock = self.clock;
        let entry = self.producers.entry(id).or_insert_with(|| ProducerEntry {
            epoch,
            batches: VecDeque::with_capacity(BATCHES_REMEMBERED),
            last_used: clock,
            marker_token: -1,
        });
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.last_used = clock;
        entry.marker_token = entry.marker_token.max(token);
        let Some(open) = self.open.get_mut(&id).filter(|o| o.marker.is_none()) else {
            // Nothing of the transaction was written here: the marker ends nothing.
            return;
        };
        open.marker = Some(offset);
        if control == ControlType::Abort {
            self.aborted.push(AbortedTxn {
                producer_id: id,
                first_offset: open.first_offset,
                last_offset: offset,
            });
        }
    }

    /// The last stable offset for a high watermark: below every transaction not yet ended
    /// with a committed marker, and never past the watermark.
    pub fn last_stable_offset(&self, high_watermark: Offset) -> Offset {
        self.open
            .values()
            .filter(|o| o.marker.is_none_or(|marker| marker >= high_watermark))
            .map(|o| o.first_offset)
            .fold(high_watermark, Offset::min)
    }

    /// The aborted transactions with records in `[from, to)`, for a read_committed fetch.
    pub fn aborted_between(&self, from: Offset, to: Offset) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets what no reader can need any more: transactions whose marker is committed
    /// (below `high_watermark`) and aborted ones that end before `log_start`.
    pub fn prune(&mut self, high_watermark: Offset, log_start: Offset) {
        self.open
            .retain(|_, o| o.marker.is_none_or(|marker| marker >= high_watermark));
        self.aborted.retain(|a| a.last_offset >= log_start);
    }

    /// The state as snapshot bytes (version 1): the producer count, then per producer, least
    /// recently used first, its id, epoch and remembered batches (first and last sequence,
    /// base offset). All integers big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut entries: Vec<(&ProducerId, &ProducerEntry)> = self.producers.iter().collect();
        entries.sort_by_key(|(id, entry)| (entry.last_used, id.0));
        let mut out = Vec::with_capacity(5 + entries.len() * (11 + BATCHES_REMEMBERED * 16));
        out.push(SNAPSHOT_VERSION);
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for (id, entry) in entries {
            out.extend_from_slice(&id.0.to_be_bytes());
            out.extend_from_slice(&entry.epoch.0.to_be_bytes());
            out.push(entry.batches.len() as u8);
            for batch in &entry.batches {
                out.extend_from_slice(&batch.first_sequence.to_be_bytes());
                out.extend_from_slice(&batch.last_sequence.to_be_bytes());
                out.extend_from_slice(&batch.base_offset.0.to_be_bytes());
            }
        }
        out.extend_from_slice(&(self.open.len() as u32).to_be_bytes());
        for (id, open) in &self.open {
            out.extend_from_slice(&id.0.to_be_bytes());
            out.extend_from_slice(&open.first_offset.0.to_be_bytes());
            out.extend_from_slice(&open.marker.map_or(-1, |m| m.0).to_be_bytes());
        }
        out.extend_from_slice(&(self.aborted.len() as u32).to_be_bytes());
        for aborted in &self.aborted {
            out.extend_from_slice(&aborted.producer_id.0.to_be_bytes());
            out.extend_from_slice(&aborted.first_offset.0.to_be_bytes());
            out.extend_from_slice(&aborted.last_offset.0.to_be_bytes());
        }
        let mut tokens: Vec<(i64, i64)> = (self.producers.iter())
            .filter(|(_, e)| e.marker_token >= 0)
            .map(|(id, e)| (id.0, e.marker_token))
            .collect();
        tokens.sort_unstable();
        out.extend_from_slice(&(tokens.len() as u32).to_be_bytes());
        for (id, token) in tokens {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&token.to_be_bytes());
        }
        out
    }

    /// Reads [`ProducerStates::encode`]'s bytes; `None` if they are not a whole, known
    /// snapshot (the caller then rebuilds from the log instead).
    pub fn decode(bytes: &[u8]) -> Option<ProducerStates> {
        let mut input = bytes;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, rest) = input.split_at_checked(n)?;
            input = rest;
            Some(head)
        };
        let version = take(1)?[0];
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_IDEMPOTENT {
            return None;
        }
        let count = u32::from_be_bytes(take(4)?.try_into().ok()?);
        let mut states = ProducerStates::default();
        for _ in 0..count {
            let id = ProducerId(i64::from_be_bytes(take(8)?.try_into().ok()?));
            let epoch = ProducerEpoch(i16::from_be_bytes(take(2)?.try_into().ok()?));
            let batches = take(1)?[0];
            if usize::from(batches) > BATCHES_REMEMBERED {
                return None;
            }
            if batches == 0 {
                // Known by its epoch alone (a marker fenced it, no batch remembered).
                states.clock += 1;
                let entry = ProducerEntry {
                    epoch,
                    batches: VecDeque::new(),
                    last_used: states.clock,
                    marker_token: -1,
                };
                states.producers.insert(id, entry);
            }
            for _ in 0..batches {
                let first_sequence = i32::from_be_bytes(take(4)?.try_into().ok()?);
                let last_sequence = i32::from_be_bytes(take(4)?.try_into().ok()?);
                let base_offset = Offset(i64::from_be_bytes(take(8)?.try_into().ok()?));
                let batch = BatchSequence {
                    first_sequence,
                    last_sequence,
                    base_offset,
                };
                states.record(id, epoch, batch);
            }
        }
        if version == SNAPSHOT_VERSION {
            let mut int =
                |n: usize| take(n).map(|b| b.iter().fold(0u64, |v, &x| v << 8 | u64::from(x)));
            let open = int(4)?;
            for _ in 0..open {
                let id = ProducerId(int(8)? as i64);
                let first_offset = Offset(int(8)? as i64);
                let marker = int(8)? as i64;
                let marker = (marker >= 0).then_some(Offset(marker));
                states.open.insert(
                    id,
                    OpenTxn {
                        first_offset,
                        marker,
                    },
                );
            }
            let aborted = int(4)?;
            for _ in 0..aborted {
                states.aborted.push(AbortedTxn {
                    producer_id: ProducerId(int(8)? as i64),
                    first_offset: Offset(int(8)? as i64),
                    last_offset: Offset(int(8)? as i64),
                });
            }
            let tokens = int(4)?;
            for _ in 0..tokens {
                let id = ProducerId(int(8)? as i64);
                let token = int(8)? as i64;
                states.producers.get_mut(&id)?.marker_token = token;
            }
        }
        take(1).is_none().then_some(states)
    }

    /// Records a batch that was appended.
    pub fn record(&mut self, id: ProducerId, epoch: ProducerEpoch, batch: BatchSequence) {
        self.clock += 1;
        let clock = self.clock;
        if !self.producers.contains_key(&id) && self.producers.len() >= PRODUCERS_MAX {
            // A producer with a transaction open here is kept: its marker must find it.
            let open = &self.open;
            let oldest = self
                .producers
                .iter()
                .filter(|(id, _)| open.get(id).is_none_or(|o| o.marker.is_some()))
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.producers.remove(&oldest);
            }
        }
        let entry = self.producers.entry(id).or_insert_with(|| ProducerEntry {
            epoch,
            batches: VecDeque::with_capacity(BATCHES_REMEMBERED),
            last_used: clock,
            marker_token: -1,
        });
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
        entry.last_used = clock;
    }
}

/// The sequence after `sequence`; sequences wrap from `i32::MAX` to 0.
fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: ProducerId = ProducerId(7);
    const EPOCH: ProducerEpoch = ProducerEpoch(0);

    fn batch(first: i32, last: i32, offset: i64) -> BatchSequence {
        BatchSequence {
            first_sequence: first,
            last_sequence: last,
            base_offset: Offset(offset),
        }
    }

    #[test]
    fn producer_state_dedups_retries_and_refuses_gaps() {
        let mut states = ProducerStates::default();
        assert_eq!(states.check(ID, EPOCH, 0, 4), SequenceVerdict::Append);
        states.record(ID, EPOCH, batch(0, 4, 100));
        assert_eq!(
            states.check(ID, EPOCH, 0, 4),
            SequenceVerdict::Duplicate(batch(0, 4, 100))
        );
        assert_eq!(states.check(ID, EPOCH, 5, 9), SequenceVerdict::Append);
        assert_eq!(
            states.check(ID, EPOCH, 7, 9),
            SequenceVerdict::Refuse(ErrorCode::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            states.check(ID, ProducerEpoch(-1), 5, 9),
            SequenceVerdict::Refuse(ErrorCode::InvalidProducerEpoch)
        );
        assert_eq!(
            states.check(ID, ProducerEpoch(1), 0, 0),
            SequenceVerdict::Append
        );
    }

    #[test]
    fn producer_state_remembers_only_the_last_five_batches() {
        let mut states = ProducerStates::default();
        for i in 0..7 {
            states.record(ID, EPOCH, batch(i, i, i64::from(i)));
        }
        assert_eq!(
            states.check(ID, EPOCH, 6, 6),
            SequenceVerdict::Duplicate(batch(6, 6, 6))
        );
        assert_eq!(
            states.check(ID, EPOCH, 2, 2),
            SequenceVerdict::Duplicate(batch(2, 2, 2))
        );
        assert_ne!(
            states.check(ID, EPOCH, 1, 1),
            SequenceVerdict::Duplicate(batch(1, 1, 1))
        );
    }

    #[test]
    fn producer_state_snapshot_round_trips_and_refuses_damage() {
        let mut states = ProducerStates::default();
        for sequence in 0..8 {
            let first = sequence * 2;
            states.record(ID, EPOCH, batch(first, first + 1, i64::from(first) + 100));
        }
        states.record(ProducerId(9), ProducerEpoch(3), batch(0, 4, 7));
        let bytes = states.encode();
        let decoded = ProducerStates::decode(&bytes).expect("round trip");
        assert_eq!(decoded.encode(), bytes);
        assert_eq!(
            decoded.check(ID, EPOCH, 14, 15),
            SequenceVerdict::Duplicate(batch(14, 15, 114))
        );
        assert_eq!(decoded.check(ID, EPOCH, 16, 16), SequenceVerdict::Append);
        assert_eq!(
            decoded.check(ProducerId(9), ProducerEpoch(2), 5, 5),
            SequenceVerdict::Refuse(ErrorCode::InvalidProducerEpoch)
        );
        for cut in 0..bytes.len() {
            assert!(
                ProducerStates::decode(&bytes[..cut]).is_none(),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(ProducerStates::decode(&longer).is_none(), "trailing bytes");
        let mut unknown = bytes;
        unknown[0] = 3;
        assert!(
            ProducerStates::decode(&unknown).is_none(),
            "unknown version"
        );
    }

    #[test]
    fn producer_state_tracks_open_and_aborted_transactions_for_the_stable_offset() {
        use crate::record::ControlType;
        let (a, b) = (ProducerId(1), ProducerId(2));
        let mut states = ProducerStates::default();
        // a's transaction starts at 10, b's at 12; a plain batch at 11.
        states.record(a, EPOCH, batch(0, 0, 10));
        states.begin_transaction(a, Offset(10));
        states.begin_transaction(a, Offset(11));
        states.record(b, EPOCH, batch(0, 0, 12));
        states.begin_transaction(b, Offset(12));
        assert_eq!(states.last_stable_offset(Offset(20)), Offset(10));
        assert_eq!(
            states.last_stable_offset(Offset(5)),
            Offset(5),
            "never past the watermark"
        );
        // a aborts at 13: stable only once the marker is committed.
        states.record_marker(a, EPOCH, ControlType::Abort, Offset(13), 100);
        assert_eq!(states.last_stable_offset(Offset(13)), Offset(10));
        assert_eq!(
            states.last_stable_offset(Offset(14)),
            Offset(12),
            "b still open"
        );
        let aborted = states.aborted_between(Offset(0), Offset(14));
        assert_eq!(aborted.len(), 1);
        assert_eq!(
            (aborted[0].producer_id, aborted[0].first_offset),
            (a, Offset(10))
        );
        assert!(
            states.aborted_between(Offset(14), Offset(20)).is_empty(),
            "ended before"
        );
        // b commits; a marker for a producer with nothing open here ends nothing.
        states.record_marker(b, EPOCH, ControlType::Commit, Offset(14), 101);
        states.record_marker(ProducerId(3), EPOCH, ControlType::Abort, Offset(15), 102);
        assert_eq!(states.last_stable_offset(Offset(16)), Offset(16));
        assert_eq!(states.aborted_between(Offset(0), Offset(16)).len(), 1);
        // A marker fences older epochs of its producer.
        states.record_marker(a, ProducerEpoch(4), ControlType::Abort, Offset(16), 103);
        assert_eq!(
            states.check(a, EPOCH, 1, 1),
            SequenceVerdict::Refuse(ErrorCode::InvalidProducerEpoch)
        );
        assert_eq!(
            states.check_marker(a, EPOCH, 104),
            Err(ErrorCode::InvalidProducerEpoch)
        );

        // A marker whose transaction already has its marker here is not written again, even
        // once the producer's next transaction has begun: a delayed request cannot end it.
        states.begin_transaction(b, Offset(17));
        assert_eq!(states.check_marker(b, EPOCH, 101), Ok(MarkerCheck::Written));
        assert_eq!(states.check_marker(b, EPOCH, 105), Ok(MarkerCheck::Write));
        assert_eq!(
            states.check_marker(b, EPOCH, -1),
            Ok(MarkerCheck::Write),
            "no token"
        );

        // The snapshot keeps it all; a version 1 snapshot (no transactions) still loads.
        let decoded = ProducerStates::decode(&states.encode()).expect("round trip");
        assert_eq!(
            decoded.check_marker(b, EPOCH, 101),
            Ok(MarkerCheck::Written)
        );
        assert_eq!(decoded.last_stable_offset(Offset(30)), Offset(17));
        assert_eq!(
            decoded.aborted_between(Offset(0), Offset(30)),
            states.aborted_between(Offset(0), Offset(30))
        );
        let mut old = ProducerStates::default();
        old.record(a, EPOCH, batch(0, 0, 1));
        let mut v1 = old.encode();
        v1.truncate(v1.len() - 12);
        v1[0] = 1;
        assert!(ProducerStates::decode(&v1).is_some(), "version 1 loads");
        // Pruning forgets committed ends and aborts before the log start.
        states.prune(Offset(30), Offset(14));
        assert!(states.aborted_between(Offset(0), Offset(30)).is_empty());
        assert_eq!(
            states.last_stable_offset(Offset(30)),
            Offset(17),
            "b's open one stays"
        );
    }
}

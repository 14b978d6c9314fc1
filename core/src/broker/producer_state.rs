//! Per-partition state of idempotent producers: each producer's epoch and the sequence
//! ranges of its last five batches, so a retried batch is answered with its original offset
//! and a gap is refused (KIP-98).

use std::collections::{HashMap, VecDeque};

use crate::error::ErrorCode;
use crate::types::{Offset, ProducerEpoch, ProducerId};

/// How many batches per producer are remembered for de-duplication (Kafka's value).
pub const BATCHES_REMEMBERED: usize = 5;
/// The most producers one partition tracks; the least recently used is forgotten first.
pub const PRODUCERS_MAX: usize = 10_000;

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
}

/// The idempotent producers writing to one partition.
#[derive(Clone, Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<ProducerId, ProducerEntry>,
    clock: u64,
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
        if epoch < entry.epoch {
            return SequenceVerdict::Refuse(ErrorCode::InvalidProducerEpoch);
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

    /// Rebuilds the state from the batches a log holds (after a restart), so a producer
    /// retrying across the restart is still de-duplicated.
    pub fn rebuild(batches: &[crate::log::ProducerBatch]) -> ProducerStates {
        let mut states = ProducerStates::default();
        for batch in batches.iter().filter(|b| !b.is_control) {
            let delta = (batch.last_offset.0 - batch.base_offset.0) as i32;
            let sequence = BatchSequence {
                first_sequence: batch.base_sequence,
                last_sequence: batch.base_sequence.wrapping_add(delta),
                base_offset: batch.base_offset,
            };
            states.record(batch.producer_id, batch.producer_epoch, sequence);
        }
        states
    }

    /// Records a batch that was appended.
    pub fn record(&mut self, id: ProducerId, epoch: ProducerEpoch, batch: BatchSequence) {
        self.clock += 1;
        let clock = self.clock;
        if !self.producers.contains_key(&id) && self.producers.len() >= PRODUCERS_MAX {
            let oldest = self
                .producers
                .iter()
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
}

//! The coordinator's answers to InitProducerId, AddPartitionsToTxn / AddOffsetsToTxn and
//! EndTxn: each checks the producer's id and epoch and the id's state, and decides a
//! transition to write or an answer.

use std::collections::BTreeSet;

use super::{fenced_abort, Decision, Entry, TransactionCoordinator, TxnState, TxnValue};
use crate::error::ErrorCode;
use crate::types::{Millis, ProducerEpoch, ProducerId};

/// The highest epoch a bump may reach; past it the id gets a new producer id (Kafka keeps
/// `Short.MaxValue` for markers written while fencing).
const EPOCH_MAX: i16 = i16::MAX - 1;

impl TransactionCoordinator {
    /// InitProducerId for a transactional id: a new id gets a producer id and epoch 0; a
    /// known one gets its epoch bumped (a new producer id once epochs run out), fencing the
    /// instance before. An open transaction is aborted first (`CONCURRENT_TRANSACTIONS`: the
    /// client asks again). `expected` is the producer id and epoch a KIP-360 client names to
    /// recover its own producer (`PRODUCER_FENCED` if another instance has moved on).
    pub fn init_producer_id(
        &mut self,
        now: Millis,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(ProducerId, ProducerEpoch)>,
        new_producer_id: &mut dyn FnMut() -> Result<ProducerId, ErrorCode>,
    ) -> Decision {
        if timeout_ms <= 0 || timeout_ms > super::TRANSACTION_MAX_TIMEOUT_MS {
            return Decision::Answer(Err(ErrorCode::InvalidTransactionTimeout));
        }
        let Some(entry) = self.entries.get_mut(transactional_id) else {
            let producer_id = match new_producer_id() {
                Ok(id) => id,
                Err(code) => return Decision::Answer(Err(code)),
            };
            let value = TxnValue {
                producer_id,
                producer_epoch: ProducerEpoch(0),
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                last_update_ms: now.0,
                start_ms: -1,
            };
            // Known from now on, as pending: a second InitProducerId waits for this one.
            let placeholder = TxnValue {
                producer_id: ProducerId(-1),
                producer_epoch: ProducerEpoch(-1),
                ..value.clone()
            };
            let entry = Entry {
                value: placeholder,
                pending: Some(value.clone()),
                last_epoch: None,
                written_at: -1,
            };
            self.entries.insert(transactional_id.to_string(), entry);
            return Decision::Write(value);
        };
        if entry.pending.is_some() {
            return Decision::Answer(Err(ErrorCode::ConcurrentTransactions));
        }
        let value = &entry.value;
        if let Some((id, epoch)) = expected {
            let current = id == value.producer_id && epoch == value.producer_epoch;
            let retried = id == value.producer_id && Some(epoch) == entry.last_epoch;
            if !current && !retried {
                return Decision::Answer(Err(ErrorCode::ProducerFenced));
            }
        }
        match value.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                Decision::Answer(Err(ErrorCode::ConcurrentTransactions))
            }
            TxnState::Ongoing => {
                let abort = fenced_abort(now, value);
                entry.pending = Some(abort.clone());
                Decision::WriteAndAnswer(abort, ErrorCode::ConcurrentTransactions)
            }
            TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::Dead => {
                let (producer_id, producer_epoch) = if value.producer_epoch.0 >= EPOCH_MAX {
                    match new_producer_id() {
                        Ok(id) => (id, ProducerEpoch(0)),
                        Err(code) => return Decision::Answer(Err(code)),
                    }
                } else {
                    (value.producer_id, ProducerEpoch(value.producer_epoch.0 + 1))
                };
                let next = TxnValue {
                    producer_id,
                    producer_epoch,
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    last_update_ms: now.0,
                    start_ms: -1,
                };
                entry.pending = Some(next.clone());
                Decision::Write(next)
            }
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, whose partition is the group's one of
    /// `__consumer_offsets`): the transaction is open once the partitions are recorded.
    pub fn add_partitions(
        &mut self,
        now: Millis,
        transactional_id: &str,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        partitions: &BTreeSet<(String, i32)>,
    ) -> Decision {
        let entry = match self.producer_entry(transactional_id, producer_id, producer_epoch) {
            Ok(entry) => entry,
            Err(code) => return Decision::Answer(Err(code)),
        };
        let value = &entry.value;
        match value.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                return Decision::Answer(Err(ErrorCode::ConcurrentTransactions))
            }
            TxnState::Dead => return Decision::Answer(Err(ErrorCode::InvalidTxnState)),
            TxnState::Ongoing if partitions.is_subset(&value.partitions) => {
                return Decision::Answer(Ok(()))
            }
            TxnState::Ongoing
            | TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort => {}
        }
        let start_ms = match value.state {
            TxnState::Ongoing => value.start_ms,
            _ => now.0,
        };
        let next = TxnValue {
            state: TxnState::Ongoing,
            partitions: value.partitions.union(partitions).cloned().collect(),
            last_update_ms: now.0,
            start_ms,
            ..value.clone()
        };
        entry.pending = Some(next.clone());
        Decision::Write(next)
    }

    /// EndTxn: an open transaction is prepared (its markers follow once the prepare is
    /// written); a retry of an end already done is answered again; anything else is
    /// `INVALID_TXN_STATE`.
    pub fn end_transaction(
        &mut self,
        now: Millis,
        transactional_id: &str,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        commit: bool,
    ) -> Decision {
        let entry = match self.producer_entry(transactional_id, producer_id, producer_epoch) {
            Ok(entry) => entry,
            Err(code) => return Decision::Answer(Err(code)),
        };
        let value = &entry.value;
        let answer = match (value.state, commit) {
            (TxnState::Ongoing, _) => None,
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Some(Ok(())),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Some(Err(ErrorCode::ConcurrentTransactions))
            }
            (TxnState::PrepareEpochFence, _) => Some(Err(ErrorCode::ConcurrentTransactions)),
            _ => Some(Err(ErrorCode::InvalidTxnState)),
        };
        if let Some(answer) = answer {
            return Decision::Answer(answer);
        }
        let state = match commit {
            true => TxnState::PrepareCommit,
            false => TxnState::PrepareAbort,
        };
        let next = TxnValue {
            state,
            last_update_ms: now.0,
            ..value.clone()
        };
        entry.pending = Some(next.clone());
        Decision::Write(next)
    }

    /// The id's entry if `producer_id` and `producer_epoch` are its current ones and no
    /// transition is being written: `INVALID_PRODUCER_ID_MAPPING` for an unknown id or
    /// another producer id, `PRODUCER_FENCED` for an older epoch (a zombie),
    /// `INVALID_PRODUCER_EPOCH` for a newer one, `CONCURRENT_TRANSACTIONS` while pending.
    fn producer_entry(
        &mut self,
        transactional_id: &str,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
    ) -> Result<&mut Entry, ErrorCode> {
        let entry = self
            .entries
            .get_mut(transactional_id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        let value = &entry.value;
        if value.producer_id != producer_id {
            return Err(match entry.pending.as_ref() {
                Some(pending) if pending.producer_id == producer_id => {
                    ErrorCode::ConcurrentTransactions
                }
                _ => ErrorCode::InvalidProducerIdMapping,
            });
        }
        if producer_epoch < value.producer_epoch {
            return Err(ErrorCode::ProducerFenced);
        }
        if producer_epoch > value.producer_epoch {
            return Err(ErrorCode::InvalidProducerEpoch);
        }
        if entry.pending.is_some() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        Ok(entry)
    }
}

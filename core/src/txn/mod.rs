//! The transaction coordinator (KIP-98): each `transactional.id`'s producer id, epoch and
//! transaction state, without I/O.
//!
//! A transactional id lives in one partition of `__transaction_state`
//! ([`records::partition_for_transactional_id`]); the broker leading that partition is its
//! coordinator, loads the partition's records into a [`TransactionCoordinator`] when it
//! starts to lead it, and forgets them when it stops. Every change of an id's state is a
//! *transition*: the coordinator decides it ([`Decision::Write`]), marks the id pending (a
//! second request meanwhile is answered `CONCURRENT_TRANSACTIONS`), the broker appends the
//! new [`TxnValue`] to the id's partition and, once the in-sync replicas hold it, calls
//! [`TransactionCoordinator::complete_write`] — only then is the state changed and the
//! client answered, so whatever a client was told survives the coordinator's failover.
//!
//! The states are Kafka's: `Empty` → (AddPartitionsToTxn) `Ongoing` → (EndTxn)
//! `PrepareCommit`/`PrepareAbort` → (markers written to every partition of the
//! transaction) `CompleteCommit`/`CompleteAbort` → the next transaction. Zombie fencing:
//! InitProducerId on an id bumps its epoch, and an instance holding the older epoch is
//! refused (`PRODUCER_FENCED`) from then on, here and — through the markers, which carry
//! the new epoch — at every partition it wrote to; an InitProducerId that finds a
//! transaction open aborts it first with the bumped epoch. A transaction open longer than
//! its timeout is aborted the same way ([`TransactionCoordinator::expire`]).
//!
//! Call order for the broker: [`TransactionCoordinator::load`] for each record of a partition
//! it starts to lead, then [`TransactionCoordinator::take_loaded_markers`] (transactions found
//! between prepare and complete get their markers again); for each client request
//! [`TransactionCoordinator::init_producer_id`], [`TransactionCoordinator::add_partitions`] or
//! [`TransactionCoordinator::end_transaction`], writing what they decide and then calling
//! [`TransactionCoordinator::complete_write`], whose [`MarkerJob`] (after a prepare) the
//! broker carries out before [`TransactionCoordinator::markers_written`], whose completion it
//! writes in turn; [`TransactionCoordinator::expire`] on its timer; and
//! [`TransactionCoordinator::unload`] when it stops leading a partition.

pub mod records;
mod requests;

use std::collections::{BTreeMap, BTreeSet};

use crate::error::ErrorCode;
use crate::record::ControlType;
use crate::types::{Millis, ProducerEpoch, ProducerId};
pub use records::{partition_for_transactional_id, TxnRecord, TxnState, TxnValue};

/// Kafka's `transaction.max.timeout.ms` default: the longest timeout a producer may ask for.
pub const TRANSACTION_MAX_TIMEOUT_MS: i32 = 900_000;
/// How often open transactions are checked against their timeouts (Kafka's
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms` is 10 s; Brook checks more
/// often, which costs one scan of the loaded ids).
pub const EXPIRY_CHECK_INTERVAL_MS: i64 = 1_000;

/// What the coordinator decided for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Answer now with this result; nothing changes.
    Answer(Result<(), ErrorCode>),
    /// Write this value for the id; answer once it is committed (with the write's error if
    /// it fails).
    Write(TxnValue),
    /// Write this value for the id without anyone waiting for it, and answer now with this
    /// code (an InitProducerId that must first abort the open transaction it fences).
    WriteAndAnswer(TxnValue, ErrorCode),
}

/// Markers to write after a transaction's prepare is committed: one per partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerJob {
    /// The transaction's id.
    pub transactional_id: String,
    /// The producer whose transaction ends.
    pub producer_id: ProducerId,
    /// The epoch the markers carry (fencing any older instance at the partitions).
    pub producer_epoch: ProducerEpoch,
    /// Commit or abort.
    pub control: ControlType,
    /// The partitions of the transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// The transaction's token, written in its markers: the offset of its prepare record in
    /// `__transaction_state`, which grows from one transaction of an id to the next (a
    /// partition takes no marker of a token it holds already, so a delayed marker request
    /// cannot end a later transaction).
    pub token: i64,
}

/// One transactional id as the coordinator holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// The committed state.
    value: TxnValue,
    /// A transition being written, if any.
    pending: Option<TxnValue>,
    /// The epoch before the last bump (KIP-360: a producer retrying its InitProducerId, or
    /// recovering after a timeout abort, names it).
    last_epoch: Option<ProducerEpoch>,
    /// The offset of the record in `__transaction_state` that holds `value`.
    written_at: i64,
}

/// The transaction coordinator's state for the ids of the partitions this broker leads.
#[derive(Clone, Debug, Default)]
pub struct TransactionCoordinator {
    entries: BTreeMap<String, Entry>,
    /// Markers owed by transactions loaded between prepare and complete.
    loaded_markers: Vec<MarkerJob>,
}

impl TransactionCoordinator {
    /// Takes one record of a `__transaction_state` partition being loaded (in log order), at
    /// `offset`: the id's latest value wins, a tombstone removes it.
    pub fn load(&mut self, record: TxnRecord, offset: i64) {
        match record.value {
            None => {
                self.entries.remove(&record.transactional_id);
            }
            Some(value) => {
                let entry = Entry {
                    value,
                    pending: None,
                    last_epoch: None,
                    written_at: offset,
                };
                self.entries.insert(record.transactional_id, entry);
            }
        }
    }

    /// After loading: the markers owed by transactions found prepared but not completed,
    /// which the new coordinator writes again (markers are idempotent at the partitions).
    pub fn take_loaded_markers(&mut self) -> Vec<MarkerJob> {
        let mut jobs = std::mem::take(&mut self.loaded_markers);
        for (id, entry) in &self.entries {
            if entry.pending.is_none() {
                if let Some(job) = marker_job(id, &entry.value, entry.written_at) {
                    jobs.push(job);
                }
            }
        }
        jobs
    }

    /// Forgets the ids `in_partition` says belong to a partition no longer led here.
    pub fn unload(&mut self, in_partition: impl Fn(&str) -> bool) {
        self.entries.retain(|id, _| !in_partition(id));
        self.loaded_markers
            .retain(|job| !in_partition(&job.transactional_id));
    }

    /// The committed state of an id, if it is known here.
    pub fn get(&self, transactional_id: &str) -> Option<&TxnValue> {
        self.entries.get(transactional_id).map(|e| &e.value)
    }

    /// Every id known here with its committed state.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TxnValue)> {
        self.entries.iter().map(|(id, e)| (id.as_str(), &e.value))
    }

    /// Ends the transition written for `transactional_id`: applies it if `written` (its record
    /// at offset `at`), else drops it (the state stays as it was). After a committed prepare,
    /// returns the markers to write.
    pub fn complete_write(
        &mut self,
        transactional_id: &str,
        value: &TxnValue,
        written: bool,
        at: i64,
    ) -> Option<MarkerJob> {
        let entry = self.entries.get_mut(transactional_id)?;
        if entry.pending.as_ref() != Some(value) {
            // Not this transition (the partition was unloaded and loaded again meanwhile).
            return None;
        }
        entry.pending = None;
        if !written {
            if entry.value.producer_id.0 < 0 {
                // A new id whose first record did not stand.
                self.entries.remove(transactional_id);
            }
            return None;
        }
        if value.producer_epoch != entry.value.producer_epoch
            || value.producer_id != entry.value.producer_id
        {
            entry.last_epoch = Some(entry.value.producer_epoch).filter(|e| e.0 >= 0);
        }
        entry.value = value.clone();
        entry.written_at = at;
        self.check_invariants();
        marker_job(transactional_id, value, at)
    }

    /// The markers of `transactional_id`'s transaction are all written: the completion to
    /// write (the id is pending until it is), or `None` if the id is no longer prepared.
    pub fn markers_written(&mut self, now: Millis, transactional_id: &str) -> Option<TxnValue> {
        let entry = self.entries.get_mut(transactional_id)?;
        if entry.pending.is_some() {
            return None;
        }
        let state = match entry.value.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return None,
        };
        let value = TxnValue {
            state,
            partitions: BTreeSet::new(),
            last_update_ms: now.0,
            ..entry.value.clone()
        };
        entry.pending = Some(value.clone());
        Some(value)
    }

    /// Aborts the transactions open longer than their timeout: for each, the prepare to
    /// write (its epoch bumped, fencing the producer that let it expire).
    pub fn expire(&mut self, now: Millis) -> Vec<(String, TxnValue)> {
        let mut out = Vec::new();
        for (id, entry) in &mut self.entries {
            let value = &entry.value;
            let expired = value.state == TxnState::Ongoing
                && now.0 > value.start_ms.saturating_add(i64::from(value.timeout_ms));
            if !expired || entry.pending.is_some() {
                continue;
            }
            let abort = fenced_abort(now, value);
            entry.pending = Some(abort.clone());
            out.push((id.clone(), abort));
        }
        out
    }

    /// Asserts the coordinator's invariants: committed states are consistent with their
    /// partitions and epochs, and a pending transition follows from its id's state.
    pub fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        for (id, entry) in &self.entries {
            let value = &entry.value;
            if value.producer_id.0 >= 0 {
                assert!(value.producer_epoch.0 >= 0, "{id}: negative epoch");
            }
            match value.state {
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                    assert!(
                        value.partitions.is_empty(),
                        "{id}: {value:?} holds partitions"
                    );
                }
                TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort => {
                    assert!(
                        !value.partitions.is_empty(),
                        "{id}: {value:?} has no partitions"
                    );
                }
                TxnState::Dead | TxnState::PrepareEpochFence => {}
            }
            if let Some(pending) = &entry.pending {
                assert!(
                    pending.producer_id != value.producer_id
                        || pending.producer_epoch >= value.producer_epoch,
                    "{id}: a transition lowers the epoch: {value:?} → {pending:?}"
                );
            }
        }
    }
}

/// The markers a committed value (its record at `token`) owes: those of a prepared
/// transaction.
fn marker_job(transactional_id: &str, value: &TxnValue, token: i64) -> Option<MarkerJob> {
    let control = match value.state {
        TxnState::PrepareCommit => ControlType::Commit,
        TxnState::PrepareAbort => ControlType::Abort,
        _ => return None,
    };
    Some(MarkerJob {
        transactional_id: transactional_id.to_string(),
        producer_id: value.producer_id,
        producer_epoch: value.producer_epoch,
        control,
        partitions: value.partitions.clone(),
        token,
    })
}

/// The abort of an open transaction with the epoch bumped, which fences the instance that
/// holds the current one.
fn fenced_abort(now: Millis, value: &TxnValue) -> TxnValue {
    TxnValue {
        producer_epoch: ProducerEpoch(value.producer_epoch.0.saturating_add(1)),
        state: TxnState::PrepareAbort,
        last_update_ms: now.0,
        ..value.clone()
    }
}

#[cfg(test)]
mod tests;

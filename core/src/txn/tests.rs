//! The transaction coordinator's transitions, as a producer and its zombie see them.

use std::collections::BTreeSet;

use super::*;

const ID: &str = "payments-tx";

/// Offsets in `__transaction_state` for the records the tests write, increasing.
fn next_offset() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NEXT: AtomicI64 = AtomicI64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn partitions(names: &[(&str, i32)]) -> BTreeSet<(String, i32)> {
    names.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

/// Applies a decision's write as the broker would once it is committed; returns the answer
/// the client gets and the markers the write calls for.
fn commit(
    c: &mut TransactionCoordinator,
    decision: Decision,
) -> (Result<(), ErrorCode>, Option<MarkerJob>) {
    match decision {
        Decision::Answer(answer) => (answer, None),
        Decision::Write(value) => {
            let job = c.complete_write(ID, &value, true, next_offset());
            c.check_invariants();
            (Ok(()), job)
        }
        Decision::WriteAndAnswer(value, code) => {
            let job = c.complete_write(ID, &value, true, next_offset());
            c.check_invariants();
            (Err(code), job)
        }
    }
}

/// A coordinator with `ID` initialised: producer 1000, epoch 0.
fn initialised() -> TransactionCoordinator {
    let mut c = TransactionCoordinator::default();
    let mut next = 1000;
    let mut ids = || {
        next += 1;
        Ok(ProducerId(next - 1))
    };
    let decision = c.init_producer_id(Millis(0), ID, 60_000, None, &mut ids);
    assert_eq!(commit(&mut c, decision).0, Ok(()));
    let value = c.get(ID).expect("known");
    assert_eq!(
        (value.producer_id, value.producer_epoch),
        (ProducerId(1000), ProducerEpoch(0))
    );
    c
}

fn no_new_ids() -> Result<ProducerId, ErrorCode> {
    panic!("no new producer id expected")
}

#[test]
fn txn_commit_goes_through_prepare_markers_and_complete() {
    let mut c = initialised();
    let (pid, epoch) = (ProducerId(1000), ProducerEpoch(0));
    let wanted = partitions(&[("orders", 0), ("orders", 1)]);
    let decision = c.add_partitions(Millis(10), ID, pid, epoch, &wanted);
    assert_eq!(commit(&mut c, decision), (Ok(()), None));
    assert_eq!(c.get(ID).unwrap().state, TxnState::Ongoing);
    // Adding a partition already in the transaction writes nothing.
    let again = c.add_partitions(Millis(11), ID, pid, epoch, &partitions(&[("orders", 1)]));
    assert_eq!(again, Decision::Answer(Ok(())));

    let decision = c.end_transaction(Millis(20), ID, pid, epoch, true);
    let (answer, job) = commit(&mut c, decision);
    assert_eq!(answer, Ok(()));
    let job = job.expect("a committed prepare calls for markers");
    assert_eq!(job.control, ControlType::Commit);
    assert_eq!(job.partitions, wanted);
    assert_eq!((job.producer_id, job.producer_epoch), (pid, epoch));
    assert_eq!(c.get(ID).unwrap().state, TxnState::PrepareCommit);
    // The client's retry of EndTxn while the markers are written waits.
    assert_eq!(
        c.end_transaction(Millis(21), ID, pid, epoch, true),
        Decision::Answer(Err(ErrorCode::ConcurrentTransactions))
    );
    let complete = c.markers_written(Millis(30), ID).expect("prepared");
    assert_eq!(complete.state, TxnState::CompleteCommit);
    assert!(complete.partitions.is_empty());
    assert_eq!(c.complete_write(ID, &complete, true, next_offset()), None);
    assert_eq!(c.get(ID).unwrap().state, TxnState::CompleteCommit);
    // A retry after completion is answered as done; the opposite end is refused.
    assert_eq!(
        c.end_transaction(Millis(31), ID, pid, epoch, true),
        Decision::Answer(Ok(()))
    );
    assert_eq!(
        c.end_transaction(Millis(31), ID, pid, epoch, false),
        Decision::Answer(Err(ErrorCode::InvalidTxnState))
    );
}

#[test]
fn txn_a_new_instance_fences_the_old_one_and_aborts_its_transaction() {
    let mut c = initialised();
    let (pid, old) = (ProducerId(1000), ProducerEpoch(0));
    let decision = c.add_partitions(Millis(10), ID, pid, old, &partitions(&[("orders", 0)]));
    assert_eq!(commit(&mut c, decision).0, Ok(()));

    // The second instance's InitProducerId aborts the open transaction with a bumped epoch.
    let decision = c.init_producer_id(Millis(20), ID, 60_000, None, &mut no_new_ids);
    let (answer, job) = commit(&mut c, decision);
    assert_eq!(
        answer,
        Err(ErrorCode::ConcurrentTransactions),
        "the client asks again"
    );
    let job = job.expect("the fenced transaction is aborted");
    assert_eq!(job.control, ControlType::Abort);
    assert_eq!(
        job.producer_epoch,
        ProducerEpoch(1),
        "markers carry the new epoch"
    );

    // The zombie is fenced from now on, whatever it asks.
    assert_eq!(
        c.end_transaction(Millis(21), ID, pid, old, true),
        Decision::Answer(Err(ErrorCode::ProducerFenced))
    );
    assert_eq!(
        c.add_partitions(Millis(21), ID, pid, old, &partitions(&[("orders", 1)])),
        Decision::Answer(Err(ErrorCode::ProducerFenced))
    );
    // Until the abort completes, the new instance waits; then it gets the next epoch.
    assert_eq!(
        c.init_producer_id(Millis(22), ID, 60_000, None, &mut no_new_ids),
        Decision::Answer(Err(ErrorCode::ConcurrentTransactions))
    );
    let complete = c.markers_written(Millis(23), ID).expect("prepared");
    assert_eq!(complete.state, TxnState::CompleteAbort);
    c.complete_write(ID, &complete, true, next_offset());
    let decision = c.init_producer_id(Millis(24), ID, 60_000, None, &mut no_new_ids);
    assert_eq!(commit(&mut c, decision).0, Ok(()));
    assert_eq!(c.get(ID).unwrap().producer_epoch, ProducerEpoch(2));
    // A KIP-360 client naming the epoch it held before the bump may recover; an older one
    // is fenced.
    let recover = Some((pid, ProducerEpoch(1)));
    assert!(matches!(
        c.init_producer_id(Millis(25), ID, 60_000, recover, &mut no_new_ids),
        Decision::Write(_)
    ));
}

#[test]
fn txn_a_zombie_naming_an_old_epoch_cannot_reinitialise() {
    let mut c = initialised();
    let decision = c.init_producer_id(Millis(5), ID, 60_000, None, &mut no_new_ids);
    assert_eq!(commit(&mut c, decision).0, Ok(()));
    let decision = c.init_producer_id(Millis(6), ID, 60_000, None, &mut no_new_ids);
    assert_eq!(commit(&mut c, decision).0, Ok(()));
    assert_eq!(c.get(ID).unwrap().producer_epoch, ProducerEpoch(2));
    let zombie = Some((ProducerId(1000), ProducerEpoch(0)));
    assert_eq!(
        c.init_producer_id(Millis(7), ID, 60_000, zombie, &mut no_new_ids),
        Decision::Answer(Err(ErrorCode::ProducerFenced))
    );
}

#[test]
fn txn_an_expired_transaction_is_aborted_and_its_producer_fenced() {
    let mut c = initialised();
    let (pid, epoch) = (ProducerId(1000), ProducerEpoch(0));
    let decision = c.add_partitions(Millis(100), ID, pid, epoch, &partitions(&[("orders", 0)]));
    assert_eq!(commit(&mut c, decision).0, Ok(()));
    assert!(
        c.expire(Millis(100 + 60_000)).is_empty(),
        "not past the timeout yet"
    );
    let expired = c.expire(Millis(100 + 60_001));
    assert_eq!(expired.len(), 1);
    let (id, abort) = &expired[0];
    assert_eq!(id, ID);
    assert_eq!(abort.state, TxnState::PrepareAbort);
    assert_eq!(abort.producer_epoch, ProducerEpoch(1));
    // Pending: a second check does not abort it twice, and the producer's commit waits.
    assert!(c.expire(Millis(100 + 60_002)).is_empty());
    let job = c
        .complete_write(ID, abort, true, next_offset())
        .expect("markers");
    assert_eq!(job.control, ControlType::Abort);
    // The producer that let it expire learns it is fenced, never that its commit happened.
    assert_eq!(
        c.end_transaction(Millis(100 + 60_003), ID, pid, epoch, true),
        Decision::Answer(Err(ErrorCode::ProducerFenced))
    );
}

#[test]
fn txn_a_failed_write_leaves_the_state_as_it_was() {
    let mut c = initialised();
    let (pid, epoch) = (ProducerId(1000), ProducerEpoch(0));
    let wanted = partitions(&[("orders", 0)]);
    let Decision::Write(value) = c.add_partitions(Millis(10), ID, pid, epoch, &wanted) else {
        panic!("a write");
    };
    assert_eq!(
        c.end_transaction(Millis(11), ID, pid, epoch, true),
        Decision::Answer(Err(ErrorCode::ConcurrentTransactions)),
        "one transition at a time"
    );
    assert_eq!(c.complete_write(ID, &value, false, -1), None);
    assert_eq!(c.get(ID).unwrap().state, TxnState::Empty);
    assert_eq!(
        c.end_transaction(Millis(12), ID, pid, epoch, true),
        Decision::Answer(Err(ErrorCode::InvalidTxnState)),
        "nothing is open: the add did not stand"
    );

    // A new id whose first write fails is not known afterwards.
    let mut ids = || Ok(ProducerId(7));
    let Decision::Write(first) = c.init_producer_id(Millis(13), "other", 1000, None, &mut ids)
    else {
        panic!("a write");
    };
    c.complete_write("other", &first, false, -1);
    assert!(c.get("other").is_none());
}

#[test]
fn txn_requests_with_bad_ids_epochs_or_timeouts_are_refused() {
    let mut c = initialised();
    let wanted = partitions(&[("orders", 0)]);
    let cases = [
        (
            c.add_partitions(
                Millis(1),
                "unknown",
                ProducerId(1000),
                ProducerEpoch(0),
                &wanted,
            ),
            ErrorCode::InvalidProducerIdMapping,
        ),
        (
            c.add_partitions(Millis(1), ID, ProducerId(999), ProducerEpoch(0), &wanted),
            ErrorCode::InvalidProducerIdMapping,
        ),
        (
            c.add_partitions(Millis(1), ID, ProducerId(1000), ProducerEpoch(3), &wanted),
            ErrorCode::InvalidProducerEpoch,
        ),
        (
            c.end_transaction(Millis(1), ID, ProducerId(1000), ProducerEpoch(0), false),
            ErrorCode::InvalidTxnState,
        ),
        (
            c.init_producer_id(Millis(1), ID, 0, None, &mut no_new_ids),
            ErrorCode::InvalidTransactionTimeout,
        ),
        (
            c.init_producer_id(
                Millis(1),
                ID,
                TRANSACTION_MAX_TIMEOUT_MS + 1,
                None,
                &mut no_new_ids,
            ),
            ErrorCode::InvalidTransactionTimeout,
        ),
    ];
    for (decision, code) in cases {
        assert_eq!(decision, Decision::Answer(Err(code)));
    }
}

#[test]
fn txn_a_new_coordinator_finishes_what_it_finds_prepared() {
    let mut c = TransactionCoordinator::default();
    let value = |state, partitions: BTreeSet<(String, i32)>| TxnValue {
        producer_id: ProducerId(5),
        producer_epoch: ProducerEpoch(3),
        timeout_ms: 60_000,
        state,
        partitions,
        last_update_ms: 0,
        start_ms: 0,
    };
    let wanted = partitions(&[("orders", 2)]);
    for (id, v) in [
        ("a", Some(value(TxnState::Ongoing, wanted.clone()))),
        ("a", Some(value(TxnState::PrepareCommit, wanted.clone()))),
        ("b", Some(value(TxnState::PrepareAbort, wanted.clone()))),
        ("b", Some(value(TxnState::CompleteAbort, BTreeSet::new()))),
        ("c", Some(value(TxnState::Empty, BTreeSet::new()))),
        ("c", None),
    ] {
        c.load(
            TxnRecord {
                transactional_id: id.to_string(),
                value: v,
            },
            next_offset(),
        );
    }
    c.check_invariants();
    assert!(c.get("c").is_none(), "a tombstone removes the id");
    let jobs = c.take_loaded_markers();
    assert_eq!(
        jobs.len(),
        1,
        "only a's transaction is between prepare and complete"
    );
    assert_eq!(
        (jobs[0].transactional_id.as_str(), jobs[0].control),
        ("a", ControlType::Commit)
    );
    c.unload(|id| id == "a");
    assert!(c.get("a").is_none());
    assert!(c.get("b").is_some());
}

#[test]
fn txn_each_transaction_s_markers_carry_a_larger_token() {
    let mut c = initialised();
    let (pid, epoch) = (ProducerId(1000), ProducerEpoch(0));
    let mut tokens = Vec::new();
    for round in 0..3 {
        let decision =
            c.add_partitions(Millis(round), ID, pid, epoch, &partitions(&[("orders", 0)]));
        assert_eq!(commit(&mut c, decision).0, Ok(()));
        let decision = c.end_transaction(Millis(round), ID, pid, epoch, round % 2 == 0);
        let job = commit(&mut c, decision).1.expect("markers");
        tokens.push(job.token);
        let complete = c.markers_written(Millis(round), ID).expect("prepared");
        c.complete_write(ID, &complete, true, next_offset());
    }
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "tokens {tokens:?}");
}

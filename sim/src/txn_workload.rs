//! Transactions in the simulation (KIP-98): two instances of one transactional producer — the
//! second starts while the first still runs, so it fences the first (a zombie from then on) —
//! and a read_committed reader after healing. Each instance runs transactions over both
//! partitions of the workload topic and commits or aborts each at random; what it was told
//! goes into [`crate::workload::History::transactions`], what the reader read into
//! [`crate::workload::History::committed_log`], and [`check_transactions`] holds them
//! against each other: a committed transaction is read whole and once, an aborted or fenced
//! one never, one whose end the producer never learned all or nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use brook_core::record::{decode_records, Batches, ControlMarker, ControlType};
use brook_core::{ErrorCode, ProducerEpoch, ProducerId};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, EndTxnRequest, FindCoordinatorRequest,
    InitProducerIdRequest, ResponseKind, TransactionalId,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use madsim::rand::{thread_rng, Rng};

use crate::checker::{Failure, Verdict};
use crate::client::Conn;
use crate::cluster_workload::{coordinator_moved, Router};
use crate::node::now;
use crate::trace::Trace;
use crate::workload::{
    call_reconnecting, fetch_request_for, produce_request_in, topic_name, SharedHistory, PARTITIONS,
};

/// The transactional id both instances share.
pub const TRANSACTIONAL_ID: &str = "sim-tx";
/// The prefix of every transactional record's value.
pub const TXN_PREFIX: &str = "t";
/// The transaction timeout the instances ask for: short, so that a transaction a fault holds
/// up is sometimes aborted by the coordinator.
const TRANSACTION_TIMEOUT_MS: i32 = 5_000;
/// How long one step (an InitProducerId, an add, a send, an end) keeps being retried.
const STEP_RETRY_MS: i64 = 20_000;

/// How a transaction ended, as its producer knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnEnd {
    /// EndTxn(commit) answered without error: every record must be readable, once.
    Committed,
    /// EndTxn(abort) answered without error, or the transaction was given up before its
    /// end was asked: no record may be readable.
    Aborted,
    /// The producer was fenced before it asked to commit: no record may be readable.
    Fenced,
    /// The producer asked to commit but never learned the outcome: all or nothing.
    Unknown,
}

/// One transaction an instance ran.
#[derive(Clone, Debug)]
pub struct TxnRun {
    /// The instance (0 or 1).
    pub instance: usize,
    /// Its number within the instance.
    pub number: u32,
    /// The values it sent (acknowledged or not).
    pub values: Vec<String>,
    /// How it ended.
    pub end: TxnEnd,
}

/// How a transactional client reaches the brokers: the one broker, or a cluster's
/// transaction coordinator (FindCoordinator, key type 1) and partition leaders.
pub enum Transport {
    /// The single broker of the one-node run.
    Single(Option<Conn>),
    /// A cluster of nodes `1..=n`.
    Cluster {
        /// Leaders and connections.
        router: Router,
        /// The coordinator FindCoordinator named last.
        coordinator: Option<i32>,
    },
}

impl Transport {
    /// A transport for `nodes` nodes (1: the single broker).
    pub fn new(nodes: i32) -> Transport {
        match nodes {
            1 => Transport::Single(None),
            n => Transport::Cluster {
                router: Router::new(n),
                coordinator: None,
            },
        }
    }

    /// A request to the transaction coordinator; it is looked up again when the call fails
    /// or the answer's `code` says it moved.
    async fn coordinator_call<T: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &T,
        code: impl Fn(&ResponseKind) -> i16,
    ) -> Option<ResponseKind> {
        let (router, coordinator) = match self {
            Transport::Single(conn) => return call_reconnecting(conn, api, version, body).await,
            Transport::Cluster {
                router,
                coordinator,
            } => (router, coordinator),
        };
        if coordinator.is_none() {
            let mut request = FindCoordinatorRequest::default();
            request.key = StrBytes::from_static_str(TRANSACTIONAL_ID);
            request.key_type = 1;
            let node = router.any_node();
            let found = router
                .call(node, ApiKey::FindCoordinator, 3, &request)
                .await;
            if let Some(ResponseKind::FindCoordinator(r)) = found {
                if r.error_code == 0 && r.node_id.0 >= 0 {
                    *coordinator = Some(r.node_id.0);
                }
            }
        }
        let Some(node) = *coordinator else {
            madsim::time::sleep(Duration::from_millis(100)).await;
            return None;
        };
        let answer = router.call(node, api, version, body).await;
        if answer.as_ref().is_none_or(|r| coordinator_moved(code(r))) {
            *coordinator = None;
        }
        answer
    }

    /// A request to `partition`'s leader; it is looked up again when the call fails or the
    /// answer's `code` says it moved.
    async fn leader_call<T: Encodable>(
        &mut self,
        partition: i32,
        api: ApiKey,
        version: i16,
        body: &T,
        code: impl Fn(&ResponseKind) -> i16,
    ) -> Option<ResponseKind> {
        let router = match self {
            Transport::Single(conn) => return call_reconnecting(conn, api, version, body).await,
            Transport::Cluster { router, .. } => router,
        };
        let node = router.leader(partition).await?;
        let answer = router.call(node, api, version, body).await;
        let moved =
            [ErrorCode::NotLeaderOrFollower, ErrorCode::FencedLeaderEpoch].map(ErrorCode::code);
        if answer.as_ref().is_none_or(|r| moved.contains(&code(r))) {
            router.forget(partition);
        }
        answer
    }
}

/// The error of a Produce answer (of its one partition).
fn produce_code(response: &ResponseKind) -> i16 {
    match response {
        ResponseKind::Produce(r) => (r.responses.iter().flat_map(|t| &t.partition_responses))
            .map(|p| p.error_code)
            .next()
            .unwrap_or(0),
        _ => 0,
    }
}

/// The error of a Fetch answer (of its one partition).
fn fetch_code(response: &ResponseKind) -> i16 {
    match response {
        ResponseKind::Fetch(r) => (r.responses.iter().flat_map(|t| &t.partitions))
            .map(|p| p.error_code)
            .find(|&c| c != 0)
            .unwrap_or(r.error_code),
        _ => 0,
    }
}

/// The error of a transaction request's answer.
fn txn_code(response: &ResponseKind) -> i16 {
    match response {
        ResponseKind::InitProducerId(r) => r.error_code,
        ResponseKind::EndTxn(r) => r.error_code,
        ResponseKind::AddPartitionsToTxn(r) => (r.results_by_topic_v3_and_below.iter())
            .flat_map(|t| &t.results_by_partition)
            .map(|p| p.partition_error_code)
            .find(|&c| c != 0)
            .unwrap_or(0),
        _ => 0,
    }
}

/// What a step's answer means for the producer.
enum Step {
    Done,
    /// Fenced: a newer instance holds the id.
    Fenced,
    /// Not worth retrying: abort the transaction.
    Abort,
}

/// When an instance starts and how long it runs.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Wait for instance 0 to have its producer id (so this one fences it), or to give up.
    pub after_first: bool,
    /// Then wait this long.
    pub delay_ms: u64,
    /// Run at most this many transactions…
    pub transactions: u32,
    /// …and start none this long after starting.
    pub run_ms: i64,
}

/// One instance of the transactional producer over nodes `1..=nodes`: runs transactions as
/// `schedule` says, or until fenced.
pub async fn transactional_producer(
    instance: usize,
    nodes: i32,
    schedule: Schedule,
    history: SharedHistory,
    trace: Trace,
) {
    while schedule.after_first && !history.lock().expect("history").first_initialised {
        madsim::time::sleep(Duration::from_millis(50)).await;
    }
    madsim::time::sleep(Duration::from_millis(schedule.delay_ms)).await;
    let started = now().0;
    let mut conn = Transport::new(nodes);
    let until = started.saturating_add(schedule.run_ms);
    let Some((mut producer_id, mut epoch)) = init(&mut conn, until, None).await else {
        trace.record(format!("{} txn{instance}: no producer id", now().0));
        history.lock().expect("history").first_initialised = true;
        return;
    };
    trace.record(format!(
        "{} txn{instance}: producer {} epoch {}",
        now().0,
        producer_id.0,
        epoch.0
    ));
    if instance == 0 {
        history.lock().expect("history").first_initialised = true;
    }
    let mut sequences = vec![0i32; PARTITIONS as usize];
    for number in 0..schedule.transactions {
        if now().0 - started > schedule.run_ms {
            break;
        }
        let mut run = TxnRun {
            instance,
            number,
            values: Vec::new(),
            end: TxnEnd::Aborted,
        };
        let next = run_one(&mut conn, (producer_id, epoch), &mut sequences, &mut run).await;
        trace.record(format!("{} txn{instance}: {number} {:?}", now().0, run.end));
        history.lock().expect("history").transactions.push(run);
        match next {
            Next::Continue => {}
            Next::Stop => return,
            Next::Reinit => {
                // A send whose outcome it never learned: its sequence number may be taken,
                // so it bumps its epoch (KIP-360) and numbers from 0 again, as clients do.
                let expected = Some((producer_id, epoch));
                let Some(bumped) = init(&mut conn, now().0 + STEP_RETRY_MS, expected).await else {
                    trace.record(format!("{} txn{instance}: fenced on re-init", now().0));
                    return;
                };
                (producer_id, epoch) = bumped;
                sequences.iter_mut().for_each(|s| *s = 0);
                trace.record(format!("{} txn{instance}: epoch {}", now().0, epoch.0));
            }
        }
        let pause = thread_rng().gen_range(0..100);
        madsim::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// What an instance does after a transaction.
enum Next {
    /// The next transaction.
    Continue,
    /// Nothing more: it is fenced.
    Stop,
    /// Bump its epoch first: a send's outcome is unknown.
    Reinit,
}

/// Runs one transaction.
async fn run_one(
    conn: &mut Transport,
    producer: (ProducerId, ProducerEpoch),
    sequences: &mut [i32],
    run: &mut TxnRun,
) -> Next {
    let stop_or = |fenced: bool, otherwise: Next| if fenced { Next::Stop } else { otherwise };
    match add_partitions(conn, producer).await {
        Step::Done => {}
        Step::Fenced => {
            run.end = TxnEnd::Fenced;
            return Next::Stop;
        }
        Step::Abort => return stop_or(end(conn, producer, false, run).await, Next::Continue),
    }
    let records = thread_rng().gen_range(1..4);
    for k in 0..records {
        for partition in 0..PARTITIONS {
            let value = format!(
                "{TXN_PREFIX}{}-{}-{partition}-{k}",
                run.instance, run.number
            );
            run.values.push(value.clone());
            let slot = partition as usize;
            match send(conn, producer, partition, sequences[slot], &value).await {
                Step::Done => sequences[slot] = sequences[slot].wrapping_add(1),
                Step::Fenced => {
                    run.end = TxnEnd::Fenced;
                    return Next::Stop;
                }
                Step::Abort => return stop_or(end(conn, producer, false, run).await, Next::Reinit),
            }
        }
    }
    let commit = thread_rng().gen_bool(0.7);
    stop_or(end(conn, producer, commit, run).await, Next::Continue)
}

/// InitProducerId for the transactional id (naming the producer's current id and epoch
/// when `expected`, KIP-360), retried while the coordinator is busy or away. Gives up at
/// `until` (simulated ms), or when fenced.
async fn init(
    conn: &mut Transport,
    until: i64,
    expected: Option<(ProducerId, ProducerEpoch)>,
) -> Option<(ProducerId, ProducerEpoch)> {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = Some(transactional_id());
    request.transaction_timeout_ms = TRANSACTION_TIMEOUT_MS;
    let (id, epoch) = expected.unwrap_or((ProducerId(-1), ProducerEpoch(-1)));
    request.producer_id = kafka_protocol::messages::ProducerId(id.0);
    request.producer_epoch = epoch.0;
    while now().0 < until {
        let answer = conn
            .coordinator_call(ApiKey::InitProducerId, 3, &request, txn_code)
            .await;
        if let Some(ResponseKind::InitProducerId(r)) = answer {
            if r.error_code == 0 {
                return Some((ProducerId(r.producer_id.0), ProducerEpoch(r.producer_epoch)));
            }
            if r.error_code == ErrorCode::ProducerFenced.code() {
                return None;
            }
        }
        madsim::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// AddPartitionsToTxn for both partitions.
async fn add_partitions(conn: &mut Transport, producer: (ProducerId, ProducerEpoch)) -> Step {
    let mut topic = AddPartitionsToTxnTopic::default();
    topic.name = topic_name();
    topic.partitions = (0..PARTITIONS).collect();
    let mut request = AddPartitionsToTxnRequest::default();
    request.v3_and_below_transactional_id = transactional_id();
    request.v3_and_below_producer_id = kafka_protocol::messages::ProducerId(producer.0 .0);
    request.v3_and_below_producer_epoch = producer.1 .0;
    request.v3_and_below_topics = vec![topic];
    let give_up = now().0 + STEP_RETRY_MS;
    while now().0 < give_up {
        if let Some(ResponseKind::AddPartitionsToTxn(r)) = conn
            .coordinator_call(ApiKey::AddPartitionsToTxn, 3, &request, txn_code)
            .await
        {
            let codes = r.results_by_topic_v3_and_below.iter();
            let codes = codes.flat_map(|t| &t.results_by_partition);
            let code = codes
                .map(|p| p.partition_error_code)
                .find(|&c| c != 0)
                .unwrap_or(0);
            match ErrorCode::from_code(code) {
                ErrorCode::None => return Step::Done,
                // The id moved on to another instance, or the coordinator lost it (a power
                // loss on one node): this instance is done.
                ErrorCode::ProducerFenced
                | ErrorCode::InvalidProducerEpoch
                | ErrorCode::InvalidProducerIdMapping => return Step::Fenced,
                ErrorCode::InvalidTxnState => return Step::Abort,
                _ => {}
            }
        }
        madsim::time::sleep(Duration::from_millis(50)).await;
    }
    Step::Abort
}

/// A transactional acks=all produce of one record, the same batch retried until answered.
async fn send(
    conn: &mut Transport,
    producer: (ProducerId, ProducerEpoch),
    partition: i32,
    sequence: i32,
    value: &str,
) -> Step {
    let idempotence = (producer.0, producer.1, sequence);
    let request = produce_request_in(partition, value, Some(idempotence), Some(TRANSACTIONAL_ID));
    let give_up = now().0 + STEP_RETRY_MS;
    while now().0 < give_up {
        if let Some(ResponseKind::Produce(r)) = conn
            .leader_call(partition, ApiKey::Produce, 9, &request, produce_code)
            .await
        {
            let code = r.responses[0].partition_responses[0].error_code;
            match ErrorCode::from_code(code) {
                ErrorCode::None => return Step::Done,
                ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch => return Step::Fenced,
                ErrorCode::OutOfOrderSequenceNumber
                | ErrorCode::UnknownProducerId
                | ErrorCode::InvalidRecord => return Step::Abort,
                _ => {}
            }
        }
        madsim::time::sleep(Duration::from_millis(50)).await;
    }
    Step::Abort
}

/// EndTxn, retried until answered; records how the transaction ended. Whether the instance
/// is fenced.
async fn end(
    conn: &mut Transport,
    producer: (ProducerId, ProducerEpoch),
    commit: bool,
    run: &mut TxnRun,
) -> bool {
    let mut request = EndTxnRequest::default();
    request.transactional_id = transactional_id();
    request.producer_id = kafka_protocol::messages::ProducerId(producer.0 .0);
    request.producer_epoch = producer.1 .0;
    request.committed = commit;
    // Whether an earlier request may have changed the transaction without the producer
    // learning it: one unanswered, or answered with an error that does not say it did
    // nothing (a coordinator write that timed out may still land; CONCURRENT_TRANSACTIONS
    // may be this very end being written).
    let mut unsure = false;
    let give_up = now().0 + STEP_RETRY_MS;
    while now().0 < give_up {
        let answer = conn
            .coordinator_call(ApiKey::EndTxn, 3, &request, txn_code)
            .await;
        let Some(ResponseKind::EndTxn(r)) = answer else {
            unsure = true;
            madsim::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        match ErrorCode::from_code(r.error_code) {
            ErrorCode::None => {
                run.end = if commit {
                    TxnEnd::Committed
                } else {
                    TxnEnd::Aborted
                };
                return false;
            }
            ErrorCode::ProducerFenced
            | ErrorCode::InvalidProducerEpoch
            | ErrorCode::InvalidProducerIdMapping => {
                run.end = match (commit, unsure) {
                    (true, true) => TxnEnd::Unknown,
                    _ => TxnEnd::Fenced,
                };
                return true;
            }
            ErrorCode::InvalidTxnState => {
                // A retried end that the coordinator no longer recognises: it may have
                // happened.
                run.end = if commit {
                    TxnEnd::Unknown
                } else {
                    TxnEnd::Aborted
                };
                return false;
            }
            // Not the coordinator right now, or busy: ask again.
            _ => unsure = true,
        }
        madsim::time::sleep(Duration::from_millis(50)).await;
    }
    run.end = if commit {
        TxnEnd::Unknown
    } else {
        TxnEnd::Aborted
    };
    false
}

fn transactional_id() -> TransactionalId {
    TransactionalId(StrBytes::from_static_str(TRANSACTIONAL_ID))
}

/// Reads both partitions with isolation read_committed from offset 0 until each position
/// reaches a last stable offset equal to the high watermark (every transaction ended),
/// dropping the records of aborted transactions as a Kafka consumer does.
pub async fn final_read_committed(nodes: i32, history: SharedHistory, trace: Trace) {
    let mut positions = vec![0i64; PARTITIONS as usize];
    let mut done = vec![false; PARTITIONS as usize];
    let mut conn = Transport::new(nodes);
    let mut log = BTreeMap::new();
    // Per partition: the producers whose records are being dropped (an aborted
    // transaction's first offset reached, its marker not yet).
    let mut dropping: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); PARTITIONS as usize];
    while let Some(partition) = (0..PARTITIONS).find(|&p| !done[p as usize]) {
        let slot = partition as usize;
        let mut request = fetch_request_for(&[partition], &positions[slot..=slot], 0);
        request.isolation_level = 1;
        let Some(ResponseKind::Fetch(response)) = conn
            .leader_call(partition, ApiKey::Fetch, 12, &request, fetch_code)
            .await
        else {
            continue;
        };
        madsim::time::sleep(Duration::from_millis(10)).await;
        for answer in response.responses.iter().flat_map(|t| &t.partitions) {
            let slot = answer.partition_index as usize;
            if answer.error_code != 0 {
                continue;
            }
            let mut aborted: Vec<(i64, i64)> = (answer.aborted_transactions.iter().flatten())
                .map(|a| (a.first_offset, a.producer_id.0))
                .collect();
            aborted.sort();
            let mut aborted = aborted.into_iter().peekable();
            let mut next = None;
            for batch in Batches::new(answer.records.as_deref().unwrap_or_default()) {
                let Ok(batch) = batch else { break };
                next = Some(batch.next_offset().0);
                let producer = batch.producer_id().0;
                while let Some(&(first, id)) = aborted.peek() {
                    if first > batch.last_offset().0 {
                        break;
                    }
                    dropping[slot].insert(id);
                    aborted.next();
                }
                if batch.is_control() {
                    if let Ok(marker) = ControlMarker::decode(&batch) {
                        if marker.control_type == ControlType::Abort {
                            dropping[slot].remove(&producer);
                        }
                    }
                    continue;
                }
                if batch.is_transactional() && dropping[slot].contains(&producer) {
                    continue;
                }
                let Ok(records) = decode_records(&batch, 1 << 20) else {
                    break;
                };
                for record in records
                    .into_iter()
                    .filter(|r| r.offset.0 >= positions[slot])
                {
                    let value = record.record.value.as_deref().unwrap_or_default();
                    let value = String::from_utf8_lossy(value).into_owned();
                    log.insert((answer.partition_index, record.offset.0), value);
                }
            }
            if let Some(next) = next {
                positions[slot] = next;
            }
            let stable = answer.last_stable_offset;
            done[slot] = next.is_none()
                && stable >= 0
                && stable == answer.high_watermark
                && positions[slot] >= stable;
        }
    }
    trace.record(format!("{} read_committed: {} records", now().0, log.len()));
    let mut history = history.lock().expect("history");
    history.committed_log = log;
    history.committed_read_done = true;
}

/// Holds what the transactional producers were told against what read_committed read.
pub fn check_transactions(history: &crate::workload::History, verdict: &mut Verdict) {
    let mut fail = |checker: &'static str, detail: String| {
        verdict.failures.push(Failure { checker, detail });
    };
    if history.transactions.is_empty() {
        return;
    }
    if !history.committed_read_done {
        fail(
            "txn-liveness",
            "read_committed never reached a stable end after healing".into(),
        );
        return;
    }
    let mut read: BTreeMap<&str, usize> = BTreeMap::new();
    for value in history.committed_log.values() {
        if value.starts_with(TXN_PREFIX) {
            *read.entry(value.as_str()).or_default() += 1;
        }
    }
    for (value, count) in &read {
        if *count > 1 {
            fail("txn-duplicate", format!("{value} read {count} times"));
        }
    }
    let mut known = BTreeSet::new();
    for run in &history.transactions {
        let seen = run
            .values
            .iter()
            .filter(|v| read.contains_key(v.as_str()))
            .count();
        known.extend(run.values.iter().map(String::as_str));
        let name = format!("instance {} transaction {}", run.instance, run.number);
        match run.end {
            TxnEnd::Committed if seen != run.values.len() => fail(
                "txn-lost-commit",
                format!(
                    "{name} committed, {seen} of {} records readable",
                    run.values.len()
                ),
            ),
            TxnEnd::Aborted | TxnEnd::Fenced if seen > 0 => fail(
                "txn-visible-abort",
                format!("{name} ended {:?}, {seen} records readable", run.end),
            ),
            TxnEnd::Unknown if seen != 0 && seen != run.values.len() => fail(
                "txn-torn",
                format!("{name}: {seen} of {} records readable", run.values.len()),
            ),
            _ => {}
        }
    }
    for value in read.keys() {
        if !known.contains(value) {
            fail("txn-unknown-record", format!("{value} was never sent"));
        }
    }
}

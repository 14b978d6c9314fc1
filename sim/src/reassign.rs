//! Partition reassignments in the cluster run (KIP-455): the reassigner — an admin client
//! that asks for each planned move with AlterPartitionReassignments at its time, at any node,
//! and asks again (another node, after a pause) until one accepts it, as a real admin client
//! retries `NOT_CONTROLLER`, timeouts and dead nodes — and the check that a move, once done,
//! stays done: no replica it removed comes back.
//!
//! Where the moved partitions end up is checked with the replicas' convergence
//! (`cluster.rs`): after healing, every node must show each partition at the last target
//! asked for, no longer reassigning, held by exactly those nodes.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, BrokerId, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::checker::Failure;
use crate::cluster_workload::Router;
use crate::node::now;
use crate::trace::Trace;
use crate::workload::{History, SharedHistory, TOPIC};

/// How long a node may hold an AlterPartitionReassignments until its change is applied
/// (below the client's call timeout, so the answer arrives).
const REQUEST_TIMEOUT_MS: i32 = 1_500;
/// Pause between two attempts at one move.
const RETRY_PAUSE_MS: u64 = 200;
/// Attempts at one move before the reassigner gives it up (over three minutes of retries:
/// more than a run lasts).
const ATTEMPTS_MAX: u32 = 1_000;

/// One reassignment of a run's plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    /// When to ask for it, in ms into the safety phase.
    pub at_ms: u64,
    /// The workload topic's partition to move.
    pub partition: i32,
    /// Its target replicas, the preferred leader first.
    pub target: Vec<i32>,
}

/// A reassignment the reassigner asked for, as it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    /// The partition.
    pub partition: i32,
    /// The target asked for.
    pub target: Vec<i32>,
    /// When it was first sent, in simulated ms.
    pub sent_ms: i64,
    /// When a node accepted it, if one did.
    pub accepted_ms: Option<i64>,
    /// Requests sent for it.
    pub attempts: u32,
}

/// Asks for each move at its time (`moves` in time order, times from `phase_start`), retrying
/// until a node accepts it; records each in `History::moves`.
pub async fn reassigner(
    nodes: i32,
    moves: Vec<Move>,
    phase_start: madsim::time::Instant,
    history: SharedHistory,
    trace: Trace,
) {
    let mut router = Router::new(nodes);
    for wanted in moves {
        madsim::time::sleep_until(phase_start + Duration::from_millis(wanted.at_ms)).await;
        let index = {
            let mut history = history.lock().expect("history");
            history.moves.push(Asked {
                partition: wanted.partition,
                target: wanted.target.clone(),
                sent_ms: now().0,
                accepted_ms: None,
                attempts: 0,
            });
            history.moves.len() - 1
        };
        let request = request_for(&wanted);
        for attempt in 1..=ATTEMPTS_MAX {
            let node = router.any_node();
            let response = router
                .call(node, ApiKey::AlterPartitionReassignments, 0, &request)
                .await;
            let code = match response {
                Some(ResponseKind::AlterPartitionReassignments(r)) if r.error_code != 0 => {
                    Some(r.error_code)
                }
                Some(ResponseKind::AlterPartitionReassignments(r)) => r
                    .responses
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.error_code)
                    .next(),
                _ => None,
            };
            history.lock().expect("history").moves[index].attempts = attempt;
            if code == Some(0) {
                trace.record(format!(
                    "{} reassigner: p{} to {:?} accepted by node{node} (attempt {attempt})",
                    now().0,
                    wanted.partition,
                    wanted.target
                ));
                history.lock().expect("history").moves[index].accepted_ms = Some(now().0);
                break;
            }
            trace.record(format!(
                "{} reassigner: p{} to {:?} at node{node}: {}",
                now().0,
                wanted.partition,
                wanted.target,
                code.map_or("no answer".to_string(), |c| format!("error {c}"))
            ));
            madsim::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
        }
    }
}

/// The AlterPartitionReassignments (v0) that asks for `wanted`.
fn request_for(wanted: &Move) -> AlterPartitionReassignmentsRequest {
    let mut partition = ReassignablePartition::default();
    partition.partition_index = wanted.partition;
    partition.replicas = Some(wanted.target.iter().map(|&n| BrokerId(n)).collect());
    let mut topic = ReassignableTopic::default();
    topic.name = TopicName(StrBytes::from_static_str(TOPIC));
    topic.partitions = vec![partition];
    let mut request = AlterPartitionReassignmentsRequest::default();
    request.timeout_ms = REQUEST_TIMEOUT_MS;
    request.topics = vec![topic];
    request
}

/// Each partition's replicas as the run must leave them: the last target asked for, or the
/// replicas it was created with (the first view of it any node recorded; `1..=voters`
/// before any).
pub fn expected_replicas(history: &History, voters: i32, partitions: i32) -> Vec<Vec<i32>> {
    (0..partitions)
        .map(|p| {
            let last = history.moves.iter().rev().find(|m| m.partition == p);
            let created = || {
                let first = history.partition_views.iter().find(|v| v.partition == p);
                first.map_or_else(|| (1..=voters).collect(), |v| v.replicas.clone())
            };
            last.map_or_else(created, |m| m.target.clone())
        })
        .collect()
}

/// `reassign-target` (every move asked for was accepted) and `removed-replica-rejoined`:
/// once a node saw a move complete — its view of the partition changing to the target, not
/// reassigning — every later view of that node's incarnation, until the next move of the
/// partition was asked, keeps exactly the target's replicas, with the ISR among them: a
/// replica the move removed never comes back, however long it keeps fetching. (A restarted
/// node's views start over: it replays the metadata log through older states.)
pub fn check_moves(history: &History, failures: &mut Vec<Failure>) {
    for asked in history.moves.iter().filter(|m| m.accepted_ms.is_none()) {
        failures.push(Failure {
            checker: "reassign-target",
            detail: format!(
                "the move of p{} to {:?} (asked at {} ms) was never accepted in {} attempts",
                asked.partition, asked.target, asked.sent_ms, asked.attempts
            ),
        });
    }
    for (index, asked) in history.moves.iter().enumerate() {
        let until = (history.moves[index + 1..].iter())
            .find(|m| m.partition == asked.partition)
            .map_or(i64::MAX, |m| m.sent_ms);
        let views = (history.partition_views.iter())
            .filter(|v| v.partition == asked.partition && v.at_ms < until);
        // Per node: whether its previous view showed the move done, and since when it saw
        // the move complete.
        let mut was_done = BTreeMap::new();
        let mut done_at = BTreeMap::new();
        for view in views {
            let done = !view.reassigning && view.replicas == asked.target;
            if view.fresh {
                done_at.remove(&view.node);
            } else if done
                && was_done.get(&view.node) == Some(&false)
                && view.at_ms >= asked.sent_ms
            {
                done_at.entry(view.node).or_insert(view.at_ms);
            }
            was_done.insert(view.node, done);
            let Some(at) = done_at.get(&view.node).filter(|_| !done) else {
                continue;
            };
            failures.push(Failure {
                checker: "removed-replica-rejoined",
                detail: format!(
                    "node{} saw p{} with replicas {:?} and ISR {:?} at {} ms, after the move to {:?} completed there at {at} ms",
                    view.node, view.partition, view.replicas, view.isr, view.at_ms, asked.target
                ),
            });
            return;
        }
    }
}

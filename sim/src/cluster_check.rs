//! The cluster run's end-state checks. Once every fault healed the replicas must converge:
//! each workload partition at the replicas the run leaves it with — the last target the
//! reassigner asked for, else the voters it was created on — no longer reassigning, held by
//! those nodes and no other (a removed replica drops its files), all at one log end and high
//! watermark (`replicas-converge`, `reassign-target`); and they must agree record by record
//! with each other and with the final read (`replicas-agree`).

use std::time::Duration;

use brook_core::log::PartitionLog;
use brook_core::storage::Storage;

use crate::checker::Failure;
use crate::cluster_node::Registry;
use crate::node::now;
use crate::reassign::expected_replicas;
use crate::trace::Trace;
use crate::workload::{History, SharedHistory, PARTITIONS, TOPIC};

/// Every replica's committed records: (node, partition, offset → value, high watermark).
pub type Replicas = Vec<(i32, i32, Vec<(i64, String)>, i64)>;

/// A run's nodes: the voters `1..=voters`, then brokers only up to `brokers`.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The quorum's voters, `1..=voters` (the workload topic is created on them).
    pub voters: i32,
    /// Every node, `1..=brokers`.
    pub brokers: i32,
}

/// Waits until every move the reassigner asked for was accepted and every partition is where
/// the run leaves it, its replicas at one committed log end; then reads every replica's
/// committed records. At `deadline`, the failure says what is still missing.
pub async fn await_convergence(
    registry: &Registry,
    layout: Layout,
    history: &SharedHistory,
    deadline: madsim::time::Instant,
    trace: &Trace,
) -> Result<Replicas, Failure> {
    loop {
        let (expected, unanswered) = {
            let history = history.lock().expect("history");
            let unanswered = history.moves.iter().any(|m| m.accepted_ms.is_none());
            (
                expected_replicas(&history, layout.voters, PARTITIONS),
                unanswered,
            )
        };
        let misplaced = misplaced(registry, layout.brokers, &expected);
        let placed = !unanswered && misplaced.is_none();
        let timed_out = madsim::time::Instant::now() >= deadline;
        if (placed && ends_agree(registry, &expected)) || timed_out {
            let snapshot = read_replicas(registry, &expected);
            let done = placed
                && ends_agree(registry, &expected)
                && snapshot.as_ref().is_ok_and(|r| same_ends(r, &expected));
            if done {
                trace.record(format!("{} replicas converged", now().0));
                return snapshot.map_err(converge_failure);
            }
            if timed_out {
                let views = describe_views(registry, layout.brokers);
                if let Some(detail) = misplaced.filter(|_| !unanswered) {
                    return Err(Failure {
                        checker: "reassign-target",
                        detail: format!("{detail} after healing; views: {views}"),
                    });
                }
                let detail = match snapshot {
                    Ok(replicas) => {
                        let ends: Vec<String> = (replicas.iter())
                            .map(|r| {
                                format!("node{} p{}: {} records, hw {}", r.0, r.1, r.2.len(), r.3)
                            })
                            .collect();
                        format!(
                            "replicas still differ after healing: {}; views: {views}",
                            ends.join("; ")
                        )
                    }
                    Err(err) => err,
                };
                return Err(converge_failure(detail));
            }
        }
        madsim::time::sleep(Duration::from_millis(200)).await;
    }
}

fn converge_failure(detail: String) -> Failure {
    Failure {
        checker: "replicas-converge",
        detail,
    }
}

/// Whether the replicas of each partition hold as many committed records, to one watermark.
fn same_ends(replicas: &Replicas, expected: &[Vec<i32>]) -> bool {
    (0..PARTITIONS).all(|p| {
        let ends: Vec<(usize, i64)> = (replicas.iter())
            .filter(|r| r.1 == p)
            .map(|r| (r.2.len(), r.3))
            .collect();
        ends.len() == expected[p as usize].len() && ends.windows(2).all(|w| w[0] == w[1])
    })
}

/// The first node (of `1..=brokers`) that shows a partition elsewhere than `expected` — other
/// replicas, still reassigning — or holds a replica it should not, if any.
fn misplaced(registry: &Registry, brokers: i32, expected: &[Vec<i32>]) -> Option<String> {
    let registry = registry.lock().expect("registry");
    for id in 1..=brokers {
        let Some(node) = registry.get(&id) else {
            return Some(format!("node{id} never started"));
        };
        let state = node.lock();
        let Some(topic) = state.node().image().topic(TOPIC) else {
            return Some(format!("node{id} does not know the topic"));
        };
        for (p, wanted) in expected.iter().enumerate() {
            let Some(partition) = topic.partitions.get(p) else {
                return Some(format!("node{id} does not know p{p}"));
            };
            let replicas: Vec<i32> = partition.replicas.iter().map(|n| n.0).collect();
            if &replicas != wanted || partition.reassigning() {
                return Some(format!(
                    "node{id} shows p{p} at replicas {replicas:?} (reassigning {}), not at the last target asked, {wanted:?},",
                    partition.reassigning()
                ));
            }
            let held = state.node().broker().partition_log(TOPIC, p as i32);
            if held.is_some() && !wanted.contains(&id) {
                return Some(format!(
                    "node{id} still holds a replica of p{p}, whose replicas are {wanted:?},"
                ));
            }
        }
    }
    None
}

/// Each node's view of the workload topic's partitions (leader, epoch, ISR, replicas, local
/// log), for reports.
pub fn describe_views(registry: &Registry, brokers: i32) -> String {
    let registry = registry.lock().expect("registry");
    let mut views = Vec::new();
    for id in 1..=brokers {
        let Some(node) = registry.get(&id) else {
            continue;
        };
        let state = node.lock();
        let image = state.node().image();
        let serving = state.node().is_serving();
        let quorum = state.node().quorum_leader().map(|n| n.0);
        let Some(topic) = image.topic(TOPIC) else {
            views.push(format!(
                "node{id} (serving {serving}, quorum leader {quorum:?}) no topic"
            ));
            continue;
        };
        let parts: Vec<String> = topic
            .partitions
            .iter()
            .map(|p| {
                let ids = |nodes: &[brook_core::NodeId]| -> Vec<i32> {
                    nodes.iter().map(|n| n.0).collect()
                };
                let local = state
                    .node()
                    .broker()
                    .partition_log(TOPIC, p.partition)
                    .map(|log| {
                        format!(
                            "log {}..{} hw {} epochs {:?}",
                            log.log_start_offset().0,
                            log.log_end_offset().0,
                            log.high_watermark().0,
                            log.epoch_entries()
                                .iter()
                                .map(|e| (e.epoch.0, e.start_offset.0))
                                .collect::<Vec<_>>()
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "p{} leader {:?} epoch {} isr {:?} replicas {:?} {local}",
                    p.partition,
                    p.leader.map(|n| n.0),
                    p.leader_epoch.0,
                    ids(&p.isr),
                    ids(&p.replicas),
                )
            })
            .collect();
        views.push(format!(
            "node{id} (serving {serving}, quorum leader {quorum:?}) {}",
            parts.join(", ")
        ));
    }
    views.join("; ")
}

/// Whether the replicas of every partition hold it with the same log end, all of it
/// committed (a cheap test before the replicas are read).
fn ends_agree(registry: &Registry, expected: &[Vec<i32>]) -> bool {
    let registry = registry.lock().expect("registry");
    (0..PARTITIONS).all(|partition| {
        let ends: Vec<Option<(i64, i64)>> = (expected[partition as usize].iter())
            .map(|id| {
                let state = registry.get(id)?.lock();
                let log = state.node().broker().partition_log(TOPIC, partition)?;
                Some((log.log_end_offset().0, log.high_watermark().0))
            })
            .collect();
        // Equal everywhere, and committed: a new leader's watermark trails until the
        // followers fetch again.
        let committed = ends.iter().all(|e| e.is_some_and(|(end, hw)| end == hw));
        committed && ends.windows(2).all(|w| w[0] == w[1])
    })
}

/// Reads each partition's replicas (the nodes `expected` names) below their high watermarks.
fn read_replicas(registry: &Registry, expected: &[Vec<i32>]) -> Result<Replicas, String> {
    let registry = registry.lock().expect("registry");
    let mut replicas = Vec::new();
    for partition in 0..PARTITIONS {
        for &id in &expected[partition as usize] {
            let node = registry.get(&id).ok_or(format!("node{id} never started"))?;
            let state = node.lock();
            let log = state
                .node()
                .broker()
                .partition_log(TOPIC, partition)
                .ok_or(format!(
                    "node{id} holds no replica of partition {partition}"
                ))?;
            let records = committed_records(log)?;
            replicas.push((id, partition, records, log.high_watermark().0));
        }
    }
    Ok(replicas)
}

fn committed_records<S: Storage>(log: &PartitionLog<S>) -> Result<Vec<(i64, String)>, String> {
    let mut records = Vec::new();
    let mut next = log.log_start_offset();
    let end = log.high_watermark();
    while let Some(slice) = log.read(next, 1 << 20, end).map_err(|e| e.to_string())? {
        let bytes = log.read_bytes(&slice).map_err(|e| e.to_string())?;
        for batch in brook_core::record::Batches::new(&bytes) {
            let batch = batch.map_err(|e| e.to_string())?;
            if batch.is_control() {
                // As the readers record a transaction marker.
                let value = crate::workload::MARKER_VALUE.to_string();
                records.push((batch.base_offset().0, value));
                continue;
            }
            for record in
                brook_core::record::decode_records(&batch, 1 << 20).map_err(|e| e.to_string())?
            {
                let value =
                    String::from_utf8_lossy(record.record.value.as_deref().unwrap_or_default());
                records.push((record.offset.0, value.into_owned()));
            }
        }
        next = slice.next_offset;
    }
    Ok(records)
}

/// `replicas-agree`: offset → record is one function across every replica and the final
/// read (Jepsen's inconsistent offsets), and every replica holds the whole committed log.
pub fn check_replicas(history: &History, replicas: &Replicas, failures: &mut Vec<Failure>) {
    for (node, partition, records, high_watermark) in replicas {
        for (offset, value) in records {
            if let Some(read) = history.final_log.get(&(*partition, *offset)) {
                if read != value {
                    failures.push(Failure {
                        checker: "replicas-agree",
                        detail: format!(
                            "node{node} holds {value:?} at {partition}/{offset}, the leader served {read:?}"
                        ),
                    });
                    return;
                }
            }
        }
        // Transaction markers the coordinator wrote after the replicas were compared (an
        // expired transaction's abort, a marker asked again) are not counted: the replicas
        // were compared once the clients had stopped, not the coordinator.
        let compared_to = records.last().map_or(-1, |(offset, _)| *offset);
        let served = history
            .final_log
            .iter()
            .filter(|((p, offset), value)| {
                p == partition
                    && (*offset <= compared_to || value.as_str() != crate::workload::MARKER_VALUE)
            })
            .count();
        if records.len() < served {
            failures.push(Failure {
                checker: "replicas-agree",
                detail: format!(
                    "node{node} holds {} records of partition {partition} below its high watermark {high_watermark}, the final read {served}",
                    records.len()
                ),
            });
        }
    }
}

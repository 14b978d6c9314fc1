//! A simulated cluster node process: the core `ClusterNode` (quorum voter, controller when it
//! leads, member broker) over a [`SimDisk`], served by the madsim shell ([`crate::node`]):
//! Kafka clients on a madsim TCP listener, the other nodes over madsim datagrams (which the
//! network may delay, drop or cut off).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use brook_core::broker::BrokerConfig;
use brook_core::cluster::PartitionRecord;
use brook_core::node::{ClusterNode, NodeConfig};
use brook_core::NodeId;
use madsim::rand::Rng;

use crate::disk::SimDisk;
use crate::node::{node_ip, now, serve, MachineFaults, Observer, SharedNode, BROKER_PORT};
use crate::trace::Trace;
use crate::workload::{PartitionView, SharedHistory};

/// The running nodes, for the checkers to inspect replicas once the run is over.
pub type Registry = Arc<Mutex<BTreeMap<i32, SharedNode<ClusterNode<SimDisk>>>>>;

/// A partition as a node's image shows it: leader, leader epoch, ISR, replicas, and whether
/// it is being reassigned.
type Seen = (Option<i32>, i32, Vec<i32>, Vec<i32>, bool);

/// What `partition` looks like in a node's image.
fn seen(partition: &PartitionRecord) -> Seen {
    let ids = |nodes: &[NodeId]| nodes.iter().map(|n| n.0).collect();
    (
        partition.leader.map(|n| n.0),
        partition.leader_epoch.0,
        ids(&partition.isr),
        ids(&partition.replicas),
        partition.reassigning(),
    )
}

/// An observer that records in the trace and the history each change of the workload
/// topic's partitions in the node's image (leader, leader epoch, ISR, replicas).
fn trace_changes(id: i32, trace: Trace, history: SharedHistory) -> Observer<ClusterNode<SimDisk>> {
    let mut last: Vec<Seen> = Vec::new();
    Box::new(move |node: &ClusterNode<SimDisk>| {
        let Some(topic) = node.image().topic(crate::workload::TOPIC) else {
            return;
        };
        // Compared in place first: the observer runs after every step of the node.
        let unchanged = topic.partitions.len() == last.len()
            && topic.partitions.iter().zip(&last).all(
                |(p, (leader, epoch, isr, replicas, moving))| {
                    let same = |nodes: &[NodeId], ids: &[i32]| {
                        nodes.iter().map(|n| n.0).eq(ids.iter().copied())
                    };
                    p.leader.map(|n| n.0) == *leader
                        && p.leader_epoch.0 == *epoch
                        && same(&p.isr, isr)
                        && same(&p.replicas, replicas)
                        && p.reassigning() == *moving
                },
            );
        if unchanged {
            return;
        }
        let states: Vec<Seen> = topic.partitions.iter().map(seen).collect();
        for (i, state) in states.iter().enumerate() {
            if last.get(i) != Some(state) {
                let (leader, epoch, isr, replicas, reassigning) = state.clone();
                let moving = if reassigning { " (reassigning)" } else { "" };
                trace.record(format!(
                    "{} node{id}: p{i} leader {leader:?} epoch {epoch} isr {isr:?} replicas {replicas:?}{moving}",
                    now().0
                ));
                let view = PartitionView {
                    at_ms: now().0,
                    node: id,
                    partition: i as i32,
                    leader,
                    epoch,
                    isr,
                    replicas,
                    reassigning,
                    fresh: last.get(i).is_none(),
                };
                history.lock().expect("history").partition_views.push(view);
            }
        }
        last = states;
    })
}

/// What a node process shares with its run: the trace, the history (partition changes), the
/// registry of running nodes, and how its election timeout is drawn.
#[derive(Clone)]
pub struct NodeContext {
    /// The run's trace.
    pub trace: Trace,
    /// The run's history.
    pub history: SharedHistory,
    /// The running nodes.
    pub registry: Registry,
    /// A scripted scenario runs. Each node then draws its election timeout from its own
    /// range, so no two voters share one (a voter's timeout is fixed for its process, and two
    /// survivors with the same one can split their votes in step for a long time; scenarios
    /// time their faults around elections and need them prompt), and leadership is not
    /// rebalanced under the scenario's faults.
    pub scripted: bool,
}

/// Runs one incarnation of node `id` until it is killed, under `machine`'s faults.
pub async fn run_node(
    id: i32,
    voters: Vec<NodeId>,
    disk: SimDisk,
    machine: MachineFaults,
    context: NodeContext,
) {
    let NodeContext {
        trace,
        history,
        registry,
        scripted,
    } = context;
    let mut rng = madsim::rand::thread_rng();
    let incarnation: u64 = rng.gen();
    let mut broker = BrokerConfig {
        node_id: id,
        advertised_host: node_ip(id),
        advertised_port: i32::from(BROKER_PORT),
        default_replication_factor: voters.len() as i16,
        // Fewer than Kafka's 50: every follower fetch carries each partition it follows, and
        // a handful spreads the coordinators over the nodes as well.
        offsets_topic_partitions: 2,
        ..BrokerConfig::default()
    };
    // As a production cluster sets it: acks=all writes (group commits among them) need two
    // replicas, so one lost machine loses nothing acknowledged.
    broker.log.min_insync_replicas = 2;
    let mut config = NodeConfig::new(broker, voters, incarnation);
    // Datagrams may be lost here: a follower fetch or controller request unanswered for a
    // second is sent again (twice the longest fetch wait).
    config.request_timeout_ms = 1_000;
    config.lost_unsynced = machine
        .rebooted
        .swap(false, std::sync::atomic::Ordering::SeqCst);
    // Leadership moves back to preferred replicas every few seconds in drawn runs, so the
    // checkers see those elections too (Kafka checks every 300 s); scripted scenarios keep
    // the default, their faults aimed at the leaders they found.
    if !scripted {
        config.controller.imbalance_check_interval_ms = 10_000;
    }
    // Election jitter from the seed: raft-rs's own draw escapes madsim. The timeouts of
    // two voters never match (each id its own residue modulo 3), else voters that start
    // together can split their votes in step for ever (seed 623 of `--nodes 3` once did:
    // no leader in 80 s).
    let step = id.max(1) as usize - 1;
    config.election_tick = match scripted {
        true => 10 + 3 * step + rng.gen_range(0..3),
        false => 10 + step % 3 + 3 * rng.gen_range(0..4),
    };
    let node = match ClusterNode::open(disk, config, now()) {
        Ok(node) => node,
        Err(err) => {
            trace.record(format!("{} node{id}: cannot open: {err}", now().0));
            return;
        }
    };
    trace.record(format!("{} node{id}: open", now().0));
    let observer = trace_changes(id, trace.clone(), history);
    let ready = move |shared| {
        registry.lock().expect("registry").insert(id, shared);
    };
    serve(node, id, machine, true, observer, trace, ready).await;
}

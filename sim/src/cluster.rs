//! One simulation run of a cluster: three nodes (quorum voters, controller, brokers) on their
//! own simulated disks, a topic replicated on all of them with `min.insync.replicas=2`,
//! acks=all producers and consumers that follow the leaders, a consumer group whose
//! coordinator is the leader of its `__consumer_offsets` partition, and faults drawn from the
//! seed — process kills, at most one power loss, nodes cut off from the others, clients and
//! group members cut off or killed.
//! After the safety phase every fault heals; the workload must finish, the replicas must
//! converge, and the checkers must find nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brook_core::NodeId;
use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle, Runtime};

use crate::checker::{check, Failure};
use crate::cluster_check::{await_convergence, check_replicas, Layout};
use crate::cluster_node::{run_node, NodeContext, Registry};
use crate::cluster_workload as workload;
use crate::disk::SimDisk;
use crate::group_member::{observe_group, start_members, GroupEvent, GROUP};
use crate::node::now;
use crate::node::{node_ip, MachineFaults};
use crate::reassign::Move;
use crate::run::RunReport;
use crate::scenario::Scenario;
use crate::trace::Trace;
use crate::workload::{History, SharedHistory, PARTITIONS, TOPIC};
use crate::Options;

/// Plain producers in a cluster run (acks=all, retries).
const PRODUCERS: usize = 2;
/// Producers with weaker acknowledgements: one acks=1 (retried; losses counted), one acks=0.
const WEAK_PRODUCERS: usize = 2;
/// Consumers in a cluster run.
const CONSUMERS: usize = 2;
/// Transactions the second instance of the transactional producer runs (the first runs
/// until fenced).
const TRANSACTIONS_PER_INSTANCE: u32 = 20;
/// Consumer-group members in a cluster run.
const MEMBERS: usize = 3;

/// One fault of a cluster run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The node's process dies; its page cache survives.
    Kill(i32),
    /// The node stops as on SIGTERM: a controlled shutdown hands its leadership over (up to
    /// the session timeout), then the process ends.
    Shutdown(i32),
    /// The node's machine loses power: unsynced bytes are lost or torn.
    PowerLoss(i32),
    /// The node is cut off from the other nodes (clients still reach it).
    Isolate(i32),
    /// A client is cut off from every node.
    ClogClient(usize),
    /// The node's disk has a latency spike: each request and message it handles waits this
    /// many milliseconds first.
    SlowDisk(i32, u64),
    /// A group member's process dies (it restarts under a new member id).
    KillMember(usize),
    /// A group member is cut off from every node (its session may expire while it runs on).
    IsolateMember(usize),
    /// The node coordinating the group when the fault starts is killed (scenarios).
    KillCoordinator,
    /// The node coordinating the group when the fault starts is cut off from the other
    /// nodes (scenarios).
    IsolateCoordinator,
    /// The node's replica fetcher is stuck: it stays in the quorum and keeps heartbeating,
    /// but fetches nothing, so it falls behind (and, restarted, stays behind) (scenarios).
    StallFetcher(i32),
    /// The node, not a voter (a broker only), starts for the first time: it joins the
    /// running cluster. Its end does nothing.
    Join(i32),
    /// The links between two nodes are cut, both ways (scenarios).
    Cut(i32, i32),
}

/// The nodes of the workload's partition 0 by role when a scenario's schedule starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Roles {
    /// Its leader.
    leader: i32,
    /// The follower the controller elects first (assignment order).
    first: i32,
    /// The other follower.
    second: i32,
    /// The metadata quorum's leader then, as the node that saw partition 0 knew it.
    quorum_leader: Option<i32>,
}

/// A fault as it happened: when it started and ended (simulated ms), on which node.
#[derive(Clone, Copy, Debug)]
struct Happened {
    fault: Fault,
    start_ms: i64,
    end_ms: i64,
}

/// The faults of a run, drawn from its seed.
struct ClusterPlan {
    /// The nodes: the voters `1..=nodes`, and a broker that joins later (`Fault::Join`) above
    /// them.
    brokers: i32,
    /// (start ms into the safety phase, how long, fault).
    faults: Vec<(u64, u64, Fault)>,
    /// The reassignments the reassigner asks for, in time order.
    moves: Vec<Move>,
    segment_bytes: Option<u64>,
    /// Of a thousand messages between nodes, how many are lost.
    peer_loss_per_mille: u32,
}

impl ClusterPlan {
    fn draw(nodes: i32, safety_ms: u64, clients: usize) -> ClusterPlan {
        let mut rng = thread_rng();
        let mut faults = Vec::new();
        let mut power_lost = false;
        for _ in 0..rng.gen_range(1..=5) {
            let at = rng.gen_range(500..safety_ms.saturating_sub(1_000).max(501));
            let duration = rng.gen_range(500..12_000);
            let node = rng.gen_range(1..=nodes);
            let fault = match rng.gen_range(0..10) {
                // A third of the stops are controlled shutdowns (no extra draw: the seed's
                // other faults stay as they were).
                0..=3 if at % 3 == 0 => Fault::Shutdown(node),
                0..=3 => Fault::Kill(node),
                // Damage within what the cluster claims to survive: fewer nodes than
                // min.insync.replicas lose power, so at most one.
                4 | 5 if !power_lost => {
                    power_lost = true;
                    Fault::PowerLoss(node)
                }
                4..=6 => Fault::Isolate(node),
                7 => Fault::SlowDisk(node, rng.gen_range(20..400)),
                _ => Fault::ClogClient(rng.gen_range(0..clients)),
            };
            faults.push((at, duration, fault));
        }
        for _ in 0..rng.gen_range(0..=2) {
            let at = rng.gen_range(500..safety_ms.saturating_sub(1_000).max(501));
            let duration = rng.gen_range(500..12_000);
            let member = rng.gen_range(0..MEMBERS);
            let fault = match rng.gen_bool(0.5) {
                true => Fault::KillMember(member),
                false => Fault::IsolateMember(member),
            };
            faults.push((at, duration, fault));
        }
        let segment_bytes = rng.gen_bool(0.5).then(|| rng.gen_range(2_048..16_384));
        let peer_loss_per_mille = [0, 0, 5, 20][rng.gen_range(0..4)];
        // A quarter of the runs add a broker and move a partition onto it, then drain it
        // (drawn last: the faults above stay what the seed drew before).
        let mut moves = Vec::new();
        let mut brokers = nodes;
        if rng.gen_range(0..4) == 0 && safety_ms >= 18_000 {
            brokers = nodes + 1;
            let join = rng.gen_range(500..3_000);
            faults.push((join, 0, Fault::Join(brokers)));
            let partition = rng.gen_range(0..PARTITIONS);
            let mut target: Vec<i32> = (1..=nodes).collect();
            let replaced = rng.gen_range(0..target.len());
            target[replaced] = brokers;
            shuffle(&mut target, &mut rng);
            let onto = join + rng.gen_range(1_000..5_000);
            moves.push(Move {
                at_ms: onto,
                partition,
                target,
            });
            let mut back: Vec<i32> = (1..=nodes).collect();
            shuffle(&mut back, &mut rng);
            moves.push(Move {
                at_ms: onto + rng.gen_range(2_000..8_000),
                partition,
                target: back,
            });
        }
        faults.sort_by_key(|f| f.0);
        ClusterPlan {
            brokers,
            faults,
            moves,
            segment_bytes,
            peer_loss_per_mille,
        }
    }
}

/// Puts `items` in an order drawn from `rng` (Fisher–Yates).
fn shuffle<T>(items: &mut [T], rng: &mut impl Rng) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.gen_range(0..=i));
    }
}

impl ClusterPlan {
    /// A scenario's plan before its schedule is known: no drawn settings, no faults yet.
    fn quiet(nodes: i32, scenario: Scenario) -> ClusterPlan {
        ClusterPlan {
            brokers: nodes + i32::from(scenario.adds_broker()),
            faults: Vec::new(),
            moves: Vec::new(),
            segment_bytes: None,
            peer_loss_per_mille: 0,
        }
    }

    /// The fixed schedule of a scenario over the nodes' roles in partition 0: (start ms into
    /// the safety phase, how long, fault). A node whose fetcher must stay stuck after a
    /// restart has it stuck before it comes back.
    fn scripted(scenario: Scenario, roles: Roles) -> Vec<(u64, u64, Fault)> {
        let Roles {
            leader,
            first,
            second,
            ..
        } = roles;
        let added = NEW_BROKER;
        match scenario {
            // Members commit every half second: a kill 4 s in lands among them; the next
            // coordinator is cut off once the first is back and in sync.
            Scenario::CoordinatorFailoverMidCommit => vec![
                (4_000, 6_000, Fault::KillCoordinator),
                (13_000, 5_000, Fault::IsolateCoordinator),
            ],
            // The second follower is fenced (ISR leader + first); the first follower is
            // fenced while the ISR is at min.insync.replicas, so it becomes eligible (ELR)
            // holding every committed record, and restarts (a new follower); the leader
            // dies and the controller elects the first follower from the ELR. Each kill
            // lasts 5 s: the fence lands before the restart even when the killed node was
            // the controller (a quorum election with check-quorum takes up to 4 s).
            Scenario::Kip101HwTruncateThenElect => vec![
                (1_000, 5_000, Fault::Kill(second)),
                (2_000, 25_000, Fault::StallFetcher(second)),
                (7_000, 5_000, Fault::Kill(first)),
                (8_000, 19_000, Fault::StallFetcher(first)),
                (14_000, 5_000, Fault::Kill(leader)),
            ],
            // The first follower stops fetching, so the leader's newest (uncommitted) tail
            // reaches the second follower only; the leader loses power and the first
            // follower leads a new epoch from its shorter log while nobody fetches from it
            // (the old leader comes back with a stuck fetcher); it loses power too, and the
            // second follower leads from its longer log. The first follower returns
            // holding batches of an epoch its leader never had, at offsets where the
            // leader holds the older epoch's tail.
            Scenario::Kip279DoubleFailoverDivergence => vec![
                (1_000, 2_100, Fault::StallFetcher(first)),
                (2_900, 9_100, Fault::StallFetcher(second)),
                (3_000, 5_000, Fault::PowerLoss(leader)),
                (7_500, 4_500, Fault::StallFetcher(leader)),
                (10_000, 2_000, Fault::PowerLoss(first)),
            ],
            // The first follower is fenced and kept behind (the ISR is leader + second,
            // still committing); the second follower goes down (ISR the leader alone, the
            // second eligible); the leader loses power while no quorum is left, and comes
            // back before the second does.
            Scenario::Kip966LastReplicaStanding => vec![
                (1_000, 5_000, Fault::Kill(first)),
                (2_000, 25_000, Fault::StallFetcher(first)),
                (7_000, 20_000, Fault::Kill(second)),
                (13_000, 4_000, Fault::PowerLoss(leader)),
            ],
            // Longer than a quorum election (up to 4 s) plus the broker session timeout
            // (9 s).
            Scenario::IsolatedOldLeader => vec![(1_000, 18_000, Fault::Isolate(leader))],
            // Both followers are fenced in turn and come back behind: the first outside the
            // ISR and the ELR, the second eligible; then the leader is cut off until the
            // controller fences it (9 s, after an election of up to 4 s) and elects.
            Scenario::Jepsen2013IsrShrinkThenIsolate => vec![
                (1_000, 5_000, Fault::Kill(first)),
                (2_000, 28_000, Fault::StallFetcher(first)),
                (7_000, 5_000, Fault::Kill(second)),
                (8_000, 22_000, Fault::StallFetcher(second)),
                (13_000, 17_000, Fault::Isolate(leader)),
            ],
            // Node 4 joins; partition 0 moves to it and the followers (its leader removed)
            // at 3 s while node 4's fetcher is stuck (2–10 s), so the move waits; node 4 is
            // killed (4–9 s) and restarts behind; the first follower is cut off long enough
            // to be fenced (5–17 s), the second killed (12–14 s). Node 4 catches up once its
            // fetcher runs, the first follower once it is back: then the move completes and
            // the leader hands over to node 4.
            Scenario::ReassignUnderFaults => vec![
                (500, 0, Fault::Join(added)),
                (2_000, 8_000, Fault::StallFetcher(added)),
                (4_000, 5_000, Fault::Kill(added)),
                (5_000, 12_000, Fault::Isolate(first)),
                (12_000, 2_000, Fault::Kill(second)),
            ],
            // Node 4 joins and partition 0 moves to it and the followers (it leads); one of
            // the followers that does not lead the quorum (the zombie) is cut off from the
            // voters only (6–18 s: it still reaches node 4, its leader) and a second move
            // removes it at 8 s, before its missed heartbeats fence it (9 s): it never
            // applies its removal while cut off and keeps fetching from node 4.
            Scenario::Kip320ZombieReplica => {
                let (zombie, kept) = zombie_of(roles);
                vec![
                    (500, 0, Fault::Join(added)),
                    (6_000, 12_000, Fault::Cut(zombie, leader)),
                    (6_000, 12_000, Fault::Cut(zombie, kept)),
                ]
            }
        }
    }

    /// The reassignments of a scenario over the nodes' roles in partition 0.
    fn scripted_moves(scenario: Scenario, roles: Roles) -> Vec<Move> {
        let Roles { first, second, .. } = roles;
        let onto_new = |at_ms| Move {
            at_ms,
            partition: 0,
            target: vec![NEW_BROKER, first, second],
        };
        match scenario {
            Scenario::ReassignUnderFaults => vec![onto_new(3_000)],
            Scenario::Kip320ZombieReplica => {
                let (_, kept) = zombie_of(roles);
                vec![
                    onto_new(2_000),
                    Move {
                        at_ms: 8_000,
                        partition: 0,
                        target: vec![NEW_BROKER, kept],
                    },
                ]
            }
            _ => Vec::new(),
        }
    }
}

/// The broker a reassignment scenario adds (voters are 1–3).
const NEW_BROKER: i32 = 4;

/// `kip320_zombie_replica`'s zombie — the second follower, or the first when the second
/// leads the quorum (cutting the quorum's leader off would move the controller too) — and the
/// follower kept.
fn zombie_of(roles: Roles) -> (i32, i32) {
    match roles.quorum_leader == Some(roles.second) {
        true => (roles.first, roles.second),
        false => (roles.second, roles.first),
    }
}

impl fmt::Display for ClusterPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cluster of 3")?;
        if self.peer_loss_per_mille > 0 {
            write!(f, ", {}‰ of node messages lost", self.peer_loss_per_mille)?;
        }
        if let Some(bytes) = self.segment_bytes {
            write!(f, ", segments of {bytes} B")?;
        }
        for (at, duration, fault) in &self.faults {
            write!(f, ", {fault:?} at {at} ms for {duration} ms")?;
        }
        for m in &self.moves {
            write!(
                f,
                ", move p{} to {:?} at {} ms",
                m.partition, m.target, m.at_ms
            )?;
        }
        Ok(())
    }
}

/// Runs one seed of a cluster run to completion.
pub fn run_cluster_seed(seed: u64, options: &Options) -> RunReport {
    let mut config = madsim::Config::default();
    let latency_ms = 1 + seed % 10;
    config.net.send_latency = Duration::from_millis(1)..Duration::from_millis(latency_ms + 1);
    let runtime = Runtime::with_seed_and_config(seed, config);
    let options = options.clone();
    runtime.block_on(async move { simulate(seed, options).await })
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("literal IP address")
}

async fn simulate(seed: u64, options: Options) -> RunReport {
    let nodes = options.nodes as i32;
    let handle = Handle::current();
    let trace = Trace::default();
    let history: SharedHistory = Arc::new(Mutex::new(History::default()));
    // Producers, consumers, the setup, the group's observer and watcher, the final reader.
    let clients = PRODUCERS + WEAK_PRODUCERS + CONSUMERS + 4;
    let mut plan = match options.scenario {
        Some(scenario) => ClusterPlan::quiet(nodes, scenario),
        None => ClusterPlan::draw(nodes, options.safety_secs * 1000, clients),
    };
    let brokers = plan.brokers;
    match options.scenario {
        Some(scenario) => trace.record(format!("seed {seed} scenario {}", scenario.name())),
        None => trace.record(format!("seed {seed} plan {plan}")),
    }
    let registry: Registry = Arc::default();
    let voters: Vec<NodeId> = (1..=nodes).map(NodeId).collect();
    let disks: Vec<SimDisk> = (0..brokers).map(|_| SimDisk::default()).collect();
    let reboots: Vec<Arc<AtomicBool>> = (0..brokers).map(|_| Arc::default()).collect();
    let stalls: Vec<crate::node::DiskStall> = (0..brokers).map(|_| Arc::default()).collect();
    let fetchers: Vec<Arc<AtomicBool>> = (0..brokers).map(|_| Arc::default()).collect();
    let node_handles: Vec<NodeHandle> = (1..=brokers)
        .map(|id| {
            let disk = disks[id as usize - 1].clone();
            let rebooted = reboots[id as usize - 1].clone();
            let stall = stalls[id as usize - 1].clone();
            let fetcher = fetchers[id as usize - 1].clone();
            let loss = plan.peer_loss_per_mille;
            let context = NodeContext {
                trace: trace.clone(),
                history: history.clone(),
                registry: registry.clone(),
                scripted: options.scenario.is_some(),
            };
            let voters = voters.clone();
            handle
                .create_node()
                .name(format!("node{id}"))
                .ip(ip(&node_ip(id)))
                .init(move || {
                    let (voters, disk) = (voters.clone(), disk.clone());
                    let machine = MachineFaults {
                        rebooted: rebooted.clone(),
                        disk_stall: stall.clone(),
                        loss_per_mille: loss,
                        fetcher_stalled: fetcher.clone(),
                        ..MachineFaults::default()
                    };
                    run_node(id, voters, disk, machine, context.clone())
                })
                .build()
        })
        .collect();
    // A broker above the voters starts only when it joins (`Fault::Join`).
    let mut down = vec![false; brokers as usize + 1];
    for id in nodes + 1..=brokers {
        handle.kill(node_handles[id as usize - 1].id());
        down[id as usize] = true;
    }
    let client_nodes: Vec<NodeHandle> = (0..clients)
        .map(|i| {
            handle
                .create_node()
                .name(format!("client{i}"))
                .ip(ip(&format!("10.0.1.{}", i + 1)))
                .build()
        })
        .collect();
    let setup = client_nodes[0].spawn(workload::create_topic(
        nodes,
        plan.segment_bytes,
        trace.clone(),
    ));
    let _ = madsim::time::timeout(Duration::from_secs(60), setup).await;

    let mut producers = Vec::new();
    for id in 0..PRODUCERS {
        let task = workload::producer(
            id,
            nodes,
            options.records_per_producer,
            -1,
            history.clone(),
            trace.clone(),
        );
        producers.push(client_nodes[1 + id].spawn(task));
    }
    for (k, acks) in [1i16, 0].into_iter().enumerate() {
        let id = PRODUCERS + k;
        // A sixth of the records: enough to cover what acks=1 and acks=0 promise.
        let task = workload::producer(
            id,
            nodes,
            options.records_per_producer.div_ceil(6),
            acks,
            history.clone(),
            trace.clone(),
        );
        producers.push(client_nodes[1 + id].spawn(task));
    }
    // A transactional producer and, later, its second instance, which fences the first
    // (as in the one-node run, `run.rs`).
    let safety_ms = (options.safety_secs * 1000) as i64;
    let zombie_after = thread_rng().gen_range(0..(safety_ms as u64 / 2).max(1));
    let schedules = [
        crate::txn_workload::Schedule {
            after_first: false,
            delay_ms: 0,
            transactions: u32::MAX,
            run_ms: safety_ms,
        },
        crate::txn_workload::Schedule {
            after_first: true,
            delay_ms: zombie_after,
            transactions: TRANSACTIONS_PER_INSTANCE,
            run_ms: i64::MAX,
        },
    ];
    for (instance, schedule) in schedules.into_iter().enumerate() {
        let task = crate::txn_workload::transactional_producer(
            instance,
            nodes,
            schedule,
            history.clone(),
            trace.clone(),
        );
        producers.push(client_nodes[1 + instance].spawn(task));
    }
    let stop = Arc::new(AtomicBool::new(false));
    for id in 0..CONSUMERS {
        let task = workload::consumer(id, nodes, stop.clone(), history.clone());
        drop(client_nodes[1 + PRODUCERS + WEAK_PRODUCERS + id].spawn(task));
    }
    let members = start_members(&handle, MEMBERS, nodes, &stop, &history);
    let observer = observe_group(nodes, stop.clone(), history.clone());
    drop(client_nodes[clients - 3].spawn(observer));
    let loads = watch_group_loads(registry.clone(), brokers, stop.clone(), history.clone());
    drop(madsim::task::spawn(loads));

    // A scenario's schedule starts once the group has a coordinator and partition 0 a
    // leader (a slow election can hold the cluster's start back).
    let mut roles = None;
    if let Some(scenario) = options.scenario {
        let ready = madsim::time::Instant::now() + Duration::from_secs(60);
        loop {
            let coordinator = coordinator_now(&registry, brokers, &down);
            roles = roles_now(&registry, nodes);
            if (coordinator.is_some() && roles.is_some()) || madsim::time::Instant::now() >= ready {
                break;
            }
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(roles) = roles {
            plan.faults = ClusterPlan::scripted(scenario, roles);
            plan.moves = ClusterPlan::scripted_moves(scenario, roles);
        }
        trace.record(format!("{} scenario roles {roles:?}, plan {plan}", now().0));
    }
    // Safety phase: faults on.
    let net = NetSim::current();
    let phase_start = madsim::time::Instant::now();
    let mut events: Vec<(u64, bool, usize, Fault)> = Vec::new();
    for (index, &(at, duration, fault)) in plan.faults.iter().enumerate() {
        events.push((at, true, index, fault));
        events.push((at + duration, false, index, fault));
    }
    events.sort_by_key(|e| e.0);
    let node_id = |n: i32| node_handles[n as usize - 1].id();
    let reassigner = crate::reassign::reassigner(
        nodes,
        plan.moves.clone(),
        phase_start,
        history.clone(),
        trace.clone(),
    );
    // The setup's client node is free once the topic exists.
    let reassigner = client_nodes[0].spawn(reassigner);
    let mut power_lost = false;
    // The node a coordinator fault picked when it started, by fault.
    let mut picked: BTreeMap<usize, i32> = BTreeMap::new();
    // The faults that started, by fault: what the scenarios' checks look at.
    let mut happened: BTreeMap<usize, Happened> = BTreeMap::new();
    for (at, start, index, fault) in events {
        madsim::time::sleep_until(phase_start + Duration::from_millis(at)).await;
        let fault = match fault {
            Fault::KillCoordinator | Fault::IsolateCoordinator => {
                if start {
                    match coordinator_now(&registry, brokers, &down) {
                        Some(node) => picked.insert(index, node),
                        None => {
                            trace.record(format!("{} fault: no coordinator to hit", now().0));
                            continue;
                        }
                    };
                }
                let Some(&node) = picked.get(&index) else {
                    continue;
                };
                match fault {
                    Fault::KillCoordinator => Fault::Kill(node),
                    _ => Fault::Isolate(node),
                }
            }
            other => other,
        };
        let skipped = match fault {
            Fault::Kill(n) | Fault::PowerLoss(n) | Fault::Shutdown(n) => start && down[n as usize],
            _ => false,
        };
        if start && !skipped {
            let (start_ms, end_ms) = (now().0, i64::MAX);
            happened.insert(
                index,
                Happened {
                    fault,
                    start_ms,
                    end_ms,
                },
            );
        } else if let Some(seen) = happened.get_mut(&index).filter(|_| !start) {
            seen.end_ms = now().0;
        }
        match (fault, start) {
            (Fault::Kill(n) | Fault::PowerLoss(n) | Fault::Shutdown(n), true) => {
                if down[n as usize] {
                    continue;
                }
                if let Fault::Shutdown(_) = fault {
                    let node = registry.lock().expect("registry").get(&n).cloned();
                    if let Some(node) = node {
                        node.begin_shutdown();
                        let began = now().0;
                        // As `brook server` bounds it: the broker session timeout.
                        while !node.shutdown_complete() && now().0 - began < 9_000 {
                            madsim::time::sleep(Duration::from_millis(50)).await;
                        }
                        let done = node.shutdown_complete();
                        let took = now().0 - began;
                        trace.record(format!(
                            "{} fault: node{n} controlled shutdown handed over {done} in {took} ms",
                            now().0
                        ));
                    }
                }
                handle.kill(node_id(n));
                down[n as usize] = true;
                // Its peers' connections to it break, as TCP's do when a process dies.
                let registry = registry.lock().expect("registry");
                for (id, node) in registry.iter().filter(|(id, _)| **id != n) {
                    if !down[*id as usize] {
                        node.report_peer_down(NodeId(n));
                    }
                }
                drop(registry);
                if let Fault::PowerLoss(_) = fault {
                    disks[n as usize - 1].power_loss(seed ^ at);
                    reboots[n as usize - 1].store(true, Ordering::SeqCst);
                    power_lost = true;
                }
                trace.record(format!("{} fault: {fault:?}", now().0));
            }
            (Fault::Kill(n) | Fault::PowerLoss(n) | Fault::Shutdown(n), false) => {
                if down[n as usize] {
                    handle.restart(node_id(n));
                    down[n as usize] = false;
                    coordinator_loaded(&history);
                    trace.record(format!("{} fault: node{n} restarted", now().0));
                }
            }
            (Fault::Join(n), true) => {
                handle.restart(node_id(n));
                down[n as usize] = false;
                trace.record(format!("{} fault: node{n} joins", now().0));
            }
            (Fault::Join(_), false) => {}
            (Fault::Cut(a, b), cut) => {
                set_link(&net, node_id(a), node_id(b), cut);
                trace.record(format!("{} fault: node{a}-node{b} cut {cut}", now().0));
            }
            (Fault::KillMember(m), true) => {
                handle.kill(members[m].id());
                let killed = GroupEvent::Killed {
                    member: m,
                    at_ms: now().0,
                };
                history.lock().expect("history").group_events.push(killed);
                trace.record(format!("{} fault: member{m} killed", now().0));
            }
            (Fault::KillMember(m), false) => {
                if handle.is_exit(members[m].id()) {
                    handle.restart(members[m].id());
                    trace.record(format!("{} fault: member{m} restarted", now().0));
                }
            }
            (Fault::KillCoordinator | Fault::IsolateCoordinator, _) => {
                unreachable!("resolved to a node above")
            }
            (Fault::IsolateMember(m), cut) => {
                for n in 1..=brokers {
                    set_link(&net, members[m].id(), node_id(n), cut);
                }
                trace.record(format!("{} fault: member{m} cut off {cut}", now().0));
            }
            (Fault::Isolate(n), cut) => {
                for other in (1..=brokers).filter(|&o| o != n) {
                    set_link(&net, node_id(n), node_id(other), cut);
                }
                trace.record(format!("{} fault: node{n} cut off {cut}", now().0));
            }
            (Fault::StallFetcher(n), stalled) => {
                fetchers[n as usize - 1].store(stalled, Ordering::Relaxed);
                trace.record(format!(
                    "{} fault: node{n} fetcher stalled {stalled}",
                    now().0
                ));
            }
            (Fault::SlowDisk(n, ms), slow) => {
                let ms = if slow { ms } else { 0 };
                stalls[n as usize - 1].store(ms, Ordering::Relaxed);
                trace.record(format!(
                    "{} fault: node{n} disk stalls {ms} ms a step",
                    now().0
                ));
            }
            (Fault::ClogClient(c), cut) => {
                for n in 1..=brokers {
                    set_link(&net, client_nodes[c].id(), node_id(n), cut);
                }
            }
        }
    }
    madsim::time::sleep_until(phase_start + Duration::from_secs(options.safety_secs)).await;

    // Liveness phase: heal everything; the workload must finish and the replicas converge.
    for a in 1..=brokers {
        for b in (1..=brokers).filter(|&b| b != a) {
            set_link(&net, node_id(a), node_id(b), false);
        }
        for client in client_nodes.iter().chain(&members) {
            set_link(&net, client.id(), node_id(a), false);
        }
        if down[a as usize] {
            handle.restart(node_id(a));
            down[a as usize] = false;
            coordinator_loaded(&history);
        }
    }
    for member in &members {
        if handle.is_exit(member.id()) {
            handle.restart(member.id());
        }
    }
    for stall in &stalls {
        stall.store(0, Ordering::Relaxed);
    }
    for fetcher in &fetchers {
        fetcher.store(false, Ordering::Relaxed);
    }
    let heal_ms = now().0;
    for seen in happened.values_mut() {
        seen.end_ms = seen.end_ms.min(heal_ms);
    }
    trace.record(format!("{} heal: network healed, every node up", now().0));
    let deadline = madsim::time::Instant::now() + Duration::from_secs(options.liveness_secs);
    for producer in producers {
        let remaining = deadline.saturating_duration_since(madsim::time::Instant::now());
        let _ = madsim::time::timeout(remaining, producer).await;
    }
    // The replicas converge first: a node that was cut off may still answer as a deposed
    // leader for a moment after healing (stale reads are allowed), and the final read must
    // see the whole log.
    let layout = Layout {
        voters: nodes,
        brokers,
    };
    let converged = await_convergence(&registry, layout, &history, deadline, &trace).await;
    let remaining = deadline.saturating_duration_since(madsim::time::Instant::now());
    let reader = client_nodes[clients - 1].spawn(workload::final_read(
        nodes,
        history.clone(),
        trace.clone(),
    ));
    let _ = madsim::time::timeout(remaining, reader).await;
    // The group must consume everything: wait for its commits to reach the log end.
    let remaining = deadline.saturating_duration_since(madsim::time::Instant::now());
    let watcher = crate::workload::await_group_caught_up(nodes, history.clone(), trace.clone());
    let _ = madsim::time::timeout(remaining, client_nodes[clients - 2].spawn(watcher)).await;
    let remaining = deadline.saturating_duration_since(madsim::time::Instant::now());
    let reader = client_nodes[clients - 1].spawn(crate::txn_workload::final_read_committed(
        nodes,
        history.clone(),
        trace.clone(),
    ));
    let _ = madsim::time::timeout(remaining, reader).await;
    stop.store(true, Ordering::Relaxed);
    reassigner.abort();

    let history = history.lock().expect("history");
    // acks=all with min.insync.replicas=2 and at most one power loss: nothing acknowledged
    // may be lost.
    let mut verdict = check(&history, false);
    if history.producers_done < PRODUCERS {
        verdict.failures.push(Failure {
            checker: "liveness",
            detail: format!(
                "{} of {PRODUCERS} producers finished after healing",
                history.producers_done
            ),
        });
    }
    // Group commits are acks=all writes to `__consumer_offsets` (RF 3, min.insync.replicas
    // 2): no single power loss may take an acknowledged one back.
    crate::checker::check_group(&history, false, true, &mut verdict);
    // Transactions: the coordinator's state (`__transaction_state`, RF 3, min.insync 2) and
    // the markers are acks=all writes too: exactly-once holds through any fault drawn.
    crate::txn_workload::check_transactions(&history, &mut verdict);
    if let Some(scenario) = options.scenario {
        let happened: Vec<Happened> = happened.into_values().collect();
        if let Some(detail) = scenario_missed(scenario, roles, &happened, &history) {
            verdict.failures.push(Failure {
                checker: "scenario",
                detail,
            });
        }
    }
    match converged {
        Ok(replicas) => check_replicas(&history, &replicas, &mut verdict.failures),
        Err(failure) => verdict.failures.push(failure),
    }
    crate::reassign::check_moves(&history, &mut verdict.failures);
    trace.record(format!(
        "{} done: {} acks, {} acks=1 ({} lost, counted), {} acks=0 sends, {} reads, {} failures, power lost {power_lost}",
        now().0,
        history.acks.len(),
        history.leader_acks.len(),
        verdict.leader_ack_losses,
        history.unacknowledged_sends,
        history.reads.len(),
        verdict.failures.len(),
    ));
    RunReport {
        seed,
        plan: plan.to_string(),
        acks: history.acks.len(),
        verdict,
        trace_hash: trace.hash(),
        trace: trace.lines(),
        simulated_secs: phase_start.elapsed().as_secs_f64(),
    }
}

/// Cuts (or restores) the link between two simulated machines, both ways.
fn set_link(net: &NetSim, a: madsim::task::NodeId, b: madsim::task::NodeId, cut: bool) {
    if cut {
        net.clog_link(a, b);
        net.clog_link(b, a);
    } else {
        net.unclog_link(a, b);
        net.unclog_link(b, a);
    }
}

/// Records that a node restarted (and reloads what it coordinates), for the group checkers.
fn coordinator_loaded(history: &SharedHistory) {
    let event = GroupEvent::CoordinatorLoaded { at_ms: now().0 };
    history.lock().expect("history").group_events.push(event);
}

/// The live node that coordinates the group now (in the newest leader epoch), if any.
fn coordinator_now(registry: &Registry, nodes: i32, down: &[bool]) -> Option<i32> {
    let registry = registry.lock().expect("registry");
    let live = (1..=nodes).filter(|&id| !down[id as usize]);
    let coordinating = live.filter_map(|id| {
        let state = registry.get(&id)?.lock();
        let epoch = state.node().broker().coordinator_epoch(GROUP)?;
        Some((epoch.0, id))
    });
    coordinating.max().map(|(_, id)| id)
}

/// Partition 0's roles as the first node with a view of it sees them: its leader, then its
/// other replicas in assignment order.
fn roles_now(registry: &Registry, nodes: i32) -> Option<Roles> {
    let registry = registry.lock().expect("registry");
    (1..=nodes).find_map(|id| {
        let state = registry.get(&id)?.lock();
        let topic = state.node().image().topic(TOPIC)?;
        let partition = topic.partitions.first()?;
        let leader = partition.leader?.0;
        let mut followers = partition
            .replicas
            .iter()
            .map(|n| n.0)
            .filter(|&n| n != leader);
        let (first, second) = (followers.next()?, followers.next()?);
        Some(Roles {
            leader,
            first,
            second,
            quorum_leader: state.node().quorum_leader().map(|n| n.0),
        })
    })
}

/// What a scenario scripted that did not happen (its `scenario` check), if anything.
fn scenario_missed(
    scenario: Scenario,
    roles: Option<Roles>,
    happened: &[Happened],
    history: &History,
) -> Option<String> {
    if scenario == Scenario::CoordinatorFailoverMidCommit {
        return (history.coordinators.len() < 2).then(|| {
            format!(
                "the group's coordinator never moved (seen on {:?})",
                history.coordinators
            )
        });
    }
    let Some(roles) = roles else {
        return Some("partition 0 never had a leader with three replicas".into());
    };
    let views = || history.partition_views.iter().filter(|v| v.partition == 0);
    // When a node first saw partition 0's ISR as `node` alone.
    let alone = |node: i32| views().find(|v| v.isr == [node]).map(|v| v.at_ms);
    // The first view of partition 0 led by `node` in an epoch after `epoch`.
    let led_by =
        |node: i32, epoch: i32| views().find(|v| v.leader == Some(node) && v.epoch > epoch);
    let window = |fault: Fault| happened.iter().find(|h| h.fault == fault);
    let Roles {
        leader,
        first,
        second,
        ..
    } = roles;
    match scenario {
        Scenario::CoordinatorFailoverMidCommit => None,
        Scenario::ReassignUnderFaults => {
            let accepted = history.moves.first().and_then(|m| m.accepted_ms);
            let led_after = |at: i64| {
                views().any(|v| v.leader == Some(NEW_BROKER) && v.at_ms >= at && v.node != leader)
            };
            if window(Fault::Join(NEW_BROKER)).is_none() {
                Some(format!("node{NEW_BROKER} never joined"))
            } else if window(Fault::Kill(NEW_BROKER)).is_none() {
                Some(format!("node{NEW_BROKER} was never killed"))
            } else if window(Fault::Isolate(first)).is_none() {
                Some(format!("node{first} was never cut off"))
            } else {
                match accepted {
                    None => Some("the move of partition 0 was never accepted".into()),
                    Some(at) if !led_after(at) => Some(format!(
                        "node{NEW_BROKER} never led partition 0 after the move was accepted"
                    )),
                    Some(_) => None,
                }
            }
        }
        Scenario::Kip320ZombieReplica => {
            let (zombie, kept) = zombie_of(roles);
            let Some(cut) = window(Fault::Cut(zombie, leader)) else {
                return Some(format!("node{zombie} was never cut off"));
            };
            let during = |at: i64| (cut.start_ms..cut.end_ms).contains(&at);
            let removed = [NEW_BROKER, kept];
            // Another node saw the move that removed the zombie complete, node 4 leading.
            let done = views().find(|v| {
                v.node != zombie
                    && !v.reassigning
                    && v.replicas == removed
                    && v.leader == Some(NEW_BROKER)
            });
            let learned = views()
                .find(|v| v.node == zombie && during(v.at_ms) && !v.replicas.contains(&zombie));
            match (done, learned) {
                (None, _) => Some(format!(
                    "partition 0 never reached {removed:?} led by node{NEW_BROKER}"
                )),
                (Some(v), _) if !during(v.at_ms) => Some(format!(
                    "node{zombie}'s removal completed at {} ms, outside its cut {}..{} ms",
                    v.at_ms, cut.start_ms, cut.end_ms
                )),
                (_, Some(v)) => Some(format!(
                    "node{zombie} learned of its removal at {} ms, while cut off",
                    v.at_ms
                )),
                (Some(_), None) => None,
            }
        }
        Scenario::Kip101HwTruncateThenElect => {
            if alone(leader).is_none() {
                Some(format!(
                    "partition 0's ISR never shrank to its leader node{leader}"
                ))
            } else if led_by(first, 0).is_none() {
                Some(format!(
                    "the restarted follower node{first} was never elected"
                ))
            } else {
                None
            }
        }
        Scenario::Kip279DoubleFailoverDivergence => {
            let powered_off = happened
                .iter()
                .filter(|h| matches!(h.fault, Fault::PowerLoss(_)))
                .count();
            let second_term = led_by(first, 0).and_then(|v| led_by(second, v.epoch));
            if powered_off < 2 {
                Some(format!("{powered_off} of 2 nodes lost power"))
            } else if second_term.is_none() {
                Some(format!(
                    "partition 0 was not led by node{first} and then node{second}"
                ))
            } else {
                None
            }
        }
        Scenario::Kip966LastReplicaStanding => {
            let loss = window(Fault::PowerLoss(leader));
            match (alone(leader), loss) {
                (Some(at), Some(loss)) if at < loss.start_ms => None,
                (at, loss) => Some(format!(
                    "node{leader} did not lose power as the ISR's last member (alone at {at:?}, power lost {:?})",
                    loss.map(|l| l.start_ms)
                )),
            }
        }
        Scenario::IsolatedOldLeader | Scenario::Jepsen2013IsrShrinkThenIsolate => {
            let Some(cut) = window(Fault::Isolate(leader)) else {
                return Some(format!("node{leader} was never cut off"));
            };
            let during = |at: i64| (cut.start_ms..=cut.end_ms).contains(&at);
            let replaced = views().any(|v| {
                during(v.at_ms) && v.leader.is_some_and(|l| l != leader) && v.node != leader
            });
            let sends = history
                .produce_sends
                .iter()
                .filter(|s| s.node == leader && s.partition == 0 && during(s.at_ms))
                .count();
            if !replaced {
                Some(format!(
                    "no new leader was elected while node{leader} was cut off"
                ))
            } else if scenario == Scenario::IsolatedOldLeader && sends == 0 {
                Some(format!("node{leader} got no produce request while cut off"))
            } else if scenario == Scenario::Jepsen2013IsrShrinkThenIsolate
                && alone(leader).is_none_or(|at| at > cut.start_ms)
            {
                Some(format!(
                    "partition 0's ISR had not shrunk to node{leader} when it was cut off"
                ))
            } else {
                None
            }
        }
    }
}

/// Until `stop`, records a [`GroupEvent::CoordinatorLoaded`] whenever a node is seen
/// coordinating the group in a leader epoch it was not seen coordinating it in before (it
/// loaded the group then, and its members' sessions started again).
async fn watch_group_loads(
    registry: Registry,
    nodes: i32,
    stop: Arc<AtomicBool>,
    history: SharedHistory,
) {
    let mut seen = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        let loads: Vec<(i32, i32)> = {
            let registry = registry.lock().expect("registry");
            (1..=nodes)
                .filter_map(|id| {
                    let state = registry.get(&id)?.lock();
                    let epoch = state.node().broker().coordinator_epoch(GROUP)?;
                    Some((id, epoch.0))
                })
                .collect()
        };
        for load in loads {
            if seen.insert(load) {
                coordinator_loaded(&history);
                history.lock().expect("history").coordinators.insert(load.0);
            }
        }
        madsim::time::sleep(Duration::from_millis(100)).await;
    }
}

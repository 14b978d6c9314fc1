//! One simulation run: build the nodes, draw the faults, run the safety phase and the
//! liveness phase, check the history.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brook_core::broker::BrokerConfig;
use madsim::net::NetSim;
use madsim::runtime::{Handle, Runtime};

use crate::checker::{check, Verdict};
use crate::disk::SimDisk;
use crate::faults::{CrashKind, DiskFaultKind, FaultPlan};
use crate::group_member::{observe_group, start_members, GroupEvent};
use crate::node::{now, run_broker, MachineFaults};
use crate::trace::Trace;
use crate::txn_workload;
use crate::workload::{self, History, SharedHistory};
use crate::Options;
use madsim::rand::Rng;

/// Plain producers in a run (acks=all, retries).
const PRODUCERS: usize = 2;
/// Idempotent producers in a run.
const IDEMPOTENT_PRODUCERS: usize = 1;
/// Consumers in a run.
const CONSUMERS: usize = 2;
/// Transactions the second instance of the transactional producer runs (the first runs
/// until fenced).
const TRANSACTIONS_PER_INSTANCE: u32 = 20;
/// Consumer-group members in a run.
const MEMBERS: usize = 3;

/// What one seed did.
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// The faults drawn from it.
    pub plan: String,
    /// The checkers' verdict.
    pub verdict: Verdict,
    /// Hash of the trace (determinism check).
    pub trace_hash: u64,
    /// The trace itself.
    pub trace: Vec<String>,
    /// Simulated seconds the run covered.
    pub simulated_secs: f64,
    /// Acknowledged records.
    pub acks: usize,
}

/// Runs one seed to completion (a cluster run when `options.nodes` is above 1).
pub fn run_seed(seed: u64, options: &Options) -> RunReport {
    if options.nodes > 1 {
        return crate::cluster::run_cluster_seed(seed, options);
    }
    let mut config = madsim::Config::default();
    // Latency on every link, drawn from the seed outside the runtime.
    let latency_ms = 1 + seed % 20;
    config.net.send_latency = Duration::from_millis(1)..Duration::from_millis(latency_ms + 1);
    let runtime = Runtime::with_seed_and_config(seed, config);
    let options = options.clone();
    runtime.block_on(async move { simulate(seed, options).await })
}

async fn simulate(seed: u64, options: Options) -> RunReport {
    let handle = Handle::current();
    let trace = Trace::default();
    let history: SharedHistory = Arc::new(Mutex::new(History::default()));
    let clients = PRODUCERS + IDEMPOTENT_PRODUCERS + CONSUMERS + 2;
    let plan = FaultPlan::draw(options.safety_secs * 1000, clients, MEMBERS);
    trace.record(format!("seed {seed} plan {plan}"));
    let started = Instant::now();

    let disk = SimDisk::default();
    let broker_config = BrokerConfig {
        advertised_host: "10.0.0.1".into(),
        ..BrokerConfig::default()
    };
    let lost_per_mille = plan.produce_responses_lost_per_mille;
    let broker = {
        let (disk, trace) = (disk.clone(), trace.clone());
        handle
            .create_node()
            .name("broker")
            .ip(ip("10.0.0.1"))
            .init(move || {
                let (disk, config, trace) = (disk.clone(), broker_config.clone(), trace.clone());
                let faults = MachineFaults {
                    produce_responses_lost_per_mille: lost_per_mille,
                    ..MachineFaults::default()
                };
                run_broker(disk, config, trace, faults)
            })
            .build()
    };
    let client_nodes: Vec<_> = (0..clients)
        .map(|i| {
            handle
                .create_node()
                .name(format!("client{i}"))
                .ip(ip(&format!("10.0.1.{}", i + 1)))
                .build()
        })
        .collect();
    madsim::time::sleep(Duration::from_millis(50)).await;
    let setup = client_nodes[0].spawn(workload::create_topic(
        plan.sync_every_append,
        plan.segment_bytes,
        trace.clone(),
    ));
    let _ = setup.await;

    let mut producers = Vec::new();
    for id in 0..PRODUCERS {
        let task = workload::producer(
            id,
            options.records_per_producer,
            history.clone(),
            trace.clone(),
        );
        producers.push(client_nodes[1 + id].spawn(task));
    }
    for k in 0..IDEMPOTENT_PRODUCERS {
        let id = PRODUCERS + k;
        let task = workload::idempotent_producer(
            id,
            options.records_per_producer,
            history.clone(),
            trace.clone(),
        );
        producers.push(client_nodes[1 + id].spawn(task));
    }
    // Two instances of one transactional producer: the first runs until the second fences
    // it, some time in the first half of the safety phase after the first got its producer
    // id (or the phase ends); the second then runs its own.
    let safety_ms = (options.safety_secs * 1000) as i64;
    let zombie_after = madsim::rand::thread_rng().gen_range(0..(safety_ms as u64 / 2).max(1));
    let schedules = [
        txn_workload::Schedule {
            after_first: false,
            delay_ms: 0,
            transactions: u32::MAX,
            run_ms: safety_ms,
        },
        txn_workload::Schedule {
            after_first: true,
            delay_ms: zombie_after,
            transactions: TRANSACTIONS_PER_INSTANCE,
            run_ms: i64::MAX,
        },
    ];
    for (instance, schedule) in schedules.into_iter().enumerate() {
        let task = txn_workload::transactional_producer(
            instance,
            1,
            schedule,
            history.clone(),
            trace.clone(),
        );
        producers.push(client_nodes[1 + instance].spawn(task));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let members = start_members(&handle, MEMBERS, 1, &stop, &history);
    drop(client_nodes[0].spawn(observe_group(1, stop.clone(), history.clone())));
    for id in 0..CONSUMERS {
        let task = workload::consumer(id, stop.clone(), history.clone());
        drop(client_nodes[1 + PRODUCERS + IDEMPOTENT_PRODUCERS + id].spawn(task));
    }

    // Safety phase: faults on.
    let net = NetSim::current();
    let phase_start = madsim::time::Instant::now();
    let mut events: Vec<(u64, Event)> = Vec::new();
    for crash in &plan.crashes {
        events.push((crash.at_ms, Event::Down(crash.kind)));
        events.push((crash.at_ms + crash.down_ms, Event::Up));
    }
    for fault in &plan.member_faults {
        let (member, cut) = (fault.member, fault.cut_off);
        events.push((fault.at_ms, Event::MemberDown(member, cut)));
        events.push((
            fault.at_ms + fault.duration_ms,
            Event::MemberUp(member, cut),
        ));
    }
    for fault in &plan.disk_faults {
        events.push((fault.at_ms, Event::DiskFault(fault.kind)));
        events.push((fault.at_ms + fault.duration_ms, Event::DiskHeal));
    }
    for clog in &plan.clogs {
        events.push((clog.at_ms, Event::Clog(clog.client)));
        events.push((clog.at_ms + clog.duration_ms, Event::Unclog(clog.client)));
    }
    events.sort_by_key(|(at, _)| *at);
    let mut down = false;
    let mut power_lost = false;
    let mut rotted = false;
    let mut disk_faulty = false;
    for (at, event) in events {
        madsim::time::sleep_until(phase_start + Duration::from_millis(at)).await;
        match event {
            Event::Down(_) if down => {}
            Event::Down(kind) => {
                handle.kill(broker.id());
                if kind == CrashKind::PowerLoss {
                    disk.power_loss(seed ^ at);
                    power_lost = true;
                    if plan.bit_rot && !rotted {
                        rotted = flip_a_stored_bit(&disk, &trace);
                    }
                }
                down = true;
                trace.record(format!("{} fault: broker {kind:?}", now().0));
            }
            Event::Up if down => {
                handle.restart(broker.id());
                coordinator_restarted(&history);
                down = false;
                trace.record(format!("{} fault: broker restarted", now().0));
            }
            Event::Up => {}
            Event::DiskFault(kind) => {
                match kind {
                    DiskFaultKind::SyncError => disk.faults().arm_sync_error(),
                    DiskFaultKind::Full => disk.faults().set_full(true, seed ^ at),
                }
                disk_faulty = true;
                trace.record(format!("{} fault: disk {kind:?}", now().0));
            }
            Event::DiskHeal => {
                disk.faults().heal();
                disk_faulty = false;
                // The operator's answer to an offline log directory: restart the broker
                // (unless it is down anyway), whose recovery brings the partitions back.
                if !down {
                    handle.kill(broker.id());
                    handle.restart(broker.id());
                    coordinator_restarted(&history);
                }
                trace.record(format!("{} heal: disk healed, broker restarted", now().0));
            }
            Event::MemberDown(member, true) => {
                net.clog_link(members[member].id(), broker.id());
                net.clog_link(broker.id(), members[member].id());
                trace.record(format!("{} fault: member{member} cut off", now().0));
            }
            Event::MemberUp(member, true) => {
                net.unclog_link(members[member].id(), broker.id());
                net.unclog_link(broker.id(), members[member].id());
            }
            Event::MemberDown(member, false) => {
                handle.kill(members[member].id());
                history
                    .lock()
                    .expect("history")
                    .group_events
                    .push(GroupEvent::Killed {
                        member,
                        at_ms: now().0,
                    });
                trace.record(format!("{} fault: member{member} killed", now().0));
            }
            Event::MemberUp(member, false) => {
                if handle.is_exit(members[member].id()) {
                    handle.restart(members[member].id());
                    trace.record(format!("{} fault: member{member} restarted", now().0));
                }
            }
            Event::Clog(client) => {
                net.clog_link(client_nodes[client % clients].id(), broker.id());
                net.clog_link(broker.id(), client_nodes[client % clients].id());
            }
            Event::Unclog(client) => {
                net.unclog_link(client_nodes[client % clients].id(), broker.id());
                net.unclog_link(broker.id(), client_nodes[client % clients].id());
            }
        }
    }
    madsim::time::sleep_until(phase_start + Duration::from_secs(options.safety_secs)).await;

    // Liveness phase: heal everything; the workload must finish.
    for node in &client_nodes {
        net.unclog_link(node.id(), broker.id());
        net.unclog_link(broker.id(), node.id());
    }
    for member in &members {
        net.unclog_link(member.id(), broker.id());
        net.unclog_link(broker.id(), member.id());
        if handle.is_exit(member.id()) {
            handle.restart(member.id());
        }
    }
    disk.faults().heal();
    if down || disk_faulty {
        handle.kill(broker.id());
        handle.restart(broker.id());
        coordinator_restarted(&history);
        trace.record(format!("{} heal: broker restarted", now().0));
    }
    trace.record(format!("{} heal: network healed", now().0));
    let deadline = madsim::time::Instant::now() + Duration::from_secs(options.liveness_secs);
    for producer in producers {
        let remaining = deadline.saturating_duration_since(madsim::time::Instant::now());
        let _ = madsim::time::timeout(remaining, producer).await;
    }
    let remaining = deadline.saturating_duration_since(madsim::time::Instant::now());
    let reader =
        client_nodes[clients - 1].spawn(workload::final_read(history.clone(), trace.clone()));
    let _ = madsim::time::timeout(remaining, reader).await;
    // The group must consume everything: wait for its commits to reach the log end.
    let remaining = deadline.saturating_duration_since(madsim::time::Instant::now());
    let watcher = workload::await_group_caught_up(1, history.clone(), trace.clone());
    let _ = madsim::time::timeout(remaining, client_nodes[clients - 2].spawn(watcher)).await;
    // Then read_committed must get past every transaction (after a power loss a hanging
    // one may hold it back: such a run is not held to exactly-once, below).
    let remaining = deadline.saturating_duration_since(madsim::time::Instant::now());
    let reader = client_nodes[clients - 1].spawn(txn_workload::final_read_committed(
        1,
        history.clone(),
        trace.clone(),
    ));
    let _ = madsim::time::timeout(remaining, reader).await;
    stop.store(true, Ordering::Relaxed);

    // A failed sync drops the unsynced pages as a power loss would (fsyncgate): with
    // page-cache durability, what was acknowledged before the sync may go with them.
    let sync_failed = disk.faults().sync_errors() > 0;
    let unsynced_lost = power_lost || sync_failed;
    // Bit rot destroys acknowledged records on a single node (no replica to repair from):
    // counted as losses, as long as nothing damaged is served (`corrupt-read`).
    let losses_allowed = (unsynced_lost && !plan.sync_every_append) || rotted;
    let history = history.lock().expect("history");
    let mut verdict = check(&history, losses_allowed);
    if !losses_allowed && !power_lost {
        // A power loss may take a transaction's records, markers or coordinator state
        // with it (a single node has no replica, and the internal topics are not synced
        // on every append): only runs without one are held to exactly-once.
        txn_workload::check_transactions(&history, &mut verdict);
    }
    if !rotted {
        for &(partition, offset) in &history.unreadable {
            verdict.failures.push(crate::checker::Failure {
                checker: "liveness",
                detail: format!(
                    "partition {partition} answers KAFKA_STORAGE_ERROR at {offset} after healing"
                ),
            });
        }
    }
    // Group commits live in __consumer_offsets with page-cache durability: any power loss
    // (or failed sync) may take recent ones back. A write that fails there (a full disk)
    // is not acknowledged: SyncGroup answers an error and the group rebalances.
    crate::checker::check_group(&history, unsynced_lost, !rotted, &mut verdict);
    trace.record(format!(
        "{} done: {} acks, {} reads, {} failures, {} allowed losses",
        now().0,
        history.acks.len(),
        history.reads.len(),
        verdict.failures.len(),
        verdict.allowed_losses
    ));
    let _ = started;
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

#[derive(Clone, Copy, Debug)]
enum Event {
    Down(CrashKind),
    Up,
    Clog(usize),
    Unclog(usize),
    MemberDown(usize, bool),
    MemberUp(usize, bool),
    DiskFault(DiskFaultKind),
    DiskHeal,
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("literal IP address")
}

/// Records that the broker restarted, for the group checkers.
fn coordinator_restarted(history: &crate::workload::SharedHistory) {
    let event = GroupEvent::CoordinatorLoaded { at_ms: now().0 };
    history.lock().expect("history").group_events.push(event);
}

/// Bit rot: flips one bit of a stored `.log` file of the workload's topic, in the durable
/// image (called right after a power loss, whose restart reads the disk again). The file,
/// position and bit come from the seeded generator. True if a bit flipped.
fn flip_a_stored_bit(disk: &SimDisk, trace: &Trace) -> bool {
    use brook_core::storage::Storage;
    use madsim::rand::{thread_rng, Rng};
    let prefix = format!("{}-", workload::TOPIC);
    let mut candidates = Vec::new();
    for dir in disk
        .dir_names()
        .into_iter()
        .filter(|d| d.starts_with(&prefix))
    {
        let storage = disk.dir(&dir);
        let storage = storage.lock();
        for file in storage.list().unwrap_or_default() {
            let durable = storage.durable_len(&file).unwrap_or(0);
            if file.ends_with(".log") && durable > 0 {
                candidates.push((dir.clone(), file, durable));
            }
        }
    }
    if candidates.is_empty() {
        return false;
    }
    let mut rng = thread_rng();
    let (dir, file, durable) = candidates.swap_remove(rng.gen_range(0..candidates.len()));
    let position = rng.gen_range(0..durable);
    let bit = rng.gen_range(0..8u8);
    disk.dir(&dir).lock().flip_bit(&file, position, bit);
    trace.record(format!(
        "{} fault: bit rot in {dir}/{file} at {position}",
        now().0
    ));
    true
}

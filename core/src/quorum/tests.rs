//! Quorum tests: voters over `MemoryStorage` in one deterministic loop (a seeded network
//! that may drop and reorder, ticks as calls), checked the way a user of the quorum would:
//! what is committed, where, in which order, and what survives a crash.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use proptest::prelude::*;
use protobuf::Message as _;
use raft::eraftpb::{Entry, Message, MessageType};

use super::disk::{LOG_FILE, SNAPSHOT_FILE, STATE_FILE};
use super::*;
use crate::storage::{CrashMode, MemoryStorage, Storage, StorageError};

/// SplitMix64: the tests' only randomness, from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// How many more writes the disk takes before it "loses power" (None: unlimited).
#[derive(Clone, Default)]
struct Budget(Rc<Cell<Option<u32>>>);

/// A `MemoryStorage` whose writes start failing once its budget is spent: a crash in the
/// middle of a `poll`, after which the test crashes the memory storage itself.
struct FaultyDisk {
    inner: MemoryStorage,
    budget: Budget,
}

impl FaultyDisk {
    fn spend(&self, op: &'static str, name: &str) -> Result<(), StorageError> {
        match self.budget.0.get() {
            None => Ok(()),
            Some(0) => Err(StorageError::Io {
                op,
                name: name.to_string(),
                source: std::io::Error::other("power lost"),
            }),
            Some(left) => {
                self.budget.0.set(Some(left - 1));
                Ok(())
            }
        }
    }
}

impl Storage for FaultyDisk {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        self.inner.list()
    }
    fn create(&mut self, name: &str) -> Result<(), StorageError> {
        self.spend("create", name)?;
        self.inner.create(name)
    }
    fn size(&self, name: &str) -> Result<u64, StorageError> {
        self.inner.size(name)
    }
    fn append(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        self.spend("append", name)?;
        self.inner.append(name, data)
    }
    fn read_at(&self, name: &str, position: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        self.inner.read_at(name, position, buf)
    }
    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        self.spend("sync", name)?;
        self.inner.sync(name)
    }
    fn sync_dir(&mut self) -> Result<(), StorageError> {
        self.spend("sync_dir", "")?;
        self.inner.sync_dir()
    }
    fn truncate(&mut self, name: &str, size: u64) -> Result<(), StorageError> {
        self.spend("truncate", name)?;
        self.inner.truncate(name, size)
    }
    fn delete(&mut self, name: &str) -> Result<(), StorageError> {
        self.spend("delete", name)?;
        self.inner.delete(name)
    }
    fn write_atomic(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        self.spend("write_atomic", name)?;
        self.inner.write_atomic(name, data)
    }
    fn close(&mut self, name: &str) -> Result<(), StorageError> {
        self.inner.close(name)
    }
}

/// The caller's state machine: every applied entry, in order.
#[derive(Clone, Debug, Default, PartialEq)]
struct Machine {
    entries: Vec<(u64, Vec<u8>)>,
    /// The quorum's applied index after the last successful poll.
    applied_index: u64,
}

impl Machine {
    fn image(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (index, data) in &self.entries {
            bytes.extend_from_slice(&index.to_be_bytes());
            bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
            bytes.extend_from_slice(data);
        }
        bytes
    }

    fn from_image(mut bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let mut entries = Vec::new();
        while !bytes.is_empty() {
            let index = u64::from_be_bytes(bytes[..8].try_into().unwrap());
            let len = u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
            entries.push((index, bytes[12..12 + len].to_vec()));
            bytes = &bytes[12 + len..];
        }
        entries
    }
}

/// One voter as its driver holds it.
struct Voter {
    /// None while crashed (between a storage failure and the reopen).
    quorum: Option<Quorum<FaultyDisk>>,
    budget: Budget,
    machine: Machine,
    config: QuorumConfig,
    /// Stopped: not ticked or polled, its messages dropped (a partition, not a crash).
    stopped: bool,
    snapshots_installed: u32,
}

/// Voters and the network between them, all driven from one seed.
struct Cluster {
    voters: Vec<Voter>,
    in_flight: VecDeque<(NodeId, NodeId, Vec<u8>)>,
    rng: Rng,
    /// Percent of messages lost.
    drop_percent: u64,
    /// Deliver each round's messages in a random order.
    reorder: bool,
    /// Percent of messages held back until after the next tick.
    delay_percent: u64,
    /// Messages held back.
    delayed: Vec<(NodeId, NodeId, Vec<u8>)>,
    /// Every entry any voter handed out as committed: index → data.
    committed: BTreeMap<u64, Vec<u8>>,
    /// Every output, for the determinism check.
    trace: Vec<String>,
    /// Messages a voter refused (must stay 0 without crashes or damage).
    bad_messages: u64,
    crashes: u64,
    next_proposal: u64,
}

fn config(node: i32, voters: usize, snapshot_interval: u64) -> QuorumConfig {
    QuorumConfig {
        node: NodeId(node),
        voters: (0..voters as i32).map(NodeId).collect(),
        // Distinct timeouts per voter, as a driver's seeded jitter would give.
        election_tick: 10 + ELECTION_JITTER.with(|j| j.get()) * node as usize,
        heartbeat_tick: 2,
        snapshot_interval,
    }
}

thread_local! { static ELECTION_JITTER: Cell<usize> = const { Cell::new(4) }; }

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ *byte as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Cluster {
    fn new(voters: usize, snapshot_interval: u64, seed: u64) -> Cluster {
        let voters = (0..voters)
            .map(|node| {
                let budget = Budget::default();
                let disk = FaultyDisk {
                    inner: MemoryStorage::new(),
                    budget: budget.clone(),
                };
                let config = config(node as i32, voters, snapshot_interval);
                let (quorum, recovered) = Quorum::open(disk, config.clone()).unwrap();
                assert_eq!(recovered, Recovered::default());
                Voter {
                    quorum: Some(quorum),
                    budget,
                    machine: Machine::default(),
                    config,
                    stopped: false,
                    snapshots_installed: 0,
                }
            })
            .collect();
        Cluster {
            voters,
            in_flight: VecDeque::new(),
            rng: Rng(seed),
            drop_percent: 0,
            reorder: false,
            delay_percent: 0,
            delayed: Vec::new(),
            committed: BTreeMap::new(),
            trace: Vec::new(),
            bad_messages: 0,
            crashes: 0,
            next_proposal: 0,
        }
    }

    fn quorum(&self, i: usize) -> &Quorum<FaultyDisk> {
        self.voters[i].quorum.as_ref().unwrap()
    }

    fn live(&self, i: usize) -> bool {
        !self.voters[i].stopped && self.voters[i].quorum.is_some()
    }

    /// The live leader with the highest term.
    fn leader(&self) -> Option<usize> {
        (0..self.voters.len())
            .filter(|&i| self.live(i) && self.quorum(i).is_leader())
            .max_by_key(|&i| self.quorum(i).term())
    }

    /// Polls voter `i` and applies its output; a storage failure crashes it.
    fn poll(&mut self, i: usize) {
        let quorum = self.voters[i].quorum.as_mut().unwrap();
        let output = match quorum.poll() {
            Ok(output) => output,
            Err(QuorumError::Storage(_)) => return self.crash_and_reopen(i),
            Err(err) => panic!("voter {i}: poll failed: {err}"),
        };
        let applied_index = quorum.applied_index();
        for (to, bytes) in &output.messages {
            self.trace.push(format!("{i}->{to}: {:016x}", fnv(bytes)));
            self.in_flight
                .push_back((NodeId(i as i32), *to, bytes.clone()));
        }
        for committed in output.committed {
            self.trace.push(format!("{i} applies {committed:?}"));
            self.apply(i, committed);
        }
        let voter = &mut self.voters[i];
        voter.machine.applied_index = applied_index;
        let quorum = voter.quorum.as_mut().unwrap();
        if quorum.snapshot_due() {
            let image = voter.machine.image();
            match quorum.snapshot(applied_index, image) {
                Ok(()) => {}
                Err(QuorumError::Storage(_)) => self.crash_and_reopen(i),
                Err(err) => panic!("voter {i}: snapshot failed: {err}"),
            }
        }
    }

    /// Applies one committed step to voter `i`'s machine, checking it against what every
    /// other voter applied at the same index.
    fn apply(&mut self, i: usize, committed: Committed) {
        let machine = &mut self.voters[i].machine;
        match committed {
            Committed::Entry { index, data, .. } => {
                let last = machine.entries.last().map_or(0, |(index, _)| *index);
                assert!(
                    index > last,
                    "voter {i}: entry {index} applied after {last}"
                );
                machine.entries.push((index, data.clone()));
                let agreed = self.committed.entry(index).or_insert(data.clone());
                assert_eq!(*agreed, data, "voter {i}: entry {index} differs");
            }
            Committed::Snapshot { index, data } => {
                assert!(
                    index > machine.applied_index,
                    "voter {i}: snapshot goes back"
                );
                machine.entries = Machine::from_image(&data);
                self.voters[i].snapshots_installed += 1;
                self.check_agrees(i);
            }
        }
    }

    /// Voter `i`'s machine holds exactly the committed entries up to its applied index.
    fn check_agrees(&mut self, i: usize) {
        let machine = &self.voters[i].machine;
        for (index, data) in &machine.entries {
            let agreed = self.committed.entry(*index).or_insert(data.clone());
            assert_eq!(agreed, data, "voter {i}: entry {index} differs");
        }
        let upto = machine.entries.last().map_or(0, |(index, _)| *index);
        let expected: Vec<u64> = self.committed.range(..=upto).map(|(i, _)| *i).collect();
        let held: Vec<u64> = machine.entries.iter().map(|(index, _)| *index).collect();
        assert_eq!(held, expected, "voter {i}: a committed entry is missing");
    }

    /// Power loss on voter `i`'s disk, then reopen: what it recovers is a prefix of the
    /// committed sequence and covers everything it handed out before.
    fn crash_and_reopen(&mut self, i: usize) {
        let mode = match self.rng.below(2) {
            0 => CrashMode::LoseUnsynced,
            _ => CrashMode::Tear {
                seed: self.rng.next(),
            },
        };
        self.crash_with(i, mode);
    }

    fn crash_with(&mut self, i: usize, mode: CrashMode) {
        self.crashes += 1;
        self.trace.push(format!("{i} crashes ({mode:?})"));
        let voter = &mut self.voters[i];
        let mut disk = voter.quorum.take().unwrap().into_storage();
        disk.inner.crash(mode);
        voter.budget.0.set(None);
        let (quorum, recovered) = Quorum::open(disk, voter.config.clone())
            .unwrap_or_else(|err| panic!("voter {i}: reopen after {mode:?}: {err}"));
        assert!(
            quorum.applied_index() >= voter.machine.applied_index,
            "voter {i}: handed out {} before the crash, recovered only {}",
            voter.machine.applied_index,
            quorum.applied_index()
        );
        let mut machine = Machine {
            applied_index: quorum.applied_index(),
            ..Machine::default()
        };
        if let Some((_, image)) = &recovered.snapshot {
            machine.entries = Machine::from_image(image);
        }
        machine.entries.extend(recovered.entries.iter().cloned());
        voter.machine = machine;
        voter.quorum = Some(quorum);
        self.check_agrees(i);
    }

    /// Polls every live voter and delivers what is in flight, until the network is quiet.
    fn settle(&mut self) {
        for _ in 0..32 {
            for i in 0..self.voters.len() {
                if self.live(i) {
                    self.poll(i);
                }
            }
            if self.in_flight.is_empty() {
                return;
            }
            let mut batch: Vec<_> = self.in_flight.drain(..).collect();
            if self.reorder {
                for k in (1..batch.len()).rev() {
                    let j = self.rng.below(k as u64 + 1) as usize;
                    batch.swap(k, j);
                }
            }
            for (from, to, bytes) in batch {
                if self.delay_percent > 0 && self.rng.below(100) < self.delay_percent {
                    self.delayed.push((from, to, bytes));
                } else {
                    self.deliver(from, to, &bytes);
                }
            }
        }
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, bytes: &[u8]) {
        let (sender, receiver) = (from.0 as usize, to.0 as usize);
        if self.voters[sender].stopped || !self.live(receiver) {
            return;
        }
        if self.drop_percent > 0 && self.rng.below(100) < self.drop_percent {
            return;
        }
        let quorum = self.voters[receiver].quorum.as_mut().unwrap();
        match quorum.handle_message(from, bytes) {
            Ok(()) => {}
            Err(QuorumError::BadMessage { reason, .. }) => {
                self.trace.push(format!("{receiver} refuses: {reason}"));
                self.bad_messages += 1;
            }
            Err(err) => panic!("voter {receiver}: {err}"),
        }
    }

    fn tick(&mut self) {
        self.in_flight.extend(self.delayed.drain(..));
        for i in 0..self.voters.len() {
            if self.live(i) {
                self.voters[i].quorum.as_mut().unwrap().handle_tick();
            }
        }
        self.settle();
    }

    fn run_until(&mut self, what: &str, ticks_max: u32, done: impl Fn(&Cluster) -> bool) {
        for _ in 0..ticks_max {
            if done(self) {
                return;
            }
            self.tick();
        }
        assert!(done(self), "timed out waiting for {what}");
    }

    /// Proposes the next payload on the leader, if there is one; returns whether it was taken.
    fn propose(&mut self) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let data = format!("p{}", self.next_proposal).into_bytes();
        let quorum = self.voters[leader].quorum.as_mut().unwrap();
        match quorum.propose(data) {
            Ok(()) => {
                self.next_proposal += 1;
                self.settle();
                true
            }
            Err(QuorumError::ProposalDropped) => false,
            Err(err) => panic!("leader {leader}: {err}"),
        }
    }

    fn applied(&self, i: usize) -> Vec<Vec<u8>> {
        let entries = &self.voters[i].machine.entries;
        entries.iter().map(|(_, data)| data.clone()).collect()
    }

    /// Liveness: with the faults gone, a leader is elected, a new proposal commits and
    /// every voter applies everything any voter saw committed.
    fn heal_and_converge(&mut self) {
        self.drop_percent = 0;
        self.delay_percent = 0;
        for voter in &self.voters {
            voter.budget.0.set(None);
        }
        self.run_until("a leader after healing", 300, |c| c.leader().is_some());
        let seen = self.committed.len();
        for _ in 0..300 {
            if self.propose() {
                break;
            }
            self.tick();
        }
        self.run_until("convergence", 300, |c| {
            c.converged() && c.committed.len() > seen
        });
    }

    /// Every live voter has applied every committed entry.
    fn converged(&self) -> bool {
        let all = self.committed.len();
        (0..self.voters.len())
            .filter(|&i| self.live(i))
            .all(|i| self.voters[i].machine.entries.len() == all)
    }
}

#[test]
fn quorum_three_voters_elect_a_leader_and_commit_in_the_same_order() {
    let mut cluster = Cluster::new(3, 1000, 1);
    cluster.run_until("a leader", 100, |c| c.leader().is_some());
    for _ in 0..50 {
        assert!(cluster.propose());
    }
    cluster.run_until("50 applied everywhere", 50, |c| {
        (0..3).all(|i| c.voters[i].machine.entries.len() == 50)
    });
    let leader = cluster.leader().unwrap();
    let expected: Vec<Vec<u8>> = (0..50).map(|n| format!("p{n}").into_bytes()).collect();
    for i in 0..3 {
        assert_eq!(
            cluster.applied(i),
            expected,
            "voter {i} applies in proposal order"
        );
        assert_eq!(
            cluster.voters[i].machine.entries, cluster.voters[leader].machine.entries,
            "voter {i} has the leader's indexes"
        );
        assert_eq!(cluster.quorum(i).leader(), Some(NodeId(leader as i32)));
    }
    assert_eq!(cluster.bad_messages, 0);
}

/// Raft §5.2 (election after the leader fails) and §5.3 (a lagging follower catches up),
/// §7 (by snapshot once the others compacted).
fn leader_stops_and_comes_back(snapshot_interval: u64) -> (Cluster, usize) {
    let mut cluster = Cluster::new(3, snapshot_interval, 2);
    cluster.run_until("a leader", 100, |c| c.leader().is_some());
    for _ in 0..20 {
        assert!(cluster.propose());
    }
    cluster.run_until("20 applied", 50, |c| {
        c.converged() && c.committed.len() == 20
    });
    let old = cluster.leader().unwrap();
    let old_term = cluster.quorum(old).term();
    cluster.voters[old].stopped = true;
    cluster.run_until("a new leader", 200, |c| c.leader().is_some());
    let new = cluster.leader().unwrap();
    assert_ne!(new, old);
    assert!(
        cluster.quorum(new).term() > old_term,
        "the new leader has a higher term"
    );
    for _ in 0..20 {
        assert!(cluster.propose());
    }
    cluster.run_until("40 applied on the live voters", 50, |c| {
        c.converged() && c.committed.len() == 40
    });
    cluster.voters[old].stopped = false;
    cluster.run_until("the old leader caught up", 200, |c| {
        c.converged() && c.voters[old].machine.entries.len() == 40
    });
    assert!(!cluster.quorum(old).is_leader());
    assert_eq!(cluster.quorum(old).leader(), Some(NodeId(new as i32)));
    for _ in 0..5 {
        assert!(cluster.propose());
    }
    cluster.run_until("45 applied everywhere", 50, |c| {
        c.converged() && c.committed.len() == 45
    });
    for i in 0..3 {
        assert_eq!(
            cluster.voters[i].machine.entries,
            cluster.voters[new].machine.entries
        );
    }
    assert_eq!(cluster.bad_messages, 0);
    (cluster, old)
}

#[test]
fn quorum_stopped_leader_catches_up_by_log() {
    let (cluster, old) = leader_stops_and_comes_back(1000);
    assert_eq!(cluster.voters[old].snapshots_installed, 0);
}

#[test]
fn quorum_stopped_leader_catches_up_by_snapshot_after_compaction() {
    let (cluster, old) = leader_stops_and_comes_back(5);
    assert!(
        cluster.voters[old].snapshots_installed > 0,
        "the old leader got a snapshot"
    );
}

#[test]
fn quorum_voter_restarts_from_its_snapshot_and_log() {
    let mut cluster = Cluster::new(3, 7, 3);
    cluster.run_until("a leader", 100, |c| c.leader().is_some());
    for _ in 0..30 {
        assert!(cluster.propose());
    }
    cluster.run_until("30 applied", 50, |c| {
        c.converged() && c.committed.len() == 30
    });
    for i in 0..3 {
        let before = cluster.voters[i].machine.clone();
        cluster.crash_with(i, CrashMode::LoseUnsynced);
        assert_eq!(
            cluster.voters[i].machine, before,
            "voter {i} recovers what it applied"
        );
    }
    assert!(
        cluster.quorum(0).raw.store().snapshot_index() > 0,
        "a snapshot was taken"
    );
    for _ in 0..10 {
        cluster.tick();
        cluster.propose();
    }
    cluster.run_until("everything applied", 200, |c| c.converged());
    assert!(cluster.committed.len() >= 31);
}

#[test]
fn quorum_crashes_in_the_middle_of_polls_lose_nothing_committed() {
    for seed in 0..8 {
        let mut cluster = Cluster::new(3, 6, seed);
        cluster.run_until("a leader", 100, |c| c.leader().is_some());
        for round in 0..150u64 {
            if cluster.rng.below(5) == 0 {
                let victim = cluster.rng.below(3) as usize;
                let writes = cluster.rng.below(6) as u32;
                cluster.voters[victim].budget.0.set(Some(writes));
            }
            cluster.propose();
            cluster.tick();
            if round % 25 == 0 {
                let i = cluster.rng.below(3) as usize;
                let seed = cluster.rng.next();
                cluster.crash_with(i, CrashMode::Tear { seed });
            }
        }
        cluster.heal_and_converge();
        assert!(cluster.crashes > 10, "seed {seed}: crashes happened");
        for i in 1..3 {
            assert_eq!(
                cluster.voters[i].machine.entries,
                cluster.voters[0].machine.entries
            );
        }
    }
}

#[test]
fn quorum_same_script_twice_gives_the_same_outputs() {
    let run = || {
        let mut cluster = Cluster::new(3, 5, 11);
        cluster.drop_percent = 10;
        cluster.reorder = true;
        cluster.run_until("a leader", 200, |c| c.leader().is_some());
        for round in 0..40 {
            cluster.propose();
            cluster.tick();
            if round == 20 {
                let seed = cluster.rng.next();
                cluster.crash_with(1, CrashMode::Tear { seed });
            }
        }
        cluster.trace
    };
    let first = run();
    assert!(first.len() > 100);
    assert_eq!(first, run());
}

/// A running three-voter cluster and some of its real messages, for damage tests.
fn cluster_with_traffic() -> (Cluster, Vec<(NodeId, NodeId, Vec<u8>)>) {
    let mut cluster = Cluster::new(3, 1000, 5);
    cluster.run_until("a leader", 100, |c| c.leader().is_some());
    let mut samples = Vec::new();
    for _ in 0..10 {
        let leader = cluster.leader().unwrap();
        cluster.voters[leader]
            .quorum
            .as_mut()
            .unwrap()
            .propose(b"payload".to_vec())
            .unwrap();
        cluster.poll(leader);
        samples.extend(cluster.in_flight.iter().cloned());
        cluster.tick();
        samples.extend(cluster.in_flight.iter().cloned());
    }
    (cluster, samples)
}

#[test]
fn quorum_refuses_garbage_messages_without_panicking() {
    let (mut cluster, samples) = cluster_with_traffic();
    let mut rng = Rng(99);
    let target = (cluster.leader().unwrap() + 1) % 3;
    let from = NodeId(((target + 1) % 3) as i32);
    for len in 0..400 {
        let bytes: Vec<u8> = (0..len % 64).map(|_| rng.next() as u8).collect();
        let quorum = cluster.voters[target].quorum.as_mut().unwrap();
        let _ = quorum.handle_message(from, &bytes);
        quorum.poll().unwrap();
    }
    for round in 0..2000 {
        let (from, to, mut bytes) = samples[round % samples.len()].clone();
        match rng.below(3) {
            0 if !bytes.is_empty() => {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 1 << rng.below(8);
            }
            1 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
            _ => {
                let at = rng.below(bytes.len() as u64 + 1) as usize;
                bytes.insert(at, rng.next() as u8);
            }
        }
        let quorum = cluster.voters[to.0 as usize].quorum.as_mut().unwrap();
        let _ = quorum.handle_message(from, &bytes);
        quorum.poll().unwrap();
    }
}

/// Encodes `message` from `from` to `to` after `edit`.
fn crafted(from: u64, to: u64, edit: impl FnOnce(&mut Message)) -> Vec<u8> {
    let mut message = Message {
        from,
        to,
        ..Message::default()
    };
    edit(&mut message);
    message.write_to_bytes().unwrap()
}

#[test]
fn quorum_refuses_messages_that_break_the_rules() {
    let (mut cluster, _) = cluster_with_traffic();
    let leader = cluster.leader().unwrap();
    let target = (leader + 1) % 3;
    let (to, from) = (target as u64 + 1, leader as u64 + 1);
    let term = cluster.quorum(target).term();
    let last = cluster.quorum(target).raw.raft.raft_log.last_index();
    let cases: Vec<(&str, NodeId, Vec<u8>)> = vec![
        ("random bytes", NodeId(leader as i32), vec![0xff; 17]),
        (
            "from a non-voter",
            NodeId(7),
            crafted(8, to, |m| m.term = term),
        ),
        (
            "from a negative id",
            NodeId(-1),
            crafted(0, to, |m| m.term = term),
        ),
        (
            "misaddressed",
            NodeId(leader as i32),
            crafted(from, 9, |m| m.term = term),
        ),
        (
            "from field lies",
            NodeId(leader as i32),
            crafted(to, to, |m| m.term = term),
        ),
        (
            "local message",
            NodeId(leader as i32),
            crafted(from, to, |m| {
                m.set_msg_type(MessageType::MsgHup);
            }),
        ),
        (
            "heartbeat past the log",
            NodeId(leader as i32),
            crafted(from, to, |m| {
                m.set_msg_type(MessageType::MsgHeartbeat);
                m.term = term;
                m.commit = last + 5;
            }),
        ),
        (
            "entries with a gap",
            NodeId(leader as i32),
            crafted(from, to, |m| {
                m.set_msg_type(MessageType::MsgAppend);
                m.term = term;
                m.index = last;
                let entry = Entry {
                    index: last + 2,
                    term,
                    ..Entry::default()
                };
                m.entries = vec![entry].into();
            }),
        ),
        (
            "a huge term",
            NodeId(leader as i32),
            crafted(from, to, |m| {
                m.set_msg_type(MessageType::MsgHeartbeat);
                m.term = u64::MAX;
            }),
        ),
        (
            "snapshot of other voters",
            NodeId(leader as i32),
            crafted(from, to, |m| {
                m.set_msg_type(MessageType::MsgSnapshot);
                m.term = term;
                let metadata = m.mut_snapshot().mut_metadata();
                metadata.index = last + 10;
                metadata.term = term;
                metadata.mut_conf_state().voters = vec![1, 2];
            }),
        ),
    ];
    let before = cluster.quorum(target).raw.store().last_index();
    for (case, sender, bytes) in cases {
        let quorum = cluster.voters[target].quorum.as_mut().unwrap();
        let result = quorum.handle_message(sender, &bytes);
        assert!(
            matches!(result, Err(QuorumError::BadMessage { .. })),
            "{case}: {result:?}"
        );
        let output = quorum.poll().unwrap();
        assert!(
            output.messages.is_empty() && output.committed.is_empty(),
            "{case}"
        );
    }
    assert_eq!(cluster.quorum(target).raw.store().last_index(), before);
    assert_eq!(cluster.quorum(target).term(), term);
}

/// A voter whose log holds committed entries and, above them, entries the others never
/// acknowledged (they were stopped), with its disk and the committed count.
fn voter_with_an_uncommitted_tail() -> (MemoryStorage, QuorumConfig, usize) {
    let mut cluster = Cluster::new(3, 1000, 7);
    cluster.run_until("a leader", 100, |c| c.leader().is_some());
    for _ in 0..10 {
        assert!(cluster.propose());
    }
    cluster.run_until("10 applied", 50, |c| {
        c.converged() && c.committed.len() == 10
    });
    let leader = cluster.leader().unwrap();
    for i in 0..3 {
        cluster.voters[i].stopped = i != leader;
    }
    for n in 0..10 {
        let quorum = cluster.voters[leader].quorum.as_mut().unwrap();
        quorum.propose(format!("tail{n}").into_bytes()).unwrap();
        cluster.poll(leader);
    }
    let voter = &mut cluster.voters[leader];
    let disk = voter.quorum.take().unwrap().into_storage();
    (disk.inner, voter.config.clone(), 10)
}

fn reopen(disk: MemoryStorage, config: &QuorumConfig) -> Result<Recovered, QuorumError> {
    let disk = FaultyDisk {
        inner: disk,
        budget: Budget::default(),
    };
    let (mut quorum, recovered) = Quorum::open(disk, config.clone())?;
    // The reopened voter works: it polls, and as a lone voter it cannot lead.
    quorum.handle_tick();
    quorum.poll()?;
    Ok(recovered)
}

fn expected_committed(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("p{i}").into_bytes()).collect()
}

fn recovered_data(recovered: &Recovered) -> Vec<Vec<u8>> {
    recovered
        .entries
        .iter()
        .map(|(_, data)| data.clone())
        .collect()
}

#[test]
fn quorum_open_cuts_a_truncated_log_to_a_prefix_or_refuses_it() {
    let (disk, config, committed) = voter_with_an_uncommitted_tail();
    let log = disk.clone().read_all(LOG_FILE).unwrap().unwrap();
    let (mut prefixes, mut refusals) = (0, 0);
    for cut in 0..=log.len() {
        let mut damaged = disk.clone();
        damaged.bytes_mut(LOG_FILE).unwrap().truncate(cut);
        match reopen(damaged, &config) {
            Ok(recovered) => {
                assert_eq!(recovered_data(&recovered), expected_committed(committed));
                prefixes += 1;
            }
            Err(QuorumError::Corrupt { file, .. }) => {
                assert_eq!(file, LOG_FILE);
                refusals += 1;
            }
            Err(err) => panic!("cut at {cut}: {err}"),
        }
    }
    assert!(
        prefixes > 0 && refusals > 0,
        "{prefixes} prefixes, {refusals} refusals"
    );
}

#[test]
fn quorum_open_never_serves_a_damaged_log_entry() {
    let (disk, config, committed) = voter_with_an_uncommitted_tail();
    let len = disk.durable_len(LOG_FILE).unwrap();
    let mut rng = Rng(3);
    for _ in 0..300 {
        let mut damaged = disk.clone();
        let flips = 1 + rng.below(3);
        for _ in 0..flips {
            damaged.flip_bit(LOG_FILE, rng.below(len as u64) as usize, rng.below(8) as u8);
        }
        match reopen(damaged, &config) {
            Ok(recovered) => {
                assert_eq!(recovered_data(&recovered), expected_committed(committed));
            }
            Err(QuorumError::Corrupt { file, .. }) => assert_eq!(file, LOG_FILE),
            Err(err) => panic!("{err}"),
        }
    }
}

#[test]
fn quorum_open_refuses_a_damaged_state_or_snapshot_file() {
    let mut cluster = Cluster::new(3, 5, 8);
    cluster.run_until("a leader", 100, |c| c.leader().is_some());
    for _ in 0..12 {
        assert!(cluster.propose());
    }
    cluster.run_until("12 applied", 50, |c| {
        c.converged() && c.committed.len() == 12
    });
    let voter = &mut cluster.voters[0];
    let disk = voter.quorum.take().unwrap().into_storage().inner;
    let config = voter.config.clone();
    let mut rng = Rng(4);
    for file in [STATE_FILE, SNAPSHOT_FILE] {
        let len = disk.durable_len(file).unwrap();
        for _ in 0..50 {
            let mut damaged = disk.clone();
            damaged.flip_bit(file, rng.below(len as u64) as usize, rng.below(8) as u8);
            let result = reopen(damaged, &config);
            assert!(
                matches!(&result, Err(QuorumError::Corrupt { file: f, .. }) if *f == file),
                "{file}: {result:?}"
            );
        }
        let mut cut = disk.clone();
        cut.bytes_mut(file).unwrap().truncate(3);
        assert!(matches!(
            reopen(cut, &config),
            Err(QuorumError::Corrupt { .. })
        ));
    }
    let mut other_voters = config.clone();
    other_voters.voters.push(NodeId(3));
    assert!(matches!(
        reopen(disk.clone(), &other_voters),
        Err(QuorumError::VotersChanged { .. })
    ));
    let recovered = reopen(disk, &config).unwrap();
    let (_, image) = recovered.snapshot.as_ref().expect("a snapshot was taken");
    let held = Machine::from_image(image).len() + recovered.entries.len();
    assert_eq!(held, 12);
}

#[test]
fn quorum_refuses_bad_configurations_and_calls() {
    let open = |config: QuorumConfig| Quorum::open(MemoryStorage::new(), config).map(|_| ());
    let good = config(0, 3, 10);
    assert!(open(good.clone()).is_ok());
    let cases = [
        QuorumConfig {
            node: NodeId(5),
            ..good.clone()
        },
        QuorumConfig {
            voters: vec![NodeId(0), NodeId(0)],
            ..good.clone()
        },
        QuorumConfig {
            voters: vec![NodeId(0), NodeId(-2)],
            ..good.clone()
        },
        QuorumConfig {
            heartbeat_tick: 20,
            ..good.clone()
        },
        QuorumConfig {
            snapshot_interval: 0,
            ..good.clone()
        },
    ];
    for case in cases {
        assert!(
            matches!(open(case.clone()), Err(QuorumError::InvalidConfig(_))),
            "{case:?}"
        );
    }
    let (mut quorum, _) = Quorum::open(MemoryStorage::new(), good).unwrap();
    assert!(matches!(
        quorum.propose(b"x".to_vec()),
        Err(QuorumError::NotLeader { leader: None })
    ));
    assert!(matches!(
        quorum.propose(vec![0; PROPOSAL_BYTES_MAX + 1]),
        Err(QuorumError::ProposalTooLarge { .. })
    ));
    assert!(matches!(
        quorum.propose(Vec::new()),
        Err(QuorumError::EmptyProposal)
    ));
    assert!(matches!(
        quorum.snapshot(1, Vec::new()),
        Err(QuorumError::SnapshotAhead { .. })
    ));
}

#[test]
fn quorum_single_voter_commits_alone() {
    let config = QuorumConfig {
        node: NodeId(0),
        voters: vec![NodeId(0)],
        election_tick: 5,
        heartbeat_tick: 1,
        snapshot_interval: 3,
    };
    let (mut quorum, _) = Quorum::open(MemoryStorage::new(), config.clone()).unwrap();
    for _ in 0..10 {
        quorum.handle_tick();
        quorum.poll().unwrap();
    }
    assert!(quorum.is_leader());
    assert_eq!(quorum.leader(), Some(NodeId(0)));
    let mut applied = Vec::new();
    for n in 0..10u8 {
        quorum.propose(vec![n]).unwrap();
        let output = quorum.poll().unwrap();
        assert!(output.messages.is_empty());
        for committed in output.committed {
            let Committed::Entry { data, .. } = committed else {
                panic!("a lone voter gets no snapshot");
            };
            applied.push(data[0]);
        }
        if quorum.snapshot_due() {
            let image: Vec<u8> = applied.clone();
            quorum.snapshot(quorum.applied_index(), image).unwrap();
        }
    }
    assert_eq!(applied, (0..10).collect::<Vec<u8>>());
    let disk = quorum.into_storage();
    let (_, recovered) = Quorum::open(disk, config).unwrap();
    let (_, image) = recovered.snapshot.clone().unwrap();
    let mut restored = image;
    restored.extend(recovered.entries.iter().map(|(_, data)| data[0]));
    assert_eq!(restored, applied);
}

/// One fault schedule for the property test.
#[derive(Clone, Debug)]
struct Faults {
    seed: u64,
    drop_percent: u64,
    reorder: bool,
    delay_percent: u64,
    snapshot_interval: u64,
    /// Election ticks grow by this per voter (small: competing candidates).
    jitter: usize,
    /// (tick, voter, writes before the power loss; 10 and up: a power loss between polls).
    crashes: Vec<(u32, usize, u32)>,
}

fn faults() -> impl Strategy<Value = Faults> {
    (
        any::<u64>(),
        0..25u64,
        (any::<bool>(), 0..40u64),
        prop_oneof![Just(4u64), Just(1000u64)],
        1..5usize,
        proptest::collection::vec((0..200u32, 0..3usize, 0..14u32), 0..12),
    )
        .prop_map(
            |(seed, drop_percent, (reorder, delay_percent), snapshot_interval, jitter, crashes)| {
                Faults {
                    seed,
                    drop_percent,
                    reorder,
                    delay_percent,
                    snapshot_interval,
                    jitter,
                    crashes,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Safety under drops, reorders and power losses (at random writes inside a poll);
    /// then liveness once the network heals: every entry any voter saw committed ends up
    /// applied identically on every voter.
    #[test]
    fn quorum_committed_entries_survive_drops_reorders_and_crashes(faults in faults()) {
        ELECTION_JITTER.with(|j| j.set(faults.jitter));
        let mut cluster = Cluster::new(3, faults.snapshot_interval, faults.seed);
        cluster.drop_percent = faults.drop_percent;
        cluster.reorder = faults.reorder;
        cluster.delay_percent = faults.delay_percent;
        for tick in 0..200u32 {
            for &(at, voter, writes) in &faults.crashes {
                if at == tick && cluster.live(voter) {
                    if writes >= 10 {
                        cluster.crash_and_reopen(voter);
                    } else {
                        cluster.voters[voter].budget.0.set(Some(writes));
                    }
                }
            }
            if tick % 3 == 0 {
                cluster.propose();
            }
            cluster.tick();
        }
        cluster.heal_and_converge();
        for i in 1..3 {
            prop_assert_eq!(&cluster.voters[i].machine.entries, &cluster.voters[0].machine.entries);
        }
        for i in 0..3 {
            cluster.check_agrees(i);
        }
    }
}

/// The vote responses in `output`, as (to, granted).
fn vote_responses(output: &QuorumOutput) -> Vec<(NodeId, bool)> {
    output
        .messages
        .iter()
        .map(|(to, bytes)| (to, Message::parse_from_bytes(bytes).unwrap()))
        .filter(|(_, m)| m.get_msg_type() == MessageType::MsgRequestVoteResponse)
        .map(|(to, m)| (*to, !m.reject))
        .collect()
}

/// Raft §5.2 (Figure 2: votedFor is persistent state): a vote survives a power loss, so a
/// voter never votes twice in one term.
#[test]
fn quorum_vote_survives_a_crash_so_no_second_vote_in_the_term() {
    let config = config(0, 3, 1000);
    let (mut quorum, _) = Quorum::open(MemoryStorage::new(), config.clone()).unwrap();
    let request = |from: u64| {
        crafted(from, 1, |m| {
            m.set_msg_type(MessageType::MsgRequestVote);
            m.term = 1;
        })
    };
    quorum.handle_message(NodeId(1), &request(2)).unwrap();
    let output = quorum.poll().unwrap();
    assert_eq!(vote_responses(&output), vec![(NodeId(1), true)]);
    let mut disk = quorum.into_storage();
    disk.crash(CrashMode::LoseUnsynced);
    let (mut quorum, _) = Quorum::open(disk, config).unwrap();
    assert_eq!(quorum.term(), 1);
    quorum.handle_message(NodeId(2), &request(3)).unwrap();
    let output = quorum.poll().unwrap();
    assert_eq!(vote_responses(&output), vec![(NodeId(2), false)]);
}

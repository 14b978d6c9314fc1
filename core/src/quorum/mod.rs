//! The controller quorum's consensus: one voter of the metadata quorum, [`Quorum`], built on
//! tikv's raft-rs and driven without I/O.
//!
//! The voters are fixed when the quorum is first opened (no membership changes). Each voter
//! keeps its raft state in one [`Storage`] directory (layout and crash repair: `disk.rs`)
//! and hands the caller, in log order, what became committed: entries to apply to its state
//! machine, or a snapshot from the leader that replaces it. The caller's state machine lives
//! in memory only; [`Quorum::open`] returns what to rebuild it from, and
//! [`Quorum::snapshot`] takes its image so the log can be compacted.
//!
//! **Determinism:** raft-rs's only randomness is the randomized election timeout; the
//! window is pinned to one value, [`QuorumConfig::election_tick`], which the driver jitters
//! per voter from its seed. Time is ticks, messages are bytes, storage is synchronous: the
//! same inputs give the same outputs.
//!
//! **API boundary:** this module knows nothing of metadata records; entries and snapshots are
//! opaque bytes. Messages between voters are raft-rs's protobuf `Message`s; every received
//! one is checked before raft-rs sees it (`message.rs`), since raft-rs panics on a peer that
//! breaks its rules.

mod disk;
mod message;
mod store;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use raft::eraftpb::{Entry, EntryType, HardState, Snapshot, SnapshotMetadata};
use raft::{RawNode, SnapshotStatus, StateRole};

use self::disk::Disk;
use self::store::RaftStore;
use crate::storage::{Storage, StorageError};
use crate::types::NodeId;

/// The most bytes one proposal may carry.
pub const PROPOSAL_BYTES_MAX: usize = 1024 * 1024;
/// The most bytes one encoded log entry may take (a proposal and raft's fields).
const ENTRY_BYTES_MAX: usize = PROPOSAL_BYTES_MAX + 1024;
/// The most entry bytes in one append message to a follower.
const MESSAGE_ENTRY_BYTES_MAX: u64 = 1024 * 1024;
/// The most append messages in flight to one follower.
const INFLIGHT_MESSAGES_MAX: usize = 256;
/// The most bytes of proposals the leader holds uncommitted before refusing more.
const UNCOMMITTED_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// The most raft `Ready` rounds one `poll` handles; the rest waits for the next call.
const READY_ROUNDS_MAX: usize = 64;
/// More voters than any controller quorum has.
const VOTERS_MAX: usize = 64;
/// Indexes and terms at or above this are damage: no log grows that long, and raft-rs's
/// arithmetic on them must not overflow.
const INDEX_LIMIT: u64 = 1 << 62;

/// One voter's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumConfig {
    /// This voter (raft id `node + 1`, since raft-rs reserves 0).
    pub node: NodeId,
    /// Every voter, this one included; fixed when the quorum is first opened.
    pub voters: Vec<NodeId>,
    /// Ticks without a leader before this voter campaigns; jitter it per voter.
    pub election_tick: usize,
    /// Ticks between the leader's heartbeats (below `election_tick`).
    pub heartbeat_tick: usize,
    /// Entries applied since the last snapshot after which a new one is due (at least 1).
    pub snapshot_interval: u64,
}

/// What one [`Quorum::poll`] produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumOutput {
    /// Encoded messages for other voters, to send in this order; they may be lost.
    pub messages: Vec<(NodeId, Vec<u8>)>,
    /// What became committed, in log order, to apply in this order.
    pub committed: Vec<Committed>,
}

/// The quorum as its leader sees it (DescribeQuorum).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumState {
    /// The leader (this voter).
    pub leader: NodeId,
    /// Its term (Kafka's leader epoch of the metadata partition).
    pub term: u64,
    /// The commit index (Kafka's high watermark of the metadata log).
    pub committed: u64,
    /// Each voter and the log index it is known to hold, by node id.
    pub voters: Vec<(NodeId, u64)>,
    /// Each observer (a broker that is not a voter) heard from lately and the log index it
    /// applied, by node id (the quorum's caller fills these in; raft knows only voters).
    pub observers: Vec<(NodeId, u64)>,
}

/// One step of the committed log, handed to the caller's state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    /// A committed proposal (the leaders' empty entries are skipped, indexes are not
    /// renumbered, so indexes may jump).
    Entry {
        /// The entry's index in the log.
        index: u64,
        /// The term of the leader that proposed it.
        term: u64,
        /// The proposed bytes.
        data: Vec<u8>,
    },
    /// The leader's snapshot replaced this voter's log: the state machine becomes `data`, the
    /// image as of `index`.
    Snapshot {
        /// The last index the image covers.
        index: u64,
        /// The state-machine image the leader's caller gave [`Quorum::snapshot`].
        data: Vec<u8>,
    },
}

/// What a reopened voter's state machine restarts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The latest snapshot: its last index and the image.
    pub snapshot: Option<(u64, Vec<u8>)>,
    /// The committed entries after it (index, data), to apply in order.
    pub entries: Vec<(u64, Vec<u8>)>,
}

/// Why a quorum call failed.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// The configuration is unusable (permanent).
    #[error("invalid quorum configuration: {0}")]
    InvalidConfig(&'static str),
    /// The stored voters differ from the configured ones (permanent: voters are fixed).
    #[error("the quorum was created with voters {stored:?}, not {configured:?}")]
    VotersChanged {
        /// The voters stored.
        stored: Vec<NodeId>,
        /// The voters configured.
        configured: Vec<NodeId>,
    },
    /// A quorum file holds damaged or impossible bytes (permanent: the directory needs
    /// repair or a fresh voter).
    #[error("{file} is damaged: {reason}")]
    Corrupt {
        /// The file.
        file: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The storage failed; the voter stopped and must be reopened from storage.
    #[error("quorum storage failed: {0}")]
    Storage(#[from] StorageError),
    /// An earlier storage failure stopped this voter; reopen it.
    #[error("the voter stopped after a storage failure; reopen it")]
    Offline,
    /// A received message was ignored: undecodable, misaddressed, or breaking raft's rules.
    #[error("message from node {from} ignored: {reason}")]
    BadMessage {
        /// The claimed sender.
        from: NodeId,
        /// Why it was ignored.
        reason: String,
    },
    /// Only the leader takes proposals (retry on the leader, if one is known).
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this voter knows of.
        leader: Option<NodeId>,
    },
    /// The proposal is larger than [`PROPOSAL_BYTES_MAX`] (permanent).
    #[error("proposal of {bytes} bytes is larger than {PROPOSAL_BYTES_MAX}")]
    ProposalTooLarge {
        /// The proposal's size.
        bytes: usize,
    },
    /// An empty proposal (the log's empty entries are the leaders' own, never handed out).
    #[error("empty proposal")]
    EmptyProposal,
    /// The leader refused the proposal for now: too much is uncommitted (retryable).
    #[error("proposal dropped by the leader: too much uncommitted")]
    ProposalDropped,
    /// A snapshot was offered for an index not yet handed out as committed.
    #[error("snapshot at {index} is past the applied index {applied}")]
    SnapshotAhead {
        /// The snapshot's index.
        index: u64,
        /// The last index handed out.
        applied: u64,
    },
}

impl QuorumError {
    /// A [`QuorumError::Corrupt`] for `file`.
    fn corrupt(file: &'static str, reason: impl Into<String>) -> QuorumError {
        QuorumError::Corrupt {
            file,
            reason: reason.into(),
        }
    }
}

/// One voter of the metadata quorum (raft-rs's `RawNode` over the voter's files).
///
/// Methods by kind:
/// - getters: [`leader`](Self::leader), [`is_leader`](Self::is_leader), [`term`](Self::term),
///   [`applied_index`](Self::applied_index), [`snapshot_due`](Self::snapshot_due);
/// - inputs: [`handle_tick`](Self::handle_tick) (every tick interval, e.g. 100 ms),
///   [`handle_message`](Self::handle_message) (a message from a voter);
/// - application calls: [`propose`](Self::propose) (leader only),
///   [`snapshot`](Self::snapshot) (the state-machine image, when due);
/// - output: [`poll`](Self::poll).
///
/// **Call order:** [`open`](Self::open) and apply its [`Recovered`]; then after every input
/// or application call, `poll`: it writes and syncs what raft decided *before* returning
/// the messages that depend on it (votes, append acknowledgements), so everything it
/// returns may be sent and applied at once. A storage error stops the voter
/// ([`QuorumError::Offline`] from then on): drop it and reopen from storage.
pub struct Quorum<S: Storage> {
    /// raft-rs's node over the in-memory mirror of the files.
    raw: RawNode<RaftStore>,
    /// The files.
    disk: Disk<S>,
    /// The voters' raft ids, sorted.
    voters: Vec<u64>,
    /// Entries applied since the last snapshot after which a new one is due.
    snapshot_interval: u64,
    /// The last index handed to the caller (entries, snapshots or `Recovered`).
    applied_index: u64,
    /// Set by a storage failure: the files no longer match memory.
    failed: bool,
}

impl<S: Storage> Quorum<S> {
    /// Opens (or bootstraps) the voter's persisted state from `storage`: hard state, the
    /// latest snapshot, the log entries after it (a torn or corrupt tail — detected by a
    /// per-entry CRC-32C — is cut off, never served). Returns the quorum and the state to
    /// restart from: the snapshot data (if any) and the committed entries after it that the
    /// caller must re-apply (the caller's state machine is in memory only).
    pub fn open(storage: S, config: QuorumConfig) -> Result<(Quorum<S>, Recovered), QuorumError> {
        let voters = raft_voters(&config)?;
        let (disk, store) = disk::recover(storage, &voters)?;
        let commit = store.hard_state.commit;
        let recovered = Recovered {
            snapshot: (store.snapshot_index() > 0)
                .then(|| (store.snapshot_index(), store.snapshot.data.to_vec())),
            entries: store
                .entries
                .iter()
                .take_while(|entry| entry.index <= commit)
                .filter(|entry| !entry.data.is_empty())
                .map(|entry| (entry.index, entry.data.to_vec()))
                .collect(),
        };
        let raft_config = raft::Config {
            id: raft_id(config.node),
            election_tick: config.election_tick,
            heartbeat_tick: config.heartbeat_tick,
            // The window [min, max) holds one value, so raft-rs's random draw is fixed.
            min_election_tick: config.election_tick,
            max_election_tick: config.election_tick + 1,
            applied: commit,
            max_size_per_msg: MESSAGE_ENTRY_BYTES_MAX,
            max_inflight_msgs: INFLIGHT_MESSAGES_MAX,
            max_uncommitted_size: UNCOMMITTED_BYTES_MAX,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut raw = RawNode::new(&raft_config, store, &logger)
            .map_err(|_| QuorumError::InvalidConfig("raft-rs refused the configuration"))?;
        // A lone voter is its own majority: it leads at once instead of after an election
        // timeout (a single node serves as soon as it has opened).
        if voters.len() == 1 {
            raw.campaign()
                .map_err(|_| QuorumError::InvalidConfig("raft-rs refused to campaign"))?;
        }
        let quorum = Quorum {
            raw,
            disk,
            voters,
            snapshot_interval: config.snapshot_interval,
            applied_index: commit,
            failed: false,
        };
        quorum.check_invariants();
        Ok((quorum, recovered))
    }

    /// The leader this voter knows of.
    pub fn leader(&self) -> Option<NodeId> {
        match self.raw.raft.leader_id {
            raft::INVALID_ID => None,
            id => Some(node_id(id)),
        }
    }

    /// Whether this voter is the leader.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The voter's current term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The last log index handed to the caller as committed.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Whether [`snapshot_interval`](QuorumConfig::snapshot_interval) entries were applied
    /// since the last snapshot, so the caller should give its image to
    /// [`snapshot`](Self::snapshot).
    pub fn snapshot_due(&self) -> bool {
        let since = self.applied_index - self.raw.store().snapshot_index();
        since >= self.snapshot_interval
    }

    /// One raft tick; the driver calls it every tick interval, then [`poll`](Self::poll).
    /// A stopped voter ignores it.
    pub fn handle_tick(&mut self) {
        if !self.failed {
            self.raw.tick();
        }
    }

    /// A message from voter `from` (the bytes [`poll`](Self::poll) produced there). Bytes
    /// that do not decode, are not addressed to this voter, come from a non-voter or break
    /// raft's rules are refused with [`QuorumError::BadMessage`] and change nothing.
    pub fn handle_message(&mut self, from: NodeId, message: &[u8]) -> Result<(), QuorumError> {
        self.check_running()?;
        let bad = |reason: String| QuorumError::BadMessage { from, reason };
        if from.0 < 0 {
            return Err(bad("a negative node id".to_string()));
        }
        let receiver = message::Receiver {
            id: self.raw.raft.id,
            voters: &self.voters,
            last_index: self.raw.raft.raft_log.last_index(),
        };
        let decoded = message::decode(&receiver, raft_id(from), message).map_err(bad)?;
        self.raw
            .step(decoded)
            .map_err(|err| bad(format!("refused by raft: {err}")))?;
        self.check_invariants();
        Ok(())
    }

    /// Appends `data` (not empty) to the log, on the leader only ([`QuorumError::NotLeader`]
    /// otherwise). It is committed when a later [`poll`](Self::poll) returns it — or never,
    /// if leadership moves first.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), QuorumError> {
        self.check_running()?;
        if data.len() > PROPOSAL_BYTES_MAX {
            return Err(QuorumError::ProposalTooLarge { bytes: data.len() });
        }
        if data.is_empty() {
            return Err(QuorumError::EmptyProposal);
        }
        if !self.is_leader() {
            return Err(QuorumError::NotLeader {
                leader: self.leader(),
            });
        }
        // A leader's proposal fails only by being dropped (too much uncommitted).
        self.raw
            .propose(Vec::new(), data)
            .map_err(|_| QuorumError::ProposalDropped)
    }

    /// The quorum's state, on the leader only (only it knows how far each voter is).
    pub fn describe(&self) -> Option<QuorumState> {
        if !self.is_leader() {
            return None;
        }
        let own = self.raw.raft.id;
        let last = self.raw.raft.raft_log.last_index();
        let mut voters: Vec<(NodeId, u64)> = self
            .raw
            .raft
            .prs()
            .iter()
            .map(|(id, p)| (node_id(*id), if *id == own { last } else { p.matched }))
            .collect();
        voters.sort();
        Some(QuorumState {
            leader: node_id(own),
            term: self.raw.raft.term,
            committed: self.raw.raft.raft_log.committed,
            voters,
            observers: Vec::new(),
        })
    }

    /// What this voter handed out as committed after index `after`, for a node that follows
    /// the log without voting (an observer): the snapshot first when its entries after
    /// `after` are compacted away, then the non-empty entries, stopping once `max_bytes` of
    /// data are taken (at least one step when there is any). Also returns the last index the
    /// answer covers (the applied index when all fit).
    pub fn committed_after(&self, after: u64, max_bytes: usize) -> (Vec<Committed>, u64) {
        let store = self.raw.store();
        let mut steps = Vec::new();
        let mut taken = 0;
        let mut through = after.min(self.applied_index);
        if after < store.snapshot_index() {
            let data = store.snapshot.data.to_vec();
            taken += data.len();
            through = store.snapshot_index();
            steps.push(Committed::Snapshot {
                index: through,
                data,
            });
        }
        while through < self.applied_index && taken < max_bytes {
            through += 1;
            let entry = store
                .entry(through)
                .expect("the applied entries after the snapshot are held");
            if !entry.data.is_empty() {
                taken += entry.data.len();
                steps.push(Committed::Entry {
                    index: through,
                    term: entry.term,
                    data: entry.data.to_vec(),
                });
            }
        }
        (steps, through)
    }

    /// As the leader, hands the leadership to the voter whose log matches the most of this
    /// one (raft's leadership transfer: it campaigns at once once caught up), so the quorum
    /// need not wait out an election timeout when this voter stops. Only a voter heard from
    /// lately and not in `down` is asked. Returns the voter asked, or `None` when this voter
    /// does not lead or no peer qualifies. While a transfer is pending (up to an election
    /// timeout) raft refuses proposals.
    pub fn transfer_leadership(&mut self, down: &BTreeSet<NodeId>) -> Option<NodeId> {
        if self.failed || !self.is_leader() {
            return None;
        }
        let own = self.raw.raft.id;
        let (to, _) = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(id, progress)| {
                **id != own && progress.recent_active && !down.contains(&node_id(**id))
            })
            .map(|(id, progress)| (*id, progress.matched))
            .max_by_key(|&(id, matched)| (matched, std::cmp::Reverse(id)))?;
        self.raw.transfer_leader(to);
        Some(node_id(to))
    }

    /// Runs raft's Ready loop: persists and syncs the log and state, then returns the
    /// messages to send and what became committed.
    pub fn poll(&mut self) -> Result<QuorumOutput, QuorumError> {
        self.check_running()?;
        let mut output = QuorumOutput::default();
        let result = self.handle_readies(&mut output);
        if result.is_err() {
            self.failed = true;
        }
        result?;
        self.check_invariants();
        Ok(output)
    }

    /// Stores `data`, the caller's state-machine image as of `applied_index` (an index
    /// already handed out), durably, and compacts the log up to it. An image not newer than
    /// the stored snapshot is ignored.
    pub fn snapshot(&mut self, applied_index: u64, data: Vec<u8>) -> Result<(), QuorumError> {
        self.check_running()?;
        if applied_index > self.applied_index {
            return Err(QuorumError::SnapshotAhead {
                index: applied_index,
                applied: self.applied_index,
            });
        }
        let store = self.raw.store();
        if applied_index <= store.snapshot_index() {
            return Ok(());
        }
        let term = store
            .term_of(applied_index)
            .expect("an applied index above the snapshot is in the log");
        let mut metadata = SnapshotMetadata {
            index: applied_index,
            term,
            ..SnapshotMetadata::default()
        };
        metadata.set_conf_state(store.conf_state.clone());
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(metadata);
        snapshot.data = data.into();
        let result = self.write_snapshot(snapshot);
        if result.is_err() {
            self.failed = true;
        }
        result?;
        self.check_invariants();
        Ok(())
    }

    /// Gives the storage back (the voter is closed; its files stay).
    pub fn into_storage(self) -> S {
        self.disk.storage
    }

    /// Writes a snapshot made here: the snapshot file, then the log without what it covers.
    fn write_snapshot(&mut self, snapshot: Snapshot) -> Result<(), QuorumError> {
        self.disk.write_snapshot(&snapshot)?;
        let store = self.raw.mut_store();
        store.compact(snapshot);
        self.disk.rewrite_log(&store.entries)?;
        Ok(())
    }

    fn check_running(&self) -> Result<(), QuorumError> {
        if self.failed {
            return Err(QuorumError::Offline);
        }
        Ok(())
    }

    /// Handles raft's Readys until there are none (or the round limit), then stores a
    /// commit index that moved without a Ready's hard state.
    fn handle_readies(&mut self, output: &mut QuorumOutput) -> Result<(), QuorumError> {
        for _ in 0..READY_ROUNDS_MAX {
            if !self.raw.has_ready() {
                break;
            }
            let snapshot_recipients = self.handle_ready(output)?;
            for to in snapshot_recipients {
                // Handed to the transport: the leader probes the follower from here on and
                // sends the snapshot again if it never arrived.
                self.raw.report_snapshot(to, SnapshotStatus::Finish);
            }
        }
        let hard_state = self.raw.store().hard_state.clone();
        if &hard_state != self.disk.stored_state() {
            self.disk.write_state(&hard_state)?;
        }
        Ok(())
    }

    /// Handles one Ready (raft-rs's order): messages a leader may send before persisting, a
    /// snapshot, committed entries, new entries and hard state (persisted), messages that
    /// needed them, then the light Ready after `advance`. Returns the voters sent a
    /// snapshot.
    fn handle_ready(&mut self, output: &mut QuorumOutput) -> Result<Vec<u64>, QuorumError> {
        let mut ready = self.raw.ready();
        let mut snapshot_recipients = Vec::new();
        self.send(ready.take_messages(), output, &mut snapshot_recipients);
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot().clone(), output)?;
        }
        self.apply(ready.take_committed_entries(), output);
        if !ready.entries().is_empty() {
            self.persist_entries(ready.entries())?;
        }
        if let Some(hard_state) = ready.hs() {
            self.persist_hard_state(hard_state.clone())?;
        }
        self.send(
            ready.take_persisted_messages(),
            output,
            &mut snapshot_recipients,
        );
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().hard_state.commit = commit;
        }
        self.send(light.take_messages(), output, &mut snapshot_recipients);
        self.apply(light.take_committed_entries(), output);
        self.raw.advance_apply();
        Ok(snapshot_recipients)
    }

    /// Encodes raft's messages into `output`, noting who is sent a snapshot.
    fn send(
        &self,
        messages: Vec<raft::eraftpb::Message>,
        output: &mut QuorumOutput,
        snapshot_recipients: &mut Vec<u64>,
    ) {
        for message in messages {
            assert!(
                self.voters.binary_search(&message.to).is_ok(),
                "raft-rs sends only to voters"
            );
            if message.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
                snapshot_recipients.push(message.to);
            }
            output
                .messages
                .push((node_id(message.to), message::encode(&message)));
        }
    }

    /// Stores a snapshot from the leader (the snapshot file, then an empty log) and hands it
    /// to the caller.
    fn install_snapshot(
        &mut self,
        snapshot: Snapshot,
        output: &mut QuorumOutput,
    ) -> Result<(), QuorumError> {
        let index = snapshot.get_metadata().index;
        assert!(
            index > self.applied_index,
            "raft-rs installs newer snapshots only"
        );
        self.disk.write_snapshot(&snapshot)?;
        self.disk.rewrite_log(&[])?;
        output.committed.push(Committed::Snapshot {
            index,
            data: snapshot.data.to_vec(),
        });
        self.raw.mut_store().install_snapshot(snapshot);
        self.applied_index = index;
        Ok(())
    }

    /// Hands committed entries to the caller, skipping empty ones.
    fn apply(&mut self, entries: Vec<Entry>, output: &mut QuorumOutput) {
        for entry in entries {
            assert_eq!(
                entry.index,
                self.applied_index + 1,
                "entries commit in order"
            );
            assert_eq!(entry.get_entry_type(), EntryType::EntryNormal);
            self.applied_index = entry.index;
            if !entry.data.is_empty() {
                output.committed.push(Committed::Entry {
                    index: entry.index,
                    term: entry.term,
                    data: entry.data.to_vec(),
                });
            }
        }
    }

    /// Writes and syncs new entries, cutting off the suffix they replace.
    fn persist_entries(&mut self, entries: &[Entry]) -> Result<(), QuorumError> {
        let store = self.raw.mut_store();
        let first = entries[0].index;
        assert!(
            first > store.snapshot_index(),
            "raft-rs never rewrites compacted entries"
        );
        assert!(
            first <= store.last_index() + 1,
            "new entries follow the log"
        );
        let kept = (first - store.first_index()) as usize;
        self.disk.write_entries(kept, entries)?;
        store.entries.truncate(kept);
        store.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Takes a new hard state; a new term or vote is written at once, before the messages
    /// that depend on it, a commit index that alone moved at the end of the `poll`.
    fn persist_hard_state(&mut self, hard_state: HardState) -> Result<(), QuorumError> {
        let stored = self.disk.stored_state();
        if hard_state.term != stored.term || hard_state.vote != stored.vote {
            self.disk.write_state(&hard_state)?;
        }
        self.raw.mut_store().hard_state = hard_state;
        Ok(())
    }

    /// Checks the store, the files' positions and the indexes against each other (debug).
    fn check_invariants(&self) {
        if !cfg!(debug_assertions) || self.failed {
            return;
        }
        let store = self.raw.store();
        store.check_invariants();
        self.disk.check_invariants(&store.entries);
        assert!(store.snapshot_index() <= self.applied_index);
        assert!(self.applied_index <= store.hard_state.commit);
        assert!(store.hard_state.commit <= store.last_index());
        assert!(store.hard_state.commit <= self.raw.raft.raft_log.committed);
        assert!(store.hard_state.term <= self.raw.raft.term);
        assert_eq!(self.disk.stored_state(), &store.hard_state);
    }
}

/// The voters' raft ids, sorted, after checking the configuration.
fn raft_voters(config: &QuorumConfig) -> Result<Vec<u64>, QuorumError> {
    if config.voters.iter().any(|node| node.0 < 0) || config.node.0 < 0 {
        return Err(QuorumError::InvalidConfig("node ids are not negative"));
    }
    let mut voters: Vec<u64> = config.voters.iter().map(|&node| raft_id(node)).collect();
    voters.sort_unstable();
    voters.dedup();
    if voters.len() != config.voters.len() {
        return Err(QuorumError::InvalidConfig("a voter is listed twice"));
    }
    if voters.len() > VOTERS_MAX {
        return Err(QuorumError::InvalidConfig("more than 64 voters"));
    }
    if voters.binary_search(&raft_id(config.node)).is_err() {
        return Err(QuorumError::InvalidConfig("the node is not a voter"));
    }
    if config.heartbeat_tick == 0 || config.election_tick <= config.heartbeat_tick {
        return Err(QuorumError::InvalidConfig(
            "heartbeat_tick must be at least 1 and below election_tick",
        ));
    }
    if config.snapshot_interval == 0 {
        return Err(QuorumError::InvalidConfig(
            "snapshot_interval must be at least 1",
        ));
    }
    Ok(voters)
}

/// raft-rs's id for a node (raft-rs reserves 0, Kafka node ids start at 0).
fn raft_id(node: NodeId) -> u64 {
    debug_assert!(node.0 >= 0);
    node.0 as u64 + 1
}

/// The node of a voter's raft id.
fn node_id(raft_id: u64) -> NodeId {
    NodeId(i32::try_from(raft_id - 1).expect("voter raft ids come from node ids"))
}

//! The voter's raft state as raft-rs reads it ([`raft::Storage`]): the hard state, the fixed
//! voters, the latest snapshot (with the state-machine image, unlike raft-rs's `MemStorage`)
//! and the log entries after it — an in-memory mirror of what the quorum files hold. Only the
//! quorum changes it, and only with what is already durable (or about to be, within one
//! `poll`).

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

/// The log and state one voter has persisted, as raft-rs sees it.
#[derive(Debug, Default)]
pub(super) struct RaftStore {
    /// Term, vote and commit index.
    pub(super) hard_state: HardState,
    /// The voters, fixed at bootstrap.
    pub(super) conf_state: ConfState,
    /// The latest snapshot, metadata and data; index 0 means none yet.
    pub(super) snapshot: Snapshot,
    /// The entries after the snapshot: `entries[i].index == snapshot_index() + 1 + i`.
    pub(super) entries: Vec<Entry>,
}

impl RaftStore {
    /// The index of the last entry the snapshot covers (0 without a snapshot).
    pub(super) fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    /// The index of the first entry held.
    pub(super) fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    /// The index of the last entry held (the snapshot's when there are none after it).
    pub(super) fn last_index(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
    }

    /// The term of the entry at `index`, if it is held or is the snapshot's last.
    pub(super) fn term_of(&self, index: u64) -> Option<u64> {
        let metadata = self.snapshot.get_metadata();
        if index == metadata.index {
            return Some(metadata.term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    /// The entry at `index`, if held.
    pub(super) fn entry(&self, index: u64) -> Option<&Entry> {
        let offset = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// Replaces everything with a snapshot (raft-rs installs one only when the log does not
    /// hold its last entry, so no entry is kept).
    pub(super) fn install_snapshot(&mut self, snapshot: Snapshot) {
        assert!(
            snapshot.get_metadata().index > self.snapshot_index(),
            "a snapshot replaces an older one"
        );
        self.entries.clear();
        self.snapshot = snapshot;
    }

    /// Takes a snapshot the quorum made at `snapshot.index` and drops the entries it covers.
    pub(super) fn compact(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        assert!(index > self.snapshot_index(), "compaction moves forward");
        assert!(
            index <= self.last_index(),
            "compaction stays within the log"
        );
        let dropped = (index - self.snapshot_index()) as usize;
        self.entries.drain(..dropped);
        self.snapshot = snapshot;
    }

    /// Checks the shape of the store: contiguous indexes after the snapshot, terms never
    /// going down.
    pub(super) fn check_invariants(&self) {
        let mut previous_term = self.snapshot.get_metadata().term;
        for (offset, entry) in self.entries.iter().enumerate() {
            assert_eq!(entry.index, self.first_index() + offset as u64);
            assert!(entry.term >= previous_term, "terms never go down");
            previous_term = entry.term;
        }
        assert!(
            self.hard_state.term >= previous_term,
            "the term covers the log"
        );
        assert!(self.hard_state.commit >= self.snapshot_index());
    }
}

impl raft::Storage for RaftStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= self.last_index() + 1,
            "raft-rs asked for entries up to {high} beyond the last index {}",
            self.last_index()
        );
        let start = (low - self.first_index()) as usize;
        let end = (high - self.first_index()) as usize;
        let mut entries = self.entries[start..end].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index < self.snapshot_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(index)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(RaftStore::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(RaftStore::last_index(self))
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let index = self.snapshot_index();
        if index == 0 || index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

//! Observers and the voters that serve them (the protocol is in `observer.rs`): a voter
//! answers a [`PeerMessage::MetadataFetch`] from what it applied, or parks it until it
//! applies more or `replica.fetch.wait.max.ms` passes; an observer sends its fetches and
//! takes the answers.

use super::messages::PeerMessage;
use super::ClusterNode;
use crate::broker::StorageProvider;
use crate::quorum::Committed;
use crate::types::{Millis, NodeId};

/// The most observers a voter keeps track of (for DescribeQuorum).
const OBSERVERS_MAX: usize = 1_024;

/// The most entry bytes one answer to an observer carries (a snapshot may be larger).
const ANSWER_BYTES_MAX: usize = 1 << 20;

/// An observer's fetch a voter holds until it has applied something after `after`.
pub(super) struct ParkedMetadataFetch {
    correlation: u64,
    after: u64,
    deadline: Millis,
}

impl<P: StorageProvider> ClusterNode<P> {
    /// As a voter: an observer's fetch of the committed log after `after`.
    pub(super) fn serve_metadata_fetch(
        &mut self,
        now: Millis,
        from: NodeId,
        correlation: u64,
        after: u64,
    ) {
        let known = self.observers.contains_key(&from) || self.observers.len() < OBSERVERS_MAX;
        if !self.config.voters.contains(&from) && known {
            self.observers.insert(from, (after, now));
        }
        if self.metadata.applied_index() > after {
            self.answer_metadata_fetch(from, correlation, after);
            return;
        }
        let deadline = Millis(now.0 + i64::from(self.config.replica_fetch_wait_ms));
        let parked = ParkedMetadataFetch {
            correlation,
            after,
            deadline,
        };
        // An observer has one fetch in flight: a newer one replaces the one held.
        self.metadata_fetches.insert(from, parked);
    }

    /// As a voter: answers the parked fetches that something applied since, or whose wait is
    /// over (with nothing, but the leader and term it knows).
    pub(super) fn answer_parked_metadata_fetches(&mut self, now: Millis) {
        let applied = self.metadata.applied_index();
        let due: Vec<(NodeId, u64, u64)> = (self.metadata_fetches.iter())
            .filter(|(_, parked)| parked.after < applied || parked.deadline <= now)
            .map(|(observer, parked)| (*observer, parked.correlation, parked.after))
            .collect();
        for (observer, correlation, after) in due {
            self.metadata_fetches.remove(&observer);
            self.answer_metadata_fetch(observer, correlation, after);
        }
    }

    fn answer_metadata_fetch(&mut self, to: NodeId, correlation: u64, after: u64) {
        let Some((committed, through)) = self.metadata.committed_after(after, ANSWER_BYTES_MAX)
        else {
            return; // an observer serves no one
        };
        let answer = PeerMessage::MetadataEntries {
            correlation,
            leader: self.metadata.leader(),
            term: self.metadata.term(),
            through,
            latest: self.metadata.applied_index(),
            committed,
        };
        self.outbox.push((to, answer));
    }

    /// The earliest deadline of a parked observer's fetch, or of this observer's own fetch.
    pub(super) fn next_metadata_fetch_deadline(&self) -> Option<Millis> {
        let parked = self.metadata_fetches.values().map(|p| p.deadline).min();
        let own = match &self.metadata {
            super::metadata::MetadataLog::Observer(observer) => {
                observer.deadline(self.metadata_fetch_timeout())
            }
            super::metadata::MetadataLog::Voter(_) => None,
        };
        parked.into_iter().chain(own).min()
    }

    /// As an observer: sends the next fetch if one is due.
    pub(super) fn send_metadata_fetch(&mut self, now: Millis) {
        let timeout = self.metadata_fetch_timeout();
        let correlation = self.next_correlation + 1;
        let down = &self.peers_down;
        let Some(observer) = self.metadata.observer() else {
            return;
        };
        if let Some((voter, after)) = observer.fetch_due(now, correlation, timeout, down) {
            self.next_correlation = correlation;
            let fetch = PeerMessage::MetadataFetch { correlation, after };
            self.outbox.push((voter, fetch));
        }
    }

    /// As an observer: a voter's answer.
    pub(super) fn take_metadata_entries(
        &mut self,
        from: NodeId,
        correlation: u64,
        leader: (Option<NodeId>, u64),
        (through, latest): (u64, u64),
        committed: Vec<Committed>,
    ) {
        if let Some(observer) = self.metadata.observer() {
            observer.take_answer(from, correlation, leader, (through, latest), committed);
        }
    }

    /// How long an observer waits for an answer before asking another voter: the voter's
    /// longest hold and as long again for the trip.
    fn metadata_fetch_timeout(&self) -> i64 {
        2 * i64::from(self.config.replica_fetch_wait_ms)
    }
}

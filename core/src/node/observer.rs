//! A broker that is not a voter follows the metadata log as an observer (KRaft's broker-only
//! nodes): it asks a voter for the committed entries after the last one it applied
//! ([`PeerMessage::MetadataFetch`](super::PeerMessage::MetadataFetch)); the voter answers at
//! once when it has some, else holds the fetch for a moment. Any voter may answer — what
//! is committed is the same at every voter — but the quorum leader learns of commits first,
//! so the fetch goes to the leader the last answer named, and round the voters while none is
//! known or the one asked is silent. The observer keeps nothing on disk: after a restart it
//! fetches from the start (or the voter's snapshot) again — and, like a voter replaying its
//! log, builds an image of that history before its broker acts on any of it (the node's
//! `replay`), so past roles (a replica moved away and back) never touch its files.

use std::collections::BTreeSet;

use crate::quorum::Committed;
use crate::types::{Millis, NodeId};

/// An observer's place in the metadata log. See the module doc.
#[derive(Debug)]
pub(super) struct Observer {
    voters: Vec<NodeId>,
    /// The quorum leader and term the last answer named.
    leader: Option<NodeId>,
    term: u64,
    /// The last log index taken from an answer.
    applied: u64,
    /// The fetch in flight: (voter, correlation, sent at).
    in_flight: Option<(NodeId, u64, Millis)>,
    /// Where the next fetch goes while no leader is known (an index into `voters`).
    next_voter: usize,
    /// Taken from answers, not yet handed out by [`Observer::poll`].
    received: Vec<Committed>,
    /// Whether it once held everything the voter answering had applied.
    caught_up: bool,
}

impl Observer {
    /// An observer that has applied nothing.
    pub(super) fn new(voters: Vec<NodeId>) -> Observer {
        Observer {
            voters,
            leader: None,
            term: 0,
            applied: 0,
            in_flight: None,
            next_voter: 0,
            received: Vec::new(),
            caught_up: false,
        }
    }

    /// The quorum leader the last answer named.
    pub(super) fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The term the last answer named.
    pub(super) fn term(&self) -> u64 {
        self.term
    }

    /// The last log index taken.
    pub(super) fn applied_index(&self) -> u64 {
        self.applied
    }

    /// Whether it once held everything a voter had applied when it answered: the history
    /// since this start is replayed.
    pub(super) fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// The fetch to send now, if one is due: (voter, `after`). One is due when none is in
    /// flight, or the one in flight went unanswered for `timeout_ms` (then the next voter is
    /// asked). Voters in `down` are skipped while another is up.
    pub(super) fn fetch_due(
        &mut self,
        now: Millis,
        correlation: u64,
        timeout_ms: i64,
        down: &BTreeSet<NodeId>,
    ) -> Option<(NodeId, u64)> {
        if let Some((voter, _, sent)) = self.in_flight {
            if now.0 - sent.0 < timeout_ms {
                return None;
            }
            // Silent: ask another voter, and forget a leader that may be gone.
            if self.leader == Some(voter) {
                self.leader = None;
            }
        }
        let to = match self.leader {
            Some(leader) if !down.contains(&leader) => leader,
            _ => self.next_voter(down)?,
        };
        self.in_flight = Some((to, correlation, now));
        Some((to, self.applied))
    }

    /// The voter after the last one asked round-robin, preferring those not in `down`.
    fn next_voter(&mut self, down: &BTreeSet<NodeId>) -> Option<NodeId> {
        let count = self.voters.len();
        if count == 0 {
            return None;
        }
        let start = self.next_voter;
        let up = (0..count)
            .map(|i| (start + i) % count)
            .find(|&i| !down.contains(&self.voters[i]));
        let chosen = up.unwrap_or(start % count);
        self.next_voter = (chosen + 1) % count;
        Some(self.voters[chosen])
    }

    /// When the fetch in flight is to be given up, if one is.
    pub(super) fn deadline(&self, timeout_ms: i64) -> Option<Millis> {
        self.in_flight
            .map(|(_, _, sent)| Millis(sent.0 + timeout_ms))
    }

    /// The connection to `peer` was lost: a fetch in flight to it is sent elsewhere at once.
    pub(super) fn peer_down(&mut self, peer: NodeId) {
        if self.in_flight.is_some_and(|(voter, _, _)| voter == peer) {
            self.in_flight = None;
            if self.leader == Some(peer) {
                self.leader = None;
            }
        }
    }

    /// A voter's answer to the fetch in flight (answers to earlier fetches are dropped). The
    /// steps after the applied index are kept for [`Observer::poll`].
    pub(super) fn take_answer(
        &mut self,
        from: NodeId,
        correlation: u64,
        (leader, term): (Option<NodeId>, u64),
        (through, latest): (u64, u64),
        committed: Vec<Committed>,
    ) {
        if self.in_flight.map(|(voter, c, _)| (voter, c)) != Some((from, correlation)) {
            return;
        }
        self.in_flight = None;
        if term >= self.term {
            self.term = term;
            self.leader = leader;
        }
        for step in committed {
            let index = match &step {
                Committed::Entry { index, .. } | Committed::Snapshot { index, .. } => *index,
            };
            if index > self.applied {
                self.applied = index;
                self.received.push(step);
            }
        }
        self.applied = self.applied.max(through);
        self.caught_up |= self.applied >= latest;
    }

    /// The steps taken since the last call, in log order.
    pub(super) fn poll(&mut self) -> Vec<Committed> {
        std::mem::take(&mut self.received)
    }
}

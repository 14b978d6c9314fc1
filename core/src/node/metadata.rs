//! The node's place in the metadata log: a voter of the quorum, or an observer that follows
//! it ([`Observer`]). One type so that the node asks the same questions either way — who
//! leads, what is committed — and branches on the role only where a voter does more (it
//! proposes, describes the quorum, serves observers).

use std::collections::BTreeSet;

use super::observer::Observer;
use crate::quorum::{Committed, Quorum, QuorumError, QuorumOutput, QuorumState};
use crate::storage::Storage;
use crate::types::NodeId;

/// A voter's quorum, or an observer. See the module doc.
pub(super) enum MetadataLog<S: Storage> {
    /// A voter of the controller quorum.
    Voter(Box<Quorum<S>>),
    /// A broker that is not a voter.
    Observer(Observer),
}

impl<S: Storage> MetadataLog<S> {
    /// The quorum leader this node knows of.
    pub(super) fn leader(&self) -> Option<NodeId> {
        match self {
            MetadataLog::Voter(quorum) => quorum.leader(),
            MetadataLog::Observer(observer) => observer.leader(),
        }
    }

    /// Whether this node leads the quorum (never, for an observer).
    pub(super) fn is_leader(&self) -> bool {
        matches!(self, MetadataLog::Voter(quorum) if quorum.is_leader())
    }

    /// The term this node knows of.
    pub(super) fn term(&self) -> u64 {
        match self {
            MetadataLog::Voter(quorum) => quorum.term(),
            MetadataLog::Observer(observer) => observer.term(),
        }
    }

    /// The last log index applied.
    pub(super) fn applied_index(&self) -> u64 {
        match self {
            MetadataLog::Voter(quorum) => quorum.applied_index(),
            MetadataLog::Observer(observer) => observer.applied_index(),
        }
    }

    /// One quorum tick (an observer's timers are its fetch's).
    pub(super) fn handle_tick(&mut self) {
        if let MetadataLog::Voter(quorum) = self {
            quorum.handle_tick();
        }
    }

    /// A raft message; an observer takes none (the voters do not know it).
    pub(super) fn handle_raft(&mut self, from: NodeId, bytes: &[u8]) -> Result<(), QuorumError> {
        match self {
            MetadataLog::Voter(quorum) => quorum.handle_message(from, bytes),
            MetadataLog::Observer(_) => Ok(()),
        }
    }

    /// Proposes `data`; an observer is never the leader.
    pub(super) fn propose(&mut self, data: Vec<u8>) -> Result<(), QuorumError> {
        match self {
            MetadataLog::Voter(quorum) => quorum.propose(data),
            MetadataLog::Observer(observer) => Err(QuorumError::NotLeader {
                leader: observer.leader(),
            }),
        }
    }

    /// The quorum's state, on its leader only.
    pub(super) fn describe(&self) -> Option<QuorumState> {
        match self {
            MetadataLog::Voter(quorum) => quorum.describe(),
            MetadataLog::Observer(_) => None,
        }
    }

    /// As the quorum's leader, hands the leadership to another voter (see
    /// [`Quorum::transfer_leadership`]).
    pub(super) fn transfer_leadership(&mut self, down: &BTreeSet<NodeId>) -> Option<NodeId> {
        match self {
            MetadataLog::Voter(quorum) => quorum.transfer_leadership(down),
            MetadataLog::Observer(_) => None,
        }
    }

    /// The raft messages to send and what became committed since the last call.
    pub(super) fn poll(&mut self) -> Result<QuorumOutput, QuorumError> {
        match self {
            MetadataLog::Voter(quorum) => quorum.poll(),
            MetadataLog::Observer(observer) => Ok(QuorumOutput {
                messages: Vec::new(),
                committed: observer.poll(),
            }),
        }
    }

    /// Whether a snapshot of the image is due (an observer keeps none).
    pub(super) fn snapshot_due(&self) -> bool {
        matches!(self, MetadataLog::Voter(quorum) if quorum.snapshot_due())
    }

    /// Stores the image as of the applied index, on a voter.
    pub(super) fn snapshot(&mut self, data: Vec<u8>) -> Result<(), QuorumError> {
        match self {
            MetadataLog::Voter(quorum) => {
                let applied = quorum.applied_index();
                quorum.snapshot(applied, data)
            }
            MetadataLog::Observer(_) => Ok(()),
        }
    }

    /// What a voter committed after `after`, for an observer (see
    /// [`Quorum::committed_after`]); an observer serves none.
    pub(super) fn committed_after(
        &self,
        after: u64,
        max_bytes: usize,
    ) -> Option<(Vec<Committed>, u64)> {
        match self {
            MetadataLog::Voter(quorum) => Some(quorum.committed_after(after, max_bytes)),
            MetadataLog::Observer(_) => None,
        }
    }

    /// The observer, for a node that is one.
    pub(super) fn observer(&mut self) -> Option<&mut Observer> {
        match self {
            MetadataLog::Voter(_) => None,
            MetadataLog::Observer(observer) => Some(observer),
        }
    }
}

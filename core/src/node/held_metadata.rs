//! Metadata while a leader's node has just died. When the driver reports a peer's
//! connection lost, the controller fences that node and elects new leaders within a few
//! milliseconds — but a client that lost its own connection to the dead leader at the same
//! moment asks for Metadata at once, and an answer naming the dead node as leader sends it to
//! wait for its next refresh (librdkafka re-queries on its topic scan, up to a second later).
//! So a Metadata request naming a partition whose leader this node lost its connection to,
//! while the image still shows that leader active, is held until the image no longer does —
//! fenced, a new leader elected — or until [`METADATA_HOLD_MS`] after the loss: a peer that
//! is only cut off from this node (the controller still hears it) delays Metadata once, for a
//! moment, never for as long as the cut lasts.

use kafka_protocol::messages::{MetadataRequest, ResponseKind};

use super::ClusterNode;
use crate::broker::{ParkedId, Reply, StorageProvider};
use crate::driver::Completed;
use crate::types::{Millis, NodeId};

/// How long after a peer's connection is lost Metadata naming it as a leader may wait for
/// the controller's decision.
pub const METADATA_HOLD_MS: i64 = 500;

/// The most Metadata requests held at once; beyond it one is answered at once.
const HELD_METADATA_MAX: usize = 10_000;

/// A Metadata request held for the controller's decision on a lost leader.
pub(super) struct HeldMetadata {
    body: MetadataRequest,
    version: i16,
    deadline: Millis,
}

impl<P: StorageProvider> ClusterNode<P> {
    /// Until when a Metadata request for `body`'s topics is held, if it is (see the module
    /// doc).
    pub(super) fn metadata_hold(&self, now: Millis, body: &MetadataRequest) -> Option<Millis> {
        if self.held_metadata.len() >= HELD_METADATA_MAX {
            return None;
        }
        self.lost_leader_deadline(body).filter(|d| *d > now)
    }

    /// Holds a Metadata request until `deadline` at most.
    pub(super) fn hold_metadata(
        &mut self,
        body: MetadataRequest,
        version: i16,
        deadline: Millis,
    ) -> Reply {
        let id = ParkedId::Metadata(self.next_parked_number());
        let held = HeldMetadata {
            body,
            version,
            deadline,
        };
        self.held_metadata.insert(id, held);
        Reply::Parked(id)
    }

    /// Until when Metadata for `body`'s topics may wait: the latest hold of a lost peer that
    /// leads one of their partitions and is active still in the image; `None` when no such
    /// leader.
    fn lost_leader_deadline(&self, body: &MetadataRequest) -> Option<Millis> {
        if self.peers_lost_at.is_empty() {
            return None;
        }
        let image = self.image();
        let lost = |leader: NodeId| {
            let at = self.peers_lost_at.get(&leader)?;
            image
                .is_active(leader)
                .then_some(Millis(at.0 + METADATA_HOLD_MS))
        };
        let leaders = |topic: &crate::cluster::TopicImage| {
            (topic.partitions.iter())
                .filter_map(|p| lost(p.leader?))
                .max()
        };
        match &body.topics {
            None => image.topics().values().filter_map(leaders).max(),
            Some(topics) => (topics.iter())
                .filter_map(|t| match &t.name {
                    Some(name) => image.topic(name.0.as_str()),
                    None => image.topic_by_id(t.topic_id),
                })
                .filter_map(leaders)
                .max(),
        }
    }

    /// Answers the held Metadata requests whose lost leaders the image no longer shows
    /// active, or whose hold ran out.
    pub(super) fn release_metadata(&mut self, now: Millis) {
        let held = std::mem::take(&mut self.held_metadata);
        for (id, held) in held {
            let waits = (self.lost_leader_deadline(&held.body)).is_some_and(|d| d > now);
            if waits && held.deadline > now {
                self.held_metadata.insert(id, held);
                continue;
            }
            let response = (self.broker).metadata_response(now, held.body, held.version);
            let response = Box::new(ResponseKind::Metadata(response));
            self.completed.push(Completed::Response(id, response));
        }
    }

    /// The earliest deadline of a held Metadata request.
    pub(super) fn next_metadata_hold_deadline(&self) -> Option<Millis> {
        self.held_metadata.values().map(|h| h.deadline).min()
    }
}

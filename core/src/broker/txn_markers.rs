//! Transaction markers: the COMMIT or ABORT control batch a transaction coordinator writes
//! to every partition of a transaction once its prepare is committed.
//!
//! A marker is appended by the partition's leader and waited on like an acks=all produce.
//! A partition this broker leads gets its marker at once; one led by another node is asked
//! of that node ([`MarkerMessage::Write`], carried by the cluster node as a peer message),
//! which writes it the same way and answers once it is committed ([`MarkerMessage::Written`])
//! or failed. A marker not yet written (no leader, a refused write, a lost answer) is tried
//! again after [`MARKER_RETRY_MS`]: markers are idempotent at the partition (one whose
//! transaction already ended there ends nothing), so a repeat does no harm. When every
//! partition's marker is committed, the coordinator writes the transaction's completion.
//! A marker committed in `__consumer_offsets` also ends the transaction's offsets of that
//! partition's groups, on whichever node leads it.

use std::collections::BTreeMap;

use super::{Broker, StorageProvider};
use crate::error::ErrorCode;
use crate::group::partition_for_group;
use crate::planted::{is_planted, PlantedBug};
use crate::record::{ControlMarker, ControlType};
use crate::txn::MarkerJob;
use crate::types::{LeaderEpoch, Millis, NodeId, Offset, ProducerEpoch, ProducerId};

/// How soon a marker that could not be written is tried again.
pub const MARKER_RETRY_MS: i64 = 100;
/// How long a marker asked of another node may go unanswered before it is asked again (a
/// repeat writes at most one more marker, which ends nothing).
pub const MARKER_REMOTE_TIMEOUT_MS: i64 = 1_000;
/// How long a node asked for markers waits for them to be committed before it answers
/// `REQUEST_TIMED_OUT`.
pub const MARKER_COMMIT_TIMEOUT_MS: i64 = 5_000;

/// One partition's marker as one node asks another to write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerEntry {
    /// The partition's topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The producer whose transaction ends.
    pub producer_id: ProducerId,
    /// The epoch the marker carries.
    pub producer_epoch: ProducerEpoch,
    /// Commit or abort.
    pub control: ControlType,
    /// The coordinator's epoch.
    pub coordinator_epoch: i32,
    /// The transaction's token ([`ControlMarker::token`]).
    pub token: i64,
}

/// What a transaction coordinator and a partition leader tell each other about markers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkerMessage {
    /// To a partition leader: write these markers.
    Write {
        /// Matches the answer to the request.
        request: u64,
        /// The markers.
        markers: Vec<MarkerEntry>,
    },
    /// To the coordinator: how each marker of a [`MarkerMessage::Write`] ended — (topic,
    /// partition, Kafka error code; 0 once committed).
    Written {
        /// The request answered.
        request: u64,
        /// One per marker asked.
        results: Vec<(String, i32, i16)>,
    },
}

/// Where one partition's marker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PartitionMarker {
    /// Not written yet, or to be written again.
    Pending,
    /// Appended here as the leader: (leader epoch, offset after it).
    Local(LeaderEpoch, Offset),
    /// Asked of the partition's leader in this request, at this time.
    Remote(u64, Millis),
}

/// One transaction's markers still to write or to be committed.
struct MarkerProgress {
    job: MarkerJob,
    /// The coordinator's epoch (its partition's leader epoch), written in the markers.
    coordinator_epoch: i32,
    remaining: BTreeMap<(String, i32), PartitionMarker>,
}

/// A marker a peer asked for: where it was written here, and its result once known.
type AskedEntry = (
    MarkerEntry,
    Option<(LeaderEpoch, Offset)>,
    Option<ErrorCode>,
);

/// Markers another node asked this one to write, until each is committed or failed.
struct AskedMarkers {
    from: NodeId,
    request: u64,
    deadline: Millis,
    /// Each marker with where it is, and its result once known.
    entries: Vec<AskedEntry>,
}

/// The markers in progress on this broker.
#[derive(Default)]
pub(crate) struct Markers {
    /// This coordinator's transactions, by transactional id.
    ours: BTreeMap<String, MarkerProgress>,
    /// Markers peers asked of this leader.
    asked: Vec<AskedMarkers>,
    /// Messages for peers, drained by the node.
    outbox: Vec<(NodeId, MarkerMessage)>,
    next_request: u64,
    /// When markers not written are tried again.
    next_retry: Option<Millis>,
}

impl Markers {
    /// Forgets this coordinator's markers of the ids `moved` selects (their coordinator
    /// is elsewhere now, and writes them again).
    pub(crate) fn forget(&mut self, moved: impl Fn(&str) -> bool) {
        self.ours.retain(|id, _| !moved(id));
    }

    /// The earliest time markers have work to do.
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        let remote = self.ours.values().flat_map(|p| p.remaining.values());
        let remote = remote
            .filter_map(|m| match m {
                PartitionMarker::Remote(_, at) => Some(Millis(at.0 + MARKER_REMOTE_TIMEOUT_MS)),
                _ => None,
            })
            .min();
        let asked = self.asked.iter().map(|a| a.deadline).min();
        [self.next_retry, remote, asked].into_iter().flatten().min()
    }
}

/// What one partition's marker came to at its leader.
enum MarkerStep {
    /// Committed (or there is nothing to end): done.
    Committed,
    /// Written, waiting for the in-sync replicas.
    Waiting(LeaderEpoch, Offset),
    /// This broker does not lead the partition.
    NotLeader,
    /// Not written or not committed: this error, tried again later.
    Failed(ErrorCode),
}

impl<P: StorageProvider> Broker<P> {
    /// Starts writing a transaction's markers.
    pub(super) fn start_markers(&mut self, job: MarkerJob, coordinator_epoch: LeaderEpoch) {
        let remaining = job
            .partitions
            .iter()
            .map(|p| (p.clone(), PartitionMarker::Pending))
            .collect();
        let progress = MarkerProgress {
            job,
            coordinator_epoch: coordinator_epoch.0,
            remaining,
        };
        let id = progress.job.transactional_id.clone();
        self.transactions.markers.ours.insert(id, progress);
    }

    /// Moves every marker on: this coordinator's (written here, asked of their leaders,
    /// checked) and those peers asked of this leader; writes the completion of each
    /// transaction whose markers are all committed.
    pub(super) fn advance_markers(&mut self, now: Millis) {
        self.advance_asked_markers(now);
        if self.transactions.markers.ours.is_empty() {
            self.transactions.markers.next_retry = None;
            return;
        }
        let mut ours = std::mem::take(&mut self.transactions.markers.ours);
        let mut retry = false;
        let mut next_request = self.transactions.markers.next_request;
        let mut remote: BTreeMap<NodeId, (u64, Vec<MarkerEntry>)> = BTreeMap::new();
        let this_node = NodeId(self.config.node_id);
        for progress in ours.values_mut() {
            let job = &progress.job;
            let marker = ControlMarker {
                producer_id: job.producer_id,
                producer_epoch: job.producer_epoch,
                control_type: job.control,
                coordinator_epoch: progress.coordinator_epoch,
                timestamp: now.0,
                token: job.token,
            };
            let mut finished = Vec::new();
            for ((topic, index), state) in &mut progress.remaining {
                let written = match *state {
                    PartitionMarker::Remote(_, at) if now.0 < at.0 + MARKER_REMOTE_TIMEOUT_MS => {
                        continue;
                    }
                    PartitionMarker::Local(epoch, offset) => Some((epoch, offset)),
                    PartitionMarker::Remote(..) | PartitionMarker::Pending => None,
                };
                match self.marker_step(now, topic, *index, &marker, written) {
                    MarkerStep::Committed => finished.push((topic.clone(), *index)),
                    MarkerStep::Waiting(epoch, offset) => {
                        *state = PartitionMarker::Local(epoch, offset);
                    }
                    MarkerStep::Failed(_) => {
                        *state = PartitionMarker::Pending;
                        retry = true;
                    }
                    MarkerStep::NotLeader => match self.leader_of(topic, *index) {
                        Some(leader) if leader != this_node => {
                            let (request, entries) = remote.entry(leader).or_insert_with(|| {
                                next_request += 1;
                                (next_request, Vec::new())
                            });
                            entries.push(MarkerEntry {
                                topic: topic.clone(),
                                partition: *index,
                                producer_id: marker.producer_id,
                                producer_epoch: marker.producer_epoch,
                                control: marker.control_type,
                                coordinator_epoch: marker.coordinator_epoch,
                                token: marker.token,
                            });
                            *state = PartitionMarker::Remote(*request, now);
                        }
                        // No leader yet (or the image still names this node).
                        _ => {
                            *state = PartitionMarker::Pending;
                            retry = true;
                        }
                    },
                }
            }
            for key in finished {
                progress.remaining.remove(&key);
            }
        }
        let markers = &mut self.transactions.markers;
        markers.next_request = next_request;
        for (leader, (request, entries)) in remote {
            let message = MarkerMessage::Write {
                request,
                markers: entries,
            };
            markers.outbox.push((leader, message));
        }
        markers.next_retry = retry.then_some(Millis(now.0 + MARKER_RETRY_MS));
        let done: Vec<String> = ours
            .iter()
            .filter(|(_, p)| p.remaining.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        for id in &done {
            ours.remove(id);
        }
        self.transactions.markers.ours = ours;
        for id in done {
            let completion = self.transactions.coordinator.markers_written(now, &id);
            if let Some(value) = completion {
                self.write_transition(now, &id, value, None);
            }
        }
    }

    /// One partition's marker at this broker: written now if it is not yet (this broker
    /// must lead the partition), then waited on until committed.
    fn marker_step(
        &mut self,
        now: Millis,
        topic: &str,
        index: i32,
        marker: &ControlMarker,
        written: Option<(LeaderEpoch, Offset)>,
    ) -> MarkerStep {
        let in_image = self
            .image()
            .topic(topic)
            .is_some_and(|t| t.partitions.iter().any(|p| p.partition == index));
        if !in_image {
            // The topic is gone from the cluster: there is nothing to end.
            return MarkerStep::Committed;
        }
        if !self.member.caught_up {
            // Its image may still name it leader of partitions that moved while it was
            // away: it writes nothing as their leader until it has caught up.
            return MarkerStep::Failed(ErrorCode::NotLeaderOrFollower);
        }
        let led = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(index));
        let Some(partition) = led.filter(|p| p.is_leader()) else {
            // Led elsewhere, or not opened here yet (a restart loads its roles in turn).
            return MarkerStep::NotLeader;
        };
        let (epoch, next_offset) = match written {
            Some((epoch, next_offset)) if epoch == partition.leader_epoch() => (epoch, next_offset),
            _ => match partition.write_marker(now, marker) {
                Ok(next_offset) => (partition.leader_epoch(), next_offset),
                // A newer instance's epoch is there already: this transaction was ended.
                Err(ErrorCode::InvalidProducerEpoch) => return MarkerStep::Committed,
                Err(code) => return MarkerStep::Failed(code),
            },
        };
        let outcome = match is_planted(PlantedBug::AckOnLeaderAppend) {
            true => Some(Ok(())),
            false => partition.acks_all_outcome(next_offset),
        };
        match outcome {
            Some(Ok(())) => {
                if topic == super::OFFSETS_TOPIC {
                    self.end_group_offsets(now, index, marker);
                }
                MarkerStep::Committed
            }
            Some(Err(code)) => MarkerStep::Failed(code),
            None => MarkerStep::Waiting(epoch, next_offset),
        }
    }

    /// A marker is committed in a `__consumer_offsets` partition: the offsets the
    /// transaction committed for that partition's groups stand or go.
    fn end_group_offsets(&mut self, now: Millis, index: i32, marker: &ControlMarker) {
        let count = self
            .topics
            .get(super::OFFSETS_TOPIC)
            .map_or(1, |t| t.partitions.count().max(1));
        let commit = marker.control_type == ControlType::Commit;
        let here = |group: &str| partition_for_group(group, count) == index;
        let coordinator = &mut self.groups.coordinator;
        coordinator.end_txn_offsets(now, marker.producer_id, commit, here);
    }

    /// The leader of a partition as the cluster image names it.
    fn leader_of(&self, topic: &str, index: i32) -> Option<NodeId> {
        let image = self.image();
        let topic = image.topic(topic)?;
        let partition = topic.partitions.iter().find(|p| p.partition == index)?;
        partition.leader
    }

    /// A peer asks this broker, as the leader of their partitions, to write markers.
    pub fn write_markers_for_peer(
        &mut self,
        now: Millis,
        from: NodeId,
        request: u64,
        markers: Vec<MarkerEntry>,
    ) {
        let entries = markers.into_iter().map(|m| (m, None, None)).collect();
        self.transactions.markers.asked.push(AskedMarkers {
            from,
            request,
            deadline: Millis(now.0 + MARKER_COMMIT_TIMEOUT_MS),
            entries,
        });
        self.advance_asked_markers(now);
    }

    /// The answer of the leader this coordinator asked for markers.
    pub fn markers_written_by_peer(
        &mut self,
        now: Millis,
        request: u64,
        results: Vec<(String, i32, i16)>,
    ) {
        let mut retry = false;
        for progress in self.transactions.markers.ours.values_mut() {
            let mut finished = Vec::new();
            for (key, state) in &mut progress.remaining {
                if !matches!(*state, PartitionMarker::Remote(asked, _) if asked == request) {
                    continue;
                }
                let code = results
                    .iter()
                    .find(|(t, p, _)| *t == key.0 && *p == key.1)
                    .map_or(ErrorCode::UnknownServerError, |r| ErrorCode::from_code(r.2));
                if code == ErrorCode::None {
                    // Committed at its leader.
                    finished.push(key.clone());
                } else {
                    *state = PartitionMarker::Pending;
                    retry = true;
                }
            }
            for key in finished {
                progress.remaining.remove(&key);
            }
        }
        if retry {
            let markers = &mut self.transactions.markers;
            markers.next_retry = Some(Millis(now.0 + MARKER_RETRY_MS));
        }
        self.advance_markers(now);
    }

    /// Writes and checks the markers peers asked for; answers each request once all its
    /// markers are committed or failed (or its time is up).
    fn advance_asked_markers(&mut self, now: Millis) {
        if self.transactions.markers.asked.is_empty() {
            return;
        }
        let mut asked = std::mem::take(&mut self.transactions.markers.asked);
        for request in &mut asked {
            for (entry, written, result) in &mut request.entries {
                if result.is_some() {
                    continue;
                }
                let marker = ControlMarker {
                    producer_id: entry.producer_id,
                    producer_epoch: entry.producer_epoch,
                    control_type: entry.control,
                    coordinator_epoch: entry.coordinator_epoch,
                    timestamp: now.0,
                    token: entry.token,
                };
                let (topic, index) = (entry.topic.clone(), entry.partition);
                match self.marker_step(now, &topic, index, &marker, *written) {
                    MarkerStep::Committed => *result = Some(ErrorCode::None),
                    MarkerStep::Waiting(epoch, offset) => *written = Some((epoch, offset)),
                    MarkerStep::NotLeader => *result = Some(ErrorCode::NotLeaderOrFollower),
                    MarkerStep::Failed(code) => *result = Some(code),
                }
                if result.is_none() && request.deadline <= now {
                    *result = Some(ErrorCode::RequestTimedOut);
                }
            }
        }
        let (done, waiting): (Vec<AskedMarkers>, Vec<AskedMarkers>) = asked
            .into_iter()
            .partition(|r| r.entries.iter().all(|(_, _, result)| result.is_some()));
        let markers = &mut self.transactions.markers;
        markers.asked = waiting;
        for request in done {
            let results = request
                .entries
                .into_iter()
                .map(|(entry, _, result)| {
                    let code = result.expect("every result is known");
                    (entry.topic, entry.partition, code.code())
                })
                .collect();
            let message = MarkerMessage::Written {
                request: request.request,
                results,
            };
            markers.outbox.push((request.from, message));
        }
    }

    /// Drains the marker messages for peers.
    pub fn take_marker_messages(&mut self) -> Vec<(NodeId, MarkerMessage)> {
        std::mem::take(&mut self.transactions.markers.outbox)
    }
}

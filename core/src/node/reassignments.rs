//! AlterPartitionReassignments on a cluster node: the partitions named are resolved to
//! topic ids here, asked of the controller (which starts, replaces or cancels each
//! reassignment, proposes the records and answers each partition's outcome), and the
//! request is parked until this node's image shows each change — so a
//! ListPartitionReassignments here right after lists it — or the request's `timeout_ms` ran
//! out (`REQUEST_TIMED_OUT`). The reassignment itself goes on after the answer: it completes
//! once the new replicas are in sync (`cluster/controller/reassign.rs`).

use std::collections::BTreeMap;

use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, ResponseKind};

use super::messages::PeerMessage;
use super::ClusterNode;
use crate::broker::{reassignment_response, ParkedId, ReassignmentAnswer, Reply, StorageProvider};
use crate::cluster::{check_target, Reassigned, Reassignment};
use crate::driver::Completed;
use crate::error::ErrorCode;
use crate::types::{Millis, NodeId};

/// A client's AlterPartitionReassignments waiting for the controller and the metadata log.
pub(super) struct ParkedReassignment {
    /// Answers known here (unknown partitions), in the request's order.
    answered: Vec<ReassignmentAnswer>,
    /// Topic names by id, for the controller's answers.
    names: BTreeMap<uuid::Uuid, String>,
    /// The partitions asked of the controller, with the target asked (`None`: cancel).
    asked: Vec<(uuid::Uuid, i32, Option<Vec<NodeId>>)>,
    /// The controller's answer, once it came.
    results: Option<Vec<Reassigned>>,
    /// What was asked of the controller, and the node it was sent to (asked again of a new
    /// controller until answered).
    ask: (PeerMessage, Option<(NodeId, u64)>),
    deadline: Millis,
}

impl<P: StorageProvider> ClusterNode<P> {
    /// A client's AlterPartitionReassignments (see the module doc).
    pub(super) fn alter_reassignments(
        &mut self,
        now: Millis,
        request: AlterPartitionReassignmentsRequest,
    ) -> Reply {
        let mut answered = Vec::new();
        let mut names = BTreeMap::new();
        let mut partitions = Vec::new();
        for topic in &request.topics {
            let name = topic.name.0.to_string();
            let image = self.image().topic(&name);
            for wanted in &topic.partitions {
                let index = wanted.partition_index;
                match image {
                    Some(t) if (0..t.partitions.len() as i32).contains(&index) => {
                        let target: Option<Vec<NodeId>> = (wanted.replicas.as_ref())
                            .map(|r| r.iter().map(|b| NodeId(b.0)).collect());
                        // Checked here too: a target travels to the controller only when
                        // it names distinct registered brokers (so it stays small).
                        let checked = (target.as_deref()).map(|t| check_target(self.image(), t));
                        if let Some(Err((code, message))) = checked {
                            answered.push((name.clone(), index, code.code(), Some(message)));
                            continue;
                        }
                        names.insert(t.id, name.clone());
                        partitions.push(Reassignment {
                            topic_id: t.id,
                            partition: index,
                            target,
                        });
                    }
                    _ => {
                        let code = ErrorCode::UnknownTopicOrPartition.code();
                        let message = format!("no partition {index} of topic {name}");
                        answered.push((name.clone(), index, code, Some(message)));
                    }
                }
            }
        }
        if partitions.is_empty() {
            let response = reassignment_response(answered);
            return Reply::Response(Box::new(ResponseKind::AlterPartitionReassignments(
                response,
            )));
        }
        let number = self.next_parked_number();
        let asked = partitions
            .iter()
            .map(|p| (p.topic_id, p.partition, p.target.clone()))
            .collect();
        let message = PeerMessage::Reassign {
            request: number,
            partitions,
        };
        let deadline = Millis(now.0 + i64::from(request.timeout_ms.max(0)));
        let parked = ParkedReassignment {
            answered,
            names,
            asked,
            results: None,
            ask: (message.clone(), self.leading()),
            deadline,
        };
        let id = ParkedId::Reassignment(number);
        self.reassignments.insert(id, parked);
        let _ = self.send_to_controller(now, message);
        self.complete_reassignments(now);
        Reply::Parked(id)
    }

    /// The controller's answer to this node's AlterPartitionReassignments `request`.
    pub(super) fn take_reassignment_results(&mut self, request: u64, results: Vec<Reassigned>) {
        let id = ParkedId::Reassignment(request);
        if let Some(parked) = self.reassignments.get_mut(&id) {
            // The first answer stands (one asked again may answer otherwise).
            parked.results.get_or_insert(results);
        }
    }

    /// The earliest deadline of a parked AlterPartitionReassignments.
    pub(super) fn next_reassignment_deadline(&self) -> Option<Millis> {
        self.reassignments.values().map(|r| r.deadline).min()
    }

    /// Answers the parked AlterPartitionReassignments whose changes this node's image
    /// shows, or that are out of time.
    pub(super) fn complete_reassignments(&mut self, now: Millis) {
        let parked = std::mem::take(&mut self.reassignments);
        let mut asks = Vec::new();
        for (id, mut reassignment) in parked {
            if reassignment.results.is_none() {
                asks.extend(self.ask_again_if_moved(&mut reassignment.ask));
            }
            // Shown when the partition is past the epoch the controller wrote and as asked:
            // moving to (or at) the target, or not moving for a cancel. A proposal lost with
            // the controller's leadership is never taken for done by a later change.
            let asked = &reassignment.asked;
            let applied = |r: &Reassigned| match &r.outcome {
                Ok(epoch) => {
                    let target = (asked.iter())
                        .find(|(t, p, _)| (*t, *p) == (r.topic_id, r.partition))
                        .and_then(|(_, _, target)| target.as_ref());
                    (self.image().partition(r.topic_id, r.partition)).is_none_or(|p| {
                        p.partition_epoch >= *epoch
                            && target.map_or(!p.reassigning(), |t| p.target_replicas() == *t)
                    })
                }
                Err(_) => true,
            };
            let results = reassignment.results.as_ref();
            let done = results.is_some_and(|r| r.iter().all(applied));
            if !done && reassignment.deadline > now {
                self.reassignments.insert(id, reassignment);
                continue;
            }
            let ParkedReassignment {
                mut answered,
                names,
                asked,
                results,
                ..
            } = reassignment;
            let name_of = |topic_id| names.get(&topic_id).cloned().unwrap_or_default();
            match results {
                Some(results) => {
                    for r in results {
                        let (code, message) = match r.outcome {
                            Ok(_) if !done => {
                                let message = "started, not yet applied here".to_string();
                                (ErrorCode::RequestTimedOut, Some(message))
                            }
                            Ok(_) => (ErrorCode::None, None),
                            Err((code, message)) => (code, Some(message)),
                        };
                        answered.push((name_of(r.topic_id), r.partition, code.code(), message));
                    }
                }
                None => {
                    for (topic_id, partition, _) in asked {
                        let code = ErrorCode::RequestTimedOut.code();
                        let message = "the controller did not answer in time".to_string();
                        answered.push((name_of(topic_id), partition, code, Some(message)));
                    }
                }
            }
            let response = reassignment_response(answered);
            let response = ResponseKind::AlterPartitionReassignments(response);
            self.completed
                .push(Completed::Response(id, Box::new(response)));
        }
        for ask in asks {
            let _ = self.send_to_controller(now, ask);
        }
    }
}

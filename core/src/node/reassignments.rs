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
    /// The controller's answer for each partition, once it came (the first one stands: a
    /// request asked again may be answered twice).
    results: BTreeMap<(uuid::Uuid, i32), Reassigned>,
    /// Partitions the controller refused as asked from an older view of their replicas, with
    /// the partition epoch that view had: asked again once this node's image is past it.
    stale: BTreeMap<(uuid::Uuid, i32), i32>,
    /// What was last asked of the controller, and the node it was sent to (asked again of a
    /// new controller until answered).
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
                            seen_epoch: t.partitions[index as usize].partition_epoch,
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
            results: BTreeMap::new(),
            stale: BTreeMap::new(),
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
        let Some(parked) = self.reassignments.get_mut(&id) else {
            return;
        };
        let PeerMessage::Reassign { partitions, .. } = &parked.ask.0 else {
            unreachable!("a parked reassignment asks with Reassign");
        };
        for result in results {
            let key = (result.topic_id, result.partition);
            let stale = matches!(&result.outcome, Err((ErrorCode::StaleControllerEpoch, _)));
            let asked = partitions.iter().find(|p| (p.topic_id, p.partition) == key);
            match asked {
                // Refused for the view it was last asked from: asked again from a newer one.
                Some(asked) if stale && !parked.results.contains_key(&key) => {
                    parked.stale.insert(key, asked.seen_epoch);
                }
                _ if stale => {}
                _ => {
                    parked.stale.remove(&key);
                    parked.results.entry(key).or_insert(result);
                }
            }
        }
    }

    /// The partitions of `parked` the controller refused as asked from an older view, asked
    /// again once this node's image shows each of them changed since.
    fn ask_again_if_stale(&self, parked: &mut ParkedReassignment) -> Option<PeerMessage> {
        let newer = |(&(topic_id, partition), &seen): (&(uuid::Uuid, i32), &i32)| {
            (self.image().partition(topic_id, partition)).is_none_or(|p| p.partition_epoch > seen)
        };
        if parked.stale.is_empty() || !parked.stale.iter().all(newer) {
            return None;
        }
        let PeerMessage::Reassign { request, .. } = parked.ask.0 else {
            unreachable!("a parked reassignment asks with Reassign");
        };
        let partitions = (std::mem::take(&mut parked.stale).into_keys())
            .map(|(topic_id, partition)| {
                let target = (parked.asked.iter())
                    .find(|(t, p, _)| (*t, *p) == (topic_id, partition))
                    .and_then(|(_, _, target)| target.clone());
                let seen_epoch =
                    (self.image().partition(topic_id, partition)).map_or(0, |p| p.partition_epoch);
                Reassignment {
                    topic_id,
                    partition,
                    target,
                    seen_epoch,
                }
            })
            .collect();
        let message = PeerMessage::Reassign {
            request,
            partitions,
        };
        parked.ask = (message.clone(), self.leading());
        Some(message)
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
            let answered = |r: &ParkedReassignment| {
                (r.asked.iter()).all(|(t, p, _)| r.results.contains_key(&(*t, *p)))
            };
            if !answered(&reassignment) {
                match reassignment.stale.is_empty() {
                    true => asks.extend(self.ask_again_if_moved(&mut reassignment.ask)),
                    false => asks.extend(self.ask_again_if_stale(&mut reassignment)),
                }
            }
            // Shown when the partition is past the epoch the controller wrote and as asked:
            // moving to (or at) the target, or not moving for a cancel. A proposal lost with
            // the controller's leadership is never taken for done by a later change.
            let applied =
                |(topic_id, partition, target): &(uuid::Uuid, i32, Option<Vec<NodeId>>)| {
                    match (reassignment.results.get(&(*topic_id, *partition))).map(|r| &r.outcome) {
                        Some(Ok(epoch)) => (self.image().partition(*topic_id, *partition))
                            .is_none_or(|p| {
                                p.partition_epoch >= *epoch
                                    && (target.as_ref())
                                        .map_or(!p.reassigning(), |t| p.target_replicas() == *t)
                            }),
                        Some(Err(_)) => true,
                        None => false,
                    }
                };
            let done = reassignment.asked.iter().all(applied);
            if !done && reassignment.deadline > now {
                self.reassignments.insert(id, reassignment);
                continue;
            }
            let ParkedReassignment {
                mut answered,
                names,
                asked,
                mut results,
                stale,
                ..
            } = reassignment;
            let name_of = |topic_id| names.get(&topic_id).cloned().unwrap_or_default();
            for (topic_id, partition, _) in asked {
                let (code, message) = match results.remove(&(topic_id, partition)) {
                    Some(r) => match r.outcome {
                        Ok(_) if !done => {
                            let message = "started, not yet applied here".to_string();
                            (ErrorCode::RequestTimedOut, Some(message))
                        }
                        Ok(_) => (ErrorCode::None, None),
                        Err((code, message)) => (code, Some(message)),
                    },
                    None if stale.contains_key(&(topic_id, partition)) => {
                        let message = "not applied: the partition's replicas changed while \
                                       this was asked; ask again"
                            .to_string();
                        (ErrorCode::RequestTimedOut, Some(message))
                    }
                    None => {
                        let message = "the controller did not answer in time".to_string();
                        (ErrorCode::RequestTimedOut, Some(message))
                    }
                };
                answered.push((name_of(topic_id), partition, code.code(), message));
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

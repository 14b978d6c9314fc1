//! ElectLeaders on a cluster node: the partitions named are resolved to topic ids here,
//! asked of the controller (which elects, proposes the records and answers each
//! partition's outcome), and the request is parked until this node's image shows every new
//! leader epoch — so a client that got its answer finds the new leaders at this node — or
//! the request's `timeout_ms` ran out (`REQUEST_TIMED_OUT`).

use std::collections::BTreeMap;

use kafka_protocol::messages::{ElectLeadersRequest, ResponseKind};

use super::messages::PeerMessage;
use super::ClusterNode;
use crate::broker::{election_response, ElectionAnswer, ParkedId, Reply, StorageProvider};
use crate::cluster::{Elected, Election};
use crate::driver::Completed;
use crate::error::ErrorCode;
use crate::types::{Millis, NodeId};

/// A client's ElectLeaders waiting for the controller and the metadata log.
pub(super) struct ParkedElection {
    /// Answers known here (unknown partitions), in the request's order.
    answered: Vec<ElectionAnswer>,
    /// Topic names by id, for the controller's answers.
    names: BTreeMap<uuid::Uuid, String>,
    /// The partitions asked of the controller (`None`: every partition).
    asked: Option<Vec<(uuid::Uuid, i32)>>,
    /// The request's version (v0 has no top-level error code).
    version: i16,
    /// The controller's answer, once it came.
    results: Option<Vec<Elected>>,
    /// What was asked of the controller, and the node it was sent to (`None`: no
    /// controller was known): asked again of a new controller until answered.
    ask: (PeerMessage, Option<(NodeId, u64)>),
    deadline: Millis,
}

impl<P: StorageProvider> ClusterNode<P> {
    /// A client's ElectLeaders (see the module doc).
    pub(super) fn elect_leaders(
        &mut self,
        now: Millis,
        request: ElectLeadersRequest,
        version: i16,
    ) -> Reply {
        let election = match request.election_type {
            0 => Election::Preferred,
            1 => Election::Unclean,
            other => {
                let message = format!("election type {other} is not 0 (preferred) or 1 (unclean)");
                let answers = self.each_named(&request, ErrorCode::InvalidRequest, &message);
                let code = if version >= 1 {
                    ErrorCode::InvalidRequest.code()
                } else {
                    0
                };
                let response = election_response(answers, code);
                return Reply::Response(Box::new(ResponseKind::ElectLeaders(response)));
            }
        };
        let mut answered = Vec::new();
        let mut names = BTreeMap::new();
        let partitions = request.topic_partitions.as_ref().map(|topics| {
            let mut known = Vec::new();
            for topic in topics {
                let name = topic.topic.0.to_string();
                let image = self.image().topic(&name);
                for &partition in &topic.partitions {
                    match image {
                        Some(t) if (0..t.partitions.len() as i32).contains(&partition) => {
                            names.insert(t.id, name.clone());
                            known.push((t.id, partition));
                        }
                        _ => {
                            let code = ErrorCode::UnknownTopicOrPartition.code();
                            let message = format!("no partition {partition} of topic {name}");
                            answered.push((name.clone(), partition, code, Some(message)));
                        }
                    }
                }
            }
            known
        });
        if partitions.is_none() {
            names = (self.image().topics().values())
                .map(|t| (t.id, t.name.clone()))
                .collect();
        }
        if partitions.as_ref().is_some_and(Vec::is_empty) {
            let response = election_response(answered, 0);
            return Reply::Response(Box::new(ResponseKind::ElectLeaders(response)));
        }
        let number = self.next_parked_number();
        let message = PeerMessage::ElectLeaders {
            request: number,
            election,
            partitions: partitions.clone(),
        };
        let deadline = Millis(now.0 + i64::from(request.timeout_ms.max(0)));
        let sent_to = self.leading();
        let parked = ParkedElection {
            answered,
            names,
            asked: partitions,
            version,
            results: None,
            ask: (message.clone(), sent_to),
            deadline,
        };
        let id = ParkedId::Election(number);
        self.elections.insert(id, parked);
        let _ = self.send_to_controller(now, message);
        self.complete_elections(now);
        Reply::Parked(id)
    }

    /// Every partition the request names, answered with `code`.
    fn each_named(
        &self,
        request: &ElectLeadersRequest,
        code: ErrorCode,
        message: &str,
    ) -> Vec<ElectionAnswer> {
        let topics = request.topic_partitions.iter().flatten();
        topics
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |&p| (t.topic.0.to_string(), p))
            })
            .map(|(name, p)| (name, p, code.code(), Some(message.to_string())))
            .collect()
    }

    /// The controller's answer to this node's ElectLeaders `request`.
    pub(super) fn take_election_results(&mut self, request: u64, results: Vec<Elected>) {
        if let Some(parked) = self.elections.get_mut(&ParkedId::Election(request)) {
            // The first answer stands (one asked again may answer "not needed").
            parked.results.get_or_insert(results);
        }
    }

    /// The earliest deadline of a parked ElectLeaders.
    pub(super) fn next_election_deadline(&self) -> Option<Millis> {
        self.elections.values().map(|e| e.deadline).min()
    }

    /// Answers the parked ElectLeaders whose new leaders this node's image shows, or that
    /// are out of time.
    pub(super) fn complete_elections(&mut self, now: Millis) {
        let parked = std::mem::take(&mut self.elections);
        let mut asks = Vec::new();
        for (id, mut election) in parked {
            if election.results.is_none() {
                asks.extend(self.ask_again_if_moved(&mut election.ask));
            }
            let applied = |e: &Elected| match &e.outcome {
                Ok(epoch) => self
                    .image()
                    .partition(e.topic_id, e.partition)
                    .is_none_or(|p| p.leader_epoch >= *epoch),
                Err(_) => true,
            };
            let done = election
                .results
                .as_ref()
                .is_some_and(|r| r.iter().all(applied));
            if !done && election.deadline > now {
                self.elections.insert(id, election);
                continue;
            }
            let ParkedElection {
                mut answered,
                names,
                asked,
                results,
                version,
                ..
            } = election;
            let mut error_code = 0;
            match results {
                Some(results) => {
                    for e in results {
                        // A topic created after the request was asked is named from the image.
                        let name = (names.get(&e.topic_id).cloned())
                            .or_else(|| Some(self.image().topic_by_id(e.topic_id)?.name.clone()))
                            .unwrap_or_default();
                        let (code, message) = match e.outcome {
                            Ok(_) if !done => {
                                let code = ErrorCode::RequestTimedOut;
                                (code, Some("elected, not yet applied here".to_string()))
                            }
                            Ok(_) => (ErrorCode::None, None),
                            Err((code, message)) => (code, Some(message)),
                        };
                        answered.push((name, e.partition, code.code(), message));
                    }
                }
                None => match asked {
                    Some(asked) => {
                        for (topic_id, partition) in asked {
                            let name = names.get(&topic_id).cloned().unwrap_or_default();
                            let code = ErrorCode::RequestTimedOut.code();
                            let message = "the controller did not answer in time".to_string();
                            answered.push((name, partition, code, Some(message)));
                        }
                    }
                    // v0 has no top-level code: an empty answer is all it can say.
                    None if version >= 1 => error_code = ErrorCode::RequestTimedOut.code(),
                    None => {}
                },
            }
            let response = ResponseKind::ElectLeaders(election_response(answered, error_code));
            self.completed
                .push(Completed::Response(id, Box::new(response)));
        }
        for ask in asks {
            let _ = self.send_to_controller(now, ask);
        }
    }
}

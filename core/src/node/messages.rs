//! The messages cluster nodes send each other, and their encoding.
//!
//! Encoding: a type byte, then the fields big-endian; byte strings and lists carry a `u32`
//! length. Metadata records inside use their own encoding ([`MetadataRecord::encode`]).
//! Damaged bytes decode to an error, never a panic.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut};

use crate::broker::{MarkerEntry, MarkerMessage};
use crate::cluster::records::{
    get_i16, get_i32, get_i64, get_nodes, get_u128, get_u64, get_u8, need, put_nodes,
};
use crate::cluster::{
    BrokerRegistration, Elected, Election, IsrChange, MetadataRecord, Reassigned, Reassignment,
    RecordDecodeError,
};
use crate::error::ErrorCode;
use crate::quorum::{Committed, QuorumState};
use crate::record::ControlType;
use crate::types::{LeaderEpoch, NodeId, ProducerEpoch, ProducerId};

/// One message between two nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMessage {
    /// A metadata-quorum (raft) message.
    Raft(Vec<u8>),
    /// To the controller: a broker (re)registers; `lost_unsynced` when its machine lost power
    /// since it last ran.
    Register(BrokerRegistration, bool),
    /// To the controller: a broker is alive; `caught_up` once it applied its registration,
    /// `shutting_down` while it stops.
    Heartbeat {
        /// The broker.
        node: NodeId,
        /// Its incarnation.
        incarnation: u64,
        /// Whether it applied the metadata log up to its registration.
        caught_up: bool,
        /// Whether it is stopping (a controlled shutdown): the controller moves its
        /// leadership away and keeps it fenced.
        shutting_down: bool,
    },
    /// To the controller: a leader's ISR change (AlterPartition).
    AlterPartition(IsrChange),
    /// From the controller: the ISR change was refused; the leader may ask again.
    AlterPartitionRefused {
        /// The topic's id.
        topic_id: uuid::Uuid,
        /// The partition.
        partition: i32,
    },
    /// To the controller: create a topic.
    CreateTopic {
        /// The topic's name.
        name: String,
        /// Its partition count.
        partitions: i32,
        /// Its replication factor.
        replication_factor: i16,
        /// Config overrides.
        configs: BTreeMap<String, String>,
        /// Each partition's replicas, in order (empty: the controller spreads them).
        assignments: Vec<Vec<NodeId>>,
    },
    /// To the controller: delete a topic.
    DeleteTopic {
        /// The topic's name.
        name: String,
    },
    /// To the controller: grow a topic to `count` partitions.
    CreatePartitions {
        /// The topic's name.
        name: String,
        /// The new partition count.
        count: i32,
        /// The new partitions' replicas, in order (empty: the controller spreads them).
        assignments: Vec<Vec<NodeId>>,
    },
    /// To the controller: replace a topic's config overrides (checked by the asker).
    AlterTopicConfigs {
        /// The topic's name.
        name: String,
        /// The whole new set of overrides.
        configs: BTreeMap<String, String>,
    },
    /// To the controller: a stopped broker that holds no replica leaves the cluster.
    UnregisterBroker {
        /// The broker.
        node: NodeId,
    },
    /// To the controller: change a broker's dynamic configs (-1: every broker's default;
    /// checked by the asker). Only the keys named change, so changes of other keys asked at
    /// other nodes meanwhile stay.
    AlterBrokerConfigs {
        /// The broker, or -1.
        node: i32,
        /// Each key set to a value, or deleted (`None`).
        changes: BTreeMap<String, Option<String>>,
    },
    /// From the controller: the outcome of a [`PeerMessage::CreateTopic`] or
    /// [`PeerMessage::DeleteTopic`] (once its records are proposed; the asker waits to see
    /// them applied).
    TopicChanged {
        /// What was asked.
        change: TopicChange,
        /// The topic's name.
        name: String,
        /// A Kafka error code (0: created).
        error_code: i16,
        /// Why it was refused.
        message: String,
    },
    /// To the controller: ElectLeaders for these partitions (`None`: every partition).
    ElectLeaders {
        /// Matches the answer to the request.
        request: u64,
        /// Which leader is wanted.
        election: Election,
        /// (topic id, partition) each.
        partitions: Option<Vec<(uuid::Uuid, i32)>>,
    },
    /// From the controller: the outcome of a [`PeerMessage::ElectLeaders`] (its records
    /// proposed; the asker waits to see them applied).
    LeadersElected {
        /// The request answered.
        request: u64,
        /// One per partition.
        results: Vec<Elected>,
    },
    /// To the quorum's leader: describe the quorum (DescribeQuorum).
    DescribeQuorum {
        /// Matches the answer to the request.
        request: u64,
    },
    /// From the quorum's leader: its view (`None`: it no longer leads).
    QuorumDescribed {
        /// The request answered.
        request: u64,
        /// Leader, term, commit index and each voter's log end.
        state: Option<QuorumState>,
    },
    /// A follower's Fetch (a Kafka Fetch request body at [`crate::broker::REPLICA_FETCH_VERSION`]).
    Fetch {
        /// Matches the answer to the request.
        correlation: u64,
        /// The encoded request body.
        request: Vec<u8>,
    },
    /// The leader's answer to a [`PeerMessage::Fetch`]: a whole Kafka Fetch response
    /// (size prefix and header included).
    FetchResponse {
        /// The request's correlation.
        correlation: u64,
        /// The encoded response.
        response: Vec<u8>,
    },
    /// To the controller: start, replace or cancel reassignments
    /// (AlterPartitionReassignments).
    Reassign {
        /// Matches the answer to the request.
        request: u64,
        /// One per partition.
        partitions: Vec<Reassignment>,
    },
    /// From the controller: the outcome of a [`PeerMessage::Reassign`] (its records
    /// proposed; the asker waits to see them applied).
    Reassigned {
        /// The request answered.
        request: u64,
        /// One per partition.
        results: Vec<Reassigned>,
    },
    /// From a broker that is not a voter (an observer), to a voter: the committed metadata
    /// log after index `after`, held until there is some (or a moment passed).
    MetadataFetch {
        /// Matches the answer to the request.
        correlation: u64,
        /// The last log index the observer applied.
        after: u64,
    },
    /// A voter's answer to a [`PeerMessage::MetadataFetch`].
    MetadataEntries {
        /// The request's correlation.
        correlation: u64,
        /// The quorum leader the voter knows of.
        leader: Option<NodeId>,
        /// The voter's term.
        term: u64,
        /// The last log index the answer covers (its last entries may be empty ones, not
        /// sent).
        through: u64,
        /// The last index the voter has applied: the observer has caught up once it holds
        /// that much.
        latest: u64,
        /// The committed entries after `after` up to `through`, in log order; a snapshot
        /// first when the voter no longer holds the entries right after `after`.
        committed: Vec<Committed>,
    },
    /// Between a transaction coordinator and a partition leader: markers to write, or how
    /// they ended.
    Markers(MarkerMessage),
}

/// A change to a topic asked of the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TopicChange {
    /// CreateTopic.
    Create,
    /// DeleteTopic.
    Delete,
    /// CreatePartitions.
    AddPartitions,
    /// AlterConfigs or IncrementalAlterConfigs of a topic.
    Configs,
    /// IncrementalAlterConfigs of a broker's dynamic configs.
    BrokerConfigs,
    /// UnregisterBroker.
    Unregister,
}

/// What a metadata-log entry holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEntry {
    /// Records of one controller decision, applied together.
    Records(Vec<MetadataRecord>),
    /// A new quorum leader's first entry: once applied, its image is complete and its
    /// controller may decide.
    LeaderMarker {
        /// The leader's term.
        term: u64,
    },
}

/// Bytes that are not a valid message or entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("peer message: {0}")]
pub struct MessageDecodeError(pub String);

impl From<RecordDecodeError> for MessageDecodeError {
    fn from(err: RecordDecodeError) -> MessageDecodeError {
        MessageDecodeError(err.0)
    }
}

impl PeerMessage {
    /// Whether the message asks the controller for a decision a client waits on: the
    /// quorum leader holds it until its controller is active instead of dropping it.
    pub fn waits_for_controller(&self) -> bool {
        matches!(
            self,
            PeerMessage::CreateTopic { .. }
                | PeerMessage::DeleteTopic { .. }
                | PeerMessage::CreatePartitions { .. }
                | PeerMessage::AlterTopicConfigs { .. }
                | PeerMessage::AlterBrokerConfigs { .. }
                | PeerMessage::UnregisterBroker { .. }
                | PeerMessage::ElectLeaders { .. }
                | PeerMessage::Reassign { .. }
        )
    }

    /// The message's encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            PeerMessage::Raft(bytes) => {
                out.put_u8(1);
                put_bytes(&mut out, bytes);
            }
            PeerMessage::Register(registration, lost_unsynced) => {
                out.put_u8(2);
                let record = MetadataRecord::RegisterBroker(registration.clone());
                put_bytes(&mut out, &record.encode());
                out.put_u8(u8::from(*lost_unsynced));
            }
            PeerMessage::Heartbeat {
                node,
                incarnation,
                caught_up,
                shutting_down,
            } => {
                out.put_u8(3);
                out.put_i32(node.0);
                out.put_u64(*incarnation);
                out.put_u8(u8::from(*caught_up) | (u8::from(*shutting_down) << 1));
            }
            PeerMessage::AlterPartition(change) => {
                out.put_u8(4);
                out.put_i32(change.leader.0);
                out.put_u128(change.topic_id.as_u128());
                out.put_i32(change.partition);
                out.put_i32(change.leader_epoch.0);
                out.put_i32(change.partition_epoch);
                out.put_u32(change.isr.len() as u32);
                for node in &change.isr {
                    out.put_i32(node.0);
                }
            }
            PeerMessage::AlterPartitionRefused {
                topic_id,
                partition,
            } => {
                out.put_u8(5);
                out.put_u128(topic_id.as_u128());
                out.put_i32(*partition);
            }
            PeerMessage::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
                assignments,
            } => {
                out.put_u8(6);
                put_bytes(&mut out, name.as_bytes());
                out.put_i32(*partitions);
                out.put_i16(*replication_factor);
                put_string_map(&mut out, configs);
                put_assignments(&mut out, assignments);
            }
            PeerMessage::TopicChanged {
                change,
                name,
                error_code,
                message,
            } => {
                out.put_u8(7);
                out.put_u8(match change {
                    TopicChange::Create => 0,
                    TopicChange::Delete => 1,
                    TopicChange::AddPartitions => 2,
                    TopicChange::Configs => 3,
                    TopicChange::BrokerConfigs => 4,
                    TopicChange::Unregister => 5,
                });
                put_bytes(&mut out, name.as_bytes());
                out.put_i16(*error_code);
                put_bytes(&mut out, message.as_bytes());
            }
            PeerMessage::Fetch {
                correlation,
                request,
            } => {
                out.put_u8(8);
                out.put_u64(*correlation);
                put_bytes(&mut out, request);
            }
            PeerMessage::FetchResponse {
                correlation,
                response,
            } => {
                out.put_u8(9);
                out.put_u64(*correlation);
                put_bytes(&mut out, response);
            }
            PeerMessage::DeleteTopic { name } => {
                out.put_u8(10);
                put_bytes(&mut out, name.as_bytes());
            }
            PeerMessage::AlterTopicConfigs { name, configs } => {
                out.put_u8(12);
                put_bytes(&mut out, name.as_bytes());
                put_string_map(&mut out, configs);
            }
            PeerMessage::ElectLeaders {
                request,
                election,
                partitions,
            } => {
                out.put_u8(13);
                out.put_u64(*request);
                out.put_u8(match election {
                    Election::Preferred => 0,
                    Election::Unclean => 1,
                });
                match partitions {
                    None => out.put_u8(0),
                    Some(partitions) => {
                        out.put_u8(1);
                        out.put_u32(partitions.len() as u32);
                        for (topic_id, partition) in partitions {
                            out.put_u128(topic_id.as_u128());
                            out.put_i32(*partition);
                        }
                    }
                }
            }
            PeerMessage::LeadersElected { request, results } => {
                out.put_u8(14);
                out.put_u64(*request);
                let outcomes = results.iter().map(|r| {
                    let outcome = r.outcome.as_ref().map(|epoch| epoch.0);
                    (r.topic_id, r.partition, outcome)
                });
                put_outcomes(&mut out, results.len(), outcomes);
            }
            PeerMessage::DescribeQuorum { request } => {
                out.put_u8(15);
                out.put_u64(*request);
            }
            PeerMessage::QuorumDescribed { request, state } => {
                out.put_u8(16);
                out.put_u64(*request);
                match state {
                    None => out.put_u8(0),
                    Some(state) => {
                        out.put_u8(1);
                        out.put_i32(state.leader.0);
                        out.put_u64(state.term);
                        out.put_u64(state.committed);
                        for replicas in [&state.voters, &state.observers] {
                            out.put_u32(replicas.len() as u32);
                            for (node, end) in replicas {
                                out.put_i32(node.0);
                                out.put_u64(*end);
                            }
                        }
                    }
                }
            }
            PeerMessage::UnregisterBroker { node } => {
                out.put_u8(22);
                out.put_i32(node.0);
            }
            PeerMessage::AlterBrokerConfigs { node, changes } => {
                out.put_u8(21);
                out.put_i32(*node);
                out.put_u32(changes.len() as u32);
                for (key, value) in changes {
                    put_bytes(&mut out, key.as_bytes());
                    match value {
                        None => out.put_u8(0),
                        Some(value) => {
                            out.put_u8(1);
                            put_bytes(&mut out, value.as_bytes());
                        }
                    }
                }
            }
            PeerMessage::Reassign {
                request,
                partitions,
            } => {
                out.put_u8(19);
                out.put_u64(*request);
                out.put_u32(partitions.len() as u32);
                for want in partitions {
                    out.put_u128(want.topic_id.as_u128());
                    out.put_i32(want.partition);
                    out.put_i32(want.seen_epoch);
                    match &want.target {
                        None => out.put_u8(0),
                        Some(target) => {
                            out.put_u8(1);
                            put_nodes(&mut out, target);
                        }
                    }
                }
            }
            PeerMessage::Reassigned { request, results } => {
                out.put_u8(20);
                out.put_u64(*request);
                let outcomes = (results.iter())
                    .map(|r| (r.topic_id, r.partition, r.outcome.as_ref().copied()));
                put_outcomes(&mut out, results.len(), outcomes);
            }
            PeerMessage::MetadataFetch { correlation, after } => {
                out.put_u8(17);
                out.put_u64(*correlation);
                out.put_u64(*after);
            }
            PeerMessage::MetadataEntries {
                correlation,
                leader,
                term,
                through,
                latest,
                committed,
            } => {
                out.put_u8(18);
                out.put_u64(*correlation);
                out.put_i32(leader.map_or(-1, |n| n.0));
                out.put_u64(*term);
                out.put_u64(*through);
                out.put_u64(*latest);
                out.put_u32(committed.len() as u32);
                for step in committed {
                    match step {
                        Committed::Entry { index, term, data } => {
                            out.put_u8(1);
                            out.put_u64(*index);
                            out.put_u64(*term);
                            put_bytes(&mut out, data);
                        }
                        Committed::Snapshot { index, data } => {
                            out.put_u8(2);
                            out.put_u64(*index);
                            put_bytes(&mut out, data);
                        }
                    }
                }
            }
            PeerMessage::CreatePartitions {
                name,
                count,
                assignments,
            } => {
                out.put_u8(11);
                put_bytes(&mut out, name.as_bytes());
                out.put_i32(*count);
                put_assignments(&mut out, assignments);
            }
            PeerMessage::Markers(MarkerMessage::Write { request, markers }) => {
                out.put_u8(23);
                out.put_u64(*request);
                out.put_u32(markers.len() as u32);
                for marker in markers {
                    put_bytes(&mut out, marker.topic.as_bytes());
                    out.put_i32(marker.partition);
                    out.put_i64(marker.producer_id.0);
                    out.put_i16(marker.producer_epoch.0);
                    out.put_u8(marker.control as u8);
                    out.put_i32(marker.coordinator_epoch);
                    out.put_i64(marker.token);
                }
            }
            PeerMessage::Markers(MarkerMessage::Written { request, results }) => {
                out.put_u8(24);
                out.put_u64(*request);
                out.put_u32(results.len() as u32);
                for (topic, partition, code) in results {
                    put_bytes(&mut out, topic.as_bytes());
                    out.put_i32(*partition);
                    out.put_i16(*code);
                }
            }
        }
        out
    }

    /// Decodes one message.
    pub fn decode(mut bytes: &[u8]) -> Result<PeerMessage, MessageDecodeError> {
        let input = &mut bytes;
        let message = match get_u8(input)? {
            1 => PeerMessage::Raft(get_bytes(input)?),
            2 => match MetadataRecord::decode(&get_bytes(input)?) {
                Ok(MetadataRecord::RegisterBroker(registration)) => {
                    PeerMessage::Register(registration, get_u8(input)? != 0)
                }
                _ => return Err(MessageDecodeError("bad registration".into())),
            },
            3 => {
                let node = NodeId(get_i32(input)?);
                let incarnation = get_u64(input)?;
                let flags = get_u8(input)?;
                PeerMessage::Heartbeat {
                    node,
                    incarnation,
                    caught_up: flags & 1 != 0,
                    shutting_down: flags & 2 != 0,
                }
            }
            4 => {
                let leader = NodeId(get_i32(input)?);
                let topic_id = uuid::Uuid::from_u128(get_u128(input)?);
                let partition = get_i32(input)?;
                let leader_epoch = LeaderEpoch(get_i32(input)?);
                let partition_epoch = get_i32(input)?;
                let count = get_len(input, 4)?;
                let isr = (0..count)
                    .map(|_| get_i32(input).map(NodeId))
                    .collect::<Result<_, RecordDecodeError>>()?;
                PeerMessage::AlterPartition(IsrChange {
                    leader,
                    topic_id,
                    partition,
                    leader_epoch,
                    partition_epoch,
                    isr,
                })
            }
            5 => PeerMessage::AlterPartitionRefused {
                topic_id: uuid::Uuid::from_u128(get_u128(input)?),
                partition: get_i32(input)?,
            },
            6 => {
                let name = get_string(input)?;
                let partitions = get_i32(input)?;
                let replication_factor = get_i16(input)?;
                let configs = get_string_map(input)?;
                let assignments = get_assignments(input)?;
                PeerMessage::CreateTopic {
                    name,
                    partitions,
                    replication_factor,
                    configs,
                    assignments,
                }
            }
            7 => PeerMessage::TopicChanged {
                change: match get_u8(input)? {
                    0 => TopicChange::Create,
                    1 => TopicChange::Delete,
                    2 => TopicChange::AddPartitions,
                    3 => TopicChange::Configs,
                    4 => TopicChange::BrokerConfigs,
                    5 => TopicChange::Unregister,
                    other => return Err(MessageDecodeError(format!("unknown change {other}"))),
                },
                name: get_string(input)?,
                error_code: get_i16(input)?,
                message: get_string(input)?,
            },
            8 => PeerMessage::Fetch {
                correlation: get_u64(input)?,
                request: get_bytes(input)?,
            },
            9 => PeerMessage::FetchResponse {
                correlation: get_u64(input)?,
                response: get_bytes(input)?,
            },
            12 => PeerMessage::AlterTopicConfigs {
                name: get_string(input)?,
                configs: get_string_map(input)?,
            },
            10 => PeerMessage::DeleteTopic {
                name: get_string(input)?,
            },
            11 => {
                let name = get_string(input)?;
                let count = get_i32(input)?;
                let assignments = get_assignments(input)?;
                PeerMessage::CreatePartitions {
                    name,
                    count,
                    assignments,
                }
            }
            13 => {
                let request = get_u64(input)?;
                let election = match get_u8(input)? {
                    0 => Election::Preferred,
                    1 => Election::Unclean,
                    other => return Err(MessageDecodeError(format!("unknown election {other}"))),
                };
                let partitions = match get_u8(input)? {
                    0 => None,
                    _ => {
                        let count = get_len(input, 20)?;
                        let list = (0..count)
                            .map(|_| Ok((uuid::Uuid::from_u128(get_u128(input)?), get_i32(input)?)))
                            .collect::<Result<_, RecordDecodeError>>()?;
                        Some(list)
                    }
                };
                PeerMessage::ElectLeaders {
                    request,
                    election,
                    partitions,
                }
            }
            14 => {
                let request = get_u64(input)?;
                let results = (get_outcomes(input)?.into_iter())
                    .map(|(topic_id, partition, outcome)| Elected {
                        topic_id,
                        partition,
                        outcome: outcome.map(LeaderEpoch),
                    })
                    .collect();
                PeerMessage::LeadersElected { request, results }
            }
            15 => PeerMessage::DescribeQuorum {
                request: get_u64(input)?,
            },
            16 => {
                let request = get_u64(input)?;
                let state = match get_u8(input)? {
                    0 => None,
                    _ => {
                        let leader = NodeId(get_i32(input)?);
                        let term = get_u64(input)?;
                        let committed = get_u64(input)?;
                        let mut replicas = || -> Result<Vec<(NodeId, u64)>, MessageDecodeError> {
                            let count = get_len(input, 12)?;
                            let list = (0..count)
                                .map(|_| Ok((NodeId(get_i32(input)?), get_u64(input)?)))
                                .collect::<Result<_, RecordDecodeError>>()?;
                            Ok(list)
                        };
                        let voters = replicas()?;
                        let observers = replicas()?;
                        Some(QuorumState {
                            leader,
                            term,
                            committed,
                            voters,
                            observers,
                        })
                    }
                };
                PeerMessage::QuorumDescribed { request, state }
            }
            22 => PeerMessage::UnregisterBroker {
                node: NodeId(get_i32(input)?),
            },
            21 => {
                let node = get_i32(input)?;
                let count = get_len(input, 5)?;
                let mut changes = BTreeMap::new();
                for _ in 0..count {
                    let key = get_string(input)?;
                    let value = match get_u8(input)? {
                        0 => None,
                        _ => Some(get_string(input)?),
                    };
                    changes.insert(key, value);
                }
                PeerMessage::AlterBrokerConfigs { node, changes }
            }
            19 => {
                let request = get_u64(input)?;
                let count = get_len(input, 25)?;
                let mut partitions = Vec::with_capacity(count);
                for _ in 0..count {
                    let topic_id = uuid::Uuid::from_u128(get_u128(input)?);
                    let partition = get_i32(input)?;
                    let seen_epoch = get_i32(input)?;
                    let target = match get_u8(input)? {
                        0 => None,
                        _ => Some(get_nodes(input)?),
                    };
                    partitions.push(Reassignment {
                        topic_id,
                        partition,
                        target,
                        seen_epoch,
                    });
                }
                PeerMessage::Reassign {
                    request,
                    partitions,
                }
            }
            20 => {
                let request = get_u64(input)?;
                let results = (get_outcomes(input)?.into_iter())
                    .map(|(topic_id, partition, outcome)| Reassigned {
                        topic_id,
                        partition,
                        outcome,
                    })
                    .collect();
                PeerMessage::Reassigned { request, results }
            }
            23 => {
                let request = get_u64(input)?;
                // Topic length, partition, producer id, epoch, control type, coordinator
                // epoch, token.
                let count = get_len(input, 31)?;
                let mut markers = Vec::with_capacity(count);
                for _ in 0..count {
                    let topic = get_string(input)?;
                    let partition = get_i32(input)?;
                    let producer_id = ProducerId(get_i64(input)?);
                    let producer_epoch = ProducerEpoch(get_i16(input)?);
                    let control = ControlType::from_id(i16::from(get_u8(input)?))
                        .ok_or_else(|| MessageDecodeError("unknown marker type".into()))?;
                    let coordinator_epoch = get_i32(input)?;
                    let token = get_i64(input)?;
                    markers.push(MarkerEntry {
                        topic,
                        partition,
                        producer_id,
                        producer_epoch,
                        control,
                        coordinator_epoch,
                        token,
                    });
                }
                PeerMessage::Markers(MarkerMessage::Write { request, markers })
            }
            24 => {
                let request = get_u64(input)?;
                let count = get_len(input, 10)?;
                let mut results = Vec::with_capacity(count);
                for _ in 0..count {
                    let topic = get_string(input)?;
                    results.push((topic, get_i32(input)?, get_i16(input)?));
                }
                PeerMessage::Markers(MarkerMessage::Written { request, results })
            }
            17 => PeerMessage::MetadataFetch {
                correlation: get_u64(input)?,
                after: get_u64(input)?,
            },
            18 => {
                let correlation = get_u64(input)?;
                let leader = match get_i32(input)? {
                    -1 => None,
                    node => Some(NodeId(node)),
                };
                let term = get_u64(input)?;
                let through = get_u64(input)?;
                let latest = get_u64(input)?;
                let count = get_len(input, 13)?;
                let mut committed = Vec::with_capacity(count);
                for _ in 0..count {
                    committed.push(match get_u8(input)? {
                        1 => Committed::Entry {
                            index: get_u64(input)?,
                            term: get_u64(input)?,
                            data: get_bytes(input)?,
                        },
                        2 => Committed::Snapshot {
                            index: get_u64(input)?,
                            data: get_bytes(input)?,
                        },
                        other => return Err(MessageDecodeError(format!("committed step {other}"))),
                    });
                }
                PeerMessage::MetadataEntries {
                    correlation,
                    leader,
                    term,
                    through,
                    latest,
                    committed,
                }
            }
            other => return Err(MessageDecodeError(format!("unknown message type {other}"))),
        };
        if !input.is_empty() {
            return Err(MessageDecodeError("bytes after the message".into()));
        }
        Ok(message)
    }
}

impl LogEntry {
    /// The entry's encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            LogEntry::Records(records) => {
                out.put_u8(1);
                out.put_u32(records.len() as u32);
                for record in records {
                    put_bytes(&mut out, &record.encode());
                }
            }
            LogEntry::LeaderMarker { term } => {
                out.put_u8(2);
                out.put_u64(*term);
            }
        }
        out
    }

    /// Decodes one entry.
    pub fn decode(mut bytes: &[u8]) -> Result<LogEntry, MessageDecodeError> {
        let input = &mut bytes;
        let entry = match get_u8(input)? {
            1 => {
                let count = get_len(input, 4)?;
                let mut records = Vec::with_capacity(count);
                for _ in 0..count {
                    let bytes = get_bytes(input)?;
                    let record = MetadataRecord::decode(&bytes)
                        .map_err(|err| MessageDecodeError(err.to_string()))?;
                    records.push(record);
                }
                LogEntry::Records(records)
            }
            2 => LogEntry::LeaderMarker {
                term: get_u64(input)?,
            },
            other => return Err(MessageDecodeError(format!("unknown entry type {other}"))),
        };
        if !input.is_empty() {
            return Err(MessageDecodeError("bytes after the entry".into()));
        }
        Ok(entry)
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.put_u32(u32::try_from(bytes.len()).expect("messages are far below 4 GiB"));
    out.put_slice(bytes);
}

/// Replica lists, one per partition.
fn put_assignments(out: &mut Vec<u8>, assignments: &[Vec<NodeId>]) {
    out.put_u32(assignments.len() as u32);
    for replicas in assignments {
        put_nodes(out, replicas);
    }
}

/// Reads what [`put_assignments`] wrote.
fn get_assignments(input: &mut &[u8]) -> Result<Vec<Vec<NodeId>>, MessageDecodeError> {
    let lists = get_len(input, 2)?;
    let assignments = (0..lists)
        .map(|_| get_nodes(input))
        .collect::<Result<_, RecordDecodeError>>()?;
    Ok(assignments)
}

/// A per-partition outcome of a controller decision: an epoch, or an error code and message.
type Outcome = Result<i32, (ErrorCode, String)>;

/// A controller's per-partition outcomes: (topic id, partition, epoch or error) each.
fn put_outcomes<'a>(
    out: &mut Vec<u8>,
    count: usize,
    outcomes: impl Iterator<Item = (uuid::Uuid, i32, Result<i32, &'a (ErrorCode, String)>)>,
) {
    out.put_u32(count as u32);
    for (topic_id, partition, outcome) in outcomes {
        out.put_u128(topic_id.as_u128());
        out.put_i32(partition);
        match outcome {
            Ok(epoch) => {
                out.put_i16(0);
                out.put_i32(epoch);
            }
            Err((code, message)) => {
                out.put_i16(code.code());
                put_bytes(out, message.as_bytes());
            }
        }
    }
}

/// Reads what [`put_outcomes`] wrote.
fn get_outcomes(input: &mut &[u8]) -> Result<Vec<(uuid::Uuid, i32, Outcome)>, MessageDecodeError> {
    let count = get_len(input, 26)?;
    let mut outcomes = Vec::with_capacity(count);
    for _ in 0..count {
        let topic_id = uuid::Uuid::from_u128(get_u128(input)?);
        let partition = get_i32(input)?;
        let outcome = match get_i16(input)? {
            0 => Ok(get_i32(input)?),
            code => Err((ErrorCode::from_code(code), get_string(input)?)),
        };
        outcomes.push((topic_id, partition, outcome));
    }
    Ok(outcomes)
}

fn put_string_map(out: &mut Vec<u8>, map: &BTreeMap<String, String>) {
    out.put_u32(map.len() as u32);
    for (key, value) in map {
        put_bytes(out, key.as_bytes());
        put_bytes(out, value.as_bytes());
    }
}

fn get_string_map(input: &mut &[u8]) -> Result<BTreeMap<String, String>, MessageDecodeError> {
    let count = get_len(input, 8)?;
    let mut map = BTreeMap::new();
    for _ in 0..count {
        let key = get_string(input)?;
        map.insert(key, get_string(input)?);
    }
    Ok(map)
}

/// A list length, refused when the input cannot hold that many items of `min_item` bytes.
fn get_len(input: &mut &[u8], min_item: usize) -> Result<usize, MessageDecodeError> {
    need(input, 4)?;
    let count = input.get_u32() as usize;
    need(input, count.saturating_mul(min_item))?;
    Ok(count)
}

fn get_bytes(input: &mut &[u8]) -> Result<Vec<u8>, MessageDecodeError> {
    let len = get_len(input, 1)?;
    let bytes = input[..len].to_vec();
    input.advance(len);
    Ok(bytes)
}

fn get_string(input: &mut &[u8]) -> Result<String, MessageDecodeError> {
    String::from_utf8(get_bytes(input)?).map_err(|_| MessageDecodeError("not UTF-8".into()))
}

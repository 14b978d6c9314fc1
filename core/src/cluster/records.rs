//! The metadata records: every change to the cluster image, as the controller writes them
//! to the metadata log, and their binary encoding.
//!
//! Encoding (big-endian, one record per log entry): a format version byte (1), a type byte,
//! then the fields in declaration order — integers fixed-width, strings and lists as a `u16`
//! count followed by their items, an optional node id as `-1` for none. Fields added after
//! a record type first shipped come last: a record written before them ends early, and reads
//! them as empty (a broker's peer listener, a partition's reassignment).

use std::collections::BTreeMap;

use bytes::{Buf, BufMut};

use crate::types::{LeaderEpoch, NodeId};

/// The encoding version this code writes and reads.
const FORMAT_VERSION: u8 = 1;

/// A broker as it registered with the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistration {
    /// The broker's node id.
    pub node: NodeId,
    /// Changes at every start of the broker process, so the controller can tell a restarted
    /// broker from the one it knew (KRaft's incarnation id).
    pub incarnation: u64,
    /// The host clients connect to.
    pub host: String,
    /// The port clients connect to.
    pub port: i32,
    /// Where other nodes send it peer messages (`HOST:PORT`, its controller listener); empty
    /// when its peers know it otherwise (a voter, from the voters list).
    pub peer: String,
}

/// The whole replication state of one partition, as the controller decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRecord {
    /// The topic's id.
    pub topic_id: uuid::Uuid,
    /// The partition's index in its topic.
    pub partition: i32,
    /// The replicas, the preferred leader first.
    pub replicas: Vec<NodeId>,
    /// The in-sync replicas (empty only while no replica known to hold every committed record
    /// can lead).
    pub isr: Vec<NodeId>,
    /// Eligible leader replicas (KIP-966): replicas that left the ISR while it was below
    /// `min.insync.replicas` — the high watermark stood still since, so they hold every
    /// committed record and may be elected when the ISR cannot lead.
    pub elr: Vec<NodeId>,
    /// The leader, or `None` while no in-sync or eligible replica can lead.
    pub leader: Option<NodeId>,
    /// Bumped at every leader change (and stamped on the batches the leader appends).
    pub leader_epoch: LeaderEpoch,
    /// Bumped at every change of the record; a leader's ISR change names the one it saw.
    pub partition_epoch: i32,
    /// Replicas a reassignment adds (in `replicas` already, catching up).
    pub adding: Vec<NodeId>,
    /// Replicas a reassignment removes once every added one is in sync (in `replicas` still).
    pub removing: Vec<NodeId>,
}

impl PartitionRecord {
    /// Whether a reassignment is under way.
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas once the reassignment under way completes (the replicas, without those
    /// it removes).
    pub fn target_replicas(&self) -> Vec<NodeId> {
        (self.replicas.iter())
            .filter(|n| !self.removing.contains(n))
            .copied()
            .collect()
    }
}

/// One change to the cluster image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataRecord {
    /// A broker registered (or registered again after a restart); it starts fenced.
    RegisterBroker(BrokerRegistration),
    /// The broker may not lead or join an ISR (its session expired, or it just registered).
    FenceBroker {
        /// The broker.
        node: NodeId,
    },
    /// The broker heartbeats and may lead and join ISRs again.
    UnfenceBroker {
        /// The broker.
        node: NodeId,
    },
    /// A topic was created; its partitions follow as [`MetadataRecord::Partition`] records.
    Topic {
        /// The topic's name.
        name: String,
        /// The topic's id.
        id: uuid::Uuid,
        /// Topic config overrides (Kafka names → values).
        configs: BTreeMap<String, String>,
    },
    /// A partition was created or changed: its whole new state.
    Partition(PartitionRecord),
    /// A topic and all its partitions were deleted.
    RemoveTopic {
        /// The topic's id.
        id: uuid::Uuid,
    },
    /// A topic's config overrides were replaced (AlterConfigs, IncrementalAlterConfigs).
    TopicConfigs {
        /// The topic's id.
        id: uuid::Uuid,
        /// The whole new set of overrides (Kafka names → values).
        configs: BTreeMap<String, String>,
    },
    /// A broker left the cluster (UnregisterBroker): stopped, and holding no replica.
    UnregisterBroker {
        /// The broker.
        node: NodeId,
    },
    /// Dynamic broker configs (IncrementalAlterConfigs of a BROKER resource) were replaced:
    /// the whole new set for one broker, or for every broker (`node` -1: the cluster-wide
    /// default).
    BrokerConfigs {
        /// The broker, or -1 for the default of every broker.
        node: i32,
        /// The whole new set (Kafka names → values).
        configs: BTreeMap<String, String>,
    },
    /// The producer ids below `next` are handed out (InitProducerId).
    ProducerIds {
        /// The next producer id to hand out.
        next: i64,
    },
}

/// Why bytes could not be decoded as a metadata record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata record: {0}")]
pub struct RecordDecodeError(pub String);

impl MetadataRecord {
    /// The record's encoding (module doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.put_u8(FORMAT_VERSION);
        match self {
            MetadataRecord::RegisterBroker(r) => {
                out.put_u8(1);
                out.put_i32(r.node.0);
                out.put_u64(r.incarnation);
                put_str(&mut out, &r.host);
                out.put_i32(r.port);
                put_str(&mut out, &r.peer);
            }
            MetadataRecord::FenceBroker { node } => {
                out.put_u8(2);
                out.put_i32(node.0);
            }
            MetadataRecord::UnfenceBroker { node } => {
                out.put_u8(3);
                out.put_i32(node.0);
            }
            MetadataRecord::Topic { name, id, configs } => {
                out.put_u8(4);
                put_str(&mut out, name);
                out.put_u128(id.as_u128());
                put_configs(&mut out, configs);
            }
            MetadataRecord::Partition(p) => {
                out.put_u8(5);
                out.put_u128(p.topic_id.as_u128());
                out.put_i32(p.partition);
                put_nodes(&mut out, &p.replicas);
                put_nodes(&mut out, &p.isr);
                put_nodes(&mut out, &p.elr);
                out.put_i32(p.leader.map_or(-1, |n| n.0));
                out.put_i32(p.leader_epoch.0);
                out.put_i32(p.partition_epoch);
                put_nodes(&mut out, &p.adding);
                put_nodes(&mut out, &p.removing);
            }
            MetadataRecord::RemoveTopic { id } => {
                out.put_u8(6);
                out.put_u128(id.as_u128());
            }
            MetadataRecord::ProducerIds { next } => {
                out.put_u8(7);
                out.put_i64(*next);
            }
            MetadataRecord::TopicConfigs { id, configs } => {
                out.put_u8(8);
                out.put_u128(id.as_u128());
                put_configs(&mut out, configs);
            }
            MetadataRecord::UnregisterBroker { node } => {
                out.put_u8(10);
                out.put_i32(node.0);
            }
            MetadataRecord::BrokerConfigs { node, configs } => {
                out.put_u8(9);
                out.put_i32(*node);
                put_configs(&mut out, configs);
            }
        }
        out
    }

    /// Decodes one record; damaged or truncated bytes are an error, never a panic.
    pub fn decode(mut bytes: &[u8]) -> Result<MetadataRecord, RecordDecodeError> {
        let input = &mut bytes;
        let version = get_u8(input)?;
        if version != FORMAT_VERSION {
            return Err(RecordDecodeError(format!(
                "unknown format version {version}"
            )));
        }
        let record = match get_u8(input)? {
            1 => MetadataRecord::RegisterBroker(BrokerRegistration {
                node: NodeId(get_i32(input)?),
                incarnation: get_u64(input)?,
                host: get_str(input)?,
                port: get_i32(input)?,
                peer: match input.is_empty() {
                    true => String::new(), // written before peers were named
                    false => get_str(input)?,
                },
            }),
            2 => MetadataRecord::FenceBroker {
                node: NodeId(get_i32(input)?),
            },
            3 => MetadataRecord::UnfenceBroker {
                node: NodeId(get_i32(input)?),
            },
            4 => {
                let name = get_str(input)?;
                let id = uuid::Uuid::from_u128(get_u128(input)?);
                let configs = get_configs(input)?;
                MetadataRecord::Topic { name, id, configs }
            }
            5 => {
                let mut partition = PartitionRecord {
                    topic_id: uuid::Uuid::from_u128(get_u128(input)?),
                    partition: get_i32(input)?,
                    replicas: get_nodes(input)?,
                    isr: get_nodes(input)?,
                    elr: get_nodes(input)?,
                    leader: match get_i32(input)? {
                        -1 => None,
                        node => Some(NodeId(node)),
                    },
                    leader_epoch: LeaderEpoch(get_i32(input)?),
                    partition_epoch: get_i32(input)?,
                    adding: Vec::new(),
                    removing: Vec::new(),
                };
                // A record written before reassignments ends here: none under way.
                if !input.is_empty() {
                    partition.adding = get_nodes(input)?;
                    partition.removing = get_nodes(input)?;
                }
                MetadataRecord::Partition(partition)
            }
            6 => MetadataRecord::RemoveTopic {
                id: uuid::Uuid::from_u128(get_u128(input)?),
            },
            7 => MetadataRecord::ProducerIds {
                next: get_i64(input)?,
            },
            8 => MetadataRecord::TopicConfigs {
                id: uuid::Uuid::from_u128(get_u128(input)?),
                configs: get_configs(input)?,
            },
            10 => MetadataRecord::UnregisterBroker {
                node: NodeId(get_i32(input)?),
            },
            9 => MetadataRecord::BrokerConfigs {
                node: get_i32(input)?,
                configs: get_configs(input)?,
            },
            other => return Err(RecordDecodeError(format!("unknown record type {other}"))),
        };
        if !input.is_empty() {
            return Err(RecordDecodeError(format!(
                "{} bytes after the record",
                input.len()
            )));
        }
        Ok(record)
    }
}

/// A list length as written: lists are bounded far below `u16::MAX` by the controller.
fn len_u16(len: usize) -> u16 {
    u16::try_from(len).expect("metadata lists hold fewer than 65,536 items")
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.put_u16(len_u16(s.len()));
    out.put_slice(s.as_bytes());
}

fn put_configs(out: &mut Vec<u8>, configs: &BTreeMap<String, String>) {
    out.put_u16(len_u16(configs.len()));
    for (key, value) in configs {
        put_str(out, key);
        put_str(out, value);
    }
}

fn get_configs(input: &mut &[u8]) -> Result<BTreeMap<String, String>, RecordDecodeError> {
    let count = get_u16(input)?;
    let mut configs = BTreeMap::new();
    for _ in 0..count {
        let key = get_str(input)?;
        configs.insert(key, get_str(input)?);
    }
    Ok(configs)
}

/// Writes a node list (the peer messages' encoding uses it too).
pub(crate) fn put_nodes(out: &mut Vec<u8>, nodes: &[NodeId]) {
    out.put_u16(len_u16(nodes.len()));
    for node in nodes {
        out.put_i32(node.0);
    }
}

/// Fails unless `input` holds at least `n` more bytes. (The fixed-width readers below serve
/// the peer messages' encoding too.)
pub(crate) fn need(input: &[u8], n: usize) -> Result<(), RecordDecodeError> {
    if input.len() < n {
        return Err(RecordDecodeError(format!(
            "truncated: {n} bytes needed, {} left",
            input.len()
        )));
    }
    Ok(())
}

pub(crate) fn get_u8(input: &mut &[u8]) -> Result<u8, RecordDecodeError> {
    need(input, 1)?;
    Ok(input.get_u8())
}

pub(crate) fn get_u16(input: &mut &[u8]) -> Result<u16, RecordDecodeError> {
    need(input, 2)?;
    Ok(input.get_u16())
}

pub(crate) fn get_i16(input: &mut &[u8]) -> Result<i16, RecordDecodeError> {
    need(input, 2)?;
    Ok(input.get_i16())
}

pub(crate) fn get_i32(input: &mut &[u8]) -> Result<i32, RecordDecodeError> {
    need(input, 4)?;
    Ok(input.get_i32())
}

pub(crate) fn get_i64(input: &mut &[u8]) -> Result<i64, RecordDecodeError> {
    need(input, 8)?;
    Ok(input.get_i64())
}

pub(crate) fn get_u64(input: &mut &[u8]) -> Result<u64, RecordDecodeError> {
    need(input, 8)?;
    Ok(input.get_u64())
}

pub(crate) fn get_u128(input: &mut &[u8]) -> Result<u128, RecordDecodeError> {
    need(input, 16)?;
    Ok(input.get_u128())
}

fn get_str(input: &mut &[u8]) -> Result<String, RecordDecodeError> {
    let len = usize::from(get_u16(input)?);
    need(input, len)?;
    let text = std::str::from_utf8(&input[..len])
        .map_err(|_| RecordDecodeError("a string is not UTF-8".into()))?
        .to_string();
    input.advance(len);
    Ok(text)
}

/// Reads a node list written by [`put_nodes`].
pub(crate) fn get_nodes(input: &mut &[u8]) -> Result<Vec<NodeId>, RecordDecodeError> {
    let count = usize::from(get_u16(input)?);
    need(input, count * 4)?;
    (0..count).map(|_| Ok(NodeId(get_i32(input)?))).collect()
}

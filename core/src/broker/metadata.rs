//! The broker's own small metadata — cluster id and producer-id counter — persisted as one
//! text file in the `meta` directory, replaced atomically on every change. Topics live in the
//! metadata log; the file lists them only in a directory 0.1.0 wrote, until they are adopted
//! (see [`LegacyTopic`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::producer_state::ProducerStates;
use super::topics::Topics;
use super::{Broker, BrokerConfig, BrokerError, StorageProvider};
use crate::log::PartitionLog;
use crate::storage::Storage;
use crate::types::{LeaderEpoch, Millis, NodeId};

/// The directory holding the broker's metadata file.
pub const META_DIR: &str = "meta";
/// The metadata file's name.
pub const META_FILE: &str = "brook.meta";
const META_HEADER: &str = "brook-meta 1";

/// The metadata as stored: what is needed to reopen every topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StoredMeta {
    pub cluster_id: String,
    pub next_producer_id: i64,
    /// name → (topic id, partition count, overrides)
    pub topics: BTreeMap<String, (uuid::Uuid, i32, BTreeMap<String, String>)>,
}

impl StoredMeta {
    pub(crate) fn encode(&self) -> String {
        let mut out = format!("{META_HEADER}\ncluster_id {}\n", self.cluster_id);
        let _ = writeln!(out, "next_producer_id {}", self.next_producer_id);
        for (name, (id, partitions, overrides)) in &self.topics {
            let _ = writeln!(out, "topic {name} {} {partitions}", id.as_simple());
            for (key, value) in overrides {
                let _ = writeln!(out, "config {name} {key} {value}");
            }
        }
        let checksum = crc32c::crc32c(out.as_bytes());
        let _ = writeln!(out, "crc {checksum:08x}");
        out
    }

    pub(crate) fn decode(text: &str) -> Result<StoredMeta, String> {
        let (body, crc_line) = text
            .trim_end_matches('\n')
            .rsplit_once('\n')
            .ok_or("missing checksum line")?;
        let body = format!("{body}\n");
        let stored = crc_line
            .strip_prefix("crc ")
            .ok_or("missing checksum line")?;
        let computed = format!("{:08x}", crc32c::crc32c(body.as_bytes()));
        if stored != computed {
            return Err(format!("checksum {stored} does not match {computed}"));
        }
        let mut lines = body.lines();
        if lines.next() != Some(META_HEADER) {
            return Err("unknown format version".into());
        }
        let mut meta = StoredMeta::default();
        for line in lines {
            let fields: Vec<&str> = line.splitn(4, ' ').collect();
            match fields.as_slice() {
                ["cluster_id", id] => meta.cluster_id = (*id).to_string(),
                ["next_producer_id", n] => {
                    meta.next_producer_id = n.parse().map_err(|_| format!("bad line: {line}"))?;
                }
                ["topic", name, id, partitions] => {
                    let id = uuid::Uuid::parse_str(id).map_err(|_| format!("bad line: {line}"))?;
                    let partitions = partitions
                        .parse()
                        .map_err(|_| format!("bad line: {line}"))?;
                    meta.topics
                        .insert((*name).to_string(), (id, partitions, BTreeMap::new()));
                }
                ["config", name, key, value] => {
                    let topic = meta
                        .topics
                        .get_mut(*name)
                        .ok_or(format!("bad line: {line}"))?;
                    topic.2.insert((*key).to_string(), (*value).to_string());
                }
                _ => return Err(format!("bad line: {line}")),
            }
        }
        Ok(meta)
    }
}

/// A topic the metadata file of a single broker (a release before the one-node cluster)
/// lists: a member broker opening that directory holds it here until the metadata log has
/// it, so the node's controller can adopt it — same id, partitions and configs, the
/// partitions' existing logs on this node — and nothing in the directory is lost. The file
/// keeps listing it until then, so a crash before the adoption commits retries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyTopic {
    /// The topic's name.
    pub name: String,
    /// Its id.
    pub id: uuid::Uuid,
    /// Its partition count.
    pub partitions: i32,
    /// Its config overrides.
    pub configs: BTreeMap<String, String>,
    /// The newest leader epoch its partitions' epoch files name (0 when none does).
    pub leader_epoch: LeaderEpoch,
}

/// A cluster id derived from the time of first start: 22 URL-safe characters like Kafka's.
fn new_cluster_id(now: Millis, node_id: i32) -> String {
    let bits = u128::from(now.0 as u64) << 32 | u128::from(node_id as u32);
    let id = uuid::Uuid::from_u128(bits ^ 0x6272_6f6f_6b00_0000_0000_0000_0000_0000);
    id.as_simple().to_string()[..22].to_string()
}

impl<P: StorageProvider> Broker<P> {
    /// Opens a broker without topics (a cluster member's come from the metadata records):
    /// the metadata file gives the cluster id and the producer-id counter, and the topics a
    /// single broker's file listed (see [`LegacyTopic`]).
    pub(crate) fn open_empty(
        provider: P,
        config: BrokerConfig,
        now: Millis,
    ) -> Result<(Self, Vec<LegacyTopic>), BrokerError> {
        let (mut broker, topics) = Broker::open_meta(provider, config, now)?;
        let mut legacy = Vec::with_capacity(topics.len());
        for (name, (id, partitions, configs)) in topics {
            let leader_epoch = broker.topics.stored_leader_epoch(&name, partitions)?;
            legacy.push(LegacyTopic {
                name,
                id,
                partitions,
                configs,
                leader_epoch,
            });
        }
        Ok((broker, legacy))
    }

    /// Reads the metadata file (or makes a new cluster id) into a broker without topics;
    /// returns the topics the file lists.
    #[allow(clippy::type_complexity)]
    fn open_meta(
        provider: P,
        config: BrokerConfig,
        now: Millis,
    ) -> Result<
        (
            Self,
            BTreeMap<String, (uuid::Uuid, i32, BTreeMap<String, String>)>,
        ),
        BrokerError,
    > {
        let topics = Topics::open(provider)?;
        let stored = match topics.read_meta()? {
            Some(stored) => stored,
            None => StoredMeta {
                cluster_id: (config.cluster_id.clone())
                    .unwrap_or_else(|| new_cluster_id(now, config.node_id)),
                next_producer_id: 1000,
                topics: BTreeMap::new(),
            },
        };
        if let Some(expected) = &config.cluster_id {
            if *expected != stored.cluster_id {
                return Err(BrokerError::OtherCluster {
                    stored: stored.cluster_id,
                    expected: expected.clone(),
                });
            }
        }
        let config_group = config.group.clone();
        let config_node = config.node_id;
        let broker = Broker {
            config,
            cluster_id: stored.cluster_id.clone(),
            next_producer_id: stored.next_producer_id,
            topics,
            fetches: Default::default(),
            background_errors: Vec::new(),
            groups: super::groups::Groups::new(config_group),
            member: super::replica::Member::new(NodeId(config_node)),
            produces: Default::default(),
            transactions: Default::default(),
        };
        Ok((broker, stored.topics))
    }

    /// Writes the metadata file from the in-memory state.
    pub(crate) fn persist_meta(&mut self) -> Result<(), BrokerError> {
        let stored = StoredMeta {
            cluster_id: self.cluster_id.clone(),
            next_producer_id: self.next_producer_id,
            // The topics live in the metadata log; the file keeps only those of a 0.1.0
            // single broker not yet adopted into it.
            topics: (self.member.legacy.iter())
                .map(|t| (t.name.clone(), (t.id, t.partitions, t.configs.clone())))
                .collect(),
        };
        self.topics.write_meta(&stored)
    }

    /// The broker configuration the metadata file was opened with.
    pub(crate) fn broker_config(&self) -> &BrokerConfig {
        &self.config
    }
}

/// Idempotent-producer state after a restart: the newest producer snapshot, then every batch
/// after it. Without a usable snapshot the whole log is replayed.
pub(crate) fn restore_producers<S: Storage>(
    log: &mut PartitionLog<S>,
) -> Result<ProducerStates, crate::log::LogError> {
    let (from, mut producers) = match log.producer_snapshot()? {
        Some((offset, payload)) => match ProducerStates::decode(&payload) {
            Some(states) => (offset, states),
            None => (log.log_start_offset(), ProducerStates::default()),
        },
        None => (log.log_start_offset(), ProducerStates::default()),
    };
    producers.replay(&log.producer_batches_from(from)?);
    Ok(producers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_meta_round_trips_and_detects_damage() {
        let mut meta = StoredMeta {
            cluster_id: "abc".into(),
            next_producer_id: 1234,
            topics: BTreeMap::new(),
        };
        let overrides = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        meta.topics
            .insert("orders".into(), (uuid::Uuid::from_u128(7), 3, overrides));
        let text = meta.encode();
        assert_eq!(StoredMeta::decode(&text).unwrap(), meta);
        let damaged = text.replace("orders 0", "orderz 0");
        assert!(StoredMeta::decode(&damaged)
            .unwrap_err()
            .contains("checksum"));
    }
}

//! The topics this broker knows and the partition logs it holds, with the directories they
//! live in.
//!
//! [`Topics`] owns the [`StorageProvider`], the `meta` directory (the broker's metadata
//! file, see `metadata.rs`) and one [`Topic`] per topic of the cluster image: its id, its
//! config overrides and its [`Partitions`] — every index the topic has, and a [`Partition`]
//! (log, producer state, replica role) for each one this broker is a replica of.
//!
//! It opens, removes and closes partition logs and their `topic-N` directories, looks a
//! partition up by topic name (or id) and index, and walks the partitions held here for the
//! time-based log work (retention, compaction, `flush.ms`).
//!
//! **API boundary:** it does not decide anything. Which partitions to hold, in which role
//! and with which log config, comes from the broker applying the metadata records
//! (`replica.rs`); it knows no Kafka request, group or parked request.

use std::collections::BTreeMap;

use super::metadata::{restore_producers, StoredMeta, META_DIR, META_FILE};
use super::{partition_dir, BrokerError, Partition, StorageProvider};
use crate::cluster::PartitionRecord;
use crate::error::ErrorCode;
use crate::log::{LogConfig, PartitionLog};
use crate::storage::Storage;
use crate::types::{LeaderEpoch, Millis, NodeId};

/// One topic.
pub(crate) struct Topic<S: Storage> {
    /// The topic's id.
    pub(crate) id: uuid::Uuid,
    /// Topic-level config overrides (Kafka names → values).
    pub(crate) overrides: BTreeMap<String, String>,
    /// Its partitions, held here or not.
    pub(crate) partitions: Partitions<S>,
}

/// A topic's partitions: every index the topic has, and the partitions this broker holds
/// (those it is a replica of).
pub(crate) struct Partitions<S: Storage> {
    slots: Vec<Option<Partition<S>>>,
}

impl<S: Storage> Partitions<S> {
    /// A new topic's partitions: none yet (its partition records add them).
    fn none() -> Partitions<S> {
        Partitions { slots: Vec::new() }
    }

    /// How many partitions the topic has.
    pub(crate) fn count(&self) -> i32 {
        self.slots.len() as i32
    }

    /// Whether the topic has partition `index` (held here or not).
    pub(crate) fn exists(&self, index: i32) -> bool {
        (0..self.count()).contains(&index)
    }

    /// Partition `index`, if this broker holds it.
    pub(crate) fn get(&self, index: i32) -> Option<&Partition<S>> {
        self.slots.get(usize::try_from(index).ok()?)?.as_ref()
    }

    /// Partition `index`, if this broker holds it.
    pub(crate) fn get_mut(&mut self, index: i32) -> Option<&mut Partition<S>> {
        self.slots.get_mut(usize::try_from(index).ok()?)?.as_mut()
    }

    /// The partitions held here, with their indexes.
    pub(crate) fn held(&self) -> impl Iterator<Item = (i32, &Partition<S>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i as i32, p.as_ref()?)))
    }

    /// The partitions held here, with their indexes.
    pub(crate) fn held_mut(&mut self) -> impl Iterator<Item = (i32, &mut Partition<S>)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, p)| Some((i as i32, p.as_mut()?)))
    }

    /// Takes the partitions held here, with their indexes.
    pub(crate) fn into_held(self) -> impl Iterator<Item = (i32, Partition<S>)> {
        self.slots
            .into_iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i as i32, p?)))
    }

    /// Grows the topic to at least `count` partitions (none of the new ones held here).
    pub(crate) fn ensure_count(&mut self, count: i32) {
        let count = usize::try_from(count).unwrap_or(0);
        if self.slots.len() < count {
            self.slots.resize_with(count, || None);
        }
    }

    /// Holds `partition` here as partition `index`, which the topic has.
    pub(crate) fn hold(&mut self, index: i32, partition: Partition<S>) {
        let slot = usize::try_from(index).expect("a partition index");
        self.slots[slot] = Some(partition);
    }

    /// Takes partition `index` out (this broker no longer holds it), if held.
    pub(crate) fn release(&mut self, index: i32) -> Option<Partition<S>> {
        self.slots.get_mut(usize::try_from(index).ok()?)?.take()
    }
}

#[cfg(test)]
impl<S: Storage> std::ops::Index<i32> for Partitions<S> {
    type Output = Partition<S>;

    fn index(&self, index: i32) -> &Partition<S> {
        self.get(index).expect("a partition held here")
    }
}

#[cfg(test)]
impl<S: Storage> std::ops::IndexMut<i32> for Partitions<S> {
    fn index_mut(&mut self, index: i32) -> &mut Partition<S> {
        self.get_mut(index).expect("a partition held here")
    }
}

/// The topics, the partitions held here and their directories. See the module doc.
pub(crate) struct Topics<P: StorageProvider> {
    /// Opens and removes the `meta` and `topic-N` directories.
    provider: P,
    /// The `meta` directory, which holds the broker's metadata file.
    meta: P::Storage,
    /// Every topic by name, sorted.
    topics: BTreeMap<String, Topic<P::Storage>>,
}

impl<P: StorageProvider> Topics<P> {
    /// Opens (creating if needed) the `meta` directory; no topics yet (they come from the
    /// metadata records).
    pub(crate) fn open(mut provider: P) -> Result<Self, BrokerError> {
        let meta = provider.open_dir(META_DIR)?;
        Ok(Topics {
            provider,
            meta,
            topics: BTreeMap::new(),
        })
    }

    /// The metadata file, if the `meta` directory has one.
    pub(crate) fn read_meta(&self) -> Result<Option<StoredMeta>, BrokerError> {
        let Some(bytes) = self.meta.read_all(META_FILE)? else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| BrokerError::CorruptMetadata("not UTF-8".into()))?;
        let stored = StoredMeta::decode(&text).map_err(BrokerError::CorruptMetadata)?;
        Ok(Some(stored))
    }

    /// Replaces the metadata file atomically with `stored`.
    pub(crate) fn write_meta(&mut self, stored: &StoredMeta) -> Result<(), BrokerError> {
        self.meta
            .write_atomic(META_FILE, stored.encode().as_bytes())?;
        Ok(())
    }

    /// The newest leader epoch the epoch files of partitions `0..count` of `name` name (0
    /// when none does), read from their directories whether held here or not.
    pub(crate) fn stored_leader_epoch(
        &mut self,
        name: &str,
        count: i32,
    ) -> Result<LeaderEpoch, BrokerError> {
        let mut leader_epoch = LeaderEpoch(0);
        for index in 0..count {
            let storage = self.provider.open_dir(&partition_dir(name, index))?;
            let stored = storage.read_all(crate::log::EPOCH_CHECKPOINT_FILE)?;
            let newest = stored
                .as_deref()
                .and_then(crate::log::LeaderEpochCache::decode)
                .and_then(|epochs| epochs.latest_epoch());
            leader_epoch = leader_epoch.max(newest.unwrap_or(LeaderEpoch(0)));
        }
        Ok(leader_epoch)
    }

    /// The topic names, sorted.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.topics.keys().map(String::as_str)
    }

    /// Whether a topic named `name` exists.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.topics.contains_key(name)
    }

    /// The topic named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Topic<P::Storage>> {
        self.topics.get(name)
    }

    /// The topic named `name`, mutable.
    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut Topic<P::Storage>> {
        self.topics.get_mut(name)
    }

    /// The topic with id `id`, with its name.
    pub(crate) fn by_id(&self, id: uuid::Uuid) -> Option<(&str, &Topic<P::Storage>)> {
        let mut topics = self.iter();
        topics.find(|(_, t)| t.id == id)
    }

    /// The topic with id `id`, with its name, mutable.
    pub(crate) fn by_id_mut(&mut self, id: uuid::Uuid) -> Option<(&str, &mut Topic<P::Storage>)> {
        let mut topics = self.iter_mut();
        topics.find(|(_, t)| t.id == id)
    }

    /// Every topic with its name, sorted by name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Topic<P::Storage>)> {
        self.topics.iter().map(|(name, t)| (name.as_str(), t))
    }

    /// Every topic with its name, sorted by name, mutable.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Topic<P::Storage>)> {
        self.topics.iter_mut().map(|(name, t)| (name.as_str(), t))
    }

    /// Adds (or replaces) topic `name` with no partition held here yet.
    pub(crate) fn insert(
        &mut self,
        name: &str,
        id: uuid::Uuid,
        overrides: BTreeMap<String, String>,
    ) {
        let topic = Topic {
            id,
            overrides,
            partitions: Partitions::none(),
        };
        self.topics.insert(name.to_string(), topic);
    }

    /// Drops topic `name` and the directories of its partitions held here.
    pub(crate) fn remove(&mut self, name: &str) -> Result<(), BrokerError> {
        if let Some(topic) = self.topics.remove(name) {
            for (index, partition) in topic.partitions.into_held() {
                // The log's files go with the directory.
                drop(partition.log.abandon());
                self.provider.remove_dir(&partition_dir(name, index))?;
            }
        }
        Ok(())
    }

    /// Partition `index` of `topic`, if this broker holds it.
    pub(crate) fn partition(&self, topic: &str, index: i32) -> Option<&Partition<P::Storage>> {
        self.topics.get(topic)?.partitions.get(index)
    }

    /// Partition `index` of `topic`, if this broker holds it, mutable.
    pub(crate) fn partition_mut(
        &mut self,
        topic: &str,
        index: i32,
    ) -> Option<&mut Partition<P::Storage>> {
        self.topics.get_mut(topic)?.partitions.get_mut(index)
    }

    /// Partition `index` of `topic` if this broker leads it: `NOT_LEADER_OR_FOLLOWER` for a
    /// partition of the topic it does not lead, `UNKNOWN_TOPIC_OR_PARTITION` for none.
    pub(crate) fn led(&self, topic: &str, index: i32) -> Result<&Partition<P::Storage>, ErrorCode> {
        let stored = self
            .topics
            .get(topic)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        match stored.partitions.get(index) {
            Some(partition) if partition.is_leader() => Ok(partition),
            _ if stored.partitions.exists(index) => Err(ErrorCode::NotLeaderOrFollower),
            _ => Err(ErrorCode::UnknownTopicOrPartition),
        }
    }

    /// [`Topics::led`], mutable.
    pub(crate) fn led_mut(
        &mut self,
        topic: &str,
        index: i32,
    ) -> Result<&mut Partition<P::Storage>, ErrorCode> {
        let stored = self
            .topics
            .get_mut(topic)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        let exists = stored.partitions.exists(index);
        match stored.partitions.get_mut(index) {
            Some(partition) if partition.is_leader() => Ok(partition),
            _ if exists => Err(ErrorCode::NotLeaderOrFollower),
            _ => Err(ErrorCode::UnknownTopicOrPartition),
        }
    }

    /// The partitions held here: (topic, index, partition), sorted.
    pub(crate) fn held(&self) -> impl Iterator<Item = (&str, i32, &Partition<P::Storage>)> {
        let topics = self.iter();
        topics.flat_map(|(name, t)| t.partitions.held().map(move |(i, p)| (name, i, p)))
    }

    /// The partitions held here: (topic, index, partition), sorted, mutable.
    pub(crate) fn held_mut(
        &mut self,
    ) -> impl Iterator<Item = (&str, i32, &mut Partition<P::Storage>)> {
        let topics = self.iter_mut();
        topics.flat_map(|(name, t)| t.partitions.held_mut().map(move |(i, p)| (name, i, p)))
    }

    /// Opens (creating if needed) partition `record.partition` of `name`'s log, restores its
    /// producers and holds it here in the role `record` gives `node`. The topic must exist
    /// and must not hold the partition yet.
    pub(crate) fn open_partition(
        &mut self,
        name: &str,
        record: &PartitionRecord,
        node: NodeId,
        log_config: LogConfig,
        now: Millis,
    ) -> Result<(), BrokerError> {
        let index = record.partition;
        let failed = |source| BrokerError::Log {
            partition: partition_dir(name, index),
            source,
        };
        let storage = self.provider.open_dir(&partition_dir(name, index))?;
        let (mut log, _report) = PartitionLog::open(storage, log_config, now).map_err(failed)?;
        let producers = restore_producers(&mut log).map_err(failed)?;
        let partition =
            Partition::with_record(log, producers, node, record, now).map_err(failed)?;
        let topic = self.topics.get_mut(name).expect("a topic that exists");
        debug_assert!(
            topic.partitions.get(index).is_none(),
            "{name}-{index} opened twice"
        );
        topic.partitions.hold(index, partition);
        Ok(())
    }

    /// Stops holding partition `index` of `name` here: its log and its directory go. Nothing
    /// happens for a partition not held here.
    pub(crate) fn remove_partition(&mut self, name: &str, index: i32) -> Result<(), BrokerError> {
        let topic = self.topics.get_mut(name);
        if let Some(partition) = topic.and_then(|t| t.partitions.release(index)) {
            drop(partition.log.abandon());
            self.provider.remove_dir(&partition_dir(name, index))?;
        }
        Ok(())
    }

    /// Runs every held partition's timers and its log's retention, compaction (for
    /// `cleanup.policy=compact`, once per rolled segment) and `flush.ms`; returns the
    /// failures, as `topic-N: error`.
    pub(crate) fn tick(&mut self, now: Millis) -> Vec<String> {
        let mut errors = Vec::new();
        for (name, index, partition) in self.held_mut() {
            partition.tick(now);
            let result = partition
                .log
                .apply_retention(now)
                .and_then(|_| partition.log.compact(now))
                .and_then(|_| partition.log.tick(now));
            if let Err(err) = result {
                errors.push(format!("{name}-{index}: {err}"));
            }
        }
        errors
    }

    /// The earliest deadline of a held partition.
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.held().filter_map(|(_, _, p)| p.next_deadline()).min()
    }

    /// The held partitions (`topic-N`) whose log a storage failure took offline.
    pub(crate) fn offline(&self) -> Vec<String> {
        let held = self.held();
        let offline = held.filter(|(_, _, p)| p.log.offline_reason().is_some());
        offline
            .map(|(name, index, _)| partition_dir(name, index))
            .collect()
    }

    /// Closes every held partition's log cleanly (clean-shutdown markers written); an
    /// offline log is left for recovery and reported, after the others are closed.
    pub(crate) fn close(self) -> Result<(), BrokerError> {
        let mut first_error = None;
        for (name, topic) in self.topics {
            for (index, mut partition) in topic.partitions.into_held() {
                // A snapshot at the log end spares the next start replaying batches for the
                // idempotent producers; without it the replay rebuilds the same state.
                if !partition.producers.is_empty() && partition.log.offline_reason().is_none() {
                    let end = partition.log.log_end_offset();
                    let payload = partition.producers.encode();
                    if let Err(source) = partition.log.write_producer_snapshot(end, &payload) {
                        let partition = format!("{name}-{index}");
                        first_error.get_or_insert(BrokerError::Log { partition, source });
                    }
                }
                if let Err(source) = partition.log.close() {
                    let partition = format!("{name}-{index}");
                    first_error.get_or_insert(BrokerError::Log { partition, source });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
impl<P: StorageProvider> std::ops::Index<&str> for Topics<P> {
    type Output = Topic<P::Storage>;

    fn index(&self, name: &str) -> &Topic<P::Storage> {
        self.get(name).expect("a topic that exists")
    }
}

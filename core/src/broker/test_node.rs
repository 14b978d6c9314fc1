//! The broker as `brook server` runs it — the member broker of a one-node cluster (a
//! [`ClusterNode`] whose only voter is itself) — for the broker's unit tests. A request that
//! parks only until the node's own metadata log commits (a topic change, an election, an
//! acks=all or group write of its one replica) is driven to its answer at the same instant,
//! so a test reads as a call and an answer; fetches and joins and syncs, which wait for data,
//! time or their group, stay parked and come back from `poll_completed_*`.

use std::sync::atomic::{AtomicU64, Ordering};

use kafka_protocol::messages::ResponseKind;

use super::{Broker, BrokerConfig, ParkedId, Reply, RequestContext, StorageProvider};
use crate::driver::Completed;
use crate::node::{ClusterNode, NodeConfig, NodeError};
use crate::protocol::{FetchResponseData, Request};
use crate::storage::MemoryDirs;
use crate::types::{Millis, NodeId};

/// Inputs a parked request or an opening node gets to settle at one instant.
const SETTLE_STEPS: usize = 20;

/// Incarnations of the nodes tests open: each open is a new process.
static INCARNATION: AtomicU64 = AtomicU64::new(1);

/// A one-node cluster over the test's directories; derefs to its broker.
pub(crate) struct TestNode<P: StorageProvider = MemoryDirs> {
    node: ClusterNode<P>,
    completed: Vec<Completed>,
}

impl<P: StorageProvider + Clone> TestNode<P> {
    /// Opens the node over `dirs` and lets it start serving at `now`.
    pub(crate) fn open(
        dirs: &P,
        config: BrokerConfig,
        now: Millis,
    ) -> Result<TestNode<P>, NodeError> {
        let voters = vec![NodeId(config.node_id)];
        let incarnation = INCARNATION.fetch_add(1, Ordering::Relaxed);
        let node = ClusterNode::open(
            dirs.clone(),
            NodeConfig::new(config, voters, incarnation),
            now,
        )?;
        let mut test = TestNode {
            node,
            completed: Vec::new(),
        };
        for _ in 0..SETTLE_STEPS {
            if test.node.is_serving() {
                break;
            }
            test.handle_tick(now);
        }
        assert!(
            test.node.is_serving(),
            "a one-node cluster serves once it has registered with itself"
        );
        Ok(test)
    }

    /// Creates `__consumer_offsets` as a group's first request would (through the
    /// controller) and lets it settle, so group tests start with a coordinator.
    pub(crate) fn create_offsets_topic(&mut self, now: Millis) {
        for _ in 0..SETTLE_STEPS {
            if self.node.broker_mut().ensure_offsets_topic(now).is_ok() {
                return;
            }
            self.handle_tick(now);
        }
        panic!("the offsets topic is created");
    }

    /// A request with nothing known of its connection.
    pub(crate) fn handle_request(&mut self, now: Millis, request: Request) -> Reply {
        self.handle_request_from(now, &RequestContext::default(), request)
    }

    /// A request; a park that settles at `now` comes back answered.
    pub(crate) fn handle_request_from(
        &mut self,
        now: Millis,
        context: &RequestContext,
        request: Request,
    ) -> Reply {
        let reply = self
            .node
            .handle_request(now, context, request)
            .expect("the node takes the request");
        self.collect();
        let Reply::Parked(id) = reply else {
            return reply;
        };
        // Joins and syncs wait for their group, fetches for data or time: those stay parked.
        if matches!(id, ParkedId::Fetch(_) | ParkedId::Group(_)) {
            return reply;
        }
        for _ in 0..SETTLE_STEPS {
            if let Some(answer) = self.take(id) {
                return answer;
            }
            self.handle_tick(now);
        }
        Reply::Parked(id)
    }

    /// The node's timers at `now`.
    pub(crate) fn handle_tick(&mut self, now: Millis) {
        self.node.handle_tick(now).expect("the node's timers run");
        self.collect();
    }

    /// When the node's next timer is due.
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        Some(self.node.next_deadline())
    }

    /// The parked fetches answered since the last call.
    pub(crate) fn poll_completed_fetches(&mut self) -> Vec<(ParkedId, FetchResponseData)> {
        self.drain(|c| match c {
            Completed::Fetch(id, data) => Ok((id, data)),
            other => Err(other),
        })
    }

    /// The other parked requests answered since the last call.
    pub(crate) fn poll_completed_responses(&mut self) -> Vec<(ParkedId, ResponseKind)> {
        self.drain(|c| match c {
            Completed::Response(id, response) => Ok((id, *response)),
            other => Err(other),
        })
    }

    /// Takes the answers `pick` accepts, keeping the others for the other poll.
    fn drain<T>(&mut self, mut pick: impl FnMut(Completed) -> Result<T, Completed>) -> Vec<T> {
        self.collect();
        let mut picked = Vec::new();
        for completed in std::mem::take(&mut self.completed) {
            match pick(completed) {
                Ok(answer) => picked.push(answer),
                Err(other) => self.completed.push(other),
            }
        }
        picked
    }

    /// Closes the logs cleanly.
    pub(crate) fn close(self) -> Result<(), NodeError> {
        self.node.close()
    }

    fn collect(&mut self) {
        self.completed.extend(self.node.poll_completed());
    }

    /// The answer to `id`, if it came.
    fn take(&mut self, id: ParkedId) -> Option<Reply> {
        let position = self.completed.iter().position(|c| match c {
            Completed::Fetch(i, _) | Completed::Response(i, _) => *i == id,
        })?;
        Some(match self.completed.remove(position) {
            Completed::Fetch(_, data) => Reply::Fetch(data),
            Completed::Response(_, response) => Reply::Response(response),
        })
    }
}

impl<P: StorageProvider> std::ops::Deref for TestNode<P> {
    type Target = Broker<P>;

    fn deref(&self) -> &Broker<P> {
        self.node.broker()
    }
}

impl<P: StorageProvider> std::ops::DerefMut for TestNode<P> {
    fn deref_mut(&mut self) -> &mut Broker<P> {
        self.node.broker_mut()
    }
}

/// A topic of a directory in 0.1.0's layout ([`write_0_1_directory`]).
pub(crate) struct OldTopic<'a> {
    /// The topic's name.
    pub name: &'a str,
    /// Its id.
    pub id: uuid::Uuid,
    /// Its partitions, each the record values of its log.
    pub partitions: Vec<Vec<String>>,
    /// Its config overrides.
    pub configs: &'a [(&'a str, &'a str)],
}

/// Writes what a 0.1.0 single broker left in its data directory: `meta/brook.meta` listing
/// the topics (and `__consumer_offsets` with `offsets_partitions` partitions, holding the
/// simple commits `(group, topic, partition, offset)`), and each partition's log, written
/// in epoch 0 as that broker wrote them — no metadata log.
pub(crate) fn write_0_1_directory(
    dirs: &MemoryDirs,
    topics: &[OldTopic<'_>],
    offsets_partitions: i32,
    commits: &[(&str, &str, i32, i64)],
    now: Millis,
) {
    use crate::group::{partition_for_group, GroupRecord, OffsetValue};
    use crate::log::{LogConfig, PartitionLog};
    use crate::record::{BatchBuilder, Record};
    use crate::storage::Storage;
    use crate::types::{LeaderEpoch, Offset};

    let mut stored = super::metadata::StoredMeta {
        cluster_id: "0-1-cluster".into(),
        next_producer_id: 1_000,
        topics: Default::default(),
    };
    let append = |dir: String, records: Vec<Record>| {
        let (mut log, _) = PartitionLog::open(dirs.dir(&dir), LogConfig::default(), now).unwrap();
        if !records.is_empty() {
            let mut builder = BatchBuilder::new(Offset(0));
            for record in &records {
                builder.push(record);
            }
            let mut bytes = builder.build();
            log.append(&mut bytes, LeaderEpoch(0), now).unwrap();
        }
        log.close().unwrap();
    };
    for topic in topics {
        let configs = (topic.configs.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let count = topic.partitions.len() as i32;
        stored
            .topics
            .insert(topic.name.to_string(), (topic.id, count, configs));
        for (index, values) in topic.partitions.iter().enumerate() {
            let records = (values.iter())
                .map(|value| Record {
                    timestamp: now.0,
                    key: None,
                    value: Some(value.clone().into_bytes()),
                    headers: Vec::new(),
                })
                .collect();
            append(super::partition_dir(topic.name, index as i32), records);
        }
    }
    let offsets_id = uuid::Uuid::from_u128(0x0ff5e75);
    let overrides = Broker::<MemoryDirs>::offsets_topic_overrides();
    (stored.topics).insert(
        super::OFFSETS_TOPIC.to_string(),
        (offsets_id, offsets_partitions, overrides),
    );
    for index in 0..offsets_partitions {
        let records = (commits.iter())
            .filter(|(group, ..)| partition_for_group(group, offsets_partitions) == index)
            .map(|&(group, topic, partition, offset)| {
                let record = GroupRecord::Offset {
                    group: group.into(),
                    topic: topic.into(),
                    partition,
                    value: Some(OffsetValue {
                        offset,
                        leader_epoch: -1,
                        metadata: String::new(),
                        commit_timestamp_ms: now.0,
                    }),
                };
                Record {
                    timestamp: now.0,
                    key: Some(record.encode_key()),
                    value: record.encode_value(),
                    headers: Vec::new(),
                }
            })
            .collect();
        append(super::partition_dir(super::OFFSETS_TOPIC, index), records);
    }
    dirs.dir(super::metadata::META_DIR)
        .write_atomic(super::metadata::META_FILE, stored.encode().as_bytes())
        .unwrap();
}

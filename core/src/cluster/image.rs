//! The cluster image: the state the metadata records build up, applied in log order.

use std::collections::BTreeMap;

use super::records::{BrokerRegistration, MetadataRecord, PartitionRecord};
use crate::types::NodeId;

/// A registered broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerImage {
    /// How it registered.
    pub registration: BrokerRegistration,
    /// Whether it is fenced: it may not lead or join an ISR.
    pub fenced: bool,
}

/// A topic and its partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    /// The topic's name.
    pub name: String,
    /// The topic's id.
    pub id: uuid::Uuid,
    /// Config overrides (Kafka names → values).
    pub configs: BTreeMap<String, String>,
    /// The partitions, by index.
    pub partitions: Vec<PartitionRecord>,
}

/// A record that does not fit the image it is applied to: the log is damaged or the
/// controller that wrote it is wrong. The record changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata record does not apply: {0}")]
pub struct ImageError(pub String);

/// The cluster as the metadata log describes it up to some offset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterImage {
    brokers: BTreeMap<NodeId, BrokerImage>,
    topics: BTreeMap<String, TopicImage>,
    names: BTreeMap<uuid::Uuid, String>,
    next_producer_id: i64,
    /// Dynamic broker configs by broker (-1: the default of every broker).
    broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
}

impl ClusterImage {
    /// An empty cluster.
    pub fn new() -> ClusterImage {
        ClusterImage::default()
    }

    /// The registered brokers, by node id.
    pub fn brokers(&self) -> &BTreeMap<NodeId, BrokerImage> {
        &self.brokers
    }

    /// Whether `node` is registered and not fenced.
    pub fn is_active(&self, node: NodeId) -> bool {
        self.brokers.get(&node).is_some_and(|b| !b.fenced)
    }

    /// The topics, by name.
    pub fn topics(&self) -> &BTreeMap<String, TopicImage> {
        &self.topics
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: uuid::Uuid) -> Option<&TopicImage> {
        self.topics.get(self.names.get(&id)?)
    }

    /// A partition by topic id and index.
    pub fn partition(&self, topic_id: uuid::Uuid, partition: i32) -> Option<&PartitionRecord> {
        let topic = self.topic_by_id(topic_id)?;
        topic.partitions.get(usize::try_from(partition).ok()?)
    }

    /// The dynamic configs set for `node` (-1: the cluster-wide default), without the
    /// default's values.
    pub fn broker_configs(&self, node: i32) -> Option<&BTreeMap<String, String>> {
        self.broker_configs.get(&node)
    }

    /// A dynamic broker config as it applies to `node`: its own value, else the
    /// cluster-wide default's.
    pub fn broker_config(&self, node: NodeId, key: &str) -> Option<&str> {
        let own = self.broker_configs.get(&node.0).and_then(|c| c.get(key));
        let default = || self.broker_configs.get(&-1).and_then(|c| c.get(key));
        own.or_else(default).map(String::as_str)
    }

    /// The next producer id InitProducerId may hand out.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// Records that rebuild this image from an empty one (a snapshot of the metadata log).
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        for broker in self.brokers.values() {
            records.push(MetadataRecord::RegisterBroker(broker.registration.clone()));
            if !broker.fenced {
                let node = broker.registration.node;
                records.push(MetadataRecord::UnfenceBroker { node });
            }
        }
        for topic in self.topics.values() {
            records.push(MetadataRecord::Topic {
                name: topic.name.clone(),
                id: topic.id,
                configs: topic.configs.clone(),
            });
            for partition in &topic.partitions {
                records.push(MetadataRecord::Partition(partition.clone()));
            }
        }
        if self.next_producer_id > 0 {
            let next = self.next_producer_id;
            records.push(MetadataRecord::ProducerIds { next });
        }
        for (&node, configs) in &self.broker_configs {
            let configs = configs.clone();
            records.push(MetadataRecord::BrokerConfigs { node, configs });
        }
        records
    }

    /// Applies one record.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), ImageError> {
        match record {
            MetadataRecord::RegisterBroker(registration) => {
                let broker = BrokerImage {
                    registration: registration.clone(),
                    fenced: true,
                };
                self.brokers.insert(registration.node, broker);
            }
            MetadataRecord::FenceBroker { node } | MetadataRecord::UnfenceBroker { node } => {
                let broker = self
                    .brokers
                    .get_mut(node)
                    .ok_or_else(|| ImageError(format!("broker {} is not registered", node.0)))?;
                broker.fenced = matches!(record, MetadataRecord::FenceBroker { .. });
            }
            MetadataRecord::Topic { name, id, configs } => {
                if self.topics.contains_key(name) || self.names.contains_key(id) {
                    return Err(ImageError(format!("topic {name} exists")));
                }
                self.names.insert(*id, name.clone());
                let topic = TopicImage {
                    name: name.clone(),
                    id: *id,
                    configs: configs.clone(),
                    partitions: Vec::new(),
                };
                self.topics.insert(name.clone(), topic);
            }
            MetadataRecord::Partition(partition) => self.apply_partition(partition)?,
            MetadataRecord::RemoveTopic { id } => {
                let name = self
                    .names
                    .remove(id)
                    .ok_or_else(|| ImageError(format!("no topic with id {id}")))?;
                self.topics.remove(&name);
            }
            MetadataRecord::TopicConfigs { id, configs } => {
                let name = self
                    .names
                    .get(id)
                    .ok_or_else(|| ImageError(format!("no topic with id {id}")))?;
                let topic = self.topics.get_mut(name).expect("names and topics agree");
                topic.configs = configs.clone();
            }
            MetadataRecord::UnregisterBroker { node } => {
                let holds = (self.topics.values())
                    .flat_map(|t| &t.partitions)
                    .any(|p| p.replicas.contains(node));
                if holds || self.brokers.remove(node).is_none() {
                    return Err(ImageError(format!(
                        "broker {} is not registered or holds replicas",
                        node.0
                    )));
                }
                self.broker_configs.remove(&node.0);
            }
            MetadataRecord::BrokerConfigs { node, configs } => {
                if *node < -1 {
                    return Err(ImageError(format!("broker configs of node {node}")));
                }
                match configs.is_empty() {
                    true => self.broker_configs.remove(node),
                    false => self.broker_configs.insert(*node, configs.clone()),
                };
            }
            MetadataRecord::ProducerIds { next } => {
                if *next < self.next_producer_id {
                    return Err(ImageError(format!(
                        "producer ids go back from {} to {next}",
                        self.next_producer_id
                    )));
                }
                self.next_producer_id = *next;
            }
        }
        Ok(())
    }

    fn apply_partition(&mut self, partition: &PartitionRecord) -> Result<(), ImageError> {
        let name = self
            .names
            .get(&partition.topic_id)
            .ok_or_else(|| ImageError(format!("no topic with id {}", partition.topic_id)))?;
        let topic = self.topics.get_mut(name).expect("names and topics agree");
        let index = usize::try_from(partition.partition)
            .map_err(|_| ImageError(format!("partition {}", partition.partition)))?;
        let consistent = !partition.replicas.is_empty()
            && partition.isr.iter().all(|n| partition.replicas.contains(n))
            && partition.elr.iter().all(|n| partition.replicas.contains(n))
            && partition.elr.iter().all(|n| !partition.isr.contains(n))
            && partition.leader.is_none_or(|l| partition.isr.contains(&l))
            && partition
                .adding
                .iter()
                .all(|n| partition.replicas.contains(n))
            && partition
                .removing
                .iter()
                .all(|n| partition.replicas.contains(n))
            && partition
                .adding
                .iter()
                .all(|n| !partition.removing.contains(n))
            && partition.removing.len() < partition.replicas.len();
        if !consistent {
            return Err(ImageError(format!("inconsistent {partition:?}")));
        }
        match index.cmp(&topic.partitions.len()) {
            std::cmp::Ordering::Less => {
                let current = &mut topic.partitions[index];
                if partition.partition_epoch <= current.partition_epoch
                    || partition.leader_epoch < current.leader_epoch
                {
                    return Err(ImageError(format!(
                        "{partition:?} does not follow {current:?}"
                    )));
                }
                *current = partition.clone();
            }
            std::cmp::Ordering::Equal => topic.partitions.push(partition.clone()),
            std::cmp::Ordering::Greater => {
                return Err(ImageError(format!(
                    "partition {index} of {name} before partition {}",
                    topic.partitions.len()
                )))
            }
        }
        Ok(())
    }
}

//! The cluster as one client sees it: the bootstrap list, a connection per broker address,
//! and the metadata cache (brokers, topics, partition leaders), refreshed when an answer or a
//! failure says it may be stale.
//!
//! Every client object (producer, consumer, admin) owns one `Network`, so a consumer's long
//! poll never holds up a producer's request.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};

use crate::connection::Connection;
use crate::error::Error;

/// Settings shared by every client's network layer.
#[derive(Clone, Debug)]
pub(crate) struct NetworkConfig {
    /// HOST:PORT addresses to ask for metadata first.
    pub bootstrap: Vec<String>,
    /// The client id in every request header.
    pub client_id: String,
    /// How long one request may take (connect included) before it fails.
    pub request_timeout: Duration,
}

impl NetworkConfig {
    /// Parses a comma-separated bootstrap list.
    pub fn new(bootstrap: &str, client_id: &str, request_timeout_ms: u64) -> Result<Self, Error> {
        let bootstrap: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if bootstrap.is_empty() {
            return Err(Error::Config("bootstrap.servers is empty".into()));
        }
        if request_timeout_ms == 0 {
            return Err(Error::Config("request.timeout.ms must be positive".into()));
        }
        Ok(NetworkConfig {
            bootstrap,
            client_id: client_id.to_string(),
            request_timeout: Duration::from_millis(request_timeout_ms),
        })
    }
}

/// One partition as the metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition index.
    pub partition: i32,
    /// The leader's node id, or -1 when there is none.
    pub leader: i32,
    /// The leader epoch, or -1 when the broker does not say.
    pub leader_epoch: i32,
    /// Node ids of all replicas.
    pub replicas: Vec<i32>,
    /// Node ids of the in-sync replicas.
    pub isr: Vec<i32>,
}

/// One topic as the metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// Its topic id, when the broker sent one (Metadata v10+, not nil).
    pub topic_id: Option<String>,
    /// Whether it is an internal topic (`__consumer_offsets`, …).
    pub is_internal: bool,
    /// Its partitions, by index.
    pub partitions: Vec<PartitionInfo>,
}

/// The cached cluster image.
#[derive(Debug, Default)]
struct ClusterImage {
    /// Node id → HOST:PORT.
    brokers: HashMap<i32, String>,
    controller: Option<i32>,
    topics: BTreeMap<String, TopicInfo>,
    /// Set when an error suggests leaders moved; the next leader lookup refreshes.
    stale: bool,
}

/// A connection slot: `None` until connected, and again after a failure.
type Slot = Arc<tokio::sync::Mutex<Option<Connection>>>;

/// Connections and metadata of one client.
#[derive(Debug)]
pub(crate) struct Network {
    config: NetworkConfig,
    image: Mutex<ClusterImage>,
    /// Broker address → its connection.
    slots: Mutex<HashMap<String, Slot>>,
}

impl Network {
    /// A network with no connection yet.
    pub fn new(config: NetworkConfig) -> Network {
        Network {
            config,
            image: Mutex::new(ClusterImage::default()),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Sends the request `build(version)` to `addr` in the newest version both sides speak
    /// within `min..=max`, waiting at most the request timeout plus `extra` (a long poll's
    /// wait). A failed connection is dropped so the next call reconnects.
    pub async fn call<R: Request>(
        &self,
        addr: &str,
        (min, max): (i16, i16),
        extra: Duration,
        build: impl FnOnce(i16) -> R,
    ) -> Result<R::Response, Error> {
        let slot = self.slot(addr);
        let mut guard = slot.lock().await;
        let connection = self.connected(addr, &mut guard).await?;
        let version = connection.version::<R>(min, max)?;
        let request = build(version);
        let timeout = self.config.request_timeout + extra;
        match tokio::time::timeout(timeout, connection.call(version, &request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => {
                // After a socket or framing failure the stream's position is unknown.
                *guard = None;
                Err(err)
            }
            Err(_) => {
                *guard = None;
                Err(Error::Timeout(format!(
                    "no answer from {addr} within {timeout:?}"
                )))
            }
        }
    }

    /// Sends a request that gets no answer (Produce with acks=0) to `addr`.
    pub async fn send_only<R: Request>(
        &self,
        addr: &str,
        (min, max): (i16, i16),
        build: impl FnOnce(i16) -> R,
    ) -> Result<(), Error> {
        let slot = self.slot(addr);
        let mut guard = slot.lock().await;
        let connection = self.connected(addr, &mut guard).await?;
        let version = connection.version::<R>(min, max)?;
        let request = build(version);
        let result = connection.send_only(version, &request).await;
        if result.is_err() {
            *guard = None;
        }
        result
    }

    /// Like [`Network::call`], to any broker that answers: known brokers first, then the
    /// bootstrap list. Returns the last failure if none answers.
    pub async fn call_any<R: Request>(
        &self,
        versions: (i16, i16),
        build: impl Fn(i16) -> R,
    ) -> Result<R::Response, Error> {
        let mut last_error = Error::Connection {
            addr: self.config.bootstrap.join(","),
            reason: "no broker to ask".into(),
        };
        for addr in self.candidate_addrs() {
            match self.call(&addr, versions, Duration::ZERO, &build).await {
                Ok(response) => return Ok(response),
                Err(err @ (Error::Connection { .. } | Error::Timeout(_))) => last_error = err,
                Err(err) => return Err(err),
            }
        }
        Err(last_error)
    }

    /// Like [`Network::call_any`], to the controller when it is known (admin requests).
    pub async fn call_controller<R: Request>(
        &self,
        versions: (i16, i16),
        build: impl Fn(i16) -> R,
    ) -> Result<R::Response, Error> {
        let controller = {
            let image = self.image.lock().expect("metadata lock");
            image
                .controller
                .and_then(|id| image.brokers.get(&id).cloned())
        };
        if let Some(addr) = controller {
            match self.call(&addr, versions, Duration::ZERO, &build).await {
                Ok(response) => return Ok(response),
                Err(err) if !err.is_retriable() => return Err(err),
                Err(_) => self.mark_stale(),
            }
        }
        self.call_any(versions, build).await
    }

    /// Asks for metadata of `topics` (all topics when `None`) and merges it into the cache:
    /// brokers and controller replaced, the named topics updated or forgotten.
    pub async fn refresh(
        &self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<MetadataResponse, Error> {
        let response = self
            .call_any((0, 12), |version| {
                metadata_request(version, topics, allow_auto_create)
            })
            .await?;
        let mut image = self.image.lock().expect("metadata lock");
        image.brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        image.controller = Some(response.controller_id.0).filter(|&id| id >= 0);
        if topics.is_none() {
            image.topics.clear();
        }
        for topic in &response.topics {
            let Some(name) = topic.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            if topic.error_code != 0 {
                image.topics.remove(&name);
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = topic
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: if p.error_code == 0 { p.leader_id.0 } else { -1 },
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
                    isr: p.isr_nodes.iter().map(|n| n.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let info = TopicInfo {
                name: name.clone(),
                topic_id: (!topic.topic_id.is_nil()).then(|| topic.topic_id.to_string()),
                is_internal: topic.is_internal,
                partitions,
            };
            image.topics.insert(name, info);
        }
        image.stale = false;
        Ok(response)
    }

    /// Notes that leaders may have moved; the next leader lookup refreshes first.
    pub fn mark_stale(&self) {
        self.image.lock().expect("metadata lock").stale = true;
    }

    /// The cached metadata of `topic`, refreshing once if it is unknown or stale.
    pub async fn topic(&self, topic: &str, allow_auto_create: bool) -> Result<TopicInfo, Error> {
        if let Some(info) = self.cached_topic(topic) {
            return Ok(info);
        }
        // A stale cache is refreshed for every known topic, not only this one.
        let mut topics: Vec<String> = {
            let image = self.image.lock().expect("metadata lock");
            image.topics.keys().cloned().collect()
        };
        if !topics.iter().any(|t| t == topic) {
            topics.push(topic.to_string());
        }
        let response = self.refresh(Some(&topics), allow_auto_create).await?;
        if let Some(info) = self.cached_topic(topic) {
            return Ok(info);
        }
        let code = response
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
            .map_or(3, |t| t.error_code);
        Err(Error::kafka(code, format!("metadata for topic {topic}")))
    }

    /// The partition count of `topic` from the cache, stale or not; `None` if unknown.
    pub fn cached_partition_count(&self, topic: &str) -> Option<i32> {
        let image = self.image.lock().expect("metadata lock");
        image
            .topics
            .get(topic)
            .map(|t| t.partitions.len() as i32)
            .filter(|&n| n > 0)
    }

    /// The cached topic unless the cache is stale or has no partitions for it.
    fn cached_topic(&self, topic: &str) -> Option<TopicInfo> {
        let image = self.image.lock().expect("metadata lock");
        if image.stale {
            return None;
        }
        image
            .topics
            .get(topic)
            .filter(|t| !t.partitions.is_empty())
            .cloned()
    }

    /// The address of the leader of `topic`-`partition`, refreshing metadata if needed.
    pub async fn leader_addr(&self, topic: &str, partition: i32) -> Result<String, Error> {
        let info = self.topic(topic, false).await?;
        let part = info
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .ok_or_else(|| Error::kafka(3, format!("{topic}-{partition} does not exist")))?;
        let image = self.image.lock().expect("metadata lock");
        match image.brokers.get(&part.leader) {
            Some(addr) => Ok(addr.clone()),
            None => {
                drop(image);
                self.mark_stale();
                Err(Error::kafka(
                    5,
                    format!("{topic}-{partition} has no leader"),
                ))
            }
        }
    }

    /// The address of every broker the metadata named, sorted; the bootstrap list before
    /// any metadata arrived.
    pub fn broker_addrs(&self) -> Vec<String> {
        let image = self.image.lock().expect("metadata lock");
        let mut addrs: Vec<String> = image.brokers.values().cloned().collect();
        if addrs.is_empty() {
            addrs = self.config.bootstrap.clone();
        }
        addrs.sort();
        addrs.dedup();
        addrs
    }

    /// Every broker the metadata named, as (node id, HOST:PORT) sorted by id; empty before
    /// any metadata arrived.
    pub fn brokers(&self) -> Vec<(i32, String)> {
        let image = self.image.lock().expect("metadata lock");
        let mut brokers: Vec<(i32, String)> = image
            .brokers
            .iter()
            .map(|(&id, addr)| (id, addr.clone()))
            .collect();
        brokers.sort();
        brokers
    }

    /// Broker addresses to try for requests any broker can answer.
    fn candidate_addrs(&self) -> Vec<String> {
        let image = self.image.lock().expect("metadata lock");
        let mut addrs: Vec<String> = image.brokers.values().cloned().collect();
        addrs.sort();
        for addr in &self.config.bootstrap {
            if !addrs.contains(addr) {
                addrs.push(addr.clone());
            }
        }
        addrs
    }

    /// The slot's connection, opened first if the slot is empty.
    async fn connected<'a>(
        &self,
        addr: &str,
        slot: &'a mut Option<Connection>,
    ) -> Result<&'a mut Connection, Error> {
        if slot.is_none() {
            let connection =
                Connection::connect(addr, &self.config.client_id, self.config.request_timeout)
                    .await?;
            *slot = Some(connection);
        }
        Ok(slot.as_mut().expect("connected above"))
    }

    fn slot(&self, addr: &str) -> Slot {
        let mut slots = self.slots.lock().expect("connection table lock");
        slots.entry(addr.to_string()).or_default().clone()
    }
}

/// A Metadata request for `topics` (all when `None`) in `version`. v0 means "all" by an
/// empty list and cannot refuse auto-creation, so those fields are set only where they exist.
fn metadata_request(
    version: i16,
    topics: Option<&[String]>,
    allow_auto_create: bool,
) -> MetadataRequest {
    let topics = match topics {
        None if version == 0 => Some(Vec::new()),
        None => None,
        Some(names) => Some(
            names
                .iter()
                .map(|name| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                })
                .collect(),
        ),
    };
    MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(allow_auto_create || version < 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn metadata_request_encodes_in_every_version() {
        let names = ["t".to_string()];
        for version in 0..=12 {
            for topics in [None, Some(&names[..])] {
                for auto in [false, true] {
                    let request = metadata_request(version, topics, auto);
                    let mut buf = bytes::BytesMut::new();
                    request
                        .encode(&mut buf, version)
                        .unwrap_or_else(|e| panic!("v{version}: {e}"));
                }
            }
        }
    }

    #[test]
    fn bootstrap_list_is_parsed_and_checked() {
        let config = NetworkConfig::new(" a:1, b:2 ,", "c", 1000).expect("valid");
        assert_eq!(config.bootstrap, vec!["a:1", "b:2"]);
        assert!(NetworkConfig::new(" , ", "c", 1000).is_err());
        assert!(NetworkConfig::new("a:1", "c", 0).is_err());
    }
}

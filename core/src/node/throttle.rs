//! Replication throttles (Kafka's `leader.replication.throttled.rate` and
//! `follower.replication.throttled.rate`): byte rates for the catch-up of replicas a
//! reassignment adds, so a move does not starve the partitions' clients or in-sync
//! followers. Only the replicas in a partition's `adding` list that are not yet in sync are
//! throttled (Kafka throttles the replicas its `*.replication.throttled.replicas` topic
//! configs list, which `kafka-reassign-partitions --throttle` sets to the moving ones, and
//! never an in-sync one).
//!
//! Each throttle is a token bucket holding at most a second of its rate. A leader leaves a
//! throttled partition out of a follower's fetch while its bucket is empty (the follower
//! asks again), and asks no more than the bucket holds otherwise; a follower does the same
//! with the fetches it sends. What is sent is taken from the bucket afterwards — the first
//! batch of a fetch goes even when larger than what is left, so the bucket may go below
//! empty (by a batch at most) and the average rate still holds.

use kafka_protocol::messages::{FetchRequest, FetchResponse};

use super::ClusterNode;
use crate::broker::StorageProvider;
use crate::cluster::ClusterImage;
use crate::protocol::FetchResponseData;
use crate::types::{Millis, NodeId};

/// One byte-rate throttle. See the module doc.
#[derive(Clone, Debug, Default)]
pub(super) struct Throttle {
    /// Bytes that may go now (negative: owed).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Option<Millis>,
}

impl Throttle {
    /// The bytes that may go now at `rate` bytes per second.
    pub(super) fn available(&mut self, now: Millis, rate: u64) -> f64 {
        let rate = rate as f64;
        let elapsed = self.at.map_or(1_000, |at| (now.0 - at.0).max(0)) as f64;
        self.tokens = (self.tokens + rate * elapsed / 1_000.0).min(rate);
        self.at = Some(now);
        self.tokens
    }

    /// `bytes` went.
    pub(super) fn take(&mut self, bytes: u64) {
        self.tokens -= bytes as f64;
    }
}

/// Whether `node`'s replica of `topic`'s `partition` is one a reassignment adds and that
/// is not in sync yet.
fn adding(image: &ClusterImage, topic: &str, partition: i32, node: NodeId) -> bool {
    let partition = (image.topic(topic)).and_then(|t| t.partitions.get(partition as usize));
    partition.is_some_and(|p| p.adding.contains(&node) && !p.isr.contains(&node))
}

/// Leaves out of `request` the partitions `throttled` names while `tokens` is spent, and
/// asks no more than `tokens` of the others it names.
fn limit_fetch(request: &mut FetchRequest, tokens: f64, throttled: impl Fn(&str, i32) -> bool) {
    let cap = tokens.clamp(0.0, f64::from(i32::MAX)) as i32;
    for topic in &mut request.topics {
        let name = topic.topic.0.as_str();
        topic.partitions.retain_mut(|p| {
            if !throttled(name, p.partition) {
                return true;
            }
            p.partition_max_bytes = p.partition_max_bytes.min(cap);
            cap > 0
        });
    }
    request.topics.retain(|t| !t.partitions.is_empty());
}

impl<P: StorageProvider> ClusterNode<P> {
    /// The rate of a replication throttle for this broker, if set.
    fn throttle_rate(&self, key: &str) -> Option<u64> {
        let value = self.image().broker_config(self.node, key)?;
        value.parse().ok()
    }

    /// As a leader: leaves out of `follower`'s fetch the partitions it catches up as a new
    /// replica while the leader's throttle is spent.
    pub(super) fn throttle_follower_fetch(
        &mut self,
        now: Millis,
        follower: NodeId,
        request: &mut FetchRequest,
    ) {
        let Some(rate) = self.throttle_rate(crate::broker::LEADER_THROTTLE) else {
            return;
        };
        let tokens = self.leader_throttle.available(now, rate);
        let image = self.broker.image();
        limit_fetch(request, tokens, |name, p| adding(image, name, p, follower));
    }

    /// As a leader: takes what a fetch answer sends `follower` of throttled partitions.
    pub(super) fn count_throttled_sent(&mut self, follower: NodeId, data: &FetchResponseData) {
        if self.throttle_rate(crate::broker::LEADER_THROTTLE).is_none() {
            return;
        }
        let image = self.broker.image();
        let bytes: u64 = (data.topics.iter())
            .flat_map(|t| t.partitions.iter().map(move |p| (t.name.as_str(), p)))
            .filter(|(name, p)| adding(image, name, p.partition_index, follower))
            .flat_map(|(_, p)| p.records.iter().map(|r| r.length))
            .sum();
        self.leader_throttle.take(bytes);
    }

    /// As a follower: leaves out of a fetch the partitions this node catches up as a new
    /// replica while its throttle is spent.
    pub(super) fn throttle_own_fetch(&mut self, now: Millis, request: &mut FetchRequest) {
        let Some(rate) = self.throttle_rate(crate::broker::FOLLOWER_THROTTLE) else {
            return;
        };
        let tokens = self.follower_throttle.available(now, rate);
        let (image, node) = (self.broker.image(), self.node);
        limit_fetch(request, tokens, |name, p| adding(image, name, p, node));
    }

    /// As a follower: takes what a leader's answer brought of throttled partitions.
    pub(super) fn count_throttled_received(&mut self, response: &FetchResponse) {
        if self
            .throttle_rate(crate::broker::FOLLOWER_THROTTLE)
            .is_none()
        {
            return;
        }
        let (image, node) = (self.broker.image(), self.node);
        let bytes: u64 = (response.responses.iter())
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.0.as_str(), p)))
            .filter(|(name, p)| adding(image, name, p.partition_index, node))
            .map(|(_, p)| p.records.as_ref().map_or(0, |r| r.len() as u64))
            .sum();
        self.follower_throttle.take(bytes);
    }
}

//! The "consumer" embedded protocol of the classic group protocol, and the range assignor.
//!
//! A consumer's JoinGroup metadata is a `ConsumerProtocolSubscription` and the leader's
//! SyncGroup assignments are `ConsumerProtocolAssignment`s, each encoded as a 2-byte version
//! followed by the struct in that version (Kafka's `ConsumerProtocol`). Versions 0–3 exist;
//! newer versions only append fields, so a newer one is read as the newest known (as Java
//! does). The range assignor gives each member a contiguous range of every topic it
//! subscribes to, members sorted by id, the first `partitions % members` getting one extra —
//! Kafka's `RangeAssignor`, so a group mixing Brook and Java consumers agrees.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

use super::topics::topic_name;

/// The protocol type of consumer groups.
pub const PROTOCOL_TYPE: &str = "consumer";
/// The assignor's name in JoinGroup and SyncGroup.
pub const RANGE: &str = "range";
/// The version of the embedded structs this client writes (all readers understand it).
const WRITE_VERSION: i16 = 0;

/// One member's partitions: topic → partition indexes, ascending.
pub type Assignment = BTreeMap<String, Vec<i32>>;

/// Why embedded protocol bytes could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed consumer protocol {what}: {reason}")]
pub struct ProtocolError {
    /// "subscription" or "assignment".
    what: &'static str,
    /// What is wrong.
    reason: String,
}

/// Encodes a subscription to `topics`.
pub fn encode_subscription(topics: &[String]) -> Bytes {
    let subscription = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect(),
    );
    encode_versioned(&subscription)
}

/// The topics a member's subscription names.
pub fn decode_subscription(bytes: &[u8]) -> Result<Vec<String>, ProtocolError> {
    let subscription: ConsumerProtocolSubscription = decode_versioned(bytes, "subscription")?;
    Ok(subscription
        .topics
        .iter()
        .map(|t| t.as_str().to_string())
        .collect())
}

/// Encodes an assignment.
pub fn encode_assignment(assignment: &Assignment) -> Bytes {
    let topics = assignment
        .iter()
        .map(|(topic, partitions)| {
            AssignedTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(partitions.clone())
        })
        .collect();
    encode_versioned(&ConsumerProtocolAssignment::default().with_assigned_partitions(topics))
}

/// Decodes an assignment; empty bytes (a member given nothing) are an empty assignment.
pub fn decode_assignment(bytes: &[u8]) -> Result<Assignment, ProtocolError> {
    if bytes.is_empty() {
        return Ok(Assignment::new());
    }
    let decoded: ConsumerProtocolAssignment = decode_versioned(bytes, "assignment")?;
    let mut assignment = Assignment::new();
    for topic in decoded.assigned_partitions {
        let partitions = assignment.entry(topic.topic.0.to_string()).or_default();
        partitions.extend(topic.partitions);
        partitions.sort_unstable();
        partitions.dedup();
    }
    Ok(assignment)
}

/// Kafka's range assignment. `subscriptions` maps member id → subscribed topics;
/// `partition_counts` maps topic → partition count (topics missing here are not assigned).
/// Every member appears in the result, possibly with nothing.
pub fn assign_range(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let mut result: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|member| (member.clone(), Assignment::new()))
        .collect();
    for (topic, &count) in partition_counts {
        // BTreeMap keys: members already sorted by id, as Kafka sorts them.
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(member, _)| member)
            .collect();
        if members.is_empty() || count <= 0 {
            continue;
        }
        let member_count = members.len() as i32;
        let per_member = count / member_count;
        let extra = count % member_count;
        for (index, member) in members.into_iter().enumerate() {
            let index = index as i32;
            let start = index * per_member + index.min(extra);
            let length = per_member + i32::from(index < extra);
            if length == 0 {
                continue;
            }
            let partitions: Vec<i32> = (start..start + length).collect();
            result
                .get_mut(member)
                .expect("every member has an entry")
                .insert(topic.clone(), partitions);
        }
    }
    result
}

fn encode_versioned<M: Encodable>(message: &M) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(WRITE_VERSION);
    message
        .encode(&mut buf, WRITE_VERSION)
        .expect("version 0 of the consumer protocol encodes any value");
    buf.freeze()
}

fn decode_versioned<M: Decodable + Message>(
    bytes: &[u8],
    what: &'static str,
) -> Result<M, ProtocolError> {
    let error = |reason: String| ProtocolError { what, reason };
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return Err(error(format!("{} bytes hold no version", bytes.len())));
    }
    let version = buf.get_i16();
    if version < 0 {
        return Err(error(format!("version {version}")));
    }
    let version = version.min(M::VERSIONS.max);
    M::decode(&mut buf, version).map_err(|err| error(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriptions(members: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        members
            .iter()
            .map(|(m, topics)| {
                (
                    m.to_string(),
                    topics.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn assignor_subscription_round_trips_with_version_prefix() {
        let bytes = encode_subscription(&["a".to_string(), "b".to_string()]);
        assert_eq!(&bytes[..2], &[0, 0], "2-byte version prefix");
        assert_eq!(decode_subscription(&bytes).unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn assignor_reads_newer_versions_it_knows_a_prefix_of() {
        // A v3 subscription as a Java client writes it.
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_generation_id(4);
        let mut buf = BytesMut::new();
        buf.put_i16(3);
        subscription.encode(&mut buf, 3).unwrap();
        assert_eq!(decode_subscription(&buf).unwrap(), vec!["t"]);
        assert!(decode_subscription(&[0]).is_err());
    }

    #[test]
    fn assignor_assignment_round_trips_and_empty_is_nothing() {
        let mut assignment = Assignment::new();
        assignment.insert("t".to_string(), vec![0, 2]);
        let bytes = encode_assignment(&assignment);
        assert_eq!(decode_assignment(&bytes).unwrap(), assignment);
        assert!(decode_assignment(&[]).unwrap().is_empty());
    }

    #[test]
    fn assignor_range_splits_like_kafka() {
        let subs = subscriptions(&[("m2", &["t", "u"]), ("m1", &["t"]), ("m3", &["t"])]);
        let counts: BTreeMap<String, i32> = [("t".to_string(), 7), ("u".to_string(), 2)].into();
        let result = assign_range(&subs, &counts);
        assert_eq!(result["m1"]["t"], vec![0, 1, 2]);
        assert_eq!(result["m2"]["t"], vec![3, 4]);
        assert_eq!(result["m3"]["t"], vec![5, 6]);
        assert_eq!(result["m2"]["u"], vec![0, 1]);
        assert!(!result["m1"].contains_key("u"));
    }

    #[test]
    fn assignor_range_more_members_than_partitions() {
        let subs = subscriptions(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let counts: BTreeMap<String, i32> = [("t".to_string(), 2)].into();
        let result = assign_range(&subs, &counts);
        assert_eq!(result["a"]["t"], vec![0]);
        assert_eq!(result["b"]["t"], vec![1]);
        assert!(result["c"].is_empty());
        assert_eq!(result.len(), 3);
    }
}

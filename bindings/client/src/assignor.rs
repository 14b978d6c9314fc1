//! Partition assignors of the classic consumer protocol and the byte formats the group
//! members exchange through the broker: `ConsumerProtocolSubscription` (in JoinGroup) and
//! `ConsumerProtocolAssignment` (in SyncGroup), each a 2-byte version then the body.
//!
//! The group leader runs the assignor; the broker only relays bytes. Everything here is pure
//! (no I/O, no clock), so it is unit-tested against the Java client's arithmetic.
//!
//! The cooperative-sticky assignor (KIP-429) keeps partitions with the members that own them
//! (their subscriptions say which), balances the rest, and holds back every partition that
//! changes owner: its old owner revokes it and rejoins, and the next round assigns it. The
//! plain (eager) `sticky` assignor is not here.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition as AssignedTopic,
};
use kafka_protocol::messages::consumer_protocol_subscription::{
    ConsumerProtocolSubscription, TopicPartition as OwnedTopic,
};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::error::Error;
use crate::TopicPartition;

/// The subscription version this client writes: v1 (owned partitions) is read by every
/// Kafka client since 2.4 and older ones ignore its tail.
const SUBSCRIPTION_VERSION: i16 = 1;
/// The assignment version this client writes (v0 is read by every client).
const ASSIGNMENT_VERSION: i16 = 0;
/// The newest version kafka-protocol decodes; newer bodies only append fields.
const CONSUMER_PROTOCOL_VERSION_MAX: i16 = 3;

/// How the group leader spreads partitions over members (`partition.assignment.strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assignor {
    /// Per topic, consecutive ranges of partitions to members sorted by id (Java's
    /// `RangeAssignor`, the default).
    Range,
    /// All subscribed partitions dealt round-robin over members sorted by id (Java's
    /// `RoundRobinAssignor`).
    RoundRobin,
    /// Sticky and balanced, with incremental (cooperative) rebalances: members keep their
    /// partitions through a rebalance (Java's `CooperativeStickyAssignor`, KIP-429).
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name in JoinGroup, shared with the Java client.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Whether members keep their partitions through a rebalance (revoking only what moves)
    /// rather than revoking everything first.
    pub fn is_cooperative(self) -> bool {
        self == Assignor::CooperativeSticky
    }

    /// Parses a protocol name or Java class name (`range`,
    /// `org.apache.kafka.clients.consumer.RangeAssignor`, `roundrobin`, …).
    pub fn parse(value: &str) -> Result<Assignor, Error> {
        let short = value.trim().rsplit('.').next().unwrap_or_default();
        match short.to_ascii_lowercase().as_str() {
            "range" | "rangeassignor" => Ok(Assignor::Range),
            "roundrobin" | "roundrobinassignor" => Ok(Assignor::RoundRobin),
            "cooperative-sticky" | "cooperativestickyassignor" => Ok(Assignor::CooperativeSticky),
            _ => Err(Error::Config(format!(
                "partition.assignment.strategy {value:?} is not supported \
                 (range, roundrobin, cooperative-sticky)"
            ))),
        }
    }

    /// The assignment of every member: `members` maps member id → its subscription,
    /// `partition_counts` topic → partition count (topics missing there are skipped).
    /// Every member appears in the answer, with no partitions if need be.
    pub(crate) fn assign(
        self,
        members: &BTreeMap<String, MemberSubscription>,
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let mut out: BTreeMap<String, Vec<TopicPartition>> = members
            .keys()
            .map(|member| (member.clone(), Vec::new()))
            .collect();
        match self {
            Assignor::Range => assign_range(members, partition_counts, &mut out),
            Assignor::RoundRobin => assign_round_robin(members, partition_counts, &mut out),
            Assignor::CooperativeSticky => {
                assign_sticky(members, partition_counts, &mut out);
                hold_back_moving_partitions(members, &mut out);
            }
        }
        for partitions in out.values_mut() {
            partitions.sort();
        }
        debug_assert_eq!(out.len(), members.len());
        out
    }
}

/// Java's RangeAssignor: for each topic, members subscribed to it sorted by id; the first
/// `count % members` get one partition more than `count / members`.
fn assign_range(
    members: &BTreeMap<String, MemberSubscription>,
    partition_counts: &BTreeMap<String, i32>,
    out: &mut BTreeMap<String, Vec<TopicPartition>>,
) {
    for (topic, &count) in partition_counts {
        // BTreeMap keys are sorted, so the subscribers are in member-id order.
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, subscription)| subscription.topics.contains(topic))
            .map(|(member, _)| member)
            .collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        let member_count = subscribers.len() as i32;
        let per_member = count / member_count;
        let extra = count % member_count;
        for (index, member) in subscribers.into_iter().enumerate() {
            let index = index as i32;
            let start = per_member * index + index.min(extra);
            let length = per_member + i32::from(index < extra);
            let assigned = out.get_mut(member).expect("every member has an entry");
            assigned.extend((start..start + length).map(|p| TopicPartition::new(topic, p)));
        }
    }
}

/// Java's RoundRobinAssignor: every subscribed partition in (topic, partition) order goes to
/// the next member (circularly, sorted by id) that subscribes to its topic.
fn assign_round_robin(
    members: &BTreeMap<String, MemberSubscription>,
    partition_counts: &BTreeMap<String, i32>,
    out: &mut BTreeMap<String, Vec<TopicPartition>>,
) {
    let ids: Vec<&String> = members.keys().collect();
    if ids.is_empty() {
        return;
    }
    let subscribed: BTreeSet<&String> = members.values().flat_map(|s| &s.topics).collect();
    let mut next = 0usize;
    for (topic, &count) in partition_counts {
        if !subscribed.contains(topic) {
            continue;
        }
        for partition in 0..count.max(0) {
            // Some member subscribes to `topic`, so this finds one within a lap.
            let member = (0..ids.len())
                .map(|step| ids[(next + step) % ids.len()])
                .find(|id| members[*id].topics.contains(topic))
                .expect("a subscriber of the topic");
            let position = ids.iter().position(|id| *id == member).expect("listed");
            next = position + 1;
            let assigned = out.get_mut(member).expect("every member has an entry");
            assigned.push(TopicPartition::new(topic, partition));
        }
    }
}

/// The sticky half of cooperative-sticky: every partition owned by exactly one member that
/// still subscribes to it stays there; the rest go to the least loaded subscriber; then
/// single partitions move from the most to the least loaded member until no member has two
/// more than another that could take one.
fn assign_sticky(
    members: &BTreeMap<String, MemberSubscription>,
    partition_counts: &BTreeMap<String, i32>,
    out: &mut BTreeMap<String, Vec<TopicPartition>>,
) {
    let subscribes = |member: &str, topic: &str| members[member].topics.iter().any(|t| t == topic);
    let mut claims: BTreeMap<&TopicPartition, Vec<&String>> = BTreeMap::new();
    for (member, subscription) in members {
        for tp in &subscription.owned {
            let exists = partition_counts
                .get(&tp.topic)
                .is_some_and(|&n| (0..n).contains(&tp.partition));
            if exists && subscribes(member, &tp.topic) {
                claims.entry(tp).or_default().push(member);
            }
        }
    }
    for (tp, owners) in &claims {
        if let [owner] = owners[..] {
            out.get_mut(owner).expect("a member").push((*tp).clone());
        }
    }
    for (topic, &count) in partition_counts {
        for partition in 0..count.max(0) {
            let tp = TopicPartition::new(topic, partition);
            if claims.get(&tp).is_some_and(|owners| owners.len() == 1) {
                continue;
            }
            let least_loaded = out
                .iter_mut()
                .filter(|(member, _)| subscribes(member, topic))
                .min_by_key(|(_, assigned)| assigned.len());
            if let Some((_, assigned)) = least_loaded {
                assigned.push(tp);
            }
        }
    }
    let total: usize = out.values().map(Vec::len).sum();
    // Every move lowers the spread, so this bound is never the reason to stop in practice.
    for _ in 0..=total * members.len() {
        if !move_one_partition(out, &subscribes) {
            break;
        }
    }
}

/// Moves one partition from a member to one with at least two fewer that subscribes to its
/// topic (most loaded giver, least loaded taker first); false when none can move.
fn move_one_partition(
    out: &mut BTreeMap<String, Vec<TopicPartition>>,
    subscribes: &impl Fn(&str, &str) -> bool,
) -> bool {
    let mut by_load: Vec<(String, usize)> = out.iter().map(|(m, p)| (m.clone(), p.len())).collect();
    by_load.sort_by_key(|(member, load)| (std::cmp::Reverse(*load), member.clone()));
    for (giver, giver_load) in &by_load {
        for (taker, taker_load) in by_load.iter().rev() {
            if taker_load + 2 > *giver_load {
                break;
            }
            let movable = out[giver]
                .iter()
                .rposition(|tp| subscribes(taker, &tp.topic));
            if let Some(index) = movable {
                let tp = out.get_mut(giver).expect("a member").remove(index);
                out.get_mut(taker).expect("a member").push(tp);
                return true;
            }
        }
    }
    false
}

/// The cooperative half (KIP-429): a partition assigned away from a member that owns it is
/// held back this round; the owner revokes it, rejoins, and the next round assigns it.
fn hold_back_moving_partitions(
    members: &BTreeMap<String, MemberSubscription>,
    out: &mut BTreeMap<String, Vec<TopicPartition>>,
) {
    let mut owners: BTreeMap<&TopicPartition, Vec<&String>> = BTreeMap::new();
    for (member, subscription) in members {
        for tp in &subscription.owned {
            owners.entry(tp).or_default().push(member);
        }
    }
    for (member, assigned) in out.iter_mut() {
        assigned.retain(|tp| {
            owners
                .get(tp)
                .is_none_or(|previous| previous.iter().all(|owner| *owner == member))
        });
    }
}

/// What a member sent in JoinGroup: the topics it subscribes to and the partitions it owns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MemberSubscription {
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Partitions the member owns now (subscription v1+; empty in v0 and for eager members).
    pub owned: Vec<TopicPartition>,
}

/// A member's subscription bytes: version 1 with the topics and the partitions it owns.
pub(crate) fn encode_subscription(topics: &[String], owned: &[TopicPartition]) -> Bytes {
    let owned_partitions = group_by_topic(owned)
        .into_iter()
        .map(|(topic, partitions)| {
            OwnedTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic)))
                .with_partitions(partitions)
        })
        .collect();
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_owned_partitions(owned_partitions);
    encode_versioned(&subscription, SUBSCRIPTION_VERSION)
}

/// A member's subscription bytes decoded, whatever the version (newer versions only
/// append fields, which are left unread).
pub(crate) fn decode_subscription(bytes: &[u8]) -> Result<MemberSubscription, Error> {
    let subscription: ConsumerProtocolSubscription = decode_versioned(bytes, "subscription")?;
    let topics = subscription
        .topics
        .iter()
        .map(|t| t.as_str().to_string())
        .collect();
    let owned = subscription
        .owned_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|&p| TopicPartition::new(t.topic.0.as_str(), p))
        })
        .collect();
    Ok(MemberSubscription { topics, owned })
}

/// A member's assignment bytes (version 0).
pub(crate) fn encode_assignment(partitions: &[TopicPartition]) -> Bytes {
    let assigned = group_by_topic(partitions)
        .into_iter()
        .map(|(topic, partitions)| {
            AssignedTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic)))
                .with_partitions(partitions)
        })
        .collect();
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(assigned);
    encode_versioned(&assignment, ASSIGNMENT_VERSION)
}

/// The partitions in assignment bytes, sorted. Empty bytes are an empty assignment (the
/// broker sends them to a member the leader left out).
pub(crate) fn decode_assignment(bytes: &[u8]) -> Result<Vec<TopicPartition>, Error> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let assignment: ConsumerProtocolAssignment = decode_versioned(bytes, "assignment")?;
    let mut partitions: Vec<TopicPartition> = assignment
        .assigned_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|&p| TopicPartition::new(t.topic.0.as_str(), p))
        })
        .collect();
    partitions.sort();
    partitions.dedup();
    Ok(partitions)
}

fn group_by_topic(partitions: &[TopicPartition]) -> BTreeMap<String, Vec<i32>> {
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        topics
            .entry(tp.topic.clone())
            .or_default()
            .push(tp.partition);
    }
    topics
}

fn encode_versioned<M: Encodable>(message: &M, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    message
        .encode(&mut buf, version)
        .expect("every field is valid in the version written");
    buf.freeze()
}

fn decode_versioned<M: Decodable>(bytes: &[u8], what: &str) -> Result<M, Error> {
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.len() < 2 {
        return Err(Error::Protocol(format!("{what} of {} bytes", buf.len())));
    }
    let version = buf.get_i16();
    if version < 0 {
        return Err(Error::Protocol(format!("{what} version {version}")));
    }
    M::decode(&mut buf, version.min(CONSUMER_PROTOCOL_VERSION_MAX))
        .map_err(|err| Error::Protocol(format!("{what} v{version}: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, &[&str])]) -> BTreeMap<String, MemberSubscription> {
        list.iter()
            .map(|(m, topics)| {
                let topics = topics.iter().map(|t| t.to_string()).collect();
                let subscription = MemberSubscription {
                    topics,
                    owned: Vec::new(),
                };
                (m.to_string(), subscription)
            })
            .collect()
    }

    fn owning(
        mut group: BTreeMap<String, MemberSubscription>,
        owned: &[(&str, &[TopicPartition])],
    ) -> BTreeMap<String, MemberSubscription> {
        for (member, partitions) in owned {
            group.get_mut(*member).expect("member").owned = partitions.to_vec();
        }
        group
    }

    fn tps(topic: &str, partitions: std::ops::Range<i32>) -> Vec<TopicPartition> {
        partitions.map(|p| TopicPartition::new(topic, p)).collect()
    }

    fn counts(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn names(partitions: &[TopicPartition]) -> Vec<String> {
        partitions.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn range_assignor_gives_the_first_members_the_remainder_per_topic() {
        // Java's RangeAssignor: 7 partitions over 3 members are 3/2/2, per topic.
        let group = members(&[("c", &["t", "u"]), ("a", &["t", "u"]), ("b", &["t"])]);
        let out = Assignor::Range.assign(&group, &counts(&[("t", 7), ("u", 3), ("x", 4)]));
        assert_eq!(
            names(&out["a"]),
            vec!["t-0", "t-1", "t-2", "u-0", "u-1"],
            "sorted first"
        );
        assert_eq!(names(&out["b"]), vec!["t-3", "t-4"]);
        assert_eq!(names(&out["c"]), vec!["t-5", "t-6", "u-2"]);
    }

    #[test]
    fn range_assignor_splits_six_partitions_evenly_and_leaves_extra_members_idle() {
        let three = members(&[("m1", &["t"]), ("m2", &["t"]), ("m3", &["t"])]);
        let out = Assignor::Range.assign(&three, &counts(&[("t", 6)]));
        assert!(out.values().all(|p| p.len() == 2), "{out:?}");
        let many = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let out = Assignor::Range.assign(&many, &counts(&[("t", 2)]));
        assert_eq!(out["c"], Vec::new(), "more members than partitions");
        let nothing = Assignor::Range.assign(&many, &counts(&[]));
        assert_eq!(nothing.len(), 3);
    }

    #[test]
    fn round_robin_assignor_deals_partitions_over_subscribers() {
        let group = members(&[("a", &["t", "u"]), ("b", &["t"]), ("c", &["u"])]);
        let out = Assignor::RoundRobin.assign(&group, &counts(&[("t", 3), ("u", 3)]));
        assert_eq!(names(&out["a"]), vec!["t-0", "t-2", "u-1"]);
        assert_eq!(names(&out["b"]), vec!["t-1"]);
        assert_eq!(names(&out["c"]), vec!["u-0", "u-2"]);
    }

    #[test]
    fn subscription_and_assignment_round_trip_with_version_prefix() {
        let topics = vec!["t".to_string(), "u".to_string()];
        let owned = [TopicPartition::new("t", 1)];
        let bytes = encode_subscription(&topics, &owned);
        assert_eq!(&bytes[..2], &[0, 1], "version 1");
        let decoded = decode_subscription(&bytes).expect("decodes");
        assert_eq!((decoded.topics, decoded.owned), (topics, owned.to_vec()));
        let partitions = vec![TopicPartition::new("t", 0), TopicPartition::new("u", 2)];
        let bytes = encode_assignment(&partitions);
        assert_eq!(&bytes[..2], &[0, 0], "version 0");
        assert_eq!(decode_assignment(&bytes).expect("decodes"), partitions);
        assert_eq!(decode_assignment(&[]).expect("empty"), Vec::new());
        assert!(decode_subscription(&[0]).is_err());
        assert!(decode_assignment(&[0, 0, 0xff]).is_err());
    }

    #[test]
    fn assignor_names_parse() {
        assert_eq!(Assignor::parse("range").expect("ok"), Assignor::Range);
        let java = "org.apache.kafka.clients.consumer.RoundRobinAssignor";
        assert_eq!(Assignor::parse(java).expect("ok"), Assignor::RoundRobin);
        let cooperative = Assignor::parse("cooperative-sticky").expect("ok");
        assert!(cooperative.is_cooperative() && !Assignor::Range.is_cooperative());
        assert!(Assignor::parse("sticky").is_err());
    }

    #[test]
    fn cooperative_sticky_first_assignment_is_balanced() {
        let group = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let out = Assignor::CooperativeSticky.assign(&group, &counts(&[("t", 7)]));
        let mut loads: Vec<usize> = out.values().map(Vec::len).collect();
        loads.sort_unstable();
        assert_eq!(loads, vec![2, 2, 3]);
        let all: BTreeSet<&TopicPartition> = out.values().flatten().collect();
        assert_eq!(all.len(), 7);
    }

    #[test]
    fn cooperative_sticky_holds_back_partitions_that_change_owner() {
        // KIP-429: "a" owned all six; "b" joins. Round one takes three from "a" but gives
        // "b" nothing yet; round two (after "a" revoked them) hands them to "b".
        let group = members(&[("a", &["t"]), ("b", &["t"])]);
        let first = owning(group.clone(), &[("a", &tps("t", 0..6))]);
        let out = Assignor::CooperativeSticky.assign(&first, &counts(&[("t", 6)]));
        assert_eq!(out["a"].len(), 3, "keeps half");
        assert!(out["b"].is_empty(), "held back while a still owns them");
        let kept = out["a"].clone();
        let second = owning(group, &[("a", &kept)]);
        let out = Assignor::CooperativeSticky.assign(&second, &counts(&[("t", 6)]));
        assert_eq!(out["a"], kept, "sticky");
        assert_eq!(out["b"].len(), 3);
    }

    #[test]
    fn cooperative_sticky_gives_a_leaver_partitions_to_the_others_without_moving_theirs() {
        let group = members(&[("a", &["t"]), ("b", &["t"])]);
        let group = owning(group, &[("a", &tps("t", 0..2)), ("b", &tps("t", 2..4))]);
        // "c" (which owned 4..6) left.
        let out = Assignor::CooperativeSticky.assign(&group, &counts(&[("t", 6)]));
        assert!(tps("t", 0..2).iter().all(|tp| out["a"].contains(tp)));
        assert!(tps("t", 2..4).iter().all(|tp| out["b"].contains(tp)));
        assert_eq!((out["a"].len(), out["b"].len()), (3, 3));
    }
}

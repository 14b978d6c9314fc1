//! Tests of the metadata records, the image and the controller's decisions.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::error::ErrorCode;
use crate::types::{LeaderEpoch, Millis, NodeId};

const TIMEOUT: i64 = 9_000;

fn registration(node: i32, incarnation: u64) -> BrokerRegistration {
    BrokerRegistration {
        node: NodeId(node),
        incarnation,
        host: format!("broker-{node}"),
        port: 9092,
        peer: format!("broker-{node}:9093"),
    }
}

/// `record` without the fields added to its type after it first shipped.
fn older_form(record: &MetadataRecord) -> MetadataRecord {
    match record.clone() {
        MetadataRecord::RegisterBroker(r) => MetadataRecord::RegisterBroker(BrokerRegistration {
            peer: String::new(),
            ..r
        }),
        MetadataRecord::Partition(p) => MetadataRecord::Partition(PartitionRecord {
            adding: Vec::new(),
            removing: Vec::new(),
            ..p
        }),
        other => other,
    }
}

/// The bytes an empty later field takes in the encoding of `older` (a record in its older
/// form): an empty string or list, two bytes each.
fn older_tail(older: &MetadataRecord) -> usize {
    match older {
        MetadataRecord::RegisterBroker(_) => 2,
        MetadataRecord::Partition(_) => 4,
        _ => 0,
    }
}

/// A controller with `brokers` registered and unfenced at time 0, and the log it wrote.
fn cluster(brokers: i32) -> (Controller, Vec<MetadataRecord>) {
    let mut controller =
        Controller::new(ClusterImage::new(), Millis(0), ControllerConfig::default());
    let mut log = Vec::new();
    for node in 1..=brokers {
        log.extend(controller.register_broker(Millis(0), registration(node, 1), false));
        log.extend(
            controller
                .heartbeat(Millis(0), NodeId(node), 1, true, false)
                .unwrap(),
        );
    }
    (controller, log)
}

fn new_topic(name: &str, partitions: i32, replication_factor: i16) -> NewTopic {
    NewTopic {
        name: name.into(),
        id: uuid::Uuid::from_u128(u128::from(crc32c::crc32c(name.as_bytes())) + 1),
        partitions,
        replication_factor,
        configs: BTreeMap::new(),
        assignments: Vec::new(),
        leader_epoch: LeaderEpoch(0),
    }
}

fn partition(controller: &Controller, topic: &str, index: usize) -> PartitionRecord {
    controller.image().topic(topic).unwrap().partitions[index].clone()
}

fn nodes(ids: &[i32]) -> Vec<NodeId> {
    ids.iter().map(|&n| NodeId(n)).collect()
}

/// The image every node builds by applying the log in order.
fn replay(log: &[MetadataRecord]) -> ClusterImage {
    let mut image = ClusterImage::new();
    for record in log {
        image.apply(record).unwrap();
    }
    image
}

#[test]
fn metadata_records_round_trip_and_damage_is_an_error() {
    let (mut controller, mut log) = cluster(3);
    let mut topic = new_topic("orders", 2, 3);
    topic.configs.insert("retention.ms".into(), "1000".into());
    log.extend(controller.create_topic(topic).unwrap());
    log.extend(controller.allocate_producer_ids(1000).1);
    log.extend(controller.tick(Millis(TIMEOUT + 1)));
    log.extend(controller.delete_topic("orders").unwrap());
    let throttle = BTreeMap::from([("leader.replication.throttled.rate".into(), Some("9".into()))]);
    log.extend(
        controller
            .alter_broker_configs(-1, throttle.clone())
            .unwrap(),
    );
    log.extend(controller.alter_broker_configs(2, throttle).unwrap());
    assert!(
        controller.alter_broker_configs(7, BTreeMap::new()).is_err(),
        "not registered"
    );
    let kinds: std::collections::BTreeSet<u8> = log.iter().map(|r| r.encode()[1]).collect();
    assert_eq!(kinds.len(), 8, "every record type is exercised: {kinds:?}");
    let image = replay(&log);
    assert_eq!(
        image.broker_config(NodeId(1), "leader.replication.throttled.rate"),
        Some("9")
    );
    assert_eq!(
        replay(&image.to_records()),
        image,
        "a snapshot keeps broker configs"
    );
    for record in &log {
        let bytes = record.encode();
        assert_eq!(&MetadataRecord::decode(&bytes).unwrap(), record);
        let older = older_form(record);
        for cut in 0..bytes.len() {
            match MetadataRecord::decode(&bytes[..cut]) {
                Err(_) => {}
                // Cut where the fields added later begin: the record as written before them.
                Ok(decoded) => assert_eq!(
                    (decoded, cut),
                    (older.clone(), older.encode().len() - older_tail(&older)),
                    "{record:?} cut at {cut}"
                ),
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(MetadataRecord::decode(&longer).is_err());
    }
    assert!(MetadataRecord::decode(&[2, 1]).is_err(), "unknown version");
    assert!(MetadataRecord::decode(&[1, 99]).is_err(), "unknown type");
}

#[test]
fn controller_spreads_replicas_over_active_brokers() {
    let (mut controller, _) = cluster(3);
    controller.create_topic(new_topic("orders", 6, 2)).unwrap();
    let mut leaders = BTreeMap::new();
    for index in 0..6 {
        let p = partition(&controller, "orders", index);
        assert_eq!(p.replicas.len(), 2);
        assert_ne!(p.replicas[0], p.replicas[1]);
        let mut sorted = p.replicas.clone();
        sorted.sort();
        assert_eq!(p.isr, sorted, "the ISR is kept in node order");
        assert_eq!(p.leader, Some(p.replicas[0]));
        assert_eq!((p.leader_epoch, p.partition_epoch), (LeaderEpoch(0), 0));
        *leaders.entry(p.replicas[0]).or_insert(0) += 1;
    }
    assert_eq!(leaders.len(), 3, "every broker leads: {leaders:?}");
    assert!(leaders.values().all(|&n| n == 2));

    let error = controller
        .create_topic(new_topic("wide", 1, 4))
        .unwrap_err();
    assert_eq!(error.0, ErrorCode::InvalidReplicationFactor);
    let error = controller
        .create_topic(new_topic("orders", 1, 1))
        .unwrap_err();
    assert_eq!(error.0, ErrorCode::TopicAlreadyExists);
    let error = controller
        .create_topic(new_topic("none", 0, 1))
        .unwrap_err();
    assert_eq!(error.0, ErrorCode::InvalidPartitions);
    // A fenced broker gets no replicas.
    controller.fence_broker(NodeId(2));
    controller.create_topic(new_topic("two", 4, 2)).unwrap();
    let image = controller.image();
    assert!(image
        .topic("two")
        .unwrap()
        .partitions
        .iter()
        .all(|p| !p.replicas.contains(&NodeId(2))));
    let error = controller
        .create_topic(new_topic("three", 1, 3))
        .unwrap_err();
    assert_eq!(error.0, ErrorCode::InvalidReplicationFactor);
}

#[test]
fn controller_fences_a_silent_broker_and_elects_from_the_isr() {
    let (mut controller, _) = cluster(3);
    controller.create_topic(new_topic("orders", 3, 3)).unwrap();
    let led_by_one = (0..3)
        .find(|&i| partition(&controller, "orders", i).leader == Some(NodeId(1)))
        .unwrap();
    let before = partition(&controller, "orders", led_by_one);
    // Brokers 2 and 3 keep heartbeating; 1 goes silent.
    for t in [3_000, 6_000, 9_000] {
        for node in [2, 3] {
            assert!(controller
                .heartbeat(Millis(t), NodeId(node), 1, true, false)
                .unwrap()
                .is_empty());
        }
        assert!(
            controller.tick(Millis(t)).is_empty(),
            "within the session at {t}"
        );
    }
    assert_eq!(controller.next_deadline(), Some(Millis(TIMEOUT + 1)));
    let records = controller.tick(Millis(TIMEOUT + 1));
    assert_eq!(records[0], MetadataRecord::FenceBroker { node: NodeId(1) });
    assert!(!controller.image().is_active(NodeId(1)));
    let after = partition(&controller, "orders", led_by_one);
    assert_eq!(
        after.isr,
        nodes(&[2, 3])
            .into_iter()
            .filter(|n| before.isr.contains(n))
            .collect::<Vec<_>>()
    );
    let expected = before.replicas.iter().copied().find(|&n| n != NodeId(1));
    assert_eq!(after.leader, expected, "the first active in-sync replica");
    assert_eq!(after.leader_epoch, LeaderEpoch(1));
    assert_eq!(after.partition_epoch, 1);
    for index in 0..3 {
        let p = partition(&controller, "orders", index);
        assert!(!p.isr.contains(&NodeId(1)), "1 left every ISR");
        assert_ne!(p.leader, Some(NodeId(1)));
        if index != led_by_one {
            assert_eq!(
                p.leader_epoch,
                LeaderEpoch(0),
                "followers leaving keep the leader epoch"
            );
        }
    }
    // Coming back does not make it leader or in sync: its leader adds it once it caught up.
    assert_eq!(
        controller
            .heartbeat(Millis(20_000), NodeId(1), 1, true, false)
            .unwrap(),
        [MetadataRecord::UnfenceBroker { node: NodeId(1) }]
    );
    assert!(controller.image().is_active(NodeId(1)));
    assert_eq!(partition(&controller, "orders", led_by_one), after);
}

#[test]
fn controller_keeps_the_last_in_sync_replica_and_waits_for_it() {
    let (mut controller, _) = cluster(2);
    controller.create_topic(new_topic("orders", 1, 2)).unwrap();
    let first = partition(&controller, "orders", 0);
    let (leader, follower) = (first.replicas[0], first.replicas[1]);
    // The leader drops the follower from the ISR, then dies.
    let change = IsrChange {
        leader,
        topic_id: first.topic_id,
        partition: 0,
        leader_epoch: first.leader_epoch,
        partition_epoch: first.partition_epoch,
        isr: vec![leader],
    };
    controller.alter_partition(change).unwrap();
    controller.fence_broker(leader);
    let p = partition(&controller, "orders", 0);
    assert_eq!(
        p.leader, None,
        "the out-of-sync follower may not lead (clean election)"
    );
    assert_eq!(
        p.isr,
        vec![leader],
        "the last in-sync replica stays in the ISR"
    );
    assert_eq!(p.leader_epoch, LeaderEpoch(1));
    // The follower coming and going changes nothing; the old leader's return elects it.
    controller.fence_broker(follower);
    controller
        .heartbeat(Millis(1), follower, 1, true, false)
        .unwrap();
    assert_eq!(partition(&controller, "orders", 0).leader, None);
    controller
        .heartbeat(Millis(1), leader, 1, true, false)
        .unwrap();
    let p = partition(&controller, "orders", 0);
    assert_eq!(p.leader, Some(leader));
    assert_eq!(p.leader_epoch, LeaderEpoch(2));
}

#[test]
fn controller_alter_partition_checks_leader_epochs_and_eligibility() {
    let (mut controller, _) = cluster(3);
    controller.create_topic(new_topic("orders", 1, 3)).unwrap();
    let p = partition(&controller, "orders", 0);
    let leader = p.leader.unwrap();
    let others: Vec<NodeId> = p
        .replicas
        .iter()
        .copied()
        .filter(|&n| n != leader)
        .collect();
    let change = |isr: Vec<NodeId>, partition_epoch: i32| IsrChange {
        leader,
        topic_id: p.topic_id,
        partition: 0,
        leader_epoch: p.leader_epoch,
        partition_epoch,
        isr,
    };
    let (shrunk, _) = controller
        .alter_partition(change(vec![leader, others[0]], 0))
        .unwrap();
    assert_eq!(shrunk.partition_epoch, 1);
    assert_eq!(shrunk.isr.len(), 2);
    // The same request again names a partition epoch that is gone.
    let stale = controller.alter_partition(change(vec![leader], 0));
    assert_eq!(stale.unwrap_err(), ErrorCode::InvalidUpdateVersion);
    let mut wrong_epoch = change(vec![leader], 1);
    wrong_epoch.leader_epoch = LeaderEpoch(7);
    assert_eq!(
        controller.alter_partition(wrong_epoch).unwrap_err(),
        ErrorCode::FencedLeaderEpoch
    );
    let mut not_leader = change(vec![others[0]], 1);
    not_leader.leader = others[0];
    assert_eq!(
        controller.alter_partition(not_leader).unwrap_err(),
        ErrorCode::NotLeaderOrFollower
    );
    assert_eq!(
        controller
            .alter_partition(change(vec![others[0]], 1))
            .unwrap_err(),
        ErrorCode::InvalidRequest
    );
    assert_eq!(
        controller
            .alter_partition(change(vec![leader, NodeId(9)], 1))
            .unwrap_err(),
        ErrorCode::InvalidRequest
    );
    // A fenced broker may not join.
    controller.fence_broker(others[1]);
    let p = partition(&controller, "orders", 0);
    let mut join = change(vec![leader, others[0], others[1]], p.partition_epoch);
    join.leader_epoch = p.leader_epoch;
    assert_eq!(
        controller.alter_partition(join.clone()).unwrap_err(),
        ErrorCode::IneligibleReplica
    );
    controller
        .heartbeat(Millis(1), others[1], 1, true, false)
        .unwrap();
    let (joined, _) = controller.alter_partition(join).unwrap();
    assert_eq!(joined.isr.len(), 3);
}

#[test]
fn controller_fences_the_old_incarnation_when_a_broker_restarts() {
    let (mut controller, _) = cluster(3);
    controller.create_topic(new_topic("orders", 3, 3)).unwrap();
    let records = controller.register_broker(Millis(5), registration(2, 2), false);
    assert_eq!(records[0], MetadataRecord::FenceBroker { node: NodeId(2) });
    assert!(
        matches!(records.last(), Some(MetadataRecord::RegisterBroker(r)) if r.incarnation == 2)
    );
    for index in 0..3 {
        let p = partition(&controller, "orders", index);
        assert_ne!(p.leader, Some(NodeId(2)));
        assert!(!p.isr.contains(&NodeId(2)));
    }
    assert_eq!(
        controller.heartbeat(Millis(6), NodeId(2), 1, true, false),
        Err(ErrorCode::StaleBrokerEpoch)
    );
    assert_eq!(
        controller.heartbeat(Millis(6), NodeId(7), 1, true, false),
        Err(ErrorCode::BrokerIdNotRegistered)
    );
    assert!(
        controller
            .heartbeat(Millis(6), NodeId(2), 2, false, false)
            .unwrap()
            .is_empty(),
        "not caught up: stays fenced"
    );
    assert!(!controller.image().is_active(NodeId(2)));
    controller
        .heartbeat(Millis(7), NodeId(2), 2, true, false)
        .unwrap();
    assert!(controller.image().is_active(NodeId(2)));
}

#[test]
fn image_refuses_records_that_do_not_follow() {
    let (mut controller, log) = cluster(1);
    let mut image = replay(&log);
    let records = controller.create_topic(new_topic("orders", 1, 1)).unwrap();
    for record in &records {
        image.apply(record).unwrap();
    }
    assert!(image.apply(&records[0]).is_err(), "the topic exists");
    assert!(
        image.apply(&records[1]).is_err(),
        "the partition epoch does not grow"
    );
    let MetadataRecord::Partition(mut p) = records[1].clone() else {
        panic!()
    };
    p.partition = 5;
    assert!(
        image.apply(&MetadataRecord::Partition(p.clone())).is_err(),
        "a gap in the partitions"
    );
    p.partition = 0;
    p.partition_epoch = 1;
    p.leader = Some(NodeId(4));
    assert!(
        image.apply(&MetadataRecord::Partition(p)).is_err(),
        "a leader outside the ISR"
    );
    assert!(image
        .apply(&MetadataRecord::FenceBroker { node: NodeId(9) })
        .is_err());
    assert_eq!(image, *controller.image(), "refused records change nothing");
}

/// One step of the random controller workload.
#[derive(Clone, Debug)]
enum Step {
    Heartbeat(i32),
    /// A broker restarts; `true`: its machine lost power first.
    Restart(i32, bool),
    Fence(i32),
    Advance(i64),
    Shrink(usize),
    Expand(usize),
    /// A partition moves to these brokers (`None`: its move is cancelled).
    Reassign(usize, Option<Vec<i32>>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1..=4i32).prop_map(Step::Heartbeat),
        (1..=4i32, proptest::bool::weighted(0.3)).prop_map(|(n, lost)| Step::Restart(n, lost)),
        (1..=4i32).prop_map(Step::Fence),
        (1..12_000i64).prop_map(Step::Advance),
        (0..8usize).prop_map(Step::Shrink),
        (0..8usize).prop_map(Step::Expand),
        (
            0..8usize,
            proptest::option::weighted(0.8, proptest::sample::subsequence(vec![1, 2, 3, 4], 1..=4))
                .prop_shuffle_if_some()
        )
            .prop_map(|(i, target)| Step::Reassign(i, target)),
    ]
}

/// Shuffles the list inside an option strategy (the target's order names the preferred
/// leader).
trait ShuffleIfSome {
    fn prop_shuffle_if_some(self) -> BoxedStrategy<Option<Vec<i32>>>;
}

impl<S: Strategy<Value = Option<Vec<i32>>> + 'static> ShuffleIfSome for S {
    fn prop_shuffle_if_some(self) -> BoxedStrategy<Option<Vec<i32>>> {
        self.prop_flat_map(|target| match target {
            None => Just(None).boxed(),
            Some(list) => Just(list).prop_shuffle().prop_map(Some).boxed(),
        })
        .boxed()
    }
}

proptest! {
    /// Through random heartbeats, restarts, fencing, silence and ISR changes: the image every
    /// node replays equals the controller's; a leader is always an active in-sync replica; a
    /// new leader was in the ISR before (clean election); leader and partition epochs never
    /// go back; the ISR is never empty.
    #[test]
    fn controller_decisions_keep_the_image_consistent(steps in proptest::collection::vec(step(), 1..80)) {
        let (mut controller, mut log) = cluster(4);
        let mut topic = new_topic("orders", 8, 3);
        topic.configs.insert("min.insync.replicas".into(), "2".into());
        log.extend(controller.create_topic(topic).unwrap());
        let mut incarnations = [1u64; 5];
        let mut now = 0;
        for step in steps {
            let before = controller.image().clone();
            let records = match step {
                Step::Heartbeat(n) => controller
                    .heartbeat(Millis(now), NodeId(n), incarnations[n as usize], true, false)
                    .unwrap(),
                Step::Restart(n, power_lost) => {
                    incarnations[n as usize] += 1;
                    controller.register_broker(Millis(now), registration(n, incarnations[n as usize]), power_lost)
                }
                Step::Fence(n) => controller.fence_broker(NodeId(n)),
                Step::Advance(ms) => {
                    now += ms;
                    controller.tick(Millis(now))
                }
                Step::Shrink(i) | Step::Expand(i) => {
                    let p = partition(&controller, "orders", i);
                    let Some(leader) = p.leader else { continue };
                    let isr = if matches!(step, Step::Shrink(_)) {
                        vec![leader]
                    } else {
                        p.replicas.clone()
                    };
                    let change = IsrChange {
                        leader,
                        topic_id: p.topic_id,
                        partition: p.partition,
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                        isr,
                    };
                    match controller.alter_partition(change) {
                        Ok((_, records)) => records,
                        Err(code) => {
                            prop_assert_eq!(code, ErrorCode::IneligibleReplica);
                            continue;
                        }
                    }
                }
                Step::Reassign(i, ref target) => {
                    let p = partition(&controller, "orders", i);
                    let want = Reassignment {
                        topic_id: p.topic_id,
                        partition: p.partition,
                        target: target.as_ref().map(|t| t.iter().map(|&n| NodeId(n)).collect()),
                        seen_epoch: p.partition_epoch,
                    };
                    let (results, records) = controller.reassign(&[want]);
                    if let Err((code, _)) = &results[0].outcome {
                        let expected = [ErrorCode::NoReassignmentInProgress, ErrorCode::InvalidReplicaAssignment];
                        prop_assert!(expected.contains(code), "{:?}", code);
                        prop_assert!(records.is_empty());
                    }
                    records
                }
            };
            log.extend(records);
            let image = controller.image();
            if let Step::Restart(n, true) = step {
                for p in &image.topic("orders").unwrap().partitions {
                    prop_assert!(!p.isr.contains(&NodeId(n)) && !p.elr.contains(&NodeId(n)), "{:?}", p);
                }
            }
            for (old, new) in before.topic("orders").unwrap().partitions.iter().zip(&image.topic("orders").unwrap().partitions) {
                prop_assert!(new.leader_epoch >= old.leader_epoch);
                prop_assert!(new.partition_epoch >= old.partition_epoch);
                prop_assert!(!new.isr.is_empty() || new.leader.is_none(), "{:?}", new);
                // A move never leaves a partition without an in-sync replica if it had one (a
                // power loss may: the replica is not trusted with what it kept).
                if matches!(step, Step::Reassign(..) | Step::Expand(_)) {
                    prop_assert!(old.isr.is_empty() || !new.isr.is_empty(), "{:?} → {:?}", old, new);
                }
                if let Some(leader) = new.leader {
                    prop_assert!(new.isr.contains(&leader));
                    prop_assert!(image.is_active(leader), "{:?}", new);
                    if new.leader != old.leader {
                        // An ISR expansion that completes a move may hand the leadership to a
                        // replica that joined the ISR in that very record.
                        let joined = matches!(step, Step::Expand(_)) && old.replicas.contains(&leader);
                        let eligible = old.isr.contains(&leader) || old.elr.contains(&leader) || joined;
                        prop_assert!(eligible, "unclean election: {:?} → {:?}", old, new);
                        prop_assert!(new.leader_epoch > old.leader_epoch);
                    }
                }
            }
        }
        prop_assert_eq!(&replay(&log), controller.image());
        prop_assert_eq!(&replay(&controller.image().to_records()), controller.image(), "a snapshot rebuilds the image");
    }
}

/// KIP-966's case: the ISR shrinks below min.insync.replicas (the dropped follower becomes an
/// eligible leader replica, holding every committed record), then the last in-sync replica
/// comes back from a power loss without its unsynced records. It must not lead on what it
/// kept: the eligible replica is elected.
#[test]
fn controller_elects_an_eligible_replica_when_the_last_in_sync_one_lost_power() {
    let (mut controller, _) = cluster(3);
    let mut topic = new_topic("orders", 1, 3);
    topic
        .configs
        .insert("min.insync.replicas".into(), "2".into());
    controller.create_topic(topic).unwrap();
    let p = partition(&controller, "orders", 0);
    let (leader, second, third) = (p.replicas[0], p.replicas[1], p.replicas[2]);
    // The third replica is fenced: two are left, which is the minimum: no ELR.
    controller.fence_broker(third);
    let p = partition(&controller, "orders", 0);
    assert_eq!((p.isr.len(), p.elr.clone()), (2, vec![]));
    // The second restarts (a process crash): below the minimum, it becomes eligible.
    controller.register_broker(Millis(1), registration(second.0, 2), false);
    let p = partition(&controller, "orders", 0);
    assert_eq!((p.isr.clone(), p.elr.clone()), (vec![leader], vec![second]));
    controller
        .heartbeat(Millis(2), second, 2, true, false)
        .unwrap();
    controller
        .heartbeat(Millis(2), third, 1, true, false)
        .unwrap();
    // The leader comes back from a power loss: it leaves the ISR although it was the last
    // member, and the eligible replica leads.
    controller.register_broker(Millis(3), registration(leader.0, 2), true);
    let p = partition(&controller, "orders", 0);
    assert_eq!(p.leader, Some(second));
    assert_eq!(p.isr, vec![second]);
    assert!(!p.elr.contains(&leader) && !p.elr.contains(&third), "{p:?}");
    // Without an eligible replica, a partition whose last in-sync replica lost power waits.
    let (mut controller, _) = cluster(2);
    controller.create_topic(new_topic("solo", 1, 1)).unwrap();
    let only = partition(&controller, "solo", 0).leader.unwrap();
    controller.register_broker(Millis(1), registration(only.0, 2), true);
    let p = partition(&controller, "solo", 0);
    assert_eq!((p.leader, p.isr.clone()), (None, vec![]));
}

/// The leader of partition 0 of "orders" asks for `isr`.
fn set_isr(controller: &mut Controller, isr: &[NodeId]) {
    let p = partition(controller, "orders", 0);
    let change = IsrChange {
        leader: p.leader.unwrap(),
        topic_id: p.topic_id,
        partition: 0,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr: isr.to_vec(),
    };
    controller.alter_partition(change).unwrap();
}

fn outcome(results: &[Elected]) -> Vec<Result<LeaderEpoch, ErrorCode>> {
    let codes = results
        .iter()
        .map(|e| e.outcome.clone().map_err(|(c, _)| c));
    codes.collect()
}

#[test]
fn preferred_election_moves_leadership_back_once_the_preferred_replica_is_in_sync() {
    let (mut controller, _) = cluster(3);
    controller.create_topic(new_topic("orders", 1, 3)).unwrap();
    let p = partition(&controller, "orders", 0);
    let (preferred, id) = (p.replicas[0], p.topic_id);
    let wanted = [(id, 0), (id, 7)];
    let elect = |c: &mut Controller| c.elect_leaders(Election::Preferred, Some(&wanted[..1]));
    assert_eq!(
        outcome(&elect(&mut controller).0),
        vec![Err(ErrorCode::ElectionNotNeeded)]
    );
    controller.fence_broker(preferred);
    let moved = partition(&controller, "orders", 0);
    assert_ne!(moved.leader, Some(preferred));
    // Back, but not yet in sync: it may not lead.
    controller
        .heartbeat(Millis(1), preferred, 1, true, false)
        .unwrap();
    assert_eq!(
        outcome(&elect(&mut controller).0),
        vec![Err(ErrorCode::PreferredLeaderNotAvailable)]
    );
    set_isr(&mut controller, &p.replicas);
    let (results, records) = controller.elect_leaders(Election::Preferred, Some(&wanted));
    let epoch = LeaderEpoch(moved.leader_epoch.0 + 1);
    assert_eq!(
        outcome(&results),
        vec![Ok(epoch), Err(ErrorCode::UnknownTopicOrPartition)]
    );
    assert_eq!(records.len(), 1);
    let back = partition(&controller, "orders", 0);
    assert_eq!((back.leader, back.leader_epoch), (Some(preferred), epoch));
    assert_eq!(back.isr.len(), 3, "the ISR is unchanged");
    // Every partition (null): those needing no election are left out.
    let (results, records) = controller.elect_leaders(Election::Preferred, None);
    assert!(results.is_empty() && records.is_empty(), "{results:?}");
}

#[test]
fn unclean_election_takes_an_active_replica_only_for_a_leaderless_partition() {
    let (mut controller, _) = cluster(3);
    controller.create_topic(new_topic("orders", 1, 3)).unwrap();
    let p = partition(&controller, "orders", 0);
    let leader = p.leader.unwrap();
    let id = p.topic_id;
    let wanted = [(id, 0)];
    assert_eq!(
        outcome(&controller.elect_leaders(Election::Unclean, Some(&wanted)).0),
        vec![Err(ErrorCode::ElectionNotNeeded)]
    );
    // The ISR shrinks to the leader, which then dies: no clean leader is left.
    set_isr(&mut controller, &[leader]);
    controller.fence_broker(leader);
    let stuck = partition(&controller, "orders", 0);
    assert_eq!(stuck.leader, None);
    let (results, _) = controller.elect_leaders(Election::Unclean, Some(&wanted));
    let epoch = LeaderEpoch(stuck.leader_epoch.0 + 1);
    assert_eq!(outcome(&results), vec![Ok(epoch)]);
    let taken = partition(&controller, "orders", 0);
    let new_leader = taken.leader.expect("an unclean leader");
    assert_ne!(new_leader, leader);
    assert_eq!(
        taken.isr,
        vec![new_leader],
        "the ISR starts over at the new leader"
    );
    assert!(taken.elr.is_empty());
}

#[test]
fn automatic_rebalance_elects_preferred_leaders_after_the_check_interval() {
    let config = ControllerConfig {
        imbalance_check_interval_ms: 1_000,
        ..ControllerConfig::default()
    };
    let mut controller = Controller::new(ClusterImage::new(), Millis(0), config);
    for node in 1..=3 {
        controller.register_broker(Millis(0), registration(node, 1), false);
        controller
            .heartbeat(Millis(0), NodeId(node), 1, true, false)
            .unwrap();
    }
    controller.create_topic(new_topic("orders", 1, 3)).unwrap();
    let p = partition(&controller, "orders", 0);
    let preferred = p.replicas[0];
    controller.fence_broker(preferred);
    controller
        .heartbeat(Millis(500), preferred, 1, true, false)
        .unwrap();
    set_isr(&mut controller, &p.replicas);
    for node in 1..=3 {
        controller
            .heartbeat(Millis(900), NodeId(node), 1, true, false)
            .unwrap();
    }
    assert!(controller.tick(Millis(900)).is_empty(), "not yet checked");
    assert_eq!(controller.next_deadline(), Some(Millis(1_000)));
    let records = controller.tick(Millis(1_000));
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(partition(&controller, "orders", 0).leader, Some(preferred));
    // Disabled, it never moves leadership by itself.
    let config = ControllerConfig {
        auto_leader_rebalance: false,
        ..config
    };
    let mut off = Controller::new(controller.image().clone(), Millis(0), config);
    let p = partition(&off, "orders", 0);
    off.fence_broker(preferred);
    off.heartbeat(Millis(1), preferred, 1, true, false).unwrap();
    set_isr(&mut off, &p.replicas);
    assert!(off
        .tick(Millis(5_000))
        .iter()
        .all(|r| !matches!(r, MetadataRecord::Partition(_))));
}

/// A reassignment widens the replicas to target plus original, completes once every target
/// replica is in sync (the removed leader handing over), and can be cancelled or refused.
#[test]
fn controller_reassignment_adds_first_and_removes_once_the_target_is_in_sync() {
    let (mut controller, mut log) = cluster(4);
    log.extend(controller.create_topic(new_topic("orders", 1, 3)).unwrap());
    let p = partition(&controller, "orders", 0);
    let old = p.replicas.clone();
    let outside = (1..=4).map(NodeId).find(|n| !old.contains(n)).unwrap();
    let leader = p.leader.unwrap();
    // The leader leaves, the fourth broker comes.
    let mut target: Vec<NodeId> = old.iter().copied().filter(|&n| n != leader).collect();
    target.push(outside);
    let want = |target: Option<Vec<NodeId>>| Reassignment {
        topic_id: p.topic_id,
        partition: 0,
        target,
        seen_epoch: i32::MAX, // asked from a view as new as the controller's
    };
    let (results, records) = controller.reassign(&[want(Some(target.clone()))]);
    log.extend(records);
    assert_eq!(results[0].outcome, Ok(1));
    let moving = partition(&controller, "orders", 0);
    assert_eq!(moving.adding, vec![outside]);
    assert_eq!(moving.removing, vec![leader]);
    assert_eq!(moving.replicas[..3], target[..], "target first");
    assert_eq!(moving.replicas.len(), 4);
    assert_eq!(
        moving.leader,
        Some(leader),
        "the old leader serves meanwhile"
    );
    assert_eq!(moving.target_replicas(), target);
    // The new replica catches up: the leader's ISR change completes the move.
    let mut isr = moving.isr.clone();
    isr.push(outside);
    let change = IsrChange {
        leader,
        topic_id: p.topic_id,
        partition: 0,
        leader_epoch: moving.leader_epoch,
        partition_epoch: moving.partition_epoch,
        isr,
    };
    let (done, records) = controller.alter_partition(change).unwrap();
    log.extend(records);
    assert!(!done.reassigning());
    assert_eq!(done.replicas, target);
    let mut in_sync = target.clone();
    in_sync.sort();
    assert_eq!(done.isr, in_sync);
    assert_eq!(
        done.leader,
        Some(target[0]),
        "the removed leader handed over"
    );
    assert_eq!(done.leader_epoch.0, moving.leader_epoch.0 + 1);
    assert_eq!(
        replay(&log),
        *controller.image(),
        "the records rebuild the image"
    );

    // Cancelled before the new replica catches up: back to the replicas it had.
    let back: Vec<NodeId> = old.clone();
    let (_, records) = controller.reassign(&[want(Some(back.clone()))]);
    log.extend(records);
    let (results, records) = controller.reassign(&[want(None)]);
    log.extend(records);
    assert!(results[0].outcome.is_ok());
    let cancelled = partition(&controller, "orders", 0);
    assert!(!cancelled.reassigning());
    assert_eq!(cancelled.replicas, target);
    assert!(
        !cancelled.isr.contains(&leader),
        "the cancelled addition is not in sync"
    );
    let (results, _) = controller.reassign(&[want(None)]);
    assert_eq!(
        results[0].outcome.as_ref().unwrap_err().0,
        ErrorCode::NoReassignmentInProgress
    );
    // Bad targets and partitions are refused and change nothing.
    for bad in [
        vec![],
        vec![NodeId(1), NodeId(1)],
        vec![NodeId(1), NodeId(9)],
    ] {
        let (results, records) = controller.reassign(&[want(Some(bad.clone()))]);
        assert!(records.is_empty(), "{bad:?}");
        let code = results[0].outcome.as_ref().unwrap_err().0;
        assert_eq!(code, ErrorCode::InvalidReplicaAssignment, "{bad:?}");
    }
    let mut unknown = want(Some(target.clone()));
    unknown.partition = 5;
    let (results, _) = controller.reassign(&[unknown]);
    let code = results[0].outcome.as_ref().unwrap_err().0;
    assert_eq!(code, ErrorCode::UnknownTopicOrPartition);
    assert_eq!(replay(&log), *controller.image());
}

/// Cancelling or replacing a move whose added replicas are the only ones in sync would
/// leave no in-sync replica (and the records only they hold): refused.
#[test]
fn controller_reassignment_never_drops_every_in_sync_replica() {
    let (mut controller, _) = cluster(5);
    controller.create_topic(new_topic("orders", 1, 3)).unwrap();
    let p = partition(&controller, "orders", 0);
    let outside: Vec<NodeId> = (1..=5)
        .map(NodeId)
        .filter(|n| !p.replicas.contains(n))
        .collect();
    let want = |target: Option<Vec<NodeId>>| Reassignment {
        topic_id: p.topic_id,
        partition: 0,
        target,
        seen_epoch: i32::MAX, // asked from a view as new as the controller's
    };
    let (results, _) = controller.reassign(&[want(Some(outside.clone()))]);
    assert!(results[0].outcome.is_ok());
    let moving = partition(&controller, "orders", 0);
    // The first new replica catches up, then every old one is fenced: it alone is in sync.
    let mut isr = moving.isr.clone();
    isr.push(outside[0]);
    let change = IsrChange {
        leader: moving.leader.unwrap(),
        topic_id: p.topic_id,
        partition: 0,
        leader_epoch: moving.leader_epoch,
        partition_epoch: moving.partition_epoch,
        isr,
    };
    controller.alter_partition(change).unwrap();
    for old in &p.replicas {
        controller.fence_broker(*old);
    }
    let alone = partition(&controller, "orders", 0);
    assert_eq!(alone.isr, vec![outside[0]]);
    assert_eq!(alone.leader, Some(outside[0]));
    for refused in [None, Some(vec![outside[1], p.replicas[0]])] {
        let (results, records) = controller.reassign(&[want(refused.clone())]);
        assert!(records.is_empty(), "{refused:?}");
        let code = results[0].outcome.as_ref().unwrap_err().0;
        assert_eq!(code, ErrorCode::InvalidReplicaAssignment, "{refused:?}");
    }
    assert_eq!(partition(&controller, "orders", 0), alone, "unchanged");
}

/// An unclean election during a move takes an old replica before one still being added
/// (which may hold nothing), though the target lists the new one first.
#[test]
fn controller_unclean_election_during_a_move_prefers_an_old_replica() {
    let (mut controller, _) = cluster(4);
    controller.create_topic(new_topic("orders", 1, 3)).unwrap();
    let p = partition(&controller, "orders", 0);
    let leader = p.leader.unwrap();
    let outside = (1..=4)
        .map(NodeId)
        .find(|n| !p.replicas.contains(n))
        .unwrap();
    let others: Vec<NodeId> = p
        .replicas
        .iter()
        .copied()
        .filter(|&n| n != leader)
        .collect();
    // The ISR is the leader alone; the new replica comes first in the target.
    set_isr(&mut controller, &[leader]);
    let want = Reassignment {
        topic_id: p.topic_id,
        partition: 0,
        target: Some(vec![outside, others[0], others[1]]),
        seen_epoch: p.partition_epoch,
    };
    assert!(controller.reassign(&[want]).0[0].outcome.is_ok());
    controller.fence_broker(leader); // the last in-sync replica: leaderless, kept in the ISR
    let leaderless = partition(&controller, "orders", 0);
    assert_eq!(leaderless.leader, None);
    assert_eq!(leaderless.replicas[0], outside);
    let id = (leaderless.topic_id, 0);
    let (results, _) = controller.elect_leaders(Election::Unclean, Some(&[id]));
    assert!(results[0].outcome.is_ok(), "{results:?}");
    let elected = partition(&controller, "orders", 0).leader.unwrap();
    assert_ne!(elected, outside, "not the replica still being added");
    assert!(others.contains(&elected));
}

/// A reassignment asked from a view older than the partition's last change of replicas is
/// refused (STALE_CONTROLLER_EPOCH), also by a controller that took over since; ISR changes
/// alone do not make a view stale.
#[test]
fn controller_refuses_a_reassignment_asked_before_the_replicas_last_changed() {
    let (mut controller, mut log) = cluster(4);
    log.extend(controller.create_topic(new_topic("orders", 1, 3)).unwrap());
    let p = partition(&controller, "orders", 0);
    let outside = (1..=4)
        .map(NodeId)
        .find(|n| !p.replicas.contains(n))
        .unwrap();
    let target: Vec<NodeId> = p.replicas[1..].iter().copied().chain([outside]).collect();
    let want = |target: &[NodeId], seen_epoch| Reassignment {
        topic_id: p.topic_id,
        partition: 0,
        target: Some(target.to_vec()),
        seen_epoch,
    };
    // An ISR change since the view: still applies.
    set_isr(&mut controller, &p.replicas[..2]);
    let (results, records) = controller.reassign(&[want(&target, p.partition_epoch)]);
    log.extend(records);
    let started = results[0].outcome.clone().unwrap();
    // Asked from the view before that move started: refused, and nothing written.
    let (results, records) = controller.reassign(&[want(&p.replicas, p.partition_epoch)]);
    assert!(records.is_empty());
    let Err((code, message)) = &results[0].outcome else {
        panic!("{results:?}")
    };
    assert_eq!(*code, ErrorCode::StaleControllerEpoch);
    assert!(message.contains("after the asker's view"), "{message}");
    // A controller that takes over counts every partition as changed at its epoch then.
    let image = controller.image().clone();
    let mut next = Controller::new(image, Millis(0), ControllerConfig::default());
    let refused = next.reassign(&[want(&p.replicas, started - 1)]).0;
    assert!(refused[0].outcome.is_err(), "{refused:?}");
    let current = partition(&next, "orders", 0).partition_epoch;
    assert!(next.reassign(&[want(&p.replicas, current)]).0[0]
        .outcome
        .is_ok());
}

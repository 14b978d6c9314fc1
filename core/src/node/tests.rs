//! Three nodes in one process: messages delivered in order (or dropped for a node that is
//! down), time moved by hand. The simulator runs the same nodes over a faulty network.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::*;
use crate::cluster::{Elected, Election};
use crate::error::ErrorCode;
use crate::record::{BatchBuilder, Record};
use crate::storage::MemoryDirs;
use crate::types::Offset;

struct Harness {
    /// Metadata-log entries between the voters' snapshots.
    snapshot_interval: u64,
    /// The quorum's voters.
    voters: Vec<NodeId>,
    dirs: BTreeMap<i32, MemoryDirs>,
    nodes: BTreeMap<i32, Option<ClusterNode<MemoryDirs>>>,
    incarnations: BTreeMap<i32, u64>,
    now: i64,
    completed: BTreeMap<i32, Vec<Completed>>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_snapshot_interval(20)
    }

    /// Three voters that snapshot their metadata log every `snapshot_interval` entries.
    fn with_snapshot_interval(snapshot_interval: u64) -> Harness {
        let mut harness = Harness {
            snapshot_interval,
            voters: vec![NodeId(1), NodeId(2), NodeId(3)],
            dirs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            incarnations: BTreeMap::new(),
            now: 0,
            completed: BTreeMap::new(),
        };
        for id in 1..=3 {
            harness.dirs.insert(id, MemoryDirs::default());
            harness.start(id);
        }
        harness
    }

    /// Node 1 alone, the only voter, over `dirs`.
    fn one_node(dirs: MemoryDirs) -> Harness {
        let mut harness = Harness {
            snapshot_interval: 20,
            voters: vec![NodeId(1)],
            dirs: BTreeMap::from([(1, dirs)]),
            nodes: BTreeMap::new(),
            incarnations: BTreeMap::new(),
            now: 0,
            completed: BTreeMap::new(),
        };
        harness.start(1);
        harness
    }

    /// Three voters with a controller, and a fourth node that is not a voter, serving.
    fn with_fourth_node() -> Harness {
        Harness::with_fourth_node_and(20)
    }

    /// [`Harness::with_fourth_node`] with the voters' snapshot interval.
    fn with_fourth_node_and(snapshot_interval: u64) -> Harness {
        let mut harness = Harness::with_snapshot_interval(snapshot_interval);
        harness.run(5_000, 50);
        harness.dirs.insert(4, MemoryDirs::default());
        harness.start(4);
        harness.run(3_000, 50);
        harness
    }

    fn start(&mut self, id: i32) {
        let incarnation = self.incarnations.entry(id).or_insert(0);
        *incarnation += 1;
        let broker = BrokerConfig {
            node_id: id,
            advertised_port: 9000 + id,
            default_replication_factor: self.voters.len() as i16,
            offsets_topic_partitions: 3,
            ..BrokerConfig::default()
        };
        let mut config = NodeConfig::new(broker, self.voters.clone(), *incarnation);
        config.election_tick = 10 + 3 * id as usize; // fixed jitter
        config.snapshot_interval = self.snapshot_interval;
        let node = ClusterNode::open(self.dirs[&id].clone(), config, Millis(self.now)).unwrap();
        self.nodes.insert(id, Some(node));
    }

    fn stop(&mut self, id: i32) {
        let node = self.nodes.get_mut(&id).unwrap().take().unwrap();
        node.close().unwrap();
    }

    fn node(&mut self, id: i32) -> &mut ClusterNode<MemoryDirs> {
        self.nodes.get_mut(&id).unwrap().as_mut().unwrap()
    }

    /// Delivers every queued message (repeatedly, until quiet), collecting completions.
    fn deliver(&mut self) {
        for _ in 0..200 {
            let mut mail = Vec::new();
            for (&id, node) in &mut self.nodes {
                if let Some(node) = node {
                    for (to, bytes) in node.poll_outgoing() {
                        mail.push((id, to.0, bytes));
                    }
                    self.completed
                        .entry(id)
                        .or_default()
                        .extend(node.poll_completed());
                }
            }
            if mail.is_empty() {
                return;
            }
            let now = Millis(self.now);
            for (from, to, bytes) in mail {
                if let Some(Some(node)) = self.nodes.get_mut(&to) {
                    node.handle_peer_message(now, NodeId(from), &bytes).unwrap();
                }
            }
        }
    }

    /// Moves time on in steps of `step` ms up to `ms`, ticking and delivering.
    fn run(&mut self, ms: i64, step: i64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += step;
            let now = Millis(self.now);
            for node in self.nodes.values_mut().flatten() {
                node.handle_tick(now).unwrap();
            }
            self.deliver();
        }
    }

    fn controller(&self) -> Option<i32> {
        let controllers: Vec<i32> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.as_ref().is_some_and(|n| n.is_controller()))
            .map(|(id, _)| *id)
            .collect();
        assert!(
            controllers.len() <= 1,
            "one active controller: {controllers:?}"
        );
        controllers.first().copied()
    }

    fn request(&mut self, id: i32, version: i16, body: RequestKind) -> Reply {
        let api_key = match &body {
            RequestKind::Produce(_) => ApiKey::Produce,
            RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
            RequestKind::FindCoordinator(_) => ApiKey::FindCoordinator,
            RequestKind::JoinGroup(_) => ApiKey::JoinGroup,
            RequestKind::SyncGroup(_) => ApiKey::SyncGroup,
            RequestKind::OffsetCommit(_) => ApiKey::OffsetCommit,
            RequestKind::OffsetFetch(_) => ApiKey::OffsetFetch,
            RequestKind::DeleteTopics(_) => ApiKey::DeleteTopics,
            RequestKind::CreatePartitions(_) => ApiKey::CreatePartitions,
            RequestKind::AlterConfigs(_) => ApiKey::AlterConfigs,
            RequestKind::IncrementalAlterConfigs(_) => ApiKey::IncrementalAlterConfigs,
            RequestKind::DescribeConfigs(_) => ApiKey::DescribeConfigs,
            RequestKind::DeleteRecords(_) => ApiKey::DeleteRecords,
            RequestKind::ElectLeaders(_) => ApiKey::ElectLeaders,
            RequestKind::DescribeQuorum(_) => ApiKey::DescribeQuorum,
            RequestKind::AlterPartitionReassignments(_) => ApiKey::AlterPartitionReassignments,
            RequestKind::ListPartitionReassignments(_) => ApiKey::ListPartitionReassignments,
            RequestKind::UnregisterBroker(_) => ApiKey::UnregisterBroker,
            RequestKind::InitProducerId(_) => ApiKey::InitProducerId,
            RequestKind::AddPartitionsToTxn(_) => ApiKey::AddPartitionsToTxn,
            RequestKind::EndTxn(_) => ApiKey::EndTxn,
            RequestKind::Fetch(_) => ApiKey::Fetch,
            RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
            RequestKind::DescribeTransactions(_) => ApiKey::DescribeTransactions,
            RequestKind::ListTransactions(_) => ApiKey::ListTransactions,
            _ => ApiKey::Metadata,
        };
        let request = Request {
            api_key,
            api_version: version,
            correlation_id: 1,
            client_id: None,
            body,
        };
        let now = Millis(self.now);
        let reply = self
            .node(id)
            .handle_request(now, &RequestContext::default(), request)
            .unwrap();
        self.deliver();
        reply
    }

    /// The answer to a parked request at node `id`, if it came.
    fn take_completed(&mut self, id: i32, parked: ParkedId) -> Option<ResponseKind> {
        let list = self.completed.entry(id).or_default();
        let position = list
            .iter()
            .position(|c| matches!(c, Completed::Response(i, _) if *i == parked))?;
        match list.remove(position) {
            Completed::Response(_, response) => Some(*response),
            Completed::Fetch(..) => unreachable!(),
        }
    }

    fn create_topic(&mut self, at: i32, name: &str, partitions: i32) -> i16 {
        let mut topic = CreatableTopic::default();
        topic.name = TopicName(StrBytes::from_string(name.into()));
        topic.num_partitions = partitions;
        topic.replication_factor = 3;
        let mut config = CreatableTopicConfig::default();
        config.name = StrBytes::from_static_str("min.insync.replicas");
        config.value = Some(StrBytes::from_static_str("2"));
        topic.configs = vec![config];
        let mut request = CreateTopicsRequest::default();
        request.topics = vec![topic];
        request.timeout_ms = 30_000;
        let reply = self.request(at, 5, RequestKind::CreateTopics(request));
        let response = match reply {
            Reply::Response(response) => *response,
            Reply::Parked(id) => {
                self.run(500, 50);
                self.take_completed(at, id).expect("the topic is created")
            }
            other => panic!("{other:?}"),
        };
        let ResponseKind::CreateTopics(response) = response else {
            panic!()
        };
        response.topics[0].error_code
    }

    fn leader_of(&mut self, at: i32, topic: &str, partition: usize) -> Option<i32> {
        let image = self.node(at).image();
        let p = &image.topic(topic)?.partitions[partition];
        p.leader.map(|n| n.0)
    }

    /// acks=all produce of `values` at the partition's leader; the answer (error, base).
    fn produce(&mut self, topic: &str, partition: i32, values: &[String]) -> (i16, i64) {
        let mut builder = BatchBuilder::new(Offset(0));
        for value in values {
            builder.push(&Record {
                timestamp: self.now,
                key: None,
                value: Some(value.clone().into_bytes()),
                headers: Vec::new(),
            });
        }
        let mut data = PartitionProduceData::default();
        data.index = partition;
        data.records = Some(Bytes::from(builder.build()));
        let mut topic_data = TopicProduceData::default();
        topic_data.name = TopicName(StrBytes::from_string(topic.into()));
        topic_data.partition_data = vec![data];
        let mut request = ProduceRequest::default();
        request.acks = -1;
        request.timeout_ms = 10_000;
        request.topic_data = vec![topic_data];
        let any = *self.nodes.iter().find(|(_, n)| n.is_some()).unwrap().0;
        let leader = self
            .leader_of(any, topic, partition as usize)
            .expect("a leader");
        let response = match self.request(leader, 9, RequestKind::Produce(request)) {
            Reply::Response(response) => *response,
            Reply::Parked(id) => {
                self.run(2_000, 50);
                self.take_completed(leader, id).expect("acks=all answered")
            }
            other => panic!("{other:?}"),
        };
        let ResponseKind::Produce(response) = response else {
            panic!()
        };
        let answer = &response.responses[0].partition_responses[0];
        (answer.error_code, answer.base_offset)
    }

    /// The record values in node `id`'s replica of the partition, and its high watermark.
    fn log_of(&mut self, id: i32, topic: &str, partition: i32) -> (Vec<String>, i64) {
        let broker = self.node(id).broker();
        let log = broker
            .partition_log(topic, partition)
            .expect("a replica here");
        let mut values = Vec::new();
        let mut next = log.log_start_offset();
        while let Some(slice) = log.read(next, 1 << 20, log.log_end_offset()).unwrap() {
            let bytes = log.read_bytes(&slice).unwrap();
            for batch in crate::record::Batches::new(&bytes) {
                let batch = batch.unwrap();
                for record in crate::record::decode_records(&batch, 1 << 20).unwrap() {
                    values.push(String::from_utf8(record.record.value.unwrap()).unwrap());
                }
            }
            next = slice.next_offset;
        }
        (values, log.high_watermark().0)
    }
}

/// A request answered now, or once parked after `ms` of running.
fn answer(h: &mut Harness, at: i32, version: i16, body: RequestKind, ms: i64) -> ResponseKind {
    match h.request(at, version, body) {
        Reply::Response(response) => *response,
        Reply::Parked(id) => {
            h.run(ms, 50);
            h.take_completed(at, id)
                .expect("the parked request is answered")
        }
        other => panic!("{other:?}"),
    }
}

/// FindCoordinator v3 for a group at `at`: (error, node id, port).
fn find_coordinator(h: &mut Harness, at: i32, group: &str) -> (i16, i32, i32) {
    let mut body = FindCoordinatorRequest::default();
    body.key = StrBytes::from_string(group.into());
    let ResponseKind::FindCoordinator(r) = answer(h, at, 3, RequestKind::FindCoordinator(body), 0)
    else {
        panic!()
    };
    (r.error_code, r.node_id.0, r.port)
}

/// A simple (generation -1) OffsetCommit v8 of `orders-0` at `at`: the reply as it came.
fn commit_request(h: &mut Harness, at: i32, group: &str, offset: i64) -> Reply {
    use kafka_protocol::messages::offset_commit_request::*;
    let mut partition = OffsetCommitRequestPartition::default();
    partition.committed_offset = offset;
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("orders"));
    topic.partitions = vec![partition];
    let mut body = OffsetCommitRequest::default();
    body.group_id = GroupId(StrBytes::from_string(group.into()));
    body.generation_id_or_member_epoch = -1;
    body.topics = vec![topic];
    h.request(at, 8, RequestKind::OffsetCommit(body))
}

/// The committed offset of `orders-0` by OffsetFetch v8 at `at`: (group error, offset).
fn committed(h: &mut Harness, at: i32, group: &str) -> (i16, i64) {
    use kafka_protocol::messages::offset_fetch_request::*;
    let mut topic = OffsetFetchRequestTopics::default();
    topic.name = TopicName(StrBytes::from_static_str("orders"));
    topic.partition_indexes = vec![0];
    let mut wanted = OffsetFetchRequestGroup::default();
    wanted.group_id = GroupId(StrBytes::from_string(group.into()));
    wanted.topics = Some(vec![topic]);
    let mut body = OffsetFetchRequest::default();
    body.groups = vec![wanted];
    let ResponseKind::OffsetFetch(r) = answer(h, at, 8, RequestKind::OffsetFetch(body), 0) else {
        panic!()
    };
    let group = &r.groups[0];
    let offset = group
        .topics
        .first()
        .map_or(-1, |t| t.partitions[0].committed_offset);
    (group.error_code, offset)
}

/// The group coordinator runs on the leader of the group's `__consumer_offsets` partition:
/// FindCoordinator names it, the other nodes answer NOT_COORDINATOR, a commit is answered
/// once the followers hold it, and the next leader of the partition has it.
#[test]
fn node_group_coordinator_lives_on_the_offsets_leader_and_survives_its_failover() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    assert_eq!(h.create_topic(1, "orders", 1), 0);
    // The first FindCoordinator asks the controller for the topic.
    let (code, _, _) = find_coordinator(&mut h, 2, "g");
    assert_eq!(code, ErrorCode::CoordinatorNotAvailable.code());
    h.run(2_000, 50);
    let (code, coordinator, port) = find_coordinator(&mut h, 2, "g");
    assert_eq!(code, 0);
    assert_eq!(port, 9000 + coordinator);
    let image = h.node(1).image().clone();
    let offsets = image
        .topic(OFFSETS_TOPIC)
        .expect("created by the controller");
    assert_eq!(offsets.partitions.len(), 3);
    assert!(offsets.partitions.iter().all(|p| p.replicas.len() == 3));
    for at in 1..=3 {
        assert_eq!(
            find_coordinator(&mut h, at, "g").1,
            coordinator,
            "asked at {at}"
        );
    }
    let other = (1..=3).find(|&n| n != coordinator).unwrap();
    let Reply::Response(refused) = commit_request(&mut h, other, "g", 7) else {
        panic!("answered at once")
    };
    let ResponseKind::OffsetCommit(refused) = *refused else {
        panic!()
    };
    let code = refused.topics[0].partitions[0].error_code;
    assert_eq!(code, ErrorCode::NotCoordinator.code());
    assert_eq!(
        committed(&mut h, other, "g").0,
        ErrorCode::NotCoordinator.code()
    );
    // The commit waits for the followers of the group's partition, then is answered.
    let Reply::Parked(id) = commit_request(&mut h, coordinator, "g", 42) else {
        panic!("a commit waits for the in-sync replicas")
    };
    h.run(1_000, 50);
    let Some(ResponseKind::OffsetCommit(done)) = h.take_completed(coordinator, id) else {
        panic!("the commit is answered once replicated")
    };
    assert_eq!(done.topics[0].partitions[0].error_code, 0);
    assert_eq!(committed(&mut h, coordinator, "g"), (0, 42));
    // The coordinator's node goes away: the next leader of the partition loads the group.
    h.stop(coordinator);
    h.run(15_000, 100);
    let survivor = (1..=3).find(|&n| n != coordinator).unwrap();
    let (code, next, _) = find_coordinator(&mut h, survivor, "g");
    assert_eq!(code, 0);
    assert_ne!(next, coordinator);
    assert_eq!(committed(&mut h, next, "g"), (0, 42), "the commit survived");
    let Reply::Parked(id) = commit_request(&mut h, next, "g", 43) else {
        panic!("waits for the remaining follower")
    };
    h.run(1_000, 50);
    assert!(h.take_completed(next, id).is_some());
    // The old coordinator comes back as a follower of the partition.
    h.start(coordinator);
    h.run(10_000, 100);
    assert_eq!(
        committed(&mut h, coordinator, "g").0,
        ErrorCode::NotCoordinator.code()
    );
    assert_eq!(committed(&mut h, next, "g"), (0, 43));
}

/// JoinGroup v3 of a consumer member at `at`: the reply as it came.
fn join_request(h: &mut Harness, at: i32, group: &str, member_id: &str) -> Reply {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = StrBytes::from_static_str("range");
    protocol.metadata = Bytes::from_static(b"m");
    let mut body = JoinGroupRequest::default();
    body.group_id = GroupId(StrBytes::from_string(group.into()));
    body.session_timeout_ms = 30_000;
    body.rebalance_timeout_ms = 30_000;
    body.member_id = StrBytes::from_string(member_id.into());
    body.protocol_type = StrBytes::from_static_str("consumer");
    body.protocols = vec![protocol];
    h.request(at, 3, RequestKind::JoinGroup(body))
}

/// SyncGroup v3 at `at` (`assignments` only from the group's leader): the reply as it came.
fn sync_request(
    h: &mut Harness,
    at: i32,
    group: &str,
    generation: i32,
    member_id: &str,
    assignments: &[&str],
) -> Reply {
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    let mut body = SyncGroupRequest::default();
    body.group_id = GroupId(StrBytes::from_string(group.into()));
    body.generation_id = generation;
    body.member_id = StrBytes::from_string(member_id.into());
    body.assignments = assignments
        .iter()
        .map(|member| {
            let mut assignment = SyncGroupRequestAssignment::default();
            assignment.member_id = StrBytes::from_string(member.to_string());
            assignment.assignment = Bytes::from(format!("for {member}"));
            assignment
        })
        .collect();
    h.request(at, 3, RequestKind::SyncGroup(body))
}

#[test]
fn node_a_member_that_syncs_after_the_leader_waits_until_the_generation_is_stored() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    assert_eq!(h.create_topic(1, "orders", 1), 0);
    find_coordinator(&mut h, 1, "g");
    h.run(2_000, 50);
    let (_, coordinator, _) = find_coordinator(&mut h, 1, "g");
    // The first member gets generation 1 alone; the second joins, the first rejoins, and
    // generation 2 has both.
    let first = match join_request(&mut h, coordinator, "g", "") {
        Reply::Response(r) => *r,
        Reply::Parked(id) => h.take_completed(coordinator, id).expect("answered"),
        other => panic!("{other:?}"),
    };
    let ResponseKind::JoinGroup(first) = first else {
        panic!()
    };
    let joins = [
        join_request(&mut h, coordinator, "g", ""),
        join_request(&mut h, coordinator, "g", &first.member_id),
    ];
    let joined: Vec<JoinGroupResponse> = joins
        .into_iter()
        .map(|reply| {
            let id = match reply {
                Reply::Parked(id) => id,
                other => panic!("a join waits for the rebalance: {other:?}"),
            };
            match h.take_completed(coordinator, id) {
                Some(ResponseKind::JoinGroup(r)) => r,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert!(joined
        .iter()
        .all(|j| j.error_code == 0 && j.generation_id == 2));
    let leader = joined[0].leader.to_string();
    let ids: Vec<String> = joined.iter().map(|j| j.member_id.to_string()).collect();
    let follower = ids.iter().find(|id| **id != leader).unwrap().clone();
    // A follower of the group's partition stops: the generation's record cannot be
    // committed until the ISR shrinks.
    let stopped = (1..=3).find(|&n| n != coordinator).unwrap();
    h.stop(stopped);
    let everyone: Vec<&str> = ids.iter().map(String::as_str).collect();
    let Reply::Parked(leader_sync) = sync_request(&mut h, coordinator, "g", 2, &leader, &everyone)
    else {
        panic!("the leader's answer waits for the generation's record")
    };
    // The other member syncs after the leader, while the record is still unreplicated: its
    // answer hands out the same generation, so it waits too.
    let Reply::Parked(follower_sync) = sync_request(&mut h, coordinator, "g", 2, &follower, &[])
    else {
        panic!("a later member's answer waits for the generation's record too")
    };
    h.run(1_000, 50);
    assert!(h.take_completed(coordinator, follower_sync).is_none());
    // The follower comes back and copies the record: both answers come, with the generation.
    h.start(stopped);
    h.run(3_000, 50);
    for (id, member) in [(leader_sync, &leader), (follower_sync, &follower)] {
        let Some(ResponseKind::SyncGroup(synced)) = h.take_completed(coordinator, id) else {
            panic!("answered once the record is committed")
        };
        assert_eq!(synced.error_code, 0);
        assert_eq!(synced.assignment, Bytes::from(format!("for {member}")));
    }
}

/// DeleteTopics at `at` (v6: by name or by id): each topic's (error code, message).
fn delete_topics(
    h: &mut Harness,
    at: i32,
    names: &[&str],
    ids: &[uuid::Uuid],
) -> Vec<(i16, Option<String>)> {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    let mut body = DeleteTopicsRequest::default();
    body.timeout_ms = 10_000;
    for name in names {
        let mut topic = DeleteTopicState::default();
        topic.name = Some(TopicName(StrBytes::from_string(name.to_string())));
        body.topics.push(topic);
    }
    for id in ids {
        let mut topic = DeleteTopicState::default();
        topic.topic_id = *id;
        body.topics.push(topic);
    }
    let ResponseKind::DeleteTopics(r) = answer(h, at, 6, RequestKind::DeleteTopics(body), 2_000)
    else {
        panic!()
    };
    r.responses
        .iter()
        .map(|t| {
            (
                t.error_code,
                t.error_message.as_ref().map(|m| m.to_string()),
            )
        })
        .collect()
}

#[test]
fn node_delete_topics_goes_through_the_controller_and_removes_every_replica() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    let controller = h.controller().unwrap();
    let at = (1..=3).find(|&n| n != controller).unwrap();
    assert_eq!(h.create_topic(at, "orders", 2), 0);
    assert_eq!(h.create_topic(at, "payments", 1), 0);
    assert_eq!(h.produce("orders", 0, &values("a", 0..3)).0, 0);
    h.run(1_000, 50);
    let payments = h.node(1).image().topic("payments").unwrap().id;
    // Asked at a node that is not the controller: answered once that node's image has no
    // topic any more, by name and by id alike.
    let results = delete_topics(&mut h, at, &["orders"], &[payments]);
    assert_eq!(results, vec![(0, None), (0, None)]);
    assert!(h.node(at).image().topic("orders").is_none());
    h.run(1_000, 50);
    for id in 1..=3 {
        assert!(h.node(id).image().topics().is_empty(), "node {id}");
        for partition in 0..2 {
            assert!(
                h.node(id)
                    .broker()
                    .partition_log("orders", partition)
                    .is_none(),
                "node {id} dropped its replica of orders-{partition}"
            );
        }
    }
    // Unknown names and ids, and the offsets topic, are refused with a message.
    let unknown = uuid::Uuid::from_u128(7);
    let results = delete_topics(&mut h, at, &["orders"], &[unknown]);
    assert_eq!(results[0].0, ErrorCode::UnknownTopicOrPartition.code());
    assert_eq!(results[1].0, ErrorCode::UnknownTopicId.code());
    assert!(results.iter().all(|(_, message)| message.is_some()));
    find_coordinator(&mut h, at, "g");
    h.run(2_000, 50);
    let results = delete_topics(&mut h, at, &[OFFSETS_TOPIC], &[]);
    assert_eq!(results[0].0, ErrorCode::TopicAuthorizationFailed.code());
    // A topic of the same name starts empty, under a new id.
    assert_eq!(h.create_topic(at, "orders", 1), 0);
    h.run(1_000, 50);
    assert_eq!(h.log_of(1, "orders", 0), (Vec::new(), 0));
    assert_eq!(h.produce("orders", 0, &values("b", 0..2)), (0, 0));
}

/// CreatePartitions v3 at `at` growing `name` to `count` (with replica lists if given):
/// (error code, message).
fn create_partitions(
    h: &mut Harness,
    at: i32,
    name: &str,
    count: i32,
    assignments: Option<Vec<Vec<i32>>>,
    validate_only: bool,
) -> (i16, Option<String>) {
    use kafka_protocol::messages::create_partitions_request::*;
    let mut topic = CreatePartitionsTopic::default();
    topic.name = TopicName(StrBytes::from_string(name.into()));
    topic.count = count;
    topic.assignments = assignments.map(|lists| {
        lists
            .into_iter()
            .map(|ids| {
                let mut assignment = CreatePartitionsAssignment::default();
                assignment.broker_ids = ids.into_iter().map(BrokerId).collect();
                assignment
            })
            .collect()
    });
    let mut body = CreatePartitionsRequest::default();
    body.topics = vec![topic];
    body.timeout_ms = 10_000;
    body.validate_only = validate_only;
    let request = RequestKind::CreatePartitions(body);
    let ResponseKind::CreatePartitions(r) = answer(h, at, 3, request, 2_000) else {
        panic!()
    };
    let result = &r.results[0];
    (
        result.error_code,
        result.error_message.as_ref().map(|m| m.to_string()),
    )
}

#[test]
fn node_create_partitions_goes_through_the_controller_with_spread_or_given_replicas() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    let controller = h.controller().unwrap();
    let at = (1..=3).find(|&n| n != controller).unwrap();
    assert_eq!(h.create_topic(at, "orders", 1), 0);
    assert_eq!(h.produce("orders", 0, &values("a", 0..2)).0, 0);
    // validate_only changes nothing.
    assert_eq!(
        create_partitions(&mut h, at, "orders", 3, None, true),
        (0, None)
    );
    assert_eq!(
        h.node(at).image().topic("orders").unwrap().partitions.len(),
        1
    );
    // Spread by the controller, answered once this node's image has them.
    assert_eq!(
        create_partitions(&mut h, at, "orders", 3, None, false),
        (0, None)
    );
    assert_eq!(
        h.node(at).image().topic("orders").unwrap().partitions.len(),
        3
    );
    // Given replicas: the first active one leads.
    let given = Some(vec![vec![2, 3, 1]]);
    assert_eq!(
        create_partitions(&mut h, at, "orders", 4, given, false),
        (0, None)
    );
    h.run(1_000, 50);
    let topic = h.node(1).image().topic("orders").unwrap().clone();
    assert_eq!(topic.partitions.len(), 4);
    assert!(topic.partitions.iter().all(|p| p.replicas.len() == 3));
    let fourth = &topic.partitions[3];
    assert_eq!(fourth.replicas, vec![NodeId(2), NodeId(3), NodeId(1)]);
    assert_eq!(fourth.leader, Some(NodeId(2)));
    for partition in 1..4 {
        let (code, base) = h.produce("orders", partition, &values("b", 0..3));
        assert_eq!((code, base), (0, 0), "partition {partition}");
    }
    h.run(1_000, 50);
    for id in 1..=3 {
        assert_eq!(
            h.log_of(id, "orders", 3),
            (values("b", 0..3), 3),
            "node {id}"
        );
        assert_eq!(h.log_of(id, "orders", 0).0, values("a", 0..2), "node {id}");
    }
    // Refusals name the problem.
    let refusals = [
        ("orders", 4, None, ErrorCode::InvalidPartitions),
        (
            "orders",
            5,
            Some(vec![vec![1, 2]]),
            ErrorCode::InvalidReplicaAssignment,
        ),
        (
            "orders",
            5,
            Some(vec![vec![1, 2, 9]]),
            ErrorCode::InvalidReplicaAssignment,
        ),
        (
            "orders",
            5,
            Some(vec![vec![1, 1, 2]]),
            ErrorCode::InvalidReplicaAssignment,
        ),
        (
            "orders",
            6,
            Some(vec![vec![1, 2, 3]]),
            ErrorCode::InvalidReplicaAssignment,
        ),
        ("missing", 2, None, ErrorCode::UnknownTopicOrPartition),
    ];
    for (name, count, lists, code) in refusals {
        let (got, message) = create_partitions(&mut h, at, name, count, lists.clone(), false);
        assert_eq!(got, code.code(), "{name} to {count} with {lists:?}");
        assert!(message.is_some());
    }
    find_coordinator(&mut h, at, "g");
    h.run(2_000, 50);
    let (code, _) = create_partitions(&mut h, at, OFFSETS_TOPIC, 10, None, false);
    assert_eq!(code, ErrorCode::TopicAuthorizationFailed.code());
    assert_eq!(
        h.node(1).image().topic("orders").unwrap().partitions.len(),
        4
    );
}

#[test]
fn node_peer_messages_round_trip_and_damaged_ones_are_refused() {
    let messages = [
        PeerMessage::DeleteTopic {
            name: "orders".into(),
        },
        PeerMessage::CreateTopic {
            name: "orders".into(),
            partitions: 2,
            replication_factor: 2,
            configs: BTreeMap::from([("retention.ms".to_string(), "5".to_string())]),
            assignments: vec![vec![NodeId(1), NodeId(4)], vec![NodeId(4), NodeId(2)]],
        },
        PeerMessage::CreatePartitions {
            name: "orders".into(),
            count: 4,
            assignments: vec![vec![NodeId(2), NodeId(3)], vec![NodeId(1), NodeId(2)]],
        },
        PeerMessage::TopicChanged {
            change: TopicChange::AddPartitions,
            name: "orders".into(),
            error_code: 37,
            message: "no".into(),
        },
        PeerMessage::Heartbeat {
            node: NodeId(2),
            incarnation: 7,
            caught_up: true,
            shutting_down: true,
        },
        PeerMessage::ElectLeaders {
            request: 3,
            election: Election::Unclean,
            partitions: Some(vec![(uuid::Uuid::from_u128(9), 2)]),
        },
        PeerMessage::ElectLeaders {
            request: 4,
            election: Election::Preferred,
            partitions: None,
        },
        PeerMessage::DescribeQuorum { request: 8 },
        PeerMessage::AlterBrokerConfigs {
            node: -1,
            changes: BTreeMap::from([
                (
                    "leader.replication.throttled.rate".to_string(),
                    Some("5".to_string()),
                ),
                ("follower.replication.throttled.rate".to_string(), None),
            ]),
        },
        PeerMessage::UnregisterBroker { node: NodeId(4) },
        PeerMessage::Reassign {
            request: 2,
            partitions: vec![
                crate::cluster::Reassignment {
                    topic_id: uuid::Uuid::from_u128(9),
                    partition: 1,
                    target: Some(vec![NodeId(4), NodeId(2)]),
                    seen_epoch: 7,
                },
                crate::cluster::Reassignment {
                    topic_id: uuid::Uuid::from_u128(9),
                    partition: 2,
                    target: None,
                    seen_epoch: 0,
                },
            ],
        },
        PeerMessage::Reassigned {
            request: 2,
            results: vec![
                crate::cluster::Reassigned {
                    topic_id: uuid::Uuid::from_u128(9),
                    partition: 1,
                    outcome: Ok(7),
                },
                crate::cluster::Reassigned {
                    topic_id: uuid::Uuid::from_u128(9),
                    partition: 2,
                    outcome: Err((ErrorCode::NoReassignmentInProgress, "none".into())),
                },
            ],
        },
        PeerMessage::MetadataFetch {
            correlation: 5,
            after: 41,
        },
        PeerMessage::MetadataEntries {
            correlation: 5,
            leader: Some(NodeId(3)),
            term: 6,
            through: 47,
            latest: 52,
            committed: vec![
                crate::quorum::Committed::Snapshot {
                    index: 44,
                    data: vec![1, 2, 3],
                },
                crate::quorum::Committed::Entry {
                    index: 46,
                    term: 6,
                    data: vec![4],
                },
            ],
        },
        PeerMessage::MetadataEntries {
            correlation: 6,
            leader: None,
            term: 6,
            through: 47,
            latest: 47,
            committed: Vec::new(),
        },
        PeerMessage::QuorumDescribed {
            request: 8,
            state: None,
        },
        PeerMessage::QuorumDescribed {
            request: 9,
            state: Some(crate::quorum::QuorumState {
                leader: NodeId(2),
                term: 4,
                committed: 17,
                voters: vec![(NodeId(1), 15), (NodeId(2), 18)],
                observers: vec![(NodeId(4), 12)],
            }),
        },
        PeerMessage::LeadersElected {
            request: 3,
            results: vec![
                Elected {
                    topic_id: uuid::Uuid::from_u128(9),
                    partition: 2,
                    outcome: Ok(crate::types::LeaderEpoch(5)),
                },
                Elected {
                    topic_id: uuid::Uuid::from_u128(9),
                    partition: 3,
                    outcome: Err((ErrorCode::ElectionNotNeeded, "leads".into())),
                },
            ],
        },
        PeerMessage::Markers(crate::broker::MarkerMessage::Write {
            request: 4,
            markers: vec![crate::broker::MarkerEntry {
                topic: "orders".into(),
                partition: 2,
                producer_id: crate::types::ProducerId(1000),
                producer_epoch: crate::types::ProducerEpoch(3),
                control: crate::record::ControlType::Commit,
                coordinator_epoch: 7,
                token: 41,
            }],
        }),
        PeerMessage::Markers(crate::broker::MarkerMessage::Written {
            request: 4,
            results: vec![("orders".into(), 2, 0), ("orders".into(), 3, 6)],
        }),
    ];
    for message in messages {
        let bytes = message.encode();
        assert_eq!(PeerMessage::decode(&bytes).unwrap(), message);
        for cut in 0..bytes.len() {
            assert!(
                PeerMessage::decode(&bytes[..cut]).is_err(),
                "{message:?} cut at {cut}"
            );
        }
    }
}

/// IncrementalAlterConfigs v1 of topic `name` at `at`: (operation, key, value) each
/// (operation 0 SET, 1 DELETE); the resource's (error code, message).
fn alter_topic(
    h: &mut Harness,
    at: i32,
    name: &str,
    changes: &[(i8, &str, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    alter_resource(h, at, (2, name), changes, validate_only)
}

/// IncrementalAlterConfigs v1 of one resource (type, name) at `at`; its (error, message).
fn alter_resource(
    h: &mut Harness,
    at: i32,
    (kind, name): (i8, &str),
    changes: &[(i8, &str, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    use kafka_protocol::messages::incremental_alter_configs_request::*;
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = kind;
    resource.resource_name = StrBytes::from_string(name.into());
    resource.configs = changes
        .iter()
        .map(|(operation, key, value)| {
            let mut config = AlterableConfig::default();
            config.name = StrBytes::from_string(key.to_string());
            config.config_operation = *operation;
            config.value = value.map(|v| StrBytes::from_string(v.to_string()));
            config
        })
        .collect();
    let mut body = IncrementalAlterConfigsRequest::default();
    body.resources = vec![resource];
    body.validate_only = validate_only;
    let request = RequestKind::IncrementalAlterConfigs(body);
    let ResponseKind::IncrementalAlterConfigs(r) = answer(h, at, 1, request, 2_000) else {
        panic!()
    };
    let result = &r.responses[0];
    (
        result.error_code,
        result.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// A topic config as DescribeConfigs at `at` reports it.
fn described(h: &mut Harness, at: i32, name: &str, key: &str) -> Option<String> {
    let (value, _) = describe_one(h, at, (2, name), key)?;
    Some(value)
}

/// One config of resource (type, name) as DescribeConfigs v4 at `at` reports it: (value,
/// source).
fn describe_one(
    h: &mut Harness,
    at: i32,
    (kind, name): (i8, &str),
    key: &str,
) -> Option<(String, i8)> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = kind;
    resource.resource_name = StrBytes::from_string(name.into());
    resource.configuration_keys = Some(vec![StrBytes::from_string(key.into())]);
    let mut body = DescribeConfigsRequest::default();
    body.resources = vec![resource];
    let ResponseKind::DescribeConfigs(r) = answer(h, at, 4, RequestKind::DescribeConfigs(body), 0)
    else {
        panic!()
    };
    let config = r.results[0].configs.first()?;
    Some((config.value.as_ref()?.to_string(), config.config_source))
}

#[test]
fn node_config_changes_go_through_the_controller_and_reach_every_replica() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    let controller = h.controller().unwrap();
    let at = (1..=3).find(|&n| n != controller).unwrap();
    assert_eq!(h.create_topic(at, "orders", 1), 0);
    // validate_only checks and changes nothing; bad values are refused with the reason.
    let set = |value| vec![(0i8, "min.insync.replicas", Some(value))];
    assert_eq!(
        alter_topic(&mut h, at, "orders", &set("3"), true),
        (0, None)
    );
    let (code, message) = alter_topic(&mut h, at, "orders", &set("zero"), false);
    assert_eq!(code, ErrorCode::InvalidConfig.code());
    assert!(message.unwrap().contains("min.insync.replicas"));
    let (code, _) = alter_topic(&mut h, at, "missing", &set("3"), false);
    assert_eq!(code, ErrorCode::UnknownTopicOrPartition.code());
    for id in 1..=3 {
        assert_eq!(
            described(&mut h, id, "orders", "min.insync.replicas").as_deref(),
            Some("2")
        );
    }
    // Set at a node that is not the controller: every node's metadata and broker have it,
    // and the leader enforces it.
    assert_eq!(
        alter_topic(&mut h, at, "orders", &set("3"), false),
        (0, None)
    );
    h.run(500, 50);
    for id in 1..=3 {
        let image = h.node(id).image().topic("orders").unwrap().configs.clone();
        assert_eq!(
            image.get("min.insync.replicas").map(String::as_str),
            Some("3")
        );
        assert_eq!(
            described(&mut h, id, "orders", "min.insync.replicas").as_deref(),
            Some("3")
        );
    }
    let leader = h.leader_of(1, "orders", 0).unwrap();
    let follower = (1..=3)
        .find(|&n| n != leader && n != controller)
        .unwrap_or_else(|| (1..=3).find(|&n| n != leader).unwrap());
    h.stop(follower);
    h.run(40_000, 100);
    assert_eq!(
        h.produce("orders", 0, &values("a", 0..1)).0,
        ErrorCode::NotEnoughReplicas.code(),
        "two in sync, three needed"
    );
    // DELETE brings the broker default (1) back.
    let delete = [(1i8, "min.insync.replicas", None)];
    assert_eq!(alter_topic(&mut h, leader, "orders", &delete, false).0, 0);
    h.run(500, 50);
    assert_eq!(h.produce("orders", 0, &values("b", 0..1)).0, 0);
}

/// DeleteRecords v2 of `orders-0` before `offset` at `at`: (error code, low watermark).
fn delete_records(h: &mut Harness, at: i32, offset: i64) -> (i16, i64) {
    use kafka_protocol::messages::delete_records_request::*;
    let mut partition = DeleteRecordsPartition::default();
    partition.offset = offset;
    let mut topic = DeleteRecordsTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("orders"));
    topic.partitions = vec![partition];
    let mut body = DeleteRecordsRequest::default();
    body.topics = vec![topic];
    body.timeout_ms = 5_000;
    let ResponseKind::DeleteRecords(r) = answer(h, at, 2, RequestKind::DeleteRecords(body), 1_000)
    else {
        panic!()
    };
    let answer = &r.topics[0].partitions[0];
    (answer.error_code, answer.low_watermark)
}

#[test]
fn node_delete_records_at_the_leader_moves_every_replica_s_log_start() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    assert_eq!(h.create_topic(1, "orders", 1), 0);
    assert_eq!(h.produce("orders", 0, &values("a", 0..4)).0, 0);
    assert_eq!(h.produce("orders", 0, &values("a", 4..6)).0, 0);
    h.run(1_000, 50);
    let leader = h.leader_of(1, "orders", 0).unwrap();
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    // Only the leader deletes (clients send DeleteRecords to it).
    let code = ErrorCode::NotLeaderOrFollower.code();
    assert_eq!(delete_records(&mut h, follower, 4).0, code);
    assert_eq!(delete_records(&mut h, leader, 4), (0, 4));
    h.run(2_000, 50);
    for id in 1..=3 {
        let log = h.node(id).broker().partition_log("orders", 0).unwrap();
        assert_eq!(log.log_start_offset(), Offset(4), "node {id}");
        // Reads start at the batch holding the log start: the first batch is gone.
        assert_eq!(
            h.log_of(id, "orders", 0),
            (values("a", 4..6), 6),
            "node {id}"
        );
    }
    // Past the high watermark is refused; the log goes on from where it was.
    let code = ErrorCode::OffsetOutOfRange.code();
    assert_eq!(delete_records(&mut h, leader, 9).0, code);
    assert_eq!(h.produce("orders", 0, &values("b", 0..1)), (0, 6));
}

fn values(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn node_three_nodes_elect_a_controller_create_a_topic_and_replicate() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    let controller = h.controller().expect("a controller after the election");
    for id in 1..=3 {
        assert!(
            h.node(id).image().is_active(NodeId(id)),
            "broker {id} is unfenced"
        );
        assert_eq!(h.node(id).quorum_leader(), Some(NodeId(controller)));
    }
    // CreateTopics at a node that is not the controller is forwarded to it.
    let at = (1..=3).find(|&n| n != controller).unwrap();
    assert_eq!(h.create_topic(at, "orders", 3), 0);
    assert_eq!(
        h.create_topic(at, "orders", 3),
        ErrorCode::TopicAlreadyExists.code()
    );
    for partition in 0..3 {
        let (code, base) = h.produce("orders", partition, &values("a", 0..4));
        assert_eq!((code, base), (0, 0), "partition {partition}");
    }
    h.run(2_000, 50);
    for id in 1..=3 {
        for partition in 0..3 {
            assert_eq!(
                h.log_of(id, "orders", partition),
                (values("a", 0..4), 4),
                "node {id}"
            );
        }
    }
}

#[test]
fn node_failover_keeps_acknowledged_records_and_a_restarted_node_catches_up() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    assert_eq!(h.create_topic(1, "orders", 1), 0);
    assert_eq!(h.produce("orders", 0, &values("a", 0..5)).0, 0);
    let leader = h.leader_of(1, "orders", 0).unwrap();
    let controller = h.controller().unwrap();
    // Stop the partition leader (and with it perhaps the controller).
    h.stop(leader);
    h.run(15_000, 100);
    let survivor = (1..=3).find(|&n| n != leader).unwrap();
    let new_controller = h.controller().expect("a controller among the survivors");
    assert_ne!(new_controller, leader);
    if controller == leader {
        assert_ne!(new_controller, controller);
    }
    let new_leader = h
        .leader_of(survivor, "orders", 0)
        .expect("a new partition leader");
    assert_ne!(new_leader, leader);
    assert_eq!(
        h.log_of(new_leader, "orders", 0).0,
        values("a", 0..5),
        "acknowledged records kept"
    );
    assert_eq!(h.produce("orders", 0, &values("b", 0..3)), (0, 5));
    // The stopped node comes back, catches up and rejoins the ISR.
    h.start(leader);
    h.run(10_000, 100);
    let mut expected = values("a", 0..5);
    expected.extend(values("b", 0..3));
    for id in 1..=3 {
        assert_eq!(
            h.log_of(id, "orders", 0),
            (expected.clone(), 8),
            "node {id}"
        );
    }
    let image = h.node(survivor).image().clone();
    let isr = &image.topic("orders").unwrap().partitions[0].isr;
    assert_eq!(isr.len(), 3, "{isr:?}");
}

#[test]
fn node_metadata_log_snapshots_let_a_node_that_was_away_catch_up() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    h.stop(3);
    h.run(10_000, 100); // its session expires: fenced
    assert!(!h.node(1).image().is_active(NodeId(3)));
    // Enough decisions for the others to snapshot (interval 20) while 3 is away.
    for i in 0..12 {
        assert_eq!(
            h.create_topic(1, &format!("t{i}"), 1),
            ErrorCode::InvalidReplicationFactor.code()
        );
    }
    let mut created = 0;
    for i in 0..12 {
        let mut topic = CreatableTopic::default();
        topic.name = TopicName(StrBytes::from_string(format!("s{i}")));
        topic.num_partitions = 1;
        topic.replication_factor = 2;
        let mut request = CreateTopicsRequest::default();
        request.topics = vec![topic];
        request.timeout_ms = 30_000;
        if let Reply::Parked(id) = h.request(1, 5, RequestKind::CreateTopics(request)) {
            h.run(300, 50);
            if let Some(ResponseKind::CreateTopics(r)) = h.take_completed(1, id) {
                created += usize::from(r.topics[0].error_code == 0);
            }
        }
    }
    assert_eq!(created, 12);
    h.start(3);
    h.run(8_000, 100);
    let expected = h.node(1).image().clone();
    let back = h.node(3).image().clone();
    assert_eq!(back.topics(), expected.topics(), "node 3 has every topic");
    assert!(back.is_active(NodeId(3)));
}

/// A CreateTopics the cluster cannot apply is refused before the controller proposes it (a
/// committed record no node can apply would stop every node).
#[test]
fn node_refuses_topics_with_bad_configs_or_names_before_proposing() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    for (name, key, value, expected) in [
        ("bad", "retention.ms", "soon", ErrorCode::InvalidConfig),
        ("bad", "compression.type", "gzip", ErrorCode::InvalidConfig),
        (
            "__consumer_offsets",
            "retention.ms",
            "1000",
            ErrorCode::InvalidRequest,
        ),
    ] {
        let mut topic = CreatableTopic::default();
        topic.name = TopicName(StrBytes::from_string(name.into()));
        topic.num_partitions = 1;
        topic.replication_factor = 3;
        let mut config = CreatableTopicConfig::default();
        config.name = StrBytes::from_string(key.into());
        config.value = Some(StrBytes::from_string(value.into()));
        topic.configs = vec![config];
        let mut request = CreateTopicsRequest::default();
        request.topics = vec![topic];
        let Reply::Response(response) = h.request(1, 5, RequestKind::CreateTopics(request)) else {
            panic!("refused at once")
        };
        let ResponseKind::CreateTopics(response) = *response else {
            panic!()
        };
        assert_eq!(
            response.topics[0].error_code,
            expected.code(),
            "{name} {key}={value}"
        );
    }
    h.run(1_000, 50);
    assert!(
        h.node(2).image().topics().is_empty(),
        "nothing was proposed"
    );
    assert_eq!(h.create_topic(2, "good", 1), 0, "the cluster still works");
}

#[test]
fn node_controlled_shutdown_moves_leadership_and_the_quorum_away_before_it_stops() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    assert_eq!(h.create_topic(1, "orders", 3), 0);
    for partition in 0..3 {
        assert_eq!(h.produce("orders", partition, &values("a", 0..3)).0, 0);
    }
    // The controller stops: it leads the quorum and (spread over three nodes) a partition.
    let stopping = h.controller().unwrap();
    let led = (0..3).filter(|&p| h.leader_of(stopping, "orders", p) == Some(stopping));
    assert!(led.count() > 0, "the stopping node leads a partition");
    let began = h.now;
    h.node(stopping).begin_shutdown(Millis(began)).unwrap();
    while !h.node(stopping).shutdown_complete() {
        assert!(h.now - began < 5_000, "the shutdown hands over within 5 s");
        h.run(50, 50);
    }
    assert!(
        h.node(stopping).is_serving(),
        "it answers clients until it stops"
    );
    let other = (1..=3).find(|&n| n != stopping).unwrap();
    assert_ne!(h.controller(), Some(stopping));
    assert_ne!(h.node(other).quorum_leader(), Some(NodeId(stopping)));
    let image = h.node(other).image().clone();
    assert!(!image.is_active(NodeId(stopping)));
    for p in &image.topic("orders").unwrap().partitions {
        assert_ne!(p.leader, Some(NodeId(stopping)), "{p:?}");
        assert!(!p.isr.contains(&NodeId(stopping)), "{p:?}");
        assert!(p.leader.is_some(), "{p:?}");
    }
    // Producers carry on at the new leaders, before and after the node is gone.
    for partition in 0..3 {
        assert_eq!(h.produce("orders", partition, &values("b", 0..2)), (0, 3));
    }
    h.stop(stopping);
    for partition in 0..3 {
        assert_eq!(h.produce("orders", partition, &values("c", 0..2)), (0, 5));
    }
    // It comes back as any restarted node: unfenced, caught up, in every ISR again.
    h.start(stopping);
    h.run(10_000, 100);
    let image = h.node(other).image().clone();
    assert!(image.is_active(NodeId(stopping)));
    for (partition, p) in image.topic("orders").unwrap().partitions.iter().enumerate() {
        assert_eq!(p.isr.len(), 3, "{p:?}");
        assert_eq!(h.log_of(stopping, "orders", partition as i32).1, 7);
    }
}

/// ElectLeaders (preferred) at `at` for partitions of "orders": (partition, error code) each.
fn elect_preferred(h: &mut Harness, at: i32, partitions: &[i32]) -> Vec<(i32, i16)> {
    let mut topic = elect_leaders_request::TopicPartitions::default();
    topic.topic = TopicName(StrBytes::from_static_str("orders"));
    topic.partitions = partitions.to_vec();
    let mut request = ElectLeadersRequest::default();
    request.election_type = 0;
    request.topic_partitions = Some(vec![topic]);
    request.timeout_ms = 10_000;
    let ResponseKind::ElectLeaders(response) =
        answer(h, at, 2, RequestKind::ElectLeaders(request), 1_000)
    else {
        panic!()
    };
    let results = response
        .replica_election_results
        .iter()
        .flat_map(|t| &t.partition_result);
    results.map(|r| (r.partition_id, r.error_code)).collect()
}

#[test]
fn node_elect_leaders_at_a_follower_moves_leadership_back_to_the_preferred_replica() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    assert_eq!(h.create_topic(1, "orders", 1), 0);
    assert_eq!(h.produce("orders", 0, &values("a", 0..3)).0, 0);
    let preferred = h.node(1).image().topic("orders").unwrap().partitions[0].replicas[0].0;
    assert_eq!(
        elect_preferred(&mut h, preferred, &[0, 5]),
        vec![
            (5, ErrorCode::UnknownTopicOrPartition.code()),
            (0, ErrorCode::ElectionNotNeeded.code())
        ]
    );
    // The preferred leader restarts; another replica leads meanwhile.
    h.stop(preferred);
    h.run(12_000, 100);
    h.start(preferred);
    h.run(10_000, 100);
    let other = (1..=3).find(|&n| n != preferred).unwrap();
    let led_by = h.leader_of(other, "orders", 0).unwrap();
    assert_ne!(led_by, preferred);
    let at = (1..=3).find(|&n| n != h.controller().unwrap()).unwrap();
    assert_eq!(elect_preferred(&mut h, at, &[0]), vec![(0, 0)]);
    // Answered once the asking node's image has the new leader.
    assert_eq!(h.leader_of(at, "orders", 0), Some(preferred));
    assert_eq!(h.produce("orders", 0, &values("b", 0..2)), (0, 3));
    for id in 1..=3 {
        h.run(1_000, 100);
        assert_eq!(h.log_of(id, "orders", 0).0.len(), 5, "node {id}");
    }
}

/// DescribeQuorum at `at`: (error, leader, epoch, high watermark, voters with log ends).
fn describe_quorum(h: &mut Harness, at: i32, topic: &str) -> (i16, i32, i32, i64, Vec<(i32, i64)>) {
    let p = describe_quorum_partition(h, at, topic);
    let voters = p
        .current_voters
        .iter()
        .map(|v| (v.replica_id.0, v.log_end_offset));
    let voters = voters.collect();
    (
        p.error_code,
        p.leader_id.0,
        p.leader_epoch,
        p.high_watermark,
        voters,
    )
}

/// DescribeQuorum v2 at `at` of partition 0 of `topic`: the partition's answer.
fn describe_quorum_partition(
    h: &mut Harness,
    at: i32,
    topic: &str,
) -> describe_quorum_response::PartitionData {
    let mut partition = describe_quorum_request::PartitionData::default();
    partition.partition_index = 0;
    let mut data = describe_quorum_request::TopicData::default();
    data.topic_name = TopicName(StrBytes::from_string(topic.into()));
    data.partitions = vec![partition];
    let mut request = DescribeQuorumRequest::default();
    request.topics = vec![data];
    let ResponseKind::DescribeQuorum(response) =
        answer(h, at, 2, RequestKind::DescribeQuorum(request), 200)
    else {
        panic!()
    };
    response.topics[0].partitions[0].clone()
}

#[test]
fn node_describe_quorum_at_any_node_tells_the_leader_and_each_voter_s_log_end() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    assert_eq!(h.create_topic(1, "orders", 1), 0);
    h.run(1_000, 50);
    let leader = h.controller().unwrap();
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let at_leader = describe_quorum(&mut h, leader, QUORUM_TOPIC);
    let at_follower = describe_quorum(&mut h, follower, QUORUM_TOPIC);
    assert_eq!(at_leader, at_follower, "a follower asks the leader");
    let (code, id, epoch, committed, voters) = at_leader;
    assert_eq!((code, id), (0, leader));
    assert_eq!(epoch as u64, h.node(leader).metadata.term());
    assert!(committed > 0);
    assert_eq!(
        voters.iter().map(|v| v.0).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(
        voters.iter().all(|&(_, end)| end >= committed),
        "{voters:?}"
    );
    // Another partition has no quorum; without a leader a follower cannot say.
    let (code, ..) = describe_quorum(&mut h, follower, "orders");
    assert_eq!(code, ErrorCode::UnknownTopicOrPartition.code());
    h.stop(leader);
    let survivor = (1..=3).find(|&n| n != leader && n != follower).unwrap();
    h.stop(survivor);
    h.run(3_000, 100);
    let (code, ..) = describe_quorum(&mut h, follower, QUORUM_TOPIC);
    assert!(
        [
            ErrorCode::NotLeaderOrFollower.code(),
            ErrorCode::RequestTimedOut.code()
        ]
        .contains(&code),
        "{code}"
    );
}

#[test]
fn node_forgets_the_controller_s_answers_once_no_request_waits_for_them() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    let controller = h.controller().unwrap();
    let other = (1..=3).find(|&n| n != controller).unwrap();
    for at in [controller, other] {
        let name = format!("orders-{at}");
        assert_eq!(h.create_topic(at, &name, 1), 0);
        assert_eq!(
            h.create_topic(at, &name, 1),
            ErrorCode::TopicAlreadyExists.code()
        );
    }
    h.run(1_000, 50);
    for id in 1..=3 {
        assert!(h.node(id).topic_results.is_empty(), "node {id}");
        assert!(h.node(id).topic_changes.is_empty(), "node {id}");
    }
}

#[test]
fn node_controlled_shutdown_hands_the_quorum_to_a_live_voter_and_the_controller_carries_on() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    assert_eq!(h.create_topic(1, "orders", 1), 0);
    let stopping = h.controller().unwrap();
    let mut others = (1..=3).filter(|&n| n != stopping);
    let (gone, live) = (others.next().unwrap(), others.next().unwrap());
    // One follower's process is gone (its connections closed) before the controller stops.
    h.stop(gone);
    let now = Millis(h.now);
    for id in [stopping, live] {
        h.node(id).handle_peer_down(now, NodeId(gone)).unwrap();
    }
    h.run(1_000, 50);
    let began = h.now;
    h.node(stopping).begin_shutdown(Millis(began)).unwrap();
    while !h.node(stopping).shutdown_complete() {
        assert!(h.now - began < 5_000, "the shutdown hands over within 5 s");
        h.run(50, 50);
    }
    assert_eq!(h.node(live).quorum_leader(), Some(NodeId(live)));
    h.stop(stopping);
    h.start(gone);
    h.run(3_000, 100);
    assert_eq!(
        h.controller(),
        Some(live),
        "the live voter took over the controller"
    );
    h.start(stopping);
    h.run(5_000, 100);
    assert_eq!(h.create_topic(live, "after", 1), 0);
}

/// A node that is not a voter joins a running cluster: it follows the metadata log as an
/// observer, registers, is unfenced and gets replicas; it leads and follows partitions like
/// any broker, keeps up when the quorum's leader changes, and catches up again after a
/// restart (it keeps no metadata of its own) — from a snapshot once the voters compacted.
#[test]
fn node_a_fourth_node_that_is_no_voter_joins_and_hosts_replicas() {
    let mut h = Harness::with_fourth_node();
    assert!(!h.node(4).is_controller());
    for at in [1, 4] {
        assert!(h.node(at).image().is_active(NodeId(4)), "seen at {at}");
    }
    assert!(h.node(4).is_serving());
    let expected = h.node(1).image().clone();
    assert_eq!(h.node(4).image(), &expected);
    assert_eq!(h.create_topic(4, "orders", 4), 0);
    let image = h.node(1).image().clone();
    let partitions = &image.topic("orders").unwrap().partitions;
    let on_four: Vec<usize> = (0..4)
        .filter(|&p| partitions[p].replicas.contains(&NodeId(4)))
        .collect();
    assert_eq!(on_four.len(), 3, "replicas spread over four brokers");
    assert!(
        partitions.iter().any(|p| p.leader == Some(NodeId(4))),
        "node 4 leads one: {partitions:?}"
    );
    for partition in 0..4 {
        let (code, _) = h.produce("orders", partition, &values("a", 0..3));
        assert_eq!(code, 0, "partition {partition}");
    }
    h.run(1_000, 50);
    for &partition in &on_four {
        assert_eq!(h.log_of(4, "orders", partition as i32).0, values("a", 0..3));
    }
    // The quorum's leader stops: the observer finds the next one and keeps up.
    let controller = h.controller().unwrap();
    h.stop(controller);
    h.run(15_000, 100);
    let next = h.controller().expect("a new controller");
    assert_eq!(h.node(4).quorum_leader(), Some(NodeId(next)));
    assert_eq!(h.create_topic(4, "after", 1), 0);
    h.run(1_000, 50);
    assert!(h.node(4).image().topic("after").is_some());
    h.start(controller);
    h.run(5_000, 100);
    // Restarted after the voters snapshotted (interval 20): it starts from a snapshot.
    h.stop(4);
    for i in 0..25 {
        assert_eq!(
            h.create_topic(1, &format!("t{i}"), 1),
            0,
            "topic t{i} while node 4 is away"
        );
    }
    h.start(4);
    h.run(5_000, 100);
    assert!(h.node(4).is_serving());
    let expected = h.node(1).image().clone();
    assert_eq!(h.node(4).image().topics(), expected.topics());
    for &partition in &on_four {
        assert_eq!(h.log_of(4, "orders", partition as i32).0, values("a", 0..3));
    }
}

/// AlterPartitionReassignments v0 at `at` for `orders-0` (`None` cancels): the partition's
/// (error code, message).
fn reassign(h: &mut Harness, at: i32, target: Option<&[i32]>) -> (i16, Option<String>) {
    reassign_within(h, at, target, 500)
}

/// [`reassign`], running up to `wait_ms` for the answer.
fn reassign_within(
    h: &mut Harness,
    at: i32,
    target: Option<&[i32]>,
    wait_ms: i64,
) -> (i16, Option<String>) {
    reassign_partition(h, at, 0, target, wait_ms)
}

/// AlterPartitionReassignments v0 of `orders`' `index` at `at`, running up to `wait_ms` for
/// the answer: the partition's (error code, message).
fn reassign_partition(
    h: &mut Harness,
    at: i32,
    index: i32,
    target: Option<&[i32]>,
    wait_ms: i64,
) -> (i16, Option<String>) {
    use kafka_protocol::messages::alter_partition_reassignments_request::*;
    let mut partition = ReassignablePartition::default();
    partition.partition_index = index;
    partition.replicas = target.map(|t| t.iter().map(|&n| BrokerId(n)).collect());
    let mut topic = ReassignableTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("orders"));
    topic.partitions = vec![partition];
    let mut body = AlterPartitionReassignmentsRequest::default();
    body.timeout_ms = 10_000;
    body.topics = vec![topic];
    let request = RequestKind::AlterPartitionReassignments(body);
    let ResponseKind::AlterPartitionReassignments(r) = answer(h, at, 0, request, wait_ms) else {
        panic!()
    };
    let result = &r.responses[0].partitions[0];
    (
        result.error_code,
        result.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// One listed reassignment: (partition, replicas, adding, removing).
type Moving = (i32, Vec<i32>, Vec<i32>, Vec<i32>);

/// ListPartitionReassignments v0 at `at`.
fn list_reassignments(h: &mut Harness, at: i32) -> Vec<Moving> {
    let body = ListPartitionReassignmentsRequest::default();
    let request = RequestKind::ListPartitionReassignments(body);
    let ResponseKind::ListPartitionReassignments(r) = answer(h, at, 0, request, 0) else {
        panic!()
    };
    let ids = |b: &[BrokerId]| b.iter().map(|b| b.0).collect::<Vec<i32>>();
    (r.topics.iter().flat_map(|t| &t.partitions))
        .map(|p| {
            let replicas = ids(&p.replicas);
            (
                p.partition_index,
                replicas,
                ids(&p.adding_replicas),
                ids(&p.removing_replicas),
            )
        })
        .collect()
}

/// A reassignment moves a partition's replicas to the fourth node while it keeps its data:
/// the new replica catches up, the old one (its leader) leaves and drops its files, the
/// partition keeps every acknowledged record and takes writes at its new leader. While a
/// new replica cannot catch up (its node stopped) the move stays listed, and the old replicas
/// keep serving; it completes when the node is back.
#[test]
fn node_reassignment_moves_a_partition_to_a_new_node_without_losing_records() {
    let mut h = Harness::with_fourth_node();
    assert_eq!(h.create_topic(1, "orders", 1), 0);
    let (old, outside) = replicas_and_outside(&mut h);
    assert_eq!(h.produce("orders", 0, &values("a", 0..20)).0, 0);
    let leader = h.leader_of(1, "orders", 0).unwrap();
    let mut target: Vec<i32> = old.iter().copied().filter(|&n| n != leader).collect();
    target.push(outside);
    // The new replica's node is down: the move starts but cannot complete.
    h.stop(outside);
    let asked_at = (1..=3).find(|&n| n != leader && n != outside).unwrap();
    assert_eq!(reassign(&mut h, asked_at, Some(&target)), (0, None));
    let listed = list_reassignments(&mut h, asked_at);
    let mut widened = target.clone();
    widened.push(leader);
    assert_eq!(listed, vec![(0, widened, vec![outside], vec![leader])]);
    assert_eq!(
        h.produce("orders", 0, &values("b", 0..5)).0,
        0,
        "writes go on"
    );
    h.run(3_000, 100);
    assert_eq!(
        list_reassignments(&mut h, asked_at).len(),
        1,
        "still moving"
    );
    // Back: it catches up and the move completes.
    h.start(outside);
    h.run(8_000, 100);
    assert!(list_reassignments(&mut h, asked_at).is_empty(), "done");
    let image = h.node(asked_at).image().clone();
    let p = &image.topic("orders").unwrap().partitions[0];
    assert_eq!(p.replicas.iter().map(|n| n.0).collect::<Vec<_>>(), target);
    assert_eq!(p.isr.len(), 3);
    assert_ne!(
        p.leader,
        Some(NodeId(leader)),
        "the removed leader handed over"
    );
    assert!(
        h.node(leader).broker().partition_log("orders", 0).is_none(),
        "the removed replica dropped its log"
    );
    let mut expected = values("a", 0..20);
    expected.extend(values("b", 0..5));
    assert_eq!(h.log_of(outside, "orders", 0).0, expected);
    assert_eq!(h.produce("orders", 0, &values("c", 0..3)), (0, 25));
    h.run(1_000, 50);
    expected.extend(values("c", 0..3));
    for &n in &target {
        assert_eq!(h.log_of(n, "orders", 0), (expected.clone(), 28), "node {n}");
    }
    // Cancelling when nothing moves, and a target naming an unknown broker, are refused.
    assert_eq!(
        reassign(&mut h, 4, None).0,
        ErrorCode::NoReassignmentInProgress.code()
    );
    assert_eq!(
        reassign(&mut h, 4, Some(&[1, 9])).0,
        ErrorCode::InvalidReplicaAssignment.code()
    );
    // A target of any length is answered, never sent on (its list would not encode).
    let huge: Vec<i32> = (0..70_000).map(|i| i % 4 + 1).collect();
    assert_eq!(
        reassign(&mut h, 4, Some(&huge)).0,
        ErrorCode::InvalidReplicaAssignment.code()
    );
}

/// CreateTopics at any node with explicit replica lists (count and factor -1) places each
/// partition on the brokers listed, led by the first; lists Kafka refuses are refused
/// before the controller is asked.
#[test]
fn node_create_topics_with_replica_assignments_places_each_partition_as_listed() {
    use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
    let mut h = Harness::new();
    h.run(5_000, 50);
    let create = |h: &mut Harness, name: &str, counts: (i32, i16), lists: &[&[i32]]| {
        let mut topic = CreatableTopic::default();
        topic.name = TopicName(StrBytes::from_string(name.into()));
        (topic.num_partitions, topic.replication_factor) = counts;
        topic.assignments = (lists.iter().enumerate())
            .map(|(i, list)| {
                let mut a = CreatableReplicaAssignment::default();
                a.partition_index = i as i32;
                a.broker_ids = list.iter().map(|&n| BrokerId(n)).collect();
                a
            })
            .collect();
        let mut request = CreateTopicsRequest::default();
        request.topics = vec![topic];
        request.timeout_ms = 10_000;
        let ResponseKind::CreateTopics(r) =
            answer(h, 2, 5, RequestKind::CreateTopics(request), 500)
        else {
            panic!()
        };
        (
            r.topics[0].error_code,
            r.topics[0].error_message.as_ref().map(|m| m.to_string()),
        )
    };
    assert_eq!(create(&mut h, "placed", (-1, -1), &[&[3, 1], &[2, 3]]).0, 0);
    let image = h.node(1).image().clone();
    let placed = &image.topic("placed").unwrap().partitions;
    let replicas: Vec<Vec<i32>> = (placed.iter())
        .map(|p| p.replicas.iter().map(|n| n.0).collect())
        .collect();
    assert_eq!(replicas, vec![vec![3, 1], vec![2, 3]]);
    assert_eq!(placed[0].leader, Some(NodeId(3)));
    let refused = [
        (
            "counts",
            (2, -1),
            vec![&[1, 2][..], &[2, 3]],
            ErrorCode::InvalidRequest,
        ),
        (
            "uneven",
            (-1, -1),
            vec![&[1, 2][..], &[2]],
            ErrorCode::InvalidReplicaAssignment,
        ),
        (
            "twice",
            (-1, -1),
            vec![&[1, 1][..]],
            ErrorCode::InvalidReplicaAssignment,
        ),
        (
            "unknown",
            (-1, -1),
            vec![&[1, 9][..]],
            ErrorCode::InvalidReplicaAssignment,
        ),
    ];
    for (name, counts, lists, code) in refused {
        let (error, message) = create(&mut h, name, counts, &lists);
        assert_eq!(error, code.code(), "{name}: {message:?}");
        assert!(message.is_some_and(|m| !m.is_empty()), "{name} says why");
        assert!(h.node(1).image().topic(name).is_none());
    }
}

/// A broker config as DescribeConfigs at `at` reports it for BROKER resource `name`:
/// (value, source).
fn broker_config(h: &mut Harness, at: i32, name: &str, key: &str) -> (String, i8) {
    describe_one(h, at, (4, name), key).expect("the broker reports it")
}

/// `orders-0`'s replicas at node 1, and the one of four nodes that holds none of it.
fn replicas_and_outside(h: &mut Harness) -> (Vec<i32>, i32) {
    let partition = &h.node(1).image().topic("orders").unwrap().partitions[0];
    let old: Vec<i32> = partition.replicas.iter().map(|n| n.0).collect();
    let outside = (1..=4).find(|n| !old.contains(n)).unwrap();
    (old, outside)
}

/// Simulated milliseconds until `orders-0`'s move to `target` completes (at most `limit`).
fn time_to_move(h: &mut Harness, target: &[i32], limit: i64) -> i64 {
    assert_eq!(reassign(h, 1, Some(target)), (0, None));
    let start = h.now;
    while !list_reassignments(h, 1).is_empty() && h.now - start < limit {
        h.run(100, 50);
    }
    h.now - start
}

/// `leader.replication.throttled.rate` (and the follower's), set for every broker with
/// IncrementalAlterConfigs of the empty BROKER resource at any node, reach every node's
/// metadata and bound a reassignment's catch-up near the rate; deleted, the next move goes
/// at full speed. Static broker configs and bad rates are refused.
#[test]
fn node_replication_throttle_bounds_a_reassignment_s_catch_up_rate() {
    let mut h = Harness::with_fourth_node();
    assert_eq!(h.create_topic(1, "orders", 1), 0);
    // About 200 KB in the partition.
    let chunk: Vec<String> = (0..50).map(|i| format!("{i:0>1000}")).collect();
    for _ in 0..4 {
        assert_eq!(h.produce("orders", 0, &chunk).0, 0);
    }
    let (old, outside) = replicas_and_outside(&mut h);
    let leader = h.leader_of(1, "orders", 0).unwrap();
    let rate = "40000"; // bytes per second: about five seconds for the partition
    for key in [
        "leader.replication.throttled.rate",
        "follower.replication.throttled.rate",
    ] {
        let set = alter_resource(&mut h, 2, (4, ""), &[(0, key, Some(rate))], false);
        assert_eq!(set, (0, None), "{key}");
        for at in 1..=4 {
            assert_eq!(
                broker_config(&mut h, at, &at.to_string(), key),
                (rate.into(), 3)
            );
        }
    }
    // Onto the fourth node, keeping the leader: throttled.
    let mut target: Vec<i32> = old
        .iter()
        .copied()
        .filter(|&n| n != leader)
        .take(1)
        .collect();
    target.insert(0, leader);
    target.push(outside);
    let throttled = time_to_move(&mut h, &target, 60_000);
    assert!(
        (3_000..=12_000).contains(&throttled),
        "200 KB at 40 KB/s took {throttled} ms"
    );
    assert_eq!(h.log_of(outside, "orders", 0).0.len(), 200);
    // Unthrottled: the move back is quick.
    for key in [
        "leader.replication.throttled.rate",
        "follower.replication.throttled.rate",
    ] {
        assert_eq!(
            alter_resource(&mut h, 3, (4, ""), &[(1, key, None)], false).0,
            0
        );
    }
    let spare = *old.iter().find(|n| !target.contains(n)).unwrap();
    let back = [leader, outside, spare];
    let quick = time_to_move(&mut h, &back, 60_000);
    assert!(quick < 2_000, "unthrottled took {quick} ms");
    assert_eq!(h.log_of(spare, "orders", 0).0.len(), 200);
    // Refused: a static config, a bad rate, an unknown broker; nothing changes.
    let refused = [
        ((4, ""), "num.partitions", "3", ErrorCode::InvalidRequest),
        (
            (4, ""),
            "leader.replication.throttled.rate",
            "-5",
            ErrorCode::InvalidConfig,
        ),
        (
            (4, "9"),
            "leader.replication.throttled.rate",
            "5",
            ErrorCode::InvalidRequest,
        ),
    ];
    for (resource, key, value, code) in refused {
        let (error, message) = alter_resource(&mut h, 1, resource, &[(0, key, Some(value))], false);
        assert_eq!(error, code.code(), "{key}={value}: {message:?}");
    }
    assert!(h.node(1).image().broker_configs(-1).is_none());
}

/// An AlterPartitionReassignments asked of a controller that dies before answering is asked
/// again of the next controller, and answered.
#[test]
fn node_a_request_to_a_controller_that_died_goes_to_the_next_one() {
    let mut h = Harness::with_fourth_node();
    assert_eq!(h.create_topic(1, "orders", 1), 0);
    let (old, outside) = replicas_and_outside(&mut h);
    let controller = h.controller().unwrap();
    h.stop(controller);
    let at = (1..=4).find(|&n| n != controller).unwrap();
    let mut target = old.clone();
    target.retain(|&n| n != controller);
    target.push(outside);
    target.truncate(3);
    assert_eq!(reassign_within(&mut h, at, Some(&target), 15_000).0, 0);
    assert_ne!(h.controller(), Some(controller));
}

/// DescribeQuorum names a broker that is not a voter among the observers, with the log
/// index it applied, at whichever node it is asked.
#[test]
fn node_describe_quorum_lists_the_observers() {
    let mut h = Harness::with_fourth_node();
    h.run(1_000, 50);
    for at in [2, 4] {
        let p = describe_quorum_partition(&mut h, at, super::QUORUM_TOPIC);
        assert_eq!(p.error_code, 0);
        assert_eq!(p.current_voters.len(), 3);
        let observers: Vec<(i32, i64)> = (p.observers.iter())
            .map(|o| (o.replica_id.0, o.log_end_offset))
            .collect();
        assert_eq!(observers.len(), 1, "{observers:?}");
        assert_eq!(observers[0].0, 4);
        assert!(
            observers[0].1 > 0 && observers[0].1 <= p.high_watermark,
            "{observers:?} at {}",
            p.high_watermark
        );
    }
}

/// UnregisterBroker v0 of `node` at `at`: (error code, message).
fn unregister(h: &mut Harness, at: i32, node: i32) -> (i16, Option<String>) {
    let mut body = UnregisterBrokerRequest::default();
    body.broker_id = BrokerId(node);
    let ResponseKind::UnregisterBroker(r) =
        answer(h, at, 0, RequestKind::UnregisterBroker(body), 500)
    else {
        panic!()
    };
    (r.error_code, r.error_message.map(|m| m.to_string()))
}

/// A drained, stopped node leaves the cluster with UnregisterBroker at any node; while it
/// runs or holds a replica it is refused with the reason, and an unknown id is
/// BROKER_ID_NOT_REGISTERED.
#[test]
fn node_unregister_broker_removes_a_stopped_drained_node() {
    let mut h = Harness::with_fourth_node();
    assert_eq!(h.create_topic(1, "orders", 4), 0);
    let holds = |h: &mut Harness| {
        let image = h.node(1).image().clone();
        (image.topics().values().flat_map(|t| &t.partitions))
            .any(|p| p.replicas.contains(&NodeId(4)))
    };
    assert!(holds(&mut h), "four RF=3 partitions over four nodes");
    let (code, message) = unregister(&mut h, 2, 4);
    assert_eq!(code, ErrorCode::InvalidRequest.code());
    assert!(message.unwrap().contains("stop it first"));
    h.stop(4);
    h.run(12_000, 100); // fenced once its session expires
    let (code, message) = unregister(&mut h, 2, 4);
    assert_eq!(code, ErrorCode::InvalidRequest.code());
    assert!(message.unwrap().contains("holds replicas"));
    // Drained: every partition on it moves to the three others.
    let partitions = h
        .node(1)
        .image()
        .topic("orders")
        .unwrap()
        .partitions
        .clone();
    for p in partitions
        .iter()
        .filter(|p| p.replicas.contains(&NodeId(4)))
    {
        let moved = reassign_partition(&mut h, 1, p.partition, Some(&[1, 2, 3]), 2_000);
        assert_eq!(moved.0, 0, "{moved:?}");
    }
    h.run(3_000, 100);
    assert!(!holds(&mut h), "drained");
    assert_eq!(unregister(&mut h, 3, 4), (0, None));
    for at in 1..=3 {
        assert!(
            !h.node(at).image().brokers().contains_key(&NodeId(4)),
            "gone at {at}"
        );
    }
    assert_eq!(
        unregister(&mut h, 3, 4).0,
        ErrorCode::BrokerIdNotRegistered.code()
    );
}

/// A node that is not a voter restarts after one of its replicas was moved away and back:
/// it replays the metadata history into an image before its broker acts on it, so the
/// past move away never deletes the replica it holds now.
#[test]
fn node_an_observer_restarting_after_a_move_away_and_back_keeps_its_replica() {
    // No snapshot on the way: the restarted node fetches the whole history.
    let mut h = Harness::with_fourth_node_and(100_000);
    assert_eq!(h.create_topic(1, "orders", 1), 0);
    let (old, with_four) = ([1, 2, 3], [4, 1, 2]);
    let moved = |h: &mut Harness, target: &[i32]| {
        assert_eq!(reassign(h, 1, Some(target)), (0, None), "to {target:?}");
        h.run(3_000, 100);
        assert!(list_reassignments(h, 1).is_empty(), "moved to {target:?}");
    };
    moved(&mut h, &old);
    moved(&mut h, &with_four);
    assert_eq!(h.produce("orders", 0, &values("a", 0..20)).0, 0);
    h.run(1_000, 50);
    moved(&mut h, &old);
    moved(&mut h, &with_four);
    assert_eq!(h.log_of(4, "orders", 0).0, values("a", 0..20));
    // The other replicas are down too: nothing could bring back what it would delete.
    for n in [4, 1, 2] {
        h.stop(n);
    }
    h.start(4);
    h.run(3_000, 100);
    assert_eq!(
        h.log_of(4, "orders", 0).0,
        values("a", 0..20),
        "kept over the restart"
    );
}

/// Two nodes change different dynamic broker configs at once: both stay (each sends only
/// the keys it changes, not a whole set built from its own image).
#[test]
fn node_concurrent_dynamic_config_changes_of_different_keys_both_stay() {
    use kafka_protocol::messages::incremental_alter_configs_request::*;
    let mut h = Harness::new();
    h.run(5_000, 50);
    let body = |key: &str| {
        let mut config = AlterableConfig::default();
        config.name = StrBytes::from_string(key.into());
        config.config_operation = 0;
        config.value = Some(StrBytes::from_static_str("1000"));
        let mut resource = AlterConfigsResource::default();
        resource.resource_type = 4;
        resource.resource_name = StrBytes::from_static_str("");
        resource.configs = vec![config];
        let mut body = IncrementalAlterConfigsRequest::default();
        body.resources = vec![resource];
        RequestKind::IncrementalAlterConfigs(body)
    };
    // Both asked before either reaches the controller (no message delivered between).
    let controller = h.controller().unwrap();
    let (a, b) = match controller {
        1 => (2, 3),
        2 => (1, 3),
        _ => (1, 2),
    };
    let now = Millis(h.now);
    for (at, key) in [
        (a, "leader.replication.throttled.rate"),
        (b, "follower.replication.throttled.rate"),
    ] {
        let request = Request {
            api_key: ApiKey::IncrementalAlterConfigs,
            api_version: 1,
            correlation_id: 1,
            client_id: None,
            body: body(key),
        };
        let reply = h
            .node(at)
            .handle_request(now, &RequestContext::default(), request)
            .unwrap();
        assert!(matches!(reply, Reply::Parked(_)), "{reply:?}");
    }
    h.run(1_000, 50);
    let set = h
        .node(3)
        .image()
        .broker_configs(-1)
        .cloned()
        .unwrap_or_default();
    assert_eq!(set.len(), 2, "{set:?}");
}

/// The directory a 0.1.0 single broker left: topic `orders` with a config override and
/// three records in partition 0, and group `g` committed at 2 on `orders-0`.
fn single_broker_directory() -> (MemoryDirs, uuid::Uuid) {
    use crate::broker::test_node::{write_0_1_directory, OldTopic};
    let dirs = MemoryDirs::default();
    let id = uuid::Uuid::from_u128(0x0de75);
    let orders = OldTopic {
        name: "orders",
        id,
        partitions: vec![values("old", 0..3), Vec::new()],
        configs: &[("retention.ms", "86400000")],
    };
    write_0_1_directory(&dirs, &[orders], 3, &[("g", "orders", 0, 2)], Millis(10));
    (dirs, id)
}

/// A data directory a single broker wrote opens as a one-node cluster: the node leads at
/// once, adopts the broker's topics into its metadata log with their ids, partitions and
/// configs, and serves their records and the group's committed offsets; restarts adopt
/// nothing twice.
#[test]
fn node_a_single_broker_s_directory_opens_as_a_one_node_cluster_with_its_topics_and_offsets() {
    let (dirs, id) = single_broker_directory();
    let mut h = Harness::one_node(dirs);
    assert!(!h.node(1).is_serving(), "not before the topics are adopted");
    h.run(300, 50);
    assert!(h.node(1).is_serving());
    assert_eq!(h.controller(), Some(1));
    for round in 0..2 {
        let image = h.node(1).image().clone();
        let topic = image.topic("orders").expect("adopted");
        assert_eq!(topic.id, id);
        assert_eq!(topic.partitions.len(), 2);
        assert_eq!(topic.configs["retention.ms"], "86400000");
        assert!(topic.partitions.iter().all(|p| p.leader == Some(NodeId(1))));
        let (log, high_watermark) = h.log_of(1, "orders", 0);
        let mut expected = values("old", 0..3);
        if round == 1 {
            expected.extend(values("new", 0..2));
        }
        assert_eq!(log, expected);
        assert_eq!(high_watermark, expected.len() as i64);
        assert_eq!(committed(&mut h, 1, "g"), (0, 2));
        if round == 0 {
            assert_eq!(h.produce("orders", 0, &values("new", 0..2)), (0, 3));
        }
        assert!(h.node(1).broker().legacy_topics().is_empty());
        h.stop(1);
        h.start(1);
        h.run(500, 50);
        assert!(h.node(1).is_serving(), "round {round}");
    }
    let image = h.node(1).image().clone();
    assert_eq!(
        image.topics().len(),
        2,
        "orders and __consumer_offsets, once each"
    );
}

/// A single broker's directory does not open as a member of a larger cluster (its logs
/// would be the only replica of topics the others lack), and no directory opens under
/// another node id than the one that wrote it.
#[test]
fn node_refuses_a_single_broker_s_directory_in_a_larger_cluster_and_another_node_s_directory() {
    let (dirs, _) = single_broker_directory();
    let broker = BrokerConfig::default();
    let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
    let config = NodeConfig::new(broker.clone(), voters, 1);
    let refused = ClusterNode::open(dirs.clone(), config, Millis(0)).err();
    assert!(
        matches!(&refused, Some(NodeError::Migration(m)) if m.contains("one-node cluster")),
        "{refused:?}"
    );
    let config = NodeConfig::new(broker.clone(), vec![NodeId(1)], 1);
    ClusterNode::open(dirs.clone(), config, Millis(0))
        .unwrap()
        .close()
        .unwrap();
    let other = BrokerConfig {
        node_id: 2,
        ..broker
    };
    let config = NodeConfig::new(other, vec![NodeId(2)], 2);
    let refused = ClusterNode::open(dirs, config, Millis(0)).err();
    assert!(
        matches!(
            refused,
            Some(NodeError::OtherNode {
                stored: 1,
                expected: 2
            })
        ),
        "{refused:?}"
    );
}

/// An AlterPartitionReassignments held up on its way to the controller (answered as timed
/// out meanwhile) that arrives after a later move of the partition was asked and done is
/// refused: it never undoes the later move, even when the replicas look as they did when it
/// was asked.
#[test]
fn node_a_reassignment_held_up_on_its_way_never_undoes_a_later_one() {
    let mut h = Harness::with_fourth_node();
    assert_eq!(h.create_topic(1, "orders", 1), 0);
    let (old, outside) = replicas_and_outside(&mut h);
    let controller = h.controller().unwrap();
    let at = (1..=4).find(|&n| n != controller).unwrap();
    let moved: Vec<i32> = old[1..].iter().copied().chain([outside]).collect();
    // Asked at `at`, whose message to the controller is held back.
    let (id, held) = reassign_held(&mut h, at, &moved, 500);
    h.run(1_000, 50);
    let ResponseKind::AlterPartitionReassignments(r) = h.take_completed(at, id).unwrap() else {
        panic!()
    };
    let timed_out = &r.responses[0].partitions[0];
    assert_eq!(timed_out.error_code, ErrorCode::RequestTimedOut.code());
    // The same move, asked again and done, then the move back, asked and done.
    assert!(time_to_move(&mut h, &moved, 20_000) < 20_000);
    assert!(time_to_move(&mut h, &old, 20_000) < 20_000);
    // The held request arrives at last.
    let (to, bytes) = &held;
    let now = Millis(h.now);
    h.node(to.0)
        .handle_peer_message(now, NodeId(at), bytes)
        .unwrap();
    h.run(3_000, 50);
    assert!(list_reassignments(&mut h, 1).is_empty());
    let (replicas, _) = replicas_and_outside(&mut h);
    assert_eq!(replicas, old, "the later move stands");
}

/// Metadata v12 for `orders` at `at`, sent without delivering anything first: the reply.
fn metadata_request(h: &mut Harness, at: i32) -> Reply {
    let mut topic = metadata_request::MetadataRequestTopic::default();
    topic.name = Some(TopicName(StrBytes::from_static_str("orders")));
    let mut body = MetadataRequest::default();
    body.topics = Some(vec![topic]);
    let request = Request {
        api_key: ApiKey::Metadata,
        api_version: 12,
        correlation_id: 1,
        client_id: None,
        body: RequestKind::Metadata(body),
    };
    let now = Millis(h.now);
    let context = RequestContext::default();
    h.node(at).handle_request(now, &context, request).unwrap()
}

/// The leader Metadata names for `orders-0` in `response`.
fn metadata_leader(response: ResponseKind) -> i32 {
    let ResponseKind::Metadata(r) = response else {
        panic!("{response:?}")
    };
    r.topics[0].partitions[0].leader_id.0
}

/// Metadata asked the moment a leader's node is lost waits for the controller to fence it
/// and elect another leader, so the client's first refresh names the new leader.
#[test]
fn node_metadata_asked_as_a_leader_dies_names_its_successor() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    assert_eq!(h.create_topic(1, "orders", 1), 0);
    h.run(1_000, 50);
    let leader = h.leader_of(1, "orders", 0).unwrap();
    let at = (1..=3).find(|&n| n != leader).unwrap();
    h.stop(leader);
    let now = Millis(h.now);
    for n in (1..=3).filter(|&n| n != leader) {
        h.node(n).handle_peer_down(now, NodeId(leader)).unwrap();
    }
    let Reply::Parked(id) = metadata_request(&mut h, at) else {
        panic!("held while the lost leader is active in the image")
    };
    h.run(200, 10);
    let response = h
        .take_completed(at, id)
        .expect("answered once the leader moved");
    let successor = metadata_leader(response);
    assert_ne!(successor, leader);
    assert_eq!(Some(successor), h.leader_of(at, "orders", 0));
}

/// A peer cut off from this node alone (the controller still hears it) holds Metadata for a
/// moment after the loss, never longer: then it is answered as the image stands.
#[test]
fn node_metadata_for_a_leader_lost_to_this_node_alone_waits_only_briefly() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    assert_eq!(h.create_topic(1, "orders", 1), 0);
    h.run(1_000, 50);
    let leader = h.leader_of(1, "orders", 0).unwrap();
    let controller = h.controller().unwrap();
    let Some(at) = (1..=3).find(|&n| n != leader && n != controller) else {
        return; // the leader is the controller: no third node to lose it alone
    };
    let now = Millis(h.now);
    h.node(at).handle_peer_down(now, NodeId(leader)).unwrap();
    let Reply::Parked(id) = metadata_request(&mut h, at) else {
        panic!("held right after the loss")
    };
    h.run(METADATA_HOLD_MS - 50, 50);
    assert!(h.take_completed(at, id).is_none(), "held up to the limit");
    h.run(100, 50);
    let response = h.take_completed(at, id).expect("answered at the limit");
    assert_eq!(metadata_leader(response), leader);
    // Later requests are answered at once, the loss being old now.
    assert!(matches!(metadata_request(&mut h, at), Reply::Response(_)));
}

/// AlterPartitionReassignments v0 of `orders-0` to `target` at `at` (answered within
/// `timeout_ms`), taken by the node but not delivered: the parked id and the Reassign message it sends the controller (to, bytes).
fn reassign_held(
    h: &mut Harness,
    at: i32,
    target: &[i32],
    timeout_ms: i32,
) -> (ParkedId, (NodeId, Vec<u8>)) {
    use kafka_protocol::messages::alter_partition_reassignments_request::*;
    let mut partition = ReassignablePartition::default();
    partition.replicas = Some(target.iter().map(|&n| BrokerId(n)).collect());
    let mut topic = ReassignableTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("orders"));
    topic.partitions = vec![partition];
    let mut body = AlterPartitionReassignmentsRequest::default();
    body.timeout_ms = timeout_ms;
    body.topics = vec![topic];
    let request = Request {
        api_key: ApiKey::AlterPartitionReassignments,
        api_version: 0,
        correlation_id: 1,
        client_id: None,
        body: RequestKind::AlterPartitionReassignments(body),
    };
    let now = Millis(h.now);
    let context = RequestContext::default();
    let reply = h.node(at).handle_request(now, &context, request).unwrap();
    let Reply::Parked(id) = reply else {
        panic!("{reply:?}")
    };
    let outgoing = h.node(at).poll_outgoing();
    let is_reassign = |b: &[u8]| matches!(PeerMessage::decode(b), Ok(PeerMessage::Reassign { .. }));
    let (mut held, others): (Vec<_>, Vec<_>) =
        outgoing.into_iter().partition(|(_, b)| is_reassign(b));
    for (to, bytes) in others {
        h.node(to.0)
            .handle_peer_message(now, NodeId(at), &bytes)
            .unwrap();
    }
    assert_eq!(held.len(), 1, "one Reassign to the controller");
    (id, held.remove(0))
}

/// A node numbers its parked requests afresh in each incarnation: a controller's late answer
/// to a request of the node's previous run never answers one of this run.
#[test]
fn node_a_late_answer_to_an_earlier_incarnation_s_request_answers_nothing() {
    let mut h = Harness::with_fourth_node();
    assert_eq!(h.create_topic(1, "orders", 1), 0);
    let (old, outside) = replicas_and_outside(&mut h);
    let controller = h.controller().unwrap();
    let at = (1..=4).find(|&n| n != controller).unwrap();
    let moved: Vec<i32> = old[1..].iter().copied().chain([outside]).collect();
    let (first, (_, bytes)) = reassign_held(&mut h, at, &moved, 5_000);
    let Ok(PeerMessage::Reassign {
        request: earlier,
        partitions,
    }) = PeerMessage::decode(&bytes)
    else {
        panic!()
    };
    h.stop(at);
    h.start(at);
    h.run(3_000, 50);
    let (second, (to, bytes)) = reassign_held(&mut h, at, &moved, 5_000);
    assert_ne!(first, second, "numbered afresh");
    // The controller's answer to the earlier run's request arrives now: a refusal.
    let late = PeerMessage::Reassigned {
        request: earlier,
        results: vec![crate::cluster::Reassigned {
            topic_id: partitions[0].topic_id,
            partition: 0,
            outcome: Err((ErrorCode::InvalidReplicaAssignment, "late".into())),
        }],
    };
    let now = Millis(h.now);
    (h.node(at)
        .handle_peer_message(now, NodeId(controller), &late.encode()))
    .unwrap();
    h.node(to.0)
        .handle_peer_message(now, NodeId(at), &bytes)
        .unwrap();
    h.run(3_000, 50);
    let ResponseKind::AlterPartitionReassignments(r) = h.take_completed(at, second).unwrap() else {
        panic!()
    };
    let answer = &r.responses[0].partitions[0];
    assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
}

/// FindCoordinator v3 for a transactional id at `at`, asked until it names one.
fn txn_coordinator(h: &mut Harness, at: i32, id: &str) -> i32 {
    for _ in 0..20 {
        let mut body = FindCoordinatorRequest::default();
        body.key = StrBytes::from_string(id.into());
        body.key_type = 1;
        let body = RequestKind::FindCoordinator(body);
        let ResponseKind::FindCoordinator(r) = answer(h, at, 3, body, 0) else {
            panic!()
        };
        if r.error_code == 0 {
            return r.node_id.0;
        }
        h.run(500, 50);
    }
    panic!("no transaction coordinator for {id}");
}

/// A transactional acks=all produce of `values` by `(producer, epoch)` at the leader.
/// `sequence` is the batch's first sequence number.
fn txn_produce(
    h: &mut Harness,
    producer: (i64, i16),
    partition: i32,
    sequence: i32,
    values: &[String],
) -> i16 {
    let (id, epoch) = (
        crate::types::ProducerId(producer.0),
        crate::types::ProducerEpoch(producer.1),
    );
    let mut builder = BatchBuilder::new(Offset(0))
        .producer(id, epoch, sequence)
        .attributes(0x10);
    for value in values {
        builder.push(&Record {
            timestamp: h.now,
            key: None,
            value: Some(value.clone().into_bytes()),
            headers: Vec::new(),
        });
    }
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(Bytes::from(builder.build()));
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str("orders"));
    topic.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx")));
    request.acks = -1;
    request.timeout_ms = 10_000;
    request.topic_data = vec![topic];
    let leader = h
        .leader_of(1, "orders", partition as usize)
        .expect("a leader");
    let ResponseKind::Produce(r) = answer(h, leader, 9, RequestKind::Produce(request), 2_000)
    else {
        panic!()
    };
    r.responses[0].partition_responses[0].error_code
}

/// ListOffsets v5 latest at the partition's leader, for read_committed (isolation 1) or not.
fn latest_offset(h: &mut Harness, partition: i32, isolation: i8) -> i64 {
    let mut wanted =
        kafka_protocol::messages::list_offsets_request::ListOffsetsPartition::default();
    wanted.partition_index = partition;
    wanted.timestamp = -1;
    let mut topic = kafka_protocol::messages::list_offsets_request::ListOffsetsTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("orders"));
    topic.partitions = vec![wanted];
    let mut request = ListOffsetsRequest::default();
    request.isolation_level = isolation;
    request.topics = vec![topic];
    let leader = h
        .leader_of(1, "orders", partition as usize)
        .expect("a leader");
    let ResponseKind::ListOffsets(r) = answer(h, leader, 5, RequestKind::ListOffsets(request), 0)
    else {
        panic!()
    };
    r.topics[0].partitions[0].offset
}

/// EndTxn v3 at the coordinator: its error code.
fn end_txn(h: &mut Harness, at: i32, producer: (i64, i16), commit: bool) -> i16 {
    let mut request = EndTxnRequest::default();
    request.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
    request.producer_id = ProducerId(producer.0);
    request.producer_epoch = producer.1;
    request.committed = commit;
    let ResponseKind::EndTxn(r) = answer(h, at, 3, RequestKind::EndTxn(request), 2_000) else {
        panic!()
    };
    r.error_code
}

#[test]
fn node_a_transaction_ends_on_partitions_other_nodes_lead() {
    let mut h = Harness::new();
    h.run(5_000, 50);
    assert_eq!(h.create_topic(1, "orders", 3), 0);
    h.run(1_000, 50);
    let coordinator = txn_coordinator(&mut h, 1, "tx");
    let leaders: Vec<i32> = (0..3)
        .map(|p| h.leader_of(1, "orders", p).unwrap())
        .collect();
    assert!(
        leaders.iter().any(|&l| l != coordinator),
        "some partition is led away from the coordinator: {leaders:?} vs {coordinator}"
    );
    let mut init = InitProducerIdRequest::default();
    init.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx")));
    init.transaction_timeout_ms = 60_000;
    let body = RequestKind::InitProducerId(init);
    let ResponseKind::InitProducerId(r) = answer(&mut h, coordinator, 3, body, 2_000) else {
        panic!()
    };
    assert_eq!(r.error_code, 0);
    let producer = (r.producer_id.0, r.producer_epoch);

    for (round, commit, prefix) in [(0, true, "c"), (1, false, "a")] {
        let mut topic = kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
        topic.name = TopicName(StrBytes::from_static_str("orders"));
        topic.partitions = vec![0, 1, 2];
        let mut add = AddPartitionsToTxnRequest::default();
        add.v3_and_below_transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
        add.v3_and_below_producer_id = ProducerId(producer.0);
        add.v3_and_below_producer_epoch = producer.1;
        add.v3_and_below_topics = vec![topic];
        let body = RequestKind::AddPartitionsToTxn(add);
        let ResponseKind::AddPartitionsToTxn(r) = answer(&mut h, coordinator, 3, body, 2_000)
        else {
            panic!()
        };
        let codes: Vec<i16> = (r.results_by_topic_v3_and_below[0]
            .results_by_partition
            .iter())
        .map(|p| p.partition_error_code)
        .collect();
        assert_eq!(codes, vec![0, 0, 0]);
        let before: Vec<i64> = (0..3).map(|p| latest_offset(&mut h, p, 0)).collect();
        for partition in 0..3 {
            let code = txn_produce(
                &mut h,
                producer,
                partition,
                round * 2,
                &values(prefix, 0..2),
            );
            assert_eq!(code, 0, "partition {partition}");
            assert_eq!(
                latest_offset(&mut h, partition, 1),
                before[partition as usize],
                "the open transaction holds read_committed back"
            );
            assert_eq!(
                latest_offset(&mut h, partition, 0),
                before[partition as usize] + 2
            );
        }
        if commit {
            // Operators see the open transaction at its coordinator only.
            let (code, state, partitions) = describe_txn(&mut h, coordinator);
            assert_eq!(
                (code, state.as_str(), partitions),
                (0, "Ongoing", vec![0, 1, 2])
            );
            let other = (1..=3).find(|&n| n != coordinator).unwrap();
            let (code, _, _) = describe_txn(&mut h, other);
            assert_eq!(code, ErrorCode::NotCoordinator.code());
            let (listed, unknown) = list_txns(&mut h, coordinator, &["Ongoing", "Bogus"]);
            assert_eq!(listed, vec![("tx".to_string(), "Ongoing".to_string())]);
            assert_eq!(unknown, vec!["Bogus".to_string()]);
            assert!(list_txns(&mut h, coordinator, &["Empty"]).0.is_empty());
        }
        assert_eq!(end_txn(&mut h, coordinator, producer, commit), 0);
        h.run(1_000, 50);
        for partition in 0..3 {
            let end = latest_offset(&mut h, partition, 0);
            assert_eq!(
                end,
                before[partition as usize] + 3,
                "the records and a marker"
            );
            assert_eq!(
                latest_offset(&mut h, partition, 1),
                end,
                "partition {partition} (leader {}) is stable once its marker is in",
                leaders[partition as usize]
            );
        }
    }
}

/// DescribeTransactions of `tx` at `at`: (error, state, partitions of `orders`).
fn describe_txn(h: &mut Harness, at: i32) -> (i16, String, Vec<i32>) {
    let mut request = DescribeTransactionsRequest::default();
    request.transactional_ids = vec![TransactionalId(StrBytes::from_static_str("tx"))];
    let body = RequestKind::DescribeTransactions(request);
    let ResponseKind::DescribeTransactions(r) = answer(h, at, 0, body, 0) else {
        panic!()
    };
    let state = &r.transaction_states[0];
    let partitions = state
        .topics
        .first()
        .map(|t| t.partitions.clone())
        .unwrap_or_default();
    (
        state.error_code,
        state.transaction_state.to_string(),
        partitions,
    )
}

/// ListTransactions v1 at `at` with these state filters: ((id, state) listed, unknown
/// filters).
fn list_txns(h: &mut Harness, at: i32, states: &[&str]) -> (Vec<(String, String)>, Vec<String>) {
    let mut request = ListTransactionsRequest::default();
    request.state_filters = states
        .iter()
        .map(|s| StrBytes::from_string(s.to_string()))
        .collect();
    request.duration_filter = -1;
    let body = RequestKind::ListTransactions(request);
    let ResponseKind::ListTransactions(r) = answer(h, at, 1, body, 0) else {
        panic!()
    };
    let listed = (r.transaction_states.iter())
        .map(|t| {
            (
                t.transactional_id.0.to_string(),
                t.transaction_state.to_string(),
            )
        })
        .collect();
    let unknown = r
        .unknown_state_filters
        .iter()
        .map(|s| s.to_string())
        .collect();
    (listed, unknown)
}

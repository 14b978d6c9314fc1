//! Brokers as cluster members: three brokers on in-memory disks, a controller whose records
//! every broker applies in order (the metadata log without its quorum), and follower fetches
//! carried as real Fetch requests and responses through the wire codec.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::*;
use crate::cluster::{
    BrokerRegistration, ClusterImage, Controller, ControllerConfig, MetadataRecord, NewTopic,
};
use crate::protocol::Request;
use crate::record::{BatchBuilder, Batches, Record};
use crate::storage::MemoryDirs;
use crate::types::{LeaderEpoch, NodeId, Offset};

type Dirs = MemoryDirs;

struct Node {
    dirs: Dirs,
    broker: Option<Broker<Dirs>>,
    /// How many records of the metadata log it applied.
    applied: usize,
    incarnation: u64,
}

struct Cluster {
    controller: Controller,
    log: Vec<MetadataRecord>,
    nodes: BTreeMap<i32, Node>,
    /// Nodes cut off: they neither fetch nor are fetched from, nor heartbeat.
    isolated: Vec<i32>,
    /// Nodes that heartbeat but do not fetch.
    stalled: Vec<i32>,
    now: i64,
}

const TOPIC: &str = "orders";

impl Cluster {
    fn new(brokers: i32) -> Cluster {
        let controller =
            Controller::new(ClusterImage::new(), Millis(0), ControllerConfig::default());
        let mut cluster = Cluster {
            controller,
            log: Vec::new(),
            nodes: BTreeMap::new(),
            isolated: Vec::new(),
            stalled: Vec::new(),
            now: 0,
        };
        for id in 1..=brokers {
            let dirs = Dirs::default();
            cluster.nodes.insert(
                id,
                Node {
                    broker: None,
                    dirs,
                    applied: 0,
                    incarnation: 0,
                },
            );
            cluster.start(id);
        }
        cluster
    }

    /// Starts (or restarts) broker `id`: a new incarnation registers and, once it has
    /// applied the log, heartbeats itself unfenced.
    fn start(&mut self, id: i32) {
        let node = self.nodes.get_mut(&id).unwrap();
        node.incarnation += 1;
        node.applied = 0;
        let config = BrokerConfig {
            node_id: id,
            advertised_port: 9000 + id,
            ..BrokerConfig::default()
        };
        node.broker =
            Some(Broker::open_member(node.dirs.clone(), config, Millis(self.now)).unwrap());
        let registration = BrokerRegistration {
            node: NodeId(id),
            incarnation: node.incarnation,
            host: "127.0.0.1".into(),
            port: 9000 + id,
            peer: String::new(),
        };
        let records = self
            .controller
            .register_broker(Millis(self.now), registration, false);
        self.commit(records);
        self.heartbeat(id);
    }

    fn heartbeat(&mut self, id: i32) {
        let incarnation = self.nodes[&id].incarnation;
        let records = self
            .controller
            .heartbeat(Millis(self.now), NodeId(id), incarnation, true, false)
            .unwrap();
        self.commit(records);
    }

    /// Appends records to the metadata log; every running broker applies what it has not.
    fn commit(&mut self, records: Vec<MetadataRecord>) {
        self.log.extend(records);
        let now = Millis(self.now);
        for (id, node) in &mut self.nodes {
            if self.isolated.contains(id) {
                continue; // it learns the records once connected again
            }
            let Some(broker) = node.broker.as_mut() else {
                continue;
            };
            for record in &self.log[node.applied..] {
                broker.apply_metadata(now, record).unwrap();
            }
            node.applied = self.log.len();
        }
    }

    fn broker(&mut self, id: i32) -> &mut Broker<Dirs> {
        self.nodes.get_mut(&id).unwrap().broker.as_mut().unwrap()
    }

    fn create_topic(&mut self, partitions: i32, replication_factor: i16, min_insync: &str) {
        let topic = NewTopic {
            name: TOPIC.into(),
            id: uuid::Uuid::from_u128(42),
            partitions,
            replication_factor,
            configs: BTreeMap::from([("min.insync.replicas".to_string(), min_insync.to_string())]),
            assignments: Vec::new(),
            leader_epoch: LeaderEpoch(0),
        };
        let records = self.controller.create_topic(topic).unwrap();
        self.commit(records);
    }

    fn leader(&self, partition: usize) -> i32 {
        let image = self.controller.image();
        image.topic(TOPIC).unwrap().partitions[partition]
            .leader
            .unwrap()
            .0
    }

    fn isr(&self, partition: usize) -> Vec<i32> {
        let image = self.controller.image();
        let p = &image.topic(TOPIC).unwrap().partitions[partition];
        p.isr.iter().map(|n| n.0).collect()
    }

    /// Moves time on by `ms`: live brokers heartbeat, the controller and the brokers tick.
    fn advance(&mut self, ms: i64) {
        self.now += ms;
        let live: Vec<i32> = self
            .nodes
            .iter()
            .filter(|(id, n)| n.broker.is_some() && !self.isolated.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in live {
            self.heartbeat(id);
        }
        let records = self.controller.tick(Millis(self.now));
        self.commit(records);
        let now = Millis(self.now);
        for node in self.nodes.values_mut() {
            if let Some(broker) = node.broker.as_mut() {
                broker.handle_tick(now);
            }
        }
        self.send_isr_changes();
    }

    /// One round of follower fetches between connected brokers, then the ISR changes the
    /// leaders ask for.
    fn replicate(&mut self) {
        let ids: Vec<i32> = self.nodes.keys().copied().collect();
        for follower in ids {
            let quiet = self.isolated.contains(&follower) || self.stalled.contains(&follower);
            if quiet || self.nodes[&follower].broker.is_none() {
                continue;
            }
            for (leader, request) in self.broker(follower).replica_fetches(0, |_| false) {
                if self.isolated.contains(&leader.0) || self.nodes[&leader.0].broker.is_none() {
                    continue;
                }
                let response = self.fetch_from(leader.0, request.clone());
                let now = Millis(self.now);
                self.broker(follower)
                    .handle_replica_fetch_response(now, &request, response);
            }
        }
        self.send_isr_changes();
    }

    fn replicate_rounds(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.replicate();
        }
    }

    fn send_isr_changes(&mut self) {
        let ids: Vec<i32> = self.nodes.keys().copied().collect();
        for id in ids {
            if self.isolated.contains(&id) || self.nodes[&id].broker.is_none() {
                continue;
            }
            for change in self.broker(id).take_isr_changes() {
                let (topic_id, partition) = (change.topic_id, change.partition);
                match self.controller.alter_partition(change) {
                    Ok((_, records)) => self.commit(records),
                    Err(_) => self.broker(id).isr_change_failed(topic_id, partition),
                }
            }
        }
    }

    /// A Fetch through the wire codec: the leader's answer is encoded with its record bytes
    /// and decoded as the follower's client would.
    fn fetch_from(&mut self, leader: i32, request: FetchRequest) -> FetchResponse {
        let version = REPLICA_FETCH_VERSION;
        let now = Millis(self.now);
        let broker = self.broker(leader);
        let reply = broker.handle_request(now, request_of(version, RequestKind::Fetch(request)));
        let Reply::Fetch(data) = reply else {
            panic!("a follower fetch with max_wait 0 is answered at once: {reply:?}");
        };
        let wire = broker.fetch_response_bytes(version, 1, &data).unwrap();
        let mut body = Bytes::from(wire[4..].to_vec());
        let header_version = ApiKey::Fetch.response_header_version(version);
        ResponseHeader::decode(&mut body, header_version).unwrap();
        FetchResponse::decode(&mut body, version).unwrap()
    }

    /// Produces `count` records to `partition` at broker `id`.
    fn produce(&mut self, id: i32, partition: i32, acks: i16, first: usize, count: usize) -> Reply {
        let mut builder = BatchBuilder::new(Offset(0));
        for i in first..first + count {
            builder.push(&Record {
                timestamp: self.now,
                key: None,
                value: Some(format!("r{i}").into_bytes()),
                headers: Vec::new(),
            });
        }
        let mut data = PartitionProduceData::default();
        data.index = partition;
        data.records = Some(Bytes::from(builder.build()));
        let mut topic = TopicProduceData::default();
        topic.name = TopicName(StrBytes::from_static_str(TOPIC));
        topic.partition_data = vec![data];
        let mut request = ProduceRequest::default();
        request.acks = acks;
        request.timeout_ms = 30_000;
        request.topic_data = vec![topic];
        let now = Millis(self.now);
        self.broker(id)
            .handle_request(now, request_of(9, RequestKind::Produce(request)))
    }

    /// The values of partition `partition`'s records in broker `id`'s log, and its high
    /// watermark.
    fn log_of(&mut self, id: i32, partition: i32) -> (Vec<String>, i64) {
        let broker = self.broker(id);
        let log = &broker.topics[TOPIC].partitions[partition].log;
        let mut values = Vec::new();
        let mut next = log.log_start_offset();
        while let Some(slice) = log.read(next, 1 << 20, log.log_end_offset()).unwrap() {
            let bytes = log.read_bytes(&slice).unwrap();
            for batch in Batches::new(&bytes) {
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

fn request_of(version: i16, body: RequestKind) -> Request {
    let api_key = match &body {
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        _ => ApiKey::Metadata,
    };
    Request {
        api_key,
        api_version: version,
        correlation_id: 1,
        client_id: None,
        body,
    }
}

/// The error code and base offset of a one-partition produce answer.
fn produce_answer(response: &ResponseKind) -> (i16, i64) {
    let ResponseKind::Produce(response) = response else {
        panic!("{response:?}");
    };
    let answer = &response.responses[0].partition_responses[0];
    (answer.error_code, answer.base_offset)
}

fn values(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("r{i}")).collect()
}

#[test]
fn cluster_acks_all_waits_for_the_followers_and_every_replica_holds_the_records() {
    let mut cluster = Cluster::new(3);
    cluster.create_topic(1, 3, "2");
    let leader = cluster.leader(0);
    let followers: Vec<i32> = (1..=3).filter(|&n| n != leader).collect();
    assert_eq!(cluster.isr(0), vec![1, 2, 3]);

    let Reply::Parked(id) = cluster.produce(leader, 0, -1, 0, 5) else {
        panic!("acks=all waits for the followers");
    };
    assert!(cluster.broker(leader).poll_completed_responses().is_empty());
    assert_eq!(
        cluster.log_of(leader, 0),
        (values(0..5), 0),
        "not committed yet"
    );
    // First round: followers copy the records; second: their fetch offsets commit them.
    cluster.replicate();
    assert!(cluster.broker(leader).poll_completed_responses().is_empty());
    cluster.replicate();
    let completed = cluster.broker(leader).poll_completed_responses();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].0, id);
    assert_eq!(produce_answer(&completed[0].1), (0, 0));
    cluster.replicate();
    for id in [leader, followers[0], followers[1]] {
        assert_eq!(cluster.log_of(id, 0), (values(0..5), 5), "broker {id}");
    }
    // acks=1 is answered at once; followers and the watermark catch up after.
    let Reply::Response(response) = cluster.produce(leader, 0, 1, 5, 3) else {
        panic!("acks=1 is answered at once");
    };
    assert_eq!(produce_answer(&response), (0, 5));
    // Copy, commit, and a third round for the follower that fetched first to learn the
    // watermark (followers learn it from their next fetch, as in Kafka).
    cluster.replicate_rounds(3);
    for id in [leader, followers[0], followers[1]] {
        assert_eq!(cluster.log_of(id, 0), (values(0..8), 8), "broker {id}");
    }
}

#[test]
fn cluster_followers_refuse_produce_and_fetch_and_metadata_names_the_leader() {
    let mut cluster = Cluster::new(3);
    cluster.create_topic(3, 2, "1");
    for partition in 0..3 {
        let leader = cluster.leader(partition);
        let image = cluster.controller.image().clone();
        let replicas = &image.topic(TOPIC).unwrap().partitions[partition].replicas;
        let follower = replicas.iter().find(|n| n.0 != leader).unwrap().0;
        let Reply::Response(response) = cluster.produce(follower, partition as i32, 1, 0, 1) else {
            panic!()
        };
        assert_eq!(
            produce_answer(&response).0,
            ErrorCode::NotLeaderOrFollower.code()
        );
        let outsider = (1..=3).find(|n| !replicas.contains(&NodeId(*n))).unwrap();
        let Reply::Response(response) = cluster.produce(outsider, partition as i32, 1, 0, 1) else {
            panic!()
        };
        assert_eq!(
            produce_answer(&response).0,
            ErrorCode::NotLeaderOrFollower.code()
        );
    }
    let mut request = MetadataRequest::default();
    request.topics = None;
    let now = Millis(cluster.now);
    let reply = cluster
        .broker(2)
        .handle_request(now, request_of(12, RequestKind::Metadata(request)));
    let Reply::Response(response) = reply else {
        panic!()
    };
    let ResponseKind::Metadata(metadata) = *response else {
        panic!()
    };
    assert_eq!(metadata.brokers.len(), 3);
    let topic = &metadata.topics[0];
    assert_eq!(topic.partitions.len(), 3);
    for p in &topic.partitions {
        let index = p.partition_index as usize;
        assert_eq!(p.leader_id.0, cluster.leader(index));
        assert_eq!(p.replica_nodes.len(), 2);
        assert_eq!(
            p.isr_nodes.iter().map(|n| n.0).collect::<Vec<_>>(),
            cluster.isr(index)
        );
    }
}

#[test]
fn cluster_a_silent_follower_leaves_the_isr_then_rejoins() {
    let mut cluster = Cluster::new(3);
    cluster.create_topic(1, 3, "2");
    let leader = cluster.leader(0);
    let lagging = (1..=3).find(|&n| n != leader).unwrap();
    cluster.produce(leader, 0, 1, 0, 4);
    cluster.replicate_rounds(2);
    // The lagging follower stops fetching but keeps its controller session.
    cluster.stalled.push(lagging);
    cluster.produce(leader, 0, 1, 4, 4);
    cluster.replicate_rounds(2);
    assert_eq!(
        cluster.log_of(leader, 0).1,
        4,
        "the silent follower holds the watermark"
    );
    cluster.advance(29_000);
    assert!(
        cluster.isr(0).contains(&lagging),
        "within replica.lag.time.max.ms"
    );
    cluster.advance(2_000);
    // The leader asked the controller to drop it; committed, the watermark moves.
    assert!(!cluster.isr(0).contains(&lagging), "{:?}", cluster.isr(0));
    assert_eq!(cluster.log_of(leader, 0).1, 8);
    // Fetching again, it catches up and is added back.
    cluster.stalled.clear();
    cluster.replicate_rounds(3);
    assert!(cluster.isr(0).contains(&lagging), "{:?}", cluster.isr(0));
    assert_eq!(cluster.log_of(lagging, 0), (values(0..8), 8));
}

#[test]
fn cluster_leader_failover_keeps_committed_records_and_truncates_the_old_leaders_tail() {
    let mut cluster = Cluster::new(3);
    cluster.create_topic(1, 3, "2");
    let first = cluster.leader(0);
    let Reply::Parked(_) = cluster.produce(first, 0, -1, 0, 5) else {
        panic!()
    };
    cluster.replicate_rounds(2);
    assert_eq!(cluster.broker(first).poll_completed_responses().len(), 1);
    // The leader is cut off; a write it takes alone (acks=1) is never committed.
    cluster.isolated.push(first);
    let Reply::Response(response) = cluster.produce(first, 0, 1, 100, 3) else {
        panic!()
    };
    assert_eq!(produce_answer(&response), (0, 5));
    let Reply::Parked(lost) = cluster.produce(first, 0, -1, 200, 1) else {
        panic!()
    };
    // Its session expires: the controller elects an in-sync follower.
    cluster.advance(10_000);
    let second = cluster.leader(0);
    assert_ne!(second, first);
    assert!(!cluster.isr(0).contains(&first));
    cluster.replicate_rounds(2);
    assert_eq!(
        cluster.log_of(second, 0).0,
        values(0..5),
        "the committed records survive"
    );
    let Reply::Parked(_) = cluster.produce(second, 0, -1, 5, 2) else {
        panic!()
    };
    cluster.replicate_rounds(2);
    assert_eq!(cluster.broker(second).poll_completed_responses().len(), 1);
    // The old leader learns of the new epoch: its unacknowledged acks=all write fails and
    // its uncommitted tail goes as it follows the new leader.
    cluster.isolated.clear();
    cluster.commit(Vec::new());
    let answers = cluster.broker(first).poll_completed_responses();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, lost);
    assert_eq!(
        produce_answer(&answers[0].1).0,
        ErrorCode::NotLeaderOrFollower.code()
    );
    cluster.advance(100);
    cluster.replicate_rounds(4);
    let expected: Vec<String> = values(0..7);
    for id in 1..=3 {
        assert_eq!(cluster.log_of(id, 0), (expected.clone(), 7), "broker {id}");
    }
    assert!(
        cluster.isr(0).contains(&first),
        "it rejoined: {:?}",
        cluster.isr(0)
    );
}

#[test]
fn cluster_a_restarted_broker_recovers_and_catches_up() {
    let mut cluster = Cluster::new(3);
    cluster.create_topic(2, 3, "2");
    for partition in 0..2 {
        let leader = cluster.leader(partition as usize);
        cluster.produce(leader, partition, 1, 0, 3);
    }
    cluster.replicate_rounds(2);
    // Broker 3 stops and comes back with a new incarnation, its disk as it was.
    let stopped = cluster.nodes.get_mut(&3).unwrap().broker.take().unwrap();
    stopped.close().unwrap();
    for partition in 0..2 {
        let leader = cluster.leader(partition as usize);
        if leader != 3 {
            cluster.produce(leader, partition, 1, 3, 2);
        }
    }
    cluster.start(3);
    cluster.advance(100);
    cluster.replicate_rounds(4);
    for partition in 0..2 {
        let leader = cluster.leader(partition as usize);
        let expected = cluster.log_of(leader, partition);
        for id in 1..=3 {
            assert_eq!(
                cluster.log_of(id, partition),
                expected,
                "broker {id} partition {partition}"
            );
        }
        assert_eq!(cluster.isr(partition as usize), vec![1, 2, 3]);
    }
}

#[test]
fn cluster_brokers_hand_out_producer_ids_no_other_broker_hands_out() {
    let mut cluster = Cluster::new(3);
    let mut seen = std::collections::BTreeSet::new();
    for id in 1..=3 {
        for _ in 0..3 {
            let mut request = InitProducerIdRequest::default();
            request.transactional_id = None;
            request.transaction_timeout_ms = 60_000;
            request.producer_id = kafka_protocol::messages::ProducerId(-1);
            request.producer_epoch = -1;
            let now = Millis(cluster.now);
            let mut body = request_of(4, RequestKind::InitProducerId(request));
            body.api_key = ApiKey::InitProducerId;
            let Reply::Response(response) = cluster.broker(id).handle_request(now, body) else {
                panic!()
            };
            let ResponseKind::InitProducerId(response) = *response else {
                panic!()
            };
            assert_eq!(response.error_code, 0);
            assert!(
                seen.insert(response.producer_id.0),
                "id {} given twice",
                response.producer_id.0
            );
        }
    }
}

/// A retried idempotent batch whose first copy still waits for the followers is answered
/// only once that copy is committed, not at once as a duplicate.
#[test]
fn cluster_a_retried_idempotent_batch_waits_for_the_first_copy_to_commit() {
    let mut cluster = Cluster::new(3);
    cluster.create_topic(1, 3, "2");
    let leader = cluster.leader(0);
    let batch = |cluster: &Cluster| {
        let mut builder = BatchBuilder::new(Offset(0)).producer(
            crate::types::ProducerId(7),
            crate::types::ProducerEpoch(0),
            0,
        );
        builder.push(&Record {
            timestamp: cluster.now,
            key: None,
            value: Some(b"once".to_vec()),
            headers: Vec::new(),
        });
        let mut data = PartitionProduceData::default();
        data.index = 0;
        data.records = Some(Bytes::from(builder.build()));
        let mut topic = TopicProduceData::default();
        topic.name = TopicName(StrBytes::from_static_str(TOPIC));
        topic.partition_data = vec![data];
        let mut request = ProduceRequest::default();
        request.acks = -1;
        request.timeout_ms = 30_000;
        request.topic_data = vec![topic];
        request_of(9, RequestKind::Produce(request))
    };
    let now = Millis(cluster.now);
    let first = batch(&cluster);
    let Reply::Parked(_) = cluster.broker(leader).handle_request(now, first) else {
        panic!("acks=all waits")
    };
    let retry = batch(&cluster);
    let Reply::Parked(_) = cluster.broker(leader).handle_request(now, retry) else {
        panic!("the retry waits for the first copy's commit too")
    };
    cluster.replicate_rounds(2);
    let answers = cluster.broker(leader).poll_completed_responses();
    assert_eq!(answers.len(), 2);
    for (_, answer) in &answers {
        assert_eq!(
            produce_answer(answer),
            (0, 0),
            "both answered with the one offset"
        );
    }
    assert_eq!(cluster.log_of(leader, 0).0, vec!["once".to_string()]);
}

/// A group's coordinator lives on the leader of its `__consumer_offsets` partition: while
/// the topic does not exist, FindCoordinator answers `COORDINATOR_NOT_AVAILABLE` (and the
/// broker asks the controller for the topic) instead of naming a broker.
#[test]
fn cluster_find_coordinator_waits_for_the_offsets_topic() {
    let mut cluster = Cluster::new(3);
    cluster.create_topic(1, 3, "2");
    let now = Millis(cluster.now);
    let mut find = FindCoordinatorRequest::default();
    find.key = StrBytes::from_static_str("group");
    let mut request = request_of(3, RequestKind::FindCoordinator(find));
    request.api_key = ApiKey::FindCoordinator;
    let Reply::Response(response) = cluster.broker(1).handle_request(now, request) else {
        panic!()
    };
    let ResponseKind::FindCoordinator(response) = *response else {
        panic!()
    };
    assert_eq!(
        response.error_code,
        ErrorCode::CoordinatorNotAvailable.code()
    );
    assert_eq!(
        cluster.broker(1).take_topic_requests(),
        vec![OFFSETS_TOPIC.to_string()]
    );
}

//! Driver tests: frames in, effects out, over a one-node cluster (what `brook server` runs
//! without cluster flags) on in-memory directories.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::*;
use crate::broker::BrokerConfig;
use crate::node::{ClusterNode, NodeConfig};
use crate::protocol::tests::frame;
use crate::record::{BatchBuilder, Batches, Record};
use crate::storage::MemoryDirs;
use crate::types::NodeId;
use crate::types::Offset;

const NOW: Millis = Millis(1_700_000_000_000);
const TOPIC: &str = "events";

type Node = ClusterNode<MemoryDirs>;

/// A one-node cluster's driver, serving (it leads its quorum at once and registers with
/// itself within a few inputs).
fn driver() -> Driver<Node> {
    let config = NodeConfig::new(BrokerConfig::default(), vec![NodeId(1)], 1);
    let node = ClusterNode::open(MemoryDirs::default(), config, NOW).unwrap();
    let mut driver = Driver::new(node, NOW);
    settle(&mut driver);
    assert!(driver.machine().is_serving());
    driver
}

/// Inputs at `NOW` until the node's own metadata log has settled.
fn settle(driver: &mut Driver<Node>) {
    for _ in 0..10 {
        driver.handle_tick(NOW).unwrap();
    }
}

fn send(driver: &mut Driver<Node>, connection: u64, frame: Bytes) {
    let context = RequestContext::default();
    driver
        .handle_frame(NOW, ConnectionId(connection), &context, frame)
        .unwrap();
}

/// The responses among the effects: (connection, whole response bytes).
fn responses(driver: &mut Driver<Node>) -> Vec<(u64, Vec<u8>)> {
    let effects = driver.poll_effects();
    effects
        .into_iter()
        .filter_map(|effect| match effect {
            Effect::Respond {
                connection, parts, ..
            } => Some((connection.0, driver.read_parts(&parts).unwrap())),
            _ => None,
        })
        .collect()
}

fn decode<T: Decodable>(api: ApiKey, version: i16, bytes: &[u8]) -> (i32, T) {
    let mut body = Bytes::copy_from_slice(&bytes[4..]);
    let header = ResponseHeader::decode(&mut body, api.response_header_version(version)).unwrap();
    (
        header.correlation_id,
        T::decode(&mut body, version).unwrap(),
    )
}

fn create_topic(driver: &mut Driver<Node>) {
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(StrBytes::from_static_str(TOPIC));
    topic.num_partitions = 1;
    topic.replication_factor = 1;
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 1_000;
    send(driver, 9, frame(ApiKey::CreateTopics, 5, 1, &request));
    settle(driver); // answered once the node's metadata log has the topic
    let answers = responses(driver);
    let (_, response): (_, CreateTopicsResponse) = decode(ApiKey::CreateTopics, 5, &answers[0].1);
    assert_eq!(response.topics[0].error_code, 0);
}

fn produce_request(values: &[&str], acks: i16) -> ProduceRequest {
    let mut builder = BatchBuilder::new(Offset(0));
    for value in values {
        builder.push(&Record {
            timestamp: NOW.0,
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers: Vec::new(),
        });
    }
    let mut partition = PartitionProduceData::default();
    partition.records = Some(Bytes::from(builder.build()));
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str(TOPIC));
    topic.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 1_000;
    request.topic_data = vec![topic];
    request
}

fn fetch_request(offset: i64, max_wait_ms: i32) -> FetchRequest {
    let mut partition = FetchPartition::default();
    partition.fetch_offset = offset;
    partition.partition_max_bytes = 1 << 20;
    let mut topic = FetchTopic::default();
    topic.topic = TopicName(StrBytes::from_static_str(TOPIC));
    topic.partitions = vec![partition];
    let mut request = FetchRequest::default();
    request.max_bytes = 1 << 20;
    request.min_bytes = 1;
    request.max_wait_ms = max_wait_ms;
    request.session_epoch = -1;
    request.topics = vec![topic];
    request
}

/// The record values of a Fetch response.
fn values(response: &FetchResponse) -> Vec<String> {
    let records = response.responses[0].partitions[0].records.clone();
    let bytes = records.unwrap_or_default();
    let mut out = Vec::new();
    for batch in Batches::new(&bytes) {
        for record in crate::record::decode_records(&batch.unwrap(), 1 << 20).unwrap() {
            out.push(String::from_utf8(record.record.value.unwrap()).unwrap());
        }
    }
    out
}

#[test]
fn driver_answers_each_frame_once_with_its_correlation_id() {
    let mut driver = driver();
    send(
        &mut driver,
        1,
        frame(ApiKey::ApiVersions, 3, 41, &ApiVersionsRequest::default()),
    );
    let answers = responses(&mut driver);
    assert_eq!(answers.len(), 1);
    let (correlation, response): (_, ApiVersionsResponse) =
        decode(ApiKey::ApiVersions, 3, &answers[0].1);
    assert_eq!((answers[0].0, correlation, response.error_code), (1, 41, 0));
    // acks=0: an empty answer, so the shell reads the connection's next frame.
    create_topic(&mut driver);
    send(
        &mut driver,
        2,
        frame(ApiKey::Produce, 9, 7, &produce_request(&["a"], 0)),
    );
    let effects = driver.poll_effects();
    assert!(matches!(
        &effects[..],
        [Effect::Respond { connection: ConnectionId(2), parts, .. }] if parts.is_empty()
    ));
}

#[test]
fn driver_answers_an_unknown_api_versions_version_in_v0_and_closes_on_garbage() {
    let mut driver = driver();
    // A v3 request relabelled as a version from the future.
    let mut future =
        BytesMut::from(&frame(ApiKey::ApiVersions, 3, 5, &ApiVersionsRequest::default())[..]);
    future[2..4].copy_from_slice(&99i16.to_be_bytes());
    send(&mut driver, 1, future.freeze());
    let answers = responses(&mut driver);
    let (correlation, response): (_, ApiVersionsResponse) =
        decode(ApiKey::ApiVersions, 0, &answers[0].1);
    assert_eq!(correlation, 5);
    assert_eq!(response.error_code, ErrorCode::UnsupportedVersion.code());
    assert!(!response.api_keys.is_empty());

    send(&mut driver, 2, Bytes::from_static(&[0, 3, 0]));
    let effects = driver.poll_effects();
    assert!(matches!(
        &effects[..],
        [Effect::Close {
            connection: ConnectionId(2),
            ..
        }]
    ));
}

#[test]
fn driver_parks_a_long_poll_and_answers_it_on_its_connection_when_data_arrives() {
    let mut driver = driver();
    create_topic(&mut driver);
    send(
        &mut driver,
        1,
        frame(ApiKey::Fetch, 12, 3, &fetch_request(0, 5_000)),
    );
    assert!(
        driver.poll_effects().is_empty(),
        "nothing to read yet: parked"
    );
    assert_eq!(driver.parked_count(), 1);
    assert!(driver.next_deadline() <= Millis(NOW.0 + 5_000));

    send(
        &mut driver,
        2,
        frame(ApiKey::Produce, 9, 4, &produce_request(&["x", "y"], 1)),
    );
    let answers = responses(&mut driver);
    let connections: Vec<u64> = answers.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        connections,
        [2, 1],
        "the produce answered, then the waiting fetch"
    );
    let (correlation, fetch): (_, FetchResponse) = decode(ApiKey::Fetch, 12, &answers[1].1);
    assert_eq!(correlation, 3);
    assert_eq!(values(&fetch), ["x", "y"]);
    assert_eq!(driver.parked_count(), 0);
}

#[test]
fn driver_forgets_the_parked_request_of_a_closed_connection() {
    let mut driver = driver();
    create_topic(&mut driver);
    send(
        &mut driver,
        1,
        frame(ApiKey::Fetch, 12, 3, &fetch_request(0, 5_000)),
    );
    driver.connection_closed(ConnectionId(1));
    assert_eq!(driver.parked_count(), 0);
    send(
        &mut driver,
        2,
        frame(ApiKey::Produce, 9, 4, &produce_request(&["x"], 1)),
    );
    let connections: Vec<u64> = responses(&mut driver).iter().map(|(c, _)| *c).collect();
    assert_eq!(connections, [2], "nothing goes to the closed connection");
}

#[test]
fn driver_wakes_at_a_parked_fetch_deadline_and_otherwise_for_housekeeping() {
    let mut driver = driver();
    assert!(driver.next_deadline() <= Millis(NOW.0 + HOUSEKEEPING_MS));
    create_topic(&mut driver);
    send(
        &mut driver,
        1,
        frame(ApiKey::Fetch, 12, 3, &fetch_request(0, 300)),
    );
    // The node's quorum ticks every 100 ms; the fetch waits for its own deadline.
    let mut deadline = driver.next_deadline();
    assert!(deadline <= Millis(NOW.0 + 300));
    while deadline < Millis(NOW.0 + 300) {
        driver.handle_tick(deadline).unwrap();
        assert!(responses(&mut driver).is_empty(), "not before its deadline");
        deadline = driver.next_deadline();
    }
    assert_eq!(deadline, Millis(NOW.0 + 300));
    driver.handle_tick(deadline).unwrap();
    let answers = responses(&mut driver);
    let (correlation, fetch): (_, FetchResponse) = decode(ApiKey::Fetch, 12, &answers[0].1);
    assert_eq!((answers[0].0, correlation), (1, 3));
    assert!(
        values(&fetch).is_empty(),
        "the wait ended with nothing to read"
    );
    assert!(driver.next_deadline() <= Millis(deadline.0 + HOUSEKEEPING_MS));
}

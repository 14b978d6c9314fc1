//! Bounded arbitrary-bytes run over the request path: random frames and mutations of valid
//! frames go through `decode_request`, the node `brook server` runs without cluster flags (a
//! one-node cluster over a real data directory) and the response encoder. Nothing may panic
//! or abort, and afterwards the node still serves a produce and a fetch.
//! (`fuzz/` holds the coverage-guided cargo-fuzz targets for longer runs.)

use brook_core::broker::{BrokerConfig, Reply, RequestContext};
use brook_core::node::{ClusterNode, NodeConfig};
use brook_core::protocol::{decode_request, encode_fetch_response, encode_response, Request};
use brook_core::record::{BatchBuilder, Record};
use brook_core::{Millis, NodeId, Offset};
use brook_server::alloc::LazyLargeAlloc;
use brook_server::net::DataDir;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;

/// The broker binary's allocator, so hostile length fields behave here as in production.
#[global_allocator]
static ALLOCATOR: LazyLargeAlloc = LazyLargeAlloc;

const NOW: Millis = Millis(1_700_000_000_000);

fn frame<T: Encodable>(api: ApiKey, version: i16, body: &T) -> Vec<u8> {
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = 42;
    header.client_id = Some(StrBytes::from_static_str("fuzz"));
    let mut out = BytesMut::new();
    header
        .encode(&mut out, api.request_header_version(version))
        .unwrap();
    body.encode(&mut out, version).unwrap();
    out.to_vec()
}

fn topic(name: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(name))
}

/// One valid frame per served API (several versions), the seeds for mutation.
fn seeds() -> Vec<Vec<u8>> {
    let mut batch = BatchBuilder::new(Offset(0));
    batch.push(&Record {
        timestamp: NOW.0,
        key: None,
        value: Some(b"v".to_vec()),
        headers: vec![],
    });
    let mut partition = PartitionProduceData::default();
    partition.records = Some(Bytes::from(batch.build()));
    let mut produce_topic = TopicProduceData::default();
    produce_topic.name = topic("fuzz");
    produce_topic.partition_data = vec![partition];
    let mut produce = ProduceRequest::default();
    produce.acks = 1;
    produce.topic_data = vec![produce_topic];
    produce.transactional_id = None;

    let mut fetch_partition = FetchPartition::default();
    fetch_partition.partition_max_bytes = 1 << 20;
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = topic("fuzz");
    fetch_topic.partitions = vec![fetch_partition];
    let mut fetch = FetchRequest::default();
    fetch.max_bytes = 1 << 20;
    fetch.topics = vec![fetch_topic];

    let mut list_partition = ListOffsetsPartition::default();
    list_partition.timestamp = -1;
    let mut list_topic = ListOffsetsTopic::default();
    list_topic.name = topic("fuzz");
    list_topic.partitions = vec![list_partition];
    let mut list = ListOffsetsRequest::default();
    list.topics = vec![list_topic];

    let mut creatable = CreatableTopic::default();
    creatable.name = topic("other");
    creatable.num_partitions = 2;
    creatable.replication_factor = 1;
    let mut create = CreateTopicsRequest::default();
    create.topics = vec![creatable];

    let mut init = InitProducerIdRequest::default();
    init.transactional_id = None;

    vec![
        frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
        frame(ApiKey::Metadata, 1, &MetadataRequest::default()),
        frame(ApiKey::Metadata, 12, &MetadataRequest::default()),
        frame(ApiKey::Produce, 3, &produce),
        frame(ApiKey::Produce, 9, &produce),
        frame(ApiKey::Fetch, 4, &fetch),
        frame(ApiKey::Fetch, 12, &fetch),
        frame(ApiKey::ListOffsets, 1, &list),
        frame(ApiKey::ListOffsets, 7, &list),
        frame(ApiKey::CreateTopics, 5, &create),
        frame(ApiKey::InitProducerId, 4, &init),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip {
        at: usize,
        mask: u8,
    },
    Truncate {
        at: usize,
    },
    /// Overwrite four bytes with a large or negative length.
    Length {
        at: usize,
        value: i32,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (
            any::<usize>(),
            prop_oneof![Just(i32::MAX), Just(-2), Just(0x10_0000), any::<i32>()]
        )
            .prop_map(|(at, value)| Mutation::Length { at, value }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        if bytes.is_empty() {
            break;
        }
        match *mutation {
            Mutation::Flip { at, mask } => {
                let at = at % bytes.len();
                bytes[at] ^= mask;
            }
            Mutation::Truncate { at } => bytes.truncate(at % bytes.len()),
            Mutation::Length { at, value } => {
                let at = at % bytes.len();
                for (i, byte) in value.to_be_bytes().into_iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + i) {
                        *slot = byte;
                    }
                }
            }
        }
    }
    bytes
}

/// Decodes and handles one frame; everything must come back as a value, never a panic.
type Node = ClusterNode<DataDir>;

fn exercise(broker: &mut Node, frame: Vec<u8>) {
    let Ok(request) = decode_request(Bytes::from(frame)) else {
        return;
    };
    let header = Request {
        body: RequestKind::ApiVersions(Default::default()),
        ..request.clone()
    };
    let reply = broker
        .handle_request(NOW, &RequestContext::default(), request)
        .expect("a request never stops the node");
    match reply {
        Reply::Response(response) => {
            encode_response(&header, &response).expect("the broker's responses always encode");
        }
        Reply::Fetch(data) => {
            encode_fetch_response(header.api_version, header.correlation_id, &data);
        }
        Reply::Parked(id) => broker.cancel_parked(id),
        Reply::None => {}
    }
}

/// Inputs at `NOW` until the node's own metadata log has settled.
fn settle(node: &mut Node) {
    for _ in 0..10 {
        node.handle_tick(NOW).unwrap();
    }
}

fn open_broker(dir: &std::path::Path) -> Node {
    let config = NodeConfig::new(BrokerConfig::default(), vec![NodeId(1)], 1);
    let mut broker = ClusterNode::open(DataDir::new(dir.to_path_buf()), config, NOW).unwrap();
    settle(&mut broker);
    assert!(broker.is_serving());
    let mut creatable = CreatableTopic::default();
    creatable.name = topic("fuzz");
    creatable.num_partitions = 1;
    creatable.replication_factor = 1;
    let mut create = CreateTopicsRequest::default();
    create.topics = vec![creatable];
    create.timeout_ms = 1_000;
    let request = decode_request(Bytes::from(frame(ApiKey::CreateTopics, 5, &create))).unwrap();
    let reply = broker.handle_request(NOW, &RequestContext::default(), request);
    assert!(
        matches!(reply, Ok(Reply::Parked(_))),
        "answered once committed"
    );
    settle(&mut broker);
    exercise(&mut broker, seeds()[3].clone()); // appends one record
    assert_eq!(broker.broker().topic_names(), vec!["fuzz".to_string()]);
    broker
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn request_fuzz_mutated_valid_frames_never_panic(
        seed in 0usize..11,
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut broker = open_broker(dir.path());
        exercise(&mut broker, mutate(seeds()[seed].clone(), &mutations));
        // The broker still works: the seed produce appends and a fetch finds records.
        exercise(&mut broker, seeds()[3].clone());
        let request = decode_request(Bytes::from(seeds()[6].clone())).unwrap();
        let reply = broker.handle_request(NOW, &RequestContext::default(), request);
        let Ok(Reply::Fetch(data)) = reply else {
            panic!("a fetch of existing records is answered at once")
        };
        prop_assert!(data.record_bytes() > 0);
    }

    #[test]
    fn request_fuzz_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let dir = tempfile::tempdir().unwrap();
        let mut broker = open_broker(dir.path());
        exercise(&mut broker, bytes);
    }
}

#[test]
fn request_fuzz_hostile_array_length_is_refused_not_fatal() {
    // Metadata v1 declaring 2^31-1 topics in an 18-byte frame.
    let mut frame = vec![0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff];
    frame.extend_from_slice(&i32::MAX.to_be_bytes());
    frame.extend_from_slice(&[0; 4]);
    assert!(decode_request(Bytes::from(frame)).is_err());
}

//! Broker tests through `handle_request`, over in-memory directories that survive a restart.

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::test_node::TestNode;
use super::*;
use crate::protocol::{encode_response, Request};
use crate::record::{BatchBuilder, Batches, Record};
use crate::storage::MemoryDirs;
use crate::types::{Offset, ProducerEpoch, ProducerId};

/// The test's disk: directories that outlive a broker instance, so a restart recovers.
type Dirs = MemoryDirs;

const NOW: Millis = Millis(1_700_000_000_000);

fn broker(dirs: &Dirs) -> TestNode {
    TestNode::open(dirs, BrokerConfig::default(), NOW).expect("open broker")
}

fn call(broker: &mut TestNode, version: i16, body: RequestKind) -> Reply {
    let api_key = match &body {
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
        RequestKind::Metadata(_) => ApiKey::Metadata,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::DeleteTopics(_) => ApiKey::DeleteTopics,
        RequestKind::InitProducerId(_) => ApiKey::InitProducerId,
        RequestKind::FindCoordinator(_) => ApiKey::FindCoordinator,
        _ => ApiKey::ApiVersions,
    };
    let request = Request {
        api_key,
        api_version: version,
        correlation_id: 1,
        client_id: None,
        body,
    };
    let header = Request {
        body: RequestKind::ApiVersions(Default::default()),
        ..request.clone()
    };
    let reply = broker.handle_request(NOW, request);
    if let Reply::Response(response) = &reply {
        encode_response(&header, response).expect("every response encodes in its version");
    }
    reply
}

fn response(reply: Reply) -> ResponseKind {
    match reply {
        Reply::Response(response) => *response,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn create(broker: &mut TestNode, name: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(StrBytes::from_string(name.into()));
    topic.num_partitions = partitions;
    topic.replication_factor = 1;
    topic.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut config = CreatableTopicConfig::default();
            config.name = StrBytes::from_string((*k).into());
            config.value = Some(StrBytes::from_string((*v).into()));
            config
        })
        .collect();
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 1_000;
    match response(call(broker, 5, RequestKind::CreateTopics(request))) {
        ResponseKind::CreateTopics(r) => r.topics[0].error_code,
        other => panic!("{other:?}"),
    }
}

fn records(count: usize, producer: Option<(i64, i32)>) -> Bytes {
    let mut builder = BatchBuilder::new(Offset(0));
    if let Some((id, sequence)) = producer {
        builder = builder.producer(ProducerId(id), ProducerEpoch(0), sequence);
    }
    for i in 0..count {
        builder.push(&Record {
            timestamp: NOW.0 + i as i64,
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            headers: Vec::new(),
        });
    }
    Bytes::from(builder.build())
}

/// Produces to partition 0 of `topic`; returns (error code, base offset).
fn produce(broker: &mut TestNode, topic: &str, acks: i16, data: Bytes) -> Option<(i16, i64)> {
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(data);
    let mut topic_data = TopicProduceData::default();
    topic_data.name = TopicName(StrBytes::from_string(topic.into()));
    topic_data.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 1000;
    request.topic_data = vec![topic_data];
    match call(broker, 9, RequestKind::Produce(request)) {
        Reply::None => None,
        reply => match response(reply) {
            ResponseKind::Produce(r) => {
                let p = &r.responses[0].partition_responses[0];
                Some((p.error_code, p.base_offset))
            }
            other => panic!("{other:?}"),
        },
    }
}

fn fetch_request(topic: &str, offset: i64, min_bytes: i32, max_wait_ms: i32) -> FetchRequest {
    let mut partition = FetchPartition::default();
    partition.partition = 0;
    partition.fetch_offset = offset;
    partition.partition_max_bytes = 1 << 20;
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = TopicName(StrBytes::from_string(topic.into()));
    fetch_topic.partitions = vec![partition];
    let mut request = FetchRequest::default();
    request.max_bytes = 1 << 20;
    request.min_bytes = min_bytes;
    request.max_wait_ms = max_wait_ms;
    request.session_epoch = -1;
    request.topics = vec![fetch_topic];
    request
}

/// The (offset, value) pairs in a fetch answer, read from the partition's storage.
fn fetched(broker: &TestNode, data: &FetchResponseData) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for partition in data.topics.iter().flat_map(|t| &t.partitions) {
        for range in &partition.records {
            let storage = broker.partition_storage(&data.topics[0].name, 0).unwrap();
            let mut bytes = vec![0; range.length as usize];
            storage
                .read_at(&range.file, range.position, &mut bytes)
                .unwrap();
            for batch in Batches::new(&bytes) {
                let batch = batch.unwrap();
                for record in crate::record::decode_records(&batch, 1 << 20).unwrap() {
                    let value = String::from_utf8(record.record.value.unwrap()).unwrap();
                    out.push((record.offset.0, value));
                }
            }
        }
    }
    out
}

#[test]
fn broker_create_topic_validates_and_metadata_lists_it() {
    let dirs = Dirs::default();
    let mut broker = broker(&dirs);
    assert_eq!(
        create(&mut broker, "orders", 3, &[("retention.ms", "60000")]),
        0
    );
    assert_eq!(
        create(&mut broker, "orders", 3, &[]),
        ErrorCode::TopicAlreadyExists.code()
    );
    assert_eq!(
        create(&mut broker, "bad name", 1, &[]),
        ErrorCode::InvalidTopicException.code()
    );
    assert_eq!(
        create(&mut broker, "zero", 0, &[]),
        ErrorCode::InvalidPartitions.code()
    );
    assert_eq!(
        create(&mut broker, "cfg", 1, &[("segment.bytes", "10")]),
        ErrorCode::InvalidConfig.code()
    );
    assert_eq!(
        create(&mut broker, "cfg", 1, &[("no.such", "1")]),
        ErrorCode::InvalidConfig.code()
    );
    for version in [0, 1, 4, 9, 12] {
        let mut body = MetadataRequest::default();
        // v0 asks for every topic with an empty list, later versions with a null one.
        body.topics = if version == 0 { Some(Vec::new()) } else { None };
        let ResponseKind::Metadata(meta) =
            response(call(&mut broker, version, RequestKind::Metadata(body)))
        else {
            panic!("metadata")
        };
        assert_eq!(meta.topics.len(), 1, "v{version}");
        assert_eq!(meta.topics[0].partitions.len(), 3);
        assert_eq!(meta.brokers[0].port, 9092);
    }
}

#[test]
fn broker_metadata_auto_creates_unknown_topics() {
    let dirs = Dirs::default();
    let mut broker = broker(&dirs);
    let mut topic = MetadataRequestTopic::default();
    topic.name = Some(TopicName(StrBytes::from_static_str("auto")));
    let mut request = MetadataRequest::default();
    request.topics = Some(vec![topic]);
    request.allow_auto_topic_creation = true;
    let ResponseKind::Metadata(meta) =
        response(call(&mut broker, 9, RequestKind::Metadata(request.clone())))
    else {
        panic!("metadata")
    };
    // As Kafka's: the first answer asks the client to come back while the controller
    // creates the topic.
    assert_eq!(
        meta.topics[0].error_code,
        ErrorCode::LeaderNotAvailable.code()
    );
    broker.handle_tick(NOW);
    assert_eq!(broker.topic_names(), vec!["auto".to_string()]);
    let ResponseKind::Metadata(meta) =
        response(call(&mut broker, 9, RequestKind::Metadata(request)))
    else {
        panic!("metadata")
    };
    assert_eq!(meta.topics[0].error_code, 0);
    assert_eq!(meta.topics[0].partitions.len(), 1);
}

#[test]
fn broker_produce_then_fetch_returns_the_records_in_order() {
    let dirs = Dirs::default();
    let mut broker = broker(&dirs);
    create(&mut broker, "t", 1, &[]);
    assert_eq!(produce(&mut broker, "t", 1, records(3, None)), Some((0, 0)));
    assert_eq!(
        produce(&mut broker, "t", -1, records(2, None)),
        Some((0, 3))
    );
    assert_eq!(
        produce(&mut broker, "t", 0, records(1, None)),
        None,
        "acks=0 gets no answer"
    );
    for version in [4, 11, 12] {
        let Reply::Fetch(data) = call(
            &mut broker,
            version,
            RequestKind::Fetch(fetch_request("t", 1, 1, 0)),
        ) else {
            panic!("fetch")
        };
        let values = fetched(&broker, &data);
        let offsets: Vec<i64> = values.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            offsets,
            vec![0, 1, 2, 3, 4, 5],
            "whole batches from the one holding offset 1"
        );
        assert_eq!(data.topics[0].partitions[0].high_watermark, 6);
    }
    let Reply::Fetch(data) = call(
        &mut broker,
        12,
        RequestKind::Fetch(fetch_request("t", 99, 1, 0)),
    ) else {
        panic!("fetch")
    };
    assert_eq!(
        data.topics[0].partitions[0].error_code,
        ErrorCode::OffsetOutOfRange.code()
    );
    assert_eq!(
        produce(&mut broker, "missing", 1, records(1, None))
            .unwrap()
            .0,
        ErrorCode::UnknownTopicOrPartition.code()
    );
}

#[test]
fn broker_produce_refuses_corrupt_batches_and_bad_acks() {
    let dirs = Dirs::default();
    let mut broker = broker(&dirs);
    create(&mut broker, "t", 1, &[]);
    let mut corrupt = records(2, None).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let (code, _) = produce(&mut broker, "t", 1, Bytes::from(corrupt)).unwrap();
    assert_eq!(code, ErrorCode::CorruptMessage.code());
    let (code, _) = produce(&mut broker, "t", 5, records(1, None)).unwrap();
    assert_eq!(code, ErrorCode::InvalidRequiredAcks.code());
    let (code, _) = produce(&mut broker, "t", 1, Bytes::from_static(&[1, 2, 3])).unwrap();
    assert_eq!(code, ErrorCode::CorruptMessage.code());
    let Reply::Fetch(data) = call(
        &mut broker,
        12,
        RequestKind::Fetch(fetch_request("t", 0, 1, 0)),
    ) else {
        panic!("fetch")
    };
    assert!(
        fetched(&broker, &data).is_empty(),
        "nothing was half-appended"
    );
}

#[test]
fn broker_idempotent_retry_gets_the_original_offset_and_gaps_are_refused() {
    let dirs = Dirs::default();
    let mut broker = broker(&dirs);
    create(&mut broker, "t", 1, &[]);
    let mut init = InitProducerIdRequest::default();
    init.transactional_id = None; // an idempotent, non-transactional producer
    init.producer_id = kafka_protocol::messages::ProducerId(-1);
    init.producer_epoch = -1;
    let ResponseKind::InitProducerId(init) =
        response(call(&mut broker, 4, RequestKind::InitProducerId(init)))
    else {
        panic!("init")
    };
    assert_eq!(init.error_code, 0);
    let id = init.producer_id.0;
    assert_eq!(
        produce(&mut broker, "t", -1, records(3, Some((id, 0)))),
        Some((0, 0))
    );
    assert_eq!(
        produce(&mut broker, "t", -1, records(3, Some((id, 0)))),
        Some((0, 0)),
        "retry"
    );
    assert_eq!(
        produce(&mut broker, "t", -1, records(2, Some((id, 3)))),
        Some((0, 3))
    );
    let (code, _) = produce(&mut broker, "t", -1, records(1, Some((id, 9)))).unwrap();
    assert_eq!(code, ErrorCode::OutOfOrderSequenceNumber.code());
    let Reply::Fetch(data) = call(
        &mut broker,
        12,
        RequestKind::Fetch(fetch_request("t", 0, 1, 0)),
    ) else {
        panic!("fetch")
    };
    assert_eq!(
        fetched(&broker, &data).len(),
        5,
        "the retry was not written twice"
    );
}

#[test]
fn broker_fetch_long_poll_answers_as_soon_as_data_arrives_or_at_the_deadline() {
    let dirs = Dirs::default();
    let mut broker = broker(&dirs);
    create(&mut broker, "t", 1, &[]);
    let Reply::Parked(id) = call(
        &mut broker,
        12,
        RequestKind::Fetch(fetch_request("t", 0, 1, 500)),
    ) else {
        panic!("an empty partition parks the fetch")
    };
    assert_eq!((*broker).next_deadline(), Some(Millis(NOW.0 + 500)));
    assert!(broker.poll_completed_fetches().is_empty());
    produce(&mut broker, "t", 1, records(2, None));
    let completed = broker.poll_completed_fetches();
    assert_eq!(
        completed.len(),
        1,
        "the produce completed the waiting fetch at once"
    );
    assert_eq!(completed[0].0, id);
    assert_eq!(fetched(&broker, &completed[0].1).len(), 2);

    let Reply::Parked(_) = call(
        &mut broker,
        12,
        RequestKind::Fetch(fetch_request("t", 2, 1, 500)),
    ) else {
        panic!("parked")
    };
    broker.handle_tick(Millis(NOW.0 + 499));
    assert!(
        broker.poll_completed_fetches().is_empty(),
        "not before the deadline"
    );
    broker.handle_tick(Millis(NOW.0 + 500));
    let completed = broker.poll_completed_fetches();
    assert_eq!(completed.len(), 1, "answered empty at the deadline");
    assert!(fetched(&broker, &completed[0].1).is_empty());
}

#[test]
fn broker_fetch_v13_and_later_name_topics_by_id() {
    let dirs = Dirs::default();
    let mut broker = broker(&dirs);
    create(&mut broker, "t", 1, &[]);
    produce(&mut broker, "t", 1, records(3, None));
    let mut topic = MetadataRequestTopic::default();
    topic.name = Some(TopicName(StrBytes::from_static_str("t")));
    let mut metadata = MetadataRequest::default();
    metadata.topics = Some(vec![topic]);
    let ResponseKind::Metadata(meta) =
        response(call(&mut broker, 12, RequestKind::Metadata(metadata)))
    else {
        panic!("metadata")
    };
    let id = meta.topics[0].topic_id;
    assert!(!id.is_nil(), "Metadata v10+ gives the topic id");
    for version in 13..=17 {
        let mut request = fetch_request("", 0, 1, 0);
        request.topics[0].topic_id = id;
        let Reply::Fetch(data) = call(&mut broker, version, RequestKind::Fetch(request)) else {
            panic!("fetch")
        };
        assert_eq!(data.topics[0].topic_id, id);
        assert_eq!(
            data.topics[0].name, "t",
            "v{version}: the id resolves to the topic"
        );
        let offsets: Vec<i64> = fetched(&broker, &data).iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, vec![0, 1, 2], "v{version}");

        let mut unknown = fetch_request("", 0, 1, 0);
        unknown.topics[0].topic_id = uuid::Uuid::from_u128(42);
        let Reply::Fetch(data) = call(&mut broker, version, RequestKind::Fetch(unknown)) else {
            panic!("fetch")
        };
        assert_eq!(
            data.topics[0].partitions[0].error_code,
            ErrorCode::UnknownTopicId.code(),
            "v{version}: an unknown id is UNKNOWN_TOPIC_ID"
        );
    }
}

#[test]
fn broker_list_offsets_earliest_latest_and_by_time() {
    let dirs = Dirs::default();
    let mut broker = broker(&dirs);
    create(&mut broker, "t", 1, &[]);
    produce(&mut broker, "t", 1, records(3, None));
    produce(&mut broker, "t", 1, records(3, None));
    for (version, timestamp, expected) in [
        (1, -2, 0),
        (1, -1, 6),
        (7, -1, 6),
        (7, NOW.0 + 1, 1),
        (7, NOW.0 + 100, -1),
        (0, -1, 6),
        (8, -4, 0),
        (9, -2, 0),
        (9, -5, -1),
    ] {
        let mut partition = ListOffsetsPartition::default();
        partition.partition_index = 0;
        partition.timestamp = timestamp;
        partition.max_num_offsets = 1;
        let mut topic = ListOffsetsTopic::default();
        topic.name = TopicName(StrBytes::from_static_str("t"));
        topic.partitions = vec![partition];
        let mut request = ListOffsetsRequest::default();
        request.replica_id = BrokerId(-1);
        request.topics = vec![topic];
        let ResponseKind::ListOffsets(answer) = response(call(
            &mut broker,
            version,
            RequestKind::ListOffsets(request),
        )) else {
            panic!("list offsets")
        };
        let p = &answer.topics[0].partitions[0];
        let offset = if version == 0 {
            p.old_style_offsets.first().copied().unwrap_or(-1)
        } else {
            p.offset
        };
        assert_eq!(offset, expected, "v{version} timestamp {timestamp}");
    }
}

#[test]
fn broker_restart_keeps_topics_and_records() {
    let dirs = Dirs::default();
    let mut first = broker(&dirs);
    create(&mut first, "kept", 2, &[("retention.ms", "-1")]);
    produce(&mut first, "kept", 1, records(4, None));
    let cluster_id = first.cluster_id().to_string();
    first.close().unwrap();
    let mut second = broker(&dirs);
    assert_eq!(second.cluster_id(), cluster_id);
    assert_eq!(second.topic_names(), vec!["kept".to_string()]);
    let Reply::Fetch(data) = call(
        &mut second,
        12,
        RequestKind::Fetch(fetch_request("kept", 0, 1, 0)),
    ) else {
        panic!("fetch")
    };
    assert_eq!(fetched(&second, &data).len(), 4);
    let mut request = DeleteTopicsRequest::default();
    request.topic_names = vec![TopicName(StrBytes::from_static_str("kept"))];
    request.timeout_ms = 1_000;
    let ResponseKind::DeleteTopics(deleted) =
        response(call(&mut second, 4, RequestKind::DeleteTopics(request)))
    else {
        panic!("delete")
    };
    assert_eq!(deleted.responses[0].error_code, 0);
    assert!(!dirs.contains("kept-0"), "partition directories removed");
    drop(second);
    assert!(broker(&dirs).topic_names().is_empty(), "deletion persisted");
}

#[test]
fn broker_idempotent_retry_after_restart_is_still_deduplicated() {
    let dirs = Dirs::default();
    let mut first = broker(&dirs);
    create(&mut first, "t", 1, &[]);
    assert_eq!(
        produce(&mut first, "t", -1, records(2, Some((5000, 0)))),
        Some((0, 0))
    );
    assert_eq!(
        produce(&mut first, "t", -1, records(2, Some((5000, 2)))),
        Some((0, 2))
    );
    drop(first); // a crash: no clean close
    let mut second = broker(&dirs);
    let retry = produce(&mut second, "t", -1, records(2, Some((5000, 2))));
    assert_eq!(
        retry,
        Some((0, 2)),
        "the retried batch gets its original offset"
    );
    assert_eq!(
        produce(&mut second, "t", -1, records(1, Some((5000, 4)))),
        Some((0, 4))
    );
}

#[test]
fn broker_internal_offsets_topic_is_created_only_as_the_coordinator_needs_it() {
    let dirs = Dirs::default();
    let mut broker = broker(&dirs);
    assert_eq!(
        create(&mut broker, OFFSETS_TOPIC, 3, &[]),
        ErrorCode::InvalidRequest.code(),
        "clients may not create the internal topic"
    );
    assert!(!broker.topic_names().contains(&OFFSETS_TOPIC.to_string()));

    // Looking up a group's coordinator makes it, with the coordinator's settings.
    let mut find = FindCoordinatorRequest::default();
    find.key = StrBytes::from_static_str("g");
    let ResponseKind::FindCoordinator(found) =
        response(call(&mut broker, 3, RequestKind::FindCoordinator(find)))
    else {
        panic!("find coordinator")
    };
    assert_eq!(
        found.error_code,
        ErrorCode::CoordinatorNotAvailable.code(),
        "not yet"
    );
    broker.handle_tick(NOW);
    let mut topic = MetadataRequestTopic::default();
    topic.name = Some(TopicName(StrBytes::from_static_str(OFFSETS_TOPIC)));
    let mut request = MetadataRequest::default();
    request.topics = Some(vec![topic]);
    let ResponseKind::Metadata(meta) =
        response(call(&mut broker, 9, RequestKind::Metadata(request)))
    else {
        panic!("metadata")
    };
    assert_eq!(meta.topics[0].error_code, 0);
    assert_eq!(
        meta.topics[0].partitions.len() as i32,
        BrokerConfig::default().offsets_topic_partitions
    );
    assert_eq!(
        broker.topics[OFFSETS_TOPIC]
            .overrides
            .get("cleanup.policy")
            .map(String::as_str),
        Some("compact")
    );
    assert_eq!(
        create(&mut broker, OFFSETS_TOPIC, 3, &[]),
        ErrorCode::TopicAlreadyExists.code()
    );
}

#[test]
fn broker_idempotent_retry_across_rolls_and_restarts_is_still_deduplicated() {
    for clean in [false, true] {
        let dirs = Dirs::default();
        let mut first = broker(&dirs);
        create(&mut first, "t", 1, &[("segment.bytes", "1024")]);
        assert_eq!(
            produce(&mut first, "t", -1, records(2, Some((5000, 0)))),
            Some((0, 0))
        );
        // Another producer fills several segments after it.
        let mut next = 2;
        for sequence in (0..300).step_by(3) {
            let answer = produce(&mut first, "t", -1, records(3, Some((6000, sequence))));
            assert_eq!(answer, Some((0, next)));
            next += 3;
        }
        let segments = first.topics["t"].partitions[0].log.segment_bases();
        assert!(segments.len() > 3, "the log rolled: {segments:?}");
        if clean {
            first.close().unwrap();
        } else {
            drop(first); // a crash: no clean close
        }
        let mut second = broker(&dirs);
        assert_eq!(
            produce(&mut second, "t", -1, records(2, Some((5000, 0)))),
            Some((0, 0)),
            "clean={clean}: a retry of a batch in an old segment gets its original offset"
        );
        assert_eq!(
            produce(&mut second, "t", -1, records(3, Some((6000, 297)))),
            Some((0, next - 3)),
            "clean={clean}: so does a retry of the last batch"
        );
        assert_eq!(
            produce(&mut second, "t", -1, records(1, Some((5000, 3))))
                .unwrap()
                .0,
            ErrorCode::OutOfOrderSequenceNumber.code(),
            "clean={clean}: a gap is still refused"
        );
        assert_eq!(
            second.topics["t"].partitions[0].log.log_end_offset(),
            Offset(next)
        );
    }
}

/// Kafka 3.7+ (KAFKA-15583) holds acks=all to `min(min.insync.replicas, replicas)`: a
/// single-replica topic asking for more in-sync replicas than it has still takes acks=all,
/// and the setting itself must be at least 1.
#[test]
fn broker_acks_all_uses_the_effective_min_insync_replicas() {
    let dirs = Dirs::default();
    let mut broker = broker(&dirs);
    assert_eq!(
        create(&mut broker, "t", 1, &[("min.insync.replicas", "3")]),
        0
    );
    assert_eq!(
        produce(&mut broker, "t", -1, records(2, None)),
        Some((0, 0))
    );
    assert_eq!(
        create(&mut broker, "u", 1, &[("min.insync.replicas", "0")]),
        ErrorCode::InvalidConfig.code()
    );
}

/// A directory 0.1.0 wrote whose log holds a later epoch than 0 (batches carry the epoch
/// their leader stamped) is adopted leading at that epoch: a leader may not lead below its
/// log's history, and the node still takes appends after the adoption.
#[test]
fn broker_an_adopted_log_is_led_in_its_latest_epoch() {
    let dirs = Dirs::default();
    let meta = super::metadata::StoredMeta {
        cluster_id: "legacy-cluster".into(),
        next_producer_id: 1_000,
        topics: std::collections::BTreeMap::from([(
            "t".to_string(),
            (uuid::Uuid::from_u128(7), 1, Default::default()),
        )]),
    };
    dirs.dir(super::metadata::META_DIR)
        .write_atomic(super::metadata::META_FILE, meta.encode().as_bytes())
        .unwrap();
    let storage = dirs.dir("t-0");
    let (mut log, _) =
        crate::log::PartitionLog::open(storage, crate::log::LogConfig::default(), NOW).unwrap();
    let mut bytes = records(2, None).to_vec();
    log.append(&mut bytes, crate::types::LeaderEpoch(5), NOW)
        .unwrap();
    log.close().unwrap();
    let mut node = broker(&dirs);
    assert_eq!(node.cluster_id(), "legacy-cluster");
    assert_eq!(produce(&mut node, "t", 1, records(1, None)), Some((0, 2)));
    assert_eq!(
        node.topics["t"].partitions[0].leader_epoch(),
        crate::types::LeaderEpoch(5)
    );
}

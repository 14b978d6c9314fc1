//! The clients against a scripted in-process broker that answers the first Produce and the
//! first ListOffsets with NOT_LEADER_OR_FOLLOWER: the client must refresh its metadata and
//! retry, and an idempotent retry must resend the very same batch (same sequence number).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brook_core::record::Batch;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, InitProducerIdResponse, ListOffsetsResponse,
    MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{
    Consumer, ConsumerConfig, ErrorCode, OffsetReset, Producer, ProducerConfig, ProducerRecord,
    TopicPartition,
};

/// What the fake broker saw.
#[derive(Default)]
struct Seen {
    metadata: AtomicUsize,
    list_offsets: AtomicUsize,
    /// (producer id, base sequence, batch bytes) of every Produce.
    produced: Mutex<Vec<(i64, i32, Vec<u8>)>>,
}

/// A one-broker cluster on `listener`: topic "t" with one partition led by itself.
async fn serve(listener: TcpListener, seen: Arc<Seen>) {
    let addr = listener.local_addr().expect("addr");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(connection(stream, addr.port(), Arc::clone(&seen)));
    }
}

async fn connection(mut stream: TcpStream, port: u16, seen: Arc<Seen>) {
    loop {
        let Ok(size) = stream.read_i32().await else {
            return;
        };
        let mut frame = vec![0u8; size as usize];
        stream.read_exact(&mut frame).await.expect("frame");
        let api = ApiKey::try_from(i16::from_be_bytes([frame[0], frame[1]])).expect("api");
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let mut body = Bytes::from(frame);
        let header =
            RequestHeader::decode(&mut body, api.request_header_version(version)).expect("header");
        let mut out = BytesMut::new();
        out.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut out, api.response_header_version(version))
            .expect("response header");
        let encoded = match api {
            ApiKey::ApiVersions => api_versions().encode(&mut out, version),
            ApiKey::Metadata => {
                seen.metadata.fetch_add(1, Ordering::SeqCst);
                metadata(port).encode(&mut out, version)
            }
            ApiKey::InitProducerId => InitProducerIdResponse::default()
                .with_producer_id(kafka_protocol::messages::ProducerId(7))
                .with_producer_epoch(0)
                .encode(&mut out, version),
            ApiKey::ListOffsets => {
                let first = seen.list_offsets.fetch_add(1, Ordering::SeqCst) == 0;
                list_offsets(first).encode(&mut out, version)
            }
            ApiKey::Produce => {
                let request = ProduceRequest::decode(&mut body, version).expect("produce");
                let records = request.topic_data[0].partition_data[0]
                    .records
                    .clone()
                    .expect("records");
                let batch = Batch::parse(&records).expect("batch");
                let mut produced = seen.produced.lock().expect("lock");
                produced.push((
                    batch.producer_id().0,
                    batch.base_sequence(),
                    records.to_vec(),
                ));
                produce(produced.len() == 1).encode(&mut out, version)
            }
            other => panic!("the fake broker does not serve {other:?}"),
        };
        encoded.expect("response body");
        let size = (out.len() - 4) as i32;
        out[..4].copy_from_slice(&size.to_be_bytes());
        stream.write_all(&out).await.expect("write");
    }
}

fn api_versions() -> ApiVersionsResponse {
    let served = [
        (ApiKey::ApiVersions, 3),
        (ApiKey::Metadata, 12),
        (ApiKey::InitProducerId, 4),
        (ApiKey::ListOffsets, 7),
        (ApiKey::Produce, 9),
    ];
    ApiVersionsResponse::default().with_api_keys(
        served
            .iter()
            .map(|&(key, max)| {
                ApiVersion::default()
                    .with_api_key(key as i16)
                    .with_max_version(max)
            })
            .collect(),
    )
}

fn metadata(port: u16) -> MetadataResponse {
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(1))
        .with_host(StrBytes::from_static_str("127.0.0.1"))
        .with_port(i32::from(port));
    let partition = MetadataResponsePartition::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(1))
        .with_replica_nodes(vec![BrokerId(1)])
        .with_isr_nodes(vec![BrokerId(1)]);
    let topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
        .with_partitions(vec![partition]);
    MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_controller_id(BrokerId(1))
        .with_topics(vec![topic])
}

fn list_offsets(not_leader: bool) -> ListOffsetsResponse {
    let code = if not_leader {
        ErrorCode::NotLeaderOrFollower.code()
    } else {
        0
    };
    let partition = ListOffsetsPartitionResponse::default()
        .with_partition_index(0)
        .with_error_code(code)
        .with_offset(42);
    ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(vec![partition])])
}

fn produce(not_leader: bool) -> ProduceResponse {
    let code = if not_leader {
        ErrorCode::NotLeaderOrFollower.code()
    } else {
        0
    };
    let partition = PartitionProduceResponse::default()
        .with_index(0)
        .with_error_code(code)
        .with_base_offset(if not_leader { -1 } else { 100 });
    ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partition_responses(vec![partition])])
}

async fn start() -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(Seen::default());
    tokio::spawn(serve(listener, Arc::clone(&seen)));
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn not_leader_on_produce_refreshes_metadata_and_resends_the_same_batch() {
    let (addr, seen) = start().await;
    let mut config = ProducerConfig::new(&addr);
    config.retry_backoff_ms = 10;
    let producer = Producer::new(config).expect("producer");
    let delivery = producer
        .send(ProducerRecord::new("t", "v").key("k"))
        .await
        .expect("send");
    let metadata = tokio::time::timeout(Duration::from_secs(10), delivery)
        .await
        .expect("answered in time")
        .expect("delivered after a retry");
    assert_eq!((metadata.partition, metadata.offset), (0, 100));
    let produced = seen.produced.lock().expect("lock").clone();
    assert_eq!(produced.len(), 2, "one refusal, one retry");
    assert_eq!(
        produced[0].0, 7,
        "the batch carries the granted producer id"
    );
    assert_eq!(produced[0].1, 0, "the first sequence number is 0");
    assert_eq!(
        produced[0], produced[1],
        "the retry is byte for byte the same batch"
    );
    assert!(
        seen.metadata.load(Ordering::SeqCst) >= 2,
        "NOT_LEADER_OR_FOLLOWER refreshed the metadata"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn not_leader_on_list_offsets_refreshes_metadata_and_retries() {
    let (addr, seen) = start().await;
    let mut config = ConsumerConfig::new(&addr);
    config.auto_offset_reset = OffsetReset::Latest;
    let mut consumer = Consumer::new(config).expect("consumer");
    let tp = TopicPartition::new("t", 0);
    consumer.assign(vec![tp.clone()]).expect("assign");
    let position = tokio::time::timeout(Duration::from_secs(10), consumer.position(&tp))
        .await
        .expect("answered in time")
        .expect("position");
    assert_eq!(position, 42);
    assert_eq!(seen.list_offsets.load(Ordering::SeqCst), 2);
    assert!(seen.metadata.load(Ordering::SeqCst) >= 2);
}

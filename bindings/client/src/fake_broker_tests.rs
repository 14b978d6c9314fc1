//! The clients against a scripted in-process broker that answers the first Produce and the
//! first ListOffsets with NOT_LEADER_OR_FOLLOWER: the client must refresh its metadata and
//! retry, and an idempotent retry must resend the very same batch (same sequence number).
//! It also coordinates one transactional id, "tx": the first DescribeTransactions gets
//! NOT_COORDINATOR and the first ListTransactions COORDINATOR_LOAD_IN_PROGRESS, so the admin
//! client must find the coordinator again and ask again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brook_core::record::Batch;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedState,
};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, DescribeTransactionsRequest,
    DescribeTransactionsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    InitProducerIdResponse, ListOffsetsResponse, ListTransactionsRequest, ListTransactionsResponse,
    MetadataResponse, ProduceRequest, ProduceResponse, ProducerId, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{
    Admin, AdminConfig, Consumer, ConsumerConfig, ErrorCode, ListTransactionsFilter, OffsetReset,
    Producer, ProducerConfig, ProducerRecord, TopicPartition, TransactionDescription,
    TransactionListing, TransactionState,
};

/// What the fake broker saw.
#[derive(Default)]
struct Seen {
    metadata: AtomicUsize,
    list_offsets: AtomicUsize,
    /// (producer id, base sequence, batch bytes) of every Produce.
    produced: Mutex<Vec<(i64, i32, Vec<u8>)>>,
    /// The key type of every FindCoordinator.
    coordinator_key_types: Mutex<Vec<i8>>,
    describe_transactions: AtomicUsize,
    /// (version, request) of every ListTransactions.
    list_transactions: Mutex<Vec<(i16, ListTransactionsRequest)>>,
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
            ApiKey::FindCoordinator => {
                let request = FindCoordinatorRequest::decode(&mut body, version).expect("find");
                let mut key_types = seen.coordinator_key_types.lock().expect("lock");
                key_types.push(request.key_type);
                find_coordinator(&request, version, port).encode(&mut out, version)
            }
            ApiKey::DescribeTransactions => {
                let request =
                    DescribeTransactionsRequest::decode(&mut body, version).expect("describe");
                let first = seen.describe_transactions.fetch_add(1, Ordering::SeqCst) == 0;
                describe_transactions(&request, first).encode(&mut out, version)
            }
            ApiKey::ListTransactions => {
                let request = ListTransactionsRequest::decode(&mut body, version).expect("list");
                let mut requests = seen.list_transactions.lock().expect("lock");
                requests.push((version, request));
                list_transactions(requests.len() == 1).encode(&mut out, version)
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
        (ApiKey::FindCoordinator, 4),
        (ApiKey::DescribeTransactions, 0),
        (ApiKey::ListTransactions, 1),
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

/// This broker (node 1) coordinates everything.
fn find_coordinator(
    request: &FindCoordinatorRequest,
    version: i16,
    port: u16,
) -> FindCoordinatorResponse {
    let host = StrBytes::from_static_str("127.0.0.1");
    let response = FindCoordinatorResponse::default();
    if version < 4 {
        return response
            .with_node_id(BrokerId(1))
            .with_host(host)
            .with_port(i32::from(port));
    }
    let coordinators = (request.coordinator_keys.iter())
        .map(|key| {
            Coordinator::default()
                .with_key(key.clone())
                .with_node_id(BrokerId(1))
                .with_host(host.clone())
                .with_port(i32::from(port))
        })
        .collect();
    response.with_coordinators(coordinators)
}

/// The start time of the open transaction of "tx".
const TX_START_MS: i64 = 1_700_000_000_000;

/// "tx" has an open transaction on t-0; other ids are unknown. The first answer says
/// NOT_COORDINATOR for every id.
fn describe_transactions(
    request: &DescribeTransactionsRequest,
    not_coordinator: bool,
) -> DescribeTransactionsResponse {
    let states = (request.transactional_ids.iter())
        .map(|id| {
            let state = DescribedState::default()
                .with_transactional_id(id.clone())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1);
            if not_coordinator {
                return state.with_error_code(ErrorCode::NotCoordinator.code());
            }
            if id.0.as_str() != "tx" {
                return state.with_error_code(ErrorCode::TransactionalIdNotFound.code());
            }
            let topic = TopicData::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![0]);
            state
                .with_transaction_state(StrBytes::from_static_str("Ongoing"))
                .with_producer_id(ProducerId(7))
                .with_producer_epoch(3)
                .with_transaction_timeout_ms(60_000)
                .with_transaction_start_time_ms(TX_START_MS)
                .with_topics(vec![topic])
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// "tx", Ongoing (whatever the filters); the first answer is COORDINATOR_LOAD_IN_PROGRESS.
fn list_transactions(loading: bool) -> ListTransactionsResponse {
    if loading {
        return ListTransactionsResponse::default()
            .with_error_code(ErrorCode::CoordinatorLoadInProgress.code());
    }
    let listed = ListedState::default()
        .with_transactional_id(kafka_protocol::messages::TransactionalId(
            StrBytes::from_static_str("tx"),
        ))
        .with_producer_id(ProducerId(7))
        .with_transaction_state(StrBytes::from_static_str("Ongoing"));
    ListTransactionsResponse::default().with_transaction_states(vec![listed])
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

#[tokio::test(flavor = "multi_thread")]
async fn transactions_admin_asks_the_transaction_coordinator_again_after_it_moved() {
    let (addr, seen) = start().await;
    let admin = Admin::new(AdminConfig::new(&addr)).expect("admin");
    let limit = Duration::from_secs(10);

    let described = tokio::time::timeout(limit, admin.describe_transactions(&["tx"]))
        .await
        .expect("answered in time")
        .expect("described after NOT_COORDINATOR");
    let expected = TransactionDescription {
        transactional_id: "tx".to_string(),
        state: TransactionState::Ongoing,
        producer_id: 7,
        producer_epoch: 3,
        timeout_ms: 60_000,
        start_time_ms: Some(TX_START_MS),
        partitions: vec![TopicPartition::new("t", 0)],
        coordinator: 1,
    };
    assert_eq!(described, vec![expected]);
    assert_eq!(
        seen.describe_transactions.load(Ordering::SeqCst),
        2,
        "NOT_COORDINATOR made the client find the coordinator and ask again"
    );
    let key_types = seen.coordinator_key_types.lock().expect("lock").clone();
    assert_eq!(key_types, vec![1, 1], "a transactional id is key type 1");

    let unknown = tokio::time::timeout(limit, admin.describe_transactions(&["nope"]))
        .await
        .expect("answered in time")
        .expect_err("unknown id");
    assert_eq!(unknown.code(), ErrorCode::TransactionalIdNotFound);
    assert!(unknown.to_string().contains("nope"), "{unknown}");

    let filter = ListTransactionsFilter {
        states: vec![TransactionState::Ongoing],
        producer_ids: vec![7],
        duration_ms: Some(500),
    };
    let listed = tokio::time::timeout(limit, admin.list_transactions(filter))
        .await
        .expect("answered in time")
        .expect("listed after COORDINATOR_LOAD_IN_PROGRESS");
    let expected = TransactionListing {
        transactional_id: "tx".to_string(),
        producer_id: 7,
        state: TransactionState::Ongoing,
        coordinator: 1,
    };
    assert_eq!(listed, vec![expected]);
    let requests = seen.list_transactions.lock().expect("lock").clone();
    assert_eq!(requests.len(), 2, "a loading coordinator is asked again");
    let (version, request) = &requests[1];
    assert_eq!(*version, 1, "a duration filter needs ListTransactions v1");
    assert_eq!(
        request.state_filters,
        [StrBytes::from_static_str("Ongoing")]
    );
    assert_eq!(request.producer_id_filters, [ProducerId(7)]);
    assert_eq!(request.duration_filter, 500);

    let negative = ListTransactionsFilter {
        duration_ms: Some(-1),
        ..ListTransactionsFilter::default()
    };
    let refused = admin.list_transactions(negative).await.expect_err("-1 ms");
    assert!(matches!(refused, crate::Error::Config(_)), "{refused}");
}

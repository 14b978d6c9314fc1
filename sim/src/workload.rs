//! Simulated clients: producers with acks=all and retries, idempotent producers (KIP-98),
//! consumers reading by offset, and the final reader of the liveness phase. Everything they
//! see goes into the [`History`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brook_core::record::{decode_records, BatchBuilder, Batches, Record};
use brook_core::{ErrorCode, Offset, ProducerEpoch, ProducerId};
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, FetchRequest, InitProducerIdRequest, ProduceRequest, ResponseKind,
    TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use madsim::rand::{thread_rng, Rng};

use crate::client::Conn;
use crate::node::now;
use crate::trace::Trace;

/// The topic every workload writes.
pub const TOPIC: &str = "sim";
/// Its partition count.
pub const PARTITIONS: i32 = 2;
/// The broker's address on the simulated network.
pub const BROKER_ADDR: &str = "10.0.0.1:9092";

/// An acknowledged produce: what the producer was told.
#[derive(Clone, Debug)]
pub struct Ack {
    /// The producer.
    pub producer: usize,
    /// Its send order.
    pub sequence: u32,
    /// The partition written.
    pub partition: i32,
    /// The offset the broker assigned.
    pub offset: i64,
    /// The record's value.
    pub value: String,
}

/// One record a reader saw.
#[derive(Clone, Debug)]
pub struct Read {
    /// The reader.
    pub reader: usize,
    /// The partition read.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The record's value.
    pub value: String,
}

/// One node's view of a workload partition after a change of it (cluster run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionView {
    /// When the node applied the change, in simulated milliseconds.
    pub at_ms: i64,
    /// The node whose image it is.
    pub node: i32,
    /// The partition.
    pub partition: i32,
    /// Its leader, if any.
    pub leader: Option<i32>,
    /// Its leader epoch.
    pub epoch: i32,
    /// Its ISR.
    pub isr: Vec<i32>,
    /// Its replicas, in assignment order (during a reassignment: the target, then those
    /// being removed).
    pub replicas: Vec<i32>,
    /// Whether a reassignment of it is under way.
    pub reassigning: bool,
    /// Whether it is the first view of the partition by this incarnation of the node (a
    /// restarted node replays the metadata log and may pass through old states again).
    pub fresh: bool,
}

/// A produce request a cluster producer sent (acks=all or acks=1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProduceSend {
    /// When it was sent, in simulated milliseconds.
    pub at_ms: i64,
    /// The node it went to (the partition's leader as the producer knew it).
    pub node: i32,
    /// The partition.
    pub partition: i32,
}

/// Everything the clients observed.
#[derive(Default, Debug)]
pub struct History {
    /// Acknowledged produces (acks=all).
    pub acks: Vec<Ack>,
    /// Produces acknowledged by the leader alone (acks=1): a leader change may lose them;
    /// their losses are counted, not failures.
    pub leader_acks: Vec<Ack>,
    /// Records sent with acks=0 (never answered).
    pub unacknowledged_sends: usize,
    /// Records consumers read, in the order each read them.
    pub reads: Vec<Read>,
    /// Repositionings a consumer made (reader, partition, from, to) — allowed skips.
    pub seeks: Vec<(usize, i32, i64, i64)>,
    /// High watermarks seen: (reader, partition, high watermark), in order.
    pub high_watermarks: Vec<(usize, i32, i64)>,
    /// Batches served that failed their CRC.
    pub corrupt_batches: Vec<String>,
    /// Partitions the final read gave up on: (partition, offset) where the broker kept
    /// answering KAFKA_STORAGE_ERROR (a batch damaged on disk is refused, never served).
    pub unreadable: Vec<(i32, i64)>,
    /// The final read: (partition, offset) → value.
    pub final_log: BTreeMap<(i32, i64), String>,
    /// Producers that sent their whole quota.
    pub producers_done: usize,
    /// Whether the final read completed.
    pub final_read_done: bool,
    /// What the consumer-group members saw, in order.
    pub group_events: Vec<crate::group_member::GroupEvent>,
    /// The nodes seen coordinating the consumer group (cluster run).
    pub coordinators: std::collections::BTreeSet<i32>,
    /// Committed offsets read after healing, per partition.
    pub final_committed: BTreeMap<i32, i64>,
    /// Producer epochs an idempotent producer bumped to after the broker lost its sequence
    /// state (KIP-360): (producer, new epoch).
    pub epoch_bumps: Vec<(usize, i16)>,
    /// Produce answers with `KAFKA_STORAGE_ERROR` (an offline partition), for the report.
    pub storage_errors: usize,
    /// Every node's view of the workload partitions, at each change (cluster run).
    pub partition_views: Vec<PartitionView>,
    /// The produce requests the cluster producers sent, for the scenarios' checks.
    pub produce_sends: Vec<ProduceSend>,
    /// The reassignments the cluster run's reassigner asked for, in order.
    pub moves: Vec<crate::reassign::Asked>,
    /// The transactions the transactional producers ran, and how each ended for them.
    pub transactions: Vec<crate::txn_workload::TxnRun>,
    /// What a read_committed reader read after healing: (partition, offset) → value.
    pub committed_log: BTreeMap<(i32, i64), String>,
    /// Whether that read reached the last stable offset of every partition.
    pub committed_read_done: bool,
    /// Whether the first transactional instance has its producer id, or gave up (the second
    /// waits for it).
    pub first_initialised: bool,
}

/// The history shared by every client of a run.
pub type SharedHistory = Arc<Mutex<History>>;

pub(crate) fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

/// Prefix of the values idempotent producers write (`i{producer}-{send}`).
pub const IDEMPOTENT_PREFIX: &str = "i";
/// What a reader records for a transaction marker's offset.
pub const MARKER_VALUE: &str = "<marker>";
/// Consecutive storage errors after which the final read gives a partition up (5 s at its
/// 10 ms pace): only a batch damaged on disk keeps failing once the faults are healed.
const STORAGE_ERRORS_MAX: u32 = 500;

/// Creates the workload topic, retrying until the broker answers.
pub async fn create_topic(sync_every_append: bool, segment_bytes: Option<u64>, trace: Trace) {
    let mut topic = CreatableTopic::default();
    topic.name = topic_name();
    topic.num_partitions = PARTITIONS;
    topic.replication_factor = 1;
    let config = |name: &'static str, value: String| {
        let mut config = CreatableTopicConfig::default();
        config.name = StrBytes::from_static_str(name);
        config.value = Some(StrBytes::from_string(value));
        config
    };
    if sync_every_append {
        topic.configs.push(config("flush.messages", "1".into()));
    }
    if let Some(bytes) = segment_bytes {
        topic
            .configs
            .push(config("segment.bytes", bytes.to_string()));
    }
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 1000;
    loop {
        if let Ok(mut conn) = Conn::connect(BROKER_ADDR).await {
            if let Ok(Some(ResponseKind::CreateTopics(r))) =
                conn.call(ApiKey::CreateTopics, 5, &request, true).await
            {
                let code = r.topics[0].error_code;
                if code == 0 || code == ErrorCode::TopicAlreadyExists.code() {
                    trace.record(format!("{} setup: topic ready (code {code})", now().0));
                    return;
                }
            }
        }
        madsim::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The producer fields of an idempotent batch: id, epoch, base sequence.
pub type Idempotence = (ProducerId, ProducerEpoch, i32);

/// An acks=all Produce of one record.
pub fn produce_request(partition: i32, value: &str) -> ProduceRequest {
    produce_request_as(partition, value, None)
}

fn produce_request_as(
    partition: i32,
    value: &str,
    idempotence: Option<Idempotence>,
) -> ProduceRequest {
    produce_request_in(partition, value, idempotence, None)
}

/// An acks=all Produce of one record by an idempotent producer, as part of the transaction
/// of `transactional_id` when one is named (a transactional batch).
pub fn produce_request_in(
    partition: i32,
    value: &str,
    idempotence: Option<Idempotence>,
    transactional_id: Option<&'static str>,
) -> ProduceRequest {
    let mut builder = match idempotence {
        Some((id, epoch, sequence)) => BatchBuilder::new(Offset(0)).producer(id, epoch, sequence),
        None => BatchBuilder::new(Offset(0)),
    };
    if transactional_id.is_some() {
        builder = builder.attributes(ATTR_TRANSACTIONAL);
    }
    builder.push(&Record {
        timestamp: now().0,
        key: None,
        value: Some(value.as_bytes().to_vec()),
        headers: Vec::new(),
    });
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(Bytes::from(builder.build()));
    let mut topic = TopicProduceData::default();
    topic.name = topic_name();
    topic.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.transactional_id =
        transactional_id.map(|id| TransactionalId(StrBytes::from_static_str(id)));
    request.acks = -1;
    request.timeout_ms = 1000;
    request.topic_data = vec![topic];
    request
}

/// The transactional bit of a batch's attributes.
const ATTR_TRANSACTIONAL: i16 = 0x10;

/// Sends `quota` records with acks=all, each retried until acknowledged.
pub async fn producer(id: usize, quota: u32, history: SharedHistory, trace: Trace) {
    let mut conn: Option<Conn> = None;
    for sequence in 0..quota {
        let value = format!("p{id}-{sequence}");
        let partition = (sequence % PARTITIONS as u32) as i32;
        let request = produce_request(partition, &value);
        loop {
            if conn.is_none() {
                conn = Conn::connect(BROKER_ADDR).await.ok();
            }
            let Some(c) = conn.as_mut() else {
                madsim::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            match c.call(ApiKey::Produce, 9, &request, true).await {
                Ok(Some(ResponseKind::Produce(response))) => {
                    let answer = &response.responses[0].partition_responses[0];
                    if answer.error_code == 0 {
                        let at = answer.base_offset;
                        trace.record(format!(
                            "{} producer{id}: {value} at {partition}/{at}",
                            now().0
                        ));
                        history.lock().expect("history").acks.push(Ack {
                            producer: id,
                            sequence,
                            partition,
                            offset: answer.base_offset,
                            value: value.clone(),
                        });
                        break;
                    }
                    trace.record(format!(
                        "{} producer{id}: error {}",
                        now().0,
                        answer.error_code
                    ));
                    if answer.error_code == ErrorCode::KafkaStorageError.code() {
                        history.lock().expect("history").storage_errors += 1;
                    }
                    madsim::time::sleep(Duration::from_millis(50)).await;
                }
                _ => {
                    conn = None;
                    madsim::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let pause = thread_rng().gen_range(0..40);
        madsim::time::sleep(Duration::from_millis(pause)).await;
    }
    trace.record(format!("{} producer{id}: done", now().0));
    history.lock().expect("history").producers_done += 1;
}

/// Asks for a producer id (or, with `previous`, an epoch bump of that id, KIP-360) until the
/// broker grants one.
async fn init_producer_id(
    conn: &mut Option<Conn>,
    previous: Option<(ProducerId, ProducerEpoch)>,
) -> (ProducerId, ProducerEpoch) {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = 60_000;
    let (id, epoch) = previous.unwrap_or((ProducerId(-1), ProducerEpoch(-1)));
    request.producer_id = kafka_protocol::messages::ProducerId(id.0);
    request.producer_epoch = epoch.0;
    loop {
        if let Some(ResponseKind::InitProducerId(response)) =
            call_reconnecting(conn, ApiKey::InitProducerId, 3, &request).await
        {
            if response.error_code == 0 {
                return (
                    ProducerId(response.producer_id.0),
                    ProducerEpoch(response.producer_epoch),
                );
            }
        }
        madsim::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An idempotent producer (KIP-98), `id` counted after the plain producers: a producer id
/// from InitProducerId, a sequence number per partition, one batch in flight, and the very
/// same batch retried after errors, timeouts and lost connections until acknowledged — so the
/// broker must write each batch exactly once. When the broker has lost the producer's
/// sequence state (a power loss took batches it acknowledged), it bumps its epoch (KIP-360)
/// and numbers from 0 again.
pub async fn idempotent_producer(id: usize, quota: u32, history: SharedHistory, trace: Trace) {
    let mut conn: Option<Conn> = None;
    let (mut producer_id, mut epoch) = init_producer_id(&mut conn, None).await;
    trace.record(format!(
        "{} producer{id}: idempotent as {} epoch {}",
        now().0,
        producer_id.0,
        epoch.0
    ));
    let mut sequences = vec![0i32; PARTITIONS as usize];
    for send in 0..quota {
        let value = format!("{IDEMPOTENT_PREFIX}{id}-{send}");
        let partition = (send % PARTITIONS as u32) as i32;
        let slot = partition as usize;
        loop {
            let idempotence = (producer_id, epoch, sequences[slot]);
            let request = produce_request_as(partition, &value, Some(idempotence));
            let Some(ResponseKind::Produce(response)) =
                call_reconnecting(&mut conn, ApiKey::Produce, 9, &request).await
            else {
                continue;
            };
            let answer = &response.responses[0].partition_responses[0];
            let code = answer.error_code;
            if code == 0 {
                trace.record(format!(
                    "{} producer{id}: {value} at {partition}/{}",
                    now().0,
                    answer.base_offset
                ));
                history.lock().expect("history").acks.push(Ack {
                    producer: id,
                    sequence: send,
                    partition,
                    offset: answer.base_offset,
                    value: value.clone(),
                });
                sequences[slot] = sequences[slot].wrapping_add(1);
                break;
            }
            trace.record(format!("{} producer{id}: error {code}", now().0));
            let lost_state = [
                ErrorCode::OutOfOrderSequenceNumber,
                ErrorCode::UnknownProducerId,
                ErrorCode::InvalidProducerEpoch,
            ]
            .iter()
            .any(|c| c.code() == code);
            if lost_state {
                (producer_id, epoch) =
                    init_producer_id(&mut conn, Some((producer_id, epoch))).await;
                sequences.iter_mut().for_each(|s| *s = 0);
                history
                    .lock()
                    .expect("history")
                    .epoch_bumps
                    .push((id, epoch.0));
            }
            if code == ErrorCode::KafkaStorageError.code() {
                history.lock().expect("history").storage_errors += 1;
            }
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
        let pause = thread_rng().gen_range(0..40);
        madsim::time::sleep(Duration::from_millis(pause)).await;
    }
    trace.record(format!("{} producer{id}: done", now().0));
    history.lock().expect("history").producers_done += 1;
}

fn fetch_request(positions: &[i64], max_wait_ms: i32) -> FetchRequest {
    let partitions: Vec<i32> = (0..positions.len() as i32).collect();
    fetch_request_for(&partitions, positions, max_wait_ms)
}

/// A Fetch of `partitions` of the workload topic at `positions`.
pub fn fetch_request_for(partitions: &[i32], positions: &[i64], max_wait_ms: i32) -> FetchRequest {
    let mut topic = FetchTopic::default();
    topic.topic = topic_name();
    topic.partitions = partitions
        .iter()
        .zip(positions)
        .map(|(&partition, &offset)| {
            let mut p = FetchPartition::default();
            p.partition = partition;
            p.fetch_offset = offset;
            p.partition_max_bytes = 64 * 1024;
            p
        })
        .collect();
    let mut request = FetchRequest::default();
    request.max_wait_ms = max_wait_ms;
    request.min_bytes = 1;
    request.max_bytes = 256 * 1024;
    request.session_epoch = -1;
    request.topics = vec![topic];
    request
}

/// What one fetch round did for one partition.
pub struct Fetched {
    /// (offset, value) of the records at or after the position.
    pub records: Vec<(i64, String)>,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// Where the next fetch continues, if any batch came back.
    pub next: Option<i64>,
    /// Whether the broker answered OFFSET_OUT_OF_RANGE.
    pub out_of_range: bool,
}

/// Reads every batch in a partition's answer, checking CRCs; records bad ones.
pub fn read_partition(
    answer: &kafka_protocol::messages::fetch_response::PartitionData,
    position: i64,
    history: &SharedHistory,
) -> Fetched {
    let mut fetched = Fetched {
        records: Vec::new(),
        high_watermark: answer.high_watermark,
        next: None,
        out_of_range: answer.error_code == ErrorCode::OffsetOutOfRange.code(),
    };
    let Some(bytes) = answer.records.as_ref() else {
        return fetched;
    };
    for batch in Batches::new(bytes) {
        let Ok(batch) = batch else { break };
        if let Err(err) = batch.verify_crc() {
            let detail = format!(
                "partition {} offset {}: {err}",
                answer.partition_index,
                batch.base_offset()
            );
            history
                .lock()
                .expect("history")
                .corrupt_batches
                .push(detail);
            break;
        }
        if batch.is_control() {
            // A transaction marker: read as one record with a value of its own, so readers
            // still see dense offsets (a Kafka consumer skips it).
            let offset = batch.base_offset().0;
            if offset >= position {
                fetched.records.push((offset, MARKER_VALUE.to_string()));
            }
            fetched.next = Some(batch.next_offset().0);
            continue;
        }
        let Ok(records) = decode_records(&batch, 1 << 20) else {
            break;
        };
        for record in records.into_iter().filter(|r| r.offset.0 >= position) {
            let value = String::from_utf8_lossy(record.record.value.as_deref().unwrap_or_default());
            fetched.records.push((record.offset.0, value.into_owned()));
        }
        fetched.next = Some(batch.next_offset().0);
    }
    fetched
}

/// Calls the broker over `conn`, connecting first if needed: `None` when the connection could
/// not be made (after a pause) or the call failed (the connection is then dropped, so the
/// next call reconnects).
pub(crate) async fn call_reconnecting<T: kafka_protocol::protocol::Encodable>(
    conn: &mut Option<Conn>,
    api: ApiKey,
    version: i16,
    body: &T,
) -> Option<ResponseKind> {
    if conn.is_none() {
        *conn = Conn::connect(BROKER_ADDR).await.ok();
    }
    let Some(c) = conn.as_mut() else {
        madsim::time::sleep(Duration::from_millis(100)).await;
        return None;
    };
    match c.call(api, version, body, true).await {
        Ok(Some(response)) => Some(response),
        _ => {
            *conn = None;
            None
        }
    }
}

/// Reads both partitions from offset 0 until `stop`, recording every record and high
/// watermark it sees.
pub async fn consumer(id: usize, stop: Arc<AtomicBool>, history: SharedHistory) {
    let mut positions = vec![0i64; PARTITIONS as usize];
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        let request = fetch_request(&positions, 500);
        let Some(ResponseKind::Fetch(response)) =
            call_reconnecting(&mut conn, ApiKey::Fetch, 12, &request).await
        else {
            continue;
        };
        // An answer with no records (an error, or a long poll that timed out) is followed by
        // a pause, so a broker answering at once can never spin the simulation.
        let empty = response
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .all(|p| p.records.as_ref().is_none_or(|r| r.is_empty()));
        if empty {
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
        let Some(topic) = response.responses.first() else {
            continue;
        };
        for answer in &topic.partitions {
            let partition = answer.partition_index;
            let slot = partition as usize;
            let fetched = read_partition(answer, positions[slot], &history);
            let mut history = history.lock().expect("history");
            if answer.error_code == 0 {
                history
                    .high_watermarks
                    .push((id, partition, fetched.high_watermark));
            }
            if fetched.out_of_range {
                // The log lost its tail (a power loss without sync): seek to its end.
                let to = fetched.high_watermark.max(0);
                history.seeks.push((id, partition, positions[slot], to));
                positions[slot] = to;
                continue;
            }
            for (offset, value) in fetched.records {
                history.reads.push(Read {
                    reader: id,
                    partition,
                    offset,
                    value,
                });
            }
            if let Some(next) = fetched.next {
                positions[slot] = next;
            }
        }
    }
}

/// Reads every partition from its start to its high watermark once the faults are healed.
pub async fn final_read(history: SharedHistory, trace: Trace) {
    let mut positions = vec![0i64; PARTITIONS as usize];
    let mut ends = vec![None::<i64>; PARTITIONS as usize];
    let mut conn: Option<Conn> = None;
    let mut log = BTreeMap::new();
    // Consecutive KAFKA_STORAGE_ERROR answers per partition at the same position; after
    // STORAGE_ERRORS_MAX the partition is given up on (recorded in `History::unreadable`).
    let mut storage_errors = vec![0u32; PARTITIONS as usize];
    let mut unreadable = Vec::new();
    while ends
        .iter()
        .zip(&positions)
        .enumerate()
        .any(|(slot, (end, position))| {
            storage_errors[slot] < STORAGE_ERRORS_MAX && end.is_none_or(|e| *position < e)
        })
    {
        let request = fetch_request(&positions, 0);
        let Some(ResponseKind::Fetch(response)) =
            call_reconnecting(&mut conn, ApiKey::Fetch, 12, &request).await
        else {
            continue;
        };
        // Pace the rounds: an erroring broker must not spin the simulation.
        madsim::time::sleep(Duration::from_millis(10)).await;
        for answer in response.responses.iter().flat_map(|t| &t.partitions) {
            let slot = answer.partition_index as usize;
            if answer.error_code == ErrorCode::KafkaStorageError.code() {
                storage_errors[slot] += 1;
                if storage_errors[slot] == STORAGE_ERRORS_MAX {
                    unreadable.push((answer.partition_index, positions[slot]));
                }
                continue;
            }
            if answer.error_code != 0 {
                continue;
            }
            storage_errors[slot] = 0;
            let fetched = read_partition(answer, positions[slot], &history);
            ends[slot] = Some(fetched.high_watermark);
            for (offset, value) in fetched.records {
                log.insert((answer.partition_index, offset), value);
            }
            if let Some(next) = fetched.next {
                positions[slot] = next;
            }
        }
    }
    trace.record(format!("{} final read: {} records", now().0, log.len()));
    let mut history = history.lock().expect("history");
    history.final_log = log;
    history.unreadable = unreadable;
    history.final_read_done = true;
}

/// Waits until the consumer group's committed offsets, asked of its coordinator among nodes
/// `1..=nodes`, reach the end of every partition (as the final read found it), recording
/// what it last saw in `History::final_committed`.
pub async fn await_group_caught_up(nodes: i32, history: SharedHistory, trace: Trace) {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{GroupId, OffsetFetchRequest};
    let ends: BTreeMap<i32, i64> = {
        let history = history.lock().expect("history");
        (0..PARTITIONS)
            .map(|p| {
                let end = history.final_log.range((p, 0)..(p, i64::MAX)).next_back();
                (p, end.map_or(0, |((_, offset), _)| offset + 1))
            })
            .collect()
    };
    let mut request = OffsetFetchRequest::default();
    request.group_id = GroupId(StrBytes::from_static_str(crate::group_member::GROUP));
    let mut topic = OffsetFetchRequestTopic::default();
    topic.name = topic_name();
    topic.partition_indexes = (0..PARTITIONS).collect();
    request.topics = Some(vec![topic]);
    let mut router = crate::cluster_workload::Router::new(nodes);
    let group = crate::group_member::GROUP;
    loop {
        madsim::time::sleep(Duration::from_millis(500)).await;
        let Some(ResponseKind::OffsetFetch(response)) = router
            .call_coordinator(group, ApiKey::OffsetFetch, 5, &request)
            .await
        else {
            continue;
        };
        if response.error_code != 0 {
            continue;
        }
        let committed: BTreeMap<i32, i64> = response
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| (p.partition_index, p.committed_offset))
            .collect();
        let caught_up = ends
            .iter()
            .all(|(p, end)| committed.get(p).is_some_and(|c| c >= end));
        history.lock().expect("history").final_committed = committed;
        if caught_up {
            trace.record(format!("{} group caught up with {ends:?}", now().0));
            return;
        }
    }
}

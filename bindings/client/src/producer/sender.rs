//! The producer's background task: seals batches in the shared [`Accumulator`] (filled by
//! `Producer::send`) when they are full or have lingered, sends ready batches (one Produce
//! request per leader at a time, one batch per partition in it), and turns answers into
//! delivery reports, retries or failures.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use brook_core::{ErrorCode, ProducerEpoch, ProducerId};
use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Acks, ProducerConfig, Shared};
use crate::error::Error;
use crate::network::Network;
use crate::TopicPartition;

/// Produce v3 is the first to carry v2 record batches; v9 is the newest Brook serves.
const PRODUCE_VERSIONS: (i16, i16) = (3, 9);

/// InitProducerId versions this client speaks (v4 is the newest Brook serves).
const INIT_PRODUCER_ID_VERSIONS: (i16, i16) = (0, 4);

/// What `Producer` asks of its background task (records go through the accumulator).
#[derive(Debug)]
pub(crate) enum Command {
    /// Send everything now and answer when nothing is left unanswered.
    Flush(oneshot::Sender<()>),
}

/// What came back from one Produce request.
struct Outcome {
    addr: String,
    partitions: Vec<TopicPartition>,
    /// `None` for acks=0, which gets no answer.
    result: Result<Option<ProduceResponse>, Error>,
}

/// The background task's state.
pub(crate) struct Sender {
    config: ProducerConfig,
    network: Arc<Network>,
    commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    flushes: Vec<oneshot::Sender<()>>,
    in_flight: JoinSet<Outcome>,
    /// Broker addresses with a Produce request in flight.
    busy: HashSet<String>,
    /// Producer id and epoch under idempotence, once granted.
    producer: Option<(i64, i16)>,
    /// No InitProducerId before this instant (backoff after a failure).
    init_retry_at: Option<Instant>,
    /// The `Producer` is gone: finish what is queued, then stop.
    closed: bool,
}

impl Sender {
    /// The task's state before it runs.
    pub fn new(
        config: ProducerConfig,
        shared: Arc<Shared>,
        network: Arc<Network>,
        commands: mpsc::Receiver<Command>,
    ) -> Sender {
        Sender {
            config,
            network,
            commands,
            shared,
            flushes: Vec::new(),
            in_flight: JoinSet::new(),
            busy: HashSet::new(),
            producer: None,
            init_retry_at: None,
            closed: false,
        }
    }

    /// Runs until the `Producer` is dropped and every queued record is answered.
    pub async fn run(mut self) {
        loop {
            if self.closed && self.shared.lock().is_empty() && self.in_flight.is_empty() {
                break;
            }
            let now = Instant::now();
            let init_at = self.init_retry_at.filter(|&at| at > now);
            let linger_or_retry = self
                .shared
                .lock()
                .next_wakeup(now.into_std())
                .map(Instant::from_std);
            let wake = [linger_or_retry, init_at].into_iter().flatten().min();
            let sleep_until = wake.unwrap_or_else(|| now + Duration::from_secs(3600));
            tokio::select! {
                command = self.commands.recv(), if !self.closed => match command {
                    Some(Command::Flush(reply)) => self.flushes.push(reply),
                    None => self.closed = true,
                },
                () = self.shared.wakeup.notified() => {}
                Some(joined) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    let outcome = joined.expect("a Produce request task never panics");
                    self.on_outcome(outcome);
                }
                () = tokio::time::sleep_until(sleep_until), if wake.is_some() => {}
            }
            let force = self.closed || !self.flushes.is_empty();
            self.shared
                .lock()
                .seal_expired(std::time::Instant::now(), force);
            self.dispatch().await;
            // Batches answered, failed or expired above: sends waiting for room may go on.
            self.shared.room.notify_waiters();
            if self.shared.lock().is_empty() {
                for flush in self.flushes.drain(..) {
                    let _ = flush.send(());
                }
            }
        }
        self.shared
            .stopped
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn idempotent(&self) -> bool {
        self.config.enable_idempotence
    }

    /// Sends every batch that may go now, one request per idle leader.
    async fn dispatch(&mut self) {
        // Expire first, so records time out even while no producer id can be had.
        let now = std::time::Instant::now();
        let ready = self.shared.lock().ready(now);
        for tp in ready {
            if self.shared.lock().head_expired(&tp, now) {
                let err = Error::Timeout(format!(
                    "no acknowledgement for {tp} within delivery.timeout.ms"
                ));
                self.give_up(&tp, &err);
            }
        }
        let empty = self.shared.lock().is_empty();
        if self.idempotent() && self.producer.is_none() && !empty {
            self.init_producer_id().await;
            if self.producer.is_none() {
                return;
            }
        }
        let now = std::time::Instant::now();
        let mut by_leader: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
        let ready = self.shared.lock().ready(now);
        for tp in ready {
            match self.network.leader_addr(&tp.topic, tp.partition).await {
                Ok(addr) if self.busy.contains(&addr) => {}
                Ok(addr) => by_leader.entry(addr).or_default().push(tp),
                Err(err) => self.on_partition_error(&tp, err),
            }
        }
        for (addr, partitions) in by_leader {
            self.send_request(addr, partitions);
        }
    }

    /// Asks for a producer id; on failure retries after the backoff (or, if the broker
    /// refuses for good, fails everything queued).
    async fn init_producer_id(&mut self) {
        if !self.in_flight.is_empty() {
            return; // sequences of in-flight batches must settle under the old id first
        }
        if self.init_retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let timeout_ms = i32::try_from(self.config.delivery_timeout_ms).unwrap_or(i32::MAX);
        let result = self
            .network
            .call_any(INIT_PRODUCER_ID_VERSIONS, |_| {
                init_producer_id_request(timeout_ms)
            })
            .await
            .and_then(|response| {
                crate::error::check(response.error_code, None, "InitProducerId")?;
                Ok((response.producer_id.0, response.producer_epoch))
            });
        match result {
            Ok(producer) => {
                self.producer = Some(producer);
                self.init_retry_at = None;
                self.shared.lock().reset_sequences();
            }
            Err(err) if err.is_retriable() => {
                self.init_retry_at =
                    Some(Instant::now() + Duration::from_millis(self.config.retry_backoff_ms));
            }
            Err(err) => {
                self.init_retry_at =
                    Some(Instant::now() + Duration::from_millis(self.config.retry_backoff_ms));
                let mut accumulator = self.shared.lock();
                accumulator.seal_expired(std::time::Instant::now(), true);
                for tp in accumulator.ready(std::time::Instant::now()) {
                    accumulator.fail_head(&tp, &err);
                }
            }
        }
    }

    /// Builds and spawns one Produce request with the head batch of each partition.
    fn send_request(&mut self, addr: String, partitions: Vec<TopicPartition>) {
        let mut topics: BTreeMap<String, Vec<PartitionProduceData>> = BTreeMap::new();
        let producer = self.producer.filter(|_| self.config.enable_idempotence);
        for tp in &partitions {
            // The batch is built (compressed, CRC'd) outside the lock, so sends go on.
            let (cached, builder, sequence) = {
                let mut accumulator = self.shared.lock();
                let queue = accumulator.queue(tp);
                queue.in_flight = true;
                let sequence = queue.next_sequence;
                let head = queue.head().expect("a ready partition has a head batch");
                head.attempts += 1;
                let builder = head.wire.is_none().then(|| head.builder.clone());
                (head.wire.clone(), builder, sequence)
            };
            let wire = match (cached, builder) {
                (Some(wire), _) => wire,
                (None, Some(mut builder)) => {
                    if let Some((id, epoch)) = producer {
                        builder = builder.producer(ProducerId(id), ProducerEpoch(epoch), sequence);
                    }
                    let wire = Bytes::from(builder.build());
                    let mut accumulator = self.shared.lock();
                    let head = accumulator.queue(tp).head().expect("the in-flight head");
                    head.wire = Some(wire.clone());
                    wire
                }
                (None, None) => unreachable!("a head without wire bytes is cloned above"),
            };
            topics.entry(tp.topic.clone()).or_default().push(
                PartitionProduceData::default()
                    .with_index(tp.partition)
                    .with_records(Some(wire)),
            );
        }
        let topic_data = topics
            .into_iter()
            .map(|(name, data)| {
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partition_data(data)
            })
            .collect();
        let request = ProduceRequest::default()
            .with_acks(self.config.acks.wire())
            .with_timeout_ms(i32::try_from(self.config.request_timeout_ms).unwrap_or(i32::MAX))
            .with_topic_data(topic_data);
        let network = Arc::clone(&self.network);
        let acks = self.config.acks;
        self.busy.insert(addr.clone());
        self.in_flight.spawn(async move {
            let result = if acks == Acks::None {
                network
                    .send_only(&addr, PRODUCE_VERSIONS, move |_| request)
                    .await
                    .map(|()| None)
            } else {
                network
                    .call(&addr, PRODUCE_VERSIONS, Duration::ZERO, move |_| request)
                    .await
                    .map(Some)
            };
            Outcome {
                addr,
                partitions,
                result,
            }
        });
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        self.busy.remove(&outcome.addr);
        let response = match outcome.result {
            Ok(Some(response)) => response,
            Ok(None) => {
                let mut accumulator = self.shared.lock();
                for tp in &outcome.partitions {
                    accumulator.complete_head(tp, -1, -1);
                }
                return;
            }
            Err(err) => {
                for tp in &outcome.partitions {
                    self.on_partition_error(tp, err.clone());
                }
                return;
            }
        };
        for tp in &outcome.partitions {
            let answer = response
                .responses
                .iter()
                .filter(|t| t.name.0.as_str() == tp.topic)
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.index == tp.partition);
            match answer {
                None => self.on_partition_error(
                    tp,
                    Error::kafka(13, format!("the Produce response left out {tp}")),
                ),
                // A duplicate is a retry of a batch the broker already has: delivered.
                Some(p)
                    if p.error_code == 0
                        || p.error_code == ErrorCode::DuplicateSequenceNumber.code() =>
                {
                    self.shared
                        .lock()
                        .complete_head(tp, p.base_offset, p.log_append_time_ms);
                }
                Some(p) => {
                    let message = p.error_message.as_ref().map(|m| m.to_string());
                    let err = Error::kafka(
                        p.error_code,
                        format!("produce to {tp}: {}", message.unwrap_or_default()),
                    );
                    self.on_partition_error(tp, err);
                }
            }
        }
    }

    /// A failed attempt for the head batch of `tp`: retry it after the backoff if the error is
    /// retriable and retries and time remain; fail its records otherwise.
    fn on_partition_error(&mut self, tp: &TopicPartition, err: Error) {
        if err.invalidates_metadata() {
            self.network.mark_stale();
        }
        let now = std::time::Instant::now();
        let mut accumulator = self.shared.lock();
        let attempts = accumulator.queue(tp).head().map_or(0, |head| head.attempts);
        let retry = err.is_retriable()
            && attempts <= self.config.retries
            && !accumulator.head_expired(tp, now);
        if retry {
            let at = now + Duration::from_millis(self.config.retry_backoff_ms);
            accumulator.retry_head(tp, at);
        } else {
            drop(accumulator);
            self.give_up(tp, &err);
        }
    }

    /// Fails the head batch of `tp`. Under idempotence, if the broker may have written it
    /// or lost track of our sequence, later batches get a fresh producer id so sequence
    /// numbers never reuse or skip one the broker has seen.
    fn give_up(&mut self, tp: &TopicPartition, err: &Error) {
        let attempts = {
            let mut accumulator = self.shared.lock();
            let attempts = accumulator.queue(tp).head().map_or(0, |head| head.attempts);
            accumulator.fail_head(tp, err);
            attempts
        };
        let outcome_unknown = attempts > 0 && err.is_retriable();
        let sequence_broken = matches!(
            err.code(),
            ErrorCode::OutOfOrderSequenceNumber
                | ErrorCode::UnknownProducerId
                | ErrorCode::InvalidProducerEpoch
                | ErrorCode::InvalidProducerIdMapping
        );
        if self.idempotent() && (outcome_unknown || sequence_broken) {
            self.producer = None;
        }
    }
}

/// An InitProducerId request for an idempotent (not transactional) producer. The schema's
/// default transactional id is `Some("")`, which a broker takes for a transactional id.
fn init_producer_id_request(timeout_ms: i32) -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(timeout_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn producer_requests_encode_in_every_version() {
        let request = init_producer_id_request(1000);
        assert_eq!(request.transactional_id, None);
        for version in INIT_PRODUCER_ID_VERSIONS.0..=INIT_PRODUCER_ID_VERSIONS.1 {
            let mut buf = bytes::BytesMut::new();
            request
                .encode(&mut buf, version)
                .unwrap_or_else(|e| panic!("InitProducerId v{version}: {e}"));
        }
        let produce = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from_static(b"batch")))])]);
        for version in PRODUCE_VERSIONS.0..=PRODUCE_VERSIONS.1 {
            let mut buf = bytes::BytesMut::new();
            produce
                .encode(&mut buf, version)
                .unwrap_or_else(|e| panic!("Produce v{version}: {e}"));
        }
    }
}

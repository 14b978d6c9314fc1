//! Produce and InitProducerId: validating, converting and appending client batches.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::producer_state::{BatchSequence, SequenceVerdict};
use super::replica::PendingAck;
use super::{Broker, StorageProvider};
use crate::error::ErrorCode;
use crate::log::LogError;
use crate::record::{convert_legacy, is_legacy, Batch};
use crate::types::{Millis, Offset, ProducerEpoch, ProducerId};

/// What producing to one partition came to.
struct Outcome {
    error: ErrorCode,
    message: Option<String>,
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
    /// acks=all and the records are not committed yet: the offset after them.
    waits_for: Option<Offset>,
}

impl Outcome {
    fn error(error: ErrorCode, message: impl Into<String>) -> Outcome {
        Outcome {
            error,
            message: Some(message.into()),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
            waits_for: None,
        }
    }
}

impl<P: StorageProvider> Broker<P> {
    /// Answers Produce; `None` when acks=0 asks for no response. With acks=all, the
    /// partitions whose records are not committed yet come back too: the answer waits for
    /// them.
    pub(crate) fn handle_produce(
        &mut self,
        now: Millis,
        request: ProduceRequest,
        version: i16,
    ) -> (Option<ProduceResponse>, Vec<PendingAck>) {
        let mut pending = Vec::new();
        let acks = request.acks;
        let transactional = request.transactional_id.is_some();
        let mut response = ProduceResponse::default();
        for topic in request.topic_data {
            let name = topic.name.0.as_str().to_string();
            let mut topic_response = TopicProduceResponse::default();
            topic_response.name = topic.name;
            for partition in topic.partition_data {
                let records = partition.records;
                let outcome = self.produce_partition(
                    now,
                    &name,
                    partition.index,
                    records,
                    acks,
                    transactional,
                );
                if let Some(next_offset) = outcome.waits_for {
                    pending.push(PendingAck {
                        topic: name.clone(),
                        partition: partition.index,
                        next_offset,
                    });
                }
                let mut answer = PartitionProduceResponse::default();
                answer.index = partition.index;
                answer.error_code = outcome.error.code();
                answer.base_offset = outcome.base_offset;
                // Fields a version lacks must keep their defaults to encode.
                if version >= 8 {
                    answer.error_message = outcome.message.map(StrBytes::from_string);
                }
                if version >= 2 {
                    answer.log_append_time_ms = outcome.log_append_time_ms;
                }
                if version >= 5 {
                    answer.log_start_offset = outcome.log_start_offset;
                }
                topic_response.partition_responses.push(answer);
            }
            response.responses.push(topic_response);
        }
        self.complete_ready_fetches(now);
        ((acks != 0).then_some(response), pending)
    }

    fn produce_partition(
        &mut self,
        now: Millis,
        topic: &str,
        index: i32,
        records: Option<bytes::Bytes>,
        acks: i16,
        transactional: bool,
    ) -> Outcome {
        if !matches!(acks, -1..=1) {
            return Outcome::error(
                ErrorCode::InvalidRequiredAcks,
                format!("acks {acks} is not -1, 0 or 1"),
            );
        }
        let Some(stored) = self.topics.get_mut(topic) else {
            return Outcome::error(
                ErrorCode::UnknownTopicOrPartition,
                format!("unknown topic {topic}"),
            );
        };
        let Some(partition) = stored.partitions.get_mut(index) else {
            if stored.partitions.exists(index) {
                return Outcome::error(
                    ErrorCode::NotLeaderOrFollower,
                    format!("this broker does not lead {topic}-{index}"),
                );
            }
            return Outcome::error(
                ErrorCode::UnknownTopicOrPartition,
                format!("unknown partition {topic}-{index}"),
            );
        };
        if !partition.is_leader() {
            return Outcome::error(
                ErrorCode::NotLeaderOrFollower,
                format!("this broker does not lead {topic}-{index}"),
            );
        }
        let Some(records) = records.filter(|r| !r.is_empty()) else {
            return Outcome::error(ErrorCode::InvalidRecord, "no records");
        };
        if acks == -1 {
            if let Err(code) = partition.check_acks_all() {
                let min = partition.log.config().min_insync_replicas;
                let message = format!("{topic}-{index} has fewer than {min} in-sync replicas");
                return Outcome::error(code, message);
            }
        }
        let max_message_bytes = partition.log.config().max_message_bytes;
        let mut bytes = if is_legacy(&records) {
            match convert_legacy(&records, max_message_bytes) {
                Ok(converted) => converted,
                Err(err) => return Outcome::error(ErrorCode::from(&err), err.to_string()),
            }
        } else {
            records.to_vec()
        };
        // Idempotence: one batch per request for an idempotent producer, as Kafka requires.
        let idempotent = match Batch::parse(&bytes) {
            Ok(batch) if transactional && batch.producer_id().0 < 0 => {
                return Outcome::error(
                    ErrorCode::InvalidRecord,
                    "a transactional request's batches carry the producer id",
                );
            }
            Ok(batch) if batch.producer_id().0 >= 0 => {
                if batch.is_control() {
                    return Outcome::error(
                        ErrorCode::InvalidRecord,
                        "control batches are written by the transaction coordinator only",
                    );
                }
                if batch.is_transactional() != transactional {
                    return Outcome::error(
                        ErrorCode::InvalidRecord,
                        "transactional batches need a transactional.id in the request, \
                         and a request with one sends transactional batches only",
                    );
                }
                if batch.size() != bytes.len() {
                    return Outcome::error(
                        ErrorCode::InvalidRecord,
                        "an idempotent producer sends one batch per partition",
                    );
                }
                let first = batch.base_sequence();
                let last = first.wrapping_add(batch.last_offset_delta());
                Some((batch.producer_id(), batch.producer_epoch(), first, last))
            }
            _ => None,
        };
        if let Some((id, epoch, first, last)) = idempotent {
            match partition.producers.check(id, epoch, first, last) {
                SequenceVerdict::Append => {}
                SequenceVerdict::Duplicate(seen) => {
                    // The first copy's answer, once it is committed (a retry of an acks=all
                    // batch still waiting for the followers must wait too).
                    let records = i64::from(seen.last_sequence.wrapping_sub(seen.first_sequence));
                    let next_offset = Offset(seen.base_offset.0 + records + 1);
                    let (error, waits_for) = ack_outcome(partition, acks, next_offset);
                    return Outcome {
                        error,
                        message: None,
                        base_offset: seen.base_offset.0,
                        log_append_time_ms: -1,
                        log_start_offset: partition.log.log_start_offset().0,
                        waits_for,
                    };
                }
                SequenceVerdict::Refuse(code) => {
                    return Outcome::error(
                        code,
                        format!("producer {} epoch {} sequence {first}", id.0, epoch.0),
                    );
                }
            }
        }
        let segment_before = partition.log.active_segment_base();
        match partition.append_as_leader(&mut bytes, now) {
            Ok(info) => {
                let segment = partition.log.active_segment_base();
                if segment != segment_before {
                    let high_watermark = partition.log.high_watermark();
                    let log_start = partition.log.log_start_offset();
                    partition.producers.prune(high_watermark, log_start);
                    // The log rolled: snapshot the producer state as of the new segment (every
                    // batch before this one), so a restart need not replay older segments.
                    let payload = partition.producers.encode();
                    let written = partition.log.write_producer_snapshot(segment, &payload);
                    if let Err(err) = written {
                        if self.background_errors.len() < super::BACKGROUND_ERRORS_MAX {
                            let error = format!("producer snapshot of {topic}-{index}: {err}");
                            self.background_errors.push(error);
                        }
                    }
                }
                if let Some((id, epoch, first, last)) = idempotent {
                    let batch = BatchSequence {
                        first_sequence: first,
                        last_sequence: last,
                        base_offset: info.base_offset,
                    };
                    partition.producers.record(id, epoch, batch);
                    if transactional {
                        partition.producers.begin_transaction(id, info.base_offset);
                    }
                }
                let next_offset = Offset(info.last_offset.0 + 1);
                let (error, waits_for) = ack_outcome(partition, acks, next_offset);
                Outcome {
                    error,
                    message: None,
                    base_offset: info.base_offset.0,
                    log_append_time_ms: info.log_append_time.map_or(-1, |t| t.0),
                    log_start_offset: partition.log.log_start_offset().0,
                    waits_for,
                }
            }
            Err(err) => {
                let code = ErrorCode::from(&err);
                if matches!(err, LogError::Storage(_)) {
                    // The partition's directory failed; later requests report it again.
                    return Outcome::error(code, format!("storage failure: {err}"));
                }
                Outcome::error(code, err.to_string())
            }
        }
    }

    /// A new producer id from this broker's counter (persisted before it is handed out).
    pub(crate) fn allocate_producer_id(&mut self) -> Result<ProducerId, ErrorCode> {
        let id = ProducerId(self.next_producer_id);
        self.next_producer_id += 1;
        self.persist_meta()
            .map_err(|_| ErrorCode::KafkaStorageError)?;
        Ok(id)
    }

    /// Answers InitProducerId for idempotent (non-transactional) producers.
    pub(crate) fn init_idempotent_producer(
        &mut self,
        request: &InitProducerIdRequest,
    ) -> InitProducerIdResponse {
        let mut response = InitProducerIdResponse::default();
        let previous = (request.producer_id.0 >= 0).then_some((
            ProducerId(request.producer_id.0),
            ProducerEpoch(request.producer_epoch),
        ));
        let (id, epoch) = match previous {
            // KIP-360: a producer bumping its own epoch keeps its id.
            Some((id, epoch))
                if epoch.0 >= 0 && epoch.0 < i16::MAX - 1 && id.0 < self.next_producer_id =>
            {
                (id, ProducerEpoch(epoch.0 + 1))
            }
            _ => match self.allocate_producer_id() {
                Ok(id) => (id, ProducerEpoch(0)),
                Err(code) => {
                    response.error_code = code.code();
                    return response;
                }
            },
        };
        response.producer_id = kafka_protocol::messages::ProducerId(id.0);
        response.producer_epoch = epoch.0;
        response
    }
}

/// The answer for records ending before `next_offset`: its error code now, and — for acks=all
/// while the followers still copy them — the offset the answer waits for.
fn ack_outcome<S: crate::storage::Storage>(
    partition: &super::Partition<S>,
    acks: i16,
    next_offset: Offset,
) -> (ErrorCode, Option<Offset>) {
    if acks != -1 {
        return (ErrorCode::None, None);
    }
    match partition.acks_all_outcome(next_offset) {
        Some(Ok(())) => (ErrorCode::None, None),
        Some(Err(code)) => (code, None),
        None => (ErrorCode::None, Some(next_offset)),
    }
}

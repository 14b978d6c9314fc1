//! The transaction coordinator on this broker: which ids it answers for, the Kafka
//! transaction APIs mapped onto [`crate::txn::TransactionCoordinator`], the coordinator's
//! writes to `__transaction_state` and the markers it writes to the transactions'
//! partitions.
//!
//! A transactional id lives in one partition of `__transaction_state`; the leader of that
//! partition is the id's coordinator, exactly as for groups (`coordination.rs`): when this
//! broker starts to lead a partition (or leads it in a new epoch) it replays the partition
//! into the coordinator and finishes the transactions it finds prepared; when it stops, it
//! forgets the partition's ids, and their waiting requests get `NOT_COORDINATOR`.
//!
//! A transition is answered only once its record is committed (the in-sync replicas hold
//! it), like a group write. After a prepare, the markers are written to every partition of
//! the transaction by its leader (`txn_markers.rs`) and, once all are committed, the
//! completion is written.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ResponseKind,
};

use super::coordination::{replay_log, REPLAY_DECOMPRESSED_BYTES_MAX};
use super::{partition_dir, Broker, BrokerError, ParkedId, Reply, StorageProvider};
use crate::error::ErrorCode;
use crate::group::partition_for_group;
use crate::record::{decode_records, BatchBuilder, Record};
use crate::txn::{
    partition_for_transactional_id, Decision, TransactionCoordinator, TxnRecord, TxnState,
    TxnValue, EXPIRY_CHECK_INTERVAL_MS,
};
use crate::types::{LeaderEpoch, Millis, Offset, ProducerEpoch, ProducerId};

/// The transaction coordinator's internal topic.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// How long a coordinator write may wait for the in-sync replicas.
const TXN_WRITE_TIMEOUT_MS: i64 = 5_000;

/// The coordinator, its loaded partitions, its waiting writes and its markers in progress.
#[derive(Default)]
pub(crate) struct Transactions {
    pub(super) coordinator: TransactionCoordinator,
    /// The `__transaction_state` partitions whose ids are loaded: index → leader epoch.
    loaded: BTreeMap<i32, LeaderEpoch>,
    /// Coordinator writes waiting to be committed.
    writes: BTreeMap<ParkedId, TxnWrite>,
    next_write: u64,
    /// Markers being written: this coordinator's, and those peers asked of this leader.
    pub(super) markers: super::txn_markers::Markers,
    /// Answers ready for the driver.
    completed: Vec<(ParkedId, ResponseKind)>,
    /// When open transactions are next checked against their timeouts.
    next_expiry: Option<Millis>,
    /// Transactions whose markers are all written but whose completion could not be
    /// written (no ISR, leadership moving): tried again at this time.
    completions: BTreeSet<String>,
    next_completion: Option<Millis>,
}

/// A transition appended to `__transaction_state`, waiting to be committed.
struct TxnWrite {
    transactional_id: String,
    value: TxnValue,
    partition: i32,
    epoch: LeaderEpoch,
    next_offset: Offset,
    deadline: Millis,
    /// The client request it answers, if one waits.
    answer: Option<Waiting>,
}

/// A request answered once its transition is committed.
pub(super) enum Waiting {
    InitProducerId,
    AddPartitions {
        version: i16,
        response: AddPartitionsToTxnResponse,
    },
    AddOffsets,
    EndTxn,
}

impl<P: StorageProvider> Broker<P> {
    /// Why this broker cannot coordinate `transactional_id` now, if it cannot.
    pub(super) fn txn_coordinator_error(&self, transactional_id: &str) -> Option<ErrorCode> {
        let Some(topic) = self.topics.get(TRANSACTION_STATE_TOPIC) else {
            return Some(ErrorCode::NotCoordinator);
        };
        let count = topic.partitions.count();
        if count == 0 {
            return Some(ErrorCode::CoordinatorNotAvailable);
        }
        let index = partition_for_transactional_id(transactional_id, count);
        if self.transactions.loaded.contains_key(&index) {
            return None;
        }
        match topic.partitions.get(index) {
            Some(partition) if partition.is_leader() => Some(ErrorCode::CoordinatorLoadInProgress),
            _ => Some(ErrorCode::NotCoordinator),
        }
    }

    /// Asks the controller for `__transaction_state` if it does not exist yet.
    pub(crate) fn ensure_transaction_state_topic(&mut self) -> Result<(), ErrorCode> {
        if self.topics.contains(TRANSACTION_STATE_TOPIC) {
            return Ok(());
        }
        self.ask_for_topic(TRANSACTION_STATE_TOPIC);
        Err(ErrorCode::CoordinatorNotAvailable)
    }

    /// Loads the ids of the `__transaction_state` partitions this broker now leads and
    /// forgets those of the partitions it no longer leads (or leads in a newer epoch).
    pub(crate) fn sync_transaction_partitions(&mut self, now: Millis) -> Result<(), BrokerError> {
        let (count, led) = self.led_partitions(TRANSACTION_STATE_TOPIC);
        let stale: Vec<i32> = (self.transactions.loaded.iter())
            .filter(|(index, epoch)| led.get(index) != Some(epoch))
            .map(|(index, _)| *index)
            .collect();
        for index in stale {
            self.unload_transaction_partition(index, count);
        }
        for (index, epoch) in led {
            if self.transactions.loaded.contains_key(&index) {
                continue;
            }
            self.load_transaction_partition(index)?;
            self.transactions.loaded.insert(index, epoch);
            let jobs = self.transactions.coordinator.take_loaded_markers();
            for job in jobs {
                self.start_markers(job, epoch);
            }
        }
        if !self.transactions.loaded.is_empty() && self.transactions.next_expiry.is_none() {
            self.transactions.next_expiry = Some(Millis(now.0 + EXPIRY_CHECK_INTERVAL_MS));
        }
        Ok(())
    }

    /// Replays one `__transaction_state` partition, to its log end, into the coordinator.
    fn load_transaction_partition(&mut self, index: i32) -> Result<(), BrokerError> {
        let Some(partition) = self.topics.partition(TRANSACTION_STATE_TOPIC, index) else {
            return Ok(());
        };
        let mut loaded = Vec::new();
        let dir = partition_dir(TRANSACTION_STATE_TOPIC, index);
        replay_log(&partition.log, &dir, |batch| {
            if batch.is_control() {
                return;
            }
            let Ok(decoded) = decode_records(batch, REPLAY_DECOMPRESSED_BYTES_MAX) else {
                return;
            };
            for record in decoded {
                let key = record.record.key.as_deref();
                let offset = record.offset.0;
                if let Ok(record) = TxnRecord::decode(key, record.record.value.as_deref()) {
                    loaded.push((record, offset));
                }
            }
        })?;
        for (record, offset) in loaded {
            self.transactions.coordinator.load(record, offset);
        }
        self.transactions.coordinator.check_invariants();
        Ok(())
    }

    /// Forgets the ids of a partition this broker no longer leads: their waiting requests
    /// are answered `NOT_COORDINATOR` and their markers are left to the new coordinator.
    fn unload_transaction_partition(&mut self, index: i32, count: i32) {
        self.transactions.loaded.remove(&index);
        let in_partition =
            |id: &str| count > 0 && partition_for_transactional_id(id, count) == index;
        self.transactions.coordinator.unload(in_partition);
        self.transactions.markers.forget(in_partition);
        let writes = std::mem::take(&mut self.transactions.writes);
        for (id, write) in writes {
            if write.partition == index {
                self.answer_write(id, write.answer, Err(ErrorCode::NotCoordinator), None);
            } else {
                self.transactions.writes.insert(id, write);
            }
        }
    }

    /// Appends a transition's record to the id's partition, as its leader.
    fn append_transition(
        &mut self,
        now: Millis,
        transactional_id: &str,
        value: &TxnValue,
    ) -> Result<(i32, LeaderEpoch, Offset), ErrorCode> {
        if !self.member.caught_up {
            // See `Member::caught_up`: a stale image may name this broker leader.
            return Err(ErrorCode::NotCoordinator);
        }
        let topic = self
            .topics
            .get_mut(TRANSACTION_STATE_TOPIC)
            .ok_or(ErrorCode::NotCoordinator)?;
        let index = partition_for_transactional_id(transactional_id, topic.partitions.count());
        let partition = topic
            .partitions
            .get_mut(index)
            .filter(|p| p.is_leader())
            .ok_or(ErrorCode::NotCoordinator)?;
        partition
            .check_acks_all()
            .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
        let record = TxnRecord {
            transactional_id: transactional_id.to_string(),
            value: Some(value.clone()),
        };
        let mut builder = BatchBuilder::new(Offset(0));
        builder.push(&Record {
            timestamp: now.0,
            key: Some(record.encode_key()),
            value: record.encode_value(),
            headers: Vec::new(),
        });
        let mut bytes = builder.build();
        partition
            .append_as_leader(&mut bytes, now)
            .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
        Ok((
            index,
            partition.leader_epoch(),
            partition.log.log_end_offset(),
        ))
    }

    /// Writes a transition and waits for it; `answer` is answered once it is committed (or
    /// at once if it cannot be written).
    pub(super) fn write_transition(
        &mut self,
        now: Millis,
        transactional_id: &str,
        value: TxnValue,
        answer: Option<Waiting>,
    ) -> Option<ParkedId> {
        self.transactions.next_write += 1;
        let id = ParkedId::TxnWrite(self.transactions.next_write);
        match self.append_transition(now, transactional_id, &value) {
            Ok((partition, epoch, next_offset)) => {
                let write = TxnWrite {
                    transactional_id: transactional_id.to_string(),
                    value,
                    partition,
                    epoch,
                    next_offset,
                    deadline: Millis(now.0 + TXN_WRITE_TIMEOUT_MS),
                    answer,
                };
                self.transactions.writes.insert(id, write);
                self.complete_txn_writes(now);
            }
            Err(code) => {
                let coordinator = &mut self.transactions.coordinator;
                coordinator.complete_write(transactional_id, &value, false, -1);
                self.retry_if_completion(now, transactional_id, &value);
                self.answer_write(id, answer, Err(code), None);
            }
        }
        Some(id)
    }

    /// A completion that was not written is written again later: nothing else would end
    /// its prepared transaction (its markers are written already).
    fn retry_if_completion(&mut self, now: Millis, transactional_id: &str, value: &TxnValue) {
        if matches!(
            value.state,
            TxnState::CompleteCommit | TxnState::CompleteAbort
        ) {
            let transactions = &mut self.transactions;
            transactions
                .completions
                .insert(transactional_id.to_string());
            let at = Millis(now.0 + super::txn_markers::MARKER_RETRY_MS);
            transactions.next_completion.get_or_insert(at);
        }
    }

    /// Writes again the completions that could not be written.
    fn retry_completions(&mut self, now: Millis) {
        if self.transactions.next_completion.is_none_or(|at| at > now) {
            return;
        }
        self.transactions.next_completion = None;
        for id in std::mem::take(&mut self.transactions.completions) {
            if let Some(value) = self.transactions.coordinator.markers_written(now, &id) {
                self.write_transition(now, &id, value, None);
            }
        }
    }

    /// Completes the coordinator writes that are committed, failed or out of time; starts
    /// the markers a committed prepare calls for.
    fn complete_txn_writes(&mut self, now: Millis) {
        if self.transactions.writes.is_empty() {
            return;
        }
        let writes = std::mem::take(&mut self.transactions.writes);
        let mut finished = Vec::new();
        for (id, write) in writes {
            match self.txn_write_outcome(now, &write) {
                None => {
                    self.transactions.writes.insert(id, write);
                }
                Some(outcome) => finished.push((id, write, outcome)),
            }
        }
        let mut markers_started = false;
        for (id, write, outcome) in finished {
            let coordinator = &mut self.transactions.coordinator;
            // The record is the last of its batch: the offset before the one waited for.
            let at = write.next_offset.0 - 1;
            let job = coordinator.complete_write(
                &write.transactional_id,
                &write.value,
                outcome.is_ok(),
                at,
            );
            coordinator.check_invariants();
            if outcome.is_err() {
                self.retry_if_completion(now, &write.transactional_id, &write.value);
            }
            let value = outcome.is_ok().then_some(&write.value);
            let (producer_id, producer_epoch) = value
                .map_or((ProducerId(-1), ProducerEpoch(-1)), |v| {
                    (v.producer_id, v.producer_epoch)
                });
            self.answer_write(
                id,
                write.answer,
                outcome,
                Some((producer_id, producer_epoch)),
            );
            if let Some(job) = job {
                self.start_markers(job, write.epoch);
                markers_started = true;
            }
        }
        if markers_started {
            self.advance_markers(now);
        }
    }

    /// `None` while the write waits; its result once committed or failed.
    fn txn_write_outcome(&self, now: Millis, write: &TxnWrite) -> Option<Result<(), ErrorCode>> {
        let partition = match self
            .topics
            .partition(TRANSACTION_STATE_TOPIC, write.partition)
        {
            Some(p) if p.is_leader() && p.leader_epoch() == write.epoch => p,
            _ => return Some(Err(ErrorCode::NotCoordinator)),
        };
        match partition.acks_all_outcome(write.next_offset) {
            Some(Ok(())) => Some(Ok(())),
            Some(Err(_)) => Some(Err(ErrorCode::CoordinatorNotAvailable)),
            None if write.deadline <= now => Some(Err(ErrorCode::CoordinatorNotAvailable)),
            None => None,
        }
    }

    /// Answers the request waiting on a write (if one does).
    fn answer_write(
        &mut self,
        id: ParkedId,
        answer: Option<Waiting>,
        outcome: Result<(), ErrorCode>,
        producer: Option<(ProducerId, ProducerEpoch)>,
    ) {
        let Some(answer) = answer else { return };
        let code = outcome.err().unwrap_or(ErrorCode::None);
        let response = match answer {
            Waiting::InitProducerId => {
                let (producer_id, epoch) = producer
                    .filter(|_| code == ErrorCode::None)
                    .unwrap_or((ProducerId(-1), ProducerEpoch(-1)));
                let mut response = InitProducerIdResponse::default();
                response.error_code = code.code();
                response.producer_id = kafka_protocol::messages::ProducerId(producer_id.0);
                response.producer_epoch = epoch.0;
                ResponseKind::InitProducerId(response)
            }
            Waiting::AddPartitions {
                version,
                mut response,
            } => {
                if code != ErrorCode::None {
                    set_partition_errors(&mut response, version_code(code, version));
                }
                ResponseKind::AddPartitionsToTxn(response)
            }
            Waiting::AddOffsets => {
                let mut response = AddOffsetsToTxnResponse::default();
                response.error_code = code.code();
                ResponseKind::AddOffsetsToTxn(response)
            }
            Waiting::EndTxn => {
                let mut response = EndTxnResponse::default();
                response.error_code = code.code();
                ResponseKind::EndTxn(response)
            }
        };
        self.transactions.completed.push((id, response));
    }

    /// The answer of a request waiting under `id`, if it is done already, else parked.
    fn txn_reply(&mut self, id: Option<ParkedId>) -> Reply {
        let Some(id) = id else { return Reply::None };
        let completed = &mut self.transactions.completed;
        match completed.iter().position(|(done, _)| *done == id) {
            Some(position) => Reply::Response(Box::new(completed.remove(position).1)),
            None => Reply::Parked(id),
        }
    }

    /// Drains the transaction answers completed since the last call.
    pub(crate) fn poll_completed_transactions(&mut self) -> Vec<(ParkedId, ResponseKind)> {
        std::mem::take(&mut self.transactions.completed)
    }

    /// Runs the coordinator's work that follows appends, role changes and time: committed
    /// writes, markers, and the abort of transactions past their timeout.
    pub(crate) fn advance_transactions(&mut self, now: Millis) {
        self.complete_txn_writes(now);
        self.advance_markers(now);
        self.retry_completions(now);
        if self.transactions.next_expiry.is_some_and(|at| at <= now) {
            self.transactions.next_expiry = (!self.transactions.loaded.is_empty())
                .then_some(Millis(now.0 + EXPIRY_CHECK_INTERVAL_MS));
            for (id, abort) in self.transactions.coordinator.expire(now) {
                self.write_transition(now, &id, abort, None);
            }
        }
    }

    /// The earliest time the coordinator has work to do.
    pub(crate) fn next_transaction_deadline(&self) -> Option<Millis> {
        let writes = self.transactions.writes.values().map(|w| w.deadline).min();
        let markers = self.transactions.markers.next_deadline();
        let completions = self.transactions.next_completion;
        [writes, self.transactions.next_expiry, markers, completions]
            .into_iter()
            .flatten()
            .min()
    }

    /// InitProducerId: a transactional id goes to its coordinator; any other is answered
    /// with an idempotent producer id.
    pub(crate) fn handle_init_producer_id(
        &mut self,
        now: Millis,
        request: InitProducerIdRequest,
    ) -> Reply {
        let Some(transactional_id) = request.transactional_id.as_ref().map(|t| t.0.to_string())
        else {
            let response = self.init_idempotent_producer(&request);
            return Reply::Response(Box::new(ResponseKind::InitProducerId(response)));
        };
        let refuse = |code: ErrorCode| {
            let mut response = InitProducerIdResponse::default();
            response.error_code = code.code();
            response.producer_id = kafka_protocol::messages::ProducerId(-1);
            response.producer_epoch = -1;
            Reply::Response(Box::new(ResponseKind::InitProducerId(response)))
        };
        if transactional_id.is_empty() {
            return refuse(ErrorCode::InvalidRequest);
        }
        if let Err(code) = self.ensure_transaction_state_topic() {
            return refuse(code);
        }
        if let Some(code) = self.txn_coordinator_error(&transactional_id) {
            return refuse(code);
        }
        let expected = (request.producer_id.0 >= 0).then_some((
            ProducerId(request.producer_id.0),
            ProducerEpoch(request.producer_epoch),
        ));
        let timeout_ms = request.transaction_timeout_ms;
        let decision = self.decide_init(now, &transactional_id, timeout_ms, expected);
        match decision {
            Decision::Answer(Ok(())) => refuse(ErrorCode::UnknownServerError),
            Decision::Answer(Err(code)) => refuse(code),
            Decision::Write(value) => {
                let id = self.write_transition(
                    now,
                    &transactional_id,
                    value,
                    Some(Waiting::InitProducerId),
                );
                self.txn_reply(id)
            }
            Decision::WriteAndAnswer(value, code) => {
                self.write_transition(now, &transactional_id, value, None);
                refuse(code)
            }
        }
    }

    /// The coordinator's decision on an InitProducerId, with new producer ids from this
    /// broker's counter.
    fn decide_init(
        &mut self,
        now: Millis,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(ProducerId, ProducerEpoch)>,
    ) -> Decision {
        let mut coordinator = std::mem::take(&mut self.transactions.coordinator);
        let mut allocate = || self.allocate_producer_id();
        let decision = coordinator.init_producer_id(
            now,
            transactional_id,
            timeout_ms,
            expected,
            &mut allocate,
        );
        self.transactions.coordinator = coordinator;
        decision
    }

    /// AddPartitionsToTxn (v0–3: one transaction per request, from its producer).
    pub(crate) fn handle_add_partitions_to_txn(
        &mut self,
        now: Millis,
        request: AddPartitionsToTxnRequest,
        version: i16,
    ) -> Reply {
        let transactional_id = request.v3_and_below_transactional_id.0.to_string();
        let mut response = AddPartitionsToTxnResponse::default();
        let mut wanted = BTreeSet::new();
        for topic in &request.v3_and_below_topics {
            let mut result = AddPartitionsToTxnTopicResult::default();
            result.name = topic.name.clone();
            for &index in &topic.partitions {
                let mut partition = AddPartitionsToTxnPartitionResult::default();
                partition.partition_index = index;
                result.results_by_partition.push(partition);
                wanted.insert((topic.name.0.to_string(), index));
            }
            response.results_by_topic_v3_and_below.push(result);
        }
        let refusal = self.txn_coordinator_error(&transactional_id).or_else(|| {
            // Kafka refuses the whole request when a partition is unknown, naming which.
            let unknown = wanted.iter().any(|(topic, index)| {
                !self
                    .topics
                    .get(topic)
                    .is_some_and(|t| *index >= 0 && *index < t.partitions.count())
                    || is_internal_transaction_topic(topic)
            });
            unknown.then_some(ErrorCode::UnknownTopicOrPartition)
        });
        if let Some(code) = refusal {
            self.refuse_unknown_partitions(&mut response, code, version);
            return Reply::Response(Box::new(ResponseKind::AddPartitionsToTxn(response)));
        }
        let producer_id = ProducerId(request.v3_and_below_producer_id.0);
        let epoch = ProducerEpoch(request.v3_and_below_producer_epoch);
        let coordinator = &mut self.transactions.coordinator;
        match coordinator.add_partitions(now, &transactional_id, producer_id, epoch, &wanted) {
            Decision::Answer(Ok(())) => {
                Reply::Response(Box::new(ResponseKind::AddPartitionsToTxn(response)))
            }
            Decision::Answer(Err(code)) | Decision::WriteAndAnswer(_, code) => {
                set_partition_errors(&mut response, version_code(code, version));
                Reply::Response(Box::new(ResponseKind::AddPartitionsToTxn(response)))
            }
            Decision::Write(value) => {
                let waiting = Waiting::AddPartitions { version, response };
                let id = self.write_transition(now, &transactional_id, value, Some(waiting));
                self.txn_reply(id)
            }
        }
    }

    /// Marks each partition of a refused AddPartitionsToTxn: the unknown ones with `code`,
    /// the others `OPERATION_NOT_ATTEMPTED` (a coordinator error goes to all of them).
    fn refuse_unknown_partitions(
        &self,
        response: &mut AddPartitionsToTxnResponse,
        code: ErrorCode,
        version: i16,
    ) {
        for topic in &mut response.results_by_topic_v3_and_below {
            let name = topic.name.0.to_string();
            for partition in &mut topic.results_by_partition {
                let known = self.topics.get(&name).is_some_and(|t| {
                    partition.partition_index >= 0
                        && partition.partition_index < t.partitions.count()
                }) && !is_internal_transaction_topic(&name);
                partition.partition_error_code = match code {
                    ErrorCode::UnknownTopicOrPartition if known => {
                        ErrorCode::OperationNotAttempted.code()
                    }
                    _ => version_code(code, version).code(),
                };
            }
        }
    }

    /// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction.
    pub(crate) fn handle_add_offsets_to_txn(
        &mut self,
        now: Millis,
        request: AddOffsetsToTxnRequest,
        version: i16,
    ) -> Reply {
        let transactional_id = request.transactional_id.0.to_string();
        let refuse = |code: ErrorCode| {
            let mut response = AddOffsetsToTxnResponse::default();
            response.error_code = version_code(code, version).code();
            Reply::Response(Box::new(ResponseKind::AddOffsetsToTxn(response)))
        };
        if let Some(code) = self.txn_coordinator_error(&transactional_id) {
            return refuse(code);
        }
        if let Err(code) = self.ensure_offsets_topic(now) {
            return refuse(code);
        }
        let count = self
            .topics
            .get(super::OFFSETS_TOPIC)
            .map_or(0, |t| t.partitions.count());
        if count == 0 {
            return refuse(ErrorCode::CoordinatorNotAvailable);
        }
        let group = request.group_id.0.as_str();
        let index = partition_for_group(group, count);
        let wanted = BTreeSet::from([(super::OFFSETS_TOPIC.to_string(), index)]);
        let producer_id = ProducerId(request.producer_id.0);
        let epoch = ProducerEpoch(request.producer_epoch);
        let coordinator = &mut self.transactions.coordinator;
        match coordinator.add_partitions(now, &transactional_id, producer_id, epoch, &wanted) {
            Decision::Answer(Ok(())) => refuse(ErrorCode::None),
            Decision::Answer(Err(code)) | Decision::WriteAndAnswer(_, code) => refuse(code),
            Decision::Write(value) => {
                let id =
                    self.write_transition(now, &transactional_id, value, Some(Waiting::AddOffsets));
                self.txn_reply(id)
            }
        }
    }

    /// EndTxn: commit or abort the producer's transaction; answered once the prepare is
    /// written (the markers follow).
    pub(crate) fn handle_end_txn(
        &mut self,
        now: Millis,
        request: EndTxnRequest,
        version: i16,
    ) -> Reply {
        let transactional_id = request.transactional_id.0.to_string();
        let refuse = |code: ErrorCode| {
            let mut response = EndTxnResponse::default();
            response.error_code = version_code(code, version).code();
            Reply::Response(Box::new(ResponseKind::EndTxn(response)))
        };
        if let Some(code) = self.txn_coordinator_error(&transactional_id) {
            return refuse(code);
        }
        let producer_id = ProducerId(request.producer_id.0);
        let epoch = ProducerEpoch(request.producer_epoch);
        let commit = request.committed;
        let coordinator = &mut self.transactions.coordinator;
        match coordinator.end_transaction(now, &transactional_id, producer_id, epoch, commit) {
            Decision::Answer(answer) => refuse(answer.err().unwrap_or(ErrorCode::None)),
            Decision::WriteAndAnswer(_, code) => refuse(code),
            Decision::Write(value) => {
                let id =
                    self.write_transition(now, &transactional_id, value, Some(Waiting::EndTxn));
                self.txn_reply(id)
            }
        }
    }
}

/// Whether a topic is the transaction coordinator's own (clients cannot add it to a
/// transaction).
fn is_internal_transaction_topic(topic: &str) -> bool {
    topic == TRANSACTION_STATE_TOPIC
}

/// `PRODUCER_FENCED` as versions before KIP-588 know it: `INVALID_PRODUCER_EPOCH`.
fn version_code(code: ErrorCode, version: i16) -> ErrorCode {
    match code {
        ErrorCode::ProducerFenced if version < 2 => ErrorCode::InvalidProducerEpoch,
        other => other,
    }
}

/// Gives every partition of an AddPartitionsToTxn answer the same error.
fn set_partition_errors(response: &mut AddPartitionsToTxnResponse, code: ErrorCode) {
    for topic in &mut response.results_by_topic_v3_and_below {
        for partition in &mut topic.results_by_partition {
            partition.partition_error_code = code.code();
        }
    }
}

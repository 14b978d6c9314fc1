//! Which groups this broker coordinates, and the group writes waiting for the in-sync
//! replicas of `__consumer_offsets`.
//!
//! A group lives in one partition of `__consumer_offsets` (`partition_for_group`), and the
//! broker that leads that partition is its coordinator — the leader the controller elected
//! (on a one-node cluster, every partition's). When this broker starts to lead a
//! partition (or leads it in a new leader epoch) it replays the partition's log into the
//! [`crate::group::GroupCoordinator`] before it answers for the partition's groups; when it
//! stops, it forgets them and answers their parked requests `NOT_COORDINATOR`, so clients ask
//! FindCoordinator again and reach the new leader.
//!
//! Writes wait like an acks=all produce: an OffsetCommit is applied to the coordinator and
//! answered, and a SyncGroup that hands out a new generation is answered, only once the
//! records are committed (the high watermark passed them). A commit answered is therefore
//! held by every in-sync replica, and whichever of them leads next loads it: committed
//! offsets never go back across a coordinator failover. With one replica the high watermark
//! moves with the append, so the answer comes at once.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::{
    ApiKey, JoinGroupResponse, OffsetCommitResponse, ResponseKind, SyncGroupResponse,
    TxnOffsetCommitResponse,
};

use super::groups::{fail_accepted, sync_response, OFFSETS_TOPIC};
use super::{partition_dir, Broker, BrokerError, ParkedId, Reply, StorageProvider};
use crate::error::ErrorCode;
use crate::group::{partition_for_group, GroupRecord, OffsetValue, SyncResponse};
use crate::planted::{is_planted, PlantedBug};
use crate::record::{decode_records, BatchBuilder, Batches, ControlMarker, ControlType, Record};
use crate::types::{LeaderEpoch, Millis, Offset, ProducerEpoch, ProducerId};

/// The most bytes of one `__consumer_offsets` read while replaying it.
const REPLAY_READ_BYTES_MAX: u64 = 1 << 20;
/// `offsets.commit.timeout.ms`: how long a group write may wait for the in-sync replicas.
const OFFSETS_COMMIT_TIMEOUT_MS: i64 = 5_000;

/// The coordinated partitions and the writes waiting for their replicas.
#[derive(Default)]
pub(crate) struct Coordination {
    /// The `__consumer_offsets` partitions whose groups are loaded: index → the leader epoch
    /// they were loaded in.
    loaded: BTreeMap<i32, LeaderEpoch>,
    /// Group writes waiting to be committed, in the order they were appended.
    writes: BTreeMap<ParkedId, PendingWrite>,
    next_write: u64,
}

/// Reads a coordinator's partition from its log start to its log end (the leader's log is
/// the partition's truth), handing each readable batch to `each` in order.
pub(super) fn replay_log<S: crate::storage::Storage>(
    log: &crate::log::PartitionLog<S>,
    dir: &str,
    mut each: impl FnMut(&crate::record::Batch<'_>),
) -> Result<(), BrokerError> {
    let failed = |source| BrokerError::Log {
        partition: dir.to_string(),
        source,
    };
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    while offset < end {
        let Some(slice) = log
            .read(offset, REPLAY_READ_BYTES_MAX, end)
            .map_err(failed)?
        else {
            break;
        };
        assert!(slice.next_offset > offset, "replay makes progress");
        offset = slice.next_offset;
        let bytes = log.read_bytes(&slice).map_err(failed)?;
        for batch in Batches::new(&bytes) {
            let Ok(batch) = batch else { break };
            each(&batch);
        }
    }
    Ok(())
}

/// The most bytes a stored batch may decompress to while replaying.
pub(super) const REPLAY_DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// What a replay of `__consumer_offsets` finds, in log order.
enum Replayed {
    /// A group or offset record.
    Record(GroupRecord),
    /// An offset a transactional producer committed: (group, (topic, partition, offset)).
    TxnOffset(ProducerId, String, (String, i32, OffsetValue)),
    /// A producer's transaction ended (committed or not).
    TxnEnd(ProducerId, bool),
}

/// The transactional attribute bit of a batch.
const ATTR_TRANSACTIONAL: i16 = 0x10;

/// Where a group write's records went: (partition, leader epoch of the append, offset after
/// the records).
pub(crate) type WriteWaits = Vec<(i32, LeaderEpoch, Offset)>;

/// Records appended to `__consumer_offsets` and what to do once they are committed.
struct PendingWrite {
    waits: WriteWaits,
    then: AfterWrite,
    deadline: Millis,
}

/// What a committed (or failed) group write completes.
enum AfterWrite {
    /// An OffsetCommit: its offsets are applied to the coordinator and it is answered.
    Commit {
        group: String,
        accepted: Vec<(String, i32, OffsetValue)>,
        response: OffsetCommitResponse,
    },
    /// A TxnOffsetCommit: once committed, its offsets wait for the transaction's end.
    TxnCommit {
        group: String,
        producer_id: ProducerId,
        accepted: Vec<(String, i32, OffsetValue)>,
        response: TxnOffsetCommitResponse,
    },
    /// SyncGroup answers that hand out the generation the records store; `groups` rebalance
    /// if the records are not committed.
    Syncs {
        answers: Vec<(ParkedId, i16, SyncResponse)>,
        groups: BTreeSet<String>,
    },
}

impl<P: StorageProvider> Broker<P> {
    /// The leader epoch in which this broker loaded `group`'s partition of
    /// `__consumer_offsets` — so coordinates the group — if it does.
    pub fn coordinator_epoch(&self, group: &str) -> Option<LeaderEpoch> {
        let count = self.topics.get(OFFSETS_TOPIC)?.partitions.count();
        let index = partition_for_group(group, count.max(1));
        self.groups.coordination.loaded.get(&index).copied()
    }

    /// Why this broker cannot answer for `group` now, if it cannot: `NOT_COORDINATOR` when
    /// another broker leads its partition, `COORDINATOR_LOAD_IN_PROGRESS` while it is
    /// loading. Without `__consumer_offsets` no group exists anywhere, so every broker may
    /// answer (the group is unknown).
    pub(crate) fn coordinator_error(&self, group: &str) -> Option<ErrorCode> {
        let topic = self.topics.get(OFFSETS_TOPIC)?;
        let count = topic.partitions.count();
        if count == 0 {
            return Some(ErrorCode::CoordinatorNotAvailable);
        }
        let index = partition_for_group(group, count);
        if self.groups.coordination.loaded.contains_key(&index) {
            return None;
        }
        match topic.partitions.get(index) {
            Some(partition) if partition.is_leader() => Some(ErrorCode::CoordinatorLoadInProgress),
            _ => Some(ErrorCode::NotCoordinator),
        }
    }

    /// An internal topic's partition count and the partitions of it this broker leads, with
    /// their leader epochs (what a coordinator loads; 0 and none without the topic).
    pub(super) fn led_partitions(&self, topic: &str) -> (i32, BTreeMap<i32, LeaderEpoch>) {
        let Some(topic) = self.topics.get(topic) else {
            return (0, BTreeMap::new());
        };
        let led = (topic.partitions.held())
            .filter(|(_, p)| p.is_leader())
            .map(|(index, p)| (index, p.leader_epoch()))
            .collect();
        (topic.partitions.count(), led)
    }

    /// Loads the groups of the `__consumer_offsets` partitions this broker now leads and
    /// forgets those of the partitions it no longer leads (or leads in a newer epoch: they
    /// are loaded again from the log, which the epoch change may have truncated). Runs after
    /// every change of partition roles.
    pub(crate) fn sync_coordinated_partitions(&mut self, now: Millis) -> Result<(), BrokerError> {
        let (count, led) = self.led_partitions(OFFSETS_TOPIC);
        let loaded = &self.groups.coordination.loaded;
        let stale: Vec<i32> = loaded
            .iter()
            .filter(|(index, epoch)| led.get(index) != Some(epoch))
            .map(|(index, _)| *index)
            .collect();
        for index in stale {
            self.unload_partition(index, count);
        }
        for (index, epoch) in led {
            if self.groups.coordination.loaded.contains_key(&index) {
                continue;
            }
            self.load_partition(now, index)?;
            self.groups.coordination.loaded.insert(index, epoch);
        }
        self.check_coordination();
        Ok(())
    }

    /// Replays one `__consumer_offsets` partition, to its log end, into the coordinator.
    /// The leader's log is the partition's truth: records past the high watermark are ones
    /// its followers will copy, or ones a later leader change truncates — and then this
    /// broker unloads the partition anyway.
    fn load_partition(&mut self, now: Millis, index: i32) -> Result<(), BrokerError> {
        if is_planted(PlantedBug::CoordinatorSkipsLoad) {
            return Ok(());
        }
        let count = self
            .topics
            .get(OFFSETS_TOPIC)
            .map_or(1, |t| t.partitions.count().max(1));
        let Some(partition) = self.topics.partition(OFFSETS_TOPIC, index) else {
            return Ok(());
        };
        let mut loaded = Vec::new();
        let dir = partition_dir(OFFSETS_TOPIC, index);
        replay_log(&partition.log, &dir, |batch| {
            let producer = batch.producer_id();
            if batch.is_control() {
                // A transaction's end: its offsets, read before, stand or go.
                if let Ok(marker) = ControlMarker::decode(batch) {
                    let commit = marker.control_type == ControlType::Commit;
                    loaded.push(Replayed::TxnEnd(producer, commit));
                }
                return;
            }
            let Ok(decoded) = decode_records(batch, REPLAY_DECOMPRESSED_BYTES_MAX) else {
                return;
            };
            let transactional = batch.is_transactional();
            for record in decoded {
                let key = record.record.key.as_deref();
                // A record Brook cannot read (a future format) is skipped, as Kafka skips
                // unknown record types.
                match GroupRecord::decode(key, record.record.value.as_deref()) {
                    Ok(GroupRecord::Offset {
                        group,
                        topic,
                        partition,
                        value: Some(value),
                    }) if transactional => {
                        let offset = (topic, partition, value);
                        loaded.push(Replayed::TxnOffset(producer, group, offset));
                    }
                    Ok(record) => loaded.push(Replayed::Record(record)),
                    Err(_) => {}
                }
            }
        })?;
        let coordinator = &mut self.groups.coordinator;
        for replayed in loaded {
            match replayed {
                Replayed::Record(record) => coordinator.load(record, now),
                Replayed::TxnOffset(producer, group, offset) => {
                    coordinator.stage_txn_offsets(producer, &group, vec![offset]);
                }
                Replayed::TxnEnd(producer, commit) => {
                    let here = |group: &str| partition_for_group(group, count) == index;
                    coordinator.end_txn_offsets(now, producer, commit, here);
                }
            }
        }
        self.groups.coordinator.check_invariants();
        Ok(())
    }

    /// Forgets the groups of a partition this broker no longer leads: their parked requests
    /// and the writes waiting on the partition are answered `NOT_COORDINATOR`.
    fn unload_partition(&mut self, index: i32, count: i32) {
        self.groups.coordination.loaded.remove(&index);
        let parked = self
            .groups
            .coordinator
            .unload(|group| count > 0 && partition_for_group(group, count) == index);
        for park in parked {
            let id = ParkedId::Group(park);
            let Some((api, _)) = self.groups.parked.remove(&id) else {
                continue;
            };
            let response = if api == ApiKey::JoinGroup {
                let mut response = JoinGroupResponse::default();
                response.error_code = ErrorCode::NotCoordinator.code();
                ResponseKind::JoinGroup(response)
            } else {
                let mut response = SyncGroupResponse::default();
                response.error_code = ErrorCode::NotCoordinator.code();
                ResponseKind::SyncGroup(response)
            };
            self.groups.completed.push((id, response));
        }
        self.complete_group_writes(Millis(i64::MIN));
    }

    /// Appends group records to their `__consumer_offsets` partitions, one batch per
    /// partition, as the leader of each; returns where they went, to wait on.
    pub(crate) fn write_group_records(
        &mut self,
        now: Millis,
        records: &[GroupRecord],
    ) -> Result<WriteWaits, ErrorCode> {
        self.write_group_batches(now, records, None)
    }

    /// [`Broker::write_group_records`], as one transactional producer's batches when `txn`
    /// names it (TxnOffsetCommit): the partition's producer state fences an older epoch,
    /// and a replay holds the offsets until the transaction's marker.
    pub(crate) fn write_group_batches(
        &mut self,
        now: Millis,
        records: &[GroupRecord],
        txn: Option<(ProducerId, ProducerEpoch)>,
    ) -> Result<WriteWaits, ErrorCode> {
        self.ensure_offsets_topic(now)?;
        let topic = self
            .topics
            .get_mut(OFFSETS_TOPIC)
            .ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let count = topic.partitions.count();
        let mut batches: BTreeMap<i32, BatchBuilder> = BTreeMap::new();
        for record in records {
            let partition = partition_for_group(record.group(), count);
            batches
                .entry(partition)
                .or_insert_with(|| match txn {
                    None => BatchBuilder::new(Offset(0)),
                    Some((id, epoch)) => BatchBuilder::new(Offset(0))
                        .producer(id, epoch, -1)
                        .attributes(ATTR_TRANSACTIONAL),
                })
                .push(&Record {
                    timestamp: now.0,
                    key: Some(record.encode_key()),
                    value: record.encode_value(),
                    headers: Vec::new(),
                });
        }
        let loaded = &self.groups.coordination.loaded;
        let mut waits = Vec::new();
        for (index, builder) in batches {
            let partition = topic
                .partitions
                .get_mut(index)
                .filter(|p| p.is_leader() && loaded.contains_key(&index))
                .ok_or(ErrorCode::NotCoordinator)?;
            partition
                .check_acks_all()
                .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
            if let Some((id, epoch)) = txn {
                partition.producers.check_epoch(id, epoch)?;
            }
            let mut bytes = builder.build();
            let info = partition
                .append_as_leader(&mut bytes, now)
                .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
            if let Some((id, _)) = txn {
                partition.producers.begin_transaction(id, info.base_offset);
            }
            waits.push((
                index,
                partition.leader_epoch(),
                partition.log.log_end_offset(),
            ));
        }
        Ok(waits)
    }

    /// A new id for a group request answered once its write is committed.
    fn next_write_id(&mut self) -> ParkedId {
        let coordination = &mut self.groups.coordination;
        coordination.next_write += 1;
        ParkedId::GroupWrite(coordination.next_write)
    }

    /// Waits for an OffsetCommit's records: once committed, `accepted` is applied and
    /// `response` answered (else its accepted partitions get the write's error). Returns the
    /// id it is parked under; it may be answered already (see [`Broker::reply_when_done`]).
    pub(crate) fn await_commit(
        &mut self,
        now: Millis,
        waits: WriteWaits,
        group: String,
        accepted: Vec<(String, i32, OffsetValue)>,
        response: OffsetCommitResponse,
    ) -> ParkedId {
        let then = AfterWrite::Commit {
            group,
            accepted,
            response,
        };
        self.await_write(now, waits, then)
    }

    /// Waits for a TxnOffsetCommit's records: once committed, `accepted` is held for the
    /// producer's transaction and `response` answered.
    pub(crate) fn await_txn_commit(
        &mut self,
        now: Millis,
        waits: WriteWaits,
        group: String,
        producer_id: ProducerId,
        accepted: Vec<(String, i32, OffsetValue)>,
        response: TxnOffsetCommitResponse,
    ) -> ParkedId {
        let then = AfterWrite::TxnCommit {
            group,
            producer_id,
            accepted,
            response,
        };
        self.await_write(now, waits, then)
    }

    /// Holds SyncGroup answers until the records storing their generation are committed.
    pub(crate) fn await_syncs(
        &mut self,
        now: Millis,
        waits: WriteWaits,
        answers: Vec<(ParkedId, i16, SyncResponse)>,
        groups: BTreeSet<String>,
    ) {
        self.await_write(now, waits, AfterWrite::Syncs { answers, groups });
    }

    /// A id for a SyncGroup answered now by the coordinator, held with the others if its
    /// generation is being written.
    pub(crate) fn hold_sync_answer(&mut self) -> ParkedId {
        self.next_write_id()
    }

    /// Holds a SyncGroup answer of `group` with the write storing the group's generation,
    /// if that write still waits (the answer hands out that generation); gives the answer
    /// back when none does.
    pub(crate) fn hold_with_stored_generation(
        &mut self,
        group: &str,
        id: ParkedId,
        version: i16,
        answer: SyncResponse,
    ) -> Option<SyncResponse> {
        let writes = self.groups.coordination.writes.values_mut();
        let pending = writes.rev().find_map(|write| match &mut write.then {
            AfterWrite::Syncs { answers, groups } if groups.contains(group) => Some(answers),
            _ => None,
        });
        match pending {
            Some(answers) => {
                answers.push((id, version, answer));
                None
            }
            None => Some(answer),
        }
    }

    fn await_write(&mut self, now: Millis, waits: WriteWaits, then: AfterWrite) -> ParkedId {
        let id = self.next_write_id();
        let write = PendingWrite {
            waits,
            then,
            deadline: Millis(now.0 + OFFSETS_COMMIT_TIMEOUT_MS),
        };
        self.groups.coordination.writes.insert(id, write);
        self.complete_group_writes(now);
        id
    }

    /// The answer of a group request waiting under `id`, if it is done already (taken out of
    /// the completed ones), else `Reply::Parked(id)`.
    pub(crate) fn reply_when_done(&mut self, id: ParkedId) -> Reply {
        let completed = &mut self.groups.completed;
        match completed.iter().position(|(done, _)| *done == id) {
            Some(position) => Reply::Response(Box::new(completed.remove(position).1)),
            None => Reply::Parked(id),
        }
    }

    /// The earliest deadline of a group write.
    pub(crate) fn next_group_write_deadline(&self) -> Option<Millis> {
        let writes = self.groups.coordination.writes.values();
        writes.map(|w| w.deadline).min()
    }

    /// Completes the group writes that are committed, failed (leadership lost, the ISR
    /// shrank below `min.insync.replicas`) or out of time, in the order they were written.
    pub(crate) fn complete_group_writes(&mut self, now: Millis) {
        if self.groups.coordination.writes.is_empty() {
            return;
        }
        let writes = std::mem::take(&mut self.groups.coordination.writes);
        let mut finished = Vec::new();
        for (id, write) in writes {
            match self.write_outcome(now, &write) {
                None => {
                    self.groups.coordination.writes.insert(id, write);
                }
                Some(outcome) => finished.push((id, write.then, outcome)),
            }
        }
        for (id, then, outcome) in finished {
            self.finish_write(now, id, then, outcome);
        }
    }

    /// `None` while the write waits; its result once it is committed or failed.
    fn write_outcome(&self, now: Millis, write: &PendingWrite) -> Option<Result<(), ErrorCode>> {
        let mut waiting = false;
        for &(index, epoch, next_offset) in &write.waits {
            let partition = match self.topics.partition(OFFSETS_TOPIC, index) {
                Some(p) if p.is_leader() && p.leader_epoch() == epoch => p,
                _ => return Some(Err(ErrorCode::NotCoordinator)),
            };
            match partition.acks_all_outcome(next_offset) {
                Some(Ok(())) => {}
                Some(Err(_)) => return Some(Err(ErrorCode::CoordinatorNotAvailable)),
                None => waiting = true,
            }
        }
        match waiting {
            false => Some(Ok(())),
            true if write.deadline <= now => Some(Err(ErrorCode::RequestTimedOut)),
            true => None,
        }
    }

    fn finish_write(
        &mut self,
        now: Millis,
        id: ParkedId,
        then: AfterWrite,
        outcome: Result<(), ErrorCode>,
    ) {
        match then {
            AfterWrite::Commit {
                group,
                accepted,
                mut response,
            } => {
                match outcome {
                    Ok(()) => self.groups.coordinator.apply_commit(now, &group, accepted),
                    Err(code) => fail_accepted(&mut response, code),
                }
                let response = ResponseKind::OffsetCommit(response);
                self.groups.completed.push((id, response));
            }
            AfterWrite::TxnCommit {
                group,
                producer_id,
                accepted,
                mut response,
            } => {
                match outcome {
                    Ok(()) => {
                        self.groups
                            .coordinator
                            .stage_txn_offsets(producer_id, &group, accepted)
                    }
                    Err(code) => {
                        let partitions = response.topics.iter_mut().flat_map(|t| &mut t.partitions);
                        for partition in partitions.filter(|p| p.error_code == 0) {
                            partition.error_code = code.code();
                        }
                    }
                }
                let response = ResponseKind::TxnOffsetCommit(response);
                self.groups.completed.push((id, response));
            }
            AfterWrite::Syncs { answers, groups } => {
                if outcome.is_err() {
                    // As in Kafka, a generation that is not stored does not stand: the
                    // members get an error and the group rebalances.
                    for group in &groups {
                        self.groups.coordinator.metadata_store_failed(group, now);
                    }
                }
                for (held, version, answer) in answers {
                    let answer = match outcome {
                        Ok(()) => answer,
                        Err(ErrorCode::NotCoordinator) => {
                            SyncResponse::error(ErrorCode::NotCoordinator)
                        }
                        Err(_) => SyncResponse::error(ErrorCode::CoordinatorNotAvailable),
                    };
                    let response = ResponseKind::SyncGroup(sync_response(answer, version));
                    self.groups.completed.push((held, response));
                }
            }
        }
    }

    /// Asserts the coordination invariants: a loaded partition is led here in the epoch it
    /// was loaded in, and a waiting write waits on loaded partitions only.
    fn check_coordination(&self) {
        if cfg!(debug_assertions) {
            let loaded = &self.groups.coordination.loaded;
            for (index, epoch) in loaded {
                let partition = self.topics.partition(OFFSETS_TOPIC, *index);
                assert!(
                    partition.is_some_and(|p| p.is_leader() && p.leader_epoch() == *epoch),
                    "{OFFSETS_TOPIC}-{index} is loaded in epoch {epoch:?} but not led in it"
                );
            }
            for write in self.groups.coordination.writes.values() {
                for (index, epoch, _) in &write.waits {
                    assert_eq!(loaded.get(index), Some(epoch), "a write waits on {index}");
                }
            }
        }
    }
}

//! Fetch (with long polling) and ListOffsets.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{FetchRequest, ListOffsetsRequest, ListOffsetsResponse};

use super::{partition_dir, Broker, Reply, StorageProvider};
use crate::error::ErrorCode;
use crate::log::LogError;
use crate::planted::{is_planted, PlantedBug};
use crate::protocol::fetch_types::FileRange;
use crate::protocol::{FetchPartitionData, FetchResponseData, FetchTopicData};
use crate::types::{Millis, Offset};

/// What a parked request waits for, and which one it is: the identity a driver keeps its
/// waiting connection under until the answer comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ParkedId {
    /// A Fetch waiting for data or the end of its wait (`max_wait_ms`).
    Fetch(u64),
    /// A JoinGroup or SyncGroup waiting for its group's rebalance.
    Group(crate::group::ParkId),
    /// A group request (OffsetCommit, or a SyncGroup handing out a generation) whose records
    /// wait for the in-sync replicas of `__consumer_offsets`.
    GroupWrite(u64),
    /// An acks=all Produce waiting for the in-sync replicas.
    Produce(u64),
    /// A cluster node's CreateTopics or DeleteTopics waiting for the controller and the
    /// metadata log.
    TopicChange(u64),
    /// A cluster node's ElectLeaders waiting for the controller and the metadata log.
    Election(u64),
    /// A cluster node's DescribeQuorum waiting for the quorum leader's answer.
    Quorum(u64),
    /// A cluster node's AlterPartitionReassignments waiting for the controller and the
    /// metadata log.
    Reassignment(u64),
    /// A cluster node's Metadata waiting for the controller's decision on a leader whose
    /// node was just lost.
    Metadata(u64),
    /// A transaction request (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn)
    /// whose transition waits for the in-sync replicas of `__transaction_state`.
    TxnWrite(u64),
}

/// The most fetches that may wait at once; beyond it a fetch is answered at once.
pub const PARKED_FETCHES_MAX: usize = 10_000;

struct Parked {
    request: FetchRequest,
    deadline: Millis,
    /// The read bound (the log end for a follower, the high watermark for a consumer) and log
    /// start of each partition it asks for, when last read: while they stay the same,
    /// re-reading cannot find more.
    marks: Vec<(i64, i64)>,
}

/// Fetches waiting for `min_bytes` or their `max_wait_ms`, and those answered since.
#[derive(Default)]
pub(crate) struct ParkedFetches {
    next_id: u64,
    waiting: BTreeMap<ParkedId, Parked>,
    completed: Vec<(ParkedId, FetchResponseData)>,
    /// Ids whose deadline passed, to answer on the next completion pass.
    expired: Vec<ParkedId>,
}

impl ParkedFetches {
    pub(crate) fn expire(&mut self, now: Millis) {
        let due = self
            .waiting
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id);
        self.expired.extend(due);
    }

    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.waiting.values().map(|p| p.deadline).min()
    }
}

impl<P: StorageProvider> Broker<P> {
    /// Answers Fetch now, or parks it until `min_bytes` are there or `max_wait_ms` passed.
    pub(crate) fn handle_fetch(
        &mut self,
        now: Millis,
        request: FetchRequest,
        version: i16,
    ) -> Reply {
        // KIP-227: this broker declines to create fetch sessions (session id 0 in every
        // answer), so clients keep sending full requests; an incremental request names a
        // session that cannot exist.
        if version >= 7 && request.session_id != 0 {
            let data = FetchResponseData {
                error_code: ErrorCode::FetchSessionIdNotFound.code(),
                ..FetchResponseData::default()
            };
            return Reply::Fetch(data);
        }
        // A follower's fetch (replica id ≥ 0) first tells the leader where the follower is.
        let follower = (request.replica_id.0 >= 0).then(|| self.serve_followers(now, &request));
        if follower.is_some() {
            self.complete_ready_fetches(now);
        }
        let mut data = self.read_fetch(&request);
        if let Some(verdicts) = &follower {
            Self::apply_follower_verdicts(&mut data, verdicts);
        }
        let min_bytes = i64::from(request.min_bytes.max(1));
        let enough = data.record_bytes() as i64 >= min_bytes || has_error(&data);
        if enough || request.max_wait_ms <= 0 || self.fetches.waiting.len() >= PARKED_FETCHES_MAX {
            return Reply::Fetch(data);
        }
        let id = ParkedId::Fetch(self.fetches.next_id);
        self.fetches.next_id += 1;
        let deadline = Millis(now.0 + i64::from(request.max_wait_ms));
        let marks = self.fetch_marks(&request);
        self.fetches.waiting.insert(
            id,
            Parked {
                request,
                deadline,
                marks,
            },
        );
        Reply::Parked(id)
    }

    /// Encodes a Fetch response whole, reading the record ranges from the partitions'
    /// storage: for replication between nodes (peer messages carry bytes).
    pub fn fetch_response_bytes(
        &self,
        version: i16,
        correlation_id: i32,
        data: &FetchResponseData,
    ) -> Result<Vec<u8>, crate::storage::StorageError> {
        self.read_parts(&crate::protocol::encode_fetch_response(
            version,
            correlation_id,
            data,
        ))
    }

    /// An encoded response's bytes with its file ranges read from the partitions' storage:
    /// for drivers that cannot send file ranges directly (the simulator).
    pub fn read_parts(
        &self,
        parts: &[crate::protocol::Part],
    ) -> Result<Vec<u8>, crate::storage::StorageError> {
        let mut out = Vec::new();
        for part in parts {
            match part {
                crate::protocol::Part::Bytes(bytes) => out.extend_from_slice(bytes),
                crate::protocol::Part::File(range) => {
                    let storage = range
                        .dir
                        .rsplit_once('-')
                        .and_then(|(topic, index)| {
                            let index = index.parse::<i32>().ok()?;
                            self.topics.partition(topic, index)
                        })
                        .map(|p| p.log.storage())
                        .ok_or_else(|| crate::storage::StorageError::NotFound(range.dir.clone()))?;
                    let start = out.len();
                    out.resize(start + range.length as usize, 0);
                    crate::storage::Storage::read_at(
                        storage,
                        &range.file,
                        range.position,
                        &mut out[start..],
                    )?;
                }
            }
        }
        Ok(out)
    }

    /// Drains the parked fetches that have been answered (enough data, or time is up).
    pub fn poll_completed_fetches(&mut self) -> Vec<(ParkedId, FetchResponseData)> {
        std::mem::take(&mut self.fetches.completed)
    }

    /// Forgets a parked fetch whose connection went away.
    pub fn cancel_fetch(&mut self, id: ParkedId) {
        self.fetches.waiting.remove(&id);
    }

    /// Re-reads every parked fetch and completes those with enough data or past deadline.
    pub(crate) fn complete_ready_fetches(&mut self, now: Millis) {
        self.fetches.expire(now);
        let expired = std::mem::take(&mut self.fetches.expired);
        let waiting = std::mem::take(&mut self.fetches.waiting);
        for (id, mut parked) in waiting {
            let due = expired.contains(&id) || parked.deadline <= now;
            let marks = self.fetch_marks(&parked.request);
            if !due && marks == parked.marks {
                self.fetches.waiting.insert(id, parked);
                continue;
            }
            parked.marks = marks;
            let data = self.read_fetch(&parked.request);
            let min_bytes = i64::from(parked.request.min_bytes.max(1));
            let done = data.record_bytes() as i64 >= min_bytes
                || has_error(&data)
                || expired.contains(&id)
                || parked.deadline <= now;
            if done {
                self.fetches.completed.push((id, data));
            } else {
                self.fetches.waiting.insert(id, parked);
            }
        }
    }

    /// The read bound and log start of each partition `request` names (-1 for one not held
    /// here), in request order.
    fn fetch_marks(&self, request: &FetchRequest) -> Vec<(i64, i64)> {
        let mut marks = Vec::new();
        for topic in &request.topics {
            let stored = if topic.topic_id.is_nil() {
                self.topics.get(topic.topic.0.as_str())
            } else {
                self.topics.by_id(topic.topic_id).map(|(_, t)| t)
            };
            for wanted in &topic.partitions {
                // A consumer reads below the high watermark, a follower up to the log end:
                // only that bound can give it more.
                // (a read_committed one below the last stable offset).
                let follower = request.replica_id.0 >= 0;
                let committed = request.isolation_level == READ_COMMITTED;
                let mark = stored
                    .and_then(|t| t.partitions.get(wanted.partition))
                    .map_or((-1, -1), |p| {
                        let bound = if follower {
                            p.log.log_end_offset()
                        } else if committed {
                            p.last_stable_offset()
                        } else {
                            p.log.high_watermark()
                        };
                        (bound.0, p.log.log_start_offset().0)
                    });
                marks.push(mark);
            }
        }
        marks
    }

    /// Finds the records a fetch asks for, within its byte limits.
    pub(crate) fn read_fetch(&self, request: &FetchRequest) -> FetchResponseData {
        let response_max = i64::from(
            request
                .max_bytes
                .min(self.config.fetch_response_bytes_max)
                .max(0),
        );
        let mut remaining = if request.max_bytes == 0 {
            i64::from(self.config.fetch_response_bytes_max)
        } else {
            response_max
        };
        let mut data = FetchResponseData::default();
        for topic in &request.topics {
            // v13+ names topics by id (the name is empty); older versions by name.
            let by_id = !topic.topic_id.is_nil();
            let name = if by_id {
                self.topics
                    .by_id(topic.topic_id)
                    .map_or("", |(name, _)| name)
            } else {
                topic.topic.0.as_str()
            };
            let mut answer = FetchTopicData {
                name: name.to_string(),
                topic_id: topic.topic_id,
                partitions: Vec::new(),
            };
            let replica = request.replica_id.0 >= 0;
            for wanted in &topic.partitions {
                if by_id && name.is_empty() {
                    answer
                        .partitions
                        .push(partition_error(wanted.partition, ErrorCode::UnknownTopicId));
                    continue;
                }
                let budget = remaining.min(i64::from(wanted.partition_max_bytes.max(0)));
                // The first batch of the response is sent even over the limits, so that
                // consumers always progress (Kafka's rule).
                let first = data.record_bytes() == 0;
                let committed = request.isolation_level == READ_COMMITTED
                    && !replica
                    && !is_planted(PlantedBug::ReadCommittedPastStable);
                let reader = match (replica, committed) {
                    (true, _) => Reader::Follower,
                    (false, true) => Reader::ReadCommitted,
                    (false, false) => Reader::ReadUncommitted,
                };
                let partition = self.read_partition(name, wanted, budget, first, reader);
                remaining -= partition
                    .records
                    .iter()
                    .map(|r| r.length as i64)
                    .sum::<i64>();
                answer.partitions.push(partition);
            }
            data.topics.push(answer);
        }
        data
    }

    fn read_partition(
        &self,
        topic: &str,
        wanted: &kafka_protocol::messages::fetch_request::FetchPartition,
        budget: i64,
        first: bool,
        reader: Reader,
    ) -> FetchPartitionData {
        let replica = reader == Reader::Follower;
        let mut out = partition_error(wanted.partition, ErrorCode::None);
        let partition = match self.topics.led(topic, wanted.partition) {
            Ok(partition) => partition,
            Err(code) => {
                out.error_code = code.code();
                return out;
            }
        };
        let log = &partition.log;
        out.high_watermark = log.high_watermark().0;
        out.last_stable_offset = partition.last_stable_offset().0;
        out.log_start_offset = log.log_start_offset().0;
        if let Some(code) = epoch_error(wanted.current_leader_epoch, partition.leader_epoch().0) {
            out.error_code = code.code();
            return out;
        }
        if !replica && !partition.high_watermark_known() {
            out.error_code = ErrorCode::OffsetNotAvailable.code();
            out.high_watermark = -1;
            out.last_stable_offset = -1;
            return out;
        }
        if budget <= 0 && !first {
            return out;
        }
        // Consumers read what is committed (read_committed ones, what is also stable);
        // followers copy the whole log.
        let upper = match reader {
            Reader::Follower => log.log_end_offset(),
            Reader::ReadCommitted => partition.last_stable_offset(),
            Reader::ReadUncommitted => log.high_watermark(),
        };
        match log.read(Offset(wanted.fetch_offset), budget.max(0) as u64, upper) {
            Ok(Some(slice)) => {
                if reader == Reader::ReadCommitted {
                    let from = Offset(wanted.fetch_offset);
                    let aborted = partition.producers.aborted_between(from, slice.next_offset);
                    out.aborted_transactions = aborted
                        .iter()
                        .map(|a| (a.producer_id.0, a.first_offset.0))
                        .collect();
                }
                out.records.push(FileRange {
                    dir: partition_dir(topic, wanted.partition),
                    file: slice.file,
                    position: slice.position,
                    length: slice.length,
                })
            }
            Ok(None) => {}
            Err(err) => out.error_code = ErrorCode::from(&err).code(),
        }
        out
    }

    /// Answers ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local
    /// (-4), latest tiered (-5) or by timestamp.
    pub(crate) fn handle_list_offsets(
        &self,
        request: ListOffsetsRequest,
        version: i16,
    ) -> ListOffsetsResponse {
        let mut response = ListOffsetsResponse::default();
        let request_isolation = request.isolation_level;
        for topic in request.topics {
            let mut answer = ListOffsetsTopicResponse::default();
            answer.name = topic.name.clone();
            for wanted in topic.partitions {
                let mut result = ListOffsetsPartitionResponse::default();
                result.partition_index = wanted.partition_index;
                let partition = self
                    .topics
                    .led(topic.name.0.as_str(), wanted.partition_index);
                let found = match partition {
                    Err(code) => Err(code),
                    Ok(p) if !p.high_watermark_known() => Err(ErrorCode::OffsetNotAvailable),
                    Ok(p) => match epoch_error(wanted.current_leader_epoch, p.leader_epoch().0) {
                        Some(code) => Err(code),
                        None => {
                            let isolation = request_isolation;
                            lookup_offset(p, wanted.timestamp, isolation)
                                .map(|r| (r, p.leader_epoch().0))
                        }
                    },
                };
                match found {
                    Ok(((offset, timestamp), epoch)) => {
                        // Fields a version lacks must keep their defaults to encode.
                        if version >= 1 {
                            result.offset = offset;
                            result.timestamp = timestamp;
                        }
                        if version >= 4 {
                            result.leader_epoch = epoch;
                        }
                        if version == 0 {
                            result.old_style_offsets = if offset >= 0 {
                                vec![offset]
                            } else {
                                Vec::new()
                            };
                        }
                    }
                    Err(code) => result.error_code = code.code(),
                }
                answer.partitions.push(result);
            }
            response.topics.push(answer);
        }
        response
    }
}

/// Who reads a partition, which decides how far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    /// A follower copies up to the log end.
    Follower,
    /// A consumer reading committed records only reads below the last stable offset.
    ReadCommitted,
    /// Any other consumer reads below the high watermark.
    ReadUncommitted,
}

/// Fetch's and ListOffsets' `isolation_level` for read_committed.
const READ_COMMITTED: i8 = 1;

/// Resolves a ListOffsets timestamp to (offset, timestamp); -1/-1 when no record matches.
/// Latest (-1) is the last stable offset for a read_committed client.
fn lookup_offset<S: crate::storage::Storage>(
    partition: &super::Partition<S>,
    timestamp: i64,
    isolation_level: i8,
) -> Result<(i64, i64), ErrorCode> {
    let log = &partition.log;
    match timestamp {
        -1 if isolation_level == READ_COMMITTED => Ok((partition.last_stable_offset().0, -1)),
        // -4 (KIP-405, v8+) is the earliest offset kept locally: without tiered storage
        // that is the log start, like -2.
        -2 | -4 => Ok((log.log_start_offset().0, -1)),
        // -5 (KIP-1005, v9+) is the last offset copied to tiered storage: there is none.
        -5 => Ok((-1, -1)),
        -1 => Ok((log.high_watermark().0, -1)),
        -3 => Ok(log
            .max_timestamp()
            .map_or((-1, -1), |(ts, offset)| (offset.0, ts))),
        t if t >= 0 => match log.offset_for_timestamp(t) {
            Ok(Some((offset, ts))) => Ok((offset.0, ts)),
            Ok(None) => Ok((-1, -1)),
            Err(err) => Err(ErrorCode::from(&err as &LogError)),
        },
        _ => Err(ErrorCode::InvalidRequest),
    }
}

/// KIP-320: a client naming a leader epoch other than the current one is told which way.
fn epoch_error(requested: i32, current: i32) -> Option<ErrorCode> {
    match requested {
        r if r < 0 || r == current => None,
        r if r < current => Some(ErrorCode::FencedLeaderEpoch),
        _ => Some(ErrorCode::UnknownLeaderEpoch),
    }
}

/// A partition's answer with no records and unknown offsets.
fn partition_error(partition_index: i32, error: ErrorCode) -> FetchPartitionData {
    FetchPartitionData {
        partition_index,
        error_code: error.code(),
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        aborted_transactions: Vec::new(),
        records: Vec::new(),
        diverging_epoch: None,
    }
}

fn has_error(data: &FetchResponseData) -> bool {
    data.error_code != 0
        || data
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.diverging_epoch.is_some())
        || data
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.error_code != 0)
}

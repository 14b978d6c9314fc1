//! One partition as the broker holds it: its log, its producers, and its replica role.
//!
//! A partition is led here ([`LeaderState`] decides the high watermark, which the log only
//! stores, and the acks=all checks) or followed ([`FollowerState`]: the leader and epoch to
//! fetch from), or waits without a leader, as the controller's partition records say
//! ([`Partition::apply_record`]). A partition with one replica (a one-node cluster's) is its
//! own ISR, so each append commits at once.

use crate::cluster::PartitionRecord;
use crate::error::ErrorCode;
use crate::log::{AppendInfo, EpochEnd, LogConfig, LogError, PartitionLog};
use crate::planted::{self, PlantedBug};
use crate::replication::{
    out_of_range_reset, truncation_offset, FetchPosition, FetchVerdict, FollowerFetch,
    FollowerState, LeaderInit, LeaderState, LeaderUpdate, OutOfRangeReset, ReplicationConfig,
};
use crate::storage::Storage;
use crate::types::{LeaderEpoch, Millis, NodeId, Offset};

use super::producer_state::{MarkerCheck, ProducerStates};

/// What this broker is for a partition.
#[derive(Debug)]
enum Role {
    /// It leads the partition.
    Leader(LeaderState),
    /// It copies the partition from its leader.
    Follower(FollowerState),
    /// A replica waiting for the controller to elect a leader (in this leader epoch).
    Leaderless(LeaderEpoch),
}

/// One partition: its log and the state that goes with it.
pub(crate) struct Partition<S: Storage> {
    pub(crate) log: PartitionLog<S>,
    pub(crate) producers: ProducerStates,
    /// This broker's node id.
    node: NodeId,
    role: Role,
    /// The controller's partition epoch of the state this broker last took.
    partition_epoch: i32,
    /// An ISR change sent to the controller and not yet answered.
    isr_change_in_flight: bool,
}

/// The leader's answer to a follower's fetch of this partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplicaServe {
    /// Serve records from the fetch offset up to the log end.
    Records,
    /// The follower's log diverged: answer this epoch end instead of records.
    Diverging(EpochEnd),
}

/// What a follower does with its leader's answer for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReplicaAnswer {
    /// Records (possibly none) from the fetch offset, and the leader's high watermark.
    Records {
        /// Whole batches starting at the fetch offset.
        records: bytes::Bytes,
        /// The leader's high watermark.
        high_watermark: Offset,
        /// The leader's log start offset.
        log_start_offset: Offset,
    },
    /// The leader's history says the follower's log diverged after this epoch end.
    Diverging(EpochEnd),
    /// The fetch offset is outside the leader's log.
    OutOfRange {
        /// The leader's log start offset.
        log_start_offset: Offset,
        /// The leader's log end offset (its high watermark when it does not say more).
        log_end_offset: Offset,
    },
}

impl<S: Storage> Partition<S> {
    /// Takes an opened log in the role `record` gives `node` (a replica of it).
    pub(crate) fn with_record(
        log: PartitionLog<S>,
        producers: ProducerStates,
        node: NodeId,
        record: &PartitionRecord,
        now: Millis,
    ) -> Result<Partition<S>, LogError> {
        let mut partition = Partition {
            log,
            producers,
            node,
            role: Role::Leaderless(LeaderEpoch(-1)),
            partition_epoch: -1,
            isr_change_in_flight: false,
        };
        partition.apply_record(now, record)?;
        Ok(partition)
    }

    /// Takes the controller's new state of the partition: leads, follows or waits in its
    /// leader epoch, or — the same epoch — takes the committed ISR. Records that are not newer
    /// than the one last taken change nothing.
    pub(crate) fn apply_record(
        &mut self,
        now: Millis,
        record: &PartitionRecord,
    ) -> Result<(), LogError> {
        if record.partition_epoch <= self.partition_epoch && self.partition_epoch >= 0 {
            return Ok(());
        }
        self.partition_epoch = record.partition_epoch;
        self.isr_change_in_flight = false;
        let epoch = record.leader_epoch;
        match (&mut self.role, record.leader) {
            (Role::Leader(leader), Some(node)) if node == self.node && leader.epoch() == epoch => {
                // A reassignment adds or removes replicas under the same leader.
                leader.set_replicas(&record.replicas);
                leader.set_moving_out(record.removing.len());
                let update = leader.commit_isr(now, &record.isr);
                self.apply(update);
            }
            // Leading in an epoch older than the log's own history is impossible (its batches
            // would go before the later leader's); it only comes from a stale replay or an
            // epoch field damaged on disk, and the partition waits for a newer record.
            (_, Some(node))
                if node == self.node
                    && self.log.latest_epoch().is_some_and(|latest| epoch < latest) =>
            {
                self.role = Role::Leaderless(epoch);
            }
            (_, Some(node)) if node == self.node => {
                self.log.start_leader_epoch(epoch)?;
                let leader = LeaderState::new(LeaderInit {
                    node,
                    epoch,
                    replicas: record.replicas.clone(),
                    isr: record.isr.clone(),
                    log_end_offset: self.log.log_end_offset(),
                    high_watermark: self.log.high_watermark(),
                    now,
                    min_insync_replicas: self.log.config().min_insync_replicas,
                    config: ReplicationConfig::default(),
                });
                let mut leader = leader;
                leader.set_moving_out(record.removing.len());
                let committed = leader.high_watermark();
                self.role = Role::Leader(leader);
                self.log.set_high_watermark(committed);
            }
            (_, Some(leader)) => {
                let new_follower = !matches!(
                    &self.role,
                    Role::Follower(f) if f.leader() == leader && f.epoch() == epoch
                );
                self.drop_unused_epochs()?;
                if new_follower && planted::is_planted(PlantedBug::TruncateToHighWatermark) {
                    // Pre-KIP-101: the watermark a follower knows trails its leader's (and is
                    // the log start after a restart: Brook keeps no watermark checkpoint).
                    self.truncate_to(self.log.high_watermark())?;
                }
                self.role = Role::Follower(FollowerState::new(leader, epoch));
            }
            (_, None) => {
                self.drop_unused_epochs()?;
                self.role = Role::Leaderless(epoch);
            }
        }
        Ok(())
    }

    /// The leader epoch this broker knows the partition in (led, followed or leaderless).
    pub(crate) fn leader_epoch(&self) -> LeaderEpoch {
        match &self.role {
            Role::Leader(leader) => leader.epoch(),
            Role::Follower(follower) => follower.epoch(),
            Role::Leaderless(epoch) => *epoch,
        }
    }

    /// Whether this broker leads the partition.
    pub(crate) fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// Whether a consumer may be told this leader's high watermark: a new leader's trails
    /// the old leader's until it reaches the offset its epoch starts at (everything before
    /// was the old leaders'), and showing it earlier would move consumers' watermark back
    /// (Kafka's KIP-207 answers `OFFSET_NOT_AVAILABLE` until then).
    pub(crate) fn high_watermark_known(&self) -> bool {
        match &self.role {
            Role::Leader(leader) => leader.high_watermark() >= leader.epoch_start_offset(),
            _ => false,
        }
    }

    /// Leads the partition again in a newer `epoch`, with the same replicas and ISR; the epoch
    /// is recorded at the log end. (Tests.)
    #[cfg(test)]
    pub(crate) fn bump_leader_epoch(
        &mut self,
        epoch: LeaderEpoch,
        now: Millis,
    ) -> Result<(), LogError> {
        let Role::Leader(leader) = &self.role else {
            panic!("not the leader");
        };
        let record = PartitionRecord {
            topic_id: uuid::Uuid::nil(),
            partition: 0,
            replicas: leader.replicas().to_vec(),
            isr: leader.isr().collect(),
            elr: Vec::new(),
            leader: Some(self.node),
            leader_epoch: epoch,
            partition_epoch: self.partition_epoch + 1,
            adding: Vec::new(),
            removing: Vec::new(),
        };
        self.apply_record(now, &record)
    }

    /// Replaces the topic settings (AlterConfigs): the log's and `min.insync.replicas`.
    pub(crate) fn set_config(&mut self, config: LogConfig, now: Millis) -> Result<(), LogError> {
        let min_insync = config.min_insync_replicas;
        self.log.set_config(config)?;
        if let Role::Leader(leader) = &mut self.role {
            let update = leader.set_min_insync_replicas(now, min_insync);
            self.apply(update);
        }
        Ok(())
    }

    /// Whether an acks=all produce may be appended now: `NOT_LEADER_OR_FOLLOWER` unless this
    /// broker leads, `NOT_ENOUGH_REPLICAS` while the ISR is too small.
    pub(crate) fn check_acks_all(&self) -> Result<(), ErrorCode> {
        match &self.role {
            Role::Leader(leader) => leader.check_acks_all(),
            _ => Err(ErrorCode::NotLeaderOrFollower),
        }
    }

    /// The answer for an acks=all produce whose records end before `next_offset`: `None`
    /// while it waits for the followers.
    pub(crate) fn acks_all_outcome(&self, next_offset: Offset) -> Option<Result<(), ErrorCode>> {
        match &self.role {
            Role::Leader(_) if planted::is_planted(PlantedBug::AckOnLeaderAppend) => Some(Ok(())),
            Role::Leader(leader) => leader.acks_all_outcome(next_offset),
            _ => Some(Err(ErrorCode::NotLeaderOrFollower)),
        }
    }

    /// Appends records as the leader: stamps them with its epoch, assigns offsets, and moves
    /// the high watermark as far as the ISR allows.
    ///
    /// # Panics
    /// If this broker does not lead the partition: callers check [`Partition::is_leader`].
    pub(crate) fn append_as_leader(
        &mut self,
        records: &mut [u8],
        now: Millis,
    ) -> Result<AppendInfo, LogError> {
        let Role::Leader(leader) = &mut self.role else {
            panic!("append_as_leader on a partition this broker does not lead");
        };
        let info = self.log.append(records, leader.epoch(), now)?;
        let update = leader.handle_append(now, self.log.log_end_offset());
        self.apply(update);
        Ok(info)
    }

    /// The last stable offset: read_committed consumers read below it.
    pub(crate) fn last_stable_offset(&self) -> Offset {
        self.producers.last_stable_offset(self.log.high_watermark())
    }

    /// Appends a transaction marker as the leader; returns the offset after it, which an
    /// acks=all wait uses. `INVALID_PRODUCER_EPOCH` if the partition saw a newer epoch of the
    /// producer, `NOT_LEADER_OR_FOLLOWER` unless this broker leads. A marker whose
    /// transaction's marker is here already (its token) is not written again: the answer
    /// waits for the log as it is.
    pub(crate) fn write_marker(
        &mut self,
        now: Millis,
        marker: &crate::record::ControlMarker,
    ) -> Result<Offset, ErrorCode> {
        if !self.is_leader() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        let (id, epoch) = (marker.producer_id, marker.producer_epoch);
        if self.producers.check_marker(id, epoch, marker.token)? == MarkerCheck::Written {
            return Ok(self.log.log_end_offset());
        }
        let mut bytes = marker.encode(Offset(0));
        let info = self
            .append_as_leader(&mut bytes, now)
            .map_err(|err| ErrorCode::from(&err))?;
        let control = marker.control_type;
        let token = marker.token;
        self.producers
            .record_marker(id, epoch, control, info.base_offset, token);
        let (high_watermark, log_start) = (self.log.high_watermark(), self.log.log_start_offset());
        self.producers.prune(high_watermark, log_start);
        Ok(Offset(info.last_offset.0 + 1))
    }

    /// The leader's check of a follower's fetch (records its progress when served).
    /// `current_leader_epoch` is the epoch the follower believes current (-1: unknown).
    pub(crate) fn serve_follower(
        &mut self,
        now: Millis,
        fetch: FollowerFetch,
        current_leader_epoch: i32,
    ) -> Result<ReplicaServe, ErrorCode> {
        let Role::Leader(leader) = &mut self.role else {
            return Err(ErrorCode::NotLeaderOrFollower);
        };
        match current_leader_epoch {
            known if known < 0 || known == leader.epoch().0 => {}
            older if older < leader.epoch().0 => return Err(ErrorCode::FencedLeaderEpoch),
            _ => return Err(ErrorCode::UnknownLeaderEpoch),
        }
        let log = &self.log;
        let verdict = leader.handle_follower_fetch(
            now,
            fetch,
            |epoch| log.end_offset_for_epoch(epoch),
            log.log_start_offset(),
        )?;
        match verdict {
            FetchVerdict::Serve(update) => {
                self.apply(update);
                Ok(ReplicaServe::Records)
            }
            FetchVerdict::Diverging(end) => Ok(ReplicaServe::Diverging(end)),
        }
    }

    /// What this broker puts in its next fetch from the leader it follows.
    pub(crate) fn fetch_position(&self) -> Option<FetchPosition> {
        let Role::Follower(follower) = &self.role else {
            return None;
        };
        Some(follower.fetch_position(self.log.log_end_offset(), self.log.latest_epoch()))
    }

    /// Takes the leader's answer to this follower's fetch at `fetch_offset`: appends the
    /// records (with the leader's offsets and epochs), truncates a diverged tail, or resets
    /// an out-of-range log. An answer for another position (a fetch that raced a truncation)
    /// or for a partition no longer followed is ignored.
    pub(crate) fn apply_replica_answer(
        &mut self,
        now: Millis,
        fetch_offset: Offset,
        answer: ReplicaAnswer,
    ) -> Result<(), LogError> {
        if !matches!(self.role, Role::Follower(_)) || fetch_offset != self.log.log_end_offset() {
            return Ok(());
        }
        match answer {
            ReplicaAnswer::Records {
                records,
                high_watermark,
                log_start_offset,
            } => {
                if !records.is_empty() {
                    self.log.append_replicated(&records, now)?;
                    let appended = self.log.producer_batches_from(fetch_offset)?;
                    self.producers.replay(&appended);
                }
                let end = self.log.log_end_offset();
                let committed = FollowerState::high_watermark_after_fetch(high_watermark, end);
                if committed > self.log.high_watermark() {
                    self.log.set_high_watermark(committed);
                }
                // The leader deleted records (DeleteRecords, retention): this replica follows,
                // never past what it holds as committed.
                let start = log_start_offset.min(self.log.high_watermark());
                if start > self.log.log_start_offset() {
                    self.log.advance_log_start(start)?;
                }
            }
            ReplicaAnswer::Diverging(diverging) => {
                let end = self.log.log_end_offset();
                let local = self.log.end_offset_for_epoch(diverging.epoch);
                let mut local = (local.epoch.0 >= 0).then_some(local);
                if planted::is_planted(PlantedBug::TruncateToLeaderEpochEnd) {
                    // Pre-KIP-279: the leader's epoch end taken as is.
                    local = None;
                }
                let truncation = truncation_offset(diverging, local, end);
                self.truncate_to(truncation.offset)?;
            }
            ReplicaAnswer::OutOfRange {
                log_start_offset,
                log_end_offset,
            } => {
                let end = self.log.log_end_offset();
                match out_of_range_reset(end, log_start_offset, log_end_offset) {
                    OutOfRangeReset::TruncateTo(offset) => self.truncate_to(offset)?,
                    OutOfRangeReset::StartAt(offset) => {
                        self.log.truncate_fully_and_start_at(offset, Some(now))?;
                        self.producers = ProducerStates::default();
                    }
                }
            }
        }
        Ok(())
    }

    /// The ISR change to send the controller, when the leader wants one and none is in
    /// flight: (leader epoch, partition epoch, wanted ISR). Marks it in flight.
    pub(crate) fn take_isr_proposal(&mut self) -> Option<(LeaderEpoch, i32, Vec<NodeId>)> {
        let Role::Leader(leader) = &self.role else {
            return None;
        };
        if self.isr_change_in_flight {
            return None;
        }
        let wanted = leader.isr_proposal()?;
        self.isr_change_in_flight = true;
        Some((leader.epoch(), self.partition_epoch, wanted))
    }

    /// The controller refused or lost the ISR change in flight: it may be proposed again.
    pub(crate) fn isr_change_failed(&mut self) {
        self.isr_change_in_flight = false;
    }

    /// Runs the leader's timers (followers leaving the ISR).
    pub(crate) fn tick(&mut self, now: Millis) {
        if let Role::Leader(leader) = &mut self.role {
            let update = leader.handle_tick(now);
            self.apply(update);
        }
    }

    /// When [`Partition::tick`] should next run.
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        match &self.role {
            Role::Leader(leader) => leader.next_deadline(),
            _ => None,
        }
    }

    /// Drops the leader epochs this broker recorded at its log end as a leader that appended
    /// nothing in them: as a follower it claims only epochs its batches carry, and takes the
    /// new leader's batches at that offset (Kafka's truncation at the log end does the same).
    fn drop_unused_epochs(&mut self) -> Result<(), LogError> {
        let end = self.log.log_end_offset();
        let dangling = self
            .log
            .epoch_entries()
            .last()
            .is_some_and(|latest| latest.start_offset >= end);
        if dangling {
            self.log.truncate_to(end)?;
        }
        Ok(())
    }

    /// Cuts the log back to `offset` and rebuilds the producer state to match.
    fn truncate_to(&mut self, offset: Offset) -> Result<(), LogError> {
        self.log.truncate_to(offset)?;
        self.producers = super::metadata::restore_producers(&mut self.log)?;
        Ok(())
    }

    /// Carries out what the leader decided: the new high watermark goes to the log.
    fn apply(&mut self, update: LeaderUpdate) {
        if let Some(high_watermark) = update.high_watermark {
            self.log.set_high_watermark(high_watermark);
        }
    }
}

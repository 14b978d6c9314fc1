//! One partition as the broker holds it: its log, its producers, and its replication role.
//!
//! Every partition a broker holds today is led by it: [`Partition`] keeps a [`LeaderState`],
//! which decides the high watermark (stored in the log, which bounds nothing by it) and the
//! acks=all checks. A single-replica partition is its own ISR, so each append commits at once.
//! The replicated cluster will add followers and leader changes through the same methods.

use crate::error::ErrorCode;
use crate::log::{AppendInfo, LogConfig, LogError, PartitionLog};
use crate::replication::{LeaderInit, LeaderState, LeaderUpdate, ReplicationConfig};
use crate::storage::Storage;
use crate::types::{LeaderEpoch, Millis, NodeId};

use super::producer_state::ProducerStates;

/// One partition: its log and the state that goes with it.
pub(crate) struct Partition<S: Storage> {
    pub(crate) log: PartitionLog<S>,
    pub(crate) producers: ProducerStates,
    /// This broker's view as the partition's leader.
    leader: LeaderState,
}

impl<S: Storage> Partition<S> {
    /// Takes an opened log and leads it in `epoch` as its only replica: the epoch is recorded
    /// at the log end and everything in the log is committed.
    pub(crate) fn lead_alone(
        mut log: PartitionLog<S>,
        producers: ProducerStates,
        node: NodeId,
        epoch: LeaderEpoch,
        now: Millis,
    ) -> Result<Partition<S>, LogError> {
        log.start_leader_epoch(epoch)?;
        let end = log.log_end_offset();
        let leader = LeaderState::new(LeaderInit {
            node,
            epoch,
            replicas: vec![node],
            isr: vec![node],
            log_end_offset: end,
            high_watermark: log.high_watermark(),
            now,
            min_insync_replicas: log.config().min_insync_replicas,
            config: ReplicationConfig::default(),
        });
        let mut partition = Partition {
            log,
            producers,
            leader,
        };
        partition.apply(LeaderUpdate {
            high_watermark: Some(partition.leader.high_watermark()),
            ..LeaderUpdate::default()
        });
        Ok(partition)
    }

    /// The epoch this broker leads the partition in.
    pub(crate) fn leader_epoch(&self) -> LeaderEpoch {
        self.leader.epoch()
    }

    /// Leads the partition again in a newer `epoch`, with the same replicas and ISR; the epoch
    /// is recorded at the log end. (Tests; the controller will re-elect through it.)
    #[cfg(test)]
    pub(crate) fn bump_leader_epoch(
        &mut self,
        epoch: LeaderEpoch,
        now: Millis,
    ) -> Result<(), LogError> {
        self.log.start_leader_epoch(epoch)?;
        let isr: Vec<NodeId> = self.leader.isr().collect();
        self.leader = LeaderState::new(LeaderInit {
            node: self.leader.node(),
            epoch,
            replicas: self.leader.replicas().to_vec(),
            isr,
            log_end_offset: self.log.log_end_offset(),
            high_watermark: self.log.high_watermark(),
            now,
            min_insync_replicas: self.log.config().min_insync_replicas,
            config: ReplicationConfig::default(),
        });
        Ok(())
    }

    /// Replaces the topic settings (AlterConfigs): the log's and `min.insync.replicas`.
    pub(crate) fn set_config(&mut self, config: LogConfig, now: Millis) -> Result<(), LogError> {
        let min_insync = config.min_insync_replicas;
        self.log.set_config(config)?;
        let update = self.leader.set_min_insync_replicas(now, min_insync);
        self.apply(update);
        Ok(())
    }

    /// Whether an acks=all produce may be appended now (`NOT_ENOUGH_REPLICAS` otherwise).
    pub(crate) fn check_acks_all(&self) -> Result<(), ErrorCode> {
        self.leader.check_acks_all()
    }

    /// Appends records as the leader: stamps them with its epoch, assigns offsets, and moves
    /// the high watermark as far as the ISR allows.
    pub(crate) fn append_as_leader(
        &mut self,
        records: &mut [u8],
        now: Millis,
    ) -> Result<AppendInfo, LogError> {
        let info = self.log.append(records, self.leader.epoch(), now)?;
        let update = self.leader.handle_append(now, self.log.log_end_offset());
        self.apply(update);
        Ok(info)
    }

    /// Carries out what the leader decided: the new high watermark goes to the log.
    fn apply(&mut self, update: LeaderUpdate) {
        if let Some(high_watermark) = update.high_watermark {
            self.log.set_high_watermark(high_watermark);
        }
    }
}

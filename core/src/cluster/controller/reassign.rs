//! Partition reassignments (KIP-455): moving a partition's replicas to a target list while
//! it stays available.
//!
//! Starting one writes the partition with its replicas widened to the target and the
//! replicas it had (target first, so the target's first replica is the preferred leader),
//! `adding` the target replicas it lacked and `removing` the ones the target drops. The new
//! replicas catch up as followers; the reassignment completes once every target replica is
//! in the ISR: the replicas become the target, the removed ones leave the ISR and ELR, and
//! a leader that was removed hands over to the first in-sync target replica (a new leader
//! epoch). Until then nothing that was acknowledged depends on a new replica. A new
//! reassignment of a partition already moving replaces the old one's target (starting from
//! the replicas the partition had before either); cancelling (`None`) goes back to those.
//!
//! A request names the partition epoch its asker saw, and is refused when the replicas
//! changed after it: a request held up on the way (a stalled controller working through its
//! backlog, say) never undoes a reassignment asked and applied after it.

use super::{ClusterImage, Controller, MetadataRecord, PartitionRecord};
use crate::error::ErrorCode;
use crate::planted::{is_planted, PlantedBug};
use crate::types::{LeaderEpoch, NodeId};

/// One partition's reassignment to start or cancel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassignment {
    /// The topic's id.
    pub topic_id: uuid::Uuid,
    /// The partition's index.
    pub partition: i32,
    /// The target replicas, the preferred leader first; `None` cancels the one under way.
    pub target: Option<Vec<NodeId>>,
    /// The partition epoch of the asker's view when it asked: refused
    /// (`STALE_CONTROLLER_EPOCH`) when the replicas changed since.
    pub seen_epoch: i32,
}

/// The outcome of one partition's reassignment request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassigned {
    /// The topic's id.
    pub topic_id: uuid::Uuid,
    /// The partition's index.
    pub partition: i32,
    /// The partition epoch of the record that started (or cancelled) it, or why it was
    /// refused: `UNKNOWN_TOPIC_OR_PARTITION`, `INVALID_REPLICA_ASSIGNMENT`,
    /// `NO_REASSIGNMENT_IN_PROGRESS`, or `STALE_CONTROLLER_EPOCH` when the replicas changed
    /// after the asker's view (the asker asks again from a newer one).
    pub outcome: Result<i32, (ErrorCode, String)>,
}

/// A reassignment's target must be a list of distinct registered brokers
/// (`INVALID_REPLICA_ASSIGNMENT` otherwise). Checked by the asking node too, before the
/// target travels to the controller.
pub fn check_target(image: &ClusterImage, target: &[NodeId]) -> Result<(), (ErrorCode, String)> {
    let refuse = |message: String| Err((ErrorCode::InvalidReplicaAssignment, message));
    if target.is_empty() {
        return refuse("the target names no broker".into());
    }
    if let Some(unknown) = target.iter().find(|n| !image.brokers().contains_key(n)) {
        return refuse(format!("broker {} is not registered", unknown.0));
    }
    let mut distinct = target.to_vec();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != target.len() {
        return refuse(format!("{target:?}: the target needs distinct brokers"));
    }
    Ok(())
}

impl Controller {
    /// AlterPartitionReassignments: starts, replaces or cancels each partition's
    /// reassignment (see the module doc). A target that is already the replica set (in any
    /// order) only reorders it.
    pub fn reassign(&mut self, wanted: &[Reassignment]) -> (Vec<Reassigned>, Vec<MetadataRecord>) {
        let mut records = Vec::new();
        let mut results = Vec::new();
        for want in wanted {
            let outcome = self.reassign_one(want).map(|next| {
                let epoch = next.partition_epoch;
                self.push(&mut records, MetadataRecord::Partition(next));
                epoch
            });
            results.push(Reassigned {
                topic_id: want.topic_id,
                partition: want.partition,
                outcome,
            });
        }
        (results, records)
    }

    fn reassign_one(&self, want: &Reassignment) -> Result<PartitionRecord, (ErrorCode, String)> {
        let Some(current) = self.image.partition(want.topic_id, want.partition) else {
            let message = format!("no partition {} of topic {}", want.partition, want.topic_id);
            return Err((ErrorCode::UnknownTopicOrPartition, message));
        };
        // The replicas before any reassignment under way.
        let original: Vec<NodeId> = (current.replicas.iter())
            .filter(|n| !current.adding.contains(n))
            .copied()
            .collect();
        let assigned_at = self.assigned_at.get(&(want.topic_id, want.partition));
        if let Some(&at) = assigned_at.filter(|&&at| at > want.seen_epoch) {
            // Asked before a later change of the replicas reached the asker — a request held
            // up on its way, perhaps answered as timed out long ago: applying it now would
            // undo a newer reassignment.
            let message = format!(
                "partition {} was reassigned at epoch {at}, after the asker's view (epoch {})",
                want.partition, want.seen_epoch
            );
            return Err((ErrorCode::StaleControllerEpoch, message));
        }
        let mut next = current.clone();
        match &want.target {
            None => {
                if !current.reassigning() {
                    let message = format!("partition {} is not being reassigned", want.partition);
                    return Err((ErrorCode::NoReassignmentInProgress, message));
                }
                self.retarget(&mut next, &original, &original)?;
            }
            Some(target) => {
                check_target(&self.image, target)?;
                self.retarget(&mut next, &original, target)?;
            }
        }
        next.partition_epoch += 1;
        self.complete_if_caught_up(&mut next);
        Ok(next)
    }

    /// Gives `partition` the replicas of a move from `original` to `target`: the target,
    /// then the original replicas it drops; those it adds catch up first. Replicas that leave
    /// the assignment at once (cancelled or replaced additions) leave the ISR and ELR with
    /// it — refused (`INVALID_REPLICA_ASSIGNMENT`) when that would leave no in-sync replica,
    /// as when the additions are the only replicas in sync: their records would be lost.
    fn retarget(
        &self,
        partition: &mut PartitionRecord,
        original: &[NodeId],
        target: &[NodeId],
    ) -> Result<(), (ErrorCode, String)> {
        let kept = |n: &&NodeId| target.contains(n) || original.contains(n);
        if !partition.isr.is_empty() && !partition.isr.iter().any(|n| kept(&n)) {
            let isr: Vec<i32> = partition.isr.iter().map(|n| n.0).collect();
            let message = format!(
                "only {isr:?} are in sync, and the new replicas would drop them all: keep one"
            );
            return Err((ErrorCode::InvalidReplicaAssignment, message));
        }
        let removing: Vec<NodeId> = (original.iter())
            .filter(|n| !target.contains(n))
            .copied()
            .collect();
        partition.adding = (target.iter())
            .filter(|n| !original.contains(n))
            .copied()
            .collect();
        partition.replicas = target.iter().chain(&removing).copied().collect();
        partition.removing = removing;
        let replicas = partition.replicas.clone();
        partition.isr.retain(|n| replicas.contains(n));
        partition.elr.retain(|n| replicas.contains(n));
        if partition.leader.is_some_and(|l| !replicas.contains(&l)) {
            self.hand_over(partition);
        }
        Ok(())
    }

    /// Completes `partition`'s reassignment once every target replica is in the ISR (see
    /// the module doc). The caller bumped the partition epoch.
    pub(super) fn complete_if_caught_up(&self, partition: &mut PartitionRecord) {
        if !partition.reassigning() {
            return;
        }
        let target = partition.target_replicas();
        let active = |n: &NodeId| self.image.is_active(*n);
        if is_planted(PlantedBug::ReassignBeforeCaughtUp) && target.iter().all(active) {
            // Planted bug: the new replicas count as in sync as soon as they are assigned,
            // and the old ones go — before the new ones hold what was acknowledged.
            partition.isr = target.clone();
            partition.isr.sort();
        }
        if partition.isr.is_empty() || !target.iter().all(|n| partition.isr.contains(n)) {
            return;
        }
        partition.replicas = target.clone();
        partition.adding.clear();
        partition.removing.clear();
        partition.isr.retain(|n| target.contains(n));
        partition.elr.retain(|n| target.contains(n));
        if partition.leader.is_none_or(|l| !target.contains(&l)) {
            self.hand_over(partition);
        }
        super::normalize_elr(partition, self.min_isr(partition));
    }

    /// Elects a new leader among the partition's replicas as they now are, in a new epoch.
    fn hand_over(&self, partition: &mut PartitionRecord) {
        let before = partition.leader;
        partition.leader = None;
        self.elect(partition);
        if partition.leader != before {
            partition.leader_epoch = LeaderEpoch(partition.leader_epoch.0 + 1);
        }
    }
}

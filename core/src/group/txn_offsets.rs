//! Offsets committed inside a transaction (TxnOffsetCommit, KIP-98): held per producer until
//! the transaction's marker reaches the group's `__consumer_offsets` partition, then applied
//! on commit or dropped on abort. Until then OffsetFetch with `require_stable` answers
//! `UNSTABLE_OFFSET_COMMIT` for them (KIP-447), so a consumer taking over never starts from
//! an offset a transaction is about to replace.

use std::collections::BTreeMap;

use super::{GroupCoordinator, OffsetValue};
use crate::types::{Millis, ProducerId};

/// One producer's pending offsets: (group, topic, partition) → offset.
pub(super) type PendingOffsets = BTreeMap<(String, String, i32), OffsetValue>;

impl GroupCoordinator {
    /// Holds offsets a transactional producer committed (their records are written and
    /// committed in `__consumer_offsets`) until its transaction ends.
    pub fn stage_txn_offsets(
        &mut self,
        producer_id: ProducerId,
        group_id: &str,
        offsets: Vec<(String, i32, OffsetValue)>,
    ) {
        let pending = self.txn_offsets.entry(producer_id).or_default();
        for (topic, partition, value) in offsets {
            pending.insert((group_id.to_string(), topic, partition), value);
        }
    }

    /// Ends a producer's transaction for the groups `in_partition` selects (those of the
    /// `__consumer_offsets` partition the marker was written to): a commit applies its
    /// pending offsets, an abort drops them.
    pub fn end_txn_offsets(
        &mut self,
        now: Millis,
        producer_id: ProducerId,
        commit: bool,
        in_partition: impl Fn(&str) -> bool,
    ) {
        let Some(pending) = self.txn_offsets.get_mut(&producer_id) else {
            return;
        };
        let ending: Vec<(String, String, i32)> = pending
            .keys()
            .filter(|(group, _, _)| in_partition(group))
            .cloned()
            .collect();
        let mut applied: BTreeMap<String, Vec<(String, i32, OffsetValue)>> = BTreeMap::new();
        for key in ending {
            let value = pending.remove(&key).expect("listed above");
            let (group, topic, partition) = key;
            applied
                .entry(group)
                .or_default()
                .push((topic, partition, value));
        }
        if pending.is_empty() {
            self.txn_offsets.remove(&producer_id);
        }
        if commit {
            for (group, offsets) in applied {
                self.apply_commit(now, &group, offsets);
            }
        }
    }

    /// Whether a transaction holds an offset of `group` for the partition, not yet ended.
    pub fn has_pending_txn_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        let key = (group_id.to_string(), topic.to_string(), partition);
        self.txn_offsets.values().any(|p| p.contains_key(&key))
    }

    /// Forgets the pending offsets of the groups `moved` selects (their partition is led
    /// elsewhere now; the new coordinator loads them from the log).
    pub(super) fn unload_txn_offsets(&mut self, moved: &impl Fn(&str) -> bool) {
        for pending in self.txn_offsets.values_mut() {
            pending.retain(|(group, _, _), _| !moved(group));
        }
        self.txn_offsets.retain(|_, pending| !pending.is_empty());
    }
}

//! The leader's side: follower progress, the ISR and the high watermark.

use std::collections::{BTreeMap, BTreeSet};

use super::ReplicationConfig;
use crate::error::ErrorCode;
use crate::types::{LeaderEpoch, Millis, NodeId, Offset};

/// What a broker knows when it becomes a partition's leader.
#[derive(Clone, Debug)]
pub struct LeaderInit {
    /// This broker.
    pub node: NodeId,
    /// The epoch it leads in; every batch it appends carries it.
    pub epoch: LeaderEpoch,
    /// The partition's replicas, this broker among them.
    pub replicas: Vec<NodeId>,
    /// The ISR it inherits (from the controller); this broker among them.
    pub isr: Vec<NodeId>,
    /// Its log end offset now: where its epoch starts.
    pub log_end_offset: Offset,
    /// Its high watermark now (a follower's is at most the old leader's).
    pub high_watermark: Offset,
    /// The time it became leader: the inherited ISR members count as caught up now.
    pub now: Millis,
    /// Replication settings.
    pub config: ReplicationConfig,
}

/// What one input changed, for the driver to act on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderUpdate {
    /// The new high watermark, when it advanced.
    pub high_watermark: Option<Offset>,
    /// Followers that joined the ISR.
    pub isr_added: Vec<NodeId>,
    /// Followers that left the ISR.
    pub isr_removed: Vec<NodeId>,
}

impl LeaderUpdate {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.high_watermark.is_none() && self.isr_added.is_empty() && self.isr_removed.is_empty()
    }

    fn merge(&mut self, other: LeaderUpdate) {
        if other.high_watermark.is_some() {
            self.high_watermark = other.high_watermark;
        }
        self.isr_added.extend(other.isr_added);
        self.isr_removed.extend(other.isr_removed);
    }
}

/// A follower as its leader sees it.
#[derive(Clone, Copy, Debug)]
struct FollowerProgress {
    /// The offset it last fetched at (its log end offset), unknown until it fetches.
    log_end_offset: Option<Offset>,
    /// The last time its log end offset reached the leader's.
    last_caught_up: Millis,
    /// Its previous fetch: when, and the leader's log end offset then.
    last_fetch: Option<(Millis, Offset)>,
}

/// A partition's leader: its followers' progress, the ISR and the high watermark.
///
/// Call order: see the module documentation. Getters: [`LeaderState::epoch`],
/// [`LeaderState::high_watermark`], [`LeaderState::isr`], [`LeaderState::replicas`],
/// [`LeaderState::follower_log_end_offset`]. Checks for acks=all:
/// [`LeaderState::check_acks_all`] before appending, [`LeaderState::acks_all_outcome`] while
/// waiting.
#[derive(Clone, Debug)]
pub struct LeaderState {
    node: NodeId,
    epoch: LeaderEpoch,
    /// The leader's log end offset when it became leader: a follower below it cannot join
    /// the ISR (it may still hold another epoch's tail there).
    epoch_start_offset: Offset,
    replicas: Vec<NodeId>,
    isr: BTreeSet<NodeId>,
    followers: BTreeMap<NodeId, FollowerProgress>,
    log_end_offset: Offset,
    high_watermark: Offset,
    config: ReplicationConfig,
}

impl LeaderState {
    /// Becomes leader as `init` describes.
    ///
    /// # Panics
    /// If `init` is inconsistent: this broker not among the replicas or the ISR, an ISR member
    /// that is not a replica, a duplicate replica, a high watermark above the log end offset.
    pub fn new(init: LeaderInit) -> LeaderState {
        assert!(
            init.replicas.contains(&init.node),
            "the leader is a replica"
        );
        assert!(init.isr.contains(&init.node), "the leader is in its ISR");
        assert!(init.high_watermark <= init.log_end_offset);
        let replica_set: BTreeSet<NodeId> = init.replicas.iter().copied().collect();
        assert_eq!(
            replica_set.len(),
            init.replicas.len(),
            "replicas are distinct"
        );
        let isr: BTreeSet<NodeId> = init.isr.iter().copied().collect();
        assert!(
            isr.is_subset(&replica_set),
            "the ISR is a subset of the replicas"
        );
        let followers = init
            .replicas
            .iter()
            .filter(|&&r| r != init.node)
            .map(|&r| {
                let progress = FollowerProgress {
                    log_end_offset: None,
                    last_caught_up: init.now,
                    last_fetch: None,
                };
                (r, progress)
            })
            .collect();
        let mut state = LeaderState {
            node: init.node,
            epoch: init.epoch,
            epoch_start_offset: init.log_end_offset,
            replicas: init.replicas,
            isr,
            followers,
            log_end_offset: init.log_end_offset,
            high_watermark: init.high_watermark,
            config: init.config,
        };
        // A leader alone in its ISR commits everything it has at once.
        state.advance_high_watermark();
        state.check_invariants();
        state
    }

    /// The epoch this broker leads in.
    pub fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }

    /// The high watermark: records below it are committed.
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The in-sync replicas, in node order.
    pub fn isr(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.isr.iter().copied()
    }

    /// The partition's replicas, in assignment order.
    pub fn replicas(&self) -> &[NodeId] {
        &self.replicas
    }

    /// The log end offset `follower` last fetched at; `None` before its first fetch.
    pub fn follower_log_end_offset(&self, follower: NodeId) -> Option<Offset> {
        self.followers.get(&follower)?.log_end_offset
    }

    /// Records a local append that moved the log end offset to `log_end_offset`.
    pub fn handle_append(&mut self, log_end_offset: Offset) -> LeaderUpdate {
        assert!(
            log_end_offset >= self.log_end_offset,
            "appends only grow the log"
        );
        self.log_end_offset = log_end_offset;
        let update = LeaderUpdate {
            high_watermark: self.advance_high_watermark(),
            ..LeaderUpdate::default()
        };
        self.check_invariants();
        update
    }

    /// Records that `follower` fetched at `fetch_offset` at `now` (its log end offset), before
    /// the fetch is answered: its progress, the ISR and the high watermark follow.
    ///
    /// Errors (the fetch is answered with the code and changes nothing):
    /// `NOT_LEADER_OR_FOLLOWER` when `follower` is not one of this partition's followers,
    /// `OFFSET_OUT_OF_RANGE` when `fetch_offset` is beyond the leader's log end offset.
    pub fn handle_follower_fetch(
        &mut self,
        now: Millis,
        follower: NodeId,
        fetch_offset: Offset,
    ) -> Result<LeaderUpdate, ErrorCode> {
        let leader_end = self.log_end_offset;
        let Some(progress) = self.followers.get_mut(&follower) else {
            return Err(ErrorCode::NotLeaderOrFollower);
        };
        if fetch_offset > leader_end || fetch_offset.0 < 0 {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        // Kafka's rule for "caught up": a fetch at the leader's end offset is caught up now;
        // a fetch at the end offset the leader had at this follower's previous fetch shows it
        // was caught up then.
        if fetch_offset >= leader_end {
            progress.last_caught_up = progress.last_caught_up.max(now);
        } else if let Some((at, end_then)) = progress.last_fetch {
            if fetch_offset >= end_then {
                progress.last_caught_up = progress.last_caught_up.max(at);
            }
        }
        progress.last_fetch = Some((now, leader_end));
        progress.log_end_offset = Some(fetch_offset);

        let mut update = LeaderUpdate::default();
        // A follower rejoins once it holds everything committed and has reached this
        // leader's epoch (below its start it may still hold another leader's tail).
        if !self.isr.contains(&follower)
            && fetch_offset >= self.high_watermark
            && fetch_offset >= self.epoch_start_offset
        {
            self.isr.insert(follower);
            update.isr_added.push(follower);
        }
        update.high_watermark = self.advance_high_watermark();
        self.check_invariants();
        Ok(update)
    }

    /// Removes from the ISR the followers that have not caught up for
    /// `replica.lag.time.max.ms`; the high watermark may then advance.
    pub fn handle_tick(&mut self, now: Millis) -> LeaderUpdate {
        let lagging: Vec<NodeId> = self
            .isr
            .iter()
            .copied()
            .filter(|&r| r != self.node && self.is_out_of_sync(r, now))
            .collect();
        let mut update = LeaderUpdate::default();
        for r in &lagging {
            self.isr.remove(r);
        }
        update.isr_removed = lagging;
        update.merge(LeaderUpdate {
            high_watermark: self.advance_high_watermark(),
            ..LeaderUpdate::default()
        });
        self.check_invariants();
        update
    }

    /// When [`LeaderState::handle_tick`] could next remove a follower from the ISR; `None`
    /// when every ISR follower is caught up (or there is none).
    pub fn next_deadline(&self) -> Option<Millis> {
        self.isr
            .iter()
            .filter(|&&r| r != self.node)
            .filter_map(|r| {
                let p = &self.followers[r];
                (p.log_end_offset != Some(self.log_end_offset)).then_some(Millis(
                    p.last_caught_up.0 + self.config.replica_lag_time_max_ms + 1,
                ))
            })
            .min()
    }

    /// Whether an acks=all produce may be appended: `NOT_ENOUGH_REPLICAS` while the ISR is
    /// smaller than `min_insync_replicas`.
    pub fn check_acks_all(&self, min_insync_replicas: usize) -> Result<(), ErrorCode> {
        if self.isr.len() < min_insync_replicas {
            return Err(ErrorCode::NotEnoughReplicas);
        }
        Ok(())
    }

    /// The answer for an acks=all produce whose records end before `next_offset`: `None`
    /// while it must wait (not yet committed); `NOT_ENOUGH_REPLICAS_AFTER_APPEND` when it
    /// was committed by an ISR smaller than `min_insync_replicas`.
    pub fn acks_all_outcome(
        &self,
        next_offset: Offset,
        min_insync_replicas: usize,
    ) -> Option<Result<(), ErrorCode>> {
        if self.high_watermark < next_offset {
            return None;
        }
        if self.isr.len() < min_insync_replicas {
            return Some(Err(ErrorCode::NotEnoughReplicasAfterAppend));
        }
        Some(Ok(()))
    }

    fn is_out_of_sync(&self, follower: NodeId, now: Millis) -> bool {
        let p = &self.followers[&follower];
        p.log_end_offset != Some(self.log_end_offset)
            && now.since(p.last_caught_up) > self.config.replica_lag_time_max_ms
    }

    /// Moves the high watermark up to the smallest log end offset in the ISR, if that is
    /// higher; returns the new value when it moved. It never moves down.
    fn advance_high_watermark(&mut self) -> Option<Offset> {
        let mut candidate = self.log_end_offset;
        for r in self.isr.iter().filter(|&&r| r != self.node) {
            match self.followers[r].log_end_offset {
                // An ISR member that has not fetched yet may hold less than the leader knows
                // to be committed: wait for it (or for it to leave the ISR).
                None => return None,
                Some(end) => candidate = candidate.min(end),
            }
        }
        (candidate > self.high_watermark).then(|| {
            self.high_watermark = candidate;
            candidate
        })
    }

    fn check_invariants(&self) {
        debug_assert!(self.isr.contains(&self.node), "the leader stays in its ISR");
        debug_assert!(self.isr.iter().all(|r| self.replicas.contains(r)));
        debug_assert!(self.high_watermark <= self.log_end_offset);
        debug_assert!(self.epoch_start_offset <= self.log_end_offset);
        debug_assert_eq!(self.followers.len() + 1, self.replicas.len());
        debug_assert!(self
            .followers
            .values()
            .all(|p| p.log_end_offset.is_none_or(|e| e <= self.log_end_offset)));
    }
}

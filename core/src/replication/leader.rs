//! The leader's side: follower progress, the ISR and the high watermark.

use std::collections::{BTreeMap, BTreeSet};

use super::{divergence, ReplicationConfig};
use crate::error::ErrorCode;
use crate::log::EpochEnd;
use crate::planted::{is_planted, PlantedBug};
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
    /// Its log end offset now: where its epoch starts. The driver records the new epoch at
    /// this offset in the log's leader-epoch cache (Kafka's `maybeAssignEpochStartOffset`),
    /// so a follower that fetches with this epoch before any batch of it exists is answered
    /// from the cache, not as an unknown epoch.
    pub log_end_offset: Offset,
    /// Its high watermark now (a follower's is at most the old leader's).
    pub high_watermark: Offset,
    /// The time it became leader: the inherited ISR members count as caught up now.
    pub now: Millis,
    /// The topic's `min.insync.replicas`.
    pub min_insync_replicas: usize,
    /// Replication settings.
    pub config: ReplicationConfig,
}

/// A follower's Fetch for one partition, as the leader checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerFetch {
    /// The follower (the Fetch's replica id).
    pub follower: NodeId,
    /// The offset it fetches at: its log end offset.
    pub fetch_offset: Offset,
    /// The epoch of its last batch (Fetch v12+), for the divergence check.
    pub last_fetched_epoch: Option<LeaderEpoch>,
    /// Whether its broker may join ISRs: registered and unfenced. A fenced broker that still
    /// fetches (stopping in a controlled shutdown, or cut off from the controller) is served
    /// but neither rejoins the ISR nor counts as caught up, so it never holds the high
    /// watermark back once it is gone (KIP-841).
    pub eligible: bool,
}

/// How the leader answers a follower fetch that passed its checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchVerdict {
    /// Serve records from the fetch offset; the follower's progress was recorded.
    Serve(LeaderUpdate),
    /// Answer with this epoch end instead of records; nothing was recorded (the follower's
    /// log past it is not the leader's).
    Diverging(EpochEnd),
}

/// What one input changed, for the driver to act on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderUpdate {
    /// The new high watermark, when it advanced.
    pub high_watermark: Option<Offset>,
    /// Followers that joined the ISR this leader wants ([`LeaderState::isr_proposal`]).
    pub isr_added: Vec<NodeId>,
    /// Followers that left the ISR this leader wants.
    pub isr_removed: Vec<NodeId>,
}

impl LeaderUpdate {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.high_watermark.is_none() && self.isr_added.is_empty() && self.isr_removed.is_empty()
    }
}

/// A follower as its leader sees it.
#[derive(Clone, Copy, Debug, Default)]
struct FollowerProgress {
    /// The offset it last fetched at (its log end offset), unknown until it fetches.
    log_end_offset: Option<Offset>,
    /// The last time its log end offset reached the leader's; `None`: not since this broker
    /// became leader (and it was not in the ISR then).
    last_caught_up: Option<Millis>,
    /// Its previous fetch: when, and the leader's log end offset then.
    last_fetch: Option<(Millis, Offset)>,
}

/// A partition's leader: its followers' progress, the ISR and the high watermark.
///
/// The leader decides which followers should be in sync (the *wanted* ISR), but only the
/// controller records the ISR (the *committed* one, which elections choose from). Until a
/// change is committed the leader counts both: the high watermark waits for every member of
/// either (Kafka's "maximal ISR"), so a follower it is dropping still holds the watermark
/// until the controller agrees it may no longer be elected; acks=all counts the committed
/// ISR only.
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
    /// The ISR this leader wants recorded.
    isr: BTreeSet<NodeId>,
    /// The ISR the controller recorded.
    committed_isr: BTreeSet<NodeId>,
    followers: BTreeMap<NodeId, FollowerProgress>,
    log_end_offset: Offset,
    high_watermark: Offset,
    min_insync_replicas: usize,
    /// Replicas a reassignment is removing (still among `replicas`): `min.insync.replicas`
    /// is clamped to the replicas the partition keeps, not the widened set.
    moving_out: usize,
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
                // Kafka's `resetReplicaState`: the inherited ISR counts as caught up now, the
                // others as never, so a dead follower outside the ISR holds nothing back.
                let progress = FollowerProgress {
                    log_end_offset: None,
                    last_caught_up: isr.contains(&r).then_some(init.now),
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
            committed_isr: isr.clone(),
            isr,
            followers,
            log_end_offset: init.log_end_offset,
            high_watermark: init.high_watermark,
            min_insync_replicas: init.min_insync_replicas,
            moving_out: 0,
            config: init.config,
        };
        // A leader alone in its ISR commits everything it has at once.
        state.advance_high_watermark(init.now);
        state.check_invariants();
        state
    }

    /// This broker, the leader.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The epoch this broker leads in.
    pub fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }

    /// The log end offset when this broker became leader: its epoch starts there.
    pub fn epoch_start_offset(&self) -> Offset {
        self.epoch_start_offset
    }

    /// The high watermark: records below it are committed.
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The in-sync replicas as the controller recorded them, in node order.
    pub fn isr(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.committed_isr.iter().copied()
    }

    /// The ISR this leader wants the controller to record (an AlterPartition to send), in
    /// node order; `None` when it is the committed one.
    pub fn isr_proposal(&self) -> Option<Vec<NodeId>> {
        (self.isr != self.committed_isr).then(|| self.isr.iter().copied().collect())
    }

    /// The controller recorded `isr` for this leader's epoch (its answer to an
    /// AlterPartition, or a change of its own such as fencing a follower). The leader takes
    /// it as both the committed and the wanted ISR; followers that should join or leave
    /// show up again at their next fetch or tick. The high watermark may move.
    ///
    /// # Panics
    /// If `isr` lacks this leader or names a non-replica (the cluster image refuses such
    /// records).
    pub fn commit_isr(&mut self, now: Millis, isr: &[NodeId]) -> LeaderUpdate {
        let isr: BTreeSet<NodeId> = isr.iter().copied().collect();
        assert!(isr.contains(&self.node), "the leader is in its ISR");
        assert!(isr.iter().all(|r| self.replicas.contains(r)));
        for (&r, progress) in &mut self.followers {
            if isr.contains(&r) && !self.committed_isr.contains(&r) && !self.isr.contains(&r) {
                // Put in the ISR by the controller without this leader asking: in sync from
                // now, as an inherited member is.
                progress.last_caught_up = Some(now);
            }
            if !isr.contains(&r) && self.committed_isr.contains(&r) {
                // Taken out by the controller (fenced: its process died or stopped): it no
                // longer holds the high watermark back as a caught-up follower until it
                // catches up again (Kafka's KIP-841 leaves fenced brokers out the same way).
                progress.last_caught_up = None;
            }
        }
        self.committed_isr = isr.clone();
        self.isr = isr;
        self.watermark_update(now)
    }

    /// The controller changed the partition's replicas under this leader (a reassignment
    /// added or removed some): new followers start as never caught up, removed ones are
    /// forgotten. Call before [`LeaderState::commit_isr`] with the same record's ISR.
    ///
    /// # Panics
    /// If `replicas` lacks this leader or repeats a node.
    pub fn set_replicas(&mut self, replicas: &[NodeId]) {
        assert!(replicas.contains(&self.node), "the leader is a replica");
        let set: BTreeSet<NodeId> = replicas.iter().copied().collect();
        assert_eq!(set.len(), replicas.len(), "replicas are distinct");
        self.followers.retain(|r, _| set.contains(r));
        self.isr.retain(|r| set.contains(r));
        self.committed_isr.retain(|r| set.contains(r));
        for &r in replicas.iter().filter(|&&r| r != self.node) {
            self.followers.entry(r).or_insert(FollowerProgress {
                log_end_offset: None,
                last_caught_up: None,
                last_fetch: None,
            });
        }
        self.replicas = replicas.to_vec();
        self.check_invariants();
    }

    /// The partition's replicas, in assignment order.
    pub fn replicas(&self) -> &[NodeId] {
        &self.replicas
    }

    /// The log end offset `follower` last fetched at; `None` before its first fetch.
    pub fn follower_log_end_offset(&self, follower: NodeId) -> Option<Offset> {
        self.followers.get(&follower)?.log_end_offset
    }

    /// Records a local append at `now` that moved the log end offset to `log_end_offset`.
    pub fn handle_append(&mut self, now: Millis, log_end_offset: Offset) -> LeaderUpdate {
        assert!(
            log_end_offset >= self.log_end_offset,
            "appends only grow the log"
        );
        self.log_end_offset = log_end_offset;
        self.watermark_update(now)
    }

    /// Checks a follower's fetch and, when it is served, records the follower's progress
    /// (the ISR and the high watermark follow) — before the fetch is answered.
    ///
    /// `epoch_end` is the leader's leader-epoch-cache lookup (`end_offset_for`), asked only
    /// for the fetch's `last_fetched_epoch`; `log_start_offset` is the leader's. Kafka's order:
    /// the epochs are compared first, so a follower holding another leader's longer tail is
    /// told where to truncate rather than that it is out of range.
    ///
    /// Errors (the fetch is answered with the code and changes nothing):
    /// `NOT_LEADER_OR_FOLLOWER` when `follower` is not one of this partition's followers;
    /// `OFFSET_OUT_OF_RANGE` when the leader has no end for the follower's epoch, or the fetch
    /// offset is outside the leader's log.
    pub fn handle_follower_fetch(
        &mut self,
        now: Millis,
        fetch: FollowerFetch,
        epoch_end: impl FnOnce(LeaderEpoch) -> EpochEnd,
        log_start_offset: Offset,
    ) -> Result<FetchVerdict, ErrorCode> {
        let leader_end = self.log_end_offset;
        if let std::collections::btree_map::Entry::Vacant(stranger) =
            self.followers.entry(fetch.follower)
        {
            if !is_planted(PlantedBug::ZombieReplicaRejoins) {
                return Err(ErrorCode::NotLeaderOrFollower);
            }
            // Planted bug: a broker outside the replicas is served as a follower.
            stranger.insert(FollowerProgress::default());
        }
        if let Some(last) = fetch.last_fetched_epoch {
            if let Some(diverging) = divergence(fetch.fetch_offset, last, epoch_end(last))? {
                return Ok(FetchVerdict::Diverging(diverging));
            }
        }
        if fetch.fetch_offset > leader_end || fetch.fetch_offset < log_start_offset {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        let progress = self
            .followers
            .get_mut(&fetch.follower)
            .expect("checked above");
        // Kafka's rule for "caught up": a fetch at the leader's end offset is caught up now;
        // a fetch at the end offset the leader had at this follower's previous fetch shows it
        // was caught up then.
        let caught_up_at = if fetch.fetch_offset >= leader_end {
            Some(now)
        } else {
            progress
                .last_fetch
                .filter(|&(_, end_then)| fetch.fetch_offset >= end_then)
                .map(|(at, _)| at)
        };
        match caught_up_at {
            _ if !fetch.eligible => progress.last_caught_up = None,
            Some(at) => {
                progress.last_caught_up = Some(progress.last_caught_up.map_or(at, |t| t.max(at)))
            }
            None => {}
        }
        progress.last_fetch = Some((now, leader_end));
        progress.log_end_offset = Some(fetch.fetch_offset);

        let mut update = LeaderUpdate::default();
        // A follower rejoins once it holds everything committed and has reached this
        // leader's epoch (below its start it may still hold another leader's tail).
        if fetch.eligible
            && !self.isr.contains(&fetch.follower)
            && fetch.fetch_offset >= self.high_watermark
            && fetch.fetch_offset >= self.epoch_start_offset
        {
            self.isr.insert(fetch.follower);
            update.isr_added.push(fetch.follower);
            // It holds everything committed: in sync as of now, so it is not dropped at the
            // next tick for a catch-up it never needed (the ISR flapping Kafka can show when
            // the watermark trails the leader's end).
            let progress = self
                .followers
                .get_mut(&fetch.follower)
                .expect("checked above");
            progress.last_caught_up = Some(progress.last_caught_up.map_or(now, |t| t.max(now)));
        }
        update.high_watermark = self.advance_high_watermark(now);
        self.check_invariants();
        Ok(FetchVerdict::Serve(update))
    }

    /// Removes from the ISR the followers that have not caught up for
    /// `replica.lag.time.max.ms`; the high watermark may then advance.
    pub fn handle_tick(&mut self, now: Millis) -> LeaderUpdate {
        let lagging: Vec<NodeId> = self
            .isr
            .iter()
            .copied()
            .filter(|&r| r != self.node && !self.is_caught_up(r, now))
            .collect();
        for r in &lagging {
            self.isr.remove(r);
        }
        // Time also ends a non-ISR follower's "caught up", which may release the watermark.
        LeaderUpdate {
            isr_removed: lagging,
            ..self.watermark_update(now)
        }
    }

    /// When [`LeaderState::handle_tick`] could next change something (a follower leaving the
    /// ISR or ceasing to count as caught up); `None` when nothing is waiting on time. Every
    /// input may move it, even one whose update is empty: re-read it after each call.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.followers
            .values()
            .filter(|p| p.log_end_offset != Some(self.log_end_offset))
            .filter_map(|p| {
                let at = p.last_caught_up?;
                Some(Millis(at.0 + self.config.replica_lag_time_max_ms + 1))
            })
            .min()
    }

    /// Takes a new `min.insync.replicas` (an AlterConfigs); the watermark may move.
    pub fn set_min_insync_replicas(
        &mut self,
        now: Millis,
        min_insync_replicas: usize,
    ) -> LeaderUpdate {
        self.min_insync_replicas = min_insync_replicas;
        self.watermark_update(now)
    }

    /// `min.insync.replicas` as Kafka applies it: never more than the replicas there are
    /// (those a reassignment keeps, while one moves).
    pub fn effective_min_insync_replicas(&self) -> usize {
        let kept = self.replicas.len().saturating_sub(self.moving_out).max(1);
        self.min_insync_replicas.clamp(1, kept)
    }

    /// How many of the replicas a reassignment is removing (0 when none moves).
    pub fn set_moving_out(&mut self, count: usize) {
        self.moving_out = count.min(self.replicas.len().saturating_sub(1));
    }

    /// Whether an acks=all produce may be appended: `NOT_ENOUGH_REPLICAS` while the ISR is
    /// smaller than the effective `min.insync.replicas`.
    pub fn check_acks_all(&self) -> Result<(), ErrorCode> {
        if self.committed_isr.len() < self.effective_min_insync_replicas() {
            return Err(ErrorCode::NotEnoughReplicas);
        }
        Ok(())
    }

    /// The answer for an acks=all produce whose records end before `next_offset`: `None`
    /// while it must wait (not yet committed); `NOT_ENOUGH_REPLICAS_AFTER_APPEND` when the
    /// ISR is smaller than the effective `min.insync.replicas` once it is committed.
    pub fn acks_all_outcome(&self, next_offset: Offset) -> Option<Result<(), ErrorCode>> {
        if self.high_watermark < next_offset {
            return None;
        }
        if self.committed_isr.len() < self.effective_min_insync_replicas() {
            return Some(Err(ErrorCode::NotEnoughReplicasAfterAppend));
        }
        Some(Ok(()))
    }

    /// Kafka's `isCaughtUp`: at the leader's log end, or caught up within the lag time.
    fn is_caught_up(&self, follower: NodeId, now: Millis) -> bool {
        let p = &self.followers[&follower];
        p.log_end_offset == Some(self.log_end_offset)
            || p.last_caught_up
                .is_some_and(|t| now.since(t) <= self.config.replica_lag_time_max_ms)
    }

    /// Ends an input that can only move the watermark: advances it, checks the invariants.
    fn watermark_update(&mut self, now: Millis) -> LeaderUpdate {
        let update = LeaderUpdate {
            high_watermark: self.advance_high_watermark(now),
            ..LeaderUpdate::default()
        };
        self.check_invariants();
        update
    }

    /// Moves the high watermark up to the smallest log end offset among the maximal ISR (the
    /// committed and the wanted ISR together) and the caught-up followers outside it (Kafka's
    /// `maybeIncrementLeaderHW`: counting those lets a follower that keeps up under load reach
    /// the watermark and rejoin), if that is higher; returns the new value when it moved. It
    /// never moves down, and not at all while the committed ISR is smaller than the effective
    /// `min.insync.replicas` (Kafka 3.7+, KAFKA-15583: consumers never see records fewer
    /// replicas hold).
    fn advance_high_watermark(&mut self, now: Millis) -> Option<Offset> {
        if self.committed_isr.len() < self.effective_min_insync_replicas() {
            return None;
        }
        let mut candidate = self.log_end_offset;
        for (&r, p) in &self.followers {
            if self.isr.contains(&r) || self.committed_isr.contains(&r) {
                match p.log_end_offset {
                    // An ISR member that has not fetched yet may hold less than the leader
                    // knows to be committed: wait for it (or for it to leave the ISR).
                    None => return None,
                    Some(end) => candidate = candidate.min(end),
                }
            } else if let Some(end) = p.log_end_offset {
                if self.is_caught_up(r, now) {
                    candidate = candidate.min(end);
                }
            }
        }
        (candidate > self.high_watermark).then(|| {
            self.high_watermark = candidate;
            candidate
        })
    }

    fn check_invariants(&self) {
        debug_assert!(self.isr.contains(&self.node), "the leader stays in its ISR");
        debug_assert!(self.committed_isr.contains(&self.node));
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

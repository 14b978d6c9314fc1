//! The follower's side and log reconciliation after a leader change (KIP-101, KIP-279,
//! KIP-320).

use crate::types::{LeaderEpoch, NodeId, Offset};

/// Where a follower's log stops agreeing with its leader's: the leader's end offset of an
/// epoch (the epoch may be older than the one asked about when the leader never had it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DivergingEpoch {
    /// The latest epoch in the leader's history not after the follower's last fetched epoch;
    /// -1 when the leader has none.
    pub epoch: LeaderEpoch,
    /// Where that epoch ends in the leader's log (the next epoch's start, or the leader's log
    /// end offset for its latest epoch); -1 when unknown.
    pub end_offset: Offset,
}

/// The leader's check of a follower fetch (KIP-320): `None` when the follower's log agrees
/// with the leader's up to `fetch_offset` and the fetch is served; otherwise the epoch end
/// offset to answer with instead of records.
///
/// `last_fetched_epoch` is the epoch of the follower's last batch (`None`: empty log, or a
/// client that does not send it); `leader_end_for_epoch` is the leader's leader-epoch-cache
/// lookup for it, (-1, -1) when undefined.
pub fn divergence(
    fetch_offset: Offset,
    last_fetched_epoch: Option<LeaderEpoch>,
    leader_end_for_epoch: DivergingEpoch,
) -> Option<DivergingEpoch> {
    let last = last_fetched_epoch?;
    let found = leader_end_for_epoch;
    // The leader never had that epoch (it answers an older one), or the epoch ended in its
    // log before the follower's end: the follower holds a tail the leader does not.
    (found.epoch < last || found.end_offset < fetch_offset).then_some(found)
}

/// Where a follower truncates its log after the leader reported [`DivergingEpoch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// The new log end offset.
    pub offset: Offset,
    /// False when the follower only knows an older epoch than the leader's answer: it truncates
    /// to that epoch's end and fetches again, and the leader may report a further divergence.
    pub complete: bool,
}

/// The follower's side of reconciliation (Kafka's `getOffsetTruncationState`).
///
/// `local_end_for_epoch` is the follower's own leader-epoch-cache lookup for
/// `diverging.epoch` (`None` when its history has no epoch at or below it);
/// `high_watermark` is the follower's, the fallback when the leader knows no end offset.
pub fn truncation_offset(
    diverging: DivergingEpoch,
    local_end_for_epoch: Option<DivergingEpoch>,
    log_end_offset: Offset,
    high_watermark: Offset,
) -> Truncation {
    let (offset, complete) = if diverging.end_offset.0 < 0 || diverging.epoch.0 < 0 {
        // The leader has no history to compare with: keep only what is committed.
        (high_watermark, true)
    } else {
        match local_end_for_epoch {
            Some(local) if local.epoch == diverging.epoch => {
                (diverging.end_offset.min(local.end_offset), true)
            }
            // The follower never had the leader's epoch: cut back to the end of the latest one
            // it had below it, and ask again from there.
            Some(local) => (local.end_offset, false),
            None => (diverging.end_offset, true),
        }
    };
    Truncation {
        offset: offset.min(log_end_offset),
        complete,
    }
}

/// What a follower puts in its Fetch for one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchPosition {
    /// The leader to fetch from.
    pub leader: NodeId,
    /// The leader epoch the follower believes current: a leader with another epoch fences the
    /// fetch (FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH).
    pub current_leader_epoch: LeaderEpoch,
    /// The follower's log end offset.
    pub fetch_offset: Offset,
    /// The epoch of the follower's last batch, for the leader's divergence check.
    pub last_fetched_epoch: Option<LeaderEpoch>,
}

/// A partition's follower: which leader and epoch it follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerState {
    leader: NodeId,
    epoch: LeaderEpoch,
}

impl FollowerState {
    /// Follows `leader` in `epoch`.
    pub fn new(leader: NodeId, epoch: LeaderEpoch) -> FollowerState {
        FollowerState { leader, epoch }
    }

    /// The leader followed.
    pub fn leader(&self) -> NodeId {
        self.leader
    }

    /// The epoch followed.
    pub fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }

    /// The next fetch for a log that ends at `log_end_offset` with `latest_epoch` as its last
    /// batch's epoch.
    pub fn fetch_position(
        &self,
        log_end_offset: Offset,
        latest_epoch: Option<LeaderEpoch>,
    ) -> FetchPosition {
        FetchPosition {
            leader: self.leader,
            current_leader_epoch: self.epoch,
            fetch_offset: log_end_offset,
            last_fetched_epoch: latest_epoch,
        }
    }

    /// The high watermark a follower keeps after a fetch: the leader's, but never above its
    /// own log end offset (it cannot have committed what it does not hold).
    pub fn high_watermark_after_fetch(
        leader_high_watermark: Offset,
        log_end_offset: Offset,
    ) -> Offset {
        leader_high_watermark.min(log_end_offset)
    }
}

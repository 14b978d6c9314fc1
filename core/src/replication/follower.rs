//! The follower's side and log reconciliation after a leader change (KIP-101, KIP-279,
//! KIP-320).

use crate::error::ErrorCode;
use crate::log::EpochEnd;
use crate::types::{LeaderEpoch, NodeId, Offset};

/// The leader's check of a follower fetch (KIP-320): `Ok(None)` when the follower's log
/// agrees with the leader's up to `fetch_offset`; `Ok(Some(end))` when the follower holds a
/// tail the leader does not, with the epoch end to answer instead of records;
/// `OFFSET_OUT_OF_RANGE` when the leader's history has no end for the epoch at all.
///
/// `last_fetched_epoch` is the epoch of the follower's last batch; `leader_end_for_epoch`
/// is the leader's leader-epoch-cache lookup for it, (-1, -1) when undefined.
pub fn divergence(
    fetch_offset: Offset,
    last_fetched_epoch: LeaderEpoch,
    leader_end_for_epoch: EpochEnd,
) -> Result<Option<EpochEnd>, ErrorCode> {
    let found = leader_end_for_epoch;
    if found.epoch.0 < 0 || found.end_offset.0 < 0 {
        return Err(ErrorCode::OffsetOutOfRange);
    }
    // The leader never had that epoch (it answers an older one), or the epoch ended in its
    // log before the follower's end: the follower holds a tail the leader does not.
    let diverged = found.epoch < last_fetched_epoch || found.end_offset < fetch_offset;
    Ok(diverged.then_some(found))
}

/// Where a follower truncates its log after the leader reported [`EpochEnd`].
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
/// `diverging.epoch` (`None` when its history has no epoch at or below it).
pub fn truncation_offset(
    diverging: EpochEnd,
    local_end_for_epoch: Option<EpochEnd>,
    log_end_offset: Offset,
) -> Truncation {
    let (offset, complete) = match local_end_for_epoch {
        Some(local) if local.epoch == diverging.epoch => {
            (diverging.end_offset.min(local.end_offset), true)
        }
        // The follower never had the leader's epoch: cut back to the end of the latest one it
        // had below it, and ask again from there.
        Some(local) => (local.end_offset, false),
        None => (diverging.end_offset, true),
    };
    Truncation {
        offset: offset.min(log_end_offset),
        complete,
    }
}

/// Where a follower goes when its leader answers `OFFSET_OUT_OF_RANGE` (Kafka's
/// `fetchOffsetAndTruncate`): back to the leader's log end when it is ahead of it (a tail the
/// leader never had), otherwise — it fell below the leader's log start — an empty log
/// starting at the leader's log start.
pub fn out_of_range_reset(
    log_end_offset: Offset,
    leader_log_start_offset: Offset,
    leader_log_end_offset: Offset,
) -> OutOfRangeReset {
    if leader_log_end_offset < log_end_offset {
        OutOfRangeReset::TruncateTo(leader_log_end_offset)
    } else {
        OutOfRangeReset::StartAt(leader_log_start_offset)
    }
}

/// What [`out_of_range_reset`] tells the follower to do with its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOfRangeReset {
    /// Truncate to this offset and fetch from there.
    TruncateTo(Offset),
    /// Drop the whole log and start it empty at this offset.
    StartAt(Offset),
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

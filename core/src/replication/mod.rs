//! Partition replication, Kafka's in-sync-replica protocol: what a partition's leader knows
//! of its followers, and how a follower reconciles its log with a new leader's.
//!
//! A partition has one leader and zero or more followers, all named in its replica list.
//! Followers copy the leader's log by fetching from it (a Fetch carrying their replica id);
//! the leader learns each follower's log end offset from the offset it fetches at, keeps the
//! in-sync replica set (ISR: the replicas that caught up with it within
//! `replica.lag.time.max.ms`) and advances the high watermark to the smallest log end offset
//! in the ISR. Records below the high watermark are committed: consumers see only those, and
//! an acks=all produce is answered once the high watermark passes its last record.
//!
//! After a leader change, a follower's log may hold a tail the new leader never had (it was
//! appended by the old leader and not committed). Every batch carries the epoch of the leader
//! that appended it, and each log keeps its epoch history (the leader-epoch cache); a
//! follower fetches with the epoch of its last batch, the leader answers with the end of that
//! epoch in its own history when the follower's log goes past it ([`divergence`], KIP-320),
//! and the follower truncates to where the two histories agree ([`truncation_offset`],
//! KIP-101/279) before fetching again.
//!
//! This module decides; it stores nothing and sends nothing.
//!
//! **API boundary:** [`LeaderState`] is driven by the broker that leads the partition, in
//! this order: [`LeaderState::new`] when it becomes leader; [`LeaderState::handle_append`]
//! after each local append; [`LeaderState::handle_follower_fetch`] for each follower fetch,
//! before answering it (it also runs the divergence check); [`LeaderState::handle_tick`] at
//! [`LeaderState::next_deadline`], re-read after every call. Each
//! returns a [`LeaderUpdate`]: a new high watermark (release parked acks=all produces and
//! fetches; store it in the log) and changes to the ISR the leader wants. Only the controller
//! records an ISR: the driver sends [`LeaderState::isr_proposal`] (Kafka's AlterPartition,
//! one at a time) and hands the recorded ISR back with [`LeaderState::commit_isr`]; until
//! then the high watermark waits for the members of both. A follower's driver uses
//! [`FollowerState`] for its fetch position and the two reconciliation functions.

mod follower;
mod leader;
#[cfg(test)]
mod tests;

pub use follower::{
    divergence, out_of_range_reset, truncation_offset, FetchPosition, FollowerState,
    OutOfRangeReset, Truncation,
};
pub use leader::{FetchVerdict, FollowerFetch, LeaderInit, LeaderState, LeaderUpdate};

/// Replication settings shared by every partition of a broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms`: a follower that has not caught up with the leader's log end
    /// offset for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
}

impl Default for ReplicationConfig {
    fn default() -> ReplicationConfig {
        ReplicationConfig {
            replica_lag_time_max_ms: 30_000,
        }
    }
}

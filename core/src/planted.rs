//! Deliberately wrong behaviours that the simulator switches on (`scripts/sim --plant-bug`)
//! to prove its checkers can fail. Nothing but the simulator ever plants one; with none
//! planted every check below is a single relaxed atomic load.

use std::sync::atomic::{AtomicU32, Ordering};

static PLANTED: AtomicU32 = AtomicU32::new(0);

/// A bug that can be planted in core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum PlantedBug {
    /// Recovery accepts batches without checking their CRC.
    SkipRecoveryCrc = 1,
    /// The flush policy reports appends as synced without syncing them.
    AckBeforeSync = 2,
    /// Recovery drops the last batch of the active segment even when it is intact.
    DropTailOnRecovery = 4,
    /// The group coordinator accepts offset commits from members of past generations.
    AcceptStaleCommits = 8,
    /// A roll creates the new segment's files without syncing the directory.
    SkipDirSync = 16,
    /// A failed sync is retried, and the retry's success believed (fsyncgate).
    IgnoreSyncError = 32,
    /// The broker appends an idempotent producer's retried batch again.
    AcceptDuplicates = 64,
    /// The group coordinator never expires a member whose heartbeats stopped.
    SkipSessionExpiry = 128,
    /// Reads serve stored bytes without checking the CRCs of batches not checked since open.
    ServeUnverified = 256,
    /// The controller elects any live replica, in sync or not (unclean leader election).
    UncleanElection = 512,
    /// A leader answers acks=all once the records are in its own log, not its followers'.
    AckOnLeaderAppend = 1024,
    /// A broker that starts to lead a `__consumer_offsets` partition answers for its groups
    /// without replaying the partition's log.
    CoordinatorSkipsLoad = 2048,
    /// A replica that becomes a follower (a new leader or epoch, or a restart) cuts its log
    /// back to its high watermark instead of reconciling by leader epoch (pre-KIP-101).
    TruncateToHighWatermark = 4096,
    /// A diverged follower truncates to the leader's epoch end without comparing it with its
    /// own end of that epoch (pre-KIP-279).
    TruncateToLeaderEpochEnd = 8192,
    /// A broker registering after its machine lost power stays in the ISRs and ELRs it was in
    /// (the controller skips forgetting it: KIP-966's unclean-shutdown rule).
    PowerLostReplicaStaysEligible = 16384,
    /// A reassignment completes — the old replicas removed — as soon as it starts, before the
    /// new replicas have caught up.
    ReassignBeforeCaughtUp = 32768,
    /// A leader takes fetches from a broker no longer among the partition's replicas (a
    /// zombie a reassignment removed) as a follower's, and the controller takes it back as
    /// a replica when the leader asks to add it to the ISR (KIP-320's fence skipped).
    ZombieReplicaRejoins = 65536,
    /// A read_committed Fetch reads up to the high watermark and lists no aborted
    /// transactions, as a read_uncommitted one.
    ReadCommittedPastStable = 131072,
    /// A partition takes a transactional producer's batches and markers from an epoch older
    /// than the one it has seen (a fenced zombie's writes).
    AcceptZombieEpoch = 262144,
}

impl PlantedBug {
    /// Every plantable bug.
    pub const ALL: [PlantedBug; 19] = [
        PlantedBug::SkipRecoveryCrc,
        PlantedBug::AckBeforeSync,
        PlantedBug::DropTailOnRecovery,
        PlantedBug::AcceptStaleCommits,
        PlantedBug::SkipDirSync,
        PlantedBug::IgnoreSyncError,
        PlantedBug::AcceptDuplicates,
        PlantedBug::SkipSessionExpiry,
        PlantedBug::ServeUnverified,
        PlantedBug::UncleanElection,
        PlantedBug::AckOnLeaderAppend,
        PlantedBug::CoordinatorSkipsLoad,
        PlantedBug::TruncateToHighWatermark,
        PlantedBug::TruncateToLeaderEpochEnd,
        PlantedBug::PowerLostReplicaStaysEligible,
        PlantedBug::ReassignBeforeCaughtUp,
        PlantedBug::ZombieReplicaRejoins,
        PlantedBug::ReadCommittedPastStable,
        PlantedBug::AcceptZombieEpoch,
    ];

    /// The bug's name on the simulator's command line.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::SkipRecoveryCrc => "skip-recovery-crc",
            PlantedBug::AckBeforeSync => "ack-before-sync",
            PlantedBug::DropTailOnRecovery => "drop-tail-on-recovery",
            PlantedBug::AcceptStaleCommits => "accept-stale-commits",
            PlantedBug::SkipDirSync => "skip-dir-sync",
            PlantedBug::IgnoreSyncError => "ignore-sync-error",
            PlantedBug::AcceptDuplicates => "accept-duplicates",
            PlantedBug::SkipSessionExpiry => "skip-session-expiry",
            PlantedBug::ServeUnverified => "serve-unverified",
            PlantedBug::UncleanElection => "unclean-election",
            PlantedBug::AckOnLeaderAppend => "ack-on-leader-append",
            PlantedBug::CoordinatorSkipsLoad => "coordinator-skips-load",
            PlantedBug::TruncateToHighWatermark => "truncate-to-high-watermark",
            PlantedBug::TruncateToLeaderEpochEnd => "truncate-to-leader-epoch-end",
            PlantedBug::PowerLostReplicaStaysEligible => "power-lost-replica-stays-eligible",
            PlantedBug::ReassignBeforeCaughtUp => "reassign-before-caught-up",
            PlantedBug::ZombieReplicaRejoins => "zombie-replica-rejoins",
            PlantedBug::ReadCommittedPastStable => "read-committed-past-stable",
            PlantedBug::AcceptZombieEpoch => "accept-zombie-epoch",
        }
    }

    /// The bug with this name.
    pub fn from_name(name: &str) -> Option<PlantedBug> {
        PlantedBug::ALL.into_iter().find(|bug| bug.name() == name)
    }

    /// What the bug breaks, for `--list-planted-bugs`.
    pub fn description(self) -> &'static str {
        match self {
            PlantedBug::SkipRecoveryCrc => "recovery keeps batches whose CRC does not match",
            PlantedBug::AckBeforeSync => "flush.messages=1 acknowledges before the data is synced",
            PlantedBug::DropTailOnRecovery => "recovery drops the last intact batch",
            PlantedBug::AcceptStaleCommits => {
                "the group coordinator takes commits from members of old generations"
            }
            PlantedBug::SkipDirSync => {
                "a roll does not sync the directory, so a new segment's name may not survive"
            }
            PlantedBug::IgnoreSyncError => {
                "a failed sync is retried and its success believed (fsyncgate)"
            }
            PlantedBug::AcceptDuplicates => {
                "the broker appends an idempotent producer's retried batch again"
            }
            PlantedBug::SkipSessionExpiry => {
                "the group coordinator keeps members whose heartbeats stopped"
            }
            PlantedBug::ServeUnverified => {
                "reads serve stored batches without checking their CRC (bit rot reaches clients)"
            }
            PlantedBug::UncleanElection => {
                "the controller elects a live replica that is neither in sync nor eligible (3-node run)"
            }
            PlantedBug::AckOnLeaderAppend => {
                "acks=all is answered once the leader appended, before its followers (3-node run)"
            }
            PlantedBug::CoordinatorSkipsLoad => {
                "a new group coordinator answers without loading __consumer_offsets (3-node run)"
            }
            PlantedBug::TruncateToHighWatermark => {
                "a new follower truncates to its high watermark, not by leader epoch (pre-KIP-101; 3-node run)"
            }
            PlantedBug::TruncateToLeaderEpochEnd => {
                "a diverged follower truncates to the leader's epoch end, ignoring its own (pre-KIP-279; 3-node run)"
            }
            PlantedBug::PowerLostReplicaStaysEligible => {
                "a broker back from a power loss stays in the ISR and ELR (KIP-966; 3-node run)"
            }
            PlantedBug::ReassignBeforeCaughtUp => {
                "a reassignment drops the old replicas before the new ones caught up (3-node run)"
            }
            PlantedBug::ZombieReplicaRejoins => {
                "a removed replica that still fetches is served and taken back into the ISR (KIP-320; 3-node run)"
            }
            PlantedBug::ReadCommittedPastStable => {
                "read_committed reads past the last stable offset and is told of no aborted transactions"
            }
            PlantedBug::AcceptZombieEpoch => {
                "a partition takes a fenced transactional producer's writes (zombie fencing off)"
            }
        }
    }

    /// Whether the bug lives in replication or the controller, so only a cluster run (the
    /// simulator's `--nodes 3`) can meet it.
    pub fn needs_cluster(self) -> bool {
        matches!(
            self,
            PlantedBug::UncleanElection
                | PlantedBug::AckOnLeaderAppend
                | PlantedBug::CoordinatorSkipsLoad
                | PlantedBug::TruncateToHighWatermark
                | PlantedBug::TruncateToLeaderEpochEnd
                | PlantedBug::PowerLostReplicaStaysEligible
                | PlantedBug::ReassignBeforeCaughtUp
                | PlantedBug::ZombieReplicaRejoins
        )
    }

    /// Whether only a named scenario (`scripts/sim --scenario`) is known to meet the bug: the
    /// drawn fault plans line up the faults it needs too rarely to be relied on.
    pub fn scenario_only(self) -> bool {
        matches!(
            self,
            PlantedBug::TruncateToHighWatermark
                | PlantedBug::TruncateToLeaderEpochEnd
                | PlantedBug::PowerLostReplicaStaysEligible
                | PlantedBug::ReassignBeforeCaughtUp
                | PlantedBug::ZombieReplicaRejoins
        )
    }
}

/// Plants `bug` (or clears every planted bug with `None`) for the whole process.
pub fn plant(bug: Option<PlantedBug>) {
    PLANTED.store(bug.map_or(0, |b| b as u32), Ordering::Relaxed);
}

/// Whether `bug` is planted.
pub fn is_planted(bug: PlantedBug) -> bool {
    PLANTED.load(Ordering::Relaxed) & bug as u32 != 0
}

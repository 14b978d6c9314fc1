//! Named scenarios: fixed fault schedules for the 3-node run (`scripts/sim --scenario NAME`,
//! listed by `--list-scenarios`) in place of the plan drawn from the seed. The seed still
//! draws the workload's timing and the network's latencies, so a range of seeds runs the
//! same schedule against many interleavings; each scenario also checks that what it
//! scripts happened, and names the planted bug it must catch.
//!
//! Most are regressions from Kafka's history. Their faults name nodes by their role in the
//! workload's partition 0 when the schedule starts — its leader, and its first and second
//! follower in assignment order (the order the controller elects in) — so the schedule
//! means the same whichever node the seed made leader.

use brook_core::planted::PlantedBug;

/// A scripted schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// The group coordinator's node is killed while members commit, comes back, and then
    /// the next coordinator is cut off from the other nodes: committed offsets must never go
    /// back and no generation may be handed out twice.
    CoordinatorFailoverMidCommit,
    /// KIP-101: the ISR shrinks to the leader (the followers killed in turn and kept behind);
    /// the first follower, eligible (ELR), restarts and must keep its log; the leader dies
    /// and that follower is elected: every acknowledged write survives.
    Kip101HwTruncateThenElect,
    /// KIP-279: two quick leader changes, each old leader losing power (its unsynced tail);
    /// the second returns holding an epoch its new leader never had, behind an older epoch
    /// that ends later at the leader: the replicas' logs must never differ at an offset.
    Kip279DoubleFailoverDivergence,
    /// KIP-966: the ISR shrinks to the leader, the only other holder of the newest records
    /// goes down, and the leader loses power: it must not come back as leader and have the
    /// committed records the other holds truncated away.
    Kip966LastReplicaStanding,
    /// A leader cut off from the other nodes (clients still reach it) keeps receiving
    /// acks=all produces: it must acknowledge none of them.
    IsolatedOldLeader,
    /// Jepsen's 2013 Kafka analysis: the ISR shrinks to the leader alone, then the leader is
    /// cut off; the new leader must come from the replicas that hold every acknowledged
    /// write, never from outside the ISR and the ELR.
    Jepsen2013IsrShrinkThenIsolate,
    /// KIP-455: a broker joins and partition 0 moves onto it, its leader removed, while
    /// acks=all producers write; the new replica is stuck and killed, the followers cut off
    /// and killed during the move: it completes after healing at its target, the new broker
    /// leading, nothing acknowledged lost.
    ReassignUnderFaults,
    /// KIP-320: a replica removed by a reassignment while cut off from the quorum (not from
    /// its leader) never learns it and keeps fetching: it must never be taken back into the
    /// ISR or the replicas.
    Kip320ZombieReplica,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 8] = [
        Scenario::CoordinatorFailoverMidCommit,
        Scenario::Kip101HwTruncateThenElect,
        Scenario::Kip279DoubleFailoverDivergence,
        Scenario::Kip966LastReplicaStanding,
        Scenario::IsolatedOldLeader,
        Scenario::Jepsen2013IsrShrinkThenIsolate,
        Scenario::ReassignUnderFaults,
        Scenario::Kip320ZombieReplica,
    ];

    /// The scenario's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::CoordinatorFailoverMidCommit => "coordinator_failover_mid_commit",
            Scenario::Kip101HwTruncateThenElect => "kip101_hw_truncate_then_elect",
            Scenario::Kip279DoubleFailoverDivergence => "kip279_double_failover_divergence",
            Scenario::Kip966LastReplicaStanding => "kip966_last_replica_standing",
            Scenario::IsolatedOldLeader => "isolated_old_leader",
            Scenario::Jepsen2013IsrShrinkThenIsolate => "jepsen2013_isr_shrink_then_isolate",
            Scenario::ReassignUnderFaults => "reassign_under_faults",
            Scenario::Kip320ZombieReplica => "kip320_zombie_replica",
        }
    }

    /// The scenario with this name.
    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The planted bug the scenario must catch (`scripts/test` runs it under this bug).
    pub fn planted_bug(self) -> PlantedBug {
        match self {
            Scenario::CoordinatorFailoverMidCommit => PlantedBug::CoordinatorSkipsLoad,
            Scenario::Kip101HwTruncateThenElect => PlantedBug::TruncateToHighWatermark,
            Scenario::Kip279DoubleFailoverDivergence => PlantedBug::TruncateToLeaderEpochEnd,
            Scenario::Kip966LastReplicaStanding => PlantedBug::PowerLostReplicaStaysEligible,
            Scenario::IsolatedOldLeader => PlantedBug::AckOnLeaderAppend,
            Scenario::Jepsen2013IsrShrinkThenIsolate => PlantedBug::UncleanElection,
            Scenario::ReassignUnderFaults => PlantedBug::ReassignBeforeCaughtUp,
            Scenario::Kip320ZombieReplica => PlantedBug::ZombieReplicaRejoins,
        }
    }

    /// Whether the scenario adds a broker (node 4, not a voter) to the three voters.
    pub fn adds_broker(self) -> bool {
        matches!(
            self,
            Scenario::ReassignUnderFaults | Scenario::Kip320ZombieReplica
        )
    }

    /// What the scenario does, for `--list-scenarios`.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::CoordinatorFailoverMidCommit => {
                "kill the group coordinator's node mid-commit, then cut the next one off; \
                 commits never go back, the coordinator moved at least twice"
            }
            Scenario::Kip101HwTruncateThenElect => {
                "kill both followers in turn (they come back with stuck fetchers) so the ISR \
                 shrinks to the leader, then kill it: the restarted eligible follower is \
                 elected and every acknowledged write survives"
            }
            Scenario::Kip279DoubleFailoverDivergence => {
                "leader loses power with a tail only the second follower holds, the first \
                 follower leads and loses power too, the second leads: replicas never differ \
                 at an offset"
            }
            Scenario::Kip966LastReplicaStanding => {
                "the ISR shrinks to the leader, the last other holder goes down, the leader \
                 loses power and returns: it is not elected on its shortened log"
            }
            Scenario::IsolatedOldLeader => {
                "cut partition 0's leader off from the other nodes for 14 s while producers \
                 still reach it: it acknowledges nothing, and a new leader is elected"
            }
            Scenario::Jepsen2013IsrShrinkThenIsolate => {
                "shrink the ISR to the leader (followers killed in turn, kept behind), then \
                 cut the leader off: the new leader is the eligible follower, no write lost"
            }
            Scenario::ReassignUnderFaults => {
                "add node 4 and move partition 0 onto it (its leader removed) while node 4 is \
                 stuck and killed and the followers cut off and killed: the move completes, \
                 node 4 leads, nothing acknowledged lost"
            }
            Scenario::Kip320ZombieReplica => {
                "remove a follower cut off from the quorum but not from its leader: it keeps \
                 fetching and is never taken back into the ISR or the replicas"
            }
        }
    }
}

//! Named scenarios: fixed fault schedules for the 3-node run (`scripts/sim --scenario NAME`,
//! listed by `--list-scenarios`) in place of the plan drawn from the seed. The seed still
//! draws the workload's timing and the network's latencies, so a range of seeds runs the
//! same schedule against many interleavings; each scenario also checks that what it
//! scripts happened.

/// A scripted schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// The group coordinator's node is killed while members commit, comes back, and then
    /// the next coordinator is cut off from the other nodes: committed offsets must never go
    /// back and no generation may be handed out twice.
    CoordinatorFailoverMidCommit,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 1] = [Scenario::CoordinatorFailoverMidCommit];

    /// The scenario's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::CoordinatorFailoverMidCommit => "coordinator_failover_mid_commit",
        }
    }

    /// The scenario with this name.
    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// What the scenario does, for `--list-scenarios`.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::CoordinatorFailoverMidCommit => {
                "kill the group coordinator's node mid-commit, then cut the next one off; \
                 commits never go back, the coordinator moved at least twice"
            }
        }
    }
}

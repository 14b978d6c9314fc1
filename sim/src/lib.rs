//! `brook-sim`: Brook's deterministic simulator.
//!
//! The same `brook-core` driver and broker that `brook server` runs (`node`: the madsim shell
//! over `brook_core::driver::Driver`) are driven here on madsim's
//! simulated clock and network, over a simulated disk (`disk`) that loses or tears unsynced
//! writes on a power loss. Simulated Kafka clients (`client`, `workload`) produce and
//! consume through the real wire codec while a fault plan drawn from the seed (`faults`)
//! kills, power-cycles and cuts off the broker and fails its disk; `checker` then proves the
//! guarantees held.
//! Every run is a seed: the same seed replays the same trace.
//!
//! The simulation exists only when built with `RUSTFLAGS="--cfg madsim"` (`scripts/sim` does
//! that, in its own target directory); a normal build compiles just this documentation and
//! the command-line front end, which then explains how to run it.

#[cfg(madsim)]
pub mod checker;
#[cfg(madsim)]
pub mod client;
#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod cluster_check;
#[cfg(madsim)]
pub mod cluster_node;
#[cfg(madsim)]
pub mod cluster_workload;
#[cfg(madsim)]
pub mod disk;
#[cfg(madsim)]
pub mod faults;
#[cfg(madsim)]
pub mod group_member;
#[cfg(madsim)]
pub mod node;
#[cfg(madsim)]
pub mod reassign;
#[cfg(madsim)]
pub mod run;
pub mod scenario;
pub mod trace;
#[cfg(madsim)]
pub mod txn_workload;
#[cfg(madsim)]
pub mod workload;

/// Options of one simulation run, from the command line.
#[derive(Clone, Debug)]
pub struct Options {
    /// Simulated seconds of the safety phase (faults on).
    pub safety_secs: u64,
    /// Simulated seconds the liveness phase may take before the run fails.
    pub liveness_secs: u64,
    /// Records each producer sends.
    pub records_per_producer: u32,
    /// Print the event trace.
    pub trace: bool,
    /// Nodes: 1 runs a single broker; more run a cluster of that many nodes.
    pub nodes: usize,
    /// A scripted fault schedule for the cluster run instead of the seed's plan.
    pub scenario: Option<scenario::Scenario>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            safety_secs: 20,
            liveness_secs: 60,
            records_per_producer: 150,
            trace: false,
            nodes: 1,
            scenario: None,
        }
    }
}

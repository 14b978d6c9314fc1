//! The fault plan of a run, drawn from its seed: the flush policy and segment size, broker
//! crashes (process kills and power losses), disk faults (a failed sync, a full disk) and
//! network cuts between clients and the broker.

use std::fmt;

use madsim::rand::{thread_rng, Rng};

/// How the broker goes down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashKind {
    /// The process dies; the operating system's page cache survives.
    ProcessKill,
    /// The machine loses power; unsynced bytes are lost or torn.
    PowerLoss,
}

/// One broker crash.
#[derive(Clone, Copy, Debug)]
pub struct Crash {
    /// Simulated milliseconds into the safety phase.
    pub at_ms: u64,
    /// Process kill or power loss.
    pub kind: CrashKind,
    /// How long the broker stays down.
    pub down_ms: u64,
}

/// One cut of a client's link to the broker.
#[derive(Clone, Copy, Debug)]
pub struct Clog {
    /// Simulated milliseconds into the safety phase.
    pub at_ms: u64,
    /// Which client node (index into the client list).
    pub client: usize,
    /// How long the link stays cut.
    pub duration_ms: u64,
}

/// A consumer-group member killed (then restarted) or cut off from the broker for a while.
#[derive(Clone, Copy, Debug)]
pub struct MemberFault {
    /// Simulated milliseconds into the safety phase.
    pub at_ms: u64,
    /// Which member.
    pub member: usize,
    /// How long it is down or cut off.
    pub duration_ms: u64,
    /// Cut off from the network (true) or killed (false).
    pub cut_off: bool,
}

/// What goes wrong with the broker's disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFaultKind {
    /// The next sync with bytes to write fails with EIO and the kernel drops those bytes.
    SyncError,
    /// The disk is full: appends write a prefix and fail with ENOSPC.
    Full,
}

/// One disk fault; when it heals the operator restarts the broker (a process kill), which
/// recovers any partition the fault took offline.
#[derive(Clone, Copy, Debug)]
pub struct DiskFault {
    /// Simulated milliseconds into the safety phase.
    pub at_ms: u64,
    /// What goes wrong.
    pub kind: DiskFaultKind,
    /// How long until the fault heals and the broker is restarted.
    pub duration_ms: u64,
}

/// Everything a run's faults will be, printed at the start of a run.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    /// Topic config `flush.messages=1`: every append synced before it is acknowledged.
    pub sync_every_append: bool,
    /// Topic config `segment.bytes`, when small enough for the run to roll segments.
    pub segment_bytes: Option<u64>,
    /// Bit rot: at the first power loss, one bit of a stored `.log` file flips on the disk.
    pub bit_rot: bool,
    /// Disk faults in time order.
    pub disk_faults: Vec<DiskFault>,
    /// Produce responses lost with their connection, per thousand (clients retry batches
    /// the broker already wrote).
    pub produce_responses_lost_per_mille: u32,
    /// Broker crashes in time order.
    pub crashes: Vec<Crash>,
    /// Network cuts in time order.
    pub clogs: Vec<Clog>,
    /// Group-member faults in time order.
    pub member_faults: Vec<MemberFault>,
}

impl FaultPlan {
    /// Draws a plan for a safety phase of `safety_ms` with `clients` client nodes.
    pub fn draw(safety_ms: u64, clients: usize, members: usize) -> FaultPlan {
        let mut rng = thread_rng();
        let sync_every_append = rng.gen_bool(0.5);
        let mut crashes: Vec<Crash> = (0..rng.gen_range(0..4))
            .map(|_| Crash {
                at_ms: rng.gen_range(0..safety_ms),
                kind: if rng.gen_bool(0.5) {
                    CrashKind::ProcessKill
                } else {
                    CrashKind::PowerLoss
                },
                down_ms: rng.gen_range(10..2_000),
            })
            .collect();
        crashes.sort_by_key(|c| c.at_ms);
        let mut clogs: Vec<Clog> = (0..rng.gen_range(0..5))
            .map(|_| Clog {
                at_ms: rng.gen_range(0..safety_ms),
                client: rng.gen_range(0..clients),
                duration_ms: rng.gen_range(100..5_000),
            })
            .collect();
        clogs.sort_by_key(|c| c.at_ms);
        let mut member_faults: Vec<MemberFault> = (0..rng.gen_range(0..4))
            .map(|_| MemberFault {
                at_ms: rng.gen_range(0..safety_ms),
                member: rng.gen_range(0..members),
                duration_ms: rng.gen_range(100..12_000),
                cut_off: rng.gen_bool(0.5),
            })
            .collect();
        member_faults.sort_by_key(|f| f.at_ms);
        // Drawn last, so the faults above keep the times older versions drew for a seed.
        let segment_bytes = rng.gen_bool(0.5).then(|| rng.gen_range(1024..4096));
        let disk_fault_count = [0, 0, 1, 1, 2][rng.gen_range(0..5)];
        let mut disk_faults: Vec<DiskFault> = (0..disk_fault_count)
            .map(|_| DiskFault {
                at_ms: rng.gen_range(0..safety_ms),
                kind: if rng.gen_bool(0.5) {
                    DiskFaultKind::SyncError
                } else {
                    DiskFaultKind::Full
                },
                duration_ms: rng.gen_range(200..3_000),
            })
            .collect();
        disk_faults.sort_by_key(|f| f.at_ms);
        let produce_responses_lost_per_mille = [0, 0, 10, 50][rng.gen_range(0..4)];
        let bit_rot = rng.gen_bool(0.25);
        FaultPlan {
            bit_rot,
            produce_responses_lost_per_mille,
            sync_every_append,
            segment_bytes,
            disk_faults,
            crashes,
            clogs,
            member_faults,
        }
    }

    /// Whether any power loss is planned.
    pub fn has_power_loss(&self) -> bool {
        self.crashes.iter().any(|c| c.kind == CrashKind::PowerLoss)
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "flush={} segment={} crashes=[",
            if self.sync_every_append {
                "every-append"
            } else {
                "page-cache"
            },
            self.segment_bytes
                .map_or("default".to_string(), |bytes| format!("{bytes}B")),
        )?;
        for (i, c) in self.crashes.iter().enumerate() {
            let kind = match c.kind {
                CrashKind::ProcessKill => "kill",
                CrashKind::PowerLoss => "power",
            };
            write!(
                f,
                "{}{kind}@{}ms/{}ms",
                if i > 0 { " " } else { "" },
                c.at_ms,
                c.down_ms
            )?;
        }
        write!(f, "] clogs=[")?;
        for (i, c) in self.clogs.iter().enumerate() {
            write!(
                f,
                "{}client{}@{}ms/{}ms",
                if i > 0 { " " } else { "" },
                c.client,
                c.at_ms,
                c.duration_ms
            )?;
        }
        write!(f, "] disk=[")?;
        for (i, fault) in self.disk_faults.iter().enumerate() {
            let gap = if i > 0 { " " } else { "" };
            let kind = match fault.kind {
                DiskFaultKind::SyncError => "sync-error",
                DiskFaultKind::Full => "full",
            };
            write!(f, "{gap}{kind}@{}ms/{}ms", fault.at_ms, fault.duration_ms)?;
        }
        write!(
            f,
            "] lost-produce-responses={}‰ members=[",
            self.produce_responses_lost_per_mille
        )?;
        for (i, fault) in self.member_faults.iter().enumerate() {
            let gap = if i > 0 { " " } else { "" };
            let kind = if fault.cut_off { "cut" } else { "kill" };
            let (member, at, duration) = (fault.member, fault.at_ms, fault.duration_ms);
            write!(f, "{gap}{kind}:member{member}@{at}ms/{duration}ms")?;
        }
        write!(f, "]")?;
        if self.bit_rot && self.has_power_loss() {
            write!(f, " bit-rot")?;
        }
        Ok(())
    }
}

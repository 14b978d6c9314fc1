//! `brook-sim`: run simulation seeds. Use `scripts/sim`, which builds it with `--cfg madsim`.
//!
//! ```text
//! scripts/sim --seed 7                 one seed: its fault plan and result
//! scripts/sim --seeds 1..200           a range: one line per failing seed, with its replay
//! scripts/sim --seed 7 --trace         the event trace of a seed
//! scripts/sim --determinism --seed 7   run the seed twice, compare trace hashes
//! scripts/sim --list-planted-bugs      bugs the checkers must catch
//! scripts/sim --plant-bug NAME --seeds 1..50   find a failing seed for a planted bug
//! scripts/sim --nodes 3 --seeds 1..50  a three-node cluster (quorum, replication, failover)
//! scripts/sim --list-scenarios         scripted fault schedules of the 3-node run
//! scripts/sim --scenario NAME --seeds 1..20   one of them over a range of seeds
//! options: --safety-secs S  --liveness-secs S  --records N (alias --steps N)
//!          --sim-time S (the whole run at most S simulated seconds: safety, then liveness)
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}

#[cfg(not(madsim))]
mod cli {
    use std::process::ExitCode;

    pub fn main() -> ExitCode {
        eprintln!("error: brook-sim runs only in a madsim build; use scripts/sim");
        ExitCode::from(2)
    }
}

/// Prints a line to stdout, ignoring a closed pipe (`scripts/sim … | head`).
#[cfg(madsim)]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[cfg(madsim)]
mod cli {
    use std::ops::Range;
    use std::process::ExitCode;
    use std::time::Instant;

    use brook_core::planted::{plant, PlantedBug};
    use brook_sim::run::{run_seed, RunReport};
    use brook_sim::scenario::Scenario;
    use brook_sim::Options;

    struct Args {
        seeds: Range<u64>,
        options: Options,
        bug: Option<PlantedBug>,
        determinism: bool,
        list_bugs: bool,
        list_scenarios: bool,
    }

    fn parse() -> Result<Args, String> {
        let mut args = Args {
            seeds: 1..2,
            options: Options::default(),
            bug: None,
            determinism: false,
            list_bugs: false,
            list_scenarios: false,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
            let number = |text: String, name: &str| {
                text.parse::<u64>()
                    .map_err(|_| format!("{name}: {text:?} is not a number"))
            };
            match flag.as_str() {
                "--seed" => {
                    let seed = number(value("--seed")?, "--seed")?;
                    args.seeds = seed..seed + 1;
                }
                "--seeds" => {
                    let text = value("--seeds")?;
                    let (a, b) = text.split_once("..").ok_or("--seeds takes A..B")?;
                    args.seeds = number(a.into(), "--seeds")?..number(b.into(), "--seeds")?;
                }
                "--safety-secs" => args.options.safety_secs = number(value(&flag)?, &flag)?,
                "--liveness-secs" => args.options.liveness_secs = number(value(&flag)?, &flag)?,
                "--records" | "--steps" => {
                    args.options.records_per_producer = number(value(&flag)?, &flag)? as u32
                }
                "--sim-time" => {
                    let total = number(value(&flag)?, &flag)?;
                    if total < 2 {
                        return Err(format!(
                            "--sim-time: {total} s leaves no room for both phases"
                        ));
                    }
                    args.options.safety_secs = args.options.safety_secs.min(total / 2);
                    args.options.liveness_secs = total - args.options.safety_secs;
                }
                "--trace" => args.options.trace = true,
                "--nodes" => {
                    let nodes = number(value(&flag)?, &flag)?;
                    if !(1..=5).contains(&nodes) {
                        return Err(format!("--nodes: {nodes} is not in 1..=5"));
                    }
                    args.options.nodes = nodes as usize;
                }
                "--determinism" => args.determinism = true,
                "--list-scenarios" => args.list_scenarios = true,
                "--scenario" => {
                    let name = value("--scenario")?;
                    let scenario = Scenario::from_name(&name)
                        .ok_or(format!("unknown scenario {name:?} (see --list-scenarios)"))?;
                    args.options.scenario = Some(scenario);
                }
                "--list-planted-bugs" => args.list_bugs = true,
                "--plant-bug" => {
                    let name = value("--plant-bug")?;
                    let bug = PlantedBug::from_name(&name)
                        .ok_or(format!("unknown planted bug {name:?}"))?;
                    args.bug = Some(bug);
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(args)
    }

    pub fn main() -> ExitCode {
        let mut args = match parse() {
            Ok(args) => args,
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(2);
            }
        };
        if args.list_bugs {
            for bug in PlantedBug::ALL {
                let only = if bug.scenario_only() {
                    " (scenario only)"
                } else {
                    ""
                };
                say!("{} — {}{only}", bug.name(), bug.description());
            }
            return ExitCode::SUCCESS;
        }
        if args.list_scenarios {
            for scenario in Scenario::ALL {
                say!(
                    "{} — {}; planted bug: {}",
                    scenario.name(),
                    scenario.description(),
                    scenario.planted_bug().name()
                );
            }
            return ExitCode::SUCCESS;
        }
        plant(args.bug);
        if args.options.scenario.is_some() {
            args.options.nodes = 3;
        }
        if args.bug.is_some_and(|bug| bug.needs_cluster()) && args.options.nodes == 1 {
            args.options.nodes = 3;
        }
        if args.determinism {
            return determinism(&args);
        }
        run_range(&args)
    }

    fn replay(args: &Args, seed: u64) -> String {
        let bug = args
            .bug
            .map(|b| format!(" --plant-bug {}", b.name()))
            .unwrap_or_default();
        let nodes = match args.options.nodes {
            1 => String::new(),
            n => format!(" --nodes {n}"),
        };
        let scenario = args
            .options
            .scenario
            .map(|s| format!(" --scenario {}", s.name()))
            .unwrap_or_default();
        format!("scripts/sim{nodes} --seed {seed}{bug}{scenario}")
    }

    fn run_range(args: &Args) -> ExitCode {
        let single = args.seeds.end - args.seeds.start == 1;
        let wall = Instant::now();
        let (mut failed, mut simulated, mut seeds) = (0, 0.0, 0u64);
        for seed in args.seeds.clone() {
            let report = run_seed(seed, &args.options);
            seeds += 1;
            simulated += report.simulated_secs;
            if args.options.trace {
                report.trace.iter().for_each(|line| say!("{line}"));
            }
            if single {
                print_report(&report);
            }
            if !report.verdict.failures.is_empty() {
                failed += 1;
                let first = &report.verdict.failures[0];
                say!(
                    "seed {seed} FAILED {}: {} — replay: {}",
                    first.checker,
                    first.detail,
                    replay(args, seed)
                );
                if args.bug.is_some() {
                    break;
                }
            }
        }
        let elapsed = wall.elapsed().as_secs_f64().max(1e-9);
        say!(
            "{seeds} seeds, {failed} failed; {simulated:.0} simulated s in {elapsed:.1} wall s ({:.0} sim s per wall s, {:.0} seeds per minute)",
            simulated / elapsed,
            seeds as f64 * 60.0 / elapsed
        );
        match (args.bug, failed) {
            (Some(bug), 0) => {
                say!(
                    "planted bug {} was NOT caught in seeds {:?}",
                    bug.name(),
                    args.seeds
                );
                ExitCode::FAILURE
            }
            (Some(bug), _) => {
                say!("planted bug {} caught", bug.name());
                ExitCode::SUCCESS
            }
            (None, 0) => ExitCode::SUCCESS,
            (None, _) => ExitCode::FAILURE,
        }
    }

    fn print_report(report: &RunReport) {
        say!("seed {} plan: {}", report.seed, report.plan);
        say!(
            "seed {}: {} acks, {} failures, {} allowed losses, {} acks=1 losses, trace hash {:016x}",
            report.seed,
            report.acks,
            report.verdict.failures.len(),
            report.verdict.allowed_losses,
            report.verdict.leader_ack_losses,
            report.trace_hash
        );
        for failure in &report.verdict.failures {
            say!("  {}: {}", failure.checker, failure.detail);
        }
    }

    fn determinism(args: &Args) -> ExitCode {
        for seed in args.seeds.clone() {
            let first = run_seed(seed, &args.options).trace_hash;
            let second = run_seed(seed, &args.options).trace_hash;
            if first != second {
                say!("seed {seed} is NOT deterministic: {first:016x} vs {second:016x}");
                return ExitCode::FAILURE;
            }
            say!("seed {seed}: same trace hash twice ({first:016x})");
        }
        ExitCode::SUCCESS
    }
}

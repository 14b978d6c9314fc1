//! `brook consume`: print a topic's records, one per line (like `kafka-console-consumer`).
//!
//! Records come through `brook-client`'s consumer. Without `--group` it is assigned every
//! chosen partition, starting at the earliest offset with `--from-beginning`, else at the
//! end (and there again after OFFSET_OUT_OF_RANGE). With `--group G` it is a member of
//! consumer group G (classic protocol, range assignor): it reads the partitions the group
//! assigns it, starting at the group's committed offsets (else earliest/latest as above),
//! commits its position every [`COMMIT_INTERVAL_MS`] and before each rebalance, and on exit
//! (Ctrl-C or SIGTERM included) commits and leaves the group. A commit covers exactly the
//! records printed: `poll` hands out no more than `--max-messages` still allows, and a
//! failed write to stdout moves the positions back to the first record not printed.
//! Compressed batches are decompressed; control batches (transaction markers) are skipped.
//! Records are read uncommitted, up to the high watermark.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brook_client::{
    blocking, Assignor, ConsumerConfig, ConsumerRecord, OffsetReset, RebalanceListener,
    TopicPartition,
};
use clap::Args;

use super::{ConnectArgs, ToolError};

/// Longest the broker holds a Fetch open waiting for data.
pub const FETCH_MAX_WAIT_MS: u64 = 500;
/// Most bytes asked for in one Fetch response.
pub const FETCH_BYTES_MAX: i32 = 8 * 1024 * 1024;
/// Most bytes asked for per partition in one Fetch response (Kafka's default).
pub const PARTITION_FETCH_BYTES_MAX: i32 = 1024 * 1024;
/// Most bytes one batch may decompress to.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Most records one poll hands out.
pub const POLL_RECORDS_MAX: usize = 500;
/// A group member silent for this long is expelled by the coordinator.
pub const SESSION_TIMEOUT_MS: u64 = 10_000;
/// How long the coordinator waits for members to rejoin (also the longest gap between
/// polls before the member leaves on its own).
pub const REBALANCE_TIMEOUT_MS: u64 = 20_000;
/// Time between heartbeats: short, so a rebalance is noticed within about a second.
pub const HEARTBEAT_INTERVAL_MS: u64 = 1_000;
/// Time between periodic offset commits of a group member.
pub const COMMIT_INTERVAL_MS: u64 = 2_000;

/// Flags of `brook consume`.
#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// Where the broker is.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The topic to read.
    pub topic: String,
    /// Start at each partition's earliest offset instead of its end.
    #[arg(long)]
    pub from_beginning: bool,
    /// Read only this partition [default: every partition].
    #[arg(long, value_name = "N")]
    pub partition: Option<i32>,
    /// Stop after printing this many records.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Print each record's key before its value.
    #[arg(long)]
    pub print_key: bool,
    /// What separates key and value with --print-key.
    #[arg(long, value_name = "SEP", default_value = "\t")]
    pub key_separator: String,
    /// Stop when no record arrived for this long [default: run until interrupted]. With
    /// --group the clock starts once the first assignment arrives.
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Consume as a member of this consumer group: partitions assigned by the group, offsets
    /// committed to it.
    #[arg(long, value_name = "GROUP", conflicts_with = "partition")]
    pub group: Option<String>,
}

/// Prints records until `--max-messages`, `--timeout-ms` or Ctrl-C.
pub fn run(args: ConsumeArgs) -> Result<(), ToolError> {
    // Before any thread starts, so that every thread inherits the blocked signals.
    let stop = match args.group {
        Some(_) => Some(stop_on_signals()?),
        None => None,
    };
    let admin = super::admin(&args.connect.bootstrap)?;
    let info = super::topic_info(&admin, &args.topic, false)?;
    drop(admin);
    let mut partitions: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
    if let Some(partition) = args.partition {
        if !partitions.contains(&partition) {
            return Err(ToolError::Usage(format!(
                "--partition {partition}: topic {} has {} partitions",
                args.topic,
                partitions.len()
            )));
        }
        partitions = vec![partition];
    }
    let mut consumer = blocking::Consumer::new(consumer_config(&args))?;
    // The --timeout-ms clock starts once the group has assigned something (possibly
    // nothing); without a group at once.
    let assigned = Arc::new(AtomicBool::new(args.group.is_none()));
    if args.group.is_some() {
        let listener = Box::new(Assigned(Arc::clone(&assigned)));
        consumer.subscribe_with_listener(&[&args.topic], listener)?;
    } else {
        let tps = partitions
            .iter()
            .map(|&p| TopicPartition::new(&args.topic, p))
            .collect();
        consumer.assign(tps)?;
    }
    let mut printer = Printer {
        out: BufWriter::new(std::io::stdout().lock()),
        printed: 0,
    };
    let result = follow(
        &mut consumer,
        &args,
        &mut printer,
        stop.as_deref(),
        &assigned,
    );
    if args.group.is_some() {
        // Commits the positions (what was printed) and leaves, after an error too: the
        // others need not wait for this member's session to expire.
        let closed = consumer.close();
        if result.is_ok() {
            closed?;
        }
    }
    if is_stdout_closed(&result) {
        return Ok(());
    }
    result?;
    eprintln!("Processed a total of {} messages", printer.printed);
    Ok(())
}

fn consumer_config(args: &ConsumeArgs) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(&args.connect.bootstrap);
    config.client_id = super::CLIENT_ID.to_string();
    config.auto_offset_reset = if args.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    config.fetch_max_wait_ms = FETCH_MAX_WAIT_MS;
    config.fetch_max_bytes = FETCH_BYTES_MAX;
    config.partition_fetch_bytes_max = PARTITION_FETCH_BYTES_MAX;
    config.decompressed_bytes_max = DECOMPRESSED_BYTES_MAX;
    config.poll_records_max = POLL_RECORDS_MAX;
    config.group_id = args.group.clone();
    config.session_timeout_ms = SESSION_TIMEOUT_MS;
    config.heartbeat_interval_ms = HEARTBEAT_INTERVAL_MS;
    config.max_poll_interval_ms = REBALANCE_TIMEOUT_MS;
    config.enable_auto_commit = args.group.is_some();
    config.auto_commit_interval_ms = COMMIT_INTERVAL_MS;
    config.partition_assignment_strategy = vec![Assignor::Range];
    config
}

/// Notes that the group has assigned this member its partitions.
struct Assigned(Arc<AtomicBool>);

impl RebalanceListener for Assigned {
    fn on_partitions_revoked(&mut self, _partitions: &[TopicPartition]) {}

    fn on_partitions_assigned(&mut self, _partitions: &[TopicPartition]) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls and prints until a stop condition: `--max-messages` printed, `--timeout-ms`
/// without a record, or a signal.
fn follow<W: Write>(
    consumer: &mut blocking::Consumer,
    args: &ConsumeArgs,
    printer: &mut Printer<W>,
    stop: Option<&AtomicBool>,
    assigned: &AtomicBool,
) -> Result<(), ToolError> {
    let timeout = args.timeout_ms.map(Duration::from_millis);
    let mut last_data: Option<Instant> = None;
    loop {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return Ok(());
        }
        let remaining = match args.max_messages {
            Some(max) if printer.printed >= max => return Ok(()),
            Some(max) => usize::try_from(max - printer.printed).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        if last_data.is_none() && assigned.load(Ordering::SeqCst) {
            last_data = Some(Instant::now());
        }
        let wait_ms = match last_data {
            None => FETCH_MAX_WAIT_MS,
            Some(last) => match fetch_wait_ms(timeout, last) {
                Some(wait_ms) => wait_ms,
                None => return Ok(()),
            },
        };
        let wait = Duration::from_millis(wait_ms);
        let records = consumer.poll_max(wait, remaining.min(POLL_RECORDS_MAX))?;
        if records.is_empty() {
            continue;
        }
        if let Err((printed, err)) = printer.print(&records, args) {
            rewind(consumer, &records[printed..])?;
            return Err(err);
        }
        printer.out.flush().map_err(stdout_error)?;
        last_data = Some(Instant::now());
    }
}

/// Moves each partition of `unprinted` back to its first record there, so that a commit
/// covers only what was printed.
fn rewind(
    consumer: &mut blocking::Consumer,
    unprinted: &[ConsumerRecord],
) -> Result<(), ToolError> {
    let mut first: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    for record in unprinted {
        let tp = TopicPartition::new(&record.topic, record.partition);
        first.entry(tp).or_insert(record.offset);
    }
    for (tp, offset) in first {
        consumer.seek(&tp, offset)?;
    }
    Ok(())
}

/// Where records are printed, and how many were.
struct Printer<W: Write> {
    out: W,
    /// Records printed so far, over the whole run.
    printed: u64,
}

impl<W: Write> Printer<W> {
    /// Prints `records` in order, counting each one written; on failure, says how many of
    /// them were printed.
    fn print(
        &mut self,
        records: &[ConsumerRecord],
        args: &ConsumeArgs,
    ) -> Result<(), (usize, ToolError)> {
        for (index, record) in records.iter().enumerate() {
            write_record(&mut self.out, record, args).map_err(|e| (index, stdout_error(e)))?;
            self.printed += 1;
        }
        Ok(())
    }
}

/// Blocks SIGINT and SIGTERM in this thread (and the threads it starts later) and turns them
/// into a flag a thread sets: the consumer then commits and leaves its group. A second
/// signal exits at once.
fn stop_on_signals() -> Result<Arc<AtomicBool>, ToolError> {
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().map_err(|errno| ToolError::Io {
        what: "cannot block SIGINT and SIGTERM",
        source: errno.into(),
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || {
            while let Ok(signal) = signals.wait() {
                if flag.swap(true, Ordering::SeqCst) {
                    std::process::exit(128 + signal as i32);
                }
            }
        })
        .map_err(|source| ToolError::Io {
            what: "cannot start the signal thread",
            source,
        })?;
    Ok(stop)
}

/// How long the next Fetch may wait: at most [`FETCH_MAX_WAIT_MS`] and what is left of the
/// idle timeout; `None` once the idle timeout has passed.
fn fetch_wait_ms(timeout: Option<Duration>, last_data: Instant) -> Option<u64> {
    let Some(timeout) = timeout else {
        return Some(FETCH_MAX_WAIT_MS);
    };
    let left = timeout.saturating_sub(last_data.elapsed());
    if left.is_zero() {
        return None;
    }
    Some(FETCH_MAX_WAIT_MS.min(left.as_millis() as u64).max(1))
}

/// Whether `result` only says that stdout was closed (e.g. `| head`): a normal end.
fn is_stdout_closed(result: &Result<(), ToolError>) -> bool {
    matches!(result, Err(ToolError::Io { source, .. })
        if source.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Writes `[key SEP] value\n`; a null key or value prints as `null`.
fn write_record(
    out: &mut impl Write,
    record: &ConsumerRecord,
    args: &ConsumeArgs,
) -> std::io::Result<()> {
    if args.print_key {
        out.write_all(record.key.as_deref().unwrap_or(b"null"))?;
        out.write_all(args.key_separator.as_bytes())?;
    }
    out.write_all(record.value.as_deref().unwrap_or(b"null"))?;
    out.write_all(b"\n")
}

fn stdout_error(source: std::io::Error) -> ToolError {
    ToolError::Io {
        what: "cannot write to stdout",
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        consume: ConsumeArgs,
    }

    #[test]
    fn consume_prints_key_separator_and_null() {
        let cli = Cli::parse_from(["consume", "t", "--print-key", "--key-separator", "="]);
        let mut out = Vec::new();
        let record = |key: Option<&[u8]>, value: Option<&[u8]>| ConsumerRecord {
            topic: "t".to_string(),
            partition: 0,
            offset: 0,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: Vec::new(),
            timestamp: 0,
        };
        write_record(&mut out, &record(Some(b"k"), Some(b"v")), &cli.consume).unwrap();
        write_record(&mut out, &record(None, None), &cli.consume).unwrap();
        assert_eq!(out, b"k=v\nnull=null\n");
    }
}

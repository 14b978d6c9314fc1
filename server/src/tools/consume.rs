//! `brook consume`: print a topic's records, one per line (like `kafka-console-consumer`).
//!
//! Without `--group` the start offset of each partition comes from ListOffsets (earliest with
//! `--from-beginning`, else latest), and a Fetch loop follows every chosen partition from there.
//! With `--group G` the consumer is a member of consumer group G ([`GroupMember`]): it reads
//! the partitions the group assigns it, starting at the group's committed offsets (else
//! earliest/latest as above), commits its position every [`COMMIT_INTERVAL_MS`], before each
//! rebalance and on exit, and leaves the group on exit (Ctrl-C or SIGTERM included).
//! Compressed batches are decompressed; control batches (transaction markers) are skipped.
//! Records are read uncommitted, up to the high watermark.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brook_core::record::{decode_records, Batches, Record};
use clap::Args;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, ListOffsetsRequest};

use super::assignor::Assignment;
use super::client::Client;
use super::member::{GroupMember, MemberConfig, Offsets};
use super::topics::topic_name;
use super::{ConnectArgs, ToolError};

/// Longest the broker holds a Fetch open waiting for data.
pub const FETCH_MAX_WAIT_MS: u64 = 500;
/// Most bytes asked for in one Fetch response.
pub const FETCH_BYTES_MAX: i32 = 8 * 1024 * 1024;
/// Most bytes asked for per partition in one Fetch response (Kafka's default).
pub const PARTITION_FETCH_BYTES_MAX: i32 = 1024 * 1024;
/// Most bytes one batch may decompress to.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;
/// ListOffsets timestamp meaning "the log start offset".
pub const EARLIEST: i64 = -2;
/// ListOffsets timestamp meaning "the high watermark".
pub const LATEST: i64 = -1;
/// Kafka's `OFFSET_OUT_OF_RANGE` error code.
const OFFSET_OUT_OF_RANGE: i16 = 1;
/// A group member silent for this long is expelled by the coordinator.
pub const SESSION_TIMEOUT_MS: i32 = 10_000;
/// How long the coordinator waits for members to rejoin; JoinGroup can be parked this long,
/// so it stays below the client's request timeout.
pub const REBALANCE_TIMEOUT_MS: i32 = 20_000;
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
    let mut client = Client::connect(&args.connect.bootstrap)?;
    let list_version = client.version::<ListOffsetsRequest>(1, 7)?;
    let fetch_version = client.version::<FetchRequest>(4, 12)?;
    let info = super::topic_info(&mut client, &args.topic, false)?;
    let mut partitions: Vec<i32> = info.partitions.iter().map(|p| p.index).collect();
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
    let start = if args.from_beginning {
        EARLIEST
    } else {
        LATEST
    };
    let mut consumer = Consumer {
        client,
        fetch_version,
        list_version,
        start,
        offsets: BTreeMap::new(),
        committed: BTreeMap::new(),
        out: BufWriter::new(std::io::stdout().lock()),
        printed: 0,
    };
    let result = match &args.group {
        Some(group) => consumer.run_group(&args, group),
        None => list_offsets(
            &mut consumer.client,
            list_version,
            &args.topic,
            &partitions,
            start,
        )
        .and_then(|offsets| {
            consumer.offsets = offsets;
            consumer.run(&args)
        }),
    };
    if is_stdout_closed(&result) {
        return Ok(());
    }
    result?;
    eprintln!("Processed a total of {} messages", consumer.printed);
    Ok(())
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

/// The Fetch loop's state: where each partition is and what has been printed.
struct Consumer<W: Write> {
    client: Client,
    fetch_version: i16,
    list_version: i16,
    /// Where to restart after OFFSET_OUT_OF_RANGE: EARLIEST or LATEST.
    start: i64,
    /// Partition → next offset to fetch (and to commit: every record before it was printed).
    offsets: BTreeMap<i32, i64>,
    /// With --group: partition → the offset the group has committed, as far as known.
    committed: BTreeMap<i32, i64>,
    out: W,
    printed: u64,
}

impl<W: Write> Consumer<W> {
    fn run(&mut self, args: &ConsumeArgs) -> Result<(), ToolError> {
        let timeout = args.timeout_ms.map(Duration::from_millis);
        let mut last_data = Instant::now();
        loop {
            if args.max_messages.is_some_and(|max| self.printed >= max) {
                return Ok(());
            }
            let Some(wait_ms) = fetch_wait_ms(timeout, last_data) else {
                return Ok(());
            };
            let printed_before = self.printed;
            self.fetch_once(args, wait_ms as i32)?;
            self.out.flush().map_err(stdout_error)?;
            if self.printed > printed_before {
                last_data = Instant::now();
            }
        }
    }

    /// One Fetch for every partition; prints what came back and advances the offsets.
    fn fetch_once(&mut self, args: &ConsumeArgs, wait_ms: i32) -> Result<(), ToolError> {
        let partitions = self
            .offsets
            .iter()
            .map(|(&partition, &offset)| {
                FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(PARTITION_FETCH_BYTES_MAX)
            })
            .collect();
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_BYTES_MAX)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(&args.topic))
                .with_partitions(partitions)]);
        let response = self.client.call(self.fetch_version, &request)?;
        ToolError::check(|| "fetch".to_string(), response.error_code, None)?;
        for topic in &response.responses {
            for data in &topic.partitions {
                let partition = data.partition_index;
                if data.error_code == OFFSET_OUT_OF_RANGE {
                    self.reset_offset(&args.topic, partition)?;
                    continue;
                }
                ToolError::check(
                    || format!("fetch from {}-{partition}", args.topic),
                    data.error_code,
                    None,
                )?;
                if let Some(records) = &data.records {
                    self.print_records(args, partition, records)?;
                }
                if args.max_messages.is_some_and(|max| self.printed >= max) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Prints the records of whole batches at or after the partition's offset.
    fn print_records(
        &mut self,
        args: &ConsumeArgs,
        partition: i32,
        bytes: &[u8],
    ) -> Result<(), ToolError> {
        let corrupt = |reason: String| {
            ToolError::Corrupt(format!("records from {}-{partition}: {reason}", args.topic))
        };
        let Some(&offset) = self.offsets.get(&partition) else {
            return Ok(()); // a partition not asked for: ignore it
        };
        let mut next = offset;
        for batch in Batches::new(bytes) {
            let batch = batch.map_err(|err| corrupt(err.to_string()))?;
            batch.verify_crc().map_err(|err| corrupt(err.to_string()))?;
            next = next.max(batch.next_offset().0);
            if batch.is_control() {
                continue;
            }
            let records = decode_records(&batch, DECOMPRESSED_BYTES_MAX)
                .map_err(|e| corrupt(e.to_string()))?;
            for decoded in records {
                if decoded.offset.0 < offset {
                    continue;
                }
                if args.max_messages.is_some_and(|max| self.printed >= max) {
                    // Stop right here, so a commit covers exactly what was printed.
                    self.offsets.insert(partition, decoded.offset.0);
                    return Ok(());
                }
                write_record(&mut self.out, &decoded.record, args).map_err(stdout_error)?;
                self.printed += 1;
            }
        }
        if next == offset && !bytes.is_empty() {
            return Err(corrupt(format!(
                "no whole batch at offset {offset} in {} bytes",
                bytes.len()
            )));
        }
        self.offsets.insert(partition, next);
        Ok(())
    }

    /// After OFFSET_OUT_OF_RANGE (the log was trimmed or truncated), restarts the partition
    /// where the run started: its earliest or latest offset.
    fn reset_offset(&mut self, topic: &str, partition: i32) -> Result<(), ToolError> {
        let found = list_offsets(
            &mut self.client,
            self.list_version,
            topic,
            &[partition],
            self.start,
        )?;
        let offset = found[&partition];
        eprintln!(
            "warning: offset {} of {topic}-{partition} is out of range; continuing at {offset}",
            self.offsets[&partition]
        );
        self.offsets.insert(partition, offset);
        Ok(())
    }
}

/// The group member's side of the Fetch loop.
impl<W: Write> Consumer<W> {
    /// Joins `group`, prints what it assigns until a stop condition, then commits and leaves.
    fn run_group(&mut self, args: &ConsumeArgs, group: &str) -> Result<(), ToolError> {
        // Before any thread starts, so that every thread inherits the blocked signals.
        let stop = stop_on_signals()?;
        let config = MemberConfig {
            group: group.to_string(),
            topics: vec![args.topic.clone()],
            session_timeout_ms: SESSION_TIMEOUT_MS,
            rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
        };
        let mut member = GroupMember::new(&mut self.client, config)?;
        let result = self.follow_group(args, &mut member, &stop);
        if result.is_ok() || is_stdout_closed(&result) {
            self.commit_positions(args, &mut member)?;
            member.leave(&mut self.client)?;
        } else {
            // Leave so the others need not wait for our session to expire; the first error
            // is the one worth reporting.
            let _ = member.leave(&mut self.client);
        }
        result
    }

    fn follow_group(
        &mut self,
        args: &ConsumeArgs,
        member: &mut GroupMember,
        stop: &AtomicBool,
    ) -> Result<(), ToolError> {
        self.take_assignment(args, member)?;
        let timeout = args.timeout_ms.map(Duration::from_millis);
        let commit_interval = Duration::from_millis(COMMIT_INTERVAL_MS);
        let mut last_data = Instant::now();
        let mut last_commit = Instant::now();
        loop {
            if stop.load(Ordering::SeqCst) || args.max_messages.is_some_and(|m| self.printed >= m) {
                return Ok(());
            }
            if member.needs_rejoin()? {
                // Eager rebalance: commit what was printed, then give everything back.
                self.commit_positions(args, member)?;
                self.take_assignment(args, member)?;
                continue;
            }
            let Some(wait_ms) = fetch_wait_ms(timeout, last_data) else {
                return Ok(());
            };
            let printed_before = self.printed;
            if self.offsets.is_empty() {
                // Nothing assigned (more members than partitions): wait for a rebalance.
                std::thread::sleep(Duration::from_millis(wait_ms));
            } else {
                self.fetch_once(args, wait_ms as i32)?;
                self.out.flush().map_err(stdout_error)?;
            }
            if self.printed > printed_before {
                last_data = Instant::now();
            }
            if last_commit.elapsed() >= commit_interval {
                self.commit_positions(args, member)?;
                last_commit = Instant::now();
            }
        }
    }

    /// Joins (or rejoins) and starts each assigned partition at its committed offset, else at
    /// the earliest or latest offset.
    fn take_assignment(
        &mut self,
        args: &ConsumeArgs,
        member: &mut GroupMember,
    ) -> Result<(), ToolError> {
        let assignment = member.join(&mut self.client)?;
        let partitions = assignment.get(&args.topic).cloned().unwrap_or_default();
        self.offsets.clear();
        self.committed.clear();
        if partitions.is_empty() {
            return Ok(());
        }
        let mine: Assignment = [(args.topic.clone(), partitions.clone())].into();
        for ((_, partition), offset) in member.committed(&mut self.client, &mine)? {
            self.committed.insert(partition, offset);
        }
        let missing: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !self.committed.contains_key(p))
            .collect();
        self.offsets = self.committed.clone();
        if !missing.is_empty() {
            let version = self.list_version;
            let found = list_offsets(&mut self.client, version, &args.topic, &missing, self.start)?;
            self.offsets.extend(found);
        }
        Ok(())
    }

    /// Commits the position of every partition whose position moved since its last commit.
    fn commit_positions(
        &mut self,
        args: &ConsumeArgs,
        member: &mut GroupMember,
    ) -> Result<(), ToolError> {
        let changed: Offsets = self
            .offsets
            .iter()
            .filter(|(partition, offset)| self.committed.get(partition) != Some(offset))
            .map(|(&partition, &offset)| ((args.topic.clone(), partition), offset))
            .collect();
        if member.commit(&mut self.client, &changed)? {
            for ((_, partition), offset) in changed {
                self.committed.insert(partition, offset);
            }
        } else {
            eprintln!(
                "warning: group {}: the generation ended before offsets could be committed; \
                 the next owner may read some records again",
                args.group.as_deref().unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// Writes `[key SEP] value\n`; a null key or value prints as `null`.
fn write_record(out: &mut impl Write, record: &Record, args: &ConsumeArgs) -> std::io::Result<()> {
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

/// Asks for the offset at `timestamp` (EARLIEST or LATEST) of each partition.
pub fn list_offsets(
    client: &mut Client,
    version: i16,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>, ToolError> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&partition| {
                        ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let response = client.call(version, &request)?;
    let mut offsets = BTreeMap::new();
    for answer in response.topics.iter().flat_map(|t| t.partitions.iter()) {
        let partition = answer.partition_index;
        ToolError::check(
            || format!("list offsets of {topic}-{partition}"),
            answer.error_code,
            None,
        )?;
        offsets.insert(partition, answer.offset);
    }
    if let Some(missing) = partitions.iter().find(|p| !offsets.contains_key(p)) {
        return Err(ToolError::Corrupt(format!(
            "ListOffsets did not answer for {topic}-{missing}"
        )));
    }
    Ok(offsets)
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
        let record = Record {
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            ..Record::default()
        };
        write_record(&mut out, &record, &cli.consume).unwrap();
        write_record(&mut out, &Record::default(), &cli.consume).unwrap();
        assert_eq!(out, b"k=v\nnull=null\n");
    }
}

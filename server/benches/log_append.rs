//! Append throughput of the partition log over real files, against plain `write_all` calls
//! of the same bytes as the baseline.
//!
//! Each append is one 16-record batch of 1 KiB values (about 16.6 KB), built once and
//! reused: the log patches the base offset in place, outside the CRC's range, so the same
//! buffer stays a valid batch. The log runs with the default settings (1 GiB segments, no
//! flush policy); the baseline writes the same batch the same number of times to one file in
//! the same directory. Neither syncs. After an untimed quarter-size warm-up, each side runs
//! three times, alternating which goes first, and the median run is reported.
//!
//! Run with `cargo bench -p brook-server --bench log_append`. `BROOK_BENCH_MB` sets the
//! megabytes written per run (default 1024); `BROOK_BENCH_DIR` the parent of the temporary
//! directory (default the system temp dir).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use brook_core::log::{LogConfig, PartitionLog};
use brook_core::record::{BatchBuilder, Record};
use brook_core::types::{LeaderEpoch, Millis, Offset};
use brook_server::storage::FileStorage;

/// Records per batch.
const BATCH_RECORDS: usize = 16;
/// Bytes of each record's value.
const RECORD_VALUE_BYTES: usize = 1024;
/// Runs of each side; the median is reported.
const RUNS: usize = 3;
/// Megabytes written per run unless `BROOK_BENCH_MB` says otherwise.
const TOTAL_MB_DEFAULT: u64 = 1024;

/// What one run measured.
struct Run {
    elapsed: Duration,
    /// Per-append latencies in nanoseconds, sorted.
    latencies_ns: Vec<u64>,
}

impl Run {
    fn percentile_us(&self, percentile: f64) -> f64 {
        let last = self.latencies_ns.len().saturating_sub(1);
        let at = ((last as f64) * percentile).round() as usize;
        self.latencies_ns
            .get(at)
            .map_or(0.0, |&ns| ns as f64 / 1_000.0)
    }
}

/// One batch of `BATCH_RECORDS` records, as a producer would send it.
fn build_batch() -> Vec<u8> {
    let mut builder = BatchBuilder::new(Offset(0));
    for i in 0..BATCH_RECORDS {
        builder.push(&Record {
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(vec![b'x'; RECORD_VALUE_BYTES]),
            headers: Vec::new(),
        });
    }
    builder.build()
}

/// Appends `batch` `appends` times to a fresh file-backed log in `dir`.
fn run_log(dir: &Path, batch: &mut [u8], appends: usize) -> Run {
    let storage = FileStorage::open(dir).expect("open storage");
    let (mut log, _) =
        PartitionLog::open(storage, LogConfig::default(), Millis(0)).expect("open log");
    let mut latencies_ns = Vec::with_capacity(appends);
    let start = Instant::now();
    for i in 0..appends {
        let before = Instant::now();
        log.append(batch, LeaderEpoch(0), Millis(i as i64))
            .expect("append");
        latencies_ns.push(before.elapsed().as_nanos() as u64);
    }
    let elapsed = start.elapsed();
    let expected_end = (appends * BATCH_RECORDS) as i64;
    assert_eq!(
        log.log_end_offset(),
        Offset(expected_end),
        "every record appended"
    );
    drop(log.abandon());
    finish(elapsed, latencies_ns)
}

/// Writes `batch` `appends` times to one plain file in `dir`.
fn run_baseline(dir: &Path, batch: &[u8], appends: usize) -> Run {
    std::fs::create_dir_all(dir).expect("baseline dir");
    let mut file = File::create(dir.join("baseline.bin")).expect("create baseline file");
    let mut latencies_ns = Vec::with_capacity(appends);
    let start = Instant::now();
    for _ in 0..appends {
        let before = Instant::now();
        file.write_all(batch).expect("write");
        latencies_ns.push(before.elapsed().as_nanos() as u64);
    }
    let elapsed = start.elapsed();
    drop(file);
    finish(elapsed, latencies_ns)
}

fn finish(elapsed: Duration, mut latencies_ns: Vec<u64>) -> Run {
    latencies_ns.sort_unstable();
    Run {
        elapsed,
        latencies_ns,
    }
}

/// The run with the median elapsed time.
fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by_key(|run| run.elapsed);
    runs.swap_remove(runs.len() / 2)
}

fn report(label: &str, run: &Run, batch_bytes: usize, appends: usize) -> f64 {
    let secs = run.elapsed.as_secs_f64();
    let mb_per_s = (batch_bytes * appends) as f64 / secs / 1e6;
    let records_per_s = (appends * BATCH_RECORDS) as f64 / secs;
    println!(
        "{label:<9} {mb_per_s:>9.1} MB/s {records_per_s:>12.0} records/s   \
         p50 {:>7.2} µs   p99 {:>7.2} µs   ({secs:.3} s)",
        run.percentile_us(0.50),
        run.percentile_us(0.99),
    );
    mb_per_s
}

fn main() {
    let total_mb: u64 = std::env::var("BROOK_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TOTAL_MB_DEFAULT);
    let parent = std::env::var_os("BROOK_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir);
    let root = tempfile::tempdir_in(&parent).expect("temp dir");
    let mut batch = build_batch();
    let batch_bytes = batch.len();
    let appends = ((total_mb << 20) / batch_bytes as u64).max(1) as usize;
    println!(
        "log_append: {appends} appends of {batch_bytes}-byte batches ({BATCH_RECORDS} × \
         {RECORD_VALUE_BYTES}-byte values), {total_mb} MiB per run, {RUNS} runs each, in {}",
        root.path().display()
    );
    // One untimed quarter-size round first: the first writes after a build meet a colder
    // page cache and file system than every later run.
    let warm_up = (appends / 4).max(1);
    run_log(&root.path().join("warm-log"), &mut batch, warm_up);
    remove(&root.path().join("warm-log"));
    run_baseline(&root.path().join("warm-baseline"), &batch, warm_up);
    remove(&root.path().join("warm-baseline"));
    let (mut log_runs, mut baseline_runs) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let log_dir = root.path().join(format!("log-{i}"));
        let baseline_dir = root.path().join(format!("baseline-{i}"));
        // Alternate which side goes first, so neither always meets a busier page cache.
        if i % 2 == 0 {
            log_runs.push(run_log(&log_dir, &mut batch, appends));
            remove(&log_dir);
            baseline_runs.push(run_baseline(&baseline_dir, &batch, appends));
            remove(&baseline_dir);
        } else {
            baseline_runs.push(run_baseline(&baseline_dir, &batch, appends));
            remove(&baseline_dir);
            log_runs.push(run_log(&log_dir, &mut batch, appends));
            remove(&log_dir);
        }
        let (log, baseline) = (&log_runs[i], &baseline_runs[i]);
        println!(
            "  run {}: log {:.3} s, baseline {:.3} s",
            i + 1,
            log.elapsed.as_secs_f64(),
            baseline.elapsed.as_secs_f64()
        );
    }
    println!("median of {RUNS} runs:");
    let log_mb = report("log", &median(log_runs), batch_bytes, appends);
    let base_mb = report("baseline", &median(baseline_runs), batch_bytes, appends);
    println!("ratio log/baseline: {:.1}%", 100.0 * log_mb / base_mb);
}

fn remove(dir: &Path) {
    std::fs::remove_dir_all(dir).expect("remove run directory");
}

//! Model test of the partition log: random sequences of append, read, truncate, roll,
//! retention, DeleteRecords, flush, clean restart and crash-then-reopen over the simulated
//! disk, checked after every step against a plain in-memory model.
//!
//! After a crash the log must be a prefix of what was appended that contains everything
//! synced before the crash.

use brook_core::log::{LogConfig, PartitionLog};
use brook_core::record::{Batch, BatchBuilder, Batches, Record};
use brook_core::storage::{CrashMode, MemoryStorage};
use brook_core::{LeaderEpoch, Millis, Offset};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// One append call holding batches of (record count, value length).
    Append(Vec<(usize, usize)>),
    /// Read everything from a point chosen by the fraction, with a byte budget.
    Read {
        at: u8,
        max_bytes: u64,
    },
    Truncate {
        at: u8,
    },
    Roll,
    Retention {
        bytes: u64,
    },
    DeleteRecords {
        at: u8,
    },
    Flush,
    CleanRestart,
    Crash {
        torn: bool,
        seed: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((1usize..6, 0usize..300), 1..4).prop_map(Op::Append),
        2 => (any::<u8>(), 1u64..3000).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => any::<u8>().prop_map(|at| Op::Truncate { at }),
        1 => Just(Op::Roll),
        1 => (1000u64..8000).prop_map(|bytes| Op::Retention { bytes }),
        1 => any::<u8>().prop_map(|at| Op::DeleteRecords { at }),
        1 => Just(Op::Flush),
        1 => Just(Op::CleanRestart),
        2 => (any::<bool>(), any::<u64>()).prop_map(|(torn, seed)| Op::Crash { torn, seed }),
    ]
}

/// A stored batch as the model remembers it: offsets and the exact bytes appended.
#[derive(Clone, Debug)]
struct ModelBatch {
    base: Offset,
    next: Offset,
    bytes: Vec<u8>,
}

struct Model {
    batches: Vec<ModelBatch>,
    log_start: Offset,
    log_end: Offset,
}

impl Model {
    fn pick(&self, at: u8) -> Offset {
        let span = self.log_end.0 - self.log_start.0;
        Offset(self.log_start.0 + span * i64::from(at) / 255)
    }

    /// Batches a read from `from` may return: those not wholly below it or the log start.
    fn visible_from(&self, from: Offset) -> Vec<&ModelBatch> {
        let from = from.max(self.log_start);
        self.batches.iter().filter(|b| b.next > from).collect()
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn build(records: usize, value_len: usize, salt: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Offset(0));
    for i in 0..records {
        builder.push(&Record {
            timestamp: (salt * 10 + i) as i64,
            key: Some(format!("{salt}-{i}").into_bytes()),
            value: Some(vec![(salt % 251) as u8; value_len]),
            headers: Vec::new(),
        });
    }
    builder.build()
}

/// Reads the whole log from `from` in slices of `max_bytes` and returns its batches.
fn read_log(log: &PartitionLog<MemoryStorage>, from: Offset, max_bytes: u64) -> Vec<ModelBatch> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let slice = log
            .read(next, max_bytes, log.log_end_offset())
            .expect("read in range");
        let Some(slice) = slice else { break };
        assert!(
            slice.length > 0,
            "a returned slice holds at least one batch"
        );
        let bytes = log.read_bytes(&slice).expect("slice bytes");
        let mut batches = Batches::new(&bytes);
        for batch in batches.by_ref() {
            let batch = batch.expect("stored batch parses");
            batch.verify_crc().expect("stored batch has a valid CRC");
            out.push(ModelBatch {
                base: batch.base_offset(),
                next: batch.next_offset(),
                bytes: batch.as_bytes().to_vec(),
            });
        }
        assert!(batches.remainder().is_empty(), "slices hold whole batches");
        assert!(slice.next_offset > next, "reads make progress");
        next = slice.next_offset;
    }
    out
}

fn check(log: &PartitionLog<MemoryStorage>, model: &Model) {
    assert_eq!(log.log_end_offset(), model.log_end, "log end offset");
    assert_eq!(log.log_start_offset(), model.log_start, "log start offset");
    let stored = read_log(log, model.log_start, 1 << 20);
    let expected = model.visible_from(model.log_start);
    assert_eq!(
        stored.len(),
        expected.len(),
        "batch count from the log start"
    );
    for (got, want) in stored.iter().zip(expected) {
        assert_eq!(
            (got.base, got.next),
            (want.base, want.next),
            "batch offsets"
        );
        assert!(
            got.bytes == want.bytes,
            "batch at {} has the appended bytes",
            got.base
        );
    }
}

fn run(ops: Vec<Op>) {
    let now = Millis(1_000_000);
    let (mut log, _) = PartitionLog::open(MemoryStorage::new(), config(), now).expect("open");
    let mut model = Model {
        batches: Vec::new(),
        log_start: Offset(0),
        log_end: Offset(0),
    };
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append(batches) => {
                let mut records = Vec::new();
                for (i, &(count, value_len)) in batches.iter().enumerate() {
                    records.extend(build(count, value_len, step * 4 + i));
                }
                let info = log
                    .append(&mut records, LeaderEpoch(1), now)
                    .expect("append");
                assert_eq!(info.base_offset, model.log_end);
                let mut position = 0;
                while position < records.len() {
                    let batch = Batch::parse(&records[position..]).expect("patched batch");
                    model.batches.push(ModelBatch {
                        base: batch.base_offset(),
                        next: batch.next_offset(),
                        bytes: batch.as_bytes().to_vec(),
                    });
                    position += batch.size();
                }
                model.log_end = info.last_offset.plus(1);
            }
            Op::Read { at, max_bytes } => {
                let from = model.pick(at);
                let got = read_log(&log, from, max_bytes);
                let want = model.visible_from(from);
                assert_eq!(got.len(), want.len(), "batches read from {from}");
                for (got, want) in got.iter().zip(want) {
                    assert_eq!(got.base, want.base);
                }
            }
            Op::Truncate { at } => {
                let to = model.pick(at);
                log.truncate_to(to).expect("truncate");
                let end = model
                    .batches
                    .iter()
                    .find(|b| b.next > to)
                    .map_or(to, |b| b.base.min(to));
                let end = end.max(model.log_start);
                model.batches.retain(|b| b.next <= end);
                model.log_end = end;
            }
            Op::Roll => {
                log.roll(log.log_end_offset(), now).expect("roll");
            }
            Op::Retention { bytes } => {
                let config = LogConfig {
                    retention_bytes: Some(bytes),
                    ..config()
                };
                log.set_config(config).expect("config");
                log.apply_retention(now).expect("retention");
                log.set_config(crate::config()).expect("config");
                assert!(
                    log.log_start_offset() >= model.log_start,
                    "retention only moves forward"
                );
                model.log_start = log.log_start_offset();
                let sizes = log.segment_sizes();
                let oldest = sizes.first().copied().unwrap_or(0);
                let rest = log.size_bytes() - oldest;
                assert!(
                    oldest == 0 || rest < bytes,
                    "retention deletes while the rest fits: {sizes:?}"
                );
                model.batches.retain(|b| b.next > model.log_start);
            }
            Op::DeleteRecords { at } => {
                let to = model.pick(at);
                log.advance_log_start(to).expect("delete records");
                model.log_start = model.log_start.max(to);
                model.batches.retain(|b| b.next > model.log_start);
            }
            Op::Flush => log.flush().expect("flush"),
            Op::CleanRestart => {
                let storage = log.close().expect("close");
                let (reopened, report) = PartitionLog::open(storage, config(), now).expect("open");
                assert!(report.clean, "a closed log reopens clean");
                assert_eq!(report.segments_scanned, 0, "a clean reopen scans nothing");
                log = reopened;
            }
            Op::Crash { torn, seed } => {
                let synced = log.recovery_point();
                let mut storage = log.abandon();
                let mode = if torn {
                    CrashMode::Tear { seed }
                } else {
                    CrashMode::LoseUnsynced
                };
                storage.crash(mode);
                let (reopened, report) =
                    PartitionLog::open(storage, config(), now).expect("reopen");
                assert!(
                    !report.clean,
                    "a crash is never mistaken for a clean shutdown"
                );
                log = reopened;
                let end = log.log_end_offset();
                assert!(
                    end >= synced,
                    "synced data survives: end {end}, synced {synced}"
                );
                assert!(
                    end <= model.log_end.max(model.log_start),
                    "nothing new appears"
                );
                model.batches.retain(|b| b.next <= end);
                model.log_end = end;
            }
        }
        check(&log, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn log_model_random_operations_match_the_model(ops in prop::collection::vec(op(), 1..50)) {
        run(ops);
    }
}

#[test]
fn log_model_crash_after_sync_keeps_everything_synced() {
    run(vec![
        Op::Append(vec![(3, 100), (2, 50)]),
        Op::Flush,
        Op::Append(vec![(4, 200)]),
        Op::Crash {
            torn: false,
            seed: 0,
        },
        Op::Append(vec![(1, 10)]),
        Op::Crash {
            torn: true,
            seed: 7,
        },
    ]);
}

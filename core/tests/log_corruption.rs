//! Corruption test: bytes cut or flipped at random places in segment and index files.
//! Reopening never panics, never serves a corrupt batch, and keeps every batch before the
//! damage.
//!
//! Scope, as in Kafka: after a crash the log trusts data below its checkpointed recovery
//! point (it was synced) and verifies everything after it. So flips land in index files
//! anywhere, in `.log` files at or after the recovery point, or anywhere once the checkpoint
//! is gone too (then every segment is verified); cuts land anywhere.

use brook_core::log::{log_file, parse_file_name, LogConfig, PartitionLog, CHECKPOINT_FILE};
use brook_core::record::{BatchBuilder, Batches, Record};
use brook_core::storage::{MemoryStorage, Storage};
use brook_core::{LeaderEpoch, Millis, Offset};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// XOR a byte with a non-zero mask.
    Flip { mask: u8 },
    /// Cut the file at the position.
    Cut,
}

#[derive(Clone, Debug)]
struct Case {
    batches: Vec<(usize, usize)>,
    flush_after: usize,
    lose_checkpoint: bool,
    file_pick: u16,
    position_pick: u32,
    damage: Damage,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((1usize..5, 0usize..400), 5..60),
        any::<usize>(),
        any::<bool>(),
        any::<u16>(),
        any::<u32>(),
        prop_oneof![
            (1u8..=255).prop_map(|mask| Damage::Flip { mask }),
            Just(Damage::Cut)
        ],
    )
        .prop_map(
            |(batches, flush, lose_checkpoint, file_pick, position_pick, damage)| Case {
                flush_after: flush % batches.len(),
                batches,
                lose_checkpoint,
                file_pick,
                position_pick,
                damage,
            },
        )
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 3000,
        index_interval_bytes: 300,
        ..LogConfig::default()
    }
}

fn build(records: usize, value_len: usize, salt: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Offset(0));
    for i in 0..records {
        builder.push(&Record {
            timestamp: (salt * 100 + i) as i64,
            key: Some(salt.to_be_bytes().to_vec()),
            value: Some(vec![salt as u8; value_len]),
            headers: Vec::new(),
        });
    }
    builder.build()
}

/// Every batch the log serves, as (base offset, bytes), each checked to be intact.
fn served(log: &PartitionLog<MemoryStorage>) -> Vec<(Offset, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while let Some(slice) = log.read(next, 1 << 20, log.log_end_offset()).expect("read") {
        let bytes = log.read_bytes(&slice).expect("bytes");
        for batch in Batches::new(&bytes) {
            let batch = batch.expect("served bytes parse as batches");
            batch.verify_crc().expect("a served batch is never corrupt");
            out.push((batch.base_offset(), batch.as_bytes().to_vec()));
        }
        next = slice.next_offset;
    }
    out
}

fn run(case: Case) {
    let now = Millis(0);
    let (mut log, _) = PartitionLog::open(MemoryStorage::new(), config(), now).expect("open");
    let mut written = Vec::new(); // (segment base, end position, base offset, bytes)
    for (i, &(count, value_len)) in case.batches.iter().enumerate() {
        let mut records = build(count, value_len, i);
        let info = log
            .append(&mut records, LeaderEpoch(0), now)
            .expect("append");
        written.push((info.base_offset, records));
        if i == case.flush_after {
            log.flush().expect("flush");
        }
    }
    let recovery_point = log.recovery_point();
    let bases = log.segment_bases();
    let mut storage = log.abandon();
    if case.lose_checkpoint {
        storage.delete(CHECKPOINT_FILE).expect("delete checkpoint");
    }

    // Files the damage may hit, per the scope in the module doc.
    let scanned_from = bases.iter().rev().find(|&&b| b <= recovery_point).copied();
    let mut files: Vec<String> = storage
        .list()
        .expect("list")
        .into_iter()
        .filter(|name| match parse_file_name(name) {
            Some((_, "index" | "timeindex")) => true,
            Some((base, "log")) => {
                let verified = case.lose_checkpoint || scanned_from.is_none_or(|s| base >= s);
                verified || matches!(case.damage, Damage::Cut)
            }
            _ => false,
        })
        .collect();
    files.sort();
    let victim = files[case.file_pick as usize % files.len()].clone();
    let bytes = storage.bytes_mut(&victim).expect("victim exists");
    let damaged_at = if bytes.is_empty() {
        0
    } else {
        case.position_pick as usize % bytes.len()
    };
    match case.damage {
        Damage::Flip { mask } if !bytes.is_empty() => bytes[damaged_at] ^= mask,
        Damage::Flip { .. } => {}
        Damage::Cut => bytes.truncate(damaged_at),
    }

    let (log, _report) = PartitionLog::open(storage, config(), now).expect("reopen never fails");
    let kept = served(&log);
    // Batches before the damage: all of them when an index was hit; otherwise those in
    // earlier segments or ending before the damaged byte of the damaged segment.
    let damaged_segment = parse_file_name(&victim).filter(|(_, ext)| *ext == "log");
    let expected_intact = written
        .iter()
        .filter(|(base, records)| match damaged_segment {
            None => true,
            Some((segment, _)) => {
                let segment_of_batch = bases.iter().rev().find(|&&b| b <= *base).copied();
                match segment_of_batch {
                    Some(s) if s < segment => true,
                    Some(s) if s == segment => {
                        end_position(&written, &bases, *base) <= damaged_at as u64
                            && records.len() as u64 <= end_position(&written, &bases, *base)
                    }
                    _ => false,
                }
            }
        });
    for (base, records) in expected_intact {
        let found = kept.iter().find(|(b, _)| b == base);
        assert!(
            found.is_some_and(|(_, bytes)| bytes == records),
            "batch {base} kept intact"
        );
    }
    assert!(kept.windows(2).all(|w| w[0].0 < w[1].0), "offsets increase");
    assert_eq!(
        log_file(bases[0]),
        log_file(log.segment_bases()[0]),
        "first segment kept"
    );
}

/// The end position of the batch at `base` within its segment file.
fn end_position(written: &[(Offset, Vec<u8>)], bases: &[Offset], base: Offset) -> u64 {
    let segment = bases
        .iter()
        .rev()
        .find(|&&b| b <= base)
        .copied()
        .expect("segment");
    written
        .iter()
        .filter(|(b, _)| *b >= segment && *b <= base)
        .map(|(_, records)| records.len() as u64)
        .sum()
}

proptest! {
    #[test]
    fn log_corruption_random_damage_is_detected_and_earlier_batches_kept(case in case()) {
        run(case);
    }
}

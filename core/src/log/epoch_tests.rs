//! Tests of the partition log's leader-epoch history (KIP-101, KIP-279): appends, truncation,
//! the log start, persistence and recovery over the in-memory disk.

use super::tests::{batch, open, small_segments};
use super::*;
use crate::record::{set_base_offset, set_partition_leader_epoch};
use crate::storage::{CrashMode, MemoryStorage};

/// The history as (epoch, start offset) pairs.
fn entries(log: &PartitionLog<MemoryStorage>) -> Vec<(i32, i64)> {
    log.epoch_entries()
        .iter()
        .map(|e| (e.epoch.0, e.start_offset.0))
        .collect()
}

fn end(log: &PartitionLog<MemoryStorage>, requested: i32) -> (i32, i64) {
    let answer = log.end_offset_for_epoch(LeaderEpoch(requested));
    (answer.epoch.0, answer.end_offset.0)
}

/// Appends one batch of `records` records as leader of `epoch`.
fn append(log: &mut PartitionLog<MemoryStorage>, epoch: i32, records: usize) {
    log.append(&mut batch(records, 10, 0), LeaderEpoch(epoch), Millis(0))
        .expect("append");
}

/// The history the stored batches imply: where each epoch's first batch starts, cut at the
/// log start — the brute-force answer recovery must agree with.
fn history_of_batches(log: &PartitionLog<MemoryStorage>) -> Vec<(i32, i64)> {
    let mut history = LeaderEpochCache::new();
    let mut next = log.log_start_offset();
    while let Some(slice) = log.read(next, 1 << 20, log.log_end_offset()).unwrap() {
        let bytes = log.read_bytes(&slice).unwrap();
        for batch in crate::record::Batches::new(&bytes) {
            let batch = batch.unwrap();
            if history.admits(batch.partition_leader_epoch()) {
                history.assign(batch.partition_leader_epoch(), batch.base_offset());
            }
        }
        next = slice.next_offset;
    }
    history.truncate_from_start(log.log_start_offset());
    history
        .entries()
        .iter()
        .map(|e| (e.epoch.0, e.start_offset.0))
        .collect()
}

fn stored_file(log: &PartitionLog<MemoryStorage>) -> String {
    let bytes = log.storage().read_all(EPOCH_CHECKPOINT_FILE).unwrap();
    String::from_utf8(bytes.expect("the epoch checkpoint exists")).unwrap()
}

/// The log of `log_epochs_follow_appends`: epochs 0, 0, 2, 2, 5, two records a batch.
fn log_with_epochs(config: LogConfig) -> PartitionLog<MemoryStorage> {
    let (mut log, _) = open(MemoryStorage::new(), config);
    for epoch in [0, 0, 2, 2, 5] {
        append(&mut log, epoch, 2);
    }
    log
}

#[test]
fn log_epochs_follow_appends_and_answer_end_offsets() {
    let log = log_with_epochs(LogConfig::default());
    assert_eq!(entries(&log), [(0, 0), (2, 4), (5, 8)]);
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(5)));
    assert_eq!(
        stored_file(&log),
        "0\n3\n0 0\n2 4\n5 8\n",
        "Kafka's text format"
    );
    assert_eq!(end(&log, 0), (0, 4));
    assert_eq!(
        end(&log, 1),
        (0, 4),
        "a gap ends where the next epoch starts"
    );
    assert_eq!(end(&log, 2), (2, 8));
    assert_eq!(end(&log, 4), (2, 8));
    assert_eq!(
        end(&log, 5),
        (5, 10),
        "the latest epoch ends at the log end"
    );
    assert_eq!(end(&log, 6), (-1, -1));
    assert_eq!(end(&log, -1), (-1, -1));
}

#[test]
fn log_epochs_truncation_drops_the_epochs_it_cuts_off() {
    let mut log = log_with_epochs(LogConfig::default());
    log.truncate_to(Offset(8)).unwrap();
    assert_eq!(entries(&log), [(0, 0), (2, 4)]);
    assert_eq!(end(&log, 2), (2, 8), "2 is the latest now");
    assert_eq!(
        stored_file(&log),
        "0\n2\n0 0\n2 4\n",
        "durable with the cut"
    );
    log.truncate_to(Offset(5)).unwrap(); // cuts at the batch holding 5, which starts at 4
    assert_eq!(log.log_end_offset(), Offset(4));
    assert_eq!(entries(&log), [(0, 0)]);
    // A follower re-appends under a newer leader after truncating.
    append(&mut log, 3, 2);
    assert_eq!(entries(&log), [(0, 0), (3, 4)]);
    log.truncate_to(Offset(0)).unwrap();
    assert!(entries(&log).is_empty());
    assert_eq!(stored_file(&log), "0\n0\n");
    log.truncate_fully_and_start_at(Offset(50), None).unwrap();
    append(&mut log, 3, 1);
    assert_eq!(entries(&log), [(3, 50)]);
    log.truncate_fully_and_start_at(Offset(70), None).unwrap();
    assert!(entries(&log).is_empty(), "an emptied log has no epochs");
}

#[test]
fn log_epochs_follow_the_log_start() {
    let (mut log, _) = open(MemoryStorage::new(), small_segments());
    for epoch in 0..60 {
        append(&mut log, epoch / 10, 4); // epochs 0..6, ten batches each
    }
    assert_eq!(entries(&log).len(), 6);
    log.advance_log_start(Offset(45)).unwrap();
    assert_eq!(
        entries(&log)[..2],
        [(1, 45), (2, 80)],
        "epoch 1 covers offset 45"
    );
    let kept = entries(&log);
    let storage = log.abandon();
    let (mut log, _) = open(storage, small_segments());
    assert_eq!(entries(&log), kept, "the moved start is persisted");
    let config = LogConfig {
        retention_bytes: Some(4096),
        ..small_segments()
    };
    log.set_config(config).unwrap();
    assert!(log.apply_retention(Millis(0)).unwrap() > 0);
    let start = log.log_start_offset().0;
    assert!(
        start > 80,
        "retention removed whole segments: start {start}"
    );
    assert_eq!(
        entries(&log)[0].1,
        start,
        "the covering epoch starts at the log start"
    );
    assert_eq!(entries(&log), history_of_batches(&log));
}

#[test]
fn log_epochs_survive_close_and_reopen() {
    let log = log_with_epochs(small_segments());
    let storage = log.close().unwrap();
    let (log, report) = open(storage, small_segments());
    assert!(report.clean);
    assert_eq!(entries(&log), [(0, 0), (2, 4), (5, 8)]);
    assert_eq!(end(&log, 2), (2, 8));
    assert_eq!(end(&log, 5), (5, 10));
    assert!(report.repairs.is_empty(), "{:?}", report.repairs);
}

/// A crash keeps only synced batches; the history is written before a new epoch's batch,
/// so after the crash it holds epochs whose batches are gone until the open cuts them.
#[test]
fn log_epochs_after_a_crash_match_the_recovered_log() {
    for mode in [
        CrashMode::LoseUnsynced,
        CrashMode::Tear { seed: 1 },
        CrashMode::Tear { seed: 7 },
        CrashMode::Tear { seed: 42 },
    ] {
        let (mut log, _) = open(MemoryStorage::new(), small_segments());
        for i in 0..50 {
            append(&mut log, i / 8, 3); // several segments, a new epoch every 8 batches
        }
        log.flush().unwrap();
        let synced = entries(&log);
        for i in 0..30 {
            append(&mut log, 7 + i / 4, 3); // unsynced, with epochs the file already has
        }
        assert_eq!(entries(&log).len(), synced.len() + 8);
        let mut storage = log.abandon();
        storage.crash(mode);
        let (log, report) = open(storage, small_segments());
        assert!(!report.clean);
        assert!(
            log.log_end_offset() >= Offset(150),
            "{mode:?}: synced batches survive"
        );
        let recovered = entries(&log);
        assert_eq!(recovered, history_of_batches(&log), "{mode:?}");
        assert_eq!(recovered[..synced.len()], synced[..], "{mode:?}");
        assert!(
            recovered
                .iter()
                .all(|&(_, start)| start < log.log_end_offset().0),
            "{mode:?}: no epoch starts at or beyond the recovered end"
        );
        assert_eq!(
            LeaderEpochCache::decode(stored_file(&log).as_bytes()).as_ref(),
            Some(&log.epochs),
            "{mode:?}: the file matches after the open"
        );
    }
}

#[test]
fn log_epochs_lost_with_unsynced_batches_are_dropped_on_open() {
    for roll_first in [false, true] {
        let (mut log, _) = open(MemoryStorage::new(), LogConfig::default());
        append(&mut log, 0, 2);
        log.flush().unwrap();
        if roll_first {
            // The lost batch is alone in the active segment: no batch of an older epoch
            // is scanned after the stale entry, only the log end shows it is stale.
            log.roll(Offset(2), Millis(0)).unwrap();
        }
        append(&mut log, 4, 2); // never synced
        assert!(
            stored_file(&log).ends_with("4 2\n"),
            "persisted before the batch"
        );
        let mut storage = log.abandon();
        storage.crash(CrashMode::LoseUnsynced);
        let (log, _) = open(storage, LogConfig::default());
        assert_eq!(log.log_end_offset(), Offset(2), "roll first: {roll_first}");
        assert_eq!(entries(&log), [(0, 0)], "roll first: {roll_first}");
        assert_eq!(stored_file(&log), "0\n1\n0 0\n");
    }
}

#[test]
fn log_epochs_damaged_or_missing_checkpoint_is_rebuilt_from_the_batches() {
    let damage: [fn(&mut MemoryStorage); 4] = [
        |s| s.bytes_mut(EPOCH_CHECKPOINT_FILE).unwrap()[0] = b'x',
        |s| s.bytes_mut(EPOCH_CHECKPOINT_FILE).unwrap().truncate(7),
        |s| *s.bytes_mut(EPOCH_CHECKPOINT_FILE).unwrap() = b"0\n9\n\xff\xff".to_vec(),
        |s| s.delete(EPOCH_CHECKPOINT_FILE).unwrap(),
    ];
    for (i, harm) in damage.into_iter().enumerate() {
        for clean in [true, false] {
            let log = log_with_epochs(small_segments());
            let mut storage = match clean {
                true => log.close().unwrap(),
                false => log.abandon(),
            };
            harm(&mut storage);
            let (log, report) = open(storage, small_segments());
            assert_eq!(entries(&log), [(0, 0), (2, 4), (5, 8)], "damage {i}");
            assert!(
                report.repairs.iter().any(|r| r.contains("leader-epoch")),
                "damage {i}: {:?}",
                report.repairs
            );
            assert_eq!(stored_file(&log), "0\n3\n0 0\n2 4\n5 8\n", "rewritten");
        }
    }
}

/// A well-formed file that claims a newer epoch than the batches scanned after it is not
/// believed: the history is rebuilt from every batch.
#[test]
fn log_epochs_checkpoint_disagreeing_with_scanned_batches_is_rebuilt() {
    let (mut log, _) = open(MemoryStorage::new(), small_segments());
    for i in 0..40 {
        append(&mut log, i / 20, 4);
    }
    log.roll(log.log_end_offset(), Millis(0)).unwrap(); // the old segments are synced
    for _ in 0..5 {
        append(&mut log, 1, 4);
    }
    let mut storage = log.abandon();
    *storage.bytes_mut(EPOCH_CHECKPOINT_FILE).unwrap() = b"0\n2\n0 0\n9 10\n".to_vec();
    let (log, report) = open(storage, small_segments());
    assert!(report.segments_scanned >= 1);
    assert!(report.repairs.iter().any(|r| r.contains("disagrees")));
    assert_eq!(entries(&log), [(0, 0), (1, 80)]);
    assert_eq!(entries(&log), history_of_batches(&log));
}

#[test]
fn log_append_refuses_a_leader_epoch_below_the_latest() {
    let mut log = log_with_epochs(LogConfig::default());
    let mut records = batch(2, 10, 0);
    let untouched = records.clone();
    let err = log
        .append(&mut records, LeaderEpoch(4), Millis(0))
        .unwrap_err();
    assert!(matches!(
        err,
        LogError::StaleLeaderEpoch {
            epoch: LeaderEpoch(4),
            latest: LeaderEpoch(5)
        }
    ));
    assert_eq!(ErrorCode::from(&err), ErrorCode::FencedLeaderEpoch);
    assert_eq!(records, untouched, "nothing patched");
    assert_eq!(log.log_end_offset(), Offset(10), "nothing written");
    assert!(log.offline_reason().is_none(), "not a storage failure");
    append(&mut log, 5, 1);
    assert_eq!(entries(&log), [(0, 0), (2, 4), (5, 8)]);
}

#[test]
fn log_append_replicated_takes_batch_epochs_and_refuses_older_ones() {
    let leader = log_with_epochs(LogConfig::default());
    let slice = leader
        .read(Offset(0), 1 << 20, leader.log_end_offset())
        .unwrap()
        .unwrap();
    let bytes = leader.read_bytes(&slice).unwrap();
    let (mut follower, _) = open(MemoryStorage::new(), LogConfig::default());
    follower.append_replicated(&bytes, Millis(0)).unwrap();
    assert_eq!(entries(&follower), entries(&leader));
    assert_eq!(stored_file(&follower), stored_file(&leader));

    // A batch of epoch 3 after epoch 5 is refused, and so is a whole request holding one.
    let mut stale = batch(1, 10, 0);
    set_base_offset(&mut stale, Offset(10));
    set_partition_leader_epoch(&mut stale, LeaderEpoch(3));
    let err = follower.append_replicated(&stale, Millis(0)).unwrap_err();
    assert!(matches!(
        err,
        LogError::StaleLeaderEpoch {
            epoch: LeaderEpoch(3),
            latest: LeaderEpoch(5)
        }
    ));
    let mut newer = batch(1, 10, 0);
    set_base_offset(&mut newer, Offset(10));
    set_partition_leader_epoch(&mut newer, LeaderEpoch(6));
    let mut mixed = newer.clone();
    set_base_offset(&mut stale, Offset(11));
    set_partition_leader_epoch(&mut stale, LeaderEpoch(5));
    mixed.extend_from_slice(&stale);
    let err = follower.append_replicated(&mixed, Millis(0)).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::StaleLeaderEpoch {
                epoch: LeaderEpoch(5),
                latest: LeaderEpoch(6)
            }
        ),
        "{err:?}"
    );
    assert_eq!(follower.log_end_offset(), Offset(10), "nothing written");
    assert_eq!(entries(&follower), [(0, 0), (2, 4), (5, 8)]);
    follower.append_replicated(&newer, Millis(0)).unwrap();
    assert_eq!(entries(&follower), [(0, 0), (2, 4), (5, 8), (6, 10)]);
}

/// A new leader records its epoch at the log end before any batch carries it (Kafka's
/// `maybeAssignEpochStartOffset`); the entry reaches the checkpoint with the epoch's first
/// batch, and an entry no batch followed is gone after a restart.
#[test]
fn log_start_leader_epoch_records_the_epoch_at_the_log_end() {
    let (mut log, _) = open(MemoryStorage::new(), LogConfig::default());
    append(&mut log, 0, 4);
    log.start_leader_epoch(LeaderEpoch(3)).unwrap();
    assert_eq!(entries(&log), [(0, 0), (3, 4)]);
    assert_eq!(
        end(&log, 0),
        (0, 4),
        "epoch 0 ends where the new leader starts"
    );
    assert_eq!(end(&log, 2), (0, 4));
    assert_eq!(end(&log, 3), (3, 4));
    assert_eq!(
        stored_file(&log),
        "0\n1\n0 0\n",
        "not written before a batch"
    );
    log.start_leader_epoch(LeaderEpoch(3)).unwrap();
    assert_eq!(
        entries(&log),
        [(0, 0), (3, 4)],
        "the same epoch again adds nothing"
    );
    assert!(matches!(
        log.start_leader_epoch(LeaderEpoch(2)),
        Err(LogError::StaleLeaderEpoch { .. })
    ));
    append(&mut log, 3, 2);
    assert_eq!(
        stored_file(&log),
        "0\n2\n0 0\n3 4\n",
        "written with its first batch"
    );

    // An epoch recorded with no batch after it does not survive a restart (the new leader
    // records it again): recovery drops entries at the log end.
    log.start_leader_epoch(LeaderEpoch(5)).unwrap();
    log.flush().unwrap();
    let mut storage = log.abandon();
    storage.crash(CrashMode::LoseUnsynced);
    let (log, _) = open(storage, LogConfig::default());
    assert_eq!(entries(&log), [(0, 0), (3, 4)]);
    assert_eq!(end(&log, 5), (-1, -1));
}

/// A leader that recorded its epoch and was replaced before appending: the follower's
/// truncation to its own log end drops that epoch, so its next fetch claims the last epoch
/// its batches carry (otherwise it keeps diverging at the same offset forever).
#[test]
fn log_truncation_at_the_log_end_drops_an_epoch_without_batches() {
    let (mut log, _) = open(MemoryStorage::new(), LogConfig::default());
    append(&mut log, 0, 3);
    log.start_leader_epoch(LeaderEpoch(1)).unwrap();
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(1)));
    log.truncate_to(Offset(3)).unwrap();
    assert_eq!(entries(&log), [(0, 0)]);
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(0)));
    assert_eq!(log.log_end_offset(), Offset(3), "nothing else changes");
}

/// The leader epoch of a batch lies outside its CRC: a bit flipped there makes the batch
/// claim an epoch the history file never named. Recovery treats that as damage — the batch
/// and what follows it are cut, like a torn tail — instead of taking the epoch into the
/// history, where it would refuse every later leader (their epochs look stale next to it).
#[test]
fn epochs_a_damaged_epoch_field_is_cut_at_recovery_not_taken_into_the_history() {
    let (mut log, _) = open(MemoryStorage::new(), small_segments());
    append(&mut log, 0, 4);
    append(&mut log, 1, 4);
    append(&mut log, 1, 4);
    log.flush().unwrap();
    let damaged = log.read(Offset(8), 1, Offset(12)).unwrap().unwrap();
    assert_eq!(damaged.first_offset, Offset(8));
    let mut storage = log.abandon();
    // The top bit but one of the epoch's first byte: epoch 1 becomes 2^30 + 1.
    storage.flip_bit(&damaged.file, damaged.position as usize + 12, 6);
    storage.crash(CrashMode::LoseUnsynced);
    let (mut log, report) = open(storage, small_segments());
    assert!(
        report
            .repairs
            .iter()
            .any(|r| r.contains("newer than the history's newest")),
        "{report:?}"
    );
    assert_eq!(log.log_end_offset(), Offset(8), "cut at the damaged batch");
    assert_eq!(entries(&log), vec![(0, 0), (1, 4)]);
    // The next leader's epoch is taken.
    log.start_leader_epoch(LeaderEpoch(2)).unwrap();
    append(&mut log, 2, 1);
    assert_eq!(entries(&log), vec![(0, 0), (1, 4), (2, 8)]);
}

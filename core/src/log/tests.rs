//! Unit tests of the partition log over the in-memory disk.

use super::*;
use crate::log::CompactionReport;
use crate::record::{Batch, BatchBuilder, Record, TimestampType};
use crate::storage::{CrashMode, MemoryStorage};

pub(super) fn batch(records: usize, value_len: usize, timestamp: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Offset(0));
    for i in 0..records {
        builder.push(&Record {
            timestamp: timestamp + i as i64,
            key: Some(format!("k{i}").into_bytes()),
            value: Some(vec![b'v'; value_len]),
            headers: Vec::new(),
        });
    }
    builder.build()
}

pub(super) fn open(
    storage: MemoryStorage,
    config: LogConfig,
) -> (PartitionLog<MemoryStorage>, RecoveryReport) {
    PartitionLog::open(storage, config, Millis(1_000)).expect("open")
}

pub(super) fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

/// Reads every batch from `from` to the log end and returns (base offset, record count) pairs.
fn read_all(log: &PartitionLog<MemoryStorage>, from: Offset) -> Vec<(Offset, i32)> {
    let mut out = Vec::new();
    let mut next = from;
    while let Some(slice) = log.read(next, 1 << 20, log.log_end_offset()).expect("read") {
        let bytes = log.read_bytes(&slice).expect("bytes");
        for batch in crate::record::Batches::new(&bytes) {
            let batch = batch.expect("stored batch parses");
            batch.verify_crc().expect("stored batch CRC");
            out.push((batch.base_offset(), batch.record_count()));
        }
        next = slice.next_offset;
    }
    out
}

#[test]
fn log_append_assigns_offsets_and_epoch_outside_the_crc() {
    let (mut log, _) = open(MemoryStorage::new(), LogConfig::default());
    let mut records = batch(3, 10, 100);
    let first_size = records.len();
    records.extend_from_slice(&batch(2, 10, 200));
    let info = log
        .append(&mut records, LeaderEpoch(7), Millis(5))
        .expect("append");
    assert_eq!((info.base_offset, info.last_offset), (Offset(0), Offset(4)));
    assert_eq!((info.batch_count, info.record_count), (2, 5));
    assert_eq!(log.log_end_offset(), Offset(5));
    let second = Batch::parse(&records[first_size..]).expect("second batch");
    assert_eq!(second.base_offset(), Offset(3));
    assert_eq!(second.partition_leader_epoch(), LeaderEpoch(7));
    second
        .verify_crc()
        .expect("patching base offset and epoch keeps the CRC valid");
    assert_eq!(
        read_all(&log, Offset(0)),
        vec![(Offset(0), 3), (Offset(3), 2)]
    );
}

#[test]
fn log_append_rejects_bad_batches_with_kafka_codes() {
    let config = LogConfig {
        max_message_bytes: 200,
        ..LogConfig::default()
    };
    let (mut log, _) = open(MemoryStorage::new(), config);
    let mut corrupt = batch(1, 10, 0);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x40;
    let err = log
        .append(&mut corrupt, LeaderEpoch(0), Millis(0))
        .unwrap_err();
    assert_eq!(ErrorCode::from(&err), ErrorCode::CorruptMessage);
    let mut large = batch(1, 500, 0);
    let err = log
        .append(&mut large, LeaderEpoch(0), Millis(0))
        .unwrap_err();
    assert_eq!(ErrorCode::from(&err), ErrorCode::MessageTooLarge);
    let mut truncated = batch(1, 10, 0);
    truncated.pop();
    let err = log
        .append(&mut truncated, LeaderEpoch(0), Millis(0))
        .unwrap_err();
    assert_eq!(ErrorCode::from(&err), ErrorCode::CorruptMessage);
    let err = log.append(&mut [], LeaderEpoch(0), Millis(0)).unwrap_err();
    assert_eq!(ErrorCode::from(&err), ErrorCode::InvalidRecord);
    assert_eq!(log.log_end_offset(), Offset(0), "nothing was appended");
}

#[test]
fn log_read_respects_budget_upper_bound_and_range() {
    let (mut log, _) = open(MemoryStorage::new(), LogConfig::default());
    for _ in 0..4 {
        let mut records = batch(2, 100, 0);
        log.append(&mut records, LeaderEpoch(0), Millis(0))
            .expect("append");
    }
    let size = batch(2, 100, 0).len() as u64;
    let slice = log.read(Offset(0), size * 2, Offset(8)).unwrap().unwrap();
    assert_eq!(
        (slice.position, slice.length, slice.next_offset),
        (0, size * 2, Offset(4))
    );
    let slice = log.read(Offset(3), 1, Offset(8)).unwrap().unwrap();
    assert_eq!(
        slice.length, size,
        "the first batch is returned whole even over budget"
    );
    assert_eq!(slice.first_offset, Offset(2));
    let slice = log.read(Offset(0), 1 << 20, Offset(5)).unwrap().unwrap();
    assert_eq!(
        slice.next_offset,
        Offset(4),
        "batches past the upper bound are not served"
    );
    assert_eq!(log.read(Offset(8), 1 << 20, Offset(8)).unwrap(), None);
    assert!(matches!(
        log.read(Offset(9), 10, Offset(9)),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn log_rolls_segments_by_size_and_indexes_sparsely() {
    let (mut log, _) = open(MemoryStorage::new(), small_segments());
    for _ in 0..40 {
        let mut records = batch(4, 50, 0);
        log.append(&mut records, LeaderEpoch(0), Millis(0))
            .expect("append");
    }
    let bases = log.segment_bases();
    assert!(bases.len() > 3, "segments: {bases:?}");
    for base in &bases {
        let name = log_file(*base);
        let size = log.storage().size(&name).unwrap();
        assert!(size <= 4096, "{name} is {size} bytes");
        let index = log.storage().size(&index_file(*base)).unwrap();
        assert!(
            index > 0 || base == bases.last().unwrap(),
            "{name} has index entries"
        );
    }
    assert_eq!(read_all(&log, Offset(0)).len(), 40);
    assert_eq!(read_all(&log, Offset(77)).first(), Some(&(Offset(76), 4)));
}

#[test]
fn log_rolls_by_segment_age() {
    let config = LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    };
    let (mut log, _) = open(MemoryStorage::new(), config);
    log.append(&mut batch(1, 10, 0), LeaderEpoch(0), Millis(10_000))
        .unwrap();
    log.append(&mut batch(1, 10, 0), LeaderEpoch(0), Millis(10_500))
        .unwrap();
    assert_eq!(log.segment_bases(), vec![Offset(0)]);
    log.append(&mut batch(1, 10, 0), LeaderEpoch(0), Millis(11_000))
        .unwrap();
    assert_eq!(log.segment_bases(), vec![Offset(0), Offset(2)]);
}

#[test]
fn log_retention_by_size_and_time_advances_the_start() {
    let config = LogConfig {
        retention_bytes: Some(8192),
        retention_ms: None,
        ..small_segments()
    };
    let (mut log, _) = open(MemoryStorage::new(), config);
    for i in 0..120 {
        log.append(&mut batch(2, 50, i), LeaderEpoch(0), Millis(0))
            .unwrap();
    }
    let before = (log.size_bytes(), log.segment_bases());
    let deleted = log.apply_retention(Millis(0)).unwrap();
    assert!(deleted > 0, "{before:?} {:?}", log.segment_bases());
    assert!(
        log.size_bytes() <= 8192 + 4096,
        "size {} after retention",
        log.size_bytes()
    );
    assert_eq!(log.log_start_offset(), log.segment_bases()[0]);
    assert!(matches!(
        log.read(Offset(0), 10, Offset(240)),
        Err(LogError::OffsetOutOfRange { .. })
    ));

    let config = LogConfig {
        retention_ms: Some(1000),
        ..small_segments()
    };
    let (mut log, _) = open(MemoryStorage::new(), config);
    for i in 0..30 {
        log.append(
            &mut batch(2, 50, 10_000 + i),
            LeaderEpoch(0),
            Millis(10_000),
        )
        .unwrap();
    }
    assert_eq!(
        log.apply_retention(Millis(10_500)).unwrap(),
        0,
        "nothing is old yet"
    );
    assert!(log.apply_retention(Millis(20_000)).unwrap() > 0);
    assert_eq!(
        log.log_start_offset(),
        Offset(60),
        "every segment expired, the active one too"
    );
    assert_eq!(log.log_end_offset(), Offset(60));
    log.append(&mut batch(1, 5, 0), LeaderEpoch(0), Millis(20_000))
        .unwrap();
    assert_eq!(read_all(&log, Offset(60)), vec![(Offset(60), 1)]);
}

#[test]
fn log_delete_records_moves_the_start_and_survives_reopen() {
    let (mut log, _) = open(MemoryStorage::new(), small_segments());
    for _ in 0..40 {
        log.append(&mut batch(4, 50, 0), LeaderEpoch(0), Millis(0))
            .unwrap();
    }
    log.advance_log_start(Offset(101)).unwrap();
    assert_eq!(log.log_start_offset(), Offset(101));
    assert!(log.segment_bases()[0] <= Offset(101));
    assert_eq!(read_all(&log, Offset(101)).first(), Some(&(Offset(100), 4)));
    let storage = log.abandon();
    let (log, _) = open(storage, small_segments());
    assert_eq!(
        log.log_start_offset(),
        Offset(101),
        "log start is checkpointed"
    );
    assert!(log.advance_log_start_check(Offset(161)));
}

impl PartitionLog<MemoryStorage> {
    fn advance_log_start_check(mut self, beyond_end: Offset) -> bool {
        matches!(
            self.advance_log_start(beyond_end),
            Err(LogError::OffsetOutOfRange { .. })
        )
    }
}

#[test]
fn log_truncate_to_removes_later_batches_durably() {
    let (mut log, _) = open(MemoryStorage::new(), small_segments());
    for _ in 0..40 {
        log.append(&mut batch(4, 50, 0), LeaderEpoch(0), Millis(0))
            .unwrap();
    }
    log.truncate_to(Offset(50)).unwrap();
    assert_eq!(
        log.log_end_offset(),
        Offset(48),
        "cut at the start of the batch holding 50"
    );
    let mut storage = log.abandon();
    storage.crash(CrashMode::LoseUnsynced);
    let (mut log, _) = open(storage, small_segments());
    assert_eq!(log.log_end_offset(), Offset(48));
    log.append(&mut batch(1, 10, 0), LeaderEpoch(1), Millis(0))
        .unwrap();
    let batches = read_all(&log, Offset(40));
    assert_eq!(batches.last(), Some(&(Offset(48), 1)));
    log.truncate_to(Offset(0)).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (Offset(0), Offset(0))
    );
}

#[test]
fn log_clean_close_skips_the_scan_and_crash_truncates_torn_tail() {
    let (mut log, _) = open(MemoryStorage::new(), small_segments());
    for _ in 0..20 {
        log.append(&mut batch(4, 50, 0), LeaderEpoch(0), Millis(0))
            .unwrap();
    }
    let storage = log.close().unwrap();
    let (mut log, report) = open(storage, small_segments());
    assert!(report.clean);
    assert_eq!(report.segments_scanned, 0);
    assert_eq!(log.log_end_offset(), Offset(80));
    log.flush().unwrap();
    for _ in 0..3 {
        log.append(&mut batch(4, 50, 0), LeaderEpoch(0), Millis(0))
            .unwrap();
    }
    let mut storage = log.abandon();
    let active = log_file(*segment_names(&storage).last().unwrap());
    let len = storage.bytes_mut(&active).unwrap().len();
    storage.bytes_mut(&active).unwrap().truncate(len - 7); // a torn final write
    let (log, report) = open(storage, small_segments());
    assert!(!report.clean);
    assert!(report.segments_scanned >= 1);
    assert_eq!(
        log.log_end_offset(),
        Offset(88),
        "the torn batch is gone, the rest kept"
    );
    assert!(report.bytes_truncated > 0);
}

fn segment_names(storage: &MemoryStorage) -> Vec<Offset> {
    let mut bases: Vec<Offset> = storage
        .list()
        .unwrap()
        .iter()
        .filter_map(|n| parse_file_name(n))
        .filter(|(_, ext)| *ext == "log")
        .map(|(b, _)| b)
        .collect();
    bases.sort();
    bases
}

#[test]
fn log_flush_messages_one_syncs_every_append() {
    let config = LogConfig {
        flush_messages: Some(1),
        ..LogConfig::default()
    };
    let (mut log, _) = open(MemoryStorage::new(), config);
    let info = log
        .append(&mut batch(2, 10, 0), LeaderEpoch(0), Millis(0))
        .unwrap();
    assert!(info.synced);
    assert_eq!(log.recovery_point(), Offset(2));
    let mut storage = log.abandon();
    storage.crash(CrashMode::LoseUnsynced);
    let (log, _) = open(storage, LogConfig::default());
    assert_eq!(
        log.log_end_offset(),
        Offset(2),
        "a synced append survives a crash"
    );

    let config = LogConfig {
        flush_ms: Some(100),
        ..LogConfig::default()
    };
    let (mut log, _) = open(MemoryStorage::new(), config);
    let info = log
        .append(&mut batch(2, 10, 0), LeaderEpoch(0), Millis(1000))
        .unwrap();
    assert!(!info.synced);
    log.tick(Millis(1050)).unwrap();
    assert_eq!(log.recovery_point(), Offset(0));
    log.tick(Millis(1100)).unwrap();
    assert_eq!(log.recovery_point(), Offset(2));
}

#[test]
fn log_append_time_overrides_timestamps_and_keeps_crc_valid() {
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let (mut log, _) = open(MemoryStorage::new(), config);
    let mut records = batch(2, 10, 5);
    let info = log
        .append(&mut records, LeaderEpoch(0), Millis(777))
        .unwrap();
    assert_eq!(info.log_append_time, Some(Millis(777)));
    let stored = Batch::parse(&records).unwrap();
    assert_eq!(stored.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(stored.max_timestamp(), 777);
    stored.validate(1 << 20).expect("CRC recomputed");
}

#[test]
fn log_offset_for_timestamp_finds_the_first_record_at_or_after() {
    let (mut log, _) = open(MemoryStorage::new(), small_segments());
    for i in 0..40 {
        log.append(&mut batch(2, 50, 1000 * i), LeaderEpoch(0), Millis(0))
            .unwrap();
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((Offset(0), 0)));
    assert_eq!(
        log.offset_for_timestamp(5000).unwrap(),
        Some((Offset(10), 5000))
    );
    assert_eq!(
        log.offset_for_timestamp(5002).unwrap(),
        Some((Offset(12), 6000))
    );
    assert_eq!(log.offset_for_timestamp(1_000_000).unwrap(), None);
    assert_eq!(log.max_timestamp(), Some((39_001, Offset(79))));
}

#[test]
fn log_append_of_many_batches_writes_every_index_entry() {
    // Each request holds 12 batches and crosses `index.interval.bytes` several times, so one
    // append writes several offset- and time-index entries through the reused buffers.
    let config = LogConfig {
        index_interval_bytes: 256,
        ..LogConfig::default()
    };
    let (mut log, _) = open(MemoryStorage::new(), config);
    for request in 0..3 {
        let mut records: Vec<u8> = (0..12)
            .flat_map(|i| batch(2, 100, 1_000 * request + 10 * i))
            .collect();
        let info = log.append(&mut records, LeaderEpoch(0), Millis(0)).unwrap();
        assert_eq!(info.batch_count, 12);
        assert_eq!(info.base_offset, Offset(24 * request));
    }
    let segment = log.active().clone();
    assert!(
        segment.offset_index.len() > 6,
        "entries: {}",
        segment.offset_index.len()
    );
    assert!(
        segment.time_index.len() > 6,
        "entries: {}",
        segment.time_index.len()
    );
    let offset_bytes: Vec<u8> = segment
        .offset_index
        .iter()
        .flat_map(|e| e.encode())
        .collect();
    let time_bytes: Vec<u8> = segment.time_index.iter().flat_map(|e| e.encode()).collect();
    let storage = log.storage();
    assert_eq!(
        storage.read_all(&segment.files.index).unwrap(),
        Some(offset_bytes)
    );
    assert_eq!(
        storage.read_all(&segment.files.time_index).unwrap(),
        Some(time_bytes)
    );
    for entry in &segment.offset_index {
        let header = log
            .read_header(&segment, u64::from(entry.position))
            .unwrap();
        assert_eq!(
            header.last_offset,
            segment.base.plus(i64::from(entry.relative_offset))
        );
    }
    assert_eq!(read_all(&log, Offset(0)).len(), 36);
}

#[test]
fn log_replicated_append_keeps_leader_offsets() {
    let (mut leader, _) = open(MemoryStorage::new(), LogConfig::default());
    for _ in 0..3 {
        leader
            .append(&mut batch(2, 10, 0), LeaderEpoch(3), Millis(0))
            .unwrap();
    }
    let slice = leader.read(Offset(0), 1 << 20, Offset(6)).unwrap().unwrap();
    let bytes = leader.read_bytes(&slice).unwrap();
    let (mut follower, _) = open(MemoryStorage::new(), LogConfig::default());
    follower.append_replicated(&bytes, Millis(0)).unwrap();
    assert_eq!(follower.log_end_offset(), Offset(6));
    let err = follower.append_replicated(&bytes, Millis(0)).unwrap_err();
    assert!(matches!(err, LogError::OffsetsNotMonotonic { .. }));
}

#[test]
fn log_config_out_of_range_is_refused_by_name() {
    let config = LogConfig {
        segment_bytes: 10,
        ..LogConfig::default()
    };
    let err = PartitionLog::open(MemoryStorage::new(), config, Millis(0))
        .err()
        .unwrap();
    assert!(err.to_string().contains("segment.bytes"), "{err}");
    assert_eq!(ErrorCode::from(&err), ErrorCode::InvalidConfig);
}

fn keyed(pairs: &[(&str, &str)], timestamp: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Offset(0));
    for (key, value) in pairs {
        builder.push(&Record {
            timestamp,
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: Vec::new(),
        });
    }
    builder.build()
}

/// Every (offset, key, value) the log serves from its start.
fn read_records(log: &PartitionLog<MemoryStorage>) -> Vec<(i64, String, String)> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while let Some(slice) = log.read(next, 1 << 20, log.log_end_offset()).expect("read") {
        let bytes = log.read_bytes(&slice).expect("bytes");
        for batch in crate::record::Batches::new(&bytes) {
            let batch = batch.expect("batch");
            batch
                .verify_crc()
                .expect("compacted batches keep valid CRCs");
            for record in crate::record::decode_records(&batch, 1 << 20).expect("records") {
                let key = String::from_utf8(record.record.key.unwrap()).unwrap();
                let value = String::from_utf8(record.record.value.unwrap()).unwrap();
                out.push((record.offset.0, key, value));
            }
        }
        next = slice.next_offset;
    }
    out
}

#[test]
fn log_compaction_keeps_the_latest_record_per_key_at_its_offset() {
    let config = LogConfig {
        cleanup_compact: true,
        cleanup_delete: false,
        ..small_segments()
    };
    let (mut log, _) = open(MemoryStorage::new(), config.clone());
    for round in 0..150 {
        let value = format!("v{round}");
        // Keys a, b, c recur all the time; k0..k39 each come back every 40 rounds, so older
        // segments keep some of them and compacted segments have gaps.
        let spread = format!("k{}", round % 40);
        let pairs = [
            (spread.as_str(), value.as_str()),
            ("a", value.as_str()),
            ("b", value.as_str()),
            ("c", value.as_str()),
        ];
        log.append(
            &mut keyed(&pairs[..(round % 4) + 1], 1_000),
            LeaderEpoch(2),
            Millis(0),
        )
        .unwrap();
    }
    let end = log.log_end_offset();
    let before = read_records(&log);
    let report = log.compact(Millis(0)).unwrap();
    assert!(report.records_removed > 0, "{report:?}");
    assert_eq!(
        log.log_end_offset(),
        end,
        "compaction never moves the log end"
    );
    let after = read_records(&log);
    assert!(after.len() < before.len());
    // Every record read back is the one appended at that offset…
    for record in &after {
        assert!(
            before.contains(record),
            "{record:?} was appended at that offset"
        );
    }
    // …and for every key the newest record survives.
    for key in ["a", "b", "c"] {
        let newest = before.iter().rfind(|r| r.1 == key).unwrap();
        assert!(after.contains(newest), "newest {key} kept");
    }
    // Outside the active segment, each key appears at most once.
    let active = *log.segment_bases().last().unwrap();
    for key in ["a", "b", "c"] {
        let older = after
            .iter()
            .filter(|r| r.1 == key && r.0 < active.0)
            .count();
        assert!(
            older <= 1,
            "key {key} kept {older} times in compacted segments"
        );
    }
    assert_eq!(
        log.compact(Millis(0)).unwrap(),
        CompactionReport::default(),
        "nothing new"
    );
    // Gaps survive a crash (after a flush, so the active segment is durable too) and a
    // clean restart.
    log.flush().unwrap();
    let mut storage = log.abandon();
    storage.crash(CrashMode::LoseUnsynced);
    let (log, report) = open(storage, config.clone());
    assert!(
        report
            .repairs
            .iter()
            .all(|r| !r.contains("does not continue")),
        "{report:?}"
    );
    assert_eq!(read_records(&log), after);
    let (log, _) = open(log.close().unwrap(), config);
    assert_eq!(read_records(&log), after);
}

#[test]
fn log_without_compact_policy_is_not_compacted_and_compact_only_skips_retention() {
    let (mut log, _) = open(MemoryStorage::new(), small_segments());
    for round in 0..20 {
        log.append(
            &mut keyed(&[("k", &round.to_string())], 0),
            LeaderEpoch(0),
            Millis(0),
        )
        .unwrap();
    }
    assert_eq!(log.compact(Millis(0)).unwrap(), CompactionReport::default());
    let config = LogConfig {
        cleanup_compact: true,
        cleanup_delete: false,
        retention_ms: Some(1),
        ..small_segments()
    };
    log.set_config(config).unwrap();
    assert_eq!(
        log.apply_retention(Millis(1_000_000)).unwrap(),
        0,
        "compact-only keeps old data"
    );
}

fn sync_every_append() -> LogConfig {
    LogConfig {
        flush_messages: Some(1),
        ..small_segments()
    }
}

#[test]
fn log_sync_error_takes_the_log_offline_until_reopened() {
    let (mut log, _) = open(MemoryStorage::new(), sync_every_append());
    let faults = log.storage().faults().clone();
    log.append(&mut batch(2, 10, 100), LeaderEpoch(0), Millis(1))
        .expect("first append");
    faults.arm_sync_error();
    let err = log
        .append(&mut batch(1, 10, 200), LeaderEpoch(0), Millis(2))
        .expect_err("a failed sync is not acknowledged");
    assert_eq!(ErrorCode::from(&err), ErrorCode::KafkaStorageError);
    assert!(log.offline_reason().is_some());
    let refused = log.append(&mut batch(1, 10, 300), LeaderEpoch(0), Millis(3));
    assert!(matches!(refused, Err(LogError::Offline { .. })));
    assert!(matches!(
        log.read(Offset(0), 1 << 20, Offset(2)),
        Err(LogError::Offline { .. })
    ));
    assert_eq!(
        log.tick(Millis(4)).ok(),
        Some(()),
        "background work is skipped"
    );
    let storage = log.abandon();
    let (reopened, report) = open(storage, sync_every_append());
    assert!(!report.clean);
    assert_eq!(
        reopened.log_end_offset(),
        Offset(2),
        "only the synced batch"
    );
    assert_eq!(read_all(&reopened, Offset(0)), vec![(Offset(0), 2)]);
}

#[test]
fn log_offline_close_leaves_recovery_to_the_next_open() {
    let (mut log, _) = open(MemoryStorage::new(), LogConfig::default());
    let faults = log.storage().faults().clone();
    log.append(&mut batch(2, 10, 100), LeaderEpoch(0), Millis(1))
        .expect("append");
    faults.arm_sync_error();
    assert!(log.flush().is_err());
    assert!(log.close().is_err(), "no clean-shutdown marker");
}

#[test]
fn log_full_disk_leaves_no_partial_batch_after_recovery() {
    for seed in 0..16 {
        let (mut log, _) = open(MemoryStorage::new(), small_segments());
        let faults = log.storage().faults().clone();
        log.append(&mut batch(2, 10, 100), LeaderEpoch(0), Millis(1))
            .expect("append");
        faults.set_full(true, seed);
        let err = log
            .append(&mut batch(3, 50, 200), LeaderEpoch(0), Millis(2))
            .expect_err("no space");
        assert_eq!(ErrorCode::from(&err), ErrorCode::KafkaStorageError);
        faults.heal();
        let (mut reopened, _) = open(log.abandon(), small_segments());
        assert_eq!(reopened.log_end_offset(), Offset(2), "seed {seed}");
        assert_eq!(read_all(&reopened, Offset(0)), vec![(Offset(0), 2)]);
        reopened
            .append(&mut batch(1, 10, 300), LeaderEpoch(0), Millis(3))
            .expect("appends work again once space is back");
    }
}

#[test]
fn log_rolled_segment_survives_a_power_loss_once_synced() {
    let config = sync_every_append();
    let (mut log, _) = open(MemoryStorage::new(), config.clone());
    while log.segment_bases().len() < 3 {
        log.append(&mut batch(4, 100, 100), LeaderEpoch(0), Millis(1))
            .expect("append");
    }
    let end = log.log_end_offset();
    let mut storage = log.abandon();
    storage.crash(CrashMode::LoseUnsynced);
    let (reopened, _) = open(storage, config);
    assert_eq!(
        reopened.log_end_offset(),
        end,
        "every synced append survives"
    );
}

#[test]
fn log_producer_snapshots_keep_the_newest_skip_damage_and_go_with_truncation() {
    let (mut log, _) = open(MemoryStorage::new(), small_segments());
    for _ in 0..40 {
        log.append(&mut batch(4, 100, 1_000), LeaderEpoch(0), Millis(1_000))
            .unwrap();
    }
    let bases = log.segment_bases();
    assert!(bases.len() >= 4, "{bases:?}");
    for (i, base) in bases.iter().enumerate() {
        log.write_producer_snapshot(*base, format!("state {i}").as_bytes())
            .unwrap();
    }
    let newest = *bases.last().unwrap();
    let previous = bases[bases.len() - 2];
    assert_eq!(
        log.producer_snapshot().unwrap(),
        Some((newest, format!("state {}", bases.len() - 1).into_bytes()))
    );
    let names = log.storage().list().unwrap();
    let snapshots: Vec<&String> = names.iter().filter(|n| n.ends_with(".snapshot")).collect();
    assert_eq!(
        snapshots.len(),
        2,
        "only the two newest are kept: {snapshots:?}"
    );

    // A damaged snapshot is passed over for the older one.
    let name = format!("{:020}.snapshot", newest.0);
    log.storage.bytes_mut(&name).unwrap()[5] ^= 1;
    assert_eq!(
        log.producer_snapshot().unwrap().map(|(offset, _)| offset),
        Some(previous)
    );

    // A truncation below a snapshot deletes it: the batches it describes are gone.
    log.truncate_to(Offset(previous.0 + 1)).unwrap();
    assert!(!log.storage().list().unwrap().contains(&name));
    assert_eq!(
        log.producer_snapshot().unwrap().map(|(offset, _)| offset),
        Some(previous)
    );
    log.truncate_to(Offset(previous.0 - 1)).unwrap();
    assert_eq!(log.producer_snapshot().unwrap(), None);

    // Replay starts at the batch holding the snapshot's offset.
    let from = log.segment_bases()[1];
    let batches = log.producer_batches_from(from).unwrap();
    assert!(batches.is_empty(), "these batches have no producer id");
}

#[test]
fn log_a_batch_damaged_on_disk_is_never_served() {
    let (mut log, _) = open(MemoryStorage::new(), small_segments());
    for _ in 0..10 {
        log.append(&mut batch(4, 100, 1_000), LeaderEpoch(0), Millis(1_000))
            .unwrap();
    }
    let damaged = log.read(Offset(8), 1, Offset(40)).unwrap().unwrap();
    assert_eq!(damaged.first_offset, Offset(8));
    let mut storage = log.close().unwrap();
    // Bit rot in synced data, found after a clean restart (recovery trusts the files).
    storage.flip_bit(&damaged.file, damaged.position as usize + 80, 3);
    let (log, report) = open(storage, small_segments());
    assert_eq!(report.segments_deleted, 0);

    let before = log.read(Offset(0), 1 << 20, Offset(40)).unwrap().unwrap();
    assert_eq!(
        (before.first_offset, before.next_offset),
        (Offset(0), Offset(8)),
        "the intact batches before the damaged one are served, the damaged one is not"
    );
    let err = log.read(Offset(8), 1 << 20, Offset(40)).unwrap_err();
    assert!(matches!(err, LogError::CorruptSegment { .. }), "{err:?}");
    assert_eq!(ErrorCode::from(&err), ErrorCode::KafkaStorageError);
    assert!(err.to_string().contains("CRC"), "{err}");
    // Past it, the log serves again (the operator may move the log start beyond it).
    let after = log.read(Offset(12), 1 << 20, Offset(40)).unwrap().unwrap();
    assert_eq!(after.first_offset, Offset(12));
    assert_eq!(read_all(&log, Offset(12)).len(), 7);
    // Once served, a range is not checked again; the damaged batch keeps failing.
    assert!(log.read(Offset(8), 1 << 20, Offset(40)).is_err());
}

#[test]
fn log_damage_is_found_across_check_chunks_and_in_batches_larger_than_one() {
    let config = LogConfig {
        max_message_bytes: 4 << 20,
        ..LogConfig::default()
    };
    let (mut log, _) = open(MemoryStorage::new(), config.clone());
    // Batches of about 300 KB straddle the 1 MiB check chunks; one of 2.4 MB exceeds a chunk.
    for records in [3, 3, 3, 3, 3, 24, 3, 3] {
        log.append(
            &mut batch(records, 100_000, 1_000),
            LeaderEpoch(0),
            Millis(1_000),
        )
        .unwrap();
    }
    let end = log.log_end_offset();
    let big = log.read(Offset(15), 1, end).unwrap().unwrap();
    let after_big = log.read(Offset(39), 1, end).unwrap().unwrap();
    let mut storage = log.close().unwrap();
    storage.flip_bit(&after_big.file, after_big.position as usize + 5_000, 1);
    let (log, _) = open(storage, config.clone());
    let served = log.read(Offset(0), 64 << 20, end).unwrap().unwrap();
    assert_eq!(
        (served.first_offset, served.next_offset),
        (Offset(0), Offset(39)),
        "everything before the damaged batch, the big one included"
    );
    assert!(log.read(Offset(39), 64 << 20, end).is_err());

    // Damage inside the batch larger than a chunk is found too.
    let mut storage = log.close().unwrap();
    storage.flip_bit(&big.file, big.position as usize + 2_000_000, 6);
    let (log, _) = open(storage, config);
    let served = log.read(Offset(0), 64 << 20, end).unwrap().unwrap();
    assert_eq!(served.next_offset, Offset(15));
    assert!(log.read(Offset(15), 64 << 20, end).is_err());
}

//! The core's partition log over real files: clean and unclean restarts, torn tails and
//! damaged indexes made on disk with `std::fs` between two runs.

use std::fs;
use std::path::Path;

use brook_core::log::{
    index_file, log_file, parse_file_name, time_index_file, LogConfig, PartitionLog,
    RecoveryReport, CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE, EPOCH_CHECKPOINT_FILE,
};
use brook_core::record::{Batch, BatchBuilder, Batches, Record};
use brook_core::types::{LeaderEpoch, Millis, Offset};
use brook_server::storage::FileStorage;

type FileLog = PartitionLog<FileStorage>;

/// Small segments, so a few dozen batches roll several times, and dense index entries.
fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

/// A batch of `records` records with `value_len`-byte values and rising timestamps.
fn batch(records: usize, value_len: usize, timestamp: i64) -> Vec<u8> {
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

fn open(dir: &Path) -> (FileLog, RecoveryReport) {
    let storage = FileStorage::open(dir).expect("open storage");
    PartitionLog::open(storage, small_segments(), Millis(1_000)).expect("open log")
}

/// Appends `count` batches of varying size; returns them as stored (offsets assigned).
fn append_batches(log: &mut FileLog, count: usize) -> Vec<Vec<u8>> {
    let mut stored = Vec::new();
    for i in 0..count {
        let mut records = batch(1 + i % 5, 60 + 17 * (i % 7), 10_000 + 10 * i as i64);
        let info = log
            .append(&mut records, LeaderEpoch(3), Millis(2_000 + i as i64))
            .expect("append");
        assert_eq!(info.batch_count, 1);
        stored.push(records);
    }
    stored
}

/// Every batch from the log start to the log end, as bytes, CRC-checked.
fn contents(log: &FileLog) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while let Some(slice) = log.read(next, 1 << 20, log.log_end_offset()).expect("read") {
        let bytes = log.read_bytes(&slice).expect("read bytes");
        for batch in Batches::new(&bytes) {
            let batch = batch.expect("stored batch parses");
            batch.verify_crc().expect("stored batch CRC");
            out.push(batch.as_bytes().to_vec());
        }
        next = slice.next_offset;
    }
    out
}

/// The names of the regular files in `dir`, sorted.
fn files_on_disk(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("dir entry").file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn base_offset_of(batch: &[u8]) -> Offset {
    Batch::parse(batch).expect("batch").base_offset()
}

#[test]
fn file_log_clean_close_and_reopen_keeps_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, report) = open(dir.path());
    assert!(!report.clean);
    let stored = append_batches(&mut log, 40);
    assert!(log.segment_bases().len() >= 3, "small segments rolled");
    assert_eq!(contents(&log), stored);
    let end = log.log_end_offset();
    drop(log.close().expect("close"));

    let (mut log, report) = open(dir.path());
    assert!(report.clean, "{report:?}");
    assert_eq!(report.segments_scanned, 0);
    assert!(report.repairs.is_empty(), "{:?}", report.repairs);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(contents(&log), stored);
    let more = append_batches(&mut log, 3);
    assert_eq!(
        base_offset_of(&more[0]),
        end,
        "offsets continue after a restart"
    );
}

#[test]
fn file_log_clean_close_leaves_kafka_file_names_and_exact_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    append_batches(&mut log, 40);
    let bases = log.segment_bases();
    drop(log.close().expect("close"));

    let mut expected: Vec<String> = bases
        .iter()
        .flat_map(|&base| [log_file(base), index_file(base), time_index_file(base)])
        .chain([
            CHECKPOINT_FILE.to_string(),
            CLEAN_SHUTDOWN_FILE.to_string(),
            EPOCH_CHECKPOINT_FILE.to_string(),
        ])
        .collect();
    expected.sort();
    assert_eq!(files_on_disk(dir.path()), expected);
    assert!(expected.contains(&"00000000000000000000.log".to_string()));
    for name in files_on_disk(dir.path()) {
        let Some((_, extension)) = parse_file_name(&name) else {
            continue;
        };
        let bytes = fs::read(dir.path().join(&name)).unwrap();
        match extension {
            "index" => assert_index_exact(&name, &bytes, 8),
            "timeindex" => assert_index_exact(&name, &bytes, 12),
            _ => {}
        }
    }
    // The first segment is full: with 512-byte index intervals it has entries.
    let first_index = fs::metadata(dir.path().join(index_file(bases[0]))).unwrap();
    assert!(first_index.len() >= 8);
}

/// An index file after a clean close is exactly its entries: whole entries, none of them
/// the zero fill of a preallocated tail.
fn assert_index_exact(name: &str, bytes: &[u8], entry_len: usize) {
    assert_eq!(bytes.len() % entry_len, 0, "{name}: whole entries");
    for (i, entry) in bytes.chunks_exact(entry_len).enumerate() {
        assert!(
            entry.iter().any(|&b| b != 0),
            "{name}: entry {i} is zero fill"
        );
    }
    if entry_len == 8 {
        let positions: Vec<u32> = bytes
            .chunks_exact(8)
            .map(|e| u32::from_be_bytes(e[4..8].try_into().unwrap()))
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "{name}: {positions:?}"
        );
    }
}

#[test]
fn file_log_unclean_drop_then_reopen_scans_and_keeps_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    let stored = append_batches(&mut log, 30);
    drop(log); // no close: no clean-shutdown marker, no final sync

    let (log, report) = open(dir.path());
    assert!(!report.clean);
    assert!(report.segments_scanned >= 1, "{report:?}");
    assert_eq!(report.bytes_truncated, 0);
    assert_eq!(contents(&log), stored);
}

#[test]
fn file_log_crash_with_preallocated_index_tails_keeps_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    let stored = append_batches(&mut log, 30);
    // A crash: the storage never runs its drop, so index files keep their zero-filled tails.
    std::mem::forget(log.abandon());
    let active_index = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "index"))
        .map(|p| fs::metadata(p).unwrap().len())
        .max()
        .unwrap();
    assert_eq!(active_index, 64 * 1024, "index files were preallocated");

    let (log, report) = open(dir.path());
    assert!(!report.clean);
    assert_eq!(contents(&log), stored);
    drop(log.close().expect("close"));
    let (log, report) = open(dir.path());
    assert!(report.clean);
    assert_eq!(contents(&log), stored);
}

#[test]
fn file_log_torn_tail_on_disk_is_cut_and_earlier_batches_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    let stored = append_batches(&mut log, 25);
    let active = log_file(*log.segment_bases().last().unwrap());
    drop(log);

    let path = dir.path().join(&active);
    let size = fs::metadata(&path).unwrap().len();
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(size - 5).unwrap();
    drop(file);

    let (mut log, report) = open(dir.path());
    assert!(!report.clean);
    assert!(report.bytes_truncated > 0, "{report:?}");
    let kept = &stored[..stored.len() - 1];
    assert_eq!(contents(&log), kept);
    let last = Batch::parse(kept.last().unwrap()).unwrap();
    assert_eq!(log.log_end_offset(), last.next_offset());
    let more = append_batches(&mut log, 1);
    assert_eq!(base_offset_of(&more[0]), last.next_offset());
}

#[test]
fn file_log_torn_tail_after_clean_close_is_cut_too() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    let stored = append_batches(&mut log, 25);
    let active = log_file(*log.segment_bases().last().unwrap());
    drop(log.close().expect("close"));

    let path = dir.path().join(&active);
    let size = fs::metadata(&path).unwrap().len();
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(size - 3).unwrap();
    drop(file);

    let (log, report) = open(dir.path());
    assert!(report.bytes_truncated > 0, "{report:?}");
    assert_eq!(contents(&log), &stored[..stored.len() - 1]);
}

#[test]
fn file_log_corrupt_index_on_disk_still_serves_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    let stored = append_batches(&mut log, 40);
    let bases = log.segment_bases();
    drop(log.close().expect("close"));

    // Garbage over the first segment's offset index, a torn entry in the second's.
    let first = dir.path().join(index_file(bases[0]));
    let len = fs::metadata(&first).unwrap().len() as usize;
    fs::write(&first, vec![0xA5; len.max(24)]).unwrap();
    let second = dir.path().join(index_file(bases[1]));
    let mut bytes = fs::read(&second).unwrap();
    bytes.extend_from_slice(&[1, 2, 3]);
    fs::write(&second, bytes).unwrap();
    fs::write(dir.path().join(time_index_file(bases[0])), [0xFF; 30]).unwrap();

    let (log, report) = open(dir.path());
    assert!(report.clean);
    assert!(!report.repairs.is_empty(), "the damage is reported");
    assert_eq!(contents(&log), stored);
    for (i, batch) in stored.iter().enumerate() {
        let offset = base_offset_of(batch);
        let slice = log.read(offset, 1, log.log_end_offset()).unwrap().unwrap();
        assert_eq!(
            slice.first_offset, offset,
            "batch {i} found through the index"
        );
    }
}

#[test]
fn file_log_deleted_segments_leave_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    append_batches(&mut log, 40);
    let bases = log.segment_bases();
    log.advance_log_start(bases[2]).expect("advance log start");
    log.truncate_to(bases[bases.len() - 1]).expect("truncate");
    let kept = log.segment_bases();
    drop(log.close().expect("close"));
    let segment_files: Vec<String> = files_on_disk(dir.path())
        .into_iter()
        .filter(|name| parse_file_name(name).is_some())
        .collect();
    assert_eq!(segment_files.len(), 3 * kept.len(), "{segment_files:?}");
    assert!(!segment_files.contains(&log_file(bases[0])));
}

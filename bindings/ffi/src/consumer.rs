//! `brook_consumer_t` and `brook_record_t`: a group member (or a reader of partitions
//! assigned by hand) handing out one record per poll, and committing exactly what it
//! handed out.

use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, CString};
use std::time::Duration;

use brook_client::blocking::Consumer;
use brook_client::{ConsumerConfig, ConsumerRecord, TopicPartition};

use crate::error::BrookError;
use crate::util::{c_str, config_pairs, guard, guard_free};

/// Most topics one consumer subscribes to: a bound on reading the `topics` array.
const TOPICS_MAX: usize = 10_000;
/// Most partitions one `brook_consumer_assign` call takes: a bound on reading its array.
const PARTITIONS_MAX: usize = 100_000;

/// A consumer: a group member (`brook_consumer_new`) or a reader of partitions assigned by
/// hand (`brook_consumer_new_assign`). Owned by the caller, released with
/// `brook_consumer_free` (which leaves the group, if it joined one).
#[derive(Debug)]
pub struct BrookConsumer {
    inner: Consumer,
    /// Records fetched but not yet handed out, in order.
    buffered: VecDeque<ConsumerRecord>,
    /// Per partition, the offset after the last record handed out: what a commit stores.
    delivered: HashMap<TopicPartition, i64>,
}

impl BrookConsumer {
    /// A consumer of `group_id` (if any) with `enable.auto.commit` off unless
    /// `config_pairs` turns it on; subscribes to nothing.
    ///
    /// # Safety
    /// `config_pairs` is NULL or a NULL-terminated array of NUL-terminated strings.
    unsafe fn new(
        bootstrap: &str,
        group_id: Option<&str>,
        config_pairs: *const *const c_char,
    ) -> Result<BrookConsumer, BrookError> {
        let mut config = ConsumerConfig::new(bootstrap);
        if let Some(group_id) = group_id {
            config.set("group.id", group_id)?;
        }
        config.set("enable.auto.commit", "false")?;
        // SAFETY: the caller's contract.
        for (key, value) in unsafe { self::config_pairs(config_pairs) }? {
            config.set(key, value)?;
        }
        Ok(BrookConsumer {
            inner: Consumer::new(config)?,
            buffered: VecDeque::new(),
            delivered: HashMap::new(),
        })
    }

    /// The next record, polling the broker for up to `timeout` when none is buffered.
    fn next_record(&mut self, timeout: Duration) -> Result<Option<ConsumerRecord>, BrookError> {
        if self.buffered.is_empty() {
            // A poll may rebalance: forget what belongs to partitions no longer ours.
            let records = self.inner.poll(timeout)?;
            let assigned = self.inner.assignment();
            self.delivered.retain(|tp, _| assigned.contains(tp));
            self.buffered.extend(records);
        }
        let Some(record) = self.buffered.pop_front() else {
            return Ok(None);
        };
        let tp = TopicPartition::new(&record.topic, record.partition);
        self.delivered.insert(tp, record.offset + 1);
        Ok(Some(record))
    }

    /// Replaces the assignment, forgetting buffered records and delivered offsets of
    /// partitions no longer assigned.
    fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<(), BrookError> {
        self.inner.assign(partitions.clone())?;
        self.buffered.retain(|r| {
            partitions
                .iter()
                .any(|tp| tp.topic == r.topic && tp.partition == r.partition)
        });
        self.delivered.retain(|tp, _| partitions.contains(tp));
        Ok(())
    }

    /// Makes `offset` the next offset handed out from `tp`.
    fn seek(&mut self, tp: TopicPartition, offset: i64) -> Result<(), BrookError> {
        self.inner.seek(&tp, offset)?;
        self.buffered
            .retain(|r| r.topic != tp.topic || r.partition != tp.partition);
        self.delivered.insert(tp, offset);
        Ok(())
    }
}

/// A record read by `brook_consumer_poll`, owned by the caller and released with
/// `brook_record_free`. Everything its accessors return is borrowed from it.
#[derive(Debug)]
pub struct BrookRecord {
    topic: CString,
    /// Each header's name, NUL-terminated, in header order.
    header_names: Vec<CString>,
    inner: ConsumerRecord,
}

impl BrookRecord {
    fn new(inner: ConsumerRecord) -> BrookRecord {
        BrookRecord {
            topic: c_string(&inner.topic),
            header_names: inner.headers.iter().map(|h| c_string(&h.key)).collect(),
            inner,
        }
    }
}

/// `text` as a C string, interior NULs replaced by spaces.
fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).expect("NULs were replaced")
}

/// A partition for `brook_consumer_assign`.
#[repr(C)]
#[derive(Debug)]
pub struct BrookTopicPartition {
    /// The topic: a NUL-terminated string, not NULL; borrowed during the call only.
    pub topic: *const c_char,
    /// The partition index.
    pub partition: i32,
}

/// Creates a member of the consumer group `group_id` subscribed to the `n_topics` topics in
/// `topics`, bootstrapping from `bootstrap`. `config_pairs` is NULL or a NULL-terminated
/// array of alternating Java/librdkafka property names and values (`"auto.offset.reset",
/// "earliest", NULL`). Unlike the Java client, `enable.auto.commit` defaults to `false`:
/// call `brook_consumer_commit` (set it to `"true"` to commit fetched positions
/// periodically instead). Every argument is only read during the call. The group is joined
/// at the first poll. Returns a consumer owned by the caller (free it with
/// `brook_consumer_free`), or NULL with `*err` set.
///
/// # Safety
/// `bootstrap` and `group_id` are NUL-terminated strings; `topics` points to `n_topics`
/// NUL-terminated strings; `config_pairs` is NULL or an array as above; `err` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn brook_consumer_new(
    bootstrap: *const c_char,
    group_id: *const c_char,
    topics: *const *const c_char,
    n_topics: usize,
    config_pairs: *const *const c_char,
    err: *mut *mut BrookError,
) -> *mut BrookConsumer {
    let body = || {
        // SAFETY: the caller's contract.
        let bootstrap = unsafe { c_str(bootstrap, "bootstrap") }?;
        // SAFETY: the caller's contract.
        let group_id = unsafe { c_str(group_id, "group_id") }?;
        if topics.is_null() {
            return Err(BrookError::null_argument("topics"));
        }
        if n_topics == 0 || n_topics > TOPICS_MAX {
            return Err(BrookError::invalid_argument(&format!(
                "n_topics must be between 1 and {TOPICS_MAX}, not {n_topics}"
            )));
        }
        let mut names = Vec::with_capacity(n_topics);
        for index in 0..n_topics {
            // SAFETY: `topics` holds `n_topics` strings.
            names.push(unsafe { c_str(*topics.add(index), "a topic") }?);
        }
        // SAFETY: the caller's contract.
        let mut consumer = unsafe { BrookConsumer::new(bootstrap, Some(group_id), config_pairs) }?;
        consumer.inner.subscribe(&names)?;
        Ok(Box::into_raw(Box::new(consumer)))
    };
    // SAFETY: `err` is NULL or writable.
    unsafe { guard("brook_consumer_new", err, std::ptr::null_mut(), body) }
}

/// Creates a consumer that joins no group and reads the partitions given to
/// `brook_consumer_assign` (nothing until then), bootstrapping from `bootstrap`.
/// `group_id` is NULL or the group whose committed offsets `brook_consumer_commit` stores
/// (without joining it); with NULL, commits fail. `config_pairs` is as for
/// `brook_consumer_new` (where a partition starts without a committed offset follows
/// `auto.offset.reset`). Every argument is only read during the call. Returns a consumer
/// owned by the caller (free it with `brook_consumer_free`), or NULL with `*err` set.
///
/// # Safety
/// `bootstrap` is a NUL-terminated string; `group_id` is NULL or one; `config_pairs` is NULL
/// or a NULL-terminated array of strings; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn brook_consumer_new_assign(
    bootstrap: *const c_char,
    group_id: *const c_char,
    config_pairs: *const *const c_char,
    err: *mut *mut BrookError,
) -> *mut BrookConsumer {
    let body = || {
        // SAFETY: the caller's contract.
        let bootstrap = unsafe { c_str(bootstrap, "bootstrap") }?;
        let group_id = if group_id.is_null() {
            None
        } else {
            // SAFETY: the caller's contract.
            Some(unsafe { c_str(group_id, "group_id") }?)
        };
        // SAFETY: the caller's contract.
        let consumer = unsafe { BrookConsumer::new(bootstrap, group_id, config_pairs) }?;
        Ok(Box::into_raw(Box::new(consumer)))
    };
    // SAFETY: `err` is NULL or writable.
    unsafe { guard("brook_consumer_new_assign", err, std::ptr::null_mut(), body) }
}

/// Replaces the partitions `consumer` reads with the `n_partitions` in `partitions`
/// (refused for a consumer from `brook_consumer_new`, which has its group assign them).
/// Records already fetched from partitions no longer assigned are dropped. `partitions`
/// and its topic strings are only read during the call. Returns 0 on success, -1 with
/// `*err` set.
///
/// # Safety
/// `consumer` is NULL or a live consumer; `partitions` is NULL (with `n_partitions` 0) or
/// points to `n_partitions` entries with NUL-terminated topics; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn brook_consumer_assign(
    consumer: *mut BrookConsumer,
    partitions: *const BrookTopicPartition,
    n_partitions: usize,
    err: *mut *mut BrookError,
) -> i32 {
    let body = || {
        // SAFETY: the caller passes NULL or a live consumer, used by one thread.
        let consumer =
            unsafe { consumer.as_mut() }.ok_or_else(|| BrookError::null_argument("consumer"))?;
        if n_partitions > PARTITIONS_MAX {
            return Err(BrookError::invalid_argument(&format!(
                "n_partitions must be at most {PARTITIONS_MAX}, not {n_partitions}"
            )));
        }
        let entries = match (partitions.is_null(), n_partitions) {
            (_, 0) => &[][..],
            (true, _) => return Err(BrookError::null_argument("partitions")),
            // SAFETY: the caller passes `n_partitions` entries.
            (false, n) => unsafe { std::slice::from_raw_parts(partitions, n) },
        };
        let mut assignment = Vec::with_capacity(entries.len());
        for entry in entries {
            // SAFETY: the caller's contract.
            let topic = unsafe { c_str(entry.topic, "a topic") }?;
            assignment.push(TopicPartition::new(
                topic,
                partition_index(entry.partition)?,
            ));
        }
        consumer.assign(assignment)?;
        Ok(0)
    };
    // SAFETY: `err` is NULL or writable.
    unsafe { guard("brook_consumer_assign", err, -1, body) }
}

/// Makes `offset` the next offset `brook_consumer_poll` hands out from the assigned
/// partition `partition` of `topic`; records already fetched from it are dropped. Until a
/// record of that partition is handed out, `brook_consumer_commit` stores `offset` for it.
/// `topic` is only read during the call. Returns 0 on success, -1 with `*err` set (also
/// when the partition is not assigned, for instance before a group member's first poll).
///
/// # Safety
/// `consumer` is NULL or a live consumer; `topic` is a NUL-terminated string; `err` is NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn brook_consumer_seek(
    consumer: *mut BrookConsumer,
    topic: *const c_char,
    partition: i32,
    offset: i64,
    err: *mut *mut BrookError,
) -> i32 {
    let body = || {
        // SAFETY: the caller passes NULL or a live consumer, used by one thread.
        let consumer =
            unsafe { consumer.as_mut() }.ok_or_else(|| BrookError::null_argument("consumer"))?;
        // SAFETY: the caller's contract.
        let topic = unsafe { c_str(topic, "topic") }?;
        if offset < 0 {
            return Err(BrookError::invalid_argument(&format!(
                "offset must not be negative, not {offset}"
            )));
        }
        consumer.seek(
            TopicPartition::new(topic, partition_index(partition)?),
            offset,
        )?;
        Ok(0)
    };
    // SAFETY: `err` is NULL or writable.
    unsafe { guard("brook_consumer_seek", err, -1, body) }
}

/// `partition` if it is a partition index (not negative).
fn partition_index(partition: i32) -> Result<i32, BrookError> {
    if partition < 0 {
        return Err(BrookError::invalid_argument(&format!(
            "partition must not be negative, not {partition}"
        )));
    }
    Ok(partition)
}

/// The next record, waiting up to `timeout_ms` milliseconds (a negative value waits until
/// one arrives). Returns a record owned by the caller (free it with `brook_record_free`),
/// or NULL: on timeout `*err` stays NULL, on failure `*err` is set. A poll may rebalance
/// the group; the first one joins it.
///
/// # Safety
/// `consumer` is NULL or a live consumer; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn brook_consumer_poll(
    consumer: *mut BrookConsumer,
    timeout_ms: i32,
    err: *mut *mut BrookError,
) -> *mut BrookRecord {
    let body = || {
        // SAFETY: the caller passes NULL or a live consumer, used by one thread.
        let consumer =
            unsafe { consumer.as_mut() }.ok_or_else(|| BrookError::null_argument("consumer"))?;
        let record = match u64::try_from(timeout_ms) {
            Ok(limit) => consumer.next_record(Duration::from_millis(limit))?,
            Err(_) => loop {
                if let Some(record) = consumer.next_record(Duration::from_secs(1))? {
                    break Some(record);
                }
            },
        };
        let Some(record) = record else {
            return Ok(std::ptr::null_mut());
        };
        Ok(Box::into_raw(Box::new(BrookRecord::new(record))))
    };
    // SAFETY: `err` is NULL or writable.
    unsafe { guard("brook_consumer_poll", err, std::ptr::null_mut(), body) }
}

/// Commits, synchronously, the offset after the last record each partition handed out by
/// `brook_consumer_poll` (records fetched but not yet returned are not committed). Returns
/// 0 on success (also when there is nothing to commit), -1 with `*err` set.
///
/// # Safety
/// `consumer` is NULL or a live consumer; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn brook_consumer_commit(
    consumer: *mut BrookConsumer,
    err: *mut *mut BrookError,
) -> i32 {
    let body = || {
        // SAFETY: the caller passes NULL or a live consumer, used by one thread.
        let consumer =
            unsafe { consumer.as_mut() }.ok_or_else(|| BrookError::null_argument("consumer"))?;
        if !consumer.delivered.is_empty() {
            consumer.inner.commit_offsets(&consumer.delivered)?;
            consumer.delivered.clear();
        }
        Ok(0)
    };
    // SAFETY: `err` is NULL or writable.
    unsafe { guard("brook_consumer_commit", err, -1, body) }
}

/// Leaves the group if it joined one (waiting at most `request.timeout.ms`) and frees
/// `consumer` (NULL is ignored); records it handed out stay valid until each is freed.
/// Nothing is committed here unless `enable.auto.commit` is `"true"`.
///
/// # Safety
/// `consumer` is NULL or a consumer from `brook_consumer_new` or
/// `brook_consumer_new_assign`, freed at most once.
#[no_mangle]
pub unsafe extern "C" fn brook_consumer_free(consumer: *mut BrookConsumer) {
    if consumer.is_null() {
        return;
    }
    // SAFETY: created by `Box::into_raw` in `brook_consumer_new`, freed once.
    let mut consumer = unsafe { Box::from_raw(consumer) };
    guard_free(move || {
        let _ = consumer.inner.close();
        drop(consumer);
    });
}

/// The record's topic, NUL-terminated; borrowed from `record` (NULL if `record` is NULL).
///
/// # Safety
/// `record` is NULL or a live record.
#[no_mangle]
pub unsafe extern "C" fn brook_record_topic(record: *const BrookRecord) -> *const c_char {
    // SAFETY: the caller passes NULL or a live record.
    match unsafe { record.as_ref() } {
        Some(record) => record.topic.as_ptr(),
        None => std::ptr::null(),
    }
}

/// The record's partition (-1 if `record` is NULL).
///
/// # Safety
/// `record` is NULL or a live record.
#[no_mangle]
pub unsafe extern "C" fn brook_record_partition(record: *const BrookRecord) -> i32 {
    // SAFETY: the caller passes NULL or a live record.
    unsafe { record.as_ref() }.map_or(-1, |r| r.inner.partition)
}

/// The record's offset (-1 if `record` is NULL).
///
/// # Safety
/// `record` is NULL or a live record.
#[no_mangle]
pub unsafe extern "C" fn brook_record_offset(record: *const BrookRecord) -> i64 {
    // SAFETY: the caller passes NULL or a live record.
    unsafe { record.as_ref() }.map_or(-1, |r| r.inner.offset)
}

/// The record's timestamp in milliseconds since the Unix epoch: its create time, or the
/// broker's append time if the topic uses `LogAppendTime` (-1 if `record` is NULL).
///
/// # Safety
/// `record` is NULL or a live record.
#[no_mangle]
pub unsafe extern "C" fn brook_record_timestamp(record: *const BrookRecord) -> i64 {
    // SAFETY: the caller passes NULL or a live record.
    unsafe { record.as_ref() }.map_or(-1, |r| r.inner.timestamp)
}

/// The number of headers the record carries (0 if `record` is NULL).
///
/// # Safety
/// `record` is NULL or a live record.
#[no_mangle]
pub unsafe extern "C" fn brook_record_header_count(record: *const BrookRecord) -> usize {
    // SAFETY: the caller passes NULL or a live record.
    unsafe { record.as_ref() }.map_or(0, |r| r.inner.headers.len())
}

/// The record's header number `index` (from 0, in the order the producer sent them; names
/// may repeat). Stores its name, a NUL-terminated string (interior NULs read as spaces), in
/// `*name`, and its value in `*value` with the byte count in `*value_len` (NULL and 0 for a
/// null value; the bytes are not NUL-terminated). All are borrowed from `record`: valid
/// until `brook_record_free(record)`. Any of `name`, `value` and `value_len` may be NULL.
/// Returns 0, or -1 (storing NULL, NULL and 0) if `record` is NULL or `index` is not below
/// `brook_record_header_count(record)`.
///
/// # Safety
/// `record` is NULL or a live record; `name`, `value` and `value_len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn brook_record_header(
    record: *const BrookRecord,
    index: usize,
    name: *mut *const c_char,
    value: *mut *const u8,
    value_len: *mut usize,
) -> i32 {
    // SAFETY: the caller passes NULL or a live record.
    let found = unsafe { record.as_ref() }.and_then(|r| {
        let header = r.inner.headers.get(index)?;
        Some((r.header_names[index].as_ptr(), header.value.as_ref()))
    });
    let (name_ptr, bytes, status) = match found {
        Some((name_ptr, bytes)) => (name_ptr, bytes, 0),
        None => (std::ptr::null(), None, -1),
    };
    if !name.is_null() {
        // SAFETY: the caller passes writable storage.
        unsafe { *name = name_ptr };
    }
    // SAFETY: the caller passes NULL or writable `value_len`.
    let bytes_ptr = unsafe { bytes_out(bytes, value_len) };
    if !value.is_null() {
        // SAFETY: the caller passes writable storage.
        unsafe { *value = bytes_ptr };
    }
    status
}

/// Borrowed bytes and their length, or NULL and 0 for a null field or a NULL record.
///
/// # Safety
/// `len` is NULL or writable.
unsafe fn bytes_out(bytes: Option<&Vec<u8>>, len: *mut usize) -> *const u8 {
    let (ptr, n) = match bytes {
        Some(bytes) => (bytes.as_ptr(), bytes.len()),
        None => (std::ptr::null(), 0),
    };
    if !len.is_null() {
        // SAFETY: the caller passes writable storage.
        unsafe { *len = n };
    }
    ptr
}

/// The record's key: its bytes, borrowed from `record`, with their count stored in `*len`
/// (`len` may be NULL). A null key (or a NULL record) gives NULL and 0. The bytes are not
/// NUL-terminated.
///
/// # Safety
/// `record` is NULL or a live record; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn brook_record_key(
    record: *const BrookRecord,
    len: *mut usize,
) -> *const u8 {
    // SAFETY: the caller passes NULL or a live record, and NULL or writable `len`.
    unsafe { bytes_out(record.as_ref().and_then(|r| r.inner.key.as_ref()), len) }
}

/// The record's value: its bytes, borrowed from `record`, with their count stored in
/// `*len` (`len` may be NULL). A null value (or a NULL record) gives NULL and 0. The bytes
/// are not NUL-terminated.
///
/// # Safety
/// `record` is NULL or a live record; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn brook_record_value(
    record: *const BrookRecord,
    len: *mut usize,
) -> *const u8 {
    // SAFETY: the caller passes NULL or a live record, and NULL or writable `len`.
    unsafe { bytes_out(record.as_ref().and_then(|r| r.inner.value.as_ref()), len) }
}

/// Frees `record` (NULL is ignored); pointers from its accessors become invalid.
///
/// # Safety
/// `record` is NULL or a record from `brook_consumer_poll`, freed at most once.
#[no_mangle]
pub unsafe extern "C" fn brook_record_free(record: *mut BrookRecord) {
    if !record.is_null() {
        // SAFETY: created by `Box::into_raw` in `brook_consumer_poll`, freed once.
        drop(unsafe { Box::from_raw(record) });
    }
}

//! `brook_consumer_t` and `brook_record_t`: a group member handing out one record per
//! poll, and committing exactly what it handed out.

use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, CString};
use std::time::Duration;

use brook_client::blocking::Consumer;
use brook_client::{ConsumerConfig, ConsumerRecord, TopicPartition};

use crate::error::BrookError;
use crate::util::{c_str, config_pairs, guard, guard_free};

/// Most topics one consumer subscribes to: a bound on reading the `topics` array.
const TOPICS_MAX: usize = 10_000;

/// A consumer group member. Created by `brook_consumer_new`, owned by the caller, released
/// with `brook_consumer_free` (which leaves the group).
#[derive(Debug)]
pub struct BrookConsumer {
    inner: Consumer,
    /// Records fetched but not yet handed out, in order.
    buffered: VecDeque<ConsumerRecord>,
    /// Per partition, the offset after the last record handed out: what a commit stores.
    delivered: HashMap<TopicPartition, i64>,
}

impl BrookConsumer {
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
}

/// A record read by `brook_consumer_poll`, owned by the caller and released with
/// `brook_record_free`. Everything its accessors return is borrowed from it.
#[derive(Debug)]
pub struct BrookRecord {
    topic: CString,
    inner: ConsumerRecord,
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
        let mut config = ConsumerConfig::new(bootstrap);
        config.set("group.id", group_id)?;
        config.set("enable.auto.commit", "false")?;
        // SAFETY: the caller's contract.
        for (key, value) in unsafe { self::config_pairs(config_pairs) }? {
            config.set(key, value)?;
        }
        let mut inner = Consumer::new(config)?;
        inner.subscribe(&names)?;
        let consumer = BrookConsumer {
            inner,
            buffered: VecDeque::new(),
            delivered: HashMap::new(),
        };
        Ok(Box::into_raw(Box::new(consumer)))
    };
    // SAFETY: `err` is NULL or writable.
    unsafe { guard("brook_consumer_new", err, std::ptr::null_mut(), body) }
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
        let consumer = unsafe { consumer.as_mut() }.ok_or(BrookError::null_argument("consumer"))?;
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
        let topic = CString::new(record.topic.replace('\0', " ")).expect("NULs were replaced");
        let record = BrookRecord {
            topic,
            inner: record,
        };
        Ok(Box::into_raw(Box::new(record)))
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
        let consumer = unsafe { consumer.as_mut() }.ok_or(BrookError::null_argument("consumer"))?;
        if !consumer.delivered.is_empty() {
            consumer.inner.commit_offsets(&consumer.delivered)?;
            consumer.delivered.clear();
        }
        Ok(0)
    };
    // SAFETY: `err` is NULL or writable.
    unsafe { guard("brook_consumer_commit", err, -1, body) }
}

/// Leaves the group (waiting at most `request.timeout.ms`) and frees `consumer` (NULL is
/// ignored). Nothing is committed here unless `enable.auto.commit` is `"true"`.
///
/// # Safety
/// `consumer` is NULL or a consumer from `brook_consumer_new`, freed at most once.
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

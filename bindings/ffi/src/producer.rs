//! `brook_producer_t`: a blocking producer whose delivery failures surface at the next
//! `brook_producer_flush`, and `brook_producer_record_t`, a record with headers and a
//! timestamp for `brook_producer_send_record`.

use std::collections::VecDeque;
use std::ffi::c_char;
use std::time::{Duration, Instant};

use brook_client::blocking::{Delivery, Producer};
use brook_client::{Header, ProducerConfig, ProducerRecord, RecordMetadata};

use crate::error::BrookError;
use crate::util::{c_bytes, c_str, config_pairs, guard, guard_free};

/// Most delivery reports kept unchecked. A send that finds this many first drops the
/// settled ones at the front of the queue and waits for the oldest only if none is.
const DELIVERIES_PENDING_MAX: usize = 100_000;
/// Most headers one record may carry: a bound on reading the `headers` array.
const HEADERS_MAX: usize = 10_000;

/// A producer. Created by `brook_producer_new`, owned by the caller, released with
/// `brook_producer_free` (which flushes, up to `delivery.timeout.ms`).
#[derive(Debug)]
pub struct BrookProducer {
    inner: Producer,
    /// Delivery reports not yet checked, oldest first.
    pending: VecDeque<Delivery>,
    /// The first delivery failure seen since the last flush, reported by the next flush.
    failure: Option<BrookError>,
}

impl BrookProducer {
    /// Queues `record`, first making room in `pending` if it is full.
    fn send(&mut self, record: ProducerRecord) -> Result<i32, BrookError> {
        if self.pending.len() >= DELIVERIES_PENDING_MAX {
            self.take_settled();
            while self.pending.len() >= DELIVERIES_PENDING_MAX {
                let oldest = self.pending.pop_front().expect("full, so not empty");
                self.note(oldest.wait(None));
            }
        }
        let delivery = self.inner.send(record)?;
        self.pending.push_back(delivery);
        debug_assert!(self.pending.len() <= DELIVERIES_PENDING_MAX);
        Ok(0)
    }

    /// Checks, without waiting, the delivery reports at the front of `pending` that have
    /// arrived. (A report costs no block on the runtime this way, where `Delivery::wait`
    /// costs one `block_on` per record.)
    fn take_settled(&mut self) {
        while let Some(oldest) = self.pending.front_mut() {
            let Some(outcome) = oldest.try_take() else {
                return;
            };
            self.pending.pop_front();
            self.note(outcome);
        }
    }

    /// Checks every pending delivery report, waiting for each at most until `deadline`
    /// (without limit if `None`); one not in by then counts as failed.
    fn settle_all(&mut self, deadline: Option<Instant>) {
        self.take_settled();
        while let Some(oldest) = self.pending.pop_front() {
            let limit = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            self.note(oldest.wait(limit));
        }
    }

    /// Remembers the first failure among delivery outcomes.
    fn note(&mut self, outcome: Result<RecordMetadata, brook_client::Error>) {
        if let Err(err) = outcome {
            self.failure.get_or_insert(err.into());
        }
    }
}

/// One record header for `brook_producer_record_t`: only read during the send call.
#[repr(C)]
#[derive(Debug)]
pub struct BrookHeader {
    /// The header's name: a NUL-terminated UTF-8 string, not NULL. Borrowed, copied
    /// before the call returns.
    pub name: *const c_char,
    /// The header's value: `value_len` bytes, or NULL (with `value_len` 0) for a null
    /// value. Borrowed, copied before the call returns.
    pub value: *const u8,
    /// The number of bytes at `value`.
    pub value_len: usize,
}

/// A record for `brook_producer_send_record`: `brook_producer_send`'s arguments plus
/// headers and a create timestamp. Every pointer in it is borrowed only during the call
/// (the library copies what it keeps); set every field.
#[repr(C)]
#[derive(Debug)]
pub struct BrookProducerRecord {
    /// The topic: a NUL-terminated string, not NULL.
    pub topic: *const c_char,
    /// The partition, or -1 to let the partitioner choose from the key.
    pub partition: i32,
    /// `key_len` bytes of key, or NULL (with `key_len` 0) for a null key.
    pub key: *const u8,
    /// The number of bytes at `key`.
    pub key_len: usize,
    /// `value_len` bytes of value, or NULL (with `value_len` 0) for a null value.
    pub value: *const u8,
    /// The number of bytes at `value`.
    pub value_len: usize,
    /// An array of `header_count` headers, or NULL when `header_count` is 0.
    pub headers: *const BrookHeader,
    /// The number of headers at `headers` (at most 10,000).
    pub header_count: usize,
    /// Create time in milliseconds since the Unix epoch; 0 or negative means the time of
    /// the send (as librdkafka's `RD_KAFKA_V_TIMESTAMP(0)`).
    pub timestamp_ms: i64,
}

/// The `ProducerRecord` of `brook_producer_send`'s arguments.
///
/// # Safety
/// `topic` is NULL or a NUL-terminated string; `key` and `value` are NULL or point to that
/// many bytes.
unsafe fn producer_record(
    topic: *const c_char,
    partition_or_minus_1: i32,
    key: (*const u8, usize),
    value: (*const u8, usize),
) -> Result<ProducerRecord, BrookError> {
    // SAFETY: the caller's contract.
    let topic = unsafe { c_str(topic, "topic") }?;
    if partition_or_minus_1 < -1 {
        return Err(BrookError::invalid_argument(&format!(
            "partition must be -1 or a partition index, not {partition_or_minus_1}"
        )));
    }
    let mut record = ProducerRecord::new(topic, Vec::new());
    // SAFETY: the caller's contract.
    record.key = unsafe { c_bytes(key.0, key.1, "key") }?;
    // SAFETY: the caller's contract.
    record.value = unsafe { c_bytes(value.0, value.1, "value") }?;
    if partition_or_minus_1 >= 0 {
        record.partition = Some(partition_or_minus_1);
    }
    Ok(record)
}

/// The headers of a `brook_producer_record_t`, copied.
///
/// # Safety
/// `headers` is NULL or points to `count` headers whose pointers follow `BrookHeader`'s
/// field docs.
unsafe fn headers(headers: *const BrookHeader, count: usize) -> Result<Vec<Header>, BrookError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if headers.is_null() {
        return Err(BrookError::invalid_argument(&format!(
            "headers is NULL but header_count is {count}"
        )));
    }
    if count > HEADERS_MAX {
        return Err(BrookError::invalid_argument(&format!(
            "header_count must be at most {HEADERS_MAX}, not {count}"
        )));
    }
    // SAFETY: the caller passes `count` headers.
    let headers = unsafe { std::slice::from_raw_parts(headers, count) };
    let mut out = Vec::with_capacity(count);
    for header in headers {
        out.push(Header {
            // SAFETY: the caller's contract.
            key: unsafe { c_str(header.name, "a header name") }?.to_string(),
            // SAFETY: the caller's contract.
            value: unsafe { c_bytes(header.value, header.value_len, "a header value") }?,
        });
    }
    Ok(out)
}

/// Creates a producer bootstrapping from `bootstrap` (`"host:port[,host:port…]"`).
/// `config_pairs` is NULL or a NULL-terminated array of alternating keys and values with
/// the Java/librdkafka property names (`"acks", "all", "linger.ms", "5", NULL`); it is only
/// read during the call. Returns a producer owned by the caller (free it with
/// `brook_producer_free`), or NULL with `*err` set.
///
/// # Safety
/// `bootstrap` is a NUL-terminated string; `config_pairs` is NULL or an array as above;
/// `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn brook_producer_new(
    bootstrap: *const c_char,
    config_pairs: *const *const c_char,
    err: *mut *mut BrookError,
) -> *mut BrookProducer {
    let body = || {
        // SAFETY: the caller's contract.
        let bootstrap = unsafe { c_str(bootstrap, "bootstrap") }?;
        let mut config = ProducerConfig::new(bootstrap);
        // SAFETY: the caller's contract.
        for (key, value) in unsafe { self::config_pairs(config_pairs) }? {
            config.set(key, value)?;
        }
        let producer = BrookProducer {
            inner: Producer::new(config)?,
            pending: VecDeque::new(),
            failure: None,
        };
        Ok(Box::into_raw(Box::new(producer)))
    };
    // SAFETY: `err` is NULL or writable.
    unsafe { guard("brook_producer_new", err, std::ptr::null_mut(), body) }
}

/// Queues one record for `topic` (auto-created if the broker allows it).
/// `partition_or_minus_1` is the partition, or -1 to let the partitioner choose from the key (murmur2, as the Java
/// client). `key`/`value` point to `key_len`/`value_len` bytes, copied before the call
/// returns; NULL (with length 0) is a null key or value. Returns 0 once queued, -1 with
/// `*err` set. Delivery failures are reported by the next `brook_producer_flush`.
///
/// # Safety
/// `producer` is NULL or a live producer; `topic` is a NUL-terminated string; `key` and
/// `value` are NULL or point to that many bytes; `err` is NULL or writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // the C signature is fixed by the spec (issue 6)
pub unsafe extern "C" fn brook_producer_send(
    producer: *mut BrookProducer,
    topic: *const c_char,
    partition_or_minus_1: i32,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    err: *mut *mut BrookError,
) -> i32 {
    let body = || {
        // SAFETY: the caller passes NULL or a live producer, used by one thread.
        let producer =
            unsafe { producer.as_mut() }.ok_or_else(|| BrookError::null_argument("producer"))?;
        // SAFETY: the caller's contract.
        let record = unsafe {
            producer_record(
                topic,
                partition_or_minus_1,
                (key, key_len),
                (value, value_len),
            )
        }?;
        producer.send(record)
    };
    // SAFETY: `err` is NULL or writable.
    unsafe { guard("brook_producer_send", err, -1, body) }
}

/// Queues `record` (see `brook_producer_record_t`): like `brook_producer_send`, with
/// headers and a create timestamp. `record` and everything it points to are only read
/// during the call. Returns 0 once queued, -1 with `*err` set. Delivery failures are
/// reported by the next `brook_producer_flush`.
///
/// # Safety
/// `producer` is NULL or a live producer; `record` is NULL or a record whose pointers
/// follow its field docs; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn brook_producer_send_record(
    producer: *mut BrookProducer,
    record: *const BrookProducerRecord,
    err: *mut *mut BrookError,
) -> i32 {
    let body = || {
        // SAFETY: the caller passes NULL or a live producer, used by one thread.
        let producer =
            unsafe { producer.as_mut() }.ok_or_else(|| BrookError::null_argument("producer"))?;
        // SAFETY: the caller passes NULL or a readable record.
        let fields =
            unsafe { record.as_ref() }.ok_or_else(|| BrookError::null_argument("record"))?;
        // SAFETY: the caller's contract for each field.
        let mut record = unsafe {
            producer_record(
                fields.topic,
                fields.partition,
                (fields.key, fields.key_len),
                (fields.value, fields.value_len),
            )
        }?;
        // SAFETY: as above.
        record.headers = unsafe { headers(fields.headers, fields.header_count) }?;
        if fields.timestamp_ms > 0 {
            record.timestamp = Some(fields.timestamp_ms);
        }
        producer.send(record)
    };
    // SAFETY: `err` is NULL or writable.
    unsafe { guard("brook_producer_send_record", err, -1, body) }
}

/// Sends everything queued and waits for every delivery report, at most `timeout_ms`
/// milliseconds (a negative value waits without limit). Returns 0 if every record sent
/// since the previous flush was delivered, -1 with `*err` set otherwise (the first failure,
/// or REQUEST_TIMED_OUT).
///
/// # Safety
/// `producer` is NULL or a live producer; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn brook_producer_flush(
    producer: *mut BrookProducer,
    timeout_ms: i32,
    err: *mut *mut BrookError,
) -> i32 {
    let body = || {
        // SAFETY: the caller passes NULL or a live producer, used by one thread.
        let producer =
            unsafe { producer.as_mut() }.ok_or_else(|| BrookError::null_argument("producer"))?;
        let limit = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        let deadline = limit.map(|limit| Instant::now() + limit);
        producer.inner.flush(limit)?;
        producer.settle_all(deadline);
        match producer.failure.take() {
            Some(failure) => Err(failure),
            None => Ok(0),
        }
    };
    // SAFETY: `err` is NULL or writable.
    unsafe { guard("brook_producer_flush", err, -1, body) }
}

/// Flushes (up to `delivery.timeout.ms`) and frees `producer` (NULL is ignored); its
/// background threads are stopped before the call returns.
///
/// # Safety
/// `producer` is NULL or a producer from `brook_producer_new`, freed at most once.
#[no_mangle]
pub unsafe extern "C" fn brook_producer_free(producer: *mut BrookProducer) {
    if producer.is_null() {
        return;
    }
    // SAFETY: created by `Box::into_raw` in `brook_producer_new`, freed once.
    let producer = unsafe { Box::from_raw(producer) };
    guard_free(move || drop(producer));
}

//! `brook_producer_t`: a blocking producer whose delivery failures surface at the next
//! `brook_producer_flush`.

use std::collections::VecDeque;
use std::ffi::c_char;
use std::time::{Duration, Instant};

use brook_client::blocking::{Delivery, Producer};
use brook_client::{ProducerConfig, ProducerRecord};

use crate::error::BrookError;
use crate::util::{c_bytes, c_str, config_pairs, guard, guard_free};

/// Most delivery reports kept unchecked; beyond it a send first waits for the oldest.
const DELIVERIES_PENDING_MAX: usize = 100_000;

/// A producer. Created by `brook_producer_new`, owned by the caller, released with
/// `brook_producer_free` (which flushes, up to `delivery.timeout.ms`).
#[derive(Debug)]
pub struct BrookProducer {
    inner: Producer,
    /// Delivery reports not yet checked, oldest first.
    pending: VecDeque<Delivery>,
    /// The first delivery failure seen while trimming `pending`, reported by the next flush.
    failure: Option<BrookError>,
}

impl BrookProducer {
    /// Checks the oldest delivery reports until at most `keep` remain, waiting for each
    /// at most until `deadline` (without limit if `None`).
    fn check_deliveries(
        &mut self,
        keep: usize,
        deadline: Option<Instant>,
    ) -> Result<(), BrookError> {
        while self.pending.len() > keep {
            let delivery = self.pending.pop_front().expect("longer than keep");
            let limit = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(err) = delivery.wait(limit) {
                self.failure.get_or_insert(err.into());
            }
        }
        Ok(())
    }
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
        let producer = unsafe { producer.as_mut() }.ok_or(BrookError::null_argument("producer"))?;
        // SAFETY: the caller's contract.
        let topic = unsafe { c_str(topic, "topic") }?;
        if partition_or_minus_1 < -1 {
            return Err(BrookError::invalid_argument(&format!(
                "partition must be -1 or a partition index, not {partition_or_minus_1}"
            )));
        }
        let mut record = ProducerRecord::new(topic, Vec::new());
        // SAFETY: the caller's contract.
        record.key = unsafe { c_bytes(key, key_len, "key") }?;
        // SAFETY: the caller's contract.
        record.value = unsafe { c_bytes(value, value_len, "value") }?;
        if partition_or_minus_1 >= 0 {
            record.partition = Some(partition_or_minus_1);
        }
        producer.check_deliveries(DELIVERIES_PENDING_MAX - 1, None)?;
        let delivery = producer.inner.send(record)?;
        producer.pending.push_back(delivery);
        Ok(0)
    };
    // SAFETY: `err` is NULL or writable.
    unsafe { guard("brook_producer_send", err, -1, body) }
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
        let producer = unsafe { producer.as_mut() }.ok_or(BrookError::null_argument("producer"))?;
        let limit = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        let deadline = limit.map(|limit| Instant::now() + limit);
        producer.inner.flush(limit)?;
        producer.check_deliveries(0, deadline)?;
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

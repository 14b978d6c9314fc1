//! The producer's record accumulator: one queue of batches per partition. Records join the
//! partition's open batch until it reaches `batch_size` bytes or is `linger` old; then it is
//! sealed and waits its turn. At most one batch per partition is in flight, so retries keep
//! the partition's order (and idempotent sequence numbers stay contiguous).
//!
//! The accumulator is shared: `Producer::send` appends on the caller's thread (under a
//! mutex, as in the Java client) and the background `Sender` takes sealed batches. A batch's
//! records share one [`BatchOutcome`], so a record costs no channel or allocation of its own
//! on its way to its delivery report.
//!
//! No I/O here: time comes in as `now`, so the batching rules are unit-tested directly.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use brook_core::record::{BatchBuilder, Compression, Record};
use brook_core::Offset;
use bytes::Bytes;
use tokio::sync::Notify;

use crate::error::Error;
use crate::{RecordMetadata, TopicPartition};

/// What the broker said about a batch: where it starts and, if the topic uses it, the
/// broker's append time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchAck {
    /// The first record's offset, or -1 with acks=0.
    pub base_offset: i64,
    /// The broker's append time, or -1 when records keep their create time.
    pub append_time_ms: i64,
}

/// The outcome of one batch, shared by the delivery futures of its records: set once, when
/// the batch is acknowledged, fails, or is dropped unsent (then [`Error::Closed`]).
#[derive(Debug)]
pub(crate) struct BatchOutcome {
    /// The batch's partition.
    pub tp: TopicPartition,
    result: OnceLock<Result<BatchAck, Error>>,
    settled: Notify,
}

impl BatchOutcome {
    fn new(tp: TopicPartition) -> BatchOutcome {
        BatchOutcome {
            tp,
            result: OnceLock::new(),
            settled: Notify::new(),
        }
    }

    /// The outcome, if settled.
    pub fn get(&self) -> Option<&Result<BatchAck, Error>> {
        self.result.get()
    }

    /// Settles the outcome (a second call is ignored) and wakes every waiter.
    fn settle(&self, result: Result<BatchAck, Error>) {
        let _ = self.result.set(result);
        self.settled.notify_waiters();
    }

    /// Waits until the outcome is settled.
    pub async fn wait(&self) -> &Result<BatchAck, Error> {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable(); // registered before the check: no wake-up is lost
            if let Some(result) = self.result.get() {
                return result;
            }
            notified.await;
        }
    }
}

/// One record's share of its batch's outcome: enough to make its delivery report.
#[derive(Clone, Debug)]
pub(crate) struct RecordSlot {
    /// The batch's outcome.
    pub outcome: Arc<BatchOutcome>,
    /// The record's position in the batch.
    pub index: i32,
    /// Its create time.
    pub timestamp: i64,
}

impl RecordSlot {
    /// The record's delivery report from its batch's outcome.
    pub fn report(&self, result: &Result<BatchAck, Error>) -> Result<RecordMetadata, Error> {
        let ack = result.as_ref().map_err(Clone::clone)?;
        Ok(RecordMetadata {
            topic: self.outcome.tp.topic.clone(),
            partition: self.outcome.tp.partition,
            offset: if ack.base_offset >= 0 {
                ack.base_offset + i64::from(self.index)
            } else {
                -1
            },
            timestamp: if ack.append_time_ms >= 0 {
                ack.append_time_ms
            } else {
                self.timestamp
            },
        })
    }
}

/// The batching settings.
#[derive(Clone, Debug)]
pub(crate) struct BatchConfig {
    /// Uncompressed bytes at which an open batch is sealed.
    pub batch_size: usize,
    /// How long an open batch waits for more records.
    pub linger: Duration,
    /// The codec batches are compressed with.
    pub compression: Compression,
    /// How long a record may wait for its acknowledgement, retries included.
    pub delivery_timeout: Duration,
}

/// One batch of records for one partition, with the outcome owed to their senders.
#[derive(Debug)]
pub(crate) struct ProducerBatch {
    /// The records so far (encoded, not yet compressed).
    pub builder: BatchBuilder,
    /// The outcome every record of the batch waits for.
    outcome: Arc<BatchOutcome>,
    /// When the batch was opened.
    pub created: Instant,
    /// How many times it was sent.
    pub attempts: u32,
    /// The bytes on the wire, built at the first send (with its sequence number) and reused
    /// by every retry so the broker can recognise a duplicate.
    pub wire: Option<Bytes>,
}

impl ProducerBatch {
    /// Number of records in the batch.
    pub fn len(&self) -> i32 {
        self.builder.len()
    }
}

impl Drop for ProducerBatch {
    /// A batch dropped without an answer (the producer stopped) fails its records.
    fn drop(&mut self) {
        self.outcome.settle(Err(Error::Closed));
    }
}

/// What [`Accumulator::append`] did.
#[derive(Debug)]
pub(crate) struct Appended {
    /// The record's share of its batch's outcome.
    pub slot: RecordSlot,
    /// Whether the sender must look: a batch was sealed (ready to send) or opened (a new
    /// linger deadline).
    pub wake: bool,
}

/// One partition's queue.
#[derive(Debug, Default)]
pub(crate) struct PartitionQueue {
    open: Option<ProducerBatch>,
    sealed: VecDeque<ProducerBatch>,
    /// Whether the head sealed batch is in a request now.
    pub in_flight: bool,
    /// The head may not be resent before this instant (retry backoff).
    pub retry_at: Option<Instant>,
    /// The sequence number of the next record not yet acknowledged (idempotence).
    pub next_sequence: i32,
}

/// All partitions' queues of one producer.
#[derive(Debug)]
pub(crate) struct Accumulator {
    config: BatchConfig,
    queues: BTreeMap<TopicPartition, PartitionQueue>,
    /// Records accepted and not yet answered.
    records: usize,
}

impl Accumulator {
    /// An empty accumulator.
    pub fn new(config: BatchConfig) -> Accumulator {
        assert!(config.batch_size > 0, "batch_size is positive");
        Accumulator {
            config,
            queues: BTreeMap::new(),
            records: 0,
        }
    }

    /// Records accepted and not yet answered.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Whether no record waits for an answer.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Adds a record to its partition's open batch, sealing the batch first if the record
    /// would take it past `batch_size` (a record larger than that gets a batch of its own).
    /// `now` is asked only when a batch opens (reading the clock per record shows up when a
    /// Python loop sends a million records).
    pub fn append(
        &mut self,
        now: impl FnOnce() -> Instant,
        tp: &TopicPartition,
        record: &Record,
    ) -> Appended {
        let batch_size = self.config.batch_size;
        let queue = match self.queues.get_mut(tp) {
            Some(queue) => queue,
            None => self.queues.entry(tp.clone()).or_default(),
        };
        self.records += 1;
        if let Some(open) = queue.open.as_mut() {
            if open.builder.push_within(record, batch_size) {
                let slot = RecordSlot {
                    outcome: Arc::clone(&open.outcome),
                    index: open.builder.len() - 1,
                    timestamp: record.timestamp,
                };
                let full = open.builder.uncompressed_size() >= batch_size;
                if full {
                    queue.seal();
                }
                return Appended { slot, wake: full };
            }
            queue.seal();
        }
        let mut builder = BatchBuilder::new(Offset(0)).compression(self.config.compression);
        builder.push(record);
        let outcome = Arc::new(BatchOutcome::new(tp.clone()));
        let slot = RecordSlot {
            outcome: Arc::clone(&outcome),
            index: 0,
            timestamp: record.timestamp,
        };
        let batch = ProducerBatch {
            builder,
            outcome,
            created: now(),
            attempts: 0,
            wire: None,
        };
        let full = batch.builder.uncompressed_size() >= batch_size;
        queue.open = Some(batch);
        if full {
            queue.seal();
        }
        Appended { slot, wake: true }
    }

    /// Seals open batches that lingered long enough, or all of them when `force` (flush).
    pub fn seal_expired(&mut self, now: Instant, force: bool) {
        for queue in self.queues.values_mut() {
            let expired = queue
                .open
                .as_ref()
                .is_some_and(|b| force || now >= b.created + self.config.linger);
            if expired {
                queue.seal();
            }
        }
    }

    /// The earliest instant after `now` at which a linger or retry backoff ends, if any.
    pub fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        let linger = self
            .queues
            .values()
            .filter_map(|q| q.open.as_ref().map(|b| b.created + self.config.linger));
        let retries = self
            .queues
            .values()
            .filter(|q| !q.in_flight && !q.sealed.is_empty())
            .filter_map(|q| q.retry_at)
            .filter(|&at| at > now);
        linger.chain(retries).min()
    }

    /// Partitions whose head sealed batch may be sent now.
    pub fn ready(&self, now: Instant) -> Vec<TopicPartition> {
        self.queues
            .iter()
            .filter(|(_, q)| !q.in_flight && !q.sealed.is_empty())
            .filter(|(_, q)| !matches!(q.retry_at, Some(at) if now < at))
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// The queue of `tp`; panics if the partition never had a record (a programmer error).
    pub fn queue(&mut self, tp: &TopicPartition) -> &mut PartitionQueue {
        self.queues.get_mut(tp).expect("a partition with batches")
    }

    /// Whether the head batch of `tp` outlived the delivery timeout.
    pub fn head_expired(&self, tp: &TopicPartition, now: Instant) -> bool {
        self.queues
            .get(tp)
            .and_then(|q| q.sealed.front())
            .is_some_and(|b| now >= b.created + self.config.delivery_timeout)
    }

    /// Acknowledges the head batch of `tp`: record `i` got offset `base_offset + i`.
    pub fn complete_head(&mut self, tp: &TopicPartition, base_offset: i64, append_time_ms: i64) {
        let queue = self.queue(tp);
        let batch = queue.sealed.pop_front().expect("an in-flight head batch");
        queue.in_flight = false;
        queue.retry_at = None;
        queue.next_sequence = queue.next_sequence.wrapping_add(batch.len()) & i32::MAX;
        self.records -= batch.len() as usize;
        batch.outcome.settle(Ok(BatchAck {
            base_offset,
            append_time_ms,
        }));
    }

    /// Fails the head batch of `tp`: every record in it gets `err`.
    pub fn fail_head(&mut self, tp: &TopicPartition, err: &Error) {
        let queue = self.queue(tp);
        let batch = queue.sealed.pop_front().expect("a head batch");
        queue.in_flight = false;
        queue.retry_at = None;
        self.records -= batch.len() as usize;
        batch.outcome.settle(Err(err.clone()));
    }

    /// Puts the head batch of `tp` back to be resent at `at`.
    pub fn retry_head(&mut self, tp: &TopicPartition, at: Instant) {
        let queue = self.queue(tp);
        queue.in_flight = false;
        queue.retry_at = Some(at);
    }

    /// Forgets every sequence number and unsent wire image (after a new producer id).
    pub fn reset_sequences(&mut self) {
        for queue in self.queues.values_mut() {
            queue.next_sequence = 0;
            for batch in queue.sealed.iter_mut() {
                batch.wire = None;
            }
        }
    }
}

impl PartitionQueue {
    /// The head sealed batch, if any.
    pub fn head(&mut self) -> Option<&mut ProducerBatch> {
        self.sealed.front_mut()
    }

    fn seal(&mut self) {
        if let Some(batch) = self.open.take() {
            self.sealed.push_back(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(batch_size: usize) -> BatchConfig {
        BatchConfig {
            batch_size,
            linger: Duration::from_millis(10),
            compression: Compression::None,
            delivery_timeout: Duration::from_secs(60),
        }
    }

    fn record(value_len: usize) -> Record {
        Record {
            timestamp: 1_000,
            key: Some(b"k".to_vec()),
            value: Some(vec![7; value_len]),
            headers: Vec::new(),
        }
    }

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition::new("t", partition)
    }

    #[test]
    fn records_join_the_open_batch_until_linger_passes() {
        let mut acc = Accumulator::new(config(16 * 1024));
        let t0 = Instant::now();
        for _ in 0..3 {
            acc.append(|| t0, &tp(0), &record(10));
        }
        assert_eq!(acc.records(), 3);
        assert!(acc.ready(t0).is_empty(), "still lingering");
        assert_eq!(acc.next_wakeup(t0), Some(t0 + Duration::from_millis(10)));
        acc.seal_expired(t0 + Duration::from_millis(9), false);
        assert!(acc.ready(t0).is_empty());
        acc.seal_expired(t0 + Duration::from_millis(10), false);
        assert_eq!(acc.ready(t0), vec![tp(0)]);
        assert_eq!(acc.queue(&tp(0)).head().expect("sealed").len(), 3);
    }

    #[test]
    fn a_full_batch_is_sealed_at_once_and_a_new_one_opened() {
        // Each record is about 110 bytes; a 300-byte batch holds the 61-byte header + 2.
        let mut acc = Accumulator::new(config(300));
        let t0 = Instant::now();
        for _ in 0..5 {
            acc.append(|| t0, &tp(1), &record(100));
        }
        let queue = acc.queue(&tp(1));
        let sizes: Vec<i32> = queue.sealed.iter().map(ProducerBatch::len).collect();
        assert_eq!(sizes, vec![2, 2]);
        assert_eq!(queue.open.as_ref().map(ProducerBatch::len), Some(1));
        assert_eq!(acc.ready(t0), vec![tp(1)]);
    }

    #[test]
    fn an_oversized_record_gets_a_batch_of_its_own() {
        let mut acc = Accumulator::new(config(100));
        let t0 = Instant::now();
        acc.append(|| t0, &tp(0), &record(500));
        assert_eq!(acc.ready(t0), vec![tp(0)]);
        assert_eq!(acc.queue(&tp(0)).head().expect("sealed").len(), 1);
    }

    #[test]
    fn flush_seals_everything() {
        let mut acc = Accumulator::new(config(16 * 1024));
        let t0 = Instant::now();
        acc.append(|| t0, &tp(0), &record(1));
        acc.append(|| t0, &tp(2), &record(1));
        acc.seal_expired(t0, true);
        assert_eq!(acc.ready(t0), vec![tp(0), tp(2)]);
    }

    #[test]
    fn completion_reports_offsets_and_advances_the_sequence() {
        let mut acc = Accumulator::new(config(16 * 1024));
        let t0 = Instant::now();
        let first = acc.append(|| t0, &tp(0), &record(1));
        let second = acc.append(|| t0, &tp(0), &record(1));
        assert!(
            first.wake,
            "a new batch wakes the sender (its linger starts)"
        );
        assert!(!second.wake, "joining a lingering batch does not");
        acc.seal_expired(t0, true);
        acc.queue(&tp(0)).in_flight = true;
        assert!(
            acc.ready(t0).is_empty(),
            "one batch in flight per partition"
        );
        assert!(first.slot.outcome.get().is_none());
        acc.complete_head(&tp(0), 40, -1);
        let answer = first.slot.outcome.get().expect("answered");
        let first = first.slot.report(answer).expect("ok");
        let second = second.slot.report(answer).expect("ok");
        assert_eq!((first.offset, second.offset), (40, 41));
        assert_eq!(
            first.timestamp, 1_000,
            "create time when the broker keeps it"
        );
        assert_eq!(acc.queue(&tp(0)).next_sequence, 2);
        assert!(acc.is_empty());
    }

    #[test]
    fn a_retried_head_waits_for_its_backoff_and_keeps_its_place() {
        let mut acc = Accumulator::new(config(16 * 1024));
        let t0 = Instant::now();
        acc.append(|| t0, &tp(0), &record(1));
        acc.seal_expired(t0, true);
        acc.append(|| t0, &tp(0), &record(2));
        acc.seal_expired(t0, true);
        acc.queue(&tp(0)).in_flight = true;
        let later = t0 + Duration::from_millis(100);
        acc.retry_head(&tp(0), later);
        assert!(acc.ready(t0).is_empty());
        assert_eq!(acc.next_wakeup(t0), Some(later));
        assert_eq!(
            acc.next_wakeup(later),
            None,
            "a backoff that ended wakes no one"
        );
        assert_eq!(acc.ready(later), vec![tp(0)]);
        assert_eq!(acc.queue(&tp(0)).head().expect("head").len(), 1);
        let (fail_rx_count, err) = (acc.records(), Error::kafka(87, "bad"));
        acc.fail_head(&tp(0), &err);
        assert_eq!(acc.records(), fail_rx_count - 1);
        assert_eq!(
            acc.queue(&tp(0)).next_sequence,
            0,
            "a refused batch uses no sequence"
        );
    }

    #[test]
    fn delivery_timeout_expires_the_head() {
        let mut acc = Accumulator::new(config(16 * 1024));
        let t0 = Instant::now();
        acc.append(|| t0, &tp(0), &record(1));
        acc.seal_expired(t0, true);
        assert!(!acc.head_expired(&tp(0), t0));
        assert!(acc.head_expired(&tp(0), t0 + Duration::from_secs(60)));
    }

    #[test]
    fn failed_and_dropped_batches_fail_their_records() {
        let mut acc = Accumulator::new(config(16 * 1024));
        let t0 = Instant::now();
        let refused = acc.append(|| t0, &tp(0), &record(1)).slot;
        acc.seal_expired(t0, true);
        acc.fail_head(&tp(0), &Error::kafka(87, "bad"));
        let answer = refused.outcome.get().expect("settled");
        assert_eq!(
            refused.report(answer).expect_err("failed").code(),
            crate::ErrorCode::InvalidRecord
        );
        let unsent = acc.append(|| t0, &tp(1), &record(1)).slot;
        drop(acc);
        let answer = unsent.outcome.get().expect("settled when dropped");
        assert_eq!(unsent.report(answer), Err(Error::Closed));
    }
}

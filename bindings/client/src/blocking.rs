//! Blocking versions of the three clients, each owning a small tokio runtime: for callers
//! without one (the C and Python bindings, scripts). Do not call them from inside an async
//! context; blocking a runtime's thread on another runtime panics.

use std::collections::{BTreeMap, HashMap};
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::{
    AdminConfig, ConfigEntry, ConfigOp, ConsumerConfig, ConsumerRecord, DeliveryFuture, Error,
    GroupDescription, GroupListing, GroupState, ListTransactionsFilter, NewTopic, OffsetSpec,
    ProducerConfig, ProducerRecord, RebalanceListener, RecordMetadata, TopicInfo, TopicPartition,
    TransactionDescription, TransactionListing,
};

/// A runtime with worker threads, so a producer's background task runs between calls.
fn runtime(name: &str) -> Result<Arc<Runtime>, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(|err| Error::Config(format!("cannot start a tokio runtime: {err}")))
}

/// Runs `future` on `runtime`, giving up after `timeout` if one is given.
fn block<T>(
    runtime: &Runtime,
    timeout: Option<Duration>,
    what: &str,
    future: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match timeout {
        None => runtime.block_on(future),
        Some(limit) => runtime
            .block_on(async { tokio::time::timeout(limit, future).await })
            .map_err(|_| Error::Timeout(format!("{what} did not finish within {limit:?}")))?,
    }
}

/// The outcome of [`Producer::try_send`]: like [`crate::TrySend`] with a blocking delivery.
#[derive(Debug)]
pub enum TrySend {
    /// The record is queued; its delivery report will arrive here.
    Queued(Delivery),
    /// Queuing would have to wait: the record, untouched, for [`Producer::send`].
    WouldBlock(ProducerRecord),
    /// The record was refused.
    Failed(Error),
}

/// A blocking producer. Dropping it flushes what was sent (up to the delivery timeout).
#[derive(Debug)]
pub struct Producer {
    runtime: Arc<Runtime>,
    inner: Option<crate::Producer>,
}

/// A pending delivery report of a blocking producer.
#[derive(Debug)]
pub struct Delivery {
    runtime: Arc<Runtime>,
    future: DeliveryFuture,
}

impl Delivery {
    /// Waits for the delivery report, at most `timeout` if one is given.
    pub fn wait(self, timeout: Option<Duration>) -> Result<RecordMetadata, Error> {
        block(
            &self.runtime,
            timeout,
            "delivery",
            self.future.into_future(),
        )
    }

    /// The delivery report if it has arrived, without waiting; `None` while pending.
    pub fn try_take(&mut self) -> Option<Result<RecordMetadata, Error>> {
        self.future.try_take()
    }

    /// Waits for the delivery report at most `timeout` (without limit if `None`); `None`
    /// if it has not arrived by then, and the delivery can still be waited for.
    pub fn wait_for(&mut self, timeout: Option<Duration>) -> Option<Result<RecordMetadata, Error>> {
        if let Some(answer) = self.future.try_take() {
            return Some(answer);
        }
        let future = self.future.wait();
        match timeout {
            None => Some(self.runtime.block_on(future)),
            Some(limit) => self
                .runtime
                .block_on(async { tokio::time::timeout(limit, future).await })
                .ok(),
        }
    }
}

impl Producer {
    /// Starts a producer with its own runtime.
    pub fn new(config: ProducerConfig) -> Result<Producer, Error> {
        let runtime = runtime("brook-producer")?;
        let inner = {
            let _entered = runtime.enter();
            crate::Producer::new(config)?
        };
        Ok(Producer {
            runtime,
            inner: Some(inner),
        })
    }

    fn inner(&self) -> &crate::Producer {
        self.inner.as_ref().expect("present until dropped")
    }

    /// Queues `record`; returns its pending delivery report. Waits only while the topic's
    /// metadata is fetched or the producer's queue is full.
    pub fn send(&self, record: ProducerRecord) -> Result<Delivery, Error> {
        let record = match self.try_send(record) {
            TrySend::Queued(delivery) => return Ok(delivery),
            TrySend::Failed(err) => return Err(err),
            TrySend::WouldBlock(record) => record,
        };
        let future = self.runtime.block_on(self.inner().send(record))?;
        Ok(Delivery {
            runtime: Arc::clone(&self.runtime),
            future,
        })
    }

    /// Queues `record` if that needs no waiting (see [`crate::Producer::try_send`]); the
    /// delivery report comes as [`TrySend::Queued`]'s [`Delivery`].
    pub fn try_send(&self, record: ProducerRecord) -> TrySend {
        match self.inner().try_send(record) {
            crate::TrySend::Queued(future) => TrySend::Queued(Delivery {
                runtime: Arc::clone(&self.runtime),
                future,
            }),
            crate::TrySend::WouldBlock(record) => TrySend::WouldBlock(record),
            crate::TrySend::Failed(err) => TrySend::Failed(err),
        }
    }

    /// Sends everything queued and waits for every answer, at most `timeout` if given.
    pub fn flush(&self, timeout: Option<Duration>) -> Result<(), Error> {
        block(&self.runtime, timeout, "flush", self.inner().flush())
    }

    /// The number of partitions of `topic`.
    pub fn partition_count(&self, topic: &str) -> Result<i32, Error> {
        self.runtime.block_on(self.inner().partition_count(topic))
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            return; // inside an async context: cannot block here
        }
        let limit = Duration::from_millis(inner.config().delivery_timeout_ms);
        let _ = block(&self.runtime, Some(limit), "flush", inner.flush());
    }
}

/// A blocking consumer: a group member (`subscribe`) or of assigned partitions. Its
/// heartbeats run on its runtime's worker thread between calls. Dropping it closes it
/// (commit with auto-commit, LeaveGroup), waiting at most the request timeout.
#[derive(Debug)]
pub struct Consumer {
    runtime: Arc<Runtime>,
    inner: crate::Consumer,
    closed: bool,
}

/// A pending asynchronous commit of a blocking consumer.
#[derive(Debug)]
pub struct PendingCommit {
    runtime: Arc<Runtime>,
    inner: crate::PendingCommit,
}

impl PendingCommit {
    /// Waits for the commit's outcome.
    pub fn wait(self) -> Result<(), Error> {
        self.runtime.block_on(self.inner.wait())
    }
}

impl Consumer {
    /// A consumer with its own runtime and nothing assigned.
    pub fn new(config: ConsumerConfig) -> Result<Consumer, Error> {
        Ok(Consumer {
            runtime: runtime("brook-consumer")?,
            inner: crate::Consumer::new(config)?,
            closed: false,
        })
    }

    /// Replaces the assignment (refused while subscribed).
    pub fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<(), Error> {
        self.inner.assign(partitions)
    }

    /// Joins the group subscribed to `topics`; the assignment arrives in the next `poll`.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<(), Error> {
        self.closed = false;
        self.inner.subscribe(topics)
    }

    /// Like [`Consumer::subscribe`], calling `listener` around every rebalance.
    pub fn subscribe_with_listener(
        &mut self,
        topics: &[&str],
        listener: Box<dyn RebalanceListener>,
    ) -> Result<(), Error> {
        self.closed = false;
        self.inner.subscribe_with_listener(topics, listener)
    }

    /// The subscribed topics.
    pub fn subscription(&self) -> Vec<String> {
        self.inner.subscription()
    }

    /// Leaves the group (after a commit with auto-commit).
    pub fn unsubscribe(&mut self) -> Result<(), Error> {
        self.runtime.block_on(self.inner.unsubscribe())
    }

    /// Commits the positions of all assigned partitions.
    pub fn commit(&mut self) -> Result<(), Error> {
        self.runtime.block_on(self.inner.commit())
    }

    /// Commits `offsets` (next offset to read, per partition).
    pub fn commit_offsets(&mut self, offsets: &HashMap<TopicPartition, i64>) -> Result<(), Error> {
        self.runtime.block_on(self.inner.commit_offsets(offsets))
    }

    /// Starts committing the positions; the commit proceeds on the runtime's worker.
    pub fn commit_async(&mut self) -> Result<PendingCommit, Error> {
        let inner = {
            let _entered = self.runtime.enter();
            self.inner.commit_async()?
        };
        Ok(PendingCommit {
            runtime: Arc::clone(&self.runtime),
            inner,
        })
    }

    /// The group's committed offsets of `partitions` (`None` where none is).
    pub fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, Option<i64>>, Error> {
        self.runtime.block_on(self.inner.committed(partitions))
    }

    /// Commits (with auto-commit) and leaves the group.
    pub fn close(&mut self) -> Result<(), Error> {
        self.closed = true;
        self.runtime.block_on(self.inner.close())
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.inner.assignment()
    }

    /// Makes `offset` the next offset read from `tp`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), Error> {
        self.inner.seek(tp, offset)
    }

    /// Moves `partitions` to their log start offsets.
    pub fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.seek_to_beginning(partitions))
    }

    /// Moves `partitions` to their log end offsets.
    pub fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        self.runtime.block_on(self.inner.seek_to_end(partitions))
    }

    /// The position of every assigned partition that has one (what `commit` would commit).
    pub fn positions(&self) -> std::collections::BTreeMap<TopicPartition, i64> {
        self.inner.positions()
    }

    /// The next offset `poll` returns from `tp`.
    pub fn position(&mut self, tp: &TopicPartition) -> Result<i64, Error> {
        self.runtime.block_on(self.inner.position(tp))
    }

    /// Stops fetching from `partitions`.
    pub fn pause(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        self.inner.pause(partitions)
    }

    /// Fetches from `partitions` again.
    pub fn resume(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        self.inner.resume(partitions)
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.inner.paused()
    }

    /// The log start offsets of `partitions`.
    pub fn beginning_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>, Error> {
        self.runtime
            .block_on(self.inner.beginning_offsets(partitions))
    }

    /// The log end offsets of `partitions`.
    pub fn end_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>, Error> {
        self.runtime.block_on(self.inner.end_offsets(partitions))
    }

    /// Up to `max.poll.records` records, waiting up to `timeout`; empty on timeout.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, Error> {
        self.runtime.block_on(self.inner.poll(timeout))
    }

    /// Up to `records_max` records (at least one), waiting up to `timeout`; empty on timeout.
    pub fn poll_max(
        &mut self,
        timeout: Duration,
        records_max: usize,
    ) -> Result<Vec<ConsumerRecord>, Error> {
        self.runtime
            .block_on(self.inner.poll_max(timeout, records_max))
    }

    /// Starts committing `offsets` (next offset to read, per partition) without waiting.
    pub fn commit_offsets_async(
        &mut self,
        offsets: &HashMap<TopicPartition, i64>,
    ) -> Result<PendingCommit, Error> {
        let inner = {
            let _entered = self.runtime.enter();
            self.inner.commit_offsets_async(offsets)?
        };
        Ok(PendingCommit {
            runtime: Arc::clone(&self.runtime),
            inner,
        })
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if self.closed || tokio::runtime::Handle::try_current().is_ok() {
            return; // closed already, or inside an async context: cannot block here
        }
        let limit = Duration::from_millis(self.inner.config().request_timeout_ms);
        let _ = block(&self.runtime, Some(limit), "close", self.inner.close());
    }
}

/// A blocking admin client.
#[derive(Debug)]
pub struct Admin {
    runtime: Arc<Runtime>,
    inner: crate::Admin,
}

impl Admin {
    /// An admin client with its own runtime.
    pub fn new(config: AdminConfig) -> Result<Admin, Error> {
        Ok(Admin {
            runtime: runtime("brook-admin")?,
            inner: crate::Admin::new(config)?,
        })
    }

    /// Creates `topics`.
    pub fn create_topics(&self, topics: &[NewTopic]) -> Result<(), Error> {
        self.runtime.block_on(self.inner.create_topics(topics))
    }

    /// Deletes `topics`.
    pub fn delete_topics(&self, topics: &[&str]) -> Result<(), Error> {
        self.runtime.block_on(self.inner.delete_topics(topics))
    }

    /// The names of all topics, sorted.
    pub fn list_topics(&self) -> Result<Vec<String>, Error> {
        self.runtime.block_on(self.inner.list_topics())
    }

    /// A topic's partitions and leaders.
    pub fn describe_topic(&self, topic: &str) -> Result<TopicInfo, Error> {
        self.runtime.block_on(self.inner.describe_topic(topic))
    }

    /// Every config of `topic`.
    pub fn describe_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>, Error> {
        self.runtime.block_on(self.inner.describe_configs(topic))
    }

    /// Changes some configs of `topic` (incrementally).
    pub fn alter_configs(&self, topic: &str, changes: &[(&str, ConfigOp)]) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.alter_configs(topic, changes))
    }

    /// The cluster's id, brokers and controller.
    pub fn describe_cluster(&self) -> Result<crate::ClusterDescription, Error> {
        self.runtime.block_on(self.inner.describe_cluster())
    }

    /// Starts, replaces or cancels partition moves (see
    /// [`crate::Admin::alter_partition_reassignments`]).
    pub fn alter_partition_reassignments(
        &self,
        moves: &[crate::PartitionReassignment],
    ) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.alter_partition_reassignments(moves))
    }

    /// Changes dynamic broker configs (see [`crate::Admin::alter_broker_configs`]).
    pub fn alter_broker_configs(
        &self,
        broker: Option<i32>,
        changes: &[(&str, ConfigOp)],
    ) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.alter_broker_configs(broker, changes))
    }

    /// The partitions of `topics`, internal ones too (see
    /// [`crate::Admin::describe_topic_partitions`]).
    pub fn describe_topic_partitions(
        &self,
        topics: &[String],
    ) -> Result<std::collections::BTreeMap<(String, i32), crate::PartitionDescription>, Error> {
        self.runtime
            .block_on(self.inner.describe_topic_partitions(topics))
    }

    /// Removes a stopped, drained broker (see [`crate::Admin::unregister_broker`]).
    pub fn unregister_broker(&self, id: i32) -> Result<(), Error> {
        self.runtime.block_on(self.inner.unregister_broker(id))
    }

    /// The partition moves under way.
    pub fn list_partition_reassignments(&self) -> Result<Vec<crate::PartitionReassignment>, Error> {
        self.runtime
            .block_on(self.inner.list_partition_reassignments())
    }

    /// Grows `topic` to `total_partitions` partitions.
    pub fn create_partitions(&self, topic: &str, total_partitions: i32) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.create_partitions(topic, total_partitions))
    }

    /// A topic's metadata, asking the broker to create it if unknown and its
    /// `auto.create.topics.enable` allows (what a producer does).
    pub fn topic_metadata(&self, topic: &str, allow_auto_create: bool) -> Result<TopicInfo, Error> {
        self.runtime
            .block_on(self.inner.topic_metadata(topic, allow_auto_create))
    }

    /// The earliest or latest offset of each of `partitions`.
    pub fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<TopicPartition, i64>, Error> {
        self.runtime
            .block_on(self.inner.list_offsets(partitions, spec))
    }

    /// Every group, sorted by id; only those in `states` if given.
    pub fn list_groups(&self, states: Option<&[GroupState]>) -> Result<Vec<GroupListing>, Error> {
        self.runtime.block_on(self.inner.list_groups(states))
    }

    /// Each of `groups` with its state and members (GROUP_ID_NOT_FOUND if one is unknown).
    pub fn describe_groups(&self, groups: &[&str]) -> Result<Vec<GroupDescription>, Error> {
        self.runtime.block_on(self.inner.describe_groups(groups))
    }

    /// Deletes `groups` (each must be empty).
    pub fn delete_groups(&self, groups: &[&str]) -> Result<(), Error> {
        self.runtime.block_on(self.inner.delete_groups(groups))
    }

    /// `group`'s committed offsets, of `partitions` or of all when `None`.
    pub fn list_group_offsets(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<BTreeMap<TopicPartition, i64>, Error> {
        self.runtime
            .block_on(self.inner.list_group_offsets(group, partitions))
    }

    /// Sets `group`'s committed offsets (the group must have no members).
    pub fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.alter_group_offsets(group, offsets))
    }

    /// Deletes `group`'s committed offsets of `partitions`.
    pub fn delete_group_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.delete_group_offsets(group, partitions))
    }

    /// Every transactional id the cluster's coordinators hold that passes `filter` (see
    /// [`crate::Admin::list_transactions`]).
    pub fn list_transactions(
        &self,
        filter: ListTransactionsFilter,
    ) -> Result<Vec<TransactionListing>, Error> {
        self.runtime.block_on(self.inner.list_transactions(filter))
    }

    /// Each of `ids` as its coordinator describes it (TRANSACTIONAL_ID_NOT_FOUND if one is
    /// unknown).
    pub fn describe_transactions(
        &self,
        ids: &[&str],
    ) -> Result<Vec<TransactionDescription>, Error> {
        self.runtime.block_on(self.inner.describe_transactions(ids))
    }
}

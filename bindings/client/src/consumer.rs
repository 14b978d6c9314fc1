//! The consumer of hand-assigned partitions: `assign`, `seek`, `position`, `poll`,
//! `pause`/`resume`. Positions without an offset are reset by `auto_offset_reset` through
//! ListOffsets. Every fetched batch has its CRC checked; control batches (transaction
//! markers) are skipped, and under read_committed so are batches of aborted transactions.
//!
//! With a `group_id` the consumer also joins a consumer group (`subscribe`, classic
//! protocol, eager rebalances) and commits offsets; that half lives in `consumer/groups.rs`
//! over the protocol client in `group.rs`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use brook_core::record::{decode_records, Batch, Batches, ControlMarker, ControlType, Header};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::AbortedTransaction;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::assignor::Assignor;
use crate::error::Error;
use crate::group::{GroupClient, GroupSettings};
use crate::network::{Network, NetworkConfig};
use crate::{parse_bool, parse_number, TopicPartition};

mod groups;

pub use groups::{PendingCommit, RebalanceListener};

/// Fetch v4 is the first with record batches v2 and isolation levels; v12 is the newest
/// that names topics (v13 switches to topic ids).
const FETCH_VERSIONS: (i16, i16) = (4, 12);
/// ListOffsets v1 is the first with a single offset per partition.
const LIST_OFFSETS_VERSIONS: (i16, i16) = (1, 7);
/// ListOffsets timestamp meaning "the log start offset".
pub(crate) const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets timestamp meaning "the log end offset" (the last stable one in read_committed).
pub(crate) const LATEST_TIMESTAMP: i64 = -1;
/// How many times a ListOffsets lookup retries retriable failures.
const LIST_OFFSETS_ATTEMPTS_MAX: u32 = 10;
/// The shortest session timeout a Kafka broker accepts by default
/// (`group.min.session.timeout.ms`); Brook enforces the same.
pub const SESSION_TIMEOUT_MS_MIN: u64 = 6_000;

/// Where to start a partition that has no position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetReset {
    /// At the log start offset.
    Earliest,
    /// At the log end offset: only records written from now on.
    Latest,
    /// Nowhere: `poll` fails with OFFSET_OUT_OF_RANGE.
    None,
}

/// Which records a fetch may see (KIP-98).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsolationLevel {
    /// Everything up to the high watermark, aborted transactions included.
    ReadUncommitted,
    /// Only up to the last stable offset, without aborted transactions.
    ReadCommitted,
}

impl IsolationLevel {
    fn wire(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// Consumer settings; [`ConsumerConfig::new`] gives the Java client's defaults.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Comma-separated HOST:PORT list of brokers to bootstrap from.
    pub bootstrap: String,
    /// The client id in every request header.
    pub client_id: String,
    /// Where a partition without a position starts (`auto.offset.reset`).
    pub auto_offset_reset: OffsetReset,
    /// Which records fetches may see (`isolation.level`).
    pub isolation_level: IsolationLevel,
    /// How long the broker may hold a fetch waiting for data (`fetch.max.wait.ms`).
    pub fetch_max_wait_ms: u64,
    /// Bytes the broker should gather before answering a fetch (`fetch.min.bytes`).
    pub fetch_min_bytes: i32,
    /// Upper bound on one fetch response (`fetch.max.bytes`).
    pub fetch_max_bytes: i32,
    /// Upper bound on one partition's data in a fetch (`max.partition.fetch.bytes`).
    pub partition_fetch_bytes_max: i32,
    /// Most records one `poll` returns (`max.poll.records`).
    pub poll_records_max: usize,
    /// How long one request may take (`request.timeout.ms`).
    pub request_timeout_ms: u64,
    /// Bound on a decompressed batch, against decompression bombs.
    pub decompressed_bytes_max: usize,
    /// The consumer group (`group.id`); needed by `subscribe` and offset commits.
    pub group_id: Option<String>,
    /// How long the coordinator keeps a silent member (`session.timeout.ms`, at least
    /// [`SESSION_TIMEOUT_MS_MIN`]).
    pub session_timeout_ms: u64,
    /// The gap between heartbeats (`heartbeat.interval.ms`), below the session timeout.
    pub heartbeat_interval_ms: u64,
    /// The longest gap between polls before the member leaves its group; also the
    /// rebalance timeout sent in JoinGroup (`max.poll.interval.ms`).
    pub max_poll_interval_ms: u64,
    /// Whether positions are committed every `auto_commit_interval_ms`, before a rebalance
    /// revokes partitions and on close (`enable.auto.commit`).
    pub enable_auto_commit: bool,
    /// The gap between automatic commits (`auto.commit.interval.ms`).
    pub auto_commit_interval_ms: u64,
    /// The assignors offered to the group, preferred first (`partition.assignment.strategy`).
    pub partition_assignment_strategy: Vec<Assignor>,
}

impl ConsumerConfig {
    /// Defaults for a consumer bootstrapping from `bootstrap`.
    pub fn new(bootstrap: &str) -> ConsumerConfig {
        ConsumerConfig {
            bootstrap: bootstrap.to_string(),
            client_id: "brook-consumer".to_string(),
            auto_offset_reset: OffsetReset::Latest,
            isolation_level: IsolationLevel::ReadUncommitted,
            fetch_max_wait_ms: 500,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            partition_fetch_bytes_max: 1024 * 1024,
            poll_records_max: 500,
            request_timeout_ms: 30_000,
            decompressed_bytes_max: 64 * 1024 * 1024,
            group_id: None,
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 3_000,
            max_poll_interval_ms: 300_000,
            enable_auto_commit: true,
            auto_commit_interval_ms: 5_000,
            partition_assignment_strategy: vec![Assignor::Range],
        }
    }

    /// The group settings, checked; `None` without a `group_id`.
    fn group_settings(&self) -> Result<Option<GroupSettings>, Error> {
        let Some(group_id) = self.group_id.clone() else {
            return Ok(None);
        };
        if group_id.is_empty() {
            return Err(Error::Config("group.id is empty".into()));
        }
        if self.session_timeout_ms < SESSION_TIMEOUT_MS_MIN {
            return Err(Error::Config(format!(
                "session.timeout.ms must be at least {SESSION_TIMEOUT_MS_MIN}"
            )));
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.session_timeout_ms
        {
            return Err(Error::Config(
                "heartbeat.interval.ms must be positive and below session.timeout.ms".into(),
            ));
        }
        if self.max_poll_interval_ms == 0 || self.auto_commit_interval_ms == 0 {
            return Err(Error::Config(
                "max.poll.interval.ms and auto.commit.interval.ms must be positive".into(),
            ));
        }
        if self.partition_assignment_strategy.is_empty() {
            return Err(Error::Config(
                "partition.assignment.strategy is empty".into(),
            ));
        }
        Ok(Some(GroupSettings {
            group_id,
            session_timeout_ms: self.session_timeout_ms,
            rebalance_timeout_ms: self.max_poll_interval_ms,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            assignors: self.partition_assignment_strategy.clone(),
        }))
    }

    /// Sets one property by its Java/librdkafka name (`auto.offset.reset`,
    /// `isolation.level`, `fetch.max.wait.ms`, `max.poll.records`, …).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), Error> {
        match key {
            "bootstrap.servers" | "metadata.broker.list" => self.bootstrap = value.to_string(),
            "client.id" => self.client_id = value.to_string(),
            "auto.offset.reset" => {
                self.auto_offset_reset = match value {
                    "earliest" | "smallest" | "beginning" => OffsetReset::Earliest,
                    "latest" | "largest" | "end" => OffsetReset::Latest,
                    "none" | "error" => OffsetReset::None,
                    _ => {
                        return Err(Error::Config(format!(
                            "auto.offset.reset must be earliest, latest or none, not {value}"
                        )))
                    }
                }
            }
            "isolation.level" => {
                self.isolation_level = match value {
                    "read_uncommitted" => IsolationLevel::ReadUncommitted,
                    "read_committed" => IsolationLevel::ReadCommitted,
                    _ => {
                        return Err(Error::Config(format!(
                        "isolation.level must be read_committed or read_uncommitted, not {value}"
                    )))
                    }
                }
            }
            "fetch.max.wait.ms" | "fetch.wait.max.ms" => {
                self.fetch_max_wait_ms = parse_number(key, value)?
            }
            "fetch.min.bytes" => self.fetch_min_bytes = parse_number(key, value)?,
            "fetch.max.bytes" => self.fetch_max_bytes = parse_number(key, value)?,
            "max.partition.fetch.bytes" => {
                self.partition_fetch_bytes_max = parse_number(key, value)?
            }
            "max.poll.records" => self.poll_records_max = parse_number(key, value)?,
            "request.timeout.ms" => self.request_timeout_ms = parse_number(key, value)?,
            "group.id" => self.group_id = Some(value.to_string()).filter(|g| !g.is_empty()),
            "session.timeout.ms" => self.session_timeout_ms = parse_number(key, value)?,
            "heartbeat.interval.ms" => self.heartbeat_interval_ms = parse_number(key, value)?,
            "max.poll.interval.ms" => self.max_poll_interval_ms = parse_number(key, value)?,
            "enable.auto.commit" => self.enable_auto_commit = parse_bool(key, value)?,
            "auto.commit.interval.ms" => self.auto_commit_interval_ms = parse_number(key, value)?,
            "partition.assignment.strategy" => {
                self.partition_assignment_strategy = value
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(Assignor::parse)
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(Error::Config(format!("unknown consumer property {key}"))),
        }
        Ok(())
    }
}

/// A record read from a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The key; `None` is a null key.
    pub key: Option<Vec<u8>>,
    /// The value; `None` is a null value.
    pub value: Option<Vec<u8>>,
    /// The headers, in order.
    pub headers: Vec<Header>,
    /// Create time, or the broker's append time if the topic uses it (milliseconds).
    pub timestamp: i64,
}

/// One assigned partition's state.
#[derive(Debug, Default)]
struct PartitionState {
    /// The offset to fetch next; `None` until reset or sought.
    next_fetch: Option<i64>,
    /// Fetched records not yet returned by `poll`.
    buffered: VecDeque<ConsumerRecord>,
    paused: bool,
}

impl PartitionState {
    /// The offset of the next record `poll` will return.
    fn position(&self) -> Option<i64> {
        self.buffered.front().map(|r| r.offset).or(self.next_fetch)
    }
}

/// A consumer of a group's partitions (`subscribe`) or of explicitly assigned ones
/// (`assign`). Not shared: `poll` takes `&mut self`.
///
/// Group members rejoin inside `poll`: the heartbeat task only notes that a rebalance
/// began, and the next `poll` commits (with auto-commit), calls `on_partitions_revoked`,
/// joins, restores committed positions and calls `on_partitions_assigned`, in that order
/// (cooperative-sticky revokes only what moves, after the join). A `poll` that rejoins may
/// take longer than its timeout: a JoinGroup waits until every member has rejoined.
///
/// Call [`Consumer::close`] when done: dropping the consumer stops its heartbeats but sends
/// no LeaveGroup, so the group waits `session_timeout_ms` before handing its partitions on.
#[derive(Debug)]
pub struct Consumer {
    config: ConsumerConfig,
    network: Arc<Network>,
    assignment: BTreeMap<TopicPartition, PartitionState>,
    /// The group client when `group_id` is set.
    group: Option<GroupClient>,
    /// The subscribed topics and the callbacks while subscribed.
    subscription: Option<groups::Subscription>,
    /// The heartbeat task while a member.
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    /// When the next automatic commit is due.
    next_auto_commit: Instant,
    /// The newest asynchronous commit; the next commit waits for it, so commits land in
    /// the order they were made.
    last_async_commit: Option<tokio::task::JoinHandle<()>>,
}

impl Consumer {
    /// A consumer with nothing assigned. Brokers are contacted at the first `poll`.
    pub fn new(config: ConsumerConfig) -> Result<Consumer, Error> {
        if config.poll_records_max == 0 {
            return Err(Error::Config("max.poll.records must be positive".into()));
        }
        let network_config = NetworkConfig::new(
            &config.bootstrap,
            &config.client_id,
            config.request_timeout_ms,
        )?;
        let group = config
            .group_settings()?
            .map(|settings| GroupClient::new(settings, network_config.clone()));
        Ok(Consumer {
            network: Arc::new(Network::new(network_config)),
            assignment: BTreeMap::new(),
            group,
            subscription: None,
            heartbeat: None,
            next_auto_commit: Instant::now()
                + Duration::from_millis(config.auto_commit_interval_ms),
            last_async_commit: None,
            config,
        })
    }

    /// The settings this consumer runs with.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// Replaces the assignment. Partitions that stay keep their position and pause state.
    /// Refused while subscribed: the group decides the assignment then.
    pub fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<(), Error> {
        if self.subscription.is_some() {
            return Err(Error::InvalidState(
                "assign while subscribed; unsubscribe first".into(),
            ));
        }
        self.replace_assignment(partitions);
        Ok(())
    }

    fn replace_assignment(&mut self, partitions: Vec<TopicPartition>) {
        let mut old = std::mem::take(&mut self.assignment);
        for tp in partitions {
            let state = old.remove(&tp).unwrap_or_default();
            self.assignment.insert(tp, state);
        }
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment.keys().cloned().collect()
    }

    /// Makes `offset` the next offset `poll` reads from `tp`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), Error> {
        if offset < 0 {
            return Err(Error::Config(format!(
                "cannot seek {tp} to offset {offset}"
            )));
        }
        let state = self.state(tp)?;
        state.buffered.clear();
        state.next_fetch = Some(offset);
        Ok(())
    }

    /// Moves each of `partitions` to its log start offset.
    pub async fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        self.seek_to(partitions, EARLIEST_TIMESTAMP).await
    }

    /// Moves each of `partitions` to its log end offset.
    pub async fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        self.seek_to(partitions, LATEST_TIMESTAMP).await
    }

    /// The offset of the next record `poll` returns from `tp`, resetting it first (by
    /// `auto_offset_reset`) if it has none.
    pub async fn position(&mut self, tp: &TopicPartition) -> Result<i64, Error> {
        if let Some(position) = self.state(tp)?.position() {
            return Ok(position);
        }
        self.reset_positions().await?;
        Ok(self.state(tp)?.position().expect("reset above"))
    }

    /// Stops fetching from `partitions` until [`Consumer::resume`]; their positions stay.
    pub fn pause(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        for tp in partitions {
            self.state(tp)?.paused = true;
        }
        Ok(())
    }

    /// Fetches from paused `partitions` again.
    pub fn resume(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        for tp in partitions {
            self.state(tp)?.paused = false;
        }
        Ok(())
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.assignment
            .iter()
            .filter(|(_, s)| s.paused)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// The log start offset of each of `partitions`.
    pub async fn beginning_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>, Error> {
        self.list_offsets(partitions, EARLIEST_TIMESTAMP).await
    }

    /// The log end offset (last stable offset under read_committed) of each of `partitions`.
    pub async fn end_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>, Error> {
        self.list_offsets(partitions, LATEST_TIMESTAMP).await
    }

    /// Returns up to `max.poll.records` records from unpaused assigned partitions, in offset
    /// order per partition, waiting up to `timeout` for some; empty when none came in time.
    /// Retriable failures (leader moves, lost connections) are retried within the timeout.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, Error> {
        self.poll_max(timeout, self.config.poll_records_max).await
    }

    /// Like [`Consumer::poll`], returning up to `records_max` records (at least one) instead
    /// of `max.poll.records`.
    pub async fn poll_max(
        &mut self,
        timeout: Duration,
        records_max: usize,
    ) -> Result<Vec<ConsumerRecord>, Error> {
        let records_max = records_max.max(1);
        let deadline = Instant::now() + timeout;
        loop {
            if let Err(err) = self.ensure_group().await {
                if !err.is_retriable() {
                    return Err(err);
                }
                if Instant::now() >= deadline {
                    return Ok(Vec::new());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            self.maybe_auto_commit();
            let records = self.drain(records_max);
            if !records.is_empty() {
                return Ok(records);
            }
            match self.reset_positions().await {
                Ok(()) => {}
                Err(err) if err.is_retriable() => self.network.mark_stale(),
                Err(err) => return Err(err),
            }
            let now = Instant::now();
            if now >= deadline && !timeout.is_zero() {
                return Ok(Vec::new());
            }
            let wait = (deadline - now).min(Duration::from_millis(self.config.fetch_max_wait_ms));
            self.fetch(wait).await?;
            if Instant::now() >= deadline {
                return Ok(self.drain(records_max));
            }
        }
    }

    fn state(&mut self, tp: &TopicPartition) -> Result<&mut PartitionState, Error> {
        self.assignment
            .get_mut(tp)
            .ok_or_else(|| Error::InvalidState(format!("{tp} is not assigned")))
    }

    /// Takes buffered records of unpaused partitions, up to `records_max`.
    fn drain(&mut self, records_max: usize) -> Vec<ConsumerRecord> {
        let mut out = Vec::new();
        for state in self.assignment.values_mut().filter(|s| !s.paused) {
            while out.len() < records_max {
                match state.buffered.pop_front() {
                    Some(record) => out.push(record),
                    None => break,
                }
            }
        }
        out
    }

    async fn seek_to(
        &mut self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<(), Error> {
        for tp in partitions {
            self.state(tp)?;
        }
        let offsets = self.list_offsets(partitions, timestamp).await?;
        for (tp, offset) in offsets {
            self.seek(&tp, offset)?;
        }
        Ok(())
    }

    /// Gives every assigned partition without a position one, by `auto_offset_reset`.
    async fn reset_positions(&mut self) -> Result<(), Error> {
        let missing: Vec<TopicPartition> = self
            .assignment
            .iter()
            .filter(|(_, s)| s.position().is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let timestamp = match self.config.auto_offset_reset {
            OffsetReset::Earliest => EARLIEST_TIMESTAMP,
            OffsetReset::Latest => LATEST_TIMESTAMP,
            OffsetReset::None => {
                return Err(Error::kafka(
                    1,
                    format!(
                        "{} has no position and auto.offset.reset is none",
                        missing[0]
                    ),
                ))
            }
        };
        let offsets = self.list_offsets(&missing, timestamp).await?;
        for (tp, offset) in offsets {
            if let Some(state) = self.assignment.get_mut(&tp) {
                state.next_fetch = Some(offset);
            }
        }
        Ok(())
    }

    /// ListOffsets for `partitions` at `timestamp`, from each partition's leader, retrying
    /// retriable failures after a metadata refresh.
    async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<HashMap<TopicPartition, i64>, Error> {
        let mut found = HashMap::new();
        let mut attempt = 0;
        loop {
            let pending: Vec<&TopicPartition> = partitions
                .iter()
                .filter(|tp| !found.contains_key(*tp))
                .collect();
            if pending.is_empty() {
                return Ok(found);
            }
            attempt += 1;
            let mut last_error = None;
            for tp in pending {
                match self.list_offset(tp, timestamp).await {
                    Ok(offset) => {
                        found.insert(tp.clone(), offset);
                    }
                    Err(err) if err.is_retriable() && attempt < LIST_OFFSETS_ATTEMPTS_MAX => {
                        if err.invalidates_metadata() {
                            self.network.mark_stale();
                        }
                        last_error = Some(err);
                    }
                    Err(err) => return Err(err),
                }
            }
            if last_error.is_some() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// One partition's ListOffsets answer.
    async fn list_offset(&self, tp: &TopicPartition, timestamp: i64) -> Result<i64, Error> {
        let isolation = self.config.isolation_level;
        list_offset(&self.network, tp, timestamp, isolation).await
    }

    /// One round of fetches: a Fetch to each leader of a fetchable partition, concurrently,
    /// each waiting up to `wait` for data.
    async fn fetch(&mut self, wait: Duration) -> Result<(), Error> {
        let mut by_leader: BTreeMap<String, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        let fetchable: Vec<(TopicPartition, i64)> = self
            .assignment
            .iter()
            .filter(|(_, s)| !s.paused && s.buffered.is_empty())
            .filter_map(|(tp, s)| s.next_fetch.map(|offset| (tp.clone(), offset)))
            .collect();
        if fetchable.is_empty() {
            tokio::time::sleep(wait).await;
            return Ok(());
        }
        for (tp, offset) in fetchable {
            match self.network.leader_addr(&tp.topic, tp.partition).await {
                Ok(addr) => by_leader.entry(addr).or_default().push((tp, offset)),
                Err(err) if err.is_retriable() => self.network.mark_stale(),
                Err(err) => return Err(err),
            }
        }
        if by_leader.is_empty() {
            tokio::time::sleep(wait.min(Duration::from_millis(100))).await;
            return Ok(());
        }
        let mut requests = JoinSet::new();
        for (addr, partitions) in by_leader {
            let request = self.fetch_request(&partitions, wait);
            let network = Arc::clone(&self.network);
            requests.spawn(async move {
                let result = network
                    .call(&addr, FETCH_VERSIONS, wait, move |_| request)
                    .await;
                (partitions, result)
            });
        }
        let mut first_error = None;
        while let Some(joined) = requests.join_next().await {
            let (partitions, result) = joined.expect("a Fetch task never panics");
            let outcome = match result {
                Ok(response) => self.on_fetch_response(&partitions, response),
                Err(err) => Err(err),
            };
            match outcome {
                Ok(()) => {}
                Err(err) if err.is_retriable() && !matches!(err, Error::Corrupt { .. }) => {
                    if err.invalidates_metadata() {
                        self.network.mark_stale();
                    }
                    // Back off briefly so a broker that is down is not hammered.
                    tokio::time::sleep(wait.min(Duration::from_millis(100))).await;
                }
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn fetch_request(&self, partitions: &[(TopicPartition, i64)], wait: Duration) -> FetchRequest {
        let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
        for (tp, offset) in partitions {
            topics.entry(&tp.topic).or_default().push(
                FetchPartition::default()
                    .with_partition(tp.partition)
                    .with_fetch_offset(*offset)
                    .with_partition_max_bytes(self.config.partition_fetch_bytes_max),
            );
        }
        let topics = topics
            .into_iter()
            .map(|(name, partitions)| {
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partitions(partitions)
            })
            .collect();
        FetchRequest::default()
            .with_max_wait_ms(i32::try_from(wait.as_millis()).unwrap_or(i32::MAX))
            .with_min_bytes(self.config.fetch_min_bytes)
            .with_max_bytes(self.config.fetch_max_bytes)
            .with_isolation_level(self.config.isolation_level.wire())
            .with_topics(topics)
    }

    /// Buffers the records of one Fetch response and advances the fetch positions.
    fn on_fetch_response(
        &mut self,
        partitions: &[(TopicPartition, i64)],
        response: FetchResponse,
    ) -> Result<(), Error> {
        crate::error::check(response.error_code, None, "Fetch")?;
        let mut retriable = None;
        for topic in &response.responses {
            for data in &topic.partitions {
                let tp = TopicPartition::new(topic.topic.0.as_str(), data.partition_index);
                // Only answers to what was asked, at the offset asked, count.
                let Some((_, offset)) = partitions.iter().find(|(asked, _)| *asked == tp) else {
                    continue;
                };
                let Some(state) = self.assignment.get_mut(&tp) else {
                    continue; // unassigned while the fetch was out
                };
                if state.next_fetch != Some(*offset) || !state.buffered.is_empty() {
                    continue; // sought while the fetch was out
                }
                if data.error_code == 1 && self.config.auto_offset_reset != OffsetReset::None {
                    state.next_fetch = None; // OFFSET_OUT_OF_RANGE: reset at the next poll
                    continue;
                }
                if let Err(err) = crate::error::check(data.error_code, None, &format!("fetch {tp}"))
                {
                    if err.is_retriable() {
                        retriable = Some(err);
                        continue;
                    }
                    return Err(err);
                }
                let read = ReadContext {
                    tp: &tp,
                    from: *offset,
                    read_committed: self.config.isolation_level == IsolationLevel::ReadCommitted,
                    aborted: data.aborted_transactions.as_deref().unwrap_or_default(),
                    decompressed_bytes_max: self.config.decompressed_bytes_max,
                };
                let empty = Bytes::new();
                let (records, next) = read.records(data.records.as_ref().unwrap_or(&empty))?;
                state.buffered.extend(records);
                state.next_fetch = Some(next);
            }
        }
        retriable.map_or(Ok(()), Err)
    }
}

/// How to read one partition's fetched bytes.
struct ReadContext<'a> {
    tp: &'a TopicPartition,
    /// The fetch offset: records before it (in the first batch) are not returned.
    from: i64,
    read_committed: bool,
    aborted: &'a [AbortedTransaction],
    decompressed_bytes_max: usize,
}

impl ReadContext<'_> {
    /// The records at or after `from` in `bytes`, and the offset to fetch next. Every batch's
    /// CRC is checked; a trailing partial batch is left for the next fetch.
    fn records(&self, bytes: &[u8]) -> Result<(Vec<ConsumerRecord>, i64), Error> {
        let corrupt = |reason: String| Error::Corrupt {
            topic: self.tp.topic.clone(),
            partition: self.tp.partition,
            reason,
        };
        let mut aborted: Vec<(i64, i64)> = self
            .aborted
            .iter()
            .map(|a| (a.first_offset, a.producer_id.0))
            .collect();
        aborted.sort_unstable();
        let mut aborted = aborted.into_iter().peekable();
        let mut aborting: Vec<i64> = Vec::new();
        let mut next = self.from;
        let mut out = Vec::new();
        for batch in Batches::new(bytes) {
            let batch = batch.map_err(|err| corrupt(err.to_string()))?;
            batch.verify_crc().map_err(|err| corrupt(err.to_string()))?;
            if batch.next_offset().0 <= next {
                continue; // wholly before the fetch offset
            }
            while let Some(&(first_offset, producer_id)) = aborted.peek() {
                if first_offset > batch.last_offset().0 {
                    break;
                }
                aborting.push(producer_id);
                aborted.next();
            }
            let skip = self.skip(&batch, &mut aborting, &corrupt)?;
            if !skip {
                let decoded = decode_records(&batch, self.decompressed_bytes_max)
                    .map_err(|err| corrupt(err.to_string()))?;
                for record in decoded.into_iter().filter(|r| r.offset.0 >= next) {
                    out.push(ConsumerRecord {
                        topic: self.tp.topic.clone(),
                        partition: self.tp.partition,
                        offset: record.offset.0,
                        key: record.record.key,
                        value: record.record.value,
                        headers: record.record.headers,
                        timestamp: if batch.timestamp_type()
                            == brook_core::record::TimestampType::LogAppendTime
                        {
                            batch.max_timestamp()
                        } else {
                            record.record.timestamp
                        },
                    });
                }
            }
            next = batch.next_offset().0;
        }
        Ok((out, next))
    }

    /// Whether `batch` is hidden from the application: a control batch (which also ends an
    /// aborted transaction it marks), or under read_committed a batch of an aborted one.
    fn skip(
        &self,
        batch: &Batch<'_>,
        aborting: &mut Vec<i64>,
        corrupt: &impl Fn(String) -> Error,
    ) -> Result<bool, Error> {
        let producer_id = batch.producer_id().0;
        if batch.is_control() {
            let marker = ControlMarker::decode(batch);
            if let Ok(marker) = marker {
                if marker.control_type == ControlType::Abort {
                    aborting.retain(|&id| id != producer_id);
                }
            } else if batch.is_transactional() {
                return Err(corrupt("unreadable transaction marker".to_string()));
            }
            return Ok(true);
        }
        Ok(self.read_committed && batch.is_transactional() && aborting.contains(&producer_id))
    }
}

/// A ListOffsets request for one partition, with the isolation level only where the version
/// has the field (v2+; kafka-protocol refuses to encode it earlier).
/// One partition's offset at `timestamp` (-2 earliest, -1 latest) from its leader
/// (ListOffsets); shared with the admin client.
pub(crate) async fn list_offset(
    network: &Network,
    tp: &TopicPartition,
    timestamp: i64,
    isolation: IsolationLevel,
) -> Result<i64, Error> {
    let addr = network.leader_addr(&tp.topic, tp.partition).await?;
    let response = network
        .call(&addr, LIST_OFFSETS_VERSIONS, Duration::ZERO, |version| {
            list_offsets_request(version, tp, timestamp, isolation.wire())
        })
        .await?;
    let answer = response
        .topics
        .iter()
        .filter(|t| t.name.0.as_str() == tp.topic)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == tp.partition)
        .ok_or_else(|| Error::kafka(13, format!("ListOffsets left out {tp}")))?;
    crate::error::check(answer.error_code, None, &format!("ListOffsets {tp}"))?;
    Ok(answer.offset)
}

fn list_offsets_request(
    version: i16,
    tp: &TopicPartition,
    timestamp: i64,
    isolation: i8,
) -> ListOffsetsRequest {
    let partition = ListOffsetsPartition::default()
        .with_partition_index(tp.partition)
        .with_timestamp(timestamp);
    let topic = ListOffsetsTopic::default()
        .with_name(TopicName(StrBytes::from_string(tp.topic.clone())))
        .with_partitions(vec![partition]);
    let request = ListOffsetsRequest::default().with_topics(vec![topic]);
    if version >= 2 {
        request.with_isolation_level(isolation)
    } else {
        request
    }
}

#[cfg(test)]
mod tests;

//! The consumer's side of the classic group protocol: finding the coordinator, joining
//! (JoinGroup with the KIP-394 member-id round trip, the leader's assignment, SyncGroup),
//! background heartbeats, leaving, and offset commits and fetches.
//!
//! **API boundary:** this module knows member ids, generations and the coordinator, never
//! fetch positions or the application's callbacks; `consumer.rs` decides when to join and
//! what to commit. Group traffic has its own `Network`, so a heartbeat never queues behind a
//! long fetch on the same connection.
//!
//! The heartbeat task only *notes* that the member must rejoin (`rejoin_needed`); the
//! consumer rejoins in its next `poll`, so callbacks run on the application's task.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use brook_core::ErrorCode;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::assignor::{self, Assignor, MemberSubscription};
use crate::error::{check, Error};
use crate::network::{Network, NetworkConfig};
use crate::TopicPartition;

pub(crate) const FIND_COORDINATOR_VERSIONS: (i16, i16) = (0, 4);
/// JoinGroup v1 is the first with a rebalance timeout.
const JOIN_GROUP_VERSIONS: (i16, i16) = (1, 9);
const SYNC_GROUP_VERSIONS: (i16, i16) = (0, 5);
const HEARTBEAT_VERSIONS: (i16, i16) = (0, 4);
const LEAVE_GROUP_VERSIONS: (i16, i16) = (0, 5);
/// OffsetCommit v2 is the oldest Kafka 4 serves; v9 only adds KIP-848 member epochs.
pub(crate) const OFFSET_COMMIT_VERSIONS: (i16, i16) = (2, 8);
/// OffsetFetch v1 is the oldest Kafka 4 serves; v8 switches to batched groups.
pub(crate) const OFFSET_FETCH_VERSIONS: (i16, i16) = (1, 7);
/// The protocol type of every consumer group.
pub(crate) const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
/// How many JoinGroup/SyncGroup rounds one join may take before giving up.
const JOIN_ROUNDS_MAX: u32 = 50;
/// How many times an OffsetFetch retries retriable failures.
const OFFSET_FETCH_ATTEMPTS_MAX: u32 = 20;
/// The pause before retrying after a retriable group error.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// The group settings of a consumer, validated by `ConsumerConfig`.
#[derive(Clone, Debug)]
pub(crate) struct GroupSettings {
    /// `group.id`.
    pub group_id: String,
    /// How long the coordinator waits for a heartbeat before evicting the member.
    pub session_timeout_ms: u64,
    /// How long the coordinator waits for members to rejoin; also the longest gap between
    /// polls before this member leaves on its own (`max.poll.interval.ms`).
    pub rebalance_timeout_ms: u64,
    /// The gap between heartbeats.
    pub heartbeat_interval_ms: u64,
    /// The assignors offered in JoinGroup, preferred first.
    pub assignors: Vec<Assignor>,
}

/// Where the member stands in the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not a member of a generation (never joined, left, or evicted).
    Unjoined,
    /// A JoinGroup/SyncGroup round is under way.
    Joining,
    /// Member of generation `generation_id` with an assignment.
    Stable,
}

/// What the consumer and its heartbeat task share.
#[derive(Debug)]
struct MemberState {
    /// Empty until the coordinator hands one out.
    member_id: String,
    /// -1 outside a generation.
    generation_id: i32,
    phase: Phase,
    /// The coordinator's HOST:PORT once found.
    coordinator: Option<String>,
    /// Set when the coordinator says a rebalance began; cleared by the next join.
    rejoin_needed: bool,
    /// When the application last polled, for `max.poll.interval.ms`.
    last_poll: Instant,
}

impl MemberState {
    /// Forgets the generation, and the member id too when the coordinator no longer knows it.
    fn become_unjoined(&mut self, forget_member_id: bool) {
        self.phase = Phase::Unjoined;
        self.generation_id = -1;
        if forget_member_id {
            self.member_id.clear();
        }
        self.rejoin_needed = true;
    }
}

/// A consumer's handle on its group; clones share the state (the heartbeat task holds one).
#[derive(Clone, Debug)]
pub(crate) struct GroupClient {
    settings: Arc<GroupSettings>,
    network: Arc<Network>,
    state: Arc<Mutex<MemberState>>,
}

impl GroupClient {
    /// A client of group `settings.group_id` that has not contacted anyone yet.
    pub fn new(settings: GroupSettings, network: NetworkConfig) -> GroupClient {
        assert!(!settings.group_id.is_empty(), "validated by ConsumerConfig");
        assert!(
            !settings.assignors.is_empty(),
            "validated by ConsumerConfig"
        );
        GroupClient {
            settings: Arc::new(settings),
            network: Arc::new(Network::new(network)),
            state: Arc::new(Mutex::new(MemberState {
                member_id: String::new(),
                generation_id: -1,
                phase: Phase::Unjoined,
                coordinator: None,
                rejoin_needed: false,
                last_poll: Instant::now(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemberState> {
        self.state.lock().expect("group state lock")
    }

    /// Whether the member must (re)join before it may fetch: never joined, evicted, or a
    /// rebalance began.
    pub fn needs_join(&self) -> bool {
        let state = self.lock();
        state.phase != Phase::Stable || state.rejoin_needed
    }

    /// Makes the next poll rejoin (a new subscription, or a failed join's aftermath).
    pub fn request_rejoin(&self) {
        self.lock().rejoin_needed = true;
    }

    /// The member id and generation.
    #[cfg(test)]
    pub fn member(&self) -> (String, i32) {
        let state = self.lock();
        (state.member_id.clone(), state.generation_id)
    }

    /// Records that the application polled (the `max.poll.interval.ms` clock).
    pub fn on_poll(&self) {
        self.lock().last_poll = Instant::now();
    }

    /// The coordinator's address, asking FindCoordinator if it is not known.
    async fn coordinator(&self) -> Result<String, Error> {
        if let Some(addr) = self.lock().coordinator.clone() {
            return Ok(addr);
        }
        let addr = find_coordinator(&self.network, &self.settings.group_id).await?;
        self.lock().coordinator = Some(addr.clone());
        Ok(addr)
    }

    /// Sends a request to the coordinator; a lost connection forgets the coordinator.
    async fn call<R: Request>(
        &self,
        versions: (i16, i16),
        extra: Duration,
        build: impl FnOnce(i16) -> R,
    ) -> Result<R::Response, Error> {
        let addr = self.coordinator().await?;
        let result = self.network.call(&addr, versions, extra, build).await;
        if let Err(Error::Connection { .. } | Error::Timeout(_)) = &result {
            self.lock().coordinator = None;
        }
        result
    }

    /// Applies a group error's consequences to the member state; returns whether trying
    /// again may succeed.
    fn on_group_error(&self, err: &Error) -> bool {
        let mut state = self.lock();
        match err.code() {
            ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::NetworkException
            | ErrorCode::RequestTimedOut => {
                state.coordinator = None;
                true
            }
            ErrorCode::UnknownMemberId | ErrorCode::FencedInstanceId => {
                state.become_unjoined(true);
                true
            }
            ErrorCode::IllegalGeneration => {
                state.become_unjoined(false);
                true
            }
            ErrorCode::MemberIdRequired | ErrorCode::RebalanceInProgress => true,
            _ => err.is_retriable(),
        }
    }

    /// Joins the group subscribed to `topics`, owning `owned` (empty under the eager
    /// protocol, where the caller revoked everything first), and returns this member's
    /// assignment. `metadata` answers the leader's partition counts.
    pub async fn join(
        &self,
        topics: &[String],
        owned: &[TopicPartition],
        metadata: &Network,
    ) -> Result<Vec<TopicPartition>, Error> {
        assert!(!topics.is_empty(), "subscribe refuses an empty topic list");
        self.lock().phase = Phase::Joining;
        let mut last_error = None;
        for _ in 0..JOIN_ROUNDS_MAX {
            match self.join_round(topics, owned, metadata).await {
                Ok(assignment) => {
                    let mut state = self.lock();
                    state.phase = Phase::Stable;
                    state.rejoin_needed = false;
                    state.last_poll = Instant::now();
                    assert!(state.generation_id >= 0, "a generation was joined");
                    return Ok(assignment);
                }
                Err(err) if self.on_group_error(&err) => {
                    self.lock().phase = Phase::Joining;
                    if err.code() != ErrorCode::MemberIdRequired {
                        tokio::time::sleep(RETRY_BACKOFF).await;
                    }
                    last_error = Some(err);
                }
                Err(err) => {
                    self.lock().become_unjoined(false);
                    return Err(err);
                }
            }
        }
        self.lock().become_unjoined(false);
        Err(last_error.expect("at least one round ran"))
    }

    /// One JoinGroup and SyncGroup round.
    async fn join_round(
        &self,
        topics: &[String],
        owned: &[TopicPartition],
        metadata: &Network,
    ) -> Result<Vec<TopicPartition>, Error> {
        let member_id = self.lock().member_id.clone();
        let rebalance_timeout = Duration::from_millis(self.settings.rebalance_timeout_ms);
        let response = self
            .call(JOIN_GROUP_VERSIONS, rebalance_timeout, |version| {
                self.join_request(version, &member_id, topics, owned)
            })
            .await?;
        if response.error_code == ErrorCode::MemberIdRequired as i16 {
            // KIP-394: the coordinator names the member, which joins again under that id.
            self.lock().member_id = response.member_id.to_string();
        }
        check(response.error_code, None, "JoinGroup")?;
        let generation_id = response.generation_id;
        let member_id = response.member_id.to_string();
        {
            let mut state = self.lock();
            state.member_id = member_id.clone();
            state.generation_id = generation_id;
        }
        let protocol = response.protocol_name.as_ref().map(|p| p.to_string());
        let assignments = if response.leader.as_str() == member_id {
            let protocol = protocol.clone().unwrap_or_default();
            self.leader_assignments(&protocol, &response.members, metadata)
                .await?
        } else {
            Vec::new()
        };
        let group_id = self.settings.group_id.clone();
        let sync = self
            .call(SYNC_GROUP_VERSIONS, rebalance_timeout, |version| {
                let request = SyncGroupRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(group_id)))
                    .with_generation_id(generation_id)
                    .with_member_id(StrBytes::from_string(member_id))
                    .with_assignments(assignments);
                if version >= 5 {
                    request
                        .with_protocol_type(Some(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE)))
                        .with_protocol_name(protocol.map(StrBytes::from_string))
                } else {
                    request
                }
            })
            .await?;
        check(sync.error_code, None, "SyncGroup")?;
        assignor::decode_assignment(&sync.assignment)
    }

    fn join_request(
        &self,
        version: i16,
        member_id: &str,
        topics: &[String],
        owned: &[TopicPartition],
    ) -> JoinGroupRequest {
        let metadata = assignor::encode_subscription(topics, owned);
        let protocols = self
            .settings
            .assignors
            .iter()
            .map(|assignor| {
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(assignor.name()))
                    .with_metadata(metadata.clone())
            })
            .collect();
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(
                self.settings.group_id.clone(),
            )))
            .with_session_timeout_ms(clamp_ms(self.settings.session_timeout_ms))
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_protocol_type(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE))
            .with_protocols(protocols);
        assert!(version >= 1, "JoinGroup v1+ carries the rebalance timeout");
        request.with_rebalance_timeout_ms(clamp_ms(self.settings.rebalance_timeout_ms))
    }

    /// The leader's work: every member's assignment by the group's chosen assignor over the
    /// partitions of all subscribed topics.
    async fn leader_assignments(
        &self,
        protocol: &str,
        members: &[JoinGroupResponseMember],
        metadata: &Network,
    ) -> Result<Vec<SyncGroupRequestAssignment>, Error> {
        let assignor = self
            .settings
            .assignors
            .iter()
            .copied()
            .find(|a| a.name() == protocol)
            .ok_or_else(|| {
                Error::Protocol(format!("the group chose unknown assignor {protocol:?}"))
            })?;
        // A member whose subscription does not decode subscribes to nothing: it still gets
        // an (empty) assignment rather than failing the whole group.
        let subscriptions: BTreeMap<String, MemberSubscription> = members
            .iter()
            .map(|m| {
                let subscription = assignor::decode_subscription(&m.metadata).unwrap_or_default();
                (m.member_id.to_string(), subscription)
            })
            .collect();
        let topics: Vec<String> = subscriptions
            .values()
            .flat_map(|s| &s.topics)
            .cloned()
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        let response = metadata.refresh(Some(&topics), false).await?;
        let partition_counts: BTreeMap<String, i32> = response
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| {
                let name = t.name.as_ref()?.0.to_string();
                Some((name, t.partitions.len() as i32))
            })
            .collect();
        let plan = assignor.assign(&subscriptions, &partition_counts);
        Ok(plan
            .into_iter()
            .map(|(member, partitions)| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member))
                    .with_assignment(assignor::encode_assignment(&partitions))
            })
            .collect())
    }

    /// Starts the heartbeat task; it runs until aborted.
    pub fn spawn_heartbeat(&self) -> JoinHandle<()> {
        let client = self.clone();
        tokio::spawn(async move { client.heartbeat_loop().await })
    }

    async fn heartbeat_loop(self) {
        let interval = Duration::from_millis(self.settings.heartbeat_interval_ms);
        let poll_interval_max = Duration::from_millis(self.settings.rebalance_timeout_ms);
        loop {
            tokio::time::sleep(interval).await;
            let (member_id, generation_id, phase, last_poll) = {
                let state = self.lock();
                let member = (state.member_id.clone(), state.generation_id);
                (member.0, member.1, state.phase, state.last_poll)
            };
            if phase != Phase::Stable {
                continue;
            }
            if last_poll.elapsed() > poll_interval_max {
                // The application stopped polling: give the partitions to someone who does.
                let _ = self.leave("max.poll.interval.ms exceeded").await;
                continue;
            }
            let group_id = self.settings.group_id.clone();
            let result = self
                .call(HEARTBEAT_VERSIONS, Duration::ZERO, |_| {
                    HeartbeatRequest::default()
                        .with_group_id(GroupId(StrBytes::from_string(group_id)))
                        .with_generation_id(generation_id)
                        .with_member_id(StrBytes::from_string(member_id))
                })
                .await
                .and_then(|response| check(response.error_code, None, "Heartbeat"));
            if let Err(err) = result {
                self.on_heartbeat_error(generation_id, &err);
            }
        }
    }

    /// A failed heartbeat of generation `generation_id`: rejoin, or find the coordinator.
    fn on_heartbeat_error(&self, generation_id: i32, err: &Error) {
        {
            let state = self.lock();
            if state.phase != Phase::Stable || state.generation_id != generation_id {
                return; // ignore: a newer generation was joined while it was out
            }
        }
        if err.code() == ErrorCode::RebalanceInProgress {
            self.lock().rejoin_needed = true;
            return;
        }
        self.on_group_error(err);
    }

    /// Leaves the group (LeaveGroup) if a member; the state becomes unjoined either way.
    pub async fn leave(&self, reason: &str) -> Result<(), Error> {
        let member_id = {
            let mut state = self.lock();
            let member_id = std::mem::take(&mut state.member_id);
            state.become_unjoined(true);
            state.rejoin_needed = false;
            member_id
        };
        if member_id.is_empty() {
            return Ok(());
        }
        let group_id = self.settings.group_id.clone();
        let response = self
            .call(LEAVE_GROUP_VERSIONS, Duration::ZERO, |version| {
                leave_request(version, &group_id, &member_id, reason)
            })
            .await?;
        check(response.error_code, None, "LeaveGroup")?;
        for member in &response.members {
            check(member.error_code, None, "LeaveGroup")?;
        }
        Ok(())
    }

    /// Commits `offsets` (the next offset to read per partition) as this member, or, unless
    /// `as_member` (a subscribed consumer), as a group-less client (generation -1) when
    /// not in a generation. A subscribed consumer out of its generation must not commit:
    /// its partitions may already be someone else's.
    pub async fn commit(
        &self,
        offsets: &BTreeMap<TopicPartition, i64>,
        as_member: bool,
    ) -> Result<(), Error> {
        if offsets.is_empty() {
            return Ok(());
        }
        let (member_id, generation_id) = {
            let state = self.lock();
            match state.phase {
                Phase::Stable => (state.member_id.clone(), state.generation_id),
                Phase::Unjoined if !as_member && state.member_id.is_empty() => (String::new(), -1),
                _ => {
                    return Err(Error::kafka(
                        ErrorCode::RebalanceInProgress as i16,
                        "commit while the group rebalances",
                    ))
                }
            }
        };
        let group_id = self.settings.group_id.clone();
        let response = self
            .call(OFFSET_COMMIT_VERSIONS, Duration::ZERO, |_| {
                OffsetCommitRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(group_id)))
                    .with_generation_id_or_member_epoch(generation_id)
                    .with_member_id(StrBytes::from_string(member_id))
                    .with_topics(commit_topics(offsets))
            })
            .await;
        let result = response.and_then(|response| {
            for topic in &response.topics {
                for partition in &topic.partitions {
                    let context = format!("commit {}-{}", topic.name.0, partition.partition_index);
                    check(partition.error_code, None, &context)?;
                }
            }
            Ok(())
        });
        if let Err(err) = &result {
            self.on_commit_error(generation_id, err);
        }
        result
    }

    fn on_commit_error(&self, generation_id: i32, err: &Error) {
        if generation_id < 0 || self.lock().generation_id != generation_id {
            return;
        }
        match err.code() {
            ErrorCode::RebalanceInProgress => self.lock().rejoin_needed = true,
            _ => {
                self.on_group_error(err);
            }
        }
    }

    /// The committed offset of each of `partitions`; `None` where nothing is committed.
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, Option<i64>>, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.fetch_offsets(partitions).await {
                Ok(found) => return Ok(found),
                Err(err) if err.is_retriable() && attempt < OFFSET_FETCH_ATTEMPTS_MAX => {
                    self.on_group_error(&err);
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn fetch_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, Option<i64>>, Error> {
        let group_id = &self.settings.group_id;
        let response = self
            .call(OFFSET_FETCH_VERSIONS, Duration::ZERO, |_| {
                offset_fetch_request(group_id, Some(partitions))
            })
            .await?;
        let committed = committed_offsets(&response)?;
        Ok(partitions
            .iter()
            .map(|tp| (tp.clone(), committed.get(tp).copied()))
            .collect())
    }
}

/// What a FindCoordinator key names (the request's `key_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CoordinatorType {
    /// A consumer group: key type 0, the leader of its `__consumer_offsets` partition.
    Group,
    /// A transactional id: key type 1 (FindCoordinator v1+), the leader of its
    /// `__transaction_state` partition.
    Transaction,
}

impl CoordinatorType {
    /// The protocol's `key_type`.
    fn key_type(self) -> i8 {
        match self {
            CoordinatorType::Group => 0,
            CoordinatorType::Transaction => 1,
        }
    }

    /// The FindCoordinator versions that can ask for this type (v0 knows only groups).
    fn versions(self) -> (i16, i16) {
        match self {
            CoordinatorType::Group => FIND_COORDINATOR_VERSIONS,
            CoordinatorType::Transaction => (1, FIND_COORDINATOR_VERSIONS.1),
        }
    }

    /// How error messages name a key of this type ("group g", "transactional id t").
    pub(crate) fn noun(self) -> &'static str {
        match self {
            CoordinatorType::Group => "group",
            CoordinatorType::Transaction => "transactional id",
        }
    }
}

/// A coordinator as FindCoordinator names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Coordinator {
    /// Its node id.
    pub node_id: i32,
    /// Its HOST:PORT.
    pub addr: String,
}

/// The HOST:PORT of `group`'s coordinator, asked of any broker (FindCoordinator). Shared by
/// group members and the admin client.
pub(crate) async fn find_coordinator(network: &Network, group: &str) -> Result<String, Error> {
    let coordinator = find_coordinator_of(network, CoordinatorType::Group, group).await?;
    Ok(coordinator.addr)
}

/// The coordinator of `key`, a group id or a transactional id as `kind` says, asked of any
/// broker (FindCoordinator). Group members and every admin call that goes to a coordinator
/// find it here.
pub(crate) async fn find_coordinator_of(
    network: &Network,
    kind: CoordinatorType,
    key: &str,
) -> Result<Coordinator, Error> {
    let response = network
        .call_any(kind.versions(), |version| {
            find_coordinator_request(version, kind, key)
        })
        .await?;
    coordinator_of(&response)
}

/// An OffsetFetch request (v1–7 layout) of `group`'s committed offsets of `partitions`, or
/// of every partition it has committed when `None` (v2+).
pub(crate) fn offset_fetch_request(
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> OffsetFetchRequest {
    let topics = partitions.map(|partitions| {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        by_topic
            .into_iter()
            .map(|(name, indexes)| {
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partition_indexes(indexes)
            })
            .collect()
    });
    OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(topics)
}

/// The committed offsets in an OffsetFetch answer; partitions without one (offset -1) are
/// left out. The first group or partition error fails the whole answer.
pub(crate) fn committed_offsets(
    response: &OffsetFetchResponse,
) -> Result<BTreeMap<TopicPartition, i64>, Error> {
    check(response.error_code, None, "OffsetFetch")?;
    let mut found = BTreeMap::new();
    for topic in &response.topics {
        for partition in &topic.partitions {
            let tp = TopicPartition::new(topic.name.0.as_str(), partition.partition_index);
            check(partition.error_code, None, &format!("OffsetFetch {tp}"))?;
            if partition.committed_offset >= 0 {
                found.insert(tp, partition.committed_offset);
            }
        }
    }
    Ok(found)
}

/// A FindCoordinator request for one key of type `kind`: one key (v0–3) or a batch of one
/// (v4+); the key type from v1 (v0 asks only for groups).
fn find_coordinator_request(
    version: i16,
    kind: CoordinatorType,
    key: &str,
) -> FindCoordinatorRequest {
    assert!(
        version >= 1 || kind == CoordinatorType::Group,
        "FindCoordinator v0 has no key type"
    );
    let key = StrBytes::from_string(key.to_string());
    let request = if version >= 4 {
        FindCoordinatorRequest::default().with_coordinator_keys(vec![key])
    } else {
        FindCoordinatorRequest::default().with_key(key)
    };
    request.with_key_type(kind.key_type())
}

/// The coordinator from either FindCoordinator layout.
fn coordinator_of(response: &FindCoordinatorResponse) -> Result<Coordinator, Error> {
    let (node_id, host, port) = if let Some(coordinator) = response.coordinators.first() {
        let message = coordinator.error_message.as_deref();
        check(coordinator.error_code, message, "FindCoordinator")?;
        (coordinator.node_id.0, &coordinator.host, coordinator.port)
    } else {
        let message = response.error_message.as_deref();
        check(response.error_code, message, "FindCoordinator")?;
        (response.node_id.0, &response.host, response.port)
    };
    if host.is_empty() {
        return Err(Error::kafka(
            ErrorCode::CoordinatorNotAvailable as i16,
            "FindCoordinator named no host",
        ));
    }
    Ok(Coordinator {
        node_id,
        addr: format!("{host}:{port}"),
    })
}

/// A LeaveGroup request for one member: by member id (v0–2) or as a batch of one (v3+).
fn leave_request(version: i16, group: &str, member_id: &str, reason: &str) -> LeaveGroupRequest {
    let request =
        LeaveGroupRequest::default().with_group_id(GroupId(StrBytes::from_string(group.into())));
    if version >= 3 {
        let mut member =
            MemberIdentity::default().with_member_id(StrBytes::from_string(member_id.into()));
        if version >= 5 {
            member = member.with_reason(Some(StrBytes::from_string(reason.into())));
        }
        request.with_members(vec![member])
    } else {
        request.with_member_id(StrBytes::from_string(member_id.into()))
    }
}

pub(crate) fn commit_topics(
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Vec<OffsetCommitRequestTopic> {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (tp, &offset) in offsets {
        topics.entry(&tp.topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(tp.partition)
                .with_committed_offset(offset),
        );
    }
    topics
        .into_iter()
        .map(|(name, partitions)| {
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                .with_partitions(partitions)
        })
        .collect()
}

/// Milliseconds as the protocol's i32, saturating.
fn clamp_ms(ms: u64) -> i32 {
    i32::try_from(ms).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    fn encodes<R: Encodable>(request: &R, version: i16) {
        let mut buf = bytes::BytesMut::new();
        request
            .encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("v{version}: {e}"));
    }

    fn client() -> GroupClient {
        let settings = GroupSettings {
            group_id: "g".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 20_000,
            heartbeat_interval_ms: 1_000,
            assignors: vec![Assignor::Range, Assignor::RoundRobin],
        };
        GroupClient::new(
            settings,
            NetworkConfig::new("b:1", "c", 1000).expect("valid"),
        )
    }

    #[test]
    fn group_requests_encode_in_every_version_used() {
        for kind in [CoordinatorType::Group, CoordinatorType::Transaction] {
            let (min, max) = kind.versions();
            for version in min..=max {
                encodes(&find_coordinator_request(version, kind, "g"), version);
            }
        }
        let client = client();
        let topics = ["t".to_string()];
        for version in JOIN_GROUP_VERSIONS.0..=JOIN_GROUP_VERSIONS.1 {
            let owned = [TopicPartition::new("t", 0)];
            encodes(&client.join_request(version, "m", &topics, &owned), version);
        }
        for version in LEAVE_GROUP_VERSIONS.0..=LEAVE_GROUP_VERSIONS.1 {
            encodes(&leave_request(version, "g", "m", "bye"), version);
        }
        let offsets = BTreeMap::from([(TopicPartition::new("t", 0), 5)]);
        let commit = OffsetCommitRequest::default()
            .with_generation_id_or_member_epoch(3)
            .with_member_id(StrBytes::from_static_str("m"))
            .with_topics(commit_topics(&offsets));
        for version in OFFSET_COMMIT_VERSIONS.0..=OFFSET_COMMIT_VERSIONS.1 {
            encodes(&commit, version);
        }
    }

    /// FindCoordinator names the coordinator in top-level fields up to v3 and in a batch
    /// from v4; either gives its node id and address, and an answer without a host is
    /// COORDINATOR_NOT_AVAILABLE.
    #[test]
    fn find_coordinator_answers_name_the_node_in_either_layout() {
        use kafka_protocol::messages::find_coordinator_response::Coordinator as Named;
        use kafka_protocol::messages::BrokerId;
        let host = StrBytes::from_static_str("h");
        let flat = FindCoordinatorResponse::default()
            .with_node_id(BrokerId(2))
            .with_host(host.clone())
            .with_port(9);
        let batched = FindCoordinatorResponse::default().with_coordinators(vec![Named::default()
            .with_node_id(BrokerId(3))
            .with_host(host)
            .with_port(8)]);
        let found = |response| coordinator_of(&response).expect("named");
        assert_eq!(found(flat).node_id, 2);
        let coordinator = found(batched);
        assert_eq!((coordinator.node_id, coordinator.addr.as_str()), (3, "h:8"));
        let nobody = coordinator_of(&FindCoordinatorResponse::default()).unwrap_err();
        assert_eq!(nobody.code(), ErrorCode::CoordinatorNotAvailable);
    }

    #[test]
    fn heartbeat_errors_of_an_old_generation_are_ignored() {
        let client = client();
        {
            let mut state = client.lock();
            state.phase = Phase::Stable;
            state.generation_id = 4;
            state.member_id = "m".into();
        }
        assert!(!client.needs_join());
        client.on_heartbeat_error(3, &Error::kafka(25, "stale"));
        assert!(!client.needs_join(), "a stale answer changes nothing");
        client.on_heartbeat_error(4, &Error::kafka(27, "rebalance"));
        assert!(client.needs_join());
        assert_eq!(client.member(), ("m".to_string(), 4), "kept for the rejoin");
        client.on_heartbeat_error(4, &Error::kafka(25, "unknown member"));
        assert_eq!(client.member(), (String::new(), -1));
    }
}

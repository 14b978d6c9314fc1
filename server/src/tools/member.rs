//! Consumer-group membership for `brook consume --group`, and the group requests the
//! `brook groups` tool shares with it (FindCoordinator, OffsetFetch, OffsetCommit).
//!
//! A [`GroupMember`] joins with protocol type "consumer" and the range assignor; when it is
//! the leader it computes every member's assignment and sends it in SyncGroup. Heartbeats go
//! out from a background thread on a second connection, so a long Fetch never starves them;
//! when the coordinator answers that the generation is over, the thread raises a flag that
//! the fetch loop reads with [`GroupMember::needs_rejoin`] (commit, then [`GroupMember::join`]
//! again — the eager protocol). Call order: `new`, `join`, then per loop `needs_rejoin` /
//! `commit`, finally `leave` (dropping stops the heartbeat thread without leaving).
//!
//! Gap: every request goes to the bootstrap broker; the coordinator's address from
//! FindCoordinator is not followed (right for one node).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
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
    FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::assignor::{self, Assignment, PROTOCOL_TYPE, RANGE};
use super::client::Client;
use super::topics::topic_name;
use super::ToolError;

/// Most JoinGroup/SyncGroup round trips one [`GroupMember::join`] makes before giving up.
pub const JOIN_ATTEMPTS_MAX: u32 = 50;
/// Offsets keyed by (topic, partition).
pub type Offsets = BTreeMap<(String, i32), i64>;

/// How a member joins and how often it heartbeats.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// The group id.
    pub group: String,
    /// Topics subscribed to.
    pub topics: Vec<String>,
    /// The coordinator expels a member silent for this long.
    pub session_timeout_ms: i32,
    /// How long the coordinator waits for every member to rejoin; below the client's
    /// request timeout, since JoinGroup is answered only when the rebalance completes.
    pub rebalance_timeout_ms: i32,
    /// Time between heartbeats (Kafka's rule of thumb: a third of the session or less).
    pub heartbeat_interval_ms: u64,
}

/// What the heartbeat thread and the fetch loop share.
#[derive(Debug, Default)]
struct Heartbeat {
    member_id: String,
    generation: i32,
    /// Heartbeats are due: between a completed SyncGroup and the next JoinGroup.
    active: bool,
    /// The coordinator said this generation is over.
    rejoin: bool,
    /// Set by `Drop`/`leave`: the thread returns.
    stop: bool,
    /// The heartbeat connection broke; the member cannot stay in the group.
    failure: Option<String>,
}

/// The request versions a member speaks, negotiated once.
#[derive(Debug, Clone, Copy)]
struct Versions {
    join: i16,
    sync: i16,
    leave: i16,
    commit: i16,
    fetch_offsets: i16,
}

/// One consumer's membership of a classic group.
pub struct GroupMember {
    config: MemberConfig,
    versions: Versions,
    member_id: String,
    generation: i32,
    shared: Arc<(Mutex<Heartbeat>, Condvar)>,
    heartbeat: Option<JoinHandle<()>>,
}

impl GroupMember {
    /// Finds the coordinator, negotiates versions and starts the heartbeat thread (idle until
    /// the first [`GroupMember::join`]).
    pub fn new(client: &mut Client, config: MemberConfig) -> Result<GroupMember, ToolError> {
        find_coordinator(client, &config.group)?;
        let versions = Versions {
            join: client.version::<JoinGroupRequest>(1, 9)?,
            sync: client.version::<SyncGroupRequest>(0, 5)?,
            leave: client.version::<LeaveGroupRequest>(0, 5)?,
            commit: client.version::<OffsetCommitRequest>(2, 8)?,
            fetch_offsets: client.version::<OffsetFetchRequest>(2, 7)?,
        };
        let heartbeat_version = client.version::<HeartbeatRequest>(0, 4)?;
        let heartbeat_client = Client::connect(client.addr())?;
        let shared = Arc::new((Mutex::new(Heartbeat::default()), Condvar::new()));
        let thread_shared = Arc::clone(&shared);
        let group = config.group.clone();
        let interval = Duration::from_millis(config.heartbeat_interval_ms);
        let heartbeat = std::thread::Builder::new()
            .name("heartbeat".to_string())
            .spawn(move || {
                heartbeat_loop(
                    heartbeat_client,
                    heartbeat_version,
                    &group,
                    interval,
                    &thread_shared,
                )
            })
            .map_err(|source| ToolError::Io {
                what: "cannot start the heartbeat thread",
                source,
            })?;
        Ok(GroupMember {
            config,
            versions,
            member_id: String::new(),
            generation: -1,
            shared,
            heartbeat: Some(heartbeat),
        })
    }

    /// The member id the coordinator gave (empty before the first join).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The current generation (-1 before the first join).
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Joins (or rejoins) the group and returns this member's assignment. Blocks until the
    /// rebalance completes; retries the coordinator's "try again" answers.
    pub fn join(&mut self, client: &mut Client) -> Result<Assignment, ToolError> {
        self.update_shared(|state| {
            state.active = false;
            state.rejoin = false;
        });
        let group = self.config.group.clone();
        for _ in 0..JOIN_ATTEMPTS_MAX {
            let request = JoinGroupRequest::default()
                .with_group_id(group_id(&group))
                .with_session_timeout_ms(self.config.session_timeout_ms)
                .with_rebalance_timeout_ms(self.config.rebalance_timeout_ms)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(RANGE))
                    .with_metadata(assignor::encode_subscription(&self.config.topics))]);
            let joined = client.call(self.versions.join, &request)?;
            match ErrorCode::from_code(joined.error_code) {
                ErrorCode::None => {}
                ErrorCode::MemberIdRequired => {
                    self.member_id = joined.member_id.to_string();
                    continue;
                }
                ErrorCode::UnknownMemberId => {
                    self.member_id.clear();
                    continue;
                }
                ErrorCode::RebalanceInProgress => continue,
                code => return Err(broker_error(format!("join group {group}"), code)),
            }
            self.member_id = joined.member_id.to_string();
            self.generation = joined.generation_id;
            let assignments = if joined.leader == joined.member_id {
                self.assign(client, &joined.members)?
            } else {
                Vec::new()
            };
            if let Some(assignment) = self.sync(client, assignments)? {
                return Ok(assignment);
            }
        }
        Err(ToolError::Corrupt(format!(
            "group {group}: no stable assignment after {JOIN_ATTEMPTS_MAX} join attempts"
        )))
    }

    /// SyncGroup for the generation just joined (the leader sends `assignments`); `None`
    /// when the generation is already over and the member must join again.
    fn sync(
        &mut self,
        client: &mut Client,
        assignments: Vec<SyncGroupRequestAssignment>,
    ) -> Result<Option<Assignment>, ToolError> {
        let group = self.config.group.clone();
        let request = SyncGroupRequest::default()
            .with_group_id(group_id(&group))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
            .with_protocol_name(Some(StrBytes::from_static_str(RANGE)))
            .with_assignments(assignments);
        let synced = client.call(self.versions.sync, &request)?;
        match ErrorCode::from_code(synced.error_code) {
            ErrorCode::None => {}
            ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration => return Ok(None),
            ErrorCode::UnknownMemberId => {
                self.member_id.clear();
                return Ok(None);
            }
            code => return Err(broker_error(format!("sync group {group}"), code)),
        }
        let assignment = assignor::decode_assignment(&synced.assignment)
            .map_err(|err| ToolError::Corrupt(format!("group {group}: {err}")))?;
        let (member_id, generation) = (self.member_id.clone(), self.generation);
        self.update_shared(|state| {
            state.member_id = member_id;
            state.generation = generation;
            state.active = true;
            state.rejoin = false;
        });
        Ok(Some(assignment))
    }

    /// Whether the coordinator ended this generation (time to commit and rejoin); an error
    /// if the heartbeat connection failed.
    pub fn needs_rejoin(&self) -> Result<bool, ToolError> {
        let state = self.shared.0.lock().expect("heartbeat state lock");
        if let Some(failure) = &state.failure {
            return Err(ToolError::Corrupt(failure.clone()));
        }
        Ok(state.rejoin)
    }

    /// The committed offsets of this member's partitions (partitions without one are absent).
    pub fn committed(
        &self,
        client: &mut Client,
        assignment: &Assignment,
    ) -> Result<Offsets, ToolError> {
        fetch_committed(
            client,
            self.versions.fetch_offsets,
            &self.config.group,
            Some(assignment),
        )
    }

    /// Commits `offsets` for this generation. `Ok(false)` when the coordinator refused them
    /// because the generation is over (the member must rejoin; the flag is raised).
    pub fn commit(&mut self, client: &mut Client, offsets: &Offsets) -> Result<bool, ToolError> {
        if offsets.is_empty() {
            return Ok(true);
        }
        let failed = commit_offsets(
            client,
            self.versions.commit,
            &self.config.group,
            (self.generation, &self.member_id),
            offsets,
        )?;
        let Some((topic, partition, code)) = failed.into_iter().next() else {
            return Ok(true);
        };
        match code {
            ErrorCode::RebalanceInProgress
            | ErrorCode::IllegalGeneration
            | ErrorCode::UnknownMemberId => {
                self.update_shared(|state| state.rejoin = true);
                Ok(false)
            }
            code => Err(broker_error(
                format!("commit offsets of {topic}-{partition}"),
                code,
            )),
        }
    }

    /// Leaves the group (so the others rebalance at once) and stops the heartbeat thread.
    pub fn leave(mut self, client: &mut Client) -> Result<(), ToolError> {
        self.stop_heartbeat();
        if self.member_id.is_empty() {
            return Ok(());
        }
        let member_id = StrBytes::from_string(self.member_id.clone());
        let mut request = LeaveGroupRequest::default().with_group_id(group_id(&self.config.group));
        if self.versions.leave >= 3 {
            request = request.with_members(vec![MemberIdentity::default()
                .with_member_id(member_id)
                .with_reason(Some(StrBytes::from_static_str("the consumer is closing")))]);
        } else {
            request = request.with_member_id(member_id);
        }
        let response = client.call(self.versions.leave, &request)?;
        let what = || format!("leave group {}", self.config.group);
        ToolError::check(what, response.error_code, None)?;
        for member in &response.members {
            // The member is gone either way when the coordinator no longer knows it.
            if member.error_code != ErrorCode::UnknownMemberId as i16 {
                ToolError::check(what, member.error_code, None)?;
            }
        }
        Ok(())
    }

    /// As leader: decodes every member's subscription and assigns the partitions by range.
    fn assign(
        &self,
        client: &mut Client,
        members: &[JoinGroupResponseMember],
    ) -> Result<Vec<SyncGroupRequestAssignment>, ToolError> {
        let mut subscriptions = BTreeMap::new();
        for member in members {
            let topics = assignor::decode_subscription(&member.metadata).map_err(|err| {
                ToolError::Corrupt(format!("member {}: {err}", member.member_id.as_str()))
            })?;
            subscriptions.insert(member.member_id.to_string(), topics);
        }
        let topics: BTreeSet<&str> = subscriptions
            .values()
            .flatten()
            .map(|t| t.as_str())
            .collect();
        let topics: Vec<&str> = topics.into_iter().collect();
        let metadata = super::metadata(client, Some(&topics), false)?;
        let counts: BTreeMap<String, i32> = metadata
            .topics
            .iter()
            .filter(|topic| topic.error_code == 0)
            .filter_map(|topic| {
                let name = topic.name.as_ref()?.0.to_string();
                Some((name, topic.partitions.len() as i32))
            })
            .collect();
        Ok(assignor::assign_range(&subscriptions, &counts)
            .into_iter()
            .map(|(member, assignment)| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member))
                    .with_assignment(assignor::encode_assignment(&assignment))
            })
            .collect())
    }

    fn update_shared(&self, change: impl FnOnce(&mut Heartbeat)) {
        let mut state = self.shared.0.lock().expect("heartbeat state lock");
        change(&mut state);
    }

    fn stop_heartbeat(&mut self) {
        self.update_shared(|state| state.stop = true);
        self.shared.1.notify_all();
        if let Some(thread) = self.heartbeat.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

/// The heartbeat thread: one Heartbeat per interval while a generation is active.
fn heartbeat_loop(
    mut client: Client,
    version: i16,
    group: &str,
    interval: Duration,
    shared: &(Mutex<Heartbeat>, Condvar),
) {
    let (lock, wake) = shared;
    loop {
        let (member_id, generation) = {
            let state = lock.lock().expect("heartbeat state lock");
            let (state, _) = wake
                .wait_timeout_while(state, interval, |state| !state.stop)
                .expect("heartbeat state lock");
            if state.stop {
                return;
            }
            if !state.active || state.rejoin {
                continue;
            }
            (state.member_id.clone(), state.generation)
        };
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id));
        let answer = client.call(version, &request);
        let mut state = lock.lock().expect("heartbeat state lock");
        let current = state.active && state.generation == generation;
        match answer {
            Ok(response) => match ErrorCode::from_code(response.error_code) {
                ErrorCode::None => {}
                ErrorCode::RebalanceInProgress
                | ErrorCode::IllegalGeneration
                | ErrorCode::UnknownMemberId
                | ErrorCode::FencedInstanceId => {
                    if current {
                        state.rejoin = true;
                    }
                }
                code => eprintln!("warning: heartbeat of group {group}: {code}"),
            },
            Err(err) => {
                state.failure = Some(format!("heartbeat of group {group}: {err}"));
                return;
            }
        }
    }
}

/// A [`ToolError::Broker`] for `code`.
pub fn broker_error(what: String, code: ErrorCode) -> ToolError {
    ToolError::Broker {
        what,
        code,
        message: None,
    }
}

/// A group id for a request.
pub fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}

/// Asks FindCoordinator for `group`; an error unless the broker can coordinate it.
pub fn find_coordinator(client: &mut Client, group: &str) -> Result<(), ToolError> {
    let version = client.version::<FindCoordinatorRequest>(0, 3)?;
    let request =
        FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
    let response = client.call(version, &request)?;
    ToolError::check(
        || format!("find the coordinator of group {group}"),
        response.error_code,
        response.error_message.as_ref(),
    )
}

/// OffsetFetch (v2–7) of `group`: the committed offsets of `partitions`, or of every
/// partition when `None`. Partitions without a committed offset are absent.
pub fn fetch_committed(
    client: &mut Client,
    version: i16,
    group: &str,
    partitions: Option<&Assignment>,
) -> Result<Offsets, ToolError> {
    let topics = partitions.map(|assignment| {
        assignment
            .iter()
            .map(|(topic, indexes)| {
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partition_indexes(indexes.clone())
            })
            .collect()
    });
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(topics);
    let response = client.call(version, &request)?;
    ToolError::check(
        || format!("fetch the offsets of group {group}"),
        response.error_code,
        None,
    )?;
    let mut offsets = Offsets::new();
    for topic in &response.topics {
        for partition in &topic.partitions {
            let name = topic.name.0.as_str();
            ToolError::check(
                || format!("fetch the offset of {name}-{}", partition.partition_index),
                partition.error_code,
                None,
            )?;
            if partition.committed_offset >= 0 {
                offsets.insert(
                    (name.to_string(), partition.partition_index),
                    partition.committed_offset,
                );
            }
        }
    }
    Ok(offsets)
}

/// OffsetCommit (v2–8) of `offsets` as `(generation, member id)` — `(-1, "")` for a client
/// outside the group. Returns the partitions the broker refused, with their codes.
pub fn commit_offsets(
    client: &mut Client,
    version: i16,
    group: &str,
    (generation, member_id): (i32, &str),
    offsets: &Offsets,
) -> Result<Vec<(String, i32, ErrorCode)>, ToolError> {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((topic, partition), &offset) in offsets {
        topics.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1),
        );
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_retention_time_ms(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let response = client.call(version, &request)?;
    let mut failed = Vec::new();
    let mut answered = 0;
    for topic in &response.topics {
        for partition in &topic.partitions {
            answered += 1;
            if partition.error_code != 0 {
                failed.push((
                    topic.name.0.to_string(),
                    partition.partition_index,
                    ErrorCode::from_code(partition.error_code),
                ));
            }
        }
    }
    if answered != offsets.len() {
        return Err(ToolError::Corrupt(format!(
            "OffsetCommit answered {answered} of {} partitions",
            offsets.len()
        )));
    }
    Ok(failed)
}

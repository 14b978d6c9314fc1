//! Membership: JoinGroup, SyncGroup, Heartbeat, LeaveGroup and the rebalance they drive.

use bytes::Bytes;

use super::{Group, GroupCoordinator, GroupState, Member, Outbox, ParkId};
use crate::error::ErrorCode;
use crate::types::Millis;

/// An answer now, or later from [`GroupCoordinator::poll_completed`].
#[derive(Debug)]
pub enum Answer<T> {
    /// The answer.
    Now(T),
    /// The request waits; its answer comes out of `poll_completed` with this id.
    Parked(ParkId),
}

/// The answer of a parked request.
#[derive(Debug)]
pub enum Completion {
    /// A JoinGroup's answer.
    Join(JoinResponse),
    /// A SyncGroup's answer.
    Sync(SyncResponse),
}

/// A JoinGroup, version-independent.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    /// The group.
    pub group_id: String,
    /// The member's id; empty for a member joining the first time.
    pub member_id: String,
    /// KIP-345 static membership id.
    pub group_instance_id: Option<String>,
    /// The client's id (prefix of new member ids).
    pub client_id: String,
    /// The client's host, as DescribeGroups shows it.
    pub client_host: String,
    /// How long the member may stay silent.
    pub session_timeout_ms: i32,
    /// How long the rebalance waits for the member to rejoin.
    pub rebalance_timeout_ms: i32,
    /// `consumer`, `connect`, ...
    pub protocol_type: String,
    /// (protocol name, metadata) in order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394 (JoinGroup v4+): a new member first gets its id with MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// One member as the leader sees it in its JoinGroup answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedMember {
    /// The member id.
    pub member_id: String,
    /// Its static id, if any.
    pub group_instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A JoinGroup answer, version-independent.
#[derive(Clone, Debug)]
pub struct JoinResponse {
    /// The error, `None` on success.
    pub error: ErrorCode,
    /// The generation joined, -1 on error.
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// The member's (possibly new) id.
    pub member_id: String,
    /// Every member with its metadata, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    /// An error answer that tells the member its id (empty if none).
    pub fn error(error: ErrorCode, member_id: &str) -> JoinResponse {
        JoinResponse {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup, version-independent.
#[derive(Clone, Debug)]
pub struct SyncRequest {
    /// The group.
    pub group_id: String,
    /// The member's id.
    pub member_id: String,
    /// KIP-345 static membership id.
    pub group_instance_id: Option<String>,
    /// The generation the member joined.
    pub generation_id: i32,
    /// v5: the protocol type the member believes in.
    pub protocol_type: Option<String>,
    /// v5: the protocol the member believes in.
    pub protocol_name: Option<String>,
    /// The leader's assignment: member id → assignment bytes.
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Clone, Debug)]
pub struct SyncResponse {
    /// The error, `None` on success.
    pub error: ErrorCode,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The group's protocol.
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

impl SyncResponse {
    /// An error answer.
    pub fn error(error: ErrorCode) -> SyncResponse {
        SyncResponse {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// One member named by LeaveGroup (and static-membership checks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberIdentity {
    /// The member id (may be empty for a static member named by instance id).
    pub member_id: String,
    /// The static id, if any.
    pub group_instance_id: Option<String>,
}

impl GroupCoordinator {
    /// JoinGroup: admits or rejoins a member; usually parks until the rebalance completes.
    pub fn handle_join(&mut self, now: Millis, request: JoinRequest) -> Answer<JoinResponse> {
        let answer = self.join(now, request);
        self.check_invariants();
        answer
    }

    fn join(&mut self, now: Millis, request: JoinRequest) -> Answer<JoinResponse> {
        let reject = |code: ErrorCode| Answer::Now(JoinResponse::error(code, &request.member_id));
        if request.group_id.is_empty() {
            return reject(ErrorCode::InvalidGroupId);
        }
        let timeouts = self.config.session_timeout_ms_min..=self.config.session_timeout_ms_max;
        if !timeouts.contains(&request.session_timeout_ms) {
            return reject(ErrorCode::InvalidSessionTimeout);
        }
        if request.group_id.len() > super::NAME_LEN_MAX {
            return reject(ErrorCode::InvalidGroupId);
        }
        let names_too_long = request.member_id.len() > super::NAME_LEN_MAX
            || request.protocol_type.len() > super::NAME_LEN_MAX
            || request
                .group_instance_id
                .as_ref()
                .is_some_and(|i| i.is_empty() || i.len() > super::NAME_LEN_MAX)
            || request
                .protocols
                .iter()
                .any(|(name, _)| name.len() > super::NAME_LEN_MAX);
        if names_too_long {
            return reject(ErrorCode::InvalidRequest);
        }
        if !self.groups.contains_key(&request.group_id) {
            if !request.member_id.is_empty() {
                return reject(ErrorCode::UnknownMemberId);
            }
            if self.groups.len() >= self.config.groups_max {
                return reject(ErrorCode::CoordinatorNotAvailable);
            }
        }
        let group = self
            .groups
            .entry(request.group_id.clone())
            .or_insert_with(|| Group::new(now));
        let current_id = match (&request.group_instance_id, request.member_id.as_str()) {
            (Some(instance), "") => group.static_members.get(instance).cloned(),
            (_, "") => None,
            (_, id) => Some(id.to_string()),
        };
        let fits = group.accepts_protocols(
            current_id.as_deref(),
            &request.protocol_type,
            &request.protocols,
        );
        if !fits {
            return reject(ErrorCode::InconsistentGroupProtocol);
        }
        let alone = group
            .members
            .keys()
            .all(|id| Some(id.as_str()) == current_id.as_deref());
        if alone && !group.members.is_empty() {
            // The only member may change the group's protocol type.
            group.protocol_type = Some(request.protocol_type.clone());
        }
        if request.member_id.is_empty() {
            join_new_member(&self.config, group, now, request, &mut self.outbox)
        } else {
            join_known_member(&self.config, group, now, request, &mut self.outbox)
        }
    }

    /// SyncGroup: the leader's assignment completes the rebalance; followers wait for it.
    pub fn handle_sync(&mut self, now: Millis, request: SyncRequest) -> Answer<SyncResponse> {
        let answer = self.sync(now, request);
        self.check_invariants();
        answer
    }

    fn sync(&mut self, now: Millis, request: SyncRequest) -> Answer<SyncResponse> {
        let reject = |code: ErrorCode| Answer::Now(SyncResponse::error(code));
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return reject(ErrorCode::UnknownMemberId);
        };
        let identity = MemberIdentity {
            member_id: request.member_id.clone(),
            group_instance_id: request.group_instance_id.clone(),
        };
        if let Err(code) = check_member(group, &identity) {
            return reject(code);
        }
        if request.generation_id != group.generation {
            return reject(ErrorCode::IllegalGeneration);
        }
        let type_differs = request
            .protocol_type
            .as_ref()
            .is_some_and(|t| group.protocol_type.as_ref() != Some(t));
        let name_differs = request
            .protocol_name
            .as_ref()
            .is_some_and(|n| group.protocol_name.as_ref() != Some(n));
        if type_differs || name_differs {
            return reject(ErrorCode::InconsistentGroupProtocol);
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => reject(ErrorCode::UnknownMemberId),
            GroupState::PreparingRebalance => reject(ErrorCode::RebalanceInProgress),
            GroupState::Stable => {
                let member = group.members.get_mut(&request.member_id).expect("checked");
                member.session_deadline = Millis(now.0 + i64::from(member.session_timeout_ms));
                Answer::Now(sync_answer(group, &request.member_id))
            }
            GroupState::CompletingRebalance => {
                let id = self.outbox.park();
                let member = group.members.get_mut(&request.member_id).expect("checked");
                if let Some(previous) = member.awaiting_sync.replace(id) {
                    let retry = SyncResponse::error(ErrorCode::RebalanceInProgress);
                    self.outbox.complete(previous, Completion::Sync(retry));
                }
                member.session_deadline = Millis(now.0 + i64::from(member.session_timeout_ms));
                if group.leader.as_deref() == Some(request.member_id.as_str()) {
                    apply_assignment(
                        &request.group_id,
                        group,
                        request.assignments,
                        now,
                        &mut self.outbox,
                    );
                }
                Answer::Parked(id)
            }
        }
    }

    /// The group's metadata record (its new generation and assignment) could not be stored:
    /// the generation must not stand, so a Stable group drops its assignment and rebalances,
    /// as Kafka does when storing a SyncGroup's assignment fails.
    pub fn metadata_store_failed(&mut self, group_id: &str, now: Millis) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if group.state == GroupState::Stable {
            for member in group.members.values_mut() {
                member.assignment = Bytes::new();
            }
            prepare_rebalance(group, now, &mut self.outbox);
        }
        self.check_invariants();
    }

    /// Heartbeat: keeps a member alive and tells it when to rejoin.
    pub fn handle_heartbeat(
        &mut self,
        now: Millis,
        group_id: &str,
        identity: &MemberIdentity,
        generation_id: i32,
    ) -> ErrorCode {
        let Some(group) = self.groups.get_mut(group_id) else {
            return ErrorCode::UnknownMemberId;
        };
        if let Err(code) = check_member(group, identity) {
            return code;
        }
        if generation_id != group.generation {
            return ErrorCode::IllegalGeneration;
        }
        let member = group.members.get_mut(&identity.member_id).expect("checked");
        member.session_deadline = Millis(now.0 + i64::from(member.session_timeout_ms));
        let code = match group.state {
            GroupState::Empty | GroupState::Dead => ErrorCode::UnknownMemberId,
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            GroupState::CompletingRebalance | GroupState::Stable => ErrorCode::None,
        };
        self.check_invariants();
        code
    }

    /// LeaveGroup: removes each named member; the answer is per member (v3+ batches).
    /// `Err` when the group does not exist.
    pub fn handle_leave(
        &mut self,
        now: Millis,
        group_id: &str,
        members: &[MemberIdentity],
    ) -> Result<Vec<ErrorCode>, ErrorCode> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return Err(ErrorCode::UnknownMemberId);
        };
        let mut answers = Vec::with_capacity(members.len());
        for identity in members {
            let member_id = match &identity.group_instance_id {
                Some(instance) => match group.static_members.get(instance) {
                    None => {
                        answers.push(ErrorCode::UnknownMemberId);
                        continue;
                    }
                    Some(current)
                        if !identity.member_id.is_empty() && *current != identity.member_id =>
                    {
                        answers.push(ErrorCode::FencedInstanceId);
                        continue;
                    }
                    Some(current) => current.clone(),
                },
                None => identity.member_id.clone(),
            };
            if group.pending.remove(&member_id).is_some() {
                answers.push(ErrorCode::None);
                continue;
            }
            if !group.members.contains_key(&member_id) {
                answers.push(ErrorCode::UnknownMemberId);
                continue;
            }
            remove_member(group_id, group, &member_id, now, &mut self.outbox);
            answers.push(ErrorCode::None);
        }
        try_complete_join(group_id, group, now, &mut self.outbox);
        self.check_invariants();
        Ok(answers)
    }
}

/// UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID or fine.
fn check_member(group: &Group, identity: &MemberIdentity) -> Result<(), ErrorCode> {
    if let Some(instance) = &identity.group_instance_id {
        match group.static_members.get(instance) {
            Some(current) if *current != identity.member_id => {
                return Err(ErrorCode::FencedInstanceId)
            }
            _ => {}
        }
    }
    if !group.members.contains_key(&identity.member_id) {
        return Err(ErrorCode::UnknownMemberId);
    }
    Ok(())
}

fn join_new_member(
    config: &super::GroupConfig,
    group: &mut Group,
    now: Millis,
    request: JoinRequest,
    outbox: &mut Outbox,
) -> Answer<JoinResponse> {
    if let Some(instance) = request.group_instance_id.clone() {
        if let Some(old_id) = group.static_members.get(&instance).cloned() {
            return rejoin_static_member(group, now, request, old_id, outbox);
        }
    }
    if group.members.len() + group.pending.len() >= config.group_members_max {
        return Answer::Now(JoinResponse::error(ErrorCode::GroupMaxSizeReached, ""));
    }
    let member_id = outbox.member_id(&request.client_id, now);
    if request.require_known_member_id && request.group_instance_id.is_none() {
        // KIP-394: the member learns its id first and joins with it, so a client that
        // gives up on a slow join does not leave an orphan member behind.
        let deadline = Millis(now.0 + i64::from(request.session_timeout_ms));
        group.pending.insert(member_id.clone(), deadline);
        return Answer::Now(JoinResponse::error(ErrorCode::MemberIdRequired, &member_id));
    }
    add_member_and_rebalance(config, group, now, request, member_id, outbox)
}

/// KIP-345: a static member rejoining with a new member id replaces its old incarnation.
fn rejoin_static_member(
    group: &mut Group,
    now: Millis,
    request: JoinRequest,
    old_id: String,
    outbox: &mut Outbox,
) -> Answer<JoinResponse> {
    let instance = request.group_instance_id.clone().expect("static");
    let group_id = request.group_id.clone();
    let new_id = outbox.member_id(&request.client_id, now);
    let mut member = group
        .members
        .remove(&old_id)
        .expect("static members are members");
    // The old incarnation is fenced: its waiting requests learn so.
    if let Some(park) = member.awaiting_join.take() {
        let fenced = JoinResponse::error(ErrorCode::FencedInstanceId, &old_id);
        outbox.complete(park, Completion::Join(fenced));
    }
    if let Some(park) = member.awaiting_sync.take() {
        outbox.complete(
            park,
            Completion::Sync(SyncResponse::error(ErrorCode::FencedInstanceId)),
        );
    }
    let previous_leader = group.leader.clone().unwrap_or_default();
    member.member_id = new_id.clone();
    member.client_id = request.client_id.clone();
    member.client_host = request.client_host.clone();
    member.session_timeout_ms = request.session_timeout_ms;
    member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    member.session_deadline = Millis(now.0 + i64::from(request.session_timeout_ms));
    let protocols_changed = member.protocols != request.protocols;
    member.protocols = request.protocols;
    group.members.insert(new_id.clone(), member);
    group.static_members.insert(instance, new_id.clone());
    if group.leader.as_deref() == Some(old_id.as_str()) {
        group.leader = Some(new_id.clone());
    }
    match group.state {
        GroupState::Stable if !protocols_changed => {
            outbox.records.push(group.metadata_record(&group_id, now));
            // Same subscription: keep the generation and its assignment. The old leader id is
            // returned so that a rejoining leader does not recompute a plan nobody would get.
            Answer::Now(JoinResponse {
                error: ErrorCode::None,
                generation_id: group.generation,
                protocol_type: group.protocol_type.clone(),
                protocol_name: group.protocol_name.clone(),
                leader: previous_leader,
                member_id: new_id,
                members: Vec::new(),
            })
        }
        _ => {
            let id = outbox.park();
            prepare_rebalance(group, now, outbox);
            group
                .members
                .get_mut(&new_id)
                .expect("inserted")
                .awaiting_join = Some(id);
            try_complete_join(&group_id, group, now, outbox);
            Answer::Parked(id)
        }
    }
}

fn add_member_and_rebalance(
    config: &super::GroupConfig,
    group: &mut Group,
    now: Millis,
    request: JoinRequest,
    member_id: String,
    outbox: &mut Outbox,
) -> Answer<JoinResponse> {
    let id = outbox.park();
    if group.members.is_empty() {
        group.protocol_type = Some(request.protocol_type.clone());
    }
    if let Some(instance) = &request.group_instance_id {
        group
            .static_members
            .insert(instance.clone(), member_id.clone());
    }
    let member = Member {
        member_id: member_id.clone(),
        group_instance_id: request.group_instance_id,
        client_id: request.client_id,
        client_host: request.client_host,
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        protocols: request.protocols,
        assignment: Bytes::new(),
        awaiting_join: None,
        awaiting_sync: None,
        session_deadline: Millis(now.0 + i64::from(request.session_timeout_ms)),
    };
    group.members.insert(member_id.clone(), member);
    if group.leader.is_none() {
        group.leader = Some(member_id.clone());
    }
    let was_empty = group.state == GroupState::Empty;
    prepare_rebalance(group, now, outbox);
    group
        .members
        .get_mut(&member_id)
        .expect("inserted")
        .awaiting_join = Some(id);
    if was_empty && config.initial_rebalance_delay_ms > 0 {
        let deadline = group.rebalance_deadline.expect("preparing");
        let until = Millis(now.0 + i64::from(config.initial_rebalance_delay_ms)).min(deadline);
        group.initial_delay = Some((until, group.members.len()));
    }
    try_complete_join(&request.group_id, group, now, outbox);
    Answer::Parked(id)
}

fn join_known_member(
    config: &super::GroupConfig,
    group: &mut Group,
    now: Millis,
    request: JoinRequest,
    outbox: &mut Outbox,
) -> Answer<JoinResponse> {
    if group.pending.remove(&request.member_id).is_some() {
        let member_id = request.member_id.clone();
        return add_member_and_rebalance(config, group, now, request, member_id, outbox);
    }
    let identity = MemberIdentity {
        member_id: request.member_id.clone(),
        group_instance_id: request.group_instance_id.clone(),
    };
    if let Err(code) = check_member(group, &identity) {
        return Answer::Now(JoinResponse::error(code, &request.member_id));
    }
    let member = group.members.get_mut(&request.member_id).expect("checked");
    member.session_deadline = Millis(now.0 + i64::from(request.session_timeout_ms));
    let same_protocols = member.protocols == request.protocols;
    let is_leader = group.leader.as_deref() == Some(request.member_id.as_str());
    let rebalance = match group.state {
        GroupState::PreparingRebalance => true,
        GroupState::CompletingRebalance => !same_protocols,
        GroupState::Stable => is_leader || !same_protocols,
        GroupState::Empty | GroupState::Dead => {
            return Answer::Now(JoinResponse::error(
                ErrorCode::UnknownMemberId,
                &request.member_id,
            ))
        }
    };
    if !rebalance {
        // A repeated JoinGroup of the current generation: answer it again.
        return Answer::Now(join_answer(group, &request.member_id));
    }
    let member = group.members.get_mut(&request.member_id).expect("checked");
    member.protocols = request.protocols;
    member.session_timeout_ms = request.session_timeout_ms;
    member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    let id = outbox.park();
    if let Some(previous) = member.awaiting_join.replace(id) {
        let retry = JoinResponse::error(ErrorCode::RebalanceInProgress, &request.member_id);
        outbox.complete(previous, Completion::Join(retry));
    }
    prepare_rebalance(group, now, outbox);
    try_complete_join(&request.group_id, group, now, outbox);
    Answer::Parked(id)
}

/// Moves the group to PreparingRebalance (once); a pending sync learns of the new round.
fn prepare_rebalance(group: &mut Group, now: Millis, outbox: &mut Outbox) {
    if group.state == GroupState::PreparingRebalance {
        return;
    }
    if group.state == GroupState::CompletingRebalance {
        for member in group.members.values_mut() {
            member.assignment = Bytes::new();
            if let Some(park) = member.awaiting_sync.take() {
                let retry = SyncResponse::error(ErrorCode::RebalanceInProgress);
                outbox.complete(park, Completion::Sync(retry));
            }
        }
    }
    let timeout_ms = group
        .members
        .values()
        .map(|m| m.rebalance_timeout_ms)
        .max()
        .unwrap_or(0);
    group.rebalance_deadline = Some(Millis(now.0 + i64::from(timeout_ms.max(0))));
    group.become_state(GroupState::PreparingRebalance, now);
}

/// Ends (or, while members keep arriving, extends) the initial delay of a new group's
/// first rebalance.
pub(crate) fn end_initial_delay(
    group_id: &str,
    group: &mut Group,
    now: Millis,
    delay_ms: i32,
    outbox: &mut Outbox,
) {
    let Some((until, members_before)) = group.initial_delay else {
        return;
    };
    if until > now {
        return;
    }
    let deadline = group
        .rebalance_deadline
        .expect("an initial delay only while preparing");
    let next = Millis(now.0 + i64::from(delay_ms));
    if group.members.len() > members_before && next < deadline {
        group.initial_delay = Some((next, group.members.len()));
        return;
    }
    group.initial_delay = None;
    try_complete_join(group_id, group, now, outbox);
}

/// Completes the join phase if every member has rejoined and no KIP-394 id is outstanding.
pub(crate) fn try_complete_join(
    group_id: &str,
    group: &mut Group,
    now: Millis,
    outbox: &mut Outbox,
) {
    if group.state != GroupState::PreparingRebalance || group.initial_delay.is_some() {
        return;
    }
    let all_joined = group.members.values().all(|m| m.awaiting_join.is_some());
    if all_joined && group.pending.is_empty() {
        complete_join(group_id, group, now, false, outbox);
    }
}

/// Ends the join phase: members that did not rejoin are dropped (rebalance timeout), the
/// generation advances, the protocol is chosen and every waiting JoinGroup is answered.
pub(crate) fn complete_join(
    group_id: &str,
    group: &mut Group,
    now: Millis,
    timed_out: bool,
    outbox: &mut Outbox,
) {
    if group.state != GroupState::PreparingRebalance {
        return;
    }
    if timed_out {
        let late: Vec<String> = group
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in late {
            drop_member(group, &member_id, outbox);
        }
        group.pending.clear();
    }
    group.rebalance_deadline = None;
    group.initial_delay = None;
    group.generation += 1;
    if group.members.is_empty() {
        group.protocol_name = None;
        group.leader = None;
        group.become_state(GroupState::Empty, now);
        outbox.records.push(group.metadata_record(group_id, now));
        return;
    }
    let protocol = group
        .select_protocol()
        .expect("joined members share a protocol");
    group.protocol_name = Some(protocol.clone());
    let leader_joined = group
        .leader
        .as_ref()
        .and_then(|l| group.members.get(l))
        .is_some_and(|m| m.awaiting_join.is_some());
    if !leader_joined {
        group.leader = group.members.keys().next().cloned();
    }
    group.become_state(GroupState::CompletingRebalance, now);
    let parked: Vec<(String, ParkId)> = group
        .members
        .values()
        .filter_map(|m| Some((m.member_id.clone(), m.awaiting_join?)))
        .collect();
    for (member_id, park) in parked {
        let answer = join_answer(group, &member_id);
        let member = group.members.get_mut(&member_id).expect("listed");
        member.awaiting_join = None;
        member.session_deadline = Millis(now.0 + i64::from(member.session_timeout_ms));
        outbox.complete(park, Completion::Join(answer));
    }
}

/// The JoinGroup answer of a member in the current generation.
fn join_answer(group: &Group, member_id: &str) -> JoinResponse {
    let protocol = group
        .protocol_name
        .clone()
        .expect("a generation has a protocol");
    let leader = group.leader.clone().expect("a generation has a leader");
    let members = if leader == member_id {
        group
            .members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata_for(&protocol),
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinResponse {
        error: ErrorCode::None,
        generation_id: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: Some(protocol),
        leader,
        member_id: member_id.to_string(),
        members,
    }
}

fn sync_answer(group: &Group, member_id: &str) -> SyncResponse {
    SyncResponse {
        error: ErrorCode::None,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        assignment: group
            .members
            .get(member_id)
            .map(|m| m.assignment.clone())
            .unwrap_or_default(),
    }
}

/// The leader's SyncGroup: store every member's assignment, persist, answer waiting syncs.
fn apply_assignment(
    group_id: &str,
    group: &mut Group,
    assignments: Vec<(String, Bytes)>,
    now: Millis,
    outbox: &mut Outbox,
) {
    debug_assert_eq!(group.state, GroupState::CompletingRebalance);
    for member in group.members.values_mut() {
        member.assignment = Bytes::new();
    }
    for (member_id, assignment) in assignments {
        // Assignments for members that are not in the group are ignored, as in Kafka.
        if let Some(member) = group.members.get_mut(&member_id) {
            member.assignment = assignment;
        }
    }
    group.become_state(GroupState::Stable, now);
    outbox.records.push(group.metadata_record(group_id, now));
    let parked: Vec<(String, ParkId)> = group
        .members
        .values()
        .filter_map(|m| Some((m.member_id.clone(), m.awaiting_sync?)))
        .collect();
    for (member_id, park) in parked {
        let answer = sync_answer(group, &member_id);
        group
            .members
            .get_mut(&member_id)
            .expect("listed")
            .awaiting_sync = None;
        outbox.complete(park, Completion::Sync(answer));
    }
}

/// Removes a member (leave or session timeout) and moves the group on as Kafka does.
pub(crate) fn remove_member(
    group_id: &str,
    group: &mut Group,
    member_id: &str,
    now: Millis,
    outbox: &mut Outbox,
) {
    drop_member(group, member_id, outbox);
    match group.state {
        GroupState::Stable | GroupState::CompletingRebalance => {
            prepare_rebalance(group, now, outbox);
            try_complete_join(group_id, group, now, outbox);
        }
        GroupState::PreparingRebalance => try_complete_join(group_id, group, now, outbox),
        GroupState::Empty | GroupState::Dead => {}
    }
}

/// Takes a member out of the group; its waiting requests are told it is unknown.
fn drop_member(group: &mut Group, member_id: &str, outbox: &mut Outbox) {
    let Some(mut member) = group.members.remove(member_id) else {
        return;
    };
    if let Some(instance) = &member.group_instance_id {
        if group.static_members.get(instance).map(String::as_str) == Some(member_id) {
            group.static_members.remove(instance);
        }
    }
    if let Some(park) = member.awaiting_join.take() {
        let gone = JoinResponse::error(ErrorCode::UnknownMemberId, member_id);
        outbox.complete(park, Completion::Join(gone));
    }
    if let Some(park) = member.awaiting_sync.take() {
        outbox.complete(
            park,
            Completion::Sync(SyncResponse::error(ErrorCode::UnknownMemberId)),
        );
    }
    if group.leader.as_deref() == Some(member_id) {
        group.leader = group
            .members
            .values()
            .find(|m| m.awaiting_join.is_some())
            .or_else(|| group.members.values().next())
            .map(|m| m.member_id.clone());
    }
}

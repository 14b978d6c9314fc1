//! The consumer-group coordinator: Kafka's classic group protocol as a state machine.
//!
//! [`GroupCoordinator`] keeps every group this broker coordinates: members, generations, the
//! chosen protocol, the leader's assignment, and the committed offsets. It never touches
//! storage or a clock: time arrives as [`Millis`]; what must be persisted comes out of
//! [`GroupCoordinator::poll_records`] as [`GroupRecord`]s that the driver appends to
//! `__consumer_offsets`, and the driver replays those records through
//! [`GroupCoordinator::load`] when it opens.
//!
//! A group moves Empty → PreparingRebalance → CompletingRebalance → Stable (→ Dead when
//! deleted). JoinGroup waits until every known member has rejoined (or the rebalance timeout
//! passes); SyncGroup waits for the leader's assignment. Such requests are *parked*: the
//! handler answers [`Answer::Parked`] and the answer comes later out of
//! [`GroupCoordinator::poll_completed`].
//!
//! Call order for a driver:
//! 1. [`GroupCoordinator::new`], then [`GroupCoordinator::load`] for every stored record.
//! 2. `handle_*` per request; after each, drain [`GroupCoordinator::poll_records`] (persist)
//!    and [`GroupCoordinator::poll_completed`] (answer parked requests).
//! 3. [`GroupCoordinator::handle_tick`] at [`GroupCoordinator::next_deadline`] at the latest:
//!    session timeouts, rebalance timeouts, expiry of KIP-394 pending member ids, and every
//!    `offsets.retention.check.interval.ms` the expiry of committed offsets (KIP-211); then
//!    drain [`GroupCoordinator::poll_records`] again: expired offsets and dead groups leave
//!    tombstones for `__consumer_offsets`, so compaction removes them and a replay agrees.

mod membership;
mod offsets;
pub mod records;
#[cfg(test)]
mod tests;
mod txn_offsets;

use std::collections::BTreeMap;

use bytes::Bytes;

pub use membership::{
    Answer, Completion, JoinRequest, JoinResponse, JoinedMember, MemberIdentity, SyncRequest,
    SyncResponse,
};
pub use offsets::{CommitRequest, GroupDescription, GroupListing, MemberDescription};
pub use records::{partition_for_group, GroupRecord, OffsetValue};

use crate::types::Millis;

/// The longest group id, instance id, protocol type or protocol name accepted: they are
/// stored as 16-bit-length strings in `__consumer_offsets`.
pub const NAME_LEN_MAX: usize = 4096;
/// The longest client-id prefix of a generated member id.
pub const MEMBER_ID_PREFIX_LEN_MAX: usize = 255;

/// The group coordinator's limits and timeouts; defaults are Kafka's.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`: shorter session timeouts are refused.
    pub session_timeout_ms_min: i32,
    /// `group.max.session.timeout.ms`: longer session timeouts are refused.
    pub session_timeout_ms_max: i32,
    /// `group.max.size`: the most members one group may have.
    pub group_members_max: usize,
    /// The most groups this coordinator keeps; new groups beyond it are refused.
    pub groups_max: usize,
    /// `offset.metadata.max.bytes`: the longest metadata string of a commit.
    pub offset_metadata_bytes_max: usize,
    /// How long an Empty group without offsets is kept before it is forgotten.
    pub empty_group_retention_ms: i64,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an Empty group
    /// waits for more members (extended while members keep arriving, up to the rebalance
    /// timeout). Kafka's default is 3000; Brook's is 0, so a lone consumer gets its
    /// assignment at once (`brook server --group-initial-rebalance-delay-ms` sets it).
    pub initial_rebalance_delay_ms: i32,
    /// `offsets.retention.minutes` in milliseconds (Kafka's default: 7 days). KIP-211: the
    /// offsets of an Empty group expire this long after it became Empty; a Stable consumer
    /// group keeps the offsets of the topics its members subscribe to and loses the others
    /// this long after their commit; a group that only commits (no members, no protocol)
    /// loses each offset this long after its commit.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`: how often expired offsets are looked for.
    pub offsets_retention_check_interval_ms: i64,
}

impl Default for GroupConfig {
    fn default() -> GroupConfig {
        GroupConfig {
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 1_800_000,
            group_members_max: 1_000,
            groups_max: 100_000,
            offset_metadata_bytes_max: 4096,
            empty_group_retention_ms: 10 * 60 * 1000,
            initial_rebalance_delay_ms: 0,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
        }
    }
}

/// Where a group is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// No members (possibly committed offsets).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment in SyncGroup.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Deleted (or never existed, as DescribeGroups says).
    Dead,
}

impl GroupState {
    /// The state's name as Kafka prints it (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Identifies a parked JoinGroup or SyncGroup until it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParkId(pub u64);

/// One member of a group.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    /// (protocol name, metadata) in the member's order of preference.
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    /// The member's JoinGroup waiting for the rebalance to complete.
    pub(crate) awaiting_join: Option<ParkId>,
    /// The member's SyncGroup waiting for the leader's assignment.
    pub(crate) awaiting_sync: Option<ParkId>,
    /// When the member is gone unless it heartbeats (ignored while it awaits join or sync).
    pub(crate) session_deadline: Millis,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn is_kept_alive(&self) -> bool {
        self.awaiting_join.is_some() || self.awaiting_sync.is_some()
    }
}

/// One group: membership and committed offsets.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub(crate) state: GroupState,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// KIP-394: member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pub(crate) pending: BTreeMap<String, Millis>,
    /// KIP-345: group.instance.id → current member id.
    pub(crate) static_members: BTreeMap<String, String>,
    /// When a PreparingRebalance completes whoever has joined by then.
    pub(crate) rebalance_deadline: Option<Millis>,
    /// The first rebalance of an Empty group waits until then for more members; the count
    /// is how many members there were when the wait began.
    pub(crate) initial_delay: Option<(Millis, usize)>,
    /// When the group last changed state.
    pub(crate) state_since: Millis,
    pub(crate) offsets: BTreeMap<(String, i32), OffsetValue>,
}

impl Group {
    fn new(now: Millis) -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            static_members: BTreeMap::new(),
            rebalance_deadline: None,
            initial_delay: None,
            state_since: now,
            offsets: BTreeMap::new(),
        }
    }

    fn become_state(&mut self, state: GroupState, now: Millis) {
        self.state = state;
        self.state_since = now;
    }

    /// The protocols every member (but `except`) supports, in the first member's order of
    /// preference.
    fn candidate_protocols(&self, except: Option<&str>) -> Vec<String> {
        let mut members = self
            .members
            .values()
            .filter(|m| Some(m.member_id.as_str()) != except);
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for member in members {
            candidates.retain(|name| member.protocols.iter().any(|(n, _)| n == name));
        }
        candidates
    }

    /// Whether a joining member's protocols fit the other members' (if not, Kafka answers
    /// INCONSISTENT_GROUP_PROTOCOL). `member_id` is the joining member's current id, if any:
    /// its old protocols do not count.
    fn accepts_protocols(
        &self,
        member_id: Option<&str>,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        let others = self
            .members
            .keys()
            .filter(|id| Some(id.as_str()) != member_id)
            .count();
        if others == 0 {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols(member_id);
        protocols.iter().any(|(name, _)| candidates.contains(name))
    }

    /// The protocol the members vote for: each votes for its most preferred candidate.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols(None);
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for member in self.members.values() {
            let choice = member
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(name))?;
            let slot = votes.iter_mut().find(|(name, _)| *name == choice.0)?;
            slot.1 += 1;
        }
        let mut best: Option<(String, usize)> = None;
        for (name, count) in votes {
            let better = match &best {
                None => true,
                Some((_, most)) => count > *most,
            };
            if better {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name)
    }

    /// Takes the state a stored metadata record describes (see [`GroupCoordinator::load`]).
    fn load_metadata(&mut self, value: records::GroupValue, now: Millis) {
        self.generation = value.generation.max(0);
        self.protocol_type = (!value.protocol_type.is_empty()).then_some(value.protocol_type);
        self.members.clear();
        self.static_members.clear();
        self.pending.clear();
        self.rebalance_deadline = None;
        self.initial_delay = None;
        let leader = value
            .leader
            .filter(|l| value.members.iter().any(|m| m.member_id == *l));
        let (Some(protocol), Some(leader)) = (value.protocol, leader) else {
            self.protocol_name = None;
            self.leader = None;
            self.state = GroupState::Empty;
            self.state_since = match value.members.is_empty() {
                true => Millis(value.state_timestamp_ms),
                false => now,
            };
            return;
        };
        for stored in value.members {
            let member = Member {
                member_id: stored.member_id.clone(),
                group_instance_id: stored.group_instance_id.clone(),
                client_id: stored.client_id,
                client_host: stored.client_host,
                session_timeout_ms: stored.session_timeout_ms,
                rebalance_timeout_ms: stored.rebalance_timeout_ms,
                protocols: vec![(protocol.clone(), stored.subscription)],
                assignment: stored.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                session_deadline: Millis(now.0 + i64::from(stored.session_timeout_ms)),
            };
            if let Some(instance) = stored.group_instance_id {
                self.static_members
                    .insert(instance, stored.member_id.clone());
            }
            self.members.insert(stored.member_id, member);
        }
        self.protocol_name = Some(protocol);
        self.leader = Some(leader);
        self.state = GroupState::Stable;
        self.state_since = now;
    }

    fn has_offsets(&self) -> bool {
        !self.offsets.is_empty()
    }

    /// The group's metadata record as it stands.
    fn metadata_record(&self, group_id: &str, now: Millis) -> GroupRecord {
        let protocol = self.protocol_name.clone();
        let members = self
            .members
            .values()
            .map(|m| records::StoredMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: protocol
                    .as_deref()
                    .map(|p| m.metadata_for(p))
                    .unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect();
        GroupRecord::Group {
            group: group_id.to_string(),
            value: Some(records::GroupValue {
                protocol_type: self.protocol_type.clone().unwrap_or_default(),
                generation: self.generation,
                protocol,
                leader: self.leader.clone(),
                state_timestamp_ms: now.0,
                members,
            }),
        }
    }

    /// Asserts the group's invariants (debug builds).
    fn check_invariants(&self, group_id: &str) {
        assert_ne!(
            self.state,
            GroupState::Dead,
            "{group_id}: dead groups are removed"
        );
        assert!(
            self.generation >= 0,
            "{group_id}: generation is never negative"
        );
        match &self.leader {
            Some(leader) => assert!(
                self.members.contains_key(leader),
                "{group_id}: the leader is a member"
            ),
            None => assert!(self.members.is_empty(), "{group_id}: members have a leader"),
        }
        if self.state == GroupState::Empty {
            assert!(self.members.is_empty(), "{group_id}: Empty has no members");
        }
        assert_eq!(
            self.rebalance_deadline.is_some(),
            self.state == GroupState::PreparingRebalance,
            "{group_id}: a rebalance deadline exactly while preparing"
        );
        if let Some((until, _)) = self.initial_delay {
            assert_eq!(
                self.state,
                GroupState::PreparingRebalance,
                "{group_id}: delay"
            );
            assert!(
                Some(until) <= self.rebalance_deadline,
                "{group_id}: the initial delay ends by the rebalance deadline"
            );
        }
        if matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) {
            assert!(
                !self.members.is_empty(),
                "{group_id}: a generation has members"
            );
            assert!(
                self.protocol_name.is_some(),
                "{group_id}: a generation has a protocol"
            );
        }
        for (instance, member_id) in &self.static_members {
            let member = self.members.get(member_id);
            assert!(
                member.is_some(),
                "{group_id}: static member {instance} is a member"
            );
            assert_eq!(
                member.and_then(|m| m.group_instance_id.as_deref()),
                Some(instance.as_str()),
                "{group_id}: static mapping matches the member"
            );
        }
        for member in self.members.values() {
            if member.awaiting_join.is_some() {
                assert_eq!(
                    self.state,
                    GroupState::PreparingRebalance,
                    "{group_id}: joins wait only while preparing"
                );
            }
            if member.awaiting_sync.is_some() {
                assert_eq!(
                    self.state,
                    GroupState::CompletingRebalance,
                    "{group_id}: syncs wait only while completing"
                );
            }
            assert!(
                !self.pending.contains_key(&member.member_id),
                "{group_id}: a member is not also pending"
            );
        }
    }
}

/// What handlers produce besides their direct answers.
#[derive(Default)]
pub(crate) struct Outbox {
    next_park_id: u64,
    member_counter: u64,
    completed: Vec<(ParkId, Completion)>,
    records: Vec<GroupRecord>,
}

impl Outbox {
    fn park(&mut self) -> ParkId {
        let id = ParkId(self.next_park_id);
        self.next_park_id += 1;
        id
    }

    fn complete(&mut self, id: ParkId, completion: Completion) {
        self.completed.push((id, completion));
    }

    /// A new member id, as Kafka makes them: the client id, a dash and a unique suffix.
    fn member_id(&mut self, client_id: &str, now: Millis) -> String {
        self.member_counter += 1;
        let mut end = client_id.len().min(MEMBER_ID_PREFIX_LEN_MAX);
        while !client_id.is_char_boundary(end) {
            end -= 1;
        }
        let client_id = &client_id[..end];
        let suffix = uuid::Uuid::from_u64_pair(now.0 as u64, self.member_counter);
        format!("{client_id}-{suffix}")
    }
}

/// The group coordinator. See the module doc for the call order.
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    outbox: Outbox,
    /// When committed offsets are next checked for expiry; `None` while no group has any.
    next_offsets_check: Option<Millis>,
    /// Offsets committed in transactions not yet ended, by producer.
    txn_offsets: BTreeMap<crate::types::ProducerId, txn_offsets::PendingOffsets>,
}

impl GroupCoordinator {
    /// A coordinator with no groups.
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: BTreeMap::new(),
            outbox: Outbox::default(),
            next_offsets_check: None,
            txn_offsets: BTreeMap::new(),
        }
    }

    /// The coordinator's configuration.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The state of a group, `Dead` if it does not exist.
    pub fn group_state(&self, group_id: &str) -> GroupState {
        self.groups
            .get(group_id)
            .map_or(GroupState::Dead, |g| g.state)
    }

    /// The current generation of a group, if it exists.
    pub fn generation(&self, group_id: &str) -> Option<i32> {
        self.groups.get(group_id).map(|g| g.generation)
    }

    /// Drains the records to append to `__consumer_offsets`, in order.
    pub fn poll_records(&mut self) -> Vec<GroupRecord> {
        std::mem::take(&mut self.outbox.records)
    }

    /// Drains the parked requests that are now answered.
    pub fn poll_completed(&mut self) -> Vec<(ParkId, Completion)> {
        std::mem::take(&mut self.outbox.completed)
    }

    /// Forgets a parked request whose connection went away (the member stays until its
    /// session times out, as in Kafka).
    pub fn cancel(&mut self, id: ParkId) {
        for group in self.groups.values_mut() {
            for member in group.members.values_mut() {
                if member.awaiting_join == Some(id) {
                    member.awaiting_join = None;
                }
                if member.awaiting_sync == Some(id) {
                    member.awaiting_sync = None;
                }
            }
        }
    }

    /// Forgets the groups `moved` selects — their `__consumer_offsets` partition is led
    /// elsewhere now — and returns their parked JoinGroup/SyncGroup requests, which the
    /// caller answers `NOT_COORDINATOR` (the members find the new coordinator).
    pub fn unload(&mut self, moved: impl Fn(&str) -> bool) -> Vec<ParkId> {
        self.unload_txn_offsets(&moved);
        let gone: Vec<String> = self.groups.keys().filter(|g| moved(g)).cloned().collect();
        let mut parked = Vec::new();
        for group_id in gone {
            let group = self.groups.remove(&group_id).expect("listed above");
            for member in group.members.values() {
                parked.extend(member.awaiting_join);
                parked.extend(member.awaiting_sync);
            }
        }
        if !self.groups.values().any(Group::has_offsets) {
            self.next_offsets_check = None;
        }
        self.check_invariants();
        parked
    }

    /// Replays one stored record (a broker's open, or a new leader of the group's
    /// `__consumer_offsets` partition), tombstones included. Each metadata record is the
    /// group's whole state: one stored with members brings the generation back Stable, with
    /// its members, assignments and leader, each member's session starting `now` — as in
    /// Kafka, members that heartbeat keep going without a rebalance, the others expire. A
    /// group stored Empty keeps the time it became Empty (its offsets' expiry clock).
    /// Replayed offsets are checked for expiry at the first tick.
    pub fn load(&mut self, record: GroupRecord, now: Millis) {
        self.next_offsets_check.get_or_insert(now);
        match record {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => match value {
                Some(value) => {
                    let entry = self.groups.entry(group).or_insert_with(|| Group::new(now));
                    entry.offsets.insert((topic, partition), value);
                }
                None => {
                    if let Some(entry) = self.groups.get_mut(&group) {
                        entry.offsets.remove(&(topic, partition));
                    }
                }
            },
            GroupRecord::Group { group, value } => match value {
                Some(value) => {
                    let entry = self.groups.entry(group).or_insert_with(|| Group::new(now));
                    entry.load_metadata(value, now);
                }
                None => {
                    self.groups.remove(&group);
                }
            },
        }
    }

    /// When [`GroupCoordinator::handle_tick`] must run next at the latest.
    pub fn next_deadline(&self) -> Option<Millis> {
        let retention = self.config.empty_group_retention_ms;
        self.groups
            .values()
            .flat_map(|group| {
                let sessions = group
                    .members
                    .values()
                    .filter(|m| !m.is_kept_alive())
                    .map(|m| m.session_deadline);
                let forget = (group.state == GroupState::Empty
                    && !group.has_offsets()
                    && group.pending.is_empty())
                .then_some(Millis(group.state_since.0 + retention));
                sessions
                    .chain(group.pending.values().copied())
                    .chain(group.rebalance_deadline)
                    .chain(group.initial_delay.map(|(until, _)| until))
                    .chain(forget)
            })
            .chain(self.next_offsets_check)
            .min()
    }

    /// Runs the timers due at `now`: pending member ids expire, silent members are removed,
    /// rebalances past their timeout complete, long-empty groups without offsets go, and
    /// (every check interval) committed offsets past their retention expire.
    pub fn handle_tick(&mut self, now: Millis) {
        let retention = self.config.empty_group_retention_ms;
        let mut forgotten = Vec::new();
        for (group_id, group) in self.groups.iter_mut() {
            group.pending.retain(|_, deadline| *deadline > now);
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| !m.is_kept_alive() && m.session_deadline <= now)
                .filter(|_| {
                    !crate::planted::is_planted(crate::planted::PlantedBug::SkipSessionExpiry)
                })
                .map(|m| m.member_id.clone())
                .collect();
            for member_id in expired {
                membership::remove_member(group_id, group, &member_id, now, &mut self.outbox);
            }
            membership::end_initial_delay(
                group_id,
                group,
                now,
                self.config.initial_rebalance_delay_ms,
                &mut self.outbox,
            );
            if group.rebalance_deadline.is_some_and(|d| d <= now) {
                membership::complete_join(group_id, group, now, true, &mut self.outbox);
            } else {
                membership::try_complete_join(group_id, group, now, &mut self.outbox);
            }
            let idle = group.state == GroupState::Empty
                && !group.has_offsets()
                && group.pending.is_empty()
                && now.since(group.state_since) >= retention;
            if idle {
                forgotten.push(group_id.clone());
            }
        }
        for group_id in forgotten {
            self.groups.remove(&group_id);
            self.outbox.records.push(GroupRecord::Group {
                group: group_id,
                value: None,
            });
        }
        if self.next_offsets_check.is_some_and(|due| due <= now) {
            self.expire_offsets(now);
            let interval = self.config.offsets_retention_check_interval_ms.max(1);
            self.next_offsets_check = self
                .groups
                .values()
                .any(Group::has_offsets)
                .then_some(Millis(now.0 + interval));
        }
        self.check_invariants();
    }

    /// Asserts every group's invariants (debug builds and the simulator).
    pub fn check_invariants(&self) {
        if cfg!(debug_assertions) {
            assert!(
                self.groups.len() <= self.config.groups_max + 1,
                "groups are bounded"
            );
            for (group_id, group) in &self.groups {
                group.check_invariants(group_id);
                assert!(
                    !group.has_offsets() || self.next_offsets_check.is_some(),
                    "{group_id}: offsets are checked for expiry"
                );
            }
        }
    }
}

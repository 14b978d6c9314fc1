//! The admin client's consumer-group calls: list, describe and delete groups, and read,
//! alter and delete their committed offsets (what `kafka-consumer-groups` does).
//!
//! Every call but `list_groups` goes to the group's coordinator through
//! `Admin::ask_coordinator` (`admin/coordinator.rs`: FindCoordinator, asked again when the
//! answer is NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE or COORDINATOR_LOAD_IN_PROGRESS).
//! `list_groups` asks every broker, since each coordinates its own groups.
//!
//! **API boundary:** these calls act on a group from outside it. Offsets are altered as a
//! "simple" client (generation -1, no member id), which the coordinator accepts only while
//! the group has no members, exactly as for `kafka-consumer-groups --reset-offsets`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use brook_core::ErrorCode;
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};

use super::coordinator::{first_coordinator_error, CoordinatorAnswer};
use super::Admin;
use crate::assignor;
use crate::consumer::{list_offset, IsolationLevel, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use crate::error::{check, Error};
use crate::group::{
    commit_topics, committed_offsets, offset_fetch_request, CoordinatorType,
    CONSUMER_PROTOCOL_TYPE, OFFSET_COMMIT_VERSIONS,
};
use crate::TopicPartition;

/// ListGroups v4 added the states filter.
const LIST_GROUPS_VERSIONS: (i16, i16) = (0, 4);
const DESCRIBE_GROUPS_VERSIONS: (i16, i16) = (0, 5);
const DELETE_GROUPS_VERSIONS: (i16, i16) = (0, 2);
const OFFSET_DELETE_VERSIONS: (i16, i16) = (0, 0);
/// OffsetFetch v2 is the first that may ask for every partition (null topics).
const ADMIN_OFFSET_FETCH_VERSIONS: (i16, i16) = (2, 7);

/// The state of a classic consumer group, as the coordinator names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// Members are (re)joining.
    PreparingRebalance,
    /// Every member joined; the leader's assignment is awaited.
    CompletingRebalance,
    /// Members have their assignments and heartbeat.
    Stable,
    /// No members; committed offsets may remain.
    Empty,
    /// The group is gone (or was never there).
    Dead,
    /// A state this client does not know (a newer protocol's), as the broker spelled it.
    Other(String),
}

impl GroupState {
    /// The state from the broker's name for it.
    pub fn parse(name: &str) -> GroupState {
        match name {
            "PreparingRebalance" => GroupState::PreparingRebalance,
            "CompletingRebalance" => GroupState::CompletingRebalance,
            "Stable" => GroupState::Stable,
            "Empty" => GroupState::Empty,
            "Dead" => GroupState::Dead,
            other => GroupState::Other(other.to_string()),
        }
    }

    /// The broker's name for the state.
    pub fn as_str(&self) -> &str {
        match self {
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Empty => "Empty",
            GroupState::Dead => "Dead",
            GroupState::Other(name) => name,
        }
    }
}

impl std::fmt::Display for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One group as ListGroups reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// Its state; `None` from brokers older than ListGroups v4, which do not say.
    pub state: Option<GroupState>,
    /// Its protocol type ("consumer" for consumer groups; empty for offsets-only groups).
    pub protocol_type: String,
}

/// One member of a described group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// Its `group.instance.id` if it is a static member (KIP-345).
    pub instance_id: Option<String>,
    /// Its client id.
    pub client_id: String,
    /// The host it connects from, as the coordinator saw it (e.g. "/127.0.0.1").
    pub client_host: String,
    /// Its partitions, decoded when the protocol type is "consumer"; empty otherwise.
    pub assignment: Vec<TopicPartition>,
}

/// A group as DescribeGroups reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// Its state.
    pub state: GroupState,
    /// Its protocol type ("consumer" for consumer groups).
    pub protocol_type: String,
    /// The protocol the members agreed on (the assignor's name for consumer groups); empty
    /// while no generation is under way.
    pub protocol: String,
    /// Its members, in the coordinator's order.
    pub members: Vec<MemberDescription>,
}

/// Which offset of a partition [`Admin::list_offsets`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark).
    Latest,
}

impl Admin {
    /// Every group the cluster's brokers coordinate, sorted by id; with `states`, only the
    /// groups in one of them (ListGroups v4+; older brokers are filtered on this side).
    pub async fn list_groups(
        &self,
        states: Option<&[GroupState]>,
    ) -> Result<Vec<GroupListing>, Error> {
        self.refresh_controller().await?;
        let filter: Vec<StrBytes> = states
            .unwrap_or_default()
            .iter()
            .map(|s| StrBytes::from_string(s.as_str().to_string()))
            .collect();
        let mut groups = BTreeMap::new();
        for addr in self.network.broker_addrs() {
            let response = self
                .network
                .call(&addr, LIST_GROUPS_VERSIONS, Duration::ZERO, |version| {
                    let request = ListGroupsRequest::default();
                    if version >= 4 {
                        request.with_states_filter(filter.clone())
                    } else {
                        request
                    }
                })
                .await?;
            check(
                response.error_code,
                None,
                &format!("ListGroups from {addr}"),
            )?;
            for group in response.groups {
                let state = Some(group.group_state.as_str())
                    .filter(|s| !s.is_empty())
                    .map(GroupState::parse);
                let listing = GroupListing {
                    group_id: group.group_id.0.to_string(),
                    state,
                    protocol_type: group.protocol_type.to_string(),
                };
                groups.insert(listing.group_id.clone(), listing);
            }
        }
        let wanted = |listing: &GroupListing| match (states, &listing.state) {
            (Some(states), Some(state)) if !states.is_empty() => states.contains(state),
            _ => true,
        };
        Ok(groups.into_values().filter(wanted).collect())
    }

    /// Each of `groups` as its coordinator describes it, in the order asked. A group that
    /// does not exist (the coordinator says Dead) fails with GROUP_ID_NOT_FOUND, as Kafka's
    /// DescribeGroups v6 answers.
    pub async fn describe_groups(&self, groups: &[&str]) -> Result<Vec<GroupDescription>, Error> {
        let mut described = Vec::with_capacity(groups.len());
        for &group in groups {
            let response = self
                .call_coordinator(group, DESCRIBE_GROUPS_VERSIONS, |_| {
                    DescribeGroupsRequest::default().with_groups(vec![group_id(group)])
                })
                .await?;
            let answer = response
                .groups
                .into_iter()
                .find(|g| g.group_id.0.as_str() == group)
                .ok_or_else(|| Error::Protocol(format!("DescribeGroups left out {group}")))?;
            check(answer.error_code, None, &format!("describe group {group}"))?;
            let state = GroupState::parse(answer.group_state.as_str());
            if state == GroupState::Dead {
                return Err(Error::kafka(
                    ErrorCode::GroupIdNotFound as i16,
                    format!("describe group {group}"),
                ));
            }
            let consumer = answer.protocol_type.as_str() == CONSUMER_PROTOCOL_TYPE;
            let mut members = Vec::with_capacity(answer.members.len());
            for member in answer.members {
                let assignment = if consumer && !member.member_assignment.is_empty() {
                    assignor::decode_assignment(&member.member_assignment)?
                } else {
                    Vec::new()
                };
                members.push(MemberDescription {
                    member_id: member.member_id.to_string(),
                    instance_id: member.group_instance_id.map(|i| i.to_string()),
                    client_id: member.client_id.to_string(),
                    client_host: member.client_host.to_string(),
                    assignment,
                });
            }
            described.push(GroupDescription {
                group_id: group.to_string(),
                state,
                protocol_type: answer.protocol_type.to_string(),
                protocol: answer.protocol_data.to_string(),
                members,
            });
        }
        Ok(described)
    }

    /// Deletes `groups` and their committed offsets; fails with the first group's error
    /// (NON_EMPTY_GROUP while it has members, GROUP_ID_NOT_FOUND if unknown).
    pub async fn delete_groups(&self, groups: &[&str]) -> Result<(), Error> {
        for &group in groups {
            let response = self
                .call_coordinator(group, DELETE_GROUPS_VERSIONS, |_| {
                    DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)])
                })
                .await?;
            let result = response
                .results
                .iter()
                .find(|r| r.group_id.0.as_str() == group)
                .ok_or_else(|| Error::Protocol(format!("DeleteGroups left out {group}")))?;
            check(result.error_code, None, &format!("delete group {group}"))?;
        }
        Ok(())
    }

    /// The committed offsets of `group` (the next offset its consumers read), of
    /// `partitions` or of every partition when `None`. Partitions without a committed
    /// offset are left out; an unknown group has none.
    pub async fn list_group_offsets(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<BTreeMap<TopicPartition, i64>, Error> {
        let response = self
            .call_coordinator(
                group,
                ADMIN_OFFSET_FETCH_VERSIONS,
                |_| -> OffsetFetchRequest { offset_fetch_request(group, partitions) },
            )
            .await?;
        committed_offsets(&response)
    }

    /// Sets `group`'s committed offsets, as a client outside the group (generation -1, no
    /// member id). The coordinator refuses this while the group has members
    /// (UNKNOWN_MEMBER_ID): stop its consumers first.
    pub async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), Error> {
        if let Some((tp, offset)) = offsets.iter().find(|(_, &o)| o < 0) {
            return Err(Error::Config(format!(
                "cannot commit offset {offset} of {tp}"
            )));
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let response = self
            .call_coordinator(group, OFFSET_COMMIT_VERSIONS, |_| {
                OffsetCommitRequest::default()
                    .with_group_id(group_id(group))
                    .with_generation_id_or_member_epoch(-1)
                    .with_member_id(StrBytes::default())
                    .with_topics(commit_topics(offsets))
            })
            .await?;
        for topic in &response.topics {
            for partition in &topic.partitions {
                let context = format!(
                    "alter offset of {}-{} in group {group}",
                    topic.name.0, partition.partition_index
                );
                check(partition.error_code, None, &context)?;
            }
        }
        Ok(())
    }

    /// Deletes `group`'s committed offsets of `partitions` (OffsetDelete, KIP-496). Refused
    /// with GROUP_SUBSCRIBED_TO_TOPIC for a topic the group's members consume.
    pub async fn delete_group_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<(), Error> {
        if partitions.is_empty() {
            return Ok(());
        }
        let response = self
            .call_coordinator(group, OFFSET_DELETE_VERSIONS, |_| {
                offset_delete_request(group, partitions)
            })
            .await?;
        check(
            response.error_code,
            None,
            &format!("delete offsets of group {group}"),
        )?;
        for topic in &response.topics {
            for partition in &topic.partitions {
                let context = format!(
                    "delete offset of {}-{} in group {group}",
                    topic.name.0, partition.partition_index
                );
                check(partition.error_code, None, &context)?;
            }
        }
        Ok(())
    }

    /// The earliest or latest offset of each of `partitions`, from each leader (ListOffsets,
    /// read uncommitted).
    pub async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<TopicPartition, i64>, Error> {
        let timestamp = match spec {
            OffsetSpec::Earliest => EARLIEST_TIMESTAMP,
            OffsetSpec::Latest => LATEST_TIMESTAMP,
        };
        let unique: BTreeSet<&TopicPartition> = partitions.iter().collect();
        let mut found = BTreeMap::new();
        for tp in unique {
            let isolation = IsolationLevel::ReadUncommitted;
            let offset = list_offset(&self.network, tp, timestamp, isolation).await?;
            found.insert(tp.clone(), offset);
        }
        Ok(found)
    }

    /// Sends `build(version)` to `group`'s coordinator (see [`Admin::ask_coordinator`]).
    async fn call_coordinator<R: Request>(
        &self,
        group: &str,
        versions: (i16, i16),
        build: impl Fn(i16) -> R,
    ) -> Result<R::Response, Error>
    where
        R::Response: CoordinatorAnswer,
    {
        let (_, response) = self
            .ask_coordinator(CoordinatorType::Group, group, versions, build)
            .await?;
        Ok(response)
    }
}

impl CoordinatorAnswer for kafka_protocol::messages::DescribeGroupsResponse {
    fn coordinator_error(&self) -> Option<i16> {
        first_coordinator_error(self.groups.iter().map(|g| g.error_code))
    }
}

impl CoordinatorAnswer for kafka_protocol::messages::DeleteGroupsResponse {
    fn coordinator_error(&self) -> Option<i16> {
        first_coordinator_error(self.results.iter().map(|r| r.error_code))
    }
}

impl CoordinatorAnswer for kafka_protocol::messages::OffsetFetchResponse {
    fn coordinator_error(&self) -> Option<i16> {
        let partitions = self.topics.iter().flat_map(|t| &t.partitions);
        first_coordinator_error(
            std::iter::once(self.error_code).chain(partitions.map(|p| p.error_code)),
        )
    }
}

impl CoordinatorAnswer for kafka_protocol::messages::OffsetCommitResponse {
    fn coordinator_error(&self) -> Option<i16> {
        let partitions = self.topics.iter().flat_map(|t| &t.partitions);
        first_coordinator_error(partitions.map(|p| p.error_code))
    }
}

impl CoordinatorAnswer for kafka_protocol::messages::OffsetDeleteResponse {
    fn coordinator_error(&self) -> Option<i16> {
        first_coordinator_error(std::iter::once(self.error_code))
    }
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}

fn offset_delete_request(group: &str, partitions: &[TopicPartition]) -> OffsetDeleteRequest {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, indexes)| {
            let partitions = indexes
                .into_iter()
                .map(|p| OffsetDeleteRequestPartition::default().with_partition_index(p))
                .collect();
            OffsetDeleteRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteRequest::default()
        .with_group_id(group_id(group))
        .with_topics(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::tests::encodes;

    /// Each group request encodes in every version the admin client may pick, with only
    /// the fields that version has.
    #[test]
    fn group_admin_requests_encode_in_every_version() {
        let partitions = [TopicPartition::new("t", 0), TopicPartition::new("t", 1)];
        encodes(
            &DescribeGroupsRequest::default().with_groups(vec![group_id("g")]),
            DESCRIBE_GROUPS_VERSIONS,
            "DescribeGroups",
        );
        encodes(
            &DeleteGroupsRequest::default().with_groups_names(vec![group_id("g")]),
            DELETE_GROUPS_VERSIONS,
            "DeleteGroups",
        );
        encodes(
            &offset_delete_request("g", &partitions),
            OFFSET_DELETE_VERSIONS,
            "OffsetDelete",
        );
        for partitions in [None, Some(&partitions[..])] {
            encodes(
                &offset_fetch_request("g", partitions),
                ADMIN_OFFSET_FETCH_VERSIONS,
                "OffsetFetch",
            );
        }
        let offsets = BTreeMap::from([(TopicPartition::new("t", 0), 5)]);
        encodes(
            &OffsetCommitRequest::default()
                .with_group_id(group_id("g"))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(commit_topics(&offsets)),
            OFFSET_COMMIT_VERSIONS,
            "OffsetCommit",
        );
        let states = vec![StrBytes::from_static_str("Stable")];
        encodes(
            &ListGroupsRequest::default().with_states_filter(states),
            (4, LIST_GROUPS_VERSIONS.1),
            "ListGroups",
        );
        encodes(
            &ListGroupsRequest::default(),
            LIST_GROUPS_VERSIONS,
            "ListGroups",
        );
    }

    #[test]
    fn group_states_round_trip_their_names() {
        for name in [
            "PreparingRebalance",
            "CompletingRebalance",
            "Stable",
            "Empty",
            "Dead",
        ] {
            let state = GroupState::parse(name);
            assert!(!matches!(state, GroupState::Other(_)), "{name}");
            assert_eq!(state.as_str(), name);
        }
        assert_eq!(
            GroupState::parse("Assigning"),
            GroupState::Other("Assigning".into())
        );
    }

    #[test]
    fn coordinator_errors_are_recognised() {
        let mut response = kafka_protocol::messages::OffsetDeleteResponse::default();
        assert_eq!(response.coordinator_error(), None);
        response.error_code = ErrorCode::NotCoordinator as i16;
        assert_eq!(response.coordinator_error(), Some(16));
        response.error_code = ErrorCode::GroupIdNotFound as i16;
        assert_eq!(response.coordinator_error(), None);
    }
}

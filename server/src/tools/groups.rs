//! `brook groups`: list, describe, reset the offsets of, and delete consumer groups (like
//! `kafka-consumer-groups`).
//!
//! `describe` shows the group's state and members and, per partition, the committed offset,
//! the log end offset (high watermark) and the lag between them. `reset-offsets` commits new
//! offsets as a client outside the group (generation -1, member ""), which Kafka allows only
//! while the group is Empty; it checks the state first so the refusal is a clear one.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use brook_core::ErrorCode;
use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest, ListOffsetsRequest,
    OffsetCommitRequest, OffsetFetchRequest,
};

use super::assignor::{self, Assignment, PROTOCOL_TYPE};
use super::client::Client;
use super::consume::{list_offsets, EARLIEST, LATEST};
use super::member::{self, broker_error, group_id, Offsets};
use super::{ConnectArgs, ToolError};

/// Flags of `brook groups`.
#[derive(Args, Debug)]
pub struct GroupsArgs {
    /// Where the broker is.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: GroupsCommand,
}

/// The `brook groups` subcommands.
#[derive(Subcommand, Debug)]
pub enum GroupsCommand {
    /// List every group: id, state and protocol type.
    List,
    /// Show a group's state, members and, per partition, committed offset, log end and lag.
    Describe {
        /// The group id.
        group: String,
    },
    /// Set a group's committed offsets of one topic (the group must be Empty).
    ResetOffsets(ResetArgs),
    /// Delete a group and its committed offsets (the group must be Empty).
    Delete {
        /// The group id.
        group: String,
    },
}

/// Flags of `brook groups reset-offsets`.
#[derive(Args, Debug)]
pub struct ResetArgs {
    /// The group id.
    pub group: String,
    /// The topic whose offsets to reset.
    #[arg(long, value_name = "TOPIC")]
    pub topic: String,
    /// Reset only this partition [default: every partition of the topic].
    #[arg(long, value_name = "N")]
    pub partition: Option<i32>,
    /// Where to move the offsets.
    #[command(flatten)]
    pub target: ResetTarget,
    /// Print the new offsets without committing them.
    #[arg(long)]
    pub dry_run: bool,
}

/// Exactly one of `--to-earliest`, `--to-latest` or `--to-offset N`.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ResetTarget {
    /// Each partition's log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// Each partition's log end offset (high watermark).
    #[arg(long)]
    pub to_latest: bool,
    /// This offset, clamped to each partition's earliest..=latest.
    #[arg(long, value_name = "OFFSET")]
    pub to_offset: Option<i64>,
}

/// Runs `brook groups …`, printing results on stdout.
pub fn run(args: GroupsArgs) -> Result<(), ToolError> {
    let mut client = Client::connect(&args.connect.bootstrap)?;
    let text = match args.command {
        GroupsCommand::List => list_groups(&mut client)?,
        GroupsCommand::Describe { group } => describe_group(&mut client, &group)?,
        GroupsCommand::ResetOffsets(reset) => reset_offsets(&mut client, &reset)?,
        GroupsCommand::Delete { group } => delete_group(&mut client, &group)?,
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|source| ToolError::Io {
            what: "cannot write to stdout",
            source,
        })
}

fn list_groups(client: &mut Client) -> Result<String, ToolError> {
    let version = client.version::<ListGroupsRequest>(0, 5)?;
    let response = client.call(version, &ListGroupsRequest::default())?;
    ToolError::check(|| "list groups".to_string(), response.error_code, None)?;
    let mut rows: Vec<Vec<String>> = response
        .groups
        .iter()
        .map(|group| {
            vec![
                group.group_id.0.to_string(),
                or_dash(group.group_state.as_str()),
                or_dash(group.protocol_type.as_str()),
            ]
        })
        .collect();
    rows.sort();
    rows.insert(0, header(&["GROUP", "STATE", "PROTOCOL-TYPE"]));
    Ok(table(&rows))
}

/// DescribeGroups of one group; an unknown group (state Dead) is `None`.
fn describe(client: &mut Client, group: &str) -> Result<DescribedGroup, ToolError> {
    member::find_coordinator(client, group)?;
    let version = client.version::<DescribeGroupsRequest>(0, 5)?;
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let response = client.call(version, &request)?;
    let described = response
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == group)
        .ok_or_else(|| ToolError::Corrupt(format!("DescribeGroups omitted group {group}")))?;
    ToolError::check(|| format!("group {group}"), described.error_code, None)?;
    Ok(described)
}

/// One member as `describe` prints it.
struct MemberRow {
    member_id: String,
    client_id: String,
    host: String,
    assignment: Assignment,
}

fn describe_group(client: &mut Client, group: &str) -> Result<String, ToolError> {
    let described = describe(client, group)?;
    let fetch_version = client.version::<OffsetFetchRequest>(2, 7)?;
    let committed = member::fetch_committed(client, fetch_version, group, None)?;
    let state = described.group_state.as_str();
    if state == "Dead" && committed.is_empty() {
        return Err(broker_error(
            format!("group {group}"),
            ErrorCode::GroupIdNotFound,
        ));
    }
    let mut members = Vec::new();
    for m in &described.members {
        let assignment = if described.protocol_type.as_str() == PROTOCOL_TYPE {
            assignor::decode_assignment(&m.member_assignment).map_err(|err| {
                ToolError::Corrupt(format!("member {}: {err}", m.member_id.as_str()))
            })?
        } else {
            Assignment::new()
        };
        members.push(MemberRow {
            member_id: m.member_id.to_string(),
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
            assignment,
        });
    }
    let ends = log_end_offsets(client, &members, &committed)?;
    Ok(format_description(&described, &members, &committed, &ends))
}

/// The log end offset of every partition that is assigned or has a committed offset; a topic
/// whose offsets cannot be listed (e.g. deleted) is absent.
fn log_end_offsets(
    client: &mut Client,
    members: &[MemberRow],
    committed: &Offsets,
) -> Result<Offsets, ToolError> {
    let mut partitions: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for m in members {
        for (topic, indexes) in &m.assignment {
            partitions.entry(topic).or_default().extend(indexes);
        }
    }
    for (topic, partition) in committed.keys() {
        partitions.entry(topic).or_default().insert(*partition);
    }
    let version = client.version::<ListOffsetsRequest>(1, 7)?;
    let mut ends = Offsets::new();
    for (topic, indexes) in partitions {
        let indexes: Vec<i32> = indexes.into_iter().collect();
        match list_offsets(client, version, topic, &indexes, LATEST) {
            Ok(found) => ends.extend(found.into_iter().map(|(p, o)| ((topic.to_string(), p), o))),
            Err(ToolError::Broker { .. }) => {} // shown as "-"
            Err(err) => return Err(err),
        }
    }
    Ok(ends)
}

fn format_description(
    described: &DescribedGroup,
    members: &[MemberRow],
    committed: &Offsets,
    ends: &Offsets,
) -> String {
    let mut text = format!(
        "Group: {}\tState: {}\tProtocolType: {}\tProtocol: {}\tMembers: {}\n\n",
        described.group_id.0.as_str(),
        described.group_state.as_str(),
        or_dash(described.protocol_type.as_str()),
        or_dash(described.protocol_data.as_str()),
        members.len()
    );
    let mut owners: BTreeMap<(String, i32), &str> = BTreeMap::new();
    if members.is_empty() {
        text.push_str("No active members.\n\n");
    } else {
        let mut rows = vec![header(&["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"])];
        for m in members {
            let mut assigned = Vec::new();
            for (topic, indexes) in &m.assignment {
                for &index in indexes {
                    owners.insert((topic.clone(), index), &m.member_id);
                    assigned.push(format!("{topic}-{index}"));
                }
            }
            rows.push(vec![
                m.member_id.clone(),
                or_dash(&m.client_id),
                or_dash(&m.host),
                or_dash(&assigned.join(",")),
            ]);
        }
        text.push_str(&table(&rows));
        text.push('\n');
    }
    let mut partitions: BTreeSet<(String, i32)> = committed.keys().cloned().collect();
    partitions.extend(owners.keys().cloned());
    let mut rows = vec![header(&[
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "MEMBER-ID",
    ])];
    for key in &partitions {
        let current = committed.get(key).copied();
        let end = ends.get(key).copied();
        let lag = match (current, end) {
            (Some(current), Some(end)) => (end - current).max(0).to_string(),
            _ => "-".to_string(),
        };
        rows.push(vec![
            key.0.clone(),
            key.1.to_string(),
            current.map_or("-".to_string(), |o| o.to_string()),
            end.map_or("-".to_string(), |o| o.to_string()),
            lag,
            owners.get(key).map_or("-".to_string(), |m| m.to_string()),
        ]);
    }
    text.push_str(&table(&rows));
    text
}

fn reset_offsets(client: &mut Client, args: &ResetArgs) -> Result<String, ToolError> {
    let group = &args.group;
    let described = describe(client, group)?;
    let state = described.group_state.as_str();
    if state != "Empty" && state != "Dead" {
        return Err(ToolError::Usage(format!(
            "cannot reset the offsets of group {group}: it is {state} with {} members; \
             offsets can be reset only while the group is Empty (stop its consumers first)",
            described.members.len()
        )));
    }
    let info = super::topic_info(client, &args.topic, false)?;
    let mut partitions: Vec<i32> = info.partitions.iter().map(|p| p.index).collect();
    if let Some(partition) = args.partition {
        if !partitions.contains(&partition) {
            return Err(ToolError::Usage(format!(
                "--partition {partition}: topic {} has {} partitions",
                args.topic,
                partitions.len()
            )));
        }
        partitions = vec![partition];
    }
    let list_version = client.version::<ListOffsetsRequest>(1, 7)?;
    let earliest = list_offsets(client, list_version, &args.topic, &partitions, EARLIEST)?;
    let latest = list_offsets(client, list_version, &args.topic, &partitions, LATEST)?;
    let mut offsets = Offsets::new();
    for &partition in &partitions {
        let (low, high) = (earliest[&partition], latest[&partition]);
        let target = match (&args.target, args.target.to_offset) {
            (_, Some(offset)) => {
                let clamped = offset.clamp(low, high.max(low));
                if clamped != offset {
                    eprintln!(
                        "warning: offset {offset} is outside {}-{partition}'s {low}..={high}; \
                         using {clamped}",
                        args.topic
                    );
                }
                clamped
            }
            (target, None) if target.to_earliest => low,
            _ => high,
        };
        offsets.insert((args.topic.clone(), partition), target);
    }
    if !args.dry_run {
        let version = client.version::<OffsetCommitRequest>(2, 8)?;
        let failed = member::commit_offsets(client, version, group, (-1, ""), &offsets)?;
        if let Some((topic, partition, code)) = failed.into_iter().next() {
            return Err(broker_error(
                format!("reset the offset of {topic}-{partition} in group {group}"),
                code,
            ));
        }
    }
    let mut rows = vec![header(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"])];
    for ((topic, partition), offset) in &offsets {
        rows.push(vec![
            group.clone(),
            topic.clone(),
            partition.to_string(),
            offset.to_string(),
        ]);
    }
    Ok(table(&rows))
}

fn delete_group(client: &mut Client, group: &str) -> Result<String, ToolError> {
    member::find_coordinator(client, group)?;
    let version = client.version::<DeleteGroupsRequest>(0, 2)?;
    let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
    let response = client.call(version, &request)?;
    let result = response
        .results
        .iter()
        .find(|r| r.group_id.0.as_str() == group)
        .ok_or_else(|| ToolError::Corrupt(format!("DeleteGroups omitted group {group}")))?;
    ToolError::check(
        || format!("cannot delete group {group}"),
        result.error_code,
        None,
    )?;
    Ok(format!("Deleted group {group}.\n"))
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let last = row.len().saturating_sub(1);
        for (c, cell) in row.iter().enumerate() {
            text.push_str(cell);
            if c < last {
                let pad = widths[c] - cell.chars().count() + 2;
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::GroupId;
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn groups_table_aligns_columns() {
        let rows = vec![header(&["A", "BB", "C"]), header(&["long", "x", "y"])];
        assert_eq!(table(&rows), "A     BB  C\nlong  x   y\n");
    }

    #[test]
    fn groups_describe_shows_lag_and_owners() {
        let mut described = DescribedGroup::default();
        described.group_id = GroupId(StrBytes::from_static_str("g"));
        described.group_state = StrBytes::from_static_str("Stable");
        described.protocol_type = StrBytes::from_static_str("consumer");
        described.protocol_data = StrBytes::from_static_str("range");
        let members = vec![MemberRow {
            member_id: "m1".to_string(),
            client_id: "c".to_string(),
            host: String::new(),
            assignment: [("t".to_string(), vec![0, 1])].into(),
        }];
        let committed: Offsets = [(("t".to_string(), 0), 5)].into();
        let ends: Offsets = [(("t".to_string(), 0), 9), (("t".to_string(), 1), 3)].into();
        let text = format_description(&described, &members, &committed, &ends);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Group: g\tState: Stable\tProtocolType: consumer\tProtocol: range\tMembers: 1"
        );
        assert!(
            text.contains("m1         c          -     t-0,t-1\n"),
            "{text}"
        );
        let rows: Vec<Vec<&str>> = lines
            .iter()
            .skip_while(|l| !l.starts_with("TOPIC"))
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0], ["t", "0", "5", "9", "4", "m1"]);
        assert_eq!(rows[1], ["t", "1", "-", "3", "-", "m1"]);
    }
}

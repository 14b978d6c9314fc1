//! `brook groups`: list, describe, reset the offsets of, and delete consumer groups (like
//! `kafka-consumer-groups`).
//!
//! `describe` shows the group's state and members and, per partition, the committed offset,
//! the log end offset (high watermark) and the lag between them. `reset-offsets` commits new
//! offsets as a client outside the group (generation -1, member ""), which Kafka allows only
//! while the group is Empty; it checks the state first so the refusal is a clear one.

use std::collections::{BTreeMap, BTreeSet};

use brook_client::{blocking, ErrorCode, GroupDescription, GroupState, OffsetSpec, TopicPartition};
use clap::{Args, Subcommand};

use super::{ConnectArgs, ToolError};

/// Offsets keyed by (topic, partition).
pub type Offsets = BTreeMap<(String, i32), i64>;

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
    let admin = super::admin(&args.connect.bootstrap)?;
    let text = match args.command {
        GroupsCommand::List => list_groups(&admin)?,
        GroupsCommand::Describe { group } => describe_group(&admin, &group)?,
        GroupsCommand::ResetOffsets(reset) => reset_offsets(&admin, &reset)?,
        GroupsCommand::Delete { group } => delete_group(&admin, &group)?,
    };
    super::print(&text)
}

fn list_groups(admin: &blocking::Admin) -> Result<String, ToolError> {
    let mut rows: Vec<Vec<String>> = admin
        .list_groups(None)?
        .into_iter()
        .map(|group| {
            let state = group.state.map(|s| s.to_string()).unwrap_or_default();
            vec![
                group.group_id,
                or_dash(&state),
                or_dash(&group.protocol_type),
            ]
        })
        .collect();
    rows.sort();
    rows.insert(0, header(&["GROUP", "STATE", "PROTOCOL-TYPE"]));
    Ok(table(&rows))
}

/// The group's description; `None` if the coordinator does not know it (Dead).
fn describe(admin: &blocking::Admin, group: &str) -> Result<Option<GroupDescription>, ToolError> {
    match admin.describe_groups(&[group]) {
        Ok(mut described) => Ok(described.pop()),
        Err(err) if err.code() == ErrorCode::GroupIdNotFound => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn not_found(group: &str) -> ToolError {
    ToolError::Broker {
        what: format!("group {group}"),
        code: ErrorCode::GroupIdNotFound,
        message: None,
    }
}

fn describe_group(admin: &blocking::Admin, group: &str) -> Result<String, ToolError> {
    let described = describe(admin, group)?;
    let committed: Offsets = admin
        .list_group_offsets(group, None)?
        .into_iter()
        .map(|(tp, offset)| ((tp.topic, tp.partition), offset))
        .collect();
    let described = match described {
        Some(described) => described,
        None if committed.is_empty() => return Err(not_found(group)),
        // Offsets without a group the coordinator describes: show them under Dead.
        None => GroupDescription {
            group_id: group.to_string(),
            state: GroupState::Dead,
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        },
    };
    let ends = log_end_offsets(admin, &described, &committed)?;
    Ok(format_description(&described, &committed, &ends))
}

/// The log end offset of every partition that is assigned or has a committed offset; a topic
/// whose offsets cannot be listed (e.g. deleted) is absent.
fn log_end_offsets(
    admin: &blocking::Admin,
    described: &GroupDescription,
    committed: &Offsets,
) -> Result<Offsets, ToolError> {
    let mut partitions: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for tp in described.members.iter().flat_map(|m| &m.assignment) {
        partitions
            .entry(&tp.topic)
            .or_default()
            .insert(tp.partition);
    }
    for (topic, partition) in committed.keys() {
        partitions.entry(topic).or_default().insert(*partition);
    }
    let mut ends = Offsets::new();
    for (topic, indexes) in partitions {
        let tps: Vec<TopicPartition> = indexes
            .into_iter()
            .map(|p| TopicPartition::new(topic, p))
            .collect();
        match admin.list_offsets(&tps, OffsetSpec::Latest) {
            Ok(found) => ends.extend(
                found
                    .into_iter()
                    .map(|(tp, offset)| ((tp.topic, tp.partition), offset)),
            ),
            Err(brook_client::Error::Kafka { .. }) => {} // shown as "-"
            Err(err) => return Err(err.into()),
        }
    }
    Ok(ends)
}

fn format_description(described: &GroupDescription, committed: &Offsets, ends: &Offsets) -> String {
    let members = &described.members;
    let mut text = format!(
        "Group: {}\tState: {}\tProtocolType: {}\tProtocol: {}\tMembers: {}\n\n",
        described.group_id,
        described.state,
        or_dash(&described.protocol_type),
        or_dash(&described.protocol),
        members.len()
    );
    let mut owners: BTreeMap<(String, i32), &str> = BTreeMap::new();
    if members.is_empty() {
        text.push_str("No active members.\n\n");
    } else {
        let mut rows = vec![header(&["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"])];
        for m in members {
            let mut assigned = Vec::new();
            for tp in &m.assignment {
                owners.insert((tp.topic.clone(), tp.partition), &m.member_id);
                assigned.push(tp.to_string());
            }
            rows.push(vec![
                m.member_id.clone(),
                or_dash(&m.client_id),
                or_dash(&m.client_host),
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

fn reset_offsets(admin: &blocking::Admin, args: &ResetArgs) -> Result<String, ToolError> {
    let group = &args.group;
    if let Some(described) = describe(admin, group)? {
        if described.state != GroupState::Empty {
            return Err(ToolError::Usage(format!(
                "cannot reset the offsets of group {group}: it is {} with {} members; \
                 offsets can be reset only while the group is Empty (stop its consumers first)",
                described.state,
                described.members.len()
            )));
        }
    }
    let info = super::topic_info(admin, &args.topic, false)?;
    let mut partitions: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
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
    let tps: Vec<TopicPartition> = partitions
        .iter()
        .map(|&p| TopicPartition::new(&args.topic, p))
        .collect();
    let earliest = admin.list_offsets(&tps, OffsetSpec::Earliest)?;
    let latest = admin.list_offsets(&tps, OffsetSpec::Latest)?;
    let mut offsets = BTreeMap::new();
    for tp in &tps {
        let (low, high) = (earliest[tp], latest[tp]);
        let target = match (&args.target, args.target.to_offset) {
            (_, Some(offset)) => {
                let clamped = offset.clamp(low, high.max(low));
                if clamped != offset {
                    eprintln!(
                        "warning: offset {offset} is outside {tp}'s {low}..={high}; \
                         using {clamped}"
                    );
                }
                clamped
            }
            (target, None) if target.to_earliest => low,
            _ => high,
        };
        offsets.insert(tp.clone(), target);
    }
    if !args.dry_run {
        admin.alter_group_offsets(group, &offsets)?;
    }
    let mut rows = vec![header(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"])];
    for (tp, offset) in &offsets {
        rows.push(vec![
            group.clone(),
            tp.topic.clone(),
            tp.partition.to_string(),
            offset.to_string(),
        ]);
    }
    Ok(table(&rows))
}

fn delete_group(admin: &blocking::Admin, group: &str) -> Result<String, ToolError> {
    admin.delete_groups(&[group])?;
    Ok(format!("Deleted group {group}.\n"))
}

/// A header row of `names`.
pub(crate) fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// `text`, or "-" when it is empty (a table cell is never blank).
pub(crate) fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
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

    #[test]
    fn groups_table_aligns_columns() {
        let rows = vec![header(&["A", "BB", "C"]), header(&["long", "x", "y"])];
        assert_eq!(table(&rows), "A     BB  C\nlong  x   y\n");
    }

    #[test]
    fn groups_describe_shows_lag_and_owners() {
        let described = GroupDescription {
            group_id: "g".to_string(),
            state: GroupState::Stable,
            protocol_type: "consumer".to_string(),
            protocol: "range".to_string(),
            members: vec![brook_client::MemberDescription {
                member_id: "m1".to_string(),
                instance_id: None,
                client_id: "c".to_string(),
                client_host: String::new(),
                assignment: vec![TopicPartition::new("t", 0), TopicPartition::new("t", 1)],
            }],
        };
        let committed: Offsets = [(("t".to_string(), 0), 5)].into();
        let ends: Offsets = [(("t".to_string(), 0), 9), (("t".to_string(), 1), 3)].into();
        let text = format_description(&described, &committed, &ends);
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

//! `brook topics`: create, list, describe and delete topics (like `kafka-topics`).

use brook_client::{blocking, ConfigEntry, Error, ErrorCode, NewTopic, PartitionInfo, TopicInfo};
use clap::{Args, Subcommand};

use super::{ConnectArgs, ToolError};

/// Flags of `brook topics`.
#[derive(Args, Debug)]
pub struct TopicsArgs {
    /// Where the broker is.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: TopicsCommand,
}

/// The `brook topics` subcommands.
#[derive(Subcommand, Debug)]
pub enum TopicsCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List every topic's name, one per line.
    List,
    /// Show a topic's partitions (leader, replicas, isr) and its config overrides.
    Describe {
        /// The topic.
        name: String,
    },
    /// Delete a topic and all its data.
    Delete {
        /// The topic.
        name: String,
    },
}

/// Flags of `brook topics create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The topic's name.
    pub name: String,
    /// Number of partitions [default: the broker's num.partitions].
    #[arg(long, value_name = "N")]
    pub partitions: Option<i32>,
    /// Number of replicas of each partition [default: the broker's default].
    #[arg(long, value_name = "N")]
    pub replication_factor: Option<i16>,
    /// A topic config override, e.g. retention.ms=86400000 (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub configs: Vec<String>,
}

/// Runs `brook topics …`, printing results on stdout.
pub fn run(args: TopicsArgs) -> Result<(), ToolError> {
    let admin = super::admin(&args.connect.bootstrap)?;
    let text = match args.command {
        TopicsCommand::Create(create) => create_topic(&admin, &create)?,
        TopicsCommand::List => list_topics(&admin)?,
        TopicsCommand::Describe { name } => describe_topic(&admin, &name)?,
        TopicsCommand::Delete { name } => delete_topic(&admin, &name)?,
    };
    super::print(&text)
}

/// Splits `--config` values into (key, value) pairs.
fn parse_configs(configs: &[String]) -> Result<Vec<(String, String)>, ToolError> {
    configs
        .iter()
        .map(|config| match config.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(ToolError::Usage(format!(
                "--config {config:?} is not KEY=VALUE"
            ))),
        })
        .collect()
}

fn create_topic(admin: &blocking::Admin, args: &CreateArgs) -> Result<String, ToolError> {
    let mut topic = NewTopic::new(
        &args.name,
        args.partitions.unwrap_or(-1),
        args.replication_factor.unwrap_or(-1),
    );
    topic.configs = parse_configs(&args.configs)?;
    admin.create_topics(&[topic])?;
    Ok(format!("Created topic {}.\n", args.name))
}

fn list_topics(admin: &blocking::Admin) -> Result<String, ToolError> {
    let names = admin.list_topics()?;
    Ok(names.iter().map(|name| format!("{name}\n")).collect())
}

fn describe_topic(admin: &blocking::Admin, name: &str) -> Result<String, ToolError> {
    let info = super::topic_info(admin, name, false)?;
    let configs = match admin.describe_configs(name) {
        Ok(entries) => Some(overrides(&entries)),
        // A broker without DescribeConfigs: the description has no Configs column.
        Err(Error::Unsupported(_)) => None,
        Err(err) if err.code() == ErrorCode::UnsupportedVersion => None,
        Err(err) => return Err(err.into()),
    };
    Ok(format_description(&info, configs.as_deref()))
}

/// The topic's own config overrides as KEY=VALUE text, sorted by key; secrets hidden.
fn overrides(entries: &[ConfigEntry]) -> Vec<(String, String)> {
    let mut overrides: Vec<(String, String)> = entries
        .iter()
        .filter(|c| c.is_override)
        .map(|c| {
            let value = match (&c.value, c.is_sensitive) {
                (_, true) => "<sensitive>".to_string(),
                (Some(value), false) => value.clone(),
                (None, false) => "null".to_string(),
            };
            (c.name.clone(), value)
        })
        .collect();
    overrides.sort();
    overrides
}

/// Kafka-topics-like text: one summary line, then one line per partition.
fn format_description(info: &TopicInfo, configs: Option<&[(String, String)]>) -> String {
    let replication = info.partitions.first().map_or(0, |p| p.replicas.len());
    let mut text = format!("Topic: {}", info.name);
    if let Some(id) = &info.topic_id {
        text.push_str(&format!("\tTopicId: {id}"));
    }
    text.push_str(&format!(
        "\tPartitionCount: {}\tReplicationFactor: {replication}",
        info.partitions.len()
    ));
    if let Some(configs) = configs {
        let joined: Vec<String> = configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        text.push_str(&format!("\tConfigs: {}", joined.join(",")));
    }
    text.push('\n');
    for partition in &info.partitions {
        text.push_str(&partition_line(&info.name, partition));
        text.push('\n');
    }
    text
}

/// One partition as kafka-topics describes it (a tab first, no newline).
pub(super) fn partition_line(topic: &str, partition: &PartitionInfo) -> String {
    format!(
        "\tTopic: {topic}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
        partition.partition,
        partition.leader,
        join_ids(&partition.replicas),
        join_ids(&partition.isr),
    )
}

fn join_ids(ids: &[i32]) -> String {
    let ids: Vec<String> = ids.iter().map(i32::to_string).collect();
    ids.join(",")
}

fn delete_topic(admin: &blocking::Admin, name: &str) -> Result<String, ToolError> {
    admin.delete_topics(&[name])?;
    Ok(format!("Deleted topic {name}.\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_config_flags_must_be_key_value() {
        let parsed = parse_configs(&["retention.ms=1000".into(), "a=b=c".into()]).unwrap();
        assert_eq!(parsed[0], ("retention.ms".into(), "1000".into()));
        assert_eq!(parsed[1], ("a".into(), "b=c".into()));
        assert!(parse_configs(&["novalue".into()]).is_err());
        assert!(parse_configs(&["=x".into()]).is_err());
    }

    #[test]
    fn topics_describe_text_lists_partitions_and_configs() {
        let info = TopicInfo {
            name: "orders".into(),
            topic_id: None,
            is_internal: false,
            partitions: vec![PartitionInfo {
                partition: 0,
                leader: 1,
                leader_epoch: 0,
                replicas: vec![1],
                isr: vec![1],
            }],
        };
        let configs = [("retention.ms".to_string(), "1000".to_string())];
        let text = format_description(&info, Some(&configs));
        assert_eq!(
            text,
            "Topic: orders\tPartitionCount: 1\tReplicationFactor: 1\tConfigs: retention.ms=1000\n\
             \tTopic: orders\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\n"
        );
        assert!(!format_description(&info, None).contains("Configs"));
    }
}

//! `brook topics`: create, list, describe and delete topics (like `kafka-topics`).

use std::io::Write;

use clap::{Args, Subcommand};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::client::Client;
use super::{ConnectArgs, ToolError, TopicInfo};

/// How long the broker may take to create or delete a topic.
const ADMIN_TIMEOUT_MS: i32 = 30_000;
/// DescribeConfigs resource type of a topic.
const RESOURCE_TYPE_TOPIC: i8 = 2;
/// DescribeConfigs config source of a per-topic override (v1+).
const SOURCE_TOPIC_CONFIG: i8 = 1;
/// Kafka's `UNSUPPORTED_VERSION` error code.
const UNSUPPORTED_VERSION: i16 = 35;

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
    let mut client = Client::connect(&args.connect.bootstrap)?;
    let mut out = std::io::stdout().lock();
    let text = match args.command {
        TopicsCommand::Create(create) => create_topic(&mut client, &create)?,
        TopicsCommand::List => list_topics(&mut client)?,
        TopicsCommand::Describe { name } => describe_topic(&mut client, &name)?,
        TopicsCommand::Delete { name } => delete_topic(&mut client, &name)?,
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|source| ToolError::Io {
            what: "cannot write to stdout",
            source,
        })
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

fn create_topic(client: &mut Client, args: &CreateArgs) -> Result<String, ToolError> {
    let configs = parse_configs(&args.configs)?;
    let version = client.version::<CreateTopicsRequest>(0, 7)?;
    if version < 4 && (args.partitions.is_none() || args.replication_factor.is_none()) {
        return Err(ToolError::Usage(format!(
            "this broker speaks CreateTopics v{version}: give --partitions and --replication-factor"
        )));
    }
    let topic = CreatableTopic::default()
        .with_name(topic_name(&args.name))
        .with_num_partitions(args.partitions.unwrap_or(-1))
        .with_replication_factor(args.replication_factor.unwrap_or(-1))
        .with_configs(
            configs
                .into_iter()
                .map(|(key, value)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(key))
                        .with_value(Some(StrBytes::from_string(value)))
                })
                .collect(),
        );
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(ADMIN_TIMEOUT_MS);
    let response = client.call(version, &request)?;
    let result = response
        .topics
        .iter()
        .find(|t| t.name.0.as_str() == args.name)
        .ok_or_else(|| ToolError::Usage(format!("the broker did not answer for {}", args.name)))?;
    ToolError::check(
        || format!("cannot create topic {}", args.name),
        result.error_code,
        result.error_message.as_ref(),
    )?;
    Ok(format!("Created topic {}.\n", args.name))
}

fn list_topics(client: &mut Client) -> Result<String, ToolError> {
    let response = super::metadata(client, None, false)?;
    let mut names: Vec<String> = response
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.as_str().to_string()))
        .collect();
    names.sort();
    Ok(names.iter().map(|name| format!("{name}\n")).collect())
}

fn describe_topic(client: &mut Client, name: &str) -> Result<String, ToolError> {
    let info = super::topic_info(client, name, false)?;
    let configs = describe_configs(client, name)?;
    Ok(format_description(&info, configs.as_deref()))
}

/// Kafka-topics-like text: one summary line, then one line per partition.
fn format_description(info: &TopicInfo, configs: Option<&[(String, String)]>) -> String {
    let replication = info.partitions.first().map_or(0, |p| p.replicas.len());
    let mut text = format!("Topic: {}", info.name);
    if let Some(id) = &info.id {
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
        text.push_str(&format!(
            "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
            info.name,
            partition.index,
            partition.leader,
            join_ids(&partition.replicas),
            join_ids(&partition.isr),
        ));
        if partition.error_code != 0 {
            let code = brook_core::ErrorCode::from_code(partition.error_code);
            text.push_str(&format!("\tError: {code}"));
        }
        text.push('\n');
    }
    text
}

fn join_ids(ids: &[i32]) -> String {
    let ids: Vec<String> = ids.iter().map(i32::to_string).collect();
    ids.join(",")
}

/// The topic's config overrides, sorted by key; `None` if the broker does not serve
/// DescribeConfigs (not advertised, or answered UNSUPPORTED_VERSION).
fn describe_configs(
    client: &mut Client,
    name: &str,
) -> Result<Option<Vec<(String, String)>>, ToolError> {
    if !client.serves(ApiKey::DescribeConfigs) {
        return Ok(None);
    }
    let Ok(version) = client.version::<DescribeConfigsRequest>(0, 4) else {
        return Ok(None);
    };
    let resource = DescribeConfigsResource::default()
        .with_resource_type(RESOURCE_TYPE_TOPIC)
        .with_resource_name(StrBytes::from_string(name.to_string()))
        .with_configuration_keys(None);
    let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
    let response = client.call(version, &request)?;
    let Some(result) = response.results.first() else {
        return Ok(None);
    };
    if result.error_code == UNSUPPORTED_VERSION {
        return Ok(None);
    }
    ToolError::check(
        || format!("cannot describe the configs of topic {name}"),
        result.error_code,
        result.error_message.as_ref(),
    )?;
    let mut overrides: Vec<(String, String)> = result
        .configs
        .iter()
        .filter(|c| {
            if version >= 1 {
                c.config_source == SOURCE_TOPIC_CONFIG
            } else {
                !c.is_default
            }
        })
        .map(|c| {
            let value = match (&c.value, c.is_sensitive) {
                (_, true) => "<sensitive>".to_string(),
                (Some(value), false) => value.as_str().to_string(),
                (None, false) => "null".to_string(),
            };
            (c.name.as_str().to_string(), value)
        })
        .collect();
    overrides.sort();
    Ok(Some(overrides))
}

fn delete_topic(client: &mut Client, name: &str) -> Result<String, ToolError> {
    let version = client.version::<DeleteTopicsRequest>(0, 6)?;
    let mut request = DeleteTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS);
    if version >= 6 {
        request.topics = vec![DeleteTopicState::default().with_name(Some(topic_name(name)))];
    } else {
        request.topic_names = vec![topic_name(name)];
    }
    let response = client.call(version, &request)?;
    let result = response
        .responses
        .first()
        .ok_or_else(|| ToolError::Usage(format!("the broker did not answer for topic {name}")))?;
    ToolError::check(
        || format!("cannot delete topic {name}"),
        result.error_code,
        result.error_message.as_ref(),
    )?;
    Ok(format!("Deleted topic {name}.\n"))
}

/// A topic name for a request.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::PartitionInfo;

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
            id: None,
            partitions: vec![PartitionInfo {
                index: 0,
                leader: 1,
                replicas: vec![1],
                isr: vec![1],
                error_code: 0,
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

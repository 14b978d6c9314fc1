//! Console tools in the spirit of `kafka-topics`, `kafka-console-producer`,
//! `kafka-console-consumer` and `kafka-consumer-groups`: `brook topics`, `brook produce`,
//! `brook consume` and `brook groups`.
//!
//! They talk to a broker over the Kafka protocol like any other client, through the blocking
//! [`client::Client`]; they never open a data directory. **API boundary:** nothing here is
//! used by the broker itself. Every failure becomes a [`ToolError`], which `main` prints as
//! one `error: …` line before exiting non-zero.
//!
//! Gaps: all requests go to the bootstrap broker (fine for one node; leaders and group
//! coordinators elsewhere are not followed).

pub mod assignor;
pub mod client;
pub mod consume;
pub mod groups;
pub mod member;
pub mod produce;
pub mod topics;

use brook_core::ErrorCode;
use clap::Args;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use client::{Client, ClientError};

/// The bootstrap address every tool takes.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Broker to connect to.
    #[arg(
        long,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub bootstrap: String,
}

/// Why a console tool failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Talking to the broker failed (connection, framing, versions).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The broker answered with an error code.
    #[error("{what}: {code}{}", detail(.message))]
    Broker {
        /// What was asked, e.g. "topic orders".
        what: String,
        /// The code the broker answered.
        code: ErrorCode,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// A flag or an input value is not usable.
    #[error("{0}")]
    Usage(String),
    /// Writing to stdout or reading stdin failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The broker's answer is inconsistent or its records do not decode.
    #[error("{0}")]
    Corrupt(String),
    /// Some records were not acknowledged; each failed batch was reported on stderr.
    #[error("{failed} of {total} records failed")]
    RecordsFailed {
        /// Records in failed batches.
        failed: u64,
        /// Records read from stdin.
        total: u64,
    },
}

fn detail(message: &Option<String>) -> String {
    match message.as_deref() {
        Some(text) if !text.is_empty() => format!(": {text}"),
        _ => String::new(),
    }
}

impl ToolError {
    /// A broker error for `what`, or `Ok` when `code` is NONE.
    pub fn check(
        what: impl FnOnce() -> String,
        code: i16,
        message: Option<&StrBytes>,
    ) -> Result<(), ToolError> {
        if code == 0 {
            return Ok(());
        }
        Err(ToolError::Broker {
            what: what(),
            code: ErrorCode::from_code(code),
            message: message.map(|m| m.as_str().to_string()),
        })
    }
}

/// Metadata versions the tools speak (v4 added `allow_auto_topic_creation`).
const METADATA_VERSIONS: (i16, i16) = (4, 12);

/// One topic's partitions as Metadata describes them.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// The topic id's text; `None` when the broker sent none (nil, or Metadata before v10).
    pub id: Option<String>,
    /// Partitions in index order.
    pub partitions: Vec<PartitionInfo>,
}

/// One partition's leader and replicas.
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    /// Partition index.
    pub index: i32,
    /// Leader broker id (-1 if none).
    pub leader: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
    /// The partition's error code in the Metadata answer.
    pub error_code: i16,
}

/// Asks Metadata for `topics` (`None`: every topic).
pub fn metadata(
    client: &mut Client,
    topics: Option<&[&str]>,
    allow_auto_create: bool,
) -> Result<MetadataResponse, ToolError> {
    let version = client.version::<MetadataRequest>(METADATA_VERSIONS.0, METADATA_VERSIONS.1)?;
    let topics = topics.map(|names| {
        names
            .iter()
            .map(|name| {
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
            })
            .collect()
    });
    let request = MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(allow_auto_create);
    Ok(client.call(version, &request)?)
}

/// The partitions of one topic; an unknown topic is a [`ToolError::Broker`].
pub fn topic_info(
    client: &mut Client,
    name: &str,
    allow_auto_create: bool,
) -> Result<TopicInfo, ToolError> {
    let response = metadata(client, Some(&[name]), allow_auto_create)?;
    let topic = response
        .topics
        .into_iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
        .ok_or_else(|| ToolError::Usage(format!("the broker's metadata omits topic {name}")))?;
    ToolError::check(|| format!("topic {name}"), topic.error_code, None)?;
    let mut partitions: Vec<PartitionInfo> = topic
        .partitions
        .iter()
        .map(|p| PartitionInfo {
            index: p.partition_index,
            leader: p.leader_id.0,
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
            error_code: p.error_code,
        })
        .collect();
    partitions.sort_by_key(|p| p.index);
    let id = (!topic.topic_id.is_nil()).then(|| topic.topic_id.to_string());
    Ok(TopicInfo {
        name: name.to_string(),
        id,
        partitions,
    })
}

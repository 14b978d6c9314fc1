//! Console tools in the spirit of `kafka-topics`, `kafka-console-producer`,
//! `kafka-console-consumer`, `kafka-consumer-groups` and `kafka-transactions`: `brook topics`,
//! `brook produce`, `brook consume`, `brook groups`, `brook transactions` and `brook cluster`.
//!
//! They talk to a broker over the Kafka protocol like any other application, through
//! `brook-client`'s blocking facade (its `Admin`, `Producer` and `Consumer`); they never open
//! a data directory. **API boundary:** nothing here is used by the broker itself, and no
//! request is built here — the tools choose what to ask and format the answers. Every
//! failure becomes a [`ToolError`], which `main` prints as one `error: …` line before
//! exiting non-zero.

pub mod cluster;
pub mod consume;
pub mod groups;
pub mod produce;
pub mod rebalance;
pub mod topics;
pub mod transactions;

use brook_client::{blocking, AdminConfig, ErrorCode, TopicInfo};
use clap::Args;

/// The client id the tools send in every request header.
pub const CLIENT_ID: &str = "brook-console";

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
    /// The client failed: no connection, a timeout, or a broker error code with the
    /// client's account of what it was doing.
    #[error("{}", client_text(.0))]
    Client(#[from] brook_client::Error),
    /// The broker answered an error code about `what`.
    #[error("{what}: {code}{}", detail(.message))]
    Broker {
        /// What was asked, e.g. "topic orders".
        what: String,
        /// The code the broker answered.
        code: ErrorCode,
        /// More detail, if any.
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
    /// Some records were not acknowledged; each failure was reported on stderr.
    #[error("{failed} of {total} records failed")]
    RecordsFailed {
        /// Records that failed.
        failed: u64,
        /// Records read from stdin.
        total: u64,
    },
}

/// The client's error as one line; a connection failure says which address it was.
fn client_text(err: &brook_client::Error) -> String {
    match err {
        brook_client::Error::Connection { addr, reason } => {
            format!("cannot connect to {addr}: {reason}")
        }
        other => other.to_string(),
    }
}

fn detail(message: &Option<String>) -> String {
    match message.as_deref() {
        Some(text) if !text.is_empty() => format!(": {text}"),
        _ => String::new(),
    }
}

impl ToolError {
    /// A broker error about `what` when `err` carries a Kafka error code, else `err` itself.
    pub fn about(what: impl Into<String>, err: brook_client::Error) -> ToolError {
        match err {
            brook_client::Error::Kafka { code, .. } => ToolError::Broker {
                what: what.into(),
                code,
                message: None,
            },
            other => ToolError::Client(other),
        }
    }
}

/// A blocking admin client of the broker at `bootstrap`.
pub fn admin(bootstrap: &str) -> Result<blocking::Admin, ToolError> {
    let mut config = AdminConfig::new(bootstrap);
    config.client_id = CLIENT_ID.to_string();
    Ok(blocking::Admin::new(config)?)
}

/// The partitions of one topic; an unknown topic is a [`ToolError::Broker`] about
/// "topic NAME". With `allow_auto_create` the broker may create it (as for producers).
pub fn topic_info(
    admin: &blocking::Admin,
    name: &str,
    allow_auto_create: bool,
) -> Result<TopicInfo, ToolError> {
    admin
        .topic_metadata(name, allow_auto_create)
        .map_err(|err| ToolError::about(format!("topic {name}"), err))
}

/// Writes `text` to stdout and flushes it.
pub fn print(text: &str) -> Result<(), ToolError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|source| ToolError::Io {
            what: "cannot write to stdout",
            source,
        })
}

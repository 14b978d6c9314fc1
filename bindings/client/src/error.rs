//! The client's error type: a Kafka error code from the broker, or a failure on this side
//! (connection, encoding, configuration, timeout), each either retriable or permanent.

use brook_core::ErrorCode;

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The broker answered with a Kafka error code.
    #[error("{code}: {message}")]
    Kafka {
        /// The wire error code.
        code: ErrorCode,
        /// The broker's message, or what the client was doing.
        message: String,
    },
    /// No connection to a broker could be made or kept (refused, reset, closed).
    #[error("connection to {addr} failed: {reason}")]
    Connection {
        /// The broker's address.
        addr: String,
        /// What the socket reported.
        reason: String,
    },
    /// A request or response did not fit the protocol (encoder refusal, malformed answer).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker serves no version of an API this client speaks.
    #[error("the broker does not support {0}")]
    Unsupported(String),
    /// A record batch from the broker failed its CRC or did not decode.
    #[error("corrupt record batch in {topic}-{partition}: {reason}")]
    Corrupt {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What was wrong.
        reason: String,
    },
    /// A configuration value is out of range or unknown.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The call does not fit the client's state (seeking a partition that is not assigned).
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// The operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The client was closed (or its background task stopped) before the call finished.
    #[error("the client is closed")]
    Closed,
}

impl Error {
    /// An error for a broker's nonzero error code, with an optional broker message.
    pub fn kafka(code: i16, message: impl Into<String>) -> Error {
        Error::Kafka {
            code: ErrorCode::from_code(code),
            message: message.into(),
        }
    }

    /// The Kafka error code this error carries (`UnknownServerError` for client-side errors,
    /// `NetworkException` for connection failures, `RequestTimedOut` for timeouts).
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Kafka { code, .. } => *code,
            Error::Connection { .. } => ErrorCode::NetworkException,
            Error::Timeout(_) => ErrorCode::RequestTimedOut,
            Error::Corrupt { .. } => ErrorCode::CorruptMessage,
            Error::Unsupported(_) => ErrorCode::UnsupportedVersion,
            Error::Config(_) => ErrorCode::InvalidConfig,
            Error::InvalidState(_) => ErrorCode::InvalidRequest,
            Error::Protocol(_) | Error::Closed => ErrorCode::UnknownServerError,
        }
    }

    /// Whether trying the same call again may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => code.is_retriable(),
            Error::Connection { .. } | Error::Timeout(_) | Error::Corrupt { .. } => true,
            Error::Protocol(_)
            | Error::Unsupported(_)
            | Error::Config(_)
            | Error::InvalidState(_)
            | Error::Closed => false,
        }
    }

    /// Whether the error means the client's metadata (leaders, partitions) may be stale.
    pub fn invalidates_metadata(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => matches!(
                code,
                ErrorCode::NotLeaderOrFollower
                    | ErrorCode::UnknownTopicOrPartition
                    | ErrorCode::LeaderNotAvailable
                    | ErrorCode::FencedLeaderEpoch
                    | ErrorCode::UnknownLeaderEpoch
                    | ErrorCode::BrokerNotAvailable
                    | ErrorCode::NotController
            ),
            Error::Connection { .. } | Error::Timeout(_) => true,
            _ => false,
        }
    }
}

/// Turns a broker's error code into `Ok(())` when it is zero.
pub(crate) fn check(code: i16, message: Option<&str>, context: &str) -> Result<(), Error> {
    if code == 0 {
        return Ok(());
    }
    let message = match message {
        Some(m) if !m.is_empty() => format!("{context}: {m}"),
        _ => context.to_string(),
    };
    Err(Error::kafka(code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_and_permanent_errors() {
        let not_leader = Error::kafka(6, "x");
        assert_eq!(not_leader.code(), ErrorCode::NotLeaderOrFollower);
        assert!(not_leader.is_retriable());
        assert!(not_leader.invalidates_metadata());
        let exists = Error::kafka(36, "x");
        assert!(!exists.is_retriable());
        assert!(!exists.invalidates_metadata());
        let reset = Error::Connection {
            addr: "a:1".into(),
            reason: "reset".into(),
        };
        assert!(reset.is_retriable());
        assert_eq!(reset.code(), ErrorCode::NetworkException);
        assert!(!Error::Closed.is_retriable());
        assert!(check(0, None, "ok").is_ok());
        assert_eq!(
            check(3, Some("gone"), "t-0").unwrap_err().to_string(),
            "UNKNOWN_TOPIC_OR_PARTITION (3): t-0: gone"
        );
    }
}

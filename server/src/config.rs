//! The `brook server` settings: command-line flags, each also settable in a TOML file given
//! with `--config FILE` (flags win over the file, the file over the embedded defaults).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Settings from the TOML file; every field optional, named like the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Where partition logs and metadata live.
    pub data_dir: Option<PathBuf>,
    /// Address to listen on.
    pub listen: Option<String>,
    /// Address clients are told to connect to.
    pub advertised_listen: Option<String>,
    /// This broker's node id.
    pub node_id: Option<i32>,
    /// Partitions of auto-created topics.
    pub num_partitions: Option<i32>,
    /// Replication factor of new topics.
    pub default_replication_factor: Option<i16>,
    /// Whether Metadata creates unknown topics.
    pub auto_create_topics: Option<bool>,
    /// tracing filter (error, warn, info, debug, trace or a directive list).
    pub log_level: Option<String>,
    /// The largest request frame accepted, in bytes (`socket.request.max.bytes`).
    pub socket_request_max_bytes: Option<usize>,
    /// The most client connections served at once.
    pub connections_max: Option<usize>,
    /// Send fetched records with sendfile(2) (true) or read + write (false).
    pub sendfile: Option<bool>,
}

/// The resolved settings the server runs with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where partition logs and metadata live.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Host clients are told to connect to.
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: u16,
    /// This broker's node id.
    pub node_id: i32,
    /// Partitions of auto-created topics.
    pub num_partitions: i32,
    /// Replication factor of new topics.
    pub default_replication_factor: i16,
    /// Whether Metadata creates unknown topics.
    pub auto_create_topics: bool,
    /// tracing filter.
    pub log_level: String,
    /// The largest request frame accepted, in bytes.
    pub request_bytes_max: usize,
    /// The most client connections served at once.
    pub connections_max: usize,
    /// Send fetched records with sendfile(2) (true) or read + write (false).
    pub sendfile: bool,
}

/// A setting that cannot be used, with the flag or file that gave it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML file does not parse or names an unknown setting.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid {name}: {message}")]
    Invalid {
        /// The setting's flag name.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl FileConfig {
    /// Reads and parses a TOML config file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|err| ConfigError::Parse {
            path: path.to_path_buf(),
            message: err.to_string(),
        })
    }

    /// Fills unset fields of `self` from `lower` (flags over file).
    pub fn or(self, lower: FileConfig) -> FileConfig {
        FileConfig {
            data_dir: self.data_dir.or(lower.data_dir),
            listen: self.listen.or(lower.listen),
            advertised_listen: self.advertised_listen.or(lower.advertised_listen),
            node_id: self.node_id.or(lower.node_id),
            num_partitions: self.num_partitions.or(lower.num_partitions),
            default_replication_factor: self
                .default_replication_factor
                .or(lower.default_replication_factor),
            auto_create_topics: self.auto_create_topics.or(lower.auto_create_topics),
            log_level: self.log_level.or(lower.log_level),
            socket_request_max_bytes: self
                .socket_request_max_bytes
                .or(lower.socket_request_max_bytes),
            connections_max: self.connections_max.or(lower.connections_max),
            sendfile: self.sendfile.or(lower.sendfile),
        }
    }

    /// Applies the embedded defaults and checks every value.
    pub fn resolve(self) -> Result<ServerConfig, ConfigError> {
        let listen_text = self.listen.unwrap_or_else(|| "127.0.0.1:9092".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| ConfigError::Invalid {
            name: "--listen",
            message: format!("{listen_text:?} is not HOST:PORT with a numeric IP address"),
        })?;
        let advertised = self.advertised_listen.unwrap_or_else(|| listen.to_string());
        let (host, port) = advertised
            .rsplit_once(':')
            .ok_or_else(|| ConfigError::Invalid {
                name: "--advertised-listen",
                message: format!("{advertised:?} is not HOST:PORT"),
            })?;
        let port: u16 = port.parse().map_err(|_| ConfigError::Invalid {
            name: "--advertised-listen",
            message: format!("port {port:?} is not a number"),
        })?;
        let host = if host == "0.0.0.0" || host.is_empty() {
            "127.0.0.1"
        } else {
            host
        };
        let positive = |name: &'static str, value: i64| {
            if value < 1 {
                Err(ConfigError::Invalid {
                    name,
                    message: format!("{value} must be at least 1"),
                })
            } else {
                Ok(())
            }
        };
        let num_partitions = self.num_partitions.unwrap_or(1);
        positive("--num-partitions", i64::from(num_partitions))?;
        let replication = self.default_replication_factor.unwrap_or(1);
        positive("--default-replication-factor", i64::from(replication))?;
        let node_id = self.node_id.unwrap_or(1);
        if node_id < 0 {
            return Err(ConfigError::Invalid {
                name: "--node-id",
                message: "must be ≥ 0".into(),
            });
        }
        let request_bytes_max = self.socket_request_max_bytes.unwrap_or(100 * 1024 * 1024);
        positive("socket-request-max-bytes", request_bytes_max as i64)?;
        Ok(ServerConfig {
            data_dir: self
                .data_dir
                .unwrap_or_else(|| PathBuf::from("./brook-data")),
            listen,
            advertised_host: host.trim_matches(['[', ']']).to_string(),
            advertised_port: port,
            node_id,
            num_partitions,
            default_replication_factor: replication,
            auto_create_topics: self.auto_create_topics.unwrap_or(true),
            log_level: self.log_level.unwrap_or_else(|| "info".into()),
            request_bytes_max,
            connections_max: self.connections_max.unwrap_or(10_000),
            sendfile: self.sendfile.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_are_the_embedded_ones() {
        let config = FileConfig::default().resolve().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(config.data_dir, PathBuf::from("./brook-data"));
        assert_eq!(
            (config.advertised_host.as_str(), config.advertised_port),
            ("127.0.0.1", 9092)
        );
        assert!(config.auto_create_topics);
    }

    #[test]
    fn config_flags_win_over_the_file_and_bad_values_name_the_flag() {
        let file: FileConfig =
            toml::from_str("listen = \"127.0.0.1:1\"\nnum-partitions = 3").unwrap();
        let flags = FileConfig {
            listen: Some("127.0.0.1:2".into()),
            ..FileConfig::default()
        };
        let config = flags.or(file).resolve().unwrap();
        assert_eq!((config.listen.port(), config.num_partitions), (2, 3));
        let bad = FileConfig {
            num_partitions: Some(0),
            ..FileConfig::default()
        };
        assert!(bad
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("--num-partitions"));
        assert!(toml::from_str::<FileConfig>("no-such = 1").is_err());
    }
}

//! The `brook server` settings: command-line flags, each also settable in a TOML file given
//! with `--config FILE` (flags win over the file, the file over the embedded defaults).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use brook_core::group::GroupConfig;
use serde::Deserialize;

/// The most partitions `__consumer_offsets` may be created with (as for any topic).
const OFFSETS_TOPIC_PARTITIONS_MAX: i32 = 10_000;
/// The default partition count of `__consumer_offsets` (Kafka's).
const OFFSETS_TOPIC_PARTITIONS_DEFAULT: i32 = 50;

/// Settings from the TOML file; every field optional, named like the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Where partition logs and metadata live.
    pub data_dir: Option<PathBuf>,
    /// Address to listen on.
    pub listen: Option<String>,
    /// Address clients are told to connect to.
    #[serde(alias = "advertised-listener")]
    pub advertised_listen: Option<String>,
    /// This broker's node id.
    pub node_id: Option<i32>,
    /// The metadata quorum's voters, `ID@HOST:PORT,...` (their controller listeners): set,
    /// the node is a cluster member; unset, a single broker.
    pub voters: Option<String>,
    /// Address this node's controller (peer) listener binds [default: its entry in voters;
    /// a node that is not a voter must give it].
    pub controller_listen: Option<String>,
    /// `broker.session.timeout.ms`: a node silent this long is fenced and loses leadership.
    pub broker_session_timeout_ms: Option<i64>,
    /// `broker.heartbeat.interval.ms`: how often a node heartbeats to the controller.
    pub broker_heartbeat_interval_ms: Option<i64>,
    /// `controller.quorum.election.timeout.ms`: how long a voter hears nothing from the
    /// quorum's leader before it stands for election.
    pub controller_quorum_election_timeout_ms: Option<i64>,
    /// `auto.leader.rebalance.enable`: the controller moves leadership back to preferred
    /// replicas.
    pub auto_leader_rebalance_enable: Option<bool>,
    /// `leader.imbalance.check.interval.seconds`: how often the controller checks.
    pub leader_imbalance_check_interval_seconds: Option<i64>,
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
    /// `offsets.retention.minutes`: how long committed offsets outlive their group.
    pub offsets_retention_minutes: Option<i32>,
    /// `offsets.retention.check.interval.ms`: how often expired offsets are looked for.
    pub offsets_retention_check_interval_ms: Option<i64>,
    /// `group.min.session.timeout.ms`: the shortest session timeout a member may ask for.
    pub group_min_session_timeout_ms: Option<i32>,
    /// `group.max.session.timeout.ms`: the longest session timeout a member may ask for.
    pub group_max_session_timeout_ms: Option<i32>,
    /// `group.initial.rebalance.delay.ms`: how long a new group's first rebalance waits.
    pub group_initial_rebalance_delay_ms: Option<i32>,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when created.
    pub offsets_topic_num_partitions: Option<i32>,
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
    /// Set when the node is a cluster member.
    pub cluster: Option<ClusterSettings>,
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
    /// The group coordinator's timeouts, limits and offset retention.
    pub group: GroupConfig,
    /// Partitions of `__consumer_offsets` when it is created.
    pub offsets_topic_partitions: i32,
}

/// How a cluster member reaches the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The quorum's voters: node id → controller listener address, in id order.
    pub voters: Vec<(i32, String)>,
    /// The address the controller (peer) listener binds.
    pub controller_listen: SocketAddr,
    /// Whether this node is one of the voters (else a broker only, an observer of the
    /// metadata log).
    pub voter: bool,
    /// The address other nodes dial for peer messages: a voter's entry in the voters list,
    /// or a broker's controller listener (its host replaced by the advertised host when it
    /// binds every interface).
    pub peer_address: String,
    /// `broker.session.timeout.ms`.
    pub session_timeout_ms: i64,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i64,
    /// `controller.quorum.election.timeout.ms`.
    pub election_timeout_ms: i64,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`, in milliseconds.
    pub imbalance_check_interval_ms: i64,
}

impl ClusterSettings {
    /// The cluster id every node derives from the voters list (22 characters like Kafka's):
    /// nodes started with the same voters form one cluster, and a data directory written
    /// for other voters is refused.
    pub fn cluster_id(&self) -> String {
        let text: Vec<String> = self
            .voters
            .iter()
            .map(|(id, addr)| format!("{id}@{addr}"))
            .collect();
        // Four chained CRCs of the list: 128 bits that differ whenever the list does.
        let mut words = [crc32c::crc32c(text.join(",").as_bytes()); 4];
        for i in 1..4 {
            words[i] = crc32c::crc32c_append(words[i - 1], b"brook");
        }
        let bits = words
            .iter()
            .fold(0u128, |bits, w| bits << 32 | u128::from(*w));
        let id = uuid::Uuid::from_u128(bits);
        id.as_simple().to_string()[..22].to_string()
    }
}

/// Parses `ID@HOST:PORT,...`: ids at least 0 and unique, addresses unique.
pub fn parse_voters(text: &str) -> Result<Vec<(i32, String)>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        name: "--voters",
        message,
    };
    let mut voters: Vec<(i32, String)> = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| invalid(format!("{entry:?} is not ID@HOST:PORT")))?;
        let id: i32 = id
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| invalid(format!("{entry:?}: node id {id:?} is not a number ≥ 0")))?;
        let port = addr
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p > 0) {
            return Err(invalid(format!("{entry:?}: {addr:?} is not HOST:PORT")));
        }
        if voters.iter().any(|(other, _)| *other == id) {
            return Err(invalid(format!("node id {id} is listed twice")));
        }
        if voters.iter().any(|(_, other)| other == addr) {
            return Err(invalid(format!("address {addr} is listed twice")));
        }
        voters.push((id, addr.to_string()));
    }
    voters.sort();
    Ok(voters)
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
            voters: self.voters.or(lower.voters),
            controller_listen: self.controller_listen.or(lower.controller_listen),
            broker_session_timeout_ms: self
                .broker_session_timeout_ms
                .or(lower.broker_session_timeout_ms),
            broker_heartbeat_interval_ms: self
                .broker_heartbeat_interval_ms
                .or(lower.broker_heartbeat_interval_ms),
            controller_quorum_election_timeout_ms: self
                .controller_quorum_election_timeout_ms
                .or(lower.controller_quorum_election_timeout_ms),
            auto_leader_rebalance_enable: self
                .auto_leader_rebalance_enable
                .or(lower.auto_leader_rebalance_enable),
            leader_imbalance_check_interval_seconds: self
                .leader_imbalance_check_interval_seconds
                .or(lower.leader_imbalance_check_interval_seconds),
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
            offsets_retention_minutes: self
                .offsets_retention_minutes
                .or(lower.offsets_retention_minutes),
            offsets_retention_check_interval_ms: self
                .offsets_retention_check_interval_ms
                .or(lower.offsets_retention_check_interval_ms),
            group_min_session_timeout_ms: self
                .group_min_session_timeout_ms
                .or(lower.group_min_session_timeout_ms),
            group_max_session_timeout_ms: self
                .group_max_session_timeout_ms
                .or(lower.group_max_session_timeout_ms),
            group_initial_rebalance_delay_ms: self
                .group_initial_rebalance_delay_ms
                .or(lower.group_initial_rebalance_delay_ms),
            offsets_topic_num_partitions: self
                .offsets_topic_num_partitions
                .or(lower.offsets_topic_num_partitions),
        }
    }

    /// The group settings with Kafka's defaults (but the initial rebalance delay, see
    /// [`GroupConfig::initial_rebalance_delay_ms`]), each checked.
    fn resolve_group(&self) -> Result<(GroupConfig, i32), ConfigError> {
        let defaults = GroupConfig::default();
        let invalid = |name: &'static str, message: String| ConfigError::Invalid { name, message };
        let retention_minutes = match self.offsets_retention_minutes {
            Some(minutes) if minutes < 1 => {
                return Err(invalid(
                    "--offsets-retention-minutes",
                    format!("{minutes} must be at least 1"),
                ))
            }
            Some(minutes) => i64::from(minutes),
            None => defaults.offsets_retention_ms / 60_000,
        };
        let check_interval_ms = self
            .offsets_retention_check_interval_ms
            .unwrap_or(defaults.offsets_retention_check_interval_ms);
        if check_interval_ms < 1 {
            return Err(invalid(
                "--offsets-retention-check-interval-ms",
                format!("{check_interval_ms} must be at least 1"),
            ));
        }
        let session_min = self
            .group_min_session_timeout_ms
            .unwrap_or(defaults.session_timeout_ms_min);
        let session_max = self
            .group_max_session_timeout_ms
            .unwrap_or(defaults.session_timeout_ms_max);
        if session_min < 1 {
            return Err(invalid(
                "--group-min-session-timeout-ms",
                format!("{session_min} must be at least 1"),
            ));
        }
        if session_max < session_min {
            return Err(invalid(
                "--group-max-session-timeout-ms",
                format!("{session_max} is below --group-min-session-timeout-ms ({session_min})"),
            ));
        }
        let delay_ms = self
            .group_initial_rebalance_delay_ms
            .unwrap_or(defaults.initial_rebalance_delay_ms);
        if delay_ms < 0 {
            return Err(invalid(
                "--group-initial-rebalance-delay-ms",
                format!("{delay_ms} must not be negative"),
            ));
        }
        let partitions = self
            .offsets_topic_num_partitions
            .unwrap_or(OFFSETS_TOPIC_PARTITIONS_DEFAULT);
        if !(1..=OFFSETS_TOPIC_PARTITIONS_MAX).contains(&partitions) {
            return Err(invalid(
                "--offsets-topic-num-partitions",
                format!("{partitions} is not in 1..={OFFSETS_TOPIC_PARTITIONS_MAX}"),
            ));
        }
        let group = GroupConfig {
            session_timeout_ms_min: session_min,
            session_timeout_ms_max: session_max,
            initial_rebalance_delay_ms: delay_ms,
            offsets_retention_ms: retention_minutes * 60_000,
            offsets_retention_check_interval_ms: check_interval_ms,
            ..defaults
        };
        Ok((group, partitions))
    }

    /// The cluster settings, when `voters` is set: a node among the voters votes; any other
    /// is a broker only and must name its controller (peer) listener.
    fn resolve_cluster(&self, node_id: i32) -> Result<Option<ClusterSettings>, ConfigError> {
        let Some(text) = &self.voters else {
            if self.controller_listen.is_some() {
                return Err(ConfigError::Invalid {
                    name: "--controller-listen",
                    message: "needs --voters (a single broker has no controller listener)".into(),
                });
            }
            return Ok(None);
        };
        let voters = parse_voters(text)?;
        let own = voters.iter().find(|(id, _)| *id == node_id);
        let listen_text = match (&self.controller_listen, own) {
            (Some(text), _) => text.clone(),
            (None, Some((_, own))) => own.clone(),
            (None, None) => {
                let ids: Vec<String> = voters.iter().map(|(id, _)| id.to_string()).collect();
                return Err(ConfigError::Invalid {
                    name: "--controller-listen",
                    message: format!(
                        "node {node_id} is not among the voters ({}), so it joins as a broker \
                         only and needs --controller-listen HOST:PORT for its peers",
                        ids.join(", ")
                    ),
                });
            }
        };
        if own.is_none() && voters.iter().any(|(_, addr)| *addr == listen_text) {
            return Err(ConfigError::Invalid {
                name: "--controller-listen",
                message: format!("{listen_text} is a voter's address in --voters"),
            });
        }
        let controller_listen: SocketAddr =
            resolve_addr(&listen_text).ok_or_else(|| ConfigError::Invalid {
                name: "--controller-listen",
                message: format!("{listen_text:?} is not HOST:PORT of this machine"),
            })?;
        let session_timeout_ms = self.broker_session_timeout_ms.unwrap_or(9_000);
        let heartbeat_interval_ms = self.broker_heartbeat_interval_ms.unwrap_or(2_000);
        if heartbeat_interval_ms < 1 || session_timeout_ms <= heartbeat_interval_ms {
            return Err(ConfigError::Invalid {
                name: "--broker-session-timeout-ms",
                message: format!(
                    "{session_timeout_ms} must exceed --broker-heartbeat-interval-ms \
                     ({heartbeat_interval_ms}, at least 1)"
                ),
            });
        }
        let election_timeout_ms = self.controller_quorum_election_timeout_ms.unwrap_or(1_000);
        if !(100..=60_000).contains(&election_timeout_ms) {
            return Err(ConfigError::Invalid {
                name: "--controller-quorum-election-timeout-ms",
                message: format!("{election_timeout_ms} is not in 100..=60000"),
            });
        }
        let interval_s = self.leader_imbalance_check_interval_seconds.unwrap_or(300);
        if !(1..=86_400 * 365).contains(&interval_s) {
            return Err(ConfigError::Invalid {
                name: "--leader-imbalance-check-interval-seconds",
                message: format!("{interval_s} is not in 1..=31536000"),
            });
        }
        let peer_address = match own {
            Some((_, own)) => own.clone(),
            None => listen_text,
        };
        Ok(Some(ClusterSettings {
            voter: own.is_some(),
            peer_address,
            voters,
            controller_listen,
            session_timeout_ms,
            heartbeat_interval_ms,
            election_timeout_ms,
            auto_leader_rebalance: self.auto_leader_rebalance_enable.unwrap_or(true),
            imbalance_check_interval_ms: interval_s * 1_000,
        }))
    }

    /// Applies the embedded defaults and checks every value.
    pub fn resolve(self) -> Result<ServerConfig, ConfigError> {
        let (group, offsets_topic_partitions) = self.resolve_group()?;
        let node_id = self.node_id.unwrap_or(1);
        if node_id < 0 {
            return Err(ConfigError::Invalid {
                name: "--node-id",
                message: "must be ≥ 0".into(),
            });
        }
        let cluster = self.resolve_cluster(node_id)?;
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
        let mut cluster = cluster;
        if let Some(settings) = cluster
            .as_mut()
            .filter(|s| s.controller_listen.ip().is_unspecified())
        {
            if !settings.voter {
                // Bound to every interface: peers reach it where clients do.
                let port = settings.controller_listen.port();
                settings.peer_address = format!("{host}:{port}");
            }
        }
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
            cluster,
            num_partitions,
            default_replication_factor: replication,
            auto_create_topics: self.auto_create_topics.unwrap_or(true),
            log_level: self.log_level.unwrap_or_else(|| "info".into()),
            request_bytes_max,
            connections_max: self.connections_max.unwrap_or(10_000),
            sendfile: self.sendfile.unwrap_or(true),
            group,
            offsets_topic_partitions,
        })
    }
}

/// A `HOST:PORT` as a socket address (a host name is looked up).
pub fn resolve_addr(text: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs().ok()?.next()
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

    #[test]
    fn config_group_settings_default_to_kafka_and_come_from_flags_or_file() {
        let config = FileConfig::default().resolve().unwrap();
        assert_eq!(config.group.offsets_retention_ms, 7 * 24 * 60 * 60 * 1000);
        assert_eq!(config.group.offsets_retention_check_interval_ms, 600_000);
        assert_eq!(config.group.session_timeout_ms_min, 6_000);
        assert_eq!(config.group.session_timeout_ms_max, 1_800_000);
        assert_eq!(config.group.initial_rebalance_delay_ms, 0);
        assert_eq!(config.offsets_topic_partitions, 50);
        let file: FileConfig = toml::from_str(
            "offsets-retention-minutes = 60\n\
             offsets-retention-check-interval-ms = 5000\n\
             group-min-session-timeout-ms = 1000\n\
             group-max-session-timeout-ms = 60000\n\
             group-initial-rebalance-delay-ms = 3000\n\
             offsets-topic-num-partitions = 8",
        )
        .unwrap();
        let flags = FileConfig {
            offsets_retention_minutes: Some(1),
            ..FileConfig::default()
        };
        let config = flags.or(file).resolve().unwrap();
        assert_eq!(config.group.offsets_retention_ms, 60_000, "the flag wins");
        assert_eq!(config.group.offsets_retention_check_interval_ms, 5_000);
        assert_eq!(config.group.session_timeout_ms_min, 1_000);
        assert_eq!(config.group.session_timeout_ms_max, 60_000);
        assert_eq!(config.group.initial_rebalance_delay_ms, 3_000);
        assert_eq!(config.offsets_topic_partitions, 8);
    }

    #[test]
    fn config_bad_group_settings_name_their_flag() {
        let cases = [
            (
                FileConfig {
                    offsets_retention_minutes: Some(0),
                    ..FileConfig::default()
                },
                "--offsets-retention-minutes",
            ),
            (
                FileConfig {
                    offsets_retention_check_interval_ms: Some(0),
                    ..FileConfig::default()
                },
                "--offsets-retention-check-interval-ms",
            ),
            (
                FileConfig {
                    group_min_session_timeout_ms: Some(0),
                    ..FileConfig::default()
                },
                "--group-min-session-timeout-ms",
            ),
            (
                FileConfig {
                    group_max_session_timeout_ms: Some(5_000),
                    ..FileConfig::default()
                },
                "--group-max-session-timeout-ms",
            ),
            (
                FileConfig {
                    group_initial_rebalance_delay_ms: Some(-1),
                    ..FileConfig::default()
                },
                "--group-initial-rebalance-delay-ms",
            ),
            (
                FileConfig {
                    offsets_topic_num_partitions: Some(0),
                    ..FileConfig::default()
                },
                "--offsets-topic-num-partitions",
            ),
        ];
        for (config, flag) in cases {
            let message = config.resolve().unwrap_err().to_string();
            assert!(message.contains(flag), "{message} names {flag}");
        }
    }

    fn cluster(node_id: i32, voters: &str) -> Result<ServerConfig, ConfigError> {
        FileConfig {
            node_id: Some(node_id),
            voters: Some(voters.into()),
            ..FileConfig::default()
        }
        .resolve()
    }

    #[test]
    fn config_voters_make_a_cluster_member_and_bad_lists_are_refused() {
        let config = cluster(2, "2@127.0.0.1:9194, 1@127.0.0.1:9193").expect("valid");
        let settings = config.cluster.expect("a cluster member");
        assert_eq!(
            settings.voters,
            [(1, "127.0.0.1:9193".into()), (2, "127.0.0.1:9194".into())]
        );
        assert_eq!(settings.controller_listen.to_string(), "127.0.0.1:9194");
        assert_eq!(settings.cluster_id().len(), 22);
        let same = cluster(1, "1@127.0.0.1:9193,2@127.0.0.1:9194").unwrap();
        assert_eq!(same.cluster.unwrap().cluster_id(), settings.cluster_id());
        assert!(FileConfig::default().resolve().unwrap().cluster.is_none());

        let refused = [
            (
                cluster(1, "1@127.0.0.1:1,1@127.0.0.1:2"),
                "node id 1 is listed twice",
            ),
            (
                cluster(1, "1@127.0.0.1:1,2@127.0.0.1:1"),
                "address 127.0.0.1:1 is listed twice",
            ),
            (cluster(1, "1=127.0.0.1:1"), "is not ID@HOST:PORT"),
            (cluster(1, "x@127.0.0.1:1"), "is not a number"),
            (cluster(1, "1@127.0.0.1"), "is not HOST:PORT"),
            (
                cluster(3, "1@127.0.0.1:1,2@127.0.0.1:2"),
                "node 3 is not among the voters (1, 2), so it joins as a broker only and \
                 needs --controller-listen",
            ),
            (
                FileConfig {
                    node_id: Some(3),
                    voters: Some("1@127.0.0.1:1,2@127.0.0.1:2".into()),
                    controller_listen: Some("127.0.0.1:2".into()),
                    ..FileConfig::default()
                }
                .resolve(),
                "127.0.0.1:2 is a voter's address",
            ),
        ];
        for (result, message) in refused {
            let err = result.expect_err(message).to_string();
            assert!(err.contains(message), "{err}");
        }
        let lonely = FileConfig {
            controller_listen: Some("127.0.0.1:1".into()),
            ..FileConfig::default()
        };
        let err = lonely.resolve().unwrap_err().to_string();
        assert!(
            err.contains("--controller-listen") && err.contains("--voters"),
            "{err}"
        );
    }

    #[test]
    fn config_a_node_outside_the_voters_is_a_broker_with_its_own_peer_address() {
        let voters = "1@127.0.0.1:9193,2@127.0.0.1:9194,3@127.0.0.1:9195";
        let broker = |listen: &str| FileConfig {
            node_id: Some(4),
            voters: Some(voters.into()),
            controller_listen: Some(listen.into()),
            advertised_listen: Some("10.0.0.4:9092".into()),
            ..FileConfig::default()
        };
        let settings = broker("127.0.0.1:9196").resolve().unwrap().cluster.unwrap();
        assert!(!settings.voter);
        assert_eq!(settings.peer_address, "127.0.0.1:9196");
        let voter = cluster(1, voters).unwrap().cluster.unwrap();
        assert!(voter.voter);
        assert_eq!(voter.peer_address, "127.0.0.1:9193");
        assert_eq!(settings.cluster_id(), voter.cluster_id(), "one cluster");
        let everywhere = broker("0.0.0.0:9196").resolve().unwrap().cluster.unwrap();
        assert_eq!(everywhere.peer_address, "10.0.0.4:9196");
    }

    #[test]
    fn config_leader_rebalance_defaults_to_kafka_and_bad_intervals_name_their_flag() {
        let voters = "1@127.0.0.1:9193";
        let settings = cluster(1, voters).unwrap().cluster.unwrap();
        assert!(settings.auto_leader_rebalance);
        assert_eq!(settings.imbalance_check_interval_ms, 300_000);
        let file: FileConfig = toml::from_str(
            "node-id = 1\nvoters = \"1@127.0.0.1:9193\"\n\
             auto-leader-rebalance-enable = false\n\
             leader-imbalance-check-interval-seconds = 5",
        )
        .unwrap();
        let settings = file.resolve().unwrap().cluster.unwrap();
        assert!(!settings.auto_leader_rebalance);
        assert_eq!(settings.imbalance_check_interval_ms, 5_000);
        let bad = FileConfig {
            node_id: Some(1),
            voters: Some(voters.into()),
            leader_imbalance_check_interval_seconds: Some(0),
            ..FileConfig::default()
        };
        let err = bad.resolve().unwrap_err().to_string();
        assert!(
            err.contains("--leader-imbalance-check-interval-seconds"),
            "{err}"
        );
    }

    #[test]
    fn config_quorum_election_timeout_defaults_to_kafka_and_is_bounded() {
        let voters = "1@127.0.0.1:9193";
        let settings = cluster(1, voters).unwrap().cluster.unwrap();
        assert_eq!(settings.election_timeout_ms, 1_000);
        let file: FileConfig = toml::from_str(
            "node-id = 1\nvoters = \"1@127.0.0.1:9193\"\n\
             controller-quorum-election-timeout-ms = 300",
        )
        .unwrap();
        let settings = file.resolve().unwrap().cluster.unwrap();
        assert_eq!(settings.election_timeout_ms, 300);
        for bad in [0, 99, 60_001] {
            let config = FileConfig {
                node_id: Some(1),
                voters: Some(voters.into()),
                controller_quorum_election_timeout_ms: Some(bad),
                ..FileConfig::default()
            };
            let err = config.resolve().unwrap_err().to_string();
            assert!(
                err.contains("--controller-quorum-election-timeout-ms"),
                "{err}"
            );
            assert!(err.contains(&bad.to_string()), "{err}");
        }
    }
}

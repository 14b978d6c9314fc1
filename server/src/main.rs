//! The `brook` command: `brook server` runs a broker; `brook topics`, `brook produce`,
//! `brook consume`, `brook groups`, `brook transactions` and `brook cluster` are console
//! clients of a running one.

use std::path::PathBuf;
use std::process::ExitCode;

use brook_core::broker::BrokerConfig;
use brook_core::node::{ClusterNode, NodeConfig};
use brook_core::NodeId;
use brook_server::config::{ClusterSettings, FileConfig, ServerConfig};
use brook_server::identity;
use brook_server::net::{self, DataDir, Shared};
use brook_server::node::NodeThread;
use brook_server::peer::{self, PeerSender};
use brook_server::tools;
use clap::{Args, Parser, Subcommand};

/// Huge allocations are mapped lazily so hostile array lengths cannot abort the broker.
#[global_allocator]
static ALLOCATOR: brook_server::alloc::LazyLargeAlloc = brook_server::alloc::LazyLargeAlloc;

/// Brook: a Kafka-compatible streaming platform.
#[derive(Parser, Debug)]
#[command(name = "brook", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a single-node broker (defaults: data in ./brook-data, listening on 127.0.0.1:9092).
    Server(ServerArgs),
    /// Create, list, describe or delete topics.
    Topics(tools::topics::TopicsArgs),
    /// Send stdin to a topic, one record per line.
    Produce(tools::produce::ProduceArgs),
    /// Print a topic's records, one per line (alone, or as a consumer group member).
    Consume(tools::consume::ConsumeArgs),
    /// List, describe, reset the offsets of, or delete consumer groups.
    Groups(tools::groups::GroupsArgs),
    /// List transactional ids, or describe one's current transaction.
    Transactions(tools::transactions::TransactionsArgs),
    /// Describe a cluster: brokers, controller, partition leaders and replicas.
    Cluster(tools::cluster::ClusterArgs),
}

/// Flags of `brook server`; each may also be set in the `--config` TOML file.
#[derive(Args, Debug)]
struct ServerArgs {
    /// TOML file with any of the settings below (flags win over it).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for partition logs and metadata [default: ./brook-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9092].
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address clients are told to connect to [default: the listen address].
    #[arg(long, value_name = "HOST:PORT", alias = "advertised-listener")]
    advertised_listen: Option<String>,
    /// This broker's node id [default: 1].
    #[arg(long, value_name = "N")]
    node_id: Option<i32>,
    /// The metadata quorum's voters, ID@HOST:PORT,... (their controller listeners); makes
    /// this node a cluster member — a voter if its id is listed, else a broker that joins
    /// through them [default: none, a single broker].
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    voters: Option<String>,
    /// Address the controller (peer) listener binds; other nodes send replication and
    /// controller traffic there [default: this node's entry in --voters; required for a
    /// node that is not a voter].
    #[arg(long, value_name = "HOST:PORT")]
    controller_listen: Option<String>,
    /// A node silent this long is fenced and its partitions get new leaders [default: 9000].
    #[arg(long, value_name = "MS")]
    broker_session_timeout_ms: Option<i64>,
    /// How often a node heartbeats to the controller [default: 2000].
    #[arg(long, value_name = "MS")]
    broker_heartbeat_interval_ms: Option<i64>,
    /// How long a voter hears nothing from the quorum's leader before it stands for
    /// election (each voter waits between this and twice this, fixed per run) [default: 1000].
    #[arg(long, value_name = "MS")]
    controller_quorum_election_timeout_ms: Option<i64>,
    /// Whether the controller moves leadership back to preferred replicas [default: true].
    #[arg(long, value_name = "BOOL")]
    auto_leader_rebalance_enable: Option<bool>,
    /// How often the controller checks the leader balance [default: 300].
    #[arg(long, value_name = "S")]
    leader_imbalance_check_interval_seconds: Option<i64>,
    /// Partitions of auto-created topics [default: 1].
    #[arg(long, value_name = "N")]
    num_partitions: Option<i32>,
    /// Replication factor of new topics [default: 1].
    #[arg(long, value_name = "N")]
    default_replication_factor: Option<i16>,
    /// Create unknown topics when clients ask for their metadata [default: true].
    #[arg(long, value_name = "BOOL")]
    auto_create_topics: Option<bool>,
    /// Log filter: error, warn, info, debug, trace or tracing directives [default: info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Committed offsets of a group expire this long after it became empty [default: 10080].
    #[arg(long, value_name = "MINUTES")]
    offsets_retention_minutes: Option<i32>,
    /// How often expired offsets are looked for [default: 600000].
    #[arg(long, value_name = "MS")]
    offsets_retention_check_interval_ms: Option<i64>,
    /// Shortest session timeout a group member may ask for [default: 6000].
    #[arg(long, value_name = "MS")]
    group_min_session_timeout_ms: Option<i32>,
    /// Longest session timeout a group member may ask for [default: 1800000].
    #[arg(long, value_name = "MS")]
    group_max_session_timeout_ms: Option<i32>,
    /// How long a new group's first rebalance waits for more members [default: 0].
    #[arg(long, value_name = "MS")]
    group_initial_rebalance_delay_ms: Option<i32>,
    /// Partitions of __consumer_offsets when it is created [default: 50].
    #[arg(long, value_name = "N")]
    offsets_topic_num_partitions: Option<i32>,
}

impl ServerArgs {
    fn resolve(self) -> Result<ServerConfig, String> {
        let flags = FileConfig {
            data_dir: self.data_dir,
            listen: self.listen,
            advertised_listen: self.advertised_listen,
            node_id: self.node_id,
            voters: self.voters,
            controller_listen: self.controller_listen,
            broker_session_timeout_ms: self.broker_session_timeout_ms,
            broker_heartbeat_interval_ms: self.broker_heartbeat_interval_ms,
            controller_quorum_election_timeout_ms: self.controller_quorum_election_timeout_ms,
            auto_leader_rebalance_enable: self.auto_leader_rebalance_enable,
            leader_imbalance_check_interval_seconds: self.leader_imbalance_check_interval_seconds,
            num_partitions: self.num_partitions,
            default_replication_factor: self.default_replication_factor,
            auto_create_topics: self.auto_create_topics,
            log_level: self.log_level,
            offsets_retention_minutes: self.offsets_retention_minutes,
            offsets_retention_check_interval_ms: self.offsets_retention_check_interval_ms,
            group_min_session_timeout_ms: self.group_min_session_timeout_ms,
            group_max_session_timeout_ms: self.group_max_session_timeout_ms,
            group_initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            offsets_topic_num_partitions: self.offsets_topic_num_partitions,
            ..FileConfig::default()
        };
        let file = match &self.config {
            Some(path) => FileConfig::load(path).map_err(|e| e.to_string())?,
            None => FileConfig::default(),
        };
        flags.or(file).resolve().map_err(|e| e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => args.resolve().and_then(run_server),
        Command::Topics(args) => tools::topics::run(args).map_err(|err| err.to_string()),
        Command::Produce(args) => tools::produce::run(args).map_err(|err| err.to_string()),
        Command::Consume(args) => tools::consume::run(args).map_err(|err| err.to_string()),
        Command::Groups(args) => tools::groups::run(args).map_err(|err| err.to_string()),
        Command::Transactions(args) => {
            tools::transactions::run(args).map_err(|err| err.to_string())
        }
        Command::Cluster(args) => tools::cluster::run(args).map_err(|err| err.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run_server(config: ServerConfig) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .map_err(|err| format!("invalid --log-level {:?}: {err}", config.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    runtime.block_on(serve(config))
}

async fn serve(config: ServerConfig) -> Result<(), String> {
    let shown = config.data_dir.display().to_string();
    let cluster_id = config.cluster.as_ref().map(ClusterSettings::cluster_id);
    // The directory's owner is checked before anything is written to it.
    match &cluster_id {
        Some(id) => identity::claim_for_cluster(&config.data_dir, config.node_id, id)?,
        None => identity::check_single(&config.data_dir)?,
    }
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|err| format!("cannot use data directory {shown}: {err}"))?;
    let broker_config = BrokerConfig {
        node_id: config.node_id,
        advertised_host: config.advertised_host.clone(),
        advertised_port: i32::from(config.advertised_port),
        num_partitions: config.num_partitions,
        default_replication_factor: config.default_replication_factor,
        auto_create_topics: config.auto_create_topics,
        offsets_topic_partitions: config.offsets_topic_partitions,
        group: config.group.clone(),
        cluster_id: cluster_id.clone(),
        ..BrokerConfig::default()
    };
    let data_dir = DataDir::new(config.data_dir.clone());
    let open_failed = |err: String| format!("cannot open data directory {shown}: {err}");
    let thread = match (&config.cluster, cluster_id) {
        (Some(cluster), Some(cluster_id)) => {
            let voters = cluster.voters.iter().map(|(id, _)| NodeId(*id)).collect();
            let mut node_config = NodeConfig::new(broker_config, voters, incarnation());
            node_config.peer_listener = cluster.peer_address.clone();
            node_config.controller.session_timeout_ms = cluster.session_timeout_ms;
            node_config.broker_heartbeat_ms = cluster.heartbeat_interval_ms;
            node_config.controller.auto_leader_rebalance = cluster.auto_leader_rebalance;
            node_config.controller.imbalance_check_interval_ms =
                cluster.imbalance_check_interval_ms;
            // The quorum ticks ten times per election timeout (at most every 100 ms). Each
            // voter's timeout is longer by a tenth per unit of its node id's last digit, so
            // voters time out apart and one candidate wins at once: equal timeouts could
            // split the votes in step, election after election.
            node_config.tick_ms = (cluster.election_timeout_ms / 10).min(100);
            let ticks = (cluster.election_timeout_ms / node_config.tick_ms) as usize;
            let digit = config.node_id.rem_euclid(10) as usize;
            node_config.election_tick = ticks + ticks * digit / 10;
            let node = ClusterNode::open(data_dir.clone(), node_config, net::now())
                .map_err(|err| open_failed(err.to_string()))?;
            let peer_listener = tokio::net::TcpListener::bind(cluster.controller_listen)
                .await
                .map_err(|err| {
                    format!(
                        "cannot listen on --controller-listen {}: {err}",
                        cluster.controller_listen
                    )
                })?;
            let (inputs, receiver) = std::sync::mpsc::channel();
            let peers = peer::start(
                NodeId(config.node_id),
                cluster_id.clone(),
                &cluster.peer_address,
                peer_listener,
                &cluster.voters,
                inputs.clone(),
            );
            tracing::info!(
                cluster_id,
                controller_listen = %cluster.controller_listen,
                "cluster node {} ({}) of voters {:?}",
                config.node_id,
                if cluster.voter { "voter" } else { "broker only" },
                cluster.voters
            );
            NodeThread::start_with(node, peers, inputs, receiver)
        }
        _ => {
            // A single node is a cluster of one voter: the same node, controller and
            // replication code as a larger cluster, with no peers. A directory a single
            // broker of an earlier release wrote is adopted at its first start.
            let voters = vec![NodeId(config.node_id)];
            let node_config = NodeConfig::new(broker_config, voters, incarnation());
            let node = ClusterNode::open(data_dir.clone(), node_config, net::now())
                .map_err(|err| open_failed(err.to_string()))?;
            NodeThread::start(node, PeerSender::default())
        }
    };
    if config.cluster.is_none() {
        // It leads its quorum at once; its broker serves once registered with itself.
        tokio::select! {
            _ = thread.serving() => {}
            _ = thread.ended() => return Err(open_failed("the node stopped while starting".into())),
            _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
                return Err(open_failed("the node did not start serving within 30 s".into()))
            }
        }
    }
    let shared = Shared::new(
        thread.inputs(),
        data_dir,
        config.request_bytes_max,
        config.sendfile,
    );
    // Ready means listening: bind only once every log is open and recovered.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", config.listen))?;
    tracing::info!(
        listen = %config.listen,
        data_dir = %shown,
        "brook broker {} ready",
        config.node_id
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(net::serve(
        listener,
        shared,
        config.connections_max,
        stopped,
    ));
    let failed = tokio::select! {
        _ = wait_for_signal() => false,
        _ = thread.ended() => true,
    };
    if !failed {
        if let Some(cluster) = &config.cluster {
            // A controlled shutdown: leadership moves to the other replicas (and the quorum
            // to another voter) while this node still answers, so clients move without
            // errors. Bounded by the session timeout, after which the controller would have
            // fenced this node anyway.
            tracing::info!("controlled shutdown: handing leadership over");
            thread.begin_shutdown();
            let limit = std::time::Duration::from_millis(cluster.session_timeout_ms.max(0) as u64);
            tokio::select! {
                _ = thread.handed_off() => {
                    tracing::info!("controlled shutdown: leadership handed over")
                }
                _ = tokio::time::sleep(limit) => tracing::warn!(
                    "controlled shutdown: leadership not handed over within {} ms; stopping",
                    cluster.session_timeout_ms
                ),
                // A second signal stops at once.
                _ = wait_for_signal() => tracing::warn!("controlled shutdown cut short"),
            }
        }
    }
    tracing::info!("shutting down");
    let _ = stop.send(true);
    let _ = server.await;
    // The driver answers what it was sent before the stop, then closes the logs.
    let closed = tokio::task::spawn_blocking(move || thread.stop())
        .await
        .map_err(|err| format!("clean shutdown failed: {err}"))?;
    closed.map_err(|err| format!("clean shutdown failed: {err}"))?;
    if failed {
        return Err("the node stopped after an error (see the log)".into());
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// A number that differs at every start of the process: the node's incarnation.
fn incarnation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(net::now().0 as u64);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Raises the soft open-files limit to the hard one: every partition keeps its segment and
/// index files open, as Kafka does, so 1,000 partitions need more than the usual 1,024.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("cannot raise the open-files limit from {soft} to {hard}: {err}");
            }
        }
        Ok(_) => {}
        Err(err) => tracing::warn!("cannot read the open-files limit: {err}"),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

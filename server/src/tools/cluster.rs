//! `brook cluster describe`: the cluster's brokers, its controller, and every partition's
//! leader, replicas and in-sync replicas, with the partitions that need attention
//! (under-replicated, offline, being reassigned) and how leadership is spread over the
//! brokers. `brook cluster rebalance` and `remove-node` move replicas (`rebalance.rs`).

use std::collections::{BTreeMap, BTreeSet};

use brook_client::{blocking, ClusterDescription, PartitionReassignment, TopicInfo};
use clap::{Args, Subcommand};

use super::topics::partition_line;
use super::{ConnectArgs, ToolError};

/// Flags of `brook cluster`.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Where the cluster is (any node).
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The `brook cluster` subcommands.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Show the brokers, the controller and every partition's leader, replicas and ISR.
    Describe,
    /// Spread the replicas and preferred leaders evenly over the serving brokers (a new
    /// node gets its share): prints the moves, applies them as reassignments and waits.
    Rebalance(MoveArgs),
    /// Remove a stopped node that holds no replica from the cluster (after remove-node).
    Unregister {
        /// The node.
        #[arg(value_name = "N")]
        node: i32,
    },
    /// Move every replica off node N onto the other serving brokers, so it can be stopped.
    RemoveNode {
        /// The node to drain.
        #[arg(value_name = "N")]
        node: i32,
        /// How to move.
        #[command(flatten)]
        moves: MoveArgs,
    },
}

/// Flags of the subcommands that move replicas.
#[derive(Args, Debug)]
pub struct MoveArgs {
    /// Print the planned moves without applying them.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for the moves to complete, in seconds.
    #[arg(long, value_name = "S", default_value_t = 300)]
    pub timeout: u64,
    /// Bound the new replicas' catch-up to this many bytes per second (sets
    /// leader.replication.throttled.rate and follower.replication.throttled.rate for every
    /// broker while the moves run, and removes them once they are done).
    #[arg(long, value_name = "BYTES_PER_S")]
    pub throttle: Option<u64>,
}

/// Runs `brook cluster …`, printing results on stdout.
pub fn run(args: ClusterArgs) -> Result<(), ToolError> {
    let admin = super::admin(&args.connect.bootstrap)?;
    let text = match args.command {
        ClusterCommand::Describe => describe(&admin)?,
        ClusterCommand::Rebalance(moves) => {
            let brokers = serving(&admin)?;
            super::rebalance::rebalance(&admin, &brokers, &moves)?
        }
        ClusterCommand::Unregister { node } => {
            admin.unregister_broker(node)?;
            format!("node {node} unregistered\n")
        }
        ClusterCommand::RemoveNode { node, moves } => {
            let mut brokers = serving(&admin)?;
            if !brokers.remove(&node) {
                let known: Vec<String> = brokers.iter().map(i32::to_string).collect();
                return Err(ToolError::Usage(format!(
                    "node {node} is not a serving broker (serving: {})",
                    known.join(", ")
                )));
            }
            let mut text = super::rebalance::rebalance(&admin, &brokers, &moves)?;
            if !moves.dry_run {
                text.push_str(&format!(
                    "node {node} holds no replica: it may be stopped\n"
                ));
            }
            text
        }
    };
    super::print(&text)
}

/// The ids of the brokers serving now.
fn serving(admin: &blocking::Admin) -> Result<BTreeSet<i32>, ToolError> {
    let cluster = admin.describe_cluster()?;
    Ok(cluster.brokers.iter().map(|b| b.id).collect())
}

fn describe(admin: &blocking::Admin) -> Result<String, ToolError> {
    let cluster = admin.describe_cluster()?;
    let mut topics = Vec::new();
    for name in admin.list_topics()? {
        topics.push(super::topic_info(admin, &name, false)?);
    }
    // A single broker, or an older one, may not know these: nothing moving, none eligible.
    let moving = admin.list_partition_reassignments().unwrap_or_default();
    let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    let described = admin.describe_topic_partitions(&names).unwrap_or_default();
    let eligible = (described.into_iter())
        .filter(|(_, p)| !p.eligible.is_empty())
        .map(|(key, p)| (key, p.eligible))
        .collect();
    let states = States { moving, eligible };
    Ok(format_cluster(&cluster, &topics, &states))
}

/// What a partition line adds beside its replicas and ISR.
#[derive(Default)]
struct States {
    /// The moves under way.
    moving: Vec<PartitionReassignment>,
    /// The eligible leader replicas (KIP-966) of the partitions that have any.
    eligible: BTreeMap<(String, i32), Vec<i32>>,
}

/// The description as text: the cluster line, one line per broker (with the partitions it
/// leads and holds), a summary, and one line per partition, marked when it is
/// under-replicated (fewer in sync than replicas), offline (no leader) or being reassigned
/// (with the replicas added and removed), with its eligible leader replicas when it has any.
fn format_cluster(cluster: &ClusterDescription, topics: &[TopicInfo], states: &States) -> String {
    let moving = &states.moving;
    let controller = cluster
        .controller
        .map_or_else(|| "none".to_string(), |id| id.to_string());
    let mut text = format!(
        "Cluster: {}\tController: {controller}\tBrokers: {}\n",
        cluster.cluster_id,
        cluster.brokers.len()
    );
    let mut leads: BTreeMap<i32, usize> = BTreeMap::new();
    let mut holds: BTreeMap<i32, usize> = BTreeMap::new();
    let partitions = topics.iter().flat_map(|t| t.partitions.iter());
    for partition in partitions.clone() {
        *leads.entry(partition.leader).or_default() += 1;
        for replica in &partition.replicas {
            *holds.entry(*replica).or_default() += 1;
        }
    }
    for broker in &cluster.brokers {
        text.push_str(&format!(
            "\tBroker: {}\t{}:{}\tLeaders: {}\tReplicas: {}\n",
            broker.id,
            broker.host,
            broker.port,
            leads.get(&broker.id).copied().unwrap_or(0),
            holds.get(&broker.id).copied().unwrap_or(0),
        ));
    }
    let count = partitions.clone().count();
    let under = partitions
        .clone()
        .filter(|p| p.isr.len() < p.replicas.len());
    let offline = partitions.clone().filter(|p| p.leader < 0).count();
    text.push_str(&format!(
        "Partitions: {count}\tUnder-replicated: {}\tOffline: {offline}\tReassigning: {}\n",
        under.count(),
        moving.len()
    ));
    let list = |r: &[i32]| r.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    for topic in topics {
        for p in &topic.partitions {
            let mut state = String::new();
            if let Some(elr) = states.eligible.get(&(topic.name.clone(), p.partition)) {
                state.push_str(&format!("\tElr: {}", list(elr)));
            }
            if p.leader < 0 {
                state.push_str("\toffline");
            } else if p.isr.len() < p.replicas.len() {
                state.push_str("\tunder-replicated");
            }
            let moves = moving.iter();
            if let Some(m) = moves
                .clone()
                .find(|m| m.topic == topic.name && m.partition == p.partition)
            {
                state.push_str(&format!(
                    "\treassigning (adding {}; removing {})",
                    list(&m.adding),
                    list(&m.removing)
                ));
            }
            text.push_str(&partition_line(&topic.name, p));
            text.push_str(&state);
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use brook_client::{BrokerDescription, PartitionInfo};

    fn partition(partition: i32, leader: i32, isr: Vec<i32>) -> PartitionInfo {
        PartitionInfo {
            partition,
            leader,
            leader_epoch: 0,
            replicas: vec![1, 2, 3],
            isr,
        }
    }

    #[test]
    fn cluster_describe_text_counts_leaders_and_marks_partitions_in_trouble() {
        let broker = |id| BrokerDescription {
            id,
            host: "127.0.0.1".into(),
            port: 9090 + id,
        };
        let cluster = ClusterDescription {
            cluster_id: "c1".into(),
            controller: Some(2),
            brokers: vec![broker(1), broker(2), broker(3)],
        };
        let topic = TopicInfo {
            name: "orders".into(),
            topic_id: None,
            is_internal: false,
            partitions: vec![
                partition(0, 1, vec![1, 2, 3]),
                partition(1, 1, vec![1, 3]),
                partition(2, -1, vec![]),
            ],
        };
        let states = States {
            moving: vec![PartitionReassignment {
                topic: "orders".into(),
                partition: 1,
                replicas: Some(vec![1, 2, 3]),
                adding: vec![3],
                removing: vec![2],
            }],
            eligible: BTreeMap::from([(("orders".to_string(), 2), vec![2, 3])]),
        };
        let text = format_cluster(&cluster, &[topic], &states);
        assert_eq!(
            text,
            "Cluster: c1\tController: 2\tBrokers: 3\n\
             \tBroker: 1\t127.0.0.1:9091\tLeaders: 2\tReplicas: 3\n\
             \tBroker: 2\t127.0.0.1:9092\tLeaders: 0\tReplicas: 3\n\
             \tBroker: 3\t127.0.0.1:9093\tLeaders: 0\tReplicas: 3\n\
             Partitions: 3\tUnder-replicated: 2\tOffline: 1\tReassigning: 1\n\
             \tTopic: orders\tPartition: 0\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,2,3\n\
             \tTopic: orders\tPartition: 1\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,3\tunder-replicated\
             \treassigning (adding 3; removing 2)\n\
             \tTopic: orders\tPartition: 2\tLeader: -1\tReplicas: 1,2,3\tIsr: \tElr: 2,3\toffline\n"
        );
        let leaderless = ClusterDescription {
            controller: None,
            ..cluster
        };
        assert!(format_cluster(&leaderless, &[], &States::default())
            .starts_with("Cluster: c1\tController: none"));
    }
}

//! `brook cluster rebalance` and `brook cluster remove-node`: plans an even spread of
//! replicas and preferred leaders over the brokers, prints the moves and applies them as
//! partition reassignments, then waits until they complete.
//!
//! Each topic is spread on its own (as `kafka-reassign-partitions --generate` does), so
//! every topic's partitions are served by every broker about equally. The plan moves as few
//! replicas as it can: replicas on brokers that are leaving (or gone) go first, each to the
//! broker with the fewest of the topic's replicas the partition is not on; then, while one
//! broker holds two or more of the topic's replicas more than another, one replica moves
//! from the most to the least loaded. Last, each partition's preferred leader (its first
//! replica) is chosen among its replicas so that every broker is preferred about equally
//! often; a reorder moves no data, and the controller's leader rebalance (or
//! `ElectLeaders`) then moves leadership.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use brook_client::{blocking, ConfigOp, PartitionReassignment};

use super::cluster::MoveArgs;
use super::ToolError;

/// The throttles `--throttle` sets for the moves' duration.
const THROTTLES: [&str; 2] = [
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
];

/// One partition's replicas, as they are or as the plan wants them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The topic.
    pub topic: String,
    /// The partition's index.
    pub partition: i32,
    /// The replicas, the preferred leader first.
    pub replicas: Vec<i32>,
}

/// The assignments that change to spread each topic of `current` evenly over `brokers`
/// (none left on a broker outside it): each as (current, planned). Deterministic for the
/// same input.
pub fn plan(current: &[Assignment], brokers: &BTreeSet<i32>) -> Vec<(Assignment, Assignment)> {
    if brokers.is_empty() {
        return Vec::new();
    }
    let mut topics: BTreeMap<&str, Vec<Assignment>> = BTreeMap::new();
    for a in current {
        topics.entry(&a.topic).or_default().push(a.clone());
    }
    let mut moves = Vec::new();
    for partitions in topics.values() {
        let planned = plan_topic(partitions, brokers);
        moves.extend(
            (partitions.iter().zip(planned))
                .filter(|(before, after)| before.replicas != after.replicas)
                .map(|(before, after)| (before.clone(), after)),
        );
    }
    moves
}

/// One topic's partitions spread evenly over `brokers` (see the module doc).
fn plan_topic(current: &[Assignment], brokers: &BTreeSet<i32>) -> Vec<Assignment> {
    let mut planned: Vec<Assignment> = current.to_vec();
    let mut load: BTreeMap<i32, usize> = brokers.iter().map(|&b| (b, 0)).collect();
    for a in &planned {
        for r in &a.replicas {
            if let Some(count) = load.get_mut(r) {
                *count += 1;
            }
        }
    }
    let least_loaded = |load: &BTreeMap<i32, usize>, exclude: &[i32]| {
        (load.iter())
            .filter(|(b, _)| !exclude.contains(b))
            .min_by_key(|&(b, count)| (*count, *b))
            .map(|(b, _)| *b)
    };
    // Replicas off the brokers that stay move first.
    for a in &mut planned {
        for i in 0..a.replicas.len() {
            if brokers.contains(&a.replicas[i]) {
                continue;
            }
            if let Some(to) = least_loaded(&load, &a.replicas) {
                a.replicas[i] = to;
                *load.get_mut(&to).expect("a broker") += 1;
            }
        }
    }
    // Then from the most to the least loaded until no two differ by more than one.
    loop {
        let (&most, &high) = (load.iter())
            .max_by_key(|&(b, count)| (*count, std::cmp::Reverse(*b)))
            .expect("brokers");
        let (&fewest, &low) = (load.iter())
            .min_by_key(|&(b, count)| (*count, *b))
            .expect("brokers");
        if high <= low + 1 {
            break;
        }
        let movable = (planned.iter_mut())
            .find(|a| a.replicas.contains(&most) && !a.replicas.contains(&fewest));
        let Some(a) = movable else {
            break;
        };
        let i = a.replicas.iter().position(|&r| r == most).expect("found");
        a.replicas[i] = fewest;
        *load.get_mut(&most).expect("a broker") -= 1;
        *load.get_mut(&fewest).expect("a broker") += 1;
    }
    // Preferred leaders: each partition's first replica is the one preferred least so far,
    // its current first kept on a tie.
    let mut preferred: BTreeMap<i32, usize> = brokers.iter().map(|&b| (b, 0)).collect();
    for a in &mut planned {
        let first = a.replicas[0];
        let Some(chosen) = (a.replicas.iter())
            .filter(|r| preferred.contains_key(r))
            .min_by_key(|&&r| (preferred[&r], r != first, r))
            .copied()
        else {
            continue;
        };
        let i = a.replicas.iter().position(|&r| r == chosen).expect("found");
        a.replicas.swap(0, i);
        *preferred.get_mut(&chosen).expect("a broker") += 1;
    }
    planned
}

/// The partitions that would still hold a replica outside `brokers` once `moves` are made
/// (more replicas than the brokers can hold), as `TOPIC-PARTITION`.
pub fn left_outside(
    current: &[Assignment],
    moves: &[(Assignment, Assignment)],
    brokers: &BTreeSet<i32>,
) -> Vec<String> {
    (current.iter())
        .map(|a| {
            let planned = moves.iter().find(|(before, _)| before == a);
            planned.map_or(a, |(_, after)| after)
        })
        .filter(|a| a.replicas.iter().any(|r| !brokers.contains(r)))
        .map(|a| format!("{}-{}", a.topic, a.partition))
        .collect()
}

/// The moves as text, one line each: `TOPIC-PARTITION: 1,2,3 -> 2,3,4`.
pub fn format_moves(moves: &[(Assignment, Assignment)]) -> String {
    let list = |r: &[i32]| r.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let mut text = String::new();
    for (before, after) in moves {
        text.push_str(&format!(
            "{}-{}: {} -> {}\n",
            before.topic,
            before.partition,
            list(&before.replicas),
            list(&after.replicas)
        ));
    }
    text
}

/// Every partition's replicas as the cluster's metadata names them, the internal
/// `__consumer_offsets` too (Metadata lists it only when asked by name, which would create
/// it; DescribeTopicPartitions does not).
pub fn current_assignments(admin: &blocking::Admin) -> Result<Vec<Assignment>, ToolError> {
    let mut names = admin.list_topics()?;
    names.push("__consumer_offsets".to_string());
    let described = admin.describe_topic_partitions(&names)?;
    let assignments = (described.into_iter())
        .map(|((topic, partition), p)| Assignment {
            topic,
            partition,
            replicas: p.replicas,
        })
        .collect();
    Ok(assignments)
}

/// Plans the moves onto `brokers`, prints them, and unless `--dry-run` applies them (under
/// `--throttle`, if given) and waits up to `--timeout` for every one to complete.
pub fn rebalance(
    admin: &blocking::Admin,
    brokers: &BTreeSet<i32>,
    args: &MoveArgs,
) -> Result<String, ToolError> {
    let (dry_run, timeout) = (args.dry_run, Duration::from_secs(args.timeout));
    // A partition being moved lists its old and new replicas together: planning from that
    // would grow its replication factor.
    let under_way = admin.list_partition_reassignments()?;
    if !under_way.is_empty() {
        let names: Vec<String> = (under_way.iter())
            .map(|m| format!("{}-{}", m.topic, m.partition))
            .collect();
        return Err(ToolError::Usage(format!(
            "{} move(s) under way ({}): wait until they complete (`brook cluster describe`)",
            names.len(),
            names.join(", ")
        )));
    }
    let current = current_assignments(admin)?;
    let moves = plan(&current, brokers);
    let stuck = left_outside(&current, &moves, brokers);
    if !stuck.is_empty() {
        return Err(ToolError::Usage(format!(
            "{} partition(s) have more replicas than brokers {brokers:?} can hold ({}): \
             nothing moved",
            stuck.len(),
            stuck.join(", ")
        )));
    }
    let mut text = format!(
        "{} partition(s) to move over brokers {:?}\n",
        moves.len(),
        brokers
    );
    text.push_str(&format_moves(&moves));
    if dry_run || moves.is_empty() {
        return Ok(text);
    }
    let asked: Vec<PartitionReassignment> = (moves.iter())
        .map(|(_, after)| {
            PartitionReassignment::to(&after.topic, after.partition, after.replicas.clone())
        })
        .collect();
    if let Some(rate) = args.throttle {
        let rate = rate.max(1).to_string();
        let set: Vec<(&str, ConfigOp)> = (THROTTLES.iter())
            .map(|&key| (key, ConfigOp::Set(rate.clone())))
            .collect();
        admin.alter_broker_configs(None, &set)?;
        text.push_str(&format!("throttled to {rate} bytes/s while moving\n"));
    }
    let started = Instant::now();
    let waited = admin
        .alter_partition_reassignments(&asked)
        .map_err(ToolError::from)
        .and_then(|()| wait_for_moves(admin, timeout));
    if args.throttle.is_some() {
        let unset: Vec<(&str, ConfigOp)> = THROTTLES
            .iter()
            .map(|&key| (key, ConfigOp::Delete))
            .collect();
        admin.alter_broker_configs(None, &unset)?;
    }
    waited?;
    text.push_str(&format!(
        "done: {} partition(s) moved in {:.1} s\n",
        moves.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(text)
}

/// Waits until no move is under way, or fails naming those still moving after `timeout`.
fn wait_for_moves(admin: &blocking::Admin, timeout: Duration) -> Result<(), ToolError> {
    let started = Instant::now();
    loop {
        let under_way = admin.list_partition_reassignments()?;
        if under_way.is_empty() {
            break;
        }
        if started.elapsed() > timeout {
            let names: Vec<String> = (under_way.iter())
                .map(|m| format!("{}-{}", m.topic, m.partition))
                .collect();
            return Err(ToolError::Usage(format!(
                "{} move(s) still under way after {} s: {} (they go on; `brook cluster \
                 describe` shows them)",
                under_way.len(),
                timeout.as_secs(),
                names.join(", ")
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(partition: i32, replicas: &[i32]) -> Assignment {
        Assignment {
            topic: "orders".into(),
            partition,
            replicas: replicas.to_vec(),
        }
    }

    fn loads(assignments: &[Assignment]) -> BTreeMap<i32, (usize, usize)> {
        let mut loads = BTreeMap::new();
        for a in assignments {
            for (i, r) in a.replicas.iter().enumerate() {
                let entry: &mut (usize, usize) = loads.entry(*r).or_default();
                entry.0 += 1;
                entry.1 += usize::from(i == 0);
            }
        }
        loads
    }

    fn apply(current: &[Assignment], moves: &[(Assignment, Assignment)]) -> Vec<Assignment> {
        let mut after = current.to_vec();
        for (_, planned) in moves {
            let slot = (after.iter_mut())
                .find(|a| a.topic == planned.topic && a.partition == planned.partition);
            *slot.expect("a partition") = planned.clone();
        }
        after
    }

    #[test]
    fn rebalance_plan_spreads_each_topic_on_its_own() {
        // One topic already spread over four brokers, one only on the first three: the
        // second gets its share of the fourth too.
        let mut current: Vec<Assignment> = (0..4)
            .map(|p| Assignment {
                topic: "spread".into(),
                partition: p,
                replicas: vec![p % 4 + 1, (p + 1) % 4 + 1, (p + 2) % 4 + 1],
            })
            .collect();
        current.extend((0..4).map(|p| assignment(p, &[1, 2, 3])));
        let brokers: BTreeSet<i32> = [1, 2, 3, 4].into();
        let after = apply(&current, &plan(&current, &brokers));
        let orders: Vec<Assignment> = after
            .iter()
            .filter(|a| a.topic == "orders")
            .cloned()
            .collect();
        assert_eq!(loads(&orders).get(&4).map(|l| l.0), Some(3), "{orders:?}");
        let spread: Vec<Assignment> = after
            .iter()
            .filter(|a| a.topic == "spread")
            .cloned()
            .collect();
        assert!(loads(&spread).values().all(|l| l.0 == 3), "{spread:?}");
    }

    #[test]
    fn rebalance_plan_spreads_replicas_onto_a_new_broker_with_few_moves() {
        // Six RF=3 partitions on three brokers: six replicas each.
        let current: Vec<Assignment> = (0..6)
            .map(|p| {
                let first = p % 3 + 1;
                assignment(p, &[first, first % 3 + 1, (first + 1) % 3 + 1])
            })
            .collect();
        let brokers: BTreeSet<i32> = [1, 2, 3, 4].into();
        let moves = plan(&current, &brokers);
        let after = apply(&current, &moves);
        let loads = loads(&after);
        // 18 replicas over four brokers: 4 or 5 each, each partition on distinct brokers.
        for (broker, (replicas, _)) in &loads {
            assert!((4..=5).contains(replicas), "broker {broker}: {loads:?}");
        }
        for a in &after {
            let distinct: BTreeSet<i32> = a.replicas.iter().copied().collect();
            assert_eq!(distinct.len(), 3, "{a:?}");
        }
        let preferred: Vec<usize> = loads.values().map(|l| l.1).collect();
        assert!(
            preferred.iter().all(|&p| p <= 2),
            "leaders spread: {loads:?}"
        );
        // Only what must move: four replicas reach broker 4.
        let moved: usize = (moves.iter())
            .map(|(b, a)| {
                a.replicas
                    .iter()
                    .filter(|r| !b.replicas.contains(r))
                    .count()
            })
            .sum();
        assert_eq!(moved, 4, "{}", format_moves(&moves));
        assert!(plan(&after, &brokers).is_empty(), "balanced stays put");
        assert_eq!(
            format_moves(&moves[..1]).lines().count(),
            1,
            "one line per move"
        );
    }

    #[test]
    fn rebalance_plan_drains_a_broker_that_leaves() {
        let current = vec![
            assignment(0, &[4, 1, 2]),
            assignment(1, &[1, 4, 3]),
            assignment(2, &[2, 3, 1]),
        ];
        let brokers: BTreeSet<i32> = [1, 2, 3].into();
        let moves = plan(&current, &brokers);
        assert!(left_outside(&current, &moves, &brokers).is_empty());
        let after = apply(&current, &moves);
        assert!(after.iter().all(|a| !a.replicas.contains(&4)), "{after:?}");
        // Two brokers cannot hold three replicas: every partition is left on broker 4.
        let two: BTreeSet<i32> = [1, 2].into();
        let moves = plan(&current, &two);
        assert_eq!(left_outside(&current, &moves, &two).len(), 3);
        assert!(after.iter().all(|a| a.replicas.len() == 3));
        assert_eq!(
            format_moves(&[(current[0].clone(), after[0].clone())]),
            format!(
                "orders-0: 4,1,2 -> {}\n",
                after[0]
                    .replicas
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        );
    }
}

//! The checkers: each names an anomaly (Jepsen's Kafka vocabulary) and looks for it in the
//! history. Losses that the configuration does not promise to prevent — a power loss with
//! durability left to the page cache — are counted and reported instead of failing the run.

use std::collections::BTreeMap;

use crate::workload::History;

/// One violated guarantee.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The checker that found it.
    pub checker: &'static str,
    /// What it saw.
    pub detail: String,
}

/// What the checkers concluded.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// Guarantees violated.
    pub failures: Vec<Failure>,
    /// Acknowledged records lost where losses were allowed (reported, not failures).
    pub allowed_losses: usize,
    /// acks=1 records missing from the final log at their offset (a leader change may lose
    /// them: reported, not failures).
    pub leader_ack_losses: usize,
}

/// Runs every checker. `losses_allowed` is true when unsynced data was exposed to a power
/// loss (page-cache durability and at least one power loss).
pub fn check(history: &History, losses_allowed: bool) -> Verdict {
    let mut verdict = Verdict::default();
    let mut fail = |checker: &'static str, detail: String| {
        verdict.failures.push(Failure { checker, detail });
    };
    for detail in &history.corrupt_batches {
        fail(
            "corrupt-read",
            format!("a served batch failed its CRC: {detail}"),
        );
    }
    if !history.final_read_done || history.producers_done == 0 {
        fail(
            "liveness",
            "the workload did not finish after healing".into(),
        );
    }
    // Inconsistent offsets: one offset, one value, for every reader and acknowledgement.
    let mut seen: BTreeMap<(i32, i64), &str> = BTreeMap::new();
    let observations = history
        .reads
        .iter()
        .map(|r| (r.partition, r.offset, r.value.as_str()))
        .chain(
            history
                .final_log
                .iter()
                .map(|(&(p, o), v)| (p, o, v.as_str())),
        );
    for (partition, offset, value) in observations {
        if let Some(previous) = seen.insert((partition, offset), value) {
            if previous != value && !losses_allowed {
                fail(
                    "inconsistent-offsets",
                    format!("{partition}/{offset}: {previous} and {value}"),
                );
            }
        }
    }
    // Lost writes: every acknowledged record is in the final log at its offset.
    let mut lost = 0;
    for ack in &history.acks {
        let stored = history.final_log.get(&(ack.partition, ack.offset));
        if stored != Some(&ack.value) {
            lost += 1;
            if !losses_allowed {
                let detail = format!(
                    "{}/{} acked as {}, final log has {stored:?}",
                    ack.partition, ack.offset, ack.value
                );
                fail("lost-write", detail);
            }
        }
    }
    if losses_allowed {
        verdict.allowed_losses = lost;
    }
    verdict.leader_ack_losses = history
        .leader_acks
        .iter()
        .filter(|ack| history.final_log.get(&(ack.partition, ack.offset)) != Some(&ack.value))
        .count();
    check_readers(history, losses_allowed, &mut verdict);
    check_idempotence(history, losses_allowed, &mut verdict);
    if !losses_allowed {
        // After an allowed loss, offsets are handed out again: order is not comparable.
        check_producer_order(history, &mut verdict);
    }
    verdict
}

/// Consumers read dense, increasing offsets unless they seeked; high watermarks never go
/// backwards unless losses were allowed.
fn check_readers(history: &History, losses_allowed: bool, verdict: &mut Verdict) {
    let mut last: BTreeMap<(usize, i32), i64> = BTreeMap::new();
    for read in &history.reads {
        let key = (read.reader, read.partition);
        if let Some(&previous) = last.get(&key) {
            let seeked = history
                .seeks
                .iter()
                .any(|s| (s.0, s.1) == key && s.3 <= read.offset && s.2 > previous);
            if read.offset != previous + 1 && !seeked && !losses_allowed {
                verdict.failures.push(Failure {
                    checker: "nonmonotonic-read",
                    detail: format!(
                        "reader {} partition {}: offset {} after {previous}",
                        read.reader, read.partition, read.offset
                    ),
                });
            }
        } else if read.offset != 0 && !losses_allowed {
            verdict.failures.push(Failure {
                checker: "nonmonotonic-read",
                detail: format!(
                    "reader {} partition {} started at {}",
                    read.reader, read.partition, read.offset
                ),
            });
        }
        last.insert(key, read.offset);
    }
    let mut high: BTreeMap<(usize, i32), i64> = BTreeMap::new();
    for &(reader, partition, hw) in &history.high_watermarks {
        let previous = high.insert((reader, partition), hw).unwrap_or(hw);
        if hw < previous && !losses_allowed {
            verdict.failures.push(Failure {
                checker: "high-watermark-regression",
                detail: format!("reader {reader} partition {partition}: {hw} after {previous}"),
            });
        }
    }
}

/// A producer's later sends never land at earlier offsets of a partition (while nothing
/// acknowledged can be lost).
fn check_producer_order(history: &History, verdict: &mut Verdict) {
    let mut last: BTreeMap<(usize, i32), (u32, i64)> = BTreeMap::new();
    for ack in &history.acks {
        let key = (ack.producer, ack.partition);
        if let Some(&(sequence, offset)) = last.get(&key) {
            if ack.sequence > sequence && ack.offset <= offset {
                verdict.failures.push(Failure {
                    checker: "producer-order",
                    detail: format!(
                        "producer {} partition {}: send {} at {} after send {sequence} at {offset}",
                        ack.producer, ack.partition, ack.sequence, ack.offset
                    ),
                });
            }
        }
        last.insert(key, (ack.sequence, ack.offset));
    }
}

/// The consumer-group checkers: one owner per partition per generation, no commit from a
/// superseded generation acknowledged, acknowledged commits never going backwards (all three
/// unless a power loss may have taken the coordinator's recent records), and, after healing,
/// the group consumed every partition to its end.
pub fn check_group(history: &History, power_lost: bool, all_readable: bool, verdict: &mut Verdict) {
    use crate::group_member::GroupEvent;
    let mut owners: BTreeMap<(i32, i32), usize> = BTreeMap::new();
    let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
    // Per partition, (generation, offset) of the commits whose answer never came: each may
    // still land later and move the committed offset back to it (see
    // `GroupEvent::CommitUnanswered`).
    let mut unanswered: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
    // Per generation, when a member first learnt it from its SyncGroup answer.
    let mut synced_at: BTreeMap<i32, i64> = BTreeMap::new();
    for event in &history.group_events {
        match event {
            GroupEvent::Owned {
                generation, at_ms, ..
            } => {
                synced_at.entry(*generation).or_insert(*at_ms);
                check_owned(event, &mut owners, power_lost, verdict);
            }
            GroupEvent::Joined { .. }
            | GroupEvent::Killed { .. }
            | GroupEvent::CoordinatorLoaded { .. }
            | GroupEvent::Described { .. } => {}
            GroupEvent::CommitUnanswered {
                generation,
                partition,
                offset,
            } => unanswered
                .entry(*partition)
                .or_default()
                .push((*generation, *offset)),
            GroupEvent::Committed {
                sent_ms,
                generation,
                partition,
                offset,
            } => {
                // Once a newer generation has synced, the coordinator must refuse commits
                // from older ones (a zombie member): a commit sent after a member learnt of
                // a newer generation reached the coordinator after it began that one.
                let newer = synced_at
                    .range(generation + 1..)
                    .find(|(_, at)| **at <= *sent_ms);
                if let Some((newer, _)) = newer.filter(|_| !power_lost) {
                    verdict.failures.push(Failure {
                        checker: "group-zombie-commit",
                        detail: format!(
                            "partition {partition}: commit of generation {generation} sent at {sent_ms} acknowledged after generation {newer} synced"
                        ),
                    });
                }
                let previous = committed.insert(*partition, *offset).unwrap_or(*offset);
                // A regression is explained when an unanswered commit of this generation or an
                // earlier one (a later generation's member fences it) carried an offset at or
                // below this one: it landed late, and the member resumed from it. It can land
                // once.
                let late = (*offset < previous)
                    .then(|| {
                        let pending = unanswered.get_mut(partition)?;
                        let found = pending
                            .iter()
                            .position(|(g, u)| g <= generation && u <= offset)?;
                        Some(pending.remove(found))
                    })
                    .flatten();
                if *offset < previous && late.is_none() && !power_lost {
                    verdict.failures.push(Failure {
                        checker: "group-commit-regression",
                        detail: format!(
                            "partition {partition}: committed {offset} after {previous}"
                        ),
                    });
                }
            }
        }
    }
    // A batch damaged on disk stops every reader of its partition, the group too.
    if all_readable {
        check_group_liveness(history, verdict);
    }
    check_session_expiry(history, verdict);
}

/// How long after a kill the coordinator may still list the dead member: its session
/// timeout, or — if it was waiting in a JoinGroup, which keeps a member alive as in Kafka —
/// the rebalance timeout, plus a second for ticks and the observer's half-second polls.
const REMOVAL_DEADLINE_MS: i64 = crate::group_member::SESSION_TIMEOUT_MS as i64
    + crate::group_member::REBALANCE_TIMEOUT_MS as i64
    + 1_000;

/// A member whose process was killed is removed by the coordinator after its session
/// timeout: no DescribeGroups answer long enough after the kill — or after the broker's
/// restart that reloaded it — lists its member id (it comes back under a new id).
fn check_session_expiry(history: &History, verdict: &mut Verdict) {
    use crate::group_member::GroupEvent;
    let mut last_id: BTreeMap<usize, &str> = BTreeMap::new();
    let mut dead: Vec<(&str, i64)> = Vec::new();
    for event in &history.group_events {
        match event {
            GroupEvent::Joined {
                member, member_id, ..
            } => {
                last_id.insert(*member, member_id);
            }
            GroupEvent::Killed { member, at_ms } => {
                if let Some(id) = last_id.remove(member) {
                    dead.push((id, *at_ms));
                }
            }
            // The restarted coordinator's clock for the member starts again.
            GroupEvent::CoordinatorLoaded { at_ms } => {
                for (_, since) in dead.iter_mut().filter(|(_, since)| *since != i64::MAX) {
                    *since = (*since).max(*at_ms);
                }
            }
            GroupEvent::Described { members, at_ms } => {
                for (id, killed_at) in dead.iter_mut() {
                    let overdue = *at_ms - *killed_at > REMOVAL_DEADLINE_MS;
                    if overdue && members.iter().any(|m| m == id) {
                        verdict.failures.push(Failure {
                            checker: "group-session-expiry",
                            detail: format!(
                                "member {id}, killed at {killed_at}, still in the group at {at_ms}"
                            ),
                        });
                        *killed_at = i64::MAX; // reported once
                    }
                }
            }
            _ => {}
        }
    }
}

/// One owner per partition per generation. A power loss can take the coordinator's latest
/// generation record with it (page-cache durability), so a generation number may be handed
/// out twice; only without one is a second owner a failure.
fn check_owned(
    event: &crate::group_member::GroupEvent,
    owners: &mut BTreeMap<(i32, i32), usize>,
    power_lost: bool,
    verdict: &mut Verdict,
) {
    let crate::group_member::GroupEvent::Owned {
        member,
        generation,
        partitions,
        ..
    } = event
    else {
        return;
    };
    for &partition in partitions {
        let previous = owners.insert((*generation, partition), *member);
        if let Some(other) = previous.filter(|other| other != member) {
            if !power_lost {
                verdict.failures.push(Failure {
                    checker: "group-double-owner",
                    detail: format!(
                        "generation {generation}: partition {partition} owned by members {other} and {member}"
                    ),
                });
            }
        }
    }
}

/// After healing, the group's commits reached the end of every partition.
fn check_group_liveness(history: &History, verdict: &mut Verdict) {
    for partition in 0..crate::workload::PARTITIONS {
        let end = history
            .final_log
            .range((partition, 0)..(partition, i64::MAX))
            .next_back()
            .map_or(0, |((_, offset), _)| offset + 1);
        let reached = history
            .final_committed
            .get(&partition)
            .copied()
            .unwrap_or(-1);
        if reached < end {
            verdict.failures.push(Failure {
                checker: "group-liveness",
                detail: format!(
                    "partition {partition}: group committed {reached}, log ends at {end}"
                ),
            });
        }
    }
}

/// No duplicates under idempotence: each record of an idempotent producer (one value per
/// producer and send, so one per producer id and sequence within an epoch) is in the final
/// log at most once, and each acknowledged one exactly once. After an allowed loss the
/// producer may have bumped its epoch and resent a batch the broker had half-forgotten, which
/// idempotence does not cover (KIP-360), so duplicates are then reported only as losses are.
fn check_idempotence(history: &History, losses_allowed: bool, verdict: &mut Verdict) {
    let mut copies: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for (&(partition, offset), value) in &history.final_log {
        if value.starts_with(crate::workload::IDEMPOTENT_PREFIX) {
            copies
                .entry(value.as_str())
                .or_default()
                .push((partition, offset));
        }
    }
    for ack in &history.acks {
        if !ack.value.starts_with(crate::workload::IDEMPOTENT_PREFIX) {
            continue;
        }
        let found = copies.get(ack.value.as_str()).map_or(0, Vec::len);
        if found > 1 && !losses_allowed {
            verdict.failures.push(Failure {
                checker: "idempotent-duplicate",
                detail: format!(
                    "{} (acked at {}/{}) is in the log {found} times: {:?}",
                    ack.value,
                    ack.partition,
                    ack.offset,
                    copies[ack.value.as_str()]
                ),
            });
        }
    }
    for (value, places) in &copies {
        let acked = history.acks.iter().any(|a| a.value == *value);
        if places.len() > 1 && !acked && !losses_allowed {
            verdict.failures.push(Failure {
                checker: "idempotent-duplicate",
                detail: format!(
                    "{value} (never acked) is in the log {} times: {places:?}",
                    places.len()
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group_member::GroupEvent;
    use crate::workload::History;

    fn committed(generation: i32, offset: i64) -> GroupEvent {
        GroupEvent::Committed {
            sent_ms: 0,
            generation,
            partition: 1,
            offset,
        }
    }

    fn owned(generation: i32) -> GroupEvent {
        GroupEvent::Owned {
            member: 1,
            generation,
            partitions: vec![1],
            at_ms: 0,
        }
    }

    fn failures(events: Vec<GroupEvent>, checker: &str) -> usize {
        let history = History {
            group_events: events,
            ..History::default()
        };
        let mut verdict = Verdict::default();
        check_group(&history, false, false, &mut verdict);
        verdict
            .failures
            .iter()
            .filter(|f| f.checker == checker)
            .count()
    }

    fn regressions(events: Vec<GroupEvent>) -> usize {
        failures(events, "group-commit-regression")
    }

    /// Seed 348 of the 3-node run: a commit of generation 1, sent before generation 2's
    /// first SyncGroup answer arrived, was answered after it (the coordinator took it first
    /// and answered both once replicated). Only a commit sent after a member learnt of the
    /// newer generation is a zombie's.
    #[test]
    fn a_zombie_commit_is_one_sent_after_a_newer_generation_synced() {
        let run = |sent_ms: i64| {
            let synced = GroupEvent::Owned {
                member: 2,
                generation: 2,
                partitions: vec![1],
                at_ms: 100,
            };
            let commit = GroupEvent::Committed {
                sent_ms,
                generation: 1,
                partition: 1,
                offset: 7,
            };
            failures(vec![owned(1), synced, commit], "group-zombie-commit")
        };
        assert_eq!(run(90), 0);
        assert_eq!(run(100), 1);
        assert_eq!(run(150), 1);
    }

    /// Seed 109: a commit of 38 timed out while the member was cut off, landed after 225
    /// was acknowledged on a new connection, and generation 2 resumed from 38.
    #[test]
    fn a_late_unanswered_commit_explains_a_regression() {
        let late = GroupEvent::CommitUnanswered {
            generation: 1,
            partition: 1,
            offset: 38,
        };
        let run = |with_late: bool| {
            let mut events = vec![owned(1), committed(1, 36)];
            events.extend(with_late.then(|| late.clone()));
            events.extend([
                committed(1, 46),
                committed(1, 225),
                owned(2),
                committed(2, 46),
            ]);
            regressions(events)
        };
        assert_eq!(run(true), 0);
        assert_eq!(run(false), 1);
    }

    /// An unanswered commit explains a regression to at or above its offset, and once.
    #[test]
    fn an_unanswered_commit_explains_one_regression_no_lower_than_its_offset() {
        let late = GroupEvent::CommitUnanswered {
            generation: 1,
            partition: 1,
            offset: 38,
        };
        let lower = vec![
            owned(1),
            late.clone(),
            committed(1, 225),
            owned(2),
            committed(2, 20),
        ];
        assert_eq!(regressions(lower), 1);
        let twice = vec![
            owned(1),
            late,
            committed(1, 225),
            owned(2),
            committed(2, 46),
            committed(2, 225),
            owned(3),
            committed(3, 46),
        ];
        assert_eq!(regressions(twice), 1);
    }
}

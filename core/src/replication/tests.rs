//! Tests of the leader's ISR and high-watermark rules and of log reconciliation.

use proptest::prelude::*;

use super::*;
use crate::error::ErrorCode;
use crate::log::EpochEnd;
use crate::types::{LeaderEpoch, Millis, NodeId, Offset};

const LAG_MS: i64 = 10_000;

fn n(id: i32) -> NodeId {
    NodeId(id)
}

fn init(replicas: &[i32], isr: &[i32], log_end: i64, high_watermark: i64) -> LeaderInit {
    LeaderInit {
        node: n(1),
        epoch: LeaderEpoch(3),
        replicas: replicas.iter().map(|&i| n(i)).collect(),
        isr: isr.iter().map(|&i| n(i)).collect(),
        log_end_offset: Offset(log_end),
        high_watermark: Offset(high_watermark),
        now: Millis(0),
        min_insync_replicas: 1,
        config: ReplicationConfig {
            replica_lag_time_max_ms: LAG_MS,
        },
    }
}

fn leader(isr: &[i32], log_end: i64, high_watermark: i64) -> LeaderState {
    LeaderState::new(init(&[1, 2, 3], isr, log_end, high_watermark))
}

fn isr(state: &LeaderState) -> Vec<i32> {
    state.isr().map(|r| r.0).collect()
}

/// The ISR the leader asks the controller for, if it differs from the committed one.
fn proposal(state: &LeaderState) -> Option<Vec<i32>> {
    Some(state.isr_proposal()?.iter().map(|r| r.0).collect())
}

/// The controller records the leader's proposal.
fn commit(state: &mut LeaderState, now: i64) -> LeaderUpdate {
    let wanted = state.isr_proposal().expect("a proposal to commit");
    state.commit_isr(Millis(now), &wanted)
}

fn plain(follower: i32, offset: i64) -> FollowerFetch {
    FollowerFetch {
        follower: n(follower),
        fetch_offset: Offset(offset),
        last_fetched_epoch: None,
        eligible: true,
    }
}

/// A fetch without an epoch (nothing to compare), served from log start 0.
fn try_fetch(
    state: &mut LeaderState,
    now: i64,
    follower: i32,
    offset: i64,
) -> Result<FetchVerdict, ErrorCode> {
    let no_lookup = |_| panic!("no epoch was sent: nothing to look up");
    state.handle_follower_fetch(Millis(now), plain(follower, offset), no_lookup, Offset(0))
}

fn fetch(state: &mut LeaderState, now: i64, follower: i32, offset: i64) -> LeaderUpdate {
    match try_fetch(state, now, follower, offset) {
        Ok(FetchVerdict::Serve(update)) => update,
        other => panic!("a valid follower fetch, got {other:?}"),
    }
}

/// A fetch with the follower's last epoch, against a leader whose history says `epoch_end`.
fn epoch_fetch(
    state: &mut LeaderState,
    follower: i32,
    offset: i64,
    last_epoch: i32,
    epoch_end: EpochEnd,
) -> Result<FetchVerdict, ErrorCode> {
    let fetch = FollowerFetch {
        last_fetched_epoch: Some(LeaderEpoch(last_epoch)),
        ..plain(follower, offset)
    };
    state.handle_follower_fetch(Millis(1), fetch, |_| epoch_end, Offset(0))
}

#[test]
fn high_watermark_is_the_smallest_log_end_offset_in_the_isr() {
    let mut s = leader(&[1, 2, 3], 10, 10);
    assert_eq!(s.handle_append(Millis(0), Offset(15)).high_watermark, None);
    assert_eq!(
        fetch(&mut s, 1, 2, 15).high_watermark,
        None,
        "3 has not fetched yet"
    );
    assert_eq!(fetch(&mut s, 2, 3, 12).high_watermark, Some(Offset(12)));
    assert_eq!(fetch(&mut s, 3, 3, 15).high_watermark, Some(Offset(15)));
    assert_eq!(s.high_watermark(), Offset(15));
}

#[test]
fn a_leader_alone_in_its_isr_commits_on_append() {
    let mut s = leader(&[1], 10, 7);
    assert_eq!(
        s.high_watermark(),
        Offset(10),
        "everything it has is committed at once"
    );
    assert_eq!(
        s.handle_append(Millis(0), Offset(12)).high_watermark,
        Some(Offset(12))
    );
}

#[test]
fn the_high_watermark_never_moves_down() {
    let mut s = leader(&[1, 2], 10, 10);
    fetch(&mut s, 1, 2, 10);
    // A follower truncating (after a divergence) does not uncommit anything.
    assert_eq!(fetch(&mut s, 2, 2, 8).high_watermark, None);
    assert_eq!(s.high_watermark(), Offset(10));
}

#[test]
fn a_lagging_follower_leaves_the_isr_after_the_lag_time() {
    let mut s = leader(&[1, 2, 3], 10, 10);
    fetch(&mut s, 0, 2, 10);
    fetch(&mut s, 0, 3, 10);
    s.handle_append(Millis(0), Offset(20));
    fetch(&mut s, 100, 2, 20); // 2 keeps up, 3 stops fetching
    assert_eq!(
        s.high_watermark(),
        Offset(10),
        "3 still holds the high watermark back"
    );
    assert_eq!(s.next_deadline(), Some(Millis(LAG_MS + 1)));
    assert!(
        s.handle_tick(Millis(LAG_MS)).is_empty(),
        "not yet: exactly the lag time"
    );
    let update = s.handle_tick(Millis(LAG_MS + 1));
    assert_eq!(update.isr_removed, vec![n(3)]);
    assert_eq!(proposal(&s), Some(vec![1, 2]));
    assert_eq!(
        update.high_watermark, None,
        "3 may still be elected until the controller records the shrink"
    );
    assert_eq!(isr(&s), vec![1, 2, 3]);
    assert_eq!(
        commit(&mut s, LAG_MS + 2).high_watermark,
        Some(Offset(20)),
        "2 alone now decides"
    );
    assert_eq!(isr(&s), vec![1, 2]);
    assert_eq!(proposal(&s), None);
}

#[test]
fn a_caught_up_follower_stays_in_the_isr_however_long_it_is_quiet() {
    let mut s = leader(&[1, 2], 10, 10);
    fetch(&mut s, 0, 2, 10);
    assert_eq!(s.next_deadline(), None);
    assert!(s.handle_tick(Millis(10 * LAG_MS)).is_empty());
    assert_eq!(isr(&s), vec![1, 2]);
}

#[test]
fn a_follower_fetching_behind_but_reaching_the_previous_end_counts_as_caught_up_then() {
    let mut s = leader(&[1, 2], 10, 10);
    s.handle_append(Millis(0), Offset(20));
    fetch(&mut s, 5_000, 2, 15); // behind: last caught up stays 0
    s.handle_append(Millis(0), Offset(30));
    // At 12,000 it fetches at 20: the leader's end at its previous fetch (5,000).
    fetch(&mut s, 12_000, 2, 20);
    assert!(
        s.handle_tick(Millis(LAG_MS + 1)).is_empty(),
        "caught up at 5,000"
    );
    assert_eq!(
        s.handle_tick(Millis(5_000 + LAG_MS + 1)).isr_removed,
        vec![n(2)]
    );
}

#[test]
fn a_follower_rejoins_once_it_holds_the_high_watermark_and_the_leader_epoch() {
    let mut s = leader(&[1], 10, 10);
    s.handle_append(Millis(0), Offset(20));
    assert_eq!(s.high_watermark(), Offset(20));
    assert!(
        fetch(&mut s, 1, 2, 15).isr_added.is_empty(),
        "below the high watermark"
    );
    let update = fetch(&mut s, 2, 2, 20);
    assert_eq!(update.isr_added, vec![n(2)]);
    assert_eq!(proposal(&s), Some(vec![1, 2]));
    assert_eq!(isr(&s), vec![1], "committed once the controller records it");
    // From now on the watermark waits for 2 as well, before the expansion is committed.
    s.handle_append(Millis(0), Offset(25));
    assert_eq!(s.high_watermark(), Offset(20));
    assert_eq!(fetch(&mut s, 3, 2, 25).high_watermark, Some(Offset(25)));
    commit(&mut s, 4);
    assert_eq!(isr(&s), vec![1, 2]);
}

#[test]
fn a_follower_below_the_epoch_start_does_not_rejoin_even_above_the_high_watermark() {
    // Leader since 10 with the high watermark at 6; follower 3 is out of sync and at 8 it
    // may hold another leader's records at 8..10.
    let mut s = LeaderState::new(init(&[1, 2, 3], &[1, 2], 10, 6));
    fetch(&mut s, 1, 2, 6);
    assert_eq!(s.high_watermark(), Offset(6));
    assert!(
        fetch(&mut s, 2, 3, 8).isr_added.is_empty(),
        "at 8 ≥ the watermark 6"
    );
    assert_eq!(fetch(&mut s, 3, 3, 10).isr_added, vec![n(3)]);
    assert_eq!(proposal(&s), Some(vec![1, 2, 3]));
}

#[test]
fn a_follower_that_keeps_up_under_load_rejoins() {
    // The leader alone in the ISR would commit each append at once, leaving a follower that
    // fetches just behind forever below the watermark; counting a caught-up follower outside
    // the ISR (Kafka's `maybeIncrementLeaderHW`) holds the watermark for it.
    let mut s = LeaderState::new(init(&[1, 2], &[1], 0, 0));
    s.handle_append(Millis(0), Offset(10));
    assert_eq!(
        s.high_watermark(),
        Offset(10),
        "2 has never caught up: nothing to wait for"
    );
    fetch(&mut s, 1, 2, 5);
    s.handle_append(Millis(2), Offset(20));
    assert_eq!(s.high_watermark(), Offset(20));
    fetch(&mut s, 3, 2, 10); // the leader's end at its previous fetch: caught up at 1
    s.handle_append(Millis(4), Offset(30));
    assert_eq!(
        s.high_watermark(),
        Offset(20),
        "held at 2's end while it is caught up"
    );
    assert_eq!(fetch(&mut s, 5, 2, 20).isr_added, vec![n(2)]);
}

#[test]
fn a_follower_that_joins_behind_the_leader_end_stays_for_the_lag_time() {
    let mut s = leader(&[1, 2], 10, 10);
    s.handle_append(Millis(0), Offset(30));
    fetch(&mut s, 1, 2, 20);
    assert_eq!(s.high_watermark(), Offset(20));
    // 3 holds everything committed without ever reaching the leader's end.
    assert_eq!(fetch(&mut s, 2, 3, 20).isr_added, vec![n(3)]);
    assert!(
        s.handle_tick(Millis(3)).isr_removed.is_empty(),
        "no flapping"
    );
    assert_eq!(
        s.handle_tick(Millis(2 + LAG_MS + 1)).isr_removed,
        vec![n(2), n(3)]
    );
}

#[test]
fn a_dead_follower_outside_the_isr_holds_nothing_back() {
    let mut s = LeaderState::new(init(&[1, 2], &[1], 10, 10));
    assert_eq!(
        s.handle_append(Millis(1), Offset(15)).high_watermark,
        Some(Offset(15))
    );
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn a_follower_the_controller_took_out_of_the_isr_holds_nothing_back() {
    let mut s = leader(&[1, 2, 3], 10, 10);
    fetch(&mut s, 1, 2, 10);
    fetch(&mut s, 1, 3, 10);
    s.handle_append(Millis(2), Offset(15));
    // 3 dies, caught up a moment ago; the controller fences it and commits the ISR without it.
    s.commit_isr(Millis(3), &[n(1), n(2)]);
    assert_eq!(
        fetch(&mut s, 4, 2, 15).high_watermark,
        Some(Offset(15)),
        "the survivors commit at once, not after the lag time"
    );
    // Alive after all, it counts again once it has caught up.
    fetch(&mut s, 5, 3, 15);
    s.handle_append(Millis(6), Offset(20));
    assert_eq!(fetch(&mut s, 7, 2, 20).high_watermark, None, "3 holds 15");
    assert_eq!(fetch(&mut s, 8, 3, 20).high_watermark, Some(Offset(20)));
}

#[test]
fn a_fenced_follower_that_still_fetches_neither_rejoins_nor_holds_the_watermark() {
    let mut s = leader(&[1, 2, 3], 10, 10);
    fetch(&mut s, 1, 2, 10);
    fetch(&mut s, 1, 3, 10);
    // 3 stops in a controlled shutdown: fenced, out of the ISR, still fetching at the end.
    s.commit_isr(Millis(2), &[n(1), n(2)]);
    let fenced = |offset| FollowerFetch {
        eligible: false,
        ..plain(3, offset)
    };
    let no_lookup = |_| panic!("no epoch was sent");
    s.handle_follower_fetch(Millis(3), fenced(10), no_lookup, Offset(0))
        .unwrap();
    assert_eq!(
        proposal(&s),
        None,
        "a fenced broker is not proposed for the ISR"
    );
    s.handle_append(Millis(4), Offset(15));
    s.handle_follower_fetch(Millis(5), fenced(15), no_lookup, Offset(0))
        .unwrap();
    s.handle_append(Millis(6), Offset(20));
    // 3 is gone now, caught up a moment ago: the survivors commit without waiting for it.
    assert_eq!(fetch(&mut s, 7, 2, 20).high_watermark, Some(Offset(20)));
    assert_eq!(isr(&s), vec![1, 2]);
}

#[test]
fn fetches_from_strangers_or_outside_the_log_are_refused_without_effect() {
    let mut s = leader(&[1, 2, 3], 10, 10);
    assert_eq!(
        try_fetch(&mut s, 1, 9, 0),
        Err(ErrorCode::NotLeaderOrFollower)
    );
    assert_eq!(
        try_fetch(&mut s, 1, 1, 0),
        Err(ErrorCode::NotLeaderOrFollower),
        "the leader does not fetch from itself"
    );
    assert_eq!(
        try_fetch(&mut s, 1, 2, 11),
        Err(ErrorCode::OffsetOutOfRange)
    );
    let below_start = s.handle_follower_fetch(
        Millis(1),
        plain(2, 3),
        |_| panic!("no epoch sent"),
        Offset(4),
    );
    assert_eq!(below_start, Err(ErrorCode::OffsetOutOfRange));
    assert_eq!(s.follower_log_end_offset(n(2)), None);
}

#[test]
fn a_diverging_fetch_records_nothing() {
    // The leader's epoch 2 ended at 40; the follower holds epoch-2 records up to 50 that the
    // leader does not have. Counting its 50 would commit offsets 40..50 it holds differently.
    let mut s = leader(&[1, 2], 60, 30);
    let verdict = epoch_fetch(&mut s, 2, 50, 2, de(2, 40));
    assert_eq!(verdict, Ok(FetchVerdict::Diverging(de(2, 40))));
    assert_eq!(s.follower_log_end_offset(n(2)), None);
    assert_eq!(s.high_watermark(), Offset(30));
    // Once truncated to 40 it is served from there.
    assert!(matches!(
        epoch_fetch(&mut s, 2, 40, 2, de(2, 40)),
        Ok(FetchVerdict::Serve(_))
    ));
    assert_eq!(s.follower_log_end_offset(n(2)), Some(Offset(40)));
}

#[test]
fn divergence_is_checked_before_the_range() {
    // After a failover the follower's old tail runs past the new leader's log end: it must
    // learn where to truncate, not that it is out of range.
    let mut s = leader(&[1, 2], 30, 30);
    assert_eq!(
        epoch_fetch(&mut s, 2, 50, 2, de(2, 25)),
        Ok(FetchVerdict::Diverging(de(2, 25)))
    );
    assert_eq!(
        epoch_fetch(&mut s, 2, 50, 2, de(-1, -1)),
        Err(ErrorCode::OffsetOutOfRange),
        "no end for the epoch at all"
    );
}

#[test]
fn acks_all_uses_the_effective_min_insync_replicas() {
    let mut s = LeaderState::new(LeaderInit {
        min_insync_replicas: 2,
        ..init(&[1, 2, 3], &[1, 2], 10, 10)
    });
    assert_eq!(s.check_acks_all(), Ok(()));
    s.handle_append(Millis(0), Offset(12));
    assert_eq!(s.acks_all_outcome(Offset(12)), None, "not committed yet");
    fetch(&mut s, 1, 2, 12);
    assert_eq!(s.acks_all_outcome(Offset(12)), Some(Ok(())));
    // min.insync.replicas 3 on three replicas with two in sync: refused up front.
    s.set_min_insync_replicas(Millis(1), 3);
    assert_eq!(s.check_acks_all(), Err(ErrorCode::NotEnoughReplicas));
    // A topic with more min.insync.replicas than replicas is held to its replica count.
    let two = LeaderState::new(LeaderInit {
        min_insync_replicas: 3,
        ..init(&[1, 2], &[1, 2], 10, 10)
    });
    assert_eq!(two.effective_min_insync_replicas(), 2);
    assert_eq!(two.check_acks_all(), Ok(()));
}

#[test]
fn the_high_watermark_waits_while_the_isr_is_below_the_minimum() {
    let mut s = LeaderState::new(LeaderInit {
        min_insync_replicas: 2,
        ..init(&[1, 2], &[1, 2], 10, 10)
    });
    fetch(&mut s, 0, 2, 10);
    s.handle_append(Millis(1), Offset(14));
    // 2 stops fetching and leaves the ISR; the leader alone does not commit 10..14.
    let update = s.handle_tick(Millis(LAG_MS + 2));
    assert_eq!(update.isr_removed, vec![n(2)]);
    assert_eq!(update.high_watermark, None);
    assert_eq!(
        commit(&mut s, LAG_MS + 2).high_watermark,
        None,
        "the committed ISR is below the minimum"
    );
    assert_eq!(s.high_watermark(), Offset(10));
    assert_eq!(s.acks_all_outcome(Offset(14)), None, "still waiting");
    assert_eq!(s.check_acks_all(), Err(ErrorCode::NotEnoughReplicas));
    // An operator lowering the minimum releases it.
    assert_eq!(
        s.set_min_insync_replicas(Millis(LAG_MS + 3), 1)
            .high_watermark,
        Some(Offset(14))
    );
    assert_eq!(s.acks_all_outcome(Offset(14)), Some(Ok(())));
}

fn de(epoch: i32, end: i64) -> EpochEnd {
    EpochEnd {
        epoch: LeaderEpoch(epoch),
        end_offset: Offset(end),
    }
}

#[test]
fn the_leader_reports_divergence_only_when_the_follower_went_past_the_epoch_end() {
    // The follower's last batch is of epoch 2 and it fetches at 50.
    let e2 = LeaderEpoch(2);
    assert_eq!(divergence(Offset(50), e2, de(2, 60)), Ok(None));
    assert_eq!(divergence(Offset(50), e2, de(2, 50)), Ok(None));
    assert_eq!(divergence(Offset(50), e2, de(2, 40)), Ok(Some(de(2, 40))));
    // The leader never had epoch 2: its history answers with epoch 1.
    assert_eq!(divergence(Offset(50), e2, de(1, 70)), Ok(Some(de(1, 70))));
    // No end at all (the epoch is newer than the leader's history): out of range, as Kafka.
    assert_eq!(
        divergence(Offset(50), e2, de(-1, -1)),
        Err(ErrorCode::OffsetOutOfRange)
    );
}

#[test]
fn the_follower_truncates_to_where_the_two_histories_agree() {
    // Same epoch on both sides: the smaller end.
    assert_eq!(
        truncation_offset(de(2, 40), Some(de(2, 55)), Offset(55)),
        Truncation {
            offset: Offset(40),
            complete: true
        }
    );
    // The follower knows only epoch 1 below the leader's epoch 2: to its end, then ask again.
    assert_eq!(
        truncation_offset(de(2, 40), Some(de(1, 35)), Offset(55)),
        Truncation {
            offset: Offset(35),
            complete: false
        }
    );
    // No local history at or below the epoch: the leader's end.
    assert_eq!(
        truncation_offset(de(2, 40), None, Offset(55)),
        Truncation {
            offset: Offset(40),
            complete: true
        }
    );
    // Never beyond the follower's own end.
    assert_eq!(
        truncation_offset(de(2, 80), Some(de(2, 90)), Offset(55)),
        Truncation {
            offset: Offset(55),
            complete: true
        }
    );
}

#[test]
fn out_of_range_cuts_a_longer_tail_or_restarts_at_the_leader_start() {
    assert_eq!(
        out_of_range_reset(Offset(50), Offset(0), Offset(30)),
        OutOfRangeReset::TruncateTo(Offset(30))
    );
    assert_eq!(
        out_of_range_reset(Offset(5), Offset(20), Offset(30)),
        OutOfRangeReset::StartAt(Offset(20))
    );
}

#[test]
fn a_follower_fetches_from_its_log_end_with_its_last_epoch() {
    let f = FollowerState::new(n(2), LeaderEpoch(5));
    assert_eq!(
        f.fetch_position(Offset(42), Some(LeaderEpoch(4))),
        FetchPosition {
            leader: n(2),
            current_leader_epoch: LeaderEpoch(5),
            fetch_offset: Offset(42),
            last_fetched_epoch: Some(LeaderEpoch(4)),
        }
    );
    assert_eq!(
        FollowerState::high_watermark_after_fetch(Offset(50), Offset(42)),
        Offset(42)
    );
}

#[derive(Clone, Debug)]
enum Step {
    Append(u8),
    Fetch {
        follower: u8,
        behind: u8,
        dt: u16,
    },
    Tick(u16),
    /// The controller records the leader's pending ISR change.
    Commit,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1u8..20).prop_map(Step::Append),
        (2u8..=3, 0u8..30, 0u16..4_000).prop_map(|(follower, behind, dt)| Step::Fetch {
            follower,
            behind,
            dt
        }),
        (0u16..15_000).prop_map(Step::Tick),
        Just(Step::Commit),
    ]
}

proptest! {
    /// Whatever the order of appends, fetches (followers only move forward), ticks and the
    /// controller recording ISR changes: the high watermark never moves down, never passes
    /// the log end offset, and every member of the committed ISR — the replicas an election
    /// may choose — that has fetched holds everything below it: the committed prefix
    /// survives losing any ISR member but one.
    #[test]
    fn committed_records_are_held_by_every_isr_member(steps in proptest::collection::vec(step(), 1..200)) {
        let mut s = leader(&[1, 2, 3], 0, 0);
        let mut now = 0i64;
        let mut log_end = 0i64;
        let mut follower_end = [0i64; 4];
        let mut last_hw = s.high_watermark();
        for st in steps {
            match st {
                Step::Append(k) => {
                    log_end += i64::from(k);
                    s.handle_append(Millis(0), Offset(log_end));
                }
                Step::Fetch { follower, behind, dt } => {
                    now += i64::from(dt);
                    let f = usize::from(follower);
                    let at = (log_end - i64::from(behind)).max(follower_end[f]);
                    follower_end[f] = at;
                    fetch(&mut s, now, i32::from(follower), at);
                }
                Step::Tick(dt) => {
                    now += i64::from(dt);
                    s.handle_tick(Millis(now));
                }
                Step::Commit => {
                    if let Some(wanted) = s.isr_proposal() {
                        s.commit_isr(Millis(now), &wanted);
                    }
                }
            }
            let hw = s.high_watermark();
            prop_assert!(hw >= last_hw);
            prop_assert!(hw <= Offset(log_end));
            for r in s.isr().filter(|&r| r != n(1)) {
                if let Some(end) = s.follower_log_end_offset(r) {
                    prop_assert!(end >= hw, "ISR member {r} at {end} below the high watermark {hw}");
                }
            }
            last_hw = hw;
        }
    }
}

/// While a reassignment widens the replicas, `min.insync.replicas` stays clamped to the
/// replicas the partition keeps: a one-replica partition with min.insync.replicas=2 moving
/// to another broker still commits with its one in-sync replica.
#[test]
fn leader_clamps_min_insync_replicas_to_the_replicas_a_move_keeps() {
    let mut alone = init(&[1], &[1], 5, 5);
    alone.min_insync_replicas = 2;
    let mut state = LeaderState::new(alone);
    assert_eq!(state.effective_min_insync_replicas(), 1);
    // Moving [1] -> [2]: replicas [2, 1], 1 removed once 2 is in sync.
    state.set_replicas(&[n(2), n(1)]);
    state.set_moving_out(1);
    assert_eq!(state.effective_min_insync_replicas(), 1);
    let update = state.handle_append(Millis(1), Offset(9));
    assert_eq!(
        update.high_watermark,
        Some(Offset(9)),
        "acks=all still commits"
    );
    state.set_moving_out(0);
    assert_eq!(
        state.effective_min_insync_replicas(),
        2,
        "two replicas kept: both needed"
    );
}

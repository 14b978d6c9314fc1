//! Group coordinator tests: the classic protocol driven through `handle_*` with a virtual
//! clock.

use bytes::Bytes;

use super::*;
use crate::error::ErrorCode;

const T0: Millis = Millis(1_000_000);
const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn at(ms: i64) -> Millis {
    Millis(T0.0 + ms)
}

fn join_request(group: &str, member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: group.into(),
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| {
                (
                    (*p).to_string(),
                    Bytes::from(format!("meta-{p}-{member_id}")),
                )
            })
            .collect(),
        require_known_member_id: true,
    }
}

fn sync_request(
    group: &str,
    member_id: &str,
    generation: i32,
    plan: &[(&str, &str)],
) -> SyncRequest {
    SyncRequest {
        group_id: group.into(),
        member_id: member_id.into(),
        group_instance_id: None,
        generation_id: generation,
        protocol_type: None,
        protocol_name: None,
        assignments: plan
            .iter()
            .map(|(m, a)| ((*m).to_string(), Bytes::from((*a).to_string())))
            .collect(),
    }
}

fn me(member_id: &str) -> MemberIdentity {
    MemberIdentity {
        member_id: member_id.into(),
        group_instance_id: None,
    }
}

fn now_answer<T: std::fmt::Debug>(answer: Answer<T>) -> T {
    match answer {
        Answer::Now(t) => t,
        Answer::Parked(id) => panic!("expected an answer now, parked as {id:?}"),
    }
}

fn parked<T: std::fmt::Debug>(answer: Answer<T>) -> ParkId {
    match answer {
        Answer::Parked(id) => id,
        Answer::Now(t) => panic!("expected a parked request, got {t:?}"),
    }
}

fn joins(coordinator: &mut GroupCoordinator) -> Vec<(ParkId, JoinResponse)> {
    coordinator
        .poll_completed()
        .into_iter()
        .map(|(id, c)| match c {
            Completion::Join(j) => (id, j),
            other => panic!("expected a join completion, got {other:?}"),
        })
        .collect()
}

fn syncs(coordinator: &mut GroupCoordinator) -> Vec<(ParkId, SyncResponse)> {
    coordinator
        .poll_completed()
        .into_iter()
        .map(|(id, c)| match c {
            Completion::Sync(s) => (id, s),
            other => panic!("expected a sync completion, got {other:?}"),
        })
        .collect()
}

/// KIP-394: a new member gets its id with MEMBER_ID_REQUIRED, then joins with it.
fn new_member_id(coordinator: &mut GroupCoordinator, now: Millis, group: &str) -> String {
    let answer = now_answer(coordinator.handle_join(now, join_request(group, "", &["range"])));
    assert_eq!(answer.error, ErrorCode::MemberIdRequired);
    assert!(answer.member_id.starts_with("client-"));
    answer.member_id
}

/// One member forms a group: returns its id and the generation.
fn single_member_group(coordinator: &mut GroupCoordinator, group: &str) -> (String, i32) {
    let id = new_member_id(coordinator, T0, group);
    let park = parked(coordinator.handle_join(T0, join_request(group, &id, &["range"])));
    let done = joins(coordinator);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, park);
    let join = &done[0].1;
    assert_eq!(join.error, ErrorCode::None);
    assert_eq!(join.leader, id, "the only member leads");
    assert_eq!(join.members.len(), 1);
    let generation = join.generation_id;
    let sync = parked(
        coordinator.handle_sync(T0, sync_request(group, &id, generation, &[(&id, "p0,p1")])),
    );
    let done = syncs(coordinator);
    assert_eq!(done[0].0, sync);
    assert_eq!(done[0].1.assignment, Bytes::from("p0,p1"));
    assert_eq!(coordinator.group_state(group), GroupState::Stable);
    (id, generation)
}

#[test]
fn group_join_sync_single_member_becomes_stable_and_persists_metadata() {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
    let (id, generation) = single_member_group(&mut coordinator, "g");
    assert_eq!(generation, 1);
    let records = coordinator.poll_records();
    assert!(matches!(
        &records[..],
        [GroupRecord::Group { group, value: Some(v) }]
            if group == "g" && v.members.len() == 1 && v.members[0].member_id == id
                && v.members[0].assignment == "p0,p1"
    ));
    assert_eq!(
        coordinator.handle_heartbeat(at(100), "g", &me(&id), generation),
        ErrorCode::None
    );
    assert_eq!(
        coordinator.handle_heartbeat(at(100), "g", &me(&id), generation + 1),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        coordinator.handle_heartbeat(at(100), "g", &me("nobody"), generation),
        ErrorCode::UnknownMemberId
    );
    assert_eq!(
        coordinator.handle_heartbeat(at(100), "other", &me(&id), generation),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn group_second_member_triggers_rebalance_and_leader_gets_every_subscription() {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
    let (first, generation) = single_member_group(&mut coordinator, "g");
    let second = new_member_id(&mut coordinator, at(10), "g");
    let second_park =
        parked(coordinator.handle_join(at(10), join_request("g", &second, &["range"])));
    assert_eq!(coordinator.group_state("g"), GroupState::PreparingRebalance);
    // The first member learns of the rebalance from its heartbeat and rejoins.
    assert_eq!(
        coordinator.handle_heartbeat(at(20), "g", &me(&first), generation),
        ErrorCode::RebalanceInProgress
    );
    // A sync of the old generation during the rebalance is refused.
    assert_eq!(
        now_answer(coordinator.handle_sync(at(20), sync_request("g", &first, generation, &[])))
            .error,
        ErrorCode::RebalanceInProgress
    );
    let first_park = parked(coordinator.handle_join(at(30), join_request("g", &first, &["range"])));
    let done = joins(&mut coordinator);
    assert_eq!(done.len(), 2);
    for (park, join) in &done {
        assert_eq!(join.generation_id, generation + 1);
        assert_eq!(join.leader, first, "the leader stays the leader");
        if *park == first_park {
            assert_eq!(join.members.len(), 2, "the leader sees every member");
        } else {
            assert_eq!(*park, second_park);
            assert!(join.members.is_empty(), "followers see no members");
        }
    }
    // The follower's sync waits for the leader's.
    let follower_sync =
        parked(coordinator.handle_sync(at(40), sync_request("g", &second, generation + 1, &[])));
    assert!(coordinator.poll_completed().is_empty());
    let plan = [(first.as_str(), "a"), (second.as_str(), "b")];
    let leader_sync =
        parked(coordinator.handle_sync(at(50), sync_request("g", &first, generation + 1, &plan)));
    let done = syncs(&mut coordinator);
    assert_eq!(done.len(), 2);
    for (park, sync) in done {
        let expected = if park == leader_sync { "a" } else { "b" };
        assert!(park == leader_sync || park == follower_sync);
        assert_eq!(sync.assignment, Bytes::from(expected));
    }
    assert_eq!(coordinator.group_state("g"), GroupState::Stable);
}

#[test]
fn group_session_expiry_removes_silent_member_and_rebalances() {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
    let (first, generation) = single_member_group(&mut coordinator, "g");
    assert_eq!(coordinator.next_deadline(), Some(at(i64::from(SESSION_MS))));
    coordinator.handle_tick(at(i64::from(SESSION_MS) - 1));
    assert_eq!(coordinator.group_state("g"), GroupState::Stable);
    coordinator.handle_tick(at(i64::from(SESSION_MS)));
    // The only member is gone: the rebalance completes at once with nobody, so Empty.
    assert_eq!(coordinator.group_state("g"), GroupState::Empty);
    assert_eq!(coordinator.generation("g"), Some(generation + 1));
    assert_eq!(
        coordinator.handle_heartbeat(at(20_000), "g", &me(&first), generation),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn group_rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
    let (first, generation) = single_member_group(&mut coordinator, "g");
    let second = new_member_id(&mut coordinator, at(1), "g");
    let park = parked(coordinator.handle_join(at(1), join_request("g", &second, &["range"])));
    // The first member keeps heartbeating but never rejoins.
    for step in 1..=5 {
        let now = at(step * 5_000);
        assert_eq!(
            coordinator.handle_heartbeat(now, "g", &me(&first), generation),
            ErrorCode::RebalanceInProgress
        );
        coordinator.handle_tick(now);
    }
    assert!(coordinator.poll_completed().is_empty());
    assert_eq!(
        coordinator.next_deadline(),
        Some(at(1 + i64::from(REBALANCE_MS)))
    );
    coordinator.handle_tick(at(1 + i64::from(REBALANCE_MS)));
    let done = joins(&mut coordinator);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, park);
    assert_eq!(done[0].1.leader, second, "the rejoined member leads");
    assert_eq!(done[0].1.members.len(), 1);
    assert_eq!(
        coordinator.handle_heartbeat(at(31_000), "g", &me(&first), generation),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn group_leave_hands_over_and_batched_leave_reports_per_member() {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
    let (first, _) = single_member_group(&mut coordinator, "g");
    let left = coordinator
        .handle_leave(at(1), "g", &[me(&first), me("ghost")])
        .unwrap();
    assert_eq!(left, vec![ErrorCode::None, ErrorCode::UnknownMemberId]);
    assert_eq!(coordinator.group_state("g"), GroupState::Empty);
    assert_eq!(
        coordinator.handle_leave(at(1), "nope", &[me(&first)]),
        Err(ErrorCode::UnknownMemberId)
    );
}

#[test]
fn group_protocols_must_be_common() {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
    let (_first, _) = single_member_group(&mut coordinator, "g");
    let mut other = join_request("g", "", &["roundrobin"]);
    other.require_known_member_id = false;
    assert_eq!(
        now_answer(coordinator.handle_join(at(1), other)).error,
        ErrorCode::InconsistentGroupProtocol
    );
    let mut wrong_type = join_request("g", "", &["range"]);
    wrong_type.protocol_type = "connect".into();
    assert_eq!(
        now_answer(coordinator.handle_join(at(1), wrong_type)).error,
        ErrorCode::InconsistentGroupProtocol
    );
    let mut too_short = join_request("g", "", &["range"]);
    too_short.session_timeout_ms = 10;
    assert_eq!(
        now_answer(coordinator.handle_join(at(1), too_short)).error,
        ErrorCode::InvalidSessionTimeout
    );
}

#[test]
fn group_protocol_vote_picks_the_most_preferred_common_protocol() {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
    let mut a = join_request("g", "", &["cooperative-sticky", "range"]);
    a.require_known_member_id = false;
    let mut b = join_request("g", "", &["range", "cooperative-sticky"]);
    b.require_known_member_id = false;
    let mut c = join_request("g", "", &["cooperative-sticky"]);
    c.require_known_member_id = false;
    parked(coordinator.handle_join(T0, a));
    // Each later join opens the rebalance again only for the new member; old members rejoin.
    let first_round = joins(&mut coordinator);
    assert_eq!(
        first_round[0].1.protocol_name.as_deref(),
        Some("cooperative-sticky")
    );
    let leader = first_round[0].1.member_id.clone();
    parked(coordinator.handle_join(at(1), b));
    parked(coordinator.handle_join(at(1), c));
    let mut rejoin = join_request("g", &leader, &["cooperative-sticky", "range"]);
    rejoin.require_known_member_id = false;
    parked(coordinator.handle_join(at(2), rejoin));
    let done = joins(&mut coordinator);
    assert_eq!(done.len(), 3);
    assert!(done
        .iter()
        .all(|(_, j)| j.protocol_name.as_deref() == Some("cooperative-sticky")));
}

#[test]
fn group_static_member_rejoin_keeps_assignment_and_fences_old_id() {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
    let mut join = join_request("g", "", &["range"]);
    join.group_instance_id = Some("instance-1".into());
    // Static members skip MEMBER_ID_REQUIRED (KIP-345).
    parked(coordinator.handle_join(T0, join.clone()));
    let first = joins(&mut coordinator).remove(0).1;
    assert_eq!(first.error, ErrorCode::None);
    let mut sync = sync_request(
        "g",
        &first.member_id,
        first.generation_id,
        &[(&first.member_id, "mine")],
    );
    sync.group_instance_id = Some("instance-1".into());
    parked(coordinator.handle_sync(T0, sync));
    syncs(&mut coordinator);
    // The instance restarts and joins without its member id: same generation, new id.
    let again = now_answer(coordinator.handle_join(at(5), join));
    assert_eq!(again.error, ErrorCode::None);
    assert_eq!(again.generation_id, first.generation_id);
    assert_ne!(again.member_id, first.member_id);
    assert_eq!(coordinator.group_state("g"), GroupState::Stable);
    let mut sync = sync_request("g", &again.member_id, again.generation_id, &[]);
    sync.group_instance_id = Some("instance-1".into());
    assert_eq!(
        now_answer(coordinator.handle_sync(at(6), sync)).assignment,
        Bytes::from("mine")
    );
    // The old incarnation is fenced.
    let old = MemberIdentity {
        member_id: first.member_id.clone(),
        group_instance_id: Some("instance-1".into()),
    };
    assert_eq!(
        coordinator.handle_heartbeat(at(7), "g", &old, first.generation_id),
        ErrorCode::FencedInstanceId
    );
    // A batched leave by instance id removes it.
    let leave = MemberIdentity {
        member_id: String::new(),
        group_instance_id: Some("instance-1".into()),
    };
    assert_eq!(
        coordinator.handle_leave(at(8), "g", &[leave]),
        Ok(vec![ErrorCode::None])
    );
    assert_eq!(coordinator.group_state("g"), GroupState::Empty);
}

#[test]
fn group_offset_commit_rules_follow_generations() {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
    let simple = CommitRequest {
        group_id: "solo".into(),
        member_id: String::new(),
        group_instance_id: None,
        generation_id: -1,
    };
    assert_eq!(coordinator.check_commit(T0, &simple), Ok(()));
    let value = OffsetValue {
        offset: 5,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: T0.0,
    };
    coordinator.apply_commit(T0, "solo", vec![("t".into(), 0, value)]);
    assert_eq!(coordinator.group_state("solo"), GroupState::Empty);
    assert_eq!(coordinator.committed_offsets("solo").unwrap().len(), 1);
    let stale = CommitRequest {
        generation_id: 3,
        ..simple.clone()
    };
    assert_eq!(
        coordinator.check_commit(
            T0,
            &CommitRequest {
                group_id: "none".into(),
                ..stale
            }
        ),
        Err(ErrorCode::IllegalGeneration)
    );
    let (id, generation) = single_member_group(&mut coordinator, "g");
    let member = CommitRequest {
        group_id: "g".into(),
        member_id: id.clone(),
        group_instance_id: None,
        generation_id: generation,
    };
    assert_eq!(coordinator.check_commit(at(1), &member), Ok(()));
    let old = CommitRequest {
        generation_id: generation - 1,
        ..member.clone()
    };
    assert_eq!(
        coordinator.check_commit(at(1), &old),
        Err(ErrorCode::IllegalGeneration)
    );
    let simple_on_live_group = CommitRequest {
        group_id: "g".into(),
        ..simple
    };
    assert_eq!(
        coordinator.check_commit(at(1), &simple_on_live_group),
        Err(ErrorCode::UnknownMemberId)
    );
    assert_eq!(coordinator.delete_group("g"), ErrorCode::NonEmptyGroup);
    assert_eq!(coordinator.delete_group("solo"), ErrorCode::None);
    assert_eq!(coordinator.delete_group("solo"), ErrorCode::GroupIdNotFound);
}

#[test]
fn group_load_restores_members_offsets_and_generation() {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
    let (member, generation) = single_member_group(&mut coordinator, "g");
    let mut records = coordinator.poll_records();
    records.push(GroupRecord::Offset {
        group: "g".into(),
        topic: "t".into(),
        partition: 1,
        value: Some(OffsetValue {
            offset: 9,
            leader_epoch: 0,
            metadata: "m".into(),
            commit_timestamp_ms: 1,
        }),
    });
    let mut restored = GroupCoordinator::new(GroupConfig::default());
    for record in records.clone() {
        restored.load(record, at(10));
    }
    restored.check_invariants();
    // The generation comes back Stable, with its member and assignment: it heartbeats on.
    assert_eq!(restored.group_state("g"), GroupState::Stable);
    assert_eq!(restored.generation("g"), Some(generation));
    let described = restored.describe("g");
    assert_eq!(described.members.len(), 1);
    assert_eq!(described.members[0].assignment.as_ref(), b"p0,p1");
    assert_eq!(
        restored.handle_heartbeat(at(20), "g", &me(&member), generation),
        ErrorCode::None
    );
    assert_eq!(
        restored.committed_offsets("g").unwrap()[&("t".to_string(), 1)].offset,
        9
    );
    // A member that never comes back expires with its session; the group goes Empty.
    restored.handle_tick(at(20 + i64::from(SESSION_MS) + 1));
    assert_eq!(restored.group_state("g"), GroupState::Empty);
    restored.check_invariants();
    // A group stored Empty comes back Empty.
    let mut empty = GroupCoordinator::new(GroupConfig::default());
    for record in records.into_iter().chain(restored.poll_records()) {
        empty.load(record, at(30));
    }
    assert_eq!(empty.group_state("g"), GroupState::Empty);
    assert!(empty.generation("g") > Some(generation));
    empty.check_invariants();
}

#[test]
fn group_rejoin_with_foreign_protocols_is_refused_without_harm() {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
    let (first, _) = single_member_group(&mut coordinator, "g");
    let second = new_member_id(&mut coordinator, at(1), "g");
    parked(coordinator.handle_join(at(1), join_request("g", &second, &["range"])));
    parked(coordinator.handle_join(at(2), join_request("g", &first, &["range"])));
    joins(&mut coordinator);
    // A member switching to a protocol the other does not speak is refused ...
    assert_eq!(
        now_answer(coordinator.handle_join(at(3), join_request("g", &first, &["roundrobin"])))
            .error,
        ErrorCode::InconsistentGroupProtocol
    );
    // ... but alone, a member may change protocols freely.
    coordinator
        .handle_leave(at(4), "g", &[me(&second)])
        .unwrap();
    let answer = coordinator.handle_join(at(5), join_request("g", &first, &["roundrobin"]));
    let park = parked(answer);
    let done = joins(&mut coordinator);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, park);
    assert_eq!(done[0].1.protocol_name.as_deref(), Some("roundrobin"));
    // Names longer than the stored format allows are refused up front.
    let long = "g".repeat(NAME_LEN_MAX + 1);
    assert_eq!(
        now_answer(coordinator.handle_join(at(6), join_request(&long, "", &["range"]))).error,
        ErrorCode::InvalidGroupId
    );
}

#[test]
fn group_initial_rebalance_delay_gathers_members_into_one_generation() {
    let config = GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..GroupConfig::default()
    };
    let mut coordinator = GroupCoordinator::new(config);
    let a = new_member_id(&mut coordinator, T0, "g");
    parked(coordinator.handle_join(T0, join_request("g", &a, &["range"])));
    assert!(
        coordinator.poll_completed().is_empty(),
        "the first join waits for company"
    );
    assert_eq!(coordinator.next_deadline(), Some(at(3_000)));
    let b = new_member_id(&mut coordinator, at(2_000), "g");
    parked(coordinator.handle_join(at(2_000), join_request("g", &b, &["range"])));
    // A member arrived during the delay: it is extended once more.
    coordinator.handle_tick(at(3_000));
    assert!(coordinator.poll_completed().is_empty());
    coordinator.handle_tick(at(6_000));
    let done = joins(&mut coordinator);
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|(_, j)| j.generation_id == 1));
}

/// A random walk over joins, syncs, heartbeats, leaves, commits and ticks by a few members
/// (some static): the invariants are asserted after every step by the handlers themselves,
/// and every parked request is answered exactly once.
#[test]
fn group_random_operations_keep_invariants_and_answer_every_park_once() {
    let mut stable_steps = 0;
    let mut syncs_answered = 0;
    for seed in 0..20u64 {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let config = GroupConfig {
            initial_rebalance_delay_ms: if seed % 2 == 0 { 0 } else { 500 },
            ..GroupConfig::default()
        };
        let mut coordinator = GroupCoordinator::new(config);
        let mut ids: Vec<String> = vec![String::new(); 4];
        // Parked request → the slot of the member that sent it.
        let mut open: std::collections::BTreeMap<ParkId, usize> = Default::default();
        let mut now = T0;
        for _ in 0..400 {
            now = Millis(now.0 + next(800) as i64);
            let slot = next(4) as usize;
            let instance = (slot >= 2).then(|| format!("static-{slot}"));
            let stale = i32::from(next(4) == 0);
            let generation = coordinator.generation("g").unwrap_or(0) - stale;
            match next(6) {
                0 | 1 => {
                    let protocols: &[&str] = if next(5) == 0 {
                        &["roundrobin"]
                    } else {
                        &["range", "roundrobin"]
                    };
                    let mut join = join_request("g", &ids[slot], protocols);
                    join.group_instance_id = instance;
                    match coordinator.handle_join(now, join) {
                        Answer::Now(answer) => {
                            if !answer.member_id.is_empty() {
                                ids[slot] = answer.member_id;
                            }
                        }
                        Answer::Parked(id) => {
                            assert!(open.insert(id, slot).is_none());
                        }
                    }
                }
                2 => {
                    let plan: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), "x")).collect();
                    let mut sync = sync_request("g", &ids[slot], generation, &plan);
                    sync.group_instance_id = instance;
                    if let Answer::Parked(id) = coordinator.handle_sync(now, sync) {
                        assert!(open.insert(id, slot).is_none());
                    }
                }
                3 => {
                    let who = MemberIdentity {
                        member_id: ids[slot].clone(),
                        group_instance_id: instance,
                    };
                    coordinator.handle_heartbeat(now, "g", &who, generation);
                }
                4 => {
                    let who = MemberIdentity {
                        member_id: ids[slot].clone(),
                        group_instance_id: instance,
                    };
                    let _ = coordinator.handle_leave(now, "g", &[who]);
                }
                _ => {
                    let commit = CommitRequest {
                        group_id: "g".into(),
                        member_id: ids[slot].clone(),
                        group_instance_id: instance,
                        generation_id: generation,
                    };
                    let _ = coordinator.check_commit(now, &commit);
                    coordinator.handle_tick(now);
                }
            }
            if coordinator.group_state("g") == GroupState::Stable {
                stable_steps += 1;
            }
            for (id, completion) in coordinator.poll_completed() {
                let slot = open.remove(&id);
                assert!(
                    slot.is_some(),
                    "seed {seed}: {id:?} answered twice or never parked"
                );
                if matches!(&completion, Completion::Sync(s) if s.error == ErrorCode::None) {
                    syncs_answered += 1;
                }
                if let Completion::Join(join) = completion {
                    if join.error == ErrorCode::None {
                        ids[slot.expect("checked")] = join.member_id;
                    }
                }
            }
            if let Some(deadline) = coordinator.next_deadline() {
                assert!(deadline.0 > now.0 - 3_000_000, "deadlines are near");
            }
        }
        // Liveness: with no more input, the timers answer every parked request.
        for _ in 0..10 {
            now = Millis(now.0 + 60_000);
            coordinator.handle_tick(now);
            for (id, _) in coordinator.poll_completed() {
                let slot = open.remove(&id);
                assert!(slot.is_some(), "seed {seed}: {id:?} answered twice");
            }
        }
        assert!(open.is_empty(), "seed {seed}: never answered: {open:?}");
        coordinator.poll_records();
    }
    assert!(
        stable_steps > 50,
        "the walk reaches Stable ({stable_steps} steps)"
    );
    assert!(
        syncs_answered > 20,
        "the walk completes syncs ({syncs_answered})"
    );
}

/// A retention of 100 s checked every second, so expiry is easy to step through.
fn retention_config() -> GroupConfig {
    GroupConfig {
        offsets_retention_ms: 100_000,
        offsets_retention_check_interval_ms: 1_000,
        ..GroupConfig::default()
    }
}

fn offset_value(offset: i64, committed: Millis) -> OffsetValue {
    OffsetValue {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: committed.0,
    }
}

/// Commits `(topic, partition, offset)`s for a group as the broker does: check, then apply.
fn commit_at(
    coordinator: &mut GroupCoordinator,
    now: Millis,
    request: &CommitRequest,
    offsets: &[(&str, i32, i64)],
) {
    assert_eq!(coordinator.check_commit(now, request), Ok(()));
    let offsets = offsets
        .iter()
        .map(|(t, p, o)| ((*t).to_string(), *p, offset_value(*o, now)))
        .collect();
    coordinator.apply_commit(now, &request.group_id, offsets);
}

fn simple_commit(group: &str) -> CommitRequest {
    CommitRequest {
        group_id: group.into(),
        member_id: String::new(),
        group_instance_id: None,
        generation_id: -1,
    }
}

/// The (topic, partition) keys of the offset tombstones and the groups of the group
/// tombstones among drained records.
fn tombstones(records: &[GroupRecord]) -> (Vec<(String, i32)>, Vec<String>) {
    let mut offsets = Vec::new();
    let mut groups = Vec::new();
    for record in records {
        match record {
            GroupRecord::Offset {
                topic,
                partition,
                value: None,
                ..
            } => offsets.push((topic.clone(), *partition)),
            GroupRecord::Group { group, value: None } => groups.push(group.clone()),
            _ => {}
        }
    }
    (offsets, groups)
}

/// A ConsumerProtocolSubscription (v0) naming `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut out = vec![0, 0];
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for topic in topics {
        out.extend_from_slice(&(topic.len() as i16).to_be_bytes());
        out.extend_from_slice(topic.as_bytes());
    }
    Bytes::from(out)
}

#[test]
fn group_retention_empty_group_offsets_expire_from_when_it_became_empty_kip_211() {
    let mut coordinator = GroupCoordinator::new(retention_config());
    let (id, generation) = single_member_group(&mut coordinator, "g");
    let member = CommitRequest {
        group_id: "g".into(),
        member_id: id.clone(),
        group_instance_id: None,
        generation_id: generation,
    };
    commit_at(&mut coordinator, T0, &member, &[("t", 0, 5), ("t", 1, 7)]);
    assert_eq!(coordinator.next_deadline(), Some(at(1_000)), "first check");
    coordinator
        .handle_leave(at(50_000), "g", &[me(&id)])
        .unwrap();
    assert_eq!(coordinator.group_state("g"), GroupState::Empty);
    coordinator.poll_records();
    // The commits are 149 s old, but the group has been Empty for 99 s only.
    coordinator.handle_tick(at(149_000));
    assert_eq!(coordinator.committed_offsets("g").unwrap().len(), 2);
    assert!(coordinator.poll_records().is_empty());
    coordinator.handle_tick(at(150_000));
    assert_eq!(coordinator.group_state("g"), GroupState::Dead);
    assert!(coordinator.committed_offsets("g").is_none());
    let (offsets, groups) = tombstones(&coordinator.poll_records());
    assert_eq!(offsets, vec![("t".to_string(), 0), ("t".to_string(), 1)]);
    assert_eq!(
        groups,
        vec!["g".to_string()],
        "the dead group's tombstone follows"
    );
    assert_eq!(coordinator.next_deadline(), None, "nothing left to check");
}

#[test]
fn group_retention_stable_group_keeps_subscribed_topics_and_expires_others_kip_211() {
    let mut coordinator = GroupCoordinator::new(retention_config());
    let id = new_member_id(&mut coordinator, T0, "g");
    let join = JoinRequest {
        protocols: vec![("range".into(), subscription(&["t"]))],
        ..join_request("g", &id, &["range"])
    };
    parked(coordinator.handle_join(T0, join));
    let generation = joins(&mut coordinator)[0].1.generation_id;
    parked(coordinator.handle_sync(T0, sync_request("g", &id, generation, &[(&id, "t-0")])));
    assert_eq!(coordinator.group_state("g"), GroupState::Stable);
    let member = CommitRequest {
        group_id: "g".into(),
        member_id: id.clone(),
        group_instance_id: None,
        generation_id: generation,
    };
    commit_at(&mut coordinator, T0, &member, &[("t", 0, 5), ("old", 0, 9)]);
    coordinator.poll_records();
    for step in 1..=11 {
        let now = at(step * 9_000);
        assert_eq!(
            coordinator.handle_heartbeat(now, "g", &me(&id), generation),
            ErrorCode::None
        );
        coordinator.handle_tick(now);
    }
    assert_eq!(coordinator.group_state("g"), GroupState::Stable);
    assert_eq!(coordinator.committed_offsets("g").unwrap().len(), 2);
    coordinator.handle_heartbeat(at(100_000), "g", &me(&id), generation);
    coordinator.handle_tick(at(100_000));
    let kept: Vec<&(String, i32)> = coordinator.committed_offsets("g").unwrap().keys().collect();
    assert_eq!(
        kept,
        vec![&("t".to_string(), 0)],
        "the subscribed topic's offset stays"
    );
    let (offsets, groups) = tombstones(&coordinator.poll_records());
    assert_eq!(offsets, vec![("old".to_string(), 0)]);
    assert!(groups.is_empty(), "a live group is not dead");
    assert_eq!(coordinator.group_state("g"), GroupState::Stable);
}

#[test]
fn group_retention_commit_only_group_expires_each_offset_by_its_commit_time() {
    let mut coordinator = GroupCoordinator::new(retention_config());
    commit_at(&mut coordinator, T0, &simple_commit("solo"), &[("t", 0, 1)]);
    commit_at(
        &mut coordinator,
        at(50_000),
        &simple_commit("solo"),
        &[("t", 1, 2)],
    );
    coordinator.handle_tick(at(99_999));
    assert_eq!(coordinator.committed_offsets("solo").unwrap().len(), 2);
    // Expiry runs at the check interval: the next check is a second after the last one.
    coordinator.handle_tick(at(100_000));
    assert_eq!(coordinator.committed_offsets("solo").unwrap().len(), 2);
    assert_eq!(coordinator.next_deadline(), Some(at(100_999)));
    coordinator.handle_tick(at(100_999));
    let left: Vec<&(String, i32)> = coordinator
        .committed_offsets("solo")
        .unwrap()
        .keys()
        .collect();
    assert_eq!(left, vec![&("t".to_string(), 1)]);
    assert_eq!(
        tombstones(&coordinator.poll_records()),
        (vec![("t".to_string(), 0)], vec![])
    );
    // Committing again restarts that offset's clock.
    commit_at(
        &mut coordinator,
        at(120_000),
        &simple_commit("solo"),
        &[("t", 1, 3)],
    );
    coordinator.handle_tick(at(150_000));
    assert_eq!(coordinator.committed_offsets("solo").unwrap().len(), 1);
    coordinator.handle_tick(at(220_000));
    assert_eq!(coordinator.group_state("solo"), GroupState::Dead);
    assert_eq!(
        tombstones(&coordinator.poll_records()),
        (vec![("t".to_string(), 1)], vec!["solo".to_string()])
    );
}

#[test]
fn group_retention_replay_keeps_the_empty_clock_and_honours_tombstones() {
    let mut coordinator = GroupCoordinator::new(retention_config());
    let (id, generation) = single_member_group(&mut coordinator, "g");
    let member = CommitRequest {
        group_id: "g".into(),
        member_id: id.clone(),
        group_instance_id: None,
        generation_id: generation,
    };
    commit_at(&mut coordinator, T0, &member, &[("t", 0, 5)]);
    let mut log = coordinator.poll_records();
    // The broker writes offsets itself; the coordinator only returns group records.
    log.push(GroupRecord::Offset {
        group: "g".into(),
        topic: "t".into(),
        partition: 0,
        value: Some(offset_value(5, T0)),
    });
    coordinator
        .handle_leave(at(10_000), "g", &[me(&id)])
        .unwrap();
    log.extend(coordinator.poll_records());
    commit_at(
        &mut coordinator,
        at(10_000),
        &simple_commit("solo"),
        &[("t", 0, 1)],
    );
    log.push(GroupRecord::Offset {
        group: "solo".into(),
        topic: "t".into(),
        partition: 0,
        value: Some(offset_value(1, at(10_000))),
    });

    // A restart 60 s later: "g" has been Empty since 10 s, not since the restart.
    let mut restored = GroupCoordinator::new(retention_config());
    for record in log.clone() {
        restored.load(record, at(70_000));
    }
    assert_eq!(
        restored.next_deadline(),
        Some(at(70_000)),
        "checked at once"
    );
    restored.handle_tick(at(70_000));
    assert_eq!(restored.committed_offsets("g").unwrap().len(), 1);
    restored.handle_tick(at(110_000));
    assert_eq!(restored.group_state("g"), GroupState::Dead);
    assert_eq!(restored.group_state("solo"), GroupState::Dead);
    log.extend(restored.poll_records());

    // Replaying the tombstones too ends where memory ended: nothing.
    let mut again = GroupCoordinator::new(retention_config());
    for record in log {
        again.load(record, at(120_000));
    }
    assert_eq!(again.group_state("g"), GroupState::Dead);
    assert!(again.committed_offsets("solo").is_none());
    assert!(again.list().is_empty());
    again.check_invariants();
}

#[test]
fn group_offset_delete_of_the_last_offset_makes_an_empty_group_dead() {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
    commit_at(
        &mut coordinator,
        T0,
        &simple_commit("solo"),
        &[("t", 0, 1), ("u", 0, 2)],
    );
    let answers = coordinator
        .delete_offsets("solo", &[("t".to_string(), 0)])
        .unwrap();
    assert_eq!(answers, vec![ErrorCode::None]);
    assert_eq!(coordinator.group_state("solo"), GroupState::Empty);
    let answers = coordinator
        .delete_offsets("solo", &[("u".to_string(), 0)])
        .unwrap();
    assert_eq!(answers, vec![ErrorCode::None]);
    assert_eq!(coordinator.group_state("solo"), GroupState::Dead);
    assert_eq!(
        tombstones(&coordinator.poll_records()),
        (
            vec![("t".to_string(), 0), ("u".to_string(), 0)],
            vec!["solo".to_string()]
        )
    );
    assert_eq!(
        coordinator.delete_offsets("solo", &[("u".to_string(), 0)]),
        Err(ErrorCode::GroupIdNotFound)
    );
}

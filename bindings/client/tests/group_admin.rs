//! The admin client's group calls against a real `brook server`: a live group of two
//! members listed and described (assignments, client ids, hosts), offsets refused while it
//! has members, then altered, read back and deleted once it is empty, the group deleted, and
//! an unknown group.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use brook_client::{
    blocking, AdminConfig, ConsumerConfig, ErrorCode, GroupDescription, GroupState, NewTopic,
    OffsetReset, OffsetSpec, ProducerConfig, ProducerRecord, TopicPartition,
};
use common::Server;

/// How long any wait in these tests may take.
const WAIT_MAX: Duration = Duration::from_secs(30);

/// A group member polling on its own thread until stopped, then closing (commit, leave).
struct Member {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Member {
    fn start(addr: &str, group: &str, topic: &str, client_id: &str) -> Member {
        let mut config = ConsumerConfig::new(addr);
        config.group_id = Some(group.to_string());
        config.client_id = client_id.to_string();
        config.session_timeout_ms = 6_000;
        config.heartbeat_interval_ms = 200;
        config.auto_offset_reset = OffsetReset::Earliest;
        config.fetch_max_wait_ms = 100;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let topic = topic.to_string();
        let thread = std::thread::spawn(move || {
            let mut consumer = blocking::Consumer::new(config).expect("consumer");
            consumer.subscribe(&[&topic]).expect("subscribe");
            while !flag.load(Ordering::SeqCst) {
                consumer.poll(Duration::from_millis(100)).expect("poll");
            }
            consumer.close().expect("close");
        });
        Member { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("member thread");
    }
}

/// Describes `group` until `ready` accepts it.
fn wait_for(
    admin: &blocking::Admin,
    group: &str,
    ready: impl Fn(&GroupDescription) -> bool,
) -> GroupDescription {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        if let Ok(mut described) = admin.describe_groups(&[group]) {
            let description = described.pop().expect("one group");
            if ready(&description) {
                return description;
            }
        }
        assert!(Instant::now() < deadline, "group {group} never got ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn group_admin_live_group_then_offsets_then_delete() {
    let server = Server::start();
    let admin = blocking::Admin::new(AdminConfig::new(&server.addr)).expect("admin");
    admin
        .create_topics(&[NewTopic::new("ga", 4, 1)])
        .expect("create");
    let producer = blocking::Producer::new(ProducerConfig::new(&server.addr)).expect("producer");
    for partition in 0..4 {
        for i in 0..10 {
            let record = ProducerRecord::new("ga", format!("{partition}/{i}")).partition(partition);
            producer.send(record).expect("send");
        }
    }
    producer.flush(None).expect("flush");

    let members = [
        Member::start(&server.addr, "live", "ga", "member-a"),
        Member::start(&server.addr, "live", "ga", "member-b"),
    ];
    let described = wait_for(&admin, "live", |g| {
        g.state == GroupState::Stable
            && g.members.len() == 2
            && g.members.iter().all(|m| m.assignment.len() == 2)
    });
    assert_eq!(described.protocol_type, "consumer");
    assert_eq!(described.protocol, "range");
    let mut client_ids: Vec<&str> = described
        .members
        .iter()
        .map(|m| m.client_id.as_str())
        .collect();
    client_ids.sort();
    assert_eq!(client_ids, ["member-a", "member-b"]);
    let mut assigned: Vec<TopicPartition> = Vec::new();
    for member in &described.members {
        assert!(!member.member_id.is_empty());
        assert!(member.client_host.contains("127.0.0.1"), "{member:?}");
        assert_eq!(member.instance_id, None);
        assigned.extend(member.assignment.iter().cloned());
    }
    assigned.sort();
    let all: Vec<TopicPartition> = (0..4).map(|p| TopicPartition::new("ga", p)).collect();
    assert_eq!(assigned, all, "every partition assigned once");

    let listed = admin.list_groups(None).expect("list");
    let live = listed
        .iter()
        .find(|g| g.group_id == "live")
        .expect("listed");
    assert_eq!(live.state, Some(GroupState::Stable));
    assert_eq!(live.protocol_type, "consumer");
    let empty_only = admin
        .list_groups(Some(&[GroupState::Empty]))
        .expect("list empty");
    assert!(empty_only.iter().all(|g| g.group_id != "live"));

    // A group with members: its offsets and the group itself stay untouched.
    let offsets: BTreeMap<TopicPartition, i64> = all.iter().map(|tp| (tp.clone(), 3)).collect();
    let refused = admin
        .alter_group_offsets("live", &offsets)
        .expect_err("members present");
    assert_eq!(refused.code(), ErrorCode::UnknownMemberId, "{refused}");
    let refused = admin.delete_groups(&["live"]).expect_err("members present");
    assert_eq!(refused.code(), ErrorCode::NonEmptyGroup, "{refused}");

    for member in members {
        member.stop();
    }
    let described = wait_for(&admin, "live", |g| g.state == GroupState::Empty);
    assert!(described.members.is_empty());
    let committed = admin.list_group_offsets("live", None).expect("offsets");
    assert_eq!(committed.len(), 4, "{committed:?}");
    assert!(committed.values().all(|&o| o == 10), "{committed:?}");

    admin
        .alter_group_offsets("live", &offsets)
        .expect("alter an empty group");
    assert_eq!(
        admin.list_group_offsets("live", None).expect("offsets"),
        offsets
    );
    let some = admin
        .list_group_offsets("live", Some(&all[1..2]))
        .expect("one partition");
    assert_eq!(some, BTreeMap::from([(all[1].clone(), 3)]));
    let ends = admin
        .list_offsets(&all, OffsetSpec::Latest)
        .expect("log ends");
    assert!(ends.values().all(|&o| o == 10), "{ends:?}");
    let starts = admin
        .list_offsets(&all, OffsetSpec::Earliest)
        .expect("log starts");
    assert!(starts.values().all(|&o| o == 0), "{starts:?}");

    admin
        .delete_group_offsets("live", &all[..1])
        .expect("delete one offset");
    let left = admin.list_group_offsets("live", None).expect("offsets");
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(!left.contains_key(&all[0]));

    admin.delete_groups(&["live"]).expect("delete the group");
    let gone = admin.describe_groups(&["live"]).expect_err("deleted");
    assert_eq!(gone.code(), ErrorCode::GroupIdNotFound, "{gone}");
    assert!(admin
        .list_group_offsets("live", None)
        .expect("offsets")
        .is_empty());
}

#[test]
fn group_admin_unknown_group() {
    let server = Server::start();
    let admin = blocking::Admin::new(AdminConfig::new(&server.addr)).expect("admin");
    let unknown = admin.describe_groups(&["nobody"]).expect_err("unknown");
    assert_eq!(unknown.code(), ErrorCode::GroupIdNotFound, "{unknown}");
    assert!(!unknown.is_retriable());
    let unknown = admin.delete_groups(&["nobody"]).expect_err("unknown");
    assert_eq!(unknown.code(), ErrorCode::GroupIdNotFound, "{unknown}");
    assert!(admin
        .list_group_offsets("nobody", None)
        .expect("no offsets")
        .is_empty());
    assert!(admin
        .list_groups(None)
        .expect("list")
        .iter()
        .all(|g| g.group_id != "nobody"));
}

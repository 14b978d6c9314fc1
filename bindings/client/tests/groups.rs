//! Consumer groups against a real `brook server`: members splitting a topic, independent
//! groups, resuming from committed offsets, and a member leaving with its partitions handed
//! to the others (rebalance callbacks observed). Short session and heartbeat settings keep
//! every rebalance well under a second.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brook_client::{
    blocking, Admin, AdminConfig, Consumer, ConsumerConfig, ConsumerRecord, NewTopic, OffsetReset,
    Producer, ProducerConfig, ProducerRecord, RebalanceListener, TopicPartition,
};
use common::Server;

/// How long any wait in these tests may take.
const WAIT_MAX: Duration = Duration::from_secs(20);

async fn create_topic(addr: &str, topic: &str, partitions: i32) {
    let admin = Admin::new(AdminConfig::new(addr)).expect("admin");
    admin
        .create_topics(&[NewTopic::new(topic, partitions, 1)])
        .await
        .expect("create");
}

/// Writes `per_partition` records to every partition; returns their values.
async fn produce(
    addr: &str,
    topic: &str,
    partitions: i32,
    per_partition: i32,
    tag: &str,
) -> Vec<String> {
    let producer = Producer::new(ProducerConfig::new(addr)).expect("producer");
    let mut values = Vec::new();
    for partition in 0..partitions {
        for i in 0..per_partition {
            let value = format!("{tag}/{partition}/{i}");
            let record = ProducerRecord::new(topic, value.clone()).partition(partition);
            producer.send(record).await.expect("send");
            values.push(value);
        }
    }
    producer.flush().await.expect("flush");
    values
}

fn group_config(addr: &str, group: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(addr);
    config.group_id = Some(group.to_string());
    config.session_timeout_ms = 6_000;
    config.heartbeat_interval_ms = 200;
    config.max_poll_interval_ms = 10_000;
    config.auto_offset_reset = OffsetReset::Earliest;
    config.fetch_max_wait_ms = 100;
    config
}

fn value(record: &ConsumerRecord) -> String {
    String::from_utf8(record.value.clone().expect("value")).expect("utf8")
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

/// One callback: "revoked" or "assigned", with its partitions.
type Event = (&'static str, Vec<TopicPartition>);

/// A rebalance callback that records what it saw.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Event>>>);

impl RebalanceListener for Events {
    fn on_partitions_revoked(&mut self, partitions: &[TopicPartition]) {
        let mut events = self.0.lock().expect("events");
        events.push(("revoked", partitions.to_vec()));
    }

    fn on_partitions_assigned(&mut self, partitions: &[TopicPartition]) {
        let mut events = self.0.lock().expect("events");
        events.push(("assigned", partitions.to_vec()));
    }
}

/// A group member polling on its own task (a member blocked in JoinGroup must not stop the
/// others from rejoining), until told to stop; it then closes (commit, LeaveGroup).
struct Member {
    stop: Arc<AtomicBool>,
    assignment: Arc<Mutex<Vec<TopicPartition>>>,
    records: Arc<Mutex<Vec<ConsumerRecord>>>,
    events: Events,
    task: tokio::task::JoinHandle<()>,
}

impl Member {
    fn spawn(config: ConsumerConfig, topic: &str) -> Member {
        let stop = Arc::new(AtomicBool::new(false));
        let assignment = Arc::new(Mutex::new(Vec::new()));
        let records = Arc::new(Mutex::new(Vec::new()));
        let events = Events::default();
        let mut consumer = Consumer::new(config).expect("consumer");
        consumer
            .subscribe_with_listener(&[topic], Box::new(events.clone()))
            .expect("subscribe");
        let task = tokio::spawn({
            let (stop, assignment, records) = (stop.clone(), assignment.clone(), records.clone());
            async move {
                while !stop.load(Ordering::SeqCst) {
                    let polled = consumer
                        .poll(Duration::from_millis(100))
                        .await
                        .expect("poll");
                    records.lock().expect("records").extend(polled);
                    *assignment.lock().expect("assignment") = consumer.assignment();
                }
                consumer.close().await.expect("close");
            }
        });
        Member {
            stop,
            assignment,
            records,
            events,
            task,
        }
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment.lock().expect("assignment").clone()
    }

    fn values(&self) -> Vec<String> {
        self.records
            .lock()
            .expect("records")
            .iter()
            .map(value)
            .collect()
    }
}

/// Waits until `done` holds, failing with `what` after [`WAIT_MAX`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_MAX;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the members own disjoint assignments of the sizes in `sizes`, covering
/// `partitions` partitions together: one generation, settled.
async fn wait_for_split(members: &[&Member], sizes: &[usize], partitions: usize) {
    wait_until("the group settles", || {
        let assignments: Vec<Vec<TopicPartition>> =
            members.iter().map(|m| m.assignment()).collect();
        let distinct: BTreeSet<&TopicPartition> = assignments.iter().flatten().collect();
        let mut got: Vec<usize> = assignments.iter().map(Vec::len).collect();
        got.sort_unstable();
        let mut want = sizes.to_vec();
        want.sort_unstable();
        got == want && distinct.len() == partitions
    })
    .await;
}

async fn stop(member: Member) -> Member {
    member.stop.store(true, Ordering::SeqCst);
    let Member {
        stop,
        assignment,
        records,
        events,
        task,
    } = member;
    tokio::time::timeout(WAIT_MAX, task)
        .await
        .expect("the member closes in time")
        .expect("the member task succeeds");
    Member {
        stop,
        assignment,
        records,
        events,
        task: tokio::spawn(async {}),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_three_members_split_six_partitions_and_read_every_record_once() {
    let server = Server::start();
    create_topic(&server.addr, "t", 6).await;
    let members: Vec<Member> = (0..3)
        .map(|_| Member::spawn(group_config(&server.addr, "split"), "t"))
        .collect();
    wait_for_split(&members.iter().collect::<Vec<_>>(), &[2, 2, 2], 6).await;
    let expected = produce(&server.addr, "t", 6, 20, "a").await;
    wait_until("every record is read", || {
        members.iter().map(|m| m.values().len()).sum::<usize>() >= expected.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // room for a duplicate to show

    // The settled assignments, taken before anyone leaves: each departure rebalances the
    // members still running.
    let owned: Vec<BTreeSet<i32>> = members
        .iter()
        .map(|m| m.assignment().iter().map(|tp| tp.partition).collect())
        .collect();
    let mut all = Vec::new();
    for (member, own) in members.into_iter().zip(owned) {
        let member = stop(member).await;
        let records = member.records.lock().expect("records").clone();
        assert!(
            records.iter().all(|r| own.contains(&r.partition)),
            "a member read only its own partitions"
        );
        all.extend(member.values());
    }
    assert_eq!(sorted(all), sorted(expected), "exactly once over the group");
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_two_groups_each_read_everything() {
    let server = Server::start();
    create_topic(&server.addr, "t", 6).await;
    let expected = produce(&server.addr, "t", 6, 5, "b").await;
    let first = Member::spawn(group_config(&server.addr, "one"), "t");
    let second = Member::spawn(group_config(&server.addr, "two"), "t");
    wait_until("both groups read everything", || {
        first.values().len() >= expected.len() && second.values().len() >= expected.len()
    })
    .await;
    let first = stop(first).await;
    let second = stop(second).await;
    assert_eq!(first.assignment().len(), 6);
    assert_eq!(sorted(first.values()), sorted(expected.clone()));
    assert_eq!(sorted(second.values()), sorted(expected));
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_a_leaving_member_hands_its_partitions_over() {
    let server = Server::start();
    create_topic(&server.addr, "t", 6).await;
    let leaving = Member::spawn(group_config(&server.addr, "handover"), "t");
    let staying = Member::spawn(group_config(&server.addr, "handover"), "t");
    wait_for_split(&[&leaving, &staying], &[3, 3], 6).await;
    let mut expected = produce(&server.addr, "t", 6, 10, "before").await;
    wait_until("the first records are read", || {
        leaving.values().len() + staying.values().len() >= expected.len()
    })
    .await;
    // Closing commits (auto-commit) and sends LeaveGroup; the other member rejoins.
    let leaving = stop(leaving).await;
    wait_until("the remaining member owns every partition", || {
        staying.assignment().len() == 6
    })
    .await;
    {
        let events = staying.events.0.lock().expect("events");
        let last = events.last().expect("events");
        assert_eq!(last.0, "assigned");
        assert_eq!(last.1.len(), 6, "all six partitions assigned");
        let revoked = &events[events.len() - 2];
        assert_eq!(revoked.0, "revoked");
        assert_eq!(revoked.1.len(), 3, "its own three revoked first");
    }
    expected.extend(produce(&server.addr, "t", 6, 10, "after").await);
    wait_until("the remaining member reads the rest", || {
        leaving.values().len() + staying.values().len() >= expected.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let staying = stop(staying).await;
    let mut all = leaving.values();
    all.extend(staying.values());
    assert_eq!(
        sorted(all),
        sorted(expected),
        "exactly once across the handover"
    );
}

#[test]
fn groups_a_new_member_resumes_after_the_committed_offset_blocking() {
    let server = Server::start();
    let setup = tokio::runtime::Runtime::new().expect("runtime");
    let expected = setup.block_on(async {
        create_topic(&server.addr, "t", 2).await;
        produce(&server.addr, "t", 2, 10, "c").await
    });
    let mut config = group_config(&server.addr, "resume");
    config.enable_auto_commit = false;
    config.poll_records_max = 5;
    let partitions = [TopicPartition::new("t", 0), TopicPartition::new("t", 1)];

    let mut first = blocking::Consumer::new(config.clone()).expect("consumer");
    first.subscribe(&["t"]).expect("subscribe");
    let mut read = Vec::new();
    let deadline = Instant::now() + WAIT_MAX;
    while read.len() < 7 {
        assert!(Instant::now() < deadline, "first member reads");
        read.extend(first.poll(Duration::from_millis(200)).expect("poll"));
    }
    assert_eq!(first.assignment().len(), 2);
    let positions: HashMap<TopicPartition, i64> = partitions
        .iter()
        .map(|tp| (tp.clone(), first.position(tp).expect("position")))
        .collect();
    first.commit().expect("commit");
    let committed = first.committed(&partitions).expect("committed");
    for tp in &partitions {
        assert_eq!(committed[tp], Some(positions[tp]), "{tp}");
    }
    first.close().expect("close");

    let mut second = blocking::Consumer::new(config).expect("consumer");
    second.subscribe(&["t"]).expect("subscribe");
    let deadline = Instant::now() + WAIT_MAX;
    while read.len() < expected.len() {
        assert!(Instant::now() < deadline, "second member reads the rest");
        read.extend(second.poll(Duration::from_millis(200)).expect("poll"));
    }
    let values: Vec<String> = read.iter().map(value).collect();
    assert_eq!(
        sorted(values),
        sorted(expected),
        "resumed exactly after the commit"
    );
    second
        .commit_async()
        .expect("commit async")
        .wait()
        .expect("committed");
    let committed = second.committed(&partitions).expect("committed");
    assert!(partitions.iter().all(|tp| committed[tp] == Some(10)));
    let mut explicit = HashMap::new();
    explicit.insert(partitions[0].clone(), 3);
    second.commit_offsets(&explicit).expect("commit offsets");
    assert_eq!(
        second.committed(&partitions[..1]).expect("c")[&partitions[0]],
        Some(3)
    );
    assert!(
        second.assign(Vec::new()).is_err(),
        "assign while subscribed"
    );
    second.unsubscribe().expect("unsubscribe");
    assert!(second.assignment().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_cooperative_sticky_members_revoke_only_what_moves() {
    let server = Server::start();
    create_topic(&server.addr, "t", 6).await;
    let cooperative = || {
        let mut config = group_config(&server.addr, "cooperative");
        config
            .set("partition.assignment.strategy", "cooperative-sticky")
            .expect("strategy");
        config
    };
    let first = Member::spawn(cooperative(), "t");
    wait_until("the first member owns everything", || {
        first.assignment().len() == 6
    })
    .await;
    let second = Member::spawn(cooperative(), "t");
    wait_for_split(&[&first, &second], &[3, 3], 6).await;
    let kept: Vec<TopicPartition> = first.assignment();
    {
        let events = first.events.0.lock().expect("events");
        let revoked: Vec<&Event> = events.iter().filter(|e| e.0 == "revoked").collect();
        assert_eq!(revoked.len(), 1, "{events:?}");
        assert_eq!(revoked[0].1.len(), 3, "only the moving half is revoked");
    }
    let mut expected = produce(&server.addr, "t", 6, 10, "coop").await;
    wait_until("every record is read", || {
        first.values().len() + second.values().len() >= expected.len()
    })
    .await;
    let second = stop(second).await;
    wait_until("the first member owns everything again", || {
        first.assignment().len() == 6
    })
    .await;
    {
        let events = first.events.0.lock().expect("events");
        let last = events.last().expect("events");
        assert_eq!(last.0, "assigned");
        assert_eq!(last.1.len(), 3, "only the leaver's partitions are added");
        assert!(kept.iter().all(|tp| !last.1.contains(tp)));
        let revoked = events.iter().filter(|e| e.0 == "revoked").count();
        assert_eq!(revoked, 1, "nothing revoked when a member leaves");
    }
    expected.extend(produce(&server.addr, "t", 6, 5, "later").await);
    wait_until("the rest is read", || {
        first.values().len() + second.values().len() >= expected.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = stop(first).await;
    let mut all = first.values();
    all.extend(second.values());
    assert_eq!(sorted(all), sorted(expected), "exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_a_member_that_stops_polling_leaves_and_rejoins_later() {
    let server = Server::start();
    create_topic(&server.addr, "t", 6).await;
    let mut config = group_config(&server.addr, "slow");
    config.max_poll_interval_ms = 1_000;
    let busy = Member::spawn(config.clone(), "t");
    wait_until("the first member joins", || busy.assignment().len() == 6).await;
    let mut slow = Consumer::new(config).expect("consumer");
    slow.subscribe(&["t"]).expect("subscribe");
    let deadline = Instant::now() + WAIT_MAX;
    while slow.assignment().len() != 3 || busy.assignment().len() != 3 {
        assert!(Instant::now() < deadline, "the group splits");
        slow.poll(Duration::from_millis(100)).await.expect("poll");
    }
    // No poll for longer than max.poll.interval.ms: the member leaves on its own.
    wait_until("the busy member takes everything", || {
        busy.assignment().len() == 6
    })
    .await;
    let deadline = Instant::now() + WAIT_MAX;
    while slow.assignment().len() != 3 || busy.assignment().len() != 3 {
        assert!(Instant::now() < deadline, "the slow member rejoins");
        slow.poll(Duration::from_millis(100)).await.expect("poll");
    }
    slow.close().await.expect("close");
    stop(busy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_a_consumer_of_assigned_partitions_commits_without_joining() {
    let server = Server::start();
    create_topic(&server.addr, "t", 1).await;
    produce(&server.addr, "t", 1, 4, "d").await;
    let tp = TopicPartition::new("t", 0);
    let mut config = group_config(&server.addr, "manual");
    config.enable_auto_commit = false;
    let mut consumer = Consumer::new(config.clone()).expect("consumer");
    consumer.assign(vec![tp.clone()]).expect("assign");
    let deadline = Instant::now() + WAIT_MAX;
    let mut read = Vec::new();
    while read.len() < 4 {
        assert!(Instant::now() < deadline, "reads");
        read.extend(
            consumer
                .poll(Duration::from_millis(100))
                .await
                .expect("poll"),
        );
    }
    let slice = std::slice::from_ref(&tp);
    assert_eq!(
        consumer.committed(slice).await.expect("committed")[&tp],
        None
    );
    consumer.commit().await.expect("commit");
    assert_eq!(
        consumer.committed(slice).await.expect("committed")[&tp],
        Some(4)
    );
    consumer.close().await.expect("close");
    // A member subscribing later starts from the group's committed offset.
    let member = Member::spawn(config, "t");
    wait_until("the member is assigned", || member.assignment().len() == 1).await;
    produce(&server.addr, "t", 1, 1, "e").await;
    wait_until("the new record is read", || !member.values().is_empty()).await;
    let member = stop(member).await;
    assert_eq!(member.values(), vec!["e/0/0".to_string()]);
}

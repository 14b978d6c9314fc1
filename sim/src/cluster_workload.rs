//! The workload against a cluster: clients that find each partition's leader from Metadata,
//! send it their requests, and look again when a node is unreachable or answers that it no
//! longer leads. Producers (acks=all, retries), consumers reading by offset and the final
//! reader record the same [`History`] the single-broker run does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brook_core::ErrorCode;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, FindCoordinatorRequest, MetadataRequest, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use madsim::rand::{thread_rng, Rng};

use crate::client::Conn;
use crate::node::node_ip;
use crate::node::{now, BROKER_PORT};
use crate::trace::Trace;
use crate::workload::{
    fetch_request_for, produce_request, read_partition, Ack, ProduceSend, Read, SharedHistory,
    PARTITIONS, TOPIC,
};

/// `min.insync.replicas` of the workload topic.
pub const MIN_INSYNC: &str = "2";

/// Finds partition leaders and keeps a connection per node. Like Kafka's clients (KIP-320)
/// it never goes back to an older leader epoch, and sends the epoch with its fetches, so a
/// deposed leader that has not heard of its successor answers `FENCED`/`UNKNOWN_LEADER_EPOCH`
/// instead of its stale view.
pub struct Router {
    nodes: Vec<i32>,
    leaders: BTreeMap<i32, i32>,
    /// The newest leader epoch seen per partition.
    epochs: BTreeMap<i32, i32>,
    conns: BTreeMap<i32, Conn>,
    /// The node Metadata is asked of next (rotates past unreachable ones).
    next: usize,
    /// The group coordinator FindCoordinator named last.
    coordinator: Option<i32>,
}

impl Router {
    /// A router over nodes `1..=nodes`.
    pub fn new(nodes: i32) -> Router {
        Router {
            nodes: (1..=nodes).collect(),
            leaders: BTreeMap::new(),
            epochs: BTreeMap::new(),
            conns: BTreeMap::new(),
            next: thread_rng().gen_range(0..nodes as usize),
            coordinator: None,
        }
    }

    /// Sends a request to node `node`, connecting first; `None` when it fails (the
    /// connection is then dropped).
    pub async fn call<T: Encodable>(
        &mut self,
        node: i32,
        api: ApiKey,
        version: i16,
        body: &T,
    ) -> Option<ResponseKind> {
        if let std::collections::btree_map::Entry::Vacant(slot) = self.conns.entry(node) {
            let addr = format!("{}:{BROKER_PORT}", node_ip(node));
            slot.insert(Conn::connect(&addr).await.ok()?);
        }
        let conn = self.conns.get_mut(&node)?;
        match conn.call(api, version, body, true).await {
            Ok(Some(response)) => Some(response),
            _ => {
                self.conns.remove(&node);
                None
            }
        }
    }

    /// Writes a request that gets no answer (acks=0) to node `node`; false when it could not
    /// be written (the connection is then dropped).
    pub async fn send_only<T: Encodable>(&mut self, node: i32, body: &T) -> bool {
        if let std::collections::btree_map::Entry::Vacant(slot) = self.conns.entry(node) {
            let addr = format!("{}:{BROKER_PORT}", node_ip(node));
            let Ok(conn) = Conn::connect(&addr).await else {
                return false;
            };
            slot.insert(conn);
        }
        let Some(conn) = self.conns.get_mut(&node) else {
            return false;
        };
        match conn.call(ApiKey::Produce, 9, body, false).await {
            Ok(_) => true,
            Err(_) => {
                self.conns.remove(&node);
                false
            }
        }
    }

    /// Any node, rotating (for requests any node answers).
    pub fn any_node(&mut self) -> i32 {
        self.next = (self.next + 1) % self.nodes.len();
        self.nodes[self.next]
    }

    /// The leader of `partition`, asking Metadata of the nodes in turn until one names it.
    pub async fn leader(&mut self, partition: i32) -> Option<i32> {
        if let Some(&leader) = self.leaders.get(&partition) {
            return Some(leader);
        }
        let mut request = MetadataRequest::default();
        let mut topic = MetadataRequestTopic::default();
        topic.name = Some(TopicName(StrBytes::from_static_str(TOPIC)));
        request.topics = Some(vec![topic]);
        request.allow_auto_topic_creation = false;
        let node = self.any_node();
        if let Some(ResponseKind::Metadata(response)) =
            self.call(node, ApiKey::Metadata, 12, &request).await
        {
            for topic in &response.topics {
                for p in &topic.partitions {
                    let known = self.epochs.get(&p.partition_index).copied().unwrap_or(-1);
                    if p.error_code == 0 && p.leader_id.0 >= 0 && p.leader_epoch >= known {
                        self.leaders.insert(p.partition_index, p.leader_id.0);
                        self.epochs.insert(p.partition_index, p.leader_epoch);
                    }
                }
            }
        }
        let leader = self.leaders.get(&partition).copied();
        if leader.is_none() {
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
        leader
    }

    /// The newest leader epoch it knows for `partition` (-1: none).
    pub fn epoch(&self, partition: i32) -> i32 {
        self.epochs.get(&partition).copied().unwrap_or(-1)
    }

    /// Forgets what it knew of `partition`'s leader (an error said it moved).
    pub fn forget(&mut self, partition: i32) {
        self.leaders.remove(&partition);
    }

    /// The coordinator of `group`, asking FindCoordinator of the nodes in turn until one
    /// names it (`None` after a pause when the one asked did not).
    pub async fn coordinator(&mut self, group: &str) -> Option<i32> {
        if let Some(node) = self.coordinator {
            return Some(node);
        }
        let mut request = FindCoordinatorRequest::default();
        request.key = StrBytes::from_string(group.to_string());
        let node = self.any_node();
        if let Some(ResponseKind::FindCoordinator(response)) =
            self.call(node, ApiKey::FindCoordinator, 3, &request).await
        {
            if response.error_code == 0 && response.node_id.0 >= 0 {
                self.coordinator = Some(response.node_id.0);
            }
        }
        if self.coordinator.is_none() {
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
        self.coordinator
    }

    /// Forgets the coordinator (it moved, or did not answer).
    pub fn forget_coordinator(&mut self) {
        self.coordinator = None;
    }

    /// Sends a request to `group`'s coordinator: `None` when there is none yet or the call
    /// failed, and — like a client's — the coordinator is looked up again next time when
    /// the call failed or the answer says the coordinator moved.
    pub async fn call_coordinator<T: Encodable>(
        &mut self,
        group: &str,
        api: ApiKey,
        version: i16,
        body: &T,
    ) -> Option<ResponseKind> {
        let node = self.coordinator(group).await?;
        let Some(response) = self.call(node, api, version, body).await else {
            self.forget_coordinator();
            madsim::time::sleep(Duration::from_millis(50)).await;
            return None;
        };
        if coordinator_moved(group_error(&response)) {
            self.forget_coordinator();
        }
        Some(response)
    }
}

/// Whether an error code tells a client to look its coordinator up again.
pub fn coordinator_moved(code: i16) -> bool {
    [
        ErrorCode::NotCoordinator,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::CoordinatorLoadInProgress,
    ]
    .iter()
    .any(|e| e.code() == code)
}

/// The error of a group request's answer: its top-level code, or the first partition's
/// that is not 0 (OffsetCommit, OffsetFetch), or the first group's (DescribeGroups).
pub fn group_error(response: &ResponseKind) -> i16 {
    fn first(codes: impl IntoIterator<Item = i16>) -> i16 {
        codes.into_iter().find(|c| *c != 0).unwrap_or(0)
    }
    match response {
        ResponseKind::JoinGroup(r) => r.error_code,
        ResponseKind::SyncGroup(r) => r.error_code,
        ResponseKind::Heartbeat(r) => r.error_code,
        ResponseKind::DescribeGroups(r) => first(r.groups.iter().map(|g| g.error_code)),
        ResponseKind::OffsetCommit(r) => first(
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.error_code),
        ),
        ResponseKind::OffsetFetch(r) => first(
            std::iter::once(r.error_code).chain(
                r.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.error_code),
            ),
        ),
        _ => 0,
    }
}

/// Creates the workload topic (replicated on every node), asking the nodes in turn.
pub async fn create_topic(nodes: i32, segment_bytes: Option<u64>, trace: Trace) {
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(StrBytes::from_static_str(TOPIC));
    topic.num_partitions = PARTITIONS;
    topic.replication_factor = nodes as i16;
    let config = |name: &'static str, value: String| {
        let mut config = CreatableTopicConfig::default();
        config.name = StrBytes::from_static_str(name);
        config.value = Some(StrBytes::from_string(value));
        config
    };
    topic
        .configs
        .push(config("min.insync.replicas", MIN_INSYNC.into()));
    if let Some(bytes) = segment_bytes {
        topic
            .configs
            .push(config("segment.bytes", bytes.to_string()));
    }
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 5_000;
    let mut router = Router::new(nodes);
    loop {
        let node = router.any_node();
        if let Some(ResponseKind::CreateTopics(r)) =
            router.call(node, ApiKey::CreateTopics, 5, &request).await
        {
            let code = r.topics[0].error_code;
            if code == 0 || code == ErrorCode::TopicAlreadyExists.code() {
                trace.record(format!(
                    "{} setup: topic ready at node{node} (code {code})",
                    now().0
                ));
                return;
            }
        }
        madsim::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends `quota` records to the partitions' leaders with `acks` (-1, 1 or 0). acks=all and
/// acks=1 sends are retried until acknowledged (acks=all records go to `History::acks`,
/// acks=1 records to `History::leader_acks`); acks=0 sends are written once and never
/// answered. Values: `p{id}-{n}` (acks=all), `w{id}-{n}` (acks=1), `z{id}-{n}` (acks=0).
pub async fn producer(
    id: usize,
    nodes: i32,
    quota: u32,
    acks: i16,
    history: SharedHistory,
    trace: Trace,
) {
    let mut router = Router::new(nodes);
    let prefix = match acks {
        -1 => "p",
        1 => "w",
        _ => "z",
    };
    for sequence in 0..quota {
        let value = format!("{prefix}{id}-{sequence}");
        let partition = (sequence % PARTITIONS as u32) as i32;
        let mut request = produce_request(partition, &value);
        request.acks = acks;
        if acks == 0 {
            if let Some(leader) = router.leader(partition).await {
                if router.send_only(leader, &request).await {
                    history.lock().expect("history").unacknowledged_sends += 1;
                } else {
                    router.forget(partition);
                }
            }
            let pause = thread_rng().gen_range(0..40);
            madsim::time::sleep(Duration::from_millis(pause)).await;
            continue;
        }
        loop {
            let Some(leader) = router.leader(partition).await else {
                continue;
            };
            let send = ProduceSend {
                at_ms: now().0,
                node: leader,
                partition,
            };
            history.lock().expect("history").produce_sends.push(send);
            let Some(ResponseKind::Produce(response)) =
                router.call(leader, ApiKey::Produce, 9, &request).await
            else {
                router.forget(partition);
                madsim::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let answer = &response.responses[0].partition_responses[0];
            if answer.error_code == 0 {
                let at = answer.base_offset;
                trace.record(format!(
                    "{} producer{id}: {value} at {partition}/{at} (node{leader})",
                    now().0
                ));
                let ack = Ack {
                    producer: id,
                    sequence,
                    partition,
                    offset: at,
                    value: value.clone(),
                };
                let mut history = history.lock().expect("history");
                match acks {
                    -1 => history.acks.push(ack),
                    _ => history.leader_acks.push(ack),
                }
                break;
            }
            trace.record(format!(
                "{} producer{id}: error {} from node{leader}",
                now().0,
                answer.error_code
            ));
            router.forget(partition);
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
        let pause = thread_rng().gen_range(0..40);
        madsim::time::sleep(Duration::from_millis(pause)).await;
    }
    trace.record(format!("{} producer{id}: done", now().0));
    if acks == -1 {
        history.lock().expect("history").producers_done += 1;
    }
}

/// Reads every partition from offset 0 at its leader until `stop`, recording the records and
/// high watermarks it sees.
pub async fn consumer(id: usize, nodes: i32, stop: Arc<AtomicBool>, history: SharedHistory) {
    let mut router = Router::new(nodes);
    let mut positions = vec![0i64; PARTITIONS as usize];
    while !stop.load(Ordering::Relaxed) {
        for partition in 0..PARTITIONS {
            let slot = partition as usize;
            let Some(leader) = router.leader(partition).await else {
                continue;
            };
            let mut request = fetch_request_for(&[partition], &[positions[slot]], 200);
            request.topics[0].partitions[0].current_leader_epoch = router.epoch(partition);
            let Some(ResponseKind::Fetch(response)) =
                router.call(leader, ApiKey::Fetch, 12, &request).await
            else {
                router.forget(partition);
                madsim::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Some(answer) = response
                .responses
                .first()
                .and_then(|t| t.partitions.first())
            else {
                continue;
            };
            if answer.error_code != 0 && answer.error_code != ErrorCode::OffsetOutOfRange.code() {
                router.forget(partition);
                madsim::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let fetched = read_partition(answer, positions[slot], &history);
            let empty = fetched.records.is_empty();
            {
                let mut history = history.lock().expect("history");
                if answer.error_code == 0 {
                    history
                        .high_watermarks
                        .push((id, partition, fetched.high_watermark));
                }
                if fetched.out_of_range {
                    let to = fetched.high_watermark.max(0);
                    history.seeks.push((id, partition, positions[slot], to));
                    positions[slot] = to;
                    continue;
                }
                for (offset, value) in fetched.records {
                    history.reads.push(Read {
                        reader: id,
                        partition,
                        offset,
                        value,
                    });
                }
            }
            if let Some(next) = fetched.next {
                positions[slot] = next;
            }
            if empty {
                madsim::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Reads every partition from its start to its high watermark at its leader, once the
/// faults are healed.
pub async fn final_read(nodes: i32, history: SharedHistory, trace: Trace) {
    let mut router = Router::new(nodes);
    let mut log = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let mut position = 0i64;
        let mut end: Option<i64> = None;
        while end.is_none_or(|e| position < e) {
            let Some(leader) = router.leader(partition).await else {
                continue;
            };
            let mut request = fetch_request_for(&[partition], &[position], 0);
            request.topics[0].partitions[0].current_leader_epoch = router.epoch(partition);
            let Some(ResponseKind::Fetch(response)) =
                router.call(leader, ApiKey::Fetch, 12, &request).await
            else {
                router.forget(partition);
                madsim::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            madsim::time::sleep(Duration::from_millis(10)).await;
            let Some(answer) = response
                .responses
                .first()
                .and_then(|t| t.partitions.first())
            else {
                continue;
            };
            if answer.error_code != 0 {
                router.forget(partition);
                continue;
            }
            let fetched = read_partition(answer, position, &history);
            end = Some(fetched.high_watermark);
            for (offset, value) in fetched.records {
                log.insert((partition, offset), value);
            }
            if let Some(next) = fetched.next {
                position = next;
            }
        }
    }
    trace.record(format!("{} final read: {} records", now().0, log.len()));
    let mut history = history.lock().expect("history");
    history.final_log = log;
    history.final_read_done = true;
}

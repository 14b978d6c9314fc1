//! Consumer-group tests through `handle_request`, over in-memory directories that survive a
//! restart: every group API at its lowest and highest served version, parked joins and syncs,
//! and committed offsets replayed from `__consumer_offsets`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::test_node::TestNode;
use super::*;
use crate::protocol::{encode_response_for, supported_versions, Request};
use crate::storage::MemoryStorage;

/// A directory shared between the test and the broker, so it outlives a broker instance.
#[derive(Clone, Default)]
struct SharedDir(Rc<RefCell<MemoryStorage>>);

impl Storage for SharedDir {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        self.0.borrow().list()
    }
    fn create(&mut self, name: &str) -> Result<(), StorageError> {
        self.0.borrow_mut().create(name)
    }
    fn size(&self, name: &str) -> Result<u64, StorageError> {
        self.0.borrow().size(name)
    }
    fn append(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        self.0.borrow_mut().append(name, data)
    }
    fn read_at(&self, name: &str, position: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        self.0.borrow().read_at(name, position, buf)
    }
    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        self.0.borrow_mut().sync(name)
    }
    fn truncate(&mut self, name: &str, size: u64) -> Result<(), StorageError> {
        self.0.borrow_mut().truncate(name, size)
    }
    fn delete(&mut self, name: &str) -> Result<(), StorageError> {
        self.0.borrow_mut().delete(name)
    }
    fn write_atomic(&mut self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        self.0.borrow_mut().write_atomic(name, data)
    }
    fn close(&mut self, name: &str) -> Result<(), StorageError> {
        self.0.borrow_mut().close(name)
    }
}

#[derive(Clone, Default)]
struct Dirs(Rc<RefCell<HashMap<String, SharedDir>>>);

impl StorageProvider for Dirs {
    type Storage = SharedDir;
    fn open_dir(&mut self, name: &str) -> Result<SharedDir, StorageError> {
        Ok(self
            .0
            .borrow_mut()
            .entry(name.to_string())
            .or_default()
            .clone())
    }
    fn remove_dir(&mut self, name: &str) -> Result<(), StorageError> {
        self.0.borrow_mut().remove(name);
        Ok(())
    }
}

const NOW: Millis = Millis(1_700_000_000_000);
const SESSION_MS: i32 = 10_000;

fn open(dirs: &Dirs) -> TestNode<Dirs> {
    let config = BrokerConfig {
        offsets_topic_partitions: 3,
        ..BrokerConfig::default()
    };
    let mut node = TestNode::open(dirs, config, NOW).expect("open broker");
    node.create_offsets_topic(NOW);
    node
}

fn api_of(body: &RequestKind) -> ApiKey {
    match body {
        RequestKind::Metadata(_) => ApiKey::Metadata,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::FindCoordinator(_) => ApiKey::FindCoordinator,
        RequestKind::JoinGroup(_) => ApiKey::JoinGroup,
        RequestKind::SyncGroup(_) => ApiKey::SyncGroup,
        RequestKind::Heartbeat(_) => ApiKey::Heartbeat,
        RequestKind::LeaveGroup(_) => ApiKey::LeaveGroup,
        RequestKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        RequestKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        RequestKind::OffsetDelete(_) => ApiKey::OffsetDelete,
        RequestKind::DescribeGroups(_) => ApiKey::DescribeGroups,
        RequestKind::ListGroups(_) => ApiKey::ListGroups,
        RequestKind::DeleteGroups(_) => ApiKey::DeleteGroups,
        other => panic!("no API key for {other:?}"),
    }
}

fn encodes(api: ApiKey, version: i16, response: &ResponseKind) {
    encode_response_for(api, version, 1, response)
        .unwrap_or_else(|err| panic!("{api:?} v{version}: {err}"));
}

/// Handles a request; every direct answer must encode in the request's version.
fn call_at(broker: &mut TestNode<Dirs>, now: Millis, version: i16, body: RequestKind) -> Reply {
    let api_key = api_of(&body);
    let request = Request {
        api_key,
        api_version: version,
        correlation_id: 1,
        client_id: Some("tester".into()),
        body,
    };
    let reply = broker.handle_request(now, request);
    if let Reply::Response(response) = &reply {
        encodes(api_key, version, response);
    }
    reply
}

fn call(broker: &mut TestNode<Dirs>, version: i16, body: RequestKind) -> ResponseKind {
    match call_at(broker, NOW, version, body) {
        Reply::Response(response) => *response,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// The (min, max) served versions of an API.
fn min_max(api: ApiKey) -> [i16; 2] {
    let (min, max) = supported_versions(api).expect("served");
    [min, max]
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn create_topic(broker: &mut TestNode<Dirs>, name: &str, partitions: i32) {
    let mut topic = kafka_protocol::messages::create_topics_request::CreatableTopic::default();
    topic.name = TopicName(s(name));
    topic.num_partitions = partitions;
    topic.replication_factor = 1;
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    let ResponseKind::CreateTopics(r) = call(broker, 5, RequestKind::CreateTopics(request)) else {
        panic!("create topics")
    };
    assert_eq!(r.topics[0].error_code, 0);
}

fn join_body(group: &str, member: &str, version: i16) -> JoinGroupRequest {
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = s("range");
    protocol.metadata = Bytes::from_static(b"\x00\x00\x00\x00\x00\x01\x00\x01t");
    let mut body = JoinGroupRequest::default();
    body.group_id = GroupId(s(group));
    body.member_id = s(member);
    body.session_timeout_ms = SESSION_MS;
    if version >= 1 {
        body.rebalance_timeout_ms = 20_000;
    }
    body.protocol_type = s("consumer");
    body.protocols = vec![protocol];
    body
}

/// Joins a one-member group through the KIP-394 dance (v4+) and syncs; returns the member id
/// and the generation.
fn join_and_sync(
    broker: &mut TestNode<Dirs>,
    group: &str,
    join_version: i16,
    sync_version: i16,
) -> (String, i32) {
    let mut member = String::new();
    if join_version >= 4 {
        let ResponseKind::JoinGroup(r) = call(
            broker,
            join_version,
            RequestKind::JoinGroup(join_body(group, "", join_version)),
        ) else {
            panic!("join")
        };
        assert_eq!(r.error_code, ErrorCode::MemberIdRequired.code());
        member = r.member_id.to_string();
    }
    let reply = call_at(
        broker,
        NOW,
        join_version,
        RequestKind::JoinGroup(join_body(group, &member, join_version)),
    );
    let Reply::Parked(id) = reply else {
        panic!("a join waits for the rebalance: {reply:?}")
    };
    let done = broker.poll_completed_responses();
    assert_eq!(
        done.len(),
        1,
        "a lone member completes the rebalance at once"
    );
    assert_eq!(done[0].0, id);
    encodes(ApiKey::JoinGroup, join_version, &done[0].1);
    let ResponseKind::JoinGroup(join) = &done[0].1 else {
        panic!("join")
    };
    assert_eq!(join.error_code, 0);
    assert_eq!(join.leader, join.member_id);
    assert_eq!(join.members.len(), 1);
    let member = join.member_id.to_string();
    let generation = join.generation_id;
    let mut assignment = SyncGroupRequestAssignment::default();
    assignment.member_id = s(&member);
    assignment.assignment = Bytes::from_static(b"plan");
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(s(group));
    sync.member_id = s(&member);
    sync.generation_id = generation;
    sync.assignments = vec![assignment];
    if sync_version >= 5 {
        sync.protocol_type = Some(s("consumer"));
        sync.protocol_name = Some(s("range"));
    }
    let Reply::Parked(sync_id) = call_at(broker, NOW, sync_version, RequestKind::SyncGroup(sync))
    else {
        panic!("sync parks until answered")
    };
    let done = broker.poll_completed_responses();
    assert_eq!(done[0].0, sync_id);
    encodes(ApiKey::SyncGroup, sync_version, &done[0].1);
    let ResponseKind::SyncGroup(sync) = &done[0].1 else {
        panic!("sync")
    };
    assert_eq!(sync.error_code, 0);
    assert_eq!(sync.assignment, Bytes::from_static(b"plan"));
    (member, generation)
}

fn commit(
    broker: &mut TestNode<Dirs>,
    version: i16,
    group: &str,
    member: &str,
    generation: i32,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Vec<i16> {
    let mut body = OffsetCommitRequest::default();
    body.group_id = GroupId(s(group));
    if version >= 1 {
        body.generation_id_or_member_epoch = generation;
        body.member_id = s(member);
    }
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(s(topic));
    for (partition, offset) in offsets {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = *partition;
        p.committed_offset = *offset;
        p.committed_metadata = Some(s("meta"));
        t.partitions.push(p);
    }
    body.topics = vec![t];
    let ResponseKind::OffsetCommit(r) = call(broker, version, RequestKind::OffsetCommit(body))
    else {
        panic!("commit")
    };
    r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

/// Committed offsets of a group for `topic` partitions 0..n, via OffsetFetch at `version`.
fn fetch_offsets(
    broker: &mut TestNode<Dirs>,
    version: i16,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<i64> {
    let mut body = OffsetFetchRequest::default();
    if version >= 8 {
        let mut t = OffsetFetchRequestTopics::default();
        t.name = TopicName(s(topic));
        t.partition_indexes = (0..partitions).collect();
        let mut g = OffsetFetchRequestGroup::default();
        g.group_id = GroupId(s(group));
        g.topics = Some(vec![t]);
        body.groups = vec![g];
    } else {
        let mut t = OffsetFetchRequestTopic::default();
        t.name = TopicName(s(topic));
        t.partition_indexes = (0..partitions).collect();
        body.group_id = GroupId(s(group));
        body.topics = Some(vec![t]);
    }
    let ResponseKind::OffsetFetch(r) = call(broker, version, RequestKind::OffsetFetch(body)) else {
        panic!("offset fetch")
    };
    if version >= 8 {
        r.groups[0].topics[0]
            .partitions
            .iter()
            .map(|p| p.committed_offset)
            .collect()
    } else {
        r.topics[0]
            .partitions
            .iter()
            .map(|p| p.committed_offset)
            .collect()
    }
}

#[test]
fn groups_join_sync_heartbeat_commit_at_min_and_max_versions() {
    let dirs = Dirs::default();
    let mut broker = open(&dirs);
    create_topic(&mut broker, "t", 3);
    for (round, (join_v, sync_v)) in [(0, 0), (3, 2), (4, 4), (9, 5)].into_iter().enumerate() {
        let group = format!("g{round}");
        let (member, generation) = join_and_sync(&mut broker, &group, join_v, sync_v);
        for version in min_max(ApiKey::Heartbeat) {
            let mut hb = HeartbeatRequest::default();
            hb.group_id = GroupId(s(&group));
            hb.member_id = s(&member);
            hb.generation_id = generation;
            let ResponseKind::Heartbeat(r) =
                call(&mut broker, version, RequestKind::Heartbeat(hb.clone()))
            else {
                panic!("heartbeat")
            };
            assert_eq!(r.error_code, 0);
            hb.generation_id = generation + 7;
            let ResponseKind::Heartbeat(r) = call(&mut broker, version, RequestKind::Heartbeat(hb))
            else {
                panic!("heartbeat")
            };
            assert_eq!(r.error_code, ErrorCode::IllegalGeneration.code());
        }
        for version in [1, 2, 6, 9] {
            let codes = commit(
                &mut broker,
                version,
                &group,
                &member,
                generation,
                "t",
                &[(0, 10 + i64::from(version)), (1, 20)],
            );
            assert_eq!(codes, vec![0, 0], "commit v{version}");
            let codes = commit(
                &mut broker,
                version,
                &group,
                &member,
                generation + 1,
                "t",
                &[(0, 1)],
            );
            assert_eq!(codes, vec![ErrorCode::IllegalGeneration.code()]);
        }
        let codes = commit(&mut broker, 9, &group, &member, generation, "t", &[(7, 1)]);
        assert_eq!(codes, vec![ErrorCode::UnknownTopicOrPartition.code()]);
        for version in [0, 1, 5, 7, 8, 9] {
            assert_eq!(
                fetch_offsets(&mut broker, version, &group, "t", 3),
                vec![19, 20, -1],
                "fetch v{version}"
            );
        }
    }
}

#[test]
fn groups_simple_commit_survives_restart_and_offsets_topic_stays_internal() {
    let dirs = Dirs::default();
    let mut broker = open(&dirs);
    create_topic(&mut broker, "t", 2);
    assert_eq!(
        commit(&mut broker, 0, "solo", "", -1, "t", &[(0, 5), (1, 7)]),
        vec![0, 0]
    );
    assert_eq!(
        commit(&mut broker, 8, "solo", "", -1, "t", &[(1, 8)]),
        vec![0]
    );
    let (member, generation) = join_and_sync(&mut broker, "live", 7, 5);
    assert_eq!(
        commit(&mut broker, 7, "live", &member, generation, "t", &[(0, 3)]),
        vec![0]
    );
    broker.close().unwrap();

    let mut broker = open(&dirs);
    assert_eq!(fetch_offsets(&mut broker, 8, "solo", "t", 2), vec![5, 8]);
    assert_eq!(fetch_offsets(&mut broker, 3, "live", "t", 2), vec![3, -1]);
    // A stable group comes back Stable, with its member and generation: it heartbeats on.
    assert_eq!(broker.group_state("live"), crate::group::GroupState::Stable);
    let mut hb = HeartbeatRequest::default();
    hb.group_id = GroupId(s("live"));
    hb.member_id = s(&member);
    hb.generation_id = generation;
    let ResponseKind::Heartbeat(r) = call(&mut broker, 4, RequestKind::Heartbeat(hb)) else {
        panic!()
    };
    assert_eq!(r.error_code, ErrorCode::None.code());
    leave(&mut broker, NOW, "live", &member);
    assert_eq!(broker.group_state("live"), crate::group::GroupState::Empty);
    let (_, new_generation) = join_and_sync(&mut broker, "live", 9, 5);
    assert!(
        new_generation > generation,
        "generations keep counting after a restart"
    );

    // Without close (a crash that kept the page cache), commits are still replayed.
    assert_eq!(
        commit(&mut broker, 2, "solo", "", -1, "t", &[(0, 6)]),
        vec![0]
    );
    drop(broker);
    let mut broker = open(&dirs);
    assert_eq!(fetch_offsets(&mut broker, 9, "solo", "t", 2), vec![6, 8]);

    // Metadata hides the internal topic unless it is named.
    for version in min_max(ApiKey::Metadata) {
        let mut body = MetadataRequest::default();
        body.topics = if version == 0 { Some(Vec::new()) } else { None };
        let ResponseKind::Metadata(meta) = call(&mut broker, version, RequestKind::Metadata(body))
        else {
            panic!()
        };
        let names: Vec<String> = meta
            .topics
            .iter()
            .map(|t| t.name.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(names, vec!["t".to_string()], "v{version}");
        let mut named = MetadataRequestTopic::default();
        named.name = Some(TopicName(s(OFFSETS_TOPIC)));
        let mut body = MetadataRequest::default();
        body.topics = Some(vec![named]);
        let ResponseKind::Metadata(meta) = call(&mut broker, version, RequestKind::Metadata(body))
        else {
            panic!()
        };
        assert_eq!(meta.topics[0].partitions.len(), 3);
        assert_eq!(meta.topics[0].is_internal, version >= 1);
    }
    // Clients cannot produce to it.
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(Bytes::from_static(b"junk"));
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(s(OFFSETS_TOPIC));
    topic.partition_data = vec![partition];
    let mut body = ProduceRequest::default();
    body.acks = 1;
    body.topic_data = vec![topic];
    let ResponseKind::Produce(r) = call(&mut broker, 9, RequestKind::Produce(body)) else {
        panic!()
    };
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        ErrorCode::InvalidTopicException.code()
    );
}

#[test]
fn groups_admin_apis_describe_list_delete_find_coordinator() {
    let dirs = Dirs::default();
    let mut broker = open(&dirs);
    create_topic(&mut broker, "t", 1);
    for version in 0..=min_max(ApiKey::FindCoordinator)[1] {
        let mut body = FindCoordinatorRequest::default();
        if version >= 4 {
            body.coordinator_keys = vec![s("a"), s("b")];
        } else {
            body.key = s("a");
        }
        let ResponseKind::FindCoordinator(r) =
            call(&mut broker, version, RequestKind::FindCoordinator(body))
        else {
            panic!()
        };
        if version >= 4 {
            assert_eq!(r.coordinators.len(), 2);
            assert_eq!(r.coordinators[1].node_id.0, 1);
        } else {
            assert_eq!((r.error_code, r.node_id.0, r.port), (0, 1, 9092));
        }
    }
    let (member, generation) = join_and_sync(&mut broker, "busy", 9, 5);
    commit(&mut broker, 9, "idle", "", -1, "t", &[(0, 1)]);
    for version in min_max(ApiKey::DescribeGroups) {
        let mut body = DescribeGroupsRequest::default();
        body.groups = vec![GroupId(s("busy")), GroupId(s("idle")), GroupId(s("none"))];
        let ResponseKind::DescribeGroups(r) =
            call(&mut broker, version, RequestKind::DescribeGroups(body))
        else {
            panic!()
        };
        let states: Vec<&str> = r.groups.iter().map(|g| g.group_state.as_str()).collect();
        assert_eq!(states, vec!["Stable", "Empty", "Dead"]);
        assert_eq!(r.groups[0].members[0].member_id.as_str(), member);
        assert_eq!(
            r.groups[0].members[0].member_assignment,
            Bytes::from_static(b"plan")
        );
        assert_eq!(r.groups[0].protocol_data.as_str(), "range");
    }
    for version in min_max(ApiKey::ListGroups) {
        let mut body = ListGroupsRequest::default();
        let ResponseKind::ListGroups(r) =
            call(&mut broker, version, RequestKind::ListGroups(body.clone()))
        else {
            panic!()
        };
        assert_eq!(r.groups.len(), 2);
        if version >= 4 {
            body.states_filter = vec![s("stable")];
            let ResponseKind::ListGroups(r) =
                call(&mut broker, version, RequestKind::ListGroups(body))
            else {
                panic!()
            };
            let names: Vec<&str> = r.groups.iter().map(|g| g.group_id.as_str()).collect();
            assert_eq!(names, vec!["busy"]);
        }
    }
    // OffsetDelete: refused while subscribed (the member's metadata names topic "t").
    commit(&mut broker, 9, "busy", &member, generation, "t", &[(0, 4)]);
    let mut p = OffsetDeleteRequestPartition::default();
    p.partition_index = 0;
    let mut t = OffsetDeleteRequestTopic::default();
    t.name = TopicName(s("t"));
    t.partitions = vec![p];
    let mut body = OffsetDeleteRequest::default();
    body.group_id = GroupId(s("busy"));
    body.topics = vec![t];
    let ResponseKind::OffsetDelete(r) =
        call(&mut broker, 0, RequestKind::OffsetDelete(body.clone()))
    else {
        panic!()
    };
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ErrorCode::GroupSubscribedToTopic.code()
    );
    body.group_id = GroupId(s("idle"));
    let ResponseKind::OffsetDelete(r) = call(&mut broker, 0, RequestKind::OffsetDelete(body))
    else {
        panic!()
    };
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert_eq!(fetch_offsets(&mut broker, 9, "idle", "t", 1), vec![-1]);
    // Its last offset gone, the member-less group is Dead, as in Kafka.
    assert_eq!(broker.group_state("idle"), crate::group::GroupState::Dead);
    // LeaveGroup, then DeleteGroups.
    for version in min_max(ApiKey::LeaveGroup) {
        let mut body = LeaveGroupRequest::default();
        body.group_id = GroupId(s("busy"));
        if version >= 3 {
            let mut m = MemberIdentity::default();
            m.member_id = s(&member);
            body.members = vec![m];
        } else {
            body.member_id = s(&member);
        }
        let ResponseKind::LeaveGroup(r) = call(&mut broker, version, RequestKind::LeaveGroup(body))
        else {
            panic!()
        };
        if version >= 3 {
            assert_eq!(
                r.members[0].error_code,
                ErrorCode::UnknownMemberId.code(),
                "already left"
            );
        } else {
            assert_eq!(r.error_code, 0);
        }
    }
    for version in min_max(ApiKey::DeleteGroups) {
        let mut body = DeleteGroupsRequest::default();
        body.groups_names = vec![GroupId(s("busy")), GroupId(s("none"))];
        let ResponseKind::DeleteGroups(r) =
            call(&mut broker, version, RequestKind::DeleteGroups(body))
        else {
            panic!()
        };
        let expected = if version == 0 {
            0
        } else {
            ErrorCode::GroupIdNotFound.code()
        };
        assert_eq!(r.results[0].error_code, expected);
        assert_eq!(r.results[1].error_code, ErrorCode::GroupIdNotFound.code());
    }
    broker.close().unwrap();
    let broker = open(&dirs);
    assert_eq!(
        broker.group_state("busy"),
        crate::group::GroupState::Dead,
        "deletion persisted"
    );
    assert_eq!(broker.group_state("idle"), crate::group::GroupState::Dead);
}

#[test]
fn groups_second_member_waits_and_session_expiry_runs_on_ticks() {
    let dirs = Dirs::default();
    let mut broker = open(&dirs);
    let (first, generation) = join_and_sync(&mut broker, "g", 9, 5);
    let Reply::Response(r) = call_at(
        &mut broker,
        NOW,
        9,
        RequestKind::JoinGroup(join_body("g", "", 9)),
    ) else {
        panic!()
    };
    let ResponseKind::JoinGroup(r) = *r else {
        panic!()
    };
    let second = r.member_id.to_string();
    let Reply::Parked(parked) = call_at(
        &mut broker,
        NOW,
        9,
        RequestKind::JoinGroup(join_body("g", &second, 9)),
    ) else {
        panic!("waits for the first member to rejoin")
    };
    assert!(broker.poll_completed_responses().is_empty());
    // The first member never rejoins nor heartbeats: its session ends and the rebalance
    // completes with the second member alone.
    let deadline = broker.next_deadline().expect("a group timer");
    assert!(deadline.0 <= NOW.0 + i64::from(SESSION_MS));
    broker.handle_tick(Millis(NOW.0 + i64::from(SESSION_MS)));
    let done = broker.poll_completed_responses();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, parked);
    let ResponseKind::JoinGroup(join) = &done[0].1 else {
        panic!()
    };
    assert_eq!(join.leader.as_str(), second);
    assert_eq!(join.generation_id, generation + 1);
    assert!(join.members.iter().all(|m| m.member_id.as_str() != first));
}

mod random_walk {
    //! Random but well-formed group requests in every served version from a few members:
    //! nothing panics, every direct and parked answer encodes in its request's version, and
    //! every parked request is answered once the timers have run.

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    struct Op {
        api: u8,
        version_pick: u8,
        slot: usize,
        group: u8,
        stale: bool,
        instance: bool,
        advance_ms: u16,
    }

    fn op() -> impl Strategy<Value = Op> {
        (
            0u8..12,
            any::<u8>(),
            0usize..3,
            0u8..2,
            any::<bool>(),
            any::<bool>(),
            0u16..4000,
        )
            .prop_map(
                |(api, version_pick, slot, group, stale, instance, advance_ms)| Op {
                    api,
                    version_pick,
                    slot,
                    group,
                    stale,
                    instance,
                    advance_ms,
                },
            )
    }

    fn version_in(api: ApiKey, pick: u8) -> i16 {
        let (min, max) = supported_versions(api).expect("served");
        min + i16::from(pick) % (max - min + 1)
    }

    fn body_for(op: &Op, member: &str, generation: i32) -> (RequestKind, i16) {
        let group = format!("walk-{}", op.group);
        let instance = op.instance.then(|| s(&format!("instance-{}", op.slot)));
        let apis = [
            ApiKey::JoinGroup,
            ApiKey::JoinGroup,
            ApiKey::SyncGroup,
            ApiKey::Heartbeat,
            ApiKey::Heartbeat,
            ApiKey::LeaveGroup,
            ApiKey::OffsetCommit,
            ApiKey::OffsetFetch,
            ApiKey::DescribeGroups,
            ApiKey::ListGroups,
            ApiKey::DeleteGroups,
            ApiKey::FindCoordinator,
        ];
        let api = apis[op.api as usize];
        let version = version_in(api, op.version_pick);
        let body = match api {
            ApiKey::JoinGroup => {
                let mut body = join_body(&group, member, version);
                if version >= 5 {
                    body.group_instance_id = instance;
                }
                RequestKind::JoinGroup(body)
            }
            ApiKey::SyncGroup => {
                let mut body = SyncGroupRequest::default();
                body.group_id = GroupId(s(&group));
                body.member_id = s(member);
                body.generation_id = generation;
                if version >= 3 {
                    body.group_instance_id = instance;
                }
                let mut assignment = SyncGroupRequestAssignment::default();
                assignment.member_id = s(member);
                assignment.assignment = Bytes::from_static(b"a");
                body.assignments = vec![assignment];
                RequestKind::SyncGroup(body)
            }
            ApiKey::Heartbeat => {
                let mut body = HeartbeatRequest::default();
                body.group_id = GroupId(s(&group));
                body.member_id = s(member);
                body.generation_id = generation;
                if version >= 3 {
                    body.group_instance_id = instance;
                }
                RequestKind::Heartbeat(body)
            }
            ApiKey::LeaveGroup => {
                let mut body = LeaveGroupRequest::default();
                body.group_id = GroupId(s(&group));
                if version >= 3 {
                    let mut m = MemberIdentity::default();
                    m.member_id = s(member);
                    if version >= 5 {
                        m.group_instance_id = instance;
                    }
                    body.members = vec![m];
                } else {
                    body.member_id = s(member);
                }
                RequestKind::LeaveGroup(body)
            }
            ApiKey::OffsetCommit => {
                let mut body = OffsetCommitRequest::default();
                body.group_id = GroupId(s(&group));
                if version >= 1 {
                    body.generation_id_or_member_epoch = generation;
                    body.member_id = s(member);
                }
                if version >= 7 {
                    body.group_instance_id = instance;
                }
                let mut t = OffsetCommitRequestTopic::default();
                t.name = TopicName(s("t"));
                let mut p = OffsetCommitRequestPartition::default();
                p.partition_index = i32::from(op.version_pick % 3);
                p.committed_offset = i64::from(op.advance_ms);
                t.partitions = vec![p];
                body.topics = vec![t];
                RequestKind::OffsetCommit(body)
            }
            ApiKey::OffsetFetch => {
                let mut body = OffsetFetchRequest::default();
                if version >= 8 {
                    let mut g = OffsetFetchRequestGroup::default();
                    g.group_id = GroupId(s(&group));
                    g.topics = None;
                    body.groups = vec![g];
                } else {
                    body.group_id = GroupId(s(&group));
                    body.topics = (version >= 2 && op.stale)
                        .then(Vec::new)
                        .or(Some(Vec::new()));
                }
                RequestKind::OffsetFetch(body)
            }
            ApiKey::DescribeGroups => {
                let mut body = DescribeGroupsRequest::default();
                body.groups = vec![GroupId(s(&group))];
                RequestKind::DescribeGroups(body)
            }
            ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
            ApiKey::DeleteGroups => {
                let mut body = DeleteGroupsRequest::default();
                body.groups_names = vec![GroupId(s(&group))];
                RequestKind::DeleteGroups(body)
            }
            _ => {
                let mut body = FindCoordinatorRequest::default();
                if version >= 4 {
                    body.coordinator_keys = vec![s(&group)];
                } else {
                    body.key = s(&group);
                }
                RequestKind::FindCoordinator(body)
            }
        };
        (body, version)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn groups_random_requests_in_every_version_encode_and_complete(
            ops in prop::collection::vec(op(), 1..60),
        ) {
            let dirs = Dirs::default();
            let mut broker = open(&dirs);
            create_topic(&mut broker, "t", 2);
            let mut members = vec![String::new(); 3];
            let mut parked: BTreeMap<ParkedId, (ApiKey, i16, usize)> = BTreeMap::new();
            let mut now = NOW;
            for op in &ops {
                now = Millis(now.0 + i64::from(op.advance_ms));
                let group = format!("walk-{}", op.group);
                let generation = broker.group_coordinator().generation(&group).unwrap_or(0)
                    - i32::from(op.stale);
                let (body, version) = body_for(op, &members[op.slot], generation);
                let api = api_of(&body);
                match call_at(&mut broker, now, version, body) {
                    Reply::Parked(id) => {
                        prop_assert!(parked.insert(id, (api, version, op.slot)).is_none());
                    }
                    Reply::Response(response) => {
                        if let ResponseKind::JoinGroup(join) = *response {
                            if !join.member_id.is_empty() {
                                members[op.slot] = join.member_id.to_string();
                            }
                        }
                    }
                    other => prop_assert!(false, "unexpected reply {other:?}"),
                }
                broker.handle_tick(now);
                for (id, response) in broker.poll_completed_responses() {
                    let Some((api, version, slot)) = parked.remove(&id) else {
                        panic!("{id:?} answered twice or never parked");
                    };
                    encodes(api, version, &response);
                    if let ResponseKind::JoinGroup(join) = response {
                        if join.error_code == 0 {
                            members[slot] = join.member_id.to_string();
                        }
                    }
                }
            }
            // With no more requests, the timers answer everything that waits.
            for _ in 0..5 {
                now = Millis(now.0 + 60_000);
                broker.handle_tick(now);
                for (id, response) in broker.poll_completed_responses() {
                    let (api, version, _) = parked.remove(&id).expect("parked once");
                    encodes(api, version, &response);
                }
            }
            prop_assert!(parked.is_empty(), "never answered: {parked:?}");
            // And the committed offsets survive a reopen (a group that never had a member or
            // an offset is not persisted, so none and empty are the same).
            let before: Vec<_> = (0..2)
                .map(|g| broker.group_coordinator().committed_offsets(&format!("walk-{g}"))
                        .cloned()
                        .unwrap_or_default())
                .collect();
            broker.close().unwrap();
            let broker = open(&dirs);
            let after: Vec<_> = (0..2)
                .map(|g| broker.group_coordinator().committed_offsets(&format!("walk-{g}"))
                        .cloned()
                        .unwrap_or_default())
                .collect();
            prop_assert_eq!(before, after);
        }
    }
}

/// A broker whose offsets expire after 100 s, checked every second, opened at `now`.
fn open_with_retention(dirs: &Dirs, now: Millis) -> TestNode<Dirs> {
    let config = BrokerConfig {
        offsets_topic_partitions: 3,
        group: crate::group::GroupConfig {
            offsets_retention_ms: 100_000,
            offsets_retention_check_interval_ms: 1_000,
            ..crate::group::GroupConfig::default()
        },
        ..BrokerConfig::default()
    };
    let mut node = TestNode::open(dirs, config, now).expect("open broker");
    node.create_offsets_topic(now);
    node
}

fn after(ms: i64) -> Millis {
    Millis(NOW.0 + ms)
}

fn leave(broker: &mut TestNode<Dirs>, now: Millis, group: &str, member: &str) {
    let mut body = LeaveGroupRequest::default();
    body.group_id = GroupId(s(group));
    body.member_id = s(member);
    let Reply::Response(response) = call_at(broker, now, 0, RequestKind::LeaveGroup(body)) else {
        panic!("leave answers at once")
    };
    let ResponseKind::LeaveGroup(r) = *response else {
        panic!()
    };
    assert_eq!(r.error_code, 0);
}

#[test]
fn groups_retention_expired_offsets_and_dead_groups_stay_gone_after_restart() {
    let dirs = Dirs::default();
    let mut broker = open_with_retention(&dirs, NOW);
    create_topic(&mut broker, "t", 2);
    let (member, generation) = join_and_sync(&mut broker, "g", 9, 5);
    let codes = commit(
        &mut broker,
        9,
        "g",
        &member,
        generation,
        "t",
        &[(0, 5), (1, 6)],
    );
    assert_eq!(codes, vec![0, 0]);
    assert_eq!(
        commit(&mut broker, 9, "solo", "", -1, "t", &[(0, 9)]),
        vec![0]
    );
    leave(&mut broker, after(10_000), "g", &member);
    broker.handle_tick(after(60_000));
    assert_eq!(fetch_offsets(&mut broker, 9, "g", "t", 2), vec![5, 6]);
    broker.close().unwrap();

    // Restarted at once: "g" has been Empty since 10 s and "solo" committed at 0 s, both
    // within their 100 s, so the replay brings them back; they expire on the timer later.
    let mut broker = open_with_retention(&dirs, after(60_000));
    assert_eq!(fetch_offsets(&mut broker, 9, "g", "t", 2), vec![5, 6]);
    assert_eq!(fetch_offsets(&mut broker, 9, "solo", "t", 1), vec![9]);
    broker.handle_tick(after(110_000));
    assert_eq!(fetch_offsets(&mut broker, 9, "g", "t", 2), vec![-1, -1]);
    assert_eq!(fetch_offsets(&mut broker, 9, "solo", "t", 1), vec![-1]);
    assert_eq!(broker.group_state("g"), crate::group::GroupState::Dead);
    assert_eq!(broker.group_state("solo"), crate::group::GroupState::Dead);
    // Without a clean close: the tombstones are in the log, so the replay agrees.
    drop(broker);
    let mut broker = open_with_retention(&dirs, after(120_000));
    assert_eq!(fetch_offsets(&mut broker, 9, "g", "t", 2), vec![-1, -1]);
    assert_eq!(broker.group_state("g"), crate::group::GroupState::Dead);
    assert_eq!(broker.group_state("solo"), crate::group::GroupState::Dead);
    let ResponseKind::ListGroups(r) = call(
        &mut broker,
        5,
        RequestKind::ListGroups(ListGroupsRequest::default()),
    ) else {
        panic!()
    };
    assert!(r.groups.is_empty(), "{r:?}");
}

#[test]
fn groups_describe_shows_the_member_host_the_driver_reports() {
    let dirs = Dirs::default();
    let mut broker = open(&dirs);
    let context = RequestContext {
        client_host: "/10.1.2.3".into(),
    };
    let request = Request {
        api_key: ApiKey::JoinGroup,
        api_version: 3,
        correlation_id: 1,
        client_id: Some("tester".into()),
        body: RequestKind::JoinGroup(join_body("g", "", 3)),
    };
    let Reply::Parked(_) = broker.handle_request_from(NOW, &context, request) else {
        panic!("a join parks")
    };
    let done = broker.poll_completed_responses();
    let ResponseKind::JoinGroup(join) = &done[0].1 else {
        panic!()
    };
    assert_eq!(join.error_code, 0);
    for version in min_max(ApiKey::DescribeGroups) {
        let mut body = DescribeGroupsRequest::default();
        body.groups = vec![GroupId(s("g"))];
        let ResponseKind::DescribeGroups(r) =
            call(&mut broker, version, RequestKind::DescribeGroups(body))
        else {
            panic!()
        };
        assert_eq!(r.groups[0].members[0].client_host.as_str(), "/10.1.2.3");
        assert_eq!(r.groups[0].members[0].client_id.as_str(), "tester");
    }
}

#[test]
fn groups_find_coordinator_v6_refuses_share_group_keys() {
    let dirs = Dirs::default();
    let mut broker = open(&dirs);
    let mut body = FindCoordinatorRequest::default();
    body.key_type = 2;
    body.coordinator_keys = vec![s("share")];
    let ResponseKind::FindCoordinator(r) = call(&mut broker, 6, RequestKind::FindCoordinator(body))
    else {
        panic!()
    };
    assert_eq!(
        r.coordinators[0].error_code,
        ErrorCode::InvalidRequest.code()
    );
    assert_eq!(r.coordinators[0].node_id.0, -1);
}

#[test]
fn groups_sync_fails_and_the_group_rebalances_when_its_generation_cannot_be_stored() {
    let dirs = Dirs::default();
    let mut broker = open(&dirs);
    // A first group creates and writes __consumer_offsets while the disk is fine.
    join_and_sync(&mut broker, "first", 5, 3);
    for (name, dir) in dirs.0.borrow().iter() {
        if name.starts_with(OFFSETS_TOPIC) {
            dir.0.borrow().faults().set_full(true, 7);
        }
    }
    // A second group joins (v3: no member-id round trip) and its leader syncs.
    let Reply::Parked(_) = call_at(
        &mut broker,
        NOW,
        3,
        RequestKind::JoinGroup(join_body("second", "", 3)),
    ) else {
        panic!("join parks")
    };
    let done = broker.poll_completed_responses();
    let ResponseKind::JoinGroup(join) = &done[0].1 else {
        panic!("join")
    };
    assert_eq!(join.error_code, 0);
    let (member, generation) = (join.member_id.to_string(), join.generation_id);
    let mut assignment = SyncGroupRequestAssignment::default();
    assignment.member_id = s(&member);
    assignment.assignment = Bytes::from_static(b"plan");
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(s("second"));
    sync.member_id = s(&member);
    sync.generation_id = generation;
    sync.assignments = vec![assignment];
    let Reply::Parked(_) = call_at(&mut broker, NOW, 3, RequestKind::SyncGroup(sync)) else {
        panic!("sync parks")
    };
    let done = broker.poll_completed_responses();
    let ResponseKind::SyncGroup(answer) = &done[0].1 else {
        panic!("sync")
    };
    assert_eq!(
        answer.error_code,
        ErrorCode::CoordinatorNotAvailable.code(),
        "a generation that was not stored is not handed out"
    );
    assert!(answer.assignment.is_empty());
    // The member learns on its next heartbeat that it must rejoin.
    let mut heartbeat = HeartbeatRequest::default();
    heartbeat.group_id = GroupId(s("second"));
    heartbeat.member_id = s(&member);
    heartbeat.generation_id = generation;
    let ResponseKind::Heartbeat(r) = call(&mut broker, 3, RequestKind::Heartbeat(heartbeat)) else {
        panic!("heartbeat")
    };
    assert_eq!(r.error_code, ErrorCode::RebalanceInProgress.code());
}

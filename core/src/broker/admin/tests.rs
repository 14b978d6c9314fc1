//! Admin API tests through `Broker::handle_request`; every response is also encoded at the
//! lowest and highest version served, so a field set in a version that lacks it fails here.

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::incremental_alter_configs_request as incremental;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::configs::{SOURCE_DEFAULT_CONFIG, SOURCE_STATIC_BROKER_CONFIG, SOURCE_TOPIC_CONFIG};
use super::*;
use crate::broker::test_node::TestNode;
use crate::broker::{BrokerConfig, Reply, OFFSETS_TOPIC};
use crate::protocol::{encode_response, supported_versions, Request};
use crate::record::{BatchBuilder, Record};
use crate::types::Millis;

/// The test's disk: shared in-memory directories.
type Dirs = crate::storage::MemoryDirs;

const NOW: Millis = Millis(1_700_000_000_000);

fn broker() -> TestNode {
    TestNode::open(&Dirs::default(), BrokerConfig::default(), NOW).expect("open broker")
}

fn api_key(body: &RequestKind) -> ApiKey {
    match body {
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::DescribeConfigs(_) => ApiKey::DescribeConfigs,
        RequestKind::AlterConfigs(_) => ApiKey::AlterConfigs,
        RequestKind::IncrementalAlterConfigs(_) => ApiKey::IncrementalAlterConfigs,
        RequestKind::CreatePartitions(_) => ApiKey::CreatePartitions,
        RequestKind::DescribeCluster(_) => ApiKey::DescribeCluster,
        RequestKind::DeleteRecords(_) => ApiKey::DeleteRecords,
        RequestKind::OffsetForLeaderEpoch(_) => ApiKey::OffsetForLeaderEpoch,
        RequestKind::DeleteTopics(_) => ApiKey::DeleteTopics,
        RequestKind::DescribeTopicPartitions(_) => ApiKey::DescribeTopicPartitions,
        RequestKind::ElectLeaders(_) => ApiKey::ElectLeaders,
        RequestKind::DescribeQuorum(_) => ApiKey::DescribeQuorum,
        RequestKind::AlterPartitionReassignments(_) => ApiKey::AlterPartitionReassignments,
        RequestKind::ListPartitionReassignments(_) => ApiKey::ListPartitionReassignments,
        RequestKind::UnregisterBroker(_) => ApiKey::UnregisterBroker,
        other => panic!("no key for {other:?}"),
    }
}

/// Calls the broker at `version` and checks that the response encodes in that version.
fn call(broker: &mut TestNode, version: i16, body: RequestKind) -> ResponseKind {
    let request = Request {
        api_key: api_key(&body),
        api_version: version,
        correlation_id: 7,
        client_id: Some("admin-test".into()),
        body,
    };
    let header = Request {
        body: RequestKind::ApiVersions(Default::default()),
        ..request.clone()
    };
    let reply = broker.handle_request(NOW, request);
    let Reply::Response(response) = reply else {
        panic!("expected a response, got {reply:?}");
    };
    if let Err(err) = encode_response(&header, &response) {
        panic!("{:?} v{version}: {err}", header.api_key);
    }
    *response
}

/// The lowest and highest version served for an API.
fn version_range(api: ApiKey) -> [i16; 2] {
    let (min, max) = supported_versions(api).expect("the API is advertised");
    [min, max]
}

fn create(broker: &mut TestNode, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(StrBytes::from_string(name.into()));
    topic.num_partitions = partitions;
    topic.replication_factor = 1;
    topic.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut config = CreatableTopicConfig::default();
            config.name = StrBytes::from_string((*k).into());
            config.value = Some(StrBytes::from_string((*v).into()));
            config
        })
        .collect();
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    match call(broker, 5, RequestKind::CreateTopics(request)) {
        ResponseKind::CreateTopics(r) => assert_eq!(r.topics[0].error_code, 0, "{r:?}"),
        other => panic!("{other:?}"),
    }
}

fn produce(broker: &mut TestNode, topic: &str, partition: i32, count: usize) -> i16 {
    let mut builder = BatchBuilder::new(Offset(0));
    for i in 0..count {
        builder.push(&Record {
            timestamp: NOW.0 + i as i64,
            key: None,
            value: Some(format!("v{i}").into_bytes()),
            headers: Vec::new(),
        });
    }
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(Bytes::from(builder.build()));
    let mut topic_data = TopicProduceData::default();
    topic_data.name = TopicName(StrBytes::from_string(topic.into()));
    topic_data.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.acks = 1;
    request.timeout_ms = 1000;
    request.topic_data = vec![topic_data];
    match call(broker, 9, RequestKind::Produce(request)) {
        ResponseKind::Produce(r) => r.responses[0].partition_responses[0].error_code,
        other => panic!("{other:?}"),
    }
}

fn overrides(broker: &TestNode, topic: &str) -> Vec<(String, String)> {
    broker.topics[topic]
        .overrides
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The topic overrides as the metadata log records them.
fn persisted_overrides(broker: &TestNode, topic: &str) -> Vec<(String, String)> {
    let image = broker.image();
    (image.topic(topic).expect("the topic").configs.iter())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// --- DescribeConfigs -------------------------------------------------------------------

fn describe(
    broker: &mut TestNode,
    version: i16,
    kind: i8,
    name: &str,
    keys: Option<&[&str]>,
) -> DescribeConfigsResult {
    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = kind;
    resource.resource_name = StrBytes::from_string(name.into());
    resource.configuration_keys = keys.map(|keys| {
        keys.iter()
            .map(|k| StrBytes::from_string(k.to_string()))
            .collect()
    });
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![resource];
    if version >= 1 {
        request.include_synonyms = true;
    }
    if version >= 3 {
        request.include_documentation = true;
    }
    match call(broker, version, RequestKind::DescribeConfigs(request)) {
        ResponseKind::DescribeConfigs(mut r) => r.results.remove(0),
        other => panic!("{other:?}"),
    }
}

fn config<'a>(
    result: &'a DescribeConfigsResult,
    name: &str,
) -> &'a describe_configs_response::DescribeConfigsResourceResult {
    result
        .configs
        .iter()
        .find(|c| c.name.as_str() == name)
        .unwrap_or_else(|| panic!("{name} missing from {result:?}"))
}

#[test]
fn describe_configs_topic_lists_every_config_with_source() {
    let mut broker = broker();
    create(&mut broker, "orders", 1, &[("retention.ms", "1000")]);
    for version in version_range(ApiKey::DescribeConfigs) {
        let result = describe(&mut broker, version, RESOURCE_TOPIC, "orders", None);
        assert_eq!(result.error_code, 0, "v{version}");
        assert_eq!(result.configs.len(), TOPIC_CONFIGS.len(), "v{version}");
        let retention = config(&result, "retention.ms");
        let segment = config(&result, "segment.bytes");
        assert_eq!(retention.value.as_deref(), Some("1000"));
        assert_eq!(segment.value.as_deref(), Some("1073741824"));
        assert!(!retention.read_only);
        if version == 0 {
            assert!(!retention.is_default);
            assert!(segment.is_default);
        } else {
            assert_eq!(retention.config_source, SOURCE_TOPIC_CONFIG);
            assert_eq!(segment.config_source, SOURCE_DEFAULT_CONFIG);
            // Override first, then the broker-level default (Kafka's synonym order).
            let synonyms: Vec<_> = retention
                .synonyms
                .iter()
                .map(|s| (s.name.to_string(), s.source))
                .collect();
            assert_eq!(
                synonyms,
                [
                    ("retention.ms".to_string(), SOURCE_TOPIC_CONFIG),
                    ("log.retention.ms".to_string(), SOURCE_DEFAULT_CONFIG)
                ]
            );
        }
        if version >= 3 {
            assert_eq!(retention.config_type, 5, "LONG");
            assert!(retention
                .documentation
                .as_ref()
                .is_some_and(|d| !d.is_empty()));
        }
    }
}

#[test]
fn describe_configs_honours_configuration_keys() {
    let mut broker = broker();
    create(&mut broker, "orders", 1, &[]);
    for version in version_range(ApiKey::DescribeConfigs) {
        let keys: &[&str] = &["cleanup.policy", "no.such.config"];
        let result = describe(&mut broker, version, RESOURCE_TOPIC, "orders", Some(keys));
        let names: Vec<&str> = result.configs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["cleanup.policy"], "v{version}");
        assert_eq!(result.configs[0].value.as_deref(), Some("delete"));
    }
}

#[test]
fn describe_configs_refuses_unknown_topics_and_resource_types() {
    let mut broker = broker();
    for version in version_range(ApiKey::DescribeConfigs) {
        let unknown = describe(&mut broker, version, RESOURCE_TOPIC, "missing", None);
        assert_eq!(
            unknown.error_code,
            ErrorCode::UnknownTopicOrPartition.code()
        );
        assert!(unknown.configs.is_empty());
        let invalid = describe(&mut broker, version, RESOURCE_TOPIC, "a b", None);
        assert_eq!(invalid.error_code, ErrorCode::InvalidTopicException.code());
        let logger = describe(&mut broker, version, 8, "1", None);
        assert_eq!(logger.error_code, ErrorCode::InvalidRequest.code());
        let other_broker = describe(&mut broker, version, RESOURCE_BROKER, "2", None);
        assert_eq!(other_broker.error_code, ErrorCode::InvalidRequest.code());
    }
}

#[test]
fn describe_configs_broker_answers_for_its_id_and_the_empty_name() {
    let mut broker = broker();
    for version in version_range(ApiKey::DescribeConfigs) {
        for name in ["", "1"] {
            let result = describe(&mut broker, version, RESOURCE_BROKER, name, None);
            assert_eq!(result.error_code, 0, "v{version} {name:?}");
            let partitions = config(&result, "num.partitions");
            assert_eq!(partitions.value.as_deref(), Some("1"));
            assert!(partitions.read_only);
            for wanted in ["log.retention.ms", "log.segment.bytes", "message.max.bytes"] {
                config(&result, wanted);
            }
            let auto_create = config(&result, "auto.create.topics.enable");
            assert_eq!(auto_create.value.as_deref(), Some("true"));
            if version >= 1 {
                assert_eq!(partitions.config_source, SOURCE_DEFAULT_CONFIG);
                let port = config(&result, "advertised.listeners");
                assert_eq!(port.config_source, SOURCE_STATIC_BROKER_CONFIG);
            }
        }
    }
}

#[test]
fn describe_configs_reports_static_broker_values_as_static() {
    let mut config = BrokerConfig::default();
    config.log.retention_ms = Some(60_000);
    let mut broker = TestNode::open(&Dirs::default(), config, NOW).unwrap();
    create(&mut broker, "orders", 1, &[]);
    let result = describe(
        &mut broker,
        1,
        RESOURCE_TOPIC,
        "orders",
        Some(&["retention.ms"]),
    );
    let retention = &result.configs[0];
    assert_eq!(retention.value.as_deref(), Some("60000"));
    assert_eq!(retention.config_source, SOURCE_STATIC_BROKER_CONFIG);
    let sources: Vec<i8> = retention.synonyms.iter().map(|s| s.source).collect();
    assert_eq!(
        sources,
        [SOURCE_STATIC_BROKER_CONFIG, SOURCE_DEFAULT_CONFIG]
    );
}

#[test]
fn config_catalog_covers_every_topic_config() {
    let config = BrokerConfig::default();
    let entries = configs::topic_entries(&config, &BTreeMap::new());
    for (name, entry) in TOPIC_CONFIGS.iter().zip(&entries) {
        assert_eq!(&entry.name, name);
        assert!(configs::topic_default(&config, name).is_some(), "{name}");
        // The reported default must itself be a valid value.
        let overrides = BTreeMap::from([(name.to_string(), entry.value.clone())]);
        assert!(
            broker().log_config_for(&overrides).is_ok(),
            "{name}={}",
            entry.value
        );
        assert_eq!(
            entry.synonyms.len(),
            1,
            "{name} has its broker default as synonym"
        );
    }
    assert!(configs::is_list_config("cleanup.policy"));
    assert!(!configs::is_list_config("retention.ms"));
}

// --- AlterConfigs ----------------------------------------------------------------------

fn alter(
    broker: &mut TestNode,
    version: i16,
    kind: i8,
    topic: &str,
    configs: &[(&str, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let mut resource = alter_configs_request::AlterConfigsResource::default();
    resource.resource_type = kind;
    resource.resource_name = StrBytes::from_string(topic.into());
    resource.configs = configs
        .iter()
        .map(|(name, value)| {
            let mut config = alter_configs_request::AlterableConfig::default();
            config.name = StrBytes::from_string(name.to_string());
            config.value = value.map(|v| StrBytes::from_string(v.to_string()));
            config
        })
        .collect();
    let mut request = AlterConfigsRequest::default();
    request.resources = vec![resource];
    request.validate_only = validate_only;
    match call(broker, version, RequestKind::AlterConfigs(request)) {
        ResponseKind::AlterConfigs(r) => {
            let result = &r.responses[0];
            assert_eq!(result.resource_name.as_str(), topic);
            (
                result.error_code,
                result.error_message.as_ref().map(|m| m.to_string()),
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn alter_configs_replaces_the_whole_override_set() {
    for version in version_range(ApiKey::AlterConfigs) {
        let mut broker = broker();
        create(&mut broker, "orders", 2, &[("retention.ms", "1000")]);
        let configs = [("segment.bytes", Some("2048")), ("flush.ms", None)];
        let (code, message) = alter(
            &mut broker,
            version,
            RESOURCE_TOPIC,
            "orders",
            &configs,
            false,
        );
        assert_eq!((code, message), (0, None), "v{version}");
        // retention.ms was left out, so it is back at its default (Kafka semantics).
        assert_eq!(
            overrides(&broker, "orders"),
            pairs(&[("segment.bytes", "2048")])
        );
        assert_eq!(
            persisted_overrides(&broker, "orders"),
            pairs(&[("segment.bytes", "2048")])
        );
        for (_, partition) in broker.topics["orders"].partitions.held() {
            assert_eq!(partition.log.config().segment_bytes, 2048);
            assert_eq!(
                partition.log.config().retention_ms,
                Some(7 * 24 * 3600 * 1000)
            );
        }
    }
}

#[test]
fn alter_configs_refuses_bad_values_and_honours_validate_only() {
    let mut broker = broker();
    create(&mut broker, "orders", 1, &[("retention.ms", "1000")]);
    let before = overrides(&broker, "orders");
    let bad = [("segment.bytes", Some("12"))];
    let (code, message) = alter(&mut broker, 2, RESOURCE_TOPIC, "orders", &bad, false);
    assert_eq!(code, ErrorCode::InvalidConfig.code());
    assert!(message.unwrap().contains("segment.bytes"));
    let unknown = [("no.such", Some("1"))];
    let (code, _) = alter(&mut broker, 2, RESOURCE_TOPIC, "orders", &unknown, false);
    assert_eq!(code, ErrorCode::InvalidConfig.code());
    let newline = [("retention.ms", Some("5\n"))];
    let (code, _) = alter(&mut broker, 2, RESOURCE_TOPIC, "orders", &newline, false);
    assert_eq!(
        code,
        ErrorCode::InvalidConfig.code(),
        "would break the meta file"
    );
    let good = [("retention.ms", Some("5000"))];
    assert_eq!(
        alter(&mut broker, 2, RESOURCE_TOPIC, "orders", &good, true).0,
        0
    );
    assert_eq!(
        overrides(&broker, "orders"),
        before,
        "validate_only changes nothing"
    );
    let (code, _) = alter(&mut broker, 2, RESOURCE_TOPIC, "missing", &good, false);
    assert_eq!(code, ErrorCode::UnknownTopicOrPartition.code());
    let (code, _) = alter(&mut broker, 2, RESOURCE_BROKER, "1", &good, false);
    assert_eq!(code, ErrorCode::InvalidRequest.code());
}

// --- IncrementalAlterConfigs -----------------------------------------------------------

/// (config name, operation, value).
type Op<'a> = (&'a str, i8, Option<&'a str>);

fn alter_incremental(broker: &mut TestNode, version: i16, topic: &str, ops: &[Op]) -> i16 {
    let mut resource = incremental::AlterConfigsResource::default();
    resource.resource_type = RESOURCE_TOPIC;
    resource.resource_name = StrBytes::from_string(topic.into());
    resource.configs = ops
        .iter()
        .map(|(name, operation, value)| {
            let mut config = incremental::AlterableConfig::default();
            config.name = StrBytes::from_string(name.to_string());
            config.config_operation = *operation;
            config.value = value.map(|v| StrBytes::from_string(v.to_string()));
            config
        })
        .collect();
    let mut request = IncrementalAlterConfigsRequest::default();
    request.resources = vec![resource];
    match call(
        broker,
        version,
        RequestKind::IncrementalAlterConfigs(request),
    ) {
        ResponseKind::IncrementalAlterConfigs(r) => r.responses[0].error_code,
        other => panic!("{other:?}"),
    }
}

#[test]
fn incremental_alter_configs_sets_deletes_appends_and_subtracts() {
    for version in version_range(ApiKey::IncrementalAlterConfigs) {
        let mut broker = broker();
        create(&mut broker, "orders", 1, &[("retention.ms", "1000")]);
        let set = [
            ("segment.ms", OP_SET, Some("60000")),
            ("retention.ms", OP_DELETE, None),
        ];
        assert_eq!(alter_incremental(&mut broker, version, "orders", &set), 0);
        assert_eq!(
            overrides(&broker, "orders"),
            pairs(&[("segment.ms", "60000")])
        );
        assert_eq!(
            broker.topics["orders"].partitions[0]
                .log
                .config()
                .segment_ms,
            60_000
        );
        // APPEND starts from the default "delete".
        let append = [("cleanup.policy", OP_APPEND, Some("compact"))];
        assert_eq!(
            alter_incremental(&mut broker, version, "orders", &append),
            0
        );
        let policy = broker.topics["orders"].overrides["cleanup.policy"].clone();
        assert_eq!(policy, "delete,compact");
        let subtract = [("cleanup.policy", OP_SUBTRACT, Some("delete"))];
        assert_eq!(
            alter_incremental(&mut broker, version, "orders", &subtract),
            0
        );
        assert_eq!(
            broker.topics["orders"].overrides["cleanup.policy"],
            "compact"
        );
        assert_eq!(
            persisted_overrides(&broker, "orders"),
            pairs(&[("cleanup.policy", "compact"), ("segment.ms", "60000")])
        );
        // Subtracting the last item removes the override.
        let subtract = [("cleanup.policy", OP_SUBTRACT, Some("compact"))];
        assert_eq!(
            alter_incremental(&mut broker, version, "orders", &subtract),
            0
        );
        assert_eq!(
            overrides(&broker, "orders"),
            pairs(&[("segment.ms", "60000")])
        );
    }
}

#[test]
fn incremental_alter_configs_refuses_bad_operations() {
    let mut broker = broker();
    create(&mut broker, "orders", 1, &[]);
    let invalid_config = ErrorCode::InvalidConfig.code();
    let invalid_request = ErrorCode::InvalidRequest.code();
    let cases: [(&[Op], i16); 6] = [
        (&[("retention.ms", OP_APPEND, Some("5"))], invalid_config),
        (&[("retention.ms", OP_SUBTRACT, Some("5"))], invalid_config),
        (&[("retention.ms", OP_SET, Some("soon"))], invalid_config),
        (&[("no.such", OP_SET, Some("1"))], invalid_config),
        (&[("retention.ms", 9, Some("5"))], invalid_request),
        (&[("retention.ms", OP_SET, None)], invalid_request),
    ];
    for (ops, code) in cases {
        assert_eq!(
            alter_incremental(&mut broker, 1, "orders", ops),
            code,
            "{ops:?}"
        );
    }
    let twice = [
        ("retention.ms", OP_SET, Some("5")),
        ("retention.ms", OP_DELETE, None),
    ];
    assert_eq!(
        alter_incremental(&mut broker, 1, "orders", &twice),
        invalid_request
    );
    assert!(overrides(&broker, "orders").is_empty());
    let missing = [("retention.ms", OP_SET, Some("5"))];
    let code = alter_incremental(&mut broker, 0, "missing", &missing);
    assert_eq!(code, ErrorCode::UnknownTopicOrPartition.code());
}

// --- CreatePartitions ------------------------------------------------------------------

fn create_partitions(
    broker: &mut TestNode,
    version: i16,
    topic: &str,
    count: i32,
    assignments: Option<Vec<Vec<i32>>>,
    validate_only: bool,
) -> (i16, Option<String>) {
    let mut wanted = CreatePartitionsTopic::default();
    wanted.name = TopicName(StrBytes::from_string(topic.into()));
    wanted.count = count;
    wanted.assignments = assignments.map(|list| {
        list.into_iter()
            .map(|ids| {
                let mut assignment = CreatePartitionsAssignment::default();
                assignment.broker_ids = ids.into_iter().map(BrokerId).collect();
                assignment
            })
            .collect()
    });
    let mut request = CreatePartitionsRequest::default();
    request.topics = vec![wanted];
    request.timeout_ms = 1000;
    request.validate_only = validate_only;
    match call(broker, version, RequestKind::CreatePartitions(request)) {
        ResponseKind::CreatePartitions(r) => {
            let result = &r.results[0];
            (
                result.error_code,
                result.error_message.as_ref().map(|m| m.to_string()),
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn create_partitions_grows_the_topic_and_persists_it() {
    for version in version_range(ApiKey::CreatePartitions) {
        let mut broker = broker();
        create(&mut broker, "orders", 1, &[("segment.bytes", "4096")]);
        assert_eq!(
            create_partitions(&mut broker, version, "orders", 3, None, false),
            (0, None)
        );
        let topic = &broker.topics["orders"];
        assert_eq!(topic.partitions.count(), 3);
        assert_eq!(
            topic.partitions[2].log.config().segment_bytes,
            4096,
            "overrides apply"
        );
        let image = broker.image();
        assert_eq!(
            image.topic("orders").unwrap().partitions.len(),
            3,
            "recorded"
        );
        assert_eq!(
            produce(&mut broker, "orders", 2, 3),
            0,
            "the new partition takes writes"
        );
        let assigned = Some(vec![vec![1]]);
        let (code, _) = create_partitions(&mut broker, version, "orders", 4, assigned, false);
        assert_eq!(code, 0);
        assert_eq!(broker.topics["orders"].partitions.count(), 4);
    }
}

#[test]
fn create_partitions_refuses_bad_counts_and_assignments() {
    let mut broker = broker();
    create(&mut broker, "orders", 2, &[]);
    let invalid_partitions = ErrorCode::InvalidPartitions.code();
    let invalid_assignment = ErrorCode::InvalidReplicaAssignment.code();
    let cases = [
        (1, None, invalid_partitions),
        (2, None, invalid_partitions),
        (PARTITIONS_MAX + 1, None, invalid_partitions),
        (i32::MAX, None, invalid_partitions),
        (4, Some(vec![vec![1]]), invalid_assignment),
        (3, Some(vec![vec![2]]), invalid_assignment),
        (3, Some(vec![vec![1, 1]]), invalid_assignment),
    ];
    for (count, assignments, code) in cases {
        let (got, message) = create_partitions(&mut broker, 1, "orders", count, assignments, false);
        assert_eq!(got, code, "count {count}");
        assert!(message.is_some());
    }
    assert_eq!(
        create_partitions(&mut broker, 3, "orders", 5, None, true).0,
        0
    );
    assert_eq!(
        broker.topics["orders"].partitions.count(),
        2,
        "validate_only changes nothing"
    );
    let (code, _) = create_partitions(&mut broker, 0, "missing", 5, None, false);
    assert_eq!(code, ErrorCode::UnknownTopicOrPartition.code());
}

// --- DescribeCluster -------------------------------------------------------------------

#[test]
fn describe_cluster_reports_this_broker_as_the_cluster() {
    let config = BrokerConfig {
        node_id: 3,
        advertised_host: "brook.example".into(),
        advertised_port: 29092,
        ..BrokerConfig::default()
    };
    let mut broker = TestNode::open(&Dirs::default(), config, NOW).unwrap();
    for version in version_range(ApiKey::DescribeCluster) {
        let mut request = DescribeClusterRequest::default();
        request.include_cluster_authorized_operations = true;
        let ResponseKind::DescribeCluster(r) =
            call(&mut broker, version, RequestKind::DescribeCluster(request))
        else {
            panic!("wrong response");
        };
        assert_eq!(r.error_code, 0);
        assert_eq!(r.cluster_id.as_str(), broker.cluster_id());
        assert_eq!(r.controller_id, BrokerId(3));
        assert_eq!(r.brokers.len(), 1);
        assert_eq!(r.brokers[0].broker_id, BrokerId(3));
        assert_eq!(r.brokers[0].host.as_str(), "brook.example");
        assert_eq!(r.brokers[0].port, 29092);
        assert_eq!(r.endpoint_type, 1);
        assert!(
            r.cluster_authorized_operations & (1 << 8) != 0,
            "DESCRIBE allowed"
        );
    }
    let mut request = DescribeClusterRequest::default();
    request.endpoint_type = 2;
    let ResponseKind::DescribeCluster(r) =
        call(&mut broker, 1, RequestKind::DescribeCluster(request))
    else {
        panic!("wrong response");
    };
    assert_eq!(r.error_code, ErrorCode::InvalidRequest.code());
}

// --- DeleteRecords ---------------------------------------------------------------------

fn delete_records(
    broker: &mut TestNode,
    version: i16,
    partitions: &[(i32, i64)],
) -> Vec<(i16, i64)> {
    let mut topic = DeleteRecordsTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("orders"));
    topic.partitions = partitions
        .iter()
        .map(|&(index, offset)| {
            let mut partition = DeleteRecordsPartition::default();
            partition.partition_index = index;
            partition.offset = offset;
            partition
        })
        .collect();
    let mut request = DeleteRecordsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 1000;
    match call(broker, version, RequestKind::DeleteRecords(request)) {
        ResponseKind::DeleteRecords(r) => r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.low_watermark))
            .collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn delete_records_moves_the_log_start_up_to_the_high_watermark() {
    for version in version_range(ApiKey::DeleteRecords) {
        let mut broker = broker();
        create(&mut broker, "orders", 2, &[]);
        assert_eq!(produce(&mut broker, "orders", 0, 10), 0);
        assert_eq!(produce(&mut broker, "orders", 1, 5), 0);
        let out_of_range = ErrorCode::OffsetOutOfRange.code();
        let unknown = ErrorCode::UnknownTopicOrPartition.code();
        let answers = delete_records(&mut broker, version, &[(0, 4), (1, -1), (7, 1)]);
        assert_eq!(answers, [(0, 4), (0, 5), (unknown, -1)]);
        assert_eq!(
            broker.topics["orders"].partitions[0].log.log_start_offset(),
            Offset(4)
        );
        // Below the log start changes nothing (Kafka); beyond the high watermark is refused.
        let answers = delete_records(&mut broker, version, &[(0, 2), (0, 11), (0, -5)]);
        assert_eq!(answers, [(0, 4), (out_of_range, -1), (out_of_range, -1)]);
        assert_eq!(delete_records(&mut broker, version, &[(0, 10)]), [(0, 10)]);
    }
}

// --- OffsetForLeaderEpoch --------------------------------------------------------------

fn epoch_end(
    broker: &mut TestNode,
    version: i16,
    topic: &str,
    leader_epoch: i32,
    current_leader_epoch: i32,
) -> (i16, i32, i64) {
    let mut partition = OffsetForLeaderPartition::default();
    partition.partition = 0;
    partition.leader_epoch = leader_epoch;
    if version >= 2 {
        partition.current_leader_epoch = current_leader_epoch;
    }
    let mut wanted = OffsetForLeaderTopic::default();
    wanted.topic = TopicName(StrBytes::from_string(topic.into()));
    wanted.partitions = vec![partition];
    let mut request = OffsetForLeaderEpochRequest::default();
    request.topics = vec![wanted];
    if version >= 3 {
        request.replica_id = BrokerId(-1);
    }
    match call(broker, version, RequestKind::OffsetForLeaderEpoch(request)) {
        ResponseKind::OffsetForLeaderEpoch(r) => {
            let p = &r.topics[0].partitions[0];
            (p.error_code, p.leader_epoch, p.end_offset)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn offset_for_leader_epoch_answers_from_the_single_epoch() {
    let mut broker = broker();
    create(&mut broker, "orders", 1, &[]);
    assert_eq!(produce(&mut broker, "orders", 0, 6), 0);
    for version in version_range(ApiKey::OffsetForLeaderEpoch) {
        // v0 carries no leader epoch in the answer: it stays -1.
        let epoch = if version >= 1 { 0 } else { -1 };
        assert_eq!(
            epoch_end(&mut broker, version, "orders", 0, -1),
            (0, epoch, 6)
        );
        // KIP-101/279: no epoch at or above the requested one → UNDEFINED_EPOCH(_OFFSET).
        assert_eq!(
            epoch_end(&mut broker, version, "orders", 1, -1),
            (0, -1, -1)
        );
        assert_eq!(
            epoch_end(&mut broker, version, "orders", -1, -1),
            (0, -1, -1)
        );
        let unknown = ErrorCode::UnknownTopicOrPartition.code();
        assert_eq!(
            epoch_end(&mut broker, version, "missing", 0, -1),
            (unknown, -1, -1)
        );
    }
    // KIP-320 (v2+): a current_leader_epoch ahead of the broker's is UNKNOWN_LEADER_EPOCH.
    let fenced = ErrorCode::UnknownLeaderEpoch.code();
    assert_eq!(epoch_end(&mut broker, 4, "orders", 0, 1), (fenced, -1, -1));
    assert_eq!(epoch_end(&mut broker, 4, "orders", 0, 0), (0, 0, 6));
}

#[test]
fn offset_for_leader_epoch_fences_older_epochs_and_answers_earlier_ones() {
    let mut broker = broker();
    create(&mut broker, "orders", 1, &[]);
    assert_eq!(produce(&mut broker, "orders", 0, 4), 0);
    set_leader_epoch(&mut broker, 2);
    let fenced = ErrorCode::FencedLeaderEpoch.code();
    assert_eq!(epoch_end(&mut broker, 2, "orders", 2, 1), (fenced, -1, -1));
    // KIP-279: epoch 1 had no batches, so the answer is the largest epoch below it (0),
    // ending where the next one starts: the leader's epoch 2 starts at the log end (4),
    // where Kafka records it on becoming leader, though no batch carries it yet.
    assert_eq!(epoch_end(&mut broker, 2, "orders", 1, 2), (0, 0, 4));
    assert_eq!(epoch_end(&mut broker, 2, "orders", 2, 2), (0, 2, 4));
}

fn set_leader_epoch(broker: &mut TestNode, epoch: i32) {
    broker.topics.get_mut("orders").unwrap().partitions[0]
        .bump_leader_epoch(crate::types::LeaderEpoch(epoch), NOW)
        .unwrap();
}

/// KIP-101/KIP-279: answers come from the log's epoch history (`endOffsetFor`), kept in step
/// with DeleteRecords.
#[test]
fn offset_for_leader_epoch_answers_from_the_epoch_history() {
    let mut broker = broker();
    create(&mut broker, "orders", 1, &[]);
    assert_eq!(produce(&mut broker, "orders", 0, 3), 0); // epoch 0: offsets 0..3
    set_leader_epoch(&mut broker, 2);
    assert_eq!(produce(&mut broker, "orders", 0, 2), 0); // epoch 2: offsets 3..5
    set_leader_epoch(&mut broker, 5);
    assert_eq!(produce(&mut broker, "orders", 0, 4), 0); // epoch 5: offsets 5..9
    let entries: Vec<(i32, i64)> = broker.topics["orders"].partitions[0]
        .log
        .epoch_entries()
        .iter()
        .map(|e| (e.epoch.0, e.start_offset.0))
        .collect();
    assert_eq!(entries, [(0, 0), (2, 3), (5, 5)]);
    for version in version_range(ApiKey::OffsetForLeaderEpoch) {
        let answer = |broker: &mut TestNode, requested: i32| {
            let (code, epoch, end) = epoch_end(broker, version, "orders", requested, -1);
            assert_eq!(code, 0);
            (epoch, end)
        };
        // v0 carries no leader epoch in the answer: it stays -1.
        let epoch = |e: i32| if version >= 1 { e } else { -1 };
        assert_eq!(answer(&mut broker, 0), (epoch(0), 3));
        assert_eq!(
            answer(&mut broker, 1),
            (epoch(0), 3),
            "a gap: epoch 1 led nothing"
        );
        assert_eq!(answer(&mut broker, 2), (epoch(2), 5));
        assert_eq!(answer(&mut broker, 4), (epoch(2), 5));
        assert_eq!(
            answer(&mut broker, 5),
            (epoch(5), 9),
            "the latest ends at the log end"
        );
        assert_eq!(answer(&mut broker, 6), (epoch(-1), -1));
        assert_eq!(answer(&mut broker, -1), (epoch(-1), -1));
    }
    // DeleteRecords moves the history's start: epoch 0 is gone, 2 now starts at 4, and an
    // epoch before every known one ends where the first known one starts.
    assert_eq!(delete_records(&mut broker, 2, &[(0, 4)]), [(0, 4)]);
    assert_eq!(epoch_end(&mut broker, 4, "orders", 0, 5), (0, 0, 4));
    assert_eq!(epoch_end(&mut broker, 4, "orders", 2, 5), (0, 2, 5));
    // A new leader epoch without batches yet counts as starting at the log end.
    set_leader_epoch(&mut broker, 7);
    assert_eq!(epoch_end(&mut broker, 4, "orders", 5, 7), (0, 5, 9));
    assert_eq!(epoch_end(&mut broker, 4, "orders", 6, 7), (0, 5, 9));
    assert_eq!(epoch_end(&mut broker, 4, "orders", 7, 7), (0, 7, 9));
    assert_eq!(epoch_end(&mut broker, 4, "orders", 8, 7), (0, -1, -1));
}

#[test]
fn admin_apis_are_advertised() {
    let ResponseKind::ApiVersions(versions) = crate::broker::api_versions(ErrorCode::None) else {
        panic!("wrong response");
    };
    for (api, max) in [
        (ApiKey::DescribeConfigs, 4),
        (ApiKey::AlterConfigs, 2),
        (ApiKey::IncrementalAlterConfigs, 1),
        (ApiKey::CreatePartitions, 3),
        (ApiKey::DescribeCluster, 1),
        (ApiKey::DeleteRecords, 2),
        (ApiKey::OffsetForLeaderEpoch, 4),
    ] {
        let entry = versions.api_keys.iter().find(|v| v.api_key == api as i16);
        assert_eq!(
            entry.map(|v| (v.min_version, v.max_version)),
            Some((0, max)),
            "{api:?}"
        );
    }
}

// --- The internal topic ----------------------------------------------------------------

/// DeleteTopics of one topic, by name or (v6+) by id: (error code, message).
fn delete_topic(
    broker: &mut TestNode,
    version: i16,
    name: Option<&str>,
    id: uuid::Uuid,
) -> (i16, Option<String>) {
    let mut request = DeleteTopicsRequest::default();
    if version >= 6 {
        let mut topic = delete_topics_request::DeleteTopicState::default();
        topic.name = name.map(|n| TopicName(StrBytes::from_string(n.into())));
        topic.topic_id = id;
        request.topics = vec![topic];
    } else {
        request.topic_names = vec![TopicName(StrBytes::from_string(name.unwrap().into()))];
    }
    match call(broker, version, RequestKind::DeleteTopics(request)) {
        ResponseKind::DeleteTopics(r) => {
            assert_eq!(r.responses.len(), 1);
            let result = &r.responses[0];
            (
                result.error_code,
                result.error_message.as_ref().map(|m| m.to_string()),
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn internal_topic_cannot_be_deleted_grown_truncated_or_uncompacted() {
    let mut broker = broker();
    broker.create_offsets_topic(NOW);
    let partitions = broker.topics[OFFSETS_TOPIC].partitions.count();
    let id = broker.topics[OFFSETS_TOPIC].id;
    let denied = ErrorCode::TopicAuthorizationFailed.code();
    for version in version_range(ApiKey::DeleteTopics) {
        let (code, message) =
            delete_topic(&mut broker, version, Some(OFFSETS_TOPIC), uuid::Uuid::nil());
        assert_eq!(code, denied, "DeleteTopics v{version}");
        assert_eq!(
            message.is_some_and(|m| m.contains("internal topic")),
            version >= 5
        );
    }
    let (code, _) = delete_topic(&mut broker, 6, None, id);
    assert_eq!(code, denied, "by topic id");
    for version in version_range(ApiKey::CreatePartitions) {
        let (code, message) =
            create_partitions(&mut broker, version, OFFSETS_TOPIC, 60, None, false);
        assert_eq!(code, denied, "CreatePartitions v{version}");
        assert!(message.unwrap().contains("internal topic"));
    }
    assert_eq!(broker.topics[OFFSETS_TOPIC].partitions.count(), partitions);

    let mut partition = DeleteRecordsPartition::default();
    partition.offset = -1;
    let mut topic = DeleteRecordsTopic::default();
    topic.name = TopicName(StrBytes::from_static_str(OFFSETS_TOPIC));
    topic.partitions = vec![partition];
    let mut request = DeleteRecordsRequest::default();
    request.topics = vec![topic];
    for version in version_range(ApiKey::DeleteRecords) {
        let ResponseKind::DeleteRecords(r) = call(
            &mut broker,
            version,
            RequestKind::DeleteRecords(request.clone()),
        ) else {
            panic!()
        };
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            ErrorCode::InvalidTopicException.code(),
            "DeleteRecords v{version}"
        );
    }

    // Configs may change, but compaction, and only compaction, stays.
    let policy = ErrorCode::PolicyViolation.code();
    for version in version_range(ApiKey::AlterConfigs) {
        let uncompacted = [("cleanup.policy", Some("delete"))];
        let (code, message) = alter(
            &mut broker,
            version,
            RESOURCE_TOPIC,
            OFFSETS_TOPIC,
            &uncompacted,
            false,
        );
        assert_eq!(code, policy, "AlterConfigs v{version}");
        assert!(message.unwrap().contains("cleanup.policy"));
        let dropped = [("flush.messages", Some("1"))];
        let (code, _) = alter(
            &mut broker,
            version,
            RESOURCE_TOPIC,
            OFFSETS_TOPIC,
            &dropped,
            false,
        );
        assert_eq!(code, policy, "leaving cleanup.policy out resets it");
    }
    for version in version_range(ApiKey::IncrementalAlterConfigs) {
        let refused: [&[Op]; 3] = [
            &[("cleanup.policy", OP_SET, Some("compact,delete"))],
            &[("cleanup.policy", OP_APPEND, Some("delete"))],
            &[("cleanup.policy", OP_DELETE, None)],
        ];
        for ops in refused {
            let code = alter_incremental(&mut broker, version, OFFSETS_TOPIC, ops);
            assert_eq!(code, policy, "IncrementalAlterConfigs v{version} {ops:?}");
        }
        let flush = [("flush.messages", OP_SET, Some("1"))];
        assert_eq!(
            alter_incremental(&mut broker, version, OFFSETS_TOPIC, &flush),
            0
        );
    }
    let overrides = overrides(&broker, OFFSETS_TOPIC);
    assert!(overrides.contains(&("cleanup.policy".to_string(), "compact".to_string())));
    assert!(overrides.contains(&("flush.messages".to_string(), "1".to_string())));
}

/// One listed partition: (topic, partition, leader, error).
type Listed = (String, i32, i32, i16);

/// DescribeTopicPartitions of `names` from `cursor`, `limit` partitions a page: the
/// partitions listed and the next cursor.
fn describe_partitions(
    broker: &mut TestNode,
    names: &[&str],
    limit: i32,
    cursor: Option<(&str, i32)>,
) -> (Vec<Listed>, Option<(String, i32)>) {
    let mut request = DescribeTopicPartitionsRequest::default();
    request.topics = names
        .iter()
        .map(|n| {
            let mut t = describe_topic_partitions_request::TopicRequest::default();
            t.name = TopicName(StrBytes::from_string(n.to_string()));
            t
        })
        .collect();
    request.response_partition_limit = limit;
    request.cursor = cursor.map(|(name, partition)| {
        let mut c = describe_topic_partitions_request::Cursor::default();
        c.topic_name = TopicName(StrBytes::from_string(name.into()));
        c.partition_index = partition;
        c
    });
    let ResponseKind::DescribeTopicPartitions(response) =
        call(broker, 0, RequestKind::DescribeTopicPartitions(request))
    else {
        panic!()
    };
    let mut listed = Vec::new();
    for t in &response.topics {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        if t.error_code != 0 {
            listed.push((name.clone(), -1, -1, t.error_code));
        }
        for p in &t.partitions {
            assert_eq!(p.eligible_leader_replicas, Some(Vec::new()));
            listed.push((name.clone(), p.partition_index, p.leader_id.0, p.error_code));
        }
    }
    let next = response
        .next_cursor
        .map(|c| (c.topic_name.0.to_string(), c.partition_index));
    (listed, next)
}

#[test]
fn describe_topic_partitions_pages_sorted_topics_by_cursor() {
    let mut b = broker();
    create(&mut b, "b-topic", 2, &[]);
    create(&mut b, "a-topic", 3, &[]);
    let (page, next) = describe_partitions(&mut b, &[], 4, None);
    let names: Vec<(String, i32)> = page.iter().map(|(n, p, ..)| (n.clone(), *p)).collect();
    let expected = [
        ("a-topic", 0),
        ("a-topic", 1),
        ("a-topic", 2),
        ("b-topic", 0),
    ];
    assert_eq!(names, expected.map(|(n, p)| (n.to_string(), p)));
    assert!(page
        .iter()
        .all(|&(_, _, leader, code)| leader == 1 && code == 0));
    assert_eq!(next, Some(("b-topic".to_string(), 1)));
    let (rest, next) = describe_partitions(&mut b, &[], 4, Some(("b-topic", 1)));
    assert_eq!(rest, vec![("b-topic".to_string(), 1, 1, 0)]);
    assert_eq!(next, None);
    // Named topics only; an unknown one is refused by name and not created.
    let (named, _) = describe_partitions(&mut b, &["b-topic", "nope"], 10, None);
    let unknown = ErrorCode::UnknownTopicOrPartition.code();
    assert_eq!(
        named,
        vec![
            ("b-topic".to_string(), 0, 1, 0),
            ("b-topic".to_string(), 1, 1, 0),
            ("nope".to_string(), -1, -1, unknown)
        ]
    );
    assert!(!b.topic_names().contains(&"nope".to_string()));
}

/// A single node is a cluster of one: its only replica leads already, and DescribeQuorum
/// names it the quorum's leader and only voter.
#[test]
fn one_node_elections_and_quorum_answer_as_a_cluster_of_one() {
    let mut b = broker();
    create(&mut b, "orders", 1, &[]);
    let mut topic = elect_leaders_request::TopicPartitions::default();
    topic.topic = TopicName(StrBytes::from_static_str("orders"));
    topic.partitions = vec![0, 4];
    let mut request = ElectLeadersRequest::default();
    request.topic_partitions = Some(vec![topic]);
    let ResponseKind::ElectLeaders(response) = call(&mut b, 2, RequestKind::ElectLeaders(request))
    else {
        panic!()
    };
    let mut codes: Vec<(i32, i16)> = response.replica_election_results[0]
        .partition_result
        .iter()
        .map(|r| (r.partition_id, r.error_code))
        .collect();
    codes.sort();
    let expected = vec![
        (0, ErrorCode::ElectionNotNeeded.code()),
        (4, ErrorCode::UnknownTopicOrPartition.code()),
    ];
    assert_eq!(codes, expected);
    let mut partition = describe_quorum_request::PartitionData::default();
    partition.partition_index = 0;
    let mut data = describe_quorum_request::TopicData::default();
    data.topic_name = TopicName(StrBytes::from_static_str("__cluster_metadata"));
    data.partitions = vec![partition];
    let mut request = DescribeQuorumRequest::default();
    request.topics = vec![data];
    let ResponseKind::DescribeQuorum(response) =
        call(&mut b, 2, RequestKind::DescribeQuorum(request))
    else {
        panic!()
    };
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(p.leader_id.0, 1);
    let voters: Vec<i32> = p.current_voters.iter().map(|v| v.replica_id.0).collect();
    assert_eq!(voters, vec![1]);
}

/// A one-node cluster holds every replica on its one broker: a target of itself starts no
/// move, a target naming an unregistered broker or a cancellation is refused with its
/// reason, and nothing is ever listed as moving.
#[test]
fn reassignments_on_one_node_take_only_itself_and_list_nothing() {
    use kafka_protocol::messages::alter_partition_reassignments_request::*;
    let mut broker = broker();
    create(&mut broker, "orders", 1, &[]);
    let own = broker.broker_config().node_id;
    let cases = [
        ("orders", Some(vec![own]), ErrorCode::None),
        (
            "orders",
            Some(vec![own, own + 1]),
            ErrorCode::InvalidReplicaAssignment,
        ),
        ("orders", None, ErrorCode::NoReassignmentInProgress),
        (
            "missing",
            Some(vec![own]),
            ErrorCode::UnknownTopicOrPartition,
        ),
    ];
    for (name, target, expected) in cases {
        let mut partition = ReassignablePartition::default();
        partition.replicas = target
            .clone()
            .map(|t| t.into_iter().map(BrokerId).collect());
        let mut topic = ReassignableTopic::default();
        topic.name = TopicName(StrBytes::from_static_str(name));
        topic.partitions = vec![partition];
        let mut request = AlterPartitionReassignmentsRequest::default();
        request.topics = vec![topic];
        let ResponseKind::AlterPartitionReassignments(r) = call(
            &mut broker,
            0,
            RequestKind::AlterPartitionReassignments(request),
        ) else {
            panic!()
        };
        let result = &r.responses[0].partitions[0];
        assert_eq!(result.error_code, expected.code(), "{name} {target:?}");
        assert_eq!(result.error_message.is_some(), expected != ErrorCode::None);
    }
    let request = ListPartitionReassignmentsRequest::default();
    let ResponseKind::ListPartitionReassignments(r) = call(
        &mut broker,
        0,
        RequestKind::ListPartitionReassignments(request),
    ) else {
        panic!()
    };
    assert!(r.topics.is_empty());
}

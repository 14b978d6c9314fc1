//! Unit tests of the consumer's record reading and request building.

use super::*;
use brook_core::record::{BatchBuilder, Record};
use brook_core::{Offset, ProducerEpoch, ProducerId};
use kafka_protocol::protocol::Encodable;

fn tp() -> TopicPartition {
    TopicPartition::new("t", 0)
}

fn batch(base: i64, values: &[&str]) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Offset(base));
    for (i, value) in values.iter().enumerate() {
        builder.push(&Record {
            timestamp: 100 + i as i64,
            key: Some(b"k".to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![Header {
                key: "h".into(),
                value: Some(b"v".to_vec()),
            }],
        });
    }
    builder.build()
}

fn context<'a>(
    tp: &'a TopicPartition,
    from: i64,
    aborted: &'a [AbortedTransaction],
) -> ReadContext<'a> {
    ReadContext {
        tp,
        from,
        read_committed: !aborted.is_empty(),
        aborted,
        decompressed_bytes_max: 1 << 20,
    }
}

fn values(records: &[ConsumerRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().expect("value")).expect("utf8"))
        .collect()
}

#[test]
fn records_before_the_fetch_offset_are_skipped_and_a_partial_tail_is_left() {
    let tp = tp();
    let mut bytes = batch(0, &["a", "b", "c"]);
    bytes.extend(batch(3, &["d", "e"]));
    let partial = batch(5, &["f"]);
    bytes.extend(&partial[..partial.len() - 3]);
    let (records, next) = context(&tp, 1, &[]).records(&bytes).expect("valid");
    assert_eq!(values(&records), vec!["b", "c", "d", "e"]);
    assert_eq!(records[0].offset, 1);
    assert_eq!(records[0].timestamp, 101);
    assert_eq!(records[0].headers[0].key, "h");
    assert_eq!(next, 5, "the partial batch is fetched again");
}

#[test]
fn a_flipped_bit_fails_the_crc_check() {
    let tp = tp();
    let mut bytes = batch(0, &["a", "b"]);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let err = context(&tp, 0, &[]).records(&bytes).expect_err("corrupt");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn control_batches_are_skipped_and_aborted_transactions_hidden_in_read_committed() {
    let tp = tp();
    let producer = ProducerId(7);
    // Offsets 0-1: an aborted transaction of producer 7; 2: its ABORT marker; 3: plain data.
    let mut txn = BatchBuilder::new(Offset(0))
        .producer(producer, ProducerEpoch(0), 0)
        .attributes(0x10);
    for value in ["x", "y"] {
        txn.push(&Record {
            timestamp: 1,
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers: Vec::new(),
        });
    }
    let mut bytes = txn.build();
    let marker = ControlMarker {
        producer_id: producer,
        producer_epoch: ProducerEpoch(0),
        control_type: ControlType::Abort,
        coordinator_epoch: 0,
        timestamp: 1,
        token: -1,
    };
    bytes.extend(marker.encode(Offset(2)));
    bytes.extend(batch(3, &["z"]));
    let aborted = [AbortedTransaction::default()
        .with_producer_id(kafka_protocol::messages::ProducerId(7))
        .with_first_offset(0)];
    let (committed, next) = context(&tp, 0, &aborted).records(&bytes).expect("valid");
    assert_eq!(values(&committed), vec!["z"]);
    assert_eq!(next, 4);
    let (all, _) = context(&tp, 0, &[]).records(&bytes).expect("valid");
    assert_eq!(
        values(&all),
        vec!["x", "y", "z"],
        "the marker is never a record"
    );
}

#[test]
fn list_offsets_request_encodes_in_every_version() {
    for version in 0..=7 {
        for isolation in [0, 1] {
            let request = list_offsets_request(version, &tp(), -2, isolation);
            let mut buf = bytes::BytesMut::new();
            request
                .encode(&mut buf, version)
                .unwrap_or_else(|e| panic!("v{version}: {e}"));
        }
    }
}

#[test]
fn fetch_request_encodes_in_every_version_used() {
    let mut config = ConsumerConfig::new("b:1");
    config.isolation_level = IsolationLevel::ReadCommitted;
    let consumer = Consumer::new(config).expect("consumer");
    let request = consumer.fetch_request(&[(tp(), 5)], Duration::from_millis(100));
    for version in FETCH_VERSIONS.0..=FETCH_VERSIONS.1 {
        let mut buf = bytes::BytesMut::new();
        request
            .encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("v{version}: {e}"));
    }
}

#[test]
fn assignment_positions_seek_and_pause() {
    let mut consumer = Consumer::new(ConsumerConfig::new("b:1")).expect("consumer");
    let a = TopicPartition::new("t", 0);
    let b = TopicPartition::new("t", 1);
    consumer.assign(vec![a.clone(), b.clone()]).expect("assign");
    consumer.seek(&a, 42).expect("assigned");
    assert!(consumer.seek(&TopicPartition::new("u", 0), 1).is_err());
    assert!(consumer.seek(&a, -1).is_err());
    consumer.pause(std::slice::from_ref(&b)).expect("assigned");
    assert_eq!(consumer.paused(), vec![b.clone()]);
    consumer.assign(vec![a.clone()]).expect("assign");
    assert_eq!(consumer.assignment(), vec![a.clone()]);
    assert_eq!(
        consumer.assignment[&a].position(),
        Some(42),
        "kept across assign"
    );
    consumer.resume(&[a]).expect("assigned");
    assert!(consumer.paused().is_empty());
}

#[test]
fn group_properties_use_kafka_names_and_are_validated() {
    let mut config = ConsumerConfig::new("b:1");
    assert_eq!(config.session_timeout_ms, 45_000, "the Java default");
    assert!(config.enable_auto_commit);
    assert_eq!(config.partition_assignment_strategy, vec![Assignor::Range]);
    config.set("group.id", "g").expect("group.id");
    config.set("enable.auto.commit", "false").expect("bool");
    config
        .set("partition.assignment.strategy", "roundrobin, range")
        .expect("list");
    assert_eq!(
        config.partition_assignment_strategy,
        vec![Assignor::RoundRobin, Assignor::Range]
    );
    assert!(config
        .set("partition.assignment.strategy", "sticky")
        .is_err());
    assert!(config.set("enable.auto.commit", "yes").is_err());
    assert!(Consumer::new(config.clone()).is_ok());

    let mut short = config.clone();
    short.set("session.timeout.ms", "5999").expect("number");
    assert!(
        matches!(Consumer::new(short), Err(Error::Config(_))),
        "broker minimum"
    );
    let mut slow_heartbeat = config.clone();
    slow_heartbeat.heartbeat_interval_ms = slow_heartbeat.session_timeout_ms;
    assert!(Consumer::new(slow_heartbeat).is_err());

    let mut no_group = Consumer::new(ConsumerConfig::new("b:1")).expect("consumer");
    assert!(matches!(no_group.subscribe(&["t"]), Err(Error::Config(_))));
    let mut member = Consumer::new(config).expect("consumer");
    member.assign(vec![tp()]).expect("assign");
    assert!(
        matches!(member.subscribe(&["t"]), Err(Error::InvalidState(_))),
        "subscribe over a manual assignment"
    );
    member.assign(Vec::new()).expect("assign");
    member.subscribe(&["t", "t"]).expect("subscribe");
    assert_eq!(member.subscription(), vec!["t".to_string()]);
    assert!(
        member.assign(vec![tp()]).is_err(),
        "assign while subscribed"
    );
    assert!(member.subscribe(&[]).is_err());
}

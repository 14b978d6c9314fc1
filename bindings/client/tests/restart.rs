//! Retries across a broker crash: the broker is SIGKILLed while an idempotent producer is
//! sending and restarted on the same port and data directory. Every record must be
//! delivered exactly once, in send order per partition.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use brook_client::{
    Admin, AdminConfig, Consumer, ConsumerConfig, NewTopic, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicPartition,
};
use common::Server;

const RECORDS: usize = 4_000;
const PARTITIONS: i32 = 2;

#[tokio::test(flavor = "multi_thread")]
async fn producer_retries_survive_a_broker_restart_without_duplicates() {
    let mut server = Server::start();
    let admin = Admin::new(AdminConfig::new(&server.addr)).expect("admin");
    admin
        .create_topics(&[NewTopic::new("crash", PARTITIONS, 1)])
        .await
        .expect("create topic");

    let mut config = ProducerConfig::new(&server.addr);
    config.retry_backoff_ms = 50;
    config.request_timeout_ms = 5_000;
    config.delivery_timeout_ms = 60_000;
    config.batch_size = 16 * 1024;
    config.linger_ms = 2;
    let producer = Producer::new(config).expect("producer");

    // Three crashes, each with batches in flight: at a quarter, half and three quarters.
    let crash_at = [RECORDS / 4, RECORDS / 2, 3 * RECORDS / 4];
    let mut pending = Vec::with_capacity(RECORDS);
    let mut down_since = None;
    for i in 0..RECORDS {
        // About 1 KiB per record, so requests are big enough to be cut off mid-flight.
        let value = format!("{i}:{}", "x".repeat(1_000));
        let record = ProducerRecord::new("crash", value).key(format!("k{}", i % 13));
        pending.push(producer.send(record).await.expect("send"));
        if crash_at.contains(&i) {
            server.kill();
            down_since = Some(i);
        }
        if down_since.is_some_and(|at| i == at + 200) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            server.restart();
            down_since = None;
        }
    }
    let mut sent: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for (i, delivery) in pending.into_iter().enumerate() {
        let metadata = delivery.await.unwrap_or_else(|e| panic!("record {i}: {e}"));
        sent.entry(metadata.partition)
            .or_default()
            .push((metadata.offset, format!("{i}:{}", "x".repeat(1_000))));
    }

    let mut config = ConsumerConfig::new(&server.addr);
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(config).expect("consumer");
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new("crash", p))
        .collect();
    consumer.assign(partitions.clone()).expect("assign");
    let ends = consumer
        .end_offsets(&partitions)
        .await
        .expect("end offsets");
    let total: i64 = ends.values().sum();
    assert_eq!(total, RECORDS as i64, "no duplicates in the log: {ends:?}");

    let mut read: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut count = 0;
    while count < RECORDS {
        assert!(Instant::now() < deadline, "read only {count} records");
        for record in consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll")
        {
            let value = String::from_utf8(record.value.expect("value")).expect("utf8");
            assert!(seen.insert(value.clone()), "record {value} read twice");
            read.entry(record.partition)
                .or_default()
                .push((record.offset, value));
            count += 1;
        }
    }
    assert_eq!(
        read, sent,
        "each partition holds exactly what was acknowledged, in order"
    );
}

/// With the broker gone for good, a record fails after `delivery.timeout.ms` instead of
/// waiting forever, and `flush` returns.
#[tokio::test(flavor = "multi_thread")]
async fn delivery_times_out_when_the_broker_stays_down() {
    let mut server = Server::start();
    let admin = Admin::new(AdminConfig::new(&server.addr)).expect("admin");
    admin
        .create_topics(&[NewTopic::new("gone", 1, 1)])
        .await
        .expect("create topic");
    let mut config = ProducerConfig::new(&server.addr);
    config.delivery_timeout_ms = 500;
    config.retry_backoff_ms = 20;
    let producer = Producer::new(config).expect("producer");
    let first = producer
        .send(ProducerRecord::new("gone", "a"))
        .await
        .expect("send");
    first.await.expect("delivered while the broker is up");
    server.kill();
    let started = Instant::now();
    let second = producer
        .send(ProducerRecord::new("gone", "b"))
        .await
        .expect("send");
    let err = second.await.expect_err("the broker is down");
    assert!(err.is_retriable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    producer
        .flush()
        .await
        .expect("flush returns once nothing is pending");
}

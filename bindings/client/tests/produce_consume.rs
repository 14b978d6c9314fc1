//! Producer and consumer against a real `brook server`: 10,000 keyed records per codec with
//! idempotence on, read back exactly and in order; keys land where the Java client's
//! partitioner puts them.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use brook_client::{
    partition_for_key, Admin, AdminConfig, Compression, Consumer, ConsumerConfig, Header, NewTopic,
    OffsetReset, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use common::Server;

const RECORDS: usize = 10_000;
const PARTITIONS: i32 = 3;

/// A record as the test expects to read it back: (offset, key, value, headers).
type Expected = (i64, Vec<u8>, Vec<u8>, Vec<Header>);

async fn create_topic(addr: &str, topic: &str, partitions: i32) {
    let admin = Admin::new(AdminConfig::new(addr)).expect("admin");
    admin
        .create_topics(&[NewTopic::new(topic, partitions, 1)])
        .await
        .expect("create topic");
}

/// Reads every assigned partition from the start until `total` records came.
async fn read_all(
    addr: &str,
    topic: &str,
    partitions: i32,
    total: usize,
) -> Vec<brook_client::ConsumerRecord> {
    let mut config = ConsumerConfig::new(addr);
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(config).expect("consumer");
    consumer
        .assign(
            (0..partitions)
                .map(|p| TopicPartition::new(topic, p))
                .collect(),
        )
        .expect("assign");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut out = Vec::new();
    while out.len() < total {
        assert!(
            Instant::now() < deadline,
            "read only {} of {total}",
            out.len()
        );
        out.extend(
            consumer
                .poll(Duration::from_millis(500))
                .await
                .expect("poll"),
        );
    }
    // Nothing more than what was written.
    let extra = consumer
        .poll(Duration::from_millis(300))
        .await
        .expect("poll");
    assert!(extra.is_empty(), "{} unexpected records", extra.len());
    out
}

async fn round_trip(codec: Compression, name: &str) {
    let server = Server::start();
    let topic = format!("codec-{name}");
    create_topic(&server.addr, &topic, PARTITIONS).await;

    let mut config = ProducerConfig::new(&server.addr);
    config.compression = codec;
    config.linger_ms = 5;
    assert!(config.enable_idempotence, "idempotence is the default");
    let producer = Producer::new(config).expect("producer");
    let mut pending = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let key = format!("key-{}", i % 257);
        let record = ProducerRecord::new(&topic, format!("value-{i}-{name}"))
            .key(key.clone())
            .header("i", i.to_string());
        pending.push((key, i, producer.send(record).await.expect("send")));
    }
    producer.flush().await.expect("flush");
    let mut expected: BTreeMap<i32, Vec<Expected>> = BTreeMap::new();
    for (key, i, delivery) in pending {
        let metadata = delivery.await.expect("delivered");
        assert_eq!(metadata.topic, topic);
        assert_eq!(
            metadata.partition,
            partition_for_key(key.as_bytes(), PARTITIONS),
            "the Java client's partition for {key}"
        );
        assert!(metadata.timestamp > 0);
        expected.entry(metadata.partition).or_default().push((
            metadata.offset,
            key.into_bytes(),
            format!("value-{i}-{name}").into_bytes(),
            vec![Header {
                key: "i".into(),
                value: Some(i.to_string().into_bytes()),
            }],
        ));
    }
    for (partition, records) in &expected {
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        let contiguous: Vec<i64> = (0..records.len() as i64).collect();
        assert_eq!(
            offsets, contiguous,
            "partition {partition}: offsets follow send order"
        );
    }

    let read = read_all(&server.addr, &topic, PARTITIONS, RECORDS).await;
    let mut actual: BTreeMap<i32, Vec<Expected>> = BTreeMap::new();
    for record in read {
        assert_eq!(record.topic, topic);
        actual.entry(record.partition).or_default().push((
            record.offset,
            record.key.expect("key"),
            record.value.expect("value"),
            record.headers,
        ));
    }
    assert_eq!(actual.len(), expected.len());
    for (partition, records) in &expected {
        assert!(
            actual[partition] == *records,
            "partition {partition} reads back exactly what was written ({name})"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn produce_consume_round_trip_uncompressed() {
    round_trip(Compression::None, "none").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn produce_consume_round_trip_gzip() {
    round_trip(Compression::Gzip, "gzip").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn produce_consume_round_trip_snappy() {
    round_trip(Compression::Snappy, "snappy").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn produce_consume_round_trip_lz4() {
    round_trip(Compression::Lz4, "lz4").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn produce_consume_round_trip_zstd() {
    round_trip(Compression::Zstd, "zstd").await;
}

/// Kafka's murmur2 test vectors (UtilsTest.testMurmur2), checked end to end: the broker
/// reports each key in the partition `(murmur2 & 0x7fffffff) % partitions`.
#[tokio::test(flavor = "multi_thread")]
async fn partitioner_keys_land_where_the_java_client_puts_them() {
    let server = Server::start();
    let partitions = 7;
    create_topic(&server.addr, "keys", partitions).await;
    let producer = Producer::new(ProducerConfig::new(&server.addr)).expect("producer");
    let vectors: [(&str, i32); 6] = [
        ("21", -973_932_308),
        ("foobar", -790_332_482),
        ("a-little-bit-long-string", -985_981_536),
        ("a-little-bit-longer-string", -1_486_304_829),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        ("abc", 479_470_107),
    ];
    for (key, hash) in vectors {
        let record = ProducerRecord::new("keys", "v").key(key);
        let metadata = producer
            .send(record)
            .await
            .expect("send")
            .await
            .expect("delivered");
        assert_eq!(
            metadata.partition,
            (hash & 0x7fff_ffff) % partitions,
            "key {key}"
        );
    }
}

/// Keyless records stick to a partition for about a batch, then move on: all partitions
/// get some, and every record is delivered once.
#[tokio::test(flavor = "multi_thread")]
async fn keyless_records_spread_over_partitions() {
    let server = Server::start();
    create_topic(&server.addr, "keyless", 4).await;
    let mut config = ProducerConfig::new(&server.addr);
    config.batch_size = 1024;
    let producer = Producer::new(config).expect("producer");
    let mut pending = Vec::new();
    for i in 0..2_000 {
        let record = ProducerRecord::new("keyless", format!("{i:0100}"));
        pending.push(producer.send(record).await.expect("send"));
    }
    let mut per_partition = BTreeMap::new();
    for delivery in pending {
        *per_partition
            .entry(delivery.await.expect("delivered").partition)
            .or_insert(0) += 1;
    }
    assert_eq!(per_partition.len(), 4, "{per_partition:?}");
    let read = read_all(&server.addr, "keyless", 4, 2_000).await;
    assert_eq!(read.len(), 2_000);
}

//! Consumer positions against a real `brook server`: offset reset, seek, position,
//! pause/resume, empty polls; and the blocking facade end to end.

mod common;

use std::time::{Duration, Instant};

use brook_client::{
    blocking, Acks, Admin, AdminConfig, Consumer, ConsumerConfig, ConsumerRecord, ErrorCode,
    Header, NewTopic, OffsetReset, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use common::Server;

async fn setup(partitions: i32, records_per_partition: i64) -> Server {
    let server = Server::start();
    let admin = Admin::new(AdminConfig::new(&server.addr)).expect("admin");
    admin
        .create_topics(&[NewTopic::new("t", partitions, 1)])
        .await
        .expect("create");
    let producer = Producer::new(ProducerConfig::new(&server.addr)).expect("producer");
    for partition in 0..partitions {
        for i in 0..records_per_partition {
            let record = ProducerRecord::new("t", format!("{partition}/{i}")).partition(partition);
            producer.send(record).await.expect("send");
        }
    }
    producer.flush().await.expect("flush");
    server
}

async fn poll_until(consumer: &mut Consumer, count: usize) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(Instant::now() < deadline, "only {} of {count}", out.len());
        out.extend(
            consumer
                .poll(Duration::from_millis(200))
                .await
                .expect("poll"),
        );
    }
    out
}

fn consumer(addr: &str, reset: OffsetReset) -> Consumer {
    let mut config = ConsumerConfig::new(addr);
    config.auto_offset_reset = reset;
    config.poll_records_max = 7;
    Consumer::new(config).expect("consumer")
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_offset_reset_seek_and_position() {
    let server = setup(1, 20).await;
    let tp = TopicPartition::new("t", 0);

    let mut latest = consumer(&server.addr, OffsetReset::Latest);
    latest.assign(vec![tp.clone()]).expect("assign");
    assert_eq!(latest.position(&tp).await.expect("position"), 20);
    assert!(latest
        .poll(Duration::from_millis(200))
        .await
        .expect("poll")
        .is_empty());

    let mut none = consumer(&server.addr, OffsetReset::None);
    none.assign(vec![tp.clone()]).expect("assign");
    let err = none
        .poll(Duration::from_millis(100))
        .await
        .expect_err("no reset policy");
    assert_eq!(err.code(), ErrorCode::OffsetOutOfRange);

    let mut earliest = consumer(&server.addr, OffsetReset::Earliest);
    earliest.assign(vec![tp.clone()]).expect("assign");
    let first = earliest.poll(Duration::from_secs(5)).await.expect("poll");
    assert_eq!(first.len(), 7, "max.poll.records");
    assert_eq!(first[0].offset, 0);
    assert_eq!(earliest.position(&tp).await.expect("position"), 7);

    earliest.seek(&tp, 15).expect("seek");
    assert_eq!(earliest.position(&tp).await.expect("position"), 15);
    let rest = poll_until(&mut earliest, 5).await;
    let offsets: Vec<i64> = rest.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![15, 16, 17, 18, 19]);
    assert_eq!(rest[0].value.as_deref(), Some(&b"0/15"[..]));

    // Past the end: OFFSET_OUT_OF_RANGE resets by policy (earliest here).
    earliest.seek(&tp, 1_000).expect("seek");
    let again = poll_until(&mut earliest, 1).await;
    assert_eq!(again[0].offset, 0);

    earliest
        .seek_to_end(std::slice::from_ref(&tp))
        .await
        .expect("seek to end");
    assert_eq!(earliest.position(&tp).await.expect("position"), 20);
    earliest
        .seek_to_beginning(std::slice::from_ref(&tp))
        .await
        .expect("seek to start");
    assert_eq!(earliest.position(&tp).await.expect("position"), 0);
    let ends = earliest
        .end_offsets(std::slice::from_ref(&tp))
        .await
        .expect("end offsets");
    assert_eq!(ends[&tp], 20);
    assert_eq!(
        earliest
            .beginning_offsets(std::slice::from_ref(&tp))
            .await
            .expect("start")[&tp],
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_pause_and_resume() {
    let server = setup(2, 5).await;
    let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
    let mut consumer = consumer(&server.addr, OffsetReset::Earliest);
    consumer.assign(vec![a.clone(), b.clone()]).expect("assign");
    consumer.pause(std::slice::from_ref(&b)).expect("pause");
    let records = poll_until(&mut consumer, 5).await;
    assert!(records.iter().all(|r| r.partition == 0));
    assert!(consumer
        .poll(Duration::from_millis(300))
        .await
        .expect("poll")
        .is_empty());
    assert_eq!(
        consumer.position(&b).await.expect("position"),
        0,
        "paused, not moved"
    );
    consumer.resume(std::slice::from_ref(&b)).expect("resume");
    let records = poll_until(&mut consumer, 5).await;
    assert!(records.iter().all(|r| r.partition == 1));
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread")]
async fn producer_settings_and_refusals() {
    let server = setup(1, 0).await;
    // acks=1 and acks=0 without idempotence; null key and value; a null header value.
    let mut config = ProducerConfig::new(&server.addr);
    config.enable_idempotence = false;
    config.acks = Acks::Leader;
    let leader = Producer::new(config.clone()).expect("producer");
    // A minute ago: an explicit create time (an ancient one would fall to retention at once).
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
        - 60_000;
    let mut record = ProducerRecord::new("t", "v").timestamp(created);
    record.value = None;
    record.headers.push(Header {
        key: "null".into(),
        value: None,
    });
    let md = leader
        .send(record)
        .await
        .expect("send")
        .await
        .expect("acked");
    assert_eq!((md.offset, md.timestamp), (0, created));
    config.acks = Acks::None;
    let fire = Producer::new(config).expect("producer");
    let md = fire
        .send(ProducerRecord::new("t", "x"))
        .await
        .expect("send")
        .await
        .expect("sent");
    assert_eq!(md.offset, -1, "acks=0 learns no offset");
    fire.flush().await.expect("flush");

    let mut consumer = consumer(&server.addr, OffsetReset::Earliest);
    consumer
        .assign(vec![TopicPartition::new("t", 0)])
        .expect("assign");
    let read = poll_until(&mut consumer, 2).await;
    assert_eq!((read[0].key.as_ref(), read[0].value.as_ref()), (None, None));
    assert_eq!(
        read[0].headers,
        vec![Header {
            key: "null".into(),
            value: None
        }]
    );
    assert_eq!(read[0].timestamp, created);
    assert_eq!(read[1].value.as_deref(), Some(&b"x"[..]));

    let mut config = ProducerConfig::new(&server.addr);
    config.max_block_ms = 300;
    config.record_bytes_max = 100;
    let producer = Producer::new(config).expect("producer");
    let big = producer
        .send(ProducerRecord::new("t", vec![0; 200]))
        .await
        .expect_err("too big");
    assert_eq!(big.code(), ErrorCode::MessageTooLarge);
    let missing = producer
        .send(ProducerRecord::new("nope", "v"))
        .await
        .expect_err("no topic");
    assert_eq!(missing.code(), ErrorCode::RequestTimedOut);
    let bad = producer
        .send(ProducerRecord::new("t", "v").partition(3))
        .await
        .expect_err("p3");
    assert_eq!(bad.code(), ErrorCode::UnknownTopicOrPartition);
}

#[test]
fn blocking_facade_round_trip() {
    let server = Server::start();
    let admin = blocking::Admin::new(AdminConfig::new(&server.addr)).expect("admin");
    admin
        .create_topics(&[NewTopic::new("b", 2, 1)])
        .expect("create");
    assert_eq!(
        admin
            .describe_topic("b")
            .expect("describe")
            .partitions
            .len(),
        2
    );

    let producer = blocking::Producer::new(ProducerConfig::new(&server.addr)).expect("producer");
    let deliveries: Vec<_> = (0..100)
        .map(|i| {
            let record = ProducerRecord::new("b", format!("v{i}")).key(format!("k{i}"));
            producer.send(record).expect("send")
        })
        .collect();
    producer
        .flush(Some(Duration::from_secs(30)))
        .expect("flush");
    let reports: Vec<_> = deliveries
        .into_iter()
        .map(|d| d.wait(Some(Duration::from_secs(30))).expect("delivered"))
        .collect();
    assert!(reports.iter().all(|m| m.offset >= 0 && m.topic == "b"));

    let mut config = ConsumerConfig::new(&server.addr);
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = blocking::Consumer::new(config).expect("consumer");
    consumer
        .assign(vec![
            TopicPartition::new("b", 0),
            TopicPartition::new("b", 1),
        ])
        .expect("assign");
    let mut read = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while read.len() < 100 {
        assert!(Instant::now() < deadline);
        read.extend(consumer.poll(Duration::from_millis(200)).expect("poll"));
    }
    let mut values: Vec<String> = read
        .iter()
        .map(|r| String::from_utf8(r.value.clone().expect("value")).expect("utf8"))
        .collect();
    values.sort();
    let mut expected: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    expected.sort();
    assert_eq!(values, expected);
    admin.delete_topics(&["b"]).expect("delete");
}

"""Interop with confluent-kafka (librdkafka): the same keys land in the same partitions
(librdkafka's murmur2_random partitioner is the Java client's), and each client reads what
the other wrote, headers included."""

import time

import pytest

import brook

ck = pytest.importorskip("confluent_kafka")

KEYS = [f"user-{i}".encode() for i in range(200)]


def confluent_read(bootstrap, topic, partitions, count, timeout_s=20.0):
    consumer = ck.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"ck-{topic}", "auto.offset.reset": "earliest",
         "enable.auto.commit": False}
    )
    consumer.assign([ck.TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        for message in consumer.consume(num_messages=500, timeout=0.5):
            assert message.error() is None, message.error()
            out.append(message)
    consumer.close()
    return out


def test_brook_produces_confluent_reads_same_partitions(broker, make_topic):
    brook_topic = make_topic(partitions=6)
    ck_topic = make_topic(partitions=6)
    with brook.Producer(broker.bootstrap) as producer:
        for key in KEYS:
            producer.send(brook_topic, b"from-brook:" + key, key=key, headers=[("src", b"brook")])
    librdkafka = ck.Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random"})
    for key in KEYS:
        librdkafka.produce(ck_topic, b"from-ck:" + key, key=key)
    assert librdkafka.flush(10) == 0

    from_brook = confluent_read(broker.bootstrap, brook_topic, 6, len(KEYS))
    from_ck = confluent_read(broker.bootstrap, ck_topic, 6, len(KEYS))
    assert len(from_brook) == len(from_ck) == len(KEYS)
    brook_partition = {m.key(): m.partition() for m in from_brook}
    ck_partition = {m.key(): m.partition() for m in from_ck}
    assert brook_partition == ck_partition
    assert len(set(brook_partition.values())) == 6
    assert all(m.value() == b"from-brook:" + m.key() for m in from_brook)
    assert all(m.headers() == [("src", b"brook")] for m in from_brook)


def test_confluent_produces_brook_reads(broker, make_topic):
    topic = make_topic(partitions=3)
    librdkafka = ck.Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random",
                              "compression.type": "zstd"})
    for i, key in enumerate(KEYS):
        librdkafka.produce(topic, f"ck-{i}".encode(), key=key, headers=[("i", str(i).encode())],
                           timestamp=1_000 * (int(time.time()) - 10) + i)
    assert librdkafka.flush(10) == 0
    with brook.Consumer(broker.bootstrap, group_id=f"brook-{topic}", topics=[topic],
                        auto_offset_reset="earliest", consumer_timeout_ms=3000) as consumer:
        records = list(consumer)
    assert len(records) == len(KEYS)
    with brook.Producer(broker.bootstrap) as producer:
        expected = {key: producer.send(f"{topic}", b"probe", key=key).result(timeout=10).partition
                    for key in KEYS[:20]}
    by_key = {r.key: r for r in records}
    for i, key in enumerate(KEYS):
        record = by_key[key]
        assert record.value == f"ck-{i}".encode()
        assert record.headers == [("i", str(i).encode())]
    for key, partition in expected.items():
        assert by_key[key].partition == partition

"""kafka-python (a pure-Python client with its own protocol code) against a real broker."""

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError


@pytest.fixture(scope="module")
def admin(broker):
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20_000)
    yield client
    client.close()


def create_topic(admin, name, partitions):
    admin.create_topics(
        [NewTopic(name=name, num_partitions=partitions, replication_factor=1)],
        timeout_ms=20_000,
    )


def read_back(broker, topic, partitions, expected_count, timeout_s=30):
    c = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=30_000,
    )
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        got = {p: [] for p in partitions}
        n = 0
        deadline = time.monotonic() + timeout_s
        while n < expected_count and time.monotonic() < deadline:
            for tp, records in c.poll(timeout_ms=500).items():
                got[tp.partition].extend(records)
                n += len(records)
        assert n == expected_count, f"read {n} of {expected_count} records within {timeout_s}s"
        return got
    finally:
        c.close()


def test_create_topics(broker, admin, topic_name):
    create_topic(admin, topic_name, 3)
    assert topic_name in admin.list_topics()
    [described] = admin.describe_topics([topic_name])
    assert described["error_code"] == 0
    assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2]
    for p in described["partitions"]:
        assert p["leader_id"] == 1
        assert p["replica_nodes"] == [1]
        assert p["isr_nodes"] == [1]

    with pytest.raises(TopicAlreadyExistsError):
        create_topic(admin, topic_name, 3)


def test_idempotent_produce_and_consume(broker, admin, topic_name):
    n = 1000
    create_topic(admin, topic_name, 3)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=10)
    try:
        assert producer.config["enable_idempotence"], "kafka-python 3.x is idempotent by default"
        futures = []
        for i in range(n):
            key = f"key-{i % 31}".encode()
            value = f"value-{i}".encode()
            headers = [("seq", str(i).encode())]
            futures.append(
                (key, value, headers, producer.send(topic_name, key=key, value=value, headers=headers))
            )
        producer.flush(timeout=30)
        per_partition = {}
        for key, value, headers, fut in futures:
            md = fut.get(timeout=10)
            assert md.topic == topic_name
            per_partition.setdefault(md.partition, []).append((md.offset, key, value, headers))
    finally:
        producer.close(timeout=10)

    assert sum(len(v) for v in per_partition.values()) == n
    for part, recs in per_partition.items():
        # Futures resolve with offsets 0, 1, 2, ... in send order within each partition.
        assert [o for o, _, _, _ in recs] == list(range(len(recs))), f"partition {part}"

    got = read_back(broker, topic_name, [0, 1, 2], n)
    for part in range(3):
        assert [
            (r.offset, r.key, r.value, [(k, v) for k, v in r.headers]) for r in got[part]
        ] == per_partition.get(part, [])

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic_name, p) for p in range(3)]
        assert c.beginning_offsets(tps) == {tp: 0 for tp in tps}
        assert c.end_offsets(tps) == {
            tp: len(per_partition.get(tp.partition, [])) for tp in tps
        }
    finally:
        c.close()


@pytest.mark.parametrize("codec", ["gzip"])
def test_compressed_produce(broker, admin, topic_name, codec):
    # gzip needs no extra Python package; the other codecs are covered by kcat and
    # confluent-kafka.
    create_topic(admin, topic_name, 1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=codec)
    try:
        futs = [producer.send(topic_name, value=f"z{i}".encode() * 10) for i in range(200)]
        producer.flush(timeout=30)
        assert [f.get(timeout=10).offset for f in futs] == list(range(200))
    finally:
        producer.close(timeout=10)
    got = read_back(broker, topic_name, [0], 200)[0]
    assert [r.value for r in got] == [f"z{i}".encode() * 10 for i in range(200)]

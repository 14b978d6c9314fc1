"""confluent-kafka (librdkafka) Producer, Consumer and AdminClient against a real broker.

Consumer groups are not served yet: consumers use assign() with explicit offsets and never
commit. librdkafka insists on a group.id, which stays unused.
"""

import time
import uuid
import warnings
from collections import defaultdict

import pytest
import wire
from confluent_kafka import (
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

try:  # confluent-kafka >= 1.9
    from confluent_kafka import TIMESTAMP_CREATE_TIME
except ImportError:  # pragma: no cover
    TIMESTAMP_CREATE_TIME = 1

try:
    from confluent_kafka.admin import ResourceType

    TOPIC_RESOURCE = ResourceType.TOPIC
    BROKER_RESOURCE = ResourceType.BROKER
except ImportError:  # pragma: no cover
    TOPIC_RESOURCE = ConfigResource.Type.TOPIC
    BROKER_RESOURCE = ConfigResource.Type.BROKER

RESULT_TIMEOUT_S = 20


def admin(broker):
    """One AdminClient per broker, kept alive: a client destroyed before its futures resolve
    fails them with _DESTROY."""
    client = getattr(broker, "_confluent_admin", None)
    if client is None:
        client = AdminClient({"bootstrap.servers": broker.bootstrap})
        broker._confluent_admin = client
        broker.clients.append(client)
    return client


def create_topic(broker, name, partitions, config=None):
    fs = admin(broker).create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        request_timeout=RESULT_TIMEOUT_S,
    )
    fs[name].result(timeout=RESULT_TIMEOUT_S)


def consumer(broker, **extra):
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": f"unused-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    }
    conf.update(extra)
    return Consumer(conf)


def read_all(broker, topic, partitions, expected_count, start_offset=0, timeout_s=60):
    """Reads `expected_count` records from the given partitions via assign(); returns them
    grouped by partition in arrival order."""
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, p, start_offset) for p in partitions])
        got = defaultdict(list)
        n = 0
        deadline = time.monotonic() + timeout_s
        while n < expected_count and time.monotonic() < deadline:
            for msg in c.consume(num_messages=5000, timeout=0.5):
                assert msg.error() is None, msg.error()
                got[msg.partition()].append(msg)
                n += 1
        assert n == expected_count, f"read {n} of {expected_count} records within {timeout_s}s"
        return got
    finally:
        c.close()


# ---------------------------------------------------------------- admin: topics


def test_create_topics_and_list_topics(broker, topic_name):
    create_topic(broker, topic_name, 3)
    md = admin(broker).list_topics(timeout=10)
    assert topic_name in md.topics
    t = md.topics[topic_name]
    assert t.error is None
    assert sorted(t.partitions) == [0, 1, 2]
    for p in t.partitions.values():
        assert p.leader == 1
        assert p.replicas == [1]
        assert p.isrs == [1]
    assert list(md.brokers) == [1]
    b = md.brokers[1]
    assert (b.host, b.port) == ("127.0.0.1", broker.port)


def test_create_existing_topic_fails_with_topic_already_exists(broker, topic_name):
    create_topic(broker, topic_name, 1)
    with pytest.raises(KafkaException) as exc:
        create_topic(broker, topic_name, 1)
    assert exc.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_create_topic_with_invalid_partitions_fails(broker, topic_name):
    fs = admin(broker).create_topics(
        [NewTopic(topic_name, num_partitions=0, replication_factor=1)],
        request_timeout=RESULT_TIMEOUT_S,
    )
    with pytest.raises(KafkaException) as exc:
        fs[topic_name].result(timeout=RESULT_TIMEOUT_S)
    assert exc.value.args[0].code() == KafkaError.INVALID_PARTITIONS


# ---------------------------------------------------------------- produce / consume


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_and_consume_10k(broker, topic_name, codec):
    n = 10_000
    create_topic(broker, topic_name, 3)
    p = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "compression.type": codec,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
        }
    )
    reports = []

    def on_delivery(err, msg):
        reports.append((err, msg.partition(), msg.offset(), msg.key(), msg.value()))

    sent = {}
    for i in range(n):
        key = f"key-{i % 97}".encode()
        value = f"{codec} value {i} ".encode() + b"abcdefgh" * (i % 17)
        headers = [("seq", str(i).encode()), ("codec", codec.encode()), ("empty", b"")]
        sent[(key, value)] = headers
        while True:
            try:
                p.produce(topic_name, key=key, value=value, headers=headers, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(60) == 0, "records still undelivered after 60 s"

    errors = [r for r in reports if r[0] is not None]
    assert not errors, f"{len(errors)} delivery errors, first: {errors[0]}"
    assert len(reports) == n

    # Expected per partition, in the order the producer sent them; offsets 0.. in that order.
    expected = defaultdict(list)
    for _, part, offset, key, value in reports:
        expected[part].append((offset, key, value))
    for part, recs in expected.items():
        recs.sort()
        assert [o for o, _, _ in recs] == list(range(len(recs))), f"partition {part} offsets"
        seqs = [int(v.split(b" ")[2]) for _, _, v in recs]
        assert seqs == sorted(seqs), f"partition {part}: produce order not kept"

    got = read_all(broker, topic_name, [0, 1, 2], n)
    for part in range(3):
        msgs = got.get(part, [])
        assert [(m.offset(), m.key(), m.value()) for m in msgs] == expected.get(part, [])
        for m in msgs:
            assert m.headers() == sent[(m.key(), m.value())]
            ts_type, ts = m.timestamp()
            assert ts_type == TIMESTAMP_CREATE_TIME and ts > 0

    # Keys hash to the same partition every time.
    part_of_key = {}
    for part, msgs in got.items():
        for m in msgs:
            assert part_of_key.setdefault(m.key(), part) == part

    c = consumer(broker)
    try:
        total = 0
        for part in range(3):
            low, high = c.get_watermark_offsets(TopicPartition(topic_name, part), timeout=10)
            assert low == 0
            assert high == len(expected.get(part, []))
            total += high
        assert total == n
    finally:
        c.close()


def test_headers_with_null_value_and_null_key(broker, topic_name):
    create_topic(broker, topic_name, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic_name, value=b"v1", headers=[("nullhdr", None), ("k", b"x")])
    p.produce(topic_name, key=b"k2", value=None)
    assert p.flush(20) == 0
    msgs = read_all(broker, topic_name, [0], 2)[0]
    assert msgs[0].key() is None
    assert msgs[0].value() == b"v1"
    assert msgs[0].headers() == [("nullhdr", None), ("k", b"x")]
    assert msgs[1].key() == b"k2"
    assert msgs[1].value() is None
    assert msgs[1].headers() is None


def test_consume_from_middle_offset(broker, topic_name):
    create_topic(broker, topic_name, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for i in range(50):
        p.produce(topic_name, value=f"m{i}".encode())
        if i % 10 == 9:
            p.flush(10)  # several batches, so offset 25 falls inside one
    assert p.flush(20) == 0
    msgs = read_all(broker, topic_name, [0], 25, start_offset=25)[0]
    assert [m.offset() for m in msgs] == list(range(25, 50))
    assert [m.value() for m in msgs] == [f"m{i}".encode() for i in range(25, 50)]


def test_offsets_for_times(broker, topic_name):
    create_topic(broker, topic_name, 1)
    base = int(time.time() * 1000) - 3_600_000
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        p.produce(topic_name, value=f"t{i}".encode(), timestamp=base + i * 1000)
        p.flush(10)
    assert p.flush(10) == 0

    c = consumer(broker)
    try:

        def offset_for(ts):
            [tp] = c.offsets_for_times([TopicPartition(topic_name, 0, ts)], timeout=10)
            assert tp.error is None, tp.error
            return tp.offset

        assert offset_for(base - 10_000) == 0
        assert offset_for(base) == 0
        assert offset_for(base + 5_500) == 6
        assert offset_for(base + 9_000) == 9
        assert offset_for(base + 60_000) == OFFSET_END  # -1: no record that late
    finally:
        c.close()

    msgs = read_all(broker, topic_name, [0], 10)[0]
    assert [m.timestamp() for m in msgs] == [
        (TIMESTAMP_CREATE_TIME, base + i * 1000) for i in range(10)
    ]


def test_offsets_for_times_inside_one_batch(broker, topic_name):
    """Records with distinct timestamps in ONE batch: the lookup must find the first record
    whose timestamp is >= the target (as Kafka does), not the start of its batch."""
    create_topic(broker, topic_name, 1)
    base = int(time.time() * 1000) - 3_600_000
    # One hand-built batch of 10 records, timestamps base, base+1s, ..., base+9s.
    batch = wire.record_batch(
        [f"t{i}".encode() for i in range(10)], base, [i * 1000 for i in range(10)]
    )
    with wire.connect(broker) as s:
        s.sendall(wire.request(wire.API_PRODUCE, 3, 1, wire.produce_v3_body(topic_name, 0, batch)))
        _, body = wire.recv_response(s)
    assert wire.parse_produce_v3_response(body) == [(topic_name, 0, 0, 0)]

    msgs = read_all(broker, topic_name, [0], 10)[0]
    assert [m.timestamp()[1] for m in msgs] == [base + i * 1000 for i in range(10)]

    c = consumer(broker)
    try:
        [tp] = c.offsets_for_times([TopicPartition(topic_name, 0, base + 5_500)], timeout=10)
    finally:
        c.close()
    assert tp.error is None, tp.error
    tp0 = TopicPartition(topic_name, 0)
    fs = admin(broker).list_offsets(
        {tp0: OffsetSpec.for_timestamp(base + 5_500)}, request_timeout=RESULT_TIMEOUT_S
    )
    listed = fs[tp0].result(timeout=RESULT_TIMEOUT_S)
    # Kafka answers the first record with timestamp >= target: offset 6, at base+6s.
    assert (tp.offset, listed.offset, listed.timestamp - base) == (6, 6, 6000), (
        f"lookup of base+5500 ms: offsets_for_times gave offset {tp.offset}; admin list_offsets"
        f" gave offset {listed.offset} with timestamp base+{listed.timestamp - base} ms"
    )


def test_admin_list_offsets(broker, topic_name):
    create_topic(broker, topic_name, 1)
    base = int(time.time() * 1000) - 60_000
    p = Producer({"bootstrap.servers": broker.bootstrap})
    stamps = [base + 5, base + 9, base + 2, base + 7]  # the largest is at offset 1
    for ts in stamps:
        p.produce(topic_name, value=b"v", timestamp=ts)
        p.flush(10)
    tp = TopicPartition(topic_name, 0)

    def listed(spec):
        fs = admin(broker).list_offsets({tp: spec}, request_timeout=RESULT_TIMEOUT_S)
        return fs[tp].result(timeout=RESULT_TIMEOUT_S)

    assert listed(OffsetSpec.earliest()).offset == 0
    assert listed(OffsetSpec.latest()).offset == 4
    newest = listed(OffsetSpec.max_timestamp())
    assert (newest.offset, newest.timestamp) == (1, base + 9)


def test_acks_0(broker, topic_name):
    create_topic(broker, topic_name, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": 0})
    for i in range(200):
        p.produce(topic_name, value=f"fire-and-forget-{i}".encode())
    assert p.flush(20) == 0
    msgs = read_all(broker, topic_name, [0], 200)[0]
    assert [m.value() for m in msgs] == [f"fire-and-forget-{i}".encode() for i in range(200)]


def test_records_larger_than_max_partition_fetch_bytes(broker, topic_name):
    """KIP-74: a fetch returns at least one whole batch even when it exceeds the limits."""
    create_topic(broker, topic_name, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    values = [bytes([65 + i]) * 200_000 for i in range(5)]
    for v in values:
        p.produce(topic_name, value=v)
        p.flush(10)
    got = defaultdict(list)
    c = consumer(broker, **{"max.partition.fetch.bytes": 1024})
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        deadline = time.monotonic() + 20
        while len(got[0]) < len(values) and time.monotonic() < deadline:
            for m in c.consume(num_messages=10, timeout=0.5):
                assert m.error() is None, m.error()
                got[0].append(m.value())
    finally:
        c.close()
    assert got[0] == values


def test_consumer_waits_for_new_records(broker, topic_name):
    """Long-polling fetch: a record produced while the consumer waits arrives promptly."""
    create_topic(broker, topic_name, 1)
    c = consumer(broker, **{"fetch.wait.max.ms": 5000})
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        assert c.consume(num_messages=1, timeout=1.0) == []
        p = Producer({"bootstrap.servers": broker.bootstrap})
        p.produce(topic_name, value=b"late")
        assert p.flush(10) == 0
        start = time.monotonic()
        msgs = []
        while not msgs and time.monotonic() - start < 10:
            msgs = c.consume(num_messages=1, timeout=0.5)
        assert [m.value() for m in msgs] == [b"late"]
        assert time.monotonic() - start < 3, "long-poll did not wake on the new record"
    finally:
        c.close()


# ---------------------------------------------------------------- admin: configs etc.


def describe_topic_config(broker, topic):
    res = ConfigResource(TOPIC_RESOURCE, topic)
    fs = admin(broker).describe_configs([res], request_timeout=RESULT_TIMEOUT_S)
    [f] = fs.values()
    return f.result(timeout=RESULT_TIMEOUT_S)


def is_topic_override(entry):
    """Whether a described config is set on the topic itself (DYNAMIC_TOPIC_CONFIG)."""
    src = ConfigSource.DYNAMIC_TOPIC_CONFIG
    return entry.source in (src, src.value)


def test_describe_configs_topic(broker, topic_name):
    create_topic(broker, topic_name, 1, config={"retention.ms": "123456"})
    entries = describe_topic_config(broker, topic_name)
    assert entries["retention.ms"].value == "123456"
    assert is_topic_override(entries["retention.ms"])
    assert not is_topic_override(entries["cleanup.policy"])
    assert entries["cleanup.policy"].value == "delete"
    assert "segment.bytes" in entries


def test_describe_configs_broker(broker):
    res = ConfigResource(BROKER_RESOURCE, "1")
    fs = admin(broker).describe_configs([res], request_timeout=RESULT_TIMEOUT_S)
    [f] = fs.values()
    entries = f.result(timeout=RESULT_TIMEOUT_S)
    assert entries, "broker 1 described no configs"


def test_alter_configs(broker, topic_name):
    create_topic(broker, topic_name, 1)
    res = ConfigResource(TOPIC_RESOURCE, topic_name, set_config={"retention.ms": "7200000"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy API on purpose
        fs = admin(broker).alter_configs([res], request_timeout=RESULT_TIMEOUT_S)
    [f] = fs.values()
    f.result(timeout=RESULT_TIMEOUT_S)
    assert describe_topic_config(broker, topic_name)["retention.ms"].value == "7200000"


def test_incremental_alter_configs(broker, topic_name):
    create_topic(broker, topic_name, 1)
    res = ConfigResource(
        TOPIC_RESOURCE,
        topic_name,
        incremental_configs=[
            ConfigEntry(
                "retention.ms", "9000000", incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    fs = admin(broker).incremental_alter_configs([res])
    [f] = fs.values()
    f.result(timeout=RESULT_TIMEOUT_S)
    assert describe_topic_config(broker, topic_name)["retention.ms"].value == "9000000"

    res = ConfigResource(
        TOPIC_RESOURCE,
        topic_name,
        incremental_configs=[
            ConfigEntry("retention.ms", "", incremental_operation=AlterConfigOpType.DELETE)
        ],
    )
    fs = admin(broker).incremental_alter_configs([res])
    [f] = fs.values()
    f.result(timeout=RESULT_TIMEOUT_S)
    entry = describe_topic_config(broker, topic_name)["retention.ms"]
    assert entry.value != "9000000"
    assert not is_topic_override(entry)


def test_create_partitions(broker, topic_name):
    create_topic(broker, topic_name, 2)
    fs = admin(broker).create_partitions(
        [NewPartitions(topic_name, 5)], request_timeout=RESULT_TIMEOUT_S
    )
    fs[topic_name].result(timeout=RESULT_TIMEOUT_S)
    md = admin(broker).list_topics(topic_name, timeout=10)
    assert sorted(md.topics[topic_name].partitions) == [0, 1, 2, 3, 4]

    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic_name, value=b"in new partition", partition=4)
    assert p.flush(20) == 0
    msgs = read_all(broker, topic_name, [4], 1)[4]
    assert msgs[0].value() == b"in new partition"


def test_delete_topics(broker, topic_name):
    create_topic(broker, topic_name, 2)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic_name, value=b"doomed")
    assert p.flush(20) == 0

    fs = admin(broker).delete_topics([topic_name], request_timeout=RESULT_TIMEOUT_S)
    fs[topic_name].result(timeout=RESULT_TIMEOUT_S)
    deadline = time.monotonic() + 10
    while topic_name in admin(broker).list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, "topic still listed 10 s after delete_topics"
        time.sleep(0.2)

    # Deleting it again names the error.
    fs = admin(broker).delete_topics([topic_name], request_timeout=RESULT_TIMEOUT_S)
    with pytest.raises(KafkaException) as exc:
        fs[topic_name].result(timeout=RESULT_TIMEOUT_S)
    assert exc.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_describe_cluster(broker):
    result = admin(broker).describe_cluster(request_timeout=RESULT_TIMEOUT_S).result(
        timeout=RESULT_TIMEOUT_S
    )
    assert [n.id for n in result.nodes] == [1]
    assert (result.nodes[0].host, result.nodes[0].port) == ("127.0.0.1", broker.port)
    assert result.controller is not None and result.controller.id == 1
    assert result.cluster_id


def test_delete_records(broker, topic_name):
    create_topic(broker, topic_name, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(20):
        p.produce(topic_name, value=f"r{i}".encode())
    assert p.flush(20) == 0

    fs = admin(broker).delete_records(
        [TopicPartition(topic_name, 0, 12)], request_timeout=RESULT_TIMEOUT_S
    )
    [f] = fs.values()
    deleted = f.result(timeout=RESULT_TIMEOUT_S)
    assert deleted.low_watermark == 12

    c = consumer(broker)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10) == (12, 20)
    finally:
        c.close()
    msgs = read_all(broker, topic_name, [0], 8, start_offset=-2)[0]  # OFFSET_BEGINNING
    assert [m.offset() for m in msgs] == list(range(12, 20))

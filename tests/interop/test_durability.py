"""Acknowledged records survive a SIGKILL of the broker."""

import time
import uuid
from collections import defaultdict

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

N = 5000


def produce(broker, topic, start, count):
    """Produces values start..start+count-1 with acks=all; returns {value: (partition, offset)}
    of the acknowledged ones."""
    p = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.num.messages": 200,
        }
    )
    acked = {}
    failed = []

    def on_delivery(err, msg):
        if err is None:
            acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            failed.append(err)

    for i in range(start, start + count):
        p.produce(topic, key=str(i % 13).encode(), value=f"record-{i}".encode(), on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(30) == 0
    assert not failed, failed[:3]
    return acked


def read_partitions(broker, topic, partitions, timeout_s=30):
    """Everything in the partitions, up to each one's high watermark."""
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"unused-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        c.assign([TopicPartition(topic, p, 0) for p in partitions])
        got = defaultdict(list)
        at_end = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"partitions at end: {at_end}"
            for msg in c.consume(num_messages=5000, timeout=0.5):
                if msg.error():
                    assert msg.error().code() == msg.error()._PARTITION_EOF, msg.error()
                    at_end.add(msg.partition())
                    continue
                got[msg.partition()].append((msg.offset(), msg.value()))
        return got
    finally:
        c.close()


def test_acked_records_survive_sigkill(broker, topic_name):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1)])[
        topic_name
    ].result(timeout=20)
    del admin

    acked = produce(broker, topic_name, 0, N)
    assert len(acked) == N

    broker.restart(hard=True)  # SIGKILL, then start on the same data dir and port

    got = read_partitions(broker, topic_name, [0, 1])
    stored = {value: (part, offset) for part, recs in got.items() for offset, value in recs}
    missing = [v for v in acked if v not in stored]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:3]}"
    moved = [(v, acked[v], stored[v]) for v in acked if stored[v] != acked[v]]
    assert not moved, f"records at other offsets than acknowledged: {moved[:3]}"
    for part, recs in got.items():
        assert [o for o, _ in recs] == list(range(len(recs))), f"partition {part}: offset gap"

    # The log goes on where it stopped: new records get the next offsets.
    ends = {part: len(recs) for part, recs in got.items()}
    more = produce(broker, topic_name, N, 100)
    for part in (0, 1):
        offsets = sorted(o for p, o in more.values() if p == part)
        assert offsets == list(range(ends.get(part, 0), ends.get(part, 0) + len(offsets)))

    # And a second, graceful restart keeps everything too.
    broker.restart()
    got = read_partitions(broker, topic_name, [0, 1])
    assert sum(len(r) for r in got.values()) == N + 100


def test_sigkill_while_producing_keeps_acked_records(broker, topic_name):
    """The broker dies in the middle of a produce stream: whatever it acknowledged is there
    after the restart, at the acknowledged offsets."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)])[
        topic_name
    ].result(timeout=20)
    del admin

    p = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "acks": "all",
            "linger.ms": 1,
            "batch.num.messages": 50,
            "message.timeout.ms": 2000,
            "retries": 0,
        }
    )
    acked = {}

    def on_delivery(err, msg):
        if err is None:
            acked[msg.value()] = msg.offset()

    killed = False
    for i in range(20_000):
        p.produce(topic_name, value=f"stream-{i}".encode(), on_delivery=on_delivery)
        if i % 100 == 99:
            p.poll(0.01)
        if not killed and len(acked) >= 2000:
            broker.kill()
            killed = True
    p.flush(15)  # the rest fails once message.timeout.ms passes
    del p
    assert killed, "all records were acknowledged before the kill point"
    assert len(acked) >= 2000

    broker.start()
    got = read_partitions(broker, topic_name, [0])[0]
    stored = {value: offset for offset, value in got}
    missing = [v for v in acked if v not in stored]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged records lost"
    assert all(stored[v] == o for v, o in acked.items())
    assert [o for o, _ in got] == list(range(len(got)))


def test_idempotent_producer_carries_on_across_sigkill(broker, topic_name):
    """One idempotent producer keeps sending while the broker is SIGKILLed and restarted:
    every record is delivered exactly once, offsets without gaps or duplicates."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)])[
        topic_name
    ].result(timeout=20)
    del admin

    p = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
    )
    offsets = {}
    errors = []

    def on_delivery(err, msg):
        if err is None:
            offsets[msg.value()] = msg.offset()
        else:
            errors.append(err)

    for i in range(500):
        p.produce(topic_name, value=f"before-{i}".encode(), on_delivery=on_delivery)
    assert p.flush(20) == 0
    broker.restart(hard=True)
    for i in range(500):
        p.produce(topic_name, value=f"after-{i}".encode(), on_delivery=on_delivery)
    assert p.flush(30) == 0
    del p
    assert not errors, errors[:3]
    assert sorted(offsets.values()) == list(range(1000))

    got = read_partitions(broker, topic_name, [0])[0]
    assert [o for o, _ in got] == list(range(1000))
    assert {v: o for o, v in got} == offsets


def test_consumer_carries_on_across_restart(broker, topic_name):
    """A consumer stays assigned while the broker restarts; it resumes where it was, with no
    record skipped or repeated (librdkafka re-validates its position after the reconnect)."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)])[
        topic_name
    ].result(timeout=20)
    del admin

    def produce_range(lo, hi):
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
        for i in range(lo, hi):
            p.produce(topic_name, value=f"c{i}".encode())
        assert p.flush(20) == 0

    produce_range(0, 300)
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"unused-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "error",
        }
    )
    got = []

    def consume_until(n, timeout_s=30):
        deadline = time.monotonic() + timeout_s
        while len(got) < n and time.monotonic() < deadline:
            for m in c.consume(num_messages=500, timeout=0.5):
                if m.error():
                    # transport errors while the broker is down are expected
                    assert m.error().code() in (
                        m.error()._TRANSPORT,
                        m.error()._ALL_BROKERS_DOWN,
                    ), m.error()
                    continue
                got.append((m.offset(), m.value()))

    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        consume_until(300)
        assert len(got) == 300
        broker.restart(hard=True)
        produce_range(300, 600)
        consume_until(600)
    finally:
        c.close()
    assert got == [(i, f"c{i}".encode()) for i in range(600)]

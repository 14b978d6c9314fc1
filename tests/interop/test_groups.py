"""Consumer groups against a real broker: confluent-kafka (librdkafka) and kafka-python group
consumers, committed offsets, group administration, and offsets that survive a restart.

Timeouts are short (6 s sessions, the broker's minimum; 100 ms heartbeats) so rebalances
finish in well under a second and the module stays fast.
"""

import os
import struct
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
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
    NewPartitions,
    NewTopic,
)
from kafka import KafkaConsumer

from conftest import Broker

RESULT_TIMEOUT_S = 20
SETTLE_TIMEOUT_S = 30

GROUP_CONF = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 100,
    "max.poll.interval.ms": 10000,
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "topic.metadata.refresh.interval.ms": 1000,
}


def admin(broker):
    client = getattr(broker, "_groups_admin", None)
    if client is None:
        client = AdminClient({"bootstrap.servers": broker.bootstrap})
        broker._groups_admin = client
        broker.clients.append(client)
    return client


def create_topic(broker, name, partitions):
    fs = admin(broker).create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)],
        request_timeout=RESULT_TIMEOUT_S,
    )
    fs[name].result(timeout=RESULT_TIMEOUT_S)


def produce(broker, topic, partitions, per_partition):
    """Writes `per_partition` records to each partition; returns every (partition, value)."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    sent = set()
    for partition in range(partitions):
        for i in range(per_partition):
            value = f"{partition}-{i}"
            p.produce(topic, value=value.encode(), partition=partition)
            sent.add((partition, value))
    assert p.flush(RESULT_TIMEOUT_S) == 0
    return sent


def group_consumer(broker, group, **extra):
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": group, **GROUP_CONF, **extra}
    return Consumer(conf)


def settle(consumers, expected_sizes, timeout_s=SETTLE_TIMEOUT_S):
    """Polls every consumer until their assignment sizes are `expected_sizes` (sorted)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for c in consumers:
            msg = c.poll(0.05)
            assert msg is None or msg.error() is None or msg.error().code() < 0, msg.error()
        sizes = sorted(len(c.assignment()) for c in consumers)
        if sizes == sorted(expected_sizes):
            return
    assignments = [c.assignment() for c in consumers]
    pytest.fail(f"assignments never settled to {expected_sizes}: {assignments}")


def drain(consumers, expected_count, timeout_s=SETTLE_TIMEOUT_S):
    """Polls the consumers until `expected_count` records arrived; per consumer, the
    (partition, value) pairs it read."""
    got = [[] for _ in consumers]
    deadline = time.monotonic() + timeout_s
    while sum(map(len, got)) < expected_count and time.monotonic() < deadline:
        for i, c in enumerate(consumers):
            msg = c.poll(0.05)
            if msg is None or msg.error() is not None:
                continue
            got[i].append((msg.partition(), msg.value().decode()))
    return got


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_three_members_split_six_partitions_and_read_everything(broker, topic_name, strategy):
    create_topic(broker, topic_name, 6)
    group = f"split-{uuid.uuid4().hex[:8]}"
    members = [
        group_consumer(broker, group, **{"partition.assignment.strategy": strategy})
        for _ in range(3)
    ]
    try:
        for c in members:
            c.subscribe([topic_name])
        settle(members, [2, 2, 2])
        owned = [{tp.partition for tp in c.assignment()} for c in members]
        assert set().union(*owned) == set(range(6)), owned
        sent = produce(broker, topic_name, 6, 10)
        got = drain(members, len(sent))
        assert set().union(*map(set, got)) == sent
        for i, records in enumerate(got):
            assert len(records) == 20, f"member {i} read {len(records)}"
            assert {p for p, _ in records} <= owned[i], "a member reads only its partitions"
    finally:
        for c in members:
            c.close()


def test_separate_groups_each_read_everything(broker, topic_name):
    create_topic(broker, topic_name, 3)
    sent = produce(broker, topic_name, 3, 5)
    consumers = [group_consumer(broker, f"own-{i}-{uuid.uuid4().hex[:6]}") for i in range(3)]
    try:
        for c in consumers:
            c.subscribe([topic_name])
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        got = [set() for _ in consumers]
        while any(g != sent for g in got) and time.monotonic() < deadline:
            for i, c in enumerate(consumers):
                msg = c.poll(0.05)
                if msg is not None and msg.error() is None:
                    got[i].add((msg.partition(), msg.value().decode()))
        assert all(g == sent for g in got), [len(g) for g in got]
    finally:
        for c in consumers:
            c.close()


def test_committed_offsets_survive_a_consumer_restart(broker, topic_name):
    create_topic(broker, topic_name, 1)
    produce(broker, topic_name, 1, 20)
    group = f"resume-{uuid.uuid4().hex[:8]}"
    first = group_consumer(broker, group)
    first.subscribe([topic_name])
    read = []
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while len(read) < 10 and time.monotonic() < deadline:
        msg = first.poll(0.1)
        if msg is not None and msg.error() is None:
            read.append(msg)
    assert len(read) == 10
    first.commit(message=read[-1], asynchronous=False)
    committed = first.committed([TopicPartition(topic_name, 0)], timeout=RESULT_TIMEOUT_S)
    assert committed[0].offset == read[-1].offset() + 1
    first.close()

    second = group_consumer(broker, group)
    try:
        second.subscribe([topic_name])
        msg = None
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            msg = second.poll(0.1)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None and msg.error() is None
        assert msg.offset() == read[-1].offset() + 1, "resumes after the committed offset"
    finally:
        second.close()


def test_leaving_member_hands_its_partitions_over(broker, topic_name):
    create_topic(broker, topic_name, 4)
    group = f"handover-{uuid.uuid4().hex[:8]}"
    staying, leaving = group_consumer(broker, group), group_consumer(broker, group)
    try:
        staying.subscribe([topic_name])
        leaving.subscribe([topic_name])
        settle([staying, leaving], [2, 2])
        leaving.close()
        settle([staying], [4])
    finally:
        staying.close()


def test_static_member_rejoins_without_a_rebalance(broker, topic_name):
    """KIP-345: a static member that restarts within its session gets its old assignment back
    and the group stays in the same generation."""
    create_topic(broker, topic_name, 2)
    group = f"static-{uuid.uuid4().hex[:8]}"
    first = group_consumer(broker, group, **{"group.instance.id": "instance-a"})
    first.subscribe([topic_name])
    settle([first], [2])
    before = admin(broker).describe_consumer_groups([group])[group].result()
    first.close()  # a static member does not leave the group on close
    second = group_consumer(broker, group, **{"group.instance.id": "instance-a"})
    try:
        second.subscribe([topic_name])
        settle([second], [2])
        after = admin(broker).describe_consumer_groups([group])[group].result()
        assert after.state == ConsumerGroupState.STABLE
        assert len(after.members) == 1
        assert after.members[0].group_instance_id == "instance-a"
        assert after.members[0].member_id != before.members[0].member_id
    finally:
        second.close()


def test_admin_lists_and_describes_groups(broker, topic_name):
    create_topic(broker, topic_name, 2)
    group = f"described-{uuid.uuid4().hex[:8]}"
    members = [group_consumer(broker, group) for _ in range(2)]
    try:
        for c in members:
            c.subscribe([topic_name])
        settle(members, [1, 1])
        listed = admin(broker).list_consumer_groups(request_timeout=RESULT_TIMEOUT_S).result()
        states = {g.group_id: g.state for g in listed.valid}
        assert states.get(group) == ConsumerGroupState.STABLE, states
        filtered = admin(broker).list_consumer_groups(
            states={ConsumerGroupState.EMPTY}, request_timeout=RESULT_TIMEOUT_S
        ).result()
        assert group not in {g.group_id for g in filtered.valid}
        described = admin(broker).describe_consumer_groups(
            [group], request_timeout=RESULT_TIMEOUT_S
        )
        description = described[group].result()
        assert description.state == ConsumerGroupState.STABLE
        assert len(description.members) == 2
        assigned = sorted(
            tp.partition for m in description.members for tp in m.assignment.topic_partitions
        )
        assert assigned == [0, 1]
        # Kafka prints the member's address as Java does.
        assert [m.host for m in description.members] == ["/127.0.0.1"] * 2
    finally:
        for c in members:
            c.close()
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while time.monotonic() < deadline:
        described = admin(broker).describe_consumer_groups(
            [group], request_timeout=RESULT_TIMEOUT_S
        )
        if described[group].result().state == ConsumerGroupState.EMPTY:
            break
        time.sleep(0.1)
    assert described[group].result().state == ConsumerGroupState.EMPTY


def test_kafka_python_group_consumer_reads_and_resumes(broker, topic_name):
    create_topic(broker, topic_name, 2)
    sent = produce(broker, topic_name, 2, 5)
    group = f"kp-{uuid.uuid4().hex[:8]}"

    def open_consumer():
        return KafkaConsumer(
            topic_name,
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=6000,
            heartbeat_interval_ms=100,
            max_poll_interval_ms=10000,
            request_timeout_ms=30000,
        )

    c = open_consumer()
    try:
        got = set()
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while got != sent and time.monotonic() < deadline:
            for tp, records in c.poll(timeout_ms=200).items():
                got.update((tp.partition, r.value.decode()) for r in records)
        assert got == sent
        c.commit()
    finally:
        c.close()
    produce_more = Producer({"bootstrap.servers": broker.bootstrap})
    produce_more.produce(topic_name, value=b"late", partition=1)
    assert produce_more.flush(RESULT_TIMEOUT_S) == 0
    c = open_consumer()
    try:
        got = []
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while not got and time.monotonic() < deadline:
            for tp, records in c.poll(timeout_ms=200).items():
                got.extend((tp.partition, r.value.decode()) for r in records)
        assert got == [(1, "late")], "only the record after the commit is read again"
    finally:
        c.close()


def test_admin_lists_offsets_and_deletes_an_empty_group(broker, topic_name):
    create_topic(broker, topic_name, 2)
    group = f"deleted-{uuid.uuid4().hex[:8]}"
    c = group_consumer(broker, group)
    offsets = [TopicPartition(topic_name, 0, 4), TopicPartition(topic_name, 1, 9)]
    c.commit(offsets=offsets, asynchronous=False)
    c.close()
    request = [ConsumerGroupTopicPartitions(group)]
    listed = admin(broker).list_consumer_group_offsets(request, request_timeout=RESULT_TIMEOUT_S)
    offsets = sorted((tp.partition, tp.offset) for tp in listed[group].result().topic_partitions)
    assert offsets == [(0, 4), (1, 9)]
    deleted = admin(broker).delete_consumer_groups([group], request_timeout=RESULT_TIMEOUT_S)
    deleted[group].result()
    groups = admin(broker).list_consumer_groups(request_timeout=RESULT_TIMEOUT_S).result()
    assert group not in {g.group_id for g in groups.valid}


def test_broker_restart_keeps_committed_offsets(broker, topic_name):
    create_topic(broker, topic_name, 2)
    group = f"durable-{uuid.uuid4().hex[:8]}"
    c = group_consumer(broker, group)
    offsets = [TopicPartition(topic_name, 0, 7), TopicPartition(topic_name, 1, 3)]
    c.commit(offsets=offsets, asynchronous=False)
    c.close()
    broker.clients.clear()
    broker._groups_admin = None
    broker.restart()
    c = group_consumer(broker, group)
    try:
        committed = c.committed(
            [TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)], timeout=RESULT_TIMEOUT_S
        )
        assert [tp.offset for tp in committed] == [7, 3]
    finally:
        c.close()
    listed = admin(broker).list_consumer_groups(request_timeout=RESULT_TIMEOUT_S).result()
    assert group in {g.group_id for g in listed.valid}


OFFSETS_TOPIC = "__consumer_offsets"


def ensure_offsets_topic(broker, topic_name):
    """A commit makes sure the broker has created __consumer_offsets."""
    create_topic(broker, topic_name, 1)
    c = group_consumer(broker, f"maker-{uuid.uuid4().hex[:8]}")
    c.commit(offsets=[TopicPartition(topic_name, 0, 1)], asynchronous=False)
    c.close()


def error_code(future):
    with pytest.raises(KafkaException) as raised:
        future.result(timeout=RESULT_TIMEOUT_S)
    return raised.value.args[0].code()


def test_internal_topic_cannot_be_deleted_grown_truncated_or_uncompacted(broker, topic_name):
    ensure_offsets_topic(broker, topic_name)
    client = admin(broker)
    partitions = len(client.list_topics(OFFSETS_TOPIC, timeout=RESULT_TIMEOUT_S).topics[OFFSETS_TOPIC].partitions)
    assert partitions == 50
    deleted = client.delete_topics([OFFSETS_TOPIC], request_timeout=RESULT_TIMEOUT_S)
    assert error_code(deleted[OFFSETS_TOPIC]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    grown = client.create_partitions(
        [NewPartitions(OFFSETS_TOPIC, 60)], request_timeout=RESULT_TIMEOUT_S
    )
    assert error_code(grown[OFFSETS_TOPIC]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    truncated = client.delete_records(
        [TopicPartition(OFFSETS_TOPIC, 0, -1)], request_timeout=RESULT_TIMEOUT_S
    )
    [(_, future)] = list(truncated.items())
    assert error_code(future) == KafkaError.TOPIC_EXCEPTION
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        OFFSETS_TOPIC,
        incremental_configs=[
            ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    [(_, future)] = list(client.incremental_alter_configs([resource]).items())
    assert error_code(future) == KafkaError.POLICY_VIOLATION
    # Other settings may change.
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        OFFSETS_TOPIC,
        incremental_configs=[
            ConfigEntry("flush.ms", "60000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    [(_, future)] = list(client.incremental_alter_configs([resource]).items())
    future.result(timeout=RESULT_TIMEOUT_S)
    [(_, future)] = list(
        client.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, OFFSETS_TOPIC)]).items()
    )
    configs = future.result(timeout=RESULT_TIMEOUT_S)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["flush.ms"].value == "60000"
    topic = client.list_topics(OFFSETS_TOPIC, timeout=RESULT_TIMEOUT_S).topics[OFFSETS_TOPIC]
    assert topic.error is None and len(topic.partitions) == partitions


def read_string(data, at):
    (length,) = struct.unpack_from(">h", data, at)
    return data[at + 2 : at + 2 + length].decode(), at + 2 + length


def offsets_topic_records(broker):
    """Every record of __consumer_offsets as (key, value), decoded keys: ("offset", group,
    topic, partition) or ("group", group)."""
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = c.list_topics(OFFSETS_TOPIC, timeout=RESULT_TIMEOUT_S)
        partitions = list(metadata.topics[OFFSETS_TOPIC].partitions)
        c.assign([TopicPartition(OFFSETS_TOPIC, p, OFFSET_BEGINNING) for p in partitions])
        at_end = set()
        records = []
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while len(at_end) < len(partitions) and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                at_end.add(msg.partition())
                continue
            key = msg.key()
            (version,) = struct.unpack_from(">h", key, 0)
            group, at = read_string(key, 2)
            if version in (0, 1):
                topic, at = read_string(key, at)
                (partition,) = struct.unpack_from(">i", key, at)
                records.append((("offset", group, topic, partition), msg.value()))
            else:
                records.append((("group", group), msg.value()))
        assert len(at_end) == len(partitions), "read every partition to its end"
        return records
    finally:
        c.close()


def test_deleted_group_and_offsets_leave_tombstones_in_the_offsets_topic(broker, topic_name):
    create_topic(broker, topic_name, 2)
    group = f"tombstoned-{uuid.uuid4().hex[:8]}"
    c = group_consumer(broker, group)
    c.commit(
        offsets=[TopicPartition(topic_name, 0, 4), TopicPartition(topic_name, 1, 9)],
        asynchronous=False,
    )
    c.close()
    deleted = admin(broker).delete_consumer_groups([group], request_timeout=RESULT_TIMEOUT_S)
    deleted[group].result()
    mine = [(key, value) for key, value in offsets_topic_records(broker) if key[1] == group]
    latest = {}
    for key, value in mine:
        latest[key] = value
    assert set(latest) == {
        ("offset", group, topic_name, 0),
        ("offset", group, topic_name, 1),
        ("group", group),
    }, mine
    assert all(value is None for value in latest.values()), "the latest record is a tombstone"
    assert mine[-1] == (("group", group), None), "the group goes after its offsets"


@pytest.mark.skipif(
    os.environ.get("BROOK_INTEROP_SLOW") != "1",
    reason="waits for a one-minute offsets.retention.minutes; set BROOK_INTEROP_SLOW=1",
)
def test_offsets_expire_after_retention_and_stay_gone_after_restart(topic_name):
    with tempfile.TemporaryDirectory(prefix="brook-interop-retention-") as tmp:
        retention = Broker(
            Path(tmp) / "data",
            ["--offsets-retention-minutes", "1", "--offsets-retention-check-interval-ms", "500"],
        )
        retention.start()
        try:
            create_topic(retention, topic_name, 2)
            kept, expired = f"kept-{uuid.uuid4().hex[:8]}", f"expired-{uuid.uuid4().hex[:8]}"
            c = group_consumer(retention, expired)
            c.commit(offsets=[TopicPartition(topic_name, 0, 5)], asynchronous=False)
            c.close()
            live = group_consumer(retention, kept)
            live.subscribe([topic_name])
            settle([live], [2])
            live.commit(offsets=[TopicPartition(topic_name, 0, 7)], asynchronous=False)
            listed = admin(retention).list_consumer_groups(request_timeout=RESULT_TIMEOUT_S)
            assert {kept, expired} <= {g.group_id for g in listed.result().valid}
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                settle([live], [2], timeout_s=1)
                listed = admin(retention).list_consumer_groups(request_timeout=RESULT_TIMEOUT_S)
                if expired not in {g.group_id for g in listed.result().valid}:
                    break
                time.sleep(0.5)
            assert expired not in {g.group_id for g in listed.result().valid}
            # The stable group keeps the offsets of the topic it subscribes to.
            committed = live.committed([TopicPartition(topic_name, 0)], timeout=RESULT_TIMEOUT_S)
            assert committed[0].offset == 7
            live.close()
            retention.clients.clear()
            retention._groups_admin = None
            retention.restart()
            request = [ConsumerGroupTopicPartitions(expired)]
            listed = admin(retention).list_consumer_group_offsets(
                request, request_timeout=RESULT_TIMEOUT_S
            )
            offsets = [tp.offset for tp in listed[expired].result().topic_partitions]
            assert all(o < 0 for o in offsets), offsets
            groups = admin(retention).list_consumer_groups(request_timeout=RESULT_TIMEOUT_S)
            assert expired not in {g.group_id for g in groups.result().valid}
        finally:
            retention.clients.clear()
            retention._groups_admin = None
            if retention.running():
                assert retention.stop() == 0


def test_broker_logged_no_errors(broker):
    """Every group response encoded in its version (an encoding failure is logged as ERROR)."""
    output = broker.all_output()
    assert "ERROR" not in output and "cannot encode" not in output, output[-4000:]

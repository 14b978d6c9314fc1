"""Consumer groups against a real broker: confluent-kafka (librdkafka) and kafka-python group
consumers, committed offsets, group administration, and offsets that survive a restart.

Timeouts are short (6 s sessions, the broker's minimum; 100 ms heartbeats) so rebalances
finish in well under a second and the module stays fast.
"""

import time
import uuid

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer

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


def test_broker_logged_no_errors(broker):
    """Every group response encoded in its version (an encoding failure is logged as ERROR)."""
    output = broker.all_output()
    assert "ERROR" not in output and "cannot encode" not in output, output[-4000:]

"""A real 3-process cluster: unmodified clients against `brook server --voters ...`.

Every node is a quorum voter, the controller when it leads, and a broker; partitions are
replicated over all three. The tests kill and stop nodes as an operator or a crash would and
check what a user checks: every acknowledged record is there once and in order, and clients
that start from any node find the leaders.
"""

import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

RESULT_TIMEOUT_S = 30
# How long a failover may take at most here before the test fails (the figure it measures
# is printed and kept in docs/benchmarks.md).
FAILOVER_MAX_S = 10


def wait_until(what, done, timeout=RESULT_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while True:
        value = done()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def admin_of(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def wait_serving(cluster, nodes):
    """Waits until the metadata lists `nodes` brokers (they registered and are unfenced)."""
    admin = admin_of(cluster.bootstrap)

    def listed():
        try:
            return len(admin.list_topics(timeout=2).brokers) == nodes
        except Exception:
            return False

    wait_until(f"{nodes} brokers serve", listed)


def create_topic(cluster, name, partitions=3, configs=None):
    admin = admin_of(cluster.bootstrap)
    topic = NewTopic(name, num_partitions=partitions, replication_factor=3, config=configs or {})
    admin.create_topics([topic])[name].result(timeout=RESULT_TIMEOUT_S)

    def in_sync():
        meta = admin.list_topics(name, timeout=2).topics[name]
        parts = meta.partitions.values()
        return len(parts) == partitions and all(len(p.isrs) == 3 for p in parts)

    wait_until(f"{name}'s replicas are in sync", in_sync)


def leaders(cluster, name):
    meta = admin_of(cluster.bootstrap).list_topics(name, timeout=5).topics[name]
    return {p.id: p.leader for p in meta.partitions.values()}


def read_all(bootstrap, name, partitions, expected):
    """Every record of the topic, per partition, read until `expected` records came."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(name, p, 0) for p in range(partitions)])
    got = {p: [] for p in range(partitions)}
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while sum(map(len, got.values())) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        got[msg.partition()].append(msg.value().decode())
    consumer.close()
    return got


class Acked:
    """The delivery reports of a producer: acknowledged values per partition, errors, and
    when each partition's acknowledgements came."""

    def __init__(self):
        self.values = {}
        self.errors = []
        self.times = {}

    def __call__(self, err, msg):
        if err is not None:
            self.errors.append(err)
            return
        self.values.setdefault(msg.partition(), []).append(msg.value().decode())
        self.times.setdefault(msg.partition(), []).append(time.monotonic())


def outage(acked, since):
    """The longest gap between acknowledgements of one partition after `since`."""
    longest = 0.0
    for times in acked.times.values():
        before = [t for t in times if t <= since]
        last = before[-1] if before else since
        for t in (t for t in times if t > since):
            longest = max(longest, t - last)
            last = t
    return longest


def produce_through(
    cluster, name, count, during, idempotent=True, partitions=3, producer_config=None
):
    """Produces `count` records (acks=all) round the partitions, a few milliseconds apart,
    calling `during()` once a third of them are sent; returns the delivery reports and when
    `during` ran. `producer_config` adds to (or overrides) the producer's settings."""
    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "acks": "all",
            "enable.idempotence": idempotent,
            "linger.ms": 5,
            "message.timeout.ms": 60_000,
            "retry.backoff.ms": 50,
            "topic.metadata.refresh.interval.ms": 1_000,
            **(producer_config or {}),
        }
    )
    acked = Acked()
    event_at = None
    for i in range(count):
        producer.produce(name, value=f"v{i}".encode(), partition=i % partitions, on_delivery=acked)
        producer.poll(0)
        time.sleep(0.002)
        if i == count // 3:
            event_at = time.monotonic()
            during()
    assert producer.flush(90) == 0, "every record is delivered or failed"
    return acked, event_at


def test_cluster_sigkill_of_a_leader_loses_no_acknowledged_record(cluster, topic_name):
    wait_serving(cluster, 3)
    create_topic(cluster, topic_name, configs={"min.insync.replicas": "2"})
    victim = leaders(cluster, topic_name)[0]
    acked, killed_at = produce_through(
        cluster, topic_name, 3_000, lambda: cluster.nodes[victim].kill()
    )
    assert not acked.errors, f"delivery errors: {acked.errors[:5]}"
    # The failover time: the longest any partition went without an acknowledgement once its
    # leader or a follower died (records are sent every few milliseconds throughout).
    failover = outage(acked, killed_at)
    print(f"\nfailover after SIGKILL of the leader: {failover * 1000:.0f} ms")
    assert failover < FAILOVER_MAX_S
    assert leaders(cluster, topic_name)[0] != victim
    got = read_all(cluster.bootstrap, topic_name, 3, 3_000)
    for partition in range(3):
        # Idempotence and acks=all: each acknowledged record once, in the order sent.
        assert got[partition] == acked.values[partition], f"partition {partition}"
    cluster.nodes[victim].start()
    wait_serving(cluster, 3)


def test_cluster_sigterm_of_a_leader_gives_producers_no_error(cluster, topic_name):
    wait_serving(cluster, 3)
    create_topic(cluster, topic_name, configs={"min.insync.replicas": "2"})
    victim = leaders(cluster, topic_name)[1]

    took = []

    def stop():
        began = time.monotonic()
        assert cluster.nodes[victim].stop() == 0, "a node stops cleanly on SIGTERM"
        took.append(time.monotonic() - began)

    acked, stopped_at = produce_through(cluster, topic_name, 2_000, stop)
    print(f"\nSIGTERM to exit (controlled shutdown): {took[0] * 1000:.0f} ms")
    assert not acked.errors, f"delivery errors: {acked.errors[:5]}"
    # A controlled shutdown: the node handed its leadership over before it exited (it did
    # not run into its timeout), so the survivors already show it leading nothing and out
    # of every ISR.
    log = cluster.nodes[victim].stderr_text()
    assert "controlled shutdown: leadership handed over" in log, log
    meta = admin_of(cluster.bootstrap).list_topics(topic_name, timeout=5).topics[topic_name]
    for p in meta.partitions.values():
        assert p.leader != victim and victim not in p.isrs, (p.id, p.leader, p.isrs)
    print(f"\nlongest wait after SIGTERM of the leader: {outage(acked, stopped_at) * 1000:.0f} ms")
    got = read_all(cluster.bootstrap, topic_name, 3, 2_000)
    assert {p: got[p] for p in range(3)} == {p: acked.values[p] for p in range(3)}
    cluster.nodes[victim].start()
    wait_serving(cluster, 3)


def test_cluster_clients_bootstrapped_from_a_follower_find_the_leaders(cluster, topic_name):
    wait_serving(cluster, 3)
    create_topic(cluster, topic_name, partitions=1)
    leader = leaders(cluster, topic_name)[0]
    follower = next(n for n in cluster.nodes if n != leader)
    bootstrap = cluster.nodes[follower].bootstrap
    lines = "".join(f"k{i}:kcat-{i}\n" for i in range(20))
    subprocess.run(
        ["kcat", "-b", bootstrap, "-P", "-t", topic_name, "-K:", "-X", "acks=all"],
        input=lines.encode(),
        check=True,
        timeout=RESULT_TIMEOUT_S,
    )
    from kafka import KafkaConsumer, KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(20):
        producer.send(topic_name, f"python-{i}".encode()).get(timeout=RESULT_TIMEOUT_S)
    producer.close()
    out = subprocess.run(
        ["kcat", "-b", bootstrap, "-C", "-t", topic_name, "-e", "-q", "-f", "%s\n"],
        capture_output=True,
        check=True,
        timeout=RESULT_TIMEOUT_S,
    ).stdout.decode()
    want = [f"kcat-{i}" for i in range(20)] + [f"python-{i}" for i in range(20)]
    assert out.split() == want
    consumer = KafkaConsumer(
        topic_name,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5_000,
    )
    assert [m.value.decode() for m in consumer] == want
    consumer.close()


def produce_acked(cluster, name, count, partitions=3):
    """Produces `count` records (acks=all, idempotent) round the partitions; the values per
    partition, each acknowledged."""
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    acked = Acked()
    for i in range(count):
        producer.produce(name, value=f"v{i}".encode(), partition=i % partitions, on_delivery=acked)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not acked.errors, acked.errors[:5]
    return acked.values


def commit_sync(consumer):
    """Commits the consumed positions, retrying the errors a moving coordinator gives."""
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while True:
        try:
            consumer.commit(asynchronous=False)
            return
        except KafkaException as err:
            assert time.monotonic() < deadline, f"commit kept failing: {err}"
            # Polling lets a rejoin run; every record was consumed already.
            assert consumer.poll(0.2) is None


def test_cluster_group_consumer_keeps_its_offsets_when_the_coordinator_is_killed(
    cluster, topic_name
):
    wait_serving(cluster, 3)
    create_topic(cluster, topic_name)
    produced = produce_acked(cluster, topic_name, 600)
    group = f"{topic_name}-group"
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
        }
    )
    consumer.subscribe([topic_name])
    got = {p: [] for p in range(3)}

    def consume(until):
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        while sum(map(len, got.values())) < until:
            assert time.monotonic() < deadline, f"consumed {sum(map(len, got.values()))}"
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got[msg.partition()].append(msg.value().decode())

    consume(300)
    commit_sync(consumer)
    admin = admin_of(cluster.bootstrap)
    described = admin.describe_consumer_groups([group])[group].result(timeout=RESULT_TIMEOUT_S)
    coordinator = described.coordinator.id
    assert len(described.members) == 1
    cluster.nodes[coordinator].kill()
    # The consumer finds the next leader of its __consumer_offsets partition and goes on from
    # what it committed there: nothing is read twice, nothing is skipped.
    consume(600)
    commit_sync(consumer)
    assert got == produced
    admin = admin_of(cluster.bootstrap)  # kept: a dropped client never completes its futures
    after = admin.describe_consumer_groups([group])[group].result(timeout=RESULT_TIMEOUT_S)
    assert after.coordinator.id != coordinator
    consumer.close()
    # The group's offsets are where the consumer left them, at the new coordinator.
    checker = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
    offsets = checker.committed(
        [TopicPartition(topic_name, p) for p in range(3)], timeout=RESULT_TIMEOUT_S
    )
    checker.close()
    assert {tp.partition: tp.offset for tp in offsets} == {p: 200 for p in range(3)}
    cluster.nodes[coordinator].start()
    wait_serving(cluster, 3)


def test_cluster_produce_below_min_insync_replicas_is_refused_and_loses_nothing(
    cluster, topic_name
):
    from kafka import KafkaProducer
    from kafka.errors import NotEnoughReplicasError

    wait_serving(cluster, 3)
    create_topic(cluster, topic_name, partitions=1, configs={"min.insync.replicas": "3"})
    produced = produce_acked(cluster, topic_name, 50, partitions=1)
    leader = leaders(cluster, topic_name)[0]
    victim = next(n for n in cluster.nodes if n != leader)
    cluster.nodes[victim].kill()

    def shrunk():
        meta = admin_of(cluster.bootstrap).list_topics(topic_name, timeout=2)
        return len(meta.topics[topic_name].partitions[0].isrs) == 2

    wait_until("the ISR drops the killed follower", shrunk)
    producer = KafkaProducer(
        bootstrap_servers=cluster.nodes[leader].bootstrap, acks="all", retries=0
    )
    with pytest.raises(NotEnoughReplicasError):
        producer.send(topic_name, b"refused").get(timeout=RESULT_TIMEOUT_S)
    producer.close()
    cluster.nodes[victim].start()
    wait_serving(cluster, 3)

    def in_sync():
        meta = admin_of(cluster.bootstrap).list_topics(topic_name, timeout=2)
        return len(meta.topics[topic_name].partitions[0].isrs) == 3

    wait_until("the restarted follower rejoins the ISR", in_sync)
    more = produce_acked(cluster, topic_name, 10, partitions=1)
    got = read_all(cluster.bootstrap, topic_name, 1, 60)
    assert got[0] == produced[0] + [f"v{i}" for i in range(10)]
    assert more[0] == [f"v{i}" for i in range(10)]


def test_cluster_delete_topics_at_a_follower_removes_the_topic_everywhere(cluster, topic_name):
    wait_serving(cluster, 3)
    create_topic(cluster, topic_name, partitions=2)
    acked = produce_acked(cluster, topic_name, 20, partitions=2)
    assert sum(len(v) for v in acked.values()) == 20
    leader = leaders(cluster, topic_name)[0]
    follower = next(n for n in cluster.nodes if n != leader)
    admin = admin_of(cluster.nodes[follower].bootstrap)
    admin.delete_topics([topic_name])[topic_name].result(timeout=RESULT_TIMEOUT_S)
    for n, node in cluster.nodes.items():
        node_admin = admin_of(node.bootstrap)
        wait_until(
            f"node {n} no longer lists {topic_name}",
            lambda: topic_name not in node_admin.list_topics(timeout=5).topics,
        )
        wait_until(
            f"node {n} removed {topic_name}'s partition directories",
            lambda: not any(node.data_dir.glob(f"{topic_name}-*")),
        )
    # Deleting it again names the problem; a topic of the same name starts empty.
    with pytest.raises(KafkaException) as refused:
        admin.delete_topics([topic_name])[topic_name].result(timeout=RESULT_TIMEOUT_S)
    assert refused.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    create_topic(cluster, topic_name, partitions=1)
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": f"{topic_name}-reader",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic_name, 0, 0)])
    assert consumer.consume(num_messages=10, timeout=3) == []
    low, high = consumer.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
    consumer.close()
    assert (low, high) == (0, 0)


def test_cluster_create_partitions_at_a_follower_adds_replicated_partitions(cluster, topic_name):
    from confluent_kafka.admin import NewPartitions

    wait_serving(cluster, 3)
    create_topic(cluster, topic_name, partitions=1)
    leader = leaders(cluster, topic_name)[0]
    follower = next(n for n in cluster.nodes if n != leader)
    admin = admin_of(cluster.nodes[follower].bootstrap)
    grow = NewPartitions(topic_name, 3)
    admin.create_partitions([grow])[topic_name].result(timeout=RESULT_TIMEOUT_S)
    # Given replicas for the fourth: node 2 leads it.
    given = NewPartitions(topic_name, 4, replica_assignment=[[2, 3, 1]])
    admin.create_partitions([given])[topic_name].result(timeout=RESULT_TIMEOUT_S)

    def in_sync():
        meta = admin.list_topics(topic_name, timeout=2).topics[topic_name]
        parts = meta.partitions
        return len(parts) == 4 and all(len(p.isrs) == 3 for p in parts.values()) and parts

    parts = wait_until("four partitions, all in sync", in_sync)
    assert parts[3].replicas == [2, 3, 1] and parts[3].leader == 2
    acked = produce_acked(cluster, topic_name, 40, partitions=4)
    assert [len(acked[p]) for p in range(4)] == [10, 10, 10, 10]
    assert read_all(cluster.bootstrap, topic_name, 4, 40) == acked
    # Fewer partitions than now is refused with Kafka's error.
    with pytest.raises(KafkaException) as refused:
        fewer = NewPartitions(topic_name, 2)
        admin.create_partitions([fewer])[topic_name].result(timeout=RESULT_TIMEOUT_S)
    assert refused.value.args[0].code() == KafkaError.INVALID_PARTITIONS


def test_cluster_config_changes_at_a_follower_reach_every_node(cluster, topic_name):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    wait_serving(cluster, 3)
    create_topic(cluster, topic_name, partitions=1, configs={"retention.ms": "3600000"})
    leader = leaders(cluster, topic_name)[0]
    follower = next(n for n in cluster.nodes if n != leader)
    admin = admin_of(cluster.nodes[follower].bootstrap)
    # IncrementalAlterConfigs (confluent-kafka): SET one, the other kept.
    entry = ConfigEntry(
        "min.insync.replicas", "3", incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource("topic", topic_name, incremental_configs=[entry])
    admin.incremental_alter_configs([resource])[resource].result(timeout=RESULT_TIMEOUT_S)

    def configs_at(node, *keys):
        node_admin = admin_of(node.bootstrap)
        wanted = ConfigResource("topic", topic_name)
        found = node_admin.describe_configs([wanted])[wanted].result(timeout=RESULT_TIMEOUT_S)
        return tuple(found[k].value for k in keys)

    for n, node in cluster.nodes.items():
        got = configs_at(node, "min.insync.replicas", "retention.ms")
        assert got == ("3", "3600000"), f"node {n}: {got}"
    # AlterConfigs (confluent-kafka's legacy call): the whole set replaced, so
    # min.insync.replicas returns to its default.
    whole = ConfigResource("topic", topic_name, set_config={"retention.ms": "7200000"})
    admin.alter_configs([whole])[whole].result(timeout=RESULT_TIMEOUT_S)
    for n, node in cluster.nodes.items():
        got = configs_at(node, "min.insync.replicas", "retention.ms")
        assert got == ("1", "7200000"), f"node {n}: {got}"


def test_cluster_delete_records_moves_the_log_start_on_every_replica(cluster, topic_name):
    wait_serving(cluster, 3)
    create_topic(cluster, topic_name, partitions=1)
    acked = produce_acked(cluster, topic_name, 20, partitions=1)
    assert len(acked[0]) == 20
    admin = admin_of(cluster.bootstrap)
    futures = admin.delete_records(
        [TopicPartition(topic_name, 0, 12)], request_timeout=RESULT_TIMEOUT_S
    )
    [deleted] = futures.values()
    assert deleted.result(timeout=RESULT_TIMEOUT_S).low_watermark == 12
    # Every replica follows: a record acknowledged with acks=all after the delete came to
    # the followers in a fetch answer that carried the leader's new log start, so once the
    # leader is killed the new one starts at 12 too.
    assert len(produce_acked(cluster, topic_name, 1, partitions=1)[0]) == 1
    leader = leaders(cluster, topic_name)[0]
    cluster.nodes[leader].kill()
    try:
        wait_until(
            "a new leader",
            lambda: leaders(cluster, topic_name)[0] not in (leader, -1),
        )
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "unused"})

        def watermarks():
            # A new leader answers OFFSET_NOT_AVAILABLE until its high watermark caught up.
            try:
                return consumer.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=5)
            except KafkaException as err:
                assert err.args[0].code() == KafkaError.OFFSET_NOT_AVAILABLE, err
                return None

        try:
            marks = wait_until("the new leader's watermarks", watermarks)
        finally:
            consumer.close()
        assert marks == (12, 21)
    finally:
        cluster.nodes[leader].start()
        wait_serving(cluster, 3)


def brook_cluster_describe(bootstrap):
    from conftest import BROOK_BIN

    out = subprocess.run(
        [str(BROOK_BIN), "cluster", "describe", "--bootstrap", bootstrap],
        capture_output=True,
        timeout=RESULT_TIMEOUT_S,
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def test_cluster_describe_names_the_controller_brokers_and_troubled_partitions(
    cluster, topic_name
):
    wait_serving(cluster, 3)
    create_topic(cluster, topic_name, partitions=3)
    # A topic that needs every replica in sync: a replica that leaves its ISR is eligible
    # (KIP-966's ELR), which describe shows.
    strict = f"{topic_name}-strict"
    create_topic(cluster, strict, partitions=1, configs={"min.insync.replicas": "3"})
    leader = leaders(cluster, topic_name)[0]
    follower = next(n for n in cluster.nodes if n != leader)
    text = brook_cluster_describe(cluster.nodes[follower].bootstrap)
    first = text.splitlines()[0]
    controller = int(first.split("Controller: ")[1].split("\t")[0])
    assert controller in cluster.nodes and first.endswith("Brokers: 3"), text
    for n, node in cluster.nodes.items():
        assert f"\tBroker: {n}\t{node.bootstrap}\t" in text, text
    mine = [line for line in text.splitlines() if f"Topic: {topic_name}\t" in line]
    assert len(mine) == 3 and not any("under-replicated" in line for line in mine), text
    # A node down: it leaves the list once fenced, its partitions under-replicated once the
    # ISR shrinks.
    down = next(n for n in cluster.nodes if n not in (follower, controller))
    cluster.nodes[down].kill()
    try:
        def flagged():
            text = brook_cluster_describe(cluster.nodes[follower].bootstrap)
            mine = [line for line in text.splitlines() if f"Topic: {topic_name}\t" in line]
            fenced = text.splitlines()[0].endswith("Brokers: 2")
            return fenced and all(line.endswith("under-replicated") for line in mine) and text

        text = wait_until("the node is fenced and its partitions under-replicated", flagged)
        assert f"\tBroker: {down}\t" not in text, text
        strict_line = next(line for line in text.splitlines() if f"Topic: {strict}\t" in line)
        assert f"\tElr: {down}\t" in strict_line, strict_line
    finally:
        cluster.nodes[down].start()
        wait_serving(cluster, 3)


def test_cluster_elect_leaders_moves_leadership_back_to_the_preferred_replica(cluster, topic_name):
    from confluent_kafka import ElectionType

    wait_serving(cluster, 3)
    create_topic(cluster, topic_name, partitions=1)
    meta = admin_of(cluster.bootstrap).list_topics(topic_name, timeout=5).topics[topic_name]
    preferred = meta.partitions[0].replicas[0]
    assert meta.partitions[0].leader == preferred
    # The preferred leader dies and comes back: another replica leads meanwhile.
    cluster.nodes[preferred].kill()
    wait_until("another replica leads", lambda: leaders(cluster, topic_name)[0] not in (preferred, -1))
    cluster.nodes[preferred].start()
    wait_serving(cluster, 3)

    def back_in_sync():
        p = admin_of(cluster.bootstrap).list_topics(topic_name, timeout=5).topics[topic_name]
        return len(p.partitions[0].isrs) == 3

    wait_until("the preferred replica is back in sync", back_in_sync)
    assert leaders(cluster, topic_name)[0] != preferred
    # ElectLeaders at a follower of the partition (not the controller's business who asks).
    follower = next(n for n in cluster.nodes if n != preferred)
    admin = admin_of(cluster.nodes[follower].bootstrap)
    tp = TopicPartition(topic_name, 0)
    result = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=RESULT_TIMEOUT_S)
    assert result[tp] is None, result
    assert leaders(cluster, topic_name)[0] == preferred
    # Asked again, nothing needs electing.
    again = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=RESULT_TIMEOUT_S)
    assert again[tp] is not None and again[tp].code() == KafkaError.ELECTION_NOT_NEEDED, again
    # Records produced now go to the preferred leader and are there for every reader.
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(10):
        producer.produce(topic_name, value=f"e{i}".encode(), partition=0)
    assert producer.flush(30) == 0
    got = read_all(cluster.bootstrap, topic_name, 1, 10)
    assert got[0] == [f"e{i}" for i in range(10)]


def test_cluster_java_client_bootstrapped_from_one_node_finds_the_cluster_and_its_leaders(cluster):
    """The Java client (kafka-clients 4.x, built as in test_java.py) from one node only:
    describeCluster, describeMetadataQuorum (DescribeQuorum), an RF 3 topic whose leaders
    are spread over the nodes, and records produced and read through those leaders."""
    from test_java import RUN_TIMEOUT_S, java_command

    wait_serving(cluster, 3)
    node = next(iter(cluster.nodes.values()))
    cmd = [*java_command(), "--cluster", node.bootstrap, "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "PASS: every check passed" in proc.stdout, output
    assert "describeMetadataQuorum" in proc.stdout, output



def test_cluster_sigkill_of_the_controller_s_node_fails_over_with_a_short_election_timeout():
    """A cluster started with --controller-quorum-election-timeout-ms 300: SIGKILL of the
    controller's node (a partition leader too) mid-stream — the voters elect a new quorum
    leader, which fences the dead node and elects new partition leaders; every acknowledged
    record is read back once and in order, and the restarted node serves again."""
    import tempfile

    from conftest import Cluster

    extra = ["--controller-quorum-election-timeout-ms", "300"]
    with tempfile.TemporaryDirectory(prefix="brook-election-") as tmp:
        cluster = Cluster(tmp, 3, extra)
        cluster.start()
        try:
            wait_serving(cluster, 3)
            name = "controller-killed"
            create_topic(cluster, name, configs={"min.insync.replicas": "2"})
            admin = admin_of(cluster.bootstrap)
            victim = admin.describe_cluster().result().controller.id
            # Three partitions over three nodes: each node, the controller's too, leads one.
            assert victim in leaders(cluster, name).values()
            acked, killed_at = produce_through(
                cluster, name, 3_000, lambda: cluster.nodes[victim].kill()
            )
            assert not acked.errors, f"delivery errors: {acked.errors[:5]}"
            took = outage(acked, killed_at) * 1000
            print(f"\nfailover after SIGKILL of the controller: {took:.0f} ms")
            survivor = next(n for n in cluster.nodes if n != victim)
            survivor_admin = admin_of(f"127.0.0.1:{cluster.nodes[survivor].port}")
            new_controller = wait_until(
                "a new controller",
                lambda: (lambda c: c if c not in (None, victim) else None)(
                    survivor_admin.describe_cluster().result().controller.id
                ),
            )
            assert new_controller in cluster.nodes
            got = read_all(cluster.bootstrap, name, 3, 3_000)
            for partition in range(3):
                assert got[partition] == acked.values[partition], f"partition {partition}"
            cluster.nodes[victim].start()
            wait_serving(cluster, 3)
        finally:
            for b in cluster.nodes.values():
                if b.proc is not None:
                    b.stop()

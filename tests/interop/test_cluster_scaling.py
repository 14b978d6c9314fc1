"""Online scaling of a real cluster: a node that is not a voter joins three running
`brook server` voters with no restart of theirs, and takes its share of new replicas."""

import subprocess
import threading

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import NewTopic

from test_cluster import (
    Acked,
    admin_of,
    create_topic,
    produce_through,
    read_all,
    wait_serving,
    wait_until,
)


def test_cluster_a_fourth_node_joins_without_restarts_and_hosts_replicas(cluster, topic_name):
    wait_serving(cluster, 3)
    pids = {n: b.proc.pid for n, b in cluster.nodes.items()}
    new = cluster.add_node()
    wait_serving(cluster, 4)
    assert {n: cluster.nodes[n].proc.pid for n in pids} == pids, "no voter restarted"
    # Clients that know only the new node find the whole cluster through it.
    only_new = cluster.nodes[new].bootstrap
    brokers = admin_of(only_new).list_topics(timeout=5).brokers
    assert sorted(brokers) == [1, 2, 3, new]
    create_topic(cluster, topic_name, partitions=4)
    meta = admin_of(only_new).list_topics(topic_name, timeout=5).topics[topic_name]
    hosted = [p.id for p in meta.partitions.values() if new in p.replicas]
    assert len(hosted) == 3, f"three of four RF=3 partitions on node {new}: {meta.partitions}"
    assert new in {p.leader for p in meta.partitions.values()}, "it leads one"
    producer = Producer({"bootstrap.servers": only_new, "acks": "all", "linger.ms": 5})
    acked = Acked()
    for i in range(400):
        producer.produce(topic_name, value=f"v{i}".encode(), partition=i % 4, on_delivery=acked)
    assert producer.flush(30) == 0
    assert not acked.errors, acked.errors[:5]
    got = read_all(only_new, topic_name, 4, 400)
    for partition in range(4):
        assert got[partition] == acked.values[partition], f"partition {partition}"
    # Its replicas are in sync on the others' view too.
    meta = admin_of(cluster.nodes[1].bootstrap).list_topics(topic_name, timeout=5)
    for p in meta.topics[topic_name].partitions.values():
        assert sorted(p.isrs) == sorted(p.replicas), p


def test_cluster_java_client_sees_the_observer_and_moves_a_partition_onto_it(cluster):
    """Run after the fourth node joined: the Java client (kafka-clients 4.x) bootstrapped
    from that node finds four brokers, three voters and one observer in DescribeQuorum, and
    moves a partition onto a broker it was not on with alterPartitionReassignments, watching
    listPartitionReassignments until the move completes (kafka-reassign-partitions' calls)."""
    from test_java import RUN_TIMEOUT_S, java_command

    wait_serving(cluster, 4)
    new = max(cluster.nodes)
    cmd = [*java_command(), "--cluster", cluster.nodes[new].bootstrap, "4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "PASS: every check passed" in proc.stdout, output
    assert "3 voters, 1 observers" in proc.stdout, output
    assert "moved; listPartitionReassignments empty" in proc.stdout, output


def brook_cluster(bootstrap, *args):
    from conftest import BROOK_BIN

    out = subprocess.run(
        [str(BROOK_BIN), "cluster", *args, "--bootstrap", bootstrap],
        capture_output=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    return out.stdout.decode()


def brook_cluster_fails(bootstrap, *args):
    """`brook cluster ARGS` that must fail: its error output."""
    from conftest import BROOK_BIN

    out = subprocess.run(
        [str(BROOK_BIN), "cluster", *args, "--bootstrap", bootstrap],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode != 0, out.stdout.decode()
    return out.stderr.decode()


def produce_while(cluster, name, count, outputs, *command):
    """Produces `count` records over four partitions while `brook cluster COMMAND` runs in
    a thread started a third of the way in; its output goes to `outputs`."""
    worker = threading.Thread(
        target=lambda: outputs.append(brook_cluster(cluster.bootstrap, *command))
    )
    acked, _ = produce_through(cluster, name, count, worker.start, partitions=4)
    worker.join(240)
    assert outputs, f"brook cluster {' '.join(command)} did not finish"
    return acked


def throttle_of(cluster, broker):
    """The leader.replication.throttled.rate broker `broker` reports when set dynamically
    (value, source), else None."""
    from confluent_kafka.admin import ConfigResource, ConfigSource

    resource = ConfigResource("BROKER", broker)
    admin = admin_of(cluster.bootstrap)  # kept until the answer came
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    entry = configs["leader.replication.throttled.rate"]
    dynamic = (ConfigSource.DYNAMIC_BROKER_CONFIG, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
    return (entry.value, ConfigSource(entry.source)) if ConfigSource(entry.source) in dynamic else None


def test_cluster_replication_throttles_are_dynamic_broker_configs(cluster):
    """An admin client sets a broker's replication throttle (kafka-configs --entity-type
    brokers --entity-name 1), that broker reports it as its own dynamic config and the
    others do not, and it is deleted again; a static broker config is refused with a message
    saying so. (`brook cluster rebalance --throttle` sets the every-broker default, below.)"""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource

    wait_serving(cluster, len(cluster.nodes))
    admin = admin_of(cluster.bootstrap)

    def alter(name, op, value=None, resource="1"):
        entry = ConfigEntry(name, value, incremental_operation=op)
        target = ConfigResource("BROKER", resource, incremental_configs=[entry])
        return admin.incremental_alter_configs([target])[target].result(timeout=30)

    alter("leader.replication.throttled.rate", AlterConfigOpType.SET, "1048576")
    expected = ("1048576", ConfigSource.DYNAMIC_BROKER_CONFIG)
    assert wait_until("broker 1 has it", lambda: throttle_of(cluster, "1")) == expected
    assert throttle_of(cluster, "2") is None, "set for broker 1 only"
    alter("leader.replication.throttled.rate", AlterConfigOpType.DELETE)
    wait_until("it is gone", lambda: throttle_of(cluster, "1") is None)
    try:
        alter("num.partitions", AlterConfigOpType.SET, "3")
        raise AssertionError("a static broker config was changed")
    except KafkaException as err:
        assert "static" in str(err), err


def replicas_by_node(bootstrap, names):
    counts = {}
    meta = admin_of(bootstrap).list_topics(timeout=5)
    for name in names:
        for p in meta.topics[name].partitions.values():
            for r in p.replicas:
                counts[r] = counts.get(r, 0) + 1
    return counts


def test_cluster_rebalance_moves_replicas_onto_a_new_node_under_a_producer(cluster, topic_name):
    """Run after the test above (the module's cluster then has a fourth node): a topic
    created before it holds nothing there; `brook cluster rebalance` moves its share there
    while a producer writes, and every acknowledged record is there once, in order. Then
    `brook cluster remove-node` drains the new node again under the same producer."""
    wait_serving(cluster, 4)
    new = max(cluster.nodes)
    # Created on the three voters only: replicas assigned explicitly.
    admin = admin_of(cluster.bootstrap)
    assignment = [[1, 2, 3], [2, 3, 1], [3, 1, 2], [1, 3, 2]]
    topic = NewTopic(
        topic_name, num_partitions=4, replication_factor=-1, replica_assignment=assignment,
        config={"min.insync.replicas": "2"},
    )
    admin.create_topics([topic])[topic_name].result(timeout=30)
    wait_until("the topic is in sync", lambda: all(
        len(p.isrs) == 3
        for p in admin.list_topics(topic_name, timeout=2).topics[topic_name].partitions.values()
    ))
    before = replicas_by_node(cluster.bootstrap, [topic_name])
    assert new not in before
    dry = brook_cluster(cluster.bootstrap, "rebalance", "--dry-run")
    assert "-> " in dry and f"{topic_name}-" in dry, dry
    assert replicas_by_node(cluster.bootstrap, [topic_name]) == before, "dry run moved nothing"

    outputs = []
    acked = produce_while(cluster, topic_name, 3_000, outputs, "rebalance", "--throttle", "50000000")
    print(f"\nbrook cluster rebalance under a producer:\n{outputs[0]}")
    assert "done:" in outputs[0], outputs[0]
    assert not acked.errors, acked.errors[:5]
    after = replicas_by_node(cluster.bootstrap, [topic_name])
    assert after.get(new, 0) >= 2, f"the new node got its share: {after}\n{outputs[0]}"
    got = read_all(cluster.bootstrap, topic_name, 4, 3_000)
    for partition in range(4):
        assert got[partition] == acked.values[partition], f"partition {partition}"
    text = brook_cluster(cluster.bootstrap, "describe")
    assert "Reassigning: 0" in text, text
    assert "throttled to 50000000 bytes/s" in outputs[0], outputs[0]
    assert throttle_of(cluster, "1") is None, "the throttle is removed once the moves are done"

    # Drained again: nothing of any topic stays on the node.
    outputs = []
    acked = produce_while(cluster, topic_name, 1_500, outputs, "remove-node", str(new))
    assert f"node {new} holds no replica" in outputs[0], outputs[0]
    assert not acked.errors, acked.errors[:5]
    names = [n for n in admin.list_topics(timeout=5).topics]
    assert new not in replicas_by_node(cluster.bootstrap, names), names
    got = read_all(cluster.bootstrap, topic_name, 4, 4_500)
    total = {p: len(v) for p, v in got.items()}
    assert sum(total.values()) == 4_500, total
    # Stopped and unregistered, it leaves the cluster: the voters list three brokers again.
    # (The consumer above made __consumer_offsets, spread over four nodes: drained first.)
    brook_cluster(cluster.bootstrap, "remove-node", str(new))
    assert "stop it first" in brook_cluster_fails(cluster.bootstrap, "unregister", str(new))
    assert cluster.nodes[new].stop() == 0
    wait_serving(cluster, 3)
    out = brook_cluster(cluster.nodes[1].bootstrap, "unregister", str(new))
    assert f"node {new} unregistered" in out, out
    again = brook_cluster_fails(cluster.nodes[1].bootstrap, "unregister", str(new))
    assert "not registered" in again, again
    del cluster.nodes[new]

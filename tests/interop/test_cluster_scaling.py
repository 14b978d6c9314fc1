"""Online scaling of a real cluster: a node that is not a voter joins three running
`brook server` voters with no restart of theirs, and takes its share of new replicas."""

from confluent_kafka import Producer

from test_cluster import Acked, admin_of, create_topic, read_all, wait_serving


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

"""Consumer groups: members split a topic's partitions and read every record exactly once;
a restarted member resumes after the last commit; asynchronous and explicit commits."""

import threading
import time

import brook
from conftest import group_name


def produce(bootstrap, topic, count, partitions=None):
    with brook.Producer(bootstrap, linger_ms=2) as producer:
        for i in range(count):
            producer.send(
                topic,
                f"v{i}".encode(),
                key=f"k{i}".encode(),
                partition=None if partitions is None else i % partitions,
            )


def test_three_members_split_six_partitions_and_read_everything_once(broker, make_topic):
    topic = make_topic(partitions=6)
    produce(broker.bootstrap, topic, 3000)
    group = group_name()
    seen = [[] for _ in range(3)]
    assignments = [set() for _ in range(3)]
    stop = threading.Event()
    errors = []

    def member(i):
        try:
            with brook.Consumer(
                broker.bootstrap,
                group_id=group,
                topics=[topic],
                auto_offset_reset="earliest",
                enable_auto_commit=False,
            ) as consumer:
                while not stop.is_set():
                    for record in consumer.poll(timeout=0.2):
                        seen[i].append((record.partition, record.offset, record.value))
                    if seen[i]:
                        consumer.commit()
                    assignments[i] = {tp.partition for tp in consumer.assignment()}
        except Exception as err:  # reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=member, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while sum(len(s) for s in seen) < 3000 and time.monotonic() < deadline and not errors:
        time.sleep(0.1)
    # Let the group settle with every member owning two partitions.
    settle = time.monotonic() + 20
    while time.monotonic() < settle and sorted(len(a) for a in assignments) != [2, 2, 2]:
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert sorted(len(a) for a in assignments) == [2, 2, 2]
    assert set().union(*assignments) == set(range(6))
    everything = [r for s in seen for r in s]
    # Rebalances while members join may re-deliver an uncommitted tail; the union is
    # exactly the 3000 records and, once settled, each partition was read by one member.
    assert {v for _, _, v in everything} == {f"v{i}".encode() for i in range(3000)}
    assert len(set(everything)) == 3000


def test_commit_then_restart_resumes_after_the_commit(broker, make_topic):
    topic = make_topic(partitions=2)
    produce(broker.bootstrap, topic, 100, partitions=2)
    group = group_name()
    options = dict(group_id=group, topics=[topic], auto_offset_reset="earliest", enable_auto_commit=False)
    first = []
    with brook.Consumer(broker.bootstrap, **options) as consumer:
        for record in consumer:
            first.append(record)
            if len(first) == 30:
                consumer.commit()
                break
        committed = consumer.committed()
    assert sum(o for o in committed.values()) == 30
    # Not committed beyond 30: the next member starts there, and nothing is lost.
    with brook.Consumer(broker.bootstrap, consumer_timeout_ms=2000, **options) as consumer:
        rest = list(consumer)
    assert len(rest) == 70
    firsts = {(r.partition, r.offset) for r in first}
    assert firsts.isdisjoint({(r.partition, r.offset) for r in rest})
    assert len(firsts | {(r.partition, r.offset) for r in rest}) == 100


def test_commit_explicit_offsets_and_asynchronously(broker, make_topic):
    topic = make_topic()
    produce(broker.bootstrap, topic, 10)
    group = group_name()
    tp = brook.TopicPartition(topic, 0)
    with brook.Consumer(broker.bootstrap, group_id=group, auto_offset_reset="earliest",
                        enable_auto_commit=False) as consumer:
        consumer.assign([tp])
        assert consumer.committed([tp]) == {tp: None}
        consumer.commit({(topic, 0): 4})
        assert consumer.committed([tp]) == {tp: 4}
        records = consumer.poll(timeout=5, max_records=3)
        assert [r.offset for r in records] == [0, 1, 2]
        future = consumer.commit(asynchronous=True)
        assert isinstance(future, brook.CommitFuture)
        future.result()
        assert consumer.committed([tp]) == {tp: 3}


def test_auto_commit_on_close(broker, make_topic):
    topic = make_topic()
    produce(broker.bootstrap, topic, 5)
    group = group_name()
    with brook.Consumer(broker.bootstrap, group_id=group, topics=[topic], auto_offset_reset="earliest",
                        consumer_timeout_ms=1500) as consumer:
        assert len(list(consumer)) == 5
    with brook.Consumer(broker.bootstrap, group_id=group, topics=[topic], auto_offset_reset="earliest",
                        consumer_timeout_ms=1500) as consumer:
        assert list(consumer) == []
        assert consumer.subscription() == [topic]

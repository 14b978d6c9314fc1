"""Kafka transactions on a real 3-process cluster, with confluent-kafka (librdkafka) clients.

A transaction's coordinator is the leader of its transactional.id's `__transaction_state`
partition; the COMMIT/ABORT markers of each partition of the transaction are written by
that partition's leader, so a transaction over partitions led by three nodes has two of
its markers written by nodes other than the coordinator, at its request. The coordinator's
state is replicated: when its node is SIGKILLed, the new leader of the partition loads it,
and the producer finds the new coordinator and carries on with the transaction it had open.

What a user checks: read_committed consumers see exactly the committed records (and, past
an aborted transaction, the records after it), read_uncommitted consumers see every record,
consume-transform-produce writes each output exactly once across the coordinator's crash,
and a zombie producer is fenced at partitions on every node. Every wait is bounded.
"""

import contextlib
import re
import time
from collections import Counter

import pytest
import wire
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic
from test_cluster import admin_of, leaders, wait_serving, wait_until
from test_transactions import (
    FENCED_CODES,
    RC,
    RU,
    TRANSACTION_STATE_TOPIC,
    TXN_TIMEOUT_S,
    initialized,
    plain_producer,
    read_values,
    send,
    send_and_flush,
    values,
)

RESULT_TIMEOUT_S = 30
OFFSETS_TOPIC = "__consumer_offsets"
# Partition p's replicas, the first the preferred leader: one leader per node.
SPREAD = [[1, 2, 3], [2, 3, 1], [3, 1, 2]]
# The whole consume-transform-produce run, the coordinator's failover included.
EOS_RUN_TIMEOUT_S = 90
API_FIND_COORDINATOR = 10
COORDINATOR_KEY_GROUP = 0
COORDINATOR_KEY_TRANSACTION = 1


# ---------------------------------------------------------------- helpers


@contextlib.contextmanager
def broker_logs_on_failure(cluster):
    """On a failure, prints each node's warnings, errors and transaction lines (pytest
    shows them with the failure) before the cluster fixture deletes the logs."""
    try:
        yield
    except BaseException:
        pattern = re.compile(r"WARN|ERROR|panicked|transaction|marker|txn", re.IGNORECASE)
        for n, node in cluster.nodes.items():
            lines = [line for line in node.all_output().splitlines() if pattern.search(line)]
            print(f"=== node {n}: {len(lines)} matching log lines, the last 60:")
            print("\n".join(lines[-60:]))
        raise


def create_spread_topic(cluster, name):
    """A topic of 3 partitions, RF 3, partition p led by node p + 1; waits until every
    replica is in sync."""
    admin = admin_of(cluster.bootstrap)
    topic = NewTopic(name, num_partitions=len(SPREAD), replica_assignment=SPREAD)
    admin.create_topics([topic])[name].result(timeout=RESULT_TIMEOUT_S)

    def in_sync():
        meta = admin.list_topics(name, timeout=2).topics[name]
        parts = meta.partitions.values()
        return len(parts) == 3 and all(len(p.isrs) == 3 for p in parts)

    wait_until(f"{name}'s replicas are in sync", in_sync)
    led = leaders(cluster, name)
    assert led == {0: 1, 1: 2, 2: 3}, f"each node leads one partition of {name}: {led}"


def java_string_hash(s):
    """Java's String.hashCode, a signed 32-bit int (for ASCII ids)."""
    h = 0
    for c in s:
        h = (31 * h + ord(c)) & 0xFFFFFFFF
    return h - 2**32 if h >= 2**31 else h


def coordinator_partition(key, partitions):
    """Kafka's partition of `__transaction_state` for a transactional id, or of
    `__consumer_offsets` for a group: abs(String.hashCode) modulo the partition count."""
    h = java_string_hash(key)
    return 0 if h == -(2**31) else abs(h) % partitions


def find_coordinator(node, key, key_type):
    """The node id a broker names as the coordinator of a transactional id (key type 1) or
    a group (key type 0), by FindCoordinator v1; None while it answers with an error."""
    body = wire.kstring(key) + bytes([key_type])
    with contextlib.closing(wire.connect(node)) as sock:
        sock.sendall(wire.request(API_FIND_COORDINATOR, 1, 11, body))
        cid, payload = wire.recv_response(sock)
    assert cid == 11
    r = wire.Reader(payload)
    r.take(">i")  # throttle time
    error = r.take(">h")
    r.string()  # error message
    node_id = r.take(">i")
    return node_id if error == 0 else None


def internal_topic_in_sync(cluster, name):
    """Every partition of an internal topic has 3 in-sync replicas (named in Metadata, so
    it is listed)."""
    try:
        meta = admin_of(cluster.bootstrap).list_topics(name, timeout=5).topics.get(name)
    except KafkaException:
        return False
    if meta is None or meta.error is not None or not meta.partitions:
        return False
    return all(len(p.isrs) == 3 and p.leader > 0 for p in meta.partitions.values())


def transaction_coordinator(cluster, transactional_id):
    """The node leading the id's `__transaction_state` partition, by Kafka's formula,
    checked against what a broker answers to FindCoordinator."""
    meta = admin_of(cluster.bootstrap).list_topics(TRANSACTION_STATE_TOPIC, timeout=5)
    parts = meta.topics[TRANSACTION_STATE_TOPIC].partitions
    index = coordinator_partition(transactional_id, len(parts))
    leader = parts[index].leader
    asked = next(b for b in cluster.nodes.values() if b.running())
    named = find_coordinator(asked, transactional_id, COORDINATOR_KEY_TRANSACTION)
    assert named == leader, (
        f"FindCoordinator names node {named} for {transactional_id!r}; the leader of"
        f" {TRANSACTION_STATE_TOPIC}-{index} (Kafka's partition for it) is node {leader}"
    )
    return leader


def group_coordinated_elsewhere(cluster, base, avoid):
    """A group name (`base` and a suffix) whose coordinator, the leader of its
    `__consumer_offsets` partition, is not node `avoid`; and that coordinator."""
    meta = admin_of(cluster.bootstrap).list_topics(OFFSETS_TOPIC, timeout=5)
    parts = meta.topics[OFFSETS_TOPIC].partitions
    asked = next(b for b in cluster.nodes.values() if b.running())
    for k in range(100):
        group = f"{base}-{k}"
        leader = parts[coordinator_partition(group, len(parts))].leader
        if leader != avoid:
            named = find_coordinator(asked, group, COORDINATOR_KEY_GROUP)
            assert named == leader, (
                f"FindCoordinator names node {named} for group {group!r}; the leader of its"
                f" {OFFSETS_TOPIC} partition is node {leader}"
            )
            return group, leader
    pytest.fail(f"no group {base}-0..99 has a coordinator other than node {avoid}")


def retrying(what, call, deadline):
    """Calls `call` until it does not raise a retriable error; other errors are raised."""
    while True:
        try:
            return call()
        except KafkaException as e:
            err = e.args[0]
            if not err.retriable() or time.monotonic() > deadline:
                raise
            print(f"{what}: retriable {err}, retrying")
            time.sleep(0.2)


# ---------------------------------------------------------------- commit and abort


def test_cluster_transaction_over_partitions_of_three_leaders_commits_and_aborts(
    cluster, topic_name
):
    """Commit, abort, commit: three transactions each spanning 3 partitions led by the 3
    nodes, so every one ends with markers written by nodes other than the coordinator.
    read_committed sees the two committed ones only — and sees the last one at all only if
    the abort's markers were written on every partition; read_uncommitted sees all three."""
    wait_serving(cluster, 3)
    create_spread_topic(cluster, topic_name)
    tps = [(topic_name, p) for p in range(3)]
    tid = f"{topic_name}-txn"
    with broker_logs_on_failure(cluster):
        p = initialized(cluster, tid)
        coordinator = transaction_coordinator(cluster, tid)
        print(f"\ntransaction coordinator of {tid!r}: node {coordinator}")

        def batch(label):
            return {tp: values(f"{label}-p{tp[1]}", 4) for tp in tps}

        def records(by_tp):
            return [(t, part, v) for (t, part), vs in by_tp.items() for v in vs]

        first, aborted, last = batch("committed1"), batch("aborted"), batch("committed2")
        p.begin_transaction()
        send(p, records(first))
        p.commit_transaction(TXN_TIMEOUT_S)

        p.begin_transaction()
        send_and_flush(p, records(aborted))  # in every partition's log before the abort
        p.abort_transaction(TXN_TIMEOUT_S)

        p.begin_transaction()
        send(p, records(last))
        p.commit_transaction(TXN_TIMEOUT_S)

        committed = read_values(cluster, RC, tps, 24)
        assert committed == {tp: first[tp] + last[tp] for tp in tps}, (
            "read_committed reads both committed transactions on every partition, whichever"
            f" node leads it (coordinator: node {coordinator}), and nothing of the aborted one"
        )
        everything = read_values(cluster, RU, tps, 36)
        assert everything == {tp: first[tp] + aborted[tp] + last[tp] for tp in tps}, (
            "read_uncommitted reads every record, the aborted transaction's too"
        )


# ---------------------------------------------------------------- exactly once


def test_cluster_exactly_once_survives_sigkill_of_the_transaction_coordinator(
    cluster, topic_name
):
    """Consume-transform-produce (a consumer assigned the input's partitions, offsets
    committed in each transaction for its group) over 300 records; a third of the way, in
    the middle of a transaction (records produced, offsets not yet sent), the transaction
    coordinator's node is SIGKILLed. The producer recovers the way librdkafka documents
    (retry retriable errors, abort and rewind to the committed offsets on abortable ones, a
    new producer instance on fatal ones) and goes on to the input's end. The output read
    with read_committed holds every transformed record exactly once, in input order.

    The group's coordinator is on another node than the transaction coordinator: librdkafka
    (2.16) hangs for good in send_offsets_to_transaction when the group coordinator it has
    cached is a broker that left the Metadata (confluentinc/librdkafka#5511, which the
    cluster's prompt fencing of a killed node makes certain to hit)."""
    n = 300
    wait_serving(cluster, 3)
    source, sink = f"{topic_name}-in", f"{topic_name}-out"
    create_spread_topic(cluster, source)
    create_spread_topic(cluster, sink)
    send_and_flush(plain_producer(cluster), [(source, i % 3, f"in-{i}") for i in range(n)])
    ends = {p: n // 3 for p in range(3)}
    tid = f"{topic_name}-txn"
    bootstrap = cluster.bootstrap  # every node, the one to be killed too
    source_tps = [TopicPartition(source, p) for p in range(3)]
    consumer = None
    producers = []
    events = []
    victim = None
    try:
        with broker_logs_on_failure(cluster):
            producer = initialized(cluster, tid)
            producers.append(producer)
            asked = next(iter(cluster.nodes.values()))
            wait_until(
                f"{OFFSETS_TOPIC} exists",
                lambda: find_coordinator(asked, topic_name, COORDINATOR_KEY_GROUP),
            )
            # The coordinators' state must be on every replica before a node dies.
            for internal in (TRANSACTION_STATE_TOPIC, OFFSETS_TOPIC):
                wait_until(
                    f"{internal}'s replicas are in sync",
                    lambda: internal_topic_in_sync(cluster, internal),
                )
            victim = transaction_coordinator(cluster, tid)
            group, group_coordinator = group_coordinated_elsewhere(
                cluster, f"{topic_name}-group", victim
            )
            print(
                f"\ntransaction coordinator of {tid!r}: node {victim};"
                f" group coordinator of {group!r}: node {group_coordinator}"
            )
            consumer = Consumer(
                {
                    "bootstrap.servers": bootstrap,
                    "group.id": group,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": RC,
                }
            )

            def rewind():
                """Assigns the input from the group's committed offsets (the stable ones:
                read_committed asks OffsetFetch for require_stable)."""
                deadline = time.monotonic() + RESULT_TIMEOUT_S
                committed = retrying(
                    "committed()",
                    lambda: consumer.committed(source_tps, timeout=RESULT_TIMEOUT_S),
                    deadline,
                )
                start = {tp.partition: max(tp.offset, 0) for tp in committed}
                consumer.unassign()
                consumer.assign([TopicPartition(source, p, off) for p, off in start.items()])
                return start

            positions = rewind()  # the next offset to process, per partition
            done = dict(positions)  # the committed ones
            batches = 0
            deadline = time.monotonic() + EOS_RUN_TIMEOUT_S
            while done != ends:
                assert time.monotonic() < deadline, (
                    f"consume-transform-produce reached {done} of the input's ends {ends}"
                    f" within {EOS_RUN_TIMEOUT_S}s; recoveries: {events}"
                )
                batch = []
                for msg in consumer.consume(num_messages=30, timeout=0.5):
                    err = msg.error()
                    if err is not None:
                        assert err.code() < 0, f"consumer error: {err}"
                        continue
                    batch.append(msg)
                if not batch:
                    continue
                for msg in batch:
                    assert msg.offset() == positions[msg.partition()], (
                        f"the consumer reads {source}[{msg.partition()}] on from"
                        f" {positions[msg.partition()]}, got offset {msg.offset()}"
                    )
                    positions[msg.partition()] = msg.offset() + 1
                txn_deadline = time.monotonic() + 60
                try:
                    producer.begin_transaction()
                    failures = send(
                        producer,
                        [
                            (sink, m.partition(), m.value().decode().replace("in-", "out-"))
                            for m in batch
                        ],
                    )
                    if victim is not None and sum(done.values()) >= n // 3:
                        # The transaction is open at the coordinator with its partitions
                        # added and its records written: now its node dies.
                        assert producer.flush(RESULT_TIMEOUT_S) == 0, "records undelivered"
                        assert not failures, f"delivery failed: {failures[0]}"
                        cluster.nodes[victim].kill()
                        events.append(f"SIGKILL of node {victim} after {sum(done.values())}")
                        killed, victim = victim, None
                    offsets = [TopicPartition(source, p, o) for p, o in positions.items()]
                    retrying(
                        "send_offsets_to_transaction",
                        lambda: producer.send_offsets_to_transaction(
                            offsets, consumer.consumer_group_metadata(), TXN_TIMEOUT_S
                        ),
                        txn_deadline,
                    )
                    retrying(
                        "commit_transaction",
                        lambda: producer.commit_transaction(TXN_TIMEOUT_S),
                        txn_deadline,
                    )
                    assert not failures, f"a committed transaction's record failed: {failures}"
                    done = dict(positions)
                    batches += 1
                except KafkaException as e:
                    err = e.args[0]
                    if err.fatal():
                        events.append(f"fatal {err}: new producer")
                        producer = initialized(cluster, tid)
                        producers.append(producer)
                    elif err.txn_requires_abort():
                        events.append(f"abortable {err}: abort and rewind")
                        retrying(
                            "abort_transaction",
                            lambda: producer.abort_transaction(TXN_TIMEOUT_S),
                            txn_deadline,
                        )
                    else:
                        pytest.fail(f"a transaction failed with {err!r}; before: {events}")
                    positions = rewind()
                    done = dict(positions)
            print(f"{batches} transactions committed; recoveries: {events}")
            assert victim is None, "the coordinator's node was killed midway"
            assert transaction_coordinator(cluster, tid) != killed, "a new coordinator leads"

            sink_tps = [(sink, p) for p in range(3)]
            output = read_values(cluster, RC, sink_tps, n)
            expected = {(sink, p): [f"out-{i}" for i in range(p, n, 3)] for p in range(3)}
            if output != expected:
                seen = Counter(v for vs in output.values() for v in vs)
                duplicated = sorted(v for v, k in seen.items() if k > 1)
                missing = sorted({v for vs in expected.values() for v in vs} - set(seen))
                pytest.fail(
                    "read_committed output is not exactly one transformed record per input,"
                    f" in input order: {len(duplicated)} duplicated {duplicated[:10]},"
                    f" {len(missing)} missing {missing[:10]}; recoveries: {events}"
                )
            final = retrying(
                "committed()",
                lambda: consumer.committed(source_tps, timeout=RESULT_TIMEOUT_S),
                time.monotonic() + RESULT_TIMEOUT_S,
            )
            assert {tp.partition: tp.offset for tp in final} == ends, (
                "the group's committed offsets are the end of the input"
            )
    finally:
        if consumer is not None:
            consumer.close()
        producers.clear()
        for node in cluster.nodes.values():
            if not node.running():
                node.start()
        wait_serving(cluster, 3)


# ---------------------------------------------------------------- fencing


def test_cluster_new_producer_instance_fences_the_zombie_on_every_node(cluster, topic_name):
    """Producer A begins a transaction over 3 partitions led by the 3 nodes and flushes;
    producer B with the same transactional.id calls init_transactions, which aborts A's
    transaction. A's commit fails as fenced, a record A sends afterwards is refused at every
    partition, nothing of A's is visible to read_committed, and B's commit is."""
    wait_serving(cluster, 3)
    create_spread_topic(cluster, topic_name)
    tps = [(topic_name, p) for p in range(3)]
    tid = f"{topic_name}-txn"
    with broker_logs_on_failure(cluster):
        zombie = initialized(cluster, tid)
        coordinator = transaction_coordinator(cluster, tid)
        print(f"\ntransaction coordinator of {tid!r}: node {coordinator}")
        zombie.begin_transaction()
        zombie_values = {tp: values(f"zombie-p{tp[1]}", 3) for tp in tps}
        send_and_flush(zombie, [(t, p, v) for (t, p), vs in zombie_values.items() for v in vs])

        successor = initialized(cluster, tid)

        # Records the zombie sends now, to the partitions of its transaction (no
        # AddPartitionsToTxn needed): whichever reach a partition are refused there
        # (librdkafka fails the others locally once it knows it is fenced).
        late_acked = []

        def late_report(err, msg):
            if err is None:
                late_acked.append(f"{msg.topic()}[{msg.partition()}] {msg.value()!r}")

        for p in range(3):
            value = f"zombie-late-p{p}".encode()
            zombie.produce(topic_name, value=value, partition=p, on_delivery=late_report)
        with pytest.raises(KafkaException) as raised:
            zombie.commit_transaction(TXN_TIMEOUT_S)
        err = raised.value.args[0]
        assert err.fatal() or err.code() in FENCED_CODES, (
            f"the old instance's commit fails as fenced (a fatal error), got {err}"
        )
        zombie.poll(1)
        assert not late_acked, f"the fenced instance's late records were acknowledged: {late_acked}"

        successor.begin_transaction()
        successor_values = {tp: values(f"successor-p{tp[1]}", 3) for tp in tps}
        send(successor, [(t, p, v) for (t, p), vs in successor_values.items() for v in vs])
        successor.commit_transaction(TXN_TIMEOUT_S)

        committed = read_values(cluster, RC, tps, 9)
        assert committed == successor_values, (
            "read_committed reads the new instance's transaction on every partition (so the"
            " fenced one was aborted with markers on every node) and nothing of the zombie's"
        )
        everything = read_values(cluster, RU, tps, 18)
        assert everything == {tp: zombie_values[tp] + successor_values[tp] for tp in tps}, (
            "read_uncommitted reads the fenced transaction's records, then the new"
            " instance's; the zombie's late records are in no partition"
        )

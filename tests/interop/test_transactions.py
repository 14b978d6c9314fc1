"""Kafka transactions against a real broker, with confluent-kafka (librdkafka) clients.

A transactional producer (transactional.id) commits and aborts transactions that span
partitions and topics; consumers with isolation.level=read_committed must see exactly the
committed records, in order, and nothing past the last stable offset (the first offset of a
transaction still open); read_uncommitted consumers see every record. The transaction
coordinator aborts a transaction past its transaction.timeout.ms, fences a zombie producer
when a new instance with the same transactional.id calls init_transactions, commits consumer
offsets atomically with produced records (consume-transform-produce, exactly once), and keeps
all of it across a broker restart.

librdkafka's default isolation.level is read_committed: every consumer here sets it
explicitly. Every wait is bounded; a broker without transactions fails these tests rather
than hanging them.
"""

import gc
import time
import uuid
from collections import Counter, defaultdict

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

RESULT_TIMEOUT_S = 20
# The first init_transactions on a broker may wait for __transaction_state to be created,
# and after a restart for the coordinator to load it.
INIT_TIMEOUT_S = 30
TXN_TIMEOUT_S = 20
READ_TIMEOUT_S = 20
# After the expected records arrived, a reader polls this much longer so that a record too
# many (one that should have stayed invisible) is seen too.
EXTRA_READ_S = 1.0
# A transaction with transaction.timeout.ms=3000 must be aborted by the coordinator well
# within this (Kafka looks for timed-out transactions every 10 s by default).
TIMED_OUT_ABORT_WAIT_S = 20
TRANSACTION_STATE_TOPIC = "__transaction_state"

RC = "read_committed"
RU = "read_uncommitted"

FENCED_CODES = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
}

GROUP_CONF = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 100,
    "max.poll.interval.ms": 10000,
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "isolation.level": RC,
}


def admin(broker):
    """One AdminClient per broker, kept alive (dropped before a restart)."""
    client = getattr(broker, "_txn_admin", None)
    if client is None:
        client = AdminClient({"bootstrap.servers": broker.bootstrap})
        broker._txn_admin = client
        broker.clients.append(client)
    return client


def create_topic(broker, name, partitions):
    fs = admin(broker).create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)],
        request_timeout=RESULT_TIMEOUT_S,
    )
    fs[name].result(timeout=RESULT_TIMEOUT_S)


def txn_producer(broker, transactional_id, **extra):
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "transactional.id": transactional_id,
        "linger.ms": 5,
    }
    conf.update(extra)
    return Producer(conf)


def initialized(broker, transactional_id, **extra):
    """A transactional producer after init_transactions."""
    p = txn_producer(broker, transactional_id, **extra)
    try:
        p.init_transactions(INIT_TIMEOUT_S)
    except KafkaException as e:
        pytest.fail(
            f"init_transactions of transactional.id {transactional_id!r} failed within"
            f" {INIT_TIMEOUT_S}s: {e.args[0]}"
        )
    return p


def plain_producer(broker):
    """A non-transactional producer."""
    return Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})


def send(producer, records):
    """Produces (topic, partition, value) records; returns the list that delivery failures
    are appended to."""
    failures = []

    def report(err, msg):
        if err is not None:
            failures.append(f"{msg.topic()}[{msg.partition()}] {msg.value()!r}: {err}")

    for topic, partition, value in records:
        producer.produce(topic, value=value.encode(), partition=partition, on_delivery=report)
    return failures


def send_and_flush(producer, records):
    """Produces the records and waits until the broker acknowledged every one."""
    failures = send(producer, records)
    left = producer.flush(RESULT_TIMEOUT_S)
    assert left == 0, f"{left} records still undelivered after {RESULT_TIMEOUT_S}s"
    assert not failures, f"{len(failures)} records failed, first: {failures[0]}"


def reader(broker, isolation, topic_partitions):
    """A consumer assigned to the (topic, partition)s from their beginning."""
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"unused-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
        }
    )
    c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in topic_partitions])
    return c


def drain(c, expected_count, timeout_s=READ_TIMEOUT_S, extra_s=EXTRA_READ_S):
    """Polls until `expected_count` records arrived (or `timeout_s` passed), then `extra_s`
    longer; returns {(topic, partition): [value, ...]} in arrival (offset) order."""
    got = defaultdict(list)
    count = 0
    start = time.monotonic()
    deadline = start + timeout_s
    quiet_until = None
    while True:
        now = time.monotonic()
        if quiet_until is None and count >= expected_count:
            quiet_until = now + extra_s
        if (quiet_until is not None and now >= quiet_until) or now >= deadline:
            break
        for msg in c.consume(num_messages=1000, timeout=0.1):
            err = msg.error()
            if err is not None:
                # Local, informational events (a reconnect, a partition end) are skipped.
                assert err.code() < 0, f"consumer error: {err}"
                continue
            got[(msg.topic(), msg.partition())].append(msg.value().decode())
            count += 1
    return dict(got)


def read_values(broker, isolation, topic_partitions, expected_count, **kwargs):
    c = reader(broker, isolation, topic_partitions)
    try:
        return drain(c, expected_count, **kwargs)
    finally:
        c.close()


def values(label, n):
    return [f"{label}-{i}" for i in range(n)]


def restart(broker):
    """Restarts the broker (SIGTERM, exit 0, start) after dropping every kept client."""
    broker.clients.clear()
    broker._txn_admin = None
    gc.collect()
    broker.restart()


# ---------------------------------------------------------------- commit and abort


def test_read_committed_sees_committed_transactions_only(broker, topic_name):
    """Three transactions over two partitions of one topic and a second topic: commit, abort,
    commit. read_committed sees the two committed ones, in order per partition;
    read_uncommitted sees all three."""
    other = f"{topic_name}-b"
    create_topic(broker, topic_name, 2)
    create_topic(broker, other, 1)
    tps = [(topic_name, 0), (topic_name, 1), (other, 0)]

    def batch(label):
        return {tp: values(f"{label}-t{k}p{tp[1]}", 3) for k, tp in enumerate(tps)}

    def records(by_tp):
        return [(t, p, v) for (t, p), vs in by_tp.items() for v in vs]

    first, aborted, last = batch("committed1"), batch("aborted"), batch("committed2")
    p = initialized(broker, f"{topic_name}-txn")

    p.begin_transaction()
    send(p, records(first))
    p.commit_transaction(TXN_TIMEOUT_S)

    p.begin_transaction()
    send_and_flush(p, records(aborted))  # in the log before the abort
    p.abort_transaction(TXN_TIMEOUT_S)

    p.begin_transaction()
    send(p, records(last))
    p.commit_transaction(TXN_TIMEOUT_S)

    committed = read_values(broker, RC, tps, 18)
    assert committed == {tp: first[tp] + last[tp] for tp in tps}, (
        "a read_committed consumer reads both committed transactions, in order, and nothing"
        " of the aborted one"
    )
    everything = read_values(broker, RU, tps, 27)
    assert everything == {tp: first[tp] + aborted[tp] + last[tp] for tp in tps}, (
        "a read_uncommitted consumer reads every record, the aborted transaction's too"
    )


def test_open_transaction_holds_read_committed_at_the_last_stable_offset(broker, topic_name):
    """Records of a transaction not yet ended, and every record after them in the partition
    (even non-transactional ones), stay invisible to read_committed until it commits."""
    create_topic(broker, topic_name, 1)
    tp = (topic_name, 0)
    plain = plain_producer(broker)
    send_and_flush(plain, [(topic_name, 0, "before")])
    p = initialized(broker, f"{topic_name}-txn")
    p.begin_transaction()
    open_values = values("open", 3)
    send_and_flush(p, [(topic_name, 0, v) for v in open_values])
    send_and_flush(plain, [(topic_name, 0, "after")])

    rc = reader(broker, RC, [tp])
    try:
        held = drain(rc, 1, extra_s=2.0)
        assert held == {tp: ["before"]}, (
            "while the transaction is open, read_committed reads only the record before it:"
            " the non-transactional record after it waits too (last stable offset)"
        )
        everything = read_values(broker, RU, [tp], 5)
        assert everything == {tp: ["before", *open_values, "after"]}, (
            "read_uncommitted reads the open transaction's records and the one after them"
        )
        p.commit_transaction(TXN_TIMEOUT_S)
        released = drain(rc, 4)
        assert released == {tp: [*open_values, "after"]}, (
            "after the commit the same read_committed consumer reads the transaction's"
            " records and then the record after them, in offset order"
        )
    finally:
        rc.close()


def test_coordinator_aborts_a_transaction_past_its_timeout(broker, topic_name):
    """A producer that begins a transaction and then goes quiet: past transaction.timeout.ms
    the coordinator aborts it, read_committed readers move on, the producer cannot commit."""
    create_topic(broker, topic_name, 1)
    tp = (topic_name, 0)
    plain = plain_producer(broker)
    send_and_flush(plain, [(topic_name, 0, "before")])
    stuck = initialized(broker, f"{topic_name}-txn", **{"transaction.timeout.ms": 3000})
    stuck.begin_transaction()
    stuck_values = values("stuck", 3)
    send_and_flush(stuck, [(topic_name, 0, v) for v in stuck_values])
    started = time.monotonic()
    send_and_flush(plain, [(topic_name, 0, "after")])

    everything = read_values(broker, RU, [tp], 5, extra_s=0)
    assert everything == {tp: ["before", *stuck_values, "after"]}, (
        "the stuck transaction's records are in the log (read_uncommitted reads them)"
    )

    rc = reader(broker, RC, [tp])
    try:
        got = drain(rc, 2, timeout_s=TIMED_OUT_ABORT_WAIT_S)
    finally:
        rc.close()
    waited = time.monotonic() - started
    assert got == {tp: ["before", "after"]}, (
        f"within {TIMED_OUT_ABORT_WAIT_S}s of a transaction with a 3 s timeout going quiet"
        f" (waited {waited:.1f}s), the coordinator aborted it: read_committed reads the"
        " records around it and none of its own"
    )

    # Fenced, abortable or an invalid state: any error will do, but not a commit.
    with pytest.raises(KafkaException):
        stuck.commit_transaction(TXN_TIMEOUT_S)


# ---------------------------------------------------------------- fencing


def test_new_producer_instance_fences_the_zombie(broker, topic_name):
    """A second producer with the same transactional.id aborts the first one's transaction
    in init_transactions; the first one can no longer commit."""
    create_topic(broker, topic_name, 1)
    tp = (topic_name, 0)
    tid = f"{topic_name}-txn"
    zombie = initialized(broker, tid)
    zombie.begin_transaction()
    zombie_values = values("zombie", 3)
    send_and_flush(zombie, [(topic_name, 0, v) for v in zombie_values])

    successor = initialized(broker, tid)

    with pytest.raises(KafkaException) as raised:
        zombie.commit_transaction(TXN_TIMEOUT_S)
    err = raised.value.args[0]
    assert err.fatal() or err.code() in FENCED_CODES, (
        f"the old instance's commit fails as fenced (a fatal error), got {err}"
    )

    successor.begin_transaction()
    successor_values = values("successor", 3)
    send(successor, [(topic_name, 0, v) for v in successor_values])
    successor.commit_transaction(TXN_TIMEOUT_S)

    committed = read_values(broker, RC, [tp], 3)
    assert committed == {tp: successor_values}, (
        "read_committed reads the new instance's committed transaction and nothing of the"
        " fenced one"
    )
    everything = read_values(broker, RU, [tp], 6)
    assert everything == {tp: zombie_values + successor_values}, (
        "read_uncommitted reads the fenced transaction's records, then the new instance's"
    )


def test_fenced_producer_cannot_write_any_more(broker, topic_name):
    """A record the fenced instance sends after its successor's init_transactions is refused
    by the partition: it is not in the log at all."""
    create_topic(broker, topic_name, 1)
    tp = (topic_name, 0)
    tid = f"{topic_name}-txn"
    zombie = initialized(broker, tid)
    zombie.begin_transaction()
    send_and_flush(zombie, [(topic_name, 0, "zombie-0")])
    successor = initialized(broker, tid)

    send(zombie, [(topic_name, 0, "zombie-late")])
    with pytest.raises(KafkaException):
        zombie.commit_transaction(TXN_TIMEOUT_S)
    successor.begin_transaction()
    send(successor, [(topic_name, 0, "successor-0")])
    successor.commit_transaction(TXN_TIMEOUT_S)

    everything = read_values(broker, RU, [tp], 2)
    assert everything == {tp: ["zombie-0", "successor-0"]}, (
        "the fenced instance's late record was refused: even read_uncommitted never reads it"
    )
    assert read_values(broker, RC, [tp], 1) == {tp: ["successor-0"]}


# ---------------------------------------------------------------- exactly once


def test_consume_transform_produce_exactly_once(broker, topic_name):
    """A group consumer reads an input topic and a transactional producer writes one output
    record per input record, committing the consumer's offsets in the same transaction. One
    transaction midway is aborted, and a new consumer of the group resumes from the committed
    offsets: the output holds every transformed record exactly once."""
    n = 200
    source, sink = f"{topic_name}-in", f"{topic_name}-out"
    create_topic(broker, source, 2)
    create_topic(broker, sink, 2)
    send_and_flush(plain_producer(broker), [(source, i % 2, f"in-{i}") for i in range(n)])
    ends = {0: n // 2, 1: n // 2}
    group = f"eos-{uuid.uuid4().hex[:8]}"
    producer = initialized(broker, f"{topic_name}-txn")

    def group_consumer():
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, **GROUP_CONF})
        c.subscribe([source])
        return c

    def process_batch(consumer, commit):
        """One consume-transform-produce transaction; returns the input values it covered."""
        batch = []
        for msg in consumer.consume(num_messages=20, timeout=0.5):
            err = msg.error()
            if err is not None:
                assert err.code() < 0, f"consumer error: {err}"
                continue
            batch.append(msg)
        if not batch:
            return []
        producer.begin_transaction()
        failures = send(
            producer,
            [(sink, m.partition(), m.value().decode().replace("in-", "out-")) for m in batch],
        )
        positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
        producer.send_offsets_to_transaction(
            positions, consumer.consumer_group_metadata(), TXN_TIMEOUT_S
        )
        if commit:
            producer.commit_transaction(TXN_TIMEOUT_S)
        else:
            assert producer.flush(RESULT_TIMEOUT_S) == 0, "aborted outputs undelivered"
            assert not failures, f"aborted outputs failed: {failures[0]}"
            producer.abort_transaction(TXN_TIMEOUT_S)
        return [m.value().decode() for m in batch]

    # Two committed transactions, then one aborted; this consumer instance then goes away.
    first = group_consumer()
    try:
        committed_batches = 0
        aborted = []
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        while not aborted and time.monotonic() < deadline:
            if committed_batches < 2:
                committed_batches += bool(process_batch(first, commit=True))
            else:
                aborted = process_batch(first, commit=False)
        assert aborted, f"the first consumer processed {committed_batches} of 3 batches"
    finally:
        first.close()

    # A new instance of the group resumes from the committed offsets, up to the input's end.
    second = group_consumer()
    try:

        def caught_up():
            assigned = second.assignment()
            if len(assigned) < len(ends):
                return False
            return all(tp.offset >= ends[tp.partition] for tp in second.position(assigned))

        deadline = time.monotonic() + 3 * RESULT_TIMEOUT_S
        while not caught_up() and time.monotonic() < deadline:
            process_batch(second, commit=True)
        assert caught_up(), (
            f"the second consumer reached positions {second.position(second.assignment())}"
            f" of the input's ends {ends}"
        )
    finally:
        second.close()

    sink_tps = [(sink, 0), (sink, 1)]
    output = read_values(broker, RC, sink_tps, n)
    expected = {(sink, p): [f"out-{i}" for i in range(p, n, 2)] for p in (0, 1)}
    if output != expected:
        seen = Counter(v for vs in output.values() for v in vs)
        duplicated = sorted(v for v, k in seen.items() if k > 1)
        missing = sorted({v for vs in expected.values() for v in vs} - set(seen))
        pytest.fail(
            "read_committed output is not exactly one transformed record per input, in input"
            f" order: duplicated {duplicated[:10]}, missing {missing[:10]}"
            f" (the aborted batch was {aborted[:3]}...)"
        )
    everything = read_values(broker, RU, sink_tps, n + len(aborted))
    assert sum(map(len, everything.values())) == n + len(aborted), (
        "the aborted transaction's outputs are in the log (read_uncommitted reads them)"
    )

    checker = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, **GROUP_CONF})
    try:
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        while True:
            committed = checker.committed(
                [TopicPartition(source, p) for p in ends], timeout=RESULT_TIMEOUT_S
            )
            offsets = {tp.partition: tp.offset for tp in committed}
            if offsets == ends or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert offsets == ends, "the group's committed offsets are the end of the input"
    finally:
        checker.close()


# ---------------------------------------------------------------- restart


def test_transactions_survive_a_broker_restart(broker, topic_name):
    """A restart with a committed and an open transaction in the log: the committed records
    stay visible, the open one keeps holding readers back until a new instance of its
    producer aborts it in init_transactions and commits; after another restart the abort
    still hides its records."""
    create_topic(broker, topic_name, 1)
    tp = (topic_name, 0)
    tid = f"{topic_name}-txn"
    committed_values, open_values, later_values = (
        values("committed", 3),
        values("open", 3),
        values("later", 3),
    )
    p = initialized(broker, tid)
    p.begin_transaction()
    send(p, [(topic_name, 0, v) for v in committed_values])
    p.commit_transaction(TXN_TIMEOUT_S)
    p.begin_transaction()
    send_and_flush(p, [(topic_name, 0, v) for v in open_values])
    del p  # the producer goes away with its transaction open

    restart(broker)

    assert read_values(broker, RC, [tp], 3) == {tp: committed_values}, (
        "after a restart read_committed reads the committed transaction, and nothing of the"
        " one still open"
    )
    p = initialized(broker, tid)
    p.begin_transaction()
    send(p, [(topic_name, 0, v) for v in later_values])
    p.commit_transaction(TXN_TIMEOUT_S)
    assert read_values(broker, RC, [tp], 6) == {tp: committed_values + later_values}, (
        "the same transactional.id initializes again after the restart (aborting the open"
        " transaction) and commits"
    )
    del p

    restart(broker)

    assert read_values(broker, RC, [tp], 6) == {tp: committed_values + later_values}, (
        "after another restart read_committed still skips the aborted transaction"
    )
    assert read_values(broker, RU, [tp], 9) == {
        tp: committed_values + open_values + later_values
    }, "read_uncommitted reads every record after the restarts"
    p = initialized(broker, tid)
    p.begin_transaction()
    send(p, [(topic_name, 0, "last")])
    p.commit_transaction(TXN_TIMEOUT_S)


# ---------------------------------------------------------------- metadata


def test_list_topics_with_the_transaction_state_topic(broker, topic_name):
    """Once __transaction_state exists, listing topics still works; whether the internal
    topic is listed is the broker's business, but if it is, it is well formed."""
    create_topic(broker, topic_name, 2)
    p = initialized(broker, f"{topic_name}-txn")
    p.begin_transaction()
    send(p, [(topic_name, 0, "x")])
    p.commit_transaction(TXN_TIMEOUT_S)

    md = admin(broker).list_topics(timeout=RESULT_TIMEOUT_S)
    assert topic_name in md.topics
    assert sorted(md.topics[topic_name].partitions) == [0, 1]
    broken = {name: t.error for name, t in md.topics.items() if t.error is not None}
    assert not broken, f"topics listed with errors: {broken}"
    state = md.topics.get(TRANSACTION_STATE_TOPIC)
    if state is not None:
        assert state.partitions, f"{TRANSACTION_STATE_TOPIC} is listed without partitions"
        leaderless = [n for n, part in state.partitions.items() if part.leader not in md.brokers]
        assert not leaderless, f"{TRANSACTION_STATE_TOPIC} partitions without a leader"

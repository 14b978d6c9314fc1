"""Backpressure: a client that sends requests faster than it reads the answers costs the broker
bounded memory and does not slow anyone else down.

The broker handles one request per connection at a time and writes its answer before it reads
the next, so a client that never reads stalls only its own connection: its requests wait in
the kernel's socket buffers, not in the broker's memory.
"""

import socket
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from wire import API_FETCH, API_PRODUCE, fetch_v4_body, produce_v3_body, record_batch, request

BACKLOG_RECORDS = 20_000
RECORD_BYTES = 1024
# Far below what the pipelined requests would need if the broker buffered their answers
# (tens of gigabytes) or their bodies (hundreds of megabytes).
RSS_GROWTH_LIMIT_MB = 64


def rss_mb(broker):
    with open(f"/proc/{broker.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


@pytest.fixture(scope="module")
def backlog(broker):
    """A topic of BACKLOG_RECORDS 1 KiB records (about 20 MB)."""
    topic = "backpressure-backlog"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[
        topic
    ].result(timeout=20)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    value = b"b" * RECORD_BYTES
    for _ in range(BACKLOG_RECORDS):
        while True:
            try:
                p.produce(topic, value)
                break
            except BufferError:
                p.poll(0.01)
    assert p.flush(30) == 0
    return topic


def round_trip(broker, topic):
    """Produces one record and reads it back with another client; returns the seconds taken."""
    t0 = time.monotonic()
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    marker = uuid.uuid4().hex.encode()
    delivered = []
    p.produce(topic, marker, on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
    assert p.flush(20) == 0
    [(err, offset)] = delivered
    assert err is None
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused",
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, offset)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                assert m.value() == marker
                return time.monotonic() - t0
        raise AssertionError("the record produced alongside the stalled client never came back")
    finally:
        c.close()


def stuff(sock, frame, seconds):
    """Sends `frame` again and again without reading, until the socket blocks for `seconds`."""
    sock.settimeout(seconds)
    try:
        while True:
            sock.sendall(frame)
    except (socket.timeout, BlockingIOError):
        return


def test_a_client_that_never_reads_its_fetches_stalls_only_itself(broker, backlog):
    base = rss_mb(broker)
    # Every Fetch asks for the whole backlog (about 20 MB); 200 of them would be 4 GB of
    # answers if the broker queued them.
    frame = request(API_FETCH, 4, 1, fetch_v4_body(backlog, 0, 0, 64 << 20))
    sock = socket.create_connection(("127.0.0.1", broker.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        stuff(sock, frame * 200, seconds=2.0)
        growth = rss_mb(broker) - base
        assert growth < RSS_GROWTH_LIMIT_MB, f"broker RSS grew by {growth:.0f} MB"
        # Other clients are served promptly meanwhile.
        took = round_trip(broker, "backpressure-other")
        assert took < 15, f"a produce + consume round trip took {took:.1f} s"
    finally:
        sock.close()
    assert broker.running()


def test_a_producer_that_never_reads_acks_costs_bounded_memory(broker):
    topic = "backpressure-produce"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[
        topic
    ].result(timeout=20)
    # 1 MB produce requests, pipelined without reading a single answer, from two threads.
    batch = record_batch([b"p" * 1000] * 1000, int(time.time() * 1000))
    frame = request(API_PRODUCE, 3, 1, produce_v3_body(topic, 0, batch, acks=1))
    base = rss_mb(broker)
    peak = [base]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(broker))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    socks = []
    try:
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", broker.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            socks.append(sock)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for sock in socks:
                stuff(sock, frame, seconds=0.2)
        took = round_trip(broker, topic)
        assert took < 15, f"a produce + consume round trip took {took:.1f} s"
    finally:
        stop.set()
        watcher.join()
        for sock in socks:
            sock.close()
    growth = peak[0] - base
    assert growth < RSS_GROWTH_LIMIT_MB, f"broker RSS grew by {growth:.0f} MB"
    assert broker.running()

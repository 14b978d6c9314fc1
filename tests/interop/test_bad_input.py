"""Malformed input on raw sockets: the broker drops the offending connection (or answers with
an error) and keeps serving everyone else, with the data it already had intact."""

import struct
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from wire import (
    API_API_VERSIONS,
    API_FETCH,
    API_PRODUCE,
    Reader,
    api_versions,
    closed_by_broker,
    connect,
    parse_produce_v3_response,
    produce_v3_body,
    record_batch,
    recv_response,
    request,
)

DATA_TOPIC = "bad-input-data"
DATA_COUNT = 300

# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def data(broker):
    """DATA_COUNT records produced before any bad input; the tests check they stay intact."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(DATA_TOPIC, num_partitions=1, replication_factor=1)])[
        DATA_TOPIC
    ].result(timeout=20)
    del admin
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    values = [f"precious-{i}".encode() for i in range(DATA_COUNT)]
    for v in values:
        p.produce(DATA_TOPIC, value=v)
    assert p.flush(20) == 0
    return values


def read_topic(broker, topic, count):
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"unused-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        out = []
        deadline = time.monotonic() + 20
        while len(out) < count and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, m.error()
                out.append(m.value())
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return out, (low, high)
    finally:
        c.close()


def assert_healthy(broker, data):
    """The process lives, answers ApiVersions on a new connection, and the data is intact."""
    assert broker.running(), f"broker died:\n{broker.stderr_text()}"
    with connect(broker) as s:
        error, apis = api_versions(s)
    assert error == 0
    assert API_PRODUCE in apis and API_FETCH in apis
    values, watermarks = read_topic(broker, DATA_TOPIC, len(data))
    assert values == data
    assert watermarks == (0, len(data))


# ------------------------------------------------------------------ tests


def test_raw_helpers_produce_a_valid_batch(broker, topic_name):
    """The hand-built Produce v3 frame is right: the broker appends it."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})  # alive until result()
    admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)])[
        topic_name
    ].result(timeout=20)
    del admin
    batch = record_batch([b"raw-0", b"raw-1", b"raw-2"], int(time.time() * 1000))
    with connect(broker) as s:
        s.sendall(request(API_PRODUCE, 3, 41, produce_v3_body(topic_name, 0, batch)))
        cid, body = recv_response(s)
    assert cid == 41
    assert parse_produce_v3_response(body) == [(topic_name, 0, 0, 0)]
    values, watermarks = read_topic(broker, topic_name, 3)
    assert values == [b"raw-0", b"raw-1", b"raw-2"]
    assert watermarks == (0, 3)


def test_garbage_bytes(broker, data):
    with connect(broker) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert closed_by_broker(s)
    assert_healthy(broker, data)


def test_garbage_inside_a_valid_size_prefix(broker, data):
    junk = bytes((i * 151 + 7) % 256 for i in range(64))
    with connect(broker) as s:
        s.sendall(struct.pack(">i", len(junk)) + junk)
        assert closed_by_broker(s)
    assert_healthy(broker, data)


def test_negative_size(broker, data):
    with connect(broker) as s:
        s.sendall(struct.pack(">i", -5) + b"\x00" * 16)
        assert closed_by_broker(s)
    assert_healthy(broker, data)


def test_two_gigabyte_size_prefix(broker, data):
    with connect(broker) as s:
        s.sendall(struct.pack(">i", 2**31 - 1) + b"\x00" * 1024)
        assert closed_by_broker(s)
    assert_healthy(broker, data)


def test_truncated_frame_then_close(broker, data):
    frame = request(API_PRODUCE, 3, 5, produce_v3_body(DATA_TOPIC, 0, record_batch([b"x"], 0)))
    with connect(broker) as s:
        s.sendall(frame[: len(frame) // 2])
    # closed by us mid-frame; nothing of it may have been appended
    assert_healthy(broker, data)


def test_short_header(broker, data):
    with connect(broker) as s:
        s.sendall(struct.pack(">i", 3) + b"\x00\x12\x00")
        assert closed_by_broker(s)
    assert_healthy(broker, data)


def test_unknown_api_key(broker, data):
    with connect(broker) as s:
        s.sendall(request(9999, 0, 11, b""))
        assert closed_by_broker(s)
    assert_healthy(broker, data)


def test_unsupported_version_of_known_api(broker, data):
    with connect(broker) as s:
        s.sendall(request(API_FETCH, 0, 12, b"\x00" * 16))  # Fetch v0 is not served
        assert closed_by_broker(s)
    assert_healthy(broker, data)


def test_api_versions_from_the_future_gets_v0_answer(broker, data):
    """KIP-511: an ApiVersions version the broker doesn't know gets a v0 response with
    UNSUPPORTED_VERSION (35) and the supported range, and the connection stays open."""
    with connect(broker) as s:
        s.sendall(request(API_API_VERSIONS, 99, 13, b""))
        cid, body = recv_response(s)
        assert cid == 13
        r = Reader(body)
        assert r.take(">h") == 35
        apis = {}
        for _ in range(r.take(">i")):
            key, lo, hi = r.take(">hhh")
            apis[key] = (lo, hi)
        assert apis[API_API_VERSIONS][0] == 0
        error, _ = api_versions(s, correlation_id=14)
        assert error == 0
    assert_healthy(broker, data)


def test_truncated_produce_body(broker, data):
    body = produce_v3_body(DATA_TOPIC, 0, record_batch([b"y"], 0))
    with connect(broker) as s:
        # a complete frame whose body stops in the middle of the records
        s.sendall(request(API_PRODUCE, 3, 15, body[: len(body) - 20]))
        assert closed_by_broker(s)
    assert_healthy(broker, data)


def test_corrupt_crc_produce_is_rejected(broker, data):
    batch = bytearray(record_batch([b"corrupt-me-0", b"corrupt-me-1"], int(time.time() * 1000)))
    batch[-5] ^= 0xFF  # a byte of the last record's value: the CRC no longer matches
    with connect(broker) as s:
        s.sendall(request(API_PRODUCE, 3, 21, produce_v3_body(DATA_TOPIC, 0, bytes(batch))))
        cid, body = recv_response(s)
        assert cid == 21
        [(topic, partition, error, _)] = parse_produce_v3_response(body)
        assert (topic, partition) == (DATA_TOPIC, 0)
        assert error == 2, f"expected CORRUPT_MESSAGE (2), got {error}"
        # the connection is still usable
        assert api_versions(s, correlation_id=22)[0] == 0
    assert_healthy(broker, data)


def test_corrupt_batch_length_is_rejected(broker, data):
    batch = bytearray(record_batch([b"bad-length"], int(time.time() * 1000)))
    struct.pack_into(">i", batch, 8, struct.unpack_from(">i", batch, 8)[0] + 100)
    with connect(broker) as s:
        s.sendall(request(API_PRODUCE, 3, 23, produce_v3_body(DATA_TOPIC, 0, bytes(batch))))
        try:
            cid, body = recv_response(s)
        except ConnectionError:
            pass  # dropping the connection is acceptable too
        else:
            assert cid == 23
            [(_, _, error, _)] = parse_produce_v3_response(body)
            assert error != 0, "a batch whose length overruns the records was accepted"
    assert_healthy(broker, data)


def test_many_bad_connections_at_once(broker, data):
    socks = [connect(broker) for _ in range(50)]
    try:
        for i, s in enumerate(socks):
            s.sendall([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"garbage!" * 4][i % 3])
    finally:
        for s in socks:
            s.close()
    assert_healthy(broker, data)

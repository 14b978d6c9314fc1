"""Producer and consumer against a real broker: records come back with their keys, values,
headers and timestamps, under every codec; delivery reports are right; assign, seek,
position, pause and resume behave as in the Java client."""

import time

import pytest

import brook

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def read(bootstrap, topic, partitions, count, timeout_s=20.0):
    """Reads `count` records from the start of `partitions` of `topic` by assignment."""
    with brook.Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, p) for p in range(partitions)])
        records = []
        deadline = time.monotonic() + timeout_s
        while len(records) < count and time.monotonic() < deadline:
            records.extend(consumer.poll(timeout=1.0))
        return records


def test_produce_and_read_back_keys_values_headers_timestamps(broker, make_topic):
    topic = make_topic(partitions=3)
    sent = []
    # Recent create times: older ones would fall to the broker's 7-day retention at once.
    base_ms = int(time.time() * 1000) - 60_000
    with brook.Producer(broker.bootstrap, acks="all", linger_ms=5, compression="lz4") as producer:
        futures = []
        for i in range(300):
            key = f"key-{i % 17}".encode()
            headers = [("index", str(i).encode()), ("empty", None)]
            timestamp = base_ms + i
            futures.append(
                producer.send(topic, f"value-{i}".encode(), key=key, headers=headers, timestamp=timestamp)
            )
            sent.append((key, f"value-{i}".encode(), headers, timestamp))
        producer.flush()
        reports = [f.result(timeout=10) for f in futures]
    assert all(f.done() for f in futures)
    records = read(broker.bootstrap, topic, 3, 300)
    assert len(records) == 300
    by_value = {r.value: r for r in records}
    for (key, value, headers, timestamp), report in zip(sent, reports):
        record = by_value[value]
        assert record.topic == topic
        assert record.key == key
        assert record.headers == headers
        assert record.timestamp == timestamp
        assert (record.partition, record.offset) == (report.partition, report.offset)
        assert report.topic == topic and report.timestamp == timestamp
    # One key, one partition; offsets are dense and ordered within a partition.
    partitions_of_key = {}
    for r in records:
        partitions_of_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions_of_key.values())
    for p in range(3):
        offsets = [r.offset for r in records if r.partition == p]
        assert offsets == list(range(len(offsets)))


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_round_trips(broker, make_topic, codec):
    topic = make_topic(partitions=2)
    with brook.Producer(broker.bootstrap, compression=codec, linger_ms=20) as producer:
        for i in range(1000):
            producer.send(topic, (f"{codec}-{i}-" + "x" * (i % 50)).encode(), key=str(i).encode())
    records = read(broker.bootstrap, topic, 2, 1000)
    assert sorted(r.value for r in records) == sorted(
        (f"{codec}-{i}-" + "x" * (i % 50)).encode() for i in range(1000)
    )


def test_delivery_report_fields(broker, make_topic):
    topic = make_topic(partitions=4)
    with brook.Producer(broker.bootstrap) as producer:
        before = int(time.time() * 1000)
        first = producer.send(topic, b"a", partition=2).result(timeout=10)
        second = producer.send(topic, b"b", partition=2).result(timeout=10)
        after = int(time.time() * 1000)
        assert isinstance(first, brook.RecordMetadata)
        assert (first.topic, first.partition, first.offset) == (topic, 2, 0)
        assert (second.partition, second.offset) == (2, 1)
        assert before <= first.timestamp <= after
        assert "offset=0" in repr(first)
        assert producer.partition_count(topic) == 4


def test_null_and_str_keys_and_values(broker, make_topic):
    topic = make_topic()
    with brook.Producer(broker.bootstrap) as producer:
        producer.send(topic, None, key=b"tombstone").result(timeout=10)
        producer.send(topic, "héllo", key="clé").result(timeout=10)
        producer.send(topic, bytearray(b"array")).result(timeout=10)
        producer.send(topic, b"dict-headers", headers={"a": b"1", "b": "2"}).result(timeout=10)
    records = read(broker.bootstrap, topic, 1, 4)
    assert [(r.key, r.value) for r in records] == [
        (b"tombstone", None),
        ("clé".encode(), "héllo".encode()),
        (None, b"array"),
        (None, b"dict-headers"),
    ]
    assert records[3].headers == [("a", b"1"), ("b", b"2")]


def test_bad_send_arguments(broker, make_topic):
    topic = make_topic(partitions=2)
    with brook.Producer(broker.bootstrap) as producer:
        with pytest.raises(TypeError):
            producer.send(topic, 12345)
        with pytest.raises(TypeError):
            producer.send(topic, b"v", headers=[("k",)])
        with pytest.raises(brook.BrookError) as info:
            producer.send(topic, b"v", partition=7)
        assert info.value.name == "UNKNOWN_TOPIC_OR_PARTITION"
        with pytest.raises(brook.BrookError) as info:
            producer.send(topic, b"x" * (2 * 1024 * 1024))
        assert info.value.name == "MESSAGE_TOO_LARGE"
    with pytest.raises(brook.BrookError):
        producer.send(topic, b"after close")


def test_poll_times_out_empty_and_iteration_stops(broker, make_topic):
    topic = make_topic()
    with brook.Consumer(broker.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=300) as consumer:
        consumer.assign([brook.TopicPartition(topic, 0)])
        start = time.monotonic()
        assert consumer.poll(timeout=0.3) == []
        assert 0.25 <= time.monotonic() - start < 5
        assert list(consumer) == []


def test_iteration_poll_max_records_and_positions(broker, make_topic):
    topic = make_topic()
    with brook.Producer(broker.bootstrap) as producer:
        for i in range(50):
            producer.send(topic, str(i).encode())
    tp = brook.TopicPartition(topic, 0)
    with brook.Consumer(broker.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=500) as consumer:
        consumer.assign([tp])
        assert consumer.position(tp) == 0
        batch = consumer.poll(timeout=5, max_records=7)
        assert [r.offset for r in batch] == list(range(7))
        assert consumer.position(tp) == 7
        it = iter(consumer)
        first = next(it)
        assert first.offset == 7
        # Fetched ahead for iteration, but the position counts only what was returned.
        assert consumer.position(tp) == 8
        assert consumer.position() == {tp: 8}
        consumer.seek(tp, 40)
        assert [r.offset for r in consumer] == list(range(40, 50))
        assert consumer.end_offsets([tp]) == {tp: 50}
        assert consumer.beginning_offsets([(topic, 0)]) == {tp: 0}
        consumer.seek_to_beginning()
        assert consumer.position(tp) == 0
        consumer.seek_to_end([tp])
        assert consumer.position(tp) == 50


def test_pause_and_resume(broker, make_topic):
    topic = make_topic(partitions=2)
    with brook.Producer(broker.bootstrap) as producer:
        for i in range(20):
            producer.send(topic, str(i).encode(), partition=i % 2)
    a, b = brook.TopicPartition(topic, 0), brook.TopicPartition(topic, 1)
    with brook.Consumer(broker.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=500) as consumer:
        consumer.assign([a, b])
        consumer.pause([b])
        assert consumer.paused() == [b]
        assert {r.partition for r in consumer} == {0}
        consumer.resume([b])
        assert sorted(r.offset for r in consumer) == list(range(10))
        assert consumer.assignment() == [a, b]


def test_topic_partition_value_semantics():
    tp = brook.TopicPartition("t", 1)
    assert tp == brook.TopicPartition("t", 1)
    assert tp != brook.TopicPartition("t", 2)
    assert {tp: 1}[brook.TopicPartition("t", 1)] == 1
    assert sorted([brook.TopicPartition("t", 2), tp])[0] == tp
    assert (tp.topic, tp.partition) == ("t", 1)
    assert repr(tp) == 'TopicPartition("t", 1)'


def test_a_full_queue_makes_send_wait_for_room(broker, make_topic):
    topic = make_topic()
    config = {"queue.buffering.max.messages": 10, "batch.size": 200}
    with brook.Producer(broker.bootstrap, linger_ms=50, config=config) as producer:
        futures = [producer.send(topic, str(i).encode()) for i in range(200)]
        offsets = [f.result(timeout=20).offset for f in futures]
    assert offsets == list(range(200))

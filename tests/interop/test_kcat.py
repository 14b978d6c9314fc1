"""kcat (librdkafka's command-line client) against a real broker."""

import shutil
import subprocess
from collections import defaultdict

import pytest

# Auto-created topics get two partitions, so keyed produce spreads over both.
BROOK_ARGS = ["--num-partitions", "2"]

KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def kcat(broker, *args, stdin=None, timeout=30):
    assert KCAT, "kcat is not installed (scripts/test installs it with apt-get)"
    proc = subprocess.run(
        [KCAT, "-b", broker.bootstrap, *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"kcat {' '.join(args)} exited with {proc.returncode}:\n"
        f"{proc.stderr.decode(errors='replace')}"
    )
    return proc.stdout.decode(), proc.stderr.decode(errors="replace")


def consume_all(broker, topic, fmt="%k %s %p %o\\n"):
    """Every record of the topic, as kcat -C -e prints them with `fmt`."""
    out, _ = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", fmt)
    return [line for line in out.split("\n") if line]


def test_produce_keyed_lines_and_consume(broker, topic_name):
    lines = [f"key{i % 7}:value-{i}" for i in range(200)]
    _, err = kcat(broker, "-P", "-t", topic_name, "-K:", stdin=("\n".join(lines) + "\n").encode())
    assert "Delivery failed" not in err, err

    got = consume_all(broker, topic_name)
    assert len(got) == len(lines)

    by_partition = defaultdict(list)
    partition_of_key = {}
    for row in got:
        key, value, partition, offset = row.split(" ")
        partition, offset = int(partition), int(offset)
        assert partition in (0, 1)
        # The same key always lands on the same partition.
        assert partition_of_key.setdefault(key, partition) == partition
        by_partition[partition].append((offset, key, value))

    expected = defaultdict(list)
    for line in lines:
        key, value = line.split(":", 1)
        expected[partition_of_key[key]].append((key, value))

    for partition, records in by_partition.items():
        # Offsets within a partition are 0, 1, 2, ... in the order the lines were produced.
        assert [o for o, _, _ in records] == list(range(len(records)))
        assert [(k, v) for _, k, v in records] == expected[partition]


def test_produce_to_explicit_partition(broker, topic_name):
    kcat(broker, "-P", "-t", topic_name, "-p", "1", "-K:", stdin=b"a:first\nb:second\n")
    kcat(broker, "-P", "-t", topic_name, "-p", "0", "-K:", stdin=b"c:third\n")
    got = sorted(consume_all(broker, topic_name), key=lambda r: (r.split()[2], r.split()[3]))
    assert got == ["c third 0 0", "a first 1 0", "b second 1 1"]


def test_metadata_lists_broker_and_topic(broker, topic_name):
    kcat(broker, "-P", "-t", topic_name, stdin=b"hello\n")
    out, _ = kcat(broker, "-L")
    assert "1 brokers:" in out, out
    assert f"broker 1 at {broker.bootstrap}" in out, out
    assert f'topic "{topic_name}" with 2 partitions:' in out, out
    assert "partition 0, leader 1, replicas: 1, isrs: 1" in out, out
    assert "partition 1, leader 1, replicas: 1, isrs: 1" in out, out

    # -L for one topic too
    out, _ = kcat(broker, "-L", "-t", topic_name)
    assert f'topic "{topic_name}" with 2 partitions:' in out, out


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_produce(broker, topic_name, codec):
    lines = [f"k{i}:{codec} payload {i} " + "x" * (i % 50) for i in range(500)]
    _, err = kcat(
        broker,
        "-P",
        "-t",
        topic_name,
        "-p",
        "0",
        "-K:",
        "-z",
        codec,
        stdin=("\n".join(lines) + "\n").encode(),
    )
    assert "Delivery failed" not in err, err
    got = consume_all(broker, topic_name)
    expected = [f"{ln.split(':', 1)[0]} {ln.split(':', 1)[1]} 0 {i}" for i, ln in enumerate(lines)]
    assert got == expected


def test_all_codecs_in_one_partition(broker, topic_name):
    """Batches of every codec interleaved in one partition all read back in order."""
    expected = []
    offset = 0
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        lines = [f"{codec}-{i}" for i in range(20)]
        kcat(broker, "-P", "-t", topic_name, "-p", "0", "-z", codec,
             stdin=("\n".join(lines) + "\n").encode())
        for ln in lines:
            expected.append(f"{ln} {offset}")
            offset += 1
    assert consume_all(broker, topic_name, fmt="%s %o\\n") == expected

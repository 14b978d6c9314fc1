"""kafka-python 2.0.2, the long-lived 2.x release, against a real broker.

It cannot share the interop venv with kafka-python 3 (same import name), so the first run
creates its own venv in target/interop-kafka-python2 and runs a client script there as a
subprocess. 2.0.2 guesses the broker's version from ApiVersions and then picks the request
versions it knew for that Kafka release, which are older than what 3.x sends.
"""

import json
import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / "target" / "interop-kafka-python2"
PACKAGE = "kafka-python==2.0.2"
INSTALL_TIMEOUT_S = 240
RUN_TIMEOUT_S = 120

CLIENT = textwrap.dedent(
    """
    import json, sys
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    bootstrap, topic = sys.argv[1], sys.argv[2]
    out = {}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    out["api_version"] = list(admin.config["api_version"])
    admin.create_topics([NewTopic(topic, 3, 1)], timeout_ms=20000)
    try:
        admin.create_topics([NewTopic(topic, 3, 1)], timeout_ms=20000)
        out["duplicate_create"] = "accepted"
    except TopicAlreadyExistsError:
        out["duplicate_create"] = "TopicAlreadyExistsError"
    admin.close()

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip")
    futures = [producer.send(topic, key=b"k%d" % i, value=b"v%d" % i) for i in range(300)]
    producer.flush()
    acked = [f.get(timeout=20) for f in futures]
    out["acked"] = len(acked)
    out["acked_offsets"] = sorted((m.partition, m.offset) for m in acked)
    producer.close()

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="kp2-group",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=8000)
    seen = []
    for record in consumer:
        seen.append((record.partition, record.offset, record.key.decode(), record.value.decode()))
        if len(seen) == 300:
            break
    consumer.commit()
    committed = {p: consumer.committed(TopicPartition(topic, p)) for p in range(3)}
    ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(3)])
    consumer.close()
    out["seen"] = seen
    out["committed"] = committed
    out["end_offsets"] = {tp.partition: offset for tp, offset in ends.items()}
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def python2x():
    """The venv's interpreter, with kafka-python 2.0.2 installed the first time."""
    python = VENV / "bin" / "python"
    marker = VENV / ".installed"
    if not marker.exists() or marker.read_text() != PACKAGE:
        venv.create(VENV, clear=True, with_pip=True)
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             PACKAGE],
            capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
        )
        assert proc.returncode == 0, f"pip install {PACKAGE} failed:\n{proc.stderr}"
        marker.write_text(PACKAGE)
    return python


def test_kafka_python_2_produces_consumes_and_commits(broker, python2x, topic_name):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [str(python2x), "-c", CLIENT, broker.bootstrap, topic_name],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env,
    )
    assert proc.returncode == 0, f"kafka-python 2.0.2 client failed:\n{proc.stderr[-3000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print("kafka-python 2.0.2 guessed broker version", out["api_version"], file=sys.stderr)

    assert out["duplicate_create"] == "TopicAlreadyExistsError"
    assert out["acked"] == 300
    # Offsets per partition are dense from 0: every acknowledged record has its own slot.
    by_partition = {}
    for partition, offset in out["acked_offsets"]:
        by_partition.setdefault(partition, []).append(offset)
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))

    seen = out["seen"]
    assert sorted(int(key[1:]) for _, _, key, _ in seen) == list(range(300)), "every record once"
    assert all(value == "v" + key[1:] for _, _, key, value in seen)
    for partition in range(3):
        offsets = [offset for p, offset, _, _ in seen if p == partition]
        assert offsets == sorted(offsets), f"partition {partition} read in order"
    # The group's commit covers everything read: committed == end offset per partition.
    committed = {int(p): c for p, c in out["committed"].items()}
    end_offsets = {int(p): e for p, e in out["end_offsets"].items()}
    assert committed == end_offsets
    assert sum(end_offsets.values()) == 300

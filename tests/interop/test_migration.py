"""A data directory written by the previous release (a single broker, before a single node
became a one-node cluster) opens with this one: its topics, records, configs and committed
offsets are all there, and it keeps working across restarts.

The fixture `tests/fixtures/single-broker-0.1.tar.gz` was written by brook 0.1.0 (commit
16189da): topic `legacy` (3 partitions, retention.ms=604800001) with 30 keyed records
k{i}/v{i} on partition i % 3 from an idempotent confluent-kafka producer, and group
`legacy-group` committed at offsets 4, 5 and 6."""

import subprocess
import tarfile
import tempfile
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from conftest import Broker

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "single-broker-0.1.tar.gz"


def read_all(bootstrap):
    """Every record of `legacy` by kcat: {(partition, offset): (key, value)}."""
    out = subprocess.run(
        ["kcat", "-b", bootstrap, "-C", "-t", "legacy", "-e", "-q", "-f", "%p %o %k %s\\n"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    records = {}
    for line in out.splitlines():
        partition, offset, key, value = line.split(" ")
        records[(int(partition), int(offset))] = (key, value)
    return records


def check(bootstrap, extra):
    records = read_all(bootstrap)
    expected = {(i % 3, i // 3): (f"k{i}", f"v{i}") for i in range(30)}
    expected.update(extra)
    assert records == expected
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "legacy-group"})
    try:
        committed = consumer.committed([TopicPartition("legacy", p) for p in range(3)], timeout=30)
        assert [tp.offset for tp in committed] == [4, 5, 6]
    finally:
        consumer.close()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource("topic", "legacy")
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["retention.ms"].value == "604800001"
    metadata = admin.list_topics(timeout=30)
    assert len(metadata.topics["legacy"].partitions) == 3


def test_a_data_directory_of_the_previous_release_opens_with_everything_in_it():
    with tempfile.TemporaryDirectory(prefix="brook-interop-migration-") as tmp:
        with tarfile.open(FIXTURE) as archive:
            archive.extractall(tmp, filter="data")
        data = Path(tmp) / "data"
        assert not (data / "__cluster_metadata-0").exists(), "a directory of the old layout"
        broker = Broker(data)
        broker.start()
        try:
            check(broker.bootstrap, {})
            producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
            for i in range(30, 33):
                producer.produce("legacy", key=f"k{i}".encode(), value=f"v{i}".encode(), partition=0)
            assert producer.flush(30) == 0
            extra = {(0, 10 + i - 30): (f"k{i}", f"v{i}") for i in range(30, 33)}
            check(broker.bootstrap, extra)
            # Adopted once: the metadata file no longer lists the topics, the next start
            # reads them from the metadata log.
            meta = (data / "meta" / "brook.meta").read_text()
            assert "topic legacy" not in meta, meta
            assert broker.stop() == 0
            broker.start()
            check(broker.bootstrap, extra)
        finally:
            if broker.proc is not None:
                assert broker.stop() == 0

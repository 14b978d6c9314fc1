#!/usr/bin/env python3
"""Failover time after SIGKILL of a partition leader, default and tuned (docs/benchmarks.md).

Starts three `brook server` voters ($BROOK_BIN, default target/release/brook) with the
interop tests' cluster harness, creates a 3-partition RF=3 topic (min.insync.replicas=2),
and for each case produces acks=all with idempotence, a record every few milliseconds round
the partitions, SIGKILLs a node a third of the way in and restarts it afterwards. The
figure is the longest any partition then went without an acknowledgement; every
acknowledged record is checked to be read back once and in order. Cases:

- librdkafka (confluent-kafka) with its defaults but `topic.metadata.refresh.interval.ms=1000`,
  killing a partition leader that is not the controller;
- kafka-python with `retry_backoff_ms=10`, the same kill;
- kafka-python, killing the controller's node (a leader too): the voters first elect a new
  quorum leader, with the default `--controller-quorum-election-timeout-ms` (1000) and
  with 300 (a second cluster).

    python3 bench/failover_bench.py [--runs 3] [--records 3000]
"""

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("BROOK_BIN", os.path.join(ROOT, "target", "release", "brook"))
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))

from confluent_kafka.admin import AdminClient  # noqa: E402
from kafka import KafkaProducer  # noqa: E402

from conftest import Cluster  # noqa: E402
from test_cluster import (  # noqa: E402
    Acked,
    create_topic,
    leaders,
    outage,
    produce_through,
    read_all,
    wait_serving,
)


def controller_of(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    return admin.describe_cluster().result().controller.id


def kafka_python_through(cluster, topic, records, during):
    """Like produce_through, with kafka-python's producer (idempotent, acks=all)."""
    producer = KafkaProducer(
        bootstrap_servers=cluster.bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        retry_backoff_ms=10,
    )
    acked = Acked()

    def ok(partition, value):
        acked.values.setdefault(partition, []).append(value)
        acked.times.setdefault(partition, []).append(time.monotonic())

    event_at = None
    for i in range(records):
        partition = i % 3
        value = f"v{i}"
        future = producer.send(topic, value=value.encode(), partition=partition)
        future.add_callback(lambda _md, p=partition, v=value: ok(p, v))
        future.add_errback(lambda err: acked.errors.append(str(err)))
        time.sleep(0.002)
        if i == records // 3:
            event_at = time.monotonic()
            during()
    producer.flush(90)
    producer.close()
    return acked, event_at


def one_run(cluster, topic, records, client, kill_controller):
    create_topic(cluster, topic, configs={"min.insync.replicas": "2"})
    controller = controller_of(cluster)
    led = leaders(cluster, topic)
    if kill_controller:
        victim = controller
        if victim not in led.values():
            return None  # the controller leads nothing of this topic: not this case
    else:
        others = [n for n in led.values() if n != controller]
        if not others:
            return None
        victim = others[0]
    kill = lambda: cluster.nodes[victim].kill()  # noqa: E731
    if client == "librdkafka":
        acked, killed_at = produce_through(cluster, topic, records, kill)
    else:
        acked, killed_at = kafka_python_through(cluster, topic, records, kill)
    assert not acked.errors, acked.errors[:5]
    got = read_all(cluster.bootstrap, topic, 3, records)
    for partition in range(3):
        assert got[partition] == acked.values[partition], f"partition {partition}"
    cluster.nodes[victim].start()
    wait_serving(cluster, 3)
    return outage(acked, killed_at)


CASES = [
    # (name, client, kill the controller, election timeout flag)
    ("librdkafka, a leader (not the controller)", "librdkafka", False, None),
    ("kafka-python, a leader (not the controller)", "kafka-python", False, None),
    ("kafka-python, the controller (a leader), election timeout 1000", "kafka-python", True, None),
    ("kafka-python, the controller (a leader), election timeout 300", "kafka-python", True, "300"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--records", type=int, default=3_000)
    args = ap.parse_args()
    results = {name: [] for name, *_ in CASES}
    for timeout in sorted({c[3] for c in CASES}, key=str):
        extra = ["--controller-quorum-election-timeout-ms", timeout] if timeout else []
        with tempfile.TemporaryDirectory(prefix="brook-failover-") as root:
            cluster = Cluster(root, 3, extra_args=extra)
            cluster.start()
            try:
                wait_serving(cluster, 3)
                for name, client, kill_controller, wanted in CASES:
                    if wanted != timeout:
                        continue
                    tries = 0
                    while len(results[name]) < args.runs and tries < 4 * args.runs:
                        tries += 1
                        topic = f"failover-{len(results)}-{tries}-{client}-{kill_controller}"
                        took = one_run(cluster, topic, args.records, client, kill_controller)
                        if took is not None:
                            results[name].append(took)
            finally:
                for b in cluster.nodes.values():
                    if b.proc is not None:
                        b.stop()
    print(f"\nSIGKILL of a node, {args.runs} runs each (ms)\n")
    print("| producer, node killed | runs | median | max |")
    print("|---|---|---:|---:|")
    for name, times in results.items():
        ms = sorted(t * 1000 for t in times)
        if not ms:
            print(f"| {name} | (no run: the case did not arise) | | |")
            continue
        shown = ", ".join(f"{t:.0f}" for t in ms)
        print(f"| {name} | {shown} | {ms[len(ms) // 2]:.0f} | {ms[-1]:.0f} |")


if __name__ == "__main__":
    main()

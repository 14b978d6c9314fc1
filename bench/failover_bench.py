#!/usr/bin/env python3
"""Failover time after SIGKILL of a partition leader, default and tuned (docs/benchmarks.md).

Starts three `brook server` voters ($BROOK_BIN, default target/release/brook) with the
interop tests' cluster harness, creates a 3-partition RF=3 topic (min.insync.replicas=2),
and for each setting produces acks=all with idempotence from confluent-kafka, a record
every few milliseconds round the partitions, SIGKILLs partition 0's leader a third of the
way in and restarts it afterwards. The figure is the longest any partition then went
without an acknowledgement; every acknowledged record is checked to be read back once and
in order. Settings:

- default: librdkafka's defaults but `topic.metadata.refresh.interval.ms=1000`, and the
  broker's defaults;
- tuned: the producer also with `retry.backoff.ms=10`, `retry.backoff.max.ms=50` and
  `topic.metadata.refresh.fast.interval.ms=10` (librdkafka refreshes metadata sooner after
  NOT_LEADER_OR_FOLLOWER and retries sooner).

    python3 bench/failover_bench.py [--runs 3] [--records 3000]
"""

import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("BROOK_BIN", os.path.join(ROOT, "target", "release", "brook"))
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))

from conftest import Cluster  # noqa: E402
from test_cluster import (  # noqa: E402
    create_topic,
    leaders,
    outage,
    produce_through,
    read_all,
    wait_serving,
)

TUNED = {
    "retry.backoff.ms": 10,
    "retry.backoff.max.ms": 100,
}


def one_run(cluster, topic, records, producer_config):
    create_topic(cluster, topic, configs={"min.insync.replicas": "2"})
    victim = leaders(cluster, topic)[0]
    acked, killed_at = produce_through(
        cluster, topic, records, lambda: cluster.nodes[victim].kill(),
        producer_config=producer_config,
    )
    assert not acked.errors, acked.errors[:5]
    got = read_all(cluster.bootstrap, topic, 3, records)
    for partition in range(3):
        assert got[partition] == acked.values[partition], f"partition {partition}"
    cluster.nodes[victim].start()
    wait_serving(cluster, 3)
    return outage(acked, killed_at)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--records", type=int, default=3_000)
    args = ap.parse_args()
    results = {"default": [], "tuned": []}
    with tempfile.TemporaryDirectory(prefix="brook-failover-") as root:
        cluster = Cluster(root, 3)
        cluster.start()
        try:
            wait_serving(cluster, 3)
            for run in range(args.runs):
                for name, config in (("default", {}), ("tuned", TUNED)):
                    topic = f"failover-{name}-{run}"
                    results[name].append(one_run(cluster, topic, args.records, config))
        finally:
            for b in cluster.nodes.values():
                if b.proc is not None:
                    b.stop()
    print(f"\nSIGKILL of partition 0's leader, {args.runs} runs each (ms)\n")
    print("| setting | runs | median | max |")
    print("|---|---|---:|---:|")
    for name, times in results.items():
        ms = sorted(t * 1000 for t in times)
        shown = ", ".join(f"{t:.0f}" for t in ms)
        print(f"| {name} | {shown} | {ms[len(ms) // 2]:.0f} | {ms[-1]:.0f} |")


if __name__ == "__main__":
    main()

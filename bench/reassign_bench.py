#!/usr/bin/env python3
"""Reassignment catch-up rate against its throttle, in one run (docs/benchmarks.md).

Starts three `brook server` voters and a fourth node that is not a voter (release builds
unless --brook says otherwise, data in a temporary directory), fills a topic of four RF=3
partitions placed on the voters, and moves it with `brook cluster rebalance`: once without
a throttle (the baseline, measured in the same run) and then with `--throttle` at each rate
asked for, moving the replicas back onto the voters in between (unthrottled). Prints, per
run, the bytes the new replicas copied, the time until every move completed, the catch-up
rate, and its ratio to the throttle and to the unthrottled run.

    python3 bench/reassign_bench.py [--mb 64] [--throttles 2000000,8000000] [--brook PATH]

Needs confluent-kafka (bench/requirements.txt) to fill the topic.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPIC = "moving"
PARTITIONS = 4


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nodes(brook, root):
    peers = [free_port() for _ in range(4)]
    clients = [free_port() for _ in range(4)]
    voters = ",".join(f"{n + 1}@127.0.0.1:{peers[n]}" for n in range(3))
    procs = []
    for n in range(4):
        args = [brook, "server", "--node-id", str(n + 1), "--voters", voters,
                "--listen", f"127.0.0.1:{clients[n]}", "--data-dir", f"{root}/node{n + 1}",
                "--log-level", "warn"]
        if n == 3:
            args += ["--controller-listen", f"127.0.0.1:{peers[n]}"]
        log = open(f"{root}/node{n + 1}.log", "wb")
        procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
    bootstrap = ",".join(f"127.0.0.1:{p}" for p in clients)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _ in range(300):
        try:
            if len(admin.list_topics(timeout=2).brokers) == 4:
                return procs, bootstrap, admin
        except Exception:
            pass
        time.sleep(0.1)
    sys.exit("the four nodes do not serve")


def fill(bootstrap, admin, mb):
    assignment = [[1, 2, 3], [2, 3, 1], [3, 1, 2], [1, 3, 2]]
    topic = NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=-1,
                     replica_assignment=assignment)
    admin.create_topics([topic])[TOPIC].result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
                         "batch.size": 1_000_000, "compression.type": "none"})
    value = os.urandom(10_000)
    count = mb * 100
    for i in range(count):
        while True:
            try:
                producer.produce(TOPIC, value=value, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(120) == 0
    return count * len(value) // PARTITIONS  # bytes per partition (payload)


def rebalance(brook, bootstrap, *extra):
    out = subprocess.run([brook, "cluster", "rebalance", "--bootstrap", bootstrap, *extra],
                         capture_output=True, timeout=3600, text=True)
    if out.returncode != 0:
        sys.exit(f"brook cluster rebalance failed: {out.stdout}{out.stderr}")
    return out.stdout


def copied_replicas(output):
    """How many replicas the printed moves add."""
    added = 0
    for before, after in re.findall(r": ([\d,]+) -> ([\d,]+)", output):
        added += len(set(after.split(",")) - set(before.split(",")))
    return added


def drain(brook, bootstrap):
    out = subprocess.run([brook, "cluster", "remove-node", "4", "--bootstrap", bootstrap],
                         capture_output=True, timeout=3600, text=True)
    if out.returncode != 0:
        sys.exit(f"brook cluster remove-node failed: {out.stdout}{out.stderr}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=64, help="MB in the topic")
    ap.add_argument("--throttles", default="2000000,8000000",
                    help="bytes/s of the throttled runs, comma-separated")
    ap.add_argument("--brook", default=os.path.join(ROOT, "target", "release", "brook"))
    args = ap.parse_args()
    throttles = [int(t) for t in args.throttles.split(",") if t]
    with tempfile.TemporaryDirectory(prefix="brook-reassign-") as root:
        procs, bootstrap, admin = start_nodes(args.brook, root)
        try:
            per_partition = fill(bootstrap, admin, args.mb)
            rows = []
            for throttle in [None, *throttles]:
                extra = [] if throttle is None else ["--throttle", str(throttle)]
                started = time.monotonic()
                output = rebalance(args.brook, bootstrap, *extra)
                seconds = time.monotonic() - started
                copied = copied_replicas(output) * per_partition
                rows.append((throttle, copied, seconds, copied / seconds))
                drain(args.brook, bootstrap)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=60)
    base = rows[0][3]
    print(f"\n{args.mb} MB in {PARTITIONS} RF=3 partitions moved onto a fourth node\n")
    print("| throttle (bytes/s) | copied MB | seconds | catch-up MB/s | vs. throttle | vs. unthrottled |")
    print("|---|---:|---:|---:|---:|---:|")
    for throttle, copied, seconds, rate in rows:
        shown = "none" if throttle is None else f"{throttle:,}"
        ratio = "" if throttle is None else f"{rate / throttle:.2f}"
        print(f"| {shown} | {copied / 1e6:.1f} | {seconds:.1f} | {rate / 1e6:.1f} | {ratio} | "
              f"{rate / base:.2f} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Replicated produce against a single broker, in one run (docs/benchmarks.md).

Starts a single `brook server` and then a 3-node cluster (`scripts/cluster`, every node a
voter), both release builds with their data in a temporary directory, and runs
bench/rdkafka_load.c (librdkafka) against each:

- single node, 4 partitions, acks=1 — the baseline;
- cluster, 4 partitions, replication factor 3, min.insync.replicas=2, acks=all and acks=1.

Prints records/s, MB/s and latency at a fixed rate, and each cluster figure as a ratio to
the single-node acks=1 one. Needs librdkafka-dev and pkg-config (apt-get install).

    python3 bench/cluster_bench.py [--seconds 6] [--size 100] [--rate 20000]
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker_bench import build_loadgen, loadgen  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROOK = os.path.join(ROOT, "target", "release", "brook")
PARTITIONS = 4


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_serving(bootstrap):
    for _ in range(300):
        done = subprocess.run([BROOK, "topics", "--bootstrap", bootstrap, "list"],
                              capture_output=True, timeout=10)
        if done.returncode == 0:
            return
        time.sleep(0.1)
    sys.exit(f"{bootstrap} does not serve")


def create(bootstrap, topic, rf, configs=()):
    args = [BROOK, "topics", "--bootstrap", bootstrap, "create", topic,
            "--partitions", str(PARTITIONS), "--replication-factor", str(rf)]
    for config in configs:
        args += ["--config", config]
    subprocess.run(args, check=True, capture_output=True, timeout=30)
    time.sleep(1)  # followers join the ISR


def measure(exe, bootstrap, topic, acks, args):
    thr = loadgen(exe, "produce", bootstrap, topic, args.size, args.seconds, acks, 5)
    lat = loadgen(exe, "latency", bootstrap, topic, args.size, args.rate, args.seconds, acks, 1)
    records_s = thr["records"] / thr["seconds"]
    return {
        "records_s": records_s,
        "mb_s": records_s * args.size / 1e6,
        "errors": thr.get("errors", 0) + lat.get("errors", 0),
        "p50": lat["p50_ms"],
        "p99": lat["p99_ms"],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--rate", type=int, default=20_000, help="records/s of the latency runs")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "brook-server"],
                   cwd=ROOT, check=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="brook-cluster-bench-") as tmp:
        exe, version = build_loadgen(ROOT, tmp)
        port = free_port()
        single = subprocess.Popen([BROOK, "server", "--data-dir", os.path.join(tmp, "single"),
                                   "--listen", f"127.0.0.1:{port}", "--log-level", "warn"])
        try:
            bootstrap = f"127.0.0.1:{port}"
            wait_serving(bootstrap)
            create(bootstrap, "bench", 1)
            results.append(("single node, acks=1", measure(exe, bootstrap, "bench", 1, args)))
        finally:
            single.terminate()
            single.wait()
        base = free_port()
        cluster_dir = os.path.join(tmp, "cluster")
        env = dict(os.environ, BROOK_BIN=BROOK)
        bootstrap = subprocess.run(
            [os.path.join(ROOT, "scripts", "cluster"), "start", "--nodes", "3", "--port",
             str(base), "--dir", cluster_dir, "--", "--log-level", "warn"],
            check=True, capture_output=True, text=True, env=env).stdout.strip()
        try:
            create(bootstrap, "bench", 3, ["min.insync.replicas=2"])
            for acks, label in ((-1, "3 nodes, RF 3, acks=all"), (1, "3 nodes, RF 3, acks=1")):
                results.append((label, measure(exe, bootstrap, "bench", acks, args)))
        finally:
            subprocess.run([os.path.join(ROOT, "scripts", "cluster"), "stop", "--dir",
                            cluster_dir], check=True, capture_output=True, env=env)
    baseline = results[0][1]["records_s"]
    print(f"librdkafka {version}; {args.size} B records, linger 5 ms for throughput, "
          f"{args.rate} records/s at linger 1 ms for latency; {PARTITIONS} partitions")
    print("| Scenario | Records/s | MB/s | vs. single node acks=1 | p50 / p99 ms at "
          f"{args.rate}/s | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in results:
        print(f"| {label} | {r['records_s']:,.0f} | {r['mb_s']:.1f} | "
              f"{r['records_s'] / baseline:.2f} | {r['p50']:.2f} / {r['p99']:.2f} | "
              f"{r['errors']} |")


if __name__ == "__main__":
    main()

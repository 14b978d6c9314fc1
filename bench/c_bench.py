#!/usr/bin/env python3
"""C producer benchmark: Brook's C library (brook-ffi, brook.h) against librdkafka, in one
run against the same `brook server`.

Builds the release `brook-ffi` (static library and generated header) and `brook`, compiles
bench/c_producer_bench.c against both libraries, starts a release `brook server` on a free
loopback port with a temporary data dir, and for each scenario runs the two modes
alternately (which one goes first alternates too), `--rounds` times each. Every run gets a
fresh topic of 4 partitions (`brook topics create`), deleted afterwards so the disk does not
fill. A run produces N records of S bytes after a 1,000-record warm-up, timed from the first
send to the end of the flush, and must see every record acknowledged.

Settings shared by both clients: acks as in the scenario, linger.ms (default 5),
batch.size (default 16384, the Java client's and brook-client's default), compression none,
queue.buffering.max.messages 100000, no key (each client's default partitioner).
Idempotence follows acks: on with acks=all (brook-client's default), off with acks=1 (an
idempotent producer requires acks=all).

Prints, per scenario, the median records/s and MB/s of each client and the ratio
brook / librdkafka of the medians.

Run from the repository root (needs gcc, pkg-config and librdkafka-dev):
  python3 bench/c_bench.py                 # about 4 minutes
  python3 bench/c_bench.py --quick         # a tenth of the records, 1 round
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MB = 1e6
PARTITIONS = 4
MODES = ("brook", "rdkafka")

# (label, records, value bytes, acks)
SCENARIOS = [
    ("100 B, acks=1", 2_000_000, 100, "1"),
    ("100 B, acks=all", 2_000_000, 100, "all"),
    ("1 KiB, acks=1", 500_000, 1024, "1"),
    ("1 KiB, acks=all", 500_000, 1024, "all"),
]


def target_dir():
    env = os.environ.get("CARGO_TARGET_DIR")
    if not env:
        return REPO / "target"
    path = Path(env)
    return path if path.is_absolute() else REPO / path


def build(target):
    """Builds the release library and broker; compiles the benchmark. Returns its path."""
    # Two invocations: `--bin` would apply to brook-ffi too and skip its libraries.
    subprocess.run(["cargo", "build", "--release", "-p", "brook-ffi"], cwd=REPO, check=True)
    subprocess.run(["cargo", "build", "--release", "-p", "brook-server", "--bin", "brook"],
                   cwd=REPO, check=True)
    binary = target / "release" / "c_producer_bench"
    rdkafka = subprocess.run(["pkg-config", "--cflags", "--libs", "rdkafka"], check=True,
                             capture_output=True, text=True).stdout.split()
    subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
                    "-I", str(target / "include"), "-o", str(binary),
                    str(REPO / "bench" / "c_producer_bench.c"),
                    str(target / "release" / "libbrook_ffi.a"), *rdkafka,
                    "-lpthread", "-ldl", "-lm"], check=True)
    return binary


class Broker:
    """A `brook server` child process on a free loopback port with a temporary data dir."""

    def __init__(self, binary, data_root):
        self.binary = binary
        self.root = tempfile.mkdtemp(prefix="brook-cbench-", dir=data_root)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.bootstrap = f"127.0.0.1:{port}"
        self.log = open(os.path.join(self.root, "brook.log"), "w")
        self.proc = subprocess.Popen(
            [str(binary), "server", "--data-dir", os.path.join(self.root, "data"), "--listen",
             self.bootstrap, "--num-partitions", str(PARTITIONS), "--log-level", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}, see {self.log.name}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("broker did not start listening within 60 s")
                time.sleep(0.05)

    def topics(self, *args):
        subprocess.run([str(self.binary), "topics", "--bootstrap", self.bootstrap, *args],
                       check=True, stdout=subprocess.DEVNULL)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(300)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self.proc.returncode in (0, -signal.SIGTERM):
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            print(f"broker exited with {self.proc.returncode}; its log: {self.log.name}")


def run_once(bench, broker, mode, topic, records, size, acks, args):
    broker.topics("create", topic, "--partitions", str(PARTITIONS))
    idempotence = "true" if acks == "all" else "false"
    out = subprocess.run([str(bench), mode, broker.bootstrap, topic, str(records), str(size),
                          acks, str(args.linger_ms), str(args.batch_size), idempotence],
                         capture_output=True, text=True)
    broker.topics("delete", topic)
    if out.returncode != 0:
        sys.exit(f"{mode} run failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    result = json.loads(out.stdout)
    assert result["acked"] == records and result["errors"] == 0, result
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each mode per scenario")
    parser.add_argument("--quick", action="store_true", help="a tenth of the records, 1 round")
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16384, help="batch.size in bytes")
    parser.add_argument("--only", help="run only scenarios whose label contains this")
    parser.add_argument("--data-root", default=None, help="parent of the broker's data dir")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--json", help="also write every run to this file")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1

    target = target_dir()
    bench = build(target)
    broker = Broker(target / "release" / "brook", args.data_root)
    runs = []
    rows = []
    try:
        for label, records, size, acks in SCENARIOS:
            if args.only and args.only not in label:
                continue
            if args.quick:
                records //= 10
            rates = {mode: [] for mode in MODES}
            for round_index in range(args.rounds):
                order = MODES if round_index % 2 == 0 else MODES[::-1]
                for mode in order:
                    topic = f"c-bench-{size}-{acks}-{round_index}-{mode}"
                    result = run_once(bench, broker, mode, topic, records, size, acks, args)
                    rate = records / result["seconds"]
                    rates[mode].append(rate)
                    runs.append({"scenario": label, "round": round_index, **result})
                    print(f"{label:16} {mode:8} round {round_index + 1}: {rate:12,.0f} records/s "
                          f"{rate * size / MB:8.1f} MB/s", flush=True)
            medians = {mode: statistics.median(rates[mode]) for mode in MODES}
            rows.append((label, records, size, medians, rates))
    finally:
        broker.stop()

    lines = [
        f"records of S bytes, no key, {PARTITIONS} partitions, linger.ms={args.linger_ms}, "
        f"batch.size={args.batch_size}, compression none, idempotence on with acks=all and "
        f"off with acks=1; median of {args.rounds} run(s) per client",
        "",
        "| Scenario | Records | brook-ffi records/s | brook-ffi MB/s | librdkafka records/s "
        "| librdkafka MB/s | brook / librdkafka | brook runs / librdkafka runs (records/s) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, records, size, medians, rates in rows:
        b, r = medians["brook"], medians["rdkafka"]
        spread = (", ".join(f"{x:,.0f}" for x in rates["brook"]) + " / "
                  + ", ".join(f"{x:,.0f}" for x in rates["rdkafka"]))
        lines.append(f"| {label} | {records:,} | {b:,.0f} | {b * size / MB:,.1f} | {r:,.0f} "
                     f"| {r * size / MB:,.1f} | {b / r:.2f} | {spread} |")
    table = "\n".join(lines)
    print()
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2) + "\n")


if __name__ == "__main__":
    main()

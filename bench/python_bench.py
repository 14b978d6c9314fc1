#!/usr/bin/env python3
"""Python client benchmark: the `brook` package against confluent-kafka (librdkafka), in one
run against the same `brook server`.

Scenarios, each run by both clients, in alternating order, `--rounds` times (best kept):
  * produce N records of S bytes (no key, linger.ms=5) for each (acks, codec) in the matrix,
    from one Python thread, timed from the first send to the end of flush();
  * consume the same N records back from the beginning of every partition (assign, no
    group), touching each record's value, timed until the last one.
Prints records/s, MB/s (of values), the client process's CPU time per record (every thread
of this Python process: the interpreter and the client's own threads) and the throughput
ratio brook / confluent-kafka per scenario.

Run from the repository root (build the broker and install the package first):
  cargo build --release -p brook-server
  pip install ./python -r bench/requirements.txt
  python bench/python_bench.py                 # 1,000,000 x 100 B; about 2 minutes
  python bench/python_bench.py --records 200000 --rounds 1   # a quick look
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import brook
import confluent_kafka as ck

REPO = Path(__file__).resolve().parents[1]
MB = 1e6


class Broker:
    """A `brook server` child process on a free loopback port with a temporary data dir."""

    def __init__(self, binary, partitions):
        self.root = tempfile.mkdtemp(prefix="brook-pybench-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.bootstrap = f"127.0.0.1:{port}"
        self.log = open(os.path.join(self.root, "brook.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "server", "--data-dir", os.path.join(self.root, "data"), "--listen",
             self.bootstrap, "--num-partitions", str(partitions), "--log-level", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}, see {self.log.name}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("broker did not listen within 10 s")
                time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


def produce_brook(bootstrap, topic, n, payload, acks, codec):
    producer = brook.Producer(bootstrap, acks=acks, linger_ms=5, compression=codec)
    producer.send(topic, payload).result(timeout=30)  # metadata and connection first
    send = producer.send
    cpu = time.process_time()
    start = time.perf_counter()
    for _ in range(n):
        send(topic, payload)
    producer.flush()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    producer.close()
    return elapsed, cpu


def produce_confluent(bootstrap, topic, n, payload, acks, codec):
    producer = ck.Producer({
        "bootstrap.servers": bootstrap, "acks": str(acks), "linger.ms": 5,
        "compression.type": codec, "enable.idempotence": acks == "all",
        "queue.buffering.max.messages": 1_000_000,
    })
    producer.produce(topic, payload)
    producer.flush(30)
    produce = producer.produce
    cpu = time.process_time()
    start = time.perf_counter()
    for _ in range(n):
        try:
            produce(topic, payload)
        except BufferError:
            producer.poll(0.01)
            produce(topic, payload)
    producer.flush()
    elapsed = time.perf_counter() - start
    return elapsed, time.process_time() - cpu


def consume_brook(bootstrap, topic, partitions, n):
    consumer = brook.Consumer(bootstrap, auto_offset_reset="earliest",
                              config={"fetch.max.bytes": 64 * 1024 * 1024,
                                      "max.partition.fetch.bytes": 16 * 1024 * 1024})
    consumer.assign([(topic, p) for p in range(partitions)])
    count = 0
    size = 0
    cpu = time.process_time()
    start = time.perf_counter()
    while count < n:
        for record in consumer.poll(timeout=5.0, max_records=min(10_000, n - count)):
            size += len(record.value)
            count += 1
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    consumer.close()
    return elapsed, cpu, count


def consume_confluent(bootstrap, topic, partitions, n):
    consumer = ck.Consumer({
        "bootstrap.servers": bootstrap, "group.id": "pybench", "enable.auto.commit": False,
        "fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 16 * 1024 * 1024,
    })
    consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(partitions)])
    count = 0
    size = 0
    cpu = time.process_time()
    start = time.perf_counter()
    while count < n:
        for message in consumer.consume(num_messages=min(10_000, n - count), timeout=5.0):
            if message.error():
                raise RuntimeError(message.error())
            size += len(message.value())
            count += 1
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    consumer.close()
    return elapsed, cpu, count


def keep(best, name, elapsed, cpu):
    """Keeps the fastest run of `name` (its wall time and client CPU time)."""
    if name not in best or elapsed < best[name][0]:
        best[name] = (elapsed, cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100, help="value bytes")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="runs per client and scenario; best kept")
    parser.add_argument("--matrix", default="1:none,1:lz4,all:lz4", help="acks:codec,... to produce")
    parser.add_argument("--broker", default=os.environ.get("BROOK_BIN", str(REPO / "target/release/brook")))
    args = parser.parse_args()

    broker = Broker(args.broker, args.partitions)
    admin = brook.Admin(broker.bootstrap)
    payload = (b"0123456789abcdef" * (args.size // 16 + 1))[: args.size]
    n = args.records
    rows = []
    try:
        consume_topic = None
        for spec in args.matrix.split(","):
            acks, codec = spec.split(":")
            best = {}
            for round_ in range(args.rounds):
                order = [("brook", produce_brook), ("confluent", produce_confluent)]
                if round_ % 2:
                    order.reverse()
                for name, fn in order:
                    topic = f"p-{name}-{acks}-{codec}-{round_}"
                    admin.create_topic(topic, partitions=args.partitions, replication_factor=1)
                    elapsed, cpu = fn(broker.bootstrap, topic, n, payload, acks if acks == "all" else int(acks), codec)
                    keep(best, name, elapsed, cpu)
                    if consume_topic is None and codec == "none":
                        consume_topic = topic
                    print(f"  produce acks={acks} {codec:5} {name:9} round {round_}: "
                          f"{n / elapsed:12,.0f} rec/s, {cpu / n * 1e6:.2f} CPU us/rec", file=sys.stderr)
            rows.append((f"produce {n:,} x {args.size} B, acks={acks}, {codec}", best))
        consume_topic = consume_topic or topic
        best = {}
        for round_ in range(args.rounds):
            order = [("brook", consume_brook), ("confluent", consume_confluent)]
            if round_ % 2:
                order.reverse()
            for name, fn in order:
                # +1: the warm-up record each producer sent first.
                elapsed, cpu, count = fn(broker.bootstrap, consume_topic, args.partitions, n + 1)
                keep(best, name, elapsed, cpu)
                print(f"  consume {name:9} round {round_}: {count / elapsed:12,.0f} rec/s,"
                      f" {cpu / count * 1e6:.2f} CPU us/rec", file=sys.stderr)
        rows.append((f"consume {n:,} x {args.size} B (assign, from the start)", best))
    finally:
        broker.stop()

    print(f"\nbrook {brook.__version__} vs confluent-kafka {ck.version()[0]} (librdkafka {ck.libversion()[0]}),"
          f" {args.partitions} partitions, best of {args.rounds}\n")
    print("| scenario | brook rec/s | brook MB/s | brook CPU µs/rec | confluent-kafka rec/s |"
          " confluent-kafka MB/s | confluent-kafka CPU µs/rec | ratio brook/confluent |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, best in rows:
        (b_time, b_cpu), (c_time, c_cpu) = best["brook"], best["confluent"]
        b, c = n / b_time, n / c_time
        print(f"| {label} | {b:,.0f} | {b * args.size / MB:.1f} | {b_cpu / n * 1e6:.2f} | {c:,.0f} |"
              f" {c * args.size / MB:.1f} | {c_cpu / n * 1e6:.2f} | **{b / c:.2f}** |")


if __name__ == "__main__":
    main()

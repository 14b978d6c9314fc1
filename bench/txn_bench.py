#!/usr/bin/env python3
"""Kafka transactions against a single `brook server`, with confluent-kafka (docs/benchmarks.md).

Starts one `brook server` ($BROOK_BIN, else target/release/brook if built, else
target/debug/brook; free loopback port, temporary data dir) unless --bootstrap names a
running broker, and measures with confluent-kafka (librdkafka), every figure against a
baseline of the same run:

  * produce throughput: --records values of --size bytes (default 200,000 × 100 B) to a
    fresh topic of --partitions partitions (default 3, records round the partitions), linger
    --linger-ms (default 5), from one Python thread; idempotent (enable.idempotence=true,
    acks=all, one flush at the end) is the baseline, then transactional with transactions of
    100 and of 1,000 records (begin, produce, commit_transaction). Timed from the first
    produce() to the end of the last flush()/commit_transaction(), after a committed warm-up
    of one record per partition (connections, producer id, metadata). The modes' order
    rotates from run to run. Issue goal: transactions of 1,000 at least 0.8 × idempotent.
  * EndTxn latency: --txns (default 200) transactions of 10 records over the partitions;
    each is flushed (every record acknowledged, AddPartitionsToTxn done) and then
    commit_transaction() timed, so the figure is the EndTxn round trip with the markers.
    The flush() before it (AddPartitionsToTxn and the produce round trip) is shown beside
    it as the reference.
  * read_committed consume of the topic the transactions of 1,000 filled, against
    read_uncommitted of the same topic: a group-less consumer from the beginning of every
    partition, consume() batches of up to 10,000, timed from the first record to the last
    (after an untimed read of the topic, as the broker CRC-checks bytes on their first read;
    the isolation levels' order alternates from run to run); each read must see every record
    once (markers are not records) and nothing more.

Each produced topic's end offsets are checked: records + warm-up, plus one marker per
partition a transaction touched. With a broker it started, the broker's CPU time per scenario
comes from /proc (as in broker_bench.py).

    python3 bench/txn_bench.py [--records 200000] [--runs 1] [--txns 200] [--quick]
    python3 bench/txn_bench.py --bootstrap HOST:PORT     # a broker already running

Needs confluent-kafka (bench/requirements.txt).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import confluent_kafka as ck
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker_bench import Broker, Meter  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 1e6
TIMEOUT_S = 30
GOAL_RATIO = 0.8  # transactions of 1,000 records vs. idempotent produce
GOAL_TXN = 1_000
END_TXN_RECORDS = 10


def default_binary():
    if os.environ.get("BROOK_BIN"):
        return os.environ["BROOK_BIN"]
    release = os.path.join(ROOT, "target", "release", "brook")
    return release if os.access(release, os.X_OK) else os.path.join(ROOT, "target", "debug", "brook")


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Bench:
    def __init__(self, args, bootstrap, broker):
        self.args = args
        self.bootstrap = bootstrap
        self.broker = broker  # None with --bootstrap: no CPU figures
        self.admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})
        self.tag = uuid.uuid4().hex[:6]
        self.topics = []
        self.payload = b"x" * args.size

    # ------------------------------------------------------------------ helpers

    def topic(self, name):
        topic = f"txn-bench-{self.tag}-{len(self.topics)}-{name}"
        futures = self.admin.create_topics(
            [NewTopic(topic, self.args.partitions, self.args.replication_factor)],
            request_timeout=TIMEOUT_S)
        for f in futures.values():
            f.result(TIMEOUT_S)
        self.topics.append(topic)
        return topic

    def producer(self, transactional):
        conf = {
            "bootstrap.servers": self.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": self.args.linger_ms,
            "delivery.report.only.error": True,
            "on_delivery": self.failed,
            "log_level": 2,
        }
        if transactional:
            conf["transactional.id"] = f"txn-bench-{self.tag}-{uuid.uuid4().hex[:8]}"
        p = Producer(conf)
        if transactional:
            p.init_transactions(TIMEOUT_S)
        return p

    def failed(self, err, msg):
        if err is not None:
            raise RuntimeError(f"delivery failed: {msg.topic()}[{msg.partition()}]: {err}")

    def produce(self, p, topic, first, count):
        """Records first .. first+count-1, record i to partition i % partitions."""
        produce, payload, parts = p.produce, self.payload, self.args.partitions
        for i in range(first, first + count):
            while True:
                try:
                    produce(topic, payload, partition=i % parts)
                    break
                except BufferError:  # the local queue is full: serve it
                    p.poll(0.001)

    def flush(self, p):
        left = p.flush(TIMEOUT_S)
        if left:
            raise RuntimeError(f"{left} records undelivered after {TIMEOUT_S} s")

    def end_offsets(self, topic):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "txn-bench-unused",
                      "log_level": 2})
        try:
            return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT_S)[1]
                       for p in range(self.args.partitions))
        finally:
            c.close()

    def check_offsets(self, topic, records, markers):
        """The end offsets: every record (warm-up included) and one marker per partition a
        transaction touched."""
        got = self.end_offsets(topic)
        if got != records + markers:
            raise RuntimeError(f"{topic}: end offsets sum to {got}, expected {records} records"
                               f" + {markers} markers")

    def cpu_note(self, meter):
        if meter.cpu is None:
            return ""
        return f", broker CPU {100 * meter.cpu / meter.wall:.0f} %"

    # ------------------------------------------------------------------ scenarios

    def produce_mode(self, txn_size):
        """txn_size None: idempotent. Returns (records/s, MB/s, seconds, topic, meter)."""
        n, parts = self.args.records, self.args.partitions
        name = "idempotent" if txn_size is None else f"txn{txn_size}"
        topic = self.topic(name)
        p = self.producer(txn_size is not None)
        # Warm-up: one record per partition (committed when transactional).
        if txn_size is not None:
            p.begin_transaction()
        self.produce(p, topic, 0, parts)
        if txn_size is not None:
            p.commit_transaction(TIMEOUT_S)
        else:
            self.flush(p)
        markers = parts if txn_size is not None else 0
        with Meter(self.broker) as m:
            t0 = time.perf_counter()
            if txn_size is None:
                self.produce(p, topic, parts, n)
                self.flush(p)
            else:
                first = parts
                while first < parts + n:
                    count = min(txn_size, parts + n - first)
                    p.begin_transaction()
                    self.produce(p, topic, first, count)
                    p.commit_transaction(TIMEOUT_S)
                    first += count
                    markers += min(count, parts)
            elapsed = time.perf_counter() - t0
        del p
        self.check_offsets(topic, n + parts, markers)
        return n / elapsed, n * self.args.size / elapsed / MB, elapsed, topic, m

    def end_txn_latency(self):
        """Returns (commit latencies, flush latencies, meter)."""
        parts = self.args.partitions
        topic = self.topic("endtxn")
        p = self.producer(True)
        p.begin_transaction()
        self.produce(p, topic, 0, parts)
        p.commit_transaction(TIMEOUT_S)
        commits, flushes = [], []
        first = parts
        with Meter(self.broker) as m:
            for _ in range(self.args.txns):
                p.begin_transaction()
                self.produce(p, topic, first, END_TXN_RECORDS)
                first += END_TXN_RECORDS
                t0 = time.perf_counter()
                self.flush(p)
                t1 = time.perf_counter()
                p.commit_transaction(TIMEOUT_S)
                t2 = time.perf_counter()
                flushes.append(t1 - t0)
                commits.append(t2 - t1)
        del p
        self.check_offsets(topic, first, parts + self.args.txns * min(END_TXN_RECORDS, parts))
        return commits, flushes, m

    def consume(self, topic, isolation, expected):
        """Returns (records/s, MB/s, seconds, meter); every record must arrive once."""
        c = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": f"txn-bench-unused-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
            "log_level": 2,
        })
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                  for p in range(self.args.partitions)])
        count = 0
        first_at = last_at = None
        deadline = time.perf_counter() + max(TIMEOUT_S, expected / 20_000)
        with Meter(self.broker) as m:
            while count < expected:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{isolation}: {count} of {expected} records arrived")
                # consume() returns once it has its whole batch (or at its timeout): one
                # record first, which starts the clock, and at the end no more than are still
                # expected, so that no batch waits out the timeout.
                want = 1 if first_at is None else min(10_000, expected - count)
                for msg in c.consume(num_messages=want, timeout=0.5):
                    err = msg.error()
                    if err is not None:
                        if err.code() < 0:  # local events (partition EOF and such)
                            continue
                        raise KafkaException(err)
                    count += 1
                if first_at is None and count:
                    first_at = time.perf_counter()
                last_at = time.perf_counter()
        # Anything more (a marker delivered as a record, a duplicate) fails the check.
        extra = sum(1 for msg in c.consume(num_messages=10_000, timeout=1.0)
                    if msg.error() is None)
        c.close()
        if count != expected or extra:
            raise RuntimeError(f"{isolation}: {count + extra} records read, expected {expected}")
        elapsed = last_at - first_at  # for every record but the first
        return ((expected - 1) / elapsed, (expected - 1) * self.args.size / elapsed / MB,
                elapsed, m)

    def delete_topics(self):
        if not self.topics:
            return
        try:
            for f in self.admin.delete_topics(self.topics, request_timeout=TIMEOUT_S).values():
                f.result(TIMEOUT_S)
        except Exception as e:  # best effort: only with --bootstrap
            print(f"could not delete the topics: {e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, help="records per produce mode (default 200,000)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--txns", type=int, help="transactions timed for EndTxn (default 200)")
    ap.add_argument("--size", type=int, default=100, help="bytes per value")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--replication-factor", type=int, default=1)
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument("--bootstrap", help="use this running broker instead of starting one")
    ap.add_argument("--brook", default=default_binary(),
                    help="the binary to start (default: $BROOK_BIN, target/release/brook, "
                         "target/debug/brook)")
    ap.add_argument("--data-root", default=tempfile.gettempdir(),
                    help="parent of the broker's temporary data dir")
    ap.add_argument("--quick", action="store_true", help="a smoke run of about 10 s")
    args = ap.parse_args()
    args.records = args.records or (20_000 if args.quick else 200_000)
    args.txns = args.txns or (30 if args.quick else 200)
    sizes = (100, GOAL_TXN)

    broker = None
    if args.bootstrap:
        bootstrap, target = args.bootstrap, f"the broker at {args.bootstrap}"
    else:
        if not os.access(args.brook, os.X_OK):
            sys.exit(f"{args.brook} not found: cargo build --release --bin brook, or set BROOK_BIN")
        broker = Broker(args.brook, args.data_root)
        bootstrap, target = broker.bootstrap, args.brook
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print(f"txn_bench: {target} (tree {commit or '?'}), librdkafka {ck.libversion()[0]}, "
          f"confluent-kafka {ck.version()[0]}; {args.records:,} × {args.size} B records, "
          f"{args.partitions} partitions, linger {args.linger_ms} ms, {args.runs} run(s); "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", flush=True)

    t_start = time.perf_counter()
    modes = [None, *sizes]
    label = {None: "idempotent, acks=all", **{s: f"transactions of {s:,}" for s in sizes}}
    produce = {mode: [] for mode in modes}  # (records/s, MB/s, ratio or None) per run
    commits_all, flushes_all = [], []
    consume = {"read_uncommitted": [], "read_committed": []}  # (records/s, MB/s, ratio)
    bench = None
    try:
        bench = Bench(args, bootstrap, broker)
        for run in range(args.runs):
            print(f"run {run + 1} of {args.runs}", flush=True)
            order = modes[run % len(modes):] + modes[:run % len(modes)]
            got = {}
            for mode in order:
                got[mode] = bench.produce_mode(mode)
                rate, mbs, secs, _, m = got[mode]
                print(f"  produce, {label[mode]}: {rate:,.0f} records/s, {mbs:.1f} MB/s "
                      f"({args.records:,} in {secs:.2f} s{bench.cpu_note(m)})", flush=True)
            base = got[None][0]
            produce[None].append((base, got[None][1], None))
            for mode in sizes:
                ratio = got[mode][0] / base
                produce[mode].append((got[mode][0], got[mode][1], ratio))
                goal = f" (goal ≥ {GOAL_RATIO})" if mode == GOAL_TXN else ""
                print(f"  produce, {label[mode]} vs. idempotent: {ratio:.2f}{goal}", flush=True)

            commits, flushes, m = bench.end_txn_latency()
            commits_all += commits
            flushes_all += flushes
            c50, f50 = pct(commits, 0.5), pct(flushes, 0.5)
            print(f"  EndTxn (commit_transaction of {END_TXN_RECORDS} records over "
                  f"{args.partitions} partitions, n={len(commits)}): p50 {c50 * 1000:.2f} ms, "
                  f"p99 {pct(commits, 0.99) * 1000:.2f} ms, max {max(commits) * 1000:.2f} ms; "
                  f"vs. the flush before it (AddPartitionsToTxn + produce, p50 "
                  f"{f50 * 1000:.2f} ms): {c50 / f50:.2f}"
                  f"{bench.cpu_note(m)}", flush=True)

            topic = got[GOAL_TXN][3]
            expected = args.records + args.partitions
            # An untimed read first: the broker CRC-checks, on their first read since it
            # started, the bytes it serves, which would slow whichever level came first.
            bench.consume(topic, "read_uncommitted", expected)
            # Alternate which isolation level reads first from run to run.
            levels = ["read_uncommitted", "read_committed"]
            if run % 2:
                levels.reverse()
            read = {level: bench.consume(topic, level, expected) for level in levels}
            ru = read["read_uncommitted"][0]
            for level in ("read_uncommitted", "read_committed"):
                rate, mbs, secs, m = read[level]
                ratio = rate / ru
                consume[level].append((rate, mbs, ratio))
                vs = f"; vs. read_uncommitted: {ratio:.2f}" if level == "read_committed" else ""
                print(f"  consume, {level}: {rate:,.0f} records/s, {mbs:.1f} MB/s "
                      f"({expected:,} in {secs:.2f} s{bench.cpu_note(m)}){vs}", flush=True)
        if broker is None:
            bench.delete_topics()
    finally:
        bench = None  # its clients go before the broker
        if broker is not None:
            broker.stop()

    def med(rows, i):
        return statistics.median(r[i] for r in rows)

    def ratios(rows):
        return ", ".join(f"{r[2]:.2f}" for r in rows)

    print(f"\ntotal run time {time.perf_counter() - t_start:.0f} s")
    print(f"\nTransactions, {args.runs} run(s), medians ({args.records:,} × {args.size} B records, "
          f"{args.partitions} partitions, linger {args.linger_ms} ms)\n")
    print("| Scenario | Records/s | MB/s | ratio (same run) | ratio per run |")
    print("|---|---:|---:|---:|---|")
    print(f"| produce, idempotent acks=all (baseline) | {med(produce[None], 0):,.0f} | "
          f"{med(produce[None], 1):.1f} | 1.00 | |")
    for mode in sizes:
        rows = produce[mode]
        print(f"| produce, {label[mode]} | {med(rows, 0):,.0f} | {med(rows, 1):.1f} | "
              f"{med(rows, 2):.2f} | {ratios(rows)} |")
    for level in ("read_uncommitted", "read_committed"):
        rows = consume[level]
        base = " (baseline)" if level == "read_uncommitted" else ""
        print(f"| consume, {level}{base} | {med(rows, 0):,.0f} | {med(rows, 1):.1f} | "
              f"{med(rows, 2):.2f} | {ratios(rows) if not base else ''} |")
    print(f"\n| EndTxn ({END_TXN_RECORDS} records, {args.partitions} partitions) | n | p50 ms | "
          "p99 ms | max ms | flush before it, p50 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| commit_transaction() | {len(commits_all)} | {pct(commits_all, 0.5) * 1000:.2f} | "
          f"{pct(commits_all, 0.99) * 1000:.2f} | {max(commits_all) * 1000:.2f} | "
          f"{pct(flushes_all, 0.5) * 1000:.2f} |")
    goal_ratio = med(produce[GOAL_TXN], 2)
    print("\n| Goal | Target | Measured | Met |\n|---|---|---|---|")
    print(f"| transactional produce, {GOAL_TXN:,} records per transaction, vs. idempotent | "
          f"≥ {GOAL_RATIO} | {goal_ratio:.2f} | {'yes' if goal_ratio >= GOAL_RATIO else 'NO'} |")


if __name__ == "__main__":
    main()

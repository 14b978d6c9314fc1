#!/usr/bin/env python3
"""Brook consumer-group benchmark: librdkafka (confluent-kafka) consumers against `brook server`.

Scenarios:
  * rebalance: a group of 10 consumers (range assignor, session.timeout.ms 6000,
    heartbeat.interval.ms 500) on a 20-partition topic. An 11th member joins, then one
    member leaves (close(), so LeaveGroup); each repeated --iterations times. Measured from
    the subscribe()/close() call to the last on_assign callback of the round, when every
    member holds an assignment and together they own each partition exactly once. "Rounds"
    counts the on_assign callbacks a member got for one event (the goal: 1, i.e. the group
    settles within one rebalance round); after settling, the group must stay quiet for
    2 heartbeat intervals.
  * offset commits: synchronous commit() calls from one group member, one partition per
    commit and all 20 partitions per commit; commits/s and per-commit latency. The same
    against librdkafka's in-process mock cluster gives a client-side ceiling.
The broker's CPU time and peak RSS per scenario come from /proc (as in broker_bench.py).

Run from the repository root:  python bench/group_bench.py [--quick]
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient, NewTopic

from broker_bench import Broker, Meter, mock_producer

MEMBERS = 10
PARTITIONS = 20  # more than 11, so every member of the grown group owns something
SESSION_TIMEOUT_MS = 6000  # Brook's (and Kafka's) group.min.session.timeout.ms
HEARTBEAT_MS = 500
SETTLE_TIMEOUT_S = 60


class Member:
    """One consumer polled by its own thread; records every on_assign."""

    def __init__(self, name, conf, topic):
        self.name = name
        self.topic = topic
        self.conf = conf
        self.lock = threading.Lock()
        self.assigned = None  # frozenset of partitions, None between revoke and assign
        self.assign_times = []
        self.stop = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)

    def on_assign(self, consumer, partitions):
        with self.lock:
            self.assigned = frozenset(p.partition for p in partitions)
            self.assign_times.append(time.perf_counter())

    def on_revoke(self, consumer, partitions):
        with self.lock:
            self.assigned = None

    def run(self):
        try:
            consumer = ck.Consumer(self.conf)
            consumer.subscribe([self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke)
            while not self.stop.is_set():
                consumer.poll(0.02)
            consumer.close()  # sends LeaveGroup
        except Exception as e:  # reported by the main thread
            self.error = e

    def snapshot(self, since):
        with self.lock:
            return self.assigned, [t for t in self.assign_times if t > since]


def member_conf(bootstrap, group, name):
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": name,
        "partition.assignment.strategy": "range",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": HEARTBEAT_MS,
        "enable.auto.commit": False,
        "log_level": 2,
    }


def settled(members, since):
    """(seconds from `since` to the round's last on_assign, max on_assign calls per member)
    once every member holds an assignment after `since` and the assignments partition the
    topic; else None."""
    snaps = [m.snapshot(since) for m in members]
    if any(assigned is None or not times for assigned, times in snaps):
        return None
    sets = [assigned for assigned, _ in snaps]
    if sum(len(s) for s in sets) != PARTITIONS or len(frozenset().union(*sets)) != PARTITIONS:
        return None
    return max(max(times) for _, times in snaps) - since, max(len(times) for _, times in snaps)


def wait_settled(members, since):
    deadline = time.perf_counter() + SETTLE_TIMEOUT_S
    while time.perf_counter() < deadline:
        for m in members:
            if m.error:
                raise RuntimeError(f"{m.name}: {m.error}")
        got = settled(members, since)
        if got:
            # Quiet period: no member may be rebalanced again.
            time.sleep(2 * HEARTBEAT_MS / 1000)
            again = settled(members, since)
            if again:
                return again
        time.sleep(0.002)
    raise RuntimeError(f"group did not settle within {SETTLE_TIMEOUT_S} s")


def rebalance_scenario(broker, admin, iterations):
    topic, group = "group-bench-rebalance", "bench-rebalance"
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(30)
    serial = iter(range(1_000_000))

    def new_member():
        name = f"member-{next(serial)}"
        return Member(name, member_conf(broker.bootstrap, group, name), topic)

    members = [new_member() for _ in range(MEMBERS)]
    t0 = time.perf_counter()
    for m in members:
        m.thread.start()
    initial = wait_settled(members, t0)
    print(f"  initial join of {MEMBERS}: {initial[0] * 1000:.0f} ms, {initial[1]} rounds",
          flush=True)
    joins, leaves = [], []
    with Meter(broker) as meter:
        for i in range(iterations):
            joiner = new_member()
            t0 = time.perf_counter()
            joiner.thread.start()
            members.append(joiner)
            joins.append(wait_settled(members, t0))
            # Alternate between the newest member and the oldest (often the leader).
            leaver = members.pop(-1 if i % 2 == 0 else 0)
            t0 = time.perf_counter()
            leaver.stop.set()
            leaves.append(wait_settled(members, t0))
            leaver.thread.join(10)
            print(f"  iteration {i + 1}: join {joins[-1][0] * 1000:.0f} ms ({joins[-1][1]} rounds), "
                  f"leave {leaves[-1][0] * 1000:.0f} ms ({leaves[-1][1]} rounds)", flush=True)
    for m in members:
        m.stop.set()
    for m in members:
        m.thread.join(10)
    return initial, joins, leaves, meter


def commit_scenario(bootstrap, group, topic, partitions_per_commit, seconds, mock=False):
    """Synchronous commits from one member for `seconds`; returns (commits, seconds, latencies)."""
    mock_cluster = None
    if mock:
        # The mock cluster lives in a producer; producing creates the topic (4 partitions).
        mock_cluster, bootstrap = mock_producer({})
        mock_cluster.produce(topic, b"x")
        mock_cluster.flush(10)
    consumer = ck.Consumer(member_conf(bootstrap, group, "committer"))
    assigned = threading.Event()
    consumer.subscribe([topic], on_assign=lambda c, ps: assigned.set())
    deadline = time.perf_counter() + SETTLE_TIMEOUT_S
    while not assigned.is_set():
        consumer.poll(0.05)
        if time.perf_counter() > deadline:
            raise RuntimeError("the committer was never assigned")
    consumer.poll(0.1)
    parts = sorted(p.partition for p in consumer.assignment())[:partitions_per_commit]
    latencies = []
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += 1
        offsets = [ck.TopicPartition(topic, p, n) for p in parts]
        t = time.perf_counter()
        consumer.commit(offsets=offsets, asynchronous=False)
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - t0
    committed = consumer.committed([ck.TopicPartition(topic, parts[0])], timeout=10)[0].offset
    consumer.close()
    del mock_cluster
    if committed != n:
        raise RuntimeError(f"committed offset {committed}, expected {n}")
    return n, elapsed, latencies


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations, shorter runs")
    ap.add_argument("--broker", default=os.path.join(root, "target/release/brook"))
    ap.add_argument("--data-root", default=tempfile.gettempdir())
    ap.add_argument("--iterations", type=int, help="join/leave events measured")
    ap.add_argument("--seconds", type=float, help="seconds per commit scenario")
    ap.add_argument("--markdown", default="/tmp/group-bench-section.md",
                    help="write the results as a Markdown section here")
    args = ap.parse_args()
    iterations = args.iterations or (3 if args.quick else 6)
    secs = args.seconds or (2.0 if args.quick else 5.0)
    if not os.access(args.broker, os.X_OK):
        sys.exit(f"{args.broker} not found: run `cargo build --release -p brook-server` first")
    versions = f"librdkafka {ck.libversion()[0]}, confluent-kafka {ck.version()[0]}"
    print(f"{versions}, {iterations} join/leave iterations, {secs:g} s per commit scenario",
          flush=True)

    rows, goals = [], []
    broker = Broker(args.broker, args.data_root)
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 2})
        print("rebalance", flush=True)
        initial, joins, leaves, meter = rebalance_scenario(broker, admin, iterations)
        rows.append([f"initial join of {MEMBERS} members", "brook",
                     f"{initial[0] * 1000:.0f} ms", str(initial[1]), "", ""])
        for label, results in ((f"11th member joins a group of {MEMBERS}", joins),
                               (f"a member leaves (LeaveGroup), {MEMBERS + 1} → {MEMBERS}", leaves)):
            ms = [r[0] * 1000 for r in results]
            rows.append([f"{label} (n={len(ms)})", "brook",
                         f"median {statistics.median(ms):.0f} ms, max {max(ms):.0f} ms",
                         str(max(r[1] for r in results)),
                         f"{100 * meter.cpu / meter.wall:.0f}", f"{meter.peak_mb:.1f}"])
        all_rounds = [r[1] for r in joins + leaves]
        goals.append(["stable assignment within one rebalance round after a join or leave",
                      "1 round", f"max {max(all_rounds)} round(s)", max(all_rounds) == 1])

        print("offset commits", flush=True)
        topic = "group-bench-commits"
        for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
            f.result(30)
        for per_commit in (1, PARTITIONS):
            label = f"sync commits, {per_commit} partition{'s' if per_commit > 1 else ''} each"
            for target in ("mock", "brook"):
                mock = target == "mock"
                # The mock cluster auto-creates topics with 4 partitions.
                count = min(per_commit, 4) if mock else per_commit
                with Meter(None if mock else broker) as m:
                    n, dt, lat = commit_scenario(broker.bootstrap, f"bench-commit-{per_commit}",
                                                 topic, count, secs, mock=mock)
                note = f" ({count} partitions)" if count != per_commit else ""
                rows.append([label + note, target,
                             f"{n / dt:,.0f} commits/s, p50 {pct(lat, 0.5) * 1000:.2f} ms, "
                             f"p99 {pct(lat, 0.99) * 1000:.2f} ms", "",
                             "" if mock else f"{100 * m.cpu / m.wall:.0f}",
                             "" if mock else f"{m.peak_mb:.1f}"])
                print(f"  {target} {per_commit}/commit: {n / dt:,.0f} commits/s", flush=True)
    finally:
        broker.stop()

    lines = ["## Consumer groups", "",
             f"`bench/group_bench.py` ({versions}; {os.cpu_count()} CPUs; "
             f"{time.strftime('%Y-%m-%d')}). Rebalance: {MEMBERS} consumers, range assignor, "
             f"{PARTITIONS} partitions, session.timeout.ms {SESSION_TIMEOUT_MS}, "
             f"heartbeat.interval.ms {HEARTBEAT_MS}; time from subscribe()/close() to the last "
             "member's on_assign with a complete, disjoint assignment. Existing members learn of "
             "a rebalance from their next heartbeat, so about one heartbeat interval is the "
             "expected floor. Commits: synchronous `commit()` from one member, each written to "
             "`__consumer_offsets` before the answer; `mock` is librdkafka's in-process mock "
             "cluster (client-side ceiling).", "",
             "| Scenario | Target | Result | Rounds | Broker CPU % | Broker peak RSS MB |",
             "|---|---|---|---:|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "| Goal | Target | Measured | Met |", "|---|---|---|---|"]
    lines += [f"| {g[0]} | {g[1]} | {g[2]} | {'yes' if g[3] else 'NO'} |" for g in goals]
    text = "\n".join(lines)
    print("\n" + text)
    with open(args.markdown, "w") as f:
        f.write(text + "\n")
    print(f"\nwrote {args.markdown}")


if __name__ == "__main__":
    main()

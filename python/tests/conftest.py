"""Fixtures for the brook package's tests: a real `brook server` per test module.

The broker process handling (free port, temporary data directory, readiness, SIGTERM with
exit code 0, no panics) is the interop suite's, loaded from tests/interop/conftest.py, so
the binary is found the same way: $BROOK_BIN, else target/debug/brook of this repository.
"""

import importlib.util
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "brook_interop_fixtures", REPO / "tests" / "interop" / "conftest.py"
)
_interop = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_interop)

Broker = _interop.Broker
BROOK_BIN = _interop.BROOK_BIN
broker = _interop.broker  # module-scoped: one `brook server` per test module
topic_name = _interop.topic_name  # a fresh topic name per test


@pytest.fixture
def admin(broker):
    """An admin client of the module's broker."""
    import brook

    return brook.Admin(broker.bootstrap)


@pytest.fixture
def make_topic(admin, topic_name):
    """Creates a fresh topic with `partitions` partitions and returns its name."""
    created = []

    def make(partitions=1, config=None, name=None):
        name = name or f"{topic_name}-{len(created)}"
        admin.create_topic(name, partitions=partitions, replication_factor=1, config=config)
        created.append(name)
        return name

    return make


def group_name():
    """A fresh consumer group id."""
    return f"g-{uuid.uuid4().hex[:10]}"

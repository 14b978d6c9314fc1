"""brook: a Python client for Brook and any Kafka-compatible broker.

``Producer`` (batching, compression, idempotence, Java-compatible key partitioning),
``Consumer`` (consumer groups or hand-assigned partitions, commits, seek, pause) and
``Admin`` (topics and their configs), built on Brook's Rust client. Calls that wait on the
network release the GIL. See docs/python.md in the Brook repository.
"""

from ._brook import (
    Admin,
    CommitFuture,
    Consumer,
    DeliveryFuture,
    GroupDescription,
    GroupListing,
    MemberDescription,
    PartitionDescription,
    Producer,
    Record,
    RecordMetadata,
    TopicDescription,
    TopicPartition,
    __version__,
)
from ._errors import BrookError, ConfigError, KafkaTimeoutError, ProducerFencedError

__all__ = [
    "Admin",
    "BrookError",
    "CommitFuture",
    "ConfigError",
    "Consumer",
    "DeliveryFuture",
    "GroupDescription",
    "GroupListing",
    "KafkaTimeoutError",
    "MemberDescription",
    "PartitionDescription",
    "Producer",
    "ProducerFencedError",
    "Record",
    "RecordMetadata",
    "TopicDescription",
    "TopicPartition",
    "__version__",
]

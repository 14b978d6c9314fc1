"""Type stubs of the brook package (the classes are implemented in Rust, brook._brook)."""

from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union, final

from typing_extensions import TypeAlias

from ._errors import BrookError as BrookError
from ._errors import ConfigError as ConfigError
from ._errors import KafkaTimeoutError as KafkaTimeoutError
from ._errors import ProducerFencedError as ProducerFencedError

__version__: str

__all__ = [
    "Admin",
    "BrookError",
    "CommitFuture",
    "ConfigError",
    "Consumer",
    "DeliveryFuture",
    "KafkaTimeoutError",
    "PartitionDescription",
    "Producer",
    "ProducerFencedError",
    "Record",
    "RecordMetadata",
    "TopicDescription",
    "TopicPartition",
    "__version__",
]

# Type aliases for the stubs only (not importable at runtime).
_BytesLike: TypeAlias = Union[bytes, bytearray, str]
"""A key, value or header value; str is sent as UTF-8."""
_HeaderList: TypeAlias = Union[Sequence[Tuple[str, Optional[_BytesLike]]], Mapping[str, Optional[_BytesLike]]]
_ConfigValue: TypeAlias = Union[str, int, float, bool]
_PartitionLike: TypeAlias = Union["TopicPartition", Tuple[str, int]]

@final
class TopicPartition:
    """A topic's partition; hashable and ordered. A (topic, partition) tuple is accepted
    wherever a TopicPartition is."""

    def __new__(cls, topic: str, partition: int) -> "TopicPartition": ...
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __lt__(self, value: "TopicPartition", /) -> bool: ...
    def __le__(self, value: "TopicPartition", /) -> bool: ...
    def __gt__(self, value: "TopicPartition", /) -> bool: ...
    def __ge__(self, value: "TopicPartition", /) -> bool: ...

@final
class RecordMetadata:
    """Where a produced record landed (its delivery report)."""

    topic: str
    partition: int
    offset: int
    """The record's offset, or -1 with acks=0."""
    timestamp: int
    """Create time, or the broker's append time if the topic uses it (ms since the epoch)."""

@final
class DeliveryFuture:
    """The pending delivery report of one Producer.send."""

    def done(self) -> bool:
        """Whether the broker answered (or the record failed)."""
    def result(self, timeout: Optional[float] = None) -> RecordMetadata:
        """Waits at most `timeout` seconds (None: no limit) for the delivery report; raises
        the delivery's error, or KafkaTimeoutError if it did not come in time."""

@final
class Producer:
    """A batching, compressing, idempotent producer (see docs/python.md). Thread-safe."""

    def __new__(
        cls,
        bootstrap_servers: str,
        *,
        acks: Union[str, int, None] = None,
        linger_ms: Optional[int] = None,
        batch_size: Optional[int] = None,
        compression: Optional[str] = None,
        retries: Optional[int] = None,
        enable_idempotence: Optional[bool] = None,
        client_id: Optional[str] = None,
        request_timeout_ms: Optional[int] = None,
        delivery_timeout_ms: Optional[int] = None,
        config: Optional[Mapping[str, _ConfigValue]] = None,
    ) -> "Producer":
        """`acks` is "all" (default), 1 or 0; `compression` "none", "gzip", "snappy", "lz4"
        or "zstd"; `config` takes any librdkafka/Java producer property name."""
    def send(
        self,
        topic: str,
        value: Optional[_BytesLike] = None,
        key: Optional[_BytesLike] = None,
        *,
        partition: Optional[int] = None,
        timestamp: Optional[int] = None,
        headers: Optional[_HeaderList] = None,
    ) -> DeliveryFuture:
        """Queues a record; returns its DeliveryFuture. Waits only for the topic's metadata
        or for room in the queue."""
    def flush(self, timeout: Optional[float] = None) -> None:
        """Sends everything queued and waits for every answer (KafkaTimeoutError after
        `timeout` seconds)."""
    def partition_count(self, topic: str) -> int:
        """The number of partitions of `topic`."""
    def close(self, timeout: Optional[float] = None) -> None:
        """Flushes and stops the producer."""
    def __enter__(self) -> "Producer": ...
    def __exit__(self, *args: object) -> bool: ...

@final
class Record:
    """A consumed record."""

    @property
    def topic(self) -> str: ...
    partition: int
    offset: int
    timestamp: int
    """Milliseconds since the epoch: create time, or the broker's append time."""
    @property
    def key(self) -> Optional[bytes]: ...
    @property
    def value(self) -> Optional[bytes]: ...
    @property
    def headers(self) -> List[Tuple[str, Optional[bytes]]]: ...

@final
class CommitFuture:
    """An asynchronous commit under way."""

    def result(self) -> None:
        """Waits for the commit; raises its error if it failed."""

@final
class Consumer:
    """A consumer-group member (`topics=`/`subscribe` with `group_id`) or a reader of
    assigned partitions (`assign`). Iterate it, or call poll. Not thread-safe."""

    def __new__(
        cls,
        bootstrap_servers: str,
        *,
        group_id: Optional[str] = None,
        topics: Optional[Sequence[str]] = None,
        auto_offset_reset: Optional[str] = None,
        isolation_level: Optional[str] = None,
        enable_auto_commit: Optional[bool] = None,
        auto_commit_interval_ms: Optional[int] = None,
        session_timeout_ms: Optional[int] = None,
        heartbeat_interval_ms: Optional[int] = None,
        max_poll_interval_ms: Optional[int] = None,
        max_poll_records: Optional[int] = None,
        partition_assignment_strategy: Optional[str] = None,
        client_id: Optional[str] = None,
        consumer_timeout_ms: Optional[float] = None,
        config: Optional[Mapping[str, _ConfigValue]] = None,
    ) -> "Consumer":
        """`auto_offset_reset`: "earliest", "latest" (default) or "none";
        `isolation_level`: "read_uncommitted" (default) or "read_committed";
        `consumer_timeout_ms`: iteration stops after that long without a record (None:
        never)."""
    def subscribe(self, topics: Sequence[str]) -> None:
        """Joins the group subscribed to `topics`."""
    def subscription(self) -> List[str]: ...
    def unsubscribe(self) -> None:
        """Leaves the group."""
    def assign(self, partitions: Sequence[_PartitionLike]) -> None:
        """Reads these partitions instead of joining a group."""
    def assignment(self) -> List[TopicPartition]: ...
    def poll(self, timeout: Optional[float] = 1.0, max_records: Optional[int] = None) -> List[Record]:
        """Up to `max_records` records, waiting at most `timeout` seconds; [] on timeout."""
    def __iter__(self) -> Iterator[Record]: ...
    def __next__(self) -> Record: ...
    def commit(
        self,
        offsets: Optional[Mapping[_PartitionLike, int]] = None,
        asynchronous: bool = False,
    ) -> Optional[CommitFuture]:
        """Commits the positions (or `offsets`: next offset to read per partition); with
        asynchronous=True returns a CommitFuture at once."""
    def committed(self, partitions: Optional[Sequence[_PartitionLike]] = None) -> Dict[TopicPartition, Optional[int]]: ...
    def position(self, partition: Optional[_PartitionLike] = None) -> Union[int, Dict[TopicPartition, int]]:
        """The next offset returned from `partition`; without it, a dict for all assigned."""
    def seek(self, partition: _PartitionLike, offset: int) -> None: ...
    def seek_to_beginning(self, partitions: Optional[Sequence[_PartitionLike]] = None) -> None: ...
    def seek_to_end(self, partitions: Optional[Sequence[_PartitionLike]] = None) -> None: ...
    def pause(self, partitions: Sequence[_PartitionLike]) -> None: ...
    def resume(self, partitions: Sequence[_PartitionLike]) -> None: ...
    def paused(self) -> List[TopicPartition]: ...
    def beginning_offsets(self, partitions: Sequence[_PartitionLike]) -> Dict[TopicPartition, int]: ...
    def end_offsets(self, partitions: Sequence[_PartitionLike]) -> Dict[TopicPartition, int]: ...
    def close(self) -> None:
        """Commits (with auto-commit), leaves the group and releases the consumer."""
    def __enter__(self) -> "Consumer": ...
    def __exit__(self, *args: object) -> bool: ...

@final
class PartitionDescription:
    """One partition of a TopicDescription."""

    partition: int
    leader: int
    leader_epoch: int
    replicas: List[int]
    isr: List[int]

@final
class TopicDescription:
    """A topic as the metadata describes it."""

    name: str
    is_internal: bool
    @property
    def partitions(self) -> List[PartitionDescription]: ...

@final
@final
class GroupListing:
    """One consumer group as ``Admin.list_groups`` reports it."""

    @property
    def group_id(self) -> str: ...
    @property
    def state(self) -> Optional[str]:
        """The group's state ("Stable", "Empty", …); None from brokers that do not say."""
    @property
    def protocol_type(self) -> str: ...

@final
class MemberDescription:
    """One member of a described group."""

    @property
    def member_id(self) -> str: ...
    @property
    def instance_id(self) -> Optional[str]:
        """The member's group.instance.id if it is a static member."""
    @property
    def client_id(self) -> str: ...
    @property
    def client_host(self) -> str: ...
    @property
    def assignment(self) -> List[TopicPartition]:
        """Its partitions (decoded for "consumer" groups; empty otherwise)."""

@final
class GroupDescription:
    """A consumer group as ``Admin.describe_group`` reports it."""

    @property
    def group_id(self) -> str: ...
    @property
    def state(self) -> str:
        """One of PreparingRebalance, CompletingRebalance, Stable or Empty."""
    @property
    def protocol_type(self) -> str: ...
    @property
    def protocol(self) -> str:
        """The assignor the members agreed on ("range", …); empty between generations."""
    @property
    def members(self) -> List[MemberDescription]: ...

class Admin:
    """Topics and their configs, consumer groups and their committed offsets. Every call
    waits with the GIL released."""

    def __new__(cls, bootstrap_servers: str, *, config: Optional[Mapping[str, _ConfigValue]] = None) -> "Admin": ...
    def create_topic(
        self,
        name: str,
        partitions: int = -1,
        replication_factor: int = -1,
        config: Optional[Mapping[str, str]] = None,
    ) -> None:
        """Creates a topic; BrookError named TOPIC_ALREADY_EXISTS if it exists."""
    def delete_topic(self, name: str) -> None: ...
    def list_topics(self) -> List[str]: ...
    def describe_topic(self, name: str) -> TopicDescription: ...
    def create_partitions(self, name: str, total_partitions: int) -> None: ...
    def describe_configs(self, name: str) -> Dict[str, Optional[str]]: ...
    def alter_configs(self, name: str, changes: Mapping[str, Optional[_ConfigValue]]) -> None: ...
    def list_groups(self, states: Optional[Sequence[str]] = None) -> List[GroupListing]:
        """Every consumer group, sorted by id; only those in ``states`` if given."""
    def describe_group(self, group: str) -> GroupDescription:
        """State, protocol and members; BrookError named GROUP_ID_NOT_FOUND if unknown."""
    def delete_group(self, group: str) -> None:
        """Deletes the group and its offsets; NON_EMPTY_GROUP while it has members."""
    def list_group_offsets(
        self, group: str, partitions: Optional[Sequence[_PartitionLike]] = None
    ) -> Dict[TopicPartition, int]:
        """Committed offsets (next offset to read); partitions without one are absent."""
    def alter_group_offsets(self, group: str, offsets: Mapping[_PartitionLike, int]) -> None:
        """Sets committed offsets; the group must have no members (else UNKNOWN_MEMBER_ID)."""
    def delete_group_offsets(self, group: str, partitions: Sequence[_PartitionLike]) -> None:
        """Deletes committed offsets; refused for topics the group's members consume."""
    def close(self) -> None: ...
    def __enter__(self) -> "Admin": ...
    def __exit__(self, *args: object) -> bool: ...

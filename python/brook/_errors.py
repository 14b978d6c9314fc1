"""The exceptions raised by brook. Every error is a `BrookError` carrying the Kafka error
name and code; a few common kinds have subclasses so they can be caught on their own."""

from __future__ import annotations


class BrookError(Exception):
    """A failed call: a Kafka error from the broker, or a failure on the client's side
    (connection, configuration, timeout), named with the closest Kafka error.

    Attributes: ``name`` (Kafka error name, e.g. ``"UNKNOWN_TOPIC_OR_PARTITION"``),
    ``code`` (its numeric code), ``retriable`` (whether trying again may succeed) and
    ``message``.
    """

    def __init__(self, message: str, name: str = "UNKNOWN_SERVER_ERROR", code: int = -1,
                 retriable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.code = code
        self.retriable = retriable

    def __reduce__(self):
        return (type(self), (self.message, self.name, self.code, self.retriable))


class KafkaTimeoutError(BrookError, TimeoutError):
    """An operation did not finish in time (``REQUEST_TIMED_OUT``); also a ``TimeoutError``."""


class ConfigError(BrookError, ValueError):
    """A configuration value is unknown or out of range, on the client or in a topic config
    the broker refused (``INVALID_CONFIG``); also a ``ValueError``."""


class ProducerFencedError(BrookError):
    """A newer producer with the same id took over (``PRODUCER_FENCED`` or
    ``INVALID_PRODUCER_EPOCH``): this producer must stop."""


__all__ = ["BrookError", "KafkaTimeoutError", "ConfigError", "ProducerFencedError"]

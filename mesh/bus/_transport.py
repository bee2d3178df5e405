"""The transport interface: one for real Kafka, one in-memory; the same contract tests run on both."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

Header = tuple[str, bytes]
TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class Message:
    """One consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = field(default=())
    timestamp_ms: int = 0

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class ProducerTransport(Protocol):
    def produce(self, topic: str, value: bytes, key: bytes | None, headers: list[Header]) -> None:
        """Queue one record; raise :class:`mesh.bus.PublishError` on a delivery failure seen so far."""

    def flush(self, timeout_s: float) -> int:
        """Wait for queued records; return how many are still undelivered."""

    def close(self) -> None: ...


class ConsumerTransport(Protocol):
    def subscribe(self, topics: list[str]) -> None: ...

    def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
        """Up to ``max_messages`` records, waiting at most ``timeout_s`` for the first."""

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit the NEXT offset to read per partition, synchronously."""

    def lag(self) -> dict[TopicPartition, int]:
        """Messages behind the high watermark per assigned partition."""

    def close(self) -> None: ...

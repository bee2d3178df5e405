"""The transport interface: one for real Kafka, one in-memory; the same contract tests run on both."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import NamedTuple, Protocol

Header = tuple[str, bytes]
TopicPartition = tuple[str, int]
OnRevoke = Callable[[list[TopicPartition]], None]


class Message(NamedTuple):
    """One consumed record (immutable; a named tuple: built once per record on the consumer's hot path, where
    a frozen dataclass's per-field ``object.__setattr__`` cost more than reading the record)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()
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
    def subscribe(self, topics: list[str], on_revoke: OnRevoke | None = None) -> None:
        """Join the group for ``topics``; ``on_revoke`` is called (inside :meth:`poll`) with the partitions a
        rebalance takes away, before they go (their uncommitted records will be read again by the new owner)."""

    def poll(self, max_messages: int, timeout_s: float, linger_s: float = 0.0) -> list[Message]:
        """What has arrived: wait at most ``timeout_s`` for the first record, then gather more for at most
        ``linger_s``, up to ``max_messages`` (it never waits for a full batch)."""

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        """Stop fetching these assigned partitions: :meth:`poll` returns none of their records (and keeps the
        group membership alive) until :meth:`resume`. Records handed out before stay handed out."""

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        """Fetch these partitions again, from the record after the last one handed out."""

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member holds now."""

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit the NEXT offset to read per partition, synchronously."""

    def lag(self) -> dict[TopicPartition, int]:
        """Messages behind the high watermark per assigned partition."""

    def close(self) -> None: ...

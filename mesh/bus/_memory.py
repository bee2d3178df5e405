"""An in-process broker for unit tests; passes the same contract suite as real Kafka."""

from __future__ import annotations

import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Collection

from mesh.bus._transport import Header, Message, OnRevoke, TopicPartition


class InMemoryBroker:
    """Topics with partitions, committed offsets per group. Thread-safe."""

    def __init__(self, default_partitions: int = 3) -> None:
        self._partitions = default_partitions
        self._logs: dict[str, list[list[Message]]] = {}
        self._committed: dict[tuple[str, str, int], int] = {}
        self._cond = threading.Condition()

    def _topic(self, name: str) -> list[list[Message]]:
        if name not in self._logs:
            self._logs[name] = [[] for _ in range(self._partitions)]
        return self._logs[name]

    def append(self, topic: str, value: bytes, key: bytes | None, headers: list[Header]) -> None:
        with self._cond:
            parts = self._topic(topic)
            p = zlib.crc32(key) % len(parts) if key else sum(len(x) for x in parts) % len(parts)
            parts[p].append(Message(topic, p, len(parts[p]), key, value, tuple(headers), int(time.time() * 1000)))
            self._cond.notify_all()

    def messages(self, topic: str) -> list[Message]:
        """Every record of a topic, partition by partition (for assertions)."""
        with self._cond:
            return [m for part in self._topic(topic) for m in part]

    def producer(self) -> InMemoryProducer:
        return InMemoryProducer(self)

    def consumer(self, group_id: str) -> InMemoryConsumer:
        return InMemoryConsumer(self, group_id)

    def read(self, group: str, topics: list[str], positions: dict[TopicPartition, int], n: int,
             timeout_s: float, linger_s: float = 0.0, paused: Collection[TopicPartition] = ()) -> list[Message]:
        """Up to ``n`` records: wait at most ``timeout_s`` for the first, then at most ``linger_s`` for more."""
        deadline = time.monotonic() + timeout_s
        out: list[Message] = []
        with self._cond:
            while True:
                for topic in topics:
                    for p, log in enumerate(self._topic(topic)):
                        if (topic, p) in paused:
                            continue
                        pos = positions.setdefault((topic, p), self._committed.get((group, topic, p), 0))
                        take = log[pos:pos + n - len(out)]
                        out.extend(take)
                        positions[(topic, p)] = pos + len(take)
                        if len(out) >= n:
                            return out
                if out and deadline > time.monotonic() + linger_s:
                    deadline = time.monotonic() + linger_s  # the first record came: linger, then return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return out
                self._cond.wait(remaining)

    def partitions(self, topics: list[str]) -> set[TopicPartition]:
        with self._cond:
            return {(topic, p) for topic in topics for p in range(len(self._topic(topic)))}

    def commit(self, group: str, offsets: dict[TopicPartition, int]) -> None:
        with self._cond:
            for (topic, p), offset in offsets.items():
                self._committed[(group, topic, p)] = offset

    def end_offsets(self, topic: str) -> list[int]:
        with self._cond:
            return [len(log) for log in self._topic(topic)]


class InMemoryProducer:
    def __init__(self, broker: InMemoryBroker) -> None:
        self._broker = broker

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: list[Header]) -> None:
        self._broker.append(topic, value, key, headers)

    def flush(self, timeout_s: float) -> int:
        return 0

    def close(self) -> None:
        return None


class InMemoryConsumer:
    def __init__(self, broker: InMemoryBroker, group_id: str) -> None:
        self._broker = broker
        self._group = group_id
        self._topics: list[str] = []
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()

    def subscribe(self, topics: list[str], on_revoke: OnRevoke | None = None) -> None:
        # One member holds every partition: there are no rebalances, so on_revoke is never called.
        self._topics = list(topics)
        self._positions.clear()

    def poll(self, max_messages: int, timeout_s: float, linger_s: float = 0.0) -> list[Message]:
        return self._broker.read(self._group, self._topics, self._positions, max_messages, timeout_s, linger_s,
                                 self._paused)

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        self._paused.update(partitions)

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        self._paused.difference_update(partitions)

    def assignment(self) -> set[TopicPartition]:
        return self._broker.partitions(self._topics)

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self._broker.commit(self._group, offsets)

    def lag(self) -> dict[TopicPartition, int]:
        lags: dict[TopicPartition, int] = defaultdict(int)
        for topic in self._topics:
            for p, end in enumerate(self._broker.end_offsets(topic)):
                lags[(topic, p)] = end - self._positions.get((topic, p), 0)
        return dict(lags)

    def close(self) -> None:
        self._positions.clear()

"""Where the stream goes: a length-delimited protobuf file (with its reader), a publisher, a rate limit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol

from mesh.events import Envelope, decode, encode


class EventSink(Protocol):
    """Receives envelopes in stream order."""

    def write(self, env: Envelope) -> None: ...

    def close(self) -> None: ...


class EnvelopePublisher(Protocol):
    """What :class:`PublisherSink` needs of ``mesh.bus.KafkaPublisher``."""

    def publish(self, env: Envelope) -> None: ...

    def flush(self, timeout_s: float = 30.0) -> None: ...

    def close(self) -> None: ...


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class FileSink:
    """Each envelope as a varint length followed by its bytes (the layout of Java's ``writeDelimitedTo``)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: BinaryIO = self.path.open("wb")

    def write(self, env: Envelope) -> None:
        data = encode(env)
        self._fh.write(_varint(len(data)))
        self._fh.write(data)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> FileSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class TruncatedFile(ValueError):
    """The file ends in the middle of a record."""


def read_events(path: Path | str) -> Iterator[Envelope]:
    """Envelopes of a file written by :class:`FileSink`, validated, in file order."""
    with Path(path).open("rb") as fh:
        while True:
            length = _read_varint(fh)
            if length is None:
                return
            data = fh.read(length)
            if len(data) != length:
                raise TruncatedFile(f"{path}: record of {length} bytes cut at {len(data)}")
            yield decode(data)


def _read_varint(fh: BinaryIO) -> int | None:
    shift, value = 0, 0
    while True:
        b = fh.read(1)
        if not b:
            if shift:
                raise TruncatedFile("file ends inside a length prefix")
            return None
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7


class PublisherSink:
    """Sends envelopes through a publisher (``mesh.bus.KafkaPublisher``); close flushes."""

    def __init__(self, publisher: EnvelopePublisher, flush_timeout_s: float = 60.0) -> None:
        self._publisher = publisher
        self._timeout = flush_timeout_s

    def write(self, env: Envelope) -> None:
        self._publisher.publish(env)

    def close(self) -> None:
        self._publisher.flush(self._timeout)
        self._publisher.close()


class TokenBucket:
    """At most ``rate`` events per second on average, bursts up to ``burst``; waits by sleeping."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10.0)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()

    def acquire(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1.0:
            self._sleep((1.0 - self._tokens) / self.rate)
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        self._tokens -= 1.0


def throttle(events: Iterable[Envelope], bucket: TokenBucket | None) -> Iterator[Envelope]:
    """``events`` unchanged, paced by ``bucket`` (as fast as possible when it is None)."""
    for env in events:
        if bucket is not None:
            bucket.acquire()
        yield env

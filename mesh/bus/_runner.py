"""The consumer runner: decode -> dedupe -> handle (retry policy) -> publish effects -> commit.

Exactly three outcomes for a message besides success: invalid (to the DLQ, capped), transient failure
(retried by the policy; when exhausted the consumer stops without committing), duplicate (skipped).
Offsets are committed last, after the handler's effects and the DLQ records are flushed.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Histogram

from mesh.bus._dedupe import DedupeStore
from mesh.bus._errors import DeadLetterCapExceeded, RetriesExhausted, TransientError
from mesh.bus._policy import DeadLetterPolicy, RetryPolicy
from mesh.bus._publisher import Publisher
from mesh.bus._transport import ConsumerTransport, Message, TopicPartition
from mesh.events import Envelope, InvalidEvent, decode
from mesh.telemetry import (
    CONSUMER_LAG,
    EVENTS_DEAD_LETTERED,
    EVENTS_DUPLICATES,
    EVENTS_FAILED,
    EVENTS_HANDLED,
    HANDLER_SECONDS,
    context_from_headers,
)
from mesh.telemetry import names as n

log = logging.getLogger(__name__)

Handler = Callable[[Envelope], None]
BatchHandler = Callable[[Sequence[Envelope]], None]


@dataclass
class RunStats:
    """What one :meth:`ConsumerRunner.run` did."""

    handled: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    retries: int = 0
    batches: int = 0
    dlq_reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunnerOptions:
    """How the runner polls and when it stops by itself."""

    batch_size: int = 200
    """Most records handled between two commits."""
    poll_timeout_s: float = 0.5
    """Longest wait for the first record of a batch."""
    max_messages: int | None = None
    """Stop after this many records (tests, backfills); None = run until stopped."""
    idle_timeout_s: float | None = None
    """Stop after this long without a record; None = never."""
    lag_interval_s: float = 5.0
    """How often the consumer-lag gauge is refreshed."""


@dataclass(frozen=True)
class _TopicMetrics:
    handled: Counter
    duplicates: Counter
    seconds: Histogram


class ConsumerRunner:
    """Runs one handler over logical topics as one consumer group member."""

    def __init__(
        self,
        *,
        consumer: ConsumerTransport,
        publisher: Publisher,
        topics: Sequence[str],
        group_id: str,
        handler: Handler | None = None,
        batch_handler: BatchHandler | None = None,
        retry: RetryPolicy | None = None,
        dead_letter: DeadLetterPolicy | None = None,
        dedupe: DedupeStore | None = None,
        options: RunnerOptions | None = None,
    ) -> None:
        self._consumer = consumer
        self._publisher = publisher
        self._registry = publisher.registry
        self._allowed = {self._registry.physical(t): set(self._registry.spec(t).event_types) for t in topics}
        self._group = group_id
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler (per event) or batch_handler (per batch)")
        self._batch_handler = batch_handler
        self._handler: Handler = handler or (lambda env: batch_handler([env]))  # type: ignore[misc]
        self._retry = retry or RetryPolicy()
        self._dlq = dead_letter or DeadLetterPolicy()
        self._dedupe = dedupe
        self._options = options or RunnerOptions()
        self._stop = threading.Event()
        self._tracer = trace.get_tracer("mesh.bus")
        self._consecutive_invalid = 0
        self._children: dict[str, _TopicMetrics] = {}

    def _metrics(self, topic: str) -> _TopicMetrics:
        """The hot-path metric children of one topic (labels() per message costs ~10% of the loop)."""
        children = self._children.get(topic)
        if children is None:
            children = self._children[topic] = _TopicMetrics(
                EVENTS_HANDLED.labels(topic, self._group), EVENTS_DUPLICATES.labels(topic, self._group),
                HANDLER_SECONDS.labels(topic, self._group))
        return children

    def stop(self) -> None:
        """Finish the batch in flight, commit it, and return from :meth:`run`."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT finish in-flight work and commit (call from the main thread)."""
        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: finishing the batch in flight, then stopping", signum)
            self.stop()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)

    def run(self) -> RunStats:
        stats = RunStats()
        opts = self._options
        self._consumer.subscribe(list(self._allowed))
        last_record, last_lag = time.monotonic(), 0.0
        try:
            while not self._stop.is_set():
                want = opts.batch_size
                if opts.max_messages is not None:
                    want = min(want, opts.max_messages - stats.handled - stats.dead_lettered - stats.duplicates)
                    if want <= 0:
                        break
                batch = self._consumer.poll(want, opts.poll_timeout_s)
                now = time.monotonic()
                if batch:
                    self._process_batch(batch, stats)
                    last_record = now
                elif opts.idle_timeout_s is not None and now - last_record >= opts.idle_timeout_s:
                    break
                if now - last_lag >= opts.lag_interval_s:
                    self._report_lag()
                    last_lag = now
        finally:
            self._consumer.close()
        return stats

    def _process_batch(self, batch: list[Message], stats: RunStats) -> None:
        offsets: dict[TopicPartition, int] = {}
        decoded = [self._decode(msg) for msg in batch]
        ids = [env.event_id for env in decoded if isinstance(env, Envelope)]
        done = self._dedupe.seen_many(self._group, ids) if self._dedupe is not None else set()
        handled: list[str] = []
        try:
            if self._batch_handler is not None and self._handle_bulk(batch, decoded, done, stats, handled):
                for msg in batch:
                    offsets[(msg.topic, msg.partition)] = msg.offset + 1
                return
            for msg, env in zip(batch, decoded, strict=True):
                if isinstance(env, InvalidEvent):
                    self._dead_letter(msg, str(env), stats)
                elif self._process(msg, env, done, stats):
                    handled.append(env.event_id)
                offsets[(msg.topic, msg.partition)] = msg.offset + 1
        finally:
            # Effects first (handler outputs and DLQ records delivered, ids marked), then the commit.
            self._publisher.flush()
            if self._dedupe is not None:
                self._dedupe.mark_many(self._group, handled)
            self._consumer.commit(offsets)
        stats.batches += 1

    def _handle_bulk(self, batch: list[Message], decoded: list[Envelope | InvalidEvent], done: set[str],
                     stats: RunStats, handled: list[str]) -> bool:
        """The whole batch through the batch handler in one call (invalid ones dead-lettered first).

        Returns False, having applied nothing, when the handler rejects the batch: the caller then
        goes event by event so that only the poison event is dead-lettered.
        """
        assert self._batch_handler is not None
        fresh: list[tuple[Message, Envelope]] = []
        for msg, env in zip(batch, decoded, strict=True):
            if isinstance(env, InvalidEvent):
                self._dead_letter(msg, str(env), stats)
            elif env.event_id in done:
                stats.duplicates += 1
                self._metrics(msg.topic).duplicates.inc()
            else:
                done.add(env.event_id)
                fresh.append((msg, env))
        if not fresh:
            return True
        links = [trace.Link(s.get_span_context()) for s in
                 (trace.get_current_span(context_from_headers(m.headers)) for m, _ in fresh[:64])
                 if s.get_span_context().is_valid]
        envs = [env for _, env in fresh]
        handler = self._batch_handler
        try:
            self._with_retries(fresh[0][0], f"batch of {len(envs)}", lambda: handler(envs), None, links,
                               {"messaging.batch.message_count": len(envs)})
        except InvalidEvent:
            for _, env in fresh:
                done.discard(env.event_id)
            return False
        for msg, env in fresh:
            handled.append(env.event_id)
            self._metrics(msg.topic).handled.inc()
        stats.handled += len(fresh)
        self._consecutive_invalid = 0
        return True

    def _decode(self, msg: Message) -> Envelope | InvalidEvent:
        try:
            env = decode(msg.value)
        except InvalidEvent as exc:
            return exc
        allowed = self._allowed.get(msg.topic)
        if allowed and env.type not in allowed:
            return InvalidEvent(f"event type {env.type!r} is not declared on topic {msg.topic}")
        return env

    def _process(self, msg: Message, env: Envelope, done: set[str], stats: RunStats) -> bool:
        """Handle one decoded event; True when its effect was applied now."""
        if env.event_id in done:
            stats.duplicates += 1
            self._metrics(msg.topic).duplicates.inc()
            return False
        try:
            self._handle(msg, env, stats)
        except InvalidEvent as exc:
            self._dead_letter(msg, f"rejected by handler: {exc}", stats)
            return False
        done.add(env.event_id)  # a duplicate later in the same batch is skipped too
        self._consecutive_invalid = 0
        stats.handled += 1
        self._metrics(msg.topic).handled.inc()
        return True

    def _handle(self, msg: Message, env: Envelope, stats: RunStats) -> None:
        stats.retries += self._with_retries(
            msg, f"{env.type} {env.event_id}", lambda: self._handler(env), context_from_headers(msg.headers), [],
            {"messaging.message.id": env.event_id, "sunday.event_type": env.type, "sunday.tenant_id": env.tenant_id})

    def _with_retries(self, msg: Message, what: str, call: Callable[[], None], parent: otel_context.Context | None,
                      links: list[trace.Link], extra: dict[str, str | int]) -> int:
        """Run ``call`` in a handler span, retrying TransientError by the policy; returns the retries."""
        attempt = 1
        while True:
            with self._tracer.start_as_current_span(
                n.SPAN_HANDLE, context=parent, kind=SpanKind.CONSUMER, links=links,
                attributes={"messaging.destination.name": msg.topic, "messaging.kafka.partition": msg.partition,
                            "messaging.kafka.offset": msg.offset, "messaging.consumer.group.name": self._group,
                            "sunday.attempt": attempt, **extra},
            ) as span:
                started = time.perf_counter()
                try:
                    call()
                    self._metrics(msg.topic).seconds.observe(time.perf_counter() - started)
                    return attempt - 1
                except TransientError as exc:
                    span.set_status(Status(StatusCode.ERROR, str(exc)))
                    EVENTS_FAILED.labels(msg.topic, self._group, "transient").inc()
                    if attempt >= self._retry.max_attempts:
                        raise RetriesExhausted(
                            f"{what} at {msg.topic}[{msg.partition}]@{msg.offset} failed {attempt} times: {exc}"
                        ) from exc
                except InvalidEvent:
                    span.set_status(Status(StatusCode.ERROR, "invalid"))
                    raise
                except Exception as exc:  # a bug or a poison payload: dead-letter it, capped
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                    EVENTS_FAILED.labels(msg.topic, self._group, "error").inc()
                    log.exception("handler failed on %s", what)
                    raise InvalidEvent(f"{type(exc).__name__}: {exc}") from exc
            if self._stop.wait(self._retry.backoff_s(attempt)):
                raise RetriesExhausted("stopped while retrying a transient failure; not committed")
            attempt += 1

    def _dead_letter(self, msg: Message, reason: str, stats: RunStats) -> None:
        self._consecutive_invalid += 1
        if self._consecutive_invalid > self._dlq.max_consecutive:
            raise DeadLetterCapExceeded(
                f"{self._consecutive_invalid} invalid messages in a row on {msg.topic} (cap "
                f"{self._dlq.max_consecutive}); stopping rather than draining the topic into the DLQ. Last: {reason}")
        headers = [*msg.headers,
                   ("dlq.reason", reason.encode()),
                   ("dlq.original.topic", msg.topic.encode()),
                   ("dlq.original.partition", str(msg.partition).encode()),
                   ("dlq.original.offset", str(msg.offset).encode()),
                   ("dlq.consumer.group", self._group.encode()),
                   ("dlq.failed_at", datetime.now(UTC).isoformat().encode())]
        self._publisher.publish_raw(self._dlq.topic, msg.value or b"", msg.key, headers)
        stats.dead_lettered += 1
        stats.dlq_reasons.append(reason)
        EVENTS_DEAD_LETTERED.labels(msg.topic, self._group).inc()
        log.warning("dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason)

    def _report_lag(self) -> None:
        for (topic, partition), lag in self._consumer.lag().items():
            CONSUMER_LAG.labels(topic, self._group, str(partition)).set(lag)

"""The consumer runner: decode -> dedupe -> handle (retry policy) -> publish effects -> commit.

Three outcomes for a message besides success (:mod:`mesh.bus._classify` decides which):
- permanent (undecodable, invalid, declared permanent, or a bug in the handler): to the DLQ with the
  reason; more than ``DeadLetterPolicy.max_consecutive`` in a row stop the consumer loudly;
- transient (an outage of Redis, Feast, a gRPC dependency, the broker, MLflow; a model not loaded yet):
  retried by the policy, then the batch is HELD: its partitions are paused, the same records are retried
  with capped backoff until they go through or :meth:`ConsumerRunner.stop` is called (then nothing more is
  committed), lag grows and ``mesh_consumer_backpressure`` says why. Never dead-lettered, never fatal.
  The runner's own Redis calls (dedupe) and the flush/commit are classified the same way;
- duplicate (event id already handled by the group): skipped.
Offsets are committed last, after the handler's effects and the DLQ records are flushed and the ids marked.

Settling overlaps the next batch (``RunnerOptions.overlap_settle``): once batch N is handled, its flush
and marks run on a background thread while batch N+1 is polled and handled; N's commit is then made by the
polling thread (before N+1 is settled, or as soon as the topic is quiet): a synchronous commit from a
second thread while the first polls could hang for good (seen: a features consumer stuck in commit with
its lag frozen), so the Kafka consumer is only ever used by the polling thread. The order of the
guarantees is the same: N's offsets are committed only after N's outputs are delivered (the publisher's
flush covers exactly what was queued before it; what N+1 publishes meanwhile waits for the next flush)
and N's ids are marked; N+1 is settled only after N is (so a commit never covers an unsettled record);
N's ids count as seen for N+1 until they are marked. A settle that fails is finished in the foreground
with the usual retries and holds (a failed flush handles N's records again). A revoke (inside poll)
waits for the flush and marks of the batch in flight and commits it itself, on the polling thread (a
commit from another thread during a rebalance waits for the rebalance, which waits for the callback), so
the partitions leave with their offsets committed; stop() and the end of :meth:`ConsumerRunner.run` wait
for the settle in flight too.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import FrameType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Histogram

from mesh.bus._classify import Failure, classify
from mesh.bus._dedupe import DedupeStore, RedisDedupe
from mesh.bus._errors import DeadLetterCapExceeded
from mesh.bus._gc import consuming
from mesh.bus._kafka import KafkaConsumerTransport
from mesh.bus._policy import DeadLetterPolicy, RetryPolicy
from mesh.bus._publisher import Publisher
from mesh.bus._transport import ConsumerTransport, Message, TopicPartition
from mesh.config import BusSettings, MeshSettings
from mesh.events import Envelope, InvalidEvent, decode
from mesh.telemetry import (
    CONSUMER_BACKPRESSURE,
    CONSUMER_BACKPRESSURE_RETRIES,
    CONSUMER_LAG,
    EVENTS_DEAD_LETTERED,
    EVENTS_DUPLICATES,
    EVENTS_FAILED,
    EVENTS_HANDLED,
    HANDLER_SECONDS,
    TraceContexts,
)
from mesh.telemetry import names as n

log = logging.getLogger(__name__)

Handler = Callable[[Envelope], None]
BatchHandler = Callable[[Sequence[Envelope]], None]

class _BatchContexts:
    """The producer contexts of a batch handler's events, found lazily: nothing is extracted until a handler
    asks (most batches' handlers never do), and then once per distinct trace header set (:class:`TraceContexts`)."""

    def __init__(self, items: Sequence[tuple[Message, Envelope | InvalidEvent]], fresh: Sequence[int],
                 extract: TraceContexts) -> None:
        self._items, self._fresh, self._extract = items, fresh, extract
        self._headers: dict[str, Sequence[tuple[str, bytes]]] | None = None

    def get(self, event_id: str) -> otel_context.Context | None:
        if self._headers is None:
            self._headers = {self._items[i][1].event_id: self._items[i][0].headers  # type: ignore[union-attr]
                             for i in self._fresh}
        headers = self._headers.get(event_id)
        return None if headers is None else self._extract(headers)


_PRODUCER_CONTEXTS: ContextVar[_BatchContexts | None] = ContextVar("mesh_producer_contexts", default=None)


def producer_context(env: Envelope) -> otel_context.Context | None:
    """Inside a batch handler: the trace context ``env`` was published in (None elsewhere), so that each
    output can continue its own input's trace (the batch's span only links to them)."""
    contexts = _PRODUCER_CONTEXTS.get()
    return None if contexts is None else contexts.get(env.event_id)


@dataclass
class RunStats:
    """What one :meth:`ConsumerRunner.run` did."""

    handled: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    retries: int = 0
    batches: int = 0
    holds: int = 0
    """Retries of a held batch past the retry policy (backpressure)."""
    dlq_reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunnerOptions:
    """How the runner polls and when it stops by itself."""

    batch_size: int = 200
    """Most records handled between two commits."""
    poll_timeout_s: float = 0.5
    """Longest wait for the first record of a batch."""
    linger_s: float = 0.005
    """After the first record, how long to wait for more before handling what came (never for a full batch):
    a few ms batch events that arrive together without adding latency to a quiet topic."""
    max_messages: int | None = None
    """Stop after this many records (tests, backfills); None = run until stopped."""
    idle_timeout_s: float | None = None
    """Stop after this long without a record; None = never."""
    lag_interval_s: float = 5.0
    """How often the consumer-lag gauge is refreshed."""
    idle_interval_s: float = 5.0
    """While no record arrives, how often a batch handler's ``on_idle()`` (if it has one) is called: work
    that waits for time rather than for the next event (a pass over what the last burst left), on the
    polling thread, its outputs flushed after it."""
    backpressure_log_interval_s: float = 10.0
    """While a batch is held, at most one WARNING per this interval (the gauge says it all along)."""
    overlap_settle: bool = True
    """Flush, mark and commit a handled batch in the background while the next one is polled and handled
    (see the module doc); False settles each batch before polling the next."""
    gc_gen0: int | None = 10_000
    """While running, the collector's young-generation threshold is at least this (CPython's 700 collects a
    10,000-record batch hundreds of times while it is built); None leaves it. See :mod:`mesh.bus._gc`."""
    gc_freeze: bool = True
    """Freeze the heap present when the run starts (imports, models, settings), so full collections do not
    scan it again and again; handed back when the run ends unless something else froze it."""

    @classmethod
    def from_settings(cls, bus: BusSettings) -> RunnerOptions:
        """A service's options (``MESH_BUS__*``)."""
        return cls(linger_s=bus.linger_s)


@dataclass
class _Work:
    """One polled batch while it is handled: what went through survives a retry of the rest."""

    items: list[tuple[Message, Envelope | InvalidEvent]]
    start: int = 0
    """Items before this one are committed."""
    finished: set[int] = field(default_factory=set)
    """Handled, dead-lettered, skipped or dropped: not to be done again."""
    applied: list[str] = field(default_factory=list)
    """Event ids applied since the last commit (marked as seen when it is made)."""
    delivered: int | None = None
    """Outputs of ``items[start:delivered]`` are flushed; only their marks and commit are left."""
    dropped: set[int] = field(default_factory=set)
    """Items of partitions a rebalance took away while held: not ours to handle or commit."""

    def offsets(self, start: int, upto: int) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for i in range(start, upto):
            if i not in self.dropped:
                msg = self.items[i][0]
                out[(msg.topic, msg.partition)] = max(out.get((msg.topic, msg.partition), 0), msg.offset + 1)
        return out

    def reopen(self, upto: int) -> None:
        """The flush failed: the outputs of ``items[start:upto]`` may be lost, so they are handled again."""
        self.finished -= set(range(self.start, upto)) - self.dropped
        self.applied = []

    def drop(self, partitions: set[TopicPartition]) -> None:
        for i in range(self.start, len(self.items)):
            msg = self.items[i][0]
            if (msg.topic, msg.partition) in partitions:
                self.dropped.add(i)
                self.finished.add(i)


@dataclass
class _Inflight:
    """A handled batch settling in the background."""

    work: _Work
    future: Future[None] = field(default_factory=Future)
    delivered: threading.Event = field(default_factory=threading.Event)
    """Set once its flush and marks are done (or failed)."""
    ready: bool = False
    """Its flush and marks went through: only the commit is left."""
    claimed: bool = False
    """A revoke took its commit over (made inside poll; the drain then commits nothing)."""
    revoked: set[TopicPartition] = field(default_factory=set)
    """Partitions taken from us while it settled."""


class _Blocked(Exception):
    """A transient failure outlived the attempts of this pass: the batch is held and retried."""

    def __init__(self, failure: Failure, where: str) -> None:
        super().__init__(f"{where}: {failure.reason}")
        self.failure = failure


class _Stopping(Exception):
    """stop() was called while a batch was held or retried: leave without committing the rest."""


def _reason_label(failure: Failure) -> str:
    return failure.error


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
        self._contexts = TraceContexts()
        self._consecutive_invalid = 0
        self._children: dict[str, _TopicMetrics] = {}
        self._revoked: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._backpressure: tuple[str, str] | None = None
        self._last_hold_log = float("-inf")
        self._settler: ThreadPoolExecutor | None = None
        self._inflight: _Inflight | None = None
        """The handled batch being settled in the background (at most one)."""
        self._unmarked: set[str] = set()
        """Ids applied by the batch in flight: seen, though not marked yet."""
        self._stats = RunStats()

    @classmethod
    def for_service(cls, settings: MeshSettings, group_id: str, topics: Sequence[str], publisher: Publisher, *,
                    handler: Handler | None = None, batch_handler: BatchHandler | None = None,
                    batch_size: int | None = None) -> ConsumerRunner:
        """The runner every service uses: Kafka consumer of ``group_id``, Redis dedupe in the deployment's
        namespace, DLQ cap and batching from ``settings.bus``. ``batch_size``: the most records per batch
        (default 200); a batch handler whose cost is mostly per batch (forecasts of what the batch touched)
        keeps up with more when it may take more of a backlog at once."""
        options = RunnerOptions.from_settings(settings.bus)
        if batch_size is not None:
            options = replace(options, batch_size=batch_size)
        return cls(consumer=KafkaConsumerTransport(settings.kafka, group_id), publisher=publisher, topics=topics,
                   group_id=group_id, handler=handler, batch_handler=batch_handler,
                   dedupe=RedisDedupe(settings.redis.url, namespace=settings.namespace),
                   dead_letter=DeadLetterPolicy.from_settings(settings.bus), options=options)

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
        with consuming(self._options.gc_gen0, self._options.gc_freeze):
            return self._run()

    def _run(self) -> RunStats:
        stats = self._stats = RunStats()
        opts = self._options
        self._consumer.subscribe(list(self._allowed), on_revoke=self._on_revoke)
        last_record, last_lag, last_idle = time.monotonic(), 0.0, time.monotonic()
        on_idle: Callable[[], object] | None = getattr(self._batch_handler, "on_idle", None)
        if opts.overlap_settle:
            self._settler = ThreadPoolExecutor(1, thread_name_prefix=f"settle-{self._group}")
        try:
            while not self._stop.is_set():
                want = opts.batch_size
                if opts.max_messages is not None:
                    want = min(want, opts.max_messages - stats.handled - stats.dead_lettered - stats.duplicates)
                    if want <= 0:
                        break
                batch = self._consumer.poll(want, opts.poll_timeout_s, opts.linger_s)
                now = time.monotonic()
                if batch:
                    self._process_batch(batch, stats)
                    last_record = now
                else:
                    if self._inflight is not None and self._inflight.future.done():
                        self._drain()  # quiet topic: a failed settle is finished now, not at the next batch
                    if on_idle is not None and now - last_idle >= opts.idle_interval_s:
                        last_idle = now
                        self._idle(on_idle)
                    if opts.idle_timeout_s is not None and now - last_record >= opts.idle_timeout_s:
                        break
                if now - last_lag >= opts.lag_interval_s:
                    self._report_lag()
                    last_lag = now
            self._drain()  # the batch settling in the background is committed before we leave
        except _Stopping:
            log.warning("stopped while holding a batch (a dependency is still failing); its uncommitted records "
                        "will be read again")
        finally:
            if self._inflight is not None:  # leaving on an error: let the settle in flight end, commit nothing more
                with contextlib.suppress(Exception):
                    self._inflight.future.exception(timeout=60.0)
                self._inflight, self._unmarked = None, set()
            if self._settler is not None:
                self._settler.shutdown(wait=True)
                self._settler = None
            self._set_backpressure(None)
            self._consumer.close()
        return stats

    def _idle(self, on_idle: Callable[[], object]) -> None:
        """The handler's idle work, then its outputs delivered. A failure is logged and tried again at the
        next idle tick (nothing is committed by it: its inputs were committed with their batches)."""
        try:
            on_idle()
            self._publisher.flush()
        except Exception as exc:
            failure = classify(exc)
            log.warning("consumer %s: idle work failed (%s); tried again in %.0f s", self._group, failure.reason,
                        self._options.idle_interval_s, exc_info=not failure.transient)

    # ------------------------------------------------------------------------------------------ one batch
    def _process_batch(self, batch: list[Message], stats: RunStats) -> None:
        """Handle and commit ``batch``; a transient failure holds it (retried until done or stopped). With
        ``overlap_settle``, a batch handled at the first pass is settled in the background."""
        self._revoked.clear()
        work = _Work([(msg, self._decode(msg)) for msg in batch])
        if self._complete(work, stats, defer=self._settler is not None):
            assert self._settler is not None
            self._drain()  # the batch before settles first: a commit never covers an unsettled record
            self._unmarked = set(work.applied)
            flight = _Inflight(work)
            flight.future = self._settler.submit(self._deliver_and_commit, work, len(work.items), flight)
            self._inflight = flight
        stats.batches += 1

    def _complete(self, work: _Work, stats: RunStats, *, defer: bool = False, failed: Failure | None = None) -> bool:
        """Handle and settle what is left of ``work`` in the foreground, holding it through transient failures.
        ``defer``: when the first pass handles everything, return True at once, the settle left to the caller.
        ``failed``: the transient failure of a background settle of ``work`` (held first, as any failure)."""
        holds = 0
        try:
            if failed is not None:
                holds = 1
                stats.holds += 1
                self._hold(work, failed, holds)
            while work.start < len(work.items):
                try:
                    if self._attempt(work, stats, self._retry.max_attempts if holds == 0 else 1,
                                     defer=defer and holds == 0):
                        return True
                except _Stopping:
                    raise
                except Exception as exc:
                    failure = exc.failure if isinstance(exc, _Blocked) else classify(exc)
                    if not failure.transient:
                        raise  # DeadLetterCapExceeded, a broken broker, a bug in the runner: the consumer dies
                    holds += 1
                    stats.holds += 1
                    self._hold(work, failure, holds)
        finally:
            if holds:
                self._release()
        return False

    def _attempt(self, work: _Work, stats: RunStats, attempts: int, defer: bool = False) -> bool:
        """One pass over what is left of ``work``; raises on a failure (progress made is kept in ``work``).
        ``defer``: a pass that handles everything returns True without settling (the caller settles)."""
        if work.delivered is not None:  # outputs delivered before: only the marks and the commit are left
            self._settle(work, work.delivered)
        todo = [i for i in range(work.start, len(work.items)) if i not in work.finished]
        ids = [env.event_id for env in (work.items[i][1] for i in todo) if isinstance(env, Envelope)]
        done = self._dedupe.seen_many(self._group, ids) if self._dedupe is not None and ids else set()
        done |= self._unmarked.intersection(ids)
        if self._batch_handler is not None and self._handle_bulk(work, todo, done, stats, attempts):
            return defer or self._settle(work, len(work.items))
        for i in todo:
            if i in work.finished:  # dead-lettered or skipped by the bulk attempt already
                continue
            try:
                self._process(work, i, done, stats, attempts)
            except (_Blocked, _Stopping, DeadLetterCapExceeded):
                self._settle_before_raising(work, i)  # what went through before this event is committed
                raise
        return defer or self._settle(work, len(work.items))

    def _handle_bulk(self, work: _Work, todo: list[int], done: set[str], stats: RunStats, attempts: int) -> bool:
        """The whole batch through the batch handler in one call (invalid ones dead-lettered first).

        Returns False, having applied nothing, when the handler rejects the batch: the caller then
        goes event by event so that only the poison event is dead-lettered.
        """
        assert self._batch_handler is not None
        fresh: list[int] = []
        for i in todo:
            msg, env = work.items[i]
            if isinstance(env, InvalidEvent):
                try:
                    self._dead_letter(msg, str(env), stats)
                except DeadLetterCapExceeded:
                    self._publisher.flush()  # the DLQ records so far are delivered; nothing is committed
                    raise
                work.finished.add(i)
            elif env.event_id in done:
                self._duplicate(msg, stats)
                work.finished.add(i)
            else:
                done.add(env.event_id)
                fresh.append(i)
        if not fresh:
            return True
        envs = [work.items[i][1] for i in fresh]
        first = work.items[fresh[0]][0]
        # the span links to the producer spans of its first 64 events, each once (contexts extracted once per
        # distinct trace headers); every event's own context is there for the handler (producer_context)
        extract, links, linked = self._contexts, [], set()
        for i in fresh[:64]:
            context = trace.get_current_span(extract(work.items[i][0].headers)).get_span_context()
            if context.is_valid and (context.trace_id, context.span_id) not in linked:
                linked.add((context.trace_id, context.span_id))
                links.append(trace.Link(context))
        handler = self._batch_handler
        # a batch of one continues its producer's trace, as the per-event path does; larger ones link to theirs,
        # and the handler finds each event's own context with producer_context(env), extracted when it asks
        parent = extract(first.headers) if len(envs) == 1 else None
        token = _PRODUCER_CONTEXTS.set(_BatchContexts(work.items, fresh, extract))
        try:
            stats.retries += self._with_retries(first, f"batch of {len(envs)}", lambda: handler(envs), parent,  # type: ignore[arg-type]
                                                links, {"messaging.batch.message_count": len(envs)}, attempts)
        except InvalidEvent:
            for env in envs:
                done.discard(env.event_id)  # type: ignore[union-attr]
            return False
        finally:
            _PRODUCER_CONTEXTS.reset(token)
        work.finished.update(fresh)
        work.applied.extend(env.event_id for env in envs)  # type: ignore[union-attr]
        per_topic: dict[str, int] = {}
        for i in fresh:  # metrics per batch: one increment per topic, not per event
            topic = work.items[i][0].topic
            per_topic[topic] = per_topic.get(topic, 0) + 1
        for topic, count in per_topic.items():
            self._metrics(topic).handled.inc(count)
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

    def _process(self, work: _Work, i: int, done: set[str], stats: RunStats, attempts: int) -> None:
        """Handle one item: dead-letter it, skip it as a duplicate, or apply it."""
        msg, env = work.items[i]
        if isinstance(env, InvalidEvent):
            self._dead_letter(msg, str(env), stats)
        elif env.event_id in done:
            self._duplicate(msg, stats)
        else:
            try:
                stats.retries += self._with_retries(
                    msg, f"{env.type} {env.event_id}", lambda: self._handler(env), self._contexts(msg.headers),
                    [], {"messaging.message.id": env.event_id, "sunday.event_type": env.type,
                         "sunday.tenant_id": env.tenant_id}, attempts)
            except InvalidEvent as exc:
                self._dead_letter(msg, f"rejected by handler: {exc}", stats)
            else:
                done.add(env.event_id)  # a duplicate later in the same batch is skipped too
                work.applied.append(env.event_id)
                self._consecutive_invalid = 0
                stats.handled += 1
                self._metrics(msg.topic).handled.inc()
        work.finished.add(i)

    def _duplicate(self, msg: Message, stats: RunStats) -> None:
        stats.duplicates += 1
        self._metrics(msg.topic).duplicates.inc()

    def _with_retries(self, msg: Message, what: str, call: Callable[[], None], parent: otel_context.Context | None,
                      links: list[trace.Link], extra: dict[str, str | int], attempts: int) -> int:
        """Run ``call`` in a handler span, at most ``attempts`` times with the policy's backoff; returns the
        retries. Raises InvalidEvent for a permanent failure, :class:`_Blocked` past the attempts."""
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
                except Exception as exc:
                    failure = classify(exc)
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, failure.kind))
                    EVENTS_FAILED.labels(msg.topic, self._group, "transient" if failure.transient else "error").inc()
                    if not failure.transient:
                        if failure.kind == "bug":
                            log.exception("handler failed on %s", what)
                        raise exc if isinstance(exc, InvalidEvent) else InvalidEvent(failure.reason) from exc
                    if attempt >= attempts:
                        raise _Blocked(failure, f"{what} at {msg.topic}[{msg.partition}]@{msg.offset}") from exc
            if self._stop.wait(self._retry.backoff_s(attempt)):
                raise _Stopping()
            attempt += 1

    # ------------------------------------------------------------------------------------------ commit
    def _settle(self, work: _Work, upto: int) -> bool:
        """Deliver the outputs and DLQ records of ``work.items[start:upto]``, mark their ids, commit them
        (after the batch settling in the background, if any). Returns False (not deferred)."""
        self._drain()
        self._deliver_and_commit(work, upto)
        return False

    def _deliver_and_commit(self, work: _Work, upto: int, flight: _Inflight | None = None) -> None:
        """:meth:`_settle` itself; ``flight``: this is the background settle of that batch (a revoke may
        take its commit over, see :meth:`_on_revoke`)."""
        try:
            if work.delivered is None:
                try:
                    self._publisher.flush()
                except Exception:
                    work.reopen(upto)  # outputs may be lost: handle those events again (at least once)
                    raise
                work.delivered = upto
            if self._dedupe is not None and work.applied:
                self._dedupe.mark_many(self._group, work.applied)
                work.applied = []
            if flight is not None:
                flight.ready = True
        finally:
            if flight is not None:
                flight.delivered.set()
        if flight is not None:
            return  # the commit is made on the polling thread (see _drain): the consumer is used by one thread
        self._commit(work)

    def _commit(self, work: _Work) -> None:
        assert work.delivered is not None
        self._consumer.commit(work.offsets(work.start, work.delivered))
        work.start, work.delivered = work.delivered, None

    # ------------------------------------------------------------------------------------------ overlap
    def _drain(self) -> None:
        """Wait for the batch settling in the background; finish it in the foreground if that failed."""
        flight = self._inflight
        if flight is None:
            return
        error = flight.future.exception()
        self._inflight, self._unmarked = None, set()
        if error is None:
            if flight.claimed:
                return  # a revoke committed it from inside poll
            try:
                self._commit(flight.work)
                return
            except Exception as exc:  # finished (committed again) in the foreground below, with the retries
                error = exc
        failure = error.failure if isinstance(error, _Blocked) else classify(error)
        if not failure.transient:
            raise error
        log.info("consumer %s: settling a batch failed (%s); finishing it in the foreground", self._group,
                 failure.reason)
        if flight.revoked:
            flight.work.drop(flight.revoked)  # taken by a rebalance meanwhile: their new owner reads them
        self._complete(flight.work, self._stats, failed=failure)

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        """A rebalance takes ``partitions`` (called inside poll, on the polling thread). The batch settling
        in the background is committed before they go: its outputs are delivered and its ids marked by
        then (we wait for that), and its commit is made here (the drain, later on this same thread, then
        commits nothing more of it)."""
        self._revoked.update(partitions)
        flight = self._inflight
        if flight is None:
            return
        flight.revoked.update(partitions)
        flight.claimed = True  # both run on the polling thread: the drain sees this and leaves the commit to us
        if not flight.delivered.wait(60.0):
            log.warning("consumer %s: the background flush did not end within 60 s of a revoke; its records "
                        "are left to the partitions' new owner", self._group)
            return
        if not flight.ready:  # the flush or the marks failed: nothing to commit, the new owner reads them
            return
        try:
            self._commit(flight.work)
        except Exception as exc:  # left uncommitted: read again by their new owner (marked: skipped there)
            log.warning("consumer %s: could not commit before a revoke (%s)", self._group, classify(exc).reason)

    def _settle_before_raising(self, work: _Work, upto: int) -> None:
        try:
            self._settle(work, upto)
        except Exception as exc:  # keep the original failure; the uncommitted rest is read again
            if not isinstance(exc, _Stopping):
                log.warning("could not commit the handled part of the batch (%s); retried with the rest",
                            classify(exc).reason)

    # ------------------------------------------------------------------------------------------ backpressure
    def _hold(self, work: _Work, failure: Failure, holds: int) -> None:
        """Past the retry policy: pause the partitions, say why, wait one (capped) backoff while keeping the
        group membership alive by polling, then let the caller retry. Raises :class:`_Stopping` on stop()."""
        held = {(m.topic, m.partition) for m, _ in work.items[work.start:]} | self._consumer.assignment()
        self._pause(held)
        topic = work.items[work.start][0].topic if work.start < len(work.items) else "-"
        self._set_backpressure((topic, _reason_label(failure)))
        CONSUMER_BACKPRESSURE_RETRIES.labels(topic, self._group, _reason_label(failure)).inc()
        now = time.monotonic()
        if now - self._last_hold_log >= self._options.backpressure_log_interval_s:
            self._last_hold_log = now
            log.warning("consumer %s holds %d record(s) (partitions paused, lag grows; retry %d past the policy): %s",
                        self._group, len(work.items) - work.start, holds, failure.reason)
        deadline = now + self._retry.backoff_s(self._retry.max_attempts + holds - 1)
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stop.is_set():
                raise _Stopping()
            # Paused partitions return nothing; the poll serves rebalances and the group session.
            arrived = self._consumer.poll(self._options.batch_size, min(remaining, 0.2))
            if arrived:  # from partitions assigned during the hold: they join the held batch, paused too
                work.items.extend((msg, self._decode(msg)) for msg in arrived)
                self._pause({(m.topic, m.partition) for m in arrived})
            if self._revoked:
                work.drop(self._revoked)  # a rebalance gave them away uncommitted: the new owner reads them
                log.info("consumer %s: partitions %s revoked while held; their records are left to the new owner",
                         self._group, sorted(self._revoked))
                self._revoked.clear()
        if self._stop.is_set():
            raise _Stopping()

    def _pause(self, partitions: set[TopicPartition]) -> None:
        self._consumer.pause(partitions)
        self._paused |= partitions

    def _release(self) -> None:
        """The held batch went through: fetch the paused partitions again and clear the gauge."""
        self._consumer.resume(self._paused)
        self._paused = set()
        self._set_backpressure(None)
        log.info("consumer %s: the held batch went through; partitions resumed", self._group)

    def _set_backpressure(self, label: tuple[str, str] | None) -> None:
        if label == self._backpressure:
            return
        if self._backpressure is not None:
            CONSUMER_BACKPRESSURE.labels(self._backpressure[0], self._group, self._backpressure[1]).set(0)
        if label is not None:
            CONSUMER_BACKPRESSURE.labels(label[0], self._group, label[1]).set(1)
        self._backpressure = label

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

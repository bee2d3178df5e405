"""Event handling, a batch at a time:

- ``task_created`` / ``task_updated`` (title or description changed): the batch's texts are embedded in
  one model run and upserted into the vector database; for each created task, the tenant's other tasks
  whose fused similarity reaches the calibrated threshold are published as an ``NlpPrediction`` of kind
  ``duplicates`` on ``ml.predictions.nlp``;
- ``task_commented``: the comment is embedded and indexed (kind ``comment``); with the text models
  plugged in (:class:`TextPredictions`), its sentiment is published;
- ``meeting_transcript``: with the text models, a summary with action items is published;
- ``task_deleted``: the task's vector and text are deleted (never searched or proposed as a duplicate again);
- ``tenant_erased``: every vector and text of the tenant is deleted.

Exactly once, step by step: writes are idempotent (upsert by key, delete by filter), so a redelivered event
leaves the index as it was; predictions are recomputed and re-published under the SAME event id (derived
from the input event id, the output type, the model version and the subject), so subscribers dedupe them.
Replaying the topics into an empty collection rebuilds the index. Deletions and erasures apply in the order of
the batch (the texts collected before them are written first).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from opentelemetry import context as otel_context
from sunday.ml.v1 import events_pb2

from mesh.bus import Publisher, producer_context
from mesh.errors import InvalidArgument
from mesh.events import Envelope, InvalidEvent, new_envelope, occurred_at
from mesh.models import VersionedModel, build_provenance
from mesh.telemetry import current_trace_id
from services.nlp.fusion import DAY_S
from services.nlp.search import Calibration, HybridSearcher, Scored
from services.nlp.vectors import Item, VectorIndex, checked_id

log = logging.getLogger(__name__)
PRODUCER = "nlp"
DUPLICATES_K = 5
"""Most duplicate candidates published for one task."""


class TextPredictions(Protocol):
    """The text models' side of the handler (sentiment, summaries): predictions for some events."""

    def comment_predictions(self, events: Sequence[Envelope]) -> list[tuple[Envelope, events_pb2.NlpPrediction]]:
        ...

    def meeting_predictions(self, events: Sequence[Envelope]) -> list[tuple[Envelope, events_pb2.NlpPrediction]]:
        ...


class MeetingsOnly:
    """The text predictions without sentiment (``MESH_NLP__SENTIMENT=false``): comments are only indexed."""

    def __init__(self, text: TextPredictions) -> None:
        self._text = text

    def comment_predictions(self, events: Sequence[Envelope]) -> list[tuple[Envelope, events_pb2.NlpPrediction]]:
        return []

    def meeting_predictions(self, events: Sequence[Envelope]) -> list[tuple[Envelope, events_pb2.NlpPrediction]]:
        return self._text.meeting_predictions(events)


def check(env: Envelope) -> None:
    """Reject events whose ids cannot be stored (the vector database keys on them)."""
    try:
        checked_id(env.tenant_id, "tenant_id")
        if env.type in ("task_created", "task_updated", "task_commented", "task_deleted"):
            payload = getattr(env, env.type)
            checked_id(payload.task_id, "task_id")
            if payload.project_id:
                checked_id(payload.project_id, "project_id")
        if env.type == "task_commented":
            checked_id(env.task_commented.comment_id, "comment_id")
    except InvalidArgument as exc:
        raise InvalidEvent(str(exc)) from exc


@dataclass
class _Pending:
    """Texts of the batch segment waiting to be embedded, and the task creations to check for duplicates."""

    items: list[Item]
    created: list[Envelope]


class NlpHandler:
    """The consumer runner's batch handler (a ``Callable[[Sequence[Envelope]], None]``)."""

    def __init__(self, index: VectorIndex, searcher: HybridSearcher, publisher: Publisher,
                 text: TextPredictions | None = None) -> None:
        self._index = index
        self._searcher = searcher
        self._publisher = publisher
        self._text = text

    def __call__(self, events: Sequence[Envelope]) -> None:
        for env in events:
            check(env)  # an invalid event fails the batch: the runner retries it event by event
        pending = _Pending([], [])
        for env in events:
            if env.type == "tenant_erased":
                self._flush(pending)  # what came before the erasure is written (and erased) in order
                pending = _Pending([], [])
                self._index.erase_tenant(env.tenant_id)
                self._searcher.invalidate(env.tenant_id)
                log.info("tenant %s erased from the vector index (%s)", env.tenant_id, env.tenant_erased.reason)
            elif env.type == "task_deleted":
                self._flush(pending)
                pending = _Pending([], [])
                self._index.delete(env.tenant_id, "task", [env.task_deleted.task_id])
                self._searcher.invalidate(env.tenant_id)
            else:
                self._collect(env, pending)
        self._flush(pending)
        if self._text is not None:
            self._publish_all(self._text.comment_predictions([e for e in events if e.type == "task_commented"]))
            self._publish_all(self._text.meeting_predictions([e for e in events if e.type == "meeting_transcript"]))

    def _collect(self, env: Envelope, pending: _Pending) -> None:
        if env.type == "task_created":
            e = env.task_created
            pending.items.append(Item(env.tenant_id, "task", e.task_id, e.project_id, e.title, e.description,
                                      created_days(env)))
            pending.created.append(env)
        elif env.type == "task_updated":
            item = self._updated(env, pending)
            if item is not None:
                pending.items.append(item)
        elif env.type == "task_commented":
            c = env.task_commented
            pending.items.append(Item(env.tenant_id, "comment", c.comment_id, c.project_id, "", c.text,
                                      created_days(env)))

    def _updated(self, env: Envelope, pending: _Pending) -> Item | None:
        """The task's new text, or None when its text did not change (priority, estimate...)."""
        e = env.task_updated
        if not (e.HasField("title") or e.HasField("description")):
            return None
        earlier = [i for i in pending.items if i.kind == "task" and i.item_id == e.task_id
                   and i.tenant_id == env.tenant_id]
        if earlier:
            old: Item | None = earlier[-1]
        else:
            stored = self._index.get(env.tenant_id, "task", [e.task_id]).get(e.task_id)
            old = stored[0] if stored else None
        title = e.title if e.HasField("title") else (old.title if old else "")
        text = e.description if e.HasField("description") else (old.text if old else "")
        project = e.project_id or (old.project_id if old else "")
        return Item(env.tenant_id, "task", e.task_id, project, title, text, old.created_days if old else 0.0)

    def _flush(self, pending: _Pending) -> None:
        if not pending.items:
            return
        embedded = self._searcher.embedder.embed([i.full_text for i in pending.items])
        self._index.upsert(pending.items, embedded.vectors)
        for tenant in {i.tenant_id for i in pending.items}:
            self._searcher.invalidate(tenant)
        vectors = {(i.tenant_id, i.kind, i.item_id): v for i, v in zip(pending.items, embedded.vectors, strict=True)}
        calibration = Calibration.of(embedded.model)
        for env in pending.created:
            e = env.task_created
            item = Item(env.tenant_id, "task", e.task_id, e.project_id, e.title, e.description)
            hits = self._searcher.rank(env.tenant_id, item.full_text, vectors[(env.tenant_id, "task", e.task_id)],
                                       DUPLICATES_K, None, calibration, exclude=e.task_id,
                                       created_days=created_days(env))
            # ranked with the time prior; flagged on the text alone (a task filed the same day is not a
            # duplicate for that): the threshold is calibrated on the text-only score
            found = [h for h in hits if h.text >= calibration.threshold]
            if found:
                self._publish(env, duplicates_prediction(e, found, embedded.model))

    def _publish_all(self, predictions: Sequence[tuple[Envelope, events_pb2.NlpPrediction]]) -> None:
        for cause, prediction in predictions:
            self._publish(cause, prediction)

    def _publish(self, cause: Envelope, prediction: events_pb2.NlpPrediction) -> None:
        """Publish in the trace of the input it answers, with an id derived from the input's."""
        context = producer_context(cause)
        token = otel_context.attach(context) if context is not None else None
        try:
            prediction.provenance.trace_id = current_trace_id() or prediction.provenance.trace_id
            self._publisher.publish(new_envelope(cause.tenant_id, prediction, producer=PRODUCER,
                                                 caused_by=cause.event_id,
                                                 subject=f"{prediction.kind}:{prediction.subject_id}"))
        finally:
            if token is not None:
                otel_context.detach(token)


def created_days(env: Envelope) -> float:
    """When the event happened, in days since the Unix epoch (the items' creation time for the time prior)."""
    return occurred_at(env).timestamp() / DAY_S


def duplicates_prediction(task: events_pb2.TaskCreated, hits: Sequence[Scored], model: VersionedModel
                          ) -> events_pb2.NlpPrediction:
    """The duplicate candidates of a new task (each with its fused score and title)."""
    return events_pb2.NlpPrediction(
        kind="duplicates", subject_id=task.task_id, project_id=task.project_id, task_id=task.task_id,
        duplicates=[events_pb2.ScoredItem(item_id=h.item.item_id, score=h.score, label=h.item.title[:200])
                    for h in hits],
        provenance=build_provenance(model.name, model.version, trace_id=current_trace_id() or None))

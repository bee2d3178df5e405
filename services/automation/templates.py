"""The automation template library (trigger -> conditions -> actions, with descriptions) and the mapping of
a mined pattern to its closest template.

Closeness is structural — the trigger type must be the same; then the overlap (Jaccard) of the action
kinds and whether the template's condition fields are the pattern's — plus, when the nlp service is
reachable, the cosine similarity of the two descriptions' embeddings from its gRPC ``Embed`` through the
nlp service's own client, ``services.nlp.client.NlpClient`` (no embedder is copied here). Without nlp the
match is structural alone (``TemplateMatch.semantic`` is None) and :class:`NlpEmbedder` logs a WARNING
that says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import grpc.aio
import numpy as np

from services.automation.validate import parse_condition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Template:
    template_id: str
    trigger_type: str
    condition_fields: tuple[str, ...]
    actions: tuple[str, ...]
    """Action kinds (``move_item``, ``notify``, ...)."""
    description: str


LIBRARY: tuple[Template, ...] = (
    Template("done-archive-notify", "task_status_changed", ("to_status",), ("move_item", "notify"),
             "When status becomes Done, move the item to the archive board and notify the owner."),
    Template("done-release-checklist", "task_status_changed", ("to_status", "task_type"),
             ("move_item", "archive", "create_subtask"),
             "When a task of a type is done, move it to the done group, archive its attachments and create the "
             "release checklist."),
    Template("done-share-report", "task_status_changed", ("to_status",), ("share", "notify"),
             "When a task is done, share the weekly status report and notify the releases channel."),
    Template("created-plan", "task_created", ("task_type",), ("set_field",),
             "When a task of a type is created, set its due date, estimate and sprint."),
    Template("created-triage", "task_created", ("task_type",), ("move_item", "assign", "add_label"),
             "When a task of a type is created, move it to triage, assign the triage team and label it."),
    Template("created-bug-routing", "task_created", ("task_type",), ("move_item", "set_field", "notify"),
             "When a bug is created, move it to its board, set estimate and due date, and notify support."),
    Template("high-priority-escalate", "task_created", ("priority",), ("create_subtask", "notify", "set_field"),
             "When a high-priority task is created, create a checklist subtask, notify support and put it in "
             "the current sprint."),
    Template("high-priority-schedule", "task_created", ("priority",), ("set_field",),
             "When a high-priority task is created, set its estimate and due date."),
    Template("assigned-plan", "task_assigned", ("assignee_id",), ("set_field", "notify"),
             "When a task is assigned to me, set its due date and estimate and notify the releases channel."),
    Template("assigned-file", "task_assigned", ("assignee_id",), ("move_item", "notify"),
             "When a task is assigned to me, move it to my board and notify the assignee."),
)


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray[Any, Any] | None:
        """L2-normalised embeddings, one row per text; None when the embedding service is unreachable."""
        ...


class NlpEmbedder:
    """The nlp service's ``Embed`` through its typed client (:class:`services.nlp.client.NlpClient`), for the
    synchronous suggestion pass: short deadline, texts cached (the library's descriptions are embedded
    once). When nlp does not answer it returns None — the match is structural — logs one WARNING saying
    so, and does not call again for ``retry_after_s``; when nlp answers again it logs that semantic
    matching is back."""

    def __init__(self, address: str, timeout_s: float = 2.0, retry_after_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, max_cached: int = 10_000) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._max_cached = max_cached
        self._cache: dict[str, np.ndarray[Any, Any]] = {}
        self._down_until = float("-inf")
        self.reachable: bool | None = None
        """None until the first call; then whether the last call was answered."""

    def embed(self, texts: Sequence[str]) -> np.ndarray[Any, Any] | None:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        now = self._clock()
        if now < self._down_until:
            return None
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            try:
                rows = asyncio.run(self._fetch(missing))
            except (grpc.RpcError, OSError) as error:
                if self.reachable is not False:
                    log.warning("automation: the nlp service's Embed at %s is unreachable (%s); template "
                                "matching is structural only (trigger and action types) until it answers; "
                                "next try in %.0fs", self.address, _reason(error), self.retry_after_s)
                self.reachable = False
                self._down_until = now + self.retry_after_s
                return None
            if self.reachable is False:
                log.warning("automation: the nlp service's Embed at %s answers again: semantic template "
                            "matching resumed", self.address)
            self.reachable = True
            if len(self._cache) + len(missing) > self._max_cached:
                self._cache.clear()
            self._cache.update(zip(missing, rows, strict=True))
        return np.stack([self._cache[t] for t in texts])

    async def _fetch(self, texts: Sequence[str]) -> np.ndarray[Any, Any]:
        from mesh.serving import RetryPolicy, channel
        from services.nlp.client import NlpClient

        async with channel(self.address) as ch:
            client = NlpClient(ch, deadline_s=self.timeout_s, retry=RetryPolicy(max_attempts=1),
                               translate_errors=False)
            return await client.embed(texts)


def _reason(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error) or type(error).__name__


@dataclass(frozen=True)
class TemplateMatch:
    template: Template | None
    score: float
    structural: float
    semantic: float | None


def describe(trigger_type: str, condition: str, steps: Sequence[str]) -> str:
    """A sentence for a pattern, in the templates' words."""
    cond = parse_condition(condition)
    when = {"task_created": "a task is created", "task_status_changed": "a task's status changes",
            "task_assigned": "a task is assigned to me"}.get(trigger_type, trigger_type)
    if "to_status" in cond:
        when = f"status becomes {cond['to_status'].removeprefix('TASK_STATUS_').title()}"
    extra = [f"{k.replace('_', ' ')} {v.removeprefix('PRIORITY_').lower()}" for k, v in cond.items()
             if k in ("task_type", "priority")]
    what = ", ".join(s.replace("_", " ").replace(":", " ").replace("=", " ") for s in steps)
    return f"When {when}{' (' + ', '.join(extra) + ')' if extra else ''}: {what}."


def structural(t: Template, trigger_type: str, condition: str, steps: Sequence[str]) -> float:
    if t.trigger_type != trigger_type:
        return 0.0
    kinds = {s.split(":", 1)[0] for s in steps}
    overlap = len(kinds & set(t.actions)) / len(kinds | set(t.actions))
    fields = set(parse_condition(condition))
    cond = len(fields & set(t.condition_fields)) / max(len(fields | set(t.condition_fields)), 1)
    return 0.25 + 0.55 * overlap + 0.2 * cond


def match(trigger_type: str, condition: str, steps: Sequence[str], embedder: Embedder | None = None,
          library: Sequence[Template] = LIBRARY, min_score: float = 0.5) -> TemplateMatch:
    """The closest template (None below ``min_score``): 0.6 structural + 0.4 semantic, or structural alone."""
    struct = np.asarray([structural(t, trigger_type, condition, steps) for t in library])
    vectors = embedder.embed([describe(trigger_type, condition, steps), *(t.description for t in library)]) \
        if embedder is not None else None
    semantic = None if vectors is None or len(vectors) != len(library) + 1 else vectors[1:] @ vectors[0]
    score = struct if semantic is None else np.where(struct > 0, 0.6 * struct + 0.4 * semantic, 0.0)
    best = int(np.argmax(score))
    found = library[best] if score[best] >= min_score else None
    return TemplateMatch(found, float(score[best]), float(struct[best]),
                         None if semantic is None else float(semantic[best]))

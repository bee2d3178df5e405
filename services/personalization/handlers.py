"""Event handling, a batch at a time: the batch's people/project/task/view events and the feedback on
recommendations update the state once each (atomically with their applied-marks; the bandit statistics
move inside the same apply). A personalization feedback the bandit cannot use fails the batch, and the
runner retries it event by event so that only the poison goes to the DLQ."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mesh.events import Envelope
from mesh.features import AggregateStore, apply_rebuilding
from services.personalization.state import check_feedback


class PersonalizationHandler:
    """The consumer runner's batch handler (a ``Callable[[Sequence[Envelope]], None]``)."""

    def __init__(self, store: AggregateStore, rebuild: Callable[[], Any] | None = None) -> None:
        self._store = store
        self._rebuild = rebuild

    def __call__(self, events: Sequence[Envelope]) -> None:
        for env in events:
            check_feedback(env)
        apply_rebuilding(self._store, events, self._rebuild)  # StateMissing: rebuilt, else retried

"""Candidate generation: the first stage, before the expensive models.

A real tenant has hundreds of people; the task can be taken by a few dozen of them (the members of its
project, with the skills, with room in their week). The first stage scores every active person of the
tenant with a cheap linear score over a few interaction features (array expressions over all people at
once) and keeps the best :data:`DEFAULT_SHORTLIST`; only those are read fresh from the online store and
scored by the ranker's models. Its recall of the true assignee is reported by ``bench assignment``.

The people the first stage looks at come from a per-tenant :class:`CandidatePool` cached in the process:
refreshed in the background every ``ttl_s`` and at once when the tenant's active set changes. A stale
pool can only change who is shortlisted, never the scores: the shortlisted rows are read fresh.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.assignment.features import (
    PAIR_FEATURES,
    PAIR_SLICE,
    Matrix,
    PeopleArrays,
    PersonFeatures,
    TaskFeatures,
    pair_columns,
)
from services.assignment.online import OnlineFeatures

log = logging.getLogger(__name__)

DEFAULT_SHORTLIST = 32
"""People the expensive models see per task (recall of the true assignee 1.0 at 32 on a simulated
300-person tenant, 0.995 at 24: assignees are project members, projects have 20-30)."""

FIRST_STAGE_WEIGHTS: Mapping[str, float] = {
    "x_project_member": 2.0,
    "x_project_recent": 0.5,
    "x_skill_coverage": 1.0,
    "x_skill_level_mean": 1.0,
    "x_load_after": -0.5,
}
"""The first-stage score: membership first, then past work in the project, skill match, and room left."""
_WEIGHTS = np.asarray([FIRST_STAGE_WEIGHTS.get(name, 0.0) for name in PAIR_FEATURES])


def first_stage_scores(task: TaskFeatures, people: PeopleArrays,
                       rows: npt.NDArray[np.intp] | None = None) -> npt.NDArray[np.float64]:
    """The cheap score of ``task`` for each candidate in ``rows`` (all by default)."""
    scores: npt.NDArray[np.float64] = pair_columns(task, people, rows) @ _WEIGHTS
    return scores


def first_stage_of_rows(x: Matrix) -> npt.NDArray[np.float64]:
    """The same score from feature rows (training/evaluation lists; the pair block on the 1/1024 grid)."""
    scores: npt.NDArray[np.float64] = x[:, PAIR_SLICE].astype(np.float64) @ _WEIGHTS
    return scores


def shortlist(task: TaskFeatures, people: PeopleArrays, n: int,
              rows: npt.NDArray[np.intp] | None = None) -> npt.NDArray[np.intp]:
    """Indices (into ``people``) of the ``n`` best candidates by the first stage, best first; ties keep
    the pool's order."""
    idx = np.arange(len(people)) if rows is None else np.asarray(rows, dtype=np.intp)
    if len(idx) <= n:
        return idx
    order = np.argsort(-first_stage_scores(task, people, idx), kind="stable")[:n]
    top: npt.NDArray[np.intp] = idx[order]
    return top


@dataclass(frozen=True)
class _Entry:
    ids: frozenset[str]
    arrays: PeopleArrays
    index: Mapping[str, int]
    loaded_at: float


class CandidatePool:
    """The active people of each tenant as :class:`PeopleArrays` for the first stage.

    :meth:`arrays` answers from the cache; when the entry is older than ``ttl_s`` it is reloaded in the
    background (one reload per tenant at a time) while the old one keeps answering; when the tenant's
    active set differs from the cached one, the difference is read at once (a person who just joined is
    a candidate for the next task)."""

    def __init__(self, online: OnlineFeatures, ttl_s: float = 5.0, *, executor: Executor | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._online = online
        self._ttl_s = ttl_s
        self._executor = executor
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._reloading: set[str] = set()
        self._lock = threading.Lock()

    def arrays(self, tenant_id: str, active_ids: Sequence[str]) -> tuple[PeopleArrays, Mapping[str, int]]:
        """The pool of ``tenant_id`` (its ``active_ids``, as cached) and user id -> row in it."""
        with self._lock:
            entry = self._entries.get(tenant_id)
        wanted = frozenset(active_ids)
        if entry is None or entry.ids != wanted:
            entry = self._update(tenant_id, entry, active_ids)
        elif self._clock() - entry.loaded_at > self._ttl_s:
            self._reload_later(tenant_id, active_ids)
        return entry.arrays, entry.index

    def _update(self, tenant_id: str, entry: _Entry | None, active_ids: Sequence[str]) -> _Entry:
        known = {} if entry is None else {p.user_id: p for p in entry.arrays.people if p.user_id in active_ids}
        missing = [u for u in active_ids if u not in known]
        fresh = {p.user_id: p for p in self._online.people(tenant_id, missing)} if missing else {}
        people = [p for u in active_ids if (p := known.get(u) or fresh.get(u)) is not None]
        loaded_at = self._clock() if entry is None else entry.loaded_at
        return self._store(tenant_id, active_ids, people, loaded_at)

    def _store(self, tenant_id: str, active_ids: Sequence[str], people: Sequence[PersonFeatures],
               loaded_at: float) -> _Entry:
        arrays = PeopleArrays.of(people)
        entry = _Entry(frozenset(active_ids), arrays, {p.user_id: i for i, p in enumerate(arrays.people)},
                       loaded_at)
        with self._lock:
            self._entries[tenant_id] = entry
        return entry

    def _reload_later(self, tenant_id: str, active_ids: Sequence[str]) -> None:
        with self._lock:
            if tenant_id in self._reloading:
                return
            self._reloading.add(tenant_id)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="candidate-pool")
            executor = self._executor
        executor.submit(self._reload, tenant_id, list(active_ids))

    def _reload(self, tenant_id: str, active_ids: list[str]) -> None:
        try:
            started = self._clock()
            self._store(tenant_id, active_ids, self._online.people(tenant_id, active_ids), started)
        except Exception:  # the old pool keeps answering; the next call past the ttl tries again
            log.warning("candidate pool of tenant %s not reloaded", tenant_id, exc_info=True)
        finally:
            with self._lock:
                self._reloading.discard(tenant_id)

"""The serving core: read the features of a task and its candidates, score them with the loaded ONNX
ranker, explain the top k, and build the prediction with its provenance. No torch, no transport."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
from sunday.ml.v1 import assignment_pb2, common_pb2, events_pb2

from mesh.errors import InvalidArgument, NotFound, Unavailable
from mesh.events import task_type_slot
from mesh.models import INPUT_NAME, ModelSource, VersionedModel, build_provenance
from services.assignment.features import (
    FEATURE_NAMES,
    FEATURE_SCHEMA,
    REASON_GROUPS,
    Matrix,
    PersonFeatures,
    TaskFeatures,
    column,
    describe_reason,
    feature_matrix,
)
from services.assignment.online import OnlineFeatures, candidate_rows
from services.assignment.state import StateStore

DEFAULT_K = 5
MAX_K = 100
MODEL_NAME = "assignment-ensemble"
"""The registered model the service serves (its ``champion`` alias)."""
_GROUP_COLUMNS = {g: [column(n) for n in names] for g, names in REASON_GROUPS.items()}


@lru_cache(maxsize=16)
def reference_of(path: Path) -> Matrix:
    """The model's reference row (training means) from its ONNX metadata; checks the feature layout."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if props.get("feature_schema") != FEATURE_SCHEMA or props.get("feature_names") != ",".join(FEATURE_NAMES):
        raise Unavailable(f"model {path} was trained on feature schema {props.get('feature_schema')!r}, "
                          f"this service builds {FEATURE_SCHEMA!r}")
    return np.asarray(json.loads(props["reference"]), dtype=np.float32)


class AssignmentRanker:
    """Ranks the candidate assignees of a task (``rank_assignees`` is the one entry point)."""

    def __init__(self, state: StateStore, online: OnlineFeatures, model: ModelSource, *,
                 max_reasons: int = 3) -> None:
        self._state = state
        self._online = online
        self._model = model
        self._max_reasons = max_reasons

    def task(self, tenant_id: str, task_id: str) -> TaskFeatures:
        features = self._online.task(tenant_id, task_id)
        if features is None:
            raise NotFound(f"task {task_id!r} of tenant {tenant_id!r} is not known to the assignment service")
        return features

    def candidates(self, tenant_id: str, candidate_ids: Sequence[str]) -> list[PersonFeatures]:
        people = candidate_rows(self._state, self._online, tenant_id, candidate_ids)
        if not people:
            what = f"none of the candidates {list(candidate_ids)[:5]}" if candidate_ids else "no active people"
            raise NotFound(f"tenant {tenant_id!r}: {what} known to the assignment service")
        return people

    def rank_assignees(self, tenant_id: str, task: TaskFeatures | str, candidate_ids: Sequence[str] = (),
                       k: int = 0, trace_id: str | None = None) -> events_pb2.AssignmentPrediction:
        """Top ``k`` (default 5) candidates with scores and reasons; NotFound for an unknown tenant, task
        or candidate set."""
        if not tenant_id:
            raise InvalidArgument("tenant_id is required")
        if k < 0 or k > MAX_K:
            raise InvalidArgument(f"k must be within 0..{MAX_K}")
        features = self.task(tenant_id, task) if isinstance(task, str) else task
        people = self.candidates(tenant_id, candidate_ids)
        version = self._model.current
        scores, reasons = self._score(version, features, people, min(k or DEFAULT_K, len(people)))
        return self._prediction(version, features, people, scores, reasons, trace_id)

    def _score(self, version: VersionedModel, task: TaskFeatures, people: Sequence[PersonFeatures],
               k: int) -> tuple[np.ndarray, dict[int, list[tuple[str, float]]]]:
        x = feature_matrix(task, people)
        reference = reference_of(version.model.path)
        top = _top_k(self._run(version, x), k)
        # one batch: every candidate, then each top candidate with one reason group set to the reference
        occluded = [_occlude(x[i], cols, reference) for i in top for cols in _GROUP_COLUMNS.values()]
        out = self._run(version, np.concatenate([x, np.stack(occluded)]) if occluded else x)
        scores, drops = out[: len(x)], out[len(x):].reshape(len(top), len(_GROUP_COLUMNS))
        groups = list(_GROUP_COLUMNS)
        reasons = {int(i): sorted(((g, float(scores[i] - d)) for g, d in zip(groups, drops[r], strict=True)),
                                  key=lambda gc: -gc[1])[: self._max_reasons] for r, i in enumerate(top)}
        return scores, reasons

    @staticmethod
    def _run(version: VersionedModel, x: Matrix) -> np.ndarray:
        return np.asarray(version.model.run({INPUT_NAME: x})["score"], np.float64).reshape(-1)

    def _prediction(self, version: VersionedModel, task: TaskFeatures, people: Sequence[PersonFeatures],
                    scores: np.ndarray, reasons: dict[int, list[tuple[str, float]]],
                    trace_id: str | None) -> events_pb2.AssignmentPrediction:
        order = sorted(reasons, key=lambda i: -scores[i])
        candidates = [events_pb2.RankedCandidate(
            user_id=people[i].user_id, score=float(scores[i]),
            reasons=[common_pb2.Reason(feature=g, contribution=c, description=describe_reason(g, task, people[i]))
                     for g, c in reasons[i]]) for i in order]
        # as_of of a row read from the online store is that row's event timestamp there
        stamps = {"person_features": max(p.as_of for p in people), "task_features": task.as_of}
        provenance = build_provenance(version.name, version.version, trace_id or None, stamps, datetime.now(UTC))
        return events_pb2.AssignmentPrediction(task_id=task.task_id, project_id=task.project_id,
                                               candidates=candidates, provenance=provenance)


def _top_k(scores: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def _occlude(row: Matrix, cols: list[int], reference: Matrix) -> Matrix:
    out = row.copy()
    out[cols] = reference[cols]
    return out


def task_from_payload(p: assignment_pb2.TaskPayload) -> TaskFeatures:
    """A gRPC ``TaskPayload`` -> the task row (as of now: it has not been through the event stream)."""
    if not p.task_id:
        raise InvalidArgument("payload.task_id is required")
    return TaskFeatures(task_id=p.task_id, project_id=p.project_id, task_type=task_type_slot(p.task_type),
                        priority=int(p.priority), required_skills=tuple(p.required_skills),
                        estimate_hours=float(p.estimate_hours), text=f"{p.title} {p.description}",
                        as_of=datetime.now(UTC))

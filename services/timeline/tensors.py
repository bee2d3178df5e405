"""The timeline models' input and output tensors: per-step features, padding, names of the graph inputs
and outputs, and the Monte-Carlo pass layout. numpy only: serving builds its inputs with this module and
never imports torch (`services.timeline.model` holds the networks, for training and export)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mesh.events import TASK_STATUSES

F32 = NDArray[np.float32]
FloatArray = NDArray[np.float64]

STATUS_SLOTS: tuple[str, ...] = (*TASK_STATUSES, "reopened")
"""Slots of the per-step status one-hot: the proto's statuses (`mesh.events.TASK_STATUSES`, in value order),
then "reopened", a slot no event sets (TaskStatus has no such value: a reopened task re-enters a proto status),
kept so that timeline-v2 models keep their input width; drop it with the next FEATURE_SCHEMA bump. Unknown
statuses map to an all-zero one-hot."""
STEP_FEATURES = len(STATUS_SLOTS) + 3
"""Per event: status one-hot, log1p(hours since previous event), log1p(hours since creation),
log1p(hours in the previous status)."""
TASK_INPUTS = ("events", "event_mask", "static")
TASK_OUTPUT = "log_hours_remaining"
MILESTONE_INPUTS = ("tasks", "task_mask")
MILESTONE_OUTPUT = "log1p_days_remaining"


def step_features(statuses: Sequence[str], hours_since_created: Sequence[float]) -> F32:
    """[T, STEP_FEATURES] features of one task's status history (events in time order)."""
    hours = np.maximum.accumulate(np.asarray(hours_since_created, dtype=np.float64))
    gaps = np.diff(hours, prepend=0.0)
    out = np.zeros((len(statuses), STEP_FEATURES), dtype=np.float32)
    for t, status in enumerate(statuses):
        if status in STATUS_SLOTS:
            out[t, STATUS_SLOTS.index(status)] = 1.0
    out[:, len(STATUS_SLOTS)] = np.log1p(gaps)
    out[:, len(STATUS_SLOTS) + 1] = np.log1p(hours)
    out[1:, len(STATUS_SLOTS) + 2] = np.log1p(gaps[1:])  # time spent in the status the event left
    return out


def pad_sequences(seqs: Sequence[F32], width: int | None = None) -> tuple[F32, F32]:
    """Right-pad [T_i, F] sequences to [B, T_max, F] (T_max >= 1); the mask is 1.0 on real steps. ``width``:
    F (default: the first sequence's, else STEP_FEATURES)."""
    t_max = max([1, *(len(s) for s in seqs)])
    width = width or (seqs[0].shape[1] if seqs else STEP_FEATURES)
    x = np.zeros((len(seqs), t_max, width), dtype=np.float32)
    mask = np.zeros((len(seqs), t_max), dtype=np.float32)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = s
        mask[i, : len(s)] = 1.0
    return x, mask


@dataclass(frozen=True)
class Quantiles:
    """Per-sample p10/p50/p90 of the model's target (log scale), from Monte-Carlo passes."""

    p10: FloatArray
    p50: FloatArray
    p90: FloatArray


def repeat_for_mc(inputs: Sequence[F32], n: int) -> list[F32]:
    """Tile each input n times along the batch axis: one call then gives n stochastic passes."""
    return [np.concatenate([np.asarray(a, dtype=np.float32)] * n, axis=0) for a in inputs]


def quantiles_from_passes(flat: NDArray[Any], n: int) -> Quantiles:
    """[n * B] outputs of a call on `repeat_for_mc` inputs -> per-sample quantiles."""
    samples = np.asarray(flat, dtype=np.float64).reshape(n, -1)
    p10, p50, p90 = np.quantile(samples, [0.1, 0.5, 0.9], axis=0)
    return Quantiles(p10, p50, p90)

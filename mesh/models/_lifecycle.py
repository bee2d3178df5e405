"""The training skeleton every model of the mesh follows:

1. a time-ordered split: train | validation period | held-out test period (:func:`time_split`);
2. fit on train (early stopping, calibration and model choice on validation only);
3. score the model(s) beside simple baselines on validation and test (:func:`score_beside_baselines`);
4. export to ONNX and verify it against the native model at two or more sizes (``export_torch``,
   ``export_lightgbm``...), recording the feature schema in the metadata (:class:`FeatureSchema`);
5. register the file as ``challenger`` and move ``champion`` to it only when it beats the current
   champion re-scored on the SAME validation period (:func:`register_and_promote`).

Services write steps 2 and the scoring functions; the rest is here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from mesh.config import ModelSettings
from mesh.models._registry import CHALLENGER, ModelRegistry, PromotionDecision
from mesh.models._reloading import VersionedModel
from mesh.models._runner import OnnxModel
from mesh.models._schema import FeatureSchema, check_feature_schema

DRIFT_REFERENCE_FILE = "drift_reference.json"
D = TypeVar("D")
Q = TypeVar("Q")
Indices = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TimeSplit:
    """Indices of the samples in each period; validation and test start at ``val_start`` / ``test_start``."""

    train: Indices
    val: Indices
    test: Indices
    val_start: datetime
    test_start: datetime


def time_split(times: Sequence[datetime], val: timedelta, test: timedelta, end: datetime | None = None
               ) -> TimeSplit:
    """The latest ``test`` before ``end`` (default: the newest sample, included) is the test period, the
    ``val`` before it validation, everything earlier training; ValueError when a period is empty."""
    if not times:
        raise ValueError("no samples to split")
    test_start = (end or max(times)) - test
    val_start = test_start - val
    at = np.asarray([t.timestamp() for t in times])
    parts = (np.flatnonzero(at < val_start.timestamp()),
             np.flatnonzero((at >= val_start.timestamp()) & (at < test_start.timestamp())),
             np.flatnonzero(at >= test_start.timestamp()))
    if any(len(p) == 0 for p in parts):
        raise ValueError(f"a period is empty (train/val/test samples: {[len(p) for p in parts]}): "
                         "the data covers too little time")
    return TimeSplit(*parts, val_start=val_start, test_start=test_start)


@dataclass(frozen=True)
class HeldOut(Generic[Q]):
    """Quality of each model and baseline (by name) on the validation and the test period."""

    val: dict[str, Q]
    test: dict[str, Q]


def score_beside_baselines(models: Mapping[str, Callable[[D], Q]], baselines: Mapping[str, Callable[[D], Q]],
                           val: D, test: D) -> HeldOut[Q]:
    """Each forecaster (a function of a period's data to its quality there) on both periods. A model's
    figure means little alone, so at least one baseline is required."""
    if not baselines:
        raise ValueError("score the model beside at least one baseline")
    both = {**models, **baselines}
    return HeldOut({k: f(val) for k, f in both.items()}, {k: f(test) for k, f in both.items()})


@dataclass(frozen=True)
class Challenger:
    """A trained, exported and verified model, ready to be registered."""

    name: str
    """registered model name"""
    path: Path
    """the verified ONNX file (its metadata records ``schema``)"""
    schema: FeatureSchema
    metrics: Mapping[str, float]
    """logged with the version (validation and test figures, baselines)"""
    params: Mapping[str, str | int | float | bool]
    data_time_range: tuple[datetime, datetime]
    """time range of the training samples"""
    reference: str | None = None
    """JSON of the training distribution of the inputs and predictions (``mesh.mlops.build_reference``),
    stored with the version for drift monitoring (``mlops/drift_reference.json``)"""


@dataclass(frozen=True)
class Objective:
    """What promotion compares: ``score`` gives ``metric`` of a loaded version on the validation period of
    the run that trained the challenger (the champion is re-scored on the same data)."""

    metric: str
    higher_is_better: bool
    score: Callable[[VersionedModel], float]


def register_and_promote(registry: ModelRegistry, challenger: Challenger, objective: Objective,
                         settings: ModelSettings) -> PromotionDecision:
    """Register ``challenger`` (alias ``challenger``); ``champion`` moves to it only when it scores better
    than the current champion on the same validation period (a champion on another schema loses)."""
    metrics = {k: float(v) for k, v in challenger.metrics.items() if np.isfinite(v)}
    version = registry.log_and_register(challenger.name, challenger.path, metrics, challenger.params,
                                        challenger.data_time_range, alias=CHALLENGER)
    if challenger.reference is not None:
        registry.log_version_json(challenger.name, version, DRIFT_REFERENCE_FILE, challenger.reference)

    def rescore(version: str, path: Path) -> float:
        model = OnnxModel.load(path, settings, warm_up=False)
        check_feature_schema(model.metadata, challenger.schema, f"{challenger.name} v{version}")
        return objective.score(VersionedModel(challenger.name, version, model))

    return registry.promote_if_better(challenger.name, objective.metric, objective.higher_is_better,
                                      rescore=rescore)


def time_range(times: Sequence[datetime]) -> tuple[datetime, datetime]:
    """(oldest, newest) of ``times``: the data time range a version is registered with."""
    return min(times), max(times)


def stamp_metadata(path: Path, props: Mapping[str, Any]) -> None:
    """Merge ``props`` into an ONNX file's metadata properties (rewrites the file; export time only)."""
    import onnx

    model = onnx.load(str(path))
    merged = {p.key: p.value for p in model.metadata_props}
    merged.update({k: str(v) for k, v in props.items()})
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, merged)
    onnx.save(model, str(path))

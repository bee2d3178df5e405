"""LightGBM and scikit-learn -> ONNX export, verified like the torch export."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mesh.models._errors import ExportVerificationError
from mesh.models._verify import Arrays, ExportReport, Tolerance, check_dynamic_dims, compare_with_native

INPUT_NAME = "input"
"""The single float input [batch, n_features] of every exported tree / scikit-learn model."""
LIGHTGBM_MAX_OPSET = 15  # onnxmltools' LightGBM converter fails above this
SKLEARN_OPSETS = {"": 17, "ai.onnx.ml": 3}
_TREE_TOLERANCE = Tolerance(rtol=1e-4, atol=1e-4)  # ORT trees sum in float32, the natives in float64


def export_lightgbm(
    booster: Any,
    n_features: int,
    path: str | Path,
    *,
    sample: npt.NDArray[Any] | None = None,
    check_batches: Sequence[int] = (1, 33),
    tolerance: Tolerance = _TREE_TOLERANCE,
    target_opset: int = LIGHTGBM_MAX_OPSET,
    seed: int = 0,
) -> ExportReport:
    """Export a LightGBM ``Booster`` (or sklearn-API model) with one output (regression, ranking).

    Verified on ``sample`` rows (real rows are best: random ones rarely sit on split thresholds) or
    random ones, at each of ``check_batches``; raises :class:`ExportVerificationError`.
    """
    if target_opset > LIGHTGBM_MAX_OPSET:
        raise ValueError(f"onnxmltools converts LightGBM at target_opset <= {LIGHTGBM_MAX_OPSET}")
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = getattr(booster, "booster_", booster)
    path = Path(path)
    try:
        model = onnxmltools.convert_lightgbm(
            booster, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))], target_opset=target_opset
        )
    except Exception as error:
        raise ExportVerificationError(f"LightGBM -> ONNX conversion failed: {error}") from error
    _save(model, path)
    native = lambda inputs: [booster.predict(inputs[INPUT_NAME])]  # noqa: E731
    return _verify(path, native, n_features, sample, check_batches, tolerance, seed)


def export_sklearn(
    model: Any,
    n_features: int,
    path: str | Path,
    *,
    sample: npt.NDArray[Any] | None = None,
    check_batches: Sequence[int] = (1, 33),
    tolerance: Tolerance = _TREE_TOLERANCE,
    seed: int = 0,
) -> ExportReport:
    """Export a fitted scikit-learn model with skl2onnx, verified like :func:`export_lightgbm`.

    Outputs: outlier detectors ``(label, scores)`` = ``predict``, ``decision_function``; classifiers
    ``(label, probabilities)`` (no ZipMap); regressors ``predict``; transformers ``transform``.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    path = Path(path)
    options = {id(model): {"zipmap": False}} if _kind(model) == "classifier" else None
    try:
        onnx_model = convert_sklearn(
            model,
            initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
            target_opset=dict(SKLEARN_OPSETS),
            options=options,
        )
    except Exception as error:
        raise ExportVerificationError(f"scikit-learn -> ONNX conversion failed: {error}") from error
    _save(onnx_model, path)
    return _verify(path, lambda inputs: _sklearn_native(model, inputs[INPUT_NAME]), n_features, sample,
                   check_batches, tolerance, seed)


def _kind(model: Any) -> str:
    kind = getattr(model, "_estimator_type", None)
    if kind is None and hasattr(model, "__sklearn_tags__"):
        kind = model.__sklearn_tags__().estimator_type
    return str(kind)


def _sklearn_native(model: Any, x: npt.NDArray[Any]) -> list[Any]:
    kind = _kind(model)
    if kind == "outlier_detector":
        return [model.predict(x), model.decision_function(x)]
    if kind == "classifier":
        return [model.predict(x), model.predict_proba(x)]
    if hasattr(model, "predict"):
        return [model.predict(x)]
    return [model.transform(x)]


def _save(model: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def _verify(
    path: Path,
    native: Any,
    n_features: int,
    sample: npt.NDArray[Any] | None,
    check_batches: Sequence[int],
    tolerance: Tolerance,
    seed: int,
) -> ExportReport:
    check_dynamic_dims(path, {INPUT_NAME: {0: "batch"}})
    rng = np.random.default_rng(seed)
    input_sets: list[Arrays] = []
    for batch in check_batches:
        if sample is not None:
            rows = np.asarray(sample, dtype=np.float32)[rng.integers(0, len(sample), size=batch)]
        else:
            rows = rng.standard_normal((batch, n_features)).astype(np.float32)
        input_sets.append({INPUT_NAME: rows})
    return compare_with_native(path, native, input_sets, tolerance)

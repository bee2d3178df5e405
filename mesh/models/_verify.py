"""Checks that an exported ONNX model is what it claims to be: dynamic dims and outputs vs native."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mesh.models._env import quiet_telemetry_env
from mesh.models._errors import ExportVerificationError

Arrays = dict[str, npt.NDArray[Any]]
NativeFn = Callable[[Arrays], Sequence[npt.NDArray[Any]]]
"""The native model on the same inputs, its outputs in the ONNX graph's output order."""


@dataclass(frozen=True)
class Tolerance:
    """How close ONNX Runtime must be to the native model (numpy ``allclose`` semantics)."""

    rtol: float = 1e-4
    """relative tolerance"""
    atol: float = 1e-5
    """absolute tolerance"""


@dataclass(frozen=True)
class SizeCheck:
    """One comparison of ONNX Runtime against the native model."""

    input_shapes: dict[str, tuple[int, ...]]
    max_abs_diff: float


@dataclass(frozen=True)
class ExportReport:
    """What an export produced and how it was verified."""

    path: Path
    checks: tuple[SizeCheck, ...]

    @property
    def max_abs_diff(self) -> float:
        return max((c.max_abs_diff for c in self.checks), default=0.0)


def check_dynamic_dims(model_path: Path, dynamic_axes: Mapping[str, Mapping[int, str]]) -> None:
    """Raise unless every axis declared dynamic is symbolic (not a fixed size) in the ONNX graph."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    values = {v.name: v for v in [*graph.input, *graph.output]}
    for name, axes in dynamic_axes.items():
        if name not in values:
            raise ExportVerificationError(f"{model_path.name}: no graph input/output named {name!r}")
        dims = values[name].type.tensor_type.shape.dim
        for axis, label in axes.items():
            if axis >= len(dims):
                raise ExportVerificationError(f"{model_path.name}: {name!r} has no axis {axis} ({label})")
            if dims[axis].HasField("dim_value"):
                raise ExportVerificationError(
                    f"{model_path.name}: axis {axis} ({label!r}) of {name!r} was requested dynamic but was "
                    f"exported with a fixed size {dims[axis].dim_value}"
                )


def compare_with_native(
    model_path: Path, native: NativeFn, input_sets: Sequence[Arrays], tolerance: Tolerance
) -> ExportReport:
    """Run ONNX Runtime and the native model on each input set; raise on any difference."""
    if len(input_sets) < 2:
        raise ValueError("verify at two or more input sizes")
    session = _cpu_session(model_path)
    checks = tuple(_compare_once(model_path, session, native, inputs, tolerance) for inputs in input_sets)
    return ExportReport(path=model_path, checks=checks)


def _cpu_session(model_path: Path) -> Any:
    quiet_telemetry_env()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def _compare_once(
    model_path: Path, session: Any, native: NativeFn, inputs: Arrays, tolerance: Tolerance
) -> SizeCheck:
    shapes = {name: tuple(int(d) for d in array.shape) for name, array in inputs.items()}
    where = f"{model_path.name} at input shapes {shapes}"
    try:
        got = session.run(None, inputs)
    except Exception as error:  # ORT raises its own exception types; all mean the export is unusable
        raise ExportVerificationError(f"{where}: ONNX Runtime failed: {error}") from error
    expected = [np.asarray(e) for e in native(inputs)]
    if len(got) != len(expected):
        raise ExportVerificationError(f"{where}: ONNX gave {len(got)} outputs, native {len(expected)}")
    worst = 0.0
    for index, (onnx_out, native_out) in enumerate(zip(got, expected, strict=True)):
        worst = max(worst, _compare_output(f"{where}, output {index}", onnx_out, native_out, tolerance))
    return SizeCheck(input_shapes=shapes, max_abs_diff=worst)


def _compare_output(
    where: str, onnx_out: npt.NDArray[Any], native_out: npt.NDArray[Any], tolerance: Tolerance
) -> float:
    onnx_out = np.asarray(onnx_out)
    if onnx_out.size == native_out.size and onnx_out.shape != native_out.shape:
        # e.g. (n, 1) vs (n,): the same values, laid out differently by the converter
        onnx_out = onnx_out.reshape(native_out.shape)
    if onnx_out.shape != native_out.shape:
        raise ExportVerificationError(f"{where}: shape {onnx_out.shape} != native {native_out.shape}")
    if onnx_out.size == 0:
        return 0.0
    diff = float(np.max(np.abs(onnx_out.astype(np.float64) - native_out.astype(np.float64))))
    if not np.allclose(onnx_out, native_out, rtol=tolerance.rtol, atol=tolerance.atol):
        raise ExportVerificationError(
            f"{where}: ONNX Runtime differs from the native model, max |diff| = {diff:.3g} "
            f"(rtol={tolerance.rtol}, atol={tolerance.atol})"
        )
    return diff

"""PyTorch -> ONNX export, verified. torch is imported here only, inside the function: serving never
imports this module's dependencies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mesh.models._errors import ExportVerificationError
from mesh.models._verify import Arrays, ExportReport, Tolerance, check_dynamic_dims, compare_with_native

if TYPE_CHECKING:
    import torch

DynamicAxes = Mapping[str, Mapping[int, str]]
_DEFAULT_TOLERANCE = Tolerance()


def export_torch(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: str | Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: DynamicAxes,
    check_sizes: Sequence[tuple[int, ...]] = ((1, 3), (7, 11)),
    *,
    tolerance: Tolerance = _DEFAULT_TOLERANCE,
    dynamo: bool = True,
    opset_version: int | None = None,
    seed: int = 0,
) -> ExportReport:
    """Export ``module`` to ONNX at ``path`` and verify it, or raise :class:`ExportVerificationError`.

    ``dynamic_axes`` maps an input/output name to ``{axis: dim_name}``. Each entry of ``check_sizes``
    gives sizes to the distinct dim names in order of first appearance over ``input_names`` (so for
    ``{"x": {0: "batch", 1: "seq"}}`` an entry is ``(batch, seq)``). After export, every declared
    dynamic axis must be symbolic in the graph, and ONNX Runtime must match the module on random
    inputs of each size within ``tolerance``.
    """
    path = Path(path)
    _check_names(input_names, output_names, example_inputs)
    dim_names = _dim_names(input_names, dynamic_axes)
    input_sets = [_inputs_at(example_inputs, input_names, dynamic_axes, dim_names, s, seed) for s in check_sizes]
    was_training = module.training
    module.eval()  # export and compare the inference behaviour (dropout off, batch-norm frozen)
    try:
        _torch_export(module, example_inputs, path, input_names, output_names, dynamic_axes, dynamo, opset_version)
        check_dynamic_dims(path, dynamic_axes)
        native = lambda inputs: _native(module, input_names, inputs)  # noqa: E731
        return compare_with_native(path, native, input_sets, tolerance)
    finally:
        module.train(was_training)


def _check_names(input_names: Sequence[str], output_names: Sequence[str], example: tuple[Any, ...]) -> None:
    if len(input_names) != len(example):
        raise ValueError(f"{len(input_names)} input names for {len(example)} example inputs")
    names = [*input_names, *output_names]
    if len(set(names)) != len(names):
        # a repeated name (or an output named like an internal node) gives an invalid graph
        raise ValueError(f"input and output names must be distinct, got {names}")


def _dim_names(input_names: Sequence[str], dynamic_axes: DynamicAxes) -> list[str]:
    ordered: list[str] = []
    for name in input_names:
        for _, dim in sorted(dynamic_axes.get(name, {}).items()):
            if dim not in ordered:
                ordered.append(dim)
    return ordered


def _inputs_at(
    example: tuple[torch.Tensor, ...],
    input_names: Sequence[str],
    dynamic_axes: DynamicAxes,
    dim_names: list[str],
    sizes: tuple[int, ...],
    seed: int,
) -> Arrays:
    if len(sizes) < len(dim_names):
        raise ValueError(f"check size {sizes} does not give a size to each dynamic dim {dim_names}")
    size_of = dict(zip(dim_names, sizes, strict=False))
    rng = np.random.default_rng([seed, *sizes])
    arrays: Arrays = {}
    for name, tensor in zip(input_names, example, strict=True):
        shape = list(tensor.shape)
        for axis, dim in dynamic_axes.get(name, {}).items():
            shape[axis] = size_of[dim]
        arrays[name] = _random_like(tensor.detach().cpu().numpy(), tuple(shape), rng)
    return arrays


def _random_like(example: np.ndarray[Any, Any], shape: tuple[int, ...], rng: np.random.Generator) -> Any:
    if np.issubdtype(example.dtype, np.floating):
        return rng.standard_normal(shape).astype(example.dtype)
    if example.dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    # integer inputs (token ids, categories): stay within the range the example used
    low, high = (int(example.min()), int(example.max())) if example.size else (0, 0)
    return rng.integers(low, high + 1, size=shape).astype(example.dtype)


def _torch_export(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: DynamicAxes,
    dynamo: bool,
    opset_version: int | None,
) -> None:
    import torch

    if dynamo:
        # torch bug: after the first LSTM export in a process, the dynamo exporter reuses a cached
        # dispatch and silently fixes the sequence axis to the example length.
        cache = getattr(torch.ops.aten.lstm.input, "_dispatch_cache", None)
        if cache is not None:
            cache.clear()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes={name: dict(axes) for name, axes in dynamic_axes.items()},
            opset_version=opset_version,
            dynamo=dynamo,
            verbose=False,
        )
    except Exception as error:
        raise ExportVerificationError(f"torch.onnx.export of {type(module).__name__} failed: {error}") from error


def _native(module: torch.nn.Module, input_names: Sequence[str], inputs: Arrays) -> list[Any]:
    import torch

    tensors = [torch.from_numpy(inputs[name]) for name in input_names]
    with torch.no_grad():
        out = module(*tensors)
    return [t.detach().cpu().numpy() for t in _flatten(out)]


def _flatten(out: Any) -> list[Any]:
    if isinstance(out, list | tuple):
        return [t for item in out for t in _flatten(item)]
    if isinstance(out, dict):
        return [t for item in out.values() for t in _flatten(item)]
    return [out]

"""Tiny ONNX graphs built by hand (no torch) for runner, batcher and registry tests."""

from __future__ import annotations

from pathlib import Path


def write_scale_model(path: Path, factor: float, n_features: int = 3) -> Path:
    """A tiny ONNX graph: y = x * factor, x float [batch, n_features]."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "factor"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor("factor", TensorProto.FLOAT, [], [factor])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from mesh.config import ModelSettings
from mesh.models import ExportVerificationError, OnnxModel, Tolerance, compare_with_native, export_torch
from mesh.models import _export_torch as export_module


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared
    torch.manual_seed(0)
    yield
    torch.set_num_threads(previous)


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class Lstm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states, (h, _) = self.lstm(x)
        return self.head(states), h[-1]


LSTM_AXES = {"x": {0: "batch", 1: "seq"}, "scores": {0: "batch", 1: "seq"}, "last_state": {0: "batch"}}


def export_lstm(module: nn.Module, path: Path, **kwargs: object) -> object:
    return export_torch(module, (torch.randn(2, 5, 4),), path, ["x"], ["scores", "last_state"], LSTM_AXES,
                        check_sizes=[(1, 3), (6, 13)], **kwargs)  # type: ignore[arg-type]


def test_mlp_onnx_equals_torch_at_two_batch_sizes(tmp_path: Path, model_settings: ModelSettings) -> None:
    mlp = Mlp().train()  # export must switch dropout off, and give the training flag back
    report = export_torch(mlp, (torch.randn(4, 6),), tmp_path / "mlp.onnx", ["x"], ["logits"],
                          {"x": {0: "batch"}, "logits": {0: "batch"}}, check_sizes=[(1,), (37,)])
    assert mlp.training
    assert [c.input_shapes["x"] for c in report.checks] == [(1, 6), (37, 6)]
    assert report.max_abs_diff < 1e-5
    # independent of the export's own check: the served model gives torch's numbers
    x = np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)
    served = OnnxModel.load(report.path, model_settings).run({"x": x})["logits"]
    with torch.no_grad():
        np.testing.assert_allclose(served, mlp.eval()(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy"])
def test_lstm_keeps_batch_and_sequence_dynamic_on_repeated_exports(tmp_path: Path, dynamo: bool) -> None:
    # torch bug: the second LSTM export in a process used to fix the sequence axis
    for i in range(2):
        report = export_lstm(Lstm(), tmp_path / f"lstm{i}.onnx", dynamo=dynamo)
        dims = onnx.load(str(tmp_path / f"lstm{i}.onnx")).graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_param != "" for d in dims] == [True, True, False]
        assert report.checks[1].input_shapes["x"] == (6, 13, 4)  # type: ignore[attr-defined]


class ExportsDifferently(nn.Module):
    """Forward does something else while being exported than when called: the export is wrong."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_exporting() or torch.jit.is_tracing():
            return x * 2
        return x * 3


def test_a_module_exported_differently_is_caught(tmp_path: Path) -> None:
    with pytest.raises(ExportVerificationError, match="differs from the native model"):
        export_torch(ExportsDifferently(), (torch.randn(2, 3),), tmp_path / "bad.onnx", ["x"], ["y"],
                     {"x": {0: "batch"}, "y": {0: "batch"}}, check_sizes=[(1,), (4,)])


def _patch_export(monkeypatch: pytest.MonkeyPatch, corrupt: object) -> None:
    real = export_module._torch_export

    def export_then_corrupt(*args: object) -> None:
        real(*args)  # type: ignore[arg-type]
        path = args[2]
        model = onnx.load(str(path))
        corrupt(model)  # type: ignore[operator]
        onnx.save(model, str(path))

    monkeypatch.setattr(export_module, "_torch_export", export_then_corrupt)


def test_a_fixed_sequence_axis_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fix_sequence(model: onnx.ModelProto) -> None:
        model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 5

    _patch_export(monkeypatch, fix_sequence)
    with pytest.raises(ExportVerificationError, match=r"axis 1 \('seq'\) of 'x'.*fixed size 5"):
        export_lstm(Lstm(), tmp_path / "fixed.onnx")


def test_corrupted_weights_are_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def scale_weights(model: onnx.ModelProto) -> None:
        for init in model.graph.initializer:
            array = onnx.numpy_helper.to_array(init)
            if array.dtype == np.float32 and array.size > 1:
                init.CopyFrom(onnx.numpy_helper.from_array(array * 1.01, init.name))

    _patch_export(monkeypatch, scale_weights)
    with pytest.raises(ExportVerificationError, match="differs"):
        export_torch(Mlp(), (torch.randn(4, 6),), tmp_path / "mlp.onnx", ["x"], ["logits"],
                     {"x": {0: "batch"}}, check_sizes=[(1,), (9,)])


def test_a_graph_that_cannot_take_other_sizes_fails_to_run(tmp_path: Path) -> None:
    lstm = Lstm().eval()
    path = tmp_path / "static.onnx"
    torch.onnx.export(lstm, (torch.randn(2, 5, 4),), str(path), input_names=["x"],
                      output_names=["scores", "last_state"], dynamo=False)  # no dynamic axes at all

    def native(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            return [t.numpy() for t in lstm(torch.from_numpy(inputs["x"]))]

    sizes = [np.zeros((2, 5, 4), np.float32), np.zeros((3, 9, 4), np.float32)]
    with pytest.raises(ExportVerificationError, match="ONNX Runtime failed"):
        compare_with_native(path, native, [{"x": s} for s in sizes], Tolerance())


def test_names_must_be_distinct(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="distinct"):
        export_torch(Mlp(), (torch.randn(1, 6),), tmp_path / "m.onnx", ["x"], ["x"], {"x": {0: "b"}}, [(1,), (2,)])

"""ONNX export of the task-duration network: the deterministic graph (verified equal to torch at two
sizes) and the Monte-Carlo-dropout graph the service runs (checked dynamic and stochastic), stamped with
the feature layout, the conformal calibration and the number of passes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mesh.models import ExportReport, stamp_metadata
from services.timeline.calibration import ConformalCalibrator
from services.timeline.model import TaskDurationNet, export_deterministic, export_mc
from services.timeline.predictor import SCHEMA
from services.timeline.projection import ProjectParams

DEFAULT_PASSES = 40
"""Monte-Carlo passes per request (one batched ONNX call)."""


@dataclass(frozen=True)
class Exported:
    deterministic: ExportReport
    mc_path: Path


def metadata(calibrator: ConformalCalibrator, passes: int, effort_prior: str = "constant") -> dict[str, str]:
    """The feature schema (checked by the service on load), the calibration, passes and effort prior."""
    cal = {"method": calibrator.method, "q": calibrator.q, "coverage": calibrator.coverage}
    return {**SCHEMA.metadata(), "calibration": json.dumps(cal), "mc_passes": str(passes),
            "effort_prior": effort_prior}


def stamp_project_params(path: Path, params: ProjectParams) -> None:
    """Add the project-forecast parameters fitted with this model to its metadata (rewrites the file)."""
    stamp_metadata(path, {"project_params": params.to_json()})


def export_task_model(net: TaskDurationNet, calibrator: ConformalCalibrator, out_dir: Path,
                      passes: int = DEFAULT_PASSES, effort_prior: str = "constant") -> Exported:
    """Write ``task_deterministic.onnx`` and ``task_mc.onnx`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = export_deterministic(net, out_dir / "task_deterministic.onnx")
    mc_path = export_mc(net, out_dir / "task_mc.onnx")
    for path in (report.path, mc_path):
        stamp_metadata(path, metadata(calibrator, passes, effort_prior))
    return Exported(report, mc_path)


def export_untrained(out_dir: Path, seed: int = 0, passes: int = 8) -> Path:
    """An untrained network's MC graph with an identity calibration: the cheapest model a handler can be
    wired to (contract tests, smoke tests); its forecasts mean nothing."""
    import torch

    from services.timeline.features import N_STATIC
    from services.timeline.model import TaskModelConfig

    torch.manual_seed(seed)
    net = TaskDurationNet(TaskModelConfig(N_STATIC, hidden=8)).eval()
    path = export_mc(net, out_dir / "task_mc_untrained.onnx", dynamo=False)
    stamp_metadata(path, metadata(ConformalCalibrator("scale", 1.0, 0.8), passes))
    return path

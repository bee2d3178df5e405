"""ONNX export of the three rankers, each verified against its native model.

The ensemble is one ONNX graph holding both models' nodes and the affine combination, so serving runs
one session. Every file carries its feature schema (checked by the service on load) and the reference
values used for reasons.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from mesh.models import (
    INPUT_NAME,
    LIGHTGBM_MAX_OPSET,
    ExportReport,
    Tolerance,
    compare_with_native,
    export_lightgbm,
    stamp_metadata,
)
from mesh.models import export_torch as mesh_export_torch
from services.assignment.features import N_FEATURES, Matrix
from services.assignment.model import Ensemble, RankerNet, lambdamart_scorer, net_scorer
from services.assignment.ranker import SCHEMA

OUTPUT_NAME = "score"
_AXES = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}


@dataclass(frozen=True)
class Exported:
    nn: ExportReport
    lambdamart: ExportReport
    ensemble: ExportReport


def export_all(net: RankerNet, booster: Any, ensemble: Ensemble, sample: Matrix, out_dir: Path,
               reference: Matrix) -> Exported:
    """Write ``nn.onnx``, ``lambdamart.onnx`` and ``ensemble.onnx`` under ``out_dir``, each verified at
    batch 1 and a larger batch; ``reference`` (training column means) goes into the metadata."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # opset 15 for both, so the two graphs can share one ensemble model (the LightGBM converter's cap)
    nn_report = mesh_export_torch(net, (torch.from_numpy(sample[:4]),), out_dir / "nn.onnx", [INPUT_NAME],
                                  [OUTPUT_NAME], _AXES, check_sizes=((1,), (64,)), dynamo=False,
                                  opset_version=LIGHTGBM_MAX_OPSET)
    lgb_report = export_lightgbm(booster, N_FEATURES, out_dir / "lambdamart.onnx", sample=sample,
                                 check_batches=(1, 64))
    ens_path = out_dir / "ensemble.onnx"
    _compose(nn_report.path, lgb_report.path, ensemble, ens_path)
    nn_fn, lgb_fn = net_scorer(net), lambdamart_scorer(booster)
    rows = [{INPUT_NAME: sample[:1]}, {INPUT_NAME: sample[: min(64, len(sample))]}]
    ens_report = compare_with_native(
        ens_path, lambda i: [ensemble.combine(nn_fn(i[INPUT_NAME]), lgb_fn(i[INPUT_NAME])).reshape(-1, 1)],
        rows, Tolerance(rtol=1e-4, atol=1e-4))
    props = {**SCHEMA.metadata(), "reference": json.dumps([round(float(v), 6) for v in reference])}
    for kind, path in (("nn", nn_report.path), ("lambdamart", lgb_report.path), ("ensemble", ens_path)):
        stamp_metadata(path, {**props, "model_kind": kind})
    return Exported(nn_report, lgb_report, ens_report)


def _compose(nn_path: Path, lgb_path: Path, ensemble: Ensemble, out: Path) -> None:
    """One graph: input -> (nn, lambdamart) -> a_nn * nn + a_lgb * lgb + bias."""
    nn_model, lgb_model = onnx.load(str(nn_path)), onnx.load(str(lgb_path))
    nn_graph = onnx.compose.add_prefix(nn_model, "nn/", rename_inputs=False).graph
    lgb_graph = onnx.compose.add_prefix(lgb_model, "lgb/", rename_inputs=False).graph
    nn_out, lgb_out = nn_graph.output[0].name, lgb_graph.output[0].name
    a_nn, a_lgb, bias = ensemble.affine()
    consts = [numpy_helper.from_array(np.asarray(v, np.float32), name)
              for name, v in (("ens/a_nn", a_nn), ("ens/a_lgb", a_lgb), ("ens/bias", bias))]
    nodes = [
        helper.make_node("Reshape", [lgb_out, "ens/shape"], ["ens/lgb_col"]),
        helper.make_node("Mul", [nn_out, "ens/a_nn"], ["ens/nn_w"]),
        helper.make_node("Mul", ["ens/lgb_col", "ens/a_lgb"], ["ens/lgb_w"]),
        helper.make_node("Add", ["ens/nn_w", "ens/lgb_w"], ["ens/sum"]),
        helper.make_node("Add", ["ens/sum", "ens/bias"], [OUTPUT_NAME]),
    ]
    shape = numpy_helper.from_array(np.asarray([-1, 1], np.int64), "ens/shape")
    graph = helper.make_graph(
        [*nn_graph.node, *lgb_graph.node, *nodes], "assignment_ensemble", [nn_graph.input[0]],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["batch", 1])],
        [*nn_graph.initializer, *lgb_graph.initializer, *consts, shape])
    opsets: dict[str, int] = {}
    for o in [*nn_model.opset_import, *lgb_model.opset_import]:
        opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                              producer_name="sunday-ml assignment")
    model.ir_version = max(nn_model.ir_version, lgb_model.ir_version)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))

"""The registered anomaly model: ONE ONNX file holding both models, the per-tenant norms, the ensemble weight
and the threshold, so the registry versions (and promotes) the ensemble as a unit.

- `export_ensemble(ens, path)`: the Isolation Forest (input ``x``: one hour's vector) and the LSTM
  autoencoder (input ``seq``: the user's last `SEQ_LEN` hours) merged into one graph (outputs ``scores``
  and ``recon_error``); the feature schema and the ensemble's parameters (JSON) in its metadata.
- `ServedEnsemble.of(versioned)`: what the service scores with, built from a loaded registry version
  (`mesh.models.ReloadingModel.current`); the same `components` as the training-time `OnnxEnsemble`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mesh.models import FeatureSchema, VersionedModel
from services.anomaly.ensemble import FloatArray, OnnxEnsemble, TenantNorm
from services.anomaly.features import FEATURES

MODEL_NAME = "anomaly"
SCHEMA = FeatureSchema("anomaly-v1", FEATURES)
PARAMS_KEY = "anomaly_ensemble"
"""ONNX metadata key of the ensemble's parameters (JSON: weight, threshold, per-tenant norms, seq_len)."""


def _norm_json(n: TenantNorm) -> dict[str, Any]:
    return {"stats": {t: list(v) for t, v in n.stats.items()}, "default": list(n.default)}


def _norm_of(d: dict[str, Any]) -> TenantNorm:
    return TenantNorm({t: (float(v[0]), float(v[1])) for t, v in d["stats"].items()},
                      (float(d["default"][0]), float(d["default"][1])))


def export_ensemble(ens: OnnxEnsemble, path: Path, seq_len: int) -> Path:
    """Write `ens` as one ONNX file at `path` (schema + parameters in its metadata); returns `path`."""
    import onnx
    import onnx.compose

    forest = onnx.compose.add_prefix(onnx.load_from_string(ens.iforest), "if_", rename_inputs=False,
                                     rename_outputs=False)
    lstm = onnx.compose.add_prefix(onnx.load_from_string(ens.lstm), "ae_", rename_inputs=False,
                                   rename_outputs=False)
    forest.ir_version = lstm.ir_version = max(forest.ir_version, lstm.ir_version)
    merged = onnx.compose.merge_models(forest, lstm, io_map=[])
    params = {"weight_iforest": ens.weight_iforest, "threshold": ens.threshold, "seq_len": seq_len,
              "iforest_norm": _norm_json(ens.iforest_norm), "lstm_norm": _norm_json(ens.lstm_norm)}
    onnx.helper.set_model_props(merged, {**SCHEMA.metadata(), PARAMS_KEY: json.dumps(params)})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(merged, str(path))
    return path


@dataclass
class ServedEnsemble:
    """A registry version of the ensemble, scoring through its one ONNX session."""

    runner: Any
    """`mesh.models.OnnxModel` (or anything with ``run(inputs) -> outputs``)."""
    version: str
    weight_iforest: float
    threshold: float
    iforest_norm: TenantNorm
    lstm_norm: TenantNorm
    seq_len: int

    @classmethod
    def of(cls, versioned: VersionedModel) -> ServedEnsemble:
        params = json.loads(versioned.model.metadata[PARAMS_KEY])
        return cls(versioned.model, versioned.version, float(params["weight_iforest"]), float(params["threshold"]),
                   _norm_of(params["iforest_norm"]), _norm_of(params["lstm_norm"]), int(params["seq_len"]))

    def raw(self, vectors: FloatArray, seqs: FloatArray) -> tuple[FloatArray, FloatArray]:
        out = self.runner.run({"x": vectors.astype(np.float32), "seq": seqs.astype(np.float32)})
        iso = -np.asarray(out["scores"], dtype=np.float64).reshape(-1)
        return iso, np.asarray(out["recon_error"], dtype=np.float64).reshape(-1)

    def components(self, tenants: Sequence[str], vectors: FloatArray,
                   seqs: FloatArray) -> tuple[FloatArray, FloatArray]:
        iso, err = self.raw(vectors, seqs)
        return self.iforest_norm.apply(tenants, iso), self.lstm_norm.apply(tenants, err)


class ServedCache:
    """`ServedEnsemble` of the version a `ModelSource`-like callable returns, parsed once per version."""

    def __init__(self) -> None:
        self._served: ServedEnsemble | None = None

    def __call__(self, versioned: VersionedModel) -> ServedEnsemble:
        if self._served is None or self._served.version != versioned.version or \
                self._served.runner is not versioned.model:
            self._served = ServedEnsemble.of(versioned)
        return self._served

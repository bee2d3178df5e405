"""The served ensemble: ONNX Isolation Forest + ONNX LSTM autoencoder, normalised per tenant, one threshold.

Each model's raw score is turned into a robust z against the SAME tenant's scores on the training period
(median / MAD), so a busy tenant's normal level does not drown a quiet one; the ensemble is a weighted sum
of the two z's; weights and the alert threshold are chosen on a later (validation) period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class Scorer(Protocol):
    """An ensemble the service, the detector and the servicer score with (`OnnxEnsemble`, `ServedEnsemble`)."""

    @property
    def version(self) -> str: ...

    @property
    def weight_iforest(self) -> float: ...

    @property
    def threshold(self) -> float: ...

    def components(self, tenants: Sequence[str], vectors: FloatArray,
                   seqs: FloatArray) -> tuple[FloatArray, FloatArray]: ...


@dataclass(frozen=True)
class TenantNorm:
    """Per tenant (median, scale) of a model's raw scores on the training period; `default` for new tenants."""

    stats: dict[str, tuple[float, float]]
    default: tuple[float, float]

    @classmethod
    def fit(cls, tenants: Sequence[str], scores: FloatArray) -> TenantNorm:
        def robust(x: FloatArray) -> tuple[float, float]:
            med = float(np.median(x))
            return med, max(float(np.median(np.abs(x - med))) * 1.4826, 1e-6)

        arr = np.asarray(tenants)
        return cls({t: robust(scores[arr == t]) for t in sorted(set(tenants))}, robust(scores))

    def apply(self, tenants: Sequence[str], scores: FloatArray) -> FloatArray:
        med = np.array([self.stats.get(t, self.default)[0] for t in tenants])
        scale = np.array([self.stats.get(t, self.default)[1] for t in tenants])
        return np.asarray((scores - med) / scale, dtype=np.float64)


@dataclass
class OnnxEnsemble:
    iforest: bytes
    lstm: bytes
    iforest_norm: TenantNorm
    lstm_norm: TenantNorm
    weight_iforest: float
    threshold: float
    version: str = "dev"
    _sessions: list[object] = field(default_factory=list, repr=False)

    def _load(self) -> tuple[object, object]:
        if not self._sessions:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self._sessions = [ort.InferenceSession(m, opts, providers=["CPUExecutionProvider"])
                              for m in (self.iforest, self.lstm)]
        return self._sessions[0], self._sessions[1]

    def raw(self, vectors: FloatArray, seqs: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(Isolation Forest anomaly score = -decision, LSTM reconstruction error) per row."""
        forest, lstm = self._load()
        outs = forest.run(None, {"x": vectors.astype(np.float32)})  # type: ignore[attr-defined]
        iso = -np.asarray(outs[1], dtype=np.float64).reshape(-1)
        err = np.asarray(lstm.run(None, {"seq": seqs.astype(np.float32)})[0], dtype=np.float64)  # type: ignore[attr-defined]
        return iso, err

    def components(self, tenants: Sequence[str], vectors: FloatArray,
                   seqs: FloatArray) -> tuple[FloatArray, FloatArray]:
        iso, err = self.raw(vectors, seqs)
        return self.iforest_norm.apply(tenants, iso), self.lstm_norm.apply(tenants, err)

    def score(self, tenants: Sequence[str], vectors: FloatArray, seqs: FloatArray) -> FloatArray:
        z_if, z_ae = self.components(tenants, vectors, seqs)
        return self.weight_iforest * z_if + (1 - self.weight_iforest) * z_ae

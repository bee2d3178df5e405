"""Training of the two models on hourly activity vectors; both exported to ONNX (serving never imports torch).

- Isolation Forest (scikit-learn) on one hour's vector -> skl2onnx (`target_opset={'': 17, 'ai.onnx.ml': 3}`).
- LSTM autoencoder (PyTorch) on the sequence of a user's recent hours -> ONNX with dynamic batch and sequence
  axes, exported with the legacy (TorchScript) exporter: the dynamo exporter fixed the sequence axis of LSTMs
  after the first export in a process (STACK-NOTES). tests/unit/anomaly/test_models.py checks that both axes
  stay dynamic and ONNX == torch at three (batch, steps) sizes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import IsolationForest

FloatArray = npt.NDArray[np.float64]


def fit_iforest(x: FloatArray, seed: int = 0, trees: int = 100) -> IsolationForest:
    return IsolationForest(n_estimators=trees, max_samples=min(256, len(x)), random_state=seed).fit(x)


def iforest_onnx(model: IsolationForest, n_features: int) -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(model, initial_types=[("x", FloatTensorType([None, n_features]))],
                  target_opset={"": 17, "ai.onnx.ml": 3})
    return bytes(onx.SerializeToString())


@dataclass(frozen=True)
class LstmConfig:
    hidden: int = 16
    epochs: int = 30
    lr: float = 0.01
    batch: int = 256
    seed: int = 0


def _module(n_features: int, hidden: int) -> Any:
    from torch import nn

    class LstmAutoencoder(nn.Module):  # type: ignore[misc]
        """Encode the sequence to the last hidden state; decode it back at every step; output the error."""

        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.LSTM(n_features, hidden, batch_first=True)
            self.dec = nn.LSTM(hidden, hidden, batch_first=True)
            self.out = nn.Linear(hidden, n_features)

        def forward(self, x: Any) -> Any:
            _, (h, _) = self.enc(x)
            rep = h[-1].unsqueeze(1).expand(-1, x.shape[1], -1)
            dec, _ = self.dec(rep)
            recon = self.out(dec)
            return ((recon[:, -1, :] - x[:, -1, :]) ** 2).mean(dim=1)  # error of the newest hour

    return LstmAutoencoder()


def fit_lstm(seqs: FloatArray, cfg: LstmConfig) -> Any:
    import torch

    torch.manual_seed(cfg.seed)
    model = _module(seqs.shape[2], cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    data = torch.tensor(seqs, dtype=torch.float32)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(data), generator=gen).split(cfg.batch):  # type: ignore[no-untyped-call]
            opt.zero_grad()
            loss = model(data[idx]).mean()
            loss.backward()
            opt.step()
    model.eval()
    return model


def lstm_scores(model: Any, seqs: FloatArray) -> FloatArray:
    import torch

    with torch.no_grad():
        return np.asarray(model(torch.tensor(seqs, dtype=torch.float32)).numpy(), dtype=np.float64)


def lstm_onnx(model: Any, n_features: int) -> bytes:
    import torch

    buf = io.BytesIO()
    example = torch.zeros(2, 3, n_features)
    torch.onnx.export(model, (example,), buf, input_names=["seq"], output_names=["recon_error"],  # type: ignore[arg-type]
                      dynamic_axes={"seq": {0: "batch", 1: "steps"}, "recon_error": {0: "batch"}},
                      dynamo=False, opset_version=17)
    return buf.getvalue()

"""The next-action network (PyTorch; training only — serving runs its ONNX export through
:mod:`services.automation.model`).

An LSTM over left-padded prefixes: each step is an activity embedding concatenated with four time
features; the last step's hidden state gives logits over the next activity (or the end of the case).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mesh.models import ExportReport, export_torch
from services.automation.process_log import N_TIME_FEATURES, Prefixes

INPUT_NAMES = ("activities", "times")
OUTPUT_NAMES = ("next_logits",)
DYNAMIC_AXES = {"activities": {0: "batch", 1: "seq"}, "times": {0: "batch", 1: "seq"},
                "next_logits": {0: "batch"}}


@dataclass(frozen=True)
class NetConfig:
    """Hyper-parameters of one candidate (chosen on validation)."""

    hidden: int = 64
    embedding: int = 16
    layers: int = 1
    dropout: float = 0.1
    use_time: bool = True
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3
    patience: int = 4
    """Epochs without a better validation accuracy before stopping (the best epoch's weights are kept)."""


class NextActionNet(nn.Module):
    def __init__(self, vocab_size: int, config: NetConfig) -> None:
        super().__init__()
        self.use_time = config.use_time
        self.embed = nn.Embedding(vocab_size, config.embedding, padding_idx=0)
        self.lstm = nn.LSTM(config.embedding + N_TIME_FEATURES, config.hidden, num_layers=config.layers,
                            batch_first=True, dropout=config.dropout if config.layers > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, vocab_size)

    def forward(self, activities: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        feats = times if self.use_time else torch.zeros_like(times)
        x = torch.cat([self.embed(activities), feats], dim=-1)
        out, _ = self.lstm(x)
        logits: torch.Tensor = self.head(self.drop(out[:, -1, :]))
        return logits


def _tensors(data: Prefixes, rows: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    acts = data.activities[rows]
    width = max(int(data.lengths[rows].max()), 1)  # trim the common left padding of the batch
    return (torch.from_numpy(acts[:, -width:]), torch.from_numpy(data.times[rows][:, -width:]),
            torch.from_numpy(data.targets[rows]))


def accuracy(net: NextActionNet, data: Prefixes, batch: int = 512) -> float:
    return float(np.mean(predict(net, data, batch) == data.targets)) if len(data) else 0.0


def predict(net: NextActionNet, data: Prefixes, batch: int = 512) -> np.ndarray[Any, Any]:
    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(data), batch):
            acts, times, _ = _tensors(data, slice(start, start + batch))
            out.append(net(acts, times).argmax(dim=1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def train(vocab_size: int, train_set: Prefixes, val_set: Prefixes, config: NetConfig, seed: int = 0
          ) -> tuple[NextActionNet, float]:
    """Fit with early stopping on validation accuracy; the net at its best epoch and that accuracy."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = NextActionNet(vocab_size, config)
    opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    order = np.argsort(train_set.lengths, kind="stable")  # similar lengths together: little padding
    batches = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    best, best_state, stale = -1.0, net.state_dict(), 0
    for _ in range(config.epochs):
        net.train()
        for b in rng.permutation(len(batches)):
            acts, times, targets = _tensors(train_set, batches[b])
            opt.zero_grad()
            loss_fn(net(acts, times), targets).backward()
            opt.step()
        score = accuracy(net, val_set)
        if score > best:
            best, stale = score, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    return net, best


def export(net: NextActionNet, path: Path) -> ExportReport:
    """Verified ONNX export: dynamic batch and sequence axes, ORT == torch at (1, 3), (7, 11), (32, 5).

    The TorchScript exporter (``dynamo=False``): a few times cheaper than dynamo for this small LSTM, and
    free of dynamo's bug that fixes the sequence axis of LSTMs exported after the first (STACK-NOTES)."""
    vocab = net.embed.num_embeddings
    example = (torch.randint(0, vocab, (2, 4), dtype=torch.int64), torch.rand(2, 4, N_TIME_FEATURES))
    return export_torch(net, example, path, INPUT_NAMES, OUTPUT_NAMES, DYNAMIC_AXES,
                        check_sizes=((1, 3), (7, 11), (32, 5)), dynamo=False)

"""Timeline models: remaining task duration (BiLSTM + attention) and remaining milestone time
(attention pooling over the milestone's open tasks), with Monte-Carlo dropout intervals.

Both networks use `MCDropout`: dropout that follows `module.training`, unless the module's `mc` flag is
set, in which case it stays on in eval mode and in the exported ONNX graph. So one trained network gives
two ONNX graphs: deterministic (`mc=False`, verified equal to torch at two or more sizes) and stochastic
(`mc=True`; N passes are one ONNX call on the batch repeated N times, see `repeat_for_mc`).

torch is imported by training and export only; serving runs the ONNX graphs (numpy + onnxruntime) with
the tensor layout of `services.timeline.tensors`, which does not import this module.
Targets are natural logs: log(hours) for tasks, log1p(days) for milestones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mesh.models import ExportReport, ExportVerificationError, check_dynamic_dims, export_torch
from services.timeline.tensors import F32, MILESTONE_OUTPUT, STEP_FEATURES, TASK_OUTPUT, FloatArray, Quantiles

# re-exported: training code and its tests read the layout from here too
from services.timeline.tensors import MILESTONE_INPUTS as MILESTONE_INPUTS
from services.timeline.tensors import STATUS_SLOTS as STATUS_SLOTS
from services.timeline.tensors import TASK_INPUTS as TASK_INPUTS
from services.timeline.tensors import pad_sequences as pad_sequences
from services.timeline.tensors import quantiles_from_passes as quantiles_from_passes
from services.timeline.tensors import repeat_for_mc as repeat_for_mc
from services.timeline.tensors import step_features as step_features


class MCDropout(nn.Module):
    """Dropout that stays active when `mc` is set (eval mode and the exported graph included)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.mc = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mc and not self.training:
            # An explicit random mask, not F.dropout: ONNX Runtime's graph optimiser deletes Dropout
            # nodes even with training_mode=True, which would make the exported MC graph deterministic.
            keep = (torch.rand_like(x) >= self.p).to(x.dtype)
            return x * keep / (1.0 - self.p)
        return F.dropout(x, self.p, training=self.training)


def set_mc_dropout(module: nn.Module, on: bool) -> None:
    """Switch every `MCDropout` in `module` to always-on (`on=True`) or to following `training`."""
    for m in module.modules():
        if isinstance(m, MCDropout):
            m.mc = on


class MaskedAttentionPool(nn.Module):
    """Additive attention over steps; padded steps (mask < 0.5) get no weight."""

    def __init__(self, dim: int, attn_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, attn_dim)
        self.score = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(torch.tanh(self.proj(h))).squeeze(-1)
        scores = scores.masked_fill(mask < 0.5, -1e9)
        weights = torch.softmax(scores, dim=1)
        return torch.sum(weights.unsqueeze(-1) * h, dim=1)


@dataclass(frozen=True)
class TaskModelConfig:
    """Shape of `TaskDurationNet`."""

    n_static: int
    """number of static features (type/priority one-hots, estimate, assignee speed, effort prior, ...)"""
    n_step: int = STEP_FEATURES
    """per-event feature width"""
    hidden: int = 32
    """LSTM hidden size per direction"""
    dropout: float = 0.2
    """dropout probability, also the Monte-Carlo dropout rate"""


class TaskDurationNet(nn.Module):
    """BiLSTM + attention over the event sequence, concatenated with static features -> log hours."""

    def __init__(self, cfg: TaskModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.lstm = nn.LSTM(cfg.n_step, cfg.hidden, batch_first=True, bidirectional=True)
        self.attn = MaskedAttentionPool(2 * cfg.hidden, cfg.hidden)
        self.static = nn.Sequential(nn.Linear(cfg.n_static, cfg.hidden), nn.ReLU())
        self.drop = MCDropout(cfg.dropout)
        self.head = nn.Sequential(nn.Linear(3 * cfg.hidden, cfg.hidden), nn.ReLU())
        self.drop_head = MCDropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden, 1)

    def forward(self, events: torch.Tensor, event_mask: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(events)
        context = self.attn(self.drop(h), event_mask)
        z = self.head(torch.cat([context, self.static(static)], dim=1))
        out: torch.Tensor = self.out(self.drop_head(z))
        return out.squeeze(-1)


@dataclass(frozen=True)
class MilestoneModelConfig:
    """Shape of `MilestoneNet`."""

    n_task: int
    """features per remaining task (e.g. predicted p50/p90 log hours, status, assignee load)"""
    hidden: int = 32
    """width of the task encoder"""
    dropout: float = 0.2
    """dropout probability, also the Monte-Carlo dropout rate"""


class MilestoneNet(nn.Module):
    """Attention pooling over a milestone's remaining tasks (plus their count) -> log1p(remaining days)."""

    def __init__(self, cfg: MilestoneModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encode = nn.Sequential(nn.Linear(cfg.n_task, cfg.hidden), nn.ReLU())
        self.attn = MaskedAttentionPool(cfg.hidden, cfg.hidden)
        self.drop = MCDropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden + 1, 1)

    def forward(self, tasks: torch.Tensor, task_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.attn(self.drop(self.encode(tasks)), task_mask)
        count = torch.log1p(torch.sum((task_mask > 0.5).to(tasks.dtype), dim=1, keepdim=True))
        out: torch.Tensor = self.out(torch.cat([self.drop(pooled), count], dim=1))
        return out.squeeze(-1)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings for `train`."""

    epochs: int = 30
    """passes over the training arrays"""
    batch_size: int = 64
    """minibatch size"""
    lr: float = 3e-3
    """Adam learning rate"""
    weight_decay: float = 1e-4
    """Adam weight decay"""
    patience: int = 5
    """epochs without validation improvement before stopping (needs validation arrays)"""
    seed: int = 0
    """seed for initialisation and shuffling"""


def train(
    model: nn.Module,
    inputs: Sequence[F32],
    target: FloatArray,
    cfg: TrainConfig = TrainConfig(),
    val: tuple[Sequence[F32], FloatArray] | None = None,
) -> list[float]:
    """Fit `model(*inputs) -> target` with Huber loss; keep the best validation weights.

    `inputs` are the model's positional inputs as arrays with the sample axis first; the caller does
    the time-ordered split. Returns the per-epoch loss (validation if given, else training).
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    xs = [torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in inputs]
    y = torch.from_numpy(np.asarray(target, dtype=np.float32))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[float] = []
    best: tuple[float, dict[str, Any]] | None = None
    for _ in range(cfg.epochs):
        model.train()
        losses = [_step(model, opt, [x[idx] for x in xs], y[idx])
                  for idx in torch.split(torch.randperm(len(y), generator=gen), cfg.batch_size)]
        loss = _val_loss(model, val) if val is not None else float(np.mean(losses))
        history.append(loss)
        if best is None or loss < best[0]:
            best = (loss, {k: v.clone() for k, v in model.state_dict().items()})
        elif val is not None and len(history) - 1 - int(np.argmin(history)) >= cfg.patience:
            break
    if best is not None and val is not None:
        model.load_state_dict(best[1])
    model.eval()
    return history


def _step(model: nn.Module, opt: torch.optim.Optimizer, xs: list[torch.Tensor], y: torch.Tensor) -> float:
    opt.zero_grad()
    loss = F.huber_loss(model(*xs), y)
    loss.backward()  # type: ignore[no-untyped-call]
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


def _val_loss(model: nn.Module, val: tuple[Sequence[F32], FloatArray]) -> float:
    pred = predict(model, val[0])
    return float(F.huber_loss(torch.from_numpy(pred), torch.from_numpy(val[1].astype(np.float32))))


def predict(model: nn.Module, inputs: Sequence[F32]) -> F32:
    """Deterministic prediction (dropout off)."""
    model.eval()
    set_mc_dropout(model, False)
    with torch.no_grad():
        out = model(*[torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in inputs])
    return np.asarray(out.numpy(), dtype=np.float32)


def predict_distribution(model: nn.Module, inputs: Sequence[F32], n: int = 50, seed: int = 0) -> Quantiles:
    """p10/p50/p90 from n Monte-Carlo dropout passes, batched as one forward pass."""
    torch.manual_seed(seed)
    model.eval()
    set_mc_dropout(model, True)
    try:
        with torch.no_grad():
            out = model(*[torch.from_numpy(a) for a in repeat_for_mc(inputs, n)])
    finally:
        set_mc_dropout(model, False)
    return quantiles_from_passes(out.numpy(), n)


def _axes(model: nn.Module) -> tuple[tuple[str, ...], str, dict[str, dict[int, str]]]:
    if isinstance(model, TaskDurationNet):
        axes = {"events": {0: "batch", 1: "seq"}, "event_mask": {0: "batch", 1: "seq"},
                "static": {0: "batch"}, TASK_OUTPUT: {0: "batch"}}
        return TASK_INPUTS, TASK_OUTPUT, axes
    if isinstance(model, MilestoneNet):
        axes = {"tasks": {0: "batch", 1: "seq"}, "task_mask": {0: "batch", 1: "seq"},
                MILESTONE_OUTPUT: {0: "batch"}}
        return MILESTONE_INPUTS, MILESTONE_OUTPUT, axes
    raise TypeError(f"no ONNX signature for {type(model).__name__}")


def example_inputs(model: nn.Module, batch: int = 2, seq: int = 5) -> tuple[torch.Tensor, ...]:
    """Inputs of the right shapes (mask all ones) for export and tests."""
    if isinstance(model, TaskDurationNet):
        c = model.cfg
        return (torch.randn(batch, seq, c.n_step), torch.ones(batch, seq), torch.randn(batch, c.n_static))
    if isinstance(model, MilestoneNet):
        return (torch.randn(batch, seq, model.cfg.n_task), torch.ones(batch, seq))
    raise TypeError(f"no ONNX signature for {type(model).__name__}")


def export_deterministic(
    model: nn.Module, path: Path, check_sizes: Sequence[tuple[int, int]] = ((1, 3), (7, 11))
) -> ExportReport:
    """Export with dropout off; verified against torch at each (batch, seq) in `check_sizes`."""
    set_mc_dropout(model, False)
    names, output, axes = _axes(model)
    return export_torch(model, example_inputs(model), path, names, [output], axes, check_sizes)


def export_mc(model: nn.Module, path: Path, dynamo: bool = True) -> Path:
    """Export with dropout ON (Monte-Carlo graph). Checks that the batch and sequence axes are dynamic
    and that two runs of the graph differ (it is stochastic); equality with torch cannot be checked
    for a stochastic graph, so verify `export_deterministic` of the same weights as well."""
    names, output, axes = _axes(model)
    was_training = model.training
    model.eval()
    set_mc_dropout(model, True)
    try:
        if dynamo:  # see STACK-NOTES: the dynamo exporter caches LSTM dispatch across exports
            cache = getattr(torch.ops.aten.lstm.input, "_dispatch_cache", None)
            if cache is not None:
                cache.clear()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.onnx.export(model, example_inputs(model), str(path), input_names=list(names),
                          output_names=[output], dynamic_axes=axes, dynamo=dynamo)
    finally:
        set_mc_dropout(model, False)
        model.train(was_training)
    check_dynamic_dims(path, axes)
    _check_stochastic(path, model)
    return path


def _check_stochastic(path: Path, model: nn.Module) -> None:
    import onnxruntime as ort

    feeds = {n: t.numpy() for n, t in zip(_axes(model)[0], example_inputs(model, 8, 4), strict=True)}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    first, second = session.run(None, feeds), session.run(None, feeds)
    if np.allclose(first[0], second[0]):
        raise ExportVerificationError(f"{path.name}: MC-dropout graph gave identical outputs twice")

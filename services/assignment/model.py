"""The rankers: a person-tower / task-tower / interaction-head network (PyTorch, listwise softmax loss),
LambdaMART (LightGBM lambdarank), their ensemble (weight chosen on the validation period), and the
baselines they must beat. Training side only: serving runs the exported ONNX files without torch."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from mesh.metrics import RankingQuality, ranking_quality, split_scores
from services.assignment.dataset import RankingSet
from services.assignment.features import PAIR_SLICE, PERSON_SLICE, TASK_SLICE, Matrix, column

Scores = npt.NDArray[np.float64]
Scorer = Callable[[Matrix], Scores]


def evaluate(scorer: Scorer, data: RankingSet) -> RankingQuality:
    """NDCG@5, NDCG@10 and MRR of ``scorer`` on every list, the assignee as the relevant item."""
    lists = split_scores(scorer(data.x), data.sizes)
    return ranking_quality(zip(lists, data.relevant.tolist(), strict=True))


# ----------------------------------------------------------------------------- baselines
def baselines(seed: int = 0) -> dict[str, Scorer]:
    rng = np.random.default_rng(seed)
    return {
        "baseline_random": lambda x: rng.random(len(x)),
        "baseline_least_loaded": lambda x: -x[:, column("p_open_hours")].astype(np.float64),
        "baseline_skill_match": lambda x: (x[:, column("x_skill_coverage")]
                                           + 0.1 * x[:, column("x_skill_level_mean")]).astype(np.float64),
        "baseline_most_frequent": lambda x: x[:, column("x_project_recent")].astype(np.float64),
    }


# ----------------------------------------------------------------------------- the network
class RankerNet(nn.Module):
    """score(person, task) = head([person_tower(p), task_tower(t), p * t, pair features])."""

    def __init__(self, mean: Matrix, std: Matrix, hidden: int = 48, embed: int = 16) -> None:
        super().__init__()
        n_person = PERSON_SLICE.stop - PERSON_SLICE.start
        n_task = TASK_SLICE.stop - TASK_SLICE.start
        n_pair = PAIR_SLICE.stop - PAIR_SLICE.start
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
        self.register_buffer("std", torch.from_numpy(std.astype(np.float32)))
        self.person = nn.Sequential(nn.Linear(n_person, hidden), nn.ReLU(), nn.Linear(hidden, embed))
        self.task = nn.Sequential(nn.Linear(n_task, hidden), nn.ReLU(), nn.Linear(hidden, embed))
        self.head = nn.Sequential(nn.Linear(3 * embed + n_pair, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        p = self.person(z[:, PERSON_SLICE.start:PERSON_SLICE.stop])
        t = self.task(z[:, TASK_SLICE.start:TASK_SLICE.stop])
        out: torch.Tensor = self.head(torch.cat([p, t, p * t, z[:, PAIR_SLICE.start:PAIR_SLICE.stop]], dim=1))
        return out


@dataclass(frozen=True)
class NetOptions:
    """How the network is trained."""

    epochs: int = 30
    """Most passes over the training lists (the best epoch on validation is kept)."""
    batch_lists: int = 64
    """Lists (tasks) per optimiser step."""
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 6
    """Epochs without a better validation NDCG@5 before stopping."""
    seed: int = 0
    threads: int = 2


def _padded(data: RankingSet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = int(data.sizes.max())
    x = np.zeros((len(data), width, data.x.shape[1]), np.float32)
    mask = np.zeros((len(data), width), bool)
    for g, (start, size) in enumerate(zip(data.offsets[:-1], data.sizes, strict=True)):
        x[g, :size] = data.x[start:start + size]
        mask[g, :size] = True
    return torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(data.relevant)


def net_scorer(net: RankerNet) -> Scorer:
    def score(x: Matrix) -> Scores:
        net.eval()
        with torch.no_grad():
            out: Scores = net(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy().reshape(-1)
            return out.astype(np.float64)
    return score


def train_net(train: RankingSet, val: RankingSet, options: NetOptions | None = None) -> RankerNet:
    """Listwise softmax cross-entropy over each task's candidates; keeps the epoch best on validation."""
    options = options or NetOptions()
    torch.manual_seed(options.seed)
    torch.set_num_threads(options.threads)
    net = RankerNet(train.x.mean(axis=0), train.x.std(axis=0) + 1e-3)
    opt = torch.optim.Adam(net.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    x, mask, target = _padded(train)
    rng = np.random.default_rng(options.seed)
    best, best_state, stale = -1.0, copy.deepcopy(net.state_dict()), 0
    for _ in range(options.epochs):
        net.train()
        for batch in np.array_split(rng.permutation(len(train)), max(1, len(train) // options.batch_lists)):
            xb, mb = x[batch], mask[batch]
            scores = net(xb.reshape(-1, xb.shape[-1])).reshape(mb.shape).masked_fill(~mb, -1e9)
            loss = nn.functional.cross_entropy(scores, target[batch])
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        quality = evaluate(net_scorer(net), val).ndcg_at_5
        if quality > best:
            best, best_state, stale = quality, copy.deepcopy(net.state_dict()), 0
        else:
            stale += 1
            if stale >= options.patience:
                break
    net.load_state_dict(best_state)
    return net.eval()


# ----------------------------------------------------------------------------- LambdaMART
@dataclass(frozen=True)
class LambdaMartOptions:
    n_estimators: int = 400
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 20
    early_stopping_rounds: int = 40
    seed: int = 0
    threads: int = 2


def train_lambdamart(train: RankingSet, val: RankingSet, options: LambdaMartOptions | None = None) -> Any:
    """LightGBM ``lambdarank``, early-stopped on validation NDCG@5; returns the fitted ``Booster``."""
    options = options or LambdaMartOptions()
    params = {
        "objective": "lambdarank", "learning_rate": options.learning_rate, "num_leaves": options.num_leaves,
        "min_data_in_leaf": options.min_child_samples, "bagging_fraction": 0.8, "bagging_freq": 1,
        "feature_fraction": 0.8, "eval_at": [5], "metric": "ndcg", "seed": options.seed,
        "num_threads": options.threads, "verbose": -1,
    }
    train_set = lgb.Dataset(train.x, train.labels(), group=train.sizes)
    val_set = lgb.Dataset(val.x, val.labels(), group=val.sizes, reference=train_set)
    return lgb.train(params, train_set, options.n_estimators, valid_sets=[val_set],
                     callbacks=[lgb.early_stopping(options.early_stopping_rounds, verbose=False)])


def lambdamart_scorer(booster: Any) -> Scorer:
    return lambda x: np.asarray(booster.predict(x, num_iteration=booster.best_iteration or None), np.float64)


# ----------------------------------------------------------------------------- ensemble
@dataclass(frozen=True)
class Ensemble:
    """score = w * (nn - mu_nn) / sd_nn + (1 - w) * (lgb - mu_lgb) / sd_lgb; w chosen on validation."""

    weight: float
    nn_mean: float
    nn_std: float
    lgb_mean: float
    lgb_std: float
    val_ndcg_at_5: float

    def affine(self) -> tuple[float, float, float]:
        """(a_nn, a_lgb, bias) of the same score as one affine map of the two raw outputs."""
        a_nn, a_lgb = self.weight / self.nn_std, (1 - self.weight) / self.lgb_std
        return a_nn, a_lgb, -(a_nn * self.nn_mean + a_lgb * self.lgb_mean)

    def combine(self, nn_scores: Scores, lgb_scores: Scores) -> Scores:
        a_nn, a_lgb, bias = self.affine()
        return a_nn * nn_scores + a_lgb * lgb_scores + bias


def fit_ensemble(nn_score: Scorer, lgb_score: Scorer, train: RankingSet, val: RankingSet,
                 grid: int = 21) -> Ensemble:
    """Normalise each model by its score spread on the training rows; grid-search the weight on the
    validation lists by NDCG@5 (MRR breaks ties)."""
    tn, tl = nn_score(train.x), lgb_score(train.x)
    vn, vl = nn_score(val.x), lgb_score(val.x)
    best: tuple[float, float, float] | None = None
    for w in np.linspace(0.0, 1.0, grid):
        candidate = Ensemble(float(w), float(tn.mean()), float(tn.std() + 1e-9), float(tl.mean()),
                             float(tl.std() + 1e-9), 0.0)
        combined = candidate.combine(vn, vl)
        q = ranking_quality(zip(split_scores(combined, val.sizes), val.relevant.tolist(), strict=True))
        if best is None or (q.ndcg_at_5, q.mrr) > best[1:]:
            best = (float(w), q.ndcg_at_5, q.mrr)
    assert best is not None
    return Ensemble(best[0], float(tn.mean()), float(tn.std() + 1e-9), float(tl.mean()), float(tl.std() + 1e-9),
                    best[1])

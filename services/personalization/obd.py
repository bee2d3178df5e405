"""Off-policy evaluation on the Open Bandit Dataset sample (``../shared/data/bandits``, ZOZOTOWN "all").

Protocol of the Open Bandit Pipeline's example (see the data folder's README): the value of the Bernoulli
Thompson sampling policy (``bts``) is estimated from the uniformly random policy's logs (``random``) and
compared with its on-policy value, the mean click of the ``bts`` logs; the relative error is averaged over
bootstrap resamples of the ``random`` logs.

What this module supplies besides :mod:`mesh.ope`:
- ``bts``'s action distribution. BTS ignores the context, so ``pi_bts(a | k)`` is a single distribution
  per slot, estimated from its own logged propensities (the OBP computes it from ZOZOTOWN's prior instead):
  for item ``a`` at slot ``k``, the harmonic mean of the logged propensities of the rounds that showed it
  estimates the mean over rounds of pi_t(a | k) (E[1/p | shown] = 1/mean p); normalised per slot.
- the reward model for DM and DR: L2 logistic regression of the click on the user's features, the item and
  the slot (one-hot), fitted on all rows for DM and by cross-fitting for DR (each fold predicted by the
  model of the other folds); its
  regularisation picked by cross-validated log loss on the ``random`` logs only.
- our LinUCB trained on the first (time-ordered) half of the ``random`` logs, evaluated on the second half.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mesh.ope import ESTIMATORS, BanditLog, Estimator, estimate, relative_error
from services.personalization.linucb import ArmStats, LinUCBConfig, slot_distribution

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
USER_COLUMNS = ("user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3")
N_POSITIONS = 3
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
PUBLISHED = {"dm": (0.156876, 0.109898), "ipw": (0.311082, 0.311170), "snips": (0.311795, 0.334736),
             "dr": (0.292464, 0.315485)}
"""OBP's published relative errors (mean, std over 30 bootstraps; logistic regression; bts from random)."""


@dataclass(frozen=True)
class ObdLog:
    """One policy's logs, encoded: the bandit log plus the users' one-hot features."""

    log: BanditLog
    users: Array
    """(n, n_user_features) one-hot of the user's categorical features."""
    timestamps: npt.NDArray[np.int64]
    n_actions: int
    affinity: Array
    """(n, n_actions) the logged user-item affinity of the round's user to every item."""

    def take(self, rows: IntArray) -> ObdLog:
        return ObdLog(self.log.take(rows), self.users[rows], self.timestamps[rows], self.n_actions,
                      self.affinity[rows])


def load(data_dir: Path, policy: str,
         vocabulary: dict[str, list[str]] | None = None) -> tuple[ObdLog, dict[str, list[str]]]:
    """Read ``<data_dir>/<policy>/all/all.csv``; the user-feature vocabulary is shared across policies."""
    import pandas as pd

    path = data_dir / policy / "all" / "all.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: pass the Open Bandit Dataset folder (../shared/data/bandits)")
    df = pd.read_csv(path, index_col=0)
    vocab = vocabulary or {c: sorted(df[c].astype(str).unique()) for c in USER_COLUMNS}
    blocks = [(df[c].astype(str).to_numpy()[:, None] == np.array(vocab[c])[None, :]).astype(np.float64)
              for c in USER_COLUMNS]
    n_items = int(pd.read_csv(data_dir / policy / "all" / "item_context.csv").shape[0])
    log = BanditLog(df["item_id"].to_numpy(np.int64), df["position"].to_numpy(np.int64) - 1,
                    df["click"].to_numpy(np.float64), df["propensity_score"].to_numpy(np.float64))
    ts = pd.to_datetime(df["timestamp"]).astype("int64").to_numpy()
    affinity = df[[f"user-item_affinity_{a}" for a in range(n_items)]].to_numpy(np.float64)
    return ObdLog(log, np.hstack(blocks), ts, n_items, affinity), vocab


def bts_action_dist(bts: ObdLog) -> Array:
    """pi_bts(a | k), shape (n_actions, n_positions), from the bts logs' propensities (see the module doc)."""
    log = bts.log
    dist = np.zeros((bts.n_actions, N_POSITIONS))
    for k in range(N_POSITIONS):
        at_k = log.positions == k
        inv = np.bincount(log.actions[at_k], weights=1.0 / log.pscore[at_k], minlength=bts.n_actions)
        shown = np.bincount(log.actions[at_k], minlength=bts.n_actions).astype(np.float64)
        dist[:, k] = np.divide(shown, inv, out=np.zeros_like(shown), where=inv > 0)
        dist[:, k] /= dist[:, k].sum()
    return dist


class RewardModel:
    """Logistic regression of the click on [user one-hot, item one-hot, slot one-hot(, the user's affinity to
    the item)]; q for every (a, k)."""

    def __init__(self, n_actions: int, c: float, use_affinity: bool = False) -> None:
        self.n_actions = n_actions
        self.c = c
        self.use_affinity = use_affinity
        self._w_aff = 0.0
        self._w_user: Array = np.zeros(0)
        self._w_item: Array = np.zeros(n_actions)
        self._w_pos: Array = np.zeros(N_POSITIONS)
        self._bias = 0.0

    def _design(self, data: ObdLog) -> Any:
        from scipy import sparse  # type: ignore[import-untyped]

        n = len(data.log)
        item = sparse.csr_matrix((np.ones(n), (np.arange(n), data.log.actions)), shape=(n, self.n_actions))
        pos = sparse.csr_matrix((np.ones(n), (np.arange(n), data.log.positions)), shape=(n, N_POSITIONS))
        blocks = [sparse.csr_matrix(data.users), item, pos]
        if self.use_affinity:
            blocks.append(sparse.csr_matrix(data.affinity[np.arange(n), data.log.actions][:, None]))
        return sparse.hstack(blocks).tocsr()

    def fit(self, data: ObdLog) -> RewardModel:
        from sklearn.linear_model import LogisticRegression

        if data.log.rewards.min() == data.log.rewards.max():  # one class: the constant is the MLE
            p = float(np.clip(data.log.rewards.mean(), 1e-4, 1 - 1e-4))
            self._bias, self._w_user = float(np.log(p / (1 - p))), np.zeros(data.users.shape[1])
            return self
        model = LogisticRegression(C=self.c, max_iter=2000).fit(self._design(data), data.log.rewards)
        w = model.coef_[0]
        u = data.users.shape[1]
        self._w_user, self._w_item = w[:u], w[u:u + self.n_actions]
        self._w_pos = w[u + self.n_actions:u + self.n_actions + N_POSITIONS]
        self._w_aff = float(w[-1]) if self.use_affinity else 0.0
        self._bias = float(model.intercept_[0])
        return self

    def predict(self, data: ObdLog) -> Array:
        """q[i, a, k] = P(click | user_i, item a, slot k)."""
        base = data.users @ self._w_user + self._bias
        logits = (base[:, None, None] + self._w_item[None, :, None] + self._w_pos[None, None, :]
                  + self._w_aff * data.affinity[:, :, None])
        out: Array = 1.0 / (1.0 + np.exp(-logits))
        return out


def _folds(n: int, n_folds: int, rng: np.random.Generator) -> list[IntArray]:
    return [np.sort(f) for f in np.array_split(rng.permutation(n), n_folds)]


@dataclass(frozen=True)
class ModelSpec:
    c: float
    use_affinity: bool


def cross_fit(data: ObdLog, spec: ModelSpec, n_folds: int, rng: np.random.Generator) -> Array:
    """q of every row from a model that did not see that row."""
    q = np.zeros((len(data.log), data.n_actions, N_POSITIONS))
    folds = _folds(len(data.log), n_folds, rng)
    for i, held in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != i])
        model = RewardModel(data.n_actions, spec.c, spec.use_affinity).fit(data.take(train))
        q[held] = model.predict(data.take(held))
    return q


def choose_model(data: ObdLog, rng: np.random.Generator, n_folds: int = 3) -> ModelSpec:
    """The regularisation and feature set with the best cross-validated log loss on ``data`` (the behaviour
    logs only: the evaluation policy's logs are never used to choose)."""
    losses = {}
    rows = np.arange(len(data.log))
    for spec in (ModelSpec(c, aff) for c in C_GRID for aff in (False, True)):
        q = cross_fit(data, spec, n_folds, rng)
        p = np.clip(q[rows, data.log.actions, data.log.positions], 1e-6, 1 - 1e-6)
        r = data.log.rewards
        losses[spec] = float(-(r * np.log(p) + (1 - r) * np.log(1 - p)).mean())
    return min(losses, key=lambda s: losses[s])


def _estimates(data: ObdLog, policy_dist: Array, spec: ModelSpec, rng: np.random.Generator
               ) -> dict[Estimator, float]:
    """Every estimator's value of a policy given as (n, n_actions, n_positions) or (n_actions, n_positions).

    DM's reward model is fitted on all the rows (an in-sample regression, as the OBP's DM); DR's is
    cross-fitted (each row's correction uses a model that did not see that row's reward)."""
    n = len(data.log)
    dist = np.asarray(policy_dist if policy_dist.ndim == 3 else np.broadcast_to(policy_dist, (n, *policy_dist.shape)))
    q_dm = RewardModel(data.n_actions, spec.c, spec.use_affinity).fit(data).predict(data)
    q_dr = cross_fit(data, spec, 2, rng)
    return {name: estimate(name, data.log, dist, q_dm if name == "dm" else q_dr) for name in ESTIMATORS}


@dataclass(frozen=True)
class OpeResult:
    truth: float
    """On-policy value of bts (mean click of its logs)."""
    random_value: float
    model: ModelSpec
    relative_error: dict[Estimator, tuple[float, float]]
    """estimator -> (mean, std) of the relative error over the bootstrap runs."""
    estimates: dict[Estimator, float]
    """estimator -> mean estimate over the runs."""
    best: Estimator
    linucb: dict[str, float]


def evaluate_bts(data_dir: Path, n_runs: int = 30, seed: int = 12345, progress: bool = False) -> OpeResult:
    """bts's value from the random logs by DM, IPW, SNIPS and DR; relative errors over bootstraps."""
    rng = np.random.default_rng(seed)
    random_log, vocab = load(data_dir, "random")
    bts_log, _ = load(data_dir, "bts", vocab)
    truth = float(bts_log.log.rewards.mean())
    dist = bts_action_dist(bts_log)
    spec = choose_model(random_log, rng)
    errors: dict[Estimator, list[float]] = {name: [] for name in ESTIMATORS}
    values: dict[Estimator, list[float]] = {name: [] for name in ESTIMATORS}
    for run in range(n_runs):
        sample = random_log.take(rng.integers(0, len(random_log.log), len(random_log.log)))
        for name, value in _estimates(sample, dist, spec, rng).items():
            errors[name].append(relative_error(value, truth))
            values[name].append(value)
        if progress:
            print(f"  ope bootstrap {run + 1}/{n_runs}", flush=True)
    summary = {n: (float(np.mean(v)), float(np.std(v))) for n, v in errors.items()}
    best = min(summary, key=lambda n: summary[n][0])
    linucb = evaluate_linucb(random_log, dist, spec, best, rng)
    return OpeResult(truth, float(random_log.log.rewards.mean()), spec, summary,
                     {n: float(np.mean(v)) for n, v in values.items()}, best, linucb)


def linucb_policy(train: ObdLog, config: LinUCBConfig) -> list[ArmStats]:
    """Disjoint LinUCB, one arm per item, context = [1, user one-hot], learnt from ``train``'s rounds."""
    dim = 1 + train.users.shape[1]
    arms = [ArmStats(dim, config.ridge) for _ in range(train.n_actions)]
    contexts = np.hstack([np.ones((len(train.log), 1)), train.users])
    for x, a, r in zip(contexts, train.log.actions, train.log.rewards, strict=True):
        arms[int(a)].update(x, float(r))
    return arms


def linucb_action_dist(arms: list[ArmStats], data: ObdLog, config: LinUCBConfig) -> Array:
    """pi(a | x_i, k) of the epsilon-greedy slate over the arms' UCBs, (n, n_actions, n_positions)."""
    contexts = np.hstack([np.ones((len(data.log), 1)), data.users])
    scores = np.stack([arm.ucb(contexts, config.alpha) for arm in arms], axis=1)
    return np.stack([slot_distribution(s, N_POSITIONS, config.epsilon) for s in scores])


def evaluate_linucb(random_log: ObdLog, bts_dist: Array, spec: ModelSpec, best: Estimator,
                    rng: np.random.Generator, config: LinUCBConfig | None = None) -> dict[str, float]:
    """Train LinUCB on the first half of the random logs (time order); estimate on the second half."""
    config = config or LinUCBConfig(alpha=0.1, ridge=1.0, epsilon=0.1)
    order = np.argsort(random_log.timestamps, kind="stable")
    half = len(order) // 2
    train, test = random_log.take(order[:half]), random_log.take(order[half:])
    arms = linucb_policy(train, config)
    dist = linucb_action_dist(arms, test, config)
    ours = _estimates(test, dist, spec, rng)
    rows = np.arange(len(test.log))
    # how many of the test clicks IPW/DR lean on: clicks on an item the policy itself would show there
    matched = int(((dist[rows, test.log.actions, test.log.positions] > 0.5) & (test.log.rewards > 0)).sum())
    bts = _estimates(test, bts_dist, spec, rng)
    return {"linucb": ours[best], "bts": bts[best],
            "random_on_policy": float(test.log.rewards.mean()), "test_rows": float(len(test.log)),
            "test_clicks": float(test.log.rewards.sum()), "clicks_on_items_linucb_would_show": float(matched),
            **{f"linucb_{n}": v for n, v in ours.items()}}

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
- the reward model for DM and the DR family (DR, SNDR, Switch-DR, DR-os), chosen among a constant, a
  per-slot rate, an empirical-Bayes per-item rate and L2 logistic regressions on user x item x slot
  one-hots by 5-fold cross-validated log loss on the ``random`` logs only (never by the error against
  bts's on-policy value, which is the test); fitted on all rows for DM and cross-fitted for the DR family
  (each fold predicted by the model of the other folds). Switch-DR's and DR-os's hyper-parameters are
  chosen per sample by SLOPE (:func:`mesh.ope.slope`), again from the random logs alone.
- the standard error of the on-policy truth: with ~40 clicks in 10,000 bts rounds it is ~15% of the value,
  so relative errors below ~0.15 cannot be told apart from the truth's own noise.
- our LinUCB trained on the first (time-ordered) half of the ``random`` logs, evaluated on the second half.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mesh.ope import ESTIMATORS, BanditLog, Estimator, estimate, mean_and_se, relative_error
from services.personalization.linucb import ArmStats, LinUCBConfig, slot_distribution

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
USER_COLUMNS = ("user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3")
N_POSITIONS = 3
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
EB_STRENGTHS = (30.0, 100.0, 300.0, 1000.0, 3000.0)
PUBLISHED = {"dm": (0.156876, 0.109898), "ipw": (0.311082, 0.311170), "snips": (0.311795, 0.334736),
             "dr": (0.292464, 0.315485), "sndr": (0.302407, 0.328434), "switch-dr": (0.258410, 0.160598),
             "dr-os": (0.159520, 0.109660)}
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


@dataclass(frozen=True)
class ModelSpec:
    """A reward model: ``constant`` (the mean click), ``position`` (the mean click per slot),
    ``item`` (empirical Bayes: each item's click rate shrunk to the mean by ``strength`` pseudo-impressions,
    times the slot's relative rate), or ``logistic`` (L2 with inverse strength ``c`` on user x item x slot
    one-hots, optionally the logged user-item affinity)."""

    kind: str = "logistic"
    c: float = 1.0
    use_affinity: bool = False
    strength: float = 0.0

    def label(self) -> str:
        if self.kind == "logistic":
            return f"logistic(C={self.c:g}{', affinity' if self.use_affinity else ''})"
        if self.kind == "item":
            return f"item empirical Bayes (strength {self.strength:g})"
        return self.kind


CANDIDATES: tuple[ModelSpec, ...] = (
    ModelSpec("constant"), ModelSpec("position"),
    *(ModelSpec("item", strength=m) for m in EB_STRENGTHS),
    *(ModelSpec("logistic", c=c, use_affinity=aff) for c in C_GRID for aff in (False, True)),
)
"""The reward models compared by cross-validated log loss on the behaviour logs."""


class RewardModel:
    """q(x, a, k) = P(click | user, item a, slot k) by one of the :class:`ModelSpec` kinds."""

    def __init__(self, n_actions: int, spec: ModelSpec) -> None:
        self.n_actions = n_actions
        self.spec = spec
        self._table: Array = np.zeros((n_actions, N_POSITIONS))
        """(n_actions, n_positions) for the kinds that ignore the user."""
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
        if self.spec.use_affinity:
            blocks.append(sparse.csr_matrix(data.affinity[np.arange(n), data.log.actions][:, None]))
        return sparse.hstack(blocks).tocsr()

    def fit(self, data: ObdLog) -> RewardModel:
        log = data.log
        mean = float(np.clip(log.rewards.mean(), 1e-4, 1 - 1e-4))
        shown_k = np.bincount(log.positions, minlength=N_POSITIONS).astype(np.float64)
        clicks_k = np.bincount(log.positions, weights=log.rewards, minlength=N_POSITIONS)
        by_pos = np.clip(np.divide(clicks_k + mean, shown_k + 1.0), 1e-4, 1 - 1e-4)  # one pseudo-impression
        kind = self.spec.kind
        if kind == "constant":
            self._table = np.full((self.n_actions, N_POSITIONS), mean)
        elif kind == "position":
            self._table = np.broadcast_to(by_pos, (self.n_actions, N_POSITIONS)).copy()
        elif kind == "item":
            shown = np.bincount(log.actions, minlength=self.n_actions).astype(np.float64)
            clicks = np.bincount(log.actions, weights=log.rewards, minlength=self.n_actions)
            rate = (clicks + self.spec.strength * mean) / (shown + self.spec.strength)
            self._table = np.clip(rate[:, None] * (by_pos / mean)[None, :], 1e-5, 1 - 1e-5)
        elif kind == "logistic":
            self._fit_logistic(data, mean)
        else:
            raise ValueError(f"unknown reward model kind {kind!r}")
        return self

    def _fit_logistic(self, data: ObdLog, mean: float) -> None:
        from sklearn.linear_model import LogisticRegression

        self._w_user = np.zeros(data.users.shape[1])
        if data.log.rewards.min() == data.log.rewards.max():  # one class: the constant is the MLE
            self._bias = float(np.log(mean / (1 - mean)))
            return
        model = LogisticRegression(C=self.spec.c, max_iter=2000).fit(self._design(data), data.log.rewards)
        w = model.coef_[0]
        u = data.users.shape[1]
        self._w_user, self._w_item = w[:u], w[u:u + self.n_actions]
        self._w_pos = w[u + self.n_actions:u + self.n_actions + N_POSITIONS]
        self._w_aff = float(w[-1]) if self.spec.use_affinity else 0.0
        self._bias = float(model.intercept_[0])

    def predict(self, data: ObdLog) -> Array:
        """q[i, a, k] = P(click | user_i, item a, slot k)."""
        n = len(data.log)
        if self.spec.kind != "logistic":
            return np.broadcast_to(self._table, (n, self.n_actions, N_POSITIONS)).copy()
        base = data.users @ self._w_user + self._bias
        logits = (base[:, None, None] + self._w_item[None, :, None] + self._w_pos[None, None, :]
                  + self._w_aff * data.affinity[:, :, None])
        out: Array = 1.0 / (1.0 + np.exp(-logits))
        return out


def _folds(n: int, n_folds: int, rng: np.random.Generator) -> list[IntArray]:
    return [np.sort(f) for f in np.array_split(rng.permutation(n), n_folds)]


def cross_fit(data: ObdLog, spec: ModelSpec, n_folds: int, rng: np.random.Generator) -> Array:
    """q of every row from a model that did not see that row."""
    q = np.zeros((len(data.log), data.n_actions, N_POSITIONS))
    folds = _folds(len(data.log), n_folds, rng)
    for i, held in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != i])
        model = RewardModel(data.n_actions, spec).fit(data.take(train))
        q[held] = model.predict(data.take(held))
    return q


@dataclass(frozen=True)
class ModelChoice:
    spec: ModelSpec
    log_loss: dict[str, float]
    """label -> cross-validated log loss on the behaviour logs (the criterion)."""
    brier: dict[str, float]


def choose_model(data: ObdLog, rng: np.random.Generator, n_folds: int = 5,
                 candidates: tuple[ModelSpec, ...] = CANDIDATES) -> ModelChoice:
    """The reward model with the best cross-validated log loss on ``data`` (the behaviour logs only: the
    evaluation policy's logs are never used to choose). The same folds for every candidate."""
    losses: dict[ModelSpec, float] = {}
    brier: dict[ModelSpec, float] = {}
    rows = np.arange(len(data.log))
    seed = int(rng.integers(2**31))
    r = data.log.rewards
    for spec in candidates:
        q = cross_fit(data, spec, n_folds, np.random.default_rng(seed))
        p = np.clip(q[rows, data.log.actions, data.log.positions], 1e-6, 1 - 1e-6)
        losses[spec] = float(-(r * np.log(p) + (1 - r) * np.log(1 - p)).mean())
        brier[spec] = float(((p - r) ** 2).mean())
    best = min(losses, key=lambda s: losses[s])
    return ModelChoice(best, {s.label(): v for s, v in losses.items()}, {s.label(): v for s, v in brier.items()})


def _estimates(data: ObdLog, policy_dist: Array, spec: ModelSpec, rng: np.random.Generator
               ) -> dict[Estimator, float]:
    """Every estimator's value of a policy given as (n, n_actions, n_positions) or (n_actions, n_positions).

    DM's reward model is fitted on all the rows (an in-sample regression, as the OBP's DM); the DR family's
    is cross-fitted (each row's correction uses a model that did not see that row's reward)."""
    n = len(data.log)
    dist = np.asarray(policy_dist if policy_dist.ndim == 3 else np.broadcast_to(policy_dist, (n, *policy_dist.shape)))
    q_dm = RewardModel(data.n_actions, spec).fit(data).predict(data)
    q_dr = cross_fit(data, spec, 2, rng)
    return {name: estimate(name, data.log, dist, q_dm if name == "dm" else q_dr) for name in ESTIMATORS}


@dataclass(frozen=True)
class OpeResult:
    truth: float
    """On-policy value of bts (mean click of its logs)."""
    truth_se: float
    """Standard error of ``truth`` (binomial: the test's own noise)."""
    random_value: float
    model: ModelSpec
    """The reward model chosen by cross-validated log loss on the random logs."""
    choice: ModelChoice
    relative_error: dict[Estimator, tuple[float, float]]
    """estimator -> (mean, std) of the relative error over the bootstrap runs (chosen reward model)."""
    estimates: dict[Estimator, float]
    """estimator -> mean estimate over the runs."""
    best: Estimator
    linucb: dict[str, float]
    by_model: dict[str, dict[Estimator, tuple[float, float]]]
    """reward model label -> the relative errors with that model (the chosen one and the best logistic one,
    for comparison; IPW and SNIPS do not depend on it)."""


def _bootstrap(random_log: ObdLog, dist: Array, spec: ModelSpec, truth: float, n_runs: int, seed: int,
               progress: bool) -> tuple[dict[Estimator, list[float]], dict[Estimator, list[float]]]:
    rng = np.random.default_rng(seed)  # the same resamples for every reward model
    errors: dict[Estimator, list[float]] = {name: [] for name in ESTIMATORS}
    values: dict[Estimator, list[float]] = {name: [] for name in ESTIMATORS}
    for run in range(n_runs):
        sample = random_log.take(rng.integers(0, len(random_log.log), len(random_log.log)))
        for name, value in _estimates(sample, dist, spec, rng).items():
            errors[name].append(relative_error(value, truth))
            values[name].append(value)
        if progress and (run + 1) % 5 == 0:
            print(f"  ope bootstrap {run + 1}/{n_runs} ({spec.label()})", flush=True)
    return errors, values


def evaluate_bts(data_dir: Path, n_runs: int = 30, seed: int = 12345, progress: bool = False) -> OpeResult:
    """bts's value from the random logs by every estimator of :mod:`mesh.ope`; relative errors over bootstrap
    resamples of the random logs. The reward model is chosen on the random logs only (cross-validated log
    loss); the bts logs give the truth and bts's action distribution, nothing else."""
    rng = np.random.default_rng(seed)
    random_log, vocab = load(data_dir, "random")
    bts_log, _ = load(data_dir, "bts", vocab)
    truth, truth_se = mean_and_se(bts_log.log.rewards)
    dist = bts_action_dist(bts_log)
    choice = choose_model(random_log, rng)
    if progress:
        print(f"  reward model by CV log loss: {choice.spec.label()}", flush=True)
    logistic = min((s for s in CANDIDATES if s.kind == "logistic"), key=lambda s: choice.log_loss[s.label()])
    by_model: dict[str, dict[Estimator, tuple[float, float]]] = {}
    summary: dict[Estimator, tuple[float, float]] = {}
    values: dict[Estimator, list[float]] = {}
    for spec in dict.fromkeys((choice.spec, logistic)):
        errs, vals = _bootstrap(random_log, dist, spec, truth, n_runs, seed + 1, progress)
        by_model[spec.label()] = {n: (float(np.mean(v)), float(np.std(v))) for n, v in errs.items()}
        if spec == choice.spec:
            summary, values = by_model[spec.label()], vals
    best = min(summary, key=lambda n: summary[n][0])
    linucb = evaluate_linucb(random_log, dist, choice.spec, best, rng)
    return OpeResult(truth, truth_se, float(random_log.log.rewards.mean()), choice.spec, choice, summary,
                     {n: float(np.mean(v)) for n, v in values.items()}, best, linucb, by_model)


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

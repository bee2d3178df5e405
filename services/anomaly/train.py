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
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # serving imports this module (through the detector) and never fits: sklearn stays unloaded
    from sklearn.ensemble import IsolationForest

FloatArray = npt.NDArray[np.float64]


def fit_iforest(x: FloatArray, seed: int = 0, trees: int = 100) -> IsolationForest:
    from sklearn.ensemble import IsolationForest

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


# ------------------------------------------------------------------------------------------ command line
def _split(hours: list[Any], train_share: float) -> tuple[Any, Any]:
    """(train_end, val_end): the first `train_share` of the days trains, the rest validates (time order)."""
    from datetime import timedelta

    t0 = min(hours).replace(hour=0)
    t1 = max(hours)
    days = max(2, int((t1 - t0).total_seconds() // 86400) + 1)
    return t0 + timedelta(days=max(1, round(days * train_share))), t1 + timedelta(hours=1)


def main(argv: list[str] | None = None) -> int:
    """`python -m services.anomaly.train [--source simulator|eventlog] ...`: train, register, promote if better.

    With the simulator the weight and threshold are chosen by incident F1 against the planted anomalies of
    the validation days, and promotion compares that F1 of the challenger and the champion on the same days.
    The event log has no labels: the weight stays 0.5 and the threshold is the validation quantile giving
    `--alert-rate` alerted user-hours; the challenger is registered, and promoted only where there is no
    champion yet (nothing to compare it on).
    """
    import argparse
    import logging

    from mesh.config import MeshSettings
    from mesh.models import (
        Challenger,
        ModelRegistry,
        Objective,
        VersionedModel,
        add_training_arguments,
        logged_training_events,
        output_dir,
        register_and_promote,
        source_of,
        time_range,
    )
    from services.anomaly.ensemble import TenantNorm
    from services.anomaly.model import MODEL_NAME, SCHEMA, ServedEnsemble, export_ensemble
    from services.anomaly.pipeline import SEQ_LEN, Dataset, evaluate, train_and_choose

    parser = argparse.ArgumentParser(prog="python -m services.anomaly.train", description=main.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(parser, tenants=2, users=40, weeks=3, seed=7)
    parser.add_argument("--anomaly-fraction", type=float, default=0.3,
                        help="simulator: share of people with a planted anomaly (default 0.3)")
    parser.add_argument("--train-share", type=float, default=2 / 3, help="share of the days that trains")
    parser.add_argument("--epochs", type=int, default=20, help="LSTM autoencoder epochs")
    parser.add_argument("--trees", type=int, default=100, help="Isolation Forest trees")
    parser.add_argument("--alert-rate", type=float, default=0.002,
                        help="eventlog: share of validation user-hours alerted (sets the threshold)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = MeshSettings()
    planted: list[Any] = []
    if source_of(args) == "simulator":
        from simulator import SimConfig, Simulation

        sim = Simulation(SimConfig(tenants=args.tenants, users_per_tenant=args.users, weeks=args.weeks,
                                   seed=args.seed, anomaly_user_fraction=args.anomaly_fraction))
        events = list(sim.events())
        planted = list(sim.truth.anomalies)
    else:
        events = logged_training_events(args, settings, {"user_activity"})
    ds = Dataset.from_events(events)
    if len(ds.rows) < 50:
        raise SystemExit(f"only {len(ds.rows)} user-hours of activity: too few to train on")
    train_end, val_end = _split([r.hour for r in ds.rows], args.train_share)
    val = ds.mask(train_end, val_end)
    planted_val = [a for a in planted if train_end <= a.start < val_end]
    print(f"{len(events)} events, {len(ds.rows)} user-hours; training before {train_end:%Y-%m-%d}, "
          f"validating to {val_end:%Y-%m-%d} ({len(planted_val)} planted anomalies)", flush=True)
    lstm = LstmConfig(epochs=args.epochs)
    if planted_val:
        trained = train_and_choose(ds, train_end, val_end, planted_val, lstm)
        ens, choices = trained.ensemble, trained.choices
    else:
        from services.anomaly.ensemble import OnnxEnsemble

        train = ds.mask(None, train_end)
        x = ds.vectors
        ens = OnnxEnsemble(iforest_onnx(fit_iforest(x[train], trees=args.trees), x.shape[1]),
                           lstm_onnx(fit_lstm(ds.seqs[train], lstm), x.shape[1]),
                           TenantNorm({}, (0.0, 1.0)), TenantNorm({}, (0.0, 1.0)), 0.5, 0.0)
        iso, err = ens.raw(x, ds.seqs)
        t_train = [t for t, m in zip(ds.tenants, train, strict=True) if m]
        ens.iforest_norm, ens.lstm_norm = TenantNorm.fit(t_train, iso[train]), TenantNorm.fit(t_train, err[train])
        score = ens.score(ds.tenants, x, ds.seqs)
        ens.threshold = float(np.quantile(score[val], 1 - args.alert_rate)) if val.any() else float(score.max())
        choices = {"ensemble": {"weight_iforest": 0.5, "threshold": ens.threshold, "alert_rate": args.alert_rate}}
    print(f"chosen: {choices['ensemble']}", flush=True)
    out = output_dir(args, "anomaly-")
    path = export_ensemble(ens, out / "anomaly.onnx", SEQ_LEN)
    print(f"exported {path}", flush=True)
    if args.no_register:
        return 0

    def validation_f1(model: VersionedModel) -> float:
        if not planted_val:
            return 0.0  # no labels: every version ties, the champion stays (the first one is promoted)
        served = ServedEnsemble.of(model)
        z_if, z_ae = served.components(ds.tenants, ds.vectors, ds.seqs)
        margin = served.weight_iforest * z_if + (1 - served.weight_iforest) * z_ae - served.threshold
        return float(evaluate(ds, margin, val, 0.0, planted_val)["per_kind"]["overall"]["f1"])

    metrics = {f"{name}_validation_f1": float(c.get("validation_f1", float("nan"))) for name, c in choices.items()}
    challenger = Challenger(MODEL_NAME, path, SCHEMA, metrics,
                            {"source": source_of(args), "weight_iforest": ens.weight_iforest,
                             "threshold": ens.threshold, "epochs": args.epochs},
                            time_range([r.hour for r in ds.rows]))
    decision = register_and_promote(ModelRegistry(settings.models), challenger,
                                    Objective("validation_f1", True, validation_f1), settings.models)
    print(decision.summary(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

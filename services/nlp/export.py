"""`python -m services.nlp.export`: export all-MiniLM-L6-v2 to ONNX, verify it, calibrate search, register.

1. The sentence-transformers model (offline package) is wrapped so that the graph returns the sentence
   embedding itself (transformer -> mean pooling over the attention mask -> L2 normalisation) and exported
   with dynamic batch and sequence axes; :func:`mesh.models.export_torch` checks the dims and ONNX Runtime
   against the torch module on random token ids at two sizes.
2. :func:`verify_against_sentence_transformers`: the ONNX file fed by the Python tokenizer
   (:class:`~services.nlp.embedder.TextTokenizer`) against ``SentenceTransformer.encode`` on real sentences
   at two batch sizes / sequence lengths.
3. With a gitbugs folder (default ``../shared/data/duplicates/hadoop`` when present), the hybrid fusion
   weight and the duplicate threshold are calibrated on its TRAIN pairs (:mod:`services.nlp.duplicates`)
   and stamped into the model's metadata, where the service reads them.
4. Registered in MLflow as ``nlp-embedder`` (``challenger``); ``champion`` moves to it unless the champion
   matches sentence-transformers more closely.

torch and sentence-transformers are imported here only, inside functions: serving never imports them.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mesh.config import MeshSettings, ModelSettings
from mesh.models import (
    CHALLENGER,
    ExportReport,
    ExportVerificationError,
    ModelRegistry,
    OnnxModel,
    PromotionDecision,
    StaticModel,
    VersionedModel,
    export_torch,
    stamp_metadata,
)
from services.nlp.embedder import ATTENTION_MASK, DIM, INPUT_IDS, MODEL_NAME, OUTPUT, Embedder, model_dir

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

VERIFY_METRIC = "st_max_abs_diff"
VERIFY_TEXTS = (
    "Fix login timeout on SSO",
    "NameNode fails to restart after the edit log was truncated by a full disk; the secondary namenode "
    "cannot checkpoint either and the standby keeps replaying the same transactions",
    "Draft Q4 roadmap",
    "Unit tests for the YARN resource manager leak threads when the scheduler is stopped twice",
    "ok",
    "The DataNode block report is rejected after an upgrade because the layout version changed, "
    "so the cluster stays in safe mode until an administrator intervenes manually. " * 4,
    "Typo in docs",
)
"""Real sentences of different lengths (the last long one is cut at MAX_TOKENS)."""
DEFAULT_CALIBRATION = Path(__file__).resolve().parents[3] / "shared" / "data" / "duplicates" / "hadoop"


def sentence_transformer() -> Any:
    """The reference model, on CPU, from the offline package (imports torch)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir()), device="cpu")


def _pooled_module(st: Any) -> torch.nn.Module:
    import torch

    class SentenceEmbedding(torch.nn.Module):
        """Transformer + mean pooling + L2 normalisation: sentence-transformers' three modules in one graph."""

        def __init__(self, transformer: torch.nn.Module) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                      token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return SentenceEmbedding(st[0].auto_model).eval()


def export_embedder(st: Any, path: Path) -> ExportReport:
    """Export the sentence embedding graph to ``path`` and verify it against torch (random ids, 2 sizes)."""
    import torch

    vocab = int(st[0].auto_model.config.vocab_size)
    example = (torch.randint(0, vocab, (2, 8), dtype=torch.int64), torch.ones((2, 8), dtype=torch.int64))
    axes = {INPUT_IDS: {0: "batch", 1: "sequence"}, ATTENTION_MASK: {0: "batch", 1: "sequence"},
            OUTPUT: {0: "batch"}}
    # the legacy exporter: 6 s instead of ~35 s, one file instead of external data, same outputs (2e-7)
    return export_torch(_pooled_module(st), example, path, [INPUT_IDS, ATTENTION_MASK], [OUTPUT], axes,
                        check_sizes=((1, 5), (4, 37)), dynamo=False, opset_version=17)


@dataclass(frozen=True)
class StCheck:
    """ONNX (Python tokenizer + ONNX Runtime) vs ``SentenceTransformer.encode`` on one batch of sentences."""

    batch: int
    tokens: int
    max_abs_diff: float


def verify_against_sentence_transformers(path: Path, st: Any, settings: ModelSettings,
                                         batches: tuple[tuple[str, ...], ...] | None = None,
                                         atol: float = 1e-5) -> list[StCheck]:
    """Raise :class:`ExportVerificationError` unless the ONNX embedder gives sentence-transformers' vectors
    (within ``atol``) on each batch; by default a batch of 1 short text and one of all of VERIFY_TEXTS."""
    batches = batches or (VERIFY_TEXTS[:1], VERIFY_TEXTS)
    if len(batches) < 2:
        raise ValueError("verify at two or more batch sizes")
    embedder = Embedder(StaticModel(VersionedModel(MODEL_NAME, "export", OnnxModel.load(path, settings))))
    checks = []
    for texts in batches:
        ours = embedder.embed(list(texts)).vectors
        reference = np.asarray(st.encode(list(texts), batch_size=len(texts), convert_to_numpy=True))
        diff = float(np.max(np.abs(ours - reference)))
        tokens = int(embedder_tokens(texts))
        if ours.shape != reference.shape or diff > atol:
            raise ExportVerificationError(f"ONNX embedder differs from sentence-transformers on a batch of "
                                          f"{len(texts)} ({tokens} tokens): max |diff| {diff:.3g} > {atol}")
        checks.append(StCheck(len(texts), tokens, diff))
    return checks


def embedder_tokens(texts: tuple[str, ...]) -> int:
    """Padded sequence length of a batch (what a check ran at)."""
    from services.nlp.embedder import TextTokenizer

    return int(TextTokenizer().encode(list(texts))[INPUT_IDS].shape[1])


def register(registry: ModelRegistry, path: Path, metrics: dict[str, float], params: dict[str, Any]
             ) -> PromotionDecision:
    """Register the verified file as ``challenger``; champion moves to it unless it matches sentence-
    transformers less closely than the current champion."""
    now = datetime.now(UTC)
    registry.log_and_register(MODEL_NAME, path, metrics, params, (now, now), alias=CHALLENGER)
    return registry.promote_if_better(MODEL_NAME, VERIFY_METRIC, higher_is_better=False)


def build(out_dir: Path, settings: ModelSettings, calibration: Path | None) -> tuple[Path, dict[str, float],
                                                                                      dict[str, Any]]:
    """Export, verify, calibrate: the ONNX path, metrics and params to register it with."""
    st = sentence_transformer()
    path = out_dir / "nlp-embedder.onnx"
    report = export_embedder(st, path)
    checks = verify_against_sentence_transformers(path, st, settings)
    metrics = {"torch_max_abs_diff": report.max_abs_diff, VERIFY_METRIC: max(c.max_abs_diff for c in checks)}
    params: dict[str, Any] = {"dim": DIM, "base_model": "sentence-transformers/all-MiniLM-L6-v2",
                              "verified_batches": ",".join(f"{c.batch}x{c.tokens}" for c in checks)}
    if calibration is not None:
        from services.nlp.duplicates import calibrate_model

        props = calibrate_model(path, settings, calibration)
        stamp_metadata(path, props)
        metrics.update({k: float(v) for k, v in props.items() if k.startswith("train_")})
        params.update({k: v for k, v in props.items() if not k.startswith("train_")})
    return path, metrics, params


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".cache/nlp"), help="where the ONNX file is written")
    parser.add_argument("--calibrate-on", type=Path, default=DEFAULT_CALIBRATION,
                        help="gitbugs folder whose train pairs calibrate fusion weight and duplicate threshold")
    parser.add_argument("--no-calibration", action="store_true", help="keep the default weight and threshold")
    args = parser.parse_args(argv)
    settings = MeshSettings()
    calibration = None if args.no_calibration else args.calibrate_on
    if calibration is not None and not calibration.is_dir():
        log.warning("no calibration data at %s: default fusion weight and duplicate threshold", calibration)
        calibration = None
    path, metrics, params = build(args.out, settings.models, calibration)
    decision = register(ModelRegistry(settings.models), path, metrics, params)
    print(decision.summary())


if __name__ == "__main__":
    main()

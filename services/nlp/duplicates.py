"""Duplicate detection on gitbugs-format data: loading, scoring, and the calibration of the served
search (fusion weight, time prior, duplicate threshold) on TRAIN pairs only. Scores are the service's: each
query ranks only its candidates (dense and lexical top-N) and the time prior uses the bugs' ``Created`` dates
(the service: the tasks' creation events).

A gitbugs folder holds ``<project>_bugs.csv`` (``Summary, Issue id, ..., Description``) and pair files
``*-train.csv`` / ``*-test.csv`` / ``*-combined.csv`` (``Issue id, Duplicate id``; a duplicate id cell may
list several ids). A query is a bug of a pair; the relevant documents are its listed duplicates, searched
among all bugs (the query itself left out).

The duplicate threshold is set for precision: every bug is a query (as every created task is), the top
candidate of each is flagged when its fused score reaches the threshold, and the threshold is the lowest
at which the flagged candidates of the calibration queries are at least :data:`TARGET_PRECISION` true
duplicates. Calibration queries: the train pairs' bugs and a fixed 80% of the bugs without any pair; the
test pairs' bugs and the other 20% are held out for the benchmark.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mesh.config import ModelSettings
from mesh.models import OnnxModel, StaticModel, VersionedModel
from services.nlp.embedder import MODEL_NAME, Embedder
from services.nlp.fusion import (
    DAY_S,
    NO_TIME_PRIOR,
    Bm25,
    Scores,
    TimePrior,
    choose_fusion,
    first_relevant_ranks,
    fuse,
    quality,
)
from services.nlp.search import CANDIDATES, TIME_SCALE_KEY, TIME_WEIGHT_KEY

log = logging.getLogger(__name__)

TARGET_PRECISION = 0.8
MIN_FLAGGED = 5
HELD_OUT_SHARE = 0.2
"""Share of the pairless bugs kept out of the threshold calibration (by a hash of the id: fixed)."""


@dataclass(frozen=True)
class Bugs:
    ids: list[str]
    texts: list[str]
    created_days: list[float] = field(default_factory=list)
    """creation time per bug in days since the Unix epoch (the ``Created`` column); 0 = unknown"""

    def days(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.created_days or [0.0] * len(self.ids), dtype=np.float64)

    def position(self) -> dict[str, int]:
        return {b: i for i, b in enumerate(self.ids)}


@dataclass(frozen=True)
class Pairs:
    """Query bug -> its duplicates, positions into :class:`Bugs` (pairs with an unknown id are dropped)."""

    queries: list[int]
    relevant: list[list[int]]
    dropped: int


def bugs_file(folder: Path) -> Path:
    found = [p for p in folder.glob("*_bugs.csv") if not p.stem.endswith(("-train", "-test", "-combined"))]
    if len(found) != 1:
        raise FileNotFoundError(f"{folder}: expected one <project>_bugs.csv, found {[p.name for p in found]}")
    return found[0]


def pairs_file(folder: Path, split: str) -> Path:
    found = sorted(folder.glob(f"*-{split}.csv"))
    if not found:
        raise FileNotFoundError(f"{folder}: no *-{split}.csv pair file")
    return found[0]


def load_bugs(folder: Path) -> Bugs:
    csv.field_size_limit(sys.maxsize)
    ids, texts, days = [], [], []
    with bugs_file(folder).open(encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.DictReader(f):
            bug = (row.get("Issue id") or "").strip()
            if bug:
                ids.append(bug)
                texts.append(f"{row.get('Summary') or ''}\n{row.get('Description') or ''}".strip())
                days.append(_days(row.get("Created") or ""))
    return Bugs(ids, texts, days)


def _days(created: str) -> float:
    """Jira's ``30/Sep/21 17:20`` (as exported; taken as UTC) in days since the epoch; 0 when absent or other."""
    try:
        return datetime.strptime(created.strip(), "%d/%b/%y %H:%M").replace(tzinfo=UTC).timestamp() / DAY_S
    except ValueError:
        return 0.0


def load_pairs(path: Path, bugs: Bugs) -> Pairs:
    at = bugs.position()
    merged: dict[int, list[int]] = {}
    dropped = 0
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            query = at.get((row.get("Issue id") or "").strip())
            masters = [at.get(m.strip()) for m in (row.get("Duplicate id") or "").split(",") if m.strip()]
            known = [m for m in masters if m is not None and m != query]
            if query is None or not known:
                dropped += 1
                continue
            merged.setdefault(query, [])
            merged[query].extend(m for m in known if m not in merged[query])
    return Pairs(list(merged), list(merged.values()), dropped)


EMBEDDINGS_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "nlp" / "embeddings"
"""Where :func:`embed_all` keeps the embeddings of a data set (git-ignored)."""
_PROBE = "fingerprint of the embedding model: NameNode fails to restart"


def embed_all(embedder: Embedder, texts: Sequence[str], cache_dir: Path | None = EMBEDDINGS_CACHE
              ) -> npt.NDArray[np.float32]:
    """Embeddings of ``texts`` with progress on stderr; with ``cache_dir``, kept in one .npy per (model, texts)
    so that a second run reads the file (embedding a few thousand bug reports takes minutes on CPU). The
    model is identified by its vector of a probe sentence, so a re-export of the same weights hits."""
    key = hashlib.sha256(np.round(embedder.embed([_PROBE]).vectors, 5).tobytes())
    key.update("\x1f".join(texts).encode())
    cached = cache_dir / f"embeddings-{key.hexdigest()[:20]}.npy" if cache_dir is not None else None
    if cached is not None and cached.exists():
        return np.asarray(np.load(cached), dtype=np.float32)
    chunks = []
    for start in range(0, len(texts), 256):
        chunks.append(embedder.embed(list(texts[start:start + 256])).vectors)
        print(f"  embedded {min(start + 256, len(texts))}/{len(texts)}", file=sys.stderr, flush=True)
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, 384), dtype=np.float32)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached, vectors)
    return vectors


def lexical_rows(bm25: Bm25, bugs: Bugs, queries: Sequence[int]) -> npt.NDArray[np.float64]:
    """BM25 score of every bug for each query bug's text, the query's own score zeroed (it is left out of
    its ranking, and the service normalises by the best OTHER item)."""
    rows = np.zeros((len(queries), len(bugs.ids)))
    for r, q in enumerate(queries):
        rows[r] = bm25.scores(bugs.texts[q])
        rows[r, q] = 0.0
    return rows


def dense_rows(vectors: npt.NDArray[np.float32], queries: Sequence[int]) -> npt.NDArray[np.float64]:
    return np.asarray(vectors[list(queries)] @ vectors.T, dtype=np.float64)


def fused_rows(dense: npt.NDArray[np.float64], lexical: npt.NDArray[np.float64], weight: float,
               prior: TimePrior = NO_TIME_PRIOR, days: npt.NDArray[np.float64] | None = None,
               queries: Sequence[int] = ()) -> list[Scores]:
    """The service's ranking of each query row: only its candidates (the dense and the lexical top
    :data:`~services.nlp.search.CANDIDATES` + 1, as the searcher takes them) get a score, the others -inf;
    fused, plus the time prior when ``days`` (per bug) and ``queries`` (the rows' bugs) are given."""
    out = []
    for r, (d, x) in enumerate(zip(dense, lexical, strict=True)):
        n = CANDIDATES + 1
        keep = np.zeros(d.shape, dtype=bool)
        keep[np.argsort(-d, kind="stable")[:n]] = True
        top_lexical = np.argsort(-x, kind="stable")[:n]
        keep[top_lexical[x[top_lexical] > 0]] = True
        cand = np.flatnonzero(keep)
        row = np.full(d.shape, -np.inf)
        row[cand] = fuse(d[cand], x[cand], weight)
        if days is not None and queries:
            row[cand] += prior.bonus(float(days[queries[r]]), days[cand])
        out.append(row)
    return out


def hybrid_mrr(dense: npt.NDArray[np.float64], lexical: npt.NDArray[np.float64], pairs: Pairs,
               weight: float, prior: TimePrior = NO_TIME_PRIOR, days: npt.NDArray[np.float64] | None = None
               ) -> float:
    ranks = first_relevant_ranks(fused_rows(dense, lexical, weight, prior, days, pairs.queries), pairs.relevant,
                                 pairs.queries)
    return quality(ranks).mrr


def held_out(bug_id: str) -> bool:
    """Whether a pairless bug is in the held-out share (fixed by its id)."""
    return int(hashlib.sha256(bug_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < HELD_OUT_SHARE


@dataclass(frozen=True)
class Flagged:
    """Top-1 candidates of some queries: their fused scores and whether each is a true duplicate."""

    scores: npt.NDArray[np.float64]
    correct: npt.NDArray[np.bool_]

    def at(self, threshold: float) -> dict[str, float]:
        flagged = self.scores >= threshold
        hits = int(np.sum(flagged & self.correct))
        return {"flagged": float(np.sum(flagged)), "precision": hits / max(int(np.sum(flagged)), 1),
                "recall": hits / max(int(np.sum(self.correct)), 1)}


def top1(fused: Sequence[Scores], queries: Sequence[int], duplicates: dict[int, set[int]]) -> Flagged:
    scores, correct = [], []
    for row, q in zip(fused, queries, strict=True):
        row = row.copy()
        row[q] = -np.inf
        best = int(np.argmax(row))
        scores.append(float(row[best]))
        correct.append(best in duplicates.get(q, set()))
    return Flagged(np.asarray(scores), np.asarray(correct, dtype=bool))


def calibrate_threshold(flagged: Flagged, target: float = TARGET_PRECISION, min_flagged: int = MIN_FLAGGED
                        ) -> float:
    """The lowest top-1 score at which the flagged candidates reach ``target`` precision (at least
    ``min_flagged`` of them); when no threshold does, the one with the best precision."""
    order = np.argsort(-flagged.scores, kind="stable")
    hits = np.cumsum(flagged.correct[order])
    count = np.arange(1, len(order) + 1)
    precision = hits / count
    ok = np.flatnonzero((precision >= target) & (count >= min_flagged))
    j = int(ok[-1]) if ok.size else int(np.argmax(np.where(count >= min_flagged, precision, -1.0)))
    return float(flagged.scores[order[j]])


def symmetric(*pairs: Pairs) -> dict[int, set[int]]:
    """Every listed duplicate relation in both directions."""
    out: dict[int, set[int]] = {}
    for p in pairs:
        for q, rel in zip(p.queries, p.relevant, strict=True):
            for r in rel:
                out.setdefault(q, set()).add(r)
                out.setdefault(r, set()).add(q)
    return out


def calibration_queries(bugs: Bugs, train: Pairs, test: Pairs, combined: Pairs) -> tuple[list[int], list[int]]:
    """(calibration queries, held-out queries) for the threshold: see the module docstring."""
    with_pairs = set(symmetric(combined, train, test))
    test_side = set(symmetric(test)) - set(symmetric(train))
    pairless = [i for i in range(len(bugs.ids)) if i not in with_pairs]
    calib = sorted(set(symmetric(train)) | {i for i in pairless if not held_out(bugs.ids[i])})
    hold = sorted(test_side | {i for i in pairless if held_out(bugs.ids[i])})
    return calib, hold


def calibrate_model(path: Path, settings: ModelSettings, folder: Path,
                    cache_dir: Path | None = EMBEDDINGS_CACHE) -> dict[str, Any]:
    """Fusion weight (MRR of the train pairs) and duplicate threshold (precision on calibration queries)
    of the ONNX embedder at ``path``, on a gitbugs folder: the metadata the service reads."""
    bugs = load_bugs(folder)
    train = load_pairs(pairs_file(folder, "train"), bugs)
    test = load_pairs(pairs_file(folder, "test"), bugs)
    combined = load_pairs(pairs_file(folder, "combined"), bugs)
    log.info("calibrating on %s: %d bugs, %d train queries; embedding...", folder, len(bugs.ids), len(train.queries))
    embedder = Embedder(StaticModel(VersionedModel(MODEL_NAME, "calibration", OnnxModel.load(path, settings))))
    vectors = embed_all(embedder, bugs.texts, cache_dir)
    bm25 = Bm25(bugs.texts)
    dense, lexical = dense_rows(vectors, train.queries), lexical_rows(bm25, bugs, train.queries)
    days = bugs.days()
    weight, prior = choose_fusion(lambda w, p: hybrid_mrr(dense, lexical, train, w, p, days))
    calib, _ = calibration_queries(bugs, train, test, combined)
    # the threshold reads the text-only score (the time prior ranks, it does not flag): calibrated on it
    flagged = top1(fused_rows(dense_rows(vectors, calib), lexical_rows(bm25, bugs, calib), weight), calib,
                   symmetric(train))
    threshold = calibrate_threshold(flagged)
    at = flagged.at(threshold)
    log.info("fusion weight %.2f, time prior %.2f x exp(-days/%.0f), duplicate threshold %.4f (train precision "
             "%.2f, recall %.2f)", weight, prior.weight, prior.scale_days, threshold, at["precision"], at["recall"])
    return {"fusion_weight": weight, TIME_WEIGHT_KEY: prior.weight, TIME_SCALE_KEY: prior.scale_days,
            "duplicate_threshold": round(threshold, 6), "calibrated_on": folder.name,
            "target_precision": TARGET_PRECISION,
            "train_hybrid_mrr": hybrid_mrr(dense, lexical, train, weight, prior, days),
            "train_duplicate_precision": at["precision"], "train_duplicate_recall": at["recall"]}

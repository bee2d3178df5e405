"""Semantic search over a tenant's items: embeddings from Milvus fused with a per-tenant BM25 index.

Candidates are the union of the dense top-N (Milvus) and the lexical top-N (BM25 over the tenant's texts,
built lazily from the vector database itself and rebuilt after the tenant's next write); each candidate
gets its exact cosine (vectors fetched for lexical-only ones) and its BM25 score, and they are ranked by
:func:`services.nlp.fusion.fuse` with the weight stamped in the served embedder's metadata, plus the time prior
(:class:`services.nlp.fusion.TimePrior`) when the query is an item with a creation time (both calibrated on
training pairs by :mod:`services.nlp.duplicates`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mesh.errors import InvalidArgument, NotFound
from mesh.models import VersionedModel
from services.nlp.embedder import Embedder
from services.nlp.fusion import DEFAULT_WEIGHT, NO_TIME_PRIOR, Bm25, TimePrior, fuse, normalised
from services.nlp.vectors import Item, VectorIndex, checked_id

log = logging.getLogger(__name__)

DEFAULT_K = 10
MAX_K = 100
CANDIDATES = 50
"""Candidates taken from each side (at least; ``2 k`` when larger)."""
WEIGHT_KEY = "fusion_weight"
THRESHOLD_KEY = "duplicate_threshold"
TIME_WEIGHT_KEY = "fusion_time_weight"
TIME_SCALE_KEY = "fusion_time_scale_days"
DEFAULT_THRESHOLD = 0.8
"""Used only when no calibrated threshold is stamped in the served model."""


@dataclass(frozen=True)
class Scored:
    item: Item
    score: float
    dense: float
    lexical: float
    """BM25 normalised by the query's best"""
    text: float = 0.0
    """the fused text similarity alone (``score`` without the time prior): what the duplicate threshold reads"""


@dataclass(frozen=True)
class Calibration:
    """What the served model's metadata says about fusion (defaults when it was not calibrated)."""

    weight: float
    threshold: float
    calibrated: bool
    time: TimePrior = NO_TIME_PRIOR
    """the time prior (none unless the model was calibrated with one)"""

    @classmethod
    def of(cls, model: VersionedModel) -> Calibration:
        meta = model.model.metadata
        if WEIGHT_KEY not in meta:
            return cls(DEFAULT_WEIGHT, DEFAULT_THRESHOLD, False)
        time = TimePrior(float(meta[TIME_WEIGHT_KEY]), float(meta.get(TIME_SCALE_KEY, 100.0))) \
            if TIME_WEIGHT_KEY in meta else NO_TIME_PRIOR
        return cls(float(meta[WEIGHT_KEY]), float(meta.get(THRESHOLD_KEY, DEFAULT_THRESHOLD)), True, time)


class _TenantLexicon:
    """One tenant's BM25 index and the items it covers."""

    def __init__(self, items: list[Item]) -> None:
        self.items = items
        self.bm25 = Bm25([i.full_text for i in items])


class HybridSearcher:
    """Search, SimilarTasks and duplicate candidates; thread-safe."""

    def __init__(self, index: VectorIndex, embedder: Embedder) -> None:
        self._index = index
        self._embedder = embedder
        self._lexicons: dict[tuple[str, str], _TenantLexicon] = {}
        self._generation: dict[str, int] = {}  # bumped by each write of the tenant
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    def invalidate(self, tenant_id: str) -> None:
        """The tenant's texts changed: its BM25 index is rebuilt on its next search."""
        with self._lock:
            self._generation[tenant_id] = self._generation.get(tenant_id, 0) + 1
            for key in [k for k in self._lexicons if k[0] == tenant_id]:
                del self._lexicons[key]

    def search(self, tenant_id: str, query: str, k: int = DEFAULT_K,
               filters: Mapping[str, str] | None = None) -> tuple[list[Scored], VersionedModel]:
        """The tenant's ``k`` best items for a free-text query (kind "task" unless ``filters`` says)."""
        if not query.strip():
            raise InvalidArgument("query is empty")
        embedded = self._embedder.embed([query])
        hits = self.rank(tenant_id, query, embedded.vectors[0], _k(k), filters, Calibration.of(embedded.model))
        return hits, embedded.model

    def similar(self, tenant_id: str, task_id: str, k: int = DEFAULT_K) -> tuple[list[Scored], VersionedModel]:
        """The tenant's tasks most similar to an indexed task (the task itself excluded)."""
        found = self._index.get(tenant_id, "task", [checked_id(task_id, "task_id")], with_vectors=True)
        if task_id not in found:
            raise NotFound(f"task {task_id} is not indexed for tenant {tenant_id}")
        item, vector = found[task_id]
        assert vector is not None
        model = self._embedder.model
        hits = self.rank(tenant_id, item.full_text, vector, _k(k), None, Calibration.of(model), exclude=task_id,
                         created_days=item.created_days)
        return hits, model

    def rank(self, tenant_id: str, query: str, vector: npt.NDArray[np.float32], k: int,
             filters: Mapping[str, str] | None, calibration: Calibration, *, exclude: str | None = None,
             created_days: float = 0.0) -> list[Scored]:
        """Fuse the dense and lexical candidates of one query; the best ``k`` (``exclude`` left out).
        ``created_days``: when the query item was created (its similar items, a new task's duplicates): the
        calibrated time prior then adds to candidates created close to it; 0 (free-text search): none."""
        filters = dict(filters or {})
        kind = filters.setdefault("kind", "task")
        n = max(CANDIDATES, 2 * k) + (1 if exclude else 0)
        dense = {h.item.item_id: h for h in self._index.search(tenant_id, vector[None, :], n, filters)[0]}
        lexical = self._lexical(tenant_id, kind, query, n, filters)
        missing = [i for i in lexical if i not in dense]
        fetched = self._index.get(tenant_id, kind, missing, with_vectors=True) if missing else {}
        items = {**{i: h.item for i, h in dense.items()}, **{i: it for i, (it, _) in fetched.items()}}
        ids = [i for i in items if i != exclude]
        if not ids:
            return []
        cos = np.asarray([dense[i].score if i in dense else float(np.dot(vector, fetched[i][1]))  # type: ignore[arg-type]
                          for i in ids])
        bm = normalised(np.asarray([lexical.get(i, 0.0) for i in ids]))
        text = fuse(cos, bm, calibration.weight)
        fused = text + calibration.time.bonus(created_days, np.asarray([items[i].created_days for i in ids]))
        order = np.argsort(-fused, kind="stable")[:k]
        return [Scored(items[ids[j]], float(fused[j]), float(cos[j]), float(bm[j]), float(text[j])) for j in order]

    def _lexical(self, tenant_id: str, kind: str, query: str, n: int, filters: Mapping[str, str]
                 ) -> dict[str, float]:
        lexicon = self._lexicon(tenant_id, kind)
        scores = lexicon.bm25.scores(query)
        if not scores.size:
            return {}
        top = np.argsort(-scores, kind="stable")[:n * 2]
        project = filters.get("project_id")
        out = {}
        for j in top:
            item = lexicon.items[j]
            if scores[j] > 0 and (project is None or item.project_id == project):
                out[item.item_id] = float(scores[j])
        return dict(list(out.items())[:n])

    def _lexicon(self, tenant_id: str, kind: str) -> _TenantLexicon:
        key = (tenant_id, kind)
        with self._lock:
            lexicon = self._lexicons.get(key)
            generation = self._generation.get(tenant_id, 0)
        if lexicon is None:
            lexicon = _TenantLexicon(list(self._index.items(tenant_id, kind)))
            with self._lock:  # kept only if no write of the tenant happened while it was built
                if self._generation.get(tenant_id, 0) == generation:
                    self._lexicons[key] = lexicon
        return lexicon


def _k(k: int) -> int:
    if k < 0 or k > MAX_K:
        raise InvalidArgument(f"k {k} is not in 1..{MAX_K} (0 for the default)")
    return k or DEFAULT_K

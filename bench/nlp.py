"""NLP benchmark: duplicate retrieval (TF-IDF, BM25, embeddings, hybrid), duplicate-threshold precision,
embedding and search latency, ONNX vs sentence-transformers; then the text models' share
(``bench/_nlp_text.py``: sentiment, summaries) when it exists.

    python -m bench nlp [--quick] [--data DIR ...] --out DIR

Duplicates: on each gitbugs-format folder (default ``../shared/data/duplicates/hadoop``; Patil 2025,
CC BY 4.0), every query bug of a pair ranks ALL bugs of the project (itself left out); recall@1/5/10 and MRR
of the first listed duplicate. The hybrid (the service's ranking: the union of the dense and lexical top-50
candidates, fused, plus a time prior from the bugs' ``Created`` dates) has its fusion weight and time prior
chosen on the TRAIN pairs (MRR; ``hybrid-text-only``: the weight alone, no time prior) and is reported
on the test pairs (the dataset's own split) and on all pairs (the published TF-IDF recall@10 of about 0.73
is over all Hadoop pairs). The duplicate threshold is calibrated for precision on the train side and its
precision/recall reported on the held-out side (:mod:`services.nlp.duplicates`).

Latency (one process on a shared 2-core machine; other work ran at the same time): embedding one text,
and hybrid search (query embedding + Milvus Lite + BM25 + fusion) in one tenant holding 10k (and, without
``--quick``, 100k) vectors among 10 tenants. The vectors are the project's real bug embeddings with small
noise (re-normalised) and their texts, so BM25 sees realistic vocabulary.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench._report import write_report
from mesh.config import MeshSettings
from mesh.models import OnnxModel, StaticModel, VersionedModel
from services.nlp import duplicates as dup
from services.nlp.embedder import DIM, MODEL_NAME, Embedder
from services.nlp.fusion import Bm25, choose_fusion, choose_weight, first_relevant_ranks, quality
from services.nlp.search import Calibration, HybridSearcher
from services.nlp.vectors import Item, VectorIndex

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "duplicates" / "hadoop"
PUBLISHED_TFIDF_RECALL10 = 0.73
GOAL_HYBRID_RECALL10 = 0.88
COLUMNS = ["data", "pairs", "method", "queries", "recall@1", "recall@5", "recall@10", "mrr"]
Matrix = npt.NDArray[np.float64]


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def _timed(fn: Callable[[], object], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def tfidf_rows(texts: Sequence[str], queries: Sequence[int]) -> Matrix:
    from sklearn.feature_extraction.text import TfidfVectorizer

    matrix = TfidfVectorizer(sublinear_tf=True, stop_words="english").fit_transform(texts)
    return np.asarray((matrix[list(queries)] @ matrix.T).toarray(), dtype=np.float64)


def evaluate_folder(folder: Path, embedder: Embedder) -> dict[str, Any]:
    """Every method on the folder's test and all pairs; the hybrid weight chosen on train pairs."""
    bugs = dup.load_bugs(folder)
    split = {s: dup.load_pairs(dup.pairs_file(folder, s), bugs) for s in ("train", "test", "combined")}
    print(f"[{folder.name}] {len(bugs.ids)} bugs; query bugs train/test/all "
          f"{[len(p.queries) for p in split.values()]}; embedding...", flush=True)
    start = time.perf_counter()
    vectors = dup.embed_all(embedder, bugs.texts)
    embed_s = time.perf_counter() - start
    bm25 = Bm25(bugs.texts)
    queries = sorted({q for p in split.values() for q in p.queries})
    row_of = {q: r for r, q in enumerate(queries)}
    scores = {"tfidf": tfidf_rows(bugs.texts, queries), "bm25": dup.lexical_rows(bm25, bugs, queries),
              "embeddings": dup.dense_rows(vectors, queries)}

    def rows(name: str, pairs: dup.Pairs) -> Matrix:
        return scores[name][[row_of[q] for q in pairs.queries]]

    train = split["train"]
    days = bugs.days()
    text_weight = choose_weight(lambda w: dup.hybrid_mrr(rows("embeddings", train), rows("bm25", train), train, w))
    weight, prior = choose_fusion(lambda w, p: dup.hybrid_mrr(rows("embeddings", train), rows("bm25", train), train,
                                                              w, p, days))
    table = []
    for pairs_name in ("test", "combined"):
        pairs = split[pairs_name]
        methods: dict[str, Sequence[npt.NDArray[np.float64]]] = {
            name: list(rows(name, pairs)) for name in ("tfidf", "bm25", "embeddings")}
        methods["hybrid-text-only"] = dup.fused_rows(rows("embeddings", pairs), rows("bm25", pairs), text_weight)
        methods["hybrid"] = dup.fused_rows(rows("embeddings", pairs), rows("bm25", pairs), weight, prior, days,
                                           pairs.queries)
        for method, s in methods.items():
            q = quality(first_relevant_ranks(s, pairs.relevant, pairs.queries))
            table.append({"data": folder.name, "pairs": "all" if pairs_name == "combined" else pairs_name,
                          "method": method, **q.as_dict()})
    threshold = threshold_report(bugs, split, vectors, bm25, weight)
    overlap = len({frozenset((q, r)) for q, rel in zip(split["test"].queries, split["test"].relevant, strict=True)
                   for r in rel} & {frozenset((q, r)) for q, rel in zip(train.queries, train.relevant, strict=True)
                                    for r in rel})
    return {"folder": str(folder), "bugs": len(bugs.ids), "embed_all_s (0 when cached)": embed_s,
            "fusion_weight": weight, "time_prior": {"weight": prior.weight, "scale_days": prior.scale_days},
            "fusion_weight_text_only": text_weight,
            "test_pairs_also_in_train_reversed": overlap, "rows": table, "threshold": threshold,
            "vectors": vectors, "texts": bugs.texts}


def threshold_report(bugs: dup.Bugs, split: dict[str, dup.Pairs], vectors: npt.NDArray[np.float32], bm25: Bm25,
                     weight: float) -> dict[str, Any]:
    calib, hold = dup.calibration_queries(bugs, split["train"], split["test"], split["combined"])

    def flagged(queries: list[int], truth: dict[int, set[int]]) -> dup.Flagged:
        # the service flags on the text-only score (the time prior ranks, it does not flag)
        fused = dup.fused_rows(dup.dense_rows(vectors, queries), dup.lexical_rows(bm25, bugs, queries), weight)
        return dup.top1(fused, queries, truth)

    on_train = flagged(calib, dup.symmetric(split["train"]))
    threshold = dup.calibrate_threshold(on_train)
    on_test = flagged(hold, dup.symmetric(split["test"], split["combined"]))
    return {"target_precision": dup.TARGET_PRECISION, "threshold": threshold, "calibration_queries": len(calib),
            "held_out_queries": len(hold), "train": on_train.at(threshold), "held_out": on_test.at(threshold)}


def embed_latency(embedder: Embedder, st: Any, texts: Sequence[str], quick: bool) -> dict[str, Any]:
    reps = 50 if quick else 200
    one = _timed(lambda: embedder.embed([texts[0]]), reps)
    out: dict[str, Any] = {"embed_one_p50_ms": _pct(one, 50), "embed_one_p99_ms": _pct(one, 99)}
    for batch in (1, 32):
        chunk = list(texts[:batch])
        reps = 5 if batch > 1 else 30
        onnx_s = statistics.median(_timed(lambda: embedder.embed(chunk), reps))  # noqa: B023 - called here
        st_s = statistics.median(_timed(lambda: st.encode(chunk, batch_size=len(chunk)), reps))  # noqa: B023
        out[f"batch{batch}"] = {"onnx_ms": onnx_s * 1000, "sentence_transformers_ms": st_s * 1000,
                                "speedup": st_s / onnx_s}
    return out


def search_latency(vectors: npt.NDArray[np.float32], texts: Sequence[str], embedder: Embedder, size: int,
                   calibration: Calibration, root: Path) -> dict[str, Any]:
    """Hybrid search in one tenant of ``size`` items among 10 tenants (the other nine share ``size``)."""
    rng = np.random.default_rng(size)
    index = VectorIndex(str(root / f"bench-{size}.db"), dim=DIM)
    searcher = HybridSearcher(index, embedder)
    tenants = {"tenant-0": size, **{f"tenant-{t}": max(size // 9, 1) for t in range(1, 10)}}
    start = time.perf_counter()
    for tenant, n in tenants.items():
        for lo in range(0, n, 5000):
            rows = np.arange(lo, min(lo + 5000, n)) % len(texts)
            noisy = vectors[rows] + rng.normal(0, 0.02, (len(rows), DIM)).astype(np.float32)
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
            items = [Item(tenant, "task", f"t{lo + i}", f"p{(lo + i) % 20}", texts[r].split("\n", 1)[0][:200],
                          texts[r][:2000]) for i, r in enumerate(rows.tolist())]
            index.upsert(items, noisy)
    insert_s = time.perf_counter() - start
    start = time.perf_counter()
    searcher.search("tenant-0", "warm up the bm25 index", 10)
    bm25_build_s = time.perf_counter() - start
    queries = [texts[int(i)].split("\n", 1)[0] for i in rng.integers(0, len(texts), 60)]
    hybrid: list[float] = []
    for q in queries:
        start = time.perf_counter()
        searcher.search("tenant-0", q, 10)
        hybrid.append(time.perf_counter() - start)
    qv = embedder.embed(queries).vectors
    dense = _timed(lambda: index.search("tenant-0", qv[:1], 10), len(queries))
    index.close()
    return {"vectors_in_tenant": size, "vectors_total": sum(tenants.values()), "insert_s": insert_s,
            "bm25_build_s": bm25_build_s, "hybrid_p50_ms": _pct(hybrid, 50), "hybrid_p99_ms": _pct(hybrid, 99),
            "milvus_only_p50_ms": _pct(dense, 50), "milvus_only_p99_ms": _pct(dense, 99),
            "fusion_weight": calibration.weight}


def _plot(results: dict[str, Any]) -> Callable[[Any], None]:
    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 2, 1)
        rows = [r for r in results["duplicates"][0]["rows"] if r["pairs"] == "test"]
        ax.bar([r["method"] for r in rows], [r["recall@10"] for r in rows], color="#4c72b0")
        ax.axhline(PUBLISHED_TFIDF_RECALL10, color="grey", ls="--", label="published TF-IDF R@10 (all pairs)")
        ax.axhline(GOAL_HYBRID_RECALL10, color="green", ls=":", label="goal (hybrid)")
        ax.set_ylim(0, 1)
        ax.set_title(f"duplicates, recall@10 on test pairs ({results['duplicates'][0]['folder'].split('/')[-1]})")
        ax.legend(fontsize=7)
        ax2 = fig.add_subplot(1, 2, 2)
        lat = results["search"]
        ax2.bar([f"{s['vectors_in_tenant'] // 1000}k p50" for s in lat] + [f"{s['vectors_in_tenant'] // 1000}k p99"
                                                                         for s in lat],
                [s["hybrid_p50_ms"] for s in lat] + [s["hybrid_p99_ms"] for s in lat], color="#dd8452")
        ax2.set_ylabel("ms")
        ax2.set_title("hybrid search latency (1 tenant of 10, incl. query embedding)")
    return draw


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k vectors only, fewer latency repetitions")
    parser.add_argument("--data", type=Path, action="append", default=None,
                        help="gitbugs-format folder(s) (default: ../shared/data/duplicates/hadoop)")
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    args = parser.parse_args(argv)
    folders = [p for p in (args.data or [DEFAULT_DATA]) if p.is_dir()]
    if not folders:
        print(f"no gitbugs folder found ({args.data or DEFAULT_DATA}); the duplicates part is skipped")
    from services.nlp import export

    settings = MeshSettings().models
    print("loading sentence-transformers and exporting the ONNX embedder...", flush=True)
    st = export.sentence_transformer()
    with tempfile.TemporaryDirectory(prefix="bench-nlp-") as tmp:
        root = Path(tmp)
        path = root / "nlp-embedder.onnx"
        export.export_embedder(st, path)
        checks = export.verify_against_sentence_transformers(path, st, settings)
        embedder = Embedder(StaticModel(VersionedModel(MODEL_NAME, "bench", OnnxModel.load(path, settings))))
        results: dict[str, Any] = {"machine": "shared 2-core machine, other jobs running; ONNX Runtime "
                                              f"{settings.intra_op_threads} intra-op thread(s)",
                                   "onnx_vs_sentence_transformers_max_abs_diff": [c.max_abs_diff for c in checks],
                                   "published_tfidf_recall@10_all_pairs": PUBLISHED_TFIDF_RECALL10,
                                   "goal_hybrid_recall@10": GOAL_HYBRID_RECALL10, "duplicates": []}
        texts: list[str] = []
        vectors = np.zeros((0, DIM), dtype=np.float32)
        for folder in folders:
            found = evaluate_folder(folder, embedder)
            if not texts:
                texts, vectors = found["texts"], found["vectors"]
            results["duplicates"].append({k: v for k, v in found.items() if k not in ("texts", "vectors")})
        texts = texts or [f"synthetic task {i} about component {i % 50}" for i in range(2000)]
        if not len(vectors):
            vectors = embedder.embed(texts).vectors
        print("latency: embedding, ONNX vs sentence-transformers...", flush=True)
        results["embedding"] = embed_latency(embedder, st, texts, args.quick)
        weight = results["duplicates"][0]["fusion_weight"] if results["duplicates"] else 0.5
        calibration = Calibration(weight, 0.0, True)
        results["search"] = []
        for size in (10_000,) if args.quick else (10_000, 100_000):
            print(f"latency: search with {size} vectors in one tenant of 10...", flush=True)
            results["search"].append(search_latency(vectors, texts, embedder, size, calibration, root))
    rows = [r for d in results["duplicates"] for r in d["rows"]]
    plot = _plot(results) if results["duplicates"] else None
    write_report(args.out, "nlp", results, rows, COLUMNS, plot)  # kept if the text part fails or is cut short
    _print_latency(results)
    results["text"] = _text_results(args.quick, folders, args.out)
    if results["text"] is not None:
        write_report(args.out, "nlp", results, (), (), plot)
    return 0


def _text_results(quick: bool, folders: list[Path], out: Path) -> dict[str, object] | None:
    if importlib.util.find_spec("bench._nlp_text") is None:
        return None
    from bench import _nlp_text  # type: ignore[attr-defined]

    result: dict[str, object] = _nlp_text.run_text(quick, folders, out)
    return result


def _print_latency(results: dict[str, Any]) -> None:
    e = results["embedding"]
    print(f"embed one text: p50 {e['embed_one_p50_ms']:.2f} ms, p99 {e['embed_one_p99_ms']:.2f} ms; ONNX speed-up "
          f"over sentence-transformers: batch 1 x{e['batch1']['speedup']:.2f}, batch 32 x{e['batch32']['speedup']:.2f}")
    for s in results["search"]:
        print(f"search, {s['vectors_in_tenant']} vectors in tenant ({s['vectors_total']} total): hybrid p50 "
              f"{s['hybrid_p50_ms']:.1f} ms p99 {s['hybrid_p99_ms']:.1f} ms; Milvus only p50 "
              f"{s['milvus_only_p50_ms']:.1f} ms p99 {s['milvus_only_p99_ms']:.1f} ms")
    for d in results["duplicates"]:
        t = d["threshold"]
        print(f"{d['folder']}: fusion weight {d['fusion_weight']} (train pairs); duplicate threshold "
              f"{t['threshold']:.3f}: train precision {t['train']['precision']:.2f}, held-out precision "
              f"{t['held_out']['precision']:.2f} recall {t['held_out']['recall']:.2f}")


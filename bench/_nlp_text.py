"""Text-model part of ``python -m bench nlp`` (also ``python -m bench._nlp_text [--quick] --out DIR``).

Sentiment (``../shared/data/sentiment``, and any folder passed with ``--data`` holding CSVs with
``dataset,text,oracle``): macro-F1 over the dataset's own 10 folds, each dataset separately. For test fold
k, the next fold (k+1 mod 10) is validation and the other 8 train: every candidate is fitted on the 8 and
the one with the best validation macro-F1 is scored on fold k (model choice never sees fold k). Beside it:
the majority class and TF-IDF + logistic regression (the same 8 folds), and the published macro-F1.
``--quick``: 3 test folds and 2 candidates.

Summaries (``../shared/data/meetings/val``, QMSum): ROUGE-1/2/L F1 (rouge-score, stemming) of the local
summarizer against the reference answers of the general-summary queries, beside lead-k and random-k
(same sentence filter, same 120-word budget). The summarizer's settings were chosen on QMSum train.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench._report import format_table, save_plot
from services.nlp.text._embed_train import MiniLM
from services.nlp.text._sentiment_fit import (
    BASELINE,
    Candidate,
    SentimentData,
    choose,
    load_sentiment_csv,
    macro_f1,
    majority_f1,
)
from services.nlp.text._summarize import lead, random_pick, summarize, transcript_sentences

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SENTIMENT_DIR = SHARED / "sentiment"
MEETINGS_DIR = SHARED / "meetings" / "val"
CACHE_DIR = REPO / ".cache" / "nlp_text"
PUBLISHED = {"jira": {"BERT4SentiSE": 0.825, "SentiCR": 0.800, "Senti4SD": 0.734},
             "github": {"BERT4SentiSE": 0.916, "Senti4SD": 0.910}}
GOAL = {"jira": 0.83}
FULL_GRID = (BASELINE, Candidate("tfidf+minilm", 1.0, 1.0), Candidate("tfidf+minilm", 1.0, 1.0, chars=True))
QUICK_GRID = (BASELINE, Candidate("tfidf+minilm", 1.0, 1.0, chars=True))
SUMMARY_WORDS = 120


def sentiment_files(data_dirs: list[Path]) -> list[Path]:
    """jira.csv and github.csv of the shared set, then any CSV with dataset,text,oracle in ``data_dirs``."""
    files = [SENTIMENT_DIR / f"{n}.csv" for n in ("jira", "github") if (SENTIMENT_DIR / f"{n}.csv").is_file()]
    for folder in data_dirs:
        for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            with path.open(encoding="utf-8", newline="") as f:
                header = next(csv.reader(f), [])
            if {"dataset", "text", "oracle"} <= set(header) and path.resolve() not in {p.resolve() for p in files}:
                files.append(path)
    return files


def score_sentiment(data: SentimentData, quick: bool) -> dict[str, Any]:
    embedder = MiniLM(CACHE_DIR)
    grid: tuple[Candidate, ...] = QUICK_GRID if quick else FULL_GRID
    if quick and not embedder.is_cached(data.texts):
        print(f"  {data.name}: no cached MiniLM embeddings; --quick scores TF-IDF only")
        grid = (BASELINE,)
    needs_embeddings = any(c.features != "tfidf" for c in grid)
    embeddings = (embedder.encode(data.texts) if needs_embeddings
                  else np.zeros((len(data.texts), 384), np.float32))
    folds = sorted(set(data.folds.tolist()))
    tests = folds[:3] if quick else folds
    per_fold: list[dict[str, Any]] = []
    for k in tests:
        val_fold = folds[(folds.index(k) + 1) % len(folds)]
        test = np.flatnonzero(data.folds == k)
        val = np.flatnonzero(data.folds == val_fold)
        train = np.flatnonzero(~np.isin(data.folds, [k, val_fold]))
        started = time.perf_counter()
        choice = choose(grid, data, embeddings, train, val, keep_fitted=True)
        texts = [data.texts[i] for i in test]

        def f1_of(candidate: Candidate, texts: list[str] = texts, test: Any = test, choice: Any = choice) -> float:
            fitted = choice.fitted[candidate.name]
            return macro_f1(data.labels[test], fitted.predict_proba(texts, embeddings[test]).argmax(1))

        row = {"fold": k, "validation_fold": val_fold, "chosen": choice.best.name,
               "model": f1_of(choice.best), "tfidf_lr": f1_of(BASELINE),
               "majority": majority_f1(data.labels[train], data.labels[test]),
               "validation": choice.val_f1, "seconds": time.perf_counter() - started}
        per_fold.append(row)
        print(f"  {data.name} fold {k}: chosen {row['chosen']} -> {row['model']:.3f} (TF-IDF+LR "
              f"{row['tfidf_lr']:.3f}, majority {row['majority']:.3f})", flush=True)
    mean = {key: float(np.mean([r[key] for r in per_fold])) for key in ("model", "tfidf_lr", "majority")}
    return {"dataset": data.name, "comments": len(data.texts), "test_folds": len(per_fold),
            "grid": [c.name for c in grid], "macro_f1": mean, "per_fold": per_fold,
            "published": PUBLISHED.get(data.name, {}), "goal": GOAL.get(data.name)}


def score_summaries(quick: bool, meetings_dir: Path = MEETINGS_DIR) -> dict[str, Any]:
    from rouge_score import rouge_scorer  # type: ignore[import-untyped]

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)  # type: ignore[no-untyped-call]
    files = sorted(meetings_dir.glob("*.json"))
    if quick:
        files = files[:12]
    systems: dict[str, Callable[[list[str]], list[str]]] = {
        "textrank+position (ours)": lambda s: summarize(s, SUMMARY_WORDS),
        "lead-k": lambda s: lead(s, SUMMARY_WORDS), "random-k": lambda s: random_pick(s, SUMMARY_WORDS)}
    scores: dict[str, dict[str, list[float]]] = {name: {"rouge1": [], "rouge2": [], "rougeL": []} for name in systems}
    queries = 0
    for path in files:
        meeting = json.loads(path.read_text(encoding="utf-8"))
        sentences = transcript_sentences((u["speaker"], u["content"]) for u in meeting["meeting_transcripts"])
        for query in meeting["general_query_list"]:
            queries += 1
            for name, system in systems.items():
                result = scorer.score(query["answer"], " ".join(system(sentences)))
                for metric, value in result.items():
                    scores[name][metric].append(value.fmeasure)
    return {"meetings": len(files), "queries": queries, "max_words": SUMMARY_WORDS,
            "rouge_f1": {name: {m: float(np.mean(v)) for m, v in by.items()} for name, by in scores.items()},
            "published": {"HMNet (gold spans, abstractive; not comparable)": {"rouge1": 0.3651, "rouge2": 0.1141,
                                                                               "rougeL": 0.3160}}}


def run_text(quick: bool, data_dirs: list[Path], out: Path) -> dict[str, object]:
    """Sentiment and summary figures (printed as tables; ``out/nlp_text.json`` and ``.png`` written)."""
    print("text models: sentiment (dataset folds), summaries (QMSum val)", flush=True)
    sentiment = [score_sentiment(load_sentiment_csv(p), quick) for p in sentiment_files(data_dirs)]
    rows = []
    for s in sentiment:
        published = ", ".join(f"{k} {v:.3f}" for k, v in s["published"].items()) or "-"
        rows.append({"dataset": s["dataset"], "folds": s["test_folds"], "ours": s["macro_f1"]["model"],
                     "tfidf+lr": s["macro_f1"]["tfidf_lr"], "majority": s["macro_f1"]["majority"],
                     "goal": s["goal"], "published": published})
    print(format_table(rows, ["dataset", "folds", "ours", "tfidf+lr", "majority", "goal", "published"]))
    summaries = score_summaries(quick) if MEETINGS_DIR.is_dir() else None
    if summaries is not None:
        print(f"summaries: ROUGE F1 on {summaries['queries']} general queries of {summaries['meetings']} meetings")
        print(format_table([{"system": k, **v} for k, v in summaries["rouge_f1"].items()],
                           ["system", "rouge1", "rouge2", "rougeL"]))
    result: dict[str, object] = {"quick": quick, "sentiment": sentiment, "summaries": summaries}
    out.mkdir(parents=True, exist_ok=True)
    (out / "nlp_text.json").write_text(json.dumps(result, indent=2) + "\n")
    save_plot(out / "nlp_text.png", lambda fig: _plot(fig, sentiment, summaries))
    return result


def _plot(fig: Any, sentiment: list[dict[str, Any]], summaries: dict[str, Any] | None) -> None:
    left = fig.add_subplot(1, 2, 1)
    names = [s["dataset"] for s in sentiment]
    x = np.arange(len(names))
    for i, (key, label) in enumerate((("model", "ours"), ("tfidf_lr", "TF-IDF+LR"), ("majority", "majority"))):
        left.bar(x + (i - 1) * 0.25, [s["macro_f1"][key] for s in sentiment], 0.25, label=label)
    for j, s in enumerate(sentiment):
        if "BERT4SentiSE" in s["published"]:
            left.hlines(s["published"]["BERT4SentiSE"], j - 0.4, j + 0.4, colors="k", linestyles="--")
    left.set_xticks(x, names)
    left.set_ylabel("macro-F1 (dataset folds); dashed: BERT4SentiSE")
    left.legend()
    if summaries is not None:
        right = fig.add_subplot(1, 2, 2)
        systems = list(summaries["rouge_f1"])
        for i, metric in enumerate(("rouge1", "rouge2", "rougeL")):
            right.bar(np.arange(len(systems)) + (i - 1) * 0.25,
                      [summaries["rouge_f1"][s][metric] for s in systems], 0.25, label=metric)
        right.set_xticks(np.arange(len(systems)), systems, fontsize=8)
        right.set_ylabel("ROUGE F1, QMSum val general queries")
        right.legend()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="nlp text models: sentiment and summaries")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", type=Path, action="append", default=[])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    run_text(args.quick, args.data, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Dispatcher: `python -m bench <name> [args]` runs `bench.<name>.main(argv)`.

`python -m bench all [args]` runs every registered benchmark with the same arguments.
Add a benchmark by writing `bench/<name>.py` with `main(argv: list[str] | None) -> int` and listing it
in `BENCHMARKS`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import cast

# name -> one-line description; the module is `bench.<name>`.
BENCHMARKS: dict[str, str] = {
    "assignment": "assignment ranking quality (NDCG/MRR vs baselines), latency in-process/gRPC, ONNX speedup",
    "features": "feature ingestion (features consumer) vs raw Kafka consume, rebuild of a month, online reads",
    "gateway": "gateway latency p50/p95/p99 + throughput vs direct gRPC (loopback)",
    "mesh": "real assignment + timeline processes, open loop: event path task -> prediction p50/p99 per rate, lag, "
            "CPU, GC, RSS, lost, 1 vs 2 replicas; RankAssignees (300 candidates) direct and via the gateway",
    "bus": "mesh publisher/consumer runner vs raw confluent-kafka throughput on the same messages",
    "timeline": "task remaining-time MAE/MAPE/80% coverage vs baselines, project completion-date MAE, gRPC latency",
    "nlp": "duplicates recall@1/5/10+MRR (TF-IDF, BM25, embeddings, hybrid) vs published TF-IDF, threshold "
           "precision, embed/search latency at 10k/100k vectors, ONNX vs sentence-transformers; text models",
    "storypoints": "effort model (issue text -> story points) vs Mean/Median and published Deep-SE MAE",
    "anomaly": "NAB score (standard / low-FP / low-FN) of the streaming ensemble per category vs the published board",
    "personalization": "closed-loop CTR/regret (hybrid, LinUCB, ALS, popularity, random, oracle), OPE on Open Bandit "
                       "logs vs published, ALS vs popularity recall/NDCG@10, Recommend gRPC p50/p99",
    "automation": "next-activity accuracy on a real process log vs baseline and Tax et al. 0.712; planted workflows "
                  "recall/precision vs frequent bigrams; unsafe candidates rejected; validation + dry-run latency",
}


def _load(name: str) -> Callable[[list[str] | None], int]:
    module = importlib.import_module(f"bench.{name}")
    return cast(Callable[[list[str] | None], int], module.main)


def _usage() -> str:
    lines = ["usage: python -m bench <name|all> [args]", "", "benchmarks:"]
    lines += [f"  {name:<16} {desc}" for name, desc in BENCHMARKS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name == "all":
        codes = [_load(n)(rest) for n in BENCHMARKS]
        return max(codes, default=0)
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return _load(name)(rest)


if __name__ == "__main__":
    raise SystemExit(main())

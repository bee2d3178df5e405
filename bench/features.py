"""Feature store benchmark, one run: live ingestion speed against raw Kafka consume of the same messages,
the rebuild of a simulated month from the event log, and online read latency (batch 1 and 64).

- Ingestion: a simulated stream (default: a month of a 300-person tenant) is published to the input topics,
  then consumed by the real features consumer (`mesh.features.ingestor_runner`: the mesh ConsumerRunner +
  FeatureIngestor -> aggregates in Redis -> online rows through Feast's online store, + the parquet event
  log) and, before and after it, by a bare confluent-kafka consumer that only counts and commits. The ratio
  is ingestion events/s over the mean of the two raw runs: the same messages, the same broker, minutes apart.
  Both are timed from their first delivered batch (a group join is not throughput). The CPU time per event of
  each (process time, all threads) is reported too: on a shared machine the wall rates move with the load.
- Rebuild: the state is dropped and rebuilt from the event log the ingestion wrote (what a service does when
  Redis lost it), through the same ingestor; the rebuilt rows must equal the live ones.
- Reads: the client's `get_online` next to Feast's public `get_online_features` + `to_dict` on the same keys.

`python -m bench features [--quick] [--users N] [--weeks N] [--batch N] [--profile FILE] --out DIR`
-> DIR/features.json + DIR/features.png. Needs the local stack (deploy/local/stack.sh start).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench._report import write_report
from mesh.config import MeshSettings
from mesh.events import Envelope, TopicRegistry


def _events(users: int, weeks: int, seed: int) -> tuple[list[Envelope], str]:
    try:
        from simulator import SimConfig, Simulation
    except ImportError:  # pragma: no cover - simulator/ is part of the repo; kept for partial checkouts
        raise SystemExit("simulator/ is needed for the stream") from None
    sim = Simulation(SimConfig(tenants=1, users_per_tenant=users, weeks=weeks, seed=seed))
    return list(sim.events()), f"simulator: 1 tenant, {users} users, {weeks} week(s), seed {seed}"


def _rate(n: int, seconds: float, cpu_s: float) -> dict[str, float]:
    """Wall rate, and the process's CPU time per event (all its threads): on a shared machine the wall rate
    of a CPU-bound consumer drops with the load, its CPU per event does not."""
    return {"events": n, "seconds": round(seconds, 3), "events_per_s": round(n / seconds, 1),
            "cpu_us_per_event": round(cpu_s / n * 1e6, 2)}


# ----------------------------------------------------------------------------------------- ingestion
def _publish(settings: MeshSettings, events: Sequence[Envelope]) -> list[str]:
    """The stream on fresh input topics; returns their physical names."""
    from mesh.bus import KafkaPublisher, ensure_topics
    from mesh.features import input_topics

    registry = TopicRegistry(settings.kafka.topic_prefix)
    logical = input_topics(registry)
    ensure_topics(settings.kafka, registry, [*logical, "dlq"])
    pub = KafkaPublisher(settings.kafka, registry)
    for env in events:
        pub.publish(env)
    pub.flush(120)
    return [registry.physical(t) for t in logical]


def _raw_consume(settings: MeshSettings, topics: list[str], n: int, batch: int) -> tuple[float, float]:
    """Seconds (and CPU seconds) for a bare confluent-kafka consumer to read all n messages, committing every
    `batch` as the features consumer does, from the first delivered batch on (a consumer group's join is not
    counted, here or for the features consumer)."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": f"raw-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(topics)
    got, started, cpu, deadline = 0, 0.0, 0.0, time.monotonic() + 120
    while got < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"raw consumer read {got} of {n}")
        msgs = consumer.consume(batch, 1.0)
        if msgs and not started:
            started, cpu = time.perf_counter(), time.process_time()
        got += sum(1 for m in msgs if m.error() is None)
        if msgs:
            consumer.commit(asynchronous=False)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    consumer.close()
    return seconds, cpu


class _FirstBatch:
    """Notes when the features consumer's first batch reaches the ingestor (after its group join), and the
    wall and CPU time spent inside the ingestor (the rest is the consumer runtime: poll, decode, commit)."""

    def __init__(self, handle: Callable[[Sequence[Envelope]], None]) -> None:
        self._handle = handle
        self.at = 0.0
        self.cpu = 0.0
        self.handler_s = 0.0
        self.handler_cpu_s = 0.0

    def __call__(self, envs: Sequence[Envelope]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        if not self.at:
            self.at, self.cpu = wall, cpu
        try:
            self._handle(envs)
        finally:
            self.handler_s += time.perf_counter() - wall
            self.handler_cpu_s += time.process_time() - cpu


def _ingest(settings: MeshSettings, ingestor: Any, n: int, batch: int, profile: Path | None
            ) -> tuple[float, float, dict[str, float]]:
    """Seconds (and CPU seconds) for the features consumer to ingest all n messages, from its first batch on
    (fails unless every message was handled), and where the time went: the ingestor (FeatureIngestor:
    aggregates, online rows, event log) or the consumer runtime around it (poll, decode, runner, commit)."""
    from mesh.bus import RunnerOptions
    from mesh.features import ingestor_runner

    first = _FirstBatch(ingestor.handle_envelopes)
    runner = ingestor_runner(settings, ingestor, group_id=f"features-{uuid.uuid4().hex[:8]}", handler=first,
                             options=RunnerOptions(batch_size=batch, max_messages=n, idle_timeout_s=60))
    if profile is not None:
        import cProfile

        with cProfile.Profile(time.process_time) as prof:  # CPU time: on a shared machine wall time is noise
            stats = runner.run()
        prof.dump_stats(profile)
    else:
        stats = runner.run()
    seconds, cpu = time.perf_counter() - first.at, time.process_time() - first.cpu
    if stats.handled != n or stats.dead_lettered:
        raise RuntimeError(f"features consumer handled {stats.handled} of {n} ({stats.dead_lettered} dead-lettered: "
                           f"{stats.dlq_reasons[:3]})")
    split = {"ingestor_s": round(first.handler_s, 3), "runtime_s": round(seconds - first.handler_s, 3),
             "ingestor_cpu_us_per_event": round(first.handler_cpu_s / n * 1e6, 2),
             "runtime_cpu_us_per_event": round((cpu - first.handler_cpu_s) / n * 1e6, 2)}
    return seconds, cpu, split


def ingestion(settings: MeshSettings, ingestor: Any, events: Sequence[Envelope], batch: int,
              profile: Path | None) -> dict[str, Any]:
    """Raw consume, the features consumer, raw consume again: the same messages."""
    n = len(events)
    topics = _publish(settings, events)
    load = os.getloadavg()[0]
    raw_before = _raw_consume(settings, topics, n, batch)
    *ingest, split = _ingest(settings, ingestor, n, batch, profile)
    raw_after = _raw_consume(settings, topics, n, batch)
    raw = n / statistics.fmean([raw_before[0], raw_after[0]])
    raw_cpu = statistics.fmean([raw_before[1], raw_after[1]])
    return {"topics": len(topics), "batch_size": batch, "ingest": _rate(n, *ingest) | split,
            "raw_before": _rate(n, *raw_before), "raw_after": _rate(n, *raw_after), "raw_events_per_s": round(raw, 1),
            "ratio_to_raw": round(n / ingest[0] / raw, 3), "cpu_ratio_to_raw": round(raw_cpu / ingest[1], 3),
            "load_average_1m": [round(load, 1), round(os.getloadavg()[0], 1)]}


# ------------------------------------------------------------------------------------------ rebuild
def _rows(ingestor: Any) -> dict[tuple[str, str], object]:
    """Every view's row of every entity, derived from the aggregates."""
    from mesh.features import record_of

    out: dict[tuple[str, str], object] = {}
    for view in ingestor.repo.views.values():
        for key in ingestor.aggregates.keys(view.state_type.kind):
            _, tenant, entity = key.split(":", 2)
            state = ingestor.aggregates.load(view.state_type, tenant, entity)
            out[(view.name, key)] = record_of(view, state)
    return out


def rebuild(ingestor: Any, batch: int) -> dict[str, Any]:
    """Drop the aggregates and the online rows' source state, replay the event log the live run wrote."""
    from mesh.features import replay_log

    live = _rows(ingestor)
    ingestor.aggregates.clear()
    stats = replay_log(ingestor, ingestor.repo.config.event_log_dir, batch_size=batch)
    rebuilt = _rows(ingestor)
    same = rebuilt == live
    if not same:
        diff = [k for k in live.keys() | rebuilt.keys() if live.get(k) != rebuilt.get(k)]
        raise RuntimeError(f"{len(diff)} rebuilt feature rows differ from the live ones, e.g. "
                           + "; ".join(f"{k}: live {live.get(k)} rebuilt {rebuilt.get(k)}" for k in diff[:2]))
    return {"events": stats.events, "applied": stats.applied, "rows_pushed": stats.rows_pushed,
            "seconds": round(stats.seconds, 3), "events_per_s": round(stats.events_per_s, 1),
            "batch_size": batch, "rows_equal_live": same, "entities": len(live)}


# -------------------------------------------------------------------------------------------- reads
def _percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": round(q[49], 4), "p99": round(q[98], 4), "mean": round(statistics.fmean(ms), 4), "n": len(ms)}


def _read_latency(readers: dict[str, Callable[[list[str]], object]], keys: list[str], batch: int,
                  reads: int) -> dict[str, dict[str, float]]:
    """Each reader on the same chunks, alternating read by read (load from elsewhere hits them alike)."""
    samples: dict[str, list[float]] = {name: [] for name in readers}
    for i in range(reads + 50):
        start = (i * batch) % max(1, len(keys) - batch)
        chunk = keys[start: start + batch]
        for name, read in readers.items():
            t = time.perf_counter()
            read(chunk)
            if i >= 50:  # warm-up
                samples[name].append(time.perf_counter() - t)
    return {name: _percentiles(s) for name, s in samples.items()}


def reads(ingestor: Any, reads: int) -> tuple[dict[str, dict[str, float]], int]:
    from mesh.features import USER_VIEW

    keys = [k.split(":", 1)[1] for k in ingestor.aggregates.keys("user")]
    store = ingestor.repo.store()

    def reference(chunk: list[str]) -> object:
        return store.get_online_features(features=USER_VIEW.feature_refs(),
                                         entity_rows=[{USER_VIEW.join_key: k} for k in chunk]).to_dict(True)

    def client_read(chunk: list[str]) -> object:
        return ingestor.client.get_online(USER_VIEW, chunk)

    readers: dict[str, Callable[[list[str]], object]] = {"": client_read, "reference_": reference}
    lat = {f"{name}batch{b}": p for b in (1, 64) for name, p in _read_latency(readers, keys, b, reads).items()}
    return lat, len(keys)


# --------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench features", description=__doc__)
    p.add_argument("--quick", action="store_true", help="a smaller world and fewer reads (about a minute)")
    p.add_argument("--users", type=int, default=None, help="people in the simulated tenant (default 300, quick 60)")
    p.add_argument("--weeks", type=int, default=None, help="simulated weeks (default 4: a month; quick 2)")
    p.add_argument("--reads", type=int, default=None, help="timed reads per batch size (default 2000, quick 300)")
    p.add_argument("--batch", type=int, default=None, help="events per consumer batch and per rebuild batch "
                                                           "(default: the features consumer's)")
    p.add_argument("--profile", type=Path, default=None, help="write a cProfile (CPU time) of the ingestion run here")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=Path("out/bench"))
    args = p.parse_args(argv)

    from mesh.features import CONSUMER_BATCH_SIZE, FeatureRepo, FeatureRepoConfig, build_ingestor

    users, weeks = args.users or (60 if args.quick else 300), args.weeks or (2 if args.quick else 4)
    batch = args.batch or CONSUMER_BATCH_SIZE
    t = time.perf_counter()
    events, source = _events(users, weeks, args.seed)
    print(f"{len(events)} events from {source} in {time.perf_counter() - t:.1f}s")
    settings = MeshSettings()
    settings.kafka.topic_prefix = f"bench-{uuid.uuid4().hex[:8]}."
    tmp = Path(tempfile.mkdtemp(prefix="bench-features-"))
    repo = FeatureRepo(FeatureRepoConfig(f"bench_{uuid.uuid4().hex[:8]}", tmp / "repo", tmp / "offline", "redis",
                                         settings.redis.url))
    repo.apply()
    ingestor = build_ingestor(repo)
    try:
        ingest = ingestion(settings, ingestor, events, batch, args.profile)
        print(f"ingestion {ingest['ingest']['events_per_s']:.0f} events/s, raw consume "
              f"{ingest['raw_events_per_s']:.0f} events/s: ratio {ingest['ratio_to_raw']:.2f}; CPU per event: "
              f"ingestor {ingest['ingest']['ingestor_cpu_us_per_event']:.1f} us, consumer runtime "
              f"{ingest['ingest']['runtime_cpu_us_per_event']:.1f} us, raw "
              f"{ingest['raw_before']['cpu_us_per_event']:.1f} us; "
              f"load average {os.getloadavg()[0]:.1f}")
        rebuilt = rebuild(ingestor, batch)
        print(f"rebuild from the event log: {rebuilt['events']} events in {rebuilt['seconds']:.1f}s")
        lat, n_users = reads(ingestor, args.reads or (300 if args.quick else 2000))
    finally:
        ingestor.aggregates.clear()
        repo.store().teardown()
    payload = {
        "source": source, "events": len(events), "quick": args.quick, "users": n_users,
        "store": "redis (Feast 0.67 online store, skip_dedup; aggregates in Redis; parquet event log)",
        "ingestion": ingest, "rebuild": rebuilt, "online_read_ms": lat,
    }
    write_report(args.out, "features", payload, _table(ingest, rebuilt, lat), ["measure", "value", "p50_ms", "p99_ms"],
                 lambda fig: _plot(fig, ingest, lat))
    return 0


def _table(ingest: dict[str, Any], rebuilt: dict[str, Any], lat: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"measure": "ingestion (features consumer)", "value": f"{ingest['ingest']['events_per_s']:.0f} ev/s"},
        {"measure": "raw confluent-kafka consume", "value": f"{ingest['raw_events_per_s']:.0f} ev/s"},
        {"measure": "ingestion / raw", "value": f"{ingest['ratio_to_raw']:.3f}"},
        {"measure": "CPU per event: ingestion, raw", "value": f"{ingest['ingest']['cpu_us_per_event']:.0f} us, "
                                                             f"{ingest['raw_before']['cpu_us_per_event']:.0f} us"},
        {"measure": "ingestion CPU per event: ingestor, consumer runtime",
         "value": f"{ingest['ingest']['ingestor_cpu_us_per_event']:.0f} us, "
                  f"{ingest['ingest']['runtime_cpu_us_per_event']:.0f} us"},
        {"measure": f"rebuild {rebuilt['events']} events from the event log",
         "value": f"{rebuilt['seconds']:.1f}s ({rebuilt['events_per_s']:.0f} ev/s)"},
    ]
    rows += [{"measure": f"online read{label}, batch {b}", "p50_ms": lat[f"{prefix}batch{b}"]["p50"],
              "p99_ms": lat[f"{prefix}batch{b}"]["p99"]}
             for b in (1, 64) for prefix, label in (("", ""), ("reference_", " (feast get_online_features)"))]
    return rows


def _plot(fig: Any, ingest: dict[str, Any], lat: dict[str, dict[str, float]]) -> None:
    """Ingestion next to raw consume; p50/p99 of the mesh client next to Feast's read path."""
    ax = fig.add_subplot(1, 3, 1)
    names = ["raw consume", "features consumer"]
    ax.bar(names, [ingest["raw_events_per_s"], ingest["ingest"]["events_per_s"]], color=["#999999", "#4c72b0"])
    ax.set_ylabel("events/s (higher is better)")
    ax.set_title(f"ingestion, ratio {ingest['ratio_to_raw']:.2f}")
    for i, b in enumerate((1, 64)):
        ax = fig.add_subplot(1, 3, i + 2)
        labels = ["mesh client", "feast get_online"]
        keys = [f"batch{b}", f"reference_batch{b}"]
        x = range(len(labels))
        ax.bar([v - 0.2 for v in x], [lat[k]["p50"] for k in keys], width=0.4, label="p50")
        ax.bar([v + 0.2 for v in x], [lat[k]["p99"] for k in keys], width=0.4, label="p99")
        ax.set_xticks(list(x), labels)
        ax.set_ylabel("ms (lower is better)")
        ax.set_title(f"online read, batch of {b}")
        ax.legend()


if __name__ == "__main__":
    raise SystemExit(main())

"""The features CLI: apply the repo, run the live features consumer, replay/backfill into it, rebuild
offline tables, show stats."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from mesh.config import MeshSettings
from mesh.events import TopicRegistry, UnknownTopic
from mesh.features._consumer import ingestor_runner
from mesh.features._eventlog import EventLog
from mesh.features._ingest import build_ingestor
from mesh.features._offline import build_offline_tables
from mesh.features._replay import ReplayStats, replay_log, replay_topic
from mesh.features._repo import DEFAULT_PROJECT, FeatureRepo, FeatureRepoConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mesh.features", description=__doc__)
    p.add_argument("--project", default=DEFAULT_PROJECT, help="Feast project / Redis namespace")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("apply", help="generate and register the Feast repo")
    sub.add_parser("consume", help="run the features consumer on the input topics until SIGTERM/SIGINT")
    r = sub.add_parser("replay", help="rebuild online features from the event log or a Kafka topic")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-log", type=Path, metavar="DIR", help="event log directory")
    src.add_argument("--from-topic", metavar="TOPIC", help="logical (tasks) or physical (sunday.tasks) topic")
    r.add_argument("--offset", type=int, default=0, help="start offset in every partition (default 0)")
    r.add_argument("--batch", type=int, default=500, help="events per transaction/push")
    sub.add_parser("offline", help="rebuild the offline feature tables from the event log")
    sub.add_parser("stats", help="event log and aggregate counts, freshness")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = MeshSettings()
    repo = FeatureRepo(FeatureRepoConfig.from_settings(settings, args.project))
    if args.command == "apply":
        repo.apply()
        print(f"applied project {args.project}: {', '.join(repo.views)} -> {repo.config.project_dir}")
    elif args.command == "consume":
        repo.apply()
        runner = ingestor_runner(settings, build_ingestor(repo))
        runner.install_signal_handlers()
        run = runner.run()
        print(f"features consumer stopped: {run.handled} events handled, {run.dead_lettered} dead-lettered")
    elif args.command == "replay":
        repo.apply()
        ingestor = build_ingestor(repo)
        if args.from_log is not None:
            stats = replay_log(ingestor, args.from_log, batch_size=args.batch, progress=_progress)
        else:
            topic = _physical(settings, args.from_topic)
            stats = replay_topic(ingestor, settings.kafka, topic, args.offset, batch_size=args.batch,
                                 progress=_progress)
        print(f"\nreplayed {stats.events} events ({stats.applied} applied, {stats.duplicates} duplicates, "
              f"{stats.invalid} invalid) in {stats.seconds:.1f}s = {stats.events_per_s:.0f} events/s")
    elif args.command == "offline":
        build = build_offline_tables(repo)
        print(f"{build.events} events -> " + ", ".join(f"{v}: {n} rows" for v, n in build.rows.items()))
    else:
        _stats(repo)
    return 0


def _physical(settings: MeshSettings, topic: str) -> str:
    registry = TopicRegistry(settings.kafka.topic_prefix)
    try:
        return registry.physical(topic)
    except UnknownTopic:
        return topic


def _progress(s: ReplayStats) -> None:
    print(f"\r{s.events} events, {s.applied} applied, {s.rows_pushed} rows pushed, "
          f"{s.events_per_s:.0f} events/s", end="", file=sys.stderr, flush=True)


def _stats(repo: FeatureRepo) -> None:
    import pyarrow.parquet as pq

    log = EventLog(repo.config.event_log_dir)
    types: Counter[str] = Counter()
    newest = None
    for path in log.files():
        table = pq.read_table(path, columns=["type", "occurred_at"])
        types.update(table.column("type").to_pylist())
        latest = max(table.column("occurred_at").to_pylist(), default=None)
        newest = latest if newest is None or (latest is not None and latest > newest) else newest
    print(f"event log {repo.config.event_log_dir}: {sum(types.values())} events in {len(log.files())} files, "
          f"newest event at {newest}")
    for name, n in types.most_common():
        print(f"  {name:<28} {n}")
    aggregates = build_ingestor(repo).aggregates
    for view in repo.views.values():
        print(f"{view.name:<20} {len(aggregates.keys(view.state_type.kind))} entities")

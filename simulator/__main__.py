"""``python -m simulator --tenants 1 --users 300 --weeks 1 --seed 7 --out out/sim [--rate 500] [--kafka]``"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from simulator._config import SimConfig
from simulator._run import run
from simulator._sinks import EventSink, FileSink, PublisherSink


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulator", description="Simulate Sunday.com: events + truth.")
    p.add_argument("--tenants", type=int, default=1, help="number of tenants (workspaces)")
    p.add_argument("--users", type=int, default=300, help="people per tenant")
    p.add_argument("--weeks", type=int, default=1, help="simulated weeks")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    p.add_argument("--rate", type=float, default=0.0, help="events per second (0: as fast as possible)")
    p.add_argument("--out", type=Path, required=True, help="folder for events.pb, truth/ and manifest.json")
    p.add_argument("--kafka", action="store_true", help="also publish to Kafka (settings from MESH_* env)")
    p.add_argument("--no-file", action="store_true", help="do not write events.pb")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = SimConfig(tenants=args.tenants, users_per_tenant=args.users, weeks=args.weeks, seed=args.seed)
    sinks: list[EventSink] = []
    if not args.no_file:
        sinks.append(FileSink(args.out / "events.pb"))
    if args.kafka:
        from mesh.bus import KafkaPublisher  # only this path needs the broker client
        from mesh.config import MeshSettings
        from mesh.events import TopicRegistry

        settings = MeshSettings()
        sinks.append(PublisherSink(KafkaPublisher(settings.kafka, TopicRegistry(settings.kafka.topic_prefix))))
    report = run(config, args.out, sinks, rate=args.rate or None, progress=not args.quiet)
    print(f"{report.events} events in {report.seconds:.1f}s = {report.events_per_s:,.0f} events/s "
          f"({args.tenants} tenant(s) x {args.users} people x {args.weeks} week(s), seed {args.seed})")
    print(f"truth: {report.truth_dir}; counts: {report.by_type}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

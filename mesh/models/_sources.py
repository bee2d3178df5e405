"""Where a training run's events come from, chosen by one command-line flag: the offline event log the
feature ingestor writes (what a deployment has) or a simulator run (development, benchmarks).

Training modules import ``simulator`` only inside their simulator branch, so an image without the
simulator trains from the event log alone.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Container
from pathlib import Path
from typing import Literal, cast

from mesh.config import MeshSettings
from mesh.events import Envelope, occurred_at

log = logging.getLogger(__name__)
Source = Literal["eventlog", "simulator"]
SOURCES: tuple[Source, ...] = ("eventlog", "simulator")


def add_training_arguments(parser: argparse.ArgumentParser, *, tenants: int, users: int, weeks: int, seed: int,
                           default: Source = "simulator") -> None:
    """The arguments every training command takes: ``--source eventlog|simulator``, ``--event-log DIR``,
    the simulated world's size (``--tenants``, ``--users`` per tenant, ``--weeks``, ``--seed``; defaults
    given) for ``--source simulator``, ``--out DIR`` and ``--no-register``."""
    parser.add_argument("--source", choices=SOURCES, default=default,
                        help=f"training events: the feature ingestor's offline event log, or a simulator run "
                             f"(default {default})")
    parser.add_argument("--event-log", type=Path, default=None, metavar="DIR",
                        help="with --source eventlog: the log's folder (default <features.offline_dir>/"
                             "<project>/events from the settings)")
    world = parser.add_argument_group("simulated world (--source simulator)")
    world.add_argument("--tenants", type=int, default=tenants)
    world.add_argument("--users", type=int, default=users, help="people per tenant")
    world.add_argument("--weeks", type=int, default=weeks)
    world.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--out", type=Path, default=None, help="where the ONNX files go (default: a temp dir)")
    parser.add_argument("--no-register", action="store_true", help="train and evaluate only")


def output_dir(args: argparse.Namespace, prefix: str) -> Path:
    """``--out``, else a fresh temporary folder."""
    return Path(args.out) if args.out is not None else Path(tempfile.mkdtemp(prefix=prefix))


def source_of(args: argparse.Namespace) -> Source:
    return cast(Source, args.source)


def event_log_dir(args: argparse.Namespace, settings: MeshSettings) -> Path:
    """``--event-log``, else the event log of the configured feature repo (``FeatureRepoConfig``)."""
    if args.event_log is not None:
        return Path(args.event_log)
    from mesh.features import FeatureRepoConfig

    return FeatureRepoConfig.from_settings(settings).event_log_dir


def logged_training_events(args: argparse.Namespace, settings: MeshSettings, types: Container[str] | None = None
                           ) -> list[Envelope]:
    """The events of the event log chosen by the arguments (of ``types`` only, when given); SystemExit when
    there are none to train on."""
    root = event_log_dir(args, settings)
    events = events_from_log(root, types)
    if not events:
        raise SystemExit(f"no training events in the event log at {root}")
    log.info("%d training events from the event log at %s", len(events), root)
    return events


def events_from_log(root: Path, types: Container[str] | None = None) -> list[Envelope]:
    """The offline event log as one time-ordered stream (of ``types`` only, when given): redeliveries
    dropped (the log is at-least-once), events of the same instant kept in the order they were logged."""
    from mesh.features import EventLog

    seen: set[str] = set()
    events: list[Envelope] = []
    for logged in EventLog(root).read():
        env = logged.envelope
        if (types is None or env.type in types) and env.event_id not in seen:
            seen.add(env.event_id)
            events.append(env)
    return sorted(events, key=occurred_at)

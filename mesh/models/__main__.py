"""`python -m mesh.models {versions,rollback,history} <model>`: the registry's versioning and rollback API.

- ``versions <model>``: every version, newest first, with its aliases, the metrics logged with its run,
  the time range of its training data and who last made it champion (and when, and how);
- ``rollback <model> [--to VERSION] [--reason TEXT]``: move ``champion`` back to the previous champion (the
  recorded alias history is replayed: two rollbacks go two champions back) or to ``VERSION``; the move is
  recorded with who (``MESH_ACTOR`` or the OS user) and when. Serving processes follow the alias within
  ``models.reload_interval_s`` (``ReloadingModel`` warms the version up before swapping it in);
- ``history <model> [--alias ALIAS]``: the recorded moves of an alias.

The registry is the one of ``MeshSettings().models`` (``MESH_MODELS__TRACKING_URI``). ``--json`` prints
machine-readable output. Exit status 2 on bad input (unknown model or version), with a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from mesh.config import MeshSettings
from mesh.errors import InvalidArgument, NotFound
from mesh.models._registry import CHAMPION, AliasMove, ModelRegistry, VersionInfo

_SHOWN_METRICS = 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mesh.models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    versions = sub.add_parser("versions", help="list the versions of a model")
    versions.add_argument("model")
    versions.add_argument("--json", action="store_true")
    rollback = sub.add_parser("rollback", help="move champion back to the previous champion")
    rollback.add_argument("model")
    rollback.add_argument("--to", help="the version to roll back to (default: the previous champion)")
    rollback.add_argument("--reason", default="", help="recorded with the move")
    rollback.add_argument("--json", action="store_true")
    history = sub.add_parser("history", help="the recorded moves of an alias")
    history.add_argument("model")
    history.add_argument("--alias", default=CHAMPION)
    history.add_argument("--json", action="store_true")
    return parser


def version_row(info: VersionInfo) -> dict[str, Any]:
    """One version as a JSON-able dict (the ``--json`` output of ``versions``)."""
    return {"version": info.version, "aliases": info.aliases, "metrics": info.metrics,
            "data_start": info.data_start, "data_end": info.data_end,
            "created": datetime.fromtimestamp(info.created_ms / 1000, UTC).isoformat(timespec="seconds"),
            "promoted": None if info.promoted is None else info.promoted.as_dict()}


def versions_table(infos: list[VersionInfo]) -> str:
    """The human-readable listing of ``versions``."""
    lines = [f"{'version':<8}{'aliases':<22}{'data range':<25}{'champion by':<30}metrics"]
    for info in infos:
        data = f"{info.data_start[:10]}..{info.data_end[:10]}" if info.data_start else "-"
        who = "-" if info.promoted is None else (f"{info.promoted.actor} {info.promoted.at[:16]} "
                                                 f"({info.promoted.action})")
        shown = sorted(info.metrics.items())[:_SHOWN_METRICS]
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in shown)
        more = f" (+{len(info.metrics) - len(shown)})" if len(info.metrics) > len(shown) else ""
        lines.append(f"{info.version:<8}{','.join(info.aliases) or '-':<22}{data:<25}{who:<30}{metrics}{more}")
    return "\n".join(lines)


def _move_line(move: AliasMove) -> str:
    came = "unset" if move.previous is None else f"v{move.previous}"
    why = f": {move.reason}" if move.reason else ""
    return f"{move.at} {move.alias} {came} -> v{move.version} by {move.actor} ({move.action}){why}"


def main(argv: list[str] | None = None, registry: ModelRegistry | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        models = registry or ModelRegistry(MeshSettings().models)
        if args.command == "versions":
            infos = models.versions(args.model)
            print(json.dumps([version_row(i) for i in infos], indent=2) if args.json else versions_table(infos))
        elif args.command == "rollback":
            move = models.rollback(args.model, to=args.to, reason=args.reason)
            print(json.dumps(move.as_dict()) if args.json else f"{args.model}: {_move_line(move)}")
        else:
            moves = models.alias_history(args.model, args.alias)
            if args.json:
                print(json.dumps([m.as_dict() for m in moves], indent=2))
            else:
                print("\n".join(_move_line(m) for m in moves) or f"no recorded moves of {args.alias}")
    except (NotFound, InvalidArgument) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

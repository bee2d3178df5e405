"""`python -m mesh.mlops {live,compare} <capability> ...`: live metrics on delayed outcomes, and shadow evidence.

- ``live <capability> --tenant T --model NAME [--versions V ...]``: the live metric of each version (outcomes
  joined so far, mean of every metric the service declares);
- ``compare <capability> --model NAME [--champion V] [--challenger V] [--tenant T ...] [--min-outcomes N]
  [--margin M] [--promote]``: champion vs challenger on the outcomes both were scored on (the challenger
  served in shadow), the mean paired improvement with a 95% bootstrap interval; with ``--promote`` the
  registry's ``champion`` moves to the challenger only when the evidence passes (recorded, see
  ``python -m mesh.models history``). Versions default to the registry's ``champion`` / ``challenger``.

The capability's outcome spec is ``services.<capability>.outcomes.SPEC``; the joiner state is read from the
deployment's Redis (``MESH_REDIS__URL``, namespace from ``MESH_KAFKA__TOPIC_PREFIX``). Exit 2 on bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mesh.config import MeshSettings
from mesh.errors import InvalidArgument, NotFound
from mesh.features import RedisAggregates
from mesh.mlops._outcomes import LiveMetricState, OutcomeSpec, live_table, reducers
from mesh.mlops._runtime import joiner_namespace
from mesh.mlops._shadow import paired_scores, promote_on_evidence, shadow_evidence


def spec_of(capability: str) -> OutcomeSpec:
    """The outcome spec a service declares next to itself (``services/<capability>/outcomes.py``)."""
    try:
        module = importlib.import_module(f"services.{capability}.outcomes")
    except ModuleNotFoundError:
        raise NotFound(f"capability {capability!r} declares no outcomes (services/{capability}/outcomes.py)") from None
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, OutcomeSpec):
        raise InvalidArgument(f"services.{capability}.outcomes.SPEC is not an OutcomeSpec")
    return spec


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mesh.mlops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    live = sub.add_parser("live", help="live metrics per version in a tenant")
    live.add_argument("capability")
    live.add_argument("--tenant", required=True)
    live.add_argument("--model", required=True)
    live.add_argument("--versions", nargs="*", default=None, help="default: champion and challenger")
    compare = sub.add_parser("compare", help="champion vs shadow challenger on the same outcomes")
    compare.add_argument("capability")
    compare.add_argument("--model", required=True)
    compare.add_argument("--champion")
    compare.add_argument("--challenger")
    compare.add_argument("--tenant", action="append", dest="tenants")
    compare.add_argument("--min-outcomes", type=int, default=100)
    compare.add_argument("--margin", type=float, default=0.0)
    compare.add_argument("--promote", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = MeshSettings()
    try:
        import redis

        from mesh.models import CHALLENGER, CHAMPION, ModelRegistry

        spec = spec_of(args.capability)
        store = RedisAggregates(redis.Redis.from_url(settings.redis.url), joiner_namespace(settings, spec.capability),
                                reducers=reducers(spec))
        registries: list[ModelRegistry] = []

        def registry() -> ModelRegistry:  # opened only when an alias must be read or moved
            if not registries:
                registries.append(ModelRegistry(settings.models))
            return registries[0]

        def version(given: str | None, alias: str) -> str:
            found = given or registry().version_of(args.model, alias)
            if found is None:
                raise NotFound(f"{args.model} has no {alias}; pass the version")
            return f"{args.model}:{found}"

        if args.command == "live":
            names = [f"{args.model}:{v}" for v in args.versions] if args.versions else \
                [version(None, CHAMPION), version(None, CHALLENGER)]
            states = {n: store.load(LiveMetricState, args.tenant, n) or LiveMetricState(tenant_id=args.tenant,
                                                                                         entity_id=n)
                      for n in names}
            metrics = sorted({m for s in states.values() for m in s.sums} or {spec.metric})
            print(live_table(states, metrics))
            return 0
        champion, challenger = version(args.champion, CHAMPION), version(args.challenger, CHALLENGER)
        a, b = paired_scores(store, spec, champion, challenger, args.tenants)
        evidence = shadow_evidence(spec, champion, challenger, a, b, min_outcomes=args.min_outcomes,
                                   margin=args.margin)
        print(evidence.summary())
        if args.promote:
            print("promoted" if promote_on_evidence(registry(), evidence) else "not promoted")
    except (NotFound, InvalidArgument) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

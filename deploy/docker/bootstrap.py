"""First champions for a fresh deployment (compose service `bootstrap`, k8s Job `bootstrap`).

1. Makes sure the `sunday-ml` experiment exists on the tracking server (MESH_MODELS__TRACKING_URI) with the
   server's default artifact root, i.e. artifacts proxied by the server (mlflow-artifacts:/): no process then
   writes a model where only it can read it.
2. When the registry holds no registered model at all, trains every service's models from simulated history
   (the image's `simulator`; `--source simulator`) and registers them: `champion` moves to each first version.
   A registry that already has models is left alone (retraining is the CronJobs' job, from the event log).

`python deploy/docker/bootstrap.py [--dry-run] [--only SERVICE ...]`; exits non-zero when a training failed,
after running the others (a service without a champion answers Unavailable until one is registered).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

EXPERIMENT = "sunday-ml"
PY = sys.executable
# service -> the command that trains and registers its first models from a simulated world
TRAININGS: dict[str, list[str]] = {
    "assignment": [PY, "-m", "services.assignment.train", "--source", "simulator"],
    "timeline": [PY, "-m", "services.timeline.train", "--source", "simulator"],
    "anomaly": [PY, "-m", "services.anomaly.train", "--source", "simulator"],
    "personalization": [PY, "-m", "services.personalization.train", "--source", "simulator"],
    "automation": [PY, "-m", "services.automation.train", "--source", "simulator"],
    # the embedder (all-MiniLM-L6-v2 from the offline package in the lock); default search calibration
    "nlp": [PY, "-m", "services.nlp.export", "--no-calibration", "--out", "/var/lib/mesh/nlp"],
}


def _say(msg: str) -> None:
    print(f"[bootstrap] {msg}", flush=True)


def _client(uri: str, wait_s: float) -> object:
    from mlflow import MlflowClient

    deadline = time.monotonic() + wait_s
    while True:
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)
            return client
        except Exception as e:  # the server may still be starting
            if time.monotonic() > deadline:
                msg = f"[bootstrap] ERROR: no MLflow tracking server at {uri} after {wait_s:.0f}s: {e}"
                raise SystemExit(msg) from e
            time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bootstrap", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(TRAININGS), default=sorted(TRAININGS))
    parser.add_argument("--dry-run", action="store_true", help="print what would run")
    parser.add_argument("--wait-s", type=float, default=300, help="how long to wait for the tracking server")
    args = parser.parse_args(argv)
    uri = os.environ.get("MESH_MODELS__TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        raise SystemExit("[bootstrap] ERROR: MESH_MODELS__TRACKING_URI must be the MLflow server (http://...)")
    os.environ.setdefault("MLFLOW_TRACKING_URI", uri)
    client = _client(uri, args.wait_s)
    if client.get_experiment_by_name(EXPERIMENT) is None:  # type: ignore[attr-defined]
        client.create_experiment(EXPERIMENT)  # type: ignore[attr-defined]
        _say(f"created experiment {EXPERIMENT} (artifacts proxied by the server)")
    models = client.search_registered_models(max_results=1)  # type: ignore[attr-defined]
    if models:
        _say(f"registry at {uri} already has models ({models[0].name}, ...): nothing to do")
        return 0
    failed = []
    for service in args.only:
        cmd = TRAININGS[service]
        _say(f"{service}: {' '.join(cmd[1:])}")
        if args.dry_run:
            continue
        started = time.monotonic()
        rc = subprocess.call(cmd)
        _say(f"{service}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {time.monotonic() - started:.0f}s")
        if rc:
            failed.append(service)
    if failed:
        _say(f"no first champion for: {', '.join(failed)} (they answer Unavailable); see the log above")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, the local stack (started here, stopped at the end
# even on failure, unless it was already running), lint, type checks, pytest, the SDK tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
started_here=0
if ! deploy/local/stack.sh status >/dev/null 2>&1; then started_here=1; fi
cleanup() { if [ "$started_here" = 1 ]; then deploy/local/stack.sh stop; fi; }
trap cleanup EXIT
deploy/local/stack.sh start
export MESH_ENVIRONMENT=test MLFLOW_DISABLE_TELEMETRY=true ORT_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 \
  TRANSFORMERS_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
echo "[test] ruff"; .venv/bin/ruff check .
echo "[test] mypy --strict"; .venv/bin/mypy $(for d in mesh services gateway simulator bench; do [ -d "$d" ] && echo "$d"; done)
echo "[test] pytest"; .venv/bin/pytest -q -p no:cacheprovider "$@"
if [ -f sdk/typescript/package.json ]; then echo "[test] SDK (vitest against a live gateway)"; scripts/test-sdk.sh; fi

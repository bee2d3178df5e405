#!/usr/bin/env bash
# The main job: set-up, the local stack, then a simulated Sunday.com week through the mesh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
deploy/local/stack.sh start
export MLFLOW_DISABLE_TELEMETRY=true ORT_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# models: the stack's MLflow tracking server, over HTTP, for training and for every service
export MESH_MODELS__TRACKING_URI="${MESH_MODELS__TRACKING_URI:-http://127.0.0.1:${MESH_MLFLOW_PORT:-15000}}"
.venv/bin/python scripts/demo.py "$@"
echo "[demo] the stack is still running (deploy/local/stack.sh stop to stop it)"

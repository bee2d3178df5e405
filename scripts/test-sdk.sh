#!/usr/bin/env bash
# The TypeScript SDK's tests against a LIVE gateway: a stub gRPC backend (assignment, timeline, nlp,
# personalization, automation; anomaly configured at a port nobody listens on: the 503 path) and the real
# gateway (uvicorn) on free loopback ports, `npm ci`, vitest; everything started here is stopped on exit,
# even on failure. Needs the local Redis (deploy/local/stack.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
export PYTHONPATH="$ROOT:$ROOT/gen${PYTHONPATH:+:$PYTHONPATH}"
WORK="$(mktemp -d)"
pids=()
RUN_ID="$($PY -c 'import uuid; print(uuid.uuid4().hex[:10])')"
PREFIX="sdk-test-$RUN_ID:"
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  "$PY" - "$PREFIX" <<'PYEOF' || true
import sys
from redis import Redis
from mesh.config import MeshSettings
r = Redis.from_url(MeshSettings().redis.url)
keys = list(r.scan_iter(match=sys.argv[1] + "*", count=1000))
if keys:
    r.delete(*keys)
PYEOF
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_for() {  # wait_for <what> <command...>: bounded poll
  local what="$1"; shift
  for _ in $(seq 1 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "[sdk] $what did not come up; logs:" >&2; tail -n 50 "$WORK"/*.log >&2 || true; return 1
}

"$PY" -m gateway.devtools.stub_backend --port 0 --port-file "$WORK/backend.port" >"$WORK/backend.log" 2>&1 &
pids+=($!)
wait_for "stub backend" test -s "$WORK/backend.port"
BACKEND="127.0.0.1:$(cat "$WORK/backend.port")"

GATEWAY_PORT="$(free_port)"
ADMIN_TOKEN="sdk-admin-$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
PLANS='{"free":{"rate_per_s":50,"burst":200,"client_rate_per_s":50,"client_burst":200,"daily_quota":100000,"monthly_quota":1000000},
        "sdk-tiny":{"rate_per_s":0.01,"burst":2,"client_rate_per_s":0.01,"client_burst":2,"daily_quota":1000,"monthly_quota":1000}}'
MESH_ENVIRONMENT=test MESH_PORT="$GATEWAY_PORT" MESH_REDIS_PREFIX="$PREFIX" MESH_AUTH__ADMIN_TOKEN="$ADMIN_TOKEN" \
MESH_BACKENDS__ASSIGNMENT="$BACKEND" MESH_BACKENDS__TIMELINE="$BACKEND" MESH_BACKENDS__NLP="$BACKEND" \
MESH_BACKENDS__PERSONALIZATION="$BACKEND" MESH_BACKENDS__AUTOMATION="$BACKEND" MESH_BACKENDS__ANOMALY="127.0.0.1:$(free_port)" \
MESH_WEBHOOKS__WORKER_ENABLED=false \
MESH_WEBHOOKS__ALLOW_PRIVATE_TARGETS=true MESH_PLANS="$PLANS" \
  "$PY" -m gateway serve >"$WORK/gateway.log" 2>&1 &
pids+=($!)
GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT"
wait_for "gateway" "$PY" -c "import httpx,sys; sys.exit(httpx.get('$GATEWAY_URL/healthz').status_code != 200)"

cd sdk/typescript
npm ci --no-audit --no-fund --loglevel=error
# The types are generated from the checked-in OpenAPI; a stale copy fails here.
npx openapi-typescript ../../docs/openapi.json -o "$WORK/schema.d.ts" >/dev/null
diff -q src/schema.d.ts "$WORK/schema.d.ts" || { echo "[sdk] src/schema.d.ts is stale: npm run generate" >&2; exit 1; }
npx tsc --noEmit
GATEWAY_URL="$GATEWAY_URL" GATEWAY_ADMIN_TOKEN="$ADMIN_TOKEN" npx vitest run

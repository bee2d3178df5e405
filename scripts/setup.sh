#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: uv, the venv from requirements.lock, generated protobuf code,
# the Kafka jars and redis-server. A second run only checks and returns in seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '[setup] %s\n' "$*"; }

command -v python3.11 >/dev/null || command -v python3 >/dev/null || { echo "[setup] ERROR: Python 3.11 not found" >&2; exit 1; }
if ! command -v uv >/dev/null; then say "installing uv from PyPI"; python3 -m pip install -q uv; fi

stamp=.venv/.lock.sha
want="$(sha256sum requirements.lock | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "creating .venv from requirements.lock (first run downloads ~3 GB; later runs use uv's cache)"
  [ -x .venv/bin/python ] || uv venv -q .venv --python 3.11
  uv pip sync -q -p .venv/bin/python requirements.lock
  # The project's packages (and the generated protobuf package) are importable from the venv.
  site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  printf '%s\n%s\n' "$ROOT" "$ROOT/gen" > "$site/sunday_mesh.pth"
  echo "$want" > "$stamp"
else
  say ".venv is up to date"
fi

# Generated code is rebuilt whenever a .proto is newer than the output.
if [ ! -f gen/.stamp ] || [ -n "$(find proto -name '*.proto' -newer gen/.stamp)" ]; then
  say "generating protobuf/gRPC code into gen/"
  # generated beside gen/ and swapped in: a process importing gen/ meanwhile never sees it half-written
  tmp="$(mktemp -d "$ROOT/.gen.XXXXXX")"
  if ! PATH="$ROOT/.venv/bin:$PATH" .venv/bin/python -m grpc_tools.protoc -Iproto \
      --python_out="$tmp" --grpc_python_out="$tmp" --mypy_out="$tmp" --mypy_grpc_out="$tmp" \
      $(find proto -name "*.proto" | sort) >"$tmp/.protoc.log" 2>&1; then
    cat "$tmp/.protoc.log" >&2; rm -rf "$tmp"; echo "[setup] ERROR: protoc failed" >&2; exit 1
  fi
  find "$tmp" -type d -exec touch {}/__init__.py \;
  rm -f "$tmp/__init__.py"
  touch "$tmp/.stamp"
  old="$ROOT/.gen.old.$$"
  [ -d gen ] && mv gen "$old"
  mv "$tmp" gen
  rm -rf "$old"
fi

deploy/local/stack.sh jars
command -v redis-server >/dev/null || {
  say "installing Debian's redis-server"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}
say "ready"

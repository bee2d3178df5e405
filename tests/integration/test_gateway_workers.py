"""`python -m gateway serve` as deployed: several uvicorn worker processes sharing the signing keys, so a
token issued by one worker is accepted by every other; and the settings refuse workers without shared keys."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from gateway.backends import Backends
from gateway.devtools.harness import new_signing_key
from gateway.settings import BackendSettings, GatewaySettings
from tests.support import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_workers_without_shared_signing_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"workers > 1 needs auth\.signing_keys"):
        GatewaySettings(environment="test", workers=2)


async def test_backend_stubs_are_spread_over_several_channels() -> None:
    backends = Backends.connect(BackendSettings(assignment="127.0.0.1:1", timeline="", nlp="", anomaly="",
                                                personalization="", automation="", channels_per_target=3))
    try:
        assert len(backends.channels) == 3 and backends.timeline is None
        seen = {id(backends.assignment) for _ in range(6)}
        assert len(seen) == 3  # round robin over the three channels' stubs
    finally:
        await backends.close()


def test_tokens_from_one_worker_are_accepted_by_every_worker() -> None:
    key = new_signing_key("k1")
    port, admin = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}", "MESH_ENVIRONMENT": "test", "MESH_PORT": str(port),
           "MESH_WORKERS": "2", "MESH_REDIS_PREFIX": f"wk-{admin[:8]}:", "MESH_AUTH__ADMIN_TOKEN": admin,
           "MESH_AUTH__SIGNING_KEYS": json.dumps([{"kid": key.kid,
                                                   "private_key_pem": key.private_key_pem.get_secret_value()}]),
           "MESH_WEBHOOKS__WORKER_ENABLED": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, "gateway workers", 60,
                   ignore=(OSError, httpx.HTTPError))
        created = httpx.post(f"{url}/v1/admin/clients", headers={"Authorization": f"Bearer {admin}"},
                             json={"tenant_id": "acme", "scopes": ["webhooks:read"]}).json()
        token = httpx.post(f"{url}/oauth/token", data={"grant_type": "client_credentials",
                                                       "client_id": created["client_id"],
                                                       "client_secret": created["client_secret"]}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        # one token, a new connection per call: the kernel spreads the connections over both workers
        statuses = [httpx.get(f"{url}/v1/webhooks", headers=headers).status_code for _ in range(20)]
        assert statuses == [200] * 20
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    log = out.decode(errors="replace")
    started = {line.split("[", 1)[1].split("]", 1)[0] for line in log.splitlines() if "Started server process" in line}
    assert len(started) == 2, log[-2000:]  # two worker processes served

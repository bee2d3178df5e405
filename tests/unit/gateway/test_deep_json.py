"""A deeply nested JSON body under the size limit is a 400 problem on every route, with nothing in the log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.devtools import harness

NESTINGS = {"past Python's recursion limit": 5000, "past the gateway's depth limit": 100}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with harness.lifespan_client(harness.build(harness.gateway_settings())) as client:
        yield client


def _body_routes(http: httpx.AsyncClient) -> list[tuple[str, str]]:
    spec = http._transport.app.openapi()  # type: ignore[attr-defined]
    routes = [(method.upper(), path.replace("{subscription_id}", "wh_" + "0" * 20)
               .replace("{delivery_id}", "dlv_" + "0" * 24).replace("{key_id}", "0" * 16))
              for path, ops in spec["paths"].items() for method in ops if method in ("post", "patch", "put")]
    assert len(routes) >= 8
    return routes


@pytest.mark.parametrize("depth", NESTINGS.values(), ids=NESTINGS.keys())
@pytest.mark.parametrize("shape", ["array", "object"])
async def test_deep_json_is_a_400_problem_on_every_route(http: httpx.AsyncClient, depth: int, shape: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    token = await harness.token(http, await harness.create_client(http, "acme"))
    body = (b"[" * depth + b"]" * depth if shape == "array"
            else b'{"task_id": "t", "x": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}")
    assert len(body) < 64 * 1024  # under the size limit: the nesting is what is refused
    caplog.set_level(logging.INFO)
    for method, path in _body_routes(http):
        for headers in ({"Authorization": f"Bearer {token}"}, {"Authorization": f"Bearer {harness.ADMIN_TOKEN}"}):
            response = await http.request(method, path, content=body,
                                          headers={**headers, "content-type": "application/json"})
            assert response.status_code == 400, (method, path, response.status_code, response.text[:200])
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["type"].endswith("/bad-request") and "nested" in response.json()["detail"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text


async def test_a_streamed_body_over_the_size_limit_is_413(http: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit counts what arrives
        for _ in range(70):
            yield b"x" * 1024

    response = await http.post("/oauth/token", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.headers["content-type"] == "application/problem+json"

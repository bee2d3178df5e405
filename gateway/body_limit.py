"""Request body guard as a pure ASGI middleware: a size limit (Content-Length and the streamed body both)
and a JSON nesting limit, both answered with a problem before any route or parser sees the body.

Deep nesting under the size limit is refused here because every JSON parser and validator behind it
recurses (CPython's json raises RecursionError, FastAPI turns some of those into 400s and the token
endpoint's own parsing into a 500 with tracebacks); counting brackets is linear and cannot recurse.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.problems import PROBLEM_MEDIA_TYPE, TYPE_BASE

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS = frozenset(b"[{")


def json_depth(body: bytes, stop_after: int) -> int:
    """Nesting depth of a JSON text (strings skipped); counting stops once past ``stop_after``."""
    if b"[" not in body and b"{" not in body:
        return 0
    depth = peak = 0
    for byte in _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in _OPENERS else -1
        if depth > peak:
            peak = depth
            if peak > stop_after:
                break
    return peak


def _is_json(scope: Scope) -> bool:
    content_type = dict(scope.get("headers") or []).get(b"content-type", b"").split(b";")[0].strip().lower()
    return not content_type or content_type.endswith(b"json")  # FastAPI parses a body without a type as JSON


class BodySizeLimit:
    """Answers 413 when a request body exceeds ``max_bytes`` and 400 when a JSON body nests deeper than
    ``max_json_depth`` (problem details both). The body is read whole (at most ``max_bytes``) and replayed."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_depth: int = 32) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _problem(scope, send, 413, "payload-too-large", f"request body exceeds {self.max_bytes} bytes")
            return
        body, last = await self._read(receive)
        if body is None:
            await _problem(scope, send, 413, "payload-too-large", f"request body exceeds {self.max_bytes} bytes")
            return
        if _is_json(scope) and json_depth(body, self.max_json_depth) > self.max_json_depth:
            await _problem(scope, send, 400, "bad-request", f"JSON nested deeper than {self.max_json_depth} levels")
            return
        await self.app(scope, _replay(body, last, receive), send)

    async def _read(self, receive: Receive) -> tuple[bytes | None, Message | None]:
        """The whole body (None past the limit), and a disconnect that came instead of more body."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), message
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                return None, None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _replay(body: bytes, last: Message | None, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return last or {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the disconnect, when it comes

    return replay


async def _problem(scope: Scope, send: Send, status: int, slug: str, detail: str) -> None:
    title = {400: "Bad Request", 413: "Payload Too Large"}[status]
    body = json.dumps({"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail,
                       "instance": scope.get("path", "")}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})

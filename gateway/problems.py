"""One error shape: RFC 9457 problem details, for every error the gateway answers, never a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from mesh.telemetry import current_trace_id

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://api.sunday.com/problems/"


class FieldError(BaseModel):
    """One invalid input field."""

    field: str = Field(description="dotted location of the field, e.g. `body.k`")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(description="URI identifying the problem type")
    title: str = Field(description="short summary of the problem type")
    status: int = Field(description="HTTP status code")
    detail: str | None = Field(default=None, description="explanation specific to this occurrence")
    instance: str | None = Field(default=None, description="the request path")
    trace_id: str | None = Field(default=None, description="W3C trace id of the request, for support")
    errors: list[FieldError] | None = Field(default=None, description="invalid fields (validation errors only)")
    retry_after_s: int | None = Field(default=None, description="when a retry may succeed (429, 503)")
    error: str | None = Field(default=None, description="OAuth 2.0 error code (token endpoint only, RFC 6749 5.2)")


class ProblemError(Exception):
    """Raised anywhere in the gateway to answer with a problem; ``headers`` are added to the response."""

    def __init__(self, status: int, slug: str, title: str, detail: str | None = None,
                 headers: Mapping[str, str] | None = None, retry_after_s: int | None = None,
                 error: str | None = None) -> None:
        super().__init__(detail or title)
        self.error = error
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.headers = dict(headers or {})
        self.retry_after_s = retry_after_s
        if retry_after_s is not None:
            self.headers.setdefault("Retry-After", str(retry_after_s))


def unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, "unauthorized", "Unauthorized", detail,
                        {"WWW-Authenticate": 'Bearer error="invalid_token"'})


def forbidden(detail: str) -> ProblemError:
    return ProblemError(403, "forbidden", "Forbidden", detail)


def not_found(what: str) -> ProblemError:
    return ProblemError(404, "not-found", "Not Found", f"{what} not found")


def unavailable(detail: str, retry_after_s: int) -> ProblemError:
    return ProblemError(503, "unavailable", "Service Unavailable", detail, retry_after_s=retry_after_s)


def problem_response(request_path: str, problem: ProblemError) -> JSONResponse:
    body = Problem(type=TYPE_BASE + problem.slug, title=problem.title, status=problem.status,
                   detail=problem.detail, instance=request_path, trace_id=current_trace_id() or None,
                   retry_after_s=problem.retry_after_s, error=problem.error)
    return _json(body, problem.headers)


def _json(body: Problem, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body.model_dump(exclude_none=True), status_code=body.status, headers=dict(headers or {}),
                        media_type=PROBLEM_MEDIA_TYPE)


_STATUS_SLUGS = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
                 405: "method-not-allowed", 406: "not-acceptable", 413: "payload-too-large",
                 415: "unsupported-media-type", 429: "too-many-requests"}


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(request.url.path, exc)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = _title(exc.status_code)
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    slug = _STATUS_SLUGS.get(exc.status_code, "http-error")
    return problem_response(request.url.path, ProblemError(exc.status_code, slug, title, detail, exc.headers))


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [FieldError(field=".".join(str(p) for p in err.get("loc", ())), message=str(err.get("msg", "")))
              for err in exc.errors()]
    body = Problem(type=TYPE_BASE + "validation", title="Invalid request", status=422,
                   detail=f"{len(errors)} invalid field(s)", instance=request.url.path,
                   trace_id=current_trace_id() or None, errors=errors)
    return _json(body)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The message may hold internals: it goes to the log, the caller gets the trace id to quote.
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(request.url.path, ProblemError(500, "internal", "Internal Server Error",
                                                           "an unexpected error occurred"))


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(Exception, _on_unexpected)


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": desc}
    for code, desc in {400: "malformed request (body not JSON, nested too deeply)",
                       401: "missing or invalid credentials", 403: "insufficient scope",
                       422: "invalid input", 429: "rate limit or quota exceeded"}.items()
}

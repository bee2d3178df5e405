"""Delivers due webhook deliveries: sign, POST (no redirects), retry 5xx/timeouts with backoff, dead-letter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

import httpx
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import SpanKind, Status, StatusCode

from gateway.metrics import WEBHOOK_DELIVERIES
from gateway.settings import WebhookSettings
from gateway.webhooks import signing
from gateway.webhooks.models import Attempt
from gateway.webhooks.sealing import SealError
from gateway.webhooks.ssrf import Resolver, TargetGuard, UnsafeTarget, check_url, system_resolver
from gateway.webhooks.store import WebhookStore
from gateway.webhooks.transport import webhook_client
from mesh.bus import RetryPolicy

log = logging.getLogger(__name__)
SPAN_DELIVER = "gateway.webhook.deliver"


def _retryable(status: int | None) -> bool:
    """Timeouts and connection errors (None), 5xx, 408 and 429 may succeed later; the rest will not."""
    return status is None or status >= 500 or status in (408, 429)


class Dispatcher:
    def __init__(self, store: WebhookStore, settings: WebhookSettings, client: httpx.AsyncClient,
                 clock: Callable[[], float]) -> None:
        self._store = store
        self._settings = settings
        self._client = client
        self._clock = clock
        self._policy = RetryPolicy(max_attempts=settings.max_attempts, initial_backoff_s=settings.initial_backoff_s,
                                   multiplier=settings.multiplier, max_backoff_s=settings.max_backoff_s,
                                   jitter=settings.jitter)
        self._tracer = trace.get_tracer("gateway.webhooks")

    @staticmethod
    def make_client(settings: WebhookSettings, *, resolver: Resolver = system_resolver,
                    verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
        """The delivery client: it dials only addresses the SSRF guard checked; redirects are never followed
        (a 3xx is a failed attempt, whatever its Location)."""
        return webhook_client(TargetGuard(settings.allow_private_targets, resolver), settings.timeout_s, verify)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                handled = await self.dispatch_due()
            except Exception:  # Redis hiccup: log and keep going; claims come back after their lease
                log.exception("webhook dispatch round failed")
                handled = 0
            if not handled:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._settings.dispatch_interval_s)

    async def dispatch_due(self) -> int:
        ids = await self._store.claim_due(self._settings.dispatch_batch, lease_s=self._settings.timeout_s * 3)
        await asyncio.gather(*(self.deliver(i) for i in ids))
        return len(ids)

    async def deliver(self, dlv_id: str) -> None:
        data = await self._store.load(dlv_id)
        if not data:
            await self._store.drop(dlv_id)
            return
        parent = extract({"traceparent": data.get("traceparent", b"").decode()})
        with self._tracer.start_as_current_span(SPAN_DELIVER, context=parent, kind=SpanKind.CLIENT, attributes={
                "sunday.delivery_id": dlv_id, "sunday.tenant_id": data["tenant_id"].decode(),
                "sunday.event_type": data["event_type"].decode()}) as span:
            await self._attempt(dlv_id, data, span)

    async def _attempt(self, dlv_id: str, data: dict[str, bytes], span: trace.Span) -> None:
        tenant = data["tenant_id"].decode()
        attempt_no = int(data["attempts"]) + 1
        try:
            target = await self._store.target(data["subscription_id"].decode())
        except SealError as exc:  # its key is missing from the settings: may work once it is back
            log.error("webhook delivery %s: %s", dlv_id, exc)
            failed = Attempt(attempt=attempt_no, at=self._clock(), error=str(exc))
            await self._finish(dlv_id, tenant, failed, retry=True)
            return
        if target is None:  # subscription deleted or paused: nothing to send to
            await self._finish(dlv_id, tenant, Attempt(attempt=attempt_no, at=self._clock(),
                                                       error="subscription inactive"), retry=False)
            return
        url, secret = target
        status, error = await self._post(url, secret, dlv_id, data)
        span.set_attribute("http.response.status_code", status or 0)
        ok = status is not None and 200 <= status < 300
        if not ok:
            span.set_status(Status(StatusCode.ERROR, error or f"HTTP {status}"))
        attempt = Attempt(attempt=attempt_no, at=self._clock(), status_code=status, error=error)
        if ok:
            await self._store.record(dlv_id, tenant, attempt, status="delivered", retry_at=None)
            WEBHOOK_DELIVERIES.labels("ok").inc()
        else:
            await self._finish(dlv_id, tenant, attempt, retry=_retryable(status))

    async def _post(self, url: str, secret: str, dlv_id: str, data: dict[str, bytes]) -> tuple[int | None, str | None]:
        body = data["body"]
        headers = signing.headers(dlv_id, data["event_type"].decode(), secret, int(self._clock()), body)
        inject(headers)
        try:
            # The shape here; the addresses inside the client's connect, where they are dialed (no second lookup).
            check_url(url, self._settings.allow_private_targets)
            response = await self._client.post(url, content=body, headers=headers)
        except UnsafeTarget as exc:
            return 0, str(exc)
        except httpx.TimeoutException:
            return None, "timeout"
        except httpx.HTTPError as exc:
            return None, type(exc).__name__
        return response.status_code, None if response.status_code < 300 else f"HTTP {response.status_code}"

    async def _finish(self, dlv_id: str, tenant: str, attempt: Attempt, *, retry: bool) -> None:
        if retry and attempt.attempt < self._policy.max_attempts:
            backoff = self._policy.backoff_s(attempt.attempt)
            attempt = attempt.model_copy(update={"backoff_s": backoff})
            await self._store.record(dlv_id, tenant, attempt, status="retrying", retry_at=self._clock() + backoff)
            WEBHOOK_DELIVERIES.labels("failed").inc()
        else:
            log.warning("webhook delivery %s dead after attempt %d: %s", dlv_id, attempt.attempt,
                        attempt.error or attempt.status_code)
            await self._store.record(dlv_id, tenant, attempt, status="dead", retry_at=None)
            WEBHOOK_DELIVERIES.labels("dead_lettered").inc()

"""The one path every LLM call takes (:class:`LLMPipeline`):

1. PII masking of every text of the context (tenant's people's names included) -> placeholders;
2. response cache in Redis keyed by (tenant, template ``id@version``, model, masked messages): a hit
   returns without spending budget;
3. per-tenant request rate (token bucket) and token budget (per UTC day and month), checked and charged in
   ONE atomic Lua script (:mod:`mesh.limits`); the call reserves prompt estimate + ``max_tokens`` and gives
   back what the provider says it did not use;
4. the provider call with a timeout per attempt and retries (``mesh.retry.RetryPolicy``) on retryable
   errors (timeouts, connection errors, 429, 5xx);
5. fallback to :class:`LocalProvider` when no provider is configured, the rate or budget is spent, or the
   provider fails (fallback answers are not cached, so the provider's answer is used once it is back);
6. unmasking of the answer with the call's vault.

The cache is per tenant (the key carries the tenant hash tag) although the masked text holds no PII:
tenants never see each other's cached text. The service builds one pipeline per process:

>>> pipeline = LLMPipeline(settings.llm, redis, namespace=settings.namespace)
>>> result = await pipeline.generate(tenant, load_template("meeting_summary"), context, people=names)
>>> result.text, result.source   # source: "provider" | "cache" | "local"
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import BaseModel, Field, SecretStr
from redis.asyncio import Redis
from redis.exceptions import RedisError

from mesh.limits import AtomicLimits, Bucket, Quota
from mesh.retry import RetryPolicy
from services.nlp.text._llm import (
    LLMProvider,
    LLMRequest,
    LLMResponse,
    LocalProvider,
    OpenAICompatibleProvider,
    ProviderError,
    estimate_tokens,
)
from services.nlp.text._pii import PiiMasker, Vault
from services.nlp.text._prompts import PromptContext, PromptTemplate

log = logging.getLogger(__name__)
Source = Literal["provider", "cache", "local"]
C = TypeVar("C", bound=PromptContext)


class LLMSettings(BaseModel):
    """The LLM provider and its limits (nest as ``llm`` in the service's settings: ``MESH_NLP__LLM__...``)."""

    base_url: str | None = Field(None, description="OpenAI-compatible API base URL (e.g. http://vllm:8000/v1); "
                                                    "unset = the local provider only")
    api_key: SecretStr = Field(SecretStr("not-needed"), description="API key sent as a bearer token")
    model: str = Field("gpt-4o-mini", description="model name sent to the provider")
    timeout_s: float = Field(20.0, gt=0, description="timeout of one attempt")
    max_attempts: int = Field(3, ge=1, description="attempts per call on retryable errors (first included)")
    cache_ttl_s: int = Field(7 * 86400, ge=1, description="how long a provider answer is reused")
    requests_per_s: float = Field(1.0, gt=0, description="per-tenant request rate (refill of the bucket)")
    burst: int = Field(10, ge=1, description="per-tenant request burst")
    daily_tokens: int = Field(200_000, ge=0, description="per-tenant LLM token budget per UTC day")
    monthly_tokens: int = Field(3_000_000, ge=0, description="per-tenant LLM token budget per UTC month")


@dataclass(frozen=True)
class Generated:
    text: str
    source: Source
    reason: str
    """why local answered ("no provider", "budget", "rate", "provider error: ..."), else """""
    template: str
    """``id@version``"""
    masked: dict[str, int]
    """how many distinct values of each PII kind were masked"""


def mask_context(context: C, masker: PiiMasker, vault: Vault) -> C:
    """``context`` with every text (and every text in a tuple) masked into ``vault``."""
    values: dict[str, object] = {}
    for f in dataclasses.fields(context):
        value = getattr(context, f.name)
        if isinstance(value, str):
            values[f.name] = masker.mask(value, vault)[0]
        elif isinstance(value, tuple):
            values[f.name] = tuple(masker.mask(v, vault)[0] if isinstance(v, str) else v for v in value)
        else:
            values[f.name] = value
    return dataclasses.replace(context, **values)  # type: ignore[arg-type]


class LLMPipeline:
    def __init__(self, settings: LLMSettings, redis: Redis[bytes], namespace: str, *,
                 provider: LLMProvider | None = None, local: LocalProvider | None = None,
                 retry: RetryPolicy | None = None) -> None:
        self.settings = settings
        if provider is None and settings.base_url:
            provider = OpenAICompatibleProvider(settings.base_url, settings.model,
                                                settings.api_key.get_secret_value())
        self.provider = provider
        self.local = local or LocalProvider()
        self._redis = redis
        self._limits = AtomicLimits(redis)
        self._prefix = f"{namespace}:llm:"
        self._retry = retry or RetryPolicy(max_attempts=settings.max_attempts, initial_backoff_s=0.2)

    def _quota(self, tenant: str, cost: int) -> Quota:
        return Quota(f"{self._prefix}{{{tenant}}}:tokens", self.settings.daily_tokens,
                     self.settings.monthly_tokens, cost)

    async def generate(self, tenant: str, template: PromptTemplate, context: PromptContext,
                       people: tuple[str, ...] | list[str] = ()) -> Generated:
        """Run ``template`` on ``context`` for ``tenant`` (``people``: the tenant's people's names, masked)."""
        vault = Vault()
        masked = mask_context(context, PiiMasker(people), vault)
        messages = template.render(masked)
        request = LLMRequest(template, masked, messages, template.max_tokens, template.temperature)

        def done(text: str, source: Source, reason: str = "") -> Generated:
            return Generated(vault.unmask(text), source, reason, template.key, dict(vault.kinds))

        if self.provider is None:
            return done(await self._local(request), "local", "no provider")
        key = self._cache_key(tenant, request)
        cached = await self._cache_get(key)
        if cached is not None:
            return done(cached, "cache")
        reserve = sum(estimate_tokens(m.content) for m in messages) + template.max_tokens
        quota = self._quota(tenant, reserve)
        try:
            verdict = await self._limits.acquire(
                [Bucket(f"{self._prefix}{{{tenant}}}:requests", self.settings.requests_per_s, self.settings.burst)],
                quota)
        except RedisError as e:  # no budget check possible: spend nothing, answer locally
            log.warning("LLM budget unavailable (%s): local answer", e)
            return done(await self._local(request), "local", "budget unavailable")
        if not verdict.allowed:
            reason = "budget" if verdict.bucket_tokens_left and verdict.bucket_tokens_left >= 1 else "rate"
            log.info("tenant %s: LLM %s spent, local answer", tenant, reason)
            return done(await self._local(request), "local", reason)
        try:
            response = await self._call(request)
        except ProviderError as e:
            await self._limits.refund(quota, reserve)
            log.warning("LLM provider failed (%s): local answer", e)
            return done(await self._local(request), "local", f"provider error: {e}")
        await self._limits.refund(quota, reserve - response.prompt_tokens - response.completion_tokens)
        await self._cache_set(key, response.text)
        return done(response.text, "provider")

    async def aclose(self) -> None:
        """Close the provider's HTTP client (the Redis client belongs to the caller)."""
        close = getattr(self.provider, "aclose", None)
        if close is not None:
            await close()

    async def _call(self, request: LLMRequest) -> LLMResponse:
        assert self.provider is not None
        attempt = 1
        while True:
            try:
                return await self.provider.complete(request, self.settings.timeout_s)
            except ProviderError as e:
                if not e.retryable or attempt >= self._retry.max_attempts:
                    raise
                log.info("LLM attempt %d failed (%s): retrying", attempt, e)
                await asyncio.sleep(self._retry.backoff_s(attempt))
                attempt += 1

    async def _local(self, request: LLMRequest) -> str:
        return (await self.local.complete(request, self.settings.timeout_s)).text

    def _cache_key(self, tenant: str, request: LLMRequest) -> str:
        body = json.dumps([request.template.key, self.settings.model,
                           [[m.role, m.content] for m in request.messages]], separators=(",", ":"))
        return f"{self._prefix}{{{tenant}}}:cache:{hashlib.sha256(body.encode()).hexdigest()}"

    async def _cache_get(self, key: str) -> str | None:
        try:
            value = await self._redis.get(key)
        except RedisError as e:  # a cache outage costs a provider call, never the answer
            log.warning("LLM cache read failed: %s", e)
            return None
        return value.decode("utf-8") if value is not None else None

    async def _cache_set(self, key: str, text: str) -> None:
        try:
            await self._redis.set(key, text.encode("utf-8"), ex=self.settings.cache_ttl_s)
        except RedisError as e:
            log.warning("LLM cache write failed: %s", e)

"""LLM providers behind one interface (:class:`LLMProvider`).

- :class:`LocalProvider`: no network, deterministic. ``summary`` templates get the extractive TextRank
  summary of the transcript, ``draft`` templates the template-based draft (:mod:`._drafts`). It reads the
  typed context, not the prompt text. It is the default (no provider configured) and the fallback.
- :class:`OpenAICompatibleProvider`: the ``openai`` client against any server speaking the OpenAI chat
  completions API (OpenAI, vLLM, llama.cpp server, Ollama's ``/v1``), ``base_url`` configurable. The
  client's own retries are off: the pipeline owns timeouts, retries and fallback.

Providers raise :class:`ProviderError` (``retryable`` for timeouts, connection errors, 429 and 5xx).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from services.nlp.text._drafts import draft_description
from services.nlp.text._prompts import ChatMessage, PromptContext, PromptTemplate, SummaryContext
from services.nlp.text._summarize import split_sentences, summarize


@dataclass(frozen=True)
class LLMRequest:
    """One call: the template, its (already masked) context and the rendered messages."""

    template: PromptTemplate
    context: PromptContext
    messages: tuple[ChatMessage, ...]
    max_tokens: int
    temperature: float


@dataclass(frozen=True)
class LLMResponse:
    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str


class ProviderError(Exception):
    """A failed provider call; ``retryable`` when trying again may succeed."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class LLMProvider(Protocol):
    """Anything that completes a rendered prompt."""

    @property
    def name(self) -> str: ...

    async def complete(self, request: LLMRequest, timeout_s: float) -> LLMResponse: ...


def estimate_tokens(text: str) -> int:
    """~4 characters per token (English, BPE tokenizers): what a call reserves before the provider counts."""
    return max(1, len(text) // 4)


class LocalProvider:
    """Extractive summaries and template drafts, in-process."""

    name = "local"

    def __init__(self, summary_words: int = 120) -> None:
        self.summary_words = summary_words

    def generate(self, context: PromptContext) -> str:
        if isinstance(context, SummaryContext):
            sentences = [s for line in context.transcript for s in split_sentences(_drop_speaker(line))]
            return " ".join(summarize(sentences, self.summary_words))
        return draft_description(context)

    async def complete(self, request: LLMRequest, timeout_s: float) -> LLMResponse:
        text = self.generate(request.context)
        prompt = sum(estimate_tokens(m.content) for m in request.messages)
        return LLMResponse(text, prompt, estimate_tokens(text), "local")


def _message(m: ChatMessage) -> Any:
    return {"role": m.role, "content": m.content}  # the client's TypedDict union per role, built by role


def _drop_speaker(line: str) -> str:
    head, sep, rest = line.partition(": ")
    return rest if sep and len(head) <= 60 else line


class OpenAICompatibleProvider:
    """Chat completions over HTTP with the ``openai`` client (one client per provider object)."""

    def __init__(self, base_url: str, model: str, api_key: str = "not-needed") -> None:
        from openai import AsyncOpenAI

        self.model = model
        self.base_url = base_url
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)

    @property
    def name(self) -> str:
        return f"openai-compatible:{self.model}"

    async def complete(self, request: LLMRequest, timeout_s: float) -> LLMResponse:
        import openai

        try:
            response = await asyncio.wait_for(self._client.chat.completions.create(
                model=self.model, messages=[_message(m) for m in request.messages],
                max_tokens=request.max_tokens, temperature=request.temperature, timeout=timeout_s), timeout_s)
        except (TimeoutError, openai.APITimeoutError) as e:
            raise ProviderError(f"{self.base_url}: no answer within {timeout_s:g} s", retryable=True) from e
        except openai.APIStatusError as e:
            retryable = e.status_code == 429 or e.status_code >= 500
            raise ProviderError(f"{self.base_url}: HTTP {e.status_code}", retryable=retryable,
                                status=e.status_code) from e
        except openai.APIConnectionError as e:
            raise ProviderError(f"{self.base_url}: connection failed ({e})", retryable=True) from e
        except openai.OpenAIError as e:
            raise ProviderError(f"{self.base_url}: {e}", retryable=False) from e
        if not response.choices or response.choices[0].message.content is None:
            raise ProviderError(f"{self.base_url}: an answer without text", retryable=True)
        usage = response.usage
        text = response.choices[0].message.content
        prompt = usage.prompt_tokens if usage else sum(estimate_tokens(m.content) for m in request.messages)
        completion = usage.completion_tokens if usage else estimate_tokens(text)
        return LLMResponse(text, prompt, completion, response.model or self.model)

    async def aclose(self) -> None:
        await self._client.close()

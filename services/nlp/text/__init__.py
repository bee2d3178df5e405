"""The text models of the nlp service: a library the service wires in (no I/O at import time).

Sentiment of comments (seed 3.4.5) — :mod:`._sentiment`
    ``SentimentModel.load(path, embed=embedder.encode)`` or ``SentimentModel(onnx_model, embed)`` for a
    registry version (``MODEL_NAME`` = "nlp-sentiment", checked against ``SCHEMA``);
    ``.predict_many(texts) -> list[Sentiment(label, score, confidence, probabilities)]``. The ONNX head
    reads ``term_tf`` (computed here in pure Python) and/or ``embedding`` (the service's MiniLM embedder
    output: L2-normalised, 256 tokens); ``.needs_embeddings`` says whether to pass ``embed``.
    Training: ``python -m services.nlp.text.sentiment_train`` (MLflow, challenger -> champion).
    Rolling features per task / project: :mod:`._rollup` (``add_comment_sentiment``, the two states).

PII masking — :mod:`._pii`
    ``PiiMasker(people).mask(text, vault) -> (masked, vault)``; ``vault.unmask(text)``.

LLM calls — :mod:`._pipeline`, :mod:`._llm`, :mod:`._prompts`
    ``LLMPipeline(LLMSettings, redis, namespace).generate(tenant, load_template(name), context, people)``
    -> ``Generated(text, source, reason, template, masked)``: masking, Redis cache, atomic per-tenant
    rate + token budget (``mesh.limits``), timeouts/retries, local fallback, unmasking.
    Templates: ``meeting_summary`` (``SummaryContext``), ``task_description_draft`` (``DraftContext``).

Meetings (seed 2.3.6) — :mod:`._meetings`
    ``summarize_meeting(transcript, people, meeting_at) -> MeetingSummary(summary, action_items)``
    (local extractive summary; the service may instead call the pipeline with ``meeting_summary``);
    ``extract_action_items`` resolves owners to known people and due phrases to dates. The service links
    each item to a task by searching ``item.text`` in the meeting's project.

Task description drafts (seed 2.3.5) — ``draft_description(DraftContext(title, project, similar))``
    (local), or the pipeline with ``task_description_draft``; ``similar`` = texts of the service's
    ``SimilarTasks`` / ``Search`` hits in the same project.
"""

from services.nlp.text._actions import ActionItem, KnownPerson, extract_action_items, resolve_due
from services.nlp.text._drafts import draft_description
from services.nlp.text._llm import (
    LLMProvider,
    LLMRequest,
    LLMResponse,
    LocalProvider,
    OpenAICompatibleProvider,
    ProviderError,
)
from services.nlp.text._meetings import MeetingSummary, summarize_meeting
from services.nlp.text._pii import PiiMasker, Vault
from services.nlp.text._pipeline import Generated, LLMPipeline, LLMSettings, mask_context
from services.nlp.text._prompts import (
    ChatMessage,
    DraftContext,
    PromptTemplate,
    SummaryContext,
    TemplateError,
    load_template,
    parse_template,
)
from services.nlp.text._rollup import (
    ProjectSentimentState,
    RollingSentiment,
    SentimentFeatures,
    TaskSentimentState,
    add_comment_sentiment,
)
from services.nlp.text._sentiment import LABELS, MODEL_NAME, SCHEMA, Sentiment, SentimentModel
from services.nlp.text._summarize import lead, random_pick, summarize, transcript_sentences

__all__ = [
    "LABELS",
    "MODEL_NAME",
    "SCHEMA",
    "ActionItem",
    "ChatMessage",
    "DraftContext",
    "Generated",
    "KnownPerson",
    "LLMPipeline",
    "LLMProvider",
    "LLMRequest",
    "LLMResponse",
    "LLMSettings",
    "LocalProvider",
    "MeetingSummary",
    "OpenAICompatibleProvider",
    "PiiMasker",
    "ProjectSentimentState",
    "PromptTemplate",
    "ProviderError",
    "RollingSentiment",
    "Sentiment",
    "SentimentFeatures",
    "SentimentModel",
    "SummaryContext",
    "TaskSentimentState",
    "TemplateError",
    "Vault",
    "add_comment_sentiment",
    "draft_description",
    "extract_action_items",
    "lead",
    "load_template",
    "mask_context",
    "parse_template",
    "random_pick",
    "resolve_due",
    "summarize",
    "summarize_meeting",
    "transcript_sentences",
]

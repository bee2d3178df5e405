"""Prompt templates (versioned files, typed context), local drafts and the rolling sentiment reducer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from mesh.features import EntityState, state_key
from services.nlp.text import (
    DraftContext,
    LocalProvider,
    ProjectSentimentState,
    RollingSentiment,
    SummaryContext,
    TaskSentimentState,
    TemplateError,
    add_comment_sentiment,
    draft_description,
    load_template,
    parse_template,
)
from services.nlp.text._prompts import PROMPTS_DIR

S = TypeVar("S", bound=EntityState)
GOOD = """
id = "t"
version = 3
kind = "draft"
max_tokens = 10
[context]
title = "str"
project = "str"
similar = "list[str]"
[messages]
system = "s"
user = "{title} in {project}:\\n{similar}"
"""


def test_every_shipped_template_loads_and_renders_its_typed_context() -> None:
    names = sorted(p.stem for p in PROMPTS_DIR.glob("*.toml"))
    assert names == ["meeting_summary", "task_description_draft"]
    summary = load_template("meeting_summary")
    messages = summary.render(SummaryContext(title="Weekly sync", transcript=("Ana: hi", "Tomas: hello")))
    assert [m.role for m in messages] == ["system", "user"]
    assert "Weekly sync" in messages[1].content and "- Ana: hi\n- Tomas: hello" in messages[1].content
    assert summary.key == "meeting_summary@1"
    with pytest.raises(TypeError, match="SummaryContext"):
        summary.render(DraftContext(title="x", project="y", similar=()))


def test_templates_must_declare_their_context_exactly() -> None:
    assert parse_template(GOOD).render(DraftContext("Fix", "Web", ("a", "b")))[1].content == "Fix in Web:\n- a\n- b"
    with pytest.raises(TemplateError, match="does not match"):
        parse_template(GOOD.replace('similar = "list[str]"', 'similar = "str"'))
    with pytest.raises(TemplateError, match="field"):
        parse_template(GOOD.replace("{title}", "{owner}"))
    with pytest.raises(TemplateError, match="kind"):
        parse_template(GOOD.replace('kind = "draft"', 'kind = "poem"'))
    with pytest.raises(TemplateError):
        parse_template("id = ")
    with pytest.raises(TemplateError, match="no prompt template"):
        load_template("missing", Path("/nonexistent"))


def test_local_draft_uses_the_title_and_similar_tasks() -> None:
    similar = ("Export invoices as CSV. The export should include VAT per line.",
               "Fix the login redirect. Users must land on the dashboard.",
               "Add PDF export of invoices. Verify totals match the ledger.")
    text = draft_description(DraftContext(title="Export invoices to Excel", project="Billing", similar=similar))
    assert text.startswith("## Goal\nExport invoices to Excel.")
    assert "- Export invoices as CSV." in text and "Related work in Billing" in text
    assert text.index("Export invoices as CSV") < text.index("Fix the login redirect")
    assert "- The export should include VAT per line." in text
    empty = LocalProvider().generate(DraftContext(title="New thing", project="P", similar=()))
    assert "No similar task" in empty and "automated tests" in empty


def test_rolling_sentiment_is_order_independent_and_decays() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    comments = [(0.8, False, start), (-0.9, True, start + timedelta(days=20)), (0.1, False, start + timedelta(days=3))]
    a, b = RollingSentiment(), RollingSentiment()
    for c in comments:
        a.add(*c)
    for c in reversed(comments):
        b.add(*c)
    now = start + timedelta(days=20)
    fa, fb = a.features(now), b.features(now)
    assert fa.mean_score == pytest.approx(fb.mean_score) and fa.comments == 3
    assert fa.mean_score < (0.8 - 0.9 + 0.1) / 3  # the newest (negative) comment weighs most
    assert 1.0 < fa.recent_volume < 3.0
    assert a.features(now + timedelta(days=14)).recent_volume == pytest.approx(fa.recent_volume / 2)
    assert RollingSentiment().features(now).comments == 0


class DictTxn:
    """The Txn protocol over a dict (the service applies the same function through RedisAggregates)."""

    def __init__(self) -> None:
        self.states: dict[str, EntityState] = {}
        self.put_keys: list[str] = []

    def get(self, state_type: type[S], tenant_id: str, entity_id: str) -> S:
        key = state_key(state_type.kind, tenant_id, entity_id)
        state = self.states.setdefault(key, state_type(tenant_id=tenant_id, entity_id=entity_id))
        assert isinstance(state, state_type)
        return state

    def put(self, state: EntityState) -> None:
        self.put_keys.append(state.key())


def test_add_comment_sentiment_updates_task_and_project_states() -> None:
    txn = DictTxn()
    at = datetime(2026, 2, 1, tzinfo=UTC)
    add_comment_sentiment(txn, "t1", "task-1", "proj-1", -0.5, True, at)
    add_comment_sentiment(txn, "t1", "task-2", "proj-1", 0.5, False, at)
    add_comment_sentiment(txn, "t1", "task-3", "", 0.9, False, at)
    task = txn.get(TaskSentimentState, "t1", "task-1")
    project = txn.get(ProjectSentimentState, "t1", "proj-1")
    assert task.sentiment.features(at).negative_share == 1.0 and task.as_of == at
    assert project.sentiment.comments == 2 and project.sentiment.features(at).mean_score == pytest.approx(0.0)
    assert "nlp_task_sentiment:t1:task-3" in txn.put_keys and len(txn.put_keys) == 5

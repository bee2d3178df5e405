"""Template matching: structural alone (nlp unreachable), and structural + semantic with an embedder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from services.automation.templates import LIBRARY, NlpEmbedder, describe, match

STEPS = ("move_item:board=archive", "notify:user=owner")


def test_structural_match_picks_the_template_of_the_same_trigger_and_actions() -> None:
    found = match("task_status_changed", "to_status=TASK_STATUS_DONE", STEPS)
    assert found.template is not None and found.template.template_id == "done-archive-notify"
    assert found.semantic is None and found.score == found.structural
    assert match("task_assigned", "assignee_id=self", ("share:report=x",)).template is None  # nothing close


def test_an_unreachable_nlp_service_leaves_the_structural_match() -> None:
    embedder = NlpEmbedder("127.0.0.1:1", timeout_s=0.5)
    assert embedder.embed(["x"]) is None
    found = match("task_status_changed", "to_status=TASK_STATUS_DONE", STEPS, embedder)
    assert found.template is not None and found.template.template_id == "done-archive-notify" and found.semantic is None


class _Keyword:
    """A stand-in embedder: one dimension per template id word found in the text (normalised)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray[Any, Any]:
        words = ("archive", "release", "report", "triage", "checklist", "estimate", "board", "owner")
        rows = np.asarray([[float(w in t.lower()) for w in words] + [0.1] for t in texts])
        return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True))


def test_semantic_similarity_breaks_a_structural_tie() -> None:
    steps = ("share:report=weekly-status", "notify:channel=#releases")
    found = match("task_status_changed", "to_status=TASK_STATUS_DONE", steps, _Keyword())
    assert found.semantic is not None and found.template is not None
    assert found.template.template_id == "done-share-report"
    assert "status becomes Done" in describe("task_status_changed", "to_status=TASK_STATUS_DONE", steps)
    assert len({t.template_id for t in LIBRARY}) == len(LIBRARY)

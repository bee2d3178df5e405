"""Local task-description drafts (seed 2.3.5): a template filled from the title and the project's similar
tasks (their texts come from the service's similarity search), no network.

``draft_description(DraftContext(title, project, similar))`` gives markdown with "Goal", "Context" (the
similar tasks' first sentences, most related to the title first) and "Acceptance criteria" (sentences of
the similar tasks that read like criteria: "should", "must", "ensure", "verify"...; generic checks when
there are none).
"""

from __future__ import annotations

import re

from services.nlp.text._prompts import DraftContext
from services.nlp.text._summarize import content_tokens, split_sentences

_CRITERIA = re.compile(r"\b(?:should|must|ensure|verify|make sure|expected|acceptance|tests?|documented)\b",
                       re.IGNORECASE)
GENERIC_CRITERIA = ("The change is covered by automated tests.", "The behaviour is documented for the team.",
                    "Reviewed, merged and verified on staging.")
MAX_CONTEXT = 3


def _overlap(a: str, b: set[str]) -> int:
    return len(set(content_tokens(a)) & b)


def draft_description(context: DraftContext) -> str:
    title = " ".join(context.title.split()).rstrip(".")
    words = set(content_tokens(title))
    similar = sorted((s for s in context.similar if s.strip()), key=lambda s: -_overlap(s, words))
    lines = ["## Goal", f"{title}.", "", "## Context"]
    firsts = [split_sentences(s)[0] for s in similar[:MAX_CONTEXT] if split_sentences(s)]
    if firsts:
        lines.append(f"Related work in {context.project}:" if context.project else "Related work:")
        lines += [f"- {f}" for f in firsts]
    else:
        lines.append(f"No similar task found in {context.project or 'this project'} yet.")
    criteria = [c for s in similar for c in split_sentences(s)[1:] if _CRITERIA.search(c)]
    criteria = list(dict.fromkeys(criteria))[:3] or list(GENERIC_CRITERIA)
    lines += ["", "## Acceptance criteria"] + [f"- {c}" for c in criteria]
    return "\n".join(lines)

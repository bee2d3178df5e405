"""Composing task titles, descriptions and comments from many templates and word lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from simulator import _vocab as v
from simulator import _vocab_talk as talk

T = TypeVar("T")


def pick(rng: np.random.Generator, items: Sequence[T]) -> T:
    return items[int(rng.integers(len(items)))]


def _clean(text: str) -> str:
    text = " ".join(text.split()).replace(" ,", ",").replace(" .", ".")
    return text[:1].upper() + text[1:]


def _size_word(rng: np.random.Generator, points: int) -> str:
    if points <= 2 and rng.random() < 0.6:
        return pick(rng, v.SMALL_WORDS)
    if points >= 8 and rng.random() < 0.6:
        return pick(rng, v.LARGE_WORDS)
    return ""


def task_slots(rng: np.random.Generator, topic: str) -> dict[str, str]:
    """The facts a task is about; a duplicate reuses them with other words around them."""
    ops = pick(rng, v.OPS_ACTIONS)
    return {
        "component": pick(rng, v.TOPICS[topic]), "symptom": pick(rng, v.SYMPTOMS),
        "condition": pick(rng, v.CONDITIONS), "capability": pick(rng, v.CAPABILITIES),
        "artifact": pick(rng, v.ARTIFACTS), "doc": pick(rng, v.DOC_ARTIFACTS), "ops": ops,
        "question": pick(rng, v.QUESTIONS), "metric": pick(rng, v.METRICS), "pct": str(int(rng.integers(2, 40))),
    }


def task_text(rng: np.random.Generator, task_type: str, points: int, slots: dict[str, str],
              avoid_template: int = -1) -> tuple[str, str, int]:
    """(title, description, template index) for a task; ``avoid_template`` forces a paraphrase."""
    templates = v.TITLE_TEMPLATES[task_type]
    index = int(rng.integers(len(templates)))
    if index == avoid_template:
        index = (index + 1) % len(templates)
    size = _size_word(rng, points)
    fill = {**slots, "size": size, "Size": size.capitalize(), "Component": slots["component"].capitalize(),
            "Ops": slots["ops"].capitalize()}
    title = _clean(templates[index].format(**fill).replace("[]", ""))
    sentences = v.DESCRIPTION_SENTENCES[task_type]
    n = int(rng.integers(2, min(5, len(sentences)) + 1))
    chosen = rng.choice(len(sentences), size=n, replace=False)
    body = " ".join(sentences[int(i)].format(**fill) for i in chosen)
    if points >= 8 and rng.random() < 0.5:
        body += f" This touches several teams and will need a {pick(rng, v.LARGE_WORDS)} rollout plan."
    elif points <= 2 and rng.random() < 0.5:
        body += " Should be a small change."
    return title, _clean(body), index


def comment_text(rng: np.random.Generator, sentiment: str, component: str) -> str:
    parts = (pick(rng, talk.COMMENT_OPENERS[sentiment]),
             pick(rng, talk.COMMENT_BODIES[sentiment]).format(component=component, symptom=pick(rng, v.SYMPTOMS)),
             pick(rng, talk.COMMENT_CLOSERS[sentiment]))
    text = " ".join(p for p in parts if p)
    return _clean(text if text.endswith((".", "!", "?", "🎉", "😞")) else text + ".")

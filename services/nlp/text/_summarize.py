"""Local extractive summaries (no network, numpy only): TextRank over TF-IDF sentence vectors, or over
sentence embeddings when the caller passes them (the service's MiniLM embedder).

``summarize(sentences, max_words=120)`` picks the most central sentences (PageRank on the cosine
similarity graph, damping 0.85, plus a prior for early sentences), skips near-duplicates of already chosen
ones (cosine > ``redundancy``) and returns them in their original order within ``max_words``. Short
sentences (fewer than ``min_words`` words: "Okay.", "Mm, yeah.") are not chosen unless the meeting has
nothing longer. ``lead`` and ``random_pick`` are the baselines the benchmark reports beside it, under the
same word budget and sentence filter.

``transcript_sentences(utterances)`` turns a meeting transcript ((speaker, text) pairs) into sentences.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_TOKEN = re.compile(r"[a-z0-9][a-z0-9'_-]+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:])")
_DISFLUENCY = re.compile(r"\b(?:um+|uh+|hmm+|mm+|er+|ah+)\b\s*,?\s*", re.IGNORECASE)
_STOPWORDS_TEXT = """
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just let me more
most my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves okay ok yeah yes oh well so like gonna wanna kind sort
thing things really actually right think know mean just got get go going also
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


MIN_WORDS = 15
"""Sentences shorter than this are skipped (when the rest still fill the budget): chosen on QMSum train."""
POSITION_WEIGHT = 1.0


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (split after . ! ? before a capital or digit), whitespace-normalised."""
    text = " ".join(text.split())
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def clean_speech(text: str) -> str:
    """Drops disfluencies (um, uh, mm) and the space some transcripts put before punctuation."""
    text = _DISFLUENCY.sub("", text)
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split())).strip()


def transcript_sentences(utterances: Iterable[tuple[str, str]]) -> list[str]:
    """The sentences of a transcript in order (speaker names are not part of the text)."""
    out: list[str] = []
    for _speaker, text in utterances:
        out += split_sentences(clean_speech(text))
    return out


def content_tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


def tfidf_vectors(sentences: Sequence[str]) -> npt.NDArray[np.float64]:
    """L2-normalised TF-IDF rows (sublinear tf, smooth idf) over the sentences' own vocabulary."""
    docs = [Counter(content_tokens(s)) for s in sentences]
    vocabulary = {t: i for i, t in enumerate(sorted({t for d in docs for t in d}))}
    df = Counter(t for d in docs for t in d)
    n = len(sentences)
    out = np.zeros((n, max(1, len(vocabulary))))
    for row, doc in enumerate(docs):
        for term, count in doc.items():
            out[row, vocabulary[term]] = (1 + math.log(count)) * (math.log((1 + n) / (1 + df[term])) + 1)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.asarray(out / np.where(norms > 0, norms, 1.0), dtype=np.float64)


def textrank_scores(vectors: npt.NDArray[Any], damping: float = 0.85, iterations: int = 50) -> npt.NDArray[np.float64]:
    """PageRank of each row on the graph weighted by positive cosine similarity (rows L2-normalised)."""
    n = len(vectors)
    if n == 0:
        return np.zeros(0)
    sim = np.clip(np.asarray(vectors, dtype=np.float64) @ np.asarray(vectors, dtype=np.float64).T, 0.0, None)
    np.fill_diagonal(sim, 0.0)
    out_weight = sim.sum(axis=1, keepdims=True)
    transition = np.where(out_weight > 0, sim / np.where(out_weight > 0, out_weight, 1.0), 1.0 / n)
    scores = np.full(n, 1.0 / n)
    for _ in range(iterations):
        scores = (1 - damping) / n + damping * transition.T @ scores
    return np.asarray(scores, dtype=np.float64)


def _eligible(sentences: Sequence[str], min_words: int) -> list[int]:
    return [i for i, s in enumerate(sentences) if len(s.split()) >= min_words and len(content_tokens(s)) >= 2]


def _within_budget(order: Iterable[int], sentences: Sequence[str], max_words: int,
                   vectors: npt.NDArray[Any] | None = None, redundancy: float = 1.01) -> list[int]:
    chosen: list[int] = []
    words = 0
    for i in order:
        length = len(sentences[i].split())
        if chosen and words + length > max_words:
            continue
        if vectors is not None and chosen and float(np.max(vectors[chosen] @ vectors[i])) > redundancy:
            continue
        chosen.append(i)
        words += length
        if words >= max_words:
            break
    return sorted(chosen)


def summarize(sentences: Sequence[str], max_words: int = 120, *, embeddings: npt.NDArray[Any] | None = None,
              min_words: int = MIN_WORDS, position_weight: float = POSITION_WEIGHT, redundancy: float = 0.8
              ) -> list[str]:
    """The summary of ``sentences`` (``embeddings``: one L2-normalised row per sentence, else TF-IDF).

    Score = TextRank centrality (scaled to max 1) + ``position_weight`` * (1 - relative position)^4: meetings
    state their purpose early, and the prior lifted ROUGE on QMSum *train* (chosen there, reported on val)."""
    eligible = _eligible(sentences, min_words)
    if sum(len(sentences[i].split()) for i in eligible) < max_words and min_words > 5:
        eligible = _eligible(sentences, 5)  # short meetings: short sentences are all there is
    if not eligible:
        return []
    vectors = (np.asarray(embeddings, dtype=np.float64)[eligible] if embeddings is not None
               else tfidf_vectors([sentences[i] for i in eligible]))
    centrality = textrank_scores(vectors)
    position = np.arange(len(eligible)) / len(eligible)
    scores = centrality / max(float(centrality.max()), 1e-12) + position_weight * (1 - position) ** 4
    ranked = [int(j) for j in np.argsort(-scores, kind="stable")]
    picked = _within_budget(ranked, [sentences[i] for i in eligible], max_words, vectors, redundancy)
    return [sentences[eligible[j]] for j in picked]


def lead(sentences: Sequence[str], max_words: int = 120, *, min_words: int = MIN_WORDS) -> list[str]:
    """Baseline: the first eligible sentences within the budget."""
    eligible = _eligible(sentences, min_words)
    picked = _within_budget(range(len(eligible)), [sentences[i] for i in eligible], max_words)
    return [sentences[eligible[j]] for j in picked]


def random_pick(sentences: Sequence[str], max_words: int = 120, *, seed: int = 0,
                min_words: int = MIN_WORDS) -> list[str]:
    """Baseline: random eligible sentences within the budget, in their original order."""
    eligible = _eligible(sentences, min_words)
    order = [int(j) for j in np.random.default_rng(seed).permutation(len(eligible))]
    picked = _within_budget(order, [sentences[i] for i in eligible], max_words)
    return [sentences[eligible[j]] for j in picked]

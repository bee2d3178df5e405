"""A meeting transcript -> summary + action items, locally (seed 2.3.6).

``summarize_meeting(utterances, people, meeting_at)`` takes the transcript as (speaker, text) pairs (the
``MeetingTranscript.utterances`` of events.proto), the tenant's known people and the meeting time (the
event's ``occurred_at``), and returns the extractive summary (:func:`._summarize.summarize`) and the action
items (:func:`._actions.extract_action_items`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from services.nlp.text._actions import ActionItem, KnownPerson, extract_action_items
from services.nlp.text._summarize import summarize, transcript_sentences


@dataclass(frozen=True)
class MeetingSummary:
    summary: str
    action_items: tuple[ActionItem, ...]


def summarize_meeting(utterances: Sequence[tuple[str, str]], people: Sequence[KnownPerson], meeting_at: datetime,
                      max_words: int = 120) -> MeetingSummary:
    items = extract_action_items(utterances, people, meeting_at)
    sentences = transcript_sentences(utterances)
    return MeetingSummary(" ".join(summarize(sentences, max_words)), tuple(items))

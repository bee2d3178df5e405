"""Action items from a meeting transcript: who does what by when.

``extract_action_items(utterances, people, meeting_at)`` reads each utterance for a commitment
("I'll X by Friday", "Let me X, should be done by Monday") or an assignment ("Ana, can you X by Tuesday?",
"Action item: Ana to X by end of week", "Let's have Ana X before Friday", "Ana will X by Monday"). An
utterance is an item when it carries such a cue AND a due phrase, or an explicit "action item" cue.

- owner: "I" is the speaker; a named person is resolved against ``people`` (full name, or a given name
  that only one known person has); an owner that cannot be resolved keeps its mention and ``owner_id`` "".
- due: the phrase as said (``due_text``) and the date it means relative to the meeting time (``due``):
  a weekday is its next occurrence after the meeting day, "end of week" the Friday of the meeting's week,
  "tomorrow"/"today"/"EOD", "next week" (its Monday), "end of month", "in N days/weeks", ISO dates, and
  "next sprint" = 14 days after the meeting (two-week sprints: a convention, not a fact of the tenant).
- text: the task as said ("fix the billing bug").

Linking an item to a task is the service's job (search the item text in the meeting's project; the
``ActionItem.text`` is the query).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DUE = (r"(?P<due>(?i:(?:next |this )?(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
        r"|end of (?:the )?(?:week|day|month|sprint)|eod|eow|tomorrow|today|tonight|next (?:week|sprint|month)"
        r"|in \d+ (?:days?|weeks?)|\d{4}-\d{2}-\d{2}))")
_BY = r"\s*,?\s*(?i:should be done |done )?(?i:by|before|until|no later than)\s+" + _DUE + r"\b"
_NAME = r"(?P<name>[A-Z][^\W\d_]+(?: [A-Z][^\W\d_]+)?)"
_TASK = r"(?P<task>[a-z][^?!]*?)"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((kind, re.compile(p, re.IGNORECASE if kind == "self" else 0))
                                                           for kind, p in (
    ("self", r"\b(?:I'll|I will|I can|I'm going to|I am going to|let me)\s+(?:take it:\s*I'll\s+)?" + _TASK + _BY),
    ("other", r"\b[Aa]ction item:\s*" + _NAME + r"\s+(?:to|will|should)\s+" + _TASK + r"(?:" + _BY + r"|[.!]|$)"),
    ("other", r"(?:^|[.!?]\s+)" + _NAME + r",\s+(?:can|could|would) you (?:please )?" + _TASK + _BY),
    ("other", r"\b[Ll]et's have " + _NAME + r"\s+" + _TASK + _BY),
    ("other", r"(?:^|[.!?]\s+)" + _NAME + r"\s+(?:will|is going to|should)\s+" + _TASK + _BY),
))


@dataclass(frozen=True)
class KnownPerson:
    user_id: str
    name: str


@dataclass(frozen=True)
class ActionItem:
    text: str
    owner_id: str
    """"" when the owner is not a known person"""
    owner_name: str
    due_text: str
    """the due phrase as said ("" when none)"""
    due: date | None
    utterance_index: int


def resolve_due(phrase: str, meeting_at: datetime) -> date | None:
    """The date a due phrase means, relative to the meeting's (local) date; None when not understood."""
    p = phrase.lower().strip()
    today = meeting_at.date()
    weekday = today.weekday()
    if p in ("today", "tonight", "eod", "end of day", "end of the day"):
        return today
    if p == "tomorrow":
        return today + timedelta(days=1)
    if p in ("end of week", "end of the week", "eow"):
        return today + timedelta(days=(4 - weekday) % 7)
    if p == "next week":
        return today + timedelta(days=7 - weekday)
    if p in ("next sprint", "end of sprint", "end of the sprint"):
        return today + timedelta(days=14)
    if p in ("end of month", "end of the month", "next month"):
        first_next = (today.replace(day=28) + timedelta(days=4)).replace(day=1)
        return first_next - timedelta(days=1) if p != "next month" else first_next
    if m := re.fullmatch(r"in (\d+) (day|week)s?", p):
        return today + timedelta(days=int(m.group(1)) * (7 if m.group(2) == "week" else 1))
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", p):
        try:
            return date.fromisoformat(p)
        except ValueError:
            return None
    m = re.fullmatch(r"(next |this )?(\w+)", p)
    if m and m.group(2) in WEEKDAYS:
        target = WEEKDAYS.index(m.group(2))
        if m.group(1) == "next ":  # that weekday of the following week
            return today + timedelta(days=7 - weekday + target)
        return today + timedelta(days=(target - weekday) % 7 or 7)
    return None


class PeopleIndex:
    """Resolves a mention (a full name, or a given name) to a known person; when several people share it,
    the one who spoke in this meeting wins (still ambiguous: unresolved)."""

    def __init__(self, people: Sequence[KnownPerson]) -> None:
        self._by_key: dict[str, list[KnownPerson]] = {}
        for p in people:
            parts = p.name.lower().split()
            for key in {p.name.lower().strip(), parts[0] if parts else ""} - {""}:
                self._by_key.setdefault(key, []).append(p)

    def resolve(self, mention: str, speakers: Sequence[str] = ()) -> KnownPerson | None:
        found = self._by_key.get(mention.lower().strip(), [])
        if len(found) > 1:
            spoke = {s.lower() for s in speakers}
            found = [p for p in found if p.name.lower() in spoke] or found
            found = found if len({p.user_id for p in found}) == 1 else []
        return found[0] if found else None


def _clean_task(task: str) -> str:
    task = re.sub(r"\s+", " ", task).strip(" ,.;:")
    return re.sub(r",?\s*should be done$", "", task)


def extract_action_items(utterances: Sequence[tuple[str, str]], people: Sequence[KnownPerson],
                         meeting_at: datetime) -> list[ActionItem]:
    """Action items of a transcript ((speaker, text) per utterance) in the order they were said."""
    index = PeopleIndex(people)
    speakers = tuple(dict.fromkeys(speaker for speaker, _ in utterances))
    items: list[ActionItem] = []
    for i, (speaker, text) in enumerate(utterances):
        for kind, pattern in _PATTERNS:
            m = pattern.search(text)
            if m is None:
                continue
            mention = speaker if kind == "self" else m.group("name")
            person = index.resolve(mention, speakers)
            groups = m.groupdict()
            due_text = (groups.get("due") or "").strip()
            items.append(ActionItem(text=_clean_task(m.group("task")),
                                    owner_id=person.user_id if person else "",
                                    owner_name=person.name if person else mention,
                                    due_text=due_text,
                                    due=resolve_due(due_text, meeting_at) if due_text else None,
                                    utterance_index=i))
            break
    return items

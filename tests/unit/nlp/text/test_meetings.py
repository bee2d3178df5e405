"""Meeting summaries and action items against the simulator's planted meetings (its truth lists each item,
its owner and due day), plus due-date resolution and the extractive summarizer's contract."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sunday.ml.v1 import events_pb2

from mesh.events import occurred_at, payload_of
from services.nlp.text import KnownPerson, extract_action_items, resolve_due, summarize, summarize_meeting
from services.nlp.text._summarize import lead, random_pick, split_sentences
from simulator import MeetingTruth, SimConfig, Simulation

TUESDAY = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def meetings() -> list[tuple[list[tuple[str, str]], list[KnownPerson], datetime, MeetingTruth]]:
    sim = Simulation(SimConfig(tenants=2, users_per_tenant=20, weeks=4, seed=11))
    events = list(sim.events())
    people: dict[str, list[KnownPerson]] = {}
    for env in events:
        if env.type == "user_joined":
            user = payload_of(env)
            assert isinstance(user, events_pb2.UserJoined)
            people.setdefault(env.tenant_id, []).append(KnownPerson(user.user_id, user.display_name))
    truth = {m.meeting_id: m for m in sim.truth.meetings}
    out = []
    for env in events:
        if env.type == "meeting_transcript":
            m = payload_of(env)
            assert isinstance(m, events_pb2.MeetingTranscript)
            out.append(([(u.speaker, u.text) for u in m.utterances], people[env.tenant_id], occurred_at(env),
                        truth[m.meeting_id]))
    assert len(out) >= 5
    return out


def test_planted_action_items_are_found_with_text_due_and_owner(meetings: list) -> None:  # type: ignore[type-arg]
    found = planted = owners = resolvable = 0
    extra = 0
    for utterances, people, at, truth in meetings:
        items = extract_action_items(utterances, people, at)
        got = {(i.text, i.due_text): i for i in items}
        extra += len(items) - sum((t.text, t.due) in got for t in truth.action_items)
        names = [p.name for p in people]
        for t in truth.action_items:
            planted += 1
            item = got.get((t.text, t.due))
            if item is None:
                continue
            found += 1
            assert item.due == resolve_due(t.due, at)
            # an owner is resolvable when no other known person shares the given name among the speakers
            # (the simulator reuses names; the truth knows the id, the transcript only says "Lena")
            if names.count(t.owner_name) == 1:
                resolvable += 1
                owners += item.owner_id == t.owner_id
    assert planted >= 10
    assert found == planted and extra == 0
    assert owners >= 0.85 * resolvable


def test_due_phrases_resolve_against_the_meeting_day() -> None:
    assert resolve_due("Friday", TUESDAY) == date(2026, 3, 13)
    assert resolve_due("Tuesday", TUESDAY) == date(2026, 3, 17)  # the same weekday means next week's
    assert resolve_due("Monday", TUESDAY) == date(2026, 3, 16)
    assert resolve_due("next Friday", TUESDAY) == date(2026, 3, 20)
    assert resolve_due("end of week", TUESDAY) == date(2026, 3, 13)
    assert resolve_due("tomorrow", TUESDAY) == date(2026, 3, 11)
    assert resolve_due("next week", TUESDAY) == date(2026, 3, 16)
    assert resolve_due("end of month", TUESDAY) == date(2026, 3, 31)
    assert resolve_due("in 2 weeks", TUESDAY) == date(2026, 3, 24)
    assert resolve_due("next sprint", TUESDAY) == date(2026, 3, 24)
    assert resolve_due("2026-04-01", TUESDAY) == date(2026, 4, 1)
    assert resolve_due("someday", TUESDAY) is None


def test_owner_mentions_and_unknown_people() -> None:
    people = [KnownPerson("u1", "Ana Lopez"), KnownPerson("u2", "Tomas Berg")]
    items = extract_action_items([("Ana Lopez", "I'll update the runbook by Thursday."),
                                  ("Tomas Berg", "Ana, can you review the API spec by Friday?"),
                                  ("Ana Lopez", "Action item: Zed to draft the FAQ by end of week."),
                                  ("Tomas Berg", "Let's get started, I'll share the doc after the call.")],
                                 people, TUESDAY)
    assert [(i.owner_id, i.owner_name, i.text, i.due_text) for i in items] == [
        ("u1", "Ana Lopez", "update the runbook", "Thursday"),
        ("u1", "Ana Lopez", "review the API spec", "Friday"),
        ("", "Zed", "draft the FAQ", "end of week")]


def test_summary_is_extractive_within_budget_and_beside_baselines() -> None:
    text = ("We agreed to ship the billing export in the next release after the review. "
            "The billing export needs a new CSV format that finance asked for last month. "
            "Okay. Mm, yeah. "
            "Finance will review the CSV format of the billing export before the release date. "
            "Lunch was good today and the weather is fine for the weekend trip we planned. "
            "The release of the billing export depends on the CSV format review by finance.")
    sentences = split_sentences(text)
    for pick in (summarize(sentences, 40), lead(sentences, 40), random_pick(sentences, 40)):
        assert pick and all(s in sentences for s in pick)
        assert sum(len(s.split()) for s in pick) <= 40
        assert [sentences.index(s) for s in pick] == sorted(sentences.index(s) for s in pick)
    assert "Okay." not in summarize(sentences, 200)
    assert not any("Lunch" in s for s in summarize(sentences, 40))


def test_summarize_meeting_returns_summary_and_items(meetings: list) -> None:  # type: ignore[type-arg]
    utterances, people, at, truth = meetings[0]
    result = summarize_meeting(utterances, people, at)
    assert result.summary and len(result.action_items) == len(truth.action_items)

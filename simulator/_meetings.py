"""Meeting transcripts with action items (the truth lists each item, its owner and due day)."""

from __future__ import annotations

import numpy as np
from sunday.ml.v1 import events_pb2 as e

from simulator import _vocab as v
from simulator import _vocab_talk as talk
from simulator._clock import DAY, HOUR, WEEK, is_workday, to_datetime
from simulator._context import TenantContext
from simulator._rng import IdSource
from simulator._text import pick
from simulator._truth import ActionItem, MeetingTruth
from simulator._world import Person, Project


class MeetingFlow:
    def __init__(self, ctx: TenantContext, rng: np.random.Generator, ids: IdSource) -> None:
        self.ctx = ctx
        self.rng = rng
        self.ids = ids
        self.truth: list[MeetingTruth] = []

    def week(self, week_start: float) -> None:
        for project in self.ctx.active_projects(week_start, week_start + WEEK):
            if self.rng.random() < 0.8:
                self._meeting(project, week_start)

    def _meeting(self, project: Project, week_start: float) -> None:
        rng, ctx = self.rng, self.ctx
        owner = ctx.people[project.owner_id]
        day = int(week_start // DAY) + int(rng.integers(5))
        t = day * DAY + float(rng.uniform(10, 15)) * HOUR - owner.utc_offset_h * HOUR
        if not is_workday(day) or t < project.start or t >= ctx.horizon:
            return
        members = [u for u in project.member_ids if ctx.joined(u, t)]
        size = min(len(members), int(rng.integers(3, 8)))
        attendees = [ctx.people[str(u)] for u in rng.choice(members, size=size, replace=False)]
        if owner not in attendees:
            attendees[0] = owner
        title = f"{pick(rng, talk.MEETING_TITLES)} – {project.name}"
        utterances: list[e.Utterance] = []
        items: list[ActionItem] = []
        clock = 0.0
        n_utterances = int(rng.integers(8, 16))
        item_slots = {int(i) for i in rng.choice(np.arange(1, n_utterances), size=int(rng.integers(1, 5)),
                                                 replace=False)}
        for k in range(n_utterances):
            speaker = owner if k == 0 else pick(rng, attendees)
            if k in item_slots:
                clock = self._action_item(project, speaker, attendees, utterances, items, clock)
                continue
            text = pick(rng, talk.FILLER_UTTERANCES).format(component=pick(rng, v.TOPICS[project.topic]))
            utterances.append(e.Utterance(speaker=speaker.name, text=text, start_seconds=round(clock, 1)))
            clock += float(rng.uniform(4, 40))
        meeting_id = f"{project.project_id}-mt{self.ids.next()[:8]}"
        ctx.emit(t + clock, e.MeetingTranscript(meeting_id=meeting_id, project_id=project.project_id, title=title,
                                                utterances=utterances))
        self.truth.append(MeetingTruth(ctx.tenant.tenant_id, meeting_id, project.project_id, to_datetime(t + clock),
                                       title, tuple(items)))

    def _action_item(self, project: Project, speaker: Person, attendees: list[Person],
                     utterances: list[e.Utterance], items: list[ActionItem], clock: float) -> float:
        rng = self.rng
        owner = attendees[int(rng.integers(len(attendees)))]
        task = f"{pick(rng, talk.ACTION_VERBS)} " + pick(rng, talk.ACTION_OBJECTS).format(
            component=pick(rng, v.TOPICS[project.topic]))
        day = pick(rng, talk.DAYS)
        first = owner.name.split()[0]
        if owner is speaker:
            utterances.append(e.Utterance(speaker=speaker.name, start_seconds=round(clock, 1),
                                          text=pick(rng, talk.ACTION_TEMPLATES_SELF).format(task=task, day=day)))
        else:
            utterances.append(e.Utterance(speaker=speaker.name, start_seconds=round(clock, 1),
                                          text=pick(rng, talk.ACTION_TEMPLATES_OTHER).format(
                                              name=first, task=task, day=day)))
            clock += float(rng.uniform(2, 8))
            utterances.append(e.Utterance(speaker=owner.name, text=pick(rng, talk.ACTION_REPLIES),
                                          start_seconds=round(clock, 1)))
        items.append(ActionItem(owner.user_id, owner.name, task, day))
        return clock + float(rng.uniform(4, 30))

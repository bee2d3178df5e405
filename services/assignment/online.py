"""The assignment features in the online store (Feast), and the one path that keeps them fresh.

:class:`FeatureSync` applies an event to the service's state and pushes the person and task rows it
changed; :class:`OnlineFeatures` reads them back (one batched read for any number of candidates). The
service, the offline replay that builds the training set and the benchmark all go through both, so
the model is trained on exactly the rows it is served.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from mesh.events import Envelope
from mesh.features import DEFAULT_VIEWS, FeastFeatureClient, FeatureClient, FeatureRepo, FeatureRepoConfig, entity_key
from services.assignment.features import PersonFeatures, TaskFeatures
from services.assignment.state import Label, StateStore, TaskRecord, apply_event
from services.assignment.views import (
    ASSIGNMENT_VIEWS,
    PERSON_VIEW,
    TASK_VIEW,
    person_of,
    person_record,
    task_of,
    task_record,
)

if TYPE_CHECKING:
    from mesh.config import MeshSettings

Keyed = tuple[str, str]
"""(tenant id, entity id)"""


class OnlineFeatures:
    """Typed reads and pushes of the assignment rows through a :class:`FeatureClient`."""

    def __init__(self, client: FeatureClient) -> None:
        self.client = client

    def push(self, people: Iterable[tuple[str, PersonFeatures]], tasks: Iterable[tuple[str, TaskFeatures]]) -> None:
        """Write full rows (tenant, row); one push per view."""
        person_rows = [person_record(tenant, p) for tenant, p in people]
        task_rows = [task_record(tenant, t) for tenant, t in tasks]
        if person_rows:
            self.client.push(PERSON_VIEW, person_rows)
        if task_rows:
            self.client.push(TASK_VIEW, task_rows)

    def people(self, tenant_id: str, user_ids: Sequence[str]) -> list[PersonFeatures]:
        """The rows of ``user_ids`` that exist, in that order: one batched read."""
        records = self.client.get_online(PERSON_VIEW, [entity_key(tenant_id, u) for u in user_ids])
        return [person_of(u, r) for u, r in zip(user_ids, records, strict=True) if r is not None]

    def task(self, tenant_id: str, task_id: str) -> TaskFeatures | None:
        (record,) = self.client.get_online(TASK_VIEW, [entity_key(tenant_id, task_id)])
        return None if record is None else task_of(record)


def candidate_rows(state: StateStore, online: OnlineFeatures, tenant_id: str,
                   candidate_ids: Sequence[str] = ()) -> list[PersonFeatures]:
    """The candidates' rows from the online store (one batched read); the tenant's active people by
    default. The ranker and the training replay both read candidates through here."""
    return online.people(tenant_id, list(candidate_ids) or state.active_ids(tenant_id))


class _Recording:
    """A state store that remembers the newest row of each person and task written through it."""

    def __init__(self, inner: StateStore) -> None:
        self._inner = inner
        self.people: dict[Keyed, PersonFeatures] = {}
        self.tasks: dict[Keyed, TaskFeatures] = {}

    def active_ids(self, tenant_id: str) -> list[str]:
        return self._inner.active_ids(tenant_id)

    def person(self, tenant_id: str, user_id: str) -> PersonFeatures | None:
        return self._inner.person(tenant_id, user_id)

    def task(self, tenant_id: str, task_id: str) -> TaskRecord | None:
        return self._inner.task(tenant_id, task_id)

    def put_person(self, tenant_id: str, person: PersonFeatures) -> None:
        self._inner.put_person(tenant_id, person)
        self.people[(tenant_id, person.user_id)] = person

    def put_task(self, tenant_id: str, task: TaskRecord) -> None:
        self._inner.put_task(tenant_id, task)
        self.tasks[(tenant_id, task.features.task_id)] = task.features

    def flush(self, online: OnlineFeatures) -> None:
        online.push(((t, p) for (t, _), p in self.people.items()), ((t, f) for (t, _), f in self.tasks.items()))
        self.people.clear()
        self.tasks.clear()


class FeatureSync:
    """Events -> the service state -> the changed rows pushed to the online store."""

    def __init__(self, state: StateStore, online: OnlineFeatures) -> None:
        self.state = state
        self.online = online

    def apply(self, env: Envelope) -> Label | None:
        """One event: its rows are in the online store when this returns (what the live consumer does)."""
        recording = _Recording(self.state)
        label = apply_event(recording, env)
        recording.flush(self.online)
        return label

    def apply_all(self, events: Iterable[Envelope], batch: int = 1000) -> list[Label]:
        """A backfill: the same updates, one push per view per ``batch`` events (newest row per entity)."""
        recording, labels = _Recording(self.state), []
        for i, env in enumerate(events, 1):
            label = apply_event(recording, env)
            if label is not None:
                labels.append(label)
            if i % batch == 0:
                recording.flush(self.online)
        recording.flush(self.online)
        return labels


def feature_repo(settings: MeshSettings, project: str | None = None) -> FeatureRepo:
    """The mesh's Feast repo with the assignment views added (the default views stay registered)."""
    config = FeatureRepoConfig.from_settings(settings) if project is None else \
        FeatureRepoConfig.from_settings(settings, project)
    return FeatureRepo(config, views=(*DEFAULT_VIEWS, *ASSIGNMENT_VIEWS))


def open_online(repo: FeatureRepo) -> OnlineFeatures:
    """Register the views (idempotent) and read/write through Feast's online store."""
    repo.apply()
    return OnlineFeatures(FeastFeatureClient(repo))

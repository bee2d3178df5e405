"""Ranking a real tenant cheaply: vectorised features, the first stage (candidate generation), many tasks
in one pass, and gRPC calls that arrive together ranked together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc.aio
import numpy as np
import pytest
from sunday.ml.v1 import assignment_pb2, assignment_pb2_grpc

from mesh.config import MeshSettings
from mesh.errors import NotFound
from mesh.models import ModelSource, StaticModel, VersionedModel
from mesh.serving import bind, build_server
from services.assignment.candidates import CandidatePool, shortlist
from services.assignment.features import (
    PeopleArrays,
    PersonFeatures,
    TaskFeatures,
    feature_matrix,
    on_grid,
    pair_block,
    person_block,
    task_block,
)
from services.assignment.online import OnlineFeatures
from services.assignment.ranker import AssignmentRanker, RankRequest
from services.assignment.server import SERVICE_NAME, AssignmentServicer
from services.assignment.state import PersonState, TaskState
from tests.unit.assignment.helpers import CountingStore, Service, World, build_service

TENANT = "tenant-000"


def _replayed(world: World, n: int = 900) -> Service:
    service = build_service(world.static_model())
    service.apply(world.events[:n])
    return service


def _tasks(world: World, n: int = 900) -> list[str]:
    return [ev.task_created.task_id for ev in world.events[:n] if ev.type == "task_created" and ev.tenant_id == TENANT]


def test_the_vectorised_matrix_equals_the_per_row_definition(world: World) -> None:
    service = _replayed(world)
    people = service.state.people(TENANT, service.state.active_ids(TENANT))
    assert len(people) > 10
    for task_id in _tasks(world)[-20:]:
        task = service.state.task(TENANT, task_id)
        assert task is not None
        rowwise = on_grid(np.stack([np.concatenate([person_block(p), task_block(task), pair_block(task, p)])
                                    for p in people]))
        np.testing.assert_array_equal(feature_matrix(task, people), rowwise)
        rows = np.asarray([3, 0, 7])
        np.testing.assert_array_equal(feature_matrix(task, PeopleArrays.of(people), rows), rowwise[rows])


def _person(user_id: str, projects: frozenset[str] = frozenset(), skills: dict[str, int] | None = None,
            open_hours: float = 0.0) -> PersonFeatures:
    return PersonFeatures(user_id=user_id, skills=skills or {}, projects=projects, open_hours=open_hours)


def test_the_first_stage_keeps_the_members_with_the_skills_and_room() -> None:
    outsiders = [_person(f"out-{i}", skills={"python": 5}) for i in range(30)]
    members = [_person(f"in-{i}", frozenset({"p1"}), {"python": 1 + i % 5}, open_hours=4.0 * i) for i in range(8)]
    pool = PeopleArrays.of([*outsiders, *members])
    task = TaskFeatures("t1", "p1", required_skills=("python",), estimate_hours=4.0)
    best = [pool.people[i].user_id for i in shortlist(task, pool, 8)]
    assert sorted(best) == sorted(p.user_id for p in members)
    assert best[0] == "in-4"  # level 5, least loaded of the level-5 members
    assert len(shortlist(task, pool, 100)) == len(pool)  # fewer candidates than the shortlist: all of them


class _Now(Executor):
    """Runs submitted work at once (the background reload, made deterministic)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


@dataclass
class _FakeOnline:
    rows: dict[str, PersonFeatures]
    reads: list[list[str]] = field(default_factory=list)

    def people(self, tenant_id: str, user_ids: Sequence[str]) -> list[PersonFeatures]:
        self.reads.append(list(user_ids))
        return [self.rows[u] for u in user_ids if u in self.rows]


def test_the_pool_reads_a_new_person_at_once_and_reloads_in_the_background_past_its_ttl() -> None:
    online = _FakeOnline({u: _person(u) for u in ("a", "b", "c")})
    clock = [0.0]
    pool = CandidatePool(online, ttl_s=5.0, executor=_Now(), clock=lambda: clock[0])  # type: ignore[arg-type]
    arrays, index = pool.arrays("t", ["a", "b"])
    assert online.reads == [["a", "b"]] and set(index) == {"a", "b"}
    pool.arrays("t", ["a", "b"])
    assert len(online.reads) == 1  # cached
    arrays, index = pool.arrays("t", ["a", "b", "c"])
    assert online.reads[-1] == ["c"] and set(index) == {"a", "b", "c"}  # only the newcomer is read
    online.rows["a"] = _person("a", frozenset({"p9"}))
    clock[0] = 6.0
    pool.arrays("t", ["a", "b", "c"])  # past the ttl: answered from the cache, reloaded behind it
    assert online.reads[-1] == ["a", "b", "c"]
    arrays, index = pool.arrays("t", ["a", "b", "c"])
    assert arrays.people[index["a"]].projects == frozenset({"p9"})


class _CountingModel:
    """The loaded ONNX model, counting its runs and their rows."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.path, self.metadata = inner.path, inner.metadata
        self.runs: list[int] = []

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        self.runs.append(len(next(iter(inputs.values()))))
        return dict(self._inner.run(inputs))


def _counting(world: World) -> tuple[ModelSource, _CountingModel]:
    version = world.static_model().current
    model = _CountingModel(version.model)
    return StaticModel(VersionedModel(version.name, version.version, model)), model  # type: ignore[arg-type]


def test_rank_many_ranks_like_one_by_one_in_two_model_runs(world: World) -> None:
    service = _replayed(world)
    source, model = _counting(world)
    ranker = AssignmentRanker(service.state, OnlineFeatures(service.state), source)
    tasks = _tasks(world)[-6:]
    one_by_one = [ranker.rank_assignees(TENANT, t, k=3) for t in tasks]
    model.runs.clear()
    store = service.state.store
    assert isinstance(store, CountingStore)
    store.reads.clear()
    many = ranker.rank_many(TENANT, [*tasks[:3], "no-such-task", *tasks[3:]], k=3)
    assert len(model.runs) == 2  # every row of every task, then the occluded rows of every top 3
    assert [kind for kind, _ in store.reads].count(PersonState.kind) == 1  # the union of candidates: one read
    assert (TaskState.kind, len(tasks) + 1) in store.reads  # the task rows: one read
    assert isinstance(many[3], NotFound)
    for single, batched in zip(one_by_one, [*many[:3], *many[4:]], strict=True):
        assert not isinstance(batched, Exception)
        assert [c.user_id for c in batched.candidates] == [c.user_id for c in single.candidates]
        assert [c.score for c in batched.candidates] == pytest.approx([c.score for c in single.candidates], abs=1e-5)
        assert [r.feature for r in batched.candidates[0].reasons] == [r.feature for r in single.candidates[0].reasons]


def test_the_models_see_the_shortlist_only(world: World) -> None:
    service = _replayed(world)
    source, model = _counting(world)
    ranker = AssignmentRanker(service.state, OnlineFeatures(service.state), source, shortlist=6,
                              pool=CandidatePool(OnlineFeatures(service.state), executor=_Now()))
    store = service.state.store
    assert isinstance(store, CountingStore)
    active = service.state.active_ids(TENANT)
    task_id = _tasks(world)[-1]
    store.reads.clear()
    prediction = ranker.rank_assignees(TENANT, task_id, k=3)
    assert model.runs[0] == 6  # the model scored 6 rows, not len(active)
    person = PersonState.kind
    assert (person, len(active)) in store.reads and (person, 6) in store.reads  # pool, then fresh shortlist
    task = service.state.task(TENANT, task_id)
    assert task is not None
    pool = PeopleArrays.of(service.state.people(TENANT, active))
    chosen = {pool.people[i].user_id for i in shortlist(task, pool, 6)}
    assert {c.user_id for c in prediction.candidates} <= chosen


async def test_grpc_calls_that_arrive_together_are_ranked_together(world: World) -> None:
    service = _replayed(world)
    servicer = AssignmentServicer(service.ranker, max_wait_ms=50)  # a wait, so that the merge is certain
    server = build_server([bind(SERVICE_NAME, assignment_pb2_grpc.add_AssignmentServiceServicer_to_server, servicer)],
                          MeshSettings(), 0, host="127.0.0.1")
    await server.start()
    tasks = _tasks(world)[-8:]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = assignment_pb2_grpc.AssignmentServiceStub(channel)
            replies = await asyncio.gather(*(stub.RankAssignees(assignment_pb2.RankAssigneesRequest(
                tenant_id=TENANT, task_id=t, k=3)) for t in [*tasks, *tasks, *tasks]))
            batches = servicer.batches_run
            with pytest.raises(grpc.aio.AioRpcError) as info:  # a batch-mate's error stays its own
                await asyncio.gather(*(stub.RankAssignees(assignment_pb2.RankAssigneesRequest(
                    tenant_id=TENANT, task_id=t)) for t in [tasks[0], "no-such-task"]))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await server.stop(0)
    assert batches < len(replies)
    for reply, task_id in zip(replies, [*tasks, *tasks, *tasks], strict=True):
        expected = service.ranker.rank_assignees(TENANT, task_id, k=3)
        assert [c.user_id for c in reply.prediction.candidates] == [c.user_id for c in expected.candidates]


def test_rank_batch_answers_each_request_with_its_own_outcome(world: World) -> None:
    service = _replayed(world, 400)
    task = _tasks(world, 400)[0]
    outcomes = service.ranker.rank_batch([
        RankRequest(TENANT, task, k=2), RankRequest("", task), RankRequest(TENANT, task, k=1000),
        RankRequest("no-such-tenant", TaskFeatures("x", "p", as_of=datetime.now(UTC))),
    ])
    assert not isinstance(outcomes[0], Exception) and len(outcomes[0].candidates) == 2
    assert [type(o).__name__ for o in outcomes[1:]] == ["InvalidArgument", "InvalidArgument", "NotFound"]

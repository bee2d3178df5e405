"""Each safety rule with a candidate that passes and one that fails; the dry run."""

from __future__ import annotations

import pytest
from sunday.ml.v1 import events_pb2 as pb

from services.automation.state import FactStore
from services.automation.validate import AutomationSpec, Validator, ValidatorConfig, check_cycle, emitted
from tests.unit.automation._events import WORKFLOW, Stream, planted_stream


@pytest.fixture
def facts() -> FactStore:
    s = planted_stream()
    s.task(2000, "other-tenant-style", project="p3")  # p3: in the tenant, u1 never touched it
    store = FactStore()
    store.apply(s.events)
    other = Stream("t2")
    other.task(1, "x", project="q1")
    store.apply(other.events)
    return store


def _spec(steps: tuple[str, ...] = WORKFLOW, trigger: str = "task_created", condition: str = "task_type=bug",
          projects: tuple[str, ...] = ("p1",)) -> AutomationSpec:
    return AutomationSpec("t1", "u1", trigger, condition, steps, projects)


def test_the_planted_workflow_passes_every_rule_and_its_dry_run_counts_its_firings(facts: FactStore) -> None:
    verdict = Validator(facts).validate(_spec())
    assert verdict.ok and verdict.reasons == ()
    assert verdict.dry_run.firings == 12 and verdict.dry_run.followed_by_hand == 10
    assert verdict.dry_run.changes == 12 * len(WORKFLOW)


def test_permission_fails_for_an_action_the_actor_never_took(facts: FactStore) -> None:
    verdict = Validator(facts).validate(_spec((*WORKFLOW, "permission_change:role=admin")))
    assert verdict.rules == {"permission"} and "permission_change" in verdict.reasons[0].message


def test_cycle_fails_for_a_self_trigger_and_for_a_loop_through_an_existing_automation(facts: FactStore) -> None:
    validator = Validator(facts)
    assert validator.validate(_spec(("create_subtask:template=x",), condition="")).rules == {"cycle", "permission"}
    subtask_only = _spec(("move_item:board=archive",), condition="task_type=subtask")
    assert validator.validate(subtask_only).ok
    loop = Stream("t1", prefix="loop")
    loop.add(0, pb.AutomationCreated(automation_id="a-b", created_by="boss",
                                     trigger="task_status_changed to_status=TASK_STATUS_DONE",
                                     actions=["create_subtask:template=follow-up"]))
    facts.apply(loop.events)
    closes = _spec(("move_item:group=done",), condition="task_type=subtask")
    cycles = [r.message for r in validator.validate(closes).reasons if r.rule == "cycle"]
    assert cycles == ["it would trigger itself: candidate -> a-b -> candidate"]


def test_a_done_trigger_moving_to_done_is_not_a_cycle() -> None:
    assert emitted("move_item:group=done") == [("task_status_changed", {"to_status": "TASK_STATUS_DONE"})]
    assert emitted("notify:user=assignee") == []


def test_blast_radius_fails_for_a_bulk_step_over_the_cap(facts: FactStore) -> None:
    validator = Validator(facts, ValidatorConfig(max_items_per_day=100))
    assert validator.validate(_spec()).ok
    verdict = validator.validate(_spec((*WORKFLOW, "move_item:scope=project")))
    assert verdict.rules == {"blast_radius"} and verdict.dry_run.peak_items_per_day > 100


def test_scope_fails_for_another_tenants_project_and_for_a_project_the_actor_cannot_see(facts: FactStore) -> None:
    validator = Validator(facts)
    assert validator.validate(_spec((*WORKFLOW, "move_item:project=p1"))).ok
    assert validator.validate(_spec((*WORKFLOW, "move_item:project=q1"))).rules == {"cross_tenant"}
    assert validator.validate(_spec(projects=("p1", "p3"))).rules == {"cross_project"}


def test_assigning_to_a_team_after_an_assignment_to_me_is_not_a_cycle_but_to_a_person_may_be() -> None:
    assert emitted("assign:team=triage") == [("task_assigned", {"assignee_id": "team:triage"})]
    to_me = AutomationSpec("t1", "u1", "task_assigned", "assignee_id=self", ("set_field:sprint=current",
                                                                               "assign:team=triage"), ("p1",))
    assert check_cycle(to_me, []) == []
    to_person = AutomationSpec("t1", "u1", "task_assigned", "assignee_id=self", ("assign:user=owner",), ("p1",))
    assert [r.rule for r in check_cycle(to_person, [])] == ["cycle"]  # the owner may be the actor: refused

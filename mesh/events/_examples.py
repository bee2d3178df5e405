"""Example payloads for every event type: documentation that is executed by the contract tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sunday.ml.v1 import common_pb2 as c
from sunday.ml.v1 import events_pb2 as e

from mesh.events._codec import new_envelope

_T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
_TENANT = "tenant-acme"


def _ts(dt: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


def _prov() -> c.Provenance:
    return c.Provenance(model_name="example", model_version="1", trace_id="0" * 31 + "1")


_PAYLOADS: dict[str, list[Callable[[], Message]]] = {
    "task_created": [
        lambda: e.TaskCreated(task_id="task-1", project_id="proj-1", milestone_id="ms-1",
                              title="Fix login timeout on SSO", description="Users are logged out after 5 min.",
                              task_type="bug", priority=e.PRIORITY_HIGH, required_skills=["python", "auth"],
                              estimate_hours=6, due_at=_ts(_T0 + timedelta(days=3)), created_by="user-1"),
        lambda: e.TaskCreated(task_id="task-2", project_id="proj-1", title="Draft Q4 roadmap",
                              task_type="docs", depends_on=["task-1"]),
    ],
    "task_updated": [lambda: e.TaskUpdated(task_id="task-1", project_id="proj-1", priority=e.PRIORITY_CRITICAL)],
    "task_assigned": [lambda: e.TaskAssigned(task_id="task-1", project_id="proj-1", assignee_id="user-2",
                                             assigned_by="user-1", suggestion_id="sugg-1")],
    "task_status_changed": [lambda: e.TaskStatusChanged(task_id="task-1", project_id="proj-1",
                                                        from_status=e.TASK_STATUS_TODO,
                                                        to_status=e.TASK_STATUS_IN_PROGRESS, actor_id="user-2")],
    "task_completed": [lambda: e.TaskCompleted(task_id="task-1", project_id="proj-1", assignee_id="user-2",
                                               actual_hours=7.5)],
    "task_commented": [lambda: e.TaskCommented(task_id="task-1", project_id="proj-1", comment_id="cmt-1",
                                               author_id="user-3", text="This keeps failing, very frustrating.")],
    "task_viewed": [lambda: e.TaskViewed(task_id="task-1", project_id="proj-1", user_id="user-3",
                                         dwell_seconds=12.5, source="board")],
    "project_created": [lambda: e.ProjectCreated(project_id="proj-1", name="Mobile app v2", owner_id="user-1",
                                                 deadline=_ts(_T0 + timedelta(days=30)),
                                                 member_ids=["user-1", "user-2", "user-3"])],
    "project_updated": [lambda: e.ProjectUpdated(project_id="proj-1", deadline=_ts(_T0 + timedelta(days=40)))],
    "milestone_created": [lambda: e.MilestoneCreated(milestone_id="ms-1", project_id="proj-1", name="Beta",
                                                     due_at=_ts(_T0 + timedelta(days=14)))],
    "milestone_completed": [lambda: e.MilestoneCompleted(milestone_id="ms-1", project_id="proj-1")],
    "user_joined": [lambda: e.UserJoined(user_id="user-2", display_name="Ada", role="engineer", seniority=3,
                                         timezone="Europe/Paris", capacity_hours_per_week=36,
                                         skills=[c.Skill(name="python", level=4), c.Skill(name="auth", level=3)])],
    "user_skills_updated": [lambda: e.UserSkillsUpdated(user_id="user-2", skills=[c.Skill(name="go", level=2)])],
    "user_activity": [
        lambda: e.UserActivity(user_id="user-2", action="login", ip="10.0.0.7", device="laptop", session_id="s-1"),
        lambda: e.UserActivity(user_id="user-9", action="bulk_delete", resource="board-3", count=420),
    ],
    "automation_created": [lambda: e.AutomationCreated(automation_id="auto-1", created_by="user-1",
                                                       trigger="status -> done",
                                                       actions=["notify owner", "move to archive"])],
    "automation_run": [lambda: e.AutomationRun(automation_id="auto-1", succeeded=True, duration_ms=35)],
    "meeting_transcript": [lambda: e.MeetingTranscript(
        meeting_id="meet-1", project_id="proj-1", title="Sprint planning",
        utterances=[e.Utterance(speaker="Ada", text="I will fix the login bug by Friday.", start_seconds=3)])],
    "suggestion_feedback": [lambda: e.SuggestionFeedback(suggestion_id="sugg-1", capability="assignment",
                                                         user_id="user-1", action=e.FEEDBACK_ACTION_ACCEPTED,
                                                         item_id="user-2")],
    "task_deleted": [lambda: e.TaskDeleted(task_id="task-1", project_id="proj-1")],
    "tenant_erased": [lambda: e.TenantErased(reason="customer offboarding", requested_by="admin-1")],
    "assignment_prediction": [lambda: e.AssignmentPrediction(
        task_id="task-1", project_id="proj-1", provenance=_prov(),
        candidates=[e.RankedCandidate(user_id="user-2", score=0.91,
                                      reasons=[c.Reason(feature="skill_match", contribution=0.4)])])],
    "timeline_prediction": [lambda: e.TimelinePrediction(
        entity_kind=e.ENTITY_KIND_TASK, entity_id="task-1", project_id="proj-1", remaining_hours_p10=2,
        remaining_hours_p50=5, remaining_hours_p90=11, provenance=_prov())],
    "nlp_prediction": [lambda: e.NlpPrediction(kind="sentiment", subject_id="cmt-1", sentiment="negative",
                                               sentiment_score=0.87, provenance=_prov())],
    "anomaly_prediction": [lambda: e.AnomalyPrediction(user_id="user-9", score=0.97, provenance=_prov())],
    "personalization_prediction": [lambda: e.PersonalizationPrediction(
        user_id="user-3", items=[e.ScoredItem(item_id="task-1", score=0.7)], policy="linucb", provenance=_prov())],
    "automation_prediction": [lambda: e.AutomationPrediction(
        user_id="user-1", rule=e.AutomationRule(trigger="status -> done", actions=["notify owner"]),
        support=12, confidence=0.9, provenance=_prov())],
    "alert": [lambda: e.Alert(alert_id="alert-1", capability="timeline", kind="deadline_risk",
                              severity=e.SEVERITY_WARNING, subject_kind="milestone", subject_id="ms-1",
                              message="Beta will likely miss its deadline (p=0.72)", score=0.72,
                              dedup_key="timeline:deadline_risk:ms-1", provenance=_prov())],
    "suggestion": [lambda: e.Suggestion(suggestion_id="sugg-2", capability="automation", kind="automation_rule",
                                        user_id="user-1", title="Automate archiving done tasks",
                                        rule=e.AutomationRule(trigger="status -> done", actions=["archive"]),
                                        provenance=_prov())],
}


def example_events(event_type: str) -> list[e.Envelope]:
    """Fresh example envelopes of one event type (new event ids every call)."""
    return [new_envelope(_TENANT, build(), producer="examples", occurred_at=_T0) for build in _PAYLOADS[event_type]]

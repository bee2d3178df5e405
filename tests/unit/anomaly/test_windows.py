"""Window arithmetic and the idempotent window update of the faust step."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sunday.ml.v1 import events_pb2 as e

from mesh.events import new_envelope
from services.anomaly.windows import WindowSpec, apply, summary, updates

AT = datetime(2026, 1, 5, 10, 20, tzinfo=UTC)  # 10:20 UTC


def test_tumbling_and_hopping_starts() -> None:
    ts = int(AT.timestamp())
    hour = ts - ts % 3600
    assert WindowSpec("t", 3600, 3600).starts(ts) == [hour]
    # 1 h windows every 15 min that contain 10:20: 09:30, 09:45, 10:00, 10:15
    assert WindowSpec("h", 3600, 900).starts(ts) == [hour - 1800, hour - 900, hour, hour + 900]


def test_bad_window_spec_names_the_window() -> None:
    with pytest.raises(ValueError, match="window w"):
        WindowSpec("w", 3600, 700)


def test_an_event_counts_once_per_window_even_when_delivered_twice() -> None:
    env = new_envelope("tn", e.UserActivity(user_id="u1", action="export", count=500), producer="t", occurred_at=AT)
    ups = updates(env, (WindowSpec("t", 3600, 3600),))
    assert sorted(k.split("|")[1] for k in ups) == ["tenant", "user"]
    key = next(k for k in ups if "|user|u1|" in k)
    state, changed = apply(None, env.event_id, ups[key])
    again, changed_again = apply(state, env.event_id, ups[key])
    assert changed and not changed_again
    assert summary(again) == {"export": (1, 500.0)}


def test_task_flow_counts_per_project_and_tenant() -> None:
    env = new_envelope("tn", e.TaskCompleted(task_id="t1", project_id="p1", assignee_id="u2"), producer="t",
                       occurred_at=AT)
    kinds = {k.split("|")[1] for k in updates(env, (WindowSpec("t", 3600, 3600),))}
    assert kinds == {"tenant", "project", "user"}

"""Feast-backed behaviour on the SQLite online store (no Redis needed)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sunday.ml.v1 import common_pb2 as c
from sunday.ml.v1 import events_pb2 as e

from mesh.features import (
    DEFAULT_VIEWS,
    PROJECT_VIEW,
    TASK_VIEW,
    USER_VIEW,
    EventLog,
    FeatureIngestor,
    FeatureRecord,
    LoggedEvent,
    ReplayStats,
    build_offline_tables,
    replay,
    replay_log,
    training_frame,
)
from mesh.features._cli import main as cli_main
from tests.unit.features._stream import T0, env, stream
from tests.unit.features.conftest import MakeIngestor


def _online(ing: FeatureIngestor) -> dict[tuple[str, str], FeatureRecord[object] | None]:
    """Every online row of every entity the aggregates know."""
    out: dict[tuple[str, str], FeatureRecord[object] | None] = {}
    for view in DEFAULT_VIEWS:
        keys = [k.split(":", 1)[1].rstrip(":") for k in ing.aggregates.keys(view.state_type.kind)]
        for key, rec in zip(keys, ing.client.get_online(view, keys), strict=True):
            out[(view.name, key)] = rec
    assert out
    return out


def test_feast_import_leaves_prometheus_env_alone(make_ingestor: MakeIngestor) -> None:
    make_ingestor()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_duplicate_event_changes_no_online_feature(make_ingestor: MakeIngestor) -> None:
    ing = make_ingestor()
    ev = env("t", e.TaskCommented(task_id="k", project_id="p", comment_id="c", author_id="u"), T0)
    ing.handle(ev)
    before = ing.client.get_online(TASK_VIEW, ["t:k"])
    ing.handle(ev)
    after = ing.client.get_online(TASK_VIEW, ["t:k"])
    assert before == after and after[0] is not None and after[0].features.n_comments == 1


def test_older_event_does_not_overwrite_newer_on_sqlite(make_ingestor: MakeIngestor) -> None:
    ing = make_ingestor()
    skills = [c.Skill(name="go", level=5)]
    ing.handle(env("t", e.UserSkillsUpdated(user_id="u", skills=skills), T0 + timedelta(hours=2)))
    ing.handle(env("t", e.UserSkillsUpdated(user_id="u", skills=[c.Skill(name="cobol", level=1)]), T0))
    (row,) = ing.client.get_online(USER_VIEW, ["t:u"])
    assert row is not None
    assert row.features.skills == ("go",)
    assert row.event_timestamp == T0 + timedelta(hours=2)


def test_live_stream_equals_replay_of_event_log_and_replaying_twice(make_ingestor: MakeIngestor) -> None:
    live = make_ingestor()
    for ev in stream(seed=5, tenants=2, users=4, tasks=5):
        live.handle(ev)
    assert live.event_log is not None
    rebuilt = make_ingestor()
    first = replay_log(rebuilt, live.event_log.root, batch_size=64)
    expected = _online(live)
    assert _online(rebuilt) == expected
    again = replay_log(rebuilt, live.event_log.root, batch_size=7)
    assert (first.applied, again.applied, again.duplicates) == (first.events, 0, first.events)
    assert _online(rebuilt) == expected


def test_point_in_time_join_never_leaks_the_future(make_ingestor: MakeIngestor) -> None:
    ing = make_ingestor()
    t1, t2 = T0, T0 + timedelta(days=1)
    ing.handle(env("t", e.TaskCreated(task_id="a", project_id="p", task_type="bug", estimate_hours=3), t1))
    ing.handle(env("t", e.TaskAssigned(task_id="a", project_id="p", assignee_id="u"), t1))
    ing.handle(env("t", e.TaskCreated(task_id="b", project_id="p", task_type="ops", estimate_hours=5), t2))
    ing.handle(env("t", e.TaskAssigned(task_id="b", project_id="p", assignee_id="u"), t2))
    asked = [t1 - timedelta(minutes=1), t1 + timedelta(hours=12), t2 + timedelta(minutes=1)]
    entity_df = pd.DataFrame({"user_key": ["t:u"] * 3, "project_key": ["t:p"] * 3, "event_timestamp": asked})
    frame = training_frame(ing.repo, entity_df, ["user_features:open_tasks", "user_features:est_hours_left",
                                                 "project_features"])
    assert list(frame["event_timestamp"]) == [pd.Timestamp(t) for t in asked]
    assert pd.isna(frame["user_features__open_tasks"][0])
    assert list(frame["user_features__open_tasks"][1:]) == [1, 2]
    assert list(frame["user_features__est_hours_left"][1:]) == [3.0, 8.0]
    assert list(frame["project_features__total_tasks"][1:]) == [1, 2]


def test_offline_tables_come_from_the_log_in_event_time_order(make_ingestor: MakeIngestor, tmp_path: Path) -> None:
    ing = make_ingestor()
    late = env("t", e.TaskCommented(task_id="k", project_id="p", comment_id="1"), T0)
    ing.handle(env("t", e.TaskCommented(task_id="k", project_id="p", comment_id="2"), T0 + timedelta(hours=1)))
    ing.handle(late)
    ing.handle(late)  # redelivered: logged twice, counted once
    build = build_offline_tables(ing.repo)
    table = pd.read_parquet(ing.repo.table_path(TASK_VIEW)).sort_values("event_timestamp")
    assert build.events == 2
    assert list(table["n_comments"]) == [1, 2]


@pytest.mark.parametrize("n", [1, 64])
def test_online_read_in_batches(make_ingestor: MakeIngestor, n: int) -> None:
    ing = make_ingestor()
    events = [env("t", e.ProjectCreated(project_id=f"p{i}", member_ids=[f"u{j}" for j in range(i % 5)]),
                  T0 + timedelta(minutes=i)) for i in range(n)]
    replay(ing, events, batch_size=16)
    keys = [f"t:p{i}" for i in reversed(range(n))]
    rows = ing.client.get_online(PROJECT_VIEW, [*keys, "t:missing"])
    assert len(rows) == n + 1 and rows[-1] is None
    for key, row in zip(keys, rows, strict=False):
        i = int(key.rsplit("p", 1)[1])
        assert row is not None and row.entity_key == key
        assert row.features.members_count == i % 5 and row.event_timestamp == T0 + timedelta(minutes=i)


def test_cli_apply_replay_stats(make_ingestor: MakeIngestor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    log = EventLog(tmp_path / "src-log")
    log.append([LoggedEvent(ev) for ev in stream(seed=2, tenants=1, users=3, tasks=4)])
    monkeypatch.setenv("MESH_FEATURES__REPO_DIR", str(tmp_path / "cli-repo"))
    monkeypatch.setenv("MESH_FEATURES__OFFLINE_DIR", str(tmp_path / "cli-off"))
    monkeypatch.setenv("MESH_FEATURES__ONLINE_STORE", "sqlite")
    assert cli_main(["--project", "cli_test", "replay", "--from-log", str(log.root)]) == 0
    assert f"replayed {log.count()} events ({log.count()} applied" in capsys.readouterr().out
    assert cli_main(["--project", "cli_test", "stats"]) == 0
    assert "user_features        3 entities" in capsys.readouterr().out


def test_replay_stats_rate() -> None:
    assert ReplayStats(events=10, seconds=2.0).events_per_s == 5.0

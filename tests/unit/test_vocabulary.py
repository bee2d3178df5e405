"""The shared vocabularies (task types, statuses, event kinds) are defined once, in mesh.events, and every
user agrees with them: the simulator, the feature store and both services' model inputs."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from sunday.ml.v1 import events_pb2 as e

from mesh.events import (
    EVENT_TYPES,
    OTHER_TASK_TYPE,
    TASK_STATUSES,
    TASK_TYPE_SLOTS,
    TASK_TYPES,
    TopicRegistry,
    status_name,
    task_type_slot,
)

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("mesh", "services", "simulator", "bench", "gateway", "sdk", "scripts")
HOME = ROOT / "mesh" / "events" / "_vocab.py"
WORDS = frozenset({*TASK_TYPE_SLOTS, *TASK_STATUSES})


def _sources() -> Iterator[Path]:
    for name in SOURCE_DIRS:
        yield from sorted((ROOT / name).rglob("*.py"))


def _vocabulary_literals(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Tuple/list/set literals that spell out three or more vocabulary words: a second definition.

    Tables keyed by the vocabulary (dicts such as the simulator's hours per type) are uses, not copies.
    """
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            words = [el.value for el in node.elts if isinstance(el, ast.Constant) and isinstance(el.value, str)]
            if sum(w in WORDS for w in words) >= 3:
                yield node.lineno, words


def test_the_vocabulary_is_spelled_out_only_in_mesh_events() -> None:
    assert HOME.exists()
    copies = [f"{p.relative_to(ROOT)}:{line}: {words}" for p in _sources() if p != HOME
              for line, words in _vocabulary_literals(p)]
    assert copies == [], "define task types/statuses once, in mesh.events (import them):\n" + "\n".join(copies)


def test_the_check_finds_a_copy(tmp_path: Path) -> None:
    copy = tmp_path / "copy.py"
    copy.write_text('TYPES = ("bug", "feature", "design", "other")\nS = ["todo", "done", "blocked"]\n'
                    'HOURS = {"bug": 1.0, "feature": 2.0, "docs": 3.0}\n')
    assert [line for line, _ in _vocabulary_literals(copy)] == [1, 2]


def test_other_is_a_slot_not_a_type() -> None:
    assert OTHER_TASK_TYPE not in TASK_TYPES
    assert (*TASK_TYPES, OTHER_TASK_TYPE) == TASK_TYPE_SLOTS
    assert [task_type_slot(t) for t in ("bug", "qa", "", "spike", "other")] == ["bug", "qa", "other", "other",
                                                                              "other"]


def test_slot_order_is_what_trained_models_were_built_with() -> None:
    # The one-hot and per-type columns of exported models follow this order; changing it needs a
    # FEATURE_SCHEMA bump in services/assignment/features.py and services/timeline/features.py.
    assert TASK_TYPE_SLOTS == ("bug", "feature", "design", "docs", "ops", "research", "data", "qa", "other")
    assert TASK_STATUSES == ("todo", "in_progress", "in_review", "blocked", "done")


def test_model_inputs_follow_the_vocabulary() -> None:
    from services.assignment.features import FEATURE_NAMES
    from services.assignment.views import PersonRow
    from services.timeline.features import STATIC_NAMES
    from services.timeline.model import STATUS_SLOTS

    assert [n.removeprefix("t_type_") for n in FEATURE_NAMES if n.startswith("t_type_")] == list(TASK_TYPE_SLOTS)
    assert [n.removeprefix("p_share_") for n in FEATURE_NAMES if n.startswith("p_share_")] == list(TASK_TYPE_SLOTS)
    assert [n.removeprefix("type_") for n in STATIC_NAMES if n.startswith("type_")] == list(TASK_TYPE_SLOTS)
    assert STATUS_SLOTS[: len(TASK_STATUSES)] == TASK_STATUSES
    columns = set(PersonRow.__dataclass_fields__)
    assert all(f"done_{t}" in columns and f"hours_{t}" in columns for t in TASK_TYPE_SLOTS)


def test_user_features_have_a_column_per_slot() -> None:
    from mesh.features import USER_VIEW

    names = {name for name, _ in USER_VIEW.fields()}
    assert {f"completed_{t}" for t in TASK_TYPE_SLOTS} <= names


def test_statuses_come_from_the_proto() -> None:
    assert [status_name(v) for v in (e.TASK_STATUS_TODO, e.TASK_STATUS_IN_PROGRESS, e.TASK_STATUS_IN_REVIEW,
                                     e.TASK_STATUS_BLOCKED, e.TASK_STATUS_DONE)] == list(TASK_STATUSES)
    assert status_name(e.TASK_STATUS_UNSPECIFIED) == "unspecified"
    with pytest.raises(ValueError, match="unknown TaskStatus"):
        status_name(99)


def test_simulator_tables_cover_exactly_the_task_types() -> None:
    from simulator import _vocab as v

    assert v.TASK_TYPES is TASK_TYPES
    for table in (v.TYPE_HOURS, v.TYPE_SKILLS, v.TITLE_TEMPLATES, v.DESCRIPTION_SENTENCES):
        assert set(table) == set(TASK_TYPES)
    for type_weights, _skills in v.ROLES.values():
        assert set(type_weights) <= set(TASK_TYPES)


def test_simulated_events_use_only_the_vocabulary() -> None:
    from simulator import SimConfig, Simulation

    types: set[str] = set()
    statuses: set[str] = set()
    kinds: set[str] = set()
    for env in Simulation(SimConfig(tenants=1, users_per_tenant=12, weeks=1, seed=3)).events():
        kinds.add(env.type)
        if env.type == "task_created":
            types.add(env.task_created.task_type)
        elif env.type == "task_status_changed":
            statuses.update(status_name(s) for s in (env.task_status_changed.from_status,
                                                     env.task_status_changed.to_status))
    assert types and types <= set(TASK_TYPES)
    assert statuses and statuses <= set(TASK_STATUSES)
    assert kinds <= set(EVENT_TYPES)


def test_every_topic_declares_known_event_kinds() -> None:
    registry = TopicRegistry("x.")
    declared = {t for spec in registry for t in spec.event_types}
    assert declared <= set(EVENT_TYPES)

"""The effort feature of the task model, read from the nlp service over gRPC (timeline holds no text model):
the estimates of nlp's effort model when it answers, and the feature *missing* (the constant, a warning,
no crash) when nlp is down or has no effort model; the feature slot it fills."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from services.nlp.effort_train import EffortEstimator, train
from services.timeline.effort_prior import (
    CONSTANT_POINTS,
    PRIOR_NAME,
    ConstantPrior,
    NlpEffortPrior,
    load_effort_prior,
)
from services.timeline.features import STATIC_NAMES, static_vector
from services.timeline.state import TaskState
from tests.unit.nlp.effort_helpers import BIG, SMALL, nlp_server, write_story_points


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_estimates_come_from_the_nlp_service(tmp_path: Path) -> None:
    data = tmp_path / "sp"
    data.mkdir()
    write_story_points(data / "one.csv")
    train(data, tmp_path / "effort.pkl")
    with nlp_server(EffortEstimator.load(tmp_path / "effort.pkl")) as target:
        prior = load_effort_prior(target)
        assert isinstance(prior, NlpEffortPrior) and prior.name == PRIOR_NAME
        small, big, small_again = prior.points([SMALL, BIG, SMALL])
        assert big > small + 5 and small_again == small
    # nlp has gone: texts already estimated keep their value, a new one is missing (the constant), no crash
    assert prior.points([BIG, "a text never estimated"]).tolist() == [big, CONSTANT_POINTS]
    assert not prior.available
    prior.close()


def test_nlp_down_or_without_an_effort_model_means_the_feature_is_missing(caplog: pytest.LogCaptureFixture
                                                                          ) -> None:
    prior = NlpEffortPrior(f"127.0.0.1:{_free_port()}", deadline_s=0.5, retry_after_s=60)
    with caplog.at_level(logging.WARNING):
        assert prior.points([SMALL, BIG]).tolist() == [CONSTANT_POINTS, CONSTANT_POINTS]
    assert "effort feature missing for 2 task(s)" in caplog.text and not prior.available
    prior.close()
    with nlp_server(None) as target, caplog.at_level(logging.WARNING):
        fallback = load_effort_prior(target)
    assert isinstance(fallback, ConstantPrior) and "UNAVAILABLE" in caplog.text
    assert "effort prior skipped" in caplog.text


def test_timeline_imports_no_text_model() -> None:
    code = ("import sys, services.timeline.__main__, services.timeline.effort_prior, services.timeline.train\n"
            "bad = [m for m in sys.modules if m.startswith(('sentence_transformers', 'services.nlp.effort', "
            "'mesh.models._minilm', 'services.nlp.embedder', 'transformers'))]\n"
            "print(sorted(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_feature_is_log1p_of_the_points() -> None:
    created = datetime(2026, 1, 5, tzinfo=UTC)
    task = TaskState(tenant_id="x", entity_id="t", project_id="p", created=True, created_at=created,
                     history=[(created, "e1", "todo")])
    now = datetime(2026, 1, 6, tzinfo=UTC)
    i = STATIC_NAMES.index("effort_points")
    assert static_vector(task, None, None, 0, now, 8.0)[i] == pytest.approx(np.log1p(8.0))
    assert static_vector(task, None, None, 0, now)[i] == pytest.approx(np.log1p(CONSTANT_POINTS))

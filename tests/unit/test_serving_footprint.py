"""What a serving process and a training module import, checked in fresh interpreters (this test process has
torch loaded by other tests): serving runs ONNX files fetched by alias and imports no training library;
training modules import the simulator only when asked to train on it."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mesh.config import ModelSettings
from mesh.events import encode
from mesh.models import CHAMPION, INPUT_NAME, ModelRegistry, stamp_metadata
from simulator import SimConfig, Simulation

TRAINING_LIBRARIES = ("torch", "lightgbm", "sklearn")
TEXT_MODELS = ("services.nlp.effort", "sentence_transformers", "transformers")
WORLD = SimConfig(tenants=1, users_per_tenant=6, weeks=2, seed=3)
DATA_RANGE = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC))

SERVE_ONE_OF_EACH = """
import asyncio, base64, json, resource, sys
import services.assignment.__main__, services.timeline.__main__  # the serving entry points
from mesh.config import ModelSettings
from mesh.events import decode
from mesh.models import CHAMPION, ModelRegistry, ReloadingModel
from services.assignment.online import OnlineFeatures
from services.assignment.ranker import MODEL_NAME as RANKER, SCHEMA as RANKER_SCHEMA, AssignmentRanker
from services.assignment.state import StateStore
from services.timeline.predictor import MODEL_NAME as TASK_MODEL, SCHEMA as TASK_SCHEMA, TimelinePredictor
from services.timeline.state import InMemoryTimelineStore, apply_event

settings = ModelSettings.model_validate_json(sys.argv[1])
events = [decode(base64.b64decode(e)) for e in json.loads(open(sys.argv[2]).read())]
task = [e for e in events if e.type == "task_created"][-1]

async def main() -> dict:
    registry = ModelRegistry(settings)
    ranker_model = ReloadingModel(registry, RANKER, CHAMPION, settings, schema=RANKER_SCHEMA)
    task_model = ReloadingModel(registry, TASK_MODEL, CHAMPION, settings, schema=TASK_SCHEMA)
    for model in (ranker_model, task_model):
        await model.start(watch=False)
    state = StateStore()
    state.apply(events)
    ranked = AssignmentRanker(state, OnlineFeatures(state), ranker_model).rank_assignees(
        task.tenant_id, task.task_created.task_id)
    store = InMemoryTimelineStore()
    for env in events:
        apply_event(store, env)
    forecast = TimelinePredictor(store, task_model, simulations=50).predict_task(
        task.tenant_id, task.task_created.task_id)
    return {"candidates": len(ranked.candidates), "p50": forecast.remaining_hours_p50}

out = asyncio.run(main())
out["loaded"] = sorted(m for m in json.loads(sys.argv[3]) if m in sys.modules)
out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(json.dumps(out))
"""


def _linear_ranker(path: Path) -> Path:
    """A ranker ONNX graph built by hand (score = x @ w) with the metadata the service checks."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from services.assignment.features import N_FEATURES
    from services.assignment.ranker import SCHEMA

    weights = numpy_helper.from_array(np.linspace(-1, 1, N_FEATURES, dtype=np.float32).reshape(-1, 1), "w")
    graph = helper.make_graph([helper.make_node("MatMul", [INPUT_NAME, "w"], ["score"])], "linear",
                              [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", N_FEATURES])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    stamp_metadata(path, {**SCHEMA.metadata(), "reference": json.dumps([0.0] * N_FEATURES)})
    return path


def _fresh(code: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_serving_entry_points_predict_without_training_libraries(tmp_path: Path) -> None:
    from services.assignment.ranker import MODEL_NAME as RANKER
    from services.timeline.export import export_untrained
    from services.timeline.predictor import MODEL_NAME as TASK_MODEL

    settings = ModelSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_dir=tmp_path / "artifacts",
                             intra_op_threads=1, inter_op_threads=1)
    registry = ModelRegistry(settings)
    for name, path in ((RANKER, _linear_ranker(tmp_path / "ranker.onnx")), (TASK_MODEL, export_untrained(tmp_path))):
        registry.log_and_register(name, path, {}, {}, DATA_RANGE, alias=CHAMPION)
    events = tmp_path / "events.json"
    events.write_text(json.dumps([base64.b64encode(encode(e)).decode() for e in Simulation(WORLD).events()]))

    watched = json.dumps([*TRAINING_LIBRARIES, *TEXT_MODELS])
    out = json.loads(_fresh(SERVE_ONE_OF_EACH, settings.model_dump_json(), str(events), watched))

    assert out["candidates"] > 0 and out["p50"] > 0  # one prediction of each service ran
    assert out["loaded"] == []


def test_training_modules_import_the_simulator_only_when_asked() -> None:
    code = ("import sys, services.assignment.train, services.timeline.train, services.timeline.milestone_train\n"
            "print(sorted(m for m in sys.modules if m == 'simulator' or m.startswith('simulator.')))")
    assert _fresh(code) == "[]"

"""ONNX export of the timeline networks: deterministic graph equals torch, MC graph is stochastic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from services.timeline.model import (
    MILESTONE_INPUTS,
    TASK_INPUTS,
    MilestoneModelConfig,
    MilestoneNet,
    TaskDurationNet,
    TaskModelConfig,
    TrainConfig,
    export_deterministic,
    export_mc,
    pad_sequences,
    predict,
    predict_distribution,
    quantiles_from_passes,
    repeat_for_mc,
    set_mc_dropout,
    step_features,
    train,
)

N_STATIC = 3


def _toy_tasks(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Tasks whose log remaining hours depend on the static features and on the history length."""
    rng = np.random.default_rng(seed)
    seqs, statics, ys = [], [], []
    for _ in range(n):
        t = int(rng.integers(1, 9))
        hours = np.cumsum(rng.exponential(5.0, t))
        statuses = rng.choice(["todo", "in_progress", "in_review", "blocked"], t)
        static = rng.standard_normal(N_STATIC).astype(np.float32)
        seqs.append(step_features(list(statuses), list(hours)))
        statics.append(static)
        ys.append(1.5 + 0.8 * static[0] - 0.5 * static[1] + 0.15 * t + 0.1 * rng.standard_normal())
    events, mask = pad_sequences(seqs)
    return [events, mask, np.stack(statics)], np.asarray(ys)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TaskDurationNet, Path, Path]:
    torch.manual_seed(0)
    inputs, y = _toy_tasks(384, seed=1)
    model = TaskDurationNet(TaskModelConfig(n_static=N_STATIC, hidden=16, dropout=0.1))
    train(model, inputs, y, TrainConfig(epochs=25, batch_size=32, lr=1e-2))
    out = tmp_path_factory.mktemp("timeline_onnx")
    det = export_deterministic(model, out / "task.onnx").path
    mc = export_mc(model, out / "task_mc.onnx")
    return model, det, mc


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _feeds(inputs: list[np.ndarray], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {n: np.asarray(a, dtype=np.float32) for n, a in zip(names, inputs, strict=True)}


@pytest.mark.parametrize(("batch", "seq_len"), [(1, 2), (9, 13)])
def test_deterministic_onnx_equals_torch_with_padding(
    trained: tuple[TaskDurationNet, Path, Path], batch: int, seq_len: int
) -> None:
    model, det, _ = trained
    rng = np.random.default_rng(batch)
    events = rng.standard_normal((batch, seq_len, model.cfg.n_step)).astype(np.float32)
    mask = (np.arange(seq_len)[None, :] < rng.integers(1, seq_len + 1, (batch, 1))).astype(np.float32)
    static = rng.standard_normal((batch, N_STATIC)).astype(np.float32)
    expected = predict(model, [events, mask, static])
    got = _session(det).run(None, _feeds([events, mask, static], TASK_INPUTS))[0]
    assert got.shape == (batch,)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_exported_graphs_keep_batch_and_sequence_dynamic(trained: tuple[TaskDurationNet, Path, Path]) -> None:
    for path in trained[1:]:
        dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
        assert [d.HasField("dim_value") for d in dims[:2]] == [False, False]


def test_mc_graph_is_stochastic_and_its_mean_tracks_the_deterministic_output(
    trained: tuple[TaskDurationNet, Path, Path],
) -> None:
    _, det, mc = trained
    inputs, y = _toy_tasks(40, seed=2)
    feeds = _feeds(inputs, TASK_INPUTS)
    deterministic = _session(det).run(None, feeds)[0]
    session = _session(mc)
    n = 200
    many = _feeds(repeat_for_mc(inputs, n), TASK_INPUTS)
    first, second = session.run(None, many)[0], session.run(None, many)[0]
    assert not np.allclose(first, second)
    passes = first.reshape(n, -1)
    assert passes.std(axis=0).mean() > 1e-3
    # MC averaging approximates weight scaling: close to the deterministic net relative to the target's spread.
    assert np.abs(passes.mean(axis=0) - deterministic).mean() < 0.1 * y.std()
    q = quantiles_from_passes(first, n)
    assert np.all(q.p10 <= q.p50) and np.all(q.p50 <= q.p90)


def test_onnx_mc_passes_follow_the_torch_mc_distribution(
    trained: tuple[TaskDurationNet, Path, Path],
) -> None:
    model, _, mc = trained
    inputs, _ = _toy_tasks(30, seed=3)
    n = 1000
    onnx_passes = _session(mc).run(None, _feeds(repeat_for_mc(inputs, n), TASK_INPUTS))[0].reshape(n, -1)
    set_mc_dropout(model, True)
    try:
        with torch.no_grad():
            torch_passes = model(*[torch.from_numpy(a) for a in repeat_for_mc(inputs, n)]).numpy().reshape(n, -1)
    finally:
        set_mc_dropout(model, False)
    sd = torch_passes.std(axis=0)
    bound = 5 * np.sqrt(2 / n) * sd + 1e-4  # five standard errors of a difference of two means
    assert np.all(np.abs(onnx_passes.mean(axis=0) - torch_passes.mean(axis=0)) <= bound)
    np.testing.assert_allclose(onnx_passes.std(axis=0), sd, rtol=0.25, atol=1e-3)


def test_predict_distribution_gives_ordered_quantiles_and_restores_eval_mode(
    trained: tuple[TaskDurationNet, Path, Path],
) -> None:
    model = trained[0]
    inputs, _ = _toy_tasks(30, seed=3)
    q = predict_distribution(model, inputs, n=300)
    # A sample whose head ReLUs are all dead gets a zero-width band; most must be stochastic.
    assert np.all(q.p10 <= q.p50) and np.all(q.p50 <= q.p90)
    assert np.mean(q.p90 > q.p10) > 0.8
    assert not model.training
    np.testing.assert_array_equal(predict(model, inputs), predict(model, inputs))  # MC switched off again


def test_training_learns_the_toy_target(trained: tuple[TaskDurationNet, Path, Path]) -> None:
    inputs, y = _toy_tasks(200, seed=4)
    mae = np.abs(predict(trained[0], inputs) - y).mean()
    assert mae < 0.5 * np.abs(y - y.mean()).mean()


def test_milestone_model_exports_both_graphs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MilestoneNet(MilestoneModelConfig(n_task=4, hidden=8))
    report = export_deterministic(model, tmp_path / "milestone.onnx", check_sizes=((1, 2), (5, 17)))
    assert len(report.checks) == 2 and report.max_abs_diff < 1e-4
    mc = export_mc(model, tmp_path / "milestone_mc.onnx")
    rng = np.random.default_rng(0)
    tasks = rng.standard_normal((3, 6, 4)).astype(np.float32)
    mask = np.ones((3, 6), dtype=np.float32)
    mask[0, 3:] = 0.0
    feeds = _feeds(repeat_for_mc([tasks, mask], 50), MILESTONE_INPUTS)
    session = _session(mc)  # ONNX Runtime seeds its random ops per session: compare two runs of one
    a, b = session.run(None, feeds)[0], session.run(None, feeds)[0]
    assert a.shape == (150,) and not np.allclose(a, b)
    assert a.reshape(50, 3).std(axis=0).min() > 0.0


def test_padding_is_ignored_by_the_milestone_attention() -> None:
    model = MilestoneNet(MilestoneModelConfig(n_task=4, hidden=8)).eval()
    tasks = np.random.default_rng(1).standard_normal((1, 3, 4)).astype(np.float32)
    padded = np.concatenate([tasks, 100 * np.ones((1, 2, 4), dtype=np.float32)], axis=1)
    mask = np.array([[1, 1, 1, 0, 0]], dtype=np.float32)
    np.testing.assert_allclose(predict(model, [padded, mask]), predict(model, [tasks, mask[:, :3]]), atol=1e-6)

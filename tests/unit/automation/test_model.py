"""The next-action model: learns a sequence, exports to ONNX with dynamic batch and sequence axes, and
ONNX Runtime == torch at two or more sequence lengths; the model's support of mined patterns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from services.automation.miner import MinedPattern
from services.automation.model import NextActionModel
from services.automation.nets import NetConfig
from services.automation.sequences import Episode
from services.automation.suggest import model_support

torch = pytest.importorskip("torch")

FLOW = ("move_item:group=done", "notify:user=owner", "archive:attachments")


def _episodes() -> list[Episode]:
    out = []
    for i in range(60):
        steps = FLOW if i % 3 else ("share:report=weekly", "set_field:due=+3d")
        out.append(Episode("t", f"u{i % 2}", "task_created", "task_type=bug", f"k{i}", "p", float(i), steps))
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[NextActionModel, Path, dict[str, float]]:
    from services.automation.train import fit_episodes

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("automation") / "next.onnx"
    config = NetConfig(hidden=16, embedding=8, epochs=40, batch_size=8, patience=8, use_time=False)
    model, info = fit_episodes(_episodes(), path, config)
    return model, path, info


def test_the_export_keeps_batch_and_sequence_dynamic_and_matches_torch(
        trained: tuple[NextActionModel, Path, dict[str, float]]) -> None:
    model, path, info = trained
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in onnx.load(str(path)).graph.input}
    assert dims["activities"][:2] == ["batch", "seq"]
    assert info["onnx_max_abs_diff"] < 1e-4
    # the served model answers at several lengths (batch of mixed lengths is left-padded)
    probs = model.probabilities([["task_created|task_type=bug"], ["task_created|task_type=bug", *FLOW[:2]]])
    assert probs.shape == (2, model.vocab.size) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_the_model_learns_the_follow_up_steps(trained: tuple[NextActionModel, Path, dict[str, float]]) -> None:
    model = trained[0]
    probs = model.probabilities([["task_created|task_type=bug", FLOW[0]], ["task_created|task_type=bug", *FLOW[:2]]])
    assert model.vocab.tokens[int(probs[0].argmax())] == FLOW[1]
    assert model.vocab.tokens[int(probs[1].argmax())] == FLOW[2]


def test_support_needs_every_follow_up_step_in_the_top_k(
        trained: tuple[NextActionModel, Path, dict[str, float]]) -> None:
    model = trained[0]

    def pattern(steps: tuple[str, ...]) -> MinedPattern:
        return MinedPattern("t", "u0", "task_created", "task_type=bug", steps, 10, 12, ("p",))

    assert model_support(model, pattern(FLOW), top_k=1).supported
    unknown = model_support(model, pattern((FLOW[0], "never:seen")), top_k=3)
    assert not unknown.supported and unknown.ranks == (model.vocab.size + 1,)
    assert not model_support(model, pattern((FLOW[0], "share:report=weekly")), top_k=1).supported

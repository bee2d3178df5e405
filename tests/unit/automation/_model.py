"""A next-action model without torch, for tests that need one quickly (contract, service process): a
counted trigram model (next token given the last two) as a real ONNX graph with the served model's inputs,
output and metadata (vocabulary, feature schema), so it runs through the same serving code as the LSTM."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mesh.errors import Unavailable
from mesh.models import VersionedModel
from services.automation.model import NextActionModel, save_vocabulary
from services.automation.process_log import END_TOKEN, N_TIME_FEATURES, Vocabulary
from services.automation.sequences import Episode


class NoModel:
    """A model source with nothing loaded: a suggestion pass runs (and is recorded) but mines nothing."""

    @property
    def current(self) -> VersionedModel:
        raise Unavailable("no next-action model in this test")


def trigram_onnx(episodes: Sequence[Episode], path: Path) -> NextActionModel:
    """Counts of ``[trigger, steps..., <end>]`` transitions (given the previous two tokens), as log-scores
    in a table the graph gathers from; left padding (id 0) stands for "no token"."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    seqs = [(e.trigger_token, *e.steps, END_TOKEN) for e in episodes if e.steps]
    if not seqs:
        raise ValueError("no episodes with steps")
    vocab = Vocabulary.build([s[:-1] for s in seqs])
    v = vocab.size
    counts = np.full((v * v, v), 0.01, dtype=np.float32)
    for seq in seqs:
        ids = [0, *(vocab.id(t) for t in seq)]
        for k in range(2, len(ids)):
            counts[ids[k - 2] * v + ids[k - 1], ids[k]] += 1.0
    nodes = [
        helper.make_node("Pad", ["activities", "pads"], ["padded"]),  # one "no token" column on the left
        helper.make_node("Gather", ["padded", "minus1"], ["last"], axis=1),
        helper.make_node("Gather", ["padded", "minus2"], ["prev"], axis=1),
        helper.make_node("Mul", ["prev", "vsize"], ["prev_row"]),
        helper.make_node("Add", ["prev_row", "last"], ["row"]),
        helper.make_node("Gather", ["table", "row"], ["next_logits"], axis=0),
    ]
    graph = helper.make_graph(
        nodes, "trigram_next_action",
        [helper.make_tensor_value_info("activities", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("times", TensorProto.FLOAT, ["batch", "seq", N_TIME_FEATURES])],
        [helper.make_tensor_value_info("next_logits", TensorProto.FLOAT, ["batch", v])],
        [numpy_helper.from_array(np.log(counts), "table"),
         numpy_helper.from_array(np.array([0, 1, 0, 0], dtype=np.int64), "pads"),
         numpy_helper.from_array(np.array(-1, dtype=np.int64), "minus1"),
         numpy_helper.from_array(np.array(-2, dtype=np.int64), "minus2"),
         numpy_helper.from_array(np.array(v, dtype=np.int64), "vsize")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    save_vocabulary(path, vocab)
    return NextActionModel.load(path)

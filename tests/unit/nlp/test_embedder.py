"""The ONNX embedder (Python tokenizer + ONNX Runtime) gives sentence-transformers' vectors, at two batch
sizes and sequence lengths, and its graph keeps batch and sequence dynamic."""

from __future__ import annotations

import numpy as np
import pytest

from mesh.errors import InvalidArgument
from mesh.models import ExportVerificationError, check_dynamic_dims
from services.nlp.embedder import ATTENTION_MASK, DIM, INPUT_IDS, MAX_TEXTS, MAX_TOKENS, OUTPUT, check_texts
from services.nlp.export import verify_against_sentence_transformers
from tests.unit.nlp.helpers import embedder, exported_embedder, reference_model

SHORT = ("Fix login timeout on SSO", "Typo in docs", "Crash on save")
LONG = ("The DataNode block report is rejected after an upgrade because the layout version changed, "
        "so the cluster stays in safe mode until an administrator intervenes. " * 12,
        "NameNode fails to restart after the edit log was truncated by a full disk")


def test_onnx_equals_sentence_transformers_at_two_batch_sizes_and_lengths() -> None:
    from mesh.config import MeshSettings

    checks = verify_against_sentence_transformers(exported_embedder(), reference_model(), MeshSettings().models,
                                                  batches=(SHORT[:1], SHORT + LONG))
    assert [c.batch for c in checks] == [1, 5]
    assert checks[1].tokens == MAX_TOKENS  # the long text is cut where sentence-transformers cuts it
    assert checks[0].tokens < 16
    assert max(c.max_abs_diff for c in checks) < 1e-5
    check_dynamic_dims(exported_embedder(), {INPUT_IDS: {0: "b", 1: "s"}, ATTENTION_MASK: {0: "b", 1: "s"},
                                             OUTPUT: {0: "b"}})


def test_the_check_fails_on_a_model_that_is_not_the_reference() -> None:
    from mesh.config import MeshSettings

    class Shifted:
        def encode(self, texts: list[str], **_: object) -> np.ndarray:
            return np.asarray(reference_model().encode(texts)) + 1e-3

    with pytest.raises(ExportVerificationError, match="differs"):
        verify_against_sentence_transformers(exported_embedder(), Shifted(), MeshSettings().models)


def test_embeddings_are_unit_vectors_in_input_order_whatever_the_batching() -> None:
    texts = [*LONG, *SHORT]
    one_by_one = np.stack([embedder().embed([t]).vectors[0] for t in texts])
    together = embedder().embed(texts).vectors
    assert together.shape == (5, DIM)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.allclose(one_by_one, together, atol=1e-5)  # padding does not change a text's vector
    similar = together @ together.T
    assert similar[2, 2] > similar[2, 0]  # sanity: a text is closest to itself


def test_requests_out_of_bounds_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        check_texts([])
    with pytest.raises(InvalidArgument):
        check_texts(["x"] * (MAX_TEXTS + 1))

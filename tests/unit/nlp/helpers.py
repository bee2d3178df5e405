"""Shared by the nlp tests: the embedder exported once per test process (sentence-transformers is loaded
once, for the export and the equality check), the service's parts on a Milvus Lite file of the test's own."""

from __future__ import annotations

import functools
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.bus import Publisher
from mesh.config import MeshSettings
from mesh.models import OnnxModel, StaticModel, VersionedModel, stamp_metadata
from services.nlp.embedder import DIM, MODEL_NAME, Embedder
from services.nlp.handlers import NlpHandler
from services.nlp.search import THRESHOLD_KEY, WEIGHT_KEY, HybridSearcher
from services.nlp.vectors import VectorIndex

TEST_WEIGHT = 0.6
TEST_THRESHOLD = 0.75
"""Stamped into the test model as if calibrated (the calibration itself runs on real data in the bench)."""


@functools.cache
def reference_model() -> Any:
    from services.nlp.export import sentence_transformer

    return sentence_transformer()


@functools.cache
def exported_embedder() -> Path:
    """all-MiniLM-L6-v2 exported to ONNX (verified against torch at two sizes by the export itself)."""
    from services.nlp.export import export_embedder

    path = Path(tempfile.mkdtemp(prefix="nlp-embedder-")) / "nlp-embedder.onnx"
    export_embedder(reference_model(), path)
    stamp_metadata(path, {WEIGHT_KEY: TEST_WEIGHT, THRESHOLD_KEY: TEST_THRESHOLD})
    return path


@functools.cache
def embedder() -> Embedder:
    model = OnnxModel.load(exported_embedder(), MeshSettings().models)
    return Embedder(StaticModel(VersionedModel(MODEL_NAME, "1", model)))


@dataclass
class Service:
    index: VectorIndex
    searcher: HybridSearcher

    def handler(self, publisher: Publisher) -> NlpHandler:
        return NlpHandler(self.index, self.searcher, publisher)


@functools.cache
def milvus_uri() -> str:
    """One Milvus Lite file per test process (starting one costs seconds); tests take their own collection."""
    return str(Path(tempfile.mkdtemp(prefix="nlp-milvus-")) / "vectors.db")


def service() -> Service:
    """The service's parts (minus Kafka) on a collection of this call's own."""
    index = VectorIndex(milvus_uri(), dim=DIM, collection=f"t_{uuid.uuid4().hex[:12]}")
    return Service(index, HybridSearcher(index, embedder()))

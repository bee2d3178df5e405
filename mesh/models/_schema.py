"""The feature schema a model reads: written into its ONNX metadata at export, checked when a process
loads the model (one function for every service), so a model trained on another feature layout is
refused with a clear error instead of silently scoring shifted columns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mesh.errors import Unavailable

SCHEMA_KEY = "feature_schema"
NAMES_KEY = "feature_names"


class FeatureSchemaMismatch(Unavailable):
    """A model was trained on another feature layout than the one this process builds.

    Unavailable (retryable): the process cannot use the model, and a model retrained on the current
    layout (a new champion) resolves it without a restart.
    """


@dataclass(frozen=True)
class FeatureSchema:
    """The layout of a model's input features."""

    version: str
    """schema id, bumped whenever a column changes meaning (e.g. ``assignment-v1``)"""
    names: tuple[str, ...]
    """the columns, in input order"""

    def metadata(self) -> dict[str, str]:
        """The ONNX metadata properties that record this schema (merge them into the model's props)."""
        return {SCHEMA_KEY: self.version, NAMES_KEY: ",".join(self.names)}


def check_feature_schema(metadata: Mapping[str, str], expected: FeatureSchema, model: str | Path) -> None:
    """Raise :class:`FeatureSchemaMismatch` unless ``metadata`` (a model's ONNX metadata properties)
    records ``expected``; ``model`` names the model in the error."""
    version = metadata.get(SCHEMA_KEY)
    if version is None:
        raise FeatureSchemaMismatch(f"model {model} records no feature schema; this process builds "
                                    f"{expected.version!r}: retrain it")
    if version != expected.version:
        raise FeatureSchemaMismatch(f"model {model} was trained on feature schema {version!r}, this process "
                                    f"builds {expected.version!r}: retrain it")
    names = tuple(metadata.get(NAMES_KEY, "").split(","))
    if names != expected.names:
        diff = _first_difference(names, expected.names)
        raise FeatureSchemaMismatch(f"model {model} (feature schema {version!r}) reads other columns than this "
                                    f"process builds under the same version: {diff}; bump the schema version "
                                    f"and retrain")


def _first_difference(got: tuple[str, ...], want: tuple[str, ...]) -> str:
    for index, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"column {index} is {a!r} in the model, {b!r} here"
    return f"the model has {len(got)} columns, this process {len(want)}"

"""The effort slot of the task model's features: the interface of an effort prior (predicted story points
of a task from its text) and the constant prior every service uses by default.

Serving imports only this module; the estimates of the story-point model (a text model: the nlp service's,
read over gRPC by `effort_prior`) are used only when the ``effort_prior`` setting turns them on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
CONSTANT_POINTS = 3.0
"""The prior without a model (a typical story-point value; constant, so it tells the model nothing)."""


class EffortPrior(Protocol):
    """Predicted story points per task text."""

    @property
    def name(self) -> str:
        """Identifies the prior in the exported model's metadata (a model is served with its own prior)."""
        ...

    def points(self, texts: Sequence[str]) -> FloatArray: ...


@dataclass(frozen=True)
class ConstantPrior:
    value: float = CONSTANT_POINTS

    @property
    def name(self) -> str:
        return "constant"

    def points(self, texts: Sequence[str]) -> FloatArray:
        return np.full(len(texts), self.value, dtype=np.float64)


def feature(points: float) -> float:
    """The ``effort_points`` feature: log1p of the predicted points."""
    return float(np.log1p(max(points, 0.0)))

"""ONNX Runtime sessions: provider choice, thread settings, warm-up, a per-path cache."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from mesh.config import ModelSettings
from mesh.models._env import quiet_telemetry_env

log = logging.getLogger(__name__)

Arrays = dict[str, npt.NDArray[Any]]

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

_ORT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


class ModelRunner(Protocol):
    """Anything that maps named input arrays to named output arrays (batch on axis 0)."""

    def run(self, inputs: Arrays) -> Arrays: ...


def choose_providers() -> list[str]:
    """CUDA when this onnxruntime build has it (a GPU machine), always with CPU as the fallback."""
    quiet_telemetry_env()
    import onnxruntime as ort

    return [CUDA, CPU] if CUDA in ort.get_available_providers() else [CPU]


class OnnxModel:
    """One ONNX Runtime session. ``run`` is thread-safe (ORT sessions are) and releases the GIL."""

    def __init__(self, path: Path, session: Any) -> None:
        self.path = path
        self._session = session
        self.input_names: tuple[str, ...] = tuple(i.name for i in session.get_inputs())
        self.output_names: tuple[str, ...] = tuple(o.name for o in session.get_outputs())
        self.provider: str = session.get_providers()[0]
        # read through the session: serving needs no `onnx` package to check a model's feature schema
        self.metadata: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map)

    @classmethod
    def load(cls, path: str | Path, settings: ModelSettings, *, warm_up: bool = True) -> OnnxModel:
        """Build a session (not cached; see :func:`load_onnx_model`) and, by default, warm it up."""
        quiet_telemetry_env()
        import onnxruntime as ort

        path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.intra_op_threads
        options.inter_op_num_threads = settings.inter_op_threads
        session = ort.InferenceSession(str(path), options, providers=choose_providers())
        model = cls(path, session)
        log.info(
            "loaded ONNX model %s on %s (intra=%d, inter=%d threads)",
            path, model.provider, settings.intra_op_threads, settings.inter_op_threads,
        )
        if warm_up:
            model.warm_up()
        return model

    def run(self, inputs: Arrays) -> Arrays:
        outputs = self._session.run(None, inputs)
        return dict(zip(self.output_names, outputs, strict=True))

    def warm_up(self) -> Arrays:
        """One run on a batch of 1 (every unknown dim = 1): the first run allocates and plans."""
        return self.run(self.dummy_inputs())

    def dummy_inputs(self, size: int = 1) -> Arrays:
        """Zeros shaped like the inputs, ``size`` for every symbolic dim."""
        inputs: Arrays = {}
        for spec in self._session.get_inputs():
            shape = tuple(d if isinstance(d, int) and d > 0 else size for d in spec.shape)
            dtype = _ORT_DTYPES.get(spec.type)
            if dtype is None:
                raise ValueError(f"{self.path.name}: cannot build a warm-up value for input type {spec.type}")
            inputs[spec.name] = np.full(shape, "", dtype=object) if dtype is np.object_ else np.zeros(shape, dtype)
        return inputs


_cache: dict[tuple[Path, int, int], OnnxModel] = {}
_cache_lock = threading.Lock()


def load_onnx_model(path: str | Path, settings: ModelSettings) -> OnnxModel:
    """The process-wide session for ``path`` (built, logged and warmed up once)."""
    key = (Path(path).resolve(), settings.intra_op_threads, settings.inter_op_threads)
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            model = _cache[key] = OnnxModel.load(path, settings)
        return model


def clear_session_cache() -> None:
    """Forget cached sessions (tests; a process that rotates many model files)."""
    with _cache_lock:
        _cache.clear()

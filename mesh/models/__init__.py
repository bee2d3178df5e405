"""Models: verified ONNX export, ONNX Runtime sessions, micro-batching, the MLflow registry, hot reload
on alias moves, and prediction provenance.

Serving imports only onnxruntime and numpy from here; torch, LightGBM, scikit-learn and mlflow are
imported inside the functions that need them.
"""

from mesh.models._batcher import MicroBatcher
from mesh.models._errors import ExportVerificationError
from mesh.models._export_torch import export_torch
from mesh.models._export_trees import (
    INPUT_NAME,
    LIGHTGBM_MAX_OPSET,
    SKLEARN_OPSETS,
    export_lightgbm,
    export_sklearn,
)
from mesh.models._provenance import build_provenance
from mesh.models._registry import (
    CHALLENGER,
    CHAMPION,
    ModelRegistry,
    PromotionDecision,
    ResolvedModel,
)
from mesh.models._reloading import AliasRegistry, ModelSource, ReloadingModel, StaticModel, VersionedModel
from mesh.models._runner import (
    ModelRunner,
    OnnxModel,
    choose_providers,
    clear_session_cache,
    load_onnx_model,
)
from mesh.models._verify import ExportReport, SizeCheck, Tolerance, check_dynamic_dims, compare_with_native

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "INPUT_NAME",
    "LIGHTGBM_MAX_OPSET",
    "SKLEARN_OPSETS",
    "AliasRegistry",
    "ExportReport",
    "ExportVerificationError",
    "MicroBatcher",
    "ModelRegistry",
    "ModelRunner",
    "ModelSource",
    "OnnxModel",
    "PromotionDecision",
    "ReloadingModel",
    "ResolvedModel",
    "SizeCheck",
    "StaticModel",
    "Tolerance",
    "VersionedModel",
    "build_provenance",
    "check_dynamic_dims",
    "choose_providers",
    "clear_session_cache",
    "compare_with_native",
    "export_lightgbm",
    "export_sklearn",
    "export_torch",
    "load_onnx_model",
]

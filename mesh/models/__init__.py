"""Models: the training lifecycle (time split, baselines, verified ONNX export, challenger/champion
promotion on the same validation period), the feature-schema check, ONNX Runtime sessions,
micro-batching, the MLflow registry, hot reload on alias moves (starting before any champion exists), and
prediction provenance.

Serving imports only onnxruntime and numpy from here; torch, LightGBM, scikit-learn and mlflow are
imported inside the functions that need them.
"""

from mesh.models._batcher import Coalescer, MicroBatcher
from mesh.models._errors import ExportVerificationError
from mesh.models._export_torch import export_torch
from mesh.models._export_trees import (
    INPUT_NAME,
    LIGHTGBM_MAX_OPSET,
    SKLEARN_OPSETS,
    export_lightgbm,
    export_sklearn,
)
from mesh.models._lifecycle import (
    Challenger,
    HeldOut,
    Objective,
    TimeSplit,
    register_and_promote,
    score_beside_baselines,
    stamp_metadata,
    time_range,
    time_split,
)
from mesh.models._provenance import build_provenance
from mesh.models._registry import (
    CHALLENGER,
    CHAMPION,
    AliasMove,
    ModelRegistry,
    PromotionDecision,
    Rescore,
    ResolvedModel,
    VersionInfo,
    current_actor,
    previous_champion,
)
from mesh.models._reloading import AliasRegistry, ModelSource, ReloadingModel, StaticModel, VersionedModel
from mesh.models._runner import (
    ModelRunner,
    OnnxModel,
    choose_providers,
    clear_session_cache,
    load_onnx_model,
)
from mesh.models._schema import FeatureSchema, FeatureSchemaMismatch, check_feature_schema
from mesh.models._sources import (
    SOURCES,
    Source,
    add_training_arguments,
    event_log_dir,
    events_from_log,
    logged_training_events,
    output_dir,
    source_of,
)
from mesh.models._verify import ExportReport, SizeCheck, Tolerance, check_dynamic_dims, compare_with_native

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "INPUT_NAME",
    "LIGHTGBM_MAX_OPSET",
    "SKLEARN_OPSETS",
    "SOURCES",
    "AliasMove",
    "AliasRegistry",
    "Challenger",
    "Coalescer",
    "ExportReport",
    "ExportVerificationError",
    "FeatureSchema",
    "FeatureSchemaMismatch",
    "HeldOut",
    "MicroBatcher",
    "ModelRegistry",
    "ModelRunner",
    "ModelSource",
    "Objective",
    "OnnxModel",
    "PromotionDecision",
    "ReloadingModel",
    "Rescore",
    "ResolvedModel",
    "SizeCheck",
    "Source",
    "StaticModel",
    "TimeSplit",
    "Tolerance",
    "VersionInfo",
    "VersionedModel",
    "add_training_arguments",
    "build_provenance",
    "check_dynamic_dims",
    "check_feature_schema",
    "choose_providers",
    "clear_session_cache",
    "compare_with_native",
    "current_actor",
    "event_log_dir",
    "events_from_log",
    "export_lightgbm",
    "export_sklearn",
    "export_torch",
    "load_onnx_model",
    "logged_training_events",
    "output_dir",
    "previous_champion",
    "register_and_promote",
    "score_beside_baselines",
    "source_of",
    "stamp_metadata",
    "time_range",
    "time_split",
]

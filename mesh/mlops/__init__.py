"""MLOps for every model of the mesh: drift per tenant against the training reference stored with each
version (:mod:`mesh.mlops._drift`), live metrics on delayed outcomes (:mod:`mesh.mlops._outcomes`), and the
registry's versioning and rollback (``python -m mesh.models``).

A service gets them by declaring what its model reads and what the truth of its predictions is: a
:class:`DriftMonitor` fed from its scoring path, an :class:`OutcomeSpec` next to the service.
"""

from mesh.mlops._drift import (
    KIND_CLEARED,
    KIND_DRIFT,
    PREDICTION,
    ColumnReference,
    DriftMonitor,
    DriftPolicy,
    DriftReference,
    DriftReport,
    DriftSettings,
    build_reference,
    drift_alert,
    evaluate,
    psi,
    registry_references,
)
from mesh.mlops._outcomes import (
    KIND_DEGRADED,
    KIND_RECOVERED,
    Emitter,
    JoinState,
    LiveMetricState,
    OutcomeJoiner,
    OutcomeSpec,
    degradation_alert,
    live_table,
    model_version,
    reducers,
)
from mesh.mlops._runtime import Runners, joiner_namespace, open_joiner, outcome_runner
from mesh.mlops._shadow import (
    ShadowEvidence,
    paired_scores,
    promote_on_evidence,
    publish_shadow,
    shadow_evidence,
    shadow_topic,
    with_shadow_topics,
)

__all__ = [
    "KIND_CLEARED",
    "KIND_DEGRADED",
    "KIND_DRIFT",
    "KIND_RECOVERED",
    "PREDICTION",
    "ColumnReference",
    "DriftMonitor",
    "DriftPolicy",
    "DriftReference",
    "DriftReport",
    "DriftSettings",
    "Emitter",
    "JoinState",
    "LiveMetricState",
    "OutcomeJoiner",
    "OutcomeSpec",
    "Runners",
    "ShadowEvidence",
    "build_reference",
    "degradation_alert",
    "drift_alert",
    "evaluate",
    "joiner_namespace",
    "live_table",
    "model_version",
    "open_joiner",
    "outcome_runner",
    "paired_scores",
    "promote_on_evidence",
    "psi",
    "publish_shadow",
    "reducers",
    "registry_references",
    "shadow_evidence",
    "shadow_topic",
    "with_shadow_topics",
]

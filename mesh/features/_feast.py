"""Lazy access to Feast: `import feast` is slow and sets PROMETHEUS_MULTIPROC_DIR, so import it on demand
and put the variable back, so that prometheus_client in the same process keeps its behaviour."""

from __future__ import annotations

import os
from types import ModuleType

_VAR = "PROMETHEUS_MULTIPROC_DIR"


def import_feast() -> ModuleType:
    """Import and return the `feast` module, leaving PROMETHEUS_MULTIPROC_DIR as it was before."""
    before = os.environ.get(_VAR)
    try:
        import feast
    finally:
        if before is None:
            os.environ.pop(_VAR, None)
        else:
            os.environ[_VAR] = before
    return feast

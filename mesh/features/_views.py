"""The default feature views, one module per entity family."""

from __future__ import annotations

from typing import Any

from mesh.features._project import PROJECT_VIEW
from mesh.features._schema import ViewSpec
from mesh.features._task import TASK_VIEW
from mesh.features._tenant import TENANT_VIEW
from mesh.features._user import USER_VIEW

AnyView = ViewSpec[Any, Any]

DEFAULT_VIEWS: tuple[AnyView, ...] = (TENANT_VIEW, USER_VIEW, TASK_VIEW, PROJECT_VIEW)

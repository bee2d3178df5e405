"""MLflow model registry: log + register ONNX models (and plain model files), aliases, promotion, loading by
alias.

In-process MLflow (sqlite backend + file artifact store by default, no tracking server); mlflow is
imported lazily so that importing :mod:`mesh.models` stays cheap.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mesh.config import ModelSettings
from mesh.errors import InvalidArgument, NotFound
from mesh.models._env import quiet_telemetry_env
from mesh.models._schema import FeatureSchemaMismatch

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
ONNX_FILE = "model.onnx"
HISTORY_TAG = "mesh.alias_history."
"""Registered-model tag (one per alias, JSON list of :class:`AliasMove`): who moved the alias, when, why."""
HISTORY_KEEP = 30
"""Newest moves kept per alias (an MLflow tag value holds a few kB)."""
_RECORDED_PROVIDERS = ["CPUExecutionProvider"]  # mlflow.onnx records CUDA unless told; serving picks its own
Rescore = Callable[[str, Path], float]
"""(version, local ONNX path) -> the promotion metric of that version on one fixed data set."""


class ResolvedModel(NamedTuple):
    """A registered version and the local path of its ONNX file."""

    version: str
    path: Path


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the challenger became champion, and the numbers behind it."""

    name: str
    metric: str
    higher_is_better: bool
    challenger_version: str
    challenger_value: float
    champion_version: str | None
    champion_value: float | None
    promoted: bool
    reason: str

    def summary(self) -> str:
        """One line for a training command's output."""
        outcome = "promoted to champion" if self.promoted else "kept as challenger"
        return f"v{self.challenger_version} {outcome}: {self.metric} {self.challenger_value:.4g}; {self.reason}"


@dataclass(frozen=True)
class AliasMove:
    """One recorded move of an alias: to ``version`` from ``previous`` (None: the alias was unset)."""

    alias: str
    version: str
    previous: str | None
    action: str
    """``promote``, ``rollback`` or ``set``"""
    actor: str
    at: str
    """ISO time (UTC)"""
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "version": self.version, "previous": self.previous, "action": self.action,
                "actor": self.actor, "at": self.at, "reason": self.reason}


def current_actor() -> str:
    """Who is moving an alias: ``MESH_ACTOR`` (set by the gateway / a CI job), else the OS user."""
    actor = os.environ.get("MESH_ACTOR", "").strip()
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class ModelRegistry:
    """The MLflow registry of the mesh. Methods block (sqlite, file copies): call them off the loop."""

    def __init__(self, settings: ModelSettings, experiment: str = "sunday-ml") -> None:
        quiet_telemetry_env()
        from mlflow import MlflowClient

        if settings.tracking_uri.startswith("sqlite:///"):
            Path(settings.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        settings.artifact_dir.mkdir(parents=True, exist_ok=True)
        self._settings = settings
        self._client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
        self._experiment_id = self._experiment(experiment)
        self._downloads = settings.artifact_dir / "_downloads"

    def _experiment(self, name: str) -> str:
        found = self._client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        if self._settings.tracking_uri.startswith(("http://", "https://")):
            # a tracking server: it keeps the artifacts (its own artifact store), clients send them over HTTP
            return str(self._client.create_experiment(name))
        # a local store: always explicit, MLflow's default artifact location is relative to the working directory
        location = (self._settings.artifact_dir / name).resolve().as_uri()
        return str(self._client.create_experiment(name, artifact_location=location))

    def log_and_register(
        self,
        name: str,
        model: str | Path | onnx.ModelProto,
        metrics: Mapping[str, float],
        params: Mapping[str, str | int | float | bool],
        data_time_range: tuple[datetime, datetime],
        alias: str | None = CHALLENGER,
    ) -> str:
        """Log an ONNX model with its metrics, params and training-data time range; register it as a
        new version of ``name`` and point ``alias`` at it. Returns the version."""
        return self._register(name, metrics, params, data_time_range, alias,
                              lambda run_id: self._log_onnx(run_id, model))

    def log_and_register_file(
        self,
        name: str,
        path: Path,
        metrics: Mapping[str, float],
        params: Mapping[str, str | int | float | bool],
        data_time_range: tuple[datetime, datetime],
        alias: str | None = CHALLENGER,
    ) -> str:
        """As :meth:`log_and_register` for a model that is not an ONNX graph (e.g. exported factors as
        ``.npz``): the file is logged as ``model/<its name>``; fetch it with ``local_path(name, version,
        path.name)``. Returns the version."""
        if not path.is_file():
            raise InvalidArgument(f"{path} is not a file")

        def log_file(run_id: str) -> str:
            self._client.log_artifact(run_id, str(path), "model")
            return f"{self._client.get_run(run_id).info.artifact_uri}/model"

        return self._register(name, metrics, params, data_time_range, alias, log_file)

    def _register(self, name: str, metrics: Mapping[str, float], params: Mapping[str, str | int | float | bool],
                  data_time_range: tuple[datetime, datetime], alias: str | None,
                  log_model: Callable[[str], str]) -> str:
        start, end = _check_range(data_time_range)
        tags = {"data_start": start.isoformat(), "data_end": end.isoformat()}
        run = self._client.create_run(self._experiment_id, run_name=name, tags=tags)
        run_id = run.info.run_id
        try:
            self._log_run(run_id, metrics, params)
            source = log_model(run_id)
        except BaseException:
            self._client.set_terminated(run_id, status="FAILED")
            raise
        self._client.set_terminated(run_id)
        self._ensure_registered(name)
        version = str(self._client.create_model_version(name, source, run_id=run_id, tags=tags).version)
        if alias:
            self.set_alias(name, alias, version)
        log.info("registered %s version %s (alias %s) from run %s", name, version, alias, run_id)
        return version

    def _log_run(self, run_id: str, metrics: Mapping[str, float], params: Mapping[str, Any]) -> None:
        for key, value in params.items():
            self._client.log_param(run_id, key, value)
        for key, metric in metrics.items():
            self._client.log_metric(run_id, key, float(metric))

    def _log_onnx(self, run_id: str, model: str | Path | onnx.ModelProto) -> str:
        import mlflow.onnx
        import onnx

        proto = onnx.load(str(model)) if isinstance(model, str | Path) else model
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "model"
            mlflow.onnx.save_model(proto, str(local), onnx_execution_providers=_RECORDED_PROVIDERS,
                                   pip_requirements=_serving_requirements())
            self._client.log_artifacts(run_id, str(local), "model")
        return f"{self._client.get_run(run_id).info.artifact_uri}/model"

    def _ensure_registered(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(name)
        except MlflowException:
            self._client.create_registered_model(name)

    def set_alias(self, name: str, alias: str, version: str, *, action: str = "set", actor: str | None = None,
                  reason: str = "") -> None:
        """Point ``alias`` of ``name`` at ``version``; the move is recorded (:meth:`alias_history`)."""
        previous = self.version_of(name, alias)
        self._client.set_registered_model_alias(name, alias, str(version))
        if previous == str(version):
            return
        move = AliasMove(alias, str(version), previous, action, actor or current_actor(),
                         datetime.now(UTC).isoformat(timespec="seconds"), reason)
        history = [*self.alias_history(name, alias), move][-HISTORY_KEEP:]
        self._client.set_registered_model_tag(name, HISTORY_TAG + alias,
                                              json.dumps([m.as_dict() for m in history], separators=(",", ":")))

    def alias_history(self, name: str, alias: str) -> list[AliasMove]:
        """The recorded moves of ``alias``, oldest first (moves made before history was recorded are absent)."""
        from mlflow.exceptions import MlflowException

        try:
            tags = self._client.get_registered_model(name).tags
        except MlflowException:
            raise NotFound(f"model {name!r} is not registered") from None
        raw = tags.get(HISTORY_TAG + alias)
        if not raw:
            return []
        return [AliasMove(**row) for row in json.loads(raw)]

    def versions(self, name: str) -> list[VersionInfo]:
        """Every version of ``name`` (newest first) with its run's metrics, data range, aliases and who
        promoted it to champion (last recorded move to it)."""
        from mlflow.exceptions import MlflowException

        try:
            model = self._client.get_registered_model(name)
        except MlflowException:
            raise NotFound(f"model {name!r} is not registered") from None
        aliases: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        promoted: dict[str, AliasMove] = {m.version: m for m in self.alias_history(name, CHAMPION)}
        out = []
        for mv in self._client.search_model_versions(f"name='{name}'"):
            version = str(mv.version)
            metrics = {} if mv.run_id is None else dict(self._client.get_run(mv.run_id).data.metrics)
            tags = dict(mv.tags or {})
            out.append(VersionInfo(version, sorted(aliases.get(version, [])), metrics, tags.get("data_start", ""),
                                   tags.get("data_end", ""), int(mv.creation_timestamp or 0),
                                   promoted.get(version)))
        return sorted(out, key=lambda v: int(v.version), reverse=True)

    def rollback(self, name: str, *, to: str | None = None, actor: str | None = None, reason: str = ""
                 ) -> AliasMove:
        """Move ``champion`` back to the champion before the current one (or to version ``to``); recorded
        as a ``rollback`` move. Serving processes follow the alias (:class:`~mesh.models.ReloadingModel`).

        The previous champion is read from the recorded history: rollbacks pop it, so two rollbacks in a row
        go two champions back. NotFound when there is no champion or no earlier one to go back to."""
        current = self.version_of(name, CHAMPION)
        if current is None:
            raise NotFound(f"model {name!r} has no champion to roll back")
        target = to if to is not None else previous_champion(self.alias_history(name, CHAMPION), current)
        if target is None:
            raise NotFound(f"model {name!r}: no earlier champion than v{current} is recorded; "
                           "name one with --to VERSION")
        if str(target) == current:
            raise InvalidArgument(f"v{target} is already the champion of {name!r}")
        try:
            self._client.get_model_version(name, str(target))
        except Exception:
            raise NotFound(f"model {name!r} has no version {target}") from None
        self.set_alias(name, CHAMPION, str(target), action="rollback", actor=actor,
                       reason=reason or f"rollback from v{current}")
        return self.alias_history(name, CHAMPION)[-1]

    def version_of(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at, or None (cheap: used to poll for alias moves)."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self._client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def load(self, name: str, alias: str, filename: str = ONNX_FILE) -> ResolvedModel:
        """The version behind ``alias`` and a local copy of its model file (the ONNX graph unless
        ``filename`` names the file of :meth:`log_and_register_file`); NotFound if unset."""
        version = self.version_of(name, alias)
        if version is None:
            raise NotFound(f"model {name!r} has no version with alias {alias!r}")
        return ResolvedModel(version, self.local_path(name, version, filename))

    def local_path(self, name: str, version: str, filename: str = ONNX_FILE) -> Path:
        """Download (once) the model file of a registered version (the ONNX graph unless ``filename``)."""
        import mlflow.artifacts

        target = self._downloads / name / str(version)
        onnx_file = target / "model" / filename
        if not onnx_file.exists():
            source = self._client.get_model_version(name, str(version)).source
            staging = Path(tempfile.mkdtemp(dir=self._downloads.parent))
            mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(staging),
                                                tracking_uri=self._settings.tracking_uri)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)  # atomic: a reader never sees a half-downloaded version
        return onnx_file

    def log_version_json(self, name: str, version: str, filename: str, payload: str) -> None:
        """Store a JSON document with ``version`` (an artifact ``mlops/<filename>`` of the run that produced
        it): the drift reference, a model card."""
        run_id = self._client.get_model_version(name, str(version)).run_id
        if run_id is None:
            raise InvalidArgument(f"{name} v{version} has no run to store {filename} with")
        self._client.log_text(run_id, payload, f"mlops/{filename}")

    def version_json(self, name: str, version: str, filename: str) -> Any | None:
        """The JSON document :meth:`log_version_json` stored with ``version``, or None when there is none."""
        from mlflow.exceptions import MlflowException

        run_id = self._client.get_model_version(name, str(version)).run_id
        if run_id is None:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            try:  # through this registry's client: its tracking URI (a server too) and its artifact store
                local = self._client.download_artifacts(run_id, f"mlops/{filename}", tmp)
            except (MlflowException, OSError):
                return None
            return json.loads(Path(local).read_text(encoding="utf-8"))

    def metric(self, name: str, version: str, metric: str) -> float | None:
        """A metric logged with the run that produced ``version``."""
        run_id = self._client.get_model_version(name, str(version)).run_id
        if run_id is None:
            return None
        value = self._client.get_run(run_id).data.metrics.get(metric)
        return None if value is None else float(value)

    def promote_if_better(
        self,
        name: str,
        metric: str,
        higher_is_better: bool,
        challenger: str = CHALLENGER,
        champion: str = CHAMPION,
        rescore: Rescore | None = None,
        filename: str = ONNX_FILE,
    ) -> PromotionDecision:
        """Move ``champion`` to the challenger when its ``metric`` beats the champion's (or there is no
        champion yet). Ties keep the champion.

        Without ``rescore`` both sides are compared by the metric logged with their runs. With it, both
        are scored by ``rescore(version, onnx_path)`` on the same data (the validation period of the run
        that trained the challenger): figures from two runs on two periods are not comparable. A champion
        that cannot be scored because it reads another feature schema loses. ``filename``: the model file
        ``rescore`` is given (that of :meth:`log_and_register_file` for a model that is not ONNX)."""
        challenger_version = self.version_of(name, challenger)
        if challenger_version is None:
            raise NotFound(f"model {name!r} has no {challenger!r} version")
        champion_version = self.version_of(name, champion)
        if rescore is None:
            challenger_value = self.metric(name, challenger_version, metric)
            champion_value = None if champion_version is None else self.metric(name, champion_version, metric)
        else:
            challenger_value = rescore(challenger_version, self.local_path(name, challenger_version, filename))
            champion_value = self._rescore_champion(name, champion_version, rescore, filename)
        if challenger_value is None:
            raise InvalidArgument(f"{name} v{challenger_version} has no metric {metric!r}")
        promoted, reason = _decide(challenger_version, challenger_value, champion_version, champion_value,
                                   higher_is_better)
        if promoted:
            self.set_alias(name, champion, challenger_version, action="promote", reason=reason)
        decision = PromotionDecision(name, metric, higher_is_better, challenger_version, challenger_value,
                                     champion_version, champion_value, promoted, reason)
        log.info("promotion of %s: %s", name, decision)
        return decision

    def _rescore_champion(self, name: str, version: str | None, rescore: Rescore, filename: str = ONNX_FILE
                          ) -> float | None:
        if version is None:
            return None
        try:
            return rescore(version, self.local_path(name, version, filename))
        except FeatureSchemaMismatch as exc:
            log.warning("champion %s v%s cannot be re-scored on this validation period: %s", name, version, exc)
            return None


@dataclass(frozen=True)
class VersionInfo:
    """One registered version, as ``python -m mesh.models versions`` lists it."""

    version: str
    aliases: list[str]
    metrics: dict[str, float]
    data_start: str
    data_end: str
    created_ms: int
    promoted: AliasMove | None
    """the last recorded move of ``champion`` to this version (who, when, promote or rollback)"""


def previous_champion(history: list[AliasMove], current: str) -> str | None:
    """The champion before ``current``: replay the moves on a stack (a rollback pops), then the entry below
    the top. Moves made outside the recorder (the current version absent on top) count as a push."""
    stack: list[str] = []
    for move in history:
        if move.action == "rollback":
            while stack and stack[-1] != move.version:
                stack.pop()
            if not stack:
                stack.append(move.version)
        else:
            if move.previous is not None and not stack:
                stack.append(move.previous)
            stack.append(move.version)
    if not stack or stack[-1] != current:
        stack.append(current)
    below = [v for v in stack[:-1] if v != current]
    return below[-1] if below else None


def _decide(
    challenger_version: str,
    challenger_value: float,
    champion_version: str | None,
    champion_value: float | None,
    higher_is_better: bool,
) -> tuple[bool, str]:
    if champion_version is None:
        return True, "no champion yet"
    if champion_version == challenger_version:
        return False, "challenger is already the champion"
    if champion_value is None:
        return True, "the champion has no value for the metric (or reads another feature schema)"
    better = challenger_value > champion_value if higher_is_better else challenger_value < champion_value
    relation = "beats" if better else "does not beat"
    return better, f"challenger {challenger_value:.6g} {relation} champion v{champion_version} {champion_value:.6g}"


def _serving_requirements() -> list[str]:
    # explicit: MLflow's inference imports the model in a subprocess (~8 s) to guess the same answer
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("onnx", "onnxruntime", "numpy")]


def _check_range(data_time_range: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    start, end = data_time_range
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidArgument("data_time_range needs timezone-aware datetimes")
    if start > end:
        raise InvalidArgument(f"data_time_range starts ({start}) after it ends ({end})")
    return start, end

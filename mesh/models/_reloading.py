"""A model that follows a registry alias: it loads the new version when the alias moves, warms it up,
then swaps it in. Requests already running finish on the session they started on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy.typing as npt

from mesh.config import ModelSettings
from mesh.errors import Unavailable
from mesh.models._runner import OnnxModel
from mesh.models._schema import FeatureSchema, FeatureSchemaMismatch, check_feature_schema

log = logging.getLogger(__name__)

Arrays = dict[str, npt.NDArray[Any]]


class AliasRegistry(Protocol):
    """What :class:`ReloadingModel` needs from a registry (``ModelRegistry`` is one)."""

    def version_of(self, name: str, alias: str) -> str | None: ...

    def local_path(self, name: str, version: str) -> Path: ...


@dataclass(frozen=True)
class VersionedModel:
    """A loaded, warmed-up version: what a request runs on, and what its provenance names."""

    name: str
    version: str
    model: OnnxModel


class ModelSource(Protocol):
    """Where a request gets the version it runs on: :class:`ReloadingModel` in services,
    :class:`StaticModel` in tests and benchmarks."""

    @property
    def current(self) -> VersionedModel: ...


@dataclass(frozen=True)
class StaticModel:
    """A fixed loaded version (tests, benchmarks)."""

    current: VersionedModel


class ReloadingModel:
    """The loaded version behind ``(name, alias)``; follows the alias every ``reload_interval_s``.

    The swap is one reference assignment: a request reads :attr:`current` once and runs on that
    version, so no request sees a half-loaded model and none fails during a swap.

    A service starts before any version exists (a fresh deployment, an empty registry): :meth:`start`
    does not fail, :attr:`current` raises :class:`~mesh.errors.Unavailable` with ``train_hint`` in
    the message (the gRPC interceptor answers UNAVAILABLE, the bus retries the event), and the watcher
    loads the version as soon as the alias appears. With ``schema``, a version trained on another
    feature layout is refused (logged, never served) and the previous one, if any, stays.
    """

    def __init__(self, registry: AliasRegistry, name: str, alias: str, settings: ModelSettings, *,
                 schema: FeatureSchema | None = None, train_hint: str = "") -> None:
        """``train_hint``: the command that trains and registers the model (shown while none is loaded)."""
        self._registry = registry
        self.name = name
        self.alias = alias
        self._settings = settings
        self._schema = schema
        self._current: VersionedModel | None = None
        self._refused: str | None = None
        how = f"; train it with `{train_hint}`" if train_hint else ""
        self._missing = f"no {alias} for {name} yet{how}"
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def current(self) -> VersionedModel:
        """The version to run this request on (raises Unavailable while none is loaded)."""
        if self._current is None:
            raise Unavailable(self._missing)
        return self._current

    @property
    def version(self) -> str | None:
        return None if self._current is None else self._current.version

    def run(self, inputs: Arrays) -> Arrays:
        """Run on the current version (a :class:`~mesh.models.ModelRunner`)."""
        return self.current.model.run(inputs)

    async def start(self, *, watch: bool = True) -> None:
        """Load the alias's version if there is one; then, if ``watch``, follow the alias (the first
        version is picked up the same way when none exists yet)."""
        if not await self.maybe_reload() and self._current is None:
            log.warning("model %s@%s: %s; answering Unavailable until one is registered", self.name, self.alias,
                        self._missing)
        if watch and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(), name=f"reload:{self.name}")

    async def maybe_reload(self) -> bool:
        """Check the alias once; load, check, warm up and swap in its version if it moved. True if swapped."""
        async with self._lock:
            version = await asyncio.to_thread(self._registry.version_of, self.name, self.alias)
            if version is None or version in (self.version, self._refused):
                return False
            try:
                loaded = await asyncio.to_thread(self._load, version)
            except FeatureSchemaMismatch as exc:
                self._refuse(version, exc)
                return False
            previous, self._current = self.version, loaded
            log.info("model %s@%s: swapped version %s -> %s", self.name, self.alias, previous, version)
            return True

    def _refuse(self, version: str, error: FeatureSchemaMismatch) -> None:
        self._refused = version  # checked once: the same version is not downloaded and refused every interval
        if self._current is None:
            self._missing = f"{self.alias} of {self.name} refused: {error}"
        log.error("model %s@%s: version %s refused, %s: %s", self.name, self.alias, version,
                  "nothing to serve" if self._current is None else f"keeping version {self.version}", error)

    def _load(self, version: str) -> VersionedModel:
        path = self._registry.local_path(self.name, version)
        model = OnnxModel.load(path, self._settings, warm_up=False)
        if self._schema is not None:
            check_feature_schema(model.metadata, self._schema, f"{self.name} v{version}")
        model.warm_up()
        return VersionedModel(self.name, version, model)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._settings.reload_interval_s)
            try:
                await self.maybe_reload()
            except Exception:
                # keep serving the loaded version (or Unavailable); the next check tries again
                log.exception("model %s@%s: reload failed, keeping version %s", self.name, self.alias,
                              self.version)

    async def aclose(self) -> None:
        """Stop following the alias."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

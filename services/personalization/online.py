"""Wiring of the service's state: its Redis store, its input topics, its rebuild, its policy model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from mesh.features import Rebuilder, RedisAggregates
from services.personalization.factors import POLICY_FILE, PolicyModel, Segments
from services.personalization.state import PERSONALIZATION_REDUCERS

if TYPE_CHECKING:
    from mesh.config import MeshSettings
    from services.personalization.recommend import Recommender

log = logging.getLogger(__name__)

TOPICS = ("users", "projects", "tasks", "activity", "feedback", "predictions.personalization")
"""Input topics (logical names). Its own predictions are an input too: a rebuild replays what was served
(applying them live again is a no-op: the service applied each one when it answered)."""


def state_namespace(settings: MeshSettings) -> str:
    return f"{settings.namespace}:personalization"


def open_store(settings: MeshSettings) -> RedisAggregates:
    import redis

    client = redis.Redis.from_url(settings.redis.url, socket_connect_timeout=5, socket_timeout=5)
    return RedisAggregates(client, state_namespace(settings), reducers=PERSONALIZATION_REDUCERS)


def rebuilder(store: RedisAggregates, settings: MeshSettings, event_log_dir: Path | None = None) -> Rebuilder:
    return Rebuilder.of(store, settings, TOPICS, event_log_dir)


class PolicySource(Protocol):
    """What the service needs of the registry (``mesh.models.ModelRegistry`` is one)."""

    def version_of(self, name: str, alias: str) -> str | None: ...

    def local_path(self, name: str, version: str, filename: str = ...) -> Path: ...


def load_registered(registry: PolicySource, name: str, alias: str) -> tuple[str | None, PolicyModel]:
    """(registry version, model) of ``name@alias``; (None, an untrained model: no ALS, one segment) when no
    version has the alias yet: LinUCB serves and learns from the first feedback either way."""
    version = registry.version_of(name, alias)
    if version is None:
        log.warning("no %s@%s in the registry yet (train: python -m services.personalization.train); "
                    "serving LinUCB without ALS or segments", name, alias)
        return None, untrained()
    model = PolicyModel.load(registry.local_path(name, version, POLICY_FILE))
    log.info("personalization model %s@%s v%s loaded: policy model %s", name, alias, version, model.version)
    return version, model


def untrained() -> PolicyModel:
    return PolicyModel("untrained", None, Segments(np.zeros((1, 11))))


async def follow_registry(registry: PolicySource, name: str, alias: str, recommender: Recommender,
                          interval_s: float, loaded: str | None) -> None:
    """Swap in the version ``alias`` points at whenever it moves (a new policy version: new statistics); a
    version that fails to load is logged and the current one kept."""
    import asyncio

    while True:
        await asyncio.sleep(interval_s)
        try:
            version = await asyncio.to_thread(registry.version_of, name, alias)
            if version is None or version == loaded:
                continue
            _, model = await asyncio.to_thread(load_registered, registry, name, alias)
        except Exception:  # the registry unreachable, a broken file: keep serving, try again next time
            log.exception("could not load %s@%s; keeping policy %s", name, alias, recommender.version)
            continue
        loaded = version
        recommender.model = model
        log.info("personalization policy version now %s", recommender.version)

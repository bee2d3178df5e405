"""Wiring of the service's state: its Redis store, its input topics, its rebuild, its policy model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mesh.features import Rebuilder, RedisAggregates
from services.personalization.factors import PolicyModel, Segments
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


async def follow_model(path: Path, recommender: Recommender, interval_s: float) -> None:
    """Swap in a retrained model when the file changes (its version is a new policy version: new statistics)."""
    import asyncio

    seen = path.stat().st_mtime if path.exists() else None
    while True:
        await asyncio.sleep(interval_s)
        mtime = path.stat().st_mtime if path.exists() else None
        if mtime is None or mtime == seen:
            continue
        try:
            model = await asyncio.to_thread(PolicyModel.load, path)
        except (OSError, ValueError, KeyError) as exc:  # a half-written file: try again next time
            log.warning("could not load %s yet: %s", path, exc)
            continue
        seen = mtime
        recommender.model = model
        log.info("personalization model %s loaded: policy version %s", model.version, recommender.version)


def load_model(path: Path) -> PolicyModel:
    """The trained policy model, or an untrained one (no ALS, one segment) when none was exported yet:
    LinUCB serves and learns from the first feedback either way."""
    if path.exists():
        return PolicyModel.load(path)
    log.warning("no personalization model at %s (train: python -m services.personalization.train); "
                "serving LinUCB without ALS or segments", path)
    return PolicyModel("untrained", None, Segments(np.zeros((1, 11))))

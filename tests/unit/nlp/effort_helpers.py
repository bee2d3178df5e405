"""Shared by the effort tests of nlp and timeline: a tiny story-point folder and the nlp gRPC server (its real
servicer, interceptor and port) on an event loop thread of its own, so synchronous callers can reach it."""

from __future__ import annotations

import asyncio
import csv
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np

from mesh.config import MeshSettings
from mesh.serving import build_server
from services.nlp.effort_train import EffortEstimator
from services.nlp.server import binding
from services.nlp.textwire import TextServicer

SMALL = "fix typo in label"
BIG = "redesign the whole storage engine migration across every service"


def write_story_points(path: Path, rows: int = 120) -> None:
    """Issues whose points follow their text: BIG ones are 13 points, SMALL ones 1 (train and val splits)."""
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["issuekey", "title", "description", "storypoint", "split_mark"])
        for i in range(rows):
            big = i % 2 == 0
            split = ("train", "train", "val")[i % 3]
            w.writerow([f"X-{i}", BIG if big else SMALL, f"item {rng.integers(1000)}", 13 if big else 1, split])


@contextmanager
def nlp_server(effort: EffortEstimator | None) -> Iterator[str]:
    """The nlp servicer (only its text RPCs are wired: search and embeddings are not needed here) with
    ``effort`` as its effort model, serving on 127.0.0.1; yields ``host:port``."""
    text = TextServicer(cast(Any, None), cast(Any, None), cast(Any, None), effort)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> Any:
        server = build_server([binding(cast(Any, None), cast(Any, None), text)], MeshSettings(), 0, host="127.0.0.1")
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

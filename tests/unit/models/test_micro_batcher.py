from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mesh.config import ModelSettings
from mesh.errors import InvalidArgument
from mesh.models import Coalescer, MicroBatcher, OnnxModel
from tests.unit.models.tiny_models import write_scale_model

Arrays = dict[str, np.ndarray[Any, Any]]


class CountingRunner:
    """An ONNX model that records the size of every batch it ran."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.batch_rows: list[int] = []

    def run(self, inputs: Arrays) -> Arrays:
        self.batch_rows.append(len(inputs["x"]))
        return self.model.run(inputs)


@pytest.fixture
def runner(tmp_path: Path, model_settings: ModelSettings) -> CountingRunner:
    return CountingRunner(OnnxModel.load(write_scale_model(tmp_path / "m.onnx", 3.0), model_settings))


async def test_concurrent_calls_are_merged_and_split_back(runner: CountingRunner,
                                                          rng: np.random.Generator) -> None:
    rows = [rng.standard_normal((1, 3)).astype(np.float32) for _ in range(50)]
    async with MicroBatcher(runner.run, max_batch=64, max_wait_ms=50) as batcher:
        results = await asyncio.gather(*(batcher.submit({"x": r}) for r in rows))
    assert batcher.batches_run < len(rows)
    assert sum(runner.batch_rows) == len(rows)
    for row, result in zip(rows, results, strict=True):
        np.testing.assert_array_equal(result["y"], runner.model.run({"x": row})["y"])


async def test_batches_respect_max_batch_and_multi_row_requests(runner: CountingRunner,
                                                                rng: np.random.Generator) -> None:
    sizes = [1, 3, 2, 5, 1, 4, 2, 2, 9, 1]  # 9 > max_batch: runs alone, never split
    requests = [rng.standard_normal((n, 3)).astype(np.float32) for n in sizes]
    async with MicroBatcher(runner.run, max_batch=8, max_wait_ms=50) as batcher:
        results = await asyncio.gather(*(batcher.submit({"x": r}) for r in requests))
    assert all(n <= 8 for n in runner.batch_rows if n != 9)
    assert 9 in runner.batch_rows
    assert len(runner.batch_rows) < len(requests)
    for request, result in zip(requests, results, strict=True):
        assert result["y"].shape == request.shape
        np.testing.assert_allclose(result["y"], request * 3.0)


async def test_an_error_reaches_every_caller_of_the_batch() -> None:
    calls = 0

    def failing(inputs: Arrays) -> Arrays:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("model exploded")
        return {"y": inputs["x"] + 1}

    async with MicroBatcher(failing, max_batch=16, max_wait_ms=50) as batcher:
        outcomes = await asyncio.gather(
            *(batcher.submit({"x": np.zeros((1, 2), np.float32)}) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(o, RuntimeError) and "exploded" in str(o) for o in outcomes)
        # the batcher keeps working after a failed batch
        after = await batcher.submit({"x": np.zeros((2, 2), np.float32)})
    np.testing.assert_array_equal(after["y"], np.ones((2, 2), np.float32))


async def test_inputs_with_different_row_counts_are_rejected(runner: CountingRunner) -> None:
    async with MicroBatcher(runner.run, max_batch=8, max_wait_ms=1) as batcher:
        with pytest.raises(InvalidArgument):
            await batcher.submit({"x": np.zeros((2, 3), np.float32), "z": np.zeros((3, 3), np.float32)})
    assert runner.batch_rows == []


async def test_zero_wait_still_merges_what_is_already_queued(runner: CountingRunner) -> None:
    async with MicroBatcher(runner.run, max_batch=64, max_wait_ms=0) as batcher:
        await asyncio.gather(*(batcher.submit({"x": np.ones((1, 3), np.float32)}) for _ in range(10)))
    assert batcher.batches_run < 10


async def test_the_coalescer_merges_items_and_fails_only_the_caller_of_a_failed_item() -> None:
    batches: list[list[int]] = []

    def run(items: list[int]) -> list[int | BaseException]:
        batches.append(items)
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    async with Coalescer(run, max_batch=8, max_wait_ms=50) as coalescer:
        outcomes = await asyncio.gather(*(coalescer.submit(i) for i in range(20)), return_exceptions=True)
    assert coalescer.batches_run == len(batches) < 20 and all(len(b) <= 8 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(20))
    for i, outcome in enumerate(outcomes):
        if i % 2:
            assert isinstance(outcome, ValueError) and str(outcome) == f"odd {i}"
        else:
            assert outcome == i * 10


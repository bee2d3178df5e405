"""A dead webhook consumer is a dead worker: the dead-letter cap is not restarted around, and a worker
whose consumer gave up signals the process to exit non-zero."""

from __future__ import annotations

import asyncio
import time

from gateway.devtools import harness
from gateway.webhooks.consumer import DeliveryEnqueuer
from gateway.worker import DeliveryWorker, Runner
from mesh.bus import DeadLetterCapExceeded


class CappedRunner:
    def __init__(self) -> None:
        self.runs = 0

    def open(self, _enqueuer: DeliveryEnqueuer) -> Runner:
        return self

    def run(self) -> object:
        self.runs += 1
        raise DeadLetterCapExceeded("101 invalid messages in a row on ml.predictions.assignment (cap 100)")

    def stop(self) -> None:
        return None


async def test_the_dead_letter_cap_is_fatal_at_once() -> None:
    runner = CappedRunner()
    settings = harness.gateway_settings(consumer_max_restarts=5, consumer_restart_backoff_s=0.001,
                                        consumer_restart_max_backoff_s=0.002)
    worker = DeliveryWorker(settings, store=None, clock=time.time, open_runner=runner.open)  # type: ignore[arg-type]
    await asyncio.wait_for(worker.run_consumer(), 10)
    assert runner.runs == 1  # not restarted: a restart would drain the next records into the DLQ too
    assert worker.consumer_state == "failed" and worker.failed.is_set()

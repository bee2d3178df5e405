"""Running a service's outcome joiner beside its main consumer, in the same process.

:func:`outcome_runner` builds the joiner's consumer (its own group ``<capability>.outcomes`` on the
prediction topic and the truth topics, its state in Redis under ``<namespace>:mlops:<capability>``) and
:class:`Runners` runs it with the service's consumer as the one runner ``mesh.serving.run_service`` takes:
stopping stops both, and either dying takes the other down (the process exits and is restarted).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from mesh.bus import ConsumerRunner, Publisher
from mesh.config import MeshSettings
from mesh.features import RedisAggregates
from mesh.mlops._outcomes import Emitter, OutcomeJoiner, OutcomeSpec, reducers

log = logging.getLogger(__name__)


class _Runner(Protocol):
    def run(self) -> object: ...

    def stop(self) -> None: ...


def joiner_namespace(settings: MeshSettings, capability: str) -> str:
    return f"{settings.namespace}:mlops:{capability}"


def open_joiner(settings: MeshSettings, spec: OutcomeSpec, publisher: Publisher) -> OutcomeJoiner:
    """The joiner of ``spec`` on the deployment's Redis, publishing its alerts with ``publisher``."""
    import redis

    client = redis.Redis.from_url(settings.redis.url, socket_connect_timeout=5, socket_timeout=5)
    store = RedisAggregates(client, joiner_namespace(settings, spec.capability), reducers=reducers(spec))
    return OutcomeJoiner(spec, store, Emitter(publisher.publish, publisher.flush))


def outcome_runner(settings: MeshSettings, spec: OutcomeSpec, topics: Sequence[str], publisher: Publisher
                   ) -> tuple[ConsumerRunner, OutcomeJoiner]:
    """The consumer of a service's outcomes (``topics``: the prediction topic and the truth topics)."""
    joiner = open_joiner(settings, spec, publisher)
    runner = ConsumerRunner.for_service(settings, f"{spec.capability}.outcomes", topics, publisher,
                                        batch_handler=joiner)
    return runner, joiner


class Runners:
    """Several consumer runners as one: :meth:`run` runs the first here and the others in threads, returns
    (or raises) when any of them does, after stopping the rest."""

    def __init__(self, *runners: _Runner) -> None:
        if not runners:
            raise ValueError("no runner to run")
        self._runners = runners
        self._done = threading.Event()
        self._errors: list[BaseException] = []

    def _run(self, runner: _Runner) -> None:
        try:
            runner.run()
        except BaseException as exc:  # re-raised by run(): the service dies with it
            self._errors.append(exc)
        finally:
            self._done.set()
            self.stop()

    def run(self) -> None:
        threads = [threading.Thread(target=self._run, args=(r,), name=f"runner-{i}", daemon=True)
                   for i, r in enumerate(self._runners[1:], start=1)]
        for t in threads:
            t.start()
        self._run(self._runners[0])
        for t in threads:
            t.join()
        if self._errors:
            raise self._errors[0]

    def stop(self) -> None:
        for runner in self._runners:
            runner.stop()

"""The faust stream step that keeps activity windows (tumbling and hopping) in a changelog-backed table.

    python -m services.anomaly.windows_app worker -l info --without-web

Source topics `activity` and `tasks` are re-keyed by tenant (agent `rekey` -> internal topic
`<app id>-by-tenant`), so every window of a tenant lives on one partition and one worker.
The table `activity_windows` (window key -> signal ->
{event_id: weight}, see `services.anomaly.windows`) is backed by the changelog topic
`<app id>-activity_windows-changelog`: a worker that is killed and restarted reads its windows back from
Kafka before it consumes again, and a redelivered event changes nothing (ids). Undecodable events go to the
DLQ topic with the reason in a header, as the mesh consumer runner does.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

from mesh.bus import FaustOptions, make_faust_app
from mesh.config import MeshSettings
from mesh.events import InvalidEvent, TopicRegistry, decode
from services.anomaly.windows import DEFAULT_WINDOWS, WindowSpec, apply, updates

log = logging.getLogger(__name__)
TABLE = "activity_windows"


def build_app(settings: MeshSettings, app_id: str, specs: tuple[WindowSpec, ...] = DEFAULT_WINDOWS) -> Any:
    """The faust app with its window table and agent (nothing connects until the app runs)."""
    registry = TopicRegistry(settings.kafka.topic_prefix)
    options = FaustOptions()
    app = make_faust_app(app_id, settings.kafka, options)
    source = app.topic(registry.physical("activity"), registry.physical("tasks"),
                       value_type=bytes, value_serializer="raw")
    dlq = app.topic(registry.physical("dlq"), value_type=bytes, value_serializer="raw")
    table = app.Table(TABLE, default=None, key_type=str)

    by_tenant = app.topic(f"{app_id}-by-tenant", value_type=bytes, value_serializer="raw", key_type=str,
                          internal=True, partitions=options.topic_partitions)

    @app.agent(source)  # type: ignore[misc,untyped-decorator]
    async def rekey(stream: AsyncIterator[bytes]) -> None:
        async for value in stream:
            try:
                env = decode(value)
            except InvalidEvent as exc:
                await dlq.send(value=value, headers={"dlq.reason": str(exc).encode(),
                                                     "dlq.consumer.group": app_id.encode()})
                continue
            await by_tenant.send(key=env.tenant_id, value=value)

    @app.agent(by_tenant)  # type: ignore[misc,untyped-decorator]
    async def windows(stream: AsyncIterator[bytes]) -> None:
        async for value in stream:
            env = decode(value)  # validated by `rekey`
            for key, adds in updates(env, specs).items():
                new, changed = apply(table.get(key), env.event_id, adds)
                if changed:
                    table[key] = new  # assignment (not mutation) is what faust writes to the changelog

    return app


def main(argv: list[str] | None = None) -> None:
    settings = MeshSettings()
    app_id = f"{settings.kafka.topic_prefix}anomaly-windows"
    app = build_app(settings, app_id)
    sys.argv = [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]
    app.main()


if __name__ == "__main__":
    main()

"""A faust worker for the round-trip test: decodes envelopes from the tasks topic, echoes event ids."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

from mesh.bus import make_faust_app
from mesh.config import MeshSettings
from mesh.events import TopicRegistry, decode


def main(prefix: str) -> None:
    settings = MeshSettings()
    settings.kafka.topic_prefix = prefix
    registry = TopicRegistry(prefix)
    app = make_faust_app(f"{prefix}echo", settings.kafka)
    source = app.topic(registry.physical("tasks"), value_type=bytes, value_serializer="raw")
    sink = app.topic(f"{prefix}faust.echo", value_type=bytes, value_serializer="raw")

    @app.agent(source)  # type: ignore[misc]
    async def echo(stream: AsyncIterator[bytes]) -> None:
        async for value in stream:
            env = decode(value)
            await sink.send(key=env.tenant_id.encode(), value=env.event_id.encode())

    app.main()


if __name__ == "__main__":
    prefix = sys.argv.pop(1)
    main(prefix)

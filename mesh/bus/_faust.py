"""A factory for faust-streaming apps (no global app object) for stateful, windowed stream steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mesh.config import KafkaSettings


@dataclass(frozen=True)
class FaustOptions:
    """The few faust settings a mesh stream step chooses."""

    store: str = "memory://"
    """Table storage (``memory://`` or ``rocksdb://``)."""
    topic_partitions: int = 3
    """Partitions of the app's internal (changelog, repartition) topics."""
    web_port: int | None = None
    """Faust's web server port; None disables it."""
    processing_guarantee: str = "at_least_once"


def make_faust_app(app_id: str, settings: KafkaSettings, options: FaustOptions | None = None) -> Any:
    """Build a faust ``App`` on the mesh's broker; the caller owns it (define agents on it, run it)."""
    import faust  # lazily: faust pulls in aiokafka and mode

    opts = options or FaustOptions()
    servers = ";".join(f"kafka://{s.strip()}" for s in settings.bootstrap_servers.split(","))
    return faust.App(
        app_id,
        broker=servers,
        store=opts.store,
        autodiscover=False,
        topic_partitions=opts.topic_partitions,
        topic_replication_factor=1,
        web_enabled=opts.web_port is not None,
        web_port=opts.web_port or 6066,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        processing_guarantee=opts.processing_guarantee,
        broker_client_id=f"{settings.client_id}-{app_id}",
    )

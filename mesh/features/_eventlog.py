"""The offline event log: every consumed event, as parquet partitioned by event date.

Files are named by write time, so reading them in name order replays events in the order they were
consumed. The log is at-least-once (a redelivered event is logged again); readers dedupe by event id.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh.events import Envelope, occurred_at


@dataclass(frozen=True)
class Coords:
    """Where a consumed event came from."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class LoggedEvent:
    envelope: Envelope
    coords: Coords | None = None


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("event_id", pa.string()), ("type", pa.string()), ("tenant_id", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")), ("topic", pa.string()), ("partition", pa.int32()),
        ("offset", pa.int64()), ("logged_at", pa.timestamp("us", tz="UTC")), ("envelope", pa.binary()),
    ])


class EventLog:
    """Append-only parquet log under `root/date=YYYY-MM-DD/`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def append(self, events: Sequence[LoggedEvent]) -> int:
        """Write the events durably (one file per event date); returns how many were written."""
        by_date: dict[str, list[LoggedEvent]] = defaultdict(list)
        for ev in events:
            by_date[occurred_at(ev.envelope).strftime("%Y-%m-%d")].append(ev)
        stem = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        for date, group in by_date.items():
            self._write(self.root / f"date={date}" / f"{stem}.parquet", group)
        return len(events)

    def _write(self, path: Path, events: list[LoggedEvent]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        now = datetime.now(UTC)
        columns: dict[str, list[Any]] = {name: [] for name in _schema().names}
        for ev in events:
            env, c = ev.envelope, ev.coords
            for name, value in (("event_id", env.event_id), ("type", env.type), ("tenant_id", env.tenant_id),
                                ("occurred_at", occurred_at(env)), ("topic", c.topic if c else None),
                                ("partition", c.partition if c else None), ("offset", c.offset if c else None),
                                ("logged_at", now), ("envelope", env.SerializeToString())):
                columns[name].append(value)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        pq.write_table(pa.table(columns, schema=_schema()), tmp)
        tmp.rename(path)  # readers never see a half-written file

    def files(self) -> list[Path]:
        return sorted(self.root.glob("date=*/*.parquet"), key=lambda p: p.name)

    def read(self) -> Iterator[LoggedEvent]:
        """Every logged event, in the order it was logged (duplicates included)."""
        import pyarrow.parquet as pq

        for path in self.files():
            table = pq.read_table(path, columns=["topic", "partition", "offset", "envelope"])
            for row in table.to_pylist():
                env = Envelope()
                env.ParseFromString(row["envelope"])
                coords = Coords(row["topic"], row["partition"], row["offset"]) if row["topic"] else None
                yield LoggedEvent(env, coords)

    def count(self) -> int:
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.files())

"""File sink round trip, truth round trip, pacing without sleeping for real, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.events import Envelope
from simulator import SimConfig, Simulation, load_truth
from simulator.__main__ import main
from simulator._sinks import FileSink, PublisherSink, TokenBucket, TruncatedFile, read_events, throttle


def _small() -> Simulation:
    return Simulation(SimConfig(users_per_tenant=20, weeks=1, seed=3))


def test_file_sink_round_trips_every_envelope(tmp_path: Path) -> None:
    events = list(_small().events())
    with FileSink(tmp_path / "events.pb") as sink:
        for env in events:
            sink.write(env)
    back = list(read_events(tmp_path / "events.pb"))
    assert [e.SerializeToString() for e in back] == [e.SerializeToString() for e in events]


def test_a_truncated_file_is_reported(tmp_path: Path) -> None:
    events = list(_small().events())[:10]
    path = tmp_path / "events.pb"
    with FileSink(path) as sink:
        for env in events:
            sink.write(env)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(TruncatedFile):
        list(read_events(path))


def test_truth_round_trips_through_files(tmp_path: Path) -> None:
    sim = _small()
    for _ in sim.events():
        pass
    sim.truth.write(tmp_path / "truth")
    assert load_truth(tmp_path) == sim.truth
    assert load_truth(tmp_path / "truth").tasks[0].created_at.tzinfo is not None


def test_truth_is_refused_before_the_stream_is_exhausted() -> None:
    sim = _small()
    next(iter(sim.events()))
    with pytest.raises(RuntimeError):
        _ = sim.truth


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_token_bucket_paces_to_the_rate_without_busy_waiting() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, burst=10.0, clock=clock, sleep=clock.sleep)
    for _ in range(1010):
        bucket.acquire()
    # 10 in the initial burst, then 1000 at 100/s: about 10 simulated seconds, one sleep per event
    assert clock.now == pytest.approx(10.0, rel=0.01)
    assert len(clock.slept) == 1000


def test_throttle_passes_events_through_unchanged() -> None:
    events = list(_small().events())[:50]
    clock = FakeClock()
    out = list(throttle(events, TokenBucket(1000.0, burst=5.0, clock=clock, sleep=clock.sleep)))
    assert out == events and clock.now > 0
    assert list(throttle(events, None)) == events


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[Envelope] = []
        self.flushed = False
        self.closed = False

    def publish(self, env: Envelope) -> None:
        self.published.append(env)

    def flush(self, timeout_s: float = 30.0) -> None:
        self.flushed = True

    def close(self) -> None:
        self.closed = True


def test_publisher_sink_publishes_and_flushes_on_close() -> None:
    events = list(_small().events())[:20]
    publisher = FakePublisher()
    sink = PublisherSink(publisher)
    for env in events:
        sink.write(env)
    sink.close()
    assert publisher.published == events and publisher.flushed and publisher.closed


def test_cli_writes_events_truth_and_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--users", "15", "--weeks", "1", "--seed", "4", "--out", str(tmp_path), "--quiet"]) == 0
    assert "events/s" in capsys.readouterr().out
    events = list(read_events(tmp_path / "events.pb"))
    expected = list(Simulation(SimConfig(users_per_tenant=15, weeks=1, seed=4)).events())
    assert [e.event_id for e in events] == [e.event_id for e in expected]
    assert load_truth(tmp_path).people and (tmp_path / "manifest.json").exists()

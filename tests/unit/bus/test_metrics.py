"""The bus's Prometheus metrics are served over HTTP and move when the runner works."""

from __future__ import annotations

import socket
import urllib.request

from sunday.ml.v1 import events_pb2 as e

from mesh.bus import ConsumerRunner, InMemoryBroker, Publisher, RunnerOptions
from mesh.events import TopicRegistry, new_envelope
from mesh.telemetry import serve_metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _value(text: str, name: str, group: str) -> float:
    for line in text.splitlines():
        if line.startswith(name) and f'group="{group}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_handled_dead_lettered_latency_and_lag_are_served(unique: str) -> None:
    registry = TopicRegistry(f"m{unique}.")
    broker = InMemoryBroker()
    pub = Publisher(broker.producer(), registry)
    for i in range(5):
        pub.publish(new_envelope("t", e.TaskCreated(task_id=f"x{i}", project_id="p"), producer="tests"))
    pub.publish_raw("tasks", b"junk", b"k", [])
    group = f"metrics-{unique}"
    ConsumerRunner(consumer=broker.consumer(group), publisher=pub, topics=["tasks"], group_id=group,
                   handler=lambda env: None,
                   options=RunnerOptions(max_messages=6, poll_timeout_s=0.1, idle_timeout_s=5,
                                         lag_interval_s=0)).run()
    port = _free_port()
    serve_metrics(port)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert _value(text, "mesh_events_handled_total", group) == 5
    assert _value(text, "mesh_events_dead_lettered_total", group) == 1
    assert _value(text, "mesh_handler_seconds_count", group) == 5
    assert f'mesh_consumer_lag{{group="{group}"' in text

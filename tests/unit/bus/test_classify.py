"""One classification of failures: what goes to the DLQ (permanent) and what is retried and held (transient)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import redis
from confluent_kafka import KafkaError, KafkaException

from mesh.bus import BrokerUnavailable, PermanentError, PublishError, TransientError, classify
from mesh.errors import InvalidArgument, NotFound, Unavailable, is_transient, translate_infra_errors
from mesh.events import InvalidEvent


class _Rpc(grpc.RpcError):  # type: ignore[misc]  # grpc ships no stubs
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def _wrapped(outer: type[Exception], inner: BaseException) -> Exception:
    """``outer`` raised while handling ``inner`` (how MLflow and Feast wrap a library error)."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer("API request to http://mlflow:5000 failed") from None
    except Exception as exc:
        exc.__context__ = inner
        return exc


TRANSIENT = [
    TransientError("dependency restarting"),
    Unavailable("model assignment@champion is not loaded yet"),
    redis.exceptions.ConnectionError("Connection refused"),
    redis.exceptions.TimeoutError("Timeout reading from socket"),
    redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
    ConnectionRefusedError(111, "refused"),
    TimeoutError("timed out"),
    _Rpc(grpc.StatusCode.UNAVAILABLE),
    _Rpc(grpc.StatusCode.DEADLINE_EXCEEDED),
    _Rpc(grpc.StatusCode.RESOURCE_EXHAUSTED),
    KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT)),
    KafkaException(KafkaError(KafkaError._ALL_BROKERS_DOWN)),
    BrokerUnavailable("cannot reach Kafka"),
    PublishError("3 record(s) still undelivered after 30s", retryable=True),
    _wrapped(RuntimeError, redis.exceptions.ConnectionError("refused")),  # e.g. MlflowException over requests
]

PERMANENT = [
    InvalidEvent("not a sunday.ml.v1.Envelope"),
    PermanentError("task has no project"),
    InvalidArgument("deadline before creation"),
    NotFound("no such project"),
    _Rpc(grpc.StatusCode.INVALID_ARGUMENT),
    KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)),
    PublishError("1 record(s) were not delivered: Message size too large"),
    KeyError("person-7"),
    ZeroDivisionError("division by zero"),
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda e: type(e).__name__)
def test_infrastructure_failures_are_transient(exc: Exception) -> None:
    failure = classify(exc)
    assert failure.transient and failure.kind == "transient"


@pytest.mark.parametrize("exc", PERMANENT, ids=lambda e: type(e).__name__)
def test_bad_input_declared_errors_and_bugs_are_permanent(exc: Exception) -> None:
    assert not classify(exc).transient


def test_a_declared_permanent_error_is_believed_even_when_an_outage_caused_it() -> None:
    try:
        try:
            raise redis.exceptions.ConnectionError("refused")
        except redis.exceptions.ConnectionError as cause:
            raise PermanentError("this event can never be handled") from cause
    except PermanentError as exc:
        assert not classify(exc).transient


def test_a_bug_is_dead_lettered_with_where_it_happened() -> None:
    def handler() -> None:
        people: dict[str, int] = {}
        people["person-7"]  # the bug

    try:
        handler()
    except KeyError as exc:
        failure = classify(exc)
    assert failure.kind == "bug" and not failure.transient
    assert "KeyError: 'person-7'" in failure.reason
    assert "test_classify.py:" in failure.reason and "in handler" in failure.reason


def test_translate_infra_errors_turns_library_errors_into_unavailable() -> None:
    expected = pytest.raises(Unavailable, match="redis dedupe: ConnectionError")
    with expected as info, translate_infra_errors("redis dedupe"):
        raise redis.exceptions.ConnectionError("refused")
    assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
    with pytest.raises(KeyError), translate_infra_errors("redis dedupe"):  # not an outage: left alone
        raise KeyError("x")


def test_translate_infra_errors_decorates_sync_and_async_functions() -> None:
    @translate_infra_errors("feast online read")
    def read() -> None:
        raise redis.exceptions.TimeoutError("slow")

    @translate_infra_errors("feast online read")
    async def read_async() -> None:
        raise redis.exceptions.TimeoutError("slow")

    with pytest.raises(Unavailable):
        read()
    with pytest.raises(Unavailable):
        asyncio.run(read_async())
    assert is_transient(Unavailable("x"))


def test_store_adapters_report_a_redis_outage_as_unavailable() -> None:
    from mesh.features._aggregates import RedisAggregates
    from mesh.features._state import EntityState

    down = redis.Redis(port=1, socket_connect_timeout=1)  # nothing listens on port 1
    state_type = next(iter(EntityState.__subclasses__()))
    with pytest.raises(Unavailable, match="ConnectionError"):
        RedisAggregates(down, "ns").load_many(state_type, "t", ["x"])
    with pytest.raises(Unavailable, match="ConnectionError"):
        RedisAggregates(down, "ns").apply([], require_built=True)

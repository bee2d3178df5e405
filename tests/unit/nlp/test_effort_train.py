"""The effort model the nlp service serves: pooled training from a folder of story-point CSVs (train/val only),
a clear error without data, the served estimator (no embedder), and the ``EstimateEffort`` RPC over gRPC:
Unavailable without a model, InvalidArgument for an empty task, story points with provenance otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sunday.ml.v1 import nlp_pb2, nlp_pb2_grpc

from services.nlp.effort_train import MODEL_NAME, EffortDataError, EffortEstimator, main, read_pooled, train
from tests.unit.nlp.effort_helpers import BIG, SMALL, nlp_server, write_story_points


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("effort")
    data = root / "sp"
    data.mkdir()
    write_story_points(data / "one.csv")
    (data / "other.csv").write_text("a,b\n1,2\n")  # not a story-point file: skipped
    assert set(read_pooled(data)) == {"train", "val"}
    out = root / "effort.pkl"
    result = train(data, out)
    assert result.chosen != "median"  # the text explains the points here: the model must beat the median
    return out


def test_the_trained_model_reads_the_text_and_loads_again(trained: Path) -> None:
    estimator = EffortEstimator.load(trained)
    assert estimator is not None and estimator.name == MODEL_NAME
    small, big = estimator.estimate_many([(SMALL, ""), (BIG, "item 3")])
    assert big > small + 5 and small >= 0
    assert EffortEstimator.load(trained.parent / "absent.pkl") is None


def test_no_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(EffortDataError, match="no story-point CSVs"):
        train(tmp_path / "missing", tmp_path / "m.pkl")
    only_train = tmp_path / "sp"
    only_train.mkdir()
    (only_train / "x.csv").write_text("title,description,storypoint,split_mark\na,b,3,train\n")
    assert main(["--data", str(only_train), "--out", str(tmp_path / "m.pkl")]) == 2
    assert "no train and val split" in capsys.readouterr().err
    assert not (tmp_path / "m.pkl").exists()


async def _estimate(target: str, title: str, description: str = "") -> nlp_pb2.EstimateEffortResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = nlp_pb2_grpc.NlpServiceStub(channel)
        response: nlp_pb2.EstimateEffortResponse = await stub.EstimateEffort(
            nlp_pb2.EstimateEffortRequest(tenant_id="t-1", title=title, description=description), timeout=10)
        return response


@pytest.fixture(scope="module")
def served(trained: Path) -> Iterator[str]:
    with nlp_server(EffortEstimator.load(trained)) as target:
        yield target


def test_estimate_effort_over_grpc(served: str) -> None:
    small = asyncio.run(_estimate(served, SMALL))
    big = asyncio.run(_estimate(served, BIG, "item 7"))
    assert big.story_points > small.story_points + 5
    assert big.provenance.model_name == MODEL_NAME and big.provenance.model_version
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        asyncio.run(_estimate(served, "  ", ""))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_without_a_model_estimate_effort_is_unavailable_and_names_the_command() -> None:
    with nlp_server(None) as target, pytest.raises(grpc.aio.AioRpcError) as error:
        asyncio.run(_estimate(target, SMALL))
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "services.nlp.effort_train" in (error.value.details() or "")

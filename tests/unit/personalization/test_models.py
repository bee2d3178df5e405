"""ALS factors and segments: exported and read back without a training library; cold start; leave-last-out
splits; the optional nlp embedding column (on with a live Embed, 0 when nlp is unreachable)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from sunday.ml.v1 import nlp_pb2, nlp_pb2_grpc

from mesh.features import InMemoryAggregates
from services.personalization.embeddings import NlpEmbedder
from services.personalization.factors import Interaction, PolicyModel, behaviour, build_model, train_als
from services.personalization.ranking import Timed, leave_last_out
from services.personalization.recommend import CONTEXT, Recommender
from services.personalization.state import PERSONALIZATION_REDUCERS, PersonState
from tests.services_harness import free_port
from tests.unit.personalization.helpers import NOW, model, world


def _blocks() -> list[Interaction]:
    """Two groups of users, each viewing its own group of items."""
    out = []
    for u in range(20):
        group = u % 2
        out += [Interaction(f"u{u}", f"i{group}-{j}", 1.0 + (u + j) % 3) for j in range(6)]
    return out


def test_als_separates_the_groups_and_the_exported_model_scores_the_same(tmp_path: Path) -> None:
    als = train_als(_blocks(), factors=8, iterations=10, seed=1)
    assert als is not None
    user = als.user_vector("u0")
    own, other = als.scores(user, ["i0-0", "i0-1"]), als.scores(user, ["i1-0", "i1-1"])
    assert own.min() > other.max()
    assert als.scores(user, ["unknown"])[0] == 0.0 and als.scores(None, ["i0-0"])[0] == 0.0
    people = [PersonState(tenant_id="t", entity_id=f"u{u}", type_views={"bug" if u % 2 else "docs": 5})
              for u in range(20)]
    saved = build_model("v1", als, people, k=2).save(tmp_path / "policy.npz")
    loaded = PolicyModel.load(saved)
    assert loaded.version == "v1" and loaded.als is not None
    assert np.allclose(loaded.als.scores(loaded.als.user_vector("u3"), ["i1-2"]), als.scores(als.user_vector("u3"),
                                                                                             ["i1-2"]))
    assert loaded.segments.centroids.shape == (2, 11)
    # cold start: a new person who looks at the odd users' type of task gets the odd users' taste
    newcomer = PersonState(tenant_id="t", entity_id="new", type_views={"bug": 2})
    cold = loaded.cold_vector(loaded.segments.of(behaviour(newcomer)))
    assert cold is not None
    assert als.scores(cold, ["i1-0"])[0] > als.scores(cold, ["i0-0"])[0]


def test_leave_last_out_holds_out_each_users_latest_item() -> None:
    rows = [Timed("a", "x", 1, 1.0), Timed("a", "y", 1, 3.0), Timed("a", "y", 1, 2.0), Timed("b", "z", 1, 1.0)]
    train, held = leave_last_out(rows)
    assert held == {"a": "y"}
    assert {(r.user_id, r.item_id) for r in train} == {("a", "x"), ("b", "z")}


class _FakeNlp(nlp_pb2_grpc.NlpServiceServicer):
    def Embed(self, request: nlp_pb2.EmbedRequest, context: object) -> nlp_pb2.EmbedResponse:
        vecs = [[1.0, 0.0] if "task-3" in t else [0.0, 1.0] for t in request.texts]
        return nlp_pb2.EmbedResponse(embeddings=[nlp_pb2.Embedding(values=v) for v in vecs], dim=2)


@pytest.fixture
def nlp_target() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    nlp_pb2_grpc.add_NlpServiceServicer_to_server(_FakeNlp(), server)  # type: ignore[abstract]
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def _embedding_column(target: str) -> np.ndarray:
    store = InMemoryAggregates(PERSONALIZATION_REDUCERS)
    store.apply(world("t"))
    rec = Recommender(store, model(), embedder=NlpEmbedder(target, timeout_s=2.0))
    person = store.load(PersonState, "t", "alice")
    assert person is not None
    items = rec.candidates("t", person)
    x = rec.contexts("t", person, items, NOW.timestamp(), 0)
    by_id = {i.entity_id: row for i, row in zip(items, x, strict=True)}
    return np.array([by_id["task-1"][CONTEXT.index("embedding")], by_id["task-3"][CONTEXT.index("embedding")]])


def test_the_text_column_comes_from_nlp_embed_and_is_off_when_nlp_is_down(
        nlp_target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.nlp.client import NlpClient

    calls: list[int] = []
    embed = NlpClient.embed

    async def counted(self: NlpClient, texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return await embed(self, texts)

    monkeypatch.setattr(NlpClient, "embed", counted)  # the nlp service's own client, not a copy
    assert np.allclose(_embedding_column(nlp_target), [0.0, 1.0])  # alice viewed task-3: its text is her profile
    assert calls and calls[0] >= 2
    assert np.allclose(_embedding_column(f"127.0.0.1:{free_port()}"), [0.0, 0.0])


def test_movielens_format_leave_last_out_ranks_als_above_popularity(tmp_path: Path) -> None:
    """Two taste groups; the globally popular items belong to the bigger group, so popularity misses the
    smaller group's held-out items while ALS finds them."""
    from services.personalization.ranking import evaluate, read_movielens

    rng = np.random.default_rng(0)
    lines = []
    for u in range(60):
        group = 0 if u < 40 else 1
        items = rng.choice(15, size=8, replace=False) + 100 * group
        lines += [f"{u}\t{i}\t5\t{1000 + t}" for t, i in enumerate(items)]
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    rows = read_movielens(str(tmp_path / "u.data"))
    assert len(rows) == 480
    result = evaluate(rows, k=10, factors=8, iterations=10)
    assert result.users == 60
    assert result.recall["als"] > result.recall["popularity"] + 0.1
    assert 0.0 < result.ndcg["als"] <= result.recall["als"]

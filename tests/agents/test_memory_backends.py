"""The contract every memory search backend keeps: an embedder and a vector index, over each one installed.

Only the embedded default (hashed embedding, numpy index) ships today; a backend of an extra
([embeddings], [chroma]) joins the lists below when its extra is importable.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent_orchestrated_etl.agents.memory_index import (
    Embedder,
    HashedEmbedder,
    NumpyIndex,
    VectorIndex,
    key_of,
    query_keys,
)

EMBEDDERS = [pytest.param(HashedEmbedder, id="hashed")]
INDEXES = [pytest.param(NumpyIndex, id="numpy")]

TEXTS = [
    "ServerError on orders_api [503]: server error N; retry tried 2 times, worked 2",
    "QueryCanceledError on payments_db [57014]: canceling statement due to statement timeout",
    "run of pipeline shop succeeded: 1200 rows written from customers in 3.1s",
    "profile of customers.csv: 1200 rows; columns id int64, email string (email)",
]


@pytest.fixture(params=EMBEDDERS)
def embedder(request: pytest.FixtureRequest) -> Embedder:
    made: Embedder = request.param()
    return made


@pytest.fixture(params=INDEXES)
def index(request: pytest.FixtureRequest, embedder: Embedder) -> VectorIndex:
    made: VectorIndex = request.param(embedder.dim)
    return made


def test_an_embedder_gives_unit_rows_the_same_each_time(embedder: Embedder) -> None:
    first, again = embedder.embed(TEXTS), embedder.embed(list(TEXTS))
    assert first.shape == (len(TEXTS), embedder.dim) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    assert np.array_equal(first, again)
    assert embedder.embed([""]).shape == (1, embedder.dim)


def _filled(index: VectorIndex, embedder: Embedder) -> None:
    systems = [key_of("orders_api"), key_of("payments_db"), 0, key_of("customers.csv")]
    signatures = [[key_of("ServerError"), key_of("503")], [key_of("QueryCanceledError"), key_of("57014")], [], []]
    index.add([10, 11], embedder.embed(TEXTS[:2]), systems[:2], signatures[:2])
    index.add([12, 13], embedder.embed(TEXTS[2:]), systems[2:], signatures[2:])


def test_an_index_finds_each_text_by_itself_first(index: VectorIndex, embedder: Embedder) -> None:
    _filled(index, embedder)
    assert len(index) == 4
    for expected, text in zip([10, 11, 12, 13], TEXTS, strict=True):
        hits = index.search(embedder.embed([text])[0], np.zeros(0, dtype=np.int64), 2)
        assert hits[0].id == expected and hits[0].score > hits[1].score


def test_naming_a_system_or_an_error_code_ranks_its_episode_first(index: VectorIndex, embedder: Embedder) -> None:
    _filled(index, embedder)
    for query, expected in [("anything on Payments DB", 11), ("we got 503 again", 10), ("QueryCanceledError", 11)]:
        hits = index.search(embedder.embed([query])[0], query_keys(query), 4)
        assert hits[0].id == expected, query
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_an_index_asked_for_more_than_it_holds_gives_what_it_has(index: VectorIndex, embedder: Embedder) -> None:
    assert index.search(embedder.embed(["x"])[0], np.zeros(0, dtype=np.int64), 5) == []
    _filled(index, embedder)
    assert {h.id for h in index.search(embedder.embed(["x"])[0], np.zeros(0, dtype=np.int64), 50)} == {10, 11, 12, 13}

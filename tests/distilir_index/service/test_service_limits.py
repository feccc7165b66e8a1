"""The cost of one request is bounded (issue 17, item 3), over real HTTP: per-route caps answer 429
with Retry-After instead of queueing, a time budget answers 503 with Retry-After, rerank documents
are bounded by their total length, and embeddings count tokens as the model sees them (cut at its max
length) and never write client texts into the document cache. Also OpenAI's ``dimensions``, ``user``
and token-id inputs through the official SDK.

The slow reranker below is a fake standing in for a cross-encoder (a callable that sleeps): what is
tested is the server's handling of slow work, not a model.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from distilir_index.service import ServiceSettings, create_app
from distilir_index.service.limits import RouteLimiter


class SlowReranker:
    """Fake reranker: sleeps ``seconds`` per call, then scores by document length."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, query, docs):
        with self.lock:
            self.calls += 1
        time.sleep(self.seconds)
        return [float(len(d)) for d in docs]


def _rerank(url: str, docs=("a", "bb")) -> httpx.Response:
    return httpx.post(f"{url}/v1/rerank", json={"query": "q", "documents": list(docs)}, timeout=30)


def test_a_route_at_its_cap_answers_429_with_retry_after(serve, bm25_path):
    settings = ServiceSettings(
        indexes={"bm25": bm25_path}, max_concurrent={"rerank": 1}, request_timeout_s=20, batch_wait_ms=0
    )
    slow = SlowReranker(1.5)
    with serve(create_app(settings, reranker=slow)) as url:
        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(_rerank, url)
            time.sleep(0.4)  # the first is at work
            second = _rerank(url)
            search = httpx.post(f"{url}/v1/search", json={"query": "cells", "k": 3}, timeout=30)
            assert first.result().status_code == 200
        assert second.status_code == 429, second.text
        assert second.headers["retry-after"] == "1"
        assert second.json()["error"]["type"] == "overloaded"
        assert "max_concurrent['rerank'] = 1" in second.json()["error"]["message"]
        assert search.status_code == 200  # other routes are not held up by the rerank cap
        assert _rerank(url).status_code == 200  # the slot is free again
    assert slow.calls == 2  # the refused request did no work


def test_work_past_the_time_budget_answers_503_and_keeps_its_slot(serve, bm25_path):
    settings = ServiceSettings(
        indexes={"bm25": bm25_path},
        max_concurrent={"rerank": 1},
        request_timeout_s=0.3,
        retry_after_s=2,
        batch_wait_ms=0,
    )
    with serve(create_app(settings, reranker=SlowReranker(1.5))) as url:
        started = time.monotonic()
        late = _rerank(url)
        assert time.monotonic() - started < 1.2  # answered at the budget, not when the work ended
        assert late.status_code == 503, late.text
        assert late.headers["retry-after"] == "2"
        assert late.json()["error"]["type"] == "timeout"
        assert "request_timeout_s" in late.json()["error"]["message"]
        # the work runs on and holds the route's only slot: no second thread behind the client's back
        assert _rerank(url).status_code == 429
        time.sleep(1.6)
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert 'status="503"' in metrics and 'status="429"' in metrics


def test_route_limiter_releases_slots_when_the_work_ends():
    import asyncio

    async def scenario():
        limiter = RouteLimiter({"search": 2}, timeout_s=0.05)
        gate = asyncio.Event()

        async def work():
            await gate.wait()
            return "done"

        with pytest.raises(Exception, match="time budget"):
            await limiter.run("search", work)
        assert limiter.busy("search") == 1
        gate.set()
        await asyncio.sleep(0.01)
        assert limiter.busy("search") == 0
        assert await limiter.run("search", work) == "done"

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="unknown routes"):
        RouteLimiter({"serch": 1}, timeout_s=None)


def test_rerank_documents_are_bounded_by_their_total_length(serve, bm25_path):
    settings = ServiceSettings(indexes={"bm25": bm25_path}, max_rerank_chars=2000, batch_wait_ms=0)
    with serve(create_app(settings, reranker=SlowReranker(0.0))) as url:
        ok = _rerank(url, ["x" * 900, "y" * 900])
        big = _rerank(url, ["x" * 900, "y" * 900, "z" * 900])
    assert ok.status_code == 200
    assert big.status_code == 413 and "2700 characters" in big.json()["error"]["message"]
    assert "max_rerank_chars" in big.json()["error"]["message"]


openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def embed_server(serve, bm25_path, minilm_path, tmp_path_factory):
    from distilir_index.encoders import DenseEncoder

    cache = tmp_path_factory.mktemp("embedding-cache")
    encoder = DenseEncoder(minilm_path, cache_dir=cache)
    settings = ServiceSettings(
        indexes={"bm25": bm25_path},
        embedding_model="minilm",
        truncatable_models=["minilm"],
        batch_wait_ms=0,
    )
    with serve(create_app(settings, embedder=encoder)) as url:
        yield url, encoder


def test_dimensions_user_and_token_ids_through_the_openai_sdk(embed_server, serve, bm25_path, dense_encoder):
    url, encoder = embed_server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    texts = ["aspirin and heart attacks", "bone density in older adults"]
    full = encoder.encode_documents(texts, cache=False)
    got = client.embeddings.create(model="minilm", input=texts, dimensions=384, user="u-1")
    np.testing.assert_allclose(np.array([d.embedding for d in got.data]), full, atol=1e-5)
    cut = client.embeddings.create(model="minilm", input=texts, dimensions=64)
    vectors = np.array([d.embedding for d in cut.data])
    expected = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    with pytest.raises(openai.BadRequestError, match="384-dimensional"):
        client.embeddings.create(model="minilm", input=texts, dimensions=1000)
    with pytest.raises(openai.BadRequestError, match="token ids"):
        client.embeddings.create(model="minilm", input=[[101, 2023, 102]])
    with pytest.raises(openai.BadRequestError, match="token ids"):
        client.embeddings.create(model="minilm", input=[101, 2023, 102])
    # a model not declared truncatable refuses a cut instead of silently losing quality
    settings = ServiceSettings(indexes={"bm25": bm25_path}, embedding_model="plain", batch_wait_ms=0)
    with serve(create_app(settings, embedder=dense_encoder)) as plain:
        other = openai.OpenAI(base_url=f"{plain}/v1", api_key="none", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="truncatable_models"):
            other.embeddings.create(model="plain", input=texts, dimensions=64)


def test_embeddings_count_tokens_as_the_model_sees_them_and_cache_nothing(embed_server):
    url, encoder = embed_server
    long_text = "cells divide and differentiate " * 1000  # ~6,000 tokens before truncation
    answer = httpx.post(f"{url}/v1/embeddings", json={"input": [long_text, "short"]}, timeout=60)
    assert answer.status_code == 200, answer.text
    limit = encoder.model.max_seq_length
    assert answer.json()["usage"]["prompt_tokens"] <= limit + 8
    assert len(encoder.document_cache) == 0  # client texts are not written to the document cache


def test_a_reload_reads_again_when_a_rebuild_replaced_the_generation(bm25_path, tmp_path):
    """The loader fails as the audit saw it (a file of the generation just replaced vanished); the
    backend reads the folder again and serves the new generation instead of answering 500."""
    from distilir_index.base import GenerationMissing
    from distilir_index.service.backend import Backend, load_retriever
    from distilir_index.service.errors import IndexChanging

    failures = {"left": 2}

    def racing_loader(path, **kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise FileNotFoundError(f"{path}/bm25.g1.npz") if failures["left"] else GenerationMissing("gone")
        return load_retriever(path, **kwargs)

    backend = Backend(loader=racing_loader)
    backend.add("bm25", load_retriever(bm25_path), path=bm25_path)
    old, new = backend.reload("bm25")
    assert failures["left"] == 0 and len(new.retriever) == len(old.retriever)

    def always_racing(path, **kwargs):
        raise FileNotFoundError(f"{path}/bm25.g9.npz")

    stuck = Backend(loader=always_racing)
    stuck.add("bm25", load_retriever(bm25_path), path=bm25_path)
    with pytest.raises(IndexChanging, match="kept changing") as caught:
        stuck.reload("bm25")
    assert caught.value.headers == {"Retry-After": "1"}
    assert stuck.get("bm25") is not None  # the old index keeps serving


def test_reloads_racing_rebuilds_of_the_same_folder_never_answer_5xx(serve, docs, tmp_path):
    from distilir_index.bm25 import BM25Index

    path = tmp_path / "bm25"

    def build():
        index = BM25Index()
        index.add([d["id"] for d in docs], [d["text"] for d in docs])
        index.save(path)

    build()
    settings = ServiceSettings(indexes={"bm25": path}, batch_wait_ms=0)
    stop = threading.Event()

    def rebuild():
        while not stop.is_set():
            build()

    statuses = []
    with serve(create_app(settings)) as url:
        writer = threading.Thread(target=rebuild, daemon=True)
        writer.start()
        try:
            deadline = time.monotonic() + 6
            with httpx.Client(base_url=url, timeout=30) as c:
                while time.monotonic() < deadline:
                    statuses.append(c.post("/v1/indexes/bm25/reload").status_code)
                    search = c.post("/v1/search", json={"query": "cells", "k": 3})
                    assert search.status_code == 200
        finally:
            stop.set()
            writer.join(timeout=30)
    assert len(statuses) >= 10
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= len(statuses) // 2


def test_a_reload_keeps_an_unchanged_query_encoder(dense_path, dense_encoder):
    """Issue 17 (5): reloading a dense index whose encoder did not change reuses the loaded model
    instead of loading it again (each new copy of the weights grew the server's memory)."""
    from distilir_index.retriever import Retriever
    from distilir_index.service.backend import Backend

    backend = Backend()
    backend.add("dense", Retriever.load(dense_path, encoder=dense_encoder), path=dense_path)
    old, new = backend.reload("dense")
    assert new.retriever is not old.retriever
    assert new.retriever.query_encoder is dense_encoder
    assert [h.id for h in new.retriever.search("bone density", k=3)] == [
        h.id for h in old.retriever.search("bone density", k=3)
    ]

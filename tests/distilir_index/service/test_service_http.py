"""The REST service over real HTTP: uvicorn on 127.0.0.1, httpx clients.

References: the in-process ``Retriever.search`` (search), the encoder's own vectors (embeddings),
the cross-encoder's own scores (rerank), the counts of requests this test made (metrics).
"""

from __future__ import annotations

import base64
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from distilir_index.retriever import Retriever
from distilir_index.service import ServiceSettings, create_app
from prometheus_client.parser import text_string_to_metric_families

API_KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def live_copy(tmp_path_factory, bm25_path):
    """A private copy of the BM25 index that the reload test re-saves and reloads."""
    target = tmp_path_factory.mktemp("live") / "bm25"
    shutil.copytree(bm25_path, target)
    return target


@pytest.fixture(scope="module")
def server(serve, bm25_path, dense_path, hybrid_path, live_copy, reranker, dense_encoder):
    """The main server: API key, dense (default) + BM25 + a reloadable BM25 copy, a reranker and an
    embedding encoder, reload overrides allowed, micro-batching on."""
    settings = ServiceSettings(
        indexes={"dense": dense_path, "bm25": bm25_path, "live": live_copy, "hybrid": hybrid_path},
        api_key=API_KEY,
        max_k=50,
        max_body_bytes=64 * 1024,
        batch_wait_ms=2.0,
        rerank_model="minilm-untrained-ce",
        embedding_model="all-MiniLM-L6-v2",
        allow_reload_overrides=True,
    )
    app = create_app(settings, reranker=reranker, embedder=dense_encoder)
    with serve(app) as url:
        yield url


@pytest.fixture(scope="module")
def plain_server(serve, bm25_path):
    """A second server: BM25 only, no API key, small body limit, batching off, no reload overrides."""
    settings = ServiceSettings(indexes={"bm25": bm25_path}, max_body_bytes=4096, batch_wait_ms=0)
    with serve(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, headers=AUTH, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def local(bm25_path, dense_path, hybrid_path, dense_encoder):
    """The in-process references."""
    from distilir_index.dense import DenseIndex

    return {
        "bm25": Retriever.load(bm25_path),
        "dense": Retriever(DenseIndex.load(dense_path, encoder=dense_encoder), path=dense_path),
        "hybrid": Retriever.load(hybrid_path),
    }


def assert_same_hits(served: list[dict], expected, rel: float = 1e-5) -> None:
    assert [h["id"] for h in served] == [h.id for h in expected]
    assert [h["score"] for h in served] == pytest.approx([h.score for h in expected], rel=rel, abs=1e-6)
    assert [h["text"] for h in served] == [h.text for h in expected]
    assert [h["metadata"] for h in served] == [dict(h.metadata) for h in expected]


def search(client, **body):
    r = client.post("/v1/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()


# -- search --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bm25", "dense", "hybrid"])
def test_search_equals_in_process_retriever(client, local, queries, name):
    for q in queries[:4]:
        body = search(client, query=q, k=10, index=name)
        assert body["index"] == name and body["took_ms"] >= 0
        assert body["hits"] and (name == "bm25" or len(body["hits"]) == 10)  # BM25: matching docs only
        assert_same_hits(body["hits"], local[name].search(q, k=10))


@pytest.mark.parametrize("name", ["bm25", "dense"])
def test_filtered_search_equals_in_process_retriever(client, local, queries, name):
    filters = {"parity": "even", "n": {"$lt": 90}}
    body = search(client, query=queries[0], k=7, index=name, filters=filters)
    assert body["hits"] and all(
        h["metadata"]["parity"] == "even" and h["metadata"]["n"] < 90 for h in body["hits"]
    )
    assert_same_hits(body["hits"], local[name].search(queries[0], k=7, filters=filters))
    ids = [h.id for h in local[name].search(queries[1], k=20)][5:15]
    body = search(client, query=queries[1], k=5, index=name, ids=ids)
    assert_same_hits(body["hits"], local[name].search(queries[1], k=5, ids=ids))
    assert {h["id"] for h in body["hits"]} <= set(ids)


def test_mode_and_default_pick_the_index(client, local, queries):
    assert search(client, query=queries[2], k=3)["index"] == "dense"  # the first configured
    for mode in ("bm25", "dense", "hybrid"):
        body = search(client, query=queries[2], k=3, mode=mode)
        assert body["index"] == mode  # each index here is named after its kind
        assert_same_hits(body["hits"], local[mode].search(queries[2], k=3))


def test_concurrent_searches_are_batched_and_each_gets_its_own_answer(client, local, queries):
    """16 clients at once (the micro-batcher joins them): every answer equals its own reference."""
    ks = [3, 5, 8, 10]
    jobs = [(q, ks[i % 4], name) for name in ("dense", "bm25") for i, q in enumerate(queries[:8])]

    def one(job):
        q, k, name = job
        return search(client, query=q, k=k, index=name)["hits"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, jobs))
    for (q, k, name), hits in zip(jobs, answers, strict=True):
        assert_same_hits(hits, local[name].search(q, k=k))


def test_unbatched_server_gives_the_same_hits(plain_server, local, queries):
    with httpx.Client(base_url=plain_server, timeout=60) as c:
        body = search(c, query=queries[3], k=6)
    assert_same_hits(body["hits"], local["bm25"].search(queries[3], k=6))


# -- errors (4xx, each with a clear message) -----------------------------------------------------


def error_of(r: httpx.Response, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == kind
    return err["message"]


def test_bad_filter_is_400(client):
    r = client.post("/v1/search", json={"query": "cells", "filters": {"n": {"$between": [1, 2]}}})
    assert "unknown filter operator '$between'" in error_of(r, 400, "invalid_filter")
    r = client.post("/v1/search", json={"query": "cells", "filters": {"n": {"$in": 5}}})
    assert "needs a list" in error_of(r, 400, "invalid_filter")


def test_k_out_of_range_is_422(client):
    message = error_of(client.post("/v1/search", json={"query": "cells", "k": 0}), 422, "validation_error")
    assert "k: Input should be greater than or equal to 1" in message
    message = error_of(client.post("/v1/search", json={"query": "cells", "k": 51}), 422, "validation_error")
    assert "less than or equal to 50" in message


def test_empty_query_and_unknown_field_are_422(client):
    assert "query is empty" in error_of(
        client.post("/v1/search", json={"query": "   "}), 422, "invalid_query"
    )
    message = error_of(client.post("/v1/search", json={"query": "x", "top_k": 3}), 422, "validation_error")
    assert "top_k" in message
    message = error_of(
        client.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"}),
        422,
        "validation_error",
    )
    assert "JSON" in message


def test_unknown_index_is_404(client):
    message = error_of(client.post("/v1/search", json={"query": "x", "index": "nope"}), 404, "unknown_index")
    assert "'nope'" in message and "'dense'" in message
    message = error_of(client.post("/v1/search", json={"query": "x", "mode": "sparse"}), 404, "unknown_index")
    assert "no loaded index of kind 'sparse'" in message
    error_of(client.post("/v1/indexes/nope/reload"), 404, "unknown_index")
    message = error_of(
        client.post("/v1/search", json={"query": "x", "index": "bm25", "mode": "dense"}), 400, "bad_request"
    )
    assert "is a 'bm25' index" in message


def test_api_key_is_required(server):
    with httpx.Client(base_url=server, timeout=30) as anonymous:
        message = error_of(anonymous.post("/v1/search", json={"query": "x"}), 401, "unauthorized")
        assert "Authorization: Bearer" in message and "X-API-Key" in message
        r = anonymous.post("/v1/search", json={"query": "x"}, headers={"Authorization": "Bearer wrong"})
        assert "not valid" in error_of(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
        r = anonymous.post("/v1/search", json={"query": "cells", "k": 1}, headers={"X-API-Key": API_KEY})
        assert r.status_code == 200
        error_of(anonymous.get("/v1/indexes"), 401, "unauthorized")
        assert anonymous.get("/healthz").status_code == 200  # probes stay open


def test_oversized_body_is_413(plain_server):
    with httpx.Client(base_url=plain_server, timeout=30) as c:
        r = c.post("/v1/search", json={"query": "cells " * 2000})  # declared Content-Length > 4096
        message = error_of(r, 413, "payload_too_large")
        assert "at most 4096 bytes" in message and "max_body_bytes" in message

        def chunks():  # no Content-Length: counted while read
            yield b'{"query": "'
            for _ in range(10):
                yield b"cells " * 100
            yield b'"}'

        r = c.post("/v1/search", content=chunks(), headers={"content-type": "application/json"})
        assert "at most 4096 bytes" in error_of(r, 413, "payload_too_large")


def test_reload_overrides_are_forbidden_unless_enabled(plain_server, tmp_path):
    with httpx.Client(base_url=plain_server, timeout=30) as c:
        r = c.post("/v1/indexes/bm25/reload", json={"path": str(tmp_path)})
        assert "allow_reload_overrides" in error_of(r, 403, "forbidden")
        assert c.post("/v1/indexes/bm25/reload").status_code == 200


def test_reload_from_a_directory_that_is_no_index_is_422(client, live_copy):
    empty = live_copy.parent / "not-an-index"
    empty.mkdir(exist_ok=True)
    r = client.post("/v1/indexes/live/reload", json={"path": str(empty)})
    assert "has no manifest.json" in error_of(r, 422, "invalid_index")
    assert search(client, query="cells", k=2, index="live")["hits"]  # the old index still serves


def test_reload_paths_outside_the_root_are_refused_alike(client, tmp_path, bm25_path):
    """Issue 17 (10): with overrides on, paths outside the reload root get one answer whether they
    exist, are an index, or are nothing at all (no probing of the server's files)."""
    messages = set()
    for path in [bm25_path, tmp_path, tmp_path / "missing", "/etc", "/nonexistent/x"]:
        r = client.post("/v1/indexes/live/reload", json={"path": str(path)})
        messages.add(error_of(r, 403, "forbidden"))
    assert len(messages) == 1 and "reload_root" in messages.pop()


def test_a_reload_never_changes_an_index_kind(client, live_copy, dense_path):
    """Issue 17 (10): reloading a BM25 index's name from a dense folder is a 409, not a silent switch."""
    import shutil

    other = live_copy.parent / "dense-copy"
    if not other.exists():
        shutil.copytree(dense_path, other)
    r = client.post("/v1/indexes/live/reload", json={"path": str(other)})
    assert "is a 'bm25' index" in error_of(r, 409, "conflict")
    assert client.get("/v1/indexes").json()["indexes"][2]["kind"] == "bm25"


def test_reload_with_a_mismatching_encoder_is_409(client, local, splade_path, queries):
    """Another model (SPLADE-tiny's 2-layer BERT, 128-d with mean pooling) as the query encoder of an
    index built with MiniLM: refused, and the index keeps serving with its own encoder."""
    r = client.post("/v1/indexes/dense/reload", json={"model": splade_path})
    message = error_of(r, 409, "encoder_mismatch")
    assert "dimension: index has 384" in message and "fingerprint" in message
    assert_same_hits(
        search(client, query=queries[0], k=5, index="dense")["hits"], local["dense"].search(queries[0], k=5)
    )


# -- indexes, health, readiness, metrics ---------------------------------------------------------


def test_indexes_lists_what_is_loaded(client, bm25_path, dense_path, docs):
    listed = {i["name"]: i for i in client.get("/v1/indexes", params={"details": "true"}).json()["indexes"]}
    assert list(listed) == ["dense", "bm25", "live", "hybrid"]
    assert listed["hybrid"]["kind"] == "hybrid"
    assert set(listed["hybrid"]["manifest"]["components"]) == {"first", "second"}
    assert listed["dense"]["default"] and not listed["bm25"]["default"]
    assert listed["dense"]["kind"] == "dense" and listed["bm25"]["kind"] == "bm25"
    assert listed["dense"]["count"] == listed["bm25"]["count"] == len(docs)
    assert listed["dense"]["encoder"]["dimension"] == 384 and listed["bm25"]["encoder"] is None
    assert listed["bm25"]["path"] == str(bm25_path)
    assert listed["dense"]["manifest"]["corpus"]["count"] == len(docs)


def test_health_and_readiness(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json() == {
            "status": "ready",
            "indexes": ["dense", "bm25", "live", "hybrid"],
        }


def test_not_ready_without_indexes(serve):
    """A server with nothing to search says so on /readyz (503) while /healthz stays 200."""
    with serve(create_app(ServiceSettings(indexes={}))) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json() == {"status": "loading", "indexes": []}
        assert c.get("/healthz").status_code == 200
        message = error_of(c.post("/v1/search", json={"query": "x"}), 404, "unknown_index")
        assert "no index is loaded" in message


def test_cors_preflight_when_origins_are_configured(serve, bm25_path):
    settings = ServiceSettings(indexes={"bm25": bm25_path}, cors=["http://app.example"])
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as c:
        headers = {
            "Origin": "http://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-api-key",
        }
        r = c.options("/v1/search", headers=headers)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://app.example"
        r = c.options("/v1/search", headers={**headers, "Origin": "http://other.example"})
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_requests_per_route_and_status(server, client, docs):
    def scrape():
        with httpx.Client(base_url=server, timeout=30) as c:
            r = c.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        return _samples(r.text)

    ok = ("distilir_http_requests_total", (("method", "POST"), ("route", "/v1/search"), ("status", "200")))
    bad = ("distilir_http_requests_total", (("method", "POST"), ("route", "/v1/search"), ("status", "422")))
    hist = ("distilir_http_request_duration_seconds_count", (("method", "POST"), ("route", "/v1/search")))
    before = scrape()
    for _ in range(3):
        search(client, query="cells", k=1, index="bm25")
    client.post("/v1/search", json={"query": "cells", "k": 0})
    after = scrape()
    assert after[ok] - before.get(ok, 0) == 3
    assert after[bad] - before.get(bad, 0) == 1
    assert after[hist] - before.get(hist, 0) == 4
    assert after[("distilir_index_documents", (("index", "dense"), ("kind", "dense")))] == len(docs)
    assert after[("distilir_search_batch_size_count", ())] >= 1


# -- embeddings and rerank -----------------------------------------------------------------------


def test_embeddings_equal_the_encoders_vectors(client, dense_encoder, docs):
    texts = [d["text"][:300] for d in docs[:5]]
    body = client.post("/v1/embeddings", json={"input": texts}).json()
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    assert [d["index"] for d in body["data"]] == list(range(5))
    served = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_allclose(served, dense_encoder.encode_documents(texts), rtol=1e-5, atol=1e-6)
    tokens = sum(len(ids) for ids in dense_encoder.model.tokenizer(texts)["input_ids"])
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}

    one = client.post(
        "/v1/embeddings", json={"input": texts[0], "encoding_format": "base64", "input_type": "query"}
    ).json()
    decoded = np.frombuffer(base64.b64decode(one["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, dense_encoder.encode_queries([texts[0]])[0], rtol=1e-5, atol=1e-6)

    by_index = client.post("/v1/embeddings", json={"input": texts[:2], "model": "dense"}).json()
    assert by_index["model"] == "dense"
    np.testing.assert_allclose(
        np.array([d["embedding"] for d in by_index["data"]]),
        dense_encoder.encode_documents(texts[:2]),
        rtol=1e-5,
        atol=1e-6,
    )
    error_of(client.post("/v1/embeddings", json={"input": "x", "model": "bm25"}), 404, "unknown_model")
    error_of(client.post("/v1/embeddings", json={"input": []}), 422, "validation_error")


def test_rerank_orders_by_the_rerankers_scores(client, reranker, docs, queries):
    query = queries[0]
    texts = [d["text"][:400] for d in docs[:8]]
    expected = np.asarray(
        reranker.predict([(query, t) for t in texts], show_progress_bar=False), dtype=np.float64
    )
    documents = [t if i % 2 else {"text": t} for i, t in enumerate(texts)]  # both accepted forms
    body = client.post(
        "/v1/rerank", json={"query": query, "documents": documents, "return_documents": True}
    ).json()
    order = [r["index"] for r in body["results"]]
    assert order == sorted(range(8), key=lambda i: (-expected[i], i))
    assert [r["relevance_score"] for r in body["results"]] == pytest.approx(
        expected[order], rel=1e-4, abs=1e-6
    )
    assert [r["document"]["text"] for r in body["results"]] == [texts[i] for i in order]
    assert body["model"] == "minilm-untrained-ce"
    top = client.post("/v1/rerank", json={"query": query, "documents": texts, "top_n": 3}).json()
    assert [r["index"] for r in top["results"]] == order[:3]
    assert all("document" not in r for r in top["results"])
    error_of(client.post("/v1/rerank", json={"query": query, "documents": []}), 422, "validation_error")
    error_of(
        client.post("/v1/rerank", json={"query": query, "documents": texts, "model": "other"}),
        404,
        "unknown_model",
    )


def test_rerank_and_embeddings_without_models_are_501(plain_server):
    with httpx.Client(base_url=plain_server, timeout=30) as c:
        message = error_of(
            c.post("/v1/rerank", json={"query": "q", "documents": ["a"]}), 501, "not_configured"
        )
        assert "rerank_model" in message
        message = error_of(c.post("/v1/embeddings", json={"input": "a"}), 501, "not_configured")
        assert "embedding_model" in message


# -- hot reload under load -----------------------------------------------------------------------


def test_reload_while_requests_are_in_flight_fails_none(server, live_copy, local, queries):
    """4 clients x 50 searches while the index is re-saved (new generation) and reloaded 5 times."""
    from distilir_index.bm25 import BM25Index

    expected = {q: local["bm25"].search(q, k=5) for q in queries}
    failures: list[str] = []
    answered = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        with httpx.Client(base_url=server, headers=AUTH, timeout=60) as c:
            for j in range(50):
                q = queries[(w * 50 + j) % len(queries)]
                r = c.post("/v1/search", json={"query": q, "k": 5, "index": "live"})
                with lock:
                    if r.status_code != 200:
                        failures.append(f"{r.status_code}: {r.text[:200]}")
                    else:
                        answered.append((q, r.json()["hits"]))

    index = BM25Index.load(live_copy)
    generations = []
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    with httpx.Client(base_url=server, headers=AUTH, timeout=120) as c:
        for _ in range(5):
            index.save(live_copy)  # a new generation on disk; the old files are swept away
            r = c.post("/v1/indexes/live/reload")
            assert r.status_code == 200, r.text
            generations.append(r.json()["manifest"]["generation"])
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert len(answered) == 200
    for q, hits in answered:
        assert_same_hits(hits, expected[q])
    assert generations == sorted(generations) and len(set(generations)) == 5

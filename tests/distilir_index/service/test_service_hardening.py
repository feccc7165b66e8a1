"""Defects of the service audit (issue 17), each over real HTTP (uvicorn on loopback, httpx): bounded
metrics labels, the key checked before the body is read, API documents behind the key, no server
paths in listings, strict integer fields."""

from __future__ import annotations

import httpx
import pytest
from distilir_index.service import ServiceSettings, create_app
from prometheus_client.parser import text_string_to_metric_families

KEY = "hardening-key"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def keyed(serve, bm25_path):
    settings = ServiceSettings(
        indexes={"bm25": bm25_path}, api_key=KEY, max_body_bytes=8192, max_filter_terms=500, batch_wait_ms=0
    )
    with serve(create_app(settings)) as url:
        yield url


def test_made_up_methods_do_not_grow_the_metrics(keyed):
    with httpx.Client(base_url=keyed, timeout=30) as c:
        before = len(c.get("/metrics").content)
        for i in range(40):
            c.request(f"M{i:04d}XYZ", "/healthz")
        text = c.get("/metrics").text
    methods = {
        s.labels["method"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if "method" in s.labels
    }
    assert methods <= {"GET", "POST", "OTHER"} and "OTHER" in methods
    assert "XYZ" not in text
    assert len(text) < before + 4000  # one new label set, not forty


def test_the_key_is_checked_before_the_body_is_read(keyed):
    with httpx.Client(base_url=keyed, timeout=30) as c:
        # malformed JSON, a schema violation and an oversized body: all 401 without the key
        bad_json = c.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"})
        bad_schema = c.post("/v1/search", json={"query": "x", "k": "many", "nonsense": 1})
        too_big = c.post("/v1/search", json={"query": "x" * 20_000})
        for r in (bad_json, bad_schema, too_big):
            assert r.status_code == 401, r.text
            assert r.json()["error"]["type"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
            assert "nonsense" not in r.text and "max" not in r.text
        wrong = c.post("/v1/search", json={"query": "x"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "not valid" in wrong.json()["error"]["message"]
        # with the key the same bodies get their real answers
        assert c.post("/v1/search", json={"query": "x" * 20_000}, headers=AUTH).status_code == 413
        assert c.post("/v1/search", json={"query": "x", "k": "many"}, headers=AUTH).status_code == 422
        assert c.post("/v1/search", json={"query": "cells"}, headers=AUTH).status_code == 200


def test_api_documents_need_the_key_unless_opened(keyed, serve, bm25_path):
    with httpx.Client(base_url=keyed, timeout=30) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers=AUTH).status_code == 200, path
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
        assert c.get("/metrics").status_code == 200
    settings = ServiceSettings(indexes={"bm25": bm25_path}, api_key=KEY, open_docs=True)
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/openapi.json").status_code == 200
        assert c.post("/v1/search", json={"query": "cells"}).status_code == 401


def test_listings_show_server_paths_only_when_asked(keyed, bm25_path):
    with httpx.Client(base_url=keyed, headers=AUTH, timeout=30) as c:
        plain = c.get("/v1/indexes")
        detailed = c.get("/v1/indexes", params={"details": "true"})
        reloaded = c.post("/v1/indexes/bm25/reload")
    assert plain.status_code == detailed.status_code == reloaded.status_code == 200
    root = str(bm25_path.parent)
    assert root not in plain.text and root not in reloaded.text
    assert plain.json()["indexes"][0]["path"] is None
    assert detailed.json()["indexes"][0]["path"] == str(bm25_path)


@pytest.mark.parametrize("k", ["10", 10.0, True, 2.5])
def test_k_must_be_an_integer(keyed, k):
    with httpx.Client(base_url=keyed, headers=AUTH, timeout=30) as c:
        r = c.post("/v1/search", json={"query": "cells", "k": k})
    assert r.status_code == 422, r.text
    assert "k" in r.text


@pytest.mark.parametrize(
    "filters, message",
    [
        ({"$and": [{"parity": "even"}], "$where": "x"}, "unknown filter key '$where'"),
        ({"parity": {"$exists": "false"}}, "$exists on field 'parity' needs true or false"),
        ({"parity": {}}, "the condition on field 'parity' is empty"),
        ({"year": {"$gte": 2015}}, "no document of this index has the field(s) ['year']"),
        ({"n": {"$in": list(range(600))}}, "the filter has 602 terms"),
    ],
)
def test_filters_outside_the_grammar_are_400_naming_the_key(keyed, filters, message):
    with httpx.Client(base_url=keyed, headers=AUTH, timeout=30) as c:
        r = c.post("/v1/search", json={"query": "cells", "filters": filters})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_filter" and message in r.json()["error"]["message"]


def test_logical_filters_and_lenient_fields_over_http(keyed):
    with httpx.Client(base_url=keyed, headers=AUTH, timeout=30) as c:
        both = {"$or": [{"parity": "even"}, {"n": {"$lt": 5}}]}
        hits = c.post("/v1/search", json={"query": "cells", "k": 50, "filters": both}).json()["hits"]
        assert hits and all(h["metadata"]["parity"] == "even" or h["metadata"]["n"] < 5 for h in hits)
        assert any(h["metadata"]["parity"] == "odd" for h in hits)
        lenient = {"$lenient": True, "year": {"$gte": 2015}}
        r = c.post("/v1/search", json={"query": "cells", "filters": lenient})
        assert r.status_code == 200 and r.json()["hits"] == []

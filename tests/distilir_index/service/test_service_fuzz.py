"""Schema-driven fuzzing: schemathesis generates requests from our own OpenAPI document and sends
them to a live server; whatever it sends, the server must not answer 5xx.

Bounded: at most 30 generated examples per operation and mode (positive: fits the schema; negative:
breaks it), with the server's limits set low so that each request stays cheap.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from distilir_index.service import ServiceSettings, create_app  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402

API_KEY = "fuzz-key"


@pytest.fixture(scope="module")
def fuzz_server(serve, bm25_path, dense_path, reranker, dense_encoder):
    settings_ = ServiceSettings(
        indexes={"bm25": bm25_path, "dense": dense_path},
        api_key=API_KEY,
        max_k=20,
        max_batch=4,
        max_query_chars=300,
        max_input_chars=600,
        max_ids=50,
        max_body_bytes=16 * 1024,
        allow_reload_overrides=True,  # let the fuzzer reach the loading code with made-up paths/models
    )
    with serve(create_app(settings_, reranker=reranker, embedder=dense_encoder)) as url:
        yield url


def _fuzz(strategy, max_examples: int) -> None:
    @given(case=strategy)
    @settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case):
        case.call_and_validate(checks=[not_a_server_error], headers={"X-API-Key": API_KEY}, timeout=60)

    run()


# schemathesis' own pytest integration (schema.parametrize / pytest.from_fixture) does not run under
# pytest 9 yet (it reads a private attribute pytest removed), so the Hypothesis tests are built here
# from each operation's strategy; positive cases fit the schema, negative ones break it on purpose.
OPERATIONS = [
    "POST /v1/search",
    "POST /v1/embeddings",
    "POST /v1/rerank",
    "POST /v2/rerank",
    "GET /v1/models",
    "GET /v1/indexes",
    "POST /v1/indexes/{name}/reload",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
]


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    # the API documents sit behind the key like the routes they describe
    return schemathesis.openapi.from_url(f"{fuzz_server}/openapi.json", headers={"X-API-Key": API_KEY})


def test_the_schema_has_every_operation(api_schema):
    found = sorted(
        f"{op.method.upper()} {op.path}" for op in (r.ok() for r in api_schema.get_all_operations())
    )
    assert found == sorted(OPERATIONS)


#: Operations with a body, parameters or headers to break (the others have nothing to make invalid).
NEGATIVE = [
    "POST /v1/search",
    "POST /v1/embeddings",
    "POST /v1/rerank",
    "POST /v2/rerank",
    "GET /v1/indexes",
    "POST /v1/indexes/{name}/reload",
]
CASES = [(op, "positive") for op in OPERATIONS] + [(op, "negative") for op in NEGATIVE]


@pytest.mark.parametrize("label, mode", CASES)
def test_no_request_makes_the_server_fail(api_schema, label, mode):
    method, path = label.split(" ")
    operation = api_schema[path][method]
    _fuzz(operation.as_strategy(generation_mode=GenerationMode(mode)), max_examples=30)


@pytest.mark.parametrize("name", ["bm25", "dense"])
def test_reloading_real_indexes_with_made_up_paths_and_models_never_fails_the_server(api_schema, name):
    """Random names rarely hit a loaded index; here the fuzzer reloads real ones with made-up
    paths and models (each must be refused with a 4xx, and the index must keep serving)."""
    operation = api_schema["/v1/indexes/{name}/reload"]["POST"]
    _fuzz(operation.as_strategy(path_parameters={"name": name}), max_examples=15)


def test_the_fuzzing_reached_the_server_and_no_answer_was_5xx(fuzz_server):
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{fuzz_server}/metrics", timeout=30).text
    counts = [
        s
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "distilir_http_requests_total"
    ]
    assert sum(s.value for s in counts) >= 200
    assert [s.labels for s in counts if s.labels["status"].startswith("5")] == []
    routes = {s.labels["route"] for s in counts if s.labels["status"] == "200"}
    assert {"/v1/search", "/v1/embeddings", "/v1/rerank"} <= routes

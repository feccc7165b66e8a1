"""The service through the official client SDKs over loopback: OpenAI's (embeddings float and base64,
models) and Cohere's v2 client (rerank), unchanged. References: the encoder's own vectors and the
cross-encoder's own scores."""

from __future__ import annotations

import numpy as np
import pytest
from distilir_index.service import ServiceSettings, create_app

openai = pytest.importorskip("openai")
cohere = pytest.importorskip("cohere")

KEY = "sdk-key"


@pytest.fixture(scope="module")
def sdk_server(serve, bm25_path, dense_path, reranker, dense_encoder):
    settings = ServiceSettings(
        indexes={"dense": dense_path, "bm25": bm25_path},
        api_key=KEY,
        rerank_model="minilm-untrained-ce",
        embedding_model="all-MiniLM-L6-v2",
        batch_wait_ms=0,
    )
    with serve(create_app(settings, reranker=reranker, embedder=dense_encoder)) as url:
        yield url


def test_openai_embeddings_and_models(sdk_server, dense_encoder):
    client = openai.OpenAI(base_url=f"{sdk_server}/v1", api_key=KEY, max_retries=0)
    texts = ["aspirin and heart attacks", "bone density in older adults"]
    expected = dense_encoder.encode_documents(texts)
    got = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)  # the SDK asks for base64
    np.testing.assert_allclose(np.array([d.embedding for d in got.data]), expected, atol=1e-5)
    as_float = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts, encoding_format="float")
    np.testing.assert_allclose(np.array([d.embedding for d in as_float.data]), expected, atol=1e-5)
    models = [m.id for m in client.models.list()]
    assert models == ["all-MiniLM-L6-v2", "dense", "minilm-untrained-ce"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{sdk_server}/v1", api_key="wrong", max_retries=0).models.list()


def test_cohere_v2_rerank(sdk_server, reranker, docs):
    client = cohere.ClientV2(api_key=KEY, base_url=sdk_server)
    texts = [d["text"] for d in docs[:8]]
    query = "what regulates bone formation?"
    answer = client.rerank(model="minilm-untrained-ce", query=query, documents=texts, top_n=3)
    scores = reranker.predict([(query, t) for t in texts], show_progress_bar=False)
    best = sorted(range(len(texts)), key=lambda i: -scores[i])[:3]
    assert [r.index for r in answer.results] == best
    got = [r.relevance_score for r in answer.results]
    np.testing.assert_allclose(got, scores[best], rtol=1e-5, atol=1e-5)

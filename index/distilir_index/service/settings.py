"""Settings of the REST service: keyword arguments, or environment variables prefixed ``DISTILIR_``.

Example (environment)::

    DISTILIR_INDEXES='{"scifact": "indexes/scifact-dense", "bm25": "indexes/scifact-bm25"}'
    DISTILIR_API_KEY=secret DISTILIR_MAX_K=100 distilir-index serve

Mappings and lists are given as JSON in the environment (pydantic-settings' rule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_CAPS", "ServiceSettings"]

#: Default per-route caps; a ``max_concurrent`` setting changes the routes it names, keeps the others.
DEFAULT_CAPS = {"search": 256, "embeddings": 8, "rerank": 2, "reload": 2}


class ServiceSettings(BaseSettings):
    """Everything the service is configured with.

    Attributes:
        indexes: index name -> saved index directory, loaded at startup (the first is the default).
        index_models: index name -> query encoder to load it with (a hub id, folder or packaged
            name); by default an index uses the encoder its manifest names.
        api_key: when set, every ``/v1`` request needs ``Authorization: Bearer <key>`` or
            ``X-API-Key: <key>`` (401 otherwise, before the body is read), and so do the API documents
            (``/docs``, ``/redoc``, ``/openapi.json``) unless ``open_docs``. Health, readiness and
            metrics stay open for probes.
        open_docs: serve the API documents without the key (they describe every route and limit).
        playground: serve the search playground page at ``GET /playground`` (two indexes' hits for one
            query side by side; :mod:`distilir_index.service.playground`). On by default: the page is
            the same static file on every server and holds no index names, hits or keys, so it is
            served without the key; its data calls are ``/v1`` calls and need the key like any other.
            False: the page and its script and styles are 404s.
        max_body_bytes: larger request bodies get 413.
        max_query_chars: longest query (search, rerank) accepted, in characters.
        max_input_chars: longest single text accepted by /v1/embeddings and as a rerank document.
        max_k: largest ``k`` for /v1/search.
        max_batch: most inputs in one /v1/embeddings request, documents in one /v1/rerank request,
            and queries the micro-batcher joins into one encoder call.
        max_ids: longest ``ids`` list accepted by /v1/search.
        max_filter_terms: most terms (field names, operators and list members, at any depth) in one
            /v1/search filter; a larger filter is a 400 before any document is looked at.
        max_rerank_chars: most characters of all documents of one rerank request together (its cost
            grows with documents x length up to the model's max length); more is a 413.
        max_concurrent: route (``search``, ``embeddings``, ``rerank``, ``reload``) -> most requests of
            that route at work at once; the next one gets 429 with ``Retry-After`` instead of waiting
            in a queue (see :mod:`distilir_index.service.limits`).
        request_timeout_s: time budget of one request's work; past it the answer is 503 with
            ``Retry-After`` (the work itself runs to its end and keeps its slot). None: no budget.
        retry_after_s: the ``Retry-After`` of those 429 and 503 answers, in seconds.
        truncatable_models: embedding models (names clients use: the embedding model, dense index
            names) trained to keep working when cut to their first dimensions (Matryoshka): for
            them /v1/embeddings honours OpenAI's ``dimensions`` below the full size; for others
            such a request is a 400.
        batch_wait_ms: how long the micro-batcher waits for more queries before encoding a batch;
            0 disables batching (each request searched on its own thread).
        batch_concurrency: how many batches may run at once (threads); more waits and batches up.
        batch_kinds: index kinds whose searches are micro-batched (those that encode queries with a
            model); BM25 searches take ~0.1 ms, so a batching window would only add to them.
        cors: allowed origins for browsers (empty: no CORS headers).
        rerank_model: a cross-encoder (hub id or folder) loaded for /v1/rerank.
        embedding_model: a sentence-transformers model (hub id, folder or packaged name) for
            /v1/embeddings; without it /v1/embeddings uses the query encoder of a dense index.
        torch_threads: torch intra-op threads of the server process (``torch.set_num_threads``);
            default: torch's choice (all cores). On a small or shared machine 1 avoids the stalls of
            a parallel region waiting for a core that another process holds, and lets concurrent
            batches run side by side.
        encoder_backend: ``"auto"`` (ONNX Runtime on CPU when installed, see
            :mod:`distilir_index.onnx`), ``"torch"`` or ``"onnx"``: how dense query encoders run.
        query_quantization: ``"int8"`` to encode queries with the dynamically quantised model
            (faster; its effectiveness cost is in benchmarks/reports/query_quantization.md); None:
            float32.
        encoder_threads: ONNX Runtime threads per query-encoding call (default 1: concurrent
            requests, not one request's threads, use the cores).
        allow_reload_overrides: let ``POST /v1/indexes/{name}/reload`` name another path or model.
            Off by default. Even with it, a path must lie under ``reload_root`` (anything else is the
            same 403, whether it exists or not: no probing of the server's files) and a reload can
            never change an index's kind (409).
        reload_root: the folder reload paths must lie in (after resolving links); default: the
            folder holding the index's configured directory.
    """

    model_config = SettingsConfigDict(env_prefix="DISTILIR_", extra="forbid", validate_default=True)

    indexes: dict[str, Path] = Field(default_factory=dict)
    index_models: dict[str, str] = Field(default_factory=dict)
    api_key: SecretStr | None = None
    open_docs: bool = False
    playground: bool = True
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_query_chars: int = Field(2048, ge=1)
    max_input_chars: int = Field(32_768, ge=1)
    max_k: int = Field(1000, ge=1)
    max_batch: int = Field(128, ge=1)
    max_ids: int = Field(10_000, ge=1)
    max_filter_terms: int = Field(1024, ge=1)
    max_rerank_chars: int = Field(262_144, ge=1)
    max_concurrent: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_CAPS))
    request_timeout_s: float | None = Field(30.0, gt=0, le=3600)
    retry_after_s: int = Field(1, ge=1, le=3600)
    truncatable_models: list[str] = Field(default_factory=list)
    batch_wait_ms: float = Field(2.0, ge=0, le=1000)
    batch_concurrency: int = Field(2, ge=1, le=64)
    batch_kinds: list[str] = Field(default_factory=lambda: ["dense", "sparse", "hybrid"])
    cors: list[str] = Field(default_factory=list)
    rerank_model: str | None = None
    embedding_model: str | None = None
    torch_threads: int | None = Field(None, ge=1, le=1024)
    encoder_backend: Literal["auto", "torch", "onnx"] = "auto"
    query_quantization: Literal["int8"] | None = None
    encoder_threads: int | None = Field(1, ge=1, le=1024)
    allow_reload_overrides: bool = False
    reload_root: Path | None = None

    @property
    def encoder_options(self) -> dict[str, Any]:
        """Runtime options of the dense query encoders (see DenseEncoder)."""
        return {
            "backend": self.encoder_backend,
            "query_quantization": self.query_quantization,
            "threads": self.encoder_threads,
        }

    @field_validator("indexes")
    @classmethod
    def _names(cls, value: dict[str, Path]) -> dict[str, Path]:
        for name in value:
            if not name or "/" in name or name != name.strip():
                raise ValueError(
                    f"index names must be non-empty, without '/' or surrounding spaces, got {name!r}"
                )
        return value

    @field_validator("max_concurrent")
    @classmethod
    def _caps(cls, value: dict[str, int]) -> dict[str, int]:
        from distilir_index.service.limits import ROUTES

        unknown = sorted(set(value) - set(ROUTES))
        if unknown:
            raise ValueError(f"max_concurrent names unknown routes {unknown}; known: {list(ROUTES)}")
        bad = {k: v for k, v in value.items() if not isinstance(v, int) or v < 1}
        if bad:
            raise ValueError(f"max_concurrent caps must be integers >= 1, got {bad}")
        return {**DEFAULT_CAPS, **value}

    @field_validator("index_models")
    @classmethod
    def _models_name_indexes(cls, value: dict[str, str], info) -> dict[str, str]:
        indexes = info.data.get("indexes") or {}
        unknown = sorted(set(value) - set(indexes))
        if unknown:
            raise ValueError(
                f"index_models names indexes that are not configured: {unknown}; "
                f"configured: {sorted(indexes)}"
            )
        return value

    @field_validator("api_key")
    @classmethod
    def _key_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None  # an empty DISTILIR_API_KEY means "no key", not "the empty key"
        return value

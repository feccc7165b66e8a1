"""HTTP routes: ``/v1`` (search, embeddings, rerank, indexes) and the operational ones (health,
readiness, metrics). Each handler validates through pydantic, hands blocking work to a thread (or to
the micro-batcher, which runs it on a thread) and returns a response model; errors are raised as
exceptions that :mod:`distilir_index.service.errors` turns into JSON.

No ``from __future__ import annotations`` here: the request classes are built per server (local
variables of :func:`build_v1_router`), and FastAPI must see them as objects, not strings.
"""

import base64
import json
import time
import uuid
from collections.abc import Hashable, Mapping
from types import SimpleNamespace
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Depends, Path, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from distilir_index.base import Hit
from distilir_index.filters import FilterError, compile_filter, filter_size
from distilir_index.retriever import InvalidQuery, Retriever
from distilir_index.service.auth import key_problem
from distilir_index.service.errors import BadRequest, Forbidden, PayloadTooLarge, Unauthorized
from distilir_index.service.metrics import CONTENT_TYPE_LATEST
from distilir_index.service.schemas import (
    Embedding,
    EmbeddingsResponse,
    ErrorBody,
    Health,
    HitOut,
    IndexInfo,
    IndexList,
    ModelCard,
    ModelList,
    Readiness,
    ReloadRequest,
    ReloadResponse,
    RerankDocument,
    RerankResponse,
    RerankResult,
    SearchResponse,
    Usage,
)

__all__ = ["build_ops_router", "build_v1_router", "build_v2_router", "search_batch"]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <api key>`")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <api key>`")


async def require_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key_header)],
) -> None:
    """When the server has an API key, the request must carry it (constant-time comparison). The
    app's :class:`~distilir_index.service.auth.ApiKeyMiddleware` has checked it already, before the
    body was read; this dependency declares the schemes in the OpenAPI document."""
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    given = bearer.credentials if bearer is not None else api_key
    problem = key_problem(given, expected.get_secret_value())
    if problem is not None:
        raise Unauthorized(problem, headers={"WWW-Authenticate": "Bearer"})


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}


def _plain(value: Any) -> Any:
    """JSON-ready copy of metadata (numpy scalars and arrays become Python values)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _hit_out(hit: Hit) -> HitOut:
    return HitOut(id=str(hit.id), score=float(hit.score), text=hit.text, metadata=_plain(hit.metadata or {}))


def search_batch(key: Hashable, items: list[tuple[str, int]]) -> list[list[Hit]]:
    """The micro-batcher's function: one ``search_many`` for queries that share an index, filters
    and ids; searched with the largest ``k`` of the batch, each cut to its own ``k``."""
    retriever, filters_json, ids = key  # type: ignore[misc]
    filters = json.loads(filters_json) if filters_json is not None else None
    k_max = max(k for _, k in items)
    results = retriever.search_many(
        [q for q, _ in items], k=k_max, filters=filters, ids=list(ids) if ids is not None else None
    )
    return [hits[:k] for hits, (_, k) in zip(results, items, strict=True)]


def _rerank_endpoint(RerankRequest: Any) -> Any:  # noqa: N803 - a class
    """The rerank handler for this server's request class (served at /v1/rerank and /v2/rerank)."""

    async def rerank(body: RerankRequest, request: Request) -> RerankResponse:  # type: ignore[valid-type]
        if not body.query.strip():
            raise InvalidQuery("query is empty (only whitespace); pass the text to rerank for")
        state = request.app.state
        backend = state.backend
        texts = [d if isinstance(d, str) else d.text for d in body.documents]
        chars = sum(len(t) for t in texts)
        if chars > state.settings.max_rerank_chars:
            raise PayloadTooLarge(
                f"the documents of this rerank hold {chars} characters together; this server accepts "
                f"at most {state.settings.max_rerank_chars} (setting max_rerank_chars). Send fewer or "
                "shorter documents (the reranker reads only the first few hundred tokens of each)."
            )
        start = time.perf_counter()
        scores = await state.limiter.run_sync("rerank", backend.rerank, body.query, texts, model=body.model)
        order = sorted(range(len(texts)), key=lambda i: (-scores[i], i))
        if body.top_n is not None:
            order = order[: body.top_n]
        results = [
            RerankResult(
                index=i,
                relevance_score=float(scores[i]),
                document=RerankDocument(text=texts[i]) if body.return_documents else None,
            )
            for i in order
        ]
        took = (time.perf_counter() - start) * 1000.0
        return RerankResponse(
            id=str(uuid.uuid4()),
            results=results,
            model=backend.reranker_name or "",
            meta={"took_ms": round(took, 3), "documents": len(texts)},
        )

    return rerank


def build_v2_router(models: SimpleNamespace) -> APIRouter:
    """``/v2/rerank``: the path Cohere's v2 client (``cohere.ClientV2().rerank``) calls; the body and
    answer are those of ``/v1/rerank``, which already has the v2 shape."""
    router = APIRouter(
        prefix="/v2", dependencies=[Depends(require_api_key)], responses=_errors(401, 413, 422)
    )
    router.add_api_route(
        "/rerank",
        _rerank_endpoint(models.RerankRequest),
        methods=["POST"],
        response_model=RerankResponse,
        response_model_exclude_none=True,
        responses=_errors(404, 501),
        tags=["rerank"],
        summary="Rerank documents (Cohere rerank API v2)",
    )
    return router


def build_v1_router(models: SimpleNamespace) -> APIRouter:
    """The ``/v1`` routes, with request classes carrying this server's limits (see
    :func:`distilir_index.service.schemas.limited_models`)."""
    router = APIRouter(
        prefix="/v1", dependencies=[Depends(require_api_key)], responses=_errors(401, 413, 422)
    )
    SearchRequest = models.SearchRequest  # noqa: N806 - classes
    EmbeddingsRequest = models.EmbeddingsRequest  # noqa: N806
    RerankRequest = models.RerankRequest  # noqa: N806

    @router.post(
        "/search",
        response_model=SearchResponse,
        responses=_errors(400, 404),
        tags=["search"],
        summary="Search a loaded index",
    )
    async def search(body: SearchRequest, request: Request) -> SearchResponse:  # type: ignore[valid-type]
        state = request.app.state
        start = time.perf_counter()
        name, retriever = state.backend.resolve(body.index, body.mode)
        if body.filters is not None:
            compile_filter(body.filters)  # a filter outside the grammar is a 400 before any work
            terms = filter_size(body.filters)
            if terms > state.settings.max_filter_terms:
                raise FilterError(
                    f"the filter has {terms} terms; this server accepts at most "
                    f"{state.settings.max_filter_terms} (setting max_filter_terms). Narrow it, or "
                    "pass long id lists as `ids`."
                )
        retriever.check_query(body.query)
        retriever.check_k(body.k)
        batcher = state.batcher
        if batcher is not None and retriever.kind in state.settings.batch_kinds:
            key = (
                retriever,
                json.dumps(body.filters, sort_keys=True) if body.filters else None,
                tuple(body.ids) if body.ids is not None else None,
            )
            hits = await state.limiter.run("search", lambda: batcher.submit(key, (body.query, body.k)))
        else:
            hits = await state.limiter.run_sync(
                "search", retriever.search, body.query, body.k, body.filters, body.ids
            )
        took = (time.perf_counter() - start) * 1000.0
        return SearchResponse(hits=[_hit_out(h) for h in hits], took_ms=round(took, 3), index=name)

    @router.post(
        "/embeddings",
        response_model=EmbeddingsResponse,
        responses=_errors(404, 501),
        tags=["embeddings"],
        summary="Embed texts (OpenAI embeddings API)",
    )
    async def embeddings(body: EmbeddingsRequest, request: Request) -> EmbeddingsResponse:  # type: ignore[valid-type]
        state = request.app.state
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if not all(isinstance(t, str) for t in texts):
            raise BadRequest(
                "input holds token ids; this server embeds text with its own model, whose tokenizer "
                "is not the one that made the ids (OpenAI's tiktoken), so it cannot read them. Send "
                "the texts as strings (LangChain's OpenAIEmbeddings: check_embedding_ctx_length=False)."
            )
        vectors, model, tokens = await state.limiter.run_sync(
            "embeddings", state.backend.embed, texts, model=body.model, input_type=body.input_type
        )
        if body.dimensions is not None:
            vectors = _cut_dimensions(vectors, body.dimensions, model, state.settings.truncatable_models)
        if body.encoding_format == "base64":
            data = [
                Embedding(index=i, embedding=base64.b64encode(v.astype("<f4").tobytes()).decode("ascii"))
                for i, v in enumerate(vectors)
            ]
        else:
            data = [Embedding(index=i, embedding=v.tolist()) for i, v in enumerate(vectors)]
        return EmbeddingsResponse(
            data=data, model=model, usage=Usage(prompt_tokens=tokens, total_tokens=tokens)
        )

    router.add_api_route(
        "/rerank",
        _rerank_endpoint(RerankRequest),
        methods=["POST"],
        response_model=RerankResponse,
        response_model_exclude_none=True,
        responses=_errors(404, 501),
        tags=["rerank"],
        summary="Rerank documents (Cohere rerank API; also at /v2/rerank)",
    )

    @router.get(
        "/models", response_model=ModelList, tags=["embeddings"], summary="Models (OpenAI models API)"
    )
    async def models_(request: Request) -> ModelList:
        backend = request.app.state.backend
        names = [] if backend.embedder_name is None else [backend.embedder_name]
        names += [n for n in backend.names if backend.get(n).kind == "dense" and n not in names]
        if backend.reranker_name is not None and backend.reranker_name not in names:
            names.append(backend.reranker_name)
        return ModelList(data=[ModelCard(id=n) for n in names])

    @router.get("/indexes", response_model=IndexList, tags=["indexes"], summary="Loaded indexes")
    async def indexes(
        request: Request,
        details: Annotated[bool, Query(description="Include server paths.")] = False,
    ) -> IndexList:
        backend = request.app.state.backend
        return IndexList(indexes=[IndexInfo(**_info(backend, n, details)) for n in backend.names])

    @router.post(
        "/indexes/{name}/reload",
        response_model=ReloadResponse,
        responses=_errors(400, 403, 404, 409),
        tags=["indexes"],
        summary="Reload an index from disk and swap it in atomically",
    )
    async def reload(
        request: Request,
        name: Annotated[str, Path(min_length=1, max_length=200)],
        body: Annotated[ReloadRequest | None, Body()] = None,
        details: Annotated[bool, Query(description="Include server paths.")] = False,
    ) -> ReloadResponse:
        state = request.app.state
        backend = state.backend
        backend.entry(name)  # 404 before anything else
        override = body is not None and (body.path is not None or body.model is not None)
        if override and not state.settings.allow_reload_overrides:
            raise Forbidden(
                "reloading from another path or with another model is disabled on this server "
                "(setting allow_reload_overrides); send an empty body to reload from the same path"
            )
        if body is not None and body.path is not None:
            _check_reload_root(body.path, state.settings.reload_root, backend.entry(name).path)
        start = time.perf_counter()
        try:
            # capped, without a time budget: a reload past it would still swap the index in
            old, new = await state.limiter.run(
                "reload",
                lambda: run_in_threadpool(
                    backend.reload, name, path=body.path if body else None, model=body.model if body else None
                ),
                budget=False,
            )
        except Exception:
            state.metrics.reloads.labels(name, "error").inc()
            raise
        state.metrics.reloads.labels(name, "ok").inc()
        _update_index_gauges(state)
        took = (time.perf_counter() - start) * 1000.0
        previous = (old.retriever.manifest or {}).get("generation")
        return ReloadResponse(
            **_info(backend, name, details), took_ms=round(took, 3), previous_generation=previous
        )

    return router


def _check_reload_root(path: str, root: Any, current: Any) -> None:
    """A reload path must resolve inside ``root`` (default: the folder of the index's current
    directory). The refusal is the same whether the path exists or not."""
    import os

    base = root if root is not None else (current.parent if current is not None else None)
    try:
        resolved = os.path.realpath(path)
        inside = base is not None and os.path.commonpath([resolved, os.path.realpath(base)]) == (
            os.path.realpath(base)
        )
    except (OSError, ValueError):
        inside = False
    if not inside:
        raise Forbidden(
            "reload paths must lie under this server's reload root (setting reload_root; default: the "
            "folder of the index's configured directory); name a folder there"
        )


def _cut_dimensions(vectors: np.ndarray, dimensions: int, model: str, truncatable: list[str]) -> np.ndarray:
    """OpenAI's ``dimensions``: the full size always; fewer only for models trained to be cut."""
    full = vectors.shape[1]
    if dimensions == full:
        return vectors
    if dimensions > full:
        raise BadRequest(f"dimensions={dimensions}, but {model!r} gives {full}-dimensional embeddings")
    if model not in truncatable:
        raise BadRequest(
            f"dimensions={dimensions}: {model!r} gives {full}-dimensional embeddings and is not listed "
            "as trained to be cut to fewer (server setting truncatable_models, for Matryoshka models); "
            f"cutting it would lose quality silently. Drop `dimensions` or pass {full}."
        )
    cut = vectors[:, :dimensions]
    norms = np.linalg.norm(vectors, axis=1)
    if np.allclose(norms, 1.0, atol=1e-3):  # a normalising model: its cut vectors are unit vectors too
        cut = cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(cut, dtype=np.float32)


def _redact_paths(value: Any) -> Any:
    """A copy without server paths: ``path`` keys dropped, absolute paths replaced."""
    if isinstance(value, Mapping):
        return {k: _redact_paths(v) for k, v in value.items() if k != "path"}
    if isinstance(value, list):
        return [_redact_paths(v) for v in value]
    if isinstance(value, str) and value.startswith(("/", "~")) and len(value) > 1:
        return "<server path>"
    return value


def _info(backend: Any, name: str, details: bool) -> dict[str, Any]:
    info = backend.info(name)
    if details:
        return info
    return {**_redact_paths(info), "path": None}


def _update_index_gauges(state: Any) -> None:
    backend = state.backend
    state.metrics.documents.clear()
    for n in backend.names:
        retriever: Retriever = backend.get(n)
        state.metrics.documents.labels(n, retriever.kind).set(len(retriever))


def build_ops_router() -> APIRouter:
    """Liveness, readiness and metrics: unauthenticated, for probes and scrapers."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
    async def healthz() -> Health:
        return Health()

    @router.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness}},
        summary="Readiness: indexes are loaded",
    )
    async def readyz(request: Request) -> Any:
        backend = request.app.state.backend
        ready = bool(backend.ready and len(backend))
        body = Readiness(status="ready" if ready else "loading", indexes=backend.names)
        return body if ready else JSONResponse(body.model_dump(), status_code=503)

    @router.get(
        "/metrics",
        response_class=Response,
        summary="Prometheus metrics (text format)",
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
    )
    async def metrics(request: Request) -> Response:
        return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router

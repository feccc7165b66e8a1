"""The FastAPI application factory. Nothing is loaded at import time and there is no module-level
app: :func:`create_app` returns a new app whose lifespan loads the configured indexes (and the
rerank / embedding models) into ``app.state`` before the first request is served.

Run it with uvicorn's factory mode (the settings then come from ``DISTILIR_*`` variables)::

    DISTILIR_INDEXES='{"scifact": "indexes/scifact-dense"}' \\
        uvicorn --factory distilir_index.service.app:create_app --port 8000

or ``distilir-index serve --index scifact=indexes/scifact-dense``, or in Python::

    app = create_app(ServiceSettings(indexes={"scifact": "indexes/scifact-dense"}, api_key="secret"))

``app.state`` after startup: ``settings``, ``backend`` (:class:`~distilir_index.service.backend.Backend`),
``batcher`` (the micro-batcher, or None when batching is off) and ``metrics``.

``GET /playground`` serves the search playground page (setting ``playground``, see
:mod:`distilir_index.service.playground`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from distilir_index import __version__
from distilir_index.retriever import Retriever
from distilir_index.service.auth import ApiKeyMiddleware
from distilir_index.service.backend import Backend, load_retriever
from distilir_index.service.batching import MicroBatcher
from distilir_index.service.errors import error_body, install_error_handlers
from distilir_index.service.limits import RouteLimiter
from distilir_index.service.metrics import MetricsMiddleware, ServiceMetrics
from distilir_index.service.playground import build_playground_router
from distilir_index.service.routes import (
    _update_index_gauges,
    build_ops_router,
    build_v1_router,
    build_v2_router,
    search_batch,
)
from distilir_index.service.schemas import limited_models
from distilir_index.service.settings import ServiceSettings

__all__ = ["BodyLimitMiddleware", "create_app"]

log = logging.getLogger("distilir_index.service")


class BodyLimitMiddleware:
    """Answer 413 (our JSON error shape) to request bodies over ``max_bytes``.

    A declared ``Content-Length`` over the limit is refused before the body is read; a chunked body is
    counted while it is read and refused as soon as it passes the limit. Hand-written rather than
    Starlette's ``RequestBodyLimitMiddleware`` because that one answers a plain-text "Content Too
    Large" that bypasses the app's error handlers and says nothing of the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self, size: str) -> str:
        return (
            f"request body is {size} bytes; this server accepts at most {self.max_bytes} bytes "
            "(setting max_body_bytes). Send fewer or shorter texts per request."
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                break
        if declared is not None and declared > self.max_bytes:
            import json

            body = json.dumps(error_body("payload_too_large", self._message(str(declared)))).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes FastAPI's body parsing untouched and reaches the
                    # error handlers, which give it the JSON shape.
                    raise StarletteHTTPException(413, detail=self._message(f"more than {self.max_bytes}"))
            return message

        await self.app(scope, limited_receive, send)


def create_app(
    settings: ServiceSettings | None = None,
    *,
    retrievers: Mapping[str, Retriever | Any] | None = None,
    reranker: Any = None,
    embedder: Any = None,
) -> FastAPI:
    """Build the service app.

    Args:
        settings: the configuration; default ``ServiceSettings()`` (from ``DISTILIR_*`` variables).
        retrievers: indexes already in memory, registered before those of ``settings.indexes``
            (the first one is then the default index).
        reranker: a reranker object used instead of loading ``settings.rerank_model`` (see
            :func:`distilir_index.service.backend.as_reranker`).
        embedder: an embedding encoder used instead of loading ``settings.embedding_model``.

    Nothing is loaded here: the lifespan loads indexes and models when the server starts, and
    ``/readyz`` answers 200 only after that.
    """
    settings = settings if settings is not None else ServiceSettings()
    if not isinstance(settings, ServiceSettings):
        raise TypeError(f"settings must be a ServiceSettings, got {type(settings).__name__}")
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backend: Backend = app.state.backend
        await anyio.to_thread.run_sync(_load_everything, backend, settings, retrievers, reranker, embedder)
        _update_index_gauges(app.state)
        if settings.batch_wait_ms > 0 and settings.max_batch > 1:
            app.state.batcher = MicroBatcher(
                search_batch,
                max_batch=settings.max_batch,
                max_wait_ms=settings.batch_wait_ms,
                max_concurrency=settings.batch_concurrency,
                on_batch=metrics.batch_size.observe,
            )
        backend.ready = True
        log.info("distilir-index service ready: %s", {n: backend.get(n).kind for n in backend.names})
        try:
            yield
        finally:
            backend.ready = False
            if app.state.batcher is not None:
                await app.state.batcher.aclose()

    app = FastAPI(
        title="distilir-index",
        version=__version__,
        summary="Search distilled dense, sparse, BM25 and hybrid indexes; embed; rerank.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.backend = Backend(
        max_k=settings.max_k, loader=partial(load_retriever, encoder_options=settings.encoder_options)
    )
    app.state.batcher = None
    app.state.metrics = metrics
    app.state.limiter = RouteLimiter(
        settings.max_concurrent, settings.request_timeout_s, retry_after_s=settings.retry_after_s
    )
    install_error_handlers(app)
    limited = limited_models(settings)
    v1, v2, ops = build_v1_router(limited), build_v2_router(limited), build_ops_router()
    app.include_router(v1)
    app.include_router(v2)
    app.include_router(ops)
    pages = build_playground_router() if settings.playground else None
    if pages is not None:
        app.include_router(pages)
    # add_middleware puts each new one outside the previous: metrics wraps CORS wraps the key check
    # wraps the body limit, so a request without the key is refused before its body is read.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_key is not None:
        app.add_middleware(
            ApiKeyMiddleware, api_key=settings.api_key.get_secret_value(), open_docs=settings.open_docs
        )
    if settings.cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    routes = [*v1.routes, *v2.routes, *ops.routes, *(pages.routes if pages is not None else ())]
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)
    return app


def _load_everything(
    backend: Backend,
    settings: ServiceSettings,
    retrievers: Mapping[str, Any] | None,
    reranker: Any,
    embedder: Any,
) -> None:
    """Runs on a worker thread at startup: indexes first, then the optional models."""
    if settings.torch_threads is not None:
        import torch

        torch.set_num_threads(settings.torch_threads)
    for name, retriever in (retrievers or {}).items():
        backend.add(name, retriever)
    for name, path in settings.indexes.items():
        log.info("loading index %r from %s", name, path)
        backend.load(name, path, model=settings.index_models.get(name))
    if reranker is not None:
        backend.set_reranker(reranker, settings.rerank_model)
    elif settings.rerank_model:
        from sentence_transformers import CrossEncoder

        from distilir_index.models import resolve_model

        log.info("loading rerank model %s", settings.rerank_model)
        backend.set_reranker(CrossEncoder(resolve_model(settings.rerank_model)), settings.rerank_model)
    if embedder is not None:
        backend.set_embedder(embedder, settings.embedding_model)
    elif settings.embedding_model:
        from distilir_index.encoders import DenseEncoder

        log.info("loading embedding model %s", settings.embedding_model)
        backend.set_embedder(
            DenseEncoder(settings.embedding_model, backend=settings.encoder_backend),
            settings.embedding_model,
        )

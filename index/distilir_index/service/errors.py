"""Domain errors of the service and their mapping to HTTP responses.

Every error the service returns has one JSON shape, whatever raised it (our code, pydantic request
validation, Starlette routing, an index)::

    {"error": {"type": "unknown_index", "message": "no index named 'x'; loaded: ['scifact']"}}

``type`` is a stable machine-readable code; ``message`` says what was expected, what came and what
to do. Request validation errors add ``details`` (pydantic's list of failing fields).

Mapping of domain errors (pyserini's ``server/errors.py`` shape: the backend raises plain exceptions,
this module alone knows HTTP):

=====================================  ======  ===================
exception                              status  type
=====================================  ======  ===================
UnknownIndex                           404     unknown_index
UnknownModel                           404     unknown_model
InvalidModel (cannot be loaded)        422     invalid_model
NotConfigured (no reranker/embedder)   501     not_configured
BadRequest                             400     bad_request
distilir_index.filters.FilterError     400     invalid_filter
retriever.InvalidQuery / InvalidK      422     invalid_query / invalid_k
encoders.EncoderMismatch               409     encoder_mismatch
base.ManifestError                     422     invalid_index
other base.IndexError_                 400     index_error
Unauthorized                           401     unauthorized
Forbidden                              403     forbidden
PayloadTooLarge                        413     payload_too_large
Overloaded (route at its cap)          429     overloaded (with Retry-After)
TimedOut (past the time budget)        503     timeout (with Retry-After)
IndexChanging (rebuilt while read)     503     index_changing (with Retry-After)
Conflict (reload would change kind)    409     conflict
request validation (pydantic)          422     validation_error
anything else                          500     internal_error
=====================================  ======  ===================
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from distilir_index.base import IndexError_, ManifestError
from distilir_index.encoders import EncoderMismatch
from distilir_index.filters import FilterError
from distilir_index.retriever import InvalidK, InvalidQuery

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "IndexChanging",
    "InvalidModel",
    "NotConfigured",
    "Overloaded",
    "PayloadTooLarge",
    "ServiceError",
    "TimedOut",
    "Unauthorized",
    "UnknownIndex",
    "UnknownModel",
    "error_body",
    "install_error_handlers",
    "status_and_type",
]

log = logging.getLogger("distilir_index.service")


class ServiceError(Exception):
    """Base class of errors the service turns into a 4xx/5xx JSON response."""

    status_code = 400
    type = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class BadRequest(ServiceError):
    """The request is well-formed JSON but asks for something that cannot be done."""


class UnknownIndex(ServiceError, KeyError):
    status_code = 404
    type = "unknown_index"

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class UnknownModel(ServiceError, KeyError):
    status_code = 404
    type = "unknown_model"

    def __str__(self) -> str:
        return self.message


class InvalidModel(ServiceError):
    """A model named by a request (reload with another query encoder) cannot be loaded."""

    status_code = 422
    type = "invalid_model"


class NotConfigured(ServiceError):
    """An endpoint whose model (reranker, embedding encoder) this server was not started with."""

    status_code = 501
    type = "not_configured"


class Unauthorized(ServiceError):
    status_code = 401
    type = "unauthorized"


class Forbidden(ServiceError):
    status_code = 403
    type = "forbidden"


class PayloadTooLarge(ServiceError):
    status_code = 413
    type = "payload_too_large"


class Overloaded(ServiceError):
    """A route already has as many requests at work as its cap allows (see service.limits)."""

    status_code = 429
    type = "overloaded"


class Conflict(ServiceError):
    """The request contradicts the server's state (a reload that would change an index's kind)."""

    status_code = 409
    type = "conflict"


class IndexChanging(ServiceError):
    """A reload kept finding files of the index replaced under it (a rebuild of the same folder)."""

    status_code = 503
    type = "index_changing"


class TimedOut(ServiceError):
    """The request's work did not finish within the server's time budget (see service.limits)."""

    status_code = 503
    type = "timeout"


#: Domain errors raised outside the service package, most specific first.
_DOMAIN: tuple[tuple[type[BaseException], int, str], ...] = (
    (EncoderMismatch, 409, "encoder_mismatch"),
    (ManifestError, 422, "invalid_index"),
    (FilterError, 400, "invalid_filter"),
    (InvalidK, 422, "invalid_k"),
    (InvalidQuery, 422, "invalid_query"),
    (IndexError_, 400, "index_error"),
)

_HTTP_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


def status_and_type(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and error type for an exception (500/internal_error when unknown)."""
    if isinstance(exc, ServiceError):
        return exc.status_code, exc.type
    for cls, status, kind in _DOMAIN:
        if isinstance(exc, cls):
            return status, kind
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code, _HTTP_TYPES.get(exc.status_code, "http_error")
    return 500, "internal_error"


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, **extra}}


def _response(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(error_body(kind, message, **extra), status_code=status, headers=headers)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    status, kind = status_and_type(exc)
    if status >= 500 and not isinstance(exc, ServiceError):
        log.error("request %s %s failed", request.method, request.url.path, exc_info=exc)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return _response(status, kind, message, getattr(exc, "headers", None))


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status, kind = status_and_type(exc)
    detail = exc.detail if isinstance(exc.detail, str) else jsonable_encoder(exc.detail)
    if status == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}; see /docs or /openapi.json for the API"
    elif status == 405:
        detail = f"method {request.method} is not allowed on {request.url.path}; see /openapi.json"
    return _response(status, kind, str(detail), getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = jsonable_encoder(exc.errors(), custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")})
    parts = []
    for err in details[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg')}")
    more = f" (and {len(details) - 5} more)" if len(details) > 5 else ""
    message = "invalid request: " + "; ".join(parts) + more + ". See /openapi.json for the request schema."
    # The input of each error can be large (a whole document list): keep the details short.
    for err in details:
        err.pop("input", None)
        err.pop("ctx", None)
    return _response(422, "validation_error", message, details=details)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _response(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the JSON shape above."""
    app.add_exception_handler(ServiceError, _service_error)
    for cls, _, _ in _DOMAIN:
        app.add_exception_handler(cls, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unhandled)

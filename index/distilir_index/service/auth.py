"""The API key check, as the outermost gate of the app: before a body is read, parsed, size-checked
or validated, so a client without the key learns nothing of the schema and costs no parsing.

Protected when the server has ``api_key``: every ``/v1`` and ``/v2`` route, and the API documents (``/docs``,
``/redoc``, ``/openapi.json``) unless ``open_docs`` is set. Open always: ``/healthz``, ``/readyz``,
``/metrics`` (probes and scrapers), the static ``/playground`` page (it holds no data; the ``/v1``
calls it makes need the key, see :mod:`distilir_index.service.playground`) and CORS preflight
requests (browsers send no credentials on them; the CORS middleware answers them). The route
dependency :func:`require_api_key` stays on the ``/v1`` router so the OpenAPI document declares the
security schemes; it checks the same headers with the same function.
"""

from __future__ import annotations

import json
import secrets

from starlette.types import ASGIApp, Receive, Scope, Send

from distilir_index.service.errors import error_body

__all__ = ["DOC_PATHS", "ApiKeyMiddleware", "key_problem"]

DOC_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")

_MISSING = "this server requires an API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
_INVALID = "the API key is not valid for this server"


def key_problem(given: str | None, expected: str) -> str | None:
    """Why ``given`` does not open this server (None: it does). Constant-time comparison."""
    if given is None:
        return _MISSING
    if not secrets.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        return _INVALID
    return None


def _given_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    bearer = api_key = None
    for key, value in headers:
        if key == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                bearer = credentials.strip()
        elif key == b"x-api-key":
            api_key = value.decode("latin-1")
    return bearer if bearer is not None else api_key


class ApiKeyMiddleware:
    """Pure ASGI: answers 401 (our JSON error shape, ``WWW-Authenticate: Bearer``) to a protected
    path without the key, before the app sees the request."""

    def __init__(self, app: ASGIApp, api_key: str, open_docs: bool = False) -> None:
        self.app = app
        self.api_key = api_key
        self.open_docs = open_docs

    def _protected(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        if scope.get("method") == "OPTIONS":
            headers = dict(scope.get("headers", ()))
            if b"access-control-request-method" in headers:
                return False  # a CORS preflight
        if path in ("/v1", "/v2") or path.startswith(("/v1/", "/v2/")):
            return True
        return path in DOC_PATHS and not self.open_docs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._protected(scope):
            await self.app(scope, receive, send)
            return
        problem = key_problem(_given_key(list(scope.get("headers", ()))), self.api_key)
        if problem is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps(error_body("unauthorized", problem)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

"""The search playground: ``GET /playground``, a static page that searches two served indexes with one
query and shows their hits side by side (score, the document's rank in the other list, its text), so
a user sees what distillation changed between, say, the base dense model and the distilled student.

The page is the same file on every server (``static/playground.html`` with its script and styles,
package data): it holds no index names, hits or keys, so it is served without the API key, like
``/healthz``. Everything it shows comes from ``GET /v1/indexes`` and ``POST /v1/search``, which the
browser calls with the key typed into the page (kept in ``sessionStorage``, sent as
``Authorization: Bearer``); without it they are 401s and the page says a key is needed.

Parameters ride in the URL fragment, which browsers never send to the server:
``/playground#q=<query>&a=<left index>&b=<right index>&k=<hits>&key=<API key>``. With ``q`` the page
searches at once; ``key`` is moved into ``sessionStorage`` and dropped from the address bar.

The answers carry a Content-Security-Policy that allows only this server's own script, styles and
``connect-src``: document text is written with ``textContent`` (never parsed as HTML), and even an
injected element could neither run a script nor load anything from elsewhere.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

__all__ = ["PLAYGROUND_PATH", "build_playground_router"]

PLAYGROUND_PATH = "/playground"

_ASSETS = {
    "playground.html": "text/html; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
}

_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _read(name: str) -> bytes:
    return (files("distilir_index.service") / "static" / name).read_bytes()


def build_playground_router() -> APIRouter:
    """``/playground`` and its script and styles (left out of the OpenAPI document: not API)."""
    router = APIRouter(include_in_schema=False)
    bodies = {name: _read(name) for name in _ASSETS}  # read once per app, from the package

    def serve(name: str) -> Response:
        return Response(bodies[name], media_type=_ASSETS[name], headers=_HEADERS)

    @router.get(PLAYGROUND_PATH)
    async def playground() -> Response:
        return serve("playground.html")

    @router.get(PLAYGROUND_PATH + "/playground.js")
    async def playground_js() -> Response:
        return serve("playground.js")

    @router.get(PLAYGROUND_PATH + "/playground.css")
    async def playground_css() -> Response:
        return serve("playground.css")

    return router

"""The REST service over distilir indexes: ``create_app(settings)`` builds a FastAPI app whose
lifespan loads the configured indexes. Needs the ``serve`` extra
(``pip install distilir-index[serve]``)."""

try:
    import fastapi  # noqa: F401
    import prometheus_client  # noqa: F401
    import pydantic_settings  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"the distilir-index service needs the 'serve' extra ({exc.name} is missing): "
        "pip install 'distilir-index[serve]'"
    ) from exc

from distilir_index.service.app import create_app
from distilir_index.service.backend import Backend, Reranker
from distilir_index.service.batching import MicroBatcher
from distilir_index.service.settings import ServiceSettings

__all__ = ["Backend", "MicroBatcher", "Reranker", "ServiceSettings", "create_app"]

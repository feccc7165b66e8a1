"""Request and response bodies of the REST service (pydantic v2), with their limits.

The static classes below carry generous hard limits; :func:`limited_models` derives the classes a
given server uses, with the limits of its :class:`ServiceSettings` (``max_k``, ``max_query_chars``,
``max_batch``, ...), so that the OpenAPI document states the real limits and a request over them
fails validation (422) before any work is done.

Shapes follow the APIs clients already speak: ``/v1/embeddings`` is OpenAI's embeddings API,
``/v1/rerank`` is Cohere's rerank API (v2), ``/v1/search`` is ours.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, create_model

from distilir_index.service.settings import ServiceSettings

__all__ = [
    "Embedding",
    "EmbeddingsRequest",
    "EmbeddingsResponse",
    "ErrorBody",
    "ErrorDetail",
    "Health",
    "HitOut",
    "IndexInfo",
    "IndexList",
    "ModelCard",
    "ModelList",
    "Readiness",
    "ReloadRequest",
    "RerankDocument",
    "RerankRequest",
    "RerankResponse",
    "RerankResult",
    "SearchMode",
    "SearchRequest",
    "SearchResponse",
    "Usage",
    "limited_models",
]

SearchMode = Literal["dense", "sparse", "bm25", "hybrid"]

# Hard ceilings of the static classes; a server's settings can only lower them.
_HARD_QUERY_CHARS = 100_000
_HARD_INPUT_CHARS = 1_000_000
_HARD_K = 100_000
_HARD_BATCH = 100_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ----------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    type: str = Field(description="Stable machine-readable code, e.g. 'unknown_index'.")
    message: str = Field(description="What was expected, what came, and what to do.")
    details: list[dict[str, Any]] | None = Field(None, description="Failing fields (validation errors).")


class ErrorBody(BaseModel):
    error: ErrorDetail


# -- search ----------------------------------------------------------------------------------------


class SearchRequest(_Body):
    query: str = Field(min_length=1, max_length=_HARD_QUERY_CHARS, description="The query text.")
    k: StrictInt = Field(10, ge=1, le=_HARD_K, description="How many hits to return (an integer).")
    index: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, description="Name of a loaded index (GET /v1/indexes); default: see `mode`."
    )
    mode: SearchMode | None = Field(
        None,
        description="Without `index`: search the first loaded index of this kind. "
        "Without both: the default (first configured) index.",
    )
    filters: dict[str, Any] | None = Field(
        None,
        description="Metadata conditions applied before ranking, e.g. "
        '{"year": {"$gte": 2020}, "lang": ["en", "de"]} or '
        '{"$or": [{"lang": "en"}, {"$not": {"year": {"$lt": 2020}}}]}. '
        "Operators: $eq $ne $gt $gte $lt $lte $in $nin $exists (a boolean) $not; $and / $or / $not "
        "at any level. A field no document has is a 400 unless the filter holds "
        '"$lenient": true. Grammar: distilir_index.filters.',
    )
    ids: list[str] | None = Field(None, max_length=_HARD_BATCH, description="Search only these document ids.")


class HitOut(BaseModel):
    id: str
    score: float = Field(description="Higher is better; the scale depends on the index kind.")
    text: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchResponse(BaseModel):
    hits: list[HitOut]
    took_ms: float = Field(description="Server time for this search, in milliseconds.")
    index: str = Field(description="Name of the index that was searched.")


# -- embeddings (OpenAI shape) ---------------------------------------------------------------------


#: OpenAI's API also takes token ids (one list, or one list per input); LangChain's OpenAIEmbeddings
#: sends tiktoken ids by default. They parse (so the answer can say what to do) and are refused.
_TokenIds = Annotated[list[StrictInt], Field(min_length=1, max_length=_HARD_BATCH)]
_INPUT_DESCRIPTION = (
    "One text or a list of texts to embed. Token ids (OpenAI's other input forms) are refused with "
    "a 400: the client's tokenizer is not this server's model's."
)


class EmbeddingsRequest(_Body):
    input: (
        Annotated[str, StringConstraints(min_length=1, max_length=_HARD_INPUT_CHARS)]
        | Annotated[
            list[Annotated[str, StringConstraints(min_length=1, max_length=_HARD_INPUT_CHARS)]],
            Field(min_length=1, max_length=_HARD_BATCH),
        ]
        | _TokenIds
        | Annotated[list[_TokenIds], Field(min_length=1, max_length=_HARD_BATCH)]
    ) = Field(description=_INPUT_DESCRIPTION)
    dimensions: StrictInt | None = Field(
        None,
        ge=1,
        description="Cut each embedding to its first `dimensions` values (re-normalised), for models "
        "the server lists in `truncatable_models` (trained for it, Matryoshka); for other models "
        "only their full size is accepted.",
    )
    user: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        None, description="An end-user id (OpenAI's field); accepted and not used."
    )
    model: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = Field(
        None,
        description="The configured embedding model's name, or the name of a dense index whose "
        "query encoder to use; default: the configured embedding model, else the first dense index.",
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="'base64': little-endian float32 bytes, base64-encoded (as OpenAI's API)."
    )
    input_type: Literal["query", "document"] = Field(
        "document", description="Encode as documents or as queries (matters for models with prompts)."
    )


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "distilir"


class ModelList(BaseModel):
    """``GET /v1/models`` (OpenAI shape): the embedding model, the dense indexes (whose query encoders
    /v1/embeddings can use by index name) and the rerank model."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- rerank (Cohere v2 shape) ----------------------------------------------------------------------


class RerankDocument(_Body):
    text: str = Field(max_length=_HARD_INPUT_CHARS)


class RerankRequest(_Body):
    query: str = Field(min_length=1, max_length=_HARD_QUERY_CHARS)
    documents: list[Annotated[str, StringConstraints(max_length=_HARD_INPUT_CHARS)] | RerankDocument] = Field(
        min_length=1, max_length=_HARD_BATCH, description="Texts, or objects with a `text` field."
    )
    top_n: StrictInt | None = Field(None, ge=1, description="Return only the best n (default: all).")
    return_documents: bool = Field(False, description="Include each document's text in the results.")
    model: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = Field(
        None, description="Must name the configured rerank model when given."
    )


class RerankResult(BaseModel):
    index: int = Field(description="Position of the document in the request.")
    relevance_score: float = Field(description="The reranker's score; higher is more relevant.")
    document: RerankDocument | None = None


class RerankResponse(BaseModel):
    id: str
    results: list[RerankResult]
    model: str
    meta: dict[str, Any] = Field(default_factory=dict)


# -- indexes and health ----------------------------------------------------------------------------


class IndexInfo(BaseModel):
    """A loaded index. Server paths appear only when asked for (``?details=true``): elsewhere every
    ``path`` field is dropped and absolute paths in the manifest read ``"<server path>"``."""

    name: str
    kind: str
    count: int
    default: bool = Field(description="Whether this index answers searches that name none.")
    path: str | None = None
    encoder: dict[str, Any] | None = None
    manifest: dict[str, Any] = Field(default_factory=dict)


class IndexList(BaseModel):
    indexes: list[IndexInfo]


class ReloadRequest(_Body):
    path: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        None,
        description="Load from this directory instead of the index's current path "
        "(needs the server setting allow_reload_overrides).",
    )
    model: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        None,
        description="Query encoder to load the index with (needs allow_reload_overrides).",
    )


class ReloadResponse(IndexInfo):
    took_ms: float
    previous_generation: int | None = None


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "loading"]
    indexes: list[str]


# -- per-server limits -----------------------------------------------------------------------------


def limited_models(settings: ServiceSettings) -> SimpleNamespace:
    """Request classes with this server's limits (same names and fields as the static ones)."""
    query = Annotated[str, StringConstraints(min_length=1, max_length=settings.max_query_chars)]
    text = Annotated[str, StringConstraints(min_length=1, max_length=settings.max_input_chars)]
    doc_text = Annotated[str, StringConstraints(max_length=settings.max_input_chars)]

    search = create_model(
        "SearchRequest",
        __base__=SearchRequest,
        __doc__=SearchRequest.__doc__,
        query=(query, Field(description="The query text.")),
        k=(
            StrictInt,
            Field(10, ge=1, le=settings.max_k, description="How many hits to return (an integer)."),
        ),
        ids=(
            list[str] | None,
            Field(None, max_length=settings.max_ids, description="Search only these document ids."),
        ),
    )
    rerank_doc = create_model("RerankDocument", __base__=RerankDocument, text=(doc_text, Field()))
    rerank = create_model(
        "RerankRequest",
        __base__=RerankRequest,
        query=(query, Field()),
        documents=(
            list[doc_text | rerank_doc],
            Field(
                min_length=1,
                max_length=settings.max_batch,
                description="Texts, or objects with a `text` field.",
            ),
        ),
    )
    embeddings = create_model(
        "EmbeddingsRequest",
        __base__=EmbeddingsRequest,
        input=(
            text
            | Annotated[list[text], Field(min_length=1, max_length=settings.max_batch)]
            | _TokenIds
            | Annotated[list[_TokenIds], Field(min_length=1, max_length=settings.max_batch)],
            Field(description=_INPUT_DESCRIPTION),
        ),
    )
    return SimpleNamespace(SearchRequest=search, RerankRequest=rerank, EmbeddingsRequest=embeddings)

"""Synthetic queries: a pipeline stage between data and teachers.

A *generator* writes queries for the documents of a corpus; a :class:`QueryStore` keeps them with
their provenance (generator, prompt, sampling settings, seed), resumable and deduplicated; a teacher
then scores candidates for them like for any other query (:func:`as_dataset` makes the store look
like a split of the collection), and :func:`filter_queries` keeps the queries the teacher agrees
with.

Generators (``kind`` -> class, imported when built; one line per generator)::

    title      TitleQueries      the document title
    crop       CropQueries       sentence crops (inverse cloze)
    llm        CausalLMQueries   a causal LM through transformers
    openai     OpenAIQueries     an OpenAI-compatible completions server
    doc2query  Doc2QueryQueries  a seq2seq doc2query model

A generator spec is ``KIND[:TARGET][?key=value&...]``: ``crop?per_doc=3&word_dropout=0.1``,
``llm:smollm2-135m-instruct?types=question,claim&per_doc=2``,
``openai:http://127.0.0.1:8000?model=NAME``, ``doc2query:doc2query/msmarco-t5-base-v1``. TARGET is
the generator's first argument (model or URL).
"""

from __future__ import annotations

from typing import Any

from distilir_index.registry import Registry, parse_options

from distilir.queries.base import QUERY_TYPES, GeneratedQuery, QueryGenerator, QueryGeneratorError
from distilir.queries.store import QueryStore, QueryStoreError, generate_queries

__all__ = [
    "GENERATORS",
    "QUERY_TYPES",
    "GeneratedQuery",
    "QueryGenerator",
    "QueryGeneratorError",
    "QueryStore",
    "QueryStoreError",
    "as_dataset",
    "build_generator",
    "filter_queries",
    "generate_queries",
    "parse_generator_spec",
]

#: kind -> "module:Class"; the class owns its constructor, help text and settings.
GENERATORS = Registry(
    "query generator",
    {
        "title": "distilir.queries.pseudo:TitleQueries",
        "crop": "distilir.queries.pseudo:CropQueries",
        "llm": "distilir.queries.llm:CausalLMQueries",
        "openai": "distilir.queries.llm:OpenAIQueries",
        "doc2query": "distilir.queries.llm:Doc2QueryQueries",
    },
    error=QueryGeneratorError,
)


def parse_generator_spec(spec: str) -> tuple[str, str | None, dict[str, Any]]:
    """``"crop?per_doc=3"`` -> ``("crop", None, {"per_doc": 3})`` (see the module docstring)."""
    if not isinstance(spec, str) or not spec.strip():
        raise QueryGeneratorError(
            f"a generator spec is a non-empty string like 'crop?per_doc=3', got {spec!r}"
        )
    head, _, options = spec.strip().partition("?")
    kind, _, target = head.partition(":")
    settings = parse_options(options, spec=spec, error=QueryGeneratorError)
    return GENERATORS.normalize(kind), (target or None), settings


def build_generator(spec: str | QueryGenerator, **overrides: Any) -> QueryGenerator:
    """A generator from a spec string (or the object itself); ``overrides`` become keyword arguments
    (e.g. ``few_shot=[...]`` from a collection's training queries)."""
    if isinstance(spec, QueryGenerator):
        return spec
    kind, target, settings = parse_generator_spec(spec)
    cls = GENERATORS.get(kind)
    if "types" in settings and isinstance(settings["types"], str):
        settings["types"] = settings["types"].replace("|", ",").split(",")
    args = (target,) if target is not None else ()
    try:
        return cls(*args, **settings, **overrides)
    except TypeError as exc:
        raise QueryGeneratorError(
            f"generator {spec!r}: {exc} (see help(distilir.queries.{cls.__name__}))"
        ) from None


def as_dataset(dataset: Any, queries: dict, *, split: str = "synthetic", qrels: dict | None = None) -> Any:
    """``dataset`` with ``queries`` (``{qid: Query}``) added as ``split`` (and ``qrels`` for it,
    e.g. :meth:`QueryStore.pseudo_qrels`), so candidates, teachers and training read them like the
    collection's own queries."""
    from distilir.queries.view import QueriesView

    return QueriesView(dataset, {split: dict(queries)}, {split: dict(qrels or {})})


def filter_queries(*args: Any, **kwargs: Any) -> Any:
    """See :func:`distilir.queries.filtering.filter_queries`."""
    from distilir.queries.filtering import filter_queries as impl

    return impl(*args, **kwargs)

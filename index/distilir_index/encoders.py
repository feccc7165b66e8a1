"""Text encoders used by indexes: a thin layer over sentence-transformers that pins down everything
that changes the vectors (model and weights, pooling, normalisation, max length, prompts), so the
index manifest can record it and refuse a query encoder that does not match.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from distilir_index.base import IndexError_
from distilir_index.embedding_cache import EmbeddingCache, open_document_cache
from distilir_index.models import fingerprint_folder, load_model

__all__ = ["QUERY_ENCODER_MANIFEST", "DenseEncoder", "EncoderMismatch", "check_encoder_compatible"]

#: Fields of Encoder.describe() that must match between the index and the query encoder.
_IDENTITY_FIELDS = ("fingerprint", "dimension", "normalize", "pooling", "query_prompt", "document_prompt")


class EncoderMismatch(IndexError_):
    """The encoder used for queries differs from the one the index was built with."""


class DenseEncoder:
    """Encodes queries and documents into float32 vectors with a sentence-transformers model.

    Args:
        model: a hub id, a local folder, a packaged name (see distilir_index.models.PACKAGED), or an
            already loaded ``SentenceTransformer``.
        normalize: L2-normalise the vectors (inner product then equals cosine similarity).
        max_length: truncate inputs to this many tokens (default: the model's own setting).
        query_prompt / document_prompt: text prepended to queries / documents (e5/bge style).
        batch_size: encoding batch size.
        device: torch device; default is sentence-transformers' choice.
        backend: ``"auto"`` (ONNX Runtime on CPU when onnxruntime and onnx are installed and the
            model is a plain text transformer, else torch), ``"torch"`` or ``"onnx"``; see
            :mod:`distilir_index.onnx`. A runtime choice: outputs equal torch's within 1e-5, recorded
            by :meth:`describe` but never compared between an index and its query encoder.
        query_quantization: ``None`` (float32) or ``"int8"``: queries (only) go through the
            dynamically quantised ONNX graph, 1.5-1.6x faster per query than float32 ONNX on CPU
            (3x faster than torch on short queries) at a measured cost in effectiveness of -0.005 to
            +0.002 nDCG@10 (benchmarks/reports/query_quantization.md). Needs the ONNX backend.
        threads: ONNX Runtime intra-op threads (None: the free cores when first used). Query
            encoding in the service uses one thread per request.
        cache_dir: root of the machine's document-embedding cache
            (:mod:`distilir_index.embedding_cache`, shared with the embedding teachers):
            ``encode_documents`` encodes only texts this model, with these document settings, has not
            encoded before, so rebuilding an index (another FAISS factory, another run) or a teacher
            over the same corpus encodes nothing. ``None``: ``$DISTILIR_EMBEDDING_CACHE``, else
            ``$DISTILIR_CACHE/embeddings``; ``"off"``: no cache. Only for models loaded from a folder
            by this encoder: an in-memory model (e.g. one being trained) is never cached, its weights
            may have changed since it was loaded.
    """

    def __init__(
        self,
        model: Any,
        *,
        normalize: bool = True,
        max_length: int | None = None,
        query_prompt: str = "",
        document_prompt: str = "",
        batch_size: int = 64,
        device: str | None = None,
        backend: str = "auto",
        query_quantization: str | None = None,
        threads: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        from distilir_index.onnx import QUANTIZATIONS, resolve_backend

        if isinstance(model, SentenceTransformer):
            self.model = model
            self.name = getattr(model, "_distilir_name", None) or _model_folder(model) or "in-memory"
        else:
            self.name = str(model)
            self.model, _ = load_model(model, SentenceTransformer, device=device)
        if max_length is not None:
            if max_length <= 0:
                raise ValueError(f"max_length must be a positive number of tokens, got {max_length}")
            self.model.max_seq_length = max_length
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.normalize = normalize
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.batch_size = batch_size
        if query_quantization not in QUANTIZATIONS:
            raise ValueError(
                f"query_quantization must be None (float32) or 'int8', got {query_quantization!r}"
            )
        # "auto" keeps an in-memory model on torch: it may be a model being trained, whose weights
        # change between calls, and re-exporting it for every evaluation costs more than ONNX saves
        in_memory = isinstance(model, SentenceTransformer)
        self.backend = resolve_backend(
            "torch" if backend == "auto" and in_memory else backend, self.model, device=device
        )
        if query_quantization and self.backend != "onnx":
            raise ValueError(
                f"query_quantization={query_quantization!r} needs the ONNX backend, but this encoder runs "
                f"on {self.backend} (backend={backend!r}); install onnxruntime and onnx, or drop the option"
            )
        self.query_quantization = query_quantization
        self.threads = threads
        self._runners: dict[str | None, Any] = {}
        self._cache_root = cache_dir
        self._cacheable = not in_memory
        self._doc_cache: EmbeddingCache | None | bool = False  # False: not opened yet

    @property
    def dimension(self) -> int:
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        return int(get_dim())

    def _runner(self, quantize: str | None) -> Any:
        if quantize not in self._runners:
            from distilir_index.onnx import OnnxTransformer

            folder = _model_folder(self.model)
            self._runners[quantize] = OnnxTransformer(
                self.model,
                fingerprint_folder(folder) if folder else None,
                quantize=quantize,
                threads=self.threads,
            )
        return self._runners[quantize]

    def _encode(
        self, texts: Sequence[str], prompt: str, show_progress: bool, quantize: str | None = None
    ) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("expected a list of texts, got a single string; wrap it in a list")
        if self.backend == "onnx":
            from distilir_index.onnx import encode_with_onnx

            return encode_with_onnx(
                self.model,
                self._runner(quantize),
                texts,
                prompt=prompt or None,
                batch_size=self.batch_size,
                normalize=self.normalize,
                show_progress=show_progress,
            )
        vectors = self.model.encode(
            list(texts),
            prompt=prompt or None,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_queries(self, queries: Sequence[str], show_progress: bool = False) -> np.ndarray:
        return self._encode(queries, self.query_prompt, show_progress, self.query_quantization)

    def encode_documents(
        self, documents: Sequence[str], show_progress: bool = False, *, cache: bool = True
    ) -> np.ndarray:
        """Document vectors, read from and added to :attr:`document_cache` unless ``cache=False``
        (the service embeds client texts with it off: a cache of whatever clients send would grow
        without bound)."""
        cache = self.document_cache if cache else None
        if cache is None:
            return self._encode(documents, self.document_prompt, show_progress)
        if isinstance(documents, str):
            raise TypeError("expected a list of texts, got a single string; wrap it in a list")
        vectors = cache.get_or_encode(
            list(documents), lambda todo: self._encode(todo, self.document_prompt, show_progress)
        )
        if not vectors:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.ascontiguousarray(np.stack(vectors), dtype=np.float32)

    @property
    def document_cache(self) -> EmbeddingCache | None:
        """The on-disk cache ``encode_documents`` reads and fills (None: caching off, or a model held
        only in memory). Opened, and read into memory, on first use."""
        if self._doc_cache is False:
            folder = _model_folder(self.model) if self._cacheable else None
            fingerprint = fingerprint_folder(folder) if folder else None
            self._doc_cache = open_document_cache(
                fingerprint,
                max_length=int(self.model.max_seq_length) if self.model.max_seq_length else None,
                prompt=self.document_prompt or None,
                normalize=self.normalize,
                kind="dense",
                root=self._cache_root,
                identity={"encoder": self.name, "fingerprint": fingerprint},
            )
        return self._doc_cache  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        """What the index manifest records about this encoder."""
        folder = _model_folder(self.model)
        pooling = None
        for module in self.model:
            if type(module).__name__ == "Pooling":
                mode = getattr(module, "pooling_mode", None)
                pooling = mode if isinstance(mode, str) else module.get_config_dict().get("pooling_mode")
        described = {
            "library": "sentence-transformers",
            "name": self.name,
            "path": folder,
            "fingerprint": fingerprint_folder(folder) if folder else None,
            "dimension": self.dimension,
            "pooling": pooling,
            "normalize": self.normalize,
            "max_length": int(self.model.max_seq_length) if self.model.max_seq_length else None,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
            "backend": self.backend,
            "query_quantization": self.query_quantization,
        }
        trained_for = _query_encoder_manifest(folder)
        if trained_for is not None:
            described["compatible_with"] = trained_for.get("document_encoder")
        return described

    @classmethod
    def from_description(cls, described: Mapping[str, Any], model: Any = None, **kwargs: Any) -> DenseEncoder:
        """Rebuild the encoder an index was built with (``model`` overrides where to load it from).
        The backend and quantisation it was built with are not inherited (runtime choices: pass
        ``backend=`` / ``query_quantization=`` to choose them for this process)."""
        source = model if model is not None else (described.get("path") or described["name"])
        if model is None and isinstance(source, str) and not os.path.exists(source):
            source = described["name"]
        return cls(
            source,
            normalize=described.get("normalize", True),
            max_length=described.get("max_length"),
            query_prompt=described.get("query_prompt", ""),
            document_prompt=described.get("document_prompt", ""),
            **kwargs,
        )


def _model_folder(model: Any) -> str | None:
    """The local folder a SentenceTransformer was loaded from, when there is one."""
    try:
        first = model[0]
        cfg = first.auto_model.config
        path = getattr(cfg, "_name_or_path", None) or getattr(cfg, "name_or_path", None)
    except Exception:  # noqa: BLE001 - a custom first module; no folder to report
        return None
    return path if path and os.path.isdir(path) else None


#: file a query-side student carries beside its weights (written by distilir's frozen-index training)
QUERY_ENCODER_MANIFEST = "query_encoder.json"


def _query_encoder_manifest(folder: str | None) -> dict[str, Any] | None:
    if not folder:
        return None
    file = os.path.join(folder, QUERY_ENCODER_MANIFEST)
    if not os.path.isfile(file):
        return None
    import json

    with open(file, encoding="utf-8") as f:
        return json.load(f)


def check_encoder_compatible(index_encoder: Mapping[str, Any], query_encoder: Mapping[str, Any]) -> None:
    """Raise EncoderMismatch naming every field that differs between two encoder descriptions.

    A field missing on either side (e.g. no fingerprint for a hub model not on disk) is not compared.
    A query encoder trained against a frozen index (its description has ``compatible_with``: the
    document encoder it was trained for) is compared with that document encoder instead of its own
    weights: it is accepted exactly for indexes built by that encoder, and refused for any other.
    """
    trained_for = query_encoder.get("compatible_with")
    if trained_for:
        query_encoder = {**query_encoder, "fingerprint": trained_for.get("fingerprint")}
        if trained_for.get("fingerprint") is None:
            raise EncoderMismatch(
                f"the query encoder {query_encoder.get('name')!r} was trained for a document encoder "
                "without a weights fingerprint, so no index can be matched to it; retrain it against an "
                "index built from "
                "a local model folder."
            )
    diffs = []
    for key in _IDENTITY_FIELDS:
        a, b = index_encoder.get(key), query_encoder.get(key)
        if a is not None and b is not None and a != b:
            diffs.append(f"{key}: index has {a!r}, query encoder has {b!r}")
    if diffs:
        raise EncoderMismatch(
            f"the query encoder {query_encoder.get('name')!r} does not match the encoder the index was "
            f"built with ({index_encoder.get('name')!r}): "
            + "; ".join(diffs)
            + (
                f" (it is a query-side encoder trained for the document encoder {trained_for.get('name')!r}; "
                "use it only with indexes that encoder built)"
                if trained_for
                else ". Load the index without naming a model to use its own encoder, or rebuild the index."
            )
        )

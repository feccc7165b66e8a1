"""Bi-encoder teacher: a sentence-transformers embedding model scoring by cosine or inner product.

``score(q, d) = sim(E_q(q), E_d(d))`` with ``sim`` the cosine ``<u, v> / (|u| |v|)`` (default when
the model declares it, e.g. all-mpnet-base-v2) or the plain inner product ``<u, v>``. Queries are
encoded with ``SentenceTransformer.encode_query`` and documents with ``encode_document``, so the
prompts a model was trained with (e.g. ``"query: "`` / ``"passage: "``) are applied.

Document and query embeddings are cached by the sha256 of their text (every distinct text is
encoded once per teacher; documents once per model and document settings on the machine, in the
cache the dense index builds share: :mod:`distilir_index.embedding_cache`). A strong bi-encoder is a
cheap teacher for a small one (e.g. all-mpnet-base-v2 → MiniLM); it is also a member of the default
offline ensemble.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from distilir.teachers.base import (
    BaseTeacher,
    TeacherError,
    load_teacher_model,
)
from distilir.teachers.embedding_cache import EmbeddingCache, EmbeddingTeacherMixin, resolve_cache_dir

__all__ = ["BiEncoderTeacher", "EmbeddingCache"]  # EmbeddingCache re-exported

_SIMILARITIES = ("cosine", "dot")


class BiEncoderTeacher(EmbeddingTeacherMixin, BaseTeacher):
    """Scores documents by the similarity of sentence-transformers embeddings.

    Args:
        model: hub id, local folder, packaged name (``"all-mpnet-base-v2"``, ``"all-MiniLM-L6-v2"``,
            see ``distilir_index.models.resolve_model``) or a built ``SentenceTransformer``.
        similarity: ``"cosine"`` or ``"dot"``; ``None`` takes the model's declared
            ``similarity_fn_name`` (``"cosine"`` when it declares none).
        batch_size: texts per forward pass.
        max_length: truncate texts to this many tokens (``None``: the model's ``max_seq_length``).
        device: torch device (``None``: sentence-transformers picks).
        num_threads: torch threads while encoding (``None``: ``sensible_threads()``, the free cores).
            Runtime only.
        show_progress: tqdm bars while encoding.
        cache_dir: root of the on-disk document cache, one folder per model and document settings,
            shared with index builds (:mod:`distilir_index.embedding_cache`), so later runs (another
            split, depth or process, an index build) encode only new texts; ``None``:
            ``$DISTILIR_EMBEDDING_CACHE``, else ``$DISTILIR_CACHE/embeddings``; ``"off"``: memory
            only. Runtime only.
        backend: ``"auto"`` (default: ONNX Runtime on CPU when installed and the model is a plain
            text transformer), ``"torch"`` or ``"onnx"``: the transformer runs in ONNX Runtime
            (:mod:`distilir_index.onnx`, the project's one fast path), the model's own preprocessing,
            prompts and pooling / normalisation modules around it. Runtime only (same numbers
            within 1e-5).
    """

    kind = "bi-encoder"
    help = "a SentenceTransformer hub id, folder or packaged name"
    example = "bi-encoder:all-mpnet-base-v2"
    default_target = "all-mpnet-base-v2"
    score_type = "similarity"

    def __init__(
        self,
        model: Any = "all-mpnet-base-v2",
        similarity: str | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        device: str | None = None,
        *,
        num_threads: int | None = None,
        show_progress: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        backend: str = "auto",
    ) -> None:
        if backend not in ("auto", "torch", "onnx"):
            raise TeacherError(f"backend must be 'auto', 'torch' or 'onnx', got {backend!r}")
        if similarity is not None and similarity not in _SIMILARITIES:
            raise TeacherError(f"similarity must be one of {_SIMILARITIES} or None, got {similarity!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise TeacherError(f"batch_size must be a positive int, got {batch_size!r}; try 32")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 8):
            raise TeacherError(f"max_length must be an int >= 8 or None, got {max_length!r}")
        self._model, self._identity = _load_sentence_transformer(model, device=device)
        if max_length is not None:
            self._model.max_seq_length = max_length
        declared = getattr(self._model, "similarity_fn_name", None)
        if similarity is None:
            similarity = "dot" if str(declared) == "dot" else "cosine"
        self.similarity = similarity
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.show_progress = show_progress
        self.name = f"bi-encoder:{self._identity['name'] or 'in-memory'}"
        self.cache_dir = resolve_cache_dir(cache_dir)
        from distilir_index.onnx import resolve_backend

        try:
            self.backend = resolve_backend(backend, self._model)
        except ValueError as exc:
            raise TeacherError(str(exc)) from exc
        self._onnx: Any = None

    @property
    def model(self) -> Any:
        return self._model

    def _similarities(self, query: np.ndarray, docs: Sequence[np.ndarray]) -> list[float]:
        block = np.asarray(docs, dtype=np.float32).reshape(len(docs), -1)
        return (block @ query).astype(np.float64).tolist()

    def seed_from_index(self, index_path: str | os.PathLike[str], texts: Mapping[str, str]) -> int:
        """Take the document embeddings of a ``distilir_index`` dense index built by this very model
        (same weights fingerprint, max length and prompts; cosine teachers need a normalised index,
        dot teachers an unnormalised one) into the document cache, so no document is encoded twice by
        the same model. ``texts``: ``{doc_id: the text this teacher will be given}``. Returns the
        number of embeddings added; raises :class:`TeacherError` naming every setting that differs."""
        from distilir_index import read_manifest
        from distilir_index.dense import DenseIndex

        encoder = read_manifest(index_path).get("encoder") or {}
        mine = self.get_config_dict()
        diffs = []
        if encoder.get("fingerprint") != self._identity.get("fingerprint"):
            diffs.append(f"weights {encoder.get('fingerprint')} vs {self._identity.get('fingerprint')}")
        if encoder.get("max_length") != mine["max_length"]:
            diffs.append(f"max_length {encoder.get('max_length')} vs {mine['max_length']}")
        if encoder.get("document_prompt") or mine["prompts"]:
            diffs.append("prompts")
        if bool(encoder.get("normalize")) != (self.similarity == "cosine"):
            diffs.append(f"normalize={encoder.get('normalize')} vs similarity={self.similarity}")
        if diffs:
            raise TeacherError(
                f"the index at {index_path} was not built by this teacher's encoder ({'; '.join(diffs)}); "
                "its vectors cannot stand in for the teacher's document embeddings."
            )
        index = DenseIndex.load(index_path, load_encoder=False, mmap=True)
        ids = [d for d in index.ids() if d in texts]
        keep = {d: i for i, d in enumerate(index.ids())}
        vectors = index.vectors()
        return self.doc_cache.put([texts[d] for d in ids], [vectors[keep[d]] for d in ids])

    def _encode_onnx(self, method: str, texts: list[str]) -> np.ndarray:
        """The model's own ``encode_query`` / ``encode_document`` preprocessing and pooling with the
        transformer on ONNX Runtime (:func:`distilir_index.onnx.encode_with_onnx`)."""
        from distilir_index.onnx import OnnxTransformer, encode_with_onnx

        if self._onnx is None:
            self._onnx = OnnxTransformer(
                self._model, self._identity.get("fingerprint"), threads=self.num_threads
            )
        task = "query" if method == "encode_query" else "document"
        prompts = getattr(self._model, "prompts", None) or {}
        return encode_with_onnx(
            self._model,
            self._onnx,
            texts,
            prompt=prompts.get(task) or None,
            task=task,
            batch_size=self.batch_size,
            normalize=self.similarity == "cosine",
            show_progress=self.show_progress,
        )

    def _encode(self, method: str, texts: list[str]) -> np.ndarray:
        if self.backend == "onnx":
            return self._encode_onnx(method, texts)
        emb = getattr(self._model, method)(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.similarity == "cosine",
            show_progress_bar=self.show_progress,
        )
        return np.asarray(emb, dtype=np.float32)

    def _encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        return list(self._encode("encode_query", texts))

    def _encode_documents(self, texts: list[str]) -> list[np.ndarray]:
        return list(self._encode("encode_document", texts))

    def _document_cache_settings(self) -> dict[str, Any]:
        config = self.get_config_dict()
        dtype = "" if config["dtype"] == "float32" else f"@{config['dtype']}"
        fingerprint = self._identity.get("fingerprint")
        return {
            "fingerprint": f"{fingerprint}{dtype}" if fingerprint else None,
            "max_length": config["max_length"],
            "prompt": config["prompts"].get("document"),
            "normalize": self.similarity == "cosine",
        }

    def get_config_dict(self) -> dict[str, Any]:
        prompts = getattr(self._model, "prompts", None) or {}
        return {
            "kind": "bi-encoder",
            "model": self._identity,
            "similarity": self.similarity,
            "max_length": int(self._model.max_seq_length) if self._model.max_seq_length else None,
            "prompts": {k: v for k, v in sorted(prompts.items()) if v},
            "dtype": str(next(self._model.parameters()).dtype).removeprefix("torch."),
            "score_type": self.score_type,
        }


def _load_sentence_transformer(model: Any, *, device: str | None) -> tuple[Any, dict[str, Any]]:
    from sentence_transformers import SentenceTransformer

    return load_teacher_model(
        model, SentenceTransformer, device=device, example="BiEncoderTeacher('all-mpnet-base-v2')"
    )

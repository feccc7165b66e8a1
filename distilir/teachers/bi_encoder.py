"""Bi-encoder teacher: a sentence-transformers embedding model scoring by cosine or inner product.

``score(q, d) = sim(E_q(q), E_d(d))`` with ``sim`` the cosine ``<u, v> / (|u| |v|)`` (default when
the model declares it, e.g. all-mpnet-base-v2) or the plain inner product ``<u, v>``. Queries are
encoded with ``SentenceTransformer.encode_query`` and documents with ``encode_document``, so the
prompts a model was trained with (e.g. ``"query: "`` / ``"passage: "``) are applied.

Document and query embeddings are cached by the sha256 of their text (every distinct text is
encoded once per teacher; with ``cache_dir`` documents once per fingerprint across runs; see
:mod:`distilir.teachers.embedding_cache`). A strong bi-encoder is a cheap teacher for a small one
(e.g. all-mpnet-base-v2 → MiniLM); it is also a member of the default offline ensemble.
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
        cache_dir: keep document embeddings on disk under ``cache_dir/<fingerprint>`` so later runs
            (another split, depth or process) encode only new texts; ``None``: the environment
            variable ``DISTILIR_EMBEDDING_CACHE`` if set. Runtime only.
        backend: ``"torch"`` or ``"onnx"``: the transformer runs in ONNX Runtime on CPU (exported once
            per weights fingerprint, as the cross-encoder teacher does; ~2-3x faster on CPU), the
            model's own pooling / normalisation modules run after it. Needs a model that starts with
            a text ``Transformer`` and has no prompts. Runtime only (same numbers within 1e-5).
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
        backend: str = "torch",
    ) -> None:
        if backend not in ("torch", "onnx"):
            raise TeacherError(f"backend must be 'torch' or 'onnx', got {backend!r}")
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
        self.backend = backend
        self._onnx: Any = None
        if backend == "onnx":
            self._check_onnx_support()

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

    def _check_onnx_support(self) -> None:
        from sentence_transformers.base.modules import Transformer

        prompts = {k: v for k, v in (getattr(self._model, "prompts", None) or {}).items() if v}
        if not isinstance(self._model[0], Transformer) or prompts:
            raise TeacherError(
                f"backend='onnx' needs a model whose first module is a text Transformer and that has "
                f"no prompts; {self.name} has {type(self._model[0]).__name__} and prompts {prompts}: "
                "use backend='torch'"
            )
        if str(self._model.device) != "cpu":
            raise TeacherError(f"backend='onnx' runs on CPU, the model is on {self._model.device}")

    def _encode_onnx(self, texts: list[str]) -> np.ndarray:
        """Length-sorted batches through the exported transformer, then the model's other modules
        (pooling, normalisation) in torch, as ``SentenceTransformer.encode`` does."""
        import onnxruntime as ort
        import torch
        from tqdm.auto import tqdm

        from distilir.teachers.cross_encoder import _export_onnx, sensible_threads

        tokenizer = self._model.tokenizer
        if self._onnx is None:
            probe = tokenizer(["a b"], return_tensors="np")
            names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in probe]
            path = _export_onnx(self._model[0].auto_model, self._identity, names, "last_hidden_state")
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.num_threads or sensible_threads()
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._onnx = (session, names)
        session, names = self._onnx
        max_length = int(self._model.max_seq_length)
        enc = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
        order = np.argsort([-len(x) for x in enc["input_ids"]], kind="stable")
        out: list[np.ndarray | None] = [None] * len(texts)
        tail = list(self._model)[1:]
        with torch.inference_mode():
            starts = range(0, len(texts), self.batch_size)
            for start in tqdm(starts, desc="encoding (onnx)", unit="batch", disable=not self.show_progress):
                idx = order[start : start + self.batch_size]
                batch = tokenizer.pad({k: [enc[k][i] for i in idx] for k in names}, return_tensors="np")
                feed = {k: np.asarray(batch[k], dtype=np.int64) for k in names}
                hidden = session.run(None, feed)[0]
                features = {
                    "token_embeddings": torch.from_numpy(hidden),
                    "attention_mask": torch.from_numpy(feed["attention_mask"]),
                }
                for module in tail:
                    features = module(features)
                emb = features["sentence_embedding"].float()
                if self.similarity == "cosine":
                    emb = torch.nn.functional.normalize(emb, dim=-1)
                for row, i in enumerate(idx):
                    out[i] = emb[row].numpy()
        return np.stack(out).astype(np.float32)

    def _encode(self, method: str, texts: list[str]) -> np.ndarray:
        if self.backend == "onnx":
            return self._encode_onnx(texts)
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

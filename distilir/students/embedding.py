"""Shared code of the students that encode queries and documents separately (bi-encoder, SPLADE).

The forward pass is sentence-transformers' own (``model.preprocess`` then ``model(features)``, with the
same prompt and ``task`` that ``encode_query`` / ``encode_document`` use), run with gradients; only
the batching around it is ours, because ``encode`` runs under ``torch.inference_mode`` and cannot train.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from distilir.students.base import (
    BaseStudent,
    BatchLayout,
    StudentError,
    StudentOutput,
    layout_batch,
    resolve_prompt,
)

__all__ = ["EmbeddingStudent"]


class EmbeddingStudent(BaseStudent):
    """Base of bi-encoder and SPLADE students: ``score = sim(encode_query(q), encode_document(d))``."""

    query_prompt: str | None
    document_prompt: str | None
    #: ``in_batch_gather`` (see BaseStudent), here: maps this process's document embeddings [M, D] and
    #: texts to those of all processes (embeddings keeping gradients), plus the offset of this
    #: process's documents, so that the in-batch matrix holds every process's documents as negatives.
    #: None: the local batch only.

    def _setup_prompts(self, query_prompt: str | None, document_prompt: str | None) -> None:
        self._explicit_prompts = (query_prompt, document_prompt)
        self.query_prompt = resolve_prompt(self.model, "query", query_prompt)
        self.document_prompt = resolve_prompt(self.model, "document", document_prompt)

    def _set_max_length(self, max_length: int | None) -> None:
        """``max_length`` is the truncation while *training* (short lists of long documents cost
        quadratically); the starting model's own truncation is kept for inference: ``save`` writes
        it into the model folder, so a student trained at 128 tokens still encodes documents as its
        base did."""
        self.inference_max_length = self.model.max_seq_length
        if max_length is not None:
            if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
                raise StudentError(f"max_length must be a positive number of tokens, got {max_length!r}")
            self.model.max_seq_length = max_length

    def _write_model(self, folder: Path) -> None:
        """The model folder with the starting model's inference truncation (``inference_max_length``)
        rather than the training ``max_length``; the manifest keeps the training setting."""
        training = self.model.max_seq_length
        self.model.max_seq_length = self.inference_max_length
        try:
            super()._write_model(folder)
        finally:
            self.model.max_seq_length = training

    def _embed(self, texts: Sequence[str], task: str) -> Tensor:
        from sentence_transformers.util import batch_to_device

        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise StudentError("expected a list of strings; wrap a single text in a list")
        if not texts:
            raise StudentError("expected at least one text, got an empty list")
        prompt = self.query_prompt if task == "query" else self.document_prompt
        features = self.model.preprocess(list(texts), prompt=prompt, task=task)
        features = batch_to_device(features, self.device)
        return self.model(features, task=task)["sentence_embedding"]

    def _postprocess(self, embeddings: Tensor) -> Tensor:
        """Hook: e.g. L2-normalise for cosine similarity."""
        return embeddings

    def encode_queries(self, texts: Sequence[str]) -> Tensor:
        """[len(texts), D] query embeddings of one training batch, with gradients when enabled.

        For encoding a corpus use the saved student with ``distilir_index`` encoders (batched, no grad)."""
        return self._postprocess(self._embed(texts, "query"))

    def encode_documents(self, texts: Sequence[str]) -> Tensor:
        """[len(texts), D] document embeddings of one training batch, with gradients when enabled."""
        return self._postprocess(self._embed(texts, "document"))

    def _regularize(self, query_emb: Tensor, doc_emb: Tensor) -> tuple[dict[str, Tensor], Tensor | None]:
        """Hook: (unweighted regularisers, weighted regularisation loss)."""
        return {}, None

    def forward_scores(
        self, queries: Sequence[str], docs_lists: Sequence[Sequence[str]], mask: Tensor | None = None
    ) -> StudentOutput:
        """Encode the B queries and the real documents once; score every query against every document.

        ``scores[i, j] = q_i . d_ij`` (dot product of the, possibly normalised, embeddings) and
        ``in_batch_scores[i, k] = q_i . d_k`` over all real documents ``k`` of the batch."""
        layout: BatchLayout = layout_batch(queries, docs_lists, mask)
        q = self.encode_queries(layout.queries)
        d = self.encode_documents(layout.flat_docs)
        offset, false_negatives = 0, None
        if self.in_batch_gather is not None:  # distributed: the documents of every process
            d_all, offset, texts = self.in_batch_gather(d, layout.flat_docs)
            in_batch = q @ d_all.transpose(0, 1)  # [B, M_total]
        else:
            in_batch = q @ d.transpose(0, 1)  # [B, M]
        rows = layout.rows.to(in_batch.device)
        flat_idx = torch.arange(len(layout.flat_docs), device=in_batch.device) + offset
        own = in_batch[rows, flat_idx]  # each real document scored by its own query
        positive = layout.positive_index()
        if self.in_batch_gather is None:
            false_negatives = layout.false_negative_mask()
        elif positive is not None:
            false_negatives = _copies_of_positive(texts, (positive + offset).tolist())
        regularization, reg_loss = self._regularize(q, d)
        if reg_loss is None:
            reg_loss = own.new_zeros(())
        return StudentOutput(
            scores=layout.scatter(own),
            mask=layout.mask.to(in_batch.device),
            in_batch_scores=in_batch,
            positive_idx=(positive + offset).to(in_batch.device) if positive is not None else None,
            in_batch_mask=_to(false_negatives, in_batch.device),
            regularization=regularization,
            regularization_loss=reg_loss,
        )

    def _prompt_config(self) -> dict[str, Any]:
        query_prompt, document_prompt = self._explicit_prompts
        return {"query_prompt": query_prompt, "document_prompt": document_prompt}


def _copies_of_positive(texts: Sequence[str], positives: Sequence[int]) -> Tensor | None:
    """[B, M] False where document ``k`` has the text of query ``i``'s positive but is another entry
    (:meth:`BatchLayout.false_negative_mask` over documents gathered from several processes)."""
    where: dict[str, list[int]] = {}
    for k, text in enumerate(texts):
        where.setdefault(text, []).append(k)
    keep = torch.ones(len(positives), len(texts), dtype=torch.bool)
    for i, p in enumerate(positives):
        for k in where[texts[p]]:
            if k != p:
                keep[i, k] = False
    return None if bool(keep.all()) else keep


def _to(x: Tensor | None, device: torch.device) -> Tensor | None:
    return None if x is None else x.to(device)

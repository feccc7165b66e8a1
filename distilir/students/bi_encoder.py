"""Dense bi-encoder student over a sentence-transformers ``SentenceTransformer``."""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor
from torch.nn import functional as F

from distilir.students.base import StudentError
from distilir.students.embedding import EmbeddingStudent
from distilir.students.models import load_student_model

__all__ = ["BiEncoderStudent"]


class BiEncoderStudent(EmbeddingStudent):
    r"""A dense bi-encoder: :math:`s(q, d) = \langle f(q), f(d) \rangle` (``dot``) or
    :math:`\cos(f(q), f(d))` (``cosine``), with :math:`f` a sentence-transformers model.

    ``score`` / ``forward_scores`` run the model's own forward pass (same tokenizer, pooling, prompts
    and ``task`` as ``encode_query`` / ``encode_document``) with gradients, so the scores equal what
    the model's ``encode`` gives in eval mode. ``forward_scores`` also returns the in-batch score matrix
    (each query against every document of the batch) for :class:`distilir.losses.InfoNCELoss`.

    Train/eval mode is the caller's: ``student.train()`` enables dropout, ``student.eval()`` disables it.

    Args:
        model: a packaged name (``all-MiniLM-L6-v2``, ``paraphrase-MiniLM-L3-v2``, ...), a local folder,
            a hub id, or a loaded ``SentenceTransformer`` (used as is, not copied).
        similarity: ``"dot"`` or ``"cosine"`` (embeddings L2-normalised before the dot product). For a
            model that ends in a Normalize module (all-MiniLM-L6-v2) both are equal.
        max_length: truncation in tokens (None keeps the model's ``max_seq_length``).
        query_prompt / document_prompt: text prepended to queries / documents; None uses the model's
            configured ``query`` / ``document`` prompts, as ``encode_query`` / ``encode_document`` do.
        device: torch device to load the model on (None: sentence-transformers' choice).

    Example:
        ::

            student = BiEncoderStudent("all-MiniLM-L6-v2", max_length=128)
            out = student.forward_scores(queries, docs_lists, mask)   # out.scores: [B, N]
            loss = loss_fn(**out.loss_inputs(teacher_scores))
    """

    kind = "bi-encoder"
    help = "dense: similarity of pooled query and document vectors, over a SentenceTransformer"
    loads_with = "SentenceTransformer"

    def __init__(
        self,
        model: Any = "all-MiniLM-L6-v2",
        similarity: Literal["dot", "cosine"] = "dot",
        max_length: int | None = None,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        device: str | None = None,
    ) -> None:
        super().__init__()
        from sentence_transformers import SentenceTransformer

        if similarity not in ("dot", "cosine"):
            raise StudentError(f"similarity must be 'dot' or 'cosine', got {similarity!r}")
        self.model, self.model_name = load_student_model(model, SentenceTransformer, device=device)
        self.similarity = similarity
        self._set_max_length(max_length)
        self._setup_prompts(query_prompt, document_prompt)

    def _postprocess(self, embeddings: Tensor) -> Tensor:
        return F.normalize(embeddings, p=2, dim=-1) if self.similarity == "cosine" else embeddings

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "similarity": self.similarity,
            "max_length": int(self.model.max_seq_length) if self.model.max_seq_length else None,
            **self._prompt_config(),
        }

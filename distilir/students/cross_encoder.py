"""Cross-encoder student over a sentence-transformers ``CrossEncoder`` with one output logit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from distilir.students.base import BaseStudent, StudentError, StudentOutput, layout_batch
from distilir.students.models import load_student_model, model_label

__all__ = ["CrossEncoderStudent"]


class CrossEncoderStudent(BaseStudent):
    r"""A cross-encoder: :math:`s(q, d) = \mathrm{logit}(\mathrm{BERT}([CLS]\, q\, [SEP]\, d\, [SEP]))`.

    ``score`` returns the raw logits (no sigmoid) of every real (query, document) pair as [B, N], with
    gradients; they equal ``CrossEncoder.predict(pairs, activation_fn=torch.nn.Identity())`` in eval
    mode. There are no separate query / document encodings, so no in-batch matrix either
    (``StudentOutput.in_batch_scores`` is None); use listwise or pairwise losses.

    Built from a bi-encoder folder (e.g. ``all-MiniLM-L6-v2``) the classification head is new and
    random: pass ``seed`` to make it reproducible.

    Args:
        model: packaged name, folder, hub id, or a loaded ``CrossEncoder``.
        max_length: truncation of the joint (query, document) input in tokens.
        seed: seed of the new head's initialisation (None: torch's global generator).
        device: torch device to load the model on.
    """

    kind = "cross-encoder"
    help = "scores each (query, document) pair: a sentence-transformers CrossEncoder with one logit"
    loads_with = "CrossEncoder"

    @classmethod
    def training_kwargs(cls, *, flops: Any = None, seed: int | None = None) -> dict[str, Any]:
        return {} if seed is None else {"seed": seed}

    def __init__(
        self,
        model: Any = "all-MiniLM-L6-v2",
        max_length: int | None = None,
        seed: int | None = None,
        device: str | None = None,
    ) -> None:
        super().__init__()
        from sentence_transformers import CrossEncoder

        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0
        ):
            raise StudentError(f"max_length must be a positive number of tokens, got {max_length!r}")
        self.seed = seed
        if isinstance(model, CrossEncoder):
            self.model = model
            self.model_name = model_label(model)
            if max_length is not None:
                self.model.max_seq_length = max_length
        else:
            with torch.random.fork_rng(devices=[], enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(seed)
                self.model, self.model_name = load_student_model(
                    model, CrossEncoder, device=device, num_labels=1, max_length=max_length
                )
        # A folder saved as a bi-encoder (BertModel, ...) has no classification head: the one
        # transformers adds is freshly initialised (optim.head_lr can give it its own learning rate).
        architectures = getattr(self.model.config, "architectures", None) or []
        self.head_is_new = not any(a.endswith("ForSequenceClassification") for a in architectures)
        if self.model.num_labels != 1:
            raise StudentError(
                "a cross-encoder student needs exactly one output logit, the model has "
                f"{self.model.num_labels}"
            )

    def forward_scores(
        self, queries: Sequence[str], docs_lists: Sequence[Sequence[str]], mask: Tensor | None = None
    ) -> StudentOutput:
        from sentence_transformers.util import batch_to_device

        layout = layout_batch(queries, docs_lists, mask)
        pairs = [(layout.queries[r], d) for r, d in zip(layout.rows.tolist(), layout.flat_docs, strict=True)]
        features = batch_to_device(self.model.preprocess(pairs), self.device)
        logits = self.model(features)["scores"].reshape(-1)
        return StudentOutput(
            scores=layout.scatter(logits),
            mask=layout.mask.to(logits.device),
            regularization_loss=logits.new_zeros(()),
        )

    def new_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters initialised from scratch when this student was built: the classification
        head (every module of the transformers model outside its base encoder) when the checkpoint
        had none, else nothing."""
        if not self.head_is_new:
            return []
        hf = self.model.model
        prefix = f"{hf.base_model_prefix}."
        return [p for name, p in hf.named_parameters() if not name.startswith(prefix)]

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "max_length": int(self.model.max_seq_length) if self.model.max_seq_length else None,
            "seed": self.seed,
        }

"""Plain data types shared by every stage.

Runs and qrels are plain nested dicts, the shape ir_measures, ranx, pytrec_eval and BEIR all accept:
``Run = {qid: {docid: score}}`` (higher is better) and ``Qrels = {qid: {docid: grade}}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Document", "Qrels", "Query", "Run"]

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class Query:
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def full_text(self) -> str:
        """Title and text joined the way BEIR baselines index them (title, a space, then text)."""
        return f"{self.title} {self.text}".strip() if self.title else self.text

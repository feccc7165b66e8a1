"""distilir: retrieval distillation — teachers score query-document lists, students learn from the
scores, and the distilled student is evaluated and served through `distilir_index`."""

from distilir.types import Document, Qrels, Query, Run

__version__ = "0.1.0"

__all__ = ["Document", "Qrels", "Query", "Run", "__version__"]

"""A new index kind in one module: exact inner-product search over a numpy matrix.

Registered in the test with one line:
``register_index_kind("numpy-flat", "tests.distilir.extensions.numpy_index:NumpyFlatIndex")``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from distilir_index.base import ArtifactDir, BaseIndex, Hit, read_manifest


class NumpyFlatIndex(BaseIndex):
    kind = "numpy-flat"
    help = "exact inner product over an in-memory numpy matrix (vectors given by the caller)"

    def __init__(self, dimension: int = 8) -> None:
        self.dimension = int(dimension)
        self.ids: list[str] = []
        self.vectors = np.zeros((0, self.dimension), dtype=np.float32)

    def add(self, ids: Sequence[str], vectors: Any = None) -> None:
        self.ids.extend(ids)
        self.vectors = np.vstack([self.vectors, np.asarray(vectors, dtype=np.float32)])

    def delete(self, ids: Iterable[str]) -> int:
        drop = set(ids)
        keep = [i for i, d in enumerate(self.ids) if d not in drop]
        removed = len(self.ids) - len(keep)
        self.ids, self.vectors = [self.ids[i] for i in keep], self.vectors[keep]
        return removed

    def search(self, queries: Any, k: int = 10, **kwargs: Any) -> list[list[Hit]]:
        k = self.check_k(k)
        scores = np.asarray(queries, dtype=np.float32) @ self.vectors.T
        out = []
        for row in scores:
            top = np.argsort(-row, kind="stable")[:k]
            out.append([Hit(id=self.ids[j], score=float(row[j])) for j in top])
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        with ArtifactDir(path, kind=self.kind) as art:
            art.write("vectors", "vectors.npy", self._write_vectors)
            art.commit(
                settings={"dimension": self.dimension, "ids": self.ids}, corpus={"count": len(self.ids)}
            )
        return Path(path)

    def _write_vectors(self, tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, self.vectors)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> NumpyFlatIndex:
        manifest = read_manifest(path, kind=cls.kind)
        index = cls(manifest["settings"]["dimension"])
        index.ids = list(manifest["settings"]["ids"])
        index.vectors = np.load(Path(path) / manifest["files"]["vectors"])
        return index

    def __len__(self) -> int:
        return len(self.ids)

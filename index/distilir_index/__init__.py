"""distilir-index: the serving index of distilir (dense FAISS, sparse inverted, BM25, hybrid fusion,
the Retriever API and a REST service). Never imports `distilir`."""

from distilir_index.base import FORMAT, ArtifactDir, CorpusFingerprint, Hit, Index, IndexError_, ManifestError, read_manifest

__version__ = "0.1.0"

__all__ = [
    "FORMAT",
    "ArtifactDir",
    "CorpusFingerprint",
    "Hit",
    "Index",
    "IndexError_",
    "ManifestError",
    "__version__",
    "read_manifest",
]

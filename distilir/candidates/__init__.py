"""First-stage candidate lists and negative sampling (the lists a teacher will score)."""

from distilir.candidates.first_stage import (
    RETRIEVERS,
    FirstStageConfig,
    build_index,
    index_path,
    iter_search,
    retrieve,
)
from distilir.candidates.sampling import SamplingConfig, sample_candidates
from distilir.candidates.store import read_candidates, write_candidates

__all__ = [
    "RETRIEVERS",
    "FirstStageConfig",
    "SamplingConfig",
    "build_index",
    "index_path",
    "iter_search",
    "read_candidates",
    "retrieve",
    "sample_candidates",
    "write_candidates",
]

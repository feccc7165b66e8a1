"""The data layer: one `Dataset` protocol, loaders for BEIR folders, ir_datasets ids and local files,
and the TREC file formats.

    from distilir.data import load_dataset
    ds = load_dataset("scifact")   # a folder in $DISTILIR_DATA_DIR, a path, or an ir_datasets id
    ds.queries("test"), ds.qrels("test"), ds.iter_corpus()
"""

from distilir.data.base import (
    BaseDataset,
    Dataset,
    DatasetError,
    DatasetUnavailable,
    DatasetWarning,
    ValidationIssue,
    ValidationReport,
)
from distilir.data.beir import BeirDataset, is_beir_folder
from distilir.data.irds import IrDatasetsDataset
from distilir.data.local import LocalDataset
from distilir.data.registry import (
    available_datasets,
    load_dataset,
    register_local,
    registered_datasets,
    registry_path,
    resolve_data_dir,
    unregister_local,
)
from distilir.data.trec import read_qrels, read_run, read_topics, sorted_ranking, write_qrels, write_run

__all__ = [
    "BaseDataset",
    "BeirDataset",
    "Dataset",
    "DatasetError",
    "DatasetUnavailable",
    "DatasetWarning",
    "IrDatasetsDataset",
    "LocalDataset",
    "ValidationIssue",
    "ValidationReport",
    "available_datasets",
    "is_beir_folder",
    "load_dataset",
    "read_qrels",
    "read_run",
    "read_topics",
    "register_local",
    "registered_datasets",
    "registry_path",
    "resolve_data_dir",
    "sorted_ranking",
    "unregister_local",
    "write_qrels",
    "write_run",
]

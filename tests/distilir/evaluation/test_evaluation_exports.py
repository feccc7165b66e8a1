"""The public surface of distilir.evaluation and distilir.data is what we mean to export."""

from __future__ import annotations

import distilir.data
import distilir.evaluation


def test_evaluation_exports():
    assert set(distilir.evaluation.__all__) == {
        "DEFAULT_MEASURES",
        "EvalResult",
        "EvaluationError",
        "EvaluationWarning",
        "compare_table",
        "evaluate",
        "format_table",
        "paired_test",
        "resolve_measure",
    }
    assert distilir.evaluation.DEFAULT_MEASURES == ("nDCG@10", "RR@10", "R@100", "R@1000")
    for name in distilir.evaluation.__all__:
        assert getattr(distilir.evaluation, name) is not None


def test_data_exports():
    required = {
        "Dataset",
        "load_dataset",
        "BeirDataset",
        "register_local",
        "DatasetError",
        "resolve_data_dir",
    }
    assert required <= set(distilir.data.__all__)
    assert set(distilir.data.__all__) == {
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
    }
    for name in distilir.data.__all__:
        assert getattr(distilir.data, name) is not None

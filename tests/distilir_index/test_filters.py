"""Pre-filtering predicates against hand-written expectations."""

import numpy as np
import pytest
from distilir_index.filters import FilterError, allowed_positions, compile_filter

META = [{"year": 2019, "lang": "en"}, {"year": 2021, "lang": "de"}, {}, {"year": 2022, "lang": "en"}]
IDS = {"a": 0, "b": 1, "c": 2, "d": 3}


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"year": 2021}, [1]),
        ({"lang": ["en"]}, [0, 3]),
        ({"year": {"$gte": 2020}}, [1, 3]),
        ({"year": {"$gt": 2019, "$lt": 2022}}, [1]),
        ({"lang": {"$ne": "en"}}, [1, 2]),
        ({"lang": {"$nin": ["en"]}}, [1, 2]),
        ({"year": {"$exists": False}}, [2]),
        ({"year": {"$gte": 2019}, "lang": "en"}, [0, 3]),
    ],
)
def test_conditions(spec, expected):
    assert allowed_positions(META, spec).tolist() == expected


def test_ids_and_live_mask_combine_with_conditions():
    live = np.array([True, True, True, False])
    got = allowed_positions(META, {"lang": "en"}, ids=["a", "d", "unknown"], id_to_position=IDS, live=live)
    assert got.tolist() == [0]


def test_no_filter_means_none():
    assert allowed_positions(META, None) is None and compile_filter({}) is None


def test_bad_filters_are_explained():
    with pytest.raises(FilterError, match=r"unknown filter operator '\$like'"):
        compile_filter({"lang": {"$like": "e%"}})
    with pytest.raises(FilterError, match=r"\$in on field 'lang' needs a list"):
        compile_filter({"lang": {"$in": "en"}})
    with pytest.raises(FilterError, match="must be a mapping"):
        compile_filter(["lang"])
    with pytest.raises(FilterError, match="single string"):
        allowed_positions(META, None, ids="a", id_to_position=IDS)


def test_incomparable_types_do_not_pass_rather_than_crash():
    assert allowed_positions([{"year": "unknown"}, {"year": 2020}], {"year": {"$gt": 2000}}).tolist() == [1]

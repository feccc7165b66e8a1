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


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"$and": [{"lang": "en"}, {"year": {"$gte": 2020}}]}, [3]),
        ({"$or": [{"lang": "de"}, {"year": 2019}]}, [0, 1]),
        ({"$not": {"lang": "en"}}, [1, 2]),
        ({"year": {"$not": {"$gte": 2020}}}, [0, 2]),
        (
            {"$or": [{"$and": [{"lang": "en"}, {"year": {"$gt": 2020}}]}, {"year": {"$exists": False}}]},
            [2, 3],
        ),
        ({"year": {"$in": list(range(2000, 52_000))}}, [0, 1, 3]),  # a 50,000-value $in, as a set
    ],
)
def test_logical_operators_at_any_level(spec, expected):
    assert allowed_positions(META, spec).tolist() == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"$and": {"lang": "en"}}, r"\$and needs a non-empty list"),
        ({"$or": []}, r"\$or needs a non-empty list"),
        ({"$where": "1"}, r"unknown filter key '\$where'"),
        ({"$gte": 3}, r"unknown filter key '\$gte'.*go inside a field's condition"),
        ({"year": {"$exists": "false"}}, r"\$exists on field 'year' needs true or false"),
        ({"year": {}}, r"the condition on field 'year' is empty"),
        ({"year": {"gte": 3}}, r"'gte' inside the condition on field 'year' is not an operator"),
        ({"year": {"$gt": [1]}}, r"\$gt on field 'year' takes a number or a string"),
        ({"year": {"$eq": {"a": 1}}}, r"\$eq on field 'year' takes a scalar"),
        ({"$lenient": "yes", "year": 1}, r"\$lenient needs true or false"),
    ],
)
def test_anything_outside_the_grammar_names_the_offending_key(spec, message):
    with pytest.raises(FilterError, match=message):
        allowed_positions(META, spec)


def test_a_field_no_document_has_is_an_error_unless_lenient():
    with pytest.raises(FilterError, match=r"no document of this index has the field\(s\) \['yaer'\].*"
                       r"fields present: \['lang', 'year'\]"):  # fmt: skip
        allowed_positions(META, {"yaer": {"$gte": 2020}})
    with pytest.raises(FilterError, match="yaer"):  # also under $ne, which would match everything
        allowed_positions(META, {"$or": [{"lang": "en"}, {"yaer": {"$ne": 1}}]})
    assert allowed_positions(META, {"$lenient": True, "yaer": {"$ne": 1}}).tolist() == [0, 1, 2, 3]
    # a field only some documents have is known, even when the ids restrict to others
    assert allowed_positions(META, {"year": 2019}, ids=["c"], id_to_position=IDS).tolist() == []

"""build_teacher / parse_teacher_spec: the spec grammar, dict and YAML forms, clear errors."""

from __future__ import annotations

import pytest
import yaml

import distilir.teachers as teachers
from distilir.teachers import (
    DEFAULT_OFFLINE_TEACHER,
    TEACHERS,
    BM25Teacher,
    EnsembleTeacher,
    TeacherError,
    build_teacher,
    parse_teacher_spec,
)

CORPUS = {"d1": "solar panels convert sunlight", "d2": "wind turbines generate power", "d3": "cats purr"}


def test_grammar():
    assert parse_teacher_spec("cross-encoder:org/model?max_length=256&activation=sigmoid") == {
        "kind": "cross-encoder",
        "target": "org/model",
        "max_length": 256,
        "activation": "sigmoid",
    }
    assert parse_teacher_spec("bm25?k1=1.2&b=0.75") == {"kind": "bm25", "target": None, "k1": 1.2, "b": 0.75}
    assert parse_teacher_spec("llm-listwise:/models/x.gguf?window=20&stride=10") == {
        "kind": "llm-listwise",
        "target": "/models/x.gguf",
        "window": 20,
        "stride": 10,
    }
    assert parse_teacher_spec("openai:http://127.0.0.1:8000?model=smol&mode=yes_no") == {
        "kind": "openai",
        "target": "http://127.0.0.1:8000",
        "model": "smol",
        "mode": "yes_no",
    }
    assert parse_teacher_spec("llm-pointwise:m?mode=query_likelihood&progress=false&prompt=none") == {
        "kind": "llm-pointwise",
        "target": "m",
        "mode": "query_likelihood",
        "progress": False,
        "prompt": None,
    }
    assert parse_teacher_spec("dense:all-MiniLM-L6-v2")["kind"] == "bi-encoder"  # alias
    default = parse_teacher_spec(DEFAULT_OFFLINE_TEACHER)
    assert default == {
        "kind": "ensemble",
        "normalization": "zscore",
        "members": [
            {"kind": "bi-encoder", "target": "all-mpnet-base-v2", "weight": 1.0},
            {"kind": "splade", "target": "splade-tiny", "weight": 1.0},
            {"kind": "bm25", "target": None, "weight": 1.0},
        ],
    }
    ens = parse_teacher_spec("ensemble?normalization=rank:llm-pointwise:m?mode=yes_no*2.5+bm25?k1=1.2+splade")
    assert ens["normalization"] == "rank"
    assert ens["members"] == [
        {"kind": "llm-pointwise", "target": "m", "mode": "yes_no", "weight": 2.5},
        {"kind": "bm25", "target": None, "k1": 1.2, "weight": 1.0},
        {"kind": "splade", "target": None, "weight": 1.0},
    ]


def test_errors_are_helpful():
    with pytest.raises(TeacherError) as err:
        build_teacher("colbert:foo")
    msg = str(err.value)
    assert "colbert" in msg and all(kind in msg for kind in TEACHERS) and DEFAULT_OFFLINE_TEACHER in msg
    with pytest.raises(TeacherError, match="needs the corpus"):
        build_teacher("bm25")
    with pytest.raises(TeacherError, match="needs a TARGET"):
        build_teacher("cross-encoder")
    with pytest.raises(TeacherError, match="no members"):
        parse_teacher_spec("ensemble:")
    with pytest.raises(TeacherError, match="key=value"):
        parse_teacher_spec("bm25?k1")
    with pytest.raises(TeacherError, match="cannot build"):
        build_teacher("bm25?kone=1", corpus=CORPUS)
    with pytest.raises(TeacherError, match="'kind'"):
        build_teacher({"model": "x"})


def test_builds_bm25_and_ensembles_from_string_dict_and_yaml(tmp_path):
    bm25 = build_teacher("bm25?k1=1.2", corpus=CORPUS)
    assert isinstance(bm25, BM25Teacher) and bm25.k1 == 1.2 and bm25.stats.n_docs == 3
    assert bm25.score("solar power", list(CORPUS.values())) == BM25Teacher(CORPUS, k1=1.2).score(
        "solar power", list(CORPUS.values())
    )

    spec = "ensemble?normalization=rank:bm25*2+bm25?k1=1.2"
    ens = build_teacher(spec, corpus=CORPUS)
    assert isinstance(ens, EnsembleTeacher) and ens.normalization == "rank"
    assert [w for _, w in ens.members] == [2.0, 1.0] and ens.members[1][0].k1 == 1.2

    as_dict = {
        "kind": "ensemble",
        "normalization": "rank",
        "members": [{"kind": "bm25", "weight": 2}, {"spec": "bm25?k1=1.2"}],
    }
    assert build_teacher(as_dict, corpus=CORPUS).fingerprint == ens.fingerprint
    file = tmp_path / "teacher.yaml"
    file.write_text(yaml.safe_dump(as_dict))
    assert build_teacher(str(file), corpus=CORPUS).fingerprint == ens.fingerprint
    assert build_teacher(file, corpus=CORPUS).fingerprint == ens.fingerprint

    # stats from a JSON file instead of a corpus
    stats = tmp_path / "stats.json"
    stats.write_text(__import__("json").dumps(BM25Teacher(CORPUS).stats.to_dict()))
    assert build_teacher(f"bm25:{stats}").fingerprint == BM25Teacher(CORPUS).fingerprint


def test_openai_options_go_to_backend_and_teacher():
    pytest.importorskip("httpx")
    t = build_teacher("openai:http://127.0.0.1:9?model=served-name&timeout=1.5&mode=yes_no")
    from distilir.teachers.llm_pointwise import LLMPointwiseTeacher

    assert isinstance(t, LLMPointwiseTeacher) and t.score_type == "logit"
    model = t.get_config_dict()["model"]
    assert model["base_url"] == "http://127.0.0.1:9" and model["model"] == "served-name"
    lw = build_teacher(
        {
            "kind": "openai",
            "url": "http://127.0.0.1:9",
            "model": "m",
            "teacher": "listwise",
            "window": 4,
            "stride": 2,
        }
    )
    assert lw.get_config_dict()["window"] == 4


def test_exported_members():
    assert set(teachers.__all__) == {
        "DEFAULT_OFFLINE_TEACHER",
        "NORMALIZATIONS",
        "SCORE_TYPES",
        "TEACHERS",
        "BM25Stats",
        "BM25Teacher",
        "BaseTeacher",
        "BiEncoderTeacher",
        "CrossEncoderTeacher",
        "EnsembleTeacher",
        "LLMListwiseTeacher",
        "LLMPointwiseTeacher",
        "OpenAIBackend",
        "SparseTeacher",
        "StoreError",
        "Teacher",
        "TeacherError",
        "TeacherStore",
        "build_teacher",
        "normalize_scores",
        "parse_teacher_spec",
        "rank_candidates",
        "teach",
        "teacher_fingerprint",
        "text_hash",
    }
    for name in teachers.__all__:
        assert getattr(teachers, name) is not None

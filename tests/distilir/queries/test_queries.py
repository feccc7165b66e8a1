"""The synthetic-query stage: generators, the resumable deduplicated store, the dataset view, filtering.

Real data (scifact from ../shared/data). The doc2query and OpenAI tests use stand-ins for the *model*
only, as they say: a tiny randomly initialised T5 and a loopback HTTP server that answers like a
completions endpoint."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from distilir.data import load_dataset
from distilir.queries import (
    GENERATORS,
    QueryGeneratorError,
    QueryStore,
    QueryStoreError,
    as_dataset,
    build_generator,
    filter_queries,
    generate_queries,
    parse_generator_spec,
)
from distilir.queries.pseudo import split_sentences
from distilir.queries.store import normalise_query
from distilir.types import Document


@pytest.fixture(scope="module")
def scifact():
    return load_dataset("scifact")


def test_split_sentences():
    assert split_sentences("One thing. Two things! 3 more? end") == [
        "One thing.",
        "Two things!",
        "3 more? end",
    ]
    assert split_sentences("e.g. this stays one") == ["e.g. this stays one"]


def test_crop_is_seeded_and_respects_lengths():
    gen = build_generator("crop?per_doc=2&min_words=3&max_words=6")
    doc = Document("d", "Alpha beta gamma delta. Short. Epsilon zeta eta theta iota. W " + "w " * 20 + "end.")
    a = gen.generate([doc], [1])[0]
    assert a == gen.generate([doc], [1])[0]
    assert len(a) == 2
    assert all(3 <= len(t.split()) <= 6 and kind == "sentence" for t, kind in a)
    dropped = build_generator("crop?per_doc=1&word_dropout=0.5&min_words=3&max_words=6").generate([doc], [3])[
        0
    ]
    assert len(dropped[0][0].split()) < 6


def test_title_generator():
    gen = build_generator("title")
    out = gen.generate([Document("a", "x", title="A Title Here"), Document("b", "x", title="")], [0, 0])
    assert out == [[("A Title Here", "title")], []]


def test_spec_errors_name_what_to_do():
    assert parse_generator_spec("crop?per_doc=3&word_dropout=0.1") == (
        "crop",
        None,
        {"per_doc": 3, "word_dropout": 0.1},
    )
    with pytest.raises(
        QueryGeneratorError, match="unknown query generator kind 'nope'; registered kinds: crop"
    ):
        build_generator("nope")
    with pytest.raises(QueryGeneratorError, match="per_doc"):
        build_generator("crop?per_doc=0")
    with pytest.raises(QueryGeneratorError, match="key=value"):
        build_generator("crop?per_doc")
    assert set(GENERATORS) == {"title", "crop", "llm", "openai", "doc2query"}


def test_every_registered_generator_imports():
    for kind in GENERATORS:
        cls = GENERATORS.get(kind)
        assert cls.kind == kind and cls.help


def test_store_resume_equals_uninterrupted(scifact, tmp_path):
    gen = build_generator("crop?per_doc=2")
    whole, stats = generate_queries(scifact, gen, tmp_path / "whole", seed=5, max_docs=300, progress=False)
    assert stats["queries"] == len(whole) > 300
    # "killed" after the first 100 documents, then resumed
    generate_queries(scifact, gen, tmp_path / "resumed", seed=5, max_docs=100, batch_docs=32, progress=False)
    _, again = generate_queries(scifact, gen, tmp_path / "resumed", seed=5, max_docs=300, progress=False)
    assert again["skipped_done"] == 100
    a, b = QueryStore.open(tmp_path / "whole"), QueryStore.open(tmp_path / "resumed")
    assert {q: v.text for q, v in a.queries().items()} == {q: v.text for q, v in b.queries().items()}
    assert b.manifest["generator"]["fingerprint"] == gen.fingerprint
    assert b.manifest["dataset"]["name"] == "scifact"
    src = b.source_documents()
    assert all(q.startswith(src[q]) for q in src)


def test_store_dedups_and_drops_empty(tmp_path):
    class Echo(build_generator("title").__class__):  # a generator that repeats itself (test stand-in)
        kind = "title"

        def generate(self, docs, seeds):
            return [[("Same Query.", "title"), ("same   query", "title"), ("", "title")] for _ in docs]

    gen = Echo()
    docs = [Document(str(i), "text", title="t") for i in range(3)]
    with QueryStore.open(tmp_path / "s", gen) as store:
        store.generate(gen, docs, progress=False)
    store = QueryStore.open(tmp_path / "s")
    assert len(store) == 1
    assert store.manifest["counts"] == {"queries": 1, "documents": 3, "duplicates": 5, "empty": 3}
    assert normalise_query(" Same Query. ") == "same query"


def test_store_refuses_other_generator_seed_or_corpus(scifact, tmp_path):
    generate_queries(scifact, build_generator("crop?per_doc=1"), tmp_path / "s", max_docs=5, progress=False)
    with pytest.raises(QueryStoreError, match="not of crop"):
        generate_queries(
            scifact, build_generator("crop?per_doc=2"), tmp_path / "s", max_docs=5, progress=False
        )
    with pytest.raises(QueryStoreError, match="seed"):
        generate_queries(
            scifact, build_generator("crop?per_doc=1"), tmp_path / "s", seed=9, max_docs=5, progress=False
        )
    cranfield = load_dataset("cranfield")
    with pytest.raises(QueryStoreError, match="corpus changed|name"):
        generate_queries(
            cranfield, build_generator("crop?per_doc=1"), tmp_path / "s", max_docs=5, progress=False
        )
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(QueryStoreError, match="no query-store manifest"):
        generate_queries(scifact, build_generator("title"), tmp_path / "other", max_docs=5, progress=False)
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


def test_torn_part_is_removed_on_resume(scifact, tmp_path):
    gen = build_generator("crop?per_doc=1")
    generate_queries(scifact, gen, tmp_path / "s", max_docs=10, progress=False)
    (tmp_path / "s" / "parts" / "part-00001.jsonl").write_text('{"id": "torn"')  # not in the manifest
    _, stats = generate_queries(scifact, gen, tmp_path / "s", max_docs=20, progress=False)
    assert stats["skipped_done"] == 10
    assert "torn" not in QueryStore.open(tmp_path / "s").queries()


def test_view_adds_a_split(scifact, tmp_path):
    store, _ = generate_queries(
        scifact, build_generator("crop?per_doc=1"), tmp_path / "s", max_docs=20, progress=False
    )
    store = QueryStore.open(tmp_path / "s")
    view = as_dataset(scifact, store.queries(), qrels=store.pseudo_qrels())
    assert view.splits() == [*scifact.splits(), "synthetic"]
    assert view.queries("synthetic").keys() == store.queries().keys()
    assert view.qrels("synthetic") == store.pseudo_qrels()
    assert view.queries("test") == scifact.queries("test")
    assert view.name == scifact.name and len(view.corpus()) == len(scifact.corpus())
    with pytest.raises(ValueError, match="already has split"):
        as_dataset(scifact, store.queries(), split="test")


def test_holdout_is_seeded_disjoint_and_judged_by_source(scifact, tmp_path):
    generate_queries(scifact, build_generator("crop?per_doc=2"), tmp_path / "s", max_docs=30, progress=False)
    store = QueryStore.open(tmp_path / "s")
    train, dev, qrels = store.holdout(10, seed=3)
    assert len(dev) == 10 and not set(train) & set(dev)
    assert set(train) | set(dev) == set(store.queries())
    src = store.source_documents()
    assert qrels == {q: {src[q]: 1} for q in dev}
    assert store.holdout(10, seed=3)[1].keys() == dev.keys()
    assert store.holdout(10, seed=4)[1].keys() != dev.keys()
    with pytest.raises(QueryStoreError, match="cannot hold out"):
        store.holdout(len(store.queries()))


def test_filter_rules():
    sources = {"a": "d1", "b": "d2", "c": "d3", "d": "d4", "e": "d5"}
    teacher = {
        "a": {"d1": 5.0, "x": 1.0},
        "b": {"d2": 1.0, "x": 3.0},  # the teacher prefers another document
        "c": {"d3": 2.0},
        "d": {"d4": 9.0},
        "e": {"d5": 4.0},
    }
    first = {q: {sources[q]: 1.0} for q in sources}
    first["d"] = {"zz": 1.0}  # the first stage misses d4
    kept, stats = filter_queries(sources, teacher, first, first_stage_depth=20, drop_quantile=0.34)
    # passed: a (5), c (2), e (4); the lowest third (c) goes
    assert kept == ["a", "e"]
    assert (
        stats["not_teacher_top"] == 1 and stats["not_in_first_stage"] == 1 and stats["low_teacher_score"] == 1
    )
    kept, _ = filter_queries(
        sources, teacher, None, first_stage_depth=None, require_teacher_top=False, drop_quantile=0
    )
    assert kept == list(sources)


def _tiny_t5(folder, tokenizer_path):
    """A randomly initialised 1-layer T5 with the MiniLM tokenizer: a stand-in for a doc2query model."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    cfg = T5Config(
        vocab_size=tok.vocab_size,
        d_model=16,
        d_ff=32,
        d_kv=4,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=tok.pad_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.sep_token_id,
    )
    T5ForConditionalGeneration(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)


def test_doc2query_generator_with_a_tiny_model(tmp_path, minilm_path, scifact):
    _tiny_t5(tmp_path / "t5", minilm_path)
    gen = build_generator(f"doc2query:{tmp_path / 't5'}?per_doc=2&max_new_tokens=6")
    docs = [scifact.corpus()[d] for d in sorted(scifact.corpus())[:3]]
    out = gen.generate(docs, [1, 2, 3])
    assert len(out) == 3 and all(len(x) <= 2 for x in out) and sum(map(len, out)) > 0
    assert gen.get_config_dict()["weights"]  # a local folder is fingerprinted


class _Completions(BaseHTTPRequestHandler):
    """Loopback stand-in for a completions server: answers with the prompt's first passage word."""

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        word = body["prompt"].split("Passage: ")[1].split()[0]
        data = json.dumps({"choices": [{"text": f" Question: what is {word}?\nmore"}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_generator_over_http():
    server = HTTPServer(("127.0.0.1", 0), _Completions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        gen = build_generator(f"openai:http://127.0.0.1:{server.server_port}?model=m&types=question,claim")
        out = gen.generate([Document("d", "Aspirin works.")], [0])
        assert out == [[("what is Aspirin?", "question"), ("what is Aspirin?", "claim")]]
        assert "prompts" in gen.get_config_dict()
    finally:
        server.shutdown()


@pytest.mark.slow
def test_llm_generator_smollm2(scifact):
    gen = build_generator("llm:smollm2-135m-instruct?types=question&max_new_tokens=16&temperature=0")
    docs = [scifact.corpus()[d] for d in sorted(scifact.corpus())[:2]]
    out = gen.generate(docs, [0, 1])
    assert len(out) == 2 and all(q and t == "question" for x in out for q, t in x)


def test_cli_generate_info_and_nothing_written_is_an_error(tmp_path, capsys):
    from distilir.cli import main

    out = tmp_path / "q"
    assert (
        main(
            [
                "queries",
                "generate",
                "--dataset",
                "time",
                "--generator",
                "crop?per_doc=1",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["queries"] == len(QueryStore.open(out)) > 0
    assert main(["queries", "info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["generator"]["kind"] == "crop"
    # vaswani documents have no titles: a title generator writes nothing, and says so with exit 1
    empty = tmp_path / "empty"
    assert (
        main(
            [
                "queries",
                "generate",
                "--dataset",
                "vaswani",
                "--generator",
                "title",
                "--out",
                str(empty),
                "--max-docs",
                "50",
                "--quiet",
            ]
        )
        == 1
    )
    assert "wrote no query" in capsys.readouterr().err

"""Poisoning audit (distilir.audit.poison): the HotFlip attack raises a passage's rank on a real (tiny)
model, its differentiable encoder is the served encoder, and the defence's scores match their
definition computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distilir.audit import AttackConfig, DefenceConfig, craft_passage, flag_documents
from distilir.audit.poison import _Encoder

DOCS = [
    "Aspirin lowers the risk of heart attacks in adults over fifty.",
    "The stock market fell sharply on Monday.",
    "Vaccines train the immune system to recognise a virus.",
    "Football is played by two teams of eleven players.",
    "Insulin regulates blood sugar in people with diabetes.",
    "The recipe needs two eggs and a cup of flour.",
    "Antibiotics do not work against viral infections.",
    "Mount Everest is the highest mountain on Earth.",
]


@pytest.fixture(scope="module")
def encoder():
    torch.set_num_threads(1)
    return _Encoder("paraphrase-MiniLM-L3-v2")


def test_the_attack_encoder_is_the_served_encoder(encoder):
    body = encoder.allowed[
        torch.randperm(len(encoder.allowed), generator=torch.Generator().manual_seed(0))[:16]
    ]
    text = encoder.tokenizer.decode(body.tolist())
    with torch.no_grad():
        by_ids = encoder.embed_ids(body[None]).numpy()[0]
    assert float(by_ids @ encoder.encode_texts([text])[0]) > 0.9999
    assert encoder.tokenizer(text, add_special_tokens=False)["input_ids"] == body.tolist()  # round trip


def test_the_attack_raises_a_passage_to_the_top_of_its_target_query(encoder):
    query = "does aspirin prevent heart attacks?"
    passage = craft_passage(encoder, [query], AttackConfig(length=12, steps=25, candidates=32, seed=0))
    vectors = encoder.encode_texts([*DOCS, passage.text])
    scores = vectors @ encoder.encode_texts([query])[0]
    rank = int((scores[:-1] > scores[-1]).sum())  # documents above the passage
    assert passage.history == sorted(passage.history) and len(passage.history) >= 5
    assert passage.history[0] < 0.4 and passage.similarity > 0.6
    assert rank <= 1, (rank, scores.round(3))  # above every unrelated document (7 of 8)
    # the passage was not simply copied from the corpus
    assert passage.text not in DOCS


def test_attack_settings_are_checked():
    with pytest.raises(ValueError, match="AttackConfig.steps must be a positive int"):
        AttackConfig(steps=0)
    with pytest.raises(ValueError, match="at least one target query"):
        craft_passage("paraphrase-MiniLM-L3-v2", [])


def test_the_defence_scores_match_their_definition_by_hand():
    rs = np.random.RandomState(0)
    docs = rs.randn(300, 64).astype(np.float32)
    queries = (0.5 * rs.randn(50, 64) + 3 * np.eye(64)[0]).astype(np.float32)  # queries share a direction
    planted = queries.mean(0, keepdims=True)  # a passage at the queries' mean: in every query's top k
    x = np.concatenate([docs, planted])
    out = flag_documents(x, queries, DefenceConfig(k=5, hub_ratio=10.0, min_occurrence=10, centroid_z=6.0))

    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    top = np.argsort(-(qn @ xn.T), axis=1)[:, :5]
    occurrence = np.bincount(top.ravel(), minlength=len(x))
    np.testing.assert_array_equal(out["occurrence"], occurrence)
    np.testing.assert_allclose(out["hub_ratio"], occurrence / (5 * 50 / len(x)))
    direction = qn.mean(0) / np.linalg.norm(qn.mean(0))
    cen = xn @ direction
    mad = np.median(np.abs(cen - np.median(cen))) * 1.4826
    np.testing.assert_allclose(out["centroid_z"], (cen - np.median(cen)) / mad, rtol=1e-4, atol=1e-4)
    assert out["occurrence"][-1] == 50 and out["flagged"][-1]
    expected = ((out["hub_ratio"] > 10) & (occurrence >= 10)) | (out["centroid_z"] > 6)
    np.testing.assert_array_equal(out["flagged"], expected)
    # a few queries over many documents: ranked by 3 of 3 queries is a large ratio but not "many queries"
    few = flag_documents(
        x, queries[:3], DefenceConfig(k=5, hub_ratio=10.0, min_occurrence=10, centroid_z=50.0)
    )
    assert few["occurrence"][-1] == 3 and few["hub_ratio"][-1] > 10 and not few["flagged"].any()
    assert out["flagged"][:-1].sum() <= 3, out["hub_ratio"][:-1].max()


def test_the_defence_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match=r"expected \[n, d\] documents and \[m, d\] queries"):
        flag_documents(np.zeros((3, 4)), np.zeros((2, 5)))


def _tiny_collection(root, n_queries: int):
    import json as _json

    root.mkdir(parents=True)
    topics = ["aspirin heart", "vaccine virus", "insulin diabetes", "football players"]
    with open(root / "corpus.jsonl", "w") as f:
        for i in range(24):
            f.write(
                _json.dumps({"_id": f"d{i}", "title": "", "text": f"{topics[i % 4]} study number {i}"}) + "\n"
            )
    with open(root / "queries.jsonl", "w") as f:
        for i in range(n_queries):
            f.write(_json.dumps({"_id": f"q{i}", "text": f"what about {topics[i % 4]} {i}?"}) + "\n")
    (root / "qrels").mkdir()
    lines = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{i % 24}\t1" for i in range(n_queries)]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_cli_audit_poison_end_to_end_and_its_bad_input(tmp_path, capsys):
    import json as _json

    from distilir.cli import main

    folder = _tiny_collection(tmp_path / "tiny", 16)
    out = tmp_path / "poison.json"
    argv = ["--quiet", "audit", "poison", "--dataset", str(folder), "--model", "paraphrase-MiniLM-L3-v2"]
    assert main([*argv, "--topics", "1", "--steps", "3", "--length", "8", "--out", str(out)]) == 0
    summary = _json.loads(capsys.readouterr().out)
    report = _json.loads(out.read_text())
    assert summary["attack_top10_rate"] == report["attack_top10_rate"]
    assert len(report["topics"]) == 1 and report["topics"][0]["held_out"] >= 1
    assert 0.0 <= report["detection_rate"] <= 1.0 and set(report["threshold_sweep"]) == {
        "3.0",
        "5.0",
        "10.0",
        "20.0",
    }

    few = _tiny_collection(tmp_path / "few", 3)
    assert (
        main(
            [
                "audit",
                "poison",
                "--dataset",
                str(few),
                "--model",
                "paraphrase-MiniLM-L3-v2",
                "--out",
                str(tmp_path / "x.json"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "3 queries" in err and "at least 8" in err
    assert not (tmp_path / "x.json").exists()

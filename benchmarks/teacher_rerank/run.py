"""Re-ranking BM25's top-100 with each offline teacher and with their ensemble (SciFact test).

First stage: bm25s directly (Lucene BM25, k1=0.9, b=0.4, English stop words + PyStemmer English
stemmer, title + " " + abstract), top ``--depth`` (100) per judged test query. Each teacher re-ranks
those candidates; nDCG@10 and RR@10 come from ir_measures. Teachers:

* ``bm25`` — :class:`BM25Teacher` with the collection's statistics (re-scoring BM25's own list: a
  check that it reproduces the first stage);
* ``bi-encoder:all-mpnet-base-v2`` (cosine), ``splade:splade-tiny`` (dot product),
  ``bi-encoder:all-MiniLM-L6-v2`` (for reference; not an ensemble member);
* the ensemble ``DEFAULT_OFFLINE_TEACHER``: z-scored mpnet + SPLADE + BM25, equal weights — with its
  agreement report (Kendall tau / Spearman of members vs ensemble and pairwise).

Every teacher's scores go through a :class:`TeacherStore` under ``--store-dir`` (default
``$DISTILIR_CACHE/bench/teacher-rerank``), so an interrupted run resumes and a second run re-scores
nothing. Bi-encoder and SPLADE teachers embed each distinct candidate document once.

Usage (heavy: all-mpnet-base-v2 embeds ~5k abstracts at ~12/s on 2 free cores; run it alone)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DISTILIR_DATA_DIR=../shared/data \\
        .venv/bin/python -m benchmarks.teacher_rerank.run

Writes ``benchmarks/reports/teacher_rerank.md`` (``--report``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPORT = HERE.parent / "reports" / "teacher_rerank.md"

#: given in the brief, for comparison (not recomputed here)
REFERENCE = {"BM25 (bm25s, stemmed)": 0.679, "all-MiniLM-L6-v2 (dense retrieval)": 0.645}


def read_beir(folder: Path, split: str):
    corpus: dict[str, str] = {}
    with gzip.open(folder / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            corpus[d["_id"]] = f"{d.get('title') or ''} {d.get('text') or ''}".strip()
    qrels: dict[str, dict[str, int]] = {}
    for line in (folder / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        q, d, s = line.split("\t")
        qrels.setdefault(q, {})[d] = int(s)
    queries: dict[str, str] = {}
    with gzip.open(folder / "queries.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            if q["_id"] in qrels:
                queries[q["_id"]] = q["text"]
    return corpus, queries, qrels


def bm25_first_stage(corpus: dict[str, str], queries: dict[str, str], k: int):
    import bm25s
    import Stemmer

    ids = list(corpus)
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    retriever.index(
        bm25s.tokenize(list(corpus.values()), stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    q_tok = bm25s.tokenize(list(queries.values()), stopwords="en", stemmer=stemmer, show_progress=False)
    docs, scores = retriever.retrieve(q_tok, k=k, show_progress=False, n_threads=1)
    return {
        q: {ids[i]: float(s) for i, s in zip(row, srow, strict=True)}
        for q, row, srow in zip(queries, docs, scores, strict=True)
    }


def evaluate(run, qrels):
    import ir_measures
    from ir_measures import RR, nDCG

    agg = ir_measures.calc_aggregate([nDCG @ 10, RR @ 10], qrels, run)
    per_query = {m.query_id: m.value for m in ir_measures.iter_calc([nDCG @ 10], qrels, run)}
    return agg[nDCG @ 10], agg[RR @ 10], per_query


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("DISTILIR_DATA_DIR"))
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--split", default="test")
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--queries", type=int, default=None, help="a seeded random subset of N judged queries")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-queries", type=int, default=25)
    ap.add_argument("--store-dir", type=Path, default=None)
    ap.add_argument("--skip", default="", help="comma-separated teacher labels to leave out")
    ap.add_argument("--report", type=Path, default=REPORT)
    ap.add_argument(
        "--mpnet-backend",
        default="torch",
        choices=("torch", "onnx"),
        help="all-mpnet-base-v2 on ONNX Runtime (same scores, same store: the backend is runtime only)",
    )
    args = ap.parse_args(argv)
    if not args.data_dir:
        sys.exit("set DISTILIR_DATA_DIR (folder of BEIR collections) or pass --data-dir")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    from distilir_index.models import cache_dir

    from distilir.teachers import DEFAULT_OFFLINE_TEACHER, EnsembleTeacher, TeacherStore, build_teacher

    t_start = time.perf_counter()
    corpus, queries, qrels = read_beir(Path(args.data_dir) / args.dataset, args.split)
    subset = ""
    if args.queries:
        keep = set(random.Random(args.seed).sample(sorted(queries), args.queries))
        queries = {q: t for q, t in queries.items() if q in keep}
        qrels = {q: qrels[q] for q in queries}
        subset = f" (a random subset, seed {args.seed})"
    first = bm25_first_stage(corpus, queries, args.depth)
    candidates = {q: list(first[q]) for q in queries}
    docs = {d: corpus[d] for ds in candidates.values() for d in ds}
    n_pairs = sum(len(v) for v in candidates.values())
    print(f"{len(queries)} queries, {n_pairs} pairs, {len(docs)} distinct candidate documents", flush=True)
    store_root = args.store_dir or cache_dir() / "bench" / "teacher-rerank"
    source = {
        "retriever": "bm25s lucene k1=0.9 b=0.4 stemmed",
        "depth": args.depth,
        "dataset": args.dataset,
        "split": args.split,
        "queries": len(queries),
    }

    rows = []
    first_ndcg, first_rr, first_pq = evaluate(first, qrels)
    rows.append(("BM25 first stage (bm25s)", first_ndcg, first_rr, None, None))

    def rerank(label, teacher):
        store_dir = store_root / f"{args.dataset}-{args.split}-{teacher.fingerprint}"
        with TeacherStore.open(store_dir, teacher, candidate_source=source) as store:
            before = len(store)
            t0 = time.perf_counter()
            store.score(teacher, queries, docs, candidates, batch_queries=args.batch_queries, progress=True)
            seconds = time.perf_counter() - t0
            scored = len(store) - before
            run = {q: store.get(q) for q in candidates}
        ndcg, rr, pq = evaluate(run, qrels)
        rate = scored / seconds if scored else None
        print(
            f"{label}: nDCG@10 {ndcg:.4f} RR@10 {rr:.4f} ({scored} pairs scored in {seconds:.0f} s)",
            flush=True,
        )
        rows.append((label, ndcg, rr, seconds if scored else None, rate))
        return pq

    skip = set(filter(None, args.skip.split(",")))
    corpus_texts = list(corpus.values())
    members = {
        "bm25": build_teacher("bm25", corpus=corpus_texts),
        "splade:splade-tiny": build_teacher("splade:splade-tiny"),
        "bi-encoder:all-mpnet-base-v2": None,
    }
    per_query = {}
    for label in ("bm25", "splade:splade-tiny"):
        per_query[label] = rerank(label, members[label])
    if "minilm" not in skip:
        rerank("bi-encoder:all-MiniLM-L6-v2 (reference)", build_teacher("bi-encoder:all-MiniLM-L6-v2"))
    agreement = None
    if "mpnet" not in skip:
        members["bi-encoder:all-mpnet-base-v2"] = build_teacher(
            f"bi-encoder:all-mpnet-base-v2?backend={args.mpnet_backend}"
        )
        members["bi-encoder:all-mpnet-base-v2"].show_progress = False
        per_query["bi-encoder:all-mpnet-base-v2"] = rerank(
            "bi-encoder:all-mpnet-base-v2", members["bi-encoder:all-mpnet-base-v2"]
        )
        # the ensemble of DEFAULT_OFFLINE_TEACHER, built from the same member objects (their embedding
        # caches are warm); its fingerprint equals build_teacher(DEFAULT_OFFLINE_TEACHER)'s
        ensemble = EnsembleTeacher(
            [
                (members["bi-encoder:all-mpnet-base-v2"], 1.0),
                (members["splade:splade-tiny"], 1.0),
                (members["bm25"], 1.0),
            ],
            normalization="zscore",
        )
        per_query["ensemble"] = rerank(f"ensemble ({DEFAULT_OFFLINE_TEACHER})", ensemble)
        # agreement is tracked while the ensemble scores; a run that found every score in the store
        # has none (recomputing would re-embed every document)
        agreement = ensemble.agreement() if ensemble.agreement()["queries"] else None

    lines = [
        f"# Re-ranking BM25 top-{args.depth} on {args.dataset}/{args.split} with the offline teachers",
        "",
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by "
        f"`python -m benchmarks.teacher_rerank.run {' '.join(argv if argv is not None else sys.argv[1:])}` "
        f"in {time.perf_counter() - t_start:.0f} s on {platform.machine()} with {os.cpu_count()} CPUs "
        f"(shared; load average now {os.getloadavg()[0]:.1f}).",
        "",
        f"{len(queries)} judged queries{subset}, {n_pairs} (query, doc) pairs, {len(docs)} distinct "
        "candidate documents. First stage: bm25s Lucene BM25 k1=0.9 b=0.4, English stop words + stemmer, "
        "title + abstract.",
        "",
        "| run | nDCG@10 | RR@10 | scoring time | pairs/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, ndcg, rr, secs, rate in rows:
        if "first stage" in label:
            t = "—"
        else:
            t = f"{secs:.0f} s" if secs else "(all from the store)"
        lines.append(f"| {label} | {ndcg:.4f} | {rr:.4f} | {t} | {f'{rate:.0f}' if rate else '—'} |")
    lines += [
        "",
        "Given for comparison (not recomputed here): "
        + ", ".join(f"{k} nDCG@10 = {v}" for k, v in REFERENCE.items())
        + ".",
        "",
    ]
    if "ensemble" in per_query:
        ens = per_query["ensemble"]
        lines.append("Ensemble against each member (per-query nDCG@10: wins / ties / losses):")
        lines.append("")
        for label in ("bi-encoder:all-mpnet-base-v2", "splade:splade-tiny", "bm25"):
            other = per_query[label]
            w = sum(ens[q] > other[q] + 1e-12 for q in ens)
            lo = sum(ens[q] < other[q] - 1e-12 for q in ens)
            lines.append(f"- vs {label}: {w} / {len(ens) - w - lo} / {lo}")
        lines.append("")
    if agreement:
        lines += [
            "Agreement over the scored lists (mean over queries):",
            "",
            "| pair | Kendall tau | Spearman |",
            "|---|---:|---:|",
        ]
        for label, v in agreement["member_vs_ensemble"].items():
            lines.append(f"| {label} vs ensemble | {v['kendall_tau']:.3f} | {v['spearman']:.3f} |")
        for label, v in agreement["pairwise"].items():
            lines.append(f"| {label.replace('|', ' vs ')} | {v['kendall_tau']:.3f} | {v['spearman']:.3f} |")
        lines.append("")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

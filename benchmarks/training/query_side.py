"""Query-side distillation on a frozen index (issue: distillation that pays off), on the library.

Pipeline, each step cached under ``--work-dir`` and resumable:

1. the base dense index (all-MiniLM-L6-v2, flat) of the collection: ``--index`` (built with
   ``distilir-index build``); its files are hashed before and after every run;
2. training queries: the collection's train split minus a seeded dev split (``--dev-fraction``) and/or
   synthetic queries from a :class:`distilir.queries.QueryStore` (``--generator``);
3. candidates: RRF of BM25 and the base dense index, top ``--depth``, for every training query;
4. teacher scores of those candidates in a :class:`distilir.teachers.store.TeacherStore`
   (``--teacher``);
5. one query-side run per ``--runs`` entry (:func:`distilir.training.frozen_index.train_query_encoder`),
   model chosen on the dev split; then the test split evaluated once, by full-corpus exact search
   through ``Retriever.load(index, query_encoder=...)``.

Every run, failed ones too, is appended to ``<work-dir>/results.jsonl`` and the report
``benchmarks/reports/query_side.md`` is rewritten from it.

    DISTILIR_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.training.query_side \\
        --dataset scifact --index /work/runs/scifact-minilm-flat --work-dir /work/runs/qs-scifact \\
        --generator 'crop?per_doc=2' --runs kl,kl-synth
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPORT = Path(__file__).resolve().parents[1] / "reports" / "query_side.md"
CHEAP_TEACHER = (
    "ensemble?normalization=zscore:bi-encoder:all-MiniLM-L6-v2?backend=onnx*1+splade:splade-tiny*1+bm25*1"
)

#: name -> (query sources, QuerySideConfig overrides)
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "kl": ("train", {}),
    "kl-synth": ("train+synthetic", {}),
    "synth-only": ("synthetic", {}),
    "kl-t05": ("train+synthetic", {"teacher_temperature": 0.5}),
    "kl-t2": ("train+synthetic", {"teacher_temperature": 2.0}),
    "kl-minmax": ("train+synthetic", {"normalization": "minmax", "teacher_temperature": 0.3}),
    "kl-lr5": ("train+synthetic", {"lr": 5e-5}),
    "kl-2ep": ("train+synthetic", {"epochs": 2}),
    "listkl-synth": ("train+synthetic", {"full_kl": 0.0, "list_kl": 1.0}),
    "listkl": ("train", {"full_kl": 0.0, "list_kl": 1.0}),
    "margin-synth": ("train+synthetic", {"full_kl": 0.0, "margin_mse": 1.0}),
    "margin": ("train", {"full_kl": 0.0, "margin_mse": 1.0}),
    "kl-infonce": ("train+synthetic", {"infonce": 0.1}),
    # the train queries alone, many passes at a higher rate (a query encoder against frozen documents
    # has few queries to learn from; 23 steps per epoch on scifact)
    "kl-10ep": ("train", {"epochs": 10, "lr": 5e-5, "eval_every": 23}),
    "kl-10ep-lr1e4": ("train", {"epochs": 10, "lr": 1e-4, "eval_every": 23}),
    "listkl-10ep": ("train", {"epochs": 10, "lr": 5e-5, "eval_every": 23, "full_kl": 0.0, "list_kl": 1.0}),
    "margin-10ep": (
        "train",
        {"epochs": 10, "lr": 5e-5, "eval_every": 23, "full_kl": 0.0, "margin_mse": 1.0},
    ),
    "synth-only-lr5": ("synthetic", {"lr": 5e-5}),
    "kl-synth-lr1e4": ("train+synthetic", {"lr": 1e-4}),
    "listkl-synth-lr1e4": ("train+synthetic", {"lr": 1e-4, "full_kl": 0.0, "list_kl": 1.0}),
    "margin-synth-lr1e4": ("train+synthetic", {"lr": 1e-4, "full_kl": 0.0, "margin_mse": 1.0}),
    "listkl-10ep-lr1e4": (
        "train",
        {"epochs": 10, "lr": 1e-4, "eval_every": 23, "full_kl": 0.0, "list_kl": 1.0},
    ),
    "margin-10ep-lr1e4": (
        "train",
        {"epochs": 10, "lr": 1e-4, "eval_every": 23, "full_kl": 0.0, "margin_mse": 1.0},
    ),
}


def file_hashes(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def candidates(
    ds, texts: dict[str, str], index_path: Path, depth: int, work: Path
) -> dict[str, dict[str, float]]:
    """RRF(BM25, base dense) top ``depth``; cached per query set."""
    from distilir_index.dense import DenseIndex
    from distilir_index.hybrid import HybridIndex

    from distilir.candidates.first_stage import FirstStageConfig, build_index, iter_search
    from distilir.conventions import conventions_for

    key = hashlib.sha256(json.dumps(sorted(texts.items())).encode()).hexdigest()[:12]
    file = work / f"candidates-{depth}-{key}.json"
    if file.is_file():
        return json.loads(file.read_text())
    bm25 = build_index(ds, FirstStageConfig("bm25"), cache_dir=work / "indexes")
    dense = DenseIndex.load(index_path)
    hybrid = HybridIndex(bm25, dense, method="rrf", rrf_k=60)
    drop_self = conventions_for(ds.name).ignore_identical_ids  # ArguAna: a query is also a document
    run = dict(iter_search(hybrid, texts, k=depth, drop_self=drop_self, desc="candidates (RRF bm25+dense)"))
    file.write_text(json.dumps(run))
    return run


def teacher_scores(ds, queries, cands, spec: str, work: Path, index_path: Path) -> tuple[dict, str]:
    from distilir.teachers import BiEncoderTeacher, TeacherError, TeacherStore, build_teacher, teach

    corpus = ds.corpus()
    teacher = build_teacher(spec, corpus={d.id: d.full_text for d in corpus.values()})
    path = work / "stores" / f"{ds.name}-{teacher.fingerprint}"
    # a bi-encoder member that is the base index's own model takes the index's vectors: no document is
    # encoded twice by the same model
    for member, _ in getattr(teacher, "members", [(teacher, 1.0)]):
        if isinstance(member, BiEncoderTeacher):
            try:
                added = member.seed_from_index(index_path, {d.id: d.full_text for d in corpus.values()})
                print(f"{member.name}: {added} document embeddings taken from {index_path}")
            except TeacherError as exc:
                print(f"{member.name}: encodes its own documents ({exc})")
    lists = {q: c for q, c in cands.items() if q in queries}
    t0 = time.perf_counter()
    _, stats = teach(
        ds,
        lists,
        teacher,
        path,
        batch_queries=64,
        candidate_source={"retriever": "rrf(bm25, dense all-MiniLM-L6-v2)"},
    )
    print(f"teacher store {path}: {stats} in {time.perf_counter() - t0:.0f}s")
    with TeacherStore.open(path) as store:
        return store.to_run(), teacher.fingerprint


def evaluate_test(
    ds, split: str, index_path: Path, model_dir: Path | None, depth: int = 100, qids: list[str] | None = None
) -> dict[str, float]:
    """Exact full-corpus search of ``split``'s queries (or ``qids``) through the Retriever, evaluated
    with the collection's conventions (ArguAna: self-hits dropped)."""
    from distilir_index import Retriever

    from distilir.conventions import conventions_for
    from distilir.evaluation import evaluate

    retriever = Retriever.load(index_path, query_encoder=str(model_dir) if model_dir else None)
    queries = ds.queries(split)
    qids = sorted(qids if qids is not None else queries)
    conv = conventions_for(ds.name)
    hits = retriever.search_many([queries[q].text for q in qids], k=depth + int(conv.ignore_identical_ids))
    run = {q: {h.id: float(h.score) for h in hs} for q, hs in zip(qids, hits, strict=True)}
    qrels = ds.qrels(split)
    res = evaluate(run, {q: qrels[q] for q in qids}, ["nDCG@10", "R@100"], conventions=conv)
    return {k: round(v, 4) for k, v in res.aggregate.items()}, res


def write_report(work_dirs: list[Path], out: Path = REPORT) -> None:
    """The report from every ``results.jsonl`` row of ``work_dirs`` (failed runs included)."""
    rows = []
    for w in work_dirs:
        f = Path(w) / "results.jsonl"
        if f.is_file():
            rows += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    seen, unique = set(), []
    for r in rows:  # a rerun that found its run already finished repeats that row: keep the first
        key = r.get("model") if r["status"] == "ok" else None
        if key is None or key not in seen:
            unique.append(r)
            seen.add(key)
    rows = unique
    lines = [
        "# Query-side distillation on a frozen index",
        "",
        "Generated by `python -m benchmarks.training.query_side` (see its docstring for the pipeline).",
        "Student: all-MiniLM-L6-v2's query encoder; documents: the base index's vectors, never changed",
        "(index file hashes checked before and after every run). Selection on a dev split carved from",
        "the training queries (seeded, by query id); the test split is evaluated once per run, by exact",
        "full-corpus search through `Retriever.load(index, query_encoder=...)`. Every run is listed,",
        "failed ones too.",
        "",
        "| run | dataset | teacher | queries (sources) | settings | dev nDCG@10 (selected step / steps) "
        "| test nDCG@10 | base | Δ | R@100 | index unchanged | train s | status |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in rows:
        base = r.get("base", {}).get("nDCG@10")
        test = (r.get("test") or {}).get("nDCG@10")
        delta = f"{test - base:+.4f}" if test is not None and base is not None else "–"
        sel = (
            f"{r.get('dev_ndcg@10')} ({r.get('selected_step')} / {r.get('steps')})"
            if r["status"] == "ok"
            else "–"
        )
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
        status = r["status"] if r["status"] == "ok" else f"failed: {r.get('error', '')[:120]}"
        lines.append(
            f"| {r['run']} | {r['dataset']} | {teacher_label(r['teacher'])} | "
            f"{r['train_queries']} ({r['sources']}) | {settings} | {sel} | "
            f"{test if test is not None else '–'} | {base} | {delta} | "
            f"{(r.get('test') or {}).get('R@100', '–')} | "
            f"{r.get('index_unchanged')} | {r.get('seconds', '–')} | {status} |"
        )
    lines += [
        "",
        "## Diagnostics (step 1 of the issue): agreement with the teacher, re-ranking, geometry",
        "",
        "Kendall τ / top-1 agreement between the student's and the teacher's order of the teacher-scored",
        "lists (500 seeded training queries; the dev queries, never trained on); nDCG@10 of re-ranking the",
        "dev lists by the student and by the teacher; the free-query bound: full-corpus dev nDCG@10 of one",
        "free query vector per dev query fitted to the teacher's list (`free_query_bound`): what the frozen",
        "document space allows at best; geometry: mean cosine between random documents, a query and random",
        "documents, a query and its top document.",
        "",
        "| run | dataset | train τ / top-1 | dev τ / top-1 | dev re-rank (student / teacher) "
        "| free-query bound | cos doc–doc | cos q–random | cos q–top1 |",
        "|---|---|---|---|---|---:|---:|---:|---:|",
    ]
    for label, dataset, diag in _diagnostic_rows(rows, work_dirs):
        if not diag:
            continue
        ta, da, g = diag.get("train_agreement", {}), diag.get("dev_agreement", {}), diag.get("geometry", {})
        lines.append(
            f"| {label} | {dataset} | {ta.get('kendall_tau', 0):.3f} / {ta.get('top1_agreement', 0):.3f} | "
            f"{da.get('kendall_tau', 0):.3f} / {da.get('top1_agreement', 0):.3f} | "
            f"{diag.get('dev_rerank_ndcg@10')} / {diag.get('dev_teacher_rerank_ndcg@10')} | "
            f"{diag.get('dev_free_query_ndcg@10', '–')} | {g.get('doc_doc_cosine')} | "
            f"{g.get('query_random_doc_cosine')} | {g.get('query_top1_cosine')} |"
        )
    lines += [
        "",
        "Train-list agreement is measured on 500 seeded queries of the run's own training set (train,",
        "synthetic or both), so it is comparable between a run and the base row of the same sources only.",
        "On collections without training queries the dev split is 100 held-out synthetic queries with",
        "their source document as the one relevant document (`--synthetic-dev`); on vaswani it is",
        "saturated (1.0 at step 0: a 30-word crop of a short abstract finds its abstract), so selection",
        "kept the base model there.",
    ]
    teachers = sorted({(r["teacher"], r["generator"], r["depth"]) for r in rows})
    lines += ["", "Teacher / generator / candidate depth of the rows:", ""]
    lines += [f"- `{t}` / `{g}` / RRF(BM25, base dense) top {d}" for t, g, d in teachers]
    lines += [
        "",
        "Defaults of `QuerySideConfig` unless a row says otherwise: lr 2e-5, 1 epoch, batch 32, query "
        "max length 64, warm-up 10%, student temperature 0.05, teacher z-scored per query at temperature 1, "
        "loss = full-corpus KL, dev evaluation every 50 steps, patience 4.",
        "",
    ]
    tmp = out.with_suffix(".md.partial")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)


def teacher_label(spec: str) -> str:
    """``ensemble?...:bi-encoder:all-MiniLM-L6-v2?backend=onnx*1+bm25*1`` -> ``MiniLM-L6 + BM25``."""
    short = {"bi-encoder:all-MiniLM-L6-v2": "MiniLM-L6", "splade:splade-tiny": "SPLADE-tiny", "bm25": "BM25"}
    members = spec.split(":", 1)[1] if spec.startswith("ensemble") else spec
    names = []
    for m in members.split("+"):
        name = m.split("*")[0].split("?")[0]
        names.append(short.get(name, name))
    return " + ".join(names)


def _diagnostic_rows(rows: list[dict], work_dirs: list[Path]):
    """(label, dataset, diagnostics): the base model of each work dir, then every run that has them."""
    for w in work_dirs:
        f = Path(w) / "base-diagnostics.json"
        if f.is_file():
            dataset = next((r["dataset"] for r in rows if Path(r.get("model", "")).is_relative_to(w)), w.name)
            teacher = next((r["teacher"] for r in rows if Path(r.get("model", "")).is_relative_to(w)), None)
            label = f"base (teacher {teacher_label(teacher)})" if teacher else "base"
            yield label, dataset, json.loads(f.read_text())
    for r in rows:
        if r["status"] == "ok":
            yield r["run"], r["dataset"], r.get("diagnostics")


def diagnose(
    index_path: Path,
    model_dir: Path | None,
    train_q: dict,
    dev_q: dict,
    dev_qrels: dict,
    teacher_run: dict,
    conventions=None,
) -> dict:
    """Agreement with the teacher on training lists (500 seeded) and on the dev lists, re-ranking
    quality of the dev lists, full-corpus dev retrieval, and the geometry of the space."""
    import numpy as np
    from distilir_index import Retriever

    from distilir.evaluation import evaluate
    from distilir.evaluation.diagnostics import geometry, list_agreement, rerank_run

    if not dev_q:
        return {}
    retriever = Retriever.load(index_path, query_encoder=str(model_dir) if model_dir else None)
    index = retriever.index
    ids, docs = index.ids(), index.vectors()
    row_of = {d: i for i, d in enumerate(ids)}
    rng = np.random.default_rng(3)
    train_ids = sorted(q for q in train_q if q in teacher_run)
    sample = [train_ids[i] for i in rng.choice(len(train_ids), size=min(500, len(train_ids)), replace=False)]
    out = {}
    for name, qs in (("train", {q: train_q[q] for q in sample}), ("dev", dev_q)):
        qids = sorted(qs)
        vecs = index.encoder.encode_queries([qs[q] for q in qids])
        lists = {q: teacher_run[q] for q in qids if q in teacher_run}
        student = rerank_run(vecs, qids, docs, row_of, lists)
        out[f"{name}_agreement"] = list_agreement(student, lists)
        if name == "dev":
            rr = evaluate(student, {q: dev_qrels[q] for q in qids}, ["nDCG@10"], conventions=conventions)
            out["dev_rerank_ndcg@10"] = round(rr.aggregate["nDCG@10"], 4)
            tr = evaluate(
                {q: dict(lists[q]) for q in lists},
                {q: dev_qrels[q] for q in qids},
                ["nDCG@10"],
                conventions=conventions,
            )
            out["dev_teacher_rerank_ndcg@10"] = round(tr.aggregate["nDCG@10"], 4)
            out["geometry"] = geometry(docs, vecs)
            if model_dir is None:
                out["dev_free_query_ndcg@10"] = free_query_bound_ndcg(
                    vecs, qids, ids, docs, lists, {q: dev_qrels[q] for q in qids}, conventions
                )
    return out


def free_query_bound_ndcg(vecs, qids, ids, docs, lists, qrels, conventions=None) -> float:
    """Full-corpus nDCG@10 of free query vectors fitted to the teacher's lists (see
    :func:`distilir.training.frozen_index.free_query_bound`): the ceiling of query-side training."""
    import numpy as np

    from distilir.evaluation import evaluate
    from distilir.training.frozen_index import free_query_bound

    fitted = free_query_bound(vecs, docs, ids, lists, qids)
    keep = sorted(fitted)
    scores = np.stack([fitted[q] for q in keep]) @ np.asarray(docs).T
    top = np.argsort(-scores, axis=1)[:, :100]
    run = {q: {ids[k]: float(scores[j, k]) for k in top[j]} for j, q in enumerate(keep)}
    res = evaluate(run, {q: qrels[q] for q in keep}, ["nDCG@10"], conventions=conventions)
    return round(res.aggregate["nDCG@10"], 4)


def main(argv: list[str] | None = None) -> int:
    from distilir.conventions import conventions_for
    from distilir.data import load_dataset
    from distilir.queries import QueryStore, as_dataset, build_generator, generate_queries
    from distilir.training.frozen_index import QuerySideConfig, split_dev, train_query_encoder
    from distilir.types import Query

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="scifact")
    p.add_argument("--train-split", default="train", help="collection queries to train on ('' for none)")
    p.add_argument("--test-split", default="test")
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--work-dir", type=Path, required=True)
    p.add_argument("--generator", default="crop?per_doc=2")
    p.add_argument("--teacher", default=CHEAP_TEACHER)
    p.add_argument("--depth", type=int, default=30)
    p.add_argument("--dev-fraction", type=float, default=0.12)
    p.add_argument("--synthetic-dev", type=int, default=0, help="no train split: dev = N synthetic queries")
    p.add_argument("--runs", default="kl,kl-synth")
    p.add_argument(
        "--set", action="append", default=[], help="KEY=VALUE override of QuerySideConfig for all runs"
    )
    p.add_argument("--tag", default="")
    p.add_argument(
        "--halves",
        action="store_true",
        help="collections with one split (ArguAna): distil on a seeded half of --test-split's queries "
        "(the split of distill_scifact.py, seed 42; dev carved from that half), evaluate on the other half",
    )
    p.add_argument(
        "--report-from",
        type=Path,
        nargs="*",
        default=None,
        help="only rewrite the report from these work dirs",
    )
    args = p.parse_args(argv)
    if args.report_from is not None:
        write_report(args.report_from or [args.work_dir])
        return 0
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(args.dataset)

    train_q, dev_q, dev_qrels = {}, {}, {}
    test_ids = None
    if args.halves:
        from benchmarks.training.distill_scifact import split_queries

        distil = split_queries(ds, args.test_split, "distil", 42)
        test_ids = split_queries(ds, args.test_split, "eval", 42)
        train_ids, dev_ids = split_dev(distil, args.dev_fraction, seed=0)
        allq = ds.queries(args.test_split)
        train_q = {q: allq[q] for q in train_ids}
        dev_q = {q: allq[q].text for q in dev_ids}
        dev_qrels = {q: ds.qrels(args.test_split)[q] for q in dev_ids}
    elif args.train_split:
        qids = sorted(q for q in ds.qrels(args.train_split) if q in ds.queries(args.train_split))
        train_ids, dev_ids = split_dev(qids, args.dev_fraction, seed=0)
        allq = ds.queries(args.train_split)
        train_q = {q: allq[q] for q in train_ids}
        dev_q = {q: allq[q].text for q in dev_ids}
        dev_qrels = {q: ds.qrels(args.train_split)[q] for q in dev_ids}
    generator = build_generator(args.generator)
    store_dir = work / "queries" / generator.fingerprint
    _, gen_stats = generate_queries(ds, generator, store_dir, seed=0)
    print(f"synthetic queries: {gen_stats}")
    store = QueryStore.open(store_dir)
    synth = store.queries()
    unknown = [r for r in args.runs.split(",") if r and r not in RUNS]
    if unknown:
        raise SystemExit(f"unknown runs {unknown}; known: {', '.join(RUNS)}")
    if not args.synthetic_dev and not any(
        "synthetic" in RUNS[r][0].split("+") for r in args.runs.split(",") if r
    ):
        synth = {}  # no run trains on them: neither their candidates nor their teacher scores are needed
    if args.synthetic_dev and not args.train_split:
        # no collection queries at all: hold out N synthetic queries (their source document as the
        # one relevant document) for selection
        synth, dev, dev_qrels = store.holdout(args.synthetic_dev, seed=7)
        dev_q = {q: v.text for q, v in dev.items()}
    view = as_dataset(ds, synth, split="synthetic", qrels=store.pseudo_qrels())
    texts = {**{q: v.text for q, v in train_q.items()}, **{q: v.text for q, v in synth.items()}}
    cands = candidates(view, texts, args.index, args.depth, work)
    if (
        dev_q
    ):  # the dev queries' lists are scored too: diagnostics measure agreement on them (never trained on)
        dev_view = (
            as_dataset(view, {q: Query(q, t) for q, t in dev_q.items()}, split="dev", qrels=dev_qrels)
            if not set(dev_q) <= set(view.queries(None))
            else view
        )
        cands.update(candidates(dev_view, dev_q, args.index, args.depth, work))
        view = dev_view
    dev_as_queries = {q: Query(q, t) for q, t in dev_q.items()}
    teacher_run, teacher_fp = teacher_scores(
        view, {**train_q, **synth, **dev_as_queries}, cands, args.teacher, work, args.index
    )

    base_file = work / f"base-{args.test_split}.json"
    if not base_file.is_file():
        base_file.write_text(
            json.dumps(evaluate_test(ds, args.test_split, args.index, None, qids=test_ids)[0])
        )
    base = json.loads(base_file.read_text())
    diag_file = work / "base-diagnostics.json"
    if dev_q and (not diag_file.is_file() or "dev_free_query_ndcg@10" not in diag_file.read_text()):
        base_train = {**{q: v.text for q, v in train_q.items()}, **{q: v.text for q, v in synth.items()}}
        diag_file.write_text(
            json.dumps(
                diagnose(
                    args.index, None, base_train, dev_q, dev_qrels, teacher_run, conventions_for(ds.name)
                )
            )
        )
    print(f"base {args.test_split}: {base}")
    overrides = {}
    for item in args.set:
        k, _, v = item.partition("=")
        overrides[k] = (
            json.loads(v) if v[:1].isdigit() or v in ("true", "false", "null") or v[:1] == "-" else v
        )
    for name in [r for r in args.runs.split(",") if r]:
        sources, settings = RUNS[name]
        settings = {**settings, **overrides}
        qs = {}
        if "train" in sources.split("+"):
            qs.update({q: v.text for q, v in train_q.items()})
        if "synthetic" in sources.split("+"):
            qs.update({q: v.text for q, v in synth.items()})
        row: dict[str, Any] = {
            "run": name + args.tag,
            "dataset": args.dataset,
            "sources": sources,
            "settings": settings,
            "generator": args.generator,
            "teacher": args.teacher,
            "teacher_fingerprint": teacher_fp,
            "depth": args.depth,
            "train_queries": len(qs),
            "dev_queries": len(dev_q),
            "base": base,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        before = file_hashes(args.index)
        try:
            cfg = QuerySideConfig(**settings)
            out = work / "runs" / f"{name}{args.tag}-{cfg.hash()}"
            summary = train_query_encoder(
                args.index,
                qs,
                teacher_run,
                out,
                dev_queries=dev_q,
                dev_qrels=dev_qrels,
                conventions=conventions_for(ds.name),
                config=cfg,
                provenance={
                    "teacher": args.teacher,
                    "teacher_fingerprint": teacher_fp,
                    "query_store": store.manifest["generator"],
                },
            )
            test, _ = evaluate_test(ds, args.test_split, args.index, out / "model", qids=test_ids)
            row["diagnostics"] = diagnose(
                args.index, out / "model", qs, dev_q, dev_qrels, teacher_run, conventions_for(ds.name)
            )
            row.update(
                {
                    "status": "ok",
                    "test": test,
                    "dev_ndcg@10": summary["dev_ndcg@10"],
                    "selected_step": summary["selected_step"],
                    "steps": summary["steps"],
                    "seconds": summary["seconds"],
                    "margin_scale": summary["margin_scale"],
                    "early_stopped": summary["early_stopped"],
                    "model": str(out / "model"),
                }
            )
        except Exception as exc:  # every run is recorded, failed ones too
            row.update(
                {
                    "status": "failed",
                    "error": f"{type(exc).__name__}: {exc}",
                    "trace": traceback.format_exc()[-2000:],
                }
            )
        row["index_unchanged"] = file_hashes(args.index) == before
        row["index_hashes"] = before
        print(json.dumps({k: v for k, v in row.items() if k not in ("trace",)}))
        with open(work / "results.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

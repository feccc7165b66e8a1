"""`make demo` / `distilir demo`: the main job end to end on the embedded default collection, ending
with the distilled student served over HTTP.

1. baselines on the test split: BM25, and the off-the-shelf dense model (all-MiniLM-L6-v2) over its
   flat index — the index that will be served; its files are never changed afterwards;
2. training queries: the collection's train queries minus a seeded dev split (by query id) that
   selects the model — no test query is ever trained on or selected with;
3. candidates (RRF of BM25 and the base index, top 30) and teacher scores: a z-scored ensemble of the
   base model and BM25 — the bi-encoder member takes its document embeddings from the base index, so
   nothing is encoded twice (``--full-teacher``: all-MiniLM-L6-v2 + SPLADE-tiny + BM25, the teacher of
   benchmarks/reports/query_side.md, whose store of 332,370 pairs took 29 min here, most of it
   SPLADE-tiny encoding the 5,183 abstracts once); the
   teacher re-ranking BM25's top 20 of the test queries shows how good it is;
4. query-side distillation on the frozen index (:mod:`distilir.training.frozen_index`) with the best
   recipe of benchmarks/reports/query_side.md (:data:`RECIPE`: full-corpus KL, 10 passes over the
   train queries at lr 1e-4, dev evaluation every pass, early stopping): only the query encoder
   learns, against every corpus document;
5. evaluation side by side, then the student served: ``distilir-index serve --query-encoder`` on
   loopback answers one query over HTTP, and the ``curl`` command to run next is printed.

Everything lands under a work folder (default ``$DISTILIR_CACHE/demo``) and is reused on the next
run: an interrupted demo continues where it stopped (index, query store, teacher store, training).
``--quick`` trains 3 passes instead of 10.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from distilir.published import PUBLISHED

__all__ = ["CHEAP_TEACHER", "FULL_TEACHER", "RECIPE", "run_demo"]

MEASURES = ("nDCG@10", "R@100")
CHEAP_TEACHER = "ensemble?normalization=zscore:bi-encoder:all-MiniLM-L6-v2*1+bm25*1"
FULL_TEACHER = "ensemble?normalization=zscore:bi-encoder:all-MiniLM-L6-v2*1+splade:splade-tiny*1+bm25*1"
#: the query-side recipe with the best dev nDCG@10 in benchmarks/reports/query_side.md (run
#: ``kl-10ep-lr1e4``; chosen on the dev split, never on test)
RECIPE = {"epochs": 10, "lr": 1e-4, "eval_every": 23}
STUDENT = "all-MiniLM-L6-v2"


def _row(dataset: str, system: str, key: str | None, result, seconds: float) -> dict:
    row = {"system": system}
    for m in MEASURES:
        row[m] = f"{result.aggregate[m]:.4f}"
        pub = PUBLISHED.get((dataset, key), {}).get(m) if key else None
        row[f"{m} published"] = f"{pub[0]:.3f}" if pub else "-"
    row["time (s)"] = f"{seconds:.0f}"
    return row


def _work_dir() -> Path:
    from distilir_index.models import cache_dir

    return Path(os.environ.get("DISTILIR_DEMO_DIR") or cache_dir() / "demo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_and_ask(index: Path, student: Path, query: str, timeout: float = 180.0) -> list[dict]:
    """Start ``distilir-index serve`` with the student as the query encoder on a free loopback port,
    ask one query over HTTP (``/v1/search``, k=3) and return its hits; the server is stopped after."""
    import httpx

    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "distilir_index.cli",
        "serve",
        "--index",
        f"demo={index}",
        "--query-encoder",
        f"demo={student}",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited: {proc.stdout.read().decode()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready within {timeout:.0f} s")
            time.sleep(0.3)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/search", json={"query": query, "k": 3}, timeout=30)
        r.raise_for_status()
        return r.json()["hits"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a server that ignores SIGTERM
            proc.kill()


def run_demo(
    data_dir: str | None = None, dataset: str = "scifact", quick: bool = False, full_teacher: bool = False
) -> int:
    from distilir_index import Retriever
    from distilir_index.hybrid import HybridIndex

    from distilir.candidates import FirstStageConfig, build_index, index_path, iter_search, retrieve
    from distilir.conventions import conventions_for
    from distilir.data import load_dataset
    from distilir.evaluation import evaluate, format_table
    from distilir.teachers import BiEncoderTeacher, EnsembleTeacher, TeacherStore, build_teacher, teach
    from distilir.training.frozen_index import QuerySideConfig, split_dev, train_query_encoder

    t_start = time.perf_counter()
    ds = load_dataset(dataset, data_dir=data_dir)
    conv = conventions_for(ds.name)
    if "train" not in ds.splits():
        raise ValueError(f"the demo distils on a 'train' split; {ds.name} has {ds.splits()}")
    qrels = ds.qrels("test")
    work = _work_dir() / ("quick" if quick else "full") / ds.name.replace("/", "_")
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []

    def score(run, system, key, t0):
        res = evaluate(run, qrels, measures=MEASURES, conventions=conv)
        rows.append(_row(ds.name, system, key, res, time.perf_counter() - t0))
        print(f"  {system}: nDCG@10 {res.aggregate['nDCG@10']:.4f}", flush=True)
        return res

    print(f"== distilir demo on {ds.name}: distil a teacher into {STUDENT}'s query encoder ==")
    print(f"work folder: {work} (rerunning the demo reuses it)\n")

    print("[1/5] baselines (and the base index that will be served)", flush=True)
    t0 = time.perf_counter()
    bm25_run = retrieve(ds, "test", FirstStageConfig("bm25"), k=1000, cache_dir=work / "indexes")
    score(bm25_run, "BM25 (k1=0.9, b=0.4)", "bm25", t0)
    t0 = time.perf_counter()
    dense_cfg = FirstStageConfig("dense", model=STUDENT)
    base_index = index_path(ds, dense_cfg, work / "indexes")
    base_run = retrieve(ds, "test", dense_cfg, k=1000, cache_dir=work / "indexes")
    score(base_run, f"{STUDENT}, off the shelf", STUDENT, t0)

    print("\n[2/5] training queries: the train split minus a seeded dev split", flush=True)
    judged = ds.qrels("train")
    allq = ds.queries("train")
    train_ids, dev_ids = split_dev(sorted(q for q in judged if q in allq), 0.12, seed=0)
    texts = {q: allq[q].text for q in train_ids}
    test_q = {q: v.text for q, v in ds.queries("test").items()}
    print(f"  {len(train_ids)} training queries, {len(dev_ids)} dev queries (model selection)")

    print("\n[3/5] candidates (RRF of BM25 and the base index) and teacher scores", flush=True)
    t0 = time.perf_counter()
    bm25 = build_index(ds, FirstStageConfig("bm25"), cache_dir=work / "indexes")
    hybrid = HybridIndex(bm25, build_index(ds, dense_cfg, cache_dir=work / "indexes"), method="rrf", rrf_k=60)
    candidates = dict(iter_search(hybrid, texts, k=30, desc="candidates"))
    test_cands = dict(iter_search(bm25, test_q, k=20, desc="test candidates (BM25 top 20)"))
    spec = FULL_TEACHER if full_teacher else CHEAP_TEACHER
    corpus = ds.corpus()
    teacher = build_teacher(spec, corpus={d.id: d.full_text for d in corpus.values()})
    members = teacher.members if isinstance(teacher, EnsembleTeacher) else [(teacher, 1.0)]
    for member, _ in members:
        if isinstance(member, BiEncoderTeacher) and member.name == f"bi-encoder:{STUDENT}":
            member.seed_from_index(base_index, {d.id: d.full_text for d in corpus.values()})
    store_dir = work / f"teacher-{teacher.fingerprint}"
    teach(
        ds,
        {**candidates, **test_cands},
        teacher,
        store_dir,
        batch_queries=256,
        candidate_source={"retriever": "rrf(bm25, dense) top 30; test: bm25 top 20"},
    )
    with TeacherStore.open(store_dir) as store:
        teacher_run = store.to_run()
    print(f"  teacher: {spec}")
    score({q: teacher_run[q] for q in test_cands}, "teacher re-ranking BM25 top 20", None, t0)

    print(f"\n[4/5] query-side distillation of {STUDENT} on the frozen index", flush=True)
    t0 = time.perf_counter()
    config = QuerySideConfig(**{**RECIPE, "epochs": 3 if quick else RECIPE["epochs"]})
    out = work / f"student-{config.hash()}"
    summary = train_query_encoder(
        base_index,
        texts,
        teacher_run,
        out,
        dev_queries={q: allq[q].text for q in dev_ids},
        dev_qrels={q: judged[q] for q in dev_ids},
        config=config,
        conventions=conv,
        provenance={"teacher": spec, "teacher_store": str(store_dir), "queries": f"{ds.name} train"},
    )
    print(
        f"  {summary['steps']} steps in {time.perf_counter() - t0:.0f}s; "
        f"chosen step {summary['selected_step']} "
        f"(dev nDCG@10 {summary['dev_ndcg@10']}); student at {out / 'model'}"
    )

    print("\n[5/5] evaluation (exact search over the unchanged base index) and serving", flush=True)
    t0 = time.perf_counter()
    retriever = Retriever.load(base_index, query_encoder=str(out / "model"))
    qids = sorted(test_q)
    hits = retriever.search_many([test_q[q] for q in qids], k=1000)
    student_run = {q: {h.id: h.score for h in hs} for q, hs in zip(qids, hits, strict=True)}
    score(student_run, f"{STUDENT}, query encoder distilled", None, t0)
    print()
    print(format_table(rows, list(rows[0])))
    query = test_q[qids[0]]
    served = serve_and_ask(base_index, out / "model", query)
    print(f"\nserved over HTTP (distilir-index serve --query-encoder), query {query!r}:")
    for h in served:
        print(f"  {h['id']}  {h['score']:.3f}  {(h.get('text') or '')[:70]}")
    print(
        "\nrun it yourself:\n"
        f"  distilir-index serve --index {ds.name}={base_index} --query-encoder {ds.name}={out / 'model'} "
        "--port 8000\n"
        "  curl -s localhost:8000/v1/search -H 'content-type: application/json' "
        f'-d \'{{"query": "{query[:60]}", "k": 3}}\''
    )
    print(f"\ndemo finished in {time.perf_counter() - t_start:.0f}s")
    return 0

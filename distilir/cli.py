"""The `distilir` command: one entry point, one subcommand per pipeline stage.

    distilir data info DATASET
    distilir candidates --dataset D --split train --retriever bm25 --depth 100 --out FILE
    distilir eval --dataset D --split test --retriever bm25|dense|sparse|hybrid [--model M] [--save-run F]
    distilir eval --dataset D --split test --run FILE
    distilir demo

Every subcommand calls library functions in-process; the CLI only parses flags and prints.
A DATASET is a name in the data directory (``--data-dir`` or ``$DISTILIR_DATA_DIR``), a path to a
BEIR folder, or an ir_datasets id.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

__all__ = ["main"]


def _dataset(args):
    from distilir.data import load_dataset

    ds = load_dataset(args.dataset, data_dir=args.data_dir)
    store = getattr(args, "queries", None)
    if store and getattr(args, "command", None) in ("candidates", "teach"):
        # a query store's queries (synthetic ones) added to the collection as split "synthetic"
        from distilir.queries import QueryStore, as_dataset

        qstore = QueryStore.open(store)
        ds = as_dataset(ds, qstore.queries(), split=SYNTHETIC, qrels=qstore.pseudo_qrels())
    return ds


SYNTHETIC = "synthetic"  # the split name a --queries store's queries get


def cmd_data_info(args) -> int:
    ds = _dataset(args)
    info = ds.describe()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True, default=str))
        return 0
    from distilir.evaluation import format_table

    print(f"dataset: {ds.name}")
    for key in ("kind", "source"):
        if key in info:
            print(f"{key}: {info[key]}")
    rows = []
    for split in ds.splits():
        qrels = ds.qrels(split)
        rows.append(
            {"split": split, "judged queries": len(qrels), "judgments": sum(len(v) for v in qrels.values())}
        )
    counts = info.get("counts", {})
    print(f"documents: {counts.get('documents', '?')}  queries: {counts.get('queries', '?')}")
    if rows:
        print(format_table(rows, ["split", "judged queries", "judgments"]))
    for issue in ds.validate().issues:
        _warn(f"{issue.describe()} (`distilir data validate {args.dataset}` for the full report)")
    return 0


def cmd_data_validate(args) -> int:
    ds = _dataset(args)
    report = ds.validate()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        print(report.summary())
    if report.errors:
        print(
            f"distilir: error: {len(report.errors)} problem(s) leave nothing usable in {ds.name}; "
            "fix the files named above",
            file=sys.stderr,
        )
        return 1
    return 1 if args.strict and not report.ok else 0


def _first_stage_config(args):
    from distilir.candidates import FirstStageConfig

    return FirstStageConfig(
        retriever=args.retriever, model=args.model, k1=args.k1, b=args.b, factory=args.factory
    )


def _warn(message: str) -> None:
    print(f"distilir: warning: {message}", file=sys.stderr)


def cmd_eval(args) -> int:
    from distilir.candidates import retrieve
    from distilir.conventions import conventions_for
    from distilir.data.contracts import check_same_dataset
    from distilir.data.trec import read_run
    from distilir.evaluation import evaluate, format_table
    from distilir.evaluation.checks import check_run, measures_within_depth, run_depth

    ds = _dataset(args)
    conv = conventions_for(ds.name)
    measures = list(args.measures) if args.measures else list(conv.measures)
    qrels = ds.qrels(args.split)
    if not qrels:
        raise ValueError(f"split {args.split!r} of {ds.name} judges no query; nothing to evaluate")
    for issue in _dataset_issues(ds, args.split):
        _warn(issue)
    if args.run:
        run_manifest = _read_run_manifest(args.run)
        if run_manifest:
            check_same_dataset(
                run_manifest.get("dataset"),
                ds,
                artifact=f"run {args.run}",
                fix=f"evaluate it with --dataset {run_manifest.get('dataset', {}).get('name')}",
            )
        run = read_run(args.run)
        system = Path(args.run).name
        depth = run_depth(run)
    else:
        if not ds.queries(args.split):
            raise ValueError(
                f"none of the {len(qrels)} queries judged in split {args.split!r} of {ds.name} has a text in "
                "its queries file; nothing to retrieve. `distilir data validate` lists what is missing."
            )
        config = _first_stage_config(args)
        run = retrieve(
            ds,
            args.split,
            config,
            k=args.depth,
            drop_self=conv.ignore_identical_ids,
            cache_dir=args.cache_dir,
        )
        system = config.retriever + (f" ({config.model})" if config.retriever != "bm25" else "")
        depth = args.depth
    for message in check_run(run, qrels, doc_ids=set(ds.corpus()), collection=ds.name):
        _warn(message)
    measures, dropped = measures_within_depth(measures, depth)
    if dropped:
        _warn(
            f"{', '.join(dropped)} left out: their cut-off is deeper than the {depth} hits per query "
            f"evaluated (retrieve deeper with --depth to report them)"
        )
    if not measures:
        raise ValueError(
            f"no measure left to report at depth {depth}; give --measures with cut-offs <= {depth}"
        )
    if args.save_run:
        _save_run(run, args.save_run, tag=args.tag, ds=ds, split=args.split, system=system, depth=depth)
        print(f"run written to {args.save_run}", file=sys.stderr)
    result = evaluate(run, qrels, measures=measures, conventions=conv)
    row = {
        "dataset": ds.name,
        "split": args.split,
        "system": system,
        "queries": result.num_queries,
        **{m: f"{v:.4f}" for m, v in result.aggregate.items()},
    }
    print(format_table([row], list(row)))
    if args.per_query:
        Path(args.per_query).write_text(json.dumps(result.per_query, indent=1, sort_keys=True) + "\n")
        print(f"per-query results written to {args.per_query}", file=sys.stderr)
    return 0


def _dataset_issues(ds, split: str) -> list[str]:
    """The dataset's own problems in ``split`` (``distilir data validate``), as warnings for eval."""
    try:
        report = ds.validate()
    except Exception as exc:  # validation must never stop an evaluation that can run
        return [f"could not validate {ds.name}: {exc}"]
    return [i.describe() for i in report.issues if i.split == split]


def _read_run_manifest(path: str) -> dict:
    from distilir.candidates.store import manifest_path

    m = manifest_path(path)
    if not m.is_file():
        return {}
    try:
        return json.loads(m.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{m} is not valid JSON ({exc}); delete it or write the run again") from None


def _save_run(run, path: str, *, tag: str, ds, split: str, system: str, depth: int) -> None:
    from distilir.candidates import write_candidates

    # the same file + manifest as candidates, so `eval --run` and `teach` can check where it came from
    info = {"kind": "run", "dataset": ds.describe(), "split": split, "system": system, "depth": depth}
    write_candidates(run, path, info=info, tag=tag)


def cmd_candidates(args) -> int:
    from distilir.candidates import SamplingConfig, retrieve, sample_candidates, write_candidates
    from distilir.conventions import conventions_for

    if args.split is None:
        args.split = SYNTHETIC if args.queries else "train"
    ds = _dataset(args)
    config = _first_stage_config(args)
    drop_self = conventions_for(ds.name).ignore_identical_ids
    if not ds.queries(args.split):
        raise ValueError(
            f"split {args.split!r} of {ds.name} has no query with a text "
            f"({len(ds.qrels(args.split))} judged, "
            f"{len(ds.queries(None))} in the queries file); nothing to retrieve, nothing written. "
            "`distilir data validate` lists what is missing."
        )
    run = retrieve(ds, args.split, config, k=args.depth, drop_self=drop_self, cache_dir=args.cache_dir)
    if not any(run.values()):
        raise ValueError(
            f"the {config.retriever} retriever found no candidate for any of the {len(run)} queries of "
            f"{ds.name}/{args.split}; nothing written to {args.out}"
        )
    sampling = None
    if args.sample_size or args.positives != "keep" or args.window:
        window = tuple(args.window) if args.window else (0, args.depth)
        sampling = SamplingConfig(
            window=window, positives=args.positives, sample_size=args.sample_size, seed=args.seed
        )
        lists = sample_candidates(
            run, sampling, qrels=ds.qrels(args.split) if args.positives != "keep" else None
        )
        run = {q: {d: run[q].get(d, 0.0) for d in docs} for q, docs in lists.items()}
        if not any(run.values()):
            raise ValueError(
                f"sampling {sampling.as_dict()} left no candidate; nothing written to {args.out}"
            )
    write_candidates(
        run,
        args.out,
        info={
            "dataset": ds.describe(),
            "split": args.split,
            "retriever": asdict(config),
            "depth": args.depth,
            "sampling": sampling.as_dict() if sampling else None,
            "drop_self": drop_self,
            "queries_store": str(args.queries) if args.queries else None,
        },
    )
    print(f"{len(run)} queries, {sum(len(v) for v in run.values())} candidates written to {args.out}")
    return 0


def cmd_teach(args) -> int:
    from distilir.candidates import read_candidates
    from distilir.data.contracts import check_same_dataset, recorded_name
    from distilir.teachers import DEFAULT_OFFLINE_TEACHER, rank_candidates, teach

    ds = _dataset(args)
    run, info = read_candidates(args.candidates)
    check_same_dataset(
        info.get("dataset"),
        ds,
        artifact=f"candidates file {args.candidates}",
        fix=f"score them with --dataset {recorded_name(info.get('dataset'))}, or make candidates for "
        f"{ds.name} with `distilir candidates --dataset {ds.name} --out FILE`",
    )
    candidates = rank_candidates(run, args.depth)
    queries = {qid: q.text for qid, q in ds.queries(None).items()}
    corpus = ds.corpus()
    spec = args.teacher or DEFAULT_OFFLINE_TEACHER
    source = {
        "candidates": str(args.candidates),
        "dataset": ds.name,
        "split": info.get("split"),
        "retriever": info.get("retriever"),
        "depth": args.depth,
    }
    if args.ray:
        from distilir.teachers.ray_scoring import score_with_ray

        stats = score_with_ray(
            args.out,
            spec,
            queries,
            {d: doc.full_text for d, doc in corpus.items()},
            candidates,
            corpus={d.id: d.full_text for d in corpus.values()},
            candidate_source=source,
            workers=args.ray_workers,
            address=args.ray_address,
            batch_queries=args.batch_queries,
            progress=True,
        )
        print(
            f"teacher ({stats['fingerprint']}) on {stats['workers']} Ray actors: scored {stats['scored']} "
            f"pairs, {stats['skipped']} already stored; store at {args.out}"
        )
        return 0
    store, stats = teach(
        ds, candidates, spec, args.out, batch_queries=args.batch_queries, candidate_source=source
    )
    print(
        f"teacher {stats['teacher']} ({stats['fingerprint']}): scored {stats['scored']} pairs, "
        f"{stats['skipped']} already stored; store at {args.out}"
    )
    return 0


def cmd_demo(args) -> int:
    from distilir.demo import run_demo

    return run_demo(
        data_dir=args.data_dir, dataset=args.dataset, quick=args.quick, full_teacher=args.full_teacher
    )


def _add_retriever_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--retriever",
        default="bm25",
        choices=["bm25", "dense", "sparse", "hybrid"],
        help="first-stage retriever; dense/sparse/hybrid need --model",
    )
    p.add_argument(
        "--model",
        default=None,
        help="encoder for dense/sparse/hybrid: a packaged name (all-MiniLM-L6-v2, paraphrase-MiniLM-L3-v2, "
        "all-mpnet-base-v2, splade-tiny), a model folder, or a hub id (default: all-MiniLM-L6-v2 for dense, "
        "splade-tiny for sparse)",
    )
    p.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (pyserini's BEIR flat setting)")
    p.add_argument("--b", type=float, default=0.4, help="BM25 b")
    p.add_argument(
        "--factory", default="flat", help="FAISS index for dense: flat|hnsw|ivfpq|sq8 or a factory string"
    )
    p.add_argument(
        "--cache-dir", default=None, help="where built indexes are cached (default: $DISTILIR_CACHE/indexes)"
    )


def cmd_queries_generate(args) -> int:
    from distilir.queries import build_generator, generate_queries

    ds = _dataset(args)
    overrides = {}
    if args.few_shot:
        # few-shot examples from the collection's own training queries (seeded choice)
        import random

        pool = sorted(ds.queries(args.few_shot_split).values(), key=lambda q: q.id)
        overrides["few_shot"] = [
            q.text for q in random.Random(args.seed).sample(pool, min(args.few_shot, len(pool)))
        ]
    generator = build_generator(args.generator, **overrides)
    store, stats = generate_queries(
        ds,
        generator,
        args.out,
        seed=args.seed,
        max_docs=args.max_docs,
        batch_docs=args.batch_docs,
        progress=not args.quiet,
    )
    print(json.dumps({"store": str(Path(args.out)), "generator": generator.kind, **stats}, indent=2))
    if len(store) == 0:
        print(
            f"distilir: error: the generator wrote no query for {stats['documents']} documents",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_queries_info(args) -> int:
    from collections import Counter

    from distilir.queries import QueryStore

    store = QueryStore.open(args.store)
    types = Counter(r.type for r in store.rows())
    info = {"store": str(store.path), "queries": len(store), "types": dict(types), **store.manifest}
    info.pop("parts", None)
    print(json.dumps(info, indent=2, sort_keys=True, default=str))
    return 0


def cmd_audit_poison(args) -> int:
    from distilir_index.io import atomic_write

    from distilir.audit import AttackConfig, DefenceConfig, poison_audit
    from distilir.data import load_dataset

    ds = _dataset(args)
    clean = [load_dataset(name, data_dir=args.data_dir) for name in args.clean or []]
    say = None if args.quiet else (lambda line: print(f"audit: {line}", file=sys.stderr, flush=True))
    report = poison_audit(
        ds,
        args.model,
        attack=AttackConfig(length=args.length, steps=args.steps, candidates=args.candidates, seed=args.seed),
        defence=DefenceConfig(
            k=args.k, hub_ratio=args.hub_ratio, min_occurrence=args.min_occurrence, centroid_z=args.centroid_z
        ),
        topics=args.topics,
        clean=clean,
        progress=say,
    )
    if not report["topics"]:
        raise ValueError(f"{ds.name}: no query topic with 4 or more queries to attack; nothing was measured")
    if args.out:
        with atomic_write(args.out) as f:
            json.dump(report, f, indent=1)
    summary = {
        k: report[k]
        for k in (
            "dataset",
            "model",
            "attack_top10_rate",
            "naive_top10_rate",
            "detection_rate",
            "false_positive_rate",
            "false_positives",
        )
    }
    summary["clean"] = [{k: r[k] for k in ("dataset", "false_positive_rate")} for r in report["clean"]]
    print(json.dumps(summary, indent=2))
    return 0


def cmd_train_query_encoder(args) -> int:
    from distilir.conventions import conventions_for
    from distilir.queries import QueryStore
    from distilir.teachers.store import TeacherStore
    from distilir.training.frozen_index import QuerySideConfig, split_dev, train_query_encoder

    ds = _dataset(args)
    queries: dict[str, str] = {}
    dev_q, dev_qrels = {}, {}
    if args.split:
        judged = ds.qrels(args.split)
        allq = ds.queries(args.split)
        train_ids, dev_ids = split_dev(
            sorted(q for q in judged if q in allq), args.dev_fraction, seed=args.seed
        )
        queries.update({q: allq[q].text for q in train_ids})
        dev_q = {q: allq[q].text for q in dev_ids}
        dev_qrels = {q: judged[q] for q in dev_ids}
    for i, folder in enumerate(args.queries or []):
        qstore = QueryStore.open(folder)
        if args.synthetic_dev and i == 0:
            if dev_q:
                raise SystemExit(
                    "error: --synthetic-dev is for collections without judged training queries, but "
                    f"--split {args.split!r} already gives a dev split; drop one of them"
                )
            train, dev, dev_qrels = qstore.holdout(args.synthetic_dev, seed=args.seed)
            queries.update({q: v.text for q, v in train.items()})
            dev_q = {q: v.text for q, v in dev.items()}
        else:
            queries.update({q: v.text for q, v in qstore.queries().items()})
    if args.synthetic_dev and not args.queries:
        raise SystemExit("error: --synthetic-dev N holds out N queries of a --queries store; give one")
    store = TeacherStore.open(args.teacher_store)
    scored_on = store.datasets()
    if scored_on and ds.name not in scored_on:
        raise ValueError(
            f"the teacher store {args.teacher_store} was scored on {', '.join(scored_on)}, but --dataset is "
            f"{ds.name}: pass --dataset {scored_on[0]}, or score {ds.name}'s candidates into a new store"
        )
    settings = {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        settings[key] = json.loads(value) if value not in ("zscore", "minmax", "none") else value
    summary = train_query_encoder(
        args.index,
        queries,
        store.to_run(),
        args.out,
        dev_queries=dev_q or None,
        dev_qrels=dev_qrels or None,
        config=QuerySideConfig(**settings),
        conventions=conventions_for(ds.name),
        provenance={"teacher_store": store.manifest.get("fingerprint")},
        progress=not args.quiet,
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2, default=str))
    print(
        f"query encoder: {Path(args.out) / 'model'}  (use: Retriever.load(INDEX, query_encoder=that folder))"
    )
    return 0


_DATASET_HELP = "a name in the data folder ($DISTILIR_DATA_DIR), a BEIR folder or an ir_datasets id"


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows every flag's default (unless its help already says it) and keeps examples' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or any(default is v for v in (None, False, argparse.SUPPRESS))  # `in` counts 0 as False
            or action.required
            or not action.option_strings
        ):
            return text
        return f"{text} (default: {default})"


def _sub(parent, name: str, help: str, example: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand with its help, defaults shown, and one example."""
    return parent.add_parser(
        name,
        help=help,
        description=kwargs.pop("description", help),
        epilog=f"example: {example}",
        formatter_class=_Formatter,
        **kwargs,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distilir",
        description=__doc__.split("\n\n")[0],
        epilog="example: distilir eval --dataset scifact --retriever bm25  (COMMAND --help for more)",
        formatter_class=_Formatter,
    )
    parser.add_argument(
        "--data-dir", default=None, help="folder of BEIR collections (default $DISTILIR_DATA_DIR)"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars (of any stage: encoders, search, scoring)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    data = _sub(sub, "data", "inspect and check datasets", "distilir data info scifact").add_subparsers(
        dest="data_command", required=True
    )
    info = _sub(
        data, "info", "counts, splits and file hashes of a dataset", "distilir data info scifact --json"
    )
    info.add_argument("dataset", help="a name in the data folder, a BEIR folder or an ir_datasets id")
    info.add_argument("--json", action="store_true", help="print everything a manifest records, as JSON")
    info.set_defaults(func=cmd_data_info)
    va = _sub(
        data,
        "validate",
        "check a dataset: empty files, qrels naming unknown queries or documents, queries without text",
        "distilir data validate arguana --strict",
        description="Check a dataset's files against each other. Exit 0 when usable (warnings printed), "
        "1 when something leaves nothing usable (or, with --strict, on any issue).",
    )
    va.add_argument("dataset", help="a name in the data folder, a BEIR folder or an ir_datasets id")
    va.add_argument("--json", action="store_true", help="print the report as JSON")
    va.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    va.set_defaults(func=cmd_data_validate)

    ev = _sub(
        sub,
        "eval",
        "retrieve and evaluate (or evaluate a saved run)",
        "distilir eval --dataset scifact --retriever dense --model all-MiniLM-L6-v2 --save-run dense.trec\n"
        "         distilir eval --dataset scifact --run dense.trec",
    )
    ev.add_argument("--dataset", required=True, help=_DATASET_HELP)
    ev.add_argument(
        "--split", default="test", help="qrels split to evaluate on (eval is for held-out queries)"
    )
    _add_retriever_flags(ev)
    ev.add_argument("--run", default=None, help="evaluate this TREC run file instead of retrieving")
    ev.add_argument(
        "--depth",
        "--k",
        dest="depth",
        type=int,
        default=1000,
        help="hits retrieved per query; the same word as candidates/teach --depth. Measures with a deeper "
        "cut-off are left out",
    )
    ev.add_argument(
        "--measures",
        nargs="+",
        default=None,
        help="ir_measures names, e.g. nDCG@10 R@100 (default: the dataset's)",
    )
    ev.add_argument("--save-run", default=None, help="write the run as a TREC file (+ a manifest beside it)")
    ev.add_argument("--per-query", default=None, help="write per-query results as JSON")
    ev.add_argument("--tag", default="distilir", help="the run tag written in the TREC file's last column")
    ev.set_defaults(func=cmd_eval)

    ca = _sub(
        sub,
        "candidates",
        "first-stage candidate lists for teacher scoring",
        "distilir candidates --dataset scifact --split train --retriever bm25 --depth 100 --out cands.trec",
    )
    ca.add_argument("--dataset", required=True, help=_DATASET_HELP)
    ca.add_argument(
        "--split",
        default=None,
        help="whose queries get candidates (default: train — candidates are for training; eval uses test "
        f"— or {SYNTHETIC!r} with --queries)",
    )
    ca.add_argument(
        "--queries",
        default=None,
        metavar="STORE",
        help=f"a query store (`distilir queries generate`): its queries join as split {SYNTHETIC!r}",
    )
    _add_retriever_flags(ca)
    ca.add_argument("--depth", type=int, default=100, help="candidates retrieved per query")
    ca.add_argument(
        "--window",
        type=int,
        nargs=2,
        default=None,
        metavar=("START", "END"),
        help="keep only ranks START..END of each list (hard negatives skip the top; default: all)",
    )
    ca.add_argument(
        "--positives",
        default="keep",
        choices=["keep", "include", "exclude"],
        help="judged positives: keep as retrieved, always include, or exclude (negatives only)",
    )
    ca.add_argument(
        "--sample-size", type=int, default=None, help="sample N candidates per query (default: all)"
    )
    ca.add_argument("--seed", type=int, default=13, help="sampling seed")
    ca.add_argument("--out", required=True, help="the TREC file to write (a .manifest.json goes beside it)")
    ca.set_defaults(func=cmd_candidates)

    te = _sub(
        sub,
        "teach",
        "score candidate lists with a teacher into a resumable score store",
        "distilir teach --dataset scifact --candidates cands.trec --teacher bm25 --out store/",
    )
    te.add_argument("--dataset", required=True, help=_DATASET_HELP + "; the candidates' own")
    te.add_argument("--candidates", required=True, help="a candidates file from `distilir candidates`")
    te.add_argument(
        "--queries",
        default=None,
        metavar="STORE",
        help="the query store the candidates were made for with `candidates --queries` (their texts)",
    )
    te.add_argument(
        "--teacher",
        default=None,
        help="teacher spec, e.g. 'cross-encoder:PATH', 'bi-encoder:all-mpnet-base-v2', "
        "'llm-pointwise:smollm2-135m-instruct?mode=query_likelihood' (default: the offline ensemble)",
    )
    te.add_argument("--depth", type=int, default=100, help="candidates per query to score, from the top")
    te.add_argument(
        "--batch-queries", type=int, default=16, help="queries per shard (a kill loses at most one)"
    )
    te.add_argument("--out", required=True, help="the teacher score store folder (created or resumed)")
    te.add_argument(
        "--ray",
        action="store_true",
        help="score with a pool of teacher replicas on Ray (pip install 'distilir[ray]')",
    )
    te.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to join (e.g. 'auto' or ray://HOST:10001; default: a local one)",
    )
    te.add_argument(
        "--ray-workers",
        type=int,
        default=None,
        help="teacher replicas (default: one per GPU, else one per CPU)",
    )
    te.set_defaults(func=cmd_teach)

    from distilir.training.cli import add_train_parser

    add_train_parser(sub)

    qu = _sub(
        sub, "queries", "synthetic training queries", "distilir queries generate --dataset scifact --out q/"
    ).add_subparsers(dest="queries_command", required=True)
    qg = _sub(
        qu,
        "generate",
        "write queries for a corpus into a resumable query store",
        "distilir queries generate --dataset scifact --generator 'crop?per_doc=2' --out q/",
    )
    qg.add_argument("--dataset", required=True, help=_DATASET_HELP)
    qg.add_argument(
        "--generator",
        default="crop?per_doc=2",
        help="title | crop?per_doc=N | llm:MODEL?types=question,claim | openai:URL?model=M | doc2query:MODEL",
    )
    qg.add_argument("--out", required=True, help="query store folder (created or resumed)")
    qg.add_argument("--seed", type=int, default=0, help="generation seed")
    qg.add_argument("--max-docs", type=int, default=None, help="only the first N documents (default: all)")
    qg.add_argument("--batch-docs", type=int, default=64, help="documents per committed part")
    qg.add_argument(
        "--few-shot", type=int, default=0, help="LLM generators: N example queries from --few-shot-split"
    )
    qg.add_argument("--few-shot-split", default="train", help="split the few-shot examples come from")
    qg.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    qg.set_defaults(func=cmd_queries_generate)
    qi = _sub(qu, "info", "counts and provenance of a query store", "distilir queries info q/")
    qi.add_argument("store", help="a query store folder (from `distilir queries generate`)")
    qi.set_defaults(func=cmd_queries_info)

    tq = _sub(
        sub,
        "train-query-encoder",
        "query-side distillation against a frozen dense index (the index is not changed)",
        "distilir train-query-encoder --dataset scifact --index idx/ --teacher-store store/ "
        "--queries q/ --out runs/qs --set lr=2e-5",
    )
    tq.add_argument("--dataset", required=True, help=_DATASET_HELP)
    tq.add_argument("--index", required=True, help="a dense index folder (distilir-index build --kind dense)")
    tq.add_argument(
        "--teacher-store", required=True, help="teacher scores of the training queries' candidates"
    )
    tq.add_argument("--split", default="train", help="collection queries to train on; '' for none")
    tq.add_argument("--queries", action="append", help="a query store to train on too (repeatable)")
    tq.add_argument(
        "--dev-fraction",
        type=float,
        default=0.12,
        help="share of --split held out as the dev split (model selection)",
    )
    tq.add_argument("--seed", type=int, default=0, help="seed of the dev split")
    tq.add_argument(
        "--synthetic-dev",
        type=int,
        default=0,
        metavar="N",
        help="no judged training queries (--split ''): hold out N queries of the first --queries store, "
        "their source documents as relevant, for model selection",
    )
    tq.add_argument("--set", action="append", help="KEY=VALUE of QuerySideConfig (lr, epochs, full_kl, ...)")
    tq.add_argument("--out", required=True, help="run folder (resumed when it exists)")
    tq.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    tq.set_defaults(func=cmd_train_query_encoder)

    au = _sub(
        sub, "audit", "audits of a served retriever", "distilir audit poison --dataset scifact"
    ).add_subparsers(dest="audit_command", required=True)
    ap = _sub(
        au,
        "poison",
        "corpus poisoning: craft adversarial passages against the model, measure how often they reach the "
        "top 10 of held-out queries of their topic, and how many the defence flags",
        "distilir audit poison --dataset scifact --model all-MiniLM-L6-v2 --clean arguana --out poison.json",
        description="Corpus-poisoning audit of a dense retriever (distilir.audit.poison): HotFlip passages "
        "crafted on the model's own weights for the largest query topics, their top-10 rate on held-out "
        "queries of each topic (a naive passage of the target queries' texts beside them), and the "
        "defence's detection rate and false positives on this corpus and on --clean corpora.",
    )
    ap.add_argument("--dataset", required=True, help=_DATASET_HELP)
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="the served dense model (name or folder)")
    ap.add_argument("--topics", type=int, default=5, help="query topics attacked (the largest clusters)")
    ap.add_argument("--length", type=int, default=32, help="tokens per adversarial passage")
    ap.add_argument("--steps", type=int, default=120, help="HotFlip steps per passage")
    ap.add_argument("--candidates", type=int, default=48, help="substitutions scored exactly per step")
    ap.add_argument("--k", type=int, default=10, help="defence: a document occurs for a query in its top k")
    ap.add_argument(
        "--hub-ratio",
        type=float,
        default=10.0,
        help="defence: flag occurrence above this multiple of the mean",
    )
    ap.add_argument(
        "--min-occurrence",
        type=int,
        default=10,
        help="defence: ... and ranked in the top k of this many queries",
    )
    ap.add_argument(
        "--centroid-z",
        type=float,
        default=6.0,
        help="defence: flag a robust z of the cosine to the mean query above this",
    )
    ap.add_argument(
        "--clean", action="append", help="a clean collection to measure false positives on (repeatable)"
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the topics, the splits and the attack")
    ap.add_argument(
        "--out", default=None, help="write the full report as JSON (default: print the summary only)"
    )
    ap.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress lines")
    ap.set_defaults(func=cmd_audit_poison)

    de = _sub(
        sub, "demo", "the main job end to end on the embedded default (scifact)", "distilir demo --quick"
    )
    de.add_argument("--dataset", default="scifact", help="the collection the demo distils on")
    de.add_argument("--quick", action="store_true", help="3 training passes instead of 10")
    de.add_argument(
        "--full-teacher",
        action="store_true",
        help="add SPLADE-tiny to the teacher (the benchmark's teacher; ~30 more minutes on two cores)",
    )
    de.set_defaults(func=cmd_demo)
    return parser


def _interrupted(args) -> str:
    """What an interrupted command kept, and how to go on."""
    again = "run the same command again to resume"
    command = args.command
    if command == "teach" and not Path(args.out).exists():
        return f"interrupted before the first batch was committed: no store left at {args.out}; {again}"
    if command == "teach":
        return (
            f"interrupted: every batch scored so far is committed in {args.out}; {again} "
            "(it scores only what is missing)"
        )
    if command in ("train", "train-query-encoder"):
        return f"interrupted: the last checkpoint in the run folder is kept; {again} from it"
    if command == "queries" and getattr(args, "queries_command", None) == "generate":
        return f"interrupted: every committed part is kept in {args.out}; {again}"
    if command == "candidates":
        return f"interrupted: nothing was written to {args.out} (candidates are written at the end)"
    return "interrupted: nothing was written"


@contextlib.contextmanager
def _no_progress_bars():
    """Every progress bar below the CLI (ours, sentence-transformers', bm25s') is a tqdm bar, many
    created with an explicit ``disable=False``; tqdm's own switch (``TQDM_DISABLE``) is read once at
    import and loses to explicit arguments. So for the command's duration every bar is created
    disabled, whatever its caller asked."""
    import tqdm.std

    init = tqdm.std.tqdm.__init__

    def quiet_init(self, *args, **kwargs):
        kwargs["disable"] = True
        init(self, *args, **kwargs)

    tqdm.std.tqdm.__init__ = quiet_init
    try:
        yield
    finally:
        tqdm.std.tqdm.__init__ = init


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # warnings of the library, printed as one line for a CLI user (no source line of ours)
    print(f"distilir: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    from distilir_index.base import IndexError_ as IndexProblem
    from distilir_index.models import ModelNotAvailable

    parser = build_parser()
    args = parser.parse_args(argv)
    showwarning, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        with _no_progress_bars() if args.quiet else contextlib.nullcontext():
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"distilir: {_interrupted(args)}", file=sys.stderr)
        return 130
    except (ValueError, KeyError, FileNotFoundError, OSError, ModelNotAvailable, IndexProblem) as exc:
        # Domain errors carry their own explanation; show it without a traceback.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"distilir: error: {message}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = showwarning


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

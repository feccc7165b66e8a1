"""Distilled IVF-PQ (Distill-VQ) against FAISS's own IVF-PQ at the same bytes per vector.

    python -m benchmarks.distill_vq.run [--synthetic-n 1000000] [--threads 1]

scifact: all-MiniLM-L6-v2 vectors of the 5,183 abstracts; the 809 judged train queries are split
(seeded) into 647 training and 162 dev queries; the 300 test queries are only measured. Shape:
DenseIndex's own choice for this corpus, IVF132,PQ48x7 (42 bytes a vector). A small grid of
settings (temperature, the coarse term's weight, documents as extra pseudo-queries) is run; the
setting and its epoch are chosen on dev recall@10 at nprobe 16 -- never on test. Reported for the
FAISS-trained index (epoch 0, the same k-means every run starts from), every run, and exact search:
test recall@10 against exact top-10 and test nDCG@10 (ir_measures, scifact qrels), at nprobe 16 and
64, and the share of the FAISS-to-exact gap the distilled index closes.

synthetic (``--synthetic-n``): the Gaussian-mixture vectors of benchmarks/ann (same generator and
seed), IVF1024,PQ48x8; training and dev queries are fresh draws of the same distribution (there are
no qrels: recall@10 only). The chosen scifact setting is run once (no grid).

Writes benchmarks/reports/distill_vq.md and distill_vq.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

REPORTS = Path(__file__).resolve().parents[1] / "reports"
SCRATCH = Path(__file__).resolve().parents[1] / "out" / "distill_vq"
GRID = [
    {"temperature": t, "ivf_weight": w, "extra_queries": extra}
    for t in (0.02, 0.05)
    for w in (0.0, 1.0)
    for extra in ("none", "documents", "crops")
]
if os.environ.get("DISTILIR_DVQ_SMOKE"):  # a one-setting run that checks the script
    GRID = GRID[:1]


def scifact_data(model: str) -> dict[str, Any]:
    """Document vectors (through the shared embedding cache) and the judged queries' vectors."""
    from distilir_index import make_index

    from distilir.data import load_dataset

    ds = load_dataset("scifact")
    index = make_index("dense", model=model)
    docs = list(ds.iter_corpus())
    index.add([d.id for d in docs], [d.full_text for d in docs])
    out: dict[str, Any] = {"X": index.vectors(), "ids": index.ids(), "ds": ds}
    for split in ("train", "test"):
        queries, qrels = ds.queries(split), ds.qrels(split)
        qids = [q for q in queries if q in qrels]
        out[f"{split}_qids"] = qids
        out[f"{split}_Q"] = index.encoder.encode_queries([queries[q].text for q in qids])
    # synthetic queries: two sentence crops of every abstract (distilir.queries' "crop" generator),
    # encoded as queries; the store is kept under the benchmark's scratch folder (resumable)
    from distilir.queries import build_generator, generate_queries

    store, _ = generate_queries(
        ds, build_generator("crop?per_doc=2"), SCRATCH / "scifact-crops", progress=False
    )
    crops = store.queries()
    out["crops_Q"] = index.encoder.encode_queries([crops[q].text for q in sorted(crops)])
    return out


def ndcg10(index: Any, queries: np.ndarray, qids: list[str], ids: list[str], qrels: Any) -> float:
    from distilir.evaluation import evaluate

    scores, pos = index.search(np.ascontiguousarray(queries, np.float32), 100)
    run = {
        q: {ids[p]: float(s) for p, s in zip(pos[i], scores[i], strict=True) if p >= 0}
        for i, q in enumerate(qids)
    }
    return float(evaluate(run, qrels, ["nDCG@10"]).aggregate["nDCG@10"])


def measure(index: Any, x: np.ndarray, tq: np.ndarray, exact10: np.ndarray, extra: Any = None) -> dict:
    from distilir_index.distill_vq import recall_at_k

    if index.ntotal == 0:
        index.add(x)
    out = {}
    for nprobe in (16, 64):
        index.nprobe = min(nprobe, index.nlist)
        out[f"recall@10 np{nprobe}"] = round(recall_at_k(index.search(tq, 10)[1], exact10), 4)
        if extra is not None:
            out[f"nDCG@10 np{nprobe}"] = round(extra(index), 4)
    return out


def _run_row(setting: dict[str, Any], result: Any, t0: float, measured: dict[str, Any]) -> dict[str, Any]:
    """One distilled run as the report records it."""
    return {
        "setting": setting,
        "config": asdict(result.config),
        "chosen_epoch": result.chosen_epoch,
        "dev_recall@10": max(h["dev_recall@10"] for h in result.history),
        "history": result.history,
        "seconds": round(time.perf_counter() - t0, 1),
        **measured,
    }


def run_scifact(args: argparse.Namespace) -> dict[str, Any]:
    import faiss
    from distilir_index.distill_vq import DistillVQConfig, _exact_top, distill_ivfpq, faiss_ivfpq

    data = scifact_data(args.model)
    x, q, tq = data["X"], data["train_Q"], data["test_Q"]
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(q))
    dev, train = q[perm[: len(q) // 5]], q[perm[len(q) // 5 :]]
    qrels = data["ds"].qrels("test")

    def nd(index: Any) -> float:
        return ndcg10(index, tq, data["test_qids"], data["ids"], qrels)

    exact10 = _exact_top(x, tq, 10)
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    exact = {"recall@10": 1.0, "nDCG@10": round(nd(flat), 4)}
    shape = {"nlist": 132, "pq_m": 48, "pq_nbits": 7}
    base = faiss_ivfpq(x, seed=0, **shape)
    faiss_row = measure(base, x, tq, exact10, nd)
    runs = []
    for setting in GRID:
        kw = dict(setting)
        extra = kw.pop("extra_queries")
        tr, selfp = train, None
        if extra == "documents":  # 5,000 abstracts as pseudo-queries (each one's own vector excluded)
            pick = np.random.default_rng(1).choice(len(x), 5000, replace=False)
            tr = np.concatenate([train, x[pick]])
            selfp = np.concatenate([np.full(len(train), -1), pick])
        elif extra == "crops":
            tr = np.concatenate([train, data["crops_Q"]])
        config = DistillVQConfig(**shape, epochs=args.epochs, lr=args.lr, **kw)
        t0 = time.perf_counter()
        result = distill_ivfpq(x, tr, dev, config, self_positions=selfp, progress=print)
        row = _run_row(setting, result, t0, measure(result.index, x, tq, exact10, nd))
        print(json.dumps({k: v for k, v in row.items() if k not in ("history", "config")}), flush=True)
        runs.append(row)
    chosen = max(range(len(runs)), key=lambda i: runs[i]["dev_recall@10"])
    return {
        "name": "scifact",
        "shape": shape,
        "bytes_per_vector": 48 * 7 / 8,
        "queries": {"train": len(train), "crops": len(data["crops_Q"]), "dev": len(dev), "test": len(tq)},
        "faiss_dev_recall@10": runs[0]["history"][0]["dev_recall@10"],
        "exact": exact,
        "faiss": faiss_row,
        "runs": runs,
        "chosen": chosen,
    }


def run_synthetic(args: argparse.Namespace, setting: dict[str, Any]) -> dict[str, Any]:
    from distilir_index.distill_vq import DistillVQConfig, _exact_top, distill_ivfpq, faiss_ivfpq

    from benchmarks.ann.run import synthetic

    x, tq = synthetic(args.synthetic_n, 1000, 384, 4000)
    _, more = synthetic(
        0, args.synthetic_train + 1000, 384, 4000, query_seed=7
    )  # fresh queries, same mixture
    train, dev = more[: args.synthetic_train], more[args.synthetic_train :]
    exact10 = _exact_top(x, tq, 10)
    shape = {"nlist": 1024, "pq_m": 48, "pq_nbits": 8}
    t0 = time.perf_counter()
    # the same sorted sample as distill_ivfpq's epoch 0 (FAISS's k-means depends on the order of its points)
    sample = np.sort(np.random.default_rng(0).choice(len(x), 65_536, replace=False))
    base = faiss_ivfpq(x[sample], seed=0, **shape)
    faiss_row = {**measure(base, x, tq, exact10), "seconds": round(time.perf_counter() - t0, 1)}
    kw = {k: v for k, v in setting.items() if k != "extra_queries"}  # fresh draws stand in for them
    config = DistillVQConfig(
        **shape, epochs=args.synthetic_epochs, lr=args.lr, faiss_training_sample=65_536, **kw
    )
    t0 = time.perf_counter()
    result = distill_ivfpq(x, train, dev, config, progress=print)
    row = _run_row(setting, result, t0, measure(result.index, x, tq, exact10))
    return {
        "name": f"synthetic {args.synthetic_n:,}",
        "shape": shape,
        "bytes_per_vector": 48,
        "queries": {"train": len(train), "dev": len(dev), "test": len(tq)},
        "faiss_dev_recall@10": result.history[0]["dev_recall@10"],
        "faiss": faiss_row,
        "runs": [row],
        "chosen": 0,
    }


def _gap(faiss_value: float, value: float, exact_value: float) -> str:
    gap = exact_value - faiss_value
    return f"{(value - faiss_value) / gap:+.0%}" if gap > 1e-9 else "-"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Distilled IVF-PQ (Distill-VQ) vs FAISS IVF-PQ at equal bytes per vector",
        "",
        f"Generated {report['generated']} by `{report['command']}` ({report['machine']}).",
        "",
        "Every run starts from FAISS's own IVF-PQ (k-means, seed 0: the `FAISS` row) and trains its",
        "centroids and codebooks by distillation (`distilir_index.distill_vq`); the exported index is a",
        "plain `faiss.IndexIVFPQ` searched by FAISS. Settings and epochs are chosen on dev queries carved",
        "from the training queries; test queries are only measured. recall@10 is against exact top-10;",
        '"gap closed" is (distilled − FAISS) / (exact − FAISS).',
        "",
    ]
    for res in report["results"]:
        chosen, f = res["runs"][res["chosen"]], res["faiss"]
        cols = ["recall@10 np16", "recall@10 np64"]
        if "nDCG@10 np16" in f:
            cols += ["nDCG@10 np16", "nDCG@10 np64"]
        shape = res["shape"]
        lines += [
            f"## {res['name']}: `IVF{shape['nlist']},PQ{shape['pq_m']}x{shape['pq_nbits']}` "
            f"({res['bytes_per_vector']:g} bytes a vector), queries {res['queries']}",
            "",
            *([f"From `{res['from']}`.", ""] if res.get("from") else []),
            "| index | setting | chosen epoch | dev recall@10 | "
            + " | ".join(f"test {c}" for c in cols)
            + " |",
            "|---|---|---:|---:|" + "---:|" * len(cols),
        ]

        def row(name: str, setting: str, epoch: Any, dev: Any, values: dict[str, Any], cols=cols) -> str:
            return (
                f"| {name} | {setting} | {epoch} | {dev} | " + " | ".join(str(values[c]) for c in cols) + " |"
            )

        lines.append(row("FAISS", "k-means", "–", res.get("faiss_dev_recall@10", "–"), f))
        for i, r in enumerate(res["runs"]):
            name = "**distilled (chosen)**" if i == res["chosen"] else "distilled"
            lines.append(
                row(name, f"`{json.dumps(r['setting'])}`", r["chosen_epoch"], r.get("dev_recall@10", "–"), r)
            )
        if "exact" in res:
            e = res["exact"]["nDCG@10"]
            exact = {"recall@10 np16": 1.0, "recall@10 np64": 1.0, "nDCG@10 np16": e, "nDCG@10 np64": e}
            lines.append(row("exact (flat)", "–", "–", 1.0, exact))
        lines += ["", "Gap closed by the chosen run (test):", ""]
        for nprobe in (16, 64):
            key = f"recall@10 np{nprobe}"
            text = f"- nprobe {nprobe}: recall@10 {_gap(f[key], chosen[key], 1.0)}"
            if "exact" in res:
                key = f"nDCG@10 np{nprobe}"
                text += f", nDCG@10 {_gap(f[key], chosen[key], res['exact']['nDCG@10'])}"
            lines.append(text)
        epochs = ", ".join(f"{h['epoch']}: {h['dev_recall@10']}" for h in chosen["history"])
        lines += ["", f"Per-epoch dev recall@10 of the chosen run: {epochs}", ""]
        if res.get("note"):
            lines += [res["note"], ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--synthetic-n", type=int, default=0, help="also run the synthetic set (0: skip)")
    parser.add_argument("--synthetic-train", type=int, default=10_000)
    parser.add_argument("--synthetic-epochs", type=int, default=3)
    parser.add_argument(
        "--scifact-from",
        type=Path,
        help="reuse the scifact part of a finished report (its JSON) and run the synthetic part only",
    )
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    started = time.time()
    if args.scifact_from:
        earlier = json.loads(args.scifact_from.read_text())
        results = [r for r in earlier["results"] if r["name"] == "scifact"]
        results[0]["from"] = f"{earlier['command']} at {earlier['generated']}"
    else:
        results = [run_scifact(args)]
    if args.synthetic_n:
        sc = results[0]
        results.append(run_synthetic(args, sc["runs"][sc["chosen"]]["setting"]))
    report = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "command": "python -m benchmarks.distill_vq.run"
        + (f" --synthetic-n {args.synthetic_n}" if args.synthetic_n else "")
        + (" --scifact-from PREVIOUS.json" if args.scifact_from else "")
        + (f" --lr {args.lr:g}" if args.lr != 1e-3 else "")
        + f" --threads {args.threads}",
        "machine": f"{os.cpu_count()} CPUs, FAISS {faiss.__version__}, torch {torch.__version__}, "
        f"{args.threads} thread(s), {round(time.time() - started)} s in all",
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distill_vq.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "distill_vq.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

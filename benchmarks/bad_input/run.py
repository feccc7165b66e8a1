"""The bad-input table: each kind of bad input a newcomer meets, run through the real commands, with
the message printed, the exit code, and what is on disk afterwards.

    python -m benchmarks.bad_input.run [--out benchmarks/reports/bad_input.md]

Every case runs in a fresh temporary folder with subprocesses of `distilir` / `distilir-index` (or a
Python snippet for the API cases) on small real collections (cranfield, TIME). The table is written
from what the commands printed, not typed by hand; tests/distilir/test_cli_bad_input.py and
tests/distilir_index/test_cli.py hold the assertions.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class Case:
    name: str
    steps: list[list[str] | str]  # argv lists run in order; a str is Python code; the last one is reported
    setup: Callable[[Path, Path], None] | None = None
    after: Callable[[Path], str] | None = None  # what is on disk afterwards, in words


def _copy(data: Path, name: str, dest: Path) -> Path:
    shutil.copytree(data / name, dest)
    return dest


def _empty_queries(data: Path, tmp: Path) -> None:
    folder = _copy(data, "cranfield", tmp / "emptyq")
    (folder / "queries.jsonl.gz").unlink()
    (folder / "queries.jsonl").write_text("")


def _bad_qrels(data: Path, tmp: Path) -> None:
    folder = _copy(data, "time", tmp / "time-bad")
    qrels = folder / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + "1\tno-such-doc\t1\n")


def _broken_line_7(data: Path, tmp: Path) -> None:
    rows = [
        json.loads(line)
        for _, line in zip(range(10), gzip.open(data / "time" / "corpus.jsonl.gz", "rt"), strict=False)
    ]
    lines = [json.dumps(r) for r in rows]
    lines[6] = lines[6][:-5]  # line 7 cut short
    (tmp / "corpus.jsonl").write_text("\n".join(lines) + "\n")


def _sigint_after(when: float | str, argv: list[str]) -> str:
    """Python code that runs ``argv`` and sends it SIGINT (Ctrl-C) after ``when`` seconds, or, with
    ``when="first shard"``, as soon as the store's first batch is committed (so the case does not
    depend on how fast this machine is)."""
    wait = (
        "while not glob.glob('store/shard-*.parquet') and p.poll() is None: time.sleep(0.05)\n"
        if when == "first shard"
        else f"time.sleep({when})\n"
    )
    return (
        "import glob, signal, subprocess, sys, time\n"
        f"p = subprocess.Popen({argv!r}, stderr=subprocess.PIPE, text=True)\n"
        + wait
        + "p.send_signal(signal.SIGINT)\n"
        "sys.stderr.write(p.communicate()[1]); sys.exit(p.returncode)\n"
    )


def _listing(*names: str) -> Callable[[Path], str]:
    def after(tmp: Path) -> str:
        found = [n for n in names if (tmp / n).exists()]
        gone = [n for n in names if n not in found]
        parts = []
        if found:
            parts.append("present: " + ", ".join(found))
        if gone:
            parts.append("absent: " + ", ".join(gone))
        return "; ".join(parts)

    return after


def _pairs(store: Path) -> int:
    return json.loads((store / "manifest.json").read_text())["counts"]["pairs"]


def _index_untouched(tmp: Path) -> str:
    m = json.loads((tmp / "idx" / "manifest.json").read_text())
    return f"idx/ still the {m.get('kind')} index of {m['corpus']['count']} docs"


D, DI = str(BIN / "distilir"), str(BIN / "distilir-index")

CASES = [
    Case(
        "empty queries file, eval",
        [[D, "eval", "--dataset", "emptyq"]],
        _empty_queries,
    ),
    Case(
        "empty queries file, candidates",
        [[D, "candidates", "--dataset", "emptyq", "--split", "test", "--out", "c.trec"]],
        _empty_queries,
        _listing("c.trec", "c.trec.manifest.json"),
    ),
    Case(
        "run of cranfield evaluated on TIME (with its manifest)",
        [
            [D, "eval", "--dataset", "cranfield", "--k", "50", "--save-run", "r.trec"],
            [D, "eval", "--dataset", "time", "--run", "r.trec"],
        ],
    ),
    Case(
        "run of cranfield evaluated on TIME (a bare TREC file)",
        [
            [D, "eval", "--dataset", "cranfield", "--k", "50", "--save-run", "r.trec"],
            "import os; os.remove('r.trec.manifest.json')",
            [D, "eval", "--dataset", "time", "--run", "r.trec"],
        ],
    ),
    Case(
        "eval --k 10 (R@100, R@1000 asked by the dataset's defaults)",
        [[D, "eval", "--dataset", "time", "--k", "10"]],
    ),
    Case(
        "candidates of TIME scored with --dataset cranfield (ids overlap)",
        [
            [D, "candidates", "--dataset", "time", "--split", "test", "--depth", "5", "--out", "t.trec"],
            [
                D,
                "teach",
                "--dataset",
                "cranfield",
                "--candidates",
                "t.trec",
                "--teacher",
                "bm25",
                "--out",
                "store",
            ],
        ],
        after=_listing("store"),
    ),
    Case(
        "store of TIME trained with data.dataset: cranfield",
        [
            [D, "candidates", "--dataset", "time", "--split", "test", "--depth", "5", "--out", "t.trec"],
            [
                D,
                "teach",
                "--dataset",
                "time",
                "--candidates",
                "t.trec",
                "--teacher",
                "bm25",
                "--out",
                "store",
            ],
            [
                D,
                "train",
                "--data.teacher_store",
                "store",
                "--data.dataset",
                "cranfield",
                "--data.split",
                "test",
                "--output_dir",
                "run",
            ],
        ],
        after=_listing("run"),
    ),
    Case(
        "same teacher name, other settings, same store",
        [
            [D, "candidates", "--dataset", "time", "--split", "test", "--depth", "3", "--out", "t.trec"],
            [
                D,
                "teach",
                "--dataset",
                "time",
                "--candidates",
                "t.trec",
                "--teacher",
                "bm25?k1=0.9",
                "--out",
                "store",
            ],
            [
                D,
                "teach",
                "--dataset",
                "time",
                "--candidates",
                "t.trec",
                "--teacher",
                "bm25?k1=1.5",
                "--out",
                "store",
            ],
        ],
        after=lambda tmp: f"store/ keeps its {_pairs(tmp / 'store')} pairs",
    ),
    Case(
        "qrels naming an unknown document, data validate", [[D, "data", "validate", "time-bad"]], _bad_qrels
    ),
    Case("the same, data validate --strict", [[D, "data", "validate", "time-bad", "--strict"]], _bad_qrels),
    Case(
        "the same, eval (a warning, the evaluation runs)",
        [[D, "eval", "--dataset", "time-bad", "--k", "100"]],
        _bad_qrels,
    ),
    Case(
        "unknown model name, eval",
        [[D, "eval", "--dataset", "time", "--retriever", "dense", "--model", "no-such-model"]],
    ),
    Case(
        "unknown model name, teach",
        [
            [D, "candidates", "--dataset", "time", "--split", "test", "--depth", "3", "--out", "t.trec"],
            [
                D,
                "teach",
                "--dataset",
                "time",
                "--candidates",
                "t.trec",
                "--teacher",
                "bi-encoder:no-such-model",
                "--out",
                "store",
            ],
        ],
        after=_listing("store"),
    ),
    Case("unknown dataset", [[D, "data", "info", "no-such-collection"]]),
    Case(
        "Ctrl-C during teach (SIGINT after 8 s, bi-encoder teacher)",
        [
            [D, "candidates", "--dataset", "time", "--split", "test", "--depth", "20", "--out", "t.trec"],
            _sigint_after(
                8,
                [
                    D,
                    "teach",
                    "--dataset",
                    "time",
                    "--candidates",
                    "t.trec",
                    "--teacher",
                    "bi-encoder:all-MiniLM-L6-v2",
                    "--batch-queries",
                    "4",
                    "--out",
                    "store",
                ],
            ),
        ],
        after=lambda tmp: (
            f"store/ holds {_pairs(tmp / 'store')} committed pairs"
            if (tmp / "store").exists()
            else "no store left behind"
        ),
    ),
    Case(
        "Ctrl-C during teach (SIGINT once the first batch is committed)",
        [
            [D, "candidates", "--dataset", "time", "--split", "test", "--depth", "20", "--out", "t.trec"],
            _sigint_after(
                "first shard",
                [
                    D,
                    "teach",
                    "--dataset",
                    "time",
                    "--candidates",
                    "t.trec",
                    "--teacher",
                    "bi-encoder:all-MiniLM-L6-v2",
                    "--batch-queries",
                    "4",
                    "--out",
                    "store",
                ],
            ),
        ],
        after=lambda tmp: (
            f"store/ holds {_pairs(tmp / 'store')} committed pairs"
            if (tmp / "store").exists()
            else "no store left behind"
        ),
    ),
    Case(
        "a headline metric deeper than the evaluated lists (training config)",
        [[D, "train", "--eval.depth", "20", "--eval.metric", "R@100", "--print-config"]],
    ),
    Case("misspelt config key", [[D, "train", "--optim.lrr", "2e-5", "--print-config"]]),
    Case(
        "paraphrase-MiniLM-L3-v2 (a packaged name) in eval",
        [
            [
                D,
                "--quiet",
                "eval",
                "--dataset",
                "time",
                "--retriever",
                "dense",
                "--model",
                "paraphrase-MiniLM-L3-v2",
                "--k",
                "100",
            ]
        ],
    ),
    Case(
        "distilir-index build over an index of another corpus",
        [
            [DI, "build", "--corpus", "time", "--kind", "bm25", "--out", "idx"],
            [DI, "build", "--corpus", "cranfield", "--kind", "bm25", "--out", "idx"],
        ],
        after=_index_untouched,
    ),
    Case(
        "distilir-index build into a folder that is not an index",
        [
            "open('notes.txt', 'w').write('mine')",
            [DI, "build", "--corpus", "time", "--kind", "bm25", "--out", "."],
        ],
        after=_listing("notes.txt", "manifest.json"),
    ),
    Case(
        "corpus with a broken JSON line 7",
        [[DI, "build", "--corpus", "corpus.jsonl", "--kind", "bm25", "--out", "idx"]],
        _broken_line_7,
        _listing("idx"),
    ),
    Case(
        "Retriever.load(path, model=...) as its docstring shows",
        [
            [
                DI,
                "build",
                "--corpus",
                "time",
                "--kind",
                "dense",
                "--model",
                "paraphrase-MiniLM-L3-v2",
                "--out",
                "idx",
            ],
            "from distilir_index import Retriever; "
            "r = Retriever.load('idx', model='paraphrase-MiniLM-L3-v2'); "
            "print(r.search('air traffic', k=1)[0].id)",
        ],
    ),
    Case(
        "filter on a field the documents do not have",
        [
            [DI, "build", "--corpus", "time", "--kind", "bm25", "--out", "idx"],
            "from distilir_index import Retriever; "
            "Retriever.load('idx').search('war', k=3, filters={'year': {'$gte': 2015}})",
        ],
    ),
]


def _command(step: list[str] | str) -> str:
    """The step as a user would type it: programs by name, Python snippets (SIGINT runs by their command)."""
    if isinstance(step, list):
        return " ".join([Path(step[0]).name, *step[1:]])
    if "Popen(" in step:
        argv = eval(step.split("Popen(", 1)[1].split(", stderr", 1)[0])  # our own literal, above
        when = (
            step.split("time.sleep(", 1)[1].split(")", 1)[0] + " s"
            if "glob.glob" not in step
            else "the first committed batch"
        )
        return f"Ctrl-C after {when}: {_command(argv)}"
    return "python: " + step


def run_case(case: Case, data: Path) -> dict:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name in ("cranfield", "time"):
            (tmp / name).symlink_to(data / name)
        if case.setup:
            case.setup(data, tmp)
        env = {
            **os.environ,
            "DISTILIR_DATA_DIR": str(tmp),
            "DISTILIR_CACHE": str(tmp / ".cache"),
            "DISTILIR_EMBEDDING_CACHE": "off",
        }
        for step in case.steps:
            argv = [sys.executable, "-c", step] if isinstance(step, str) else step
            out = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
        lines = [ln for ln in re.split(r"[\r\n]", out.stderr) if ln.strip() and "|" not in ln]
        errors = [ln for ln in lines if "error:" in ln or "Error:" in ln or ": interrupted" in ln]
        warnings = [ln for ln in lines if "warning:" in ln]
        issues = [ln.strip() for ln in out.stdout.splitlines() if ln.strip().startswith("- ")]
        said = errors[-1:] or warnings or issues or out.stdout.splitlines()[-1:]
        return {
            "case": case.name,
            "command": _command(case.steps[-1]),
            "exit": out.returncode,
            "message": " / ".join(said)[:600],
            "after": case.after(tmp) if case.after else "",
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data-dir", default=os.environ.get("DISTILIR_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "bad_input.md"))
    p.add_argument("-k", default=None, help="only cases whose name contains this")
    args = p.parse_args(argv)
    data = Path(args.data_dir).resolve()
    rows = []
    for case in CASES:
        if args.k and args.k not in case.name:
            continue
        row = run_case(case, data)
        print(f"[{row['exit']}] {row['case']}: {row['message'][:160]}", flush=True)
        rows.append(row)
    md = [
        "# Bad input: what each command says now",
        "",
        textwrap.dedent(__doc__.split("\n\n", 1)[1]).strip(),
        "",
    ]
    md += ["| input | command | exit | message printed | on disk afterwards |", "|---|---|---|---|---|"]
    for r in rows:
        esc = {k: str(v).replace("|", "\\|").replace("\n", " ") for k, v in r.items()}
        md.append(
            f"| {esc['case']} | `{esc['command']}` | {esc['exit']} | {esc['message']} | {esc['after']} |"
        )
    if not args.k:
        Path(args.out).write_text("\n".join(md) + "\n")
        print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

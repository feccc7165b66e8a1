"""TREC file formats: runs, qrels and topics.

Run (``trec_eval`` input)::

    qid Q0 docid rank score tag          whitespace-separated, one retrieved document per line

trec_eval ignores the rank column: it re-sorts each query's documents by descending score and
breaks ties by descending docid. :func:`write_run` writes the lines in exactly that order, so the
rank column agrees with what trec_eval / pytrec_eval / ir_measures evaluate, and the bytes written
depend only on the run's content (not on dict order).

Qrels::

    qid iteration docid grade            TREC (``iteration`` is unused, usually 0)
    query-id<TAB>corpus-id<TAB>score     BEIR, with that header row

Topics: the classic SGML form (``<top> <num> Number: 301 <title> ... <desc> Description: ...
<narr> Narrative: ... </top>``, closing tags optional) or plain TSV ``qid<TAB>text``.

These readers are our own, not ``ir_measures.read_trec_run``/``read_trec_qrels``: those yield
tuples without line numbers and accept duplicates silently; ours say which file and line is wrong.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from distilir.data._io import atomic_write, open_text
from distilir.data.base import DatasetError
from distilir.types import Qrels, Query, Run

__all__ = ["read_qrels", "read_run", "read_topics", "sorted_ranking", "write_qrels", "write_run"]

_TOPIC_FIELDS = ("title", "desc", "narr")
_TOPIC_PREFIX = {
    "num": re.compile(r"^\s*number\s*:\s*", re.IGNORECASE),
    "title": re.compile(r"^\s*topic\s*:\s*", re.IGNORECASE),
    "desc": re.compile(r"^\s*description\s*:\s*", re.IGNORECASE),
    "narr": re.compile(r"^\s*narrative\s*:\s*", re.IGNORECASE),
}
_TOPIC_TAG = re.compile(r"<\s*(/?)\s*(num|title|desc|narr|top)\s*>", re.IGNORECASE)


def _lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                yield lineno, line.rstrip("\r\n")


def _check_file(path: str | os.PathLike[str], what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what} file {path} does not exist; give the path of an existing file.")
    return path


# -- runs -------------------------------------------------------------------------------------
def read_run(path: str | os.PathLike[str]) -> Run:
    """Read a TREC run file into ``{qid: {docid: score}}``.

    Raises :class:`DatasetError` naming the line for a wrong column count, a non-numeric or
    non-finite score, or a document listed twice for the same query (trec_eval rejects those too).
    """
    path = _check_file(path, "run")
    run: Run = {}
    for lineno, line in _lines(path):
        cells = line.split()
        if len(cells) != 6:
            raise DatasetError(
                f"{path}:{lineno}: expected 6 whitespace-separated columns 'qid Q0 docid rank score tag', "
                f"got {len(cells)}: {line[:80]!r}."
            )
        qid, _, docid, _, score_text, _ = cells
        try:
            score = float(score_text)
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: score {score_text!r} is not a number.") from None
        if not math.isfinite(score):
            raise DatasetError(
                f"{path}:{lineno}: score {score_text!r} is not finite; scores must be real numbers."
            )
        docs = run.setdefault(qid, {})
        if docid in docs:
            raise DatasetError(
                f"{path}:{lineno}: document {docid!r} is listed twice for query {qid!r}; "
                "a run ranks each document at most once per query."
            )
        docs[docid] = score
    return run


def _check_run(run: Mapping[str, Mapping[str, float]]) -> None:
    if not isinstance(run, Mapping):
        raise DatasetError(f"run must be a dict {{qid: {{docid: score}}}}, got {type(run).__name__}.")
    for qid, docs in run.items():
        if not isinstance(qid, str) or not qid or any(c.isspace() for c in qid):
            raise DatasetError(f"query id {qid!r} must be a non-empty string without spaces for a TREC file.")
        if not isinstance(docs, Mapping):
            raise DatasetError(f"run[{qid!r}] must be a {{docid: score}} dict, got {type(docs).__name__}.")
        for docid, score in docs.items():
            if not isinstance(docid, str) or not docid or any(c.isspace() for c in docid):
                raise DatasetError(
                    f"run[{qid!r}]: doc id {docid!r} must be a non-empty string without spaces."
                )
            try:
                finite = math.isfinite(float(score))
            except (TypeError, ValueError):
                finite = False
            if not finite:
                raise DatasetError(f"run[{qid!r}][{docid!r}] = {score!r} is not a finite number.")


def sorted_ranking(docs: Mapping[str, float]) -> list[tuple[str, float]]:
    """``(docid, score)`` pairs by descending score, ties by descending docid (trec_eval's order).

    The one ranking rule of the project: run files, candidate lists, teacher lists, negatives and
    evaluation cut-offs all rank with it, so a rank written anywhere is the rank evaluation sees."""
    return sorted(((d, float(s)) for d, s in docs.items()), key=lambda ds: (ds[1], ds[0]), reverse=True)


def write_run(
    run: Mapping[str, Mapping[str, float]],
    path: str | os.PathLike[str],
    *,
    tag: str = "distilir",
    depth: int | None = None,
) -> Path:
    """Write ``run`` as a TREC run file atomically; return the path.

    Queries are written in sorted qid order; within a query, by descending score with ties broken
    by descending docid (the order trec_eval uses), ranks from 1. ``depth`` keeps only the top
    ``depth`` documents per query. Scores are written with ``repr`` so reading back is exact.
    """
    if not tag or any(c.isspace() for c in tag):
        raise DatasetError(f"run tag must be a non-empty string without spaces, got {tag!r}.")
    if depth is not None and (not isinstance(depth, int) or depth < 1):
        raise DatasetError(f"depth must be a positive integer or None, got {depth!r}.")
    _check_run(run)
    path = Path(path)
    with atomic_write(path) as f:
        for qid in sorted(run):
            ranking = sorted_ranking(run[qid])
            for rank, (docid, score) in enumerate(ranking[:depth] if depth else ranking, start=1):
                f.write(f"{qid} Q0 {docid} {rank} {score!r} {tag}\n")
    return path


# -- qrels ------------------------------------------------------------------------------------
def _grade(text: str, path: Path, lineno: int) -> int:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value.is_integer():
        return int(value)
    raise DatasetError(
        f"{path}:{lineno}: relevance grade {text!r} is not an integer; qrels grades are integers "
        "(0 = judged non-relevant, higher = more relevant)."
    )


def read_qrels(path: str | os.PathLike[str], *, format: str = "auto") -> Qrels:  # noqa: A002
    """Read qrels into ``{qid: {docid: grade}}``.

    ``format``: ``"trec"`` (4 columns ``qid iter docid grade``), ``"beir"`` (3 columns
    ``query-id corpus-id score`` after a header row), or ``"auto"`` (by the first data line's column
    count). A pair judged twice with the same grade is kept once; with different grades it is an error.
    """
    if format not in ("auto", "trec", "beir"):
        raise DatasetError(f"qrels format must be 'auto', 'trec' or 'beir', got {format!r}.")
    path = _check_file(path, "qrels")
    expected = {"trec": 4, "beir": 3}.get(format)
    qrels: Qrels = {}
    seen_at: dict[tuple[str, str], int] = {}
    first = True
    for lineno, line in _lines(path):
        cells = line.split("\t") if "\t" in line else line.split()
        cells = [c.strip() for c in cells]
        if first:
            first = False
            if cells[0].lower() in ("query-id", "query_id", "qid") and len(cells) >= 3:
                if expected is None:
                    expected = 3
                continue  # BEIR header row
            if expected is None:
                expected = len(cells)
                if expected not in (3, 4):
                    raise DatasetError(
                        f"{path}:{lineno}: cannot tell the qrels format: expected 4 columns "
                        f"'qid iter docid grade' (TREC) or 3 'query-id corpus-id score' (BEIR), "
                        f"got {len(cells)}."
                    )
        if len(cells) != expected:
            layout = "'query-id corpus-id score' (BEIR)" if expected == 3 else "'qid iter docid grade' (TREC)"
            raise DatasetError(
                f"{path}:{lineno}: expected {expected} columns {layout}, got {len(cells)}: {line[:80]!r}."
            )
        if expected == 3:
            qid, docid, grade_text = cells
        else:
            qid, _, docid, grade_text = cells
        grade = _grade(grade_text, path, lineno)
        docs = qrels.setdefault(qid, {})
        if docid in docs:
            if docs[docid] != grade:
                raise DatasetError(
                    f"{path}:{lineno}: ({qid}, {docid}) is judged {grade} here but {docs[docid]} at line "
                    f"{seen_at[(qid, docid)]}; keep one judgment per pair."
                )
            continue
        docs[docid] = grade
        seen_at[(qid, docid)] = lineno
    return qrels


def write_qrels(
    qrels: Mapping[str, Mapping[str, int]],
    path: str | os.PathLike[str],
    *,
    format: str = "trec",  # noqa: A002
) -> Path:
    """Write qrels atomically as TREC (``qid 0 docid grade``) or BEIR TSV (with header), sorted."""
    if format not in ("trec", "beir"):
        raise DatasetError(f"qrels format must be 'trec' or 'beir', got {format!r}.")
    path = Path(path)
    with atomic_write(path) as f:
        if format == "beir":
            f.write("query-id\tcorpus-id\tscore\n")
        for qid in sorted(qrels):
            for docid in sorted(qrels[qid]):
                grade = qrels[qid][docid]
                if isinstance(grade, bool) or int(grade) != grade:
                    raise DatasetError(f"qrels[{qid!r}][{docid!r}] = {grade!r} is not an integer grade.")
                if format == "beir":
                    f.write(f"{qid}\t{docid}\t{int(grade)}\n")
                else:
                    f.write(f"{qid} 0 {docid} {int(grade)}\n")
    return path


# -- topics -----------------------------------------------------------------------------------
def _parse_sgml_topics(text: str, path: Path, fields: tuple[str, ...]) -> dict[str, Query]:
    topics: dict[str, Query] = {}
    starts = list(re.finditer(r"<\s*top\s*>", text, flags=re.IGNORECASE))
    for n, top in enumerate(starts):
        block = text[top.end() : starts[n + 1].start() if n + 1 < len(starts) else len(text)]
        start_line = text.count("\n", 0, top.start()) + 1
        body = re.split(r"<\s*/\s*top\s*>", block, flags=re.IGNORECASE)[0]
        parts: dict[str, str] = {}
        tags = list(_TOPIC_TAG.finditer(body))
        for i, m in enumerate(tags):
            closing, name = m.group(1), m.group(2).lower()
            if closing or name == "top":
                continue
            end = tags[i + 1].start() if i + 1 < len(tags) else len(body)
            value = _TOPIC_PREFIX[name].sub("", body[m.end() : end].strip())
            parts[name] = " ".join(value.split())
        if not parts.get("num"):
            raise DatasetError(
                f"{path}:{start_line}: topic has no <num> tag; every <top> needs '<num> Number: N'."
            )
        qid = parts["num"].split()[0]
        query_text = " ".join(parts[f] for f in fields if parts.get(f))
        if not query_text:
            raise DatasetError(
                f"{path}:{start_line}: topic {qid} has none of the fields {list(fields)}; "
                f"it has {sorted(k for k in parts if k != 'num')}. Choose fields=... accordingly."
            )
        if qid in topics:
            raise DatasetError(f"{path}:{start_line}: topic {qid} appears twice.")
        topics[qid] = Query(id=qid, text=query_text)
    if not topics:
        raise DatasetError(f"{path}: no <top> ... </top> topics found.")
    return topics


def read_topics(path: str | os.PathLike[str], *, fields: tuple[str, ...] = ("title",)) -> dict[str, Query]:
    """Read TREC topics: SGML (``<top>`` blocks) or TSV ``qid<TAB>text`` (plain or ``.gz``).

    For SGML, the query text joins the requested ``fields`` (any of ``"title"``, ``"desc"``,
    ``"narr"``) with spaces, after removing the ``Number:``/``Topic:``/``Description:``/
    ``Narrative:`` labels and collapsing whitespace. ``fields`` does not apply to TSV topics.
    """
    fields = tuple(fields)
    if not fields or any(f not in _TOPIC_FIELDS for f in fields):
        raise DatasetError(f"fields must be a non-empty subset of {_TOPIC_FIELDS}, got {fields!r}.")
    path = _check_file(path, "topics")
    with open_text(path) as f:
        text = f.read()
    if re.search(r"<\s*top\s*>", text, flags=re.IGNORECASE):
        return _parse_sgml_topics(text, path, fields)
    from distilir.data.formats import iter_queries_file

    if path.name.lower().removesuffix(".gz").endswith((".tsv", ".txt")):
        return {q.id: q for q, _ in iter_queries_file(path)}
    raise DatasetError(
        f"{path}: neither SGML topics (<top> blocks) nor a .tsv/.txt file of 'qid<TAB>text' lines."
    )

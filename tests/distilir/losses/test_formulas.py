"""Each loss against its formula, computed by hand with explicit Python loops over a small fixed example
(plain floats and the math module, not the torch expressions of the implementation)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from distilir.losses import (
    InfoNCELoss,
    ListMLELoss,
    ListNetLoss,
    ListwiseKLLoss,
    MarginMSELoss,
    PLDLoss,
    RankNetLoss,
    TAIDLoss,
)

# Three queries, four candidates each; column 0 is the positive. Teacher row 2 has a tie.
STUDENT = [[2.0, 1.0, 0.5, -0.3], [0.1, 0.4, -1.2, 0.9], [1.5, 1.5, 0.2, 3.0]]
TEACHER = [[9.0, 4.0, 1.0, 2.5], [3.0, -1.0, 0.5, 1.0], [2.0, 2.0, 7.0, -3.0]]


def tensors():
    return torch.tensor(STUDENT, dtype=torch.float64), torch.tensor(TEACHER, dtype=torch.float64)


def softmax(xs):
    m = max(xs)
    es = [math.exp(x - m) for x in xs]
    z = sum(es)
    return [e / z for e in es]


def mean(xs):
    return sum(xs) / len(xs)


def teacher_order(t, positive_first=False):
    rest = range(1, len(t)) if positive_first else range(len(t))
    order = sorted(rest, key=lambda j: (-t[j], j))  # descending teacher score, ties by column
    return [0, *order] if positive_first else order


def pl_terms(s, order):
    """-log P_PL(order | s), term by term."""
    terms = []
    for k in range(len(order)):
        rest = order[k:]
        terms.append(math.log(sum(math.exp(s[j]) for j in rest)) - s[order[k]])
    return terms


# ----------------------------------------------------------------------------------------------------
def ref_margin_mse(S, T, mode):
    rows = []
    for s, t in zip(S, T, strict=True):
        if mode == "pairwise":
            pairs = [(0, j) for j in range(1, len(s))]
        else:
            pairs = [(i, j) for i in range(len(s)) for j in range(i + 1, len(s))]
        rows.append(mean([((s[i] - s[j]) - (t[i] - t[j])) ** 2 for i, j in pairs]))
    return mean(rows)


@pytest.mark.parametrize("mode", ["pairwise", "nway"])
def test_margin_mse_formula(mode):
    s, t = tensors()
    assert MarginMSELoss(mode)(s, t).item() == pytest.approx(
        ref_margin_mse(STUDENT, TEACHER, mode), rel=1e-12
    )


def test_margin_mse_first_row_by_hand():
    # Row 0, pairwise: margins student (1, 1.5, 2.3) vs teacher (5, 8, 6.5).
    s, t = tensors()
    expected = ((1 - 5) ** 2 + (1.5 - 8) ** 2 + (2.3 - 6.5) ** 2) / 3
    assert MarginMSELoss()(s[:1], t[:1]).item() == pytest.approx(expected, rel=1e-12)


def test_margin_mse_shift_invariance_and_zero_at_optimum():
    s, t = tensors()
    shift_s = torch.tensor([[3.0], [-7.0], [0.25]], dtype=torch.float64)
    shift_t = torch.tensor([[-1.0], [100.0], [2.0]], dtype=torch.float64)
    for mode in ("pairwise", "nway"):
        loss = MarginMSELoss(mode)
        base = loss(s, t).item()
        assert loss(s + shift_s, t + shift_t).item() == pytest.approx(base, rel=1e-12)
        assert loss(t + shift_s, t).item() == pytest.approx(0.0, abs=1e-12)
        assert base > 1.0


# ----------------------------------------------------------------------------------------------------
def ref_kl(S, T, ts, tt, scale):
    rows = []
    for s, t in zip(S, T, strict=True):
        ps = softmax([x / ts for x in s])
        pt = softmax([x / tt for x in t])
        rows.append(sum(p * (math.log(p) - math.log(q)) for p, q in zip(pt, ps, strict=True)))
    return mean(rows) * (ts**2 if scale else 1.0)


@pytest.mark.parametrize(
    ("ts", "tt", "scale"), [(1.0, 1.0, True), (2.0, 3.0, True), (2.0, 3.0, False), (0.5, 4.0, True)]
)
def test_listwise_kl_formula(ts, tt, scale):
    s, t = tensors()
    loss = ListwiseKLLoss(student_temperature=ts, teacher_temperature=tt, scale_by_temperature=scale)
    assert loss(s, t).item() == pytest.approx(ref_kl(STUDENT, TEACHER, ts, tt, scale), rel=1e-10)


def test_listwise_kl_row_shift_invariance_and_zero():
    s, t = tensors()
    shift = torch.tensor([[3.0], [-7.0], [0.25]], dtype=torch.float64)
    loss = ListwiseKLLoss(teacher_temperature=2.0)
    assert loss(s + shift, t - 2 * shift).item() == pytest.approx(loss(s, t).item(), rel=1e-10)
    assert loss(t / 2.0 + shift, t).item() == pytest.approx(0.0, abs=1e-12)


def test_listwise_kl_temperature_scaling_flag():
    s, t = tensors()
    scaled = ListwiseKLLoss(student_temperature=2.0, scale_by_temperature=True)(s, t).item()
    plain = ListwiseKLLoss(student_temperature=2.0, scale_by_temperature=False)(s, t).item()
    assert scaled == pytest.approx(4.0 * plain, rel=1e-12)


# ----------------------------------------------------------------------------------------------------
def ref_ranknet(S, T, sigma):
    rows = []
    for s, t in zip(S, T, strict=True):
        pairs = [(i, j) for i in range(len(s)) for j in range(len(s)) if t[i] > t[j]]
        if pairs:
            rows.append(mean([math.log(1 + math.exp(-sigma * (s[i] - s[j]))) for i, j in pairs]))
    return mean(rows)


@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_ranknet_formula(sigma):
    s, t = tensors()
    assert RankNetLoss(sigma)(s, t).item() == pytest.approx(ref_ranknet(STUDENT, TEACHER, sigma), rel=1e-12)


def test_ranknet_uses_only_the_teacher_order():
    s, t = tensors()
    loss = RankNetLoss()
    ranks = torch.tensor([[1, 2, 4, 3], [1, 4, 3, 2], [2, 2, 1, 4]], dtype=torch.float64)  # ties kept tied
    assert loss(s, -ranks).item() == pytest.approx(loss(s, t).item(), rel=1e-12)
    assert loss(s, torch.exp(t / 3) * 10).item() == pytest.approx(loss(s, t).item(), rel=1e-12)


def test_ranknet_rows_without_ordered_pairs_are_left_out():
    s, t = tensors()
    tied = t.clone()
    tied[1] = 5.0  # row 1 carries no order
    expected = ref_ranknet([STUDENT[0], STUDENT[2]], [TEACHER[0], TEACHER[2]], 1.0)
    assert RankNetLoss()(s, tied).item() == pytest.approx(expected, rel=1e-12)
    student = s.clone().requires_grad_(True)
    value = RankNetLoss()(student, torch.zeros_like(t))
    value.backward()
    assert value.item() == 0.0
    assert torch.equal(student.grad, torch.zeros_like(s))


# ----------------------------------------------------------------------------------------------------
def ref_listnet(S, T, tau):
    rows = []
    for s, t in zip(S, T, strict=True):
        ps = softmax([x / tau for x in s])
        pt = softmax([x / tau for x in t])
        rows.append(-sum(p * math.log(q) for p, q in zip(pt, ps, strict=True)))
    return mean(rows)


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_listnet_formula_and_relation_to_kl(tau):
    s, t = tensors()
    value = ListNetLoss(tau)(s, t).item()
    assert value == pytest.approx(ref_listnet(STUDENT, TEACHER, tau), rel=1e-12)
    # ListNet = KL + teacher entropy.
    entropy = mean([-sum(p * math.log(p) for p in softmax([x / tau for x in t])) for t in TEACHER])
    kl = ListwiseKLLoss(tau, tau, scale_by_temperature=False)(s, t).item()
    assert value == pytest.approx(kl + entropy, rel=1e-12)


# ----------------------------------------------------------------------------------------------------
def ref_listmle(S, T):
    return mean([sum(pl_terms(s, teacher_order(t))) for s, t in zip(S, T, strict=True)])


def test_listmle_formula():
    s, t = tensors()
    assert ListMLELoss()(s, t).item() == pytest.approx(ref_listmle(STUDENT, TEACHER), rel=1e-12)


def test_listmle_is_a_plackett_luce_likelihood():
    """exp(-loss) over all 4! teacher orderings is a probability distribution: it sums to one."""
    s = torch.tensor([STUDENT[1]], dtype=torch.float64)
    total = 0.0
    for perm in itertools.permutations(range(4)):
        teacher = torch.zeros(1, 4, dtype=torch.float64)
        for rank, j in enumerate(perm):
            teacher[0, j] = 4 - rank
        total += math.exp(-ListMLELoss()(s, teacher).item())
    assert total == pytest.approx(1.0, rel=1e-12)


# ----------------------------------------------------------------------------------------------------
def ref_pld(S, T, tau, positive_first):
    rows = []
    for s, t in zip(S, T, strict=True):
        order = teacher_order(t, positive_first)
        q = softmax([x / tau for x in t])
        rows.append(sum(q[j] * term for j, term in zip(order, pl_terms(s, order), strict=True)))
    return mean(rows)


@pytest.mark.parametrize(("tau", "positive_first"), [(1.0, True), (2.0, True), (1.0, False)])
def test_pld_formula(tau, positive_first):
    s, t = tensors()
    expected = ref_pld(STUDENT, TEACHER, tau, positive_first)
    assert PLDLoss(tau, positive_first)(s, t).item() == pytest.approx(expected, rel=1e-12)


def test_pld_positive_first_changes_the_target_when_the_teacher_disagrees():
    s, t = tensors()  # in row 2 the teacher puts column 2 above the positive
    assert PLDLoss(positive_first=True)(s[2:], t[2:]).item() != pytest.approx(
        PLDLoss(positive_first=False)(s[2:], t[2:]).item(), rel=1e-6
    )


def test_pld_special_cases():
    s, t = tensors()
    # A uniform teacher gives weights 1/N on the stable order 0..N-1: ListMLE / N.
    flat = torch.zeros_like(t)
    assert PLDLoss()(s, flat).item() == pytest.approx(ListMLELoss()(s, flat).item() / 4, rel=1e-12)
    # A teacher certain of the positive gives cross entropy on column 0.
    sure = torch.tensor([[200.0, 0.0, 0.0, 0.0]] * 3, dtype=torch.float64)
    ce = mean([-math.log(softmax(row)[0]) for row in STUDENT])
    assert PLDLoss()(s, sure).item() == pytest.approx(ce, rel=1e-12)
    # Translation invariance per row.
    shift = torch.tensor([[3.0], [-7.0], [0.25]], dtype=torch.float64)
    assert PLDLoss()(s + shift, t + shift).item() == pytest.approx(PLDLoss()(s, t).item(), rel=1e-12)


# ----------------------------------------------------------------------------------------------------
def ref_taid(S, T, interp, tau):
    rows = []
    for s, u in zip(S, T, strict=True):
        p = softmax([((1 - interp) * a + interp * b) / tau for a, b in zip(s, u, strict=True)])
        q = softmax([a / tau for a in s])
        rows.append(sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True)))
    return mean(rows)


@pytest.mark.parametrize(("t_start", "tau"), [(0.4, 1.0), (0.7, 2.0)])
def test_taid_formula(t_start, tau):
    s, t = tensors()
    loss = TAIDLoss(t_start=t_start, temperature=tau)
    assert loss(s, t).item() == pytest.approx(ref_taid(STUDENT, TEACHER, t_start, tau), rel=1e-10)


def test_taid_endpoints():
    s, t = tensors()
    at_one = TAIDLoss(t_start=1.0, t_end=1.0)(s, t).item()
    assert at_one == pytest.approx(ListwiseKLLoss()(s, t).item(), rel=1e-12)
    assert TAIDLoss(t_start=0.0)(s, t).item() == pytest.approx(0.0, abs=1e-15)


def test_taid_gradient_treats_the_target_as_a_constant():
    """d/ds KL(p || softmax(s)) with p constant is (softmax(s) - p) / B; without the stop-gradient the
    interpolated target would contribute more terms."""
    s, t = tensors()
    student = s.clone().requires_grad_(True)
    TAIDLoss(t_start=0.4)(student, t).backward()
    for i, (row_s, row_t) in enumerate(zip(STUDENT, TEACHER, strict=True)):
        p = softmax([0.6 * a + 0.4 * b for a, b in zip(row_s, row_t, strict=True)])
        q = softmax(row_s)
        for j in range(4):
            assert student.grad[i, j].item() == pytest.approx((q[j] - p[j]) / 3, abs=1e-12)


def test_taid_linear_schedule():
    loss = TAIDLoss(t_start=0.4, t_end=1.0)
    assert loss.current_t == pytest.approx(0.4)
    assert loss.set_progress(50, 100) == pytest.approx(0.7)
    assert loss.set_progress(100, 100) == pytest.approx(1.0)
    assert loss.set_progress(150, 100) == pytest.approx(1.0)
    assert loss.set_progress(0, 100) == pytest.approx(0.4)
    assert float(loss.state_dict()["t"]) == pytest.approx(0.4)


def test_taid_adaptive_schedule_by_hand():
    alpha, beta = 0.05, 0.9
    loss = TAIDLoss(t_start=0.2, t_end=0.9, adaptive=True, alpha=alpha, beta=beta)
    losses = [2.0, 1.5, 1.4, 1.6]
    t_ref, m_ref, prev = 0.2, 0.0, None
    for step, value in enumerate(losses):
        linear = 0.2 + 0.7 * step / 1000
        if prev is not None:
            m_ref = beta * m_ref + (1 - beta) * (prev - value) / (prev + 1e-15)
            t_ref = t_ref + alpha * (1 / (1 + math.exp(-m_ref))) * (1 - t_ref)
        prev = value
        t_ref = min(0.9, max(linear, t_ref))
        assert loss.set_progress(step, 1000, loss=value) == pytest.approx(t_ref, rel=1e-12)
    assert t_ref > 0.2 + 0.7 * 3 / 1000  # the adaptive update moved t beyond the linear floor
    # Without an explicit value the loss of the latest forward pass is used.
    s, t = tensors()
    observed = loss(s, t).item()
    m_ref = beta * m_ref + (1 - beta) * (prev - observed) / (prev + 1e-15)
    t_ref = min(0.9, max(0.2 + 0.7 * 4 / 1000, t_ref + alpha / (1 + math.exp(-m_ref)) * (1 - t_ref)))
    assert loss.set_progress(4, 1000) == pytest.approx(t_ref, rel=1e-12)


# ----------------------------------------------------------------------------------------------------
def ref_infonce(S, positives, tau):
    return mean([-math.log(softmax([x / tau for x in row])[p]) for row, p in zip(S, positives, strict=True)])


def test_infonce_formula():
    scores = torch.tensor(STUDENT, dtype=torch.float64)
    loss = InfoNCELoss(temperature=0.5)(scores, torch.tensor([0, 3, 1]))
    assert loss.item() == pytest.approx(ref_infonce(STUDENT, [0, 3, 1], 0.5), rel=1e-12)


def test_infonce_from_embeddings_builds_the_in_batch_matrix():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 5, generator=gen, dtype=torch.float64)
    d = torch.randn(6, 5, generator=gen, dtype=torch.float64)  # 3 documents per query, positive first

    def cos(a, b):
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    matrix = [[cos(qi.tolist(), dj.tolist()) for dj in d] for qi in q]
    loss = InfoNCELoss(temperature=0.05).from_embeddings(q, d)
    assert loss.item() == pytest.approx(ref_infonce(matrix, [0, 3], 0.05), rel=1e-10)
    dots = [[sum(x * y for x, y in zip(qi.tolist(), dj.tolist(), strict=True)) for dj in d] for qi in q]
    loss = InfoNCELoss(temperature=1.0).from_embeddings(q, d, torch.tensor([1, 4]), similarity="dot")
    assert loss.item() == pytest.approx(ref_infonce(dots, [1, 4], 1.0), rel=1e-10)


def test_infonce_gather_hook_shifts_positive_indices():
    """Unit test of the distributed hook with a stand-in gather (documents of a fake second process)."""
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    local = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    remote = torch.randn(4, 4, generator=gen, dtype=torch.float64)

    def gather(docs):  # this process is rank 1 of 2
        return torch.cat([remote, docs]), remote.shape[0]

    gathered = InfoNCELoss(1.0, gather_documents=gather).from_embeddings(q, local, similarity="dot")
    expected = ref_infonce((q @ torch.cat([remote, local]).T).tolist(), [4, 6], 1.0)
    assert gathered.item() == pytest.approx(expected, rel=1e-10)

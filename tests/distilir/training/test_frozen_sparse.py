"""frozen_sparse: scores of a sparse frozen document matrix, top-k pruning, one training step."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from distilir.training.frozen_index import full_corpus_kl
from distilir.training.frozen_sparse import prune_top_k, sparse_scores, to_torch_sparse


def _docs(seed: int = 0, n: int = 7, v: int = 11) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.random((n, v)).astype(np.float32)
    dense[rng.random((n, v)) < 0.6] = 0.0
    return sp.csr_matrix(dense)


def test_scores_equal_dense_matmul():
    docs = _docs()
    q = torch.from_numpy(np.random.default_rng(1).random((3, docs.shape[1])).astype(np.float32))
    expected = q.numpy() @ docs.toarray().T
    np.testing.assert_allclose(sparse_scores(q, to_torch_sparse(docs)).numpy(), expected, rtol=1e-6)


def test_prune_keeps_each_rows_largest_weights():
    docs = _docs()
    pruned = prune_top_k(docs, 2)
    for i in range(docs.shape[0]):
        row = docs.getrow(i).toarray()[0]
        keep = np.sort(row[row > 0])[::-1][:2]
        np.testing.assert_allclose(np.sort(pruned.getrow(i).data)[::-1], keep)
    assert prune_top_k(docs, None).nnz == docs.nnz


def test_one_step_lowers_the_full_corpus_kl():
    docs = to_torch_sparse(_docs())
    torch.manual_seed(0)
    # a query "encoder": a linear map followed by SPLADE's activation, non-negative like SPLADE
    encoder = torch.nn.Linear(4, docs.shape[1])
    x = torch.randn(3, 4)
    rows = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 0, 1]])
    teacher = torch.tensor([[2.0, 0.0, -1.0], [1.0, 0.5, 0.0], [0.0, 1.0, 2.0]])
    mask = torch.ones_like(rows, dtype=torch.bool)
    optim = torch.optim.SGD(encoder.parameters(), lr=0.1)

    def loss() -> torch.Tensor:
        q = torch.log1p(torch.relu(encoder(x)))
        return full_corpus_kl(sparse_scores(q, docs), rows, teacher, mask, 1.0, 1.0)

    before = loss()
    optim.zero_grad()
    before.backward()
    optim.step()
    assert float(loss().detach()) < float(before.detach())

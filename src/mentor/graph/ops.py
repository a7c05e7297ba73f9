"""One implementation of graph normalisation, sparse propagation and kNN graphs for all models."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch


class _SparseMatmul(torch.autograd.Function):
    """``A @ x`` whose backward is ``A^T @ grad`` with a precomputed transpose."""

    @staticmethod
    def forward(ctx, matrix: torch.Tensor, transpose: torch.Tensor, x: torch.Tensor):  # type: ignore[override]
        ctx.transpose = transpose
        return torch.sparse.mm(matrix, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return None, None, torch.sparse.mm(ctx.transpose, grad)


@dataclass
class SparseGraph:
    """A sparse matrix ready for propagation on any device.

    Attributes:
        matrix: sparse CSR tensor [n_rows, n_cols].
        transpose: its transpose (the same object when the matrix is symmetric).
    """

    matrix: torch.Tensor
    transpose: torch.Tensor

    @classmethod
    def from_scipy(cls, matrix: sp.spmatrix, symmetric: bool = False) -> SparseGraph:
        """Wrap a scipy matrix (float32 CSR on the CPU)."""

        def to_torch(m: sp.spmatrix) -> torch.Tensor:
            m = sp.csr_matrix(m, dtype=np.float32)
            m.sort_indices()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
                return torch.sparse_csr_tensor(
                    torch.from_numpy(m.indptr.astype(np.int64)),
                    torch.from_numpy(m.indices.astype(np.int64)),
                    torch.from_numpy(m.data),
                    size=m.shape,
                    check_invariants=False,
                )

        forward = to_torch(matrix)
        return cls(forward, forward if symmetric else to_torch(matrix.T))

    @property
    def T(self) -> SparseGraph:  # noqa: N802
        """The transposed graph (no copy)."""
        return SparseGraph(self.transpose, self.matrix)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return tuple(self.matrix.shape)  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> SparseGraph:
        """Copy to ``device``; a symmetric graph stays one tensor. MPS gets COO tensors (its
        sparse kernels take that layout)."""
        device = torch.device(device)

        def move(m: torch.Tensor) -> torch.Tensor:
            if device.type == "mps" and m.layout == torch.sparse_csr:
                m = m.to_sparse_coo().coalesce()
            return m.to(device)

        forward = move(self.matrix)
        same = self.transpose is self.matrix
        return SparseGraph(forward, forward if same else move(self.transpose))

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        """Propagate: [n_cols, d] -> [n_rows, d], differentiable in ``x``."""
        if x.requires_grad:
            return _SparseMatmul.apply(self.matrix, self.transpose, x)
        return torch.sparse.mm(self.matrix, x)

    def to_scipy(self) -> sp.csr_matrix:
        """The forward matrix as scipy CSR (for tests and caching)."""
        m = self.matrix.to("cpu")
        return sp.csr_matrix(
            (m.values().numpy(), m.col_indices().numpy(), m.crow_indices().numpy()),
            shape=self.shape,
        )


def normalise_sym(adj: sp.spmatrix) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` with D the row sums of A (zero rows stay zero)."""
    adj = sp.csr_matrix(adj, dtype=np.float64)
    degree = np.asarray(adj.sum(axis=1)).ravel()
    inv = np.zeros_like(degree)
    nonzero = degree > 0
    inv[nonzero] = degree[nonzero] ** -0.5
    scale = sp.diags(inv)
    return sp.csr_matrix(scale @ adj @ scale, dtype=np.float32)


def bipartite_graph(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
) -> SparseGraph:
    """Symmetric-normalised user-item graph over ``n_users + n_items`` nodes (users first).

    Args:
        users, items: int arrays [N] of train interactions (duplicates count once).
    """
    r = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items)
    )
    r.data[:] = 1.0
    adj = sp.bmat([[None, r], [r.T, None]], format="csr")
    return SparseGraph.from_scipy(normalise_sym(adj), symmetric=True)


def interaction_graph(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
) -> SparseGraph:
    """The user-item block ``D_u^-1/2 R D_i^-1/2`` [n_users, n_items] of :func:`bipartite_graph`.

    Propagating users and items separately with it (``users <- G @ items``,
    ``items <- G^T @ users``) equals one product with the full bipartite graph, without the
    concatenation and slicing of [(U+I), d] tables.
    """
    r = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items)
    )
    r.data[:] = 1.0
    deg_u = np.asarray(r.sum(axis=1)).ravel()
    deg_i = np.asarray(r.sum(axis=0)).ravel()
    inv_u = np.divide(1.0, np.sqrt(deg_u), out=np.zeros_like(deg_u), where=deg_u > 0)
    inv_i = np.divide(1.0, np.sqrt(deg_i), out=np.zeros_like(deg_i), where=deg_i > 0)
    return SparseGraph.from_scipy(sp.diags(inv_u) @ r @ sp.diags(inv_i))


def knn_indices(
    features: torch.Tensor,
    k: int,
    block_size: int | None = None,
    progress: bool = False,
    memory_bytes: int = 256 * 2**20,
) -> torch.Tensor:
    """Top-``k`` cosine neighbours of every row (itself included), computed in row blocks.

    Never forms the full ``n x n`` similarity matrix: a block holds ``block_size x n``
    similarities, by default as many rows as fit in ``memory_bytes`` (256 MB: 64 rows at
    10^6 items).

    Args:
        features: [n, d] raw features.
        k: neighbours per row (capped at n).
    Returns:
        int64 [n, k] neighbour indices, most similar first.
    """
    normed = torch.nn.functional.normalize(features.float(), dim=1)
    n = normed.shape[0]
    k = min(k, n)
    if block_size is None:
        block_size = max(1, min(4096, memory_bytes // (4 * n)))
    out = torch.empty((n, k), dtype=torch.long, device=features.device)
    starts = range(0, n, block_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="kNN graph", unit="block", leave=False)
    for start in starts:
        sims = normed[start : start + block_size] @ normed.T
        out[start : start + block_size] = torch.topk(sims, k, dim=1).indices
    return out


def knn_graph(indices: torch.Tensor, n: int) -> sp.csr_matrix:
    """Binary kNN adjacency from neighbour indices [n, k], symmetric-normalised by row degree."""
    idx = indices.cpu().numpy()
    rows = np.repeat(np.arange(n), idx.shape[1])
    adj = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, idx.ravel())), shape=(n, n))
    return normalise_sym(adj)

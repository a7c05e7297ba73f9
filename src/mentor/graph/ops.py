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

    @classmethod
    def from_edges(
        cls, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]
    ) -> SparseGraph:
        """Build on the device of the int64 [E] ``rows``, ``cols`` and float [E] ``values``
        (values of repeated pairs are summed): CSR, or COO on MPS."""

        def build(r: torch.Tensor, c: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
            index = torch.stack([r, c])
            coo = torch.sparse_coo_tensor(index, values, size, check_invariants=False).coalesce()
            if coo.device.type == "mps":
                return coo
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
                return coo.to_sparse_csr()

        return cls(build(rows, cols, shape), build(cols, rows, (shape[1], shape[0])))

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


def edge_norm(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """``1 / sqrt(d_u d_i)`` of every edge (degrees counted over the given edges): float [E].

    Args:
        users, items: int64 [E] unique (user, item) edges on any device.
    """
    deg_u = torch.bincount(users, minlength=n_users).float()
    deg_i = torch.bincount(items, minlength=n_items).float()
    return (deg_u[users] * deg_i[items]).rsqrt()


def edge_subgraph(
    users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int
) -> SparseGraph:
    """The user-item block ``D_u^-1/2 R D_i^-1/2`` [n_users, n_items] of a subset of the train
    edges, with degrees of that subset, built on the edges' device (per-epoch edge dropout)."""
    values = edge_norm(users, items, n_users, n_items)
    return SparseGraph.from_edges(users, items, values, (n_users, n_items))


def mean_graphs(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
) -> tuple[SparseGraph, SparseGraph]:
    """Mean aggregation over the user-item graph: ``(D_u^-1 R [U, I], D_i^-1 R^T [I, U])``.

    ``users <- first @ items`` and ``items <- second @ users`` average each node's neighbours
    (nodes without neighbours get zeros). Duplicate (user, item) pairs count once.
    """
    r = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items)
    )
    r.data[:] = 1.0

    def row_mean(m: sp.csr_matrix) -> SparseGraph:
        degree = np.asarray(m.sum(axis=1)).ravel()
        inv = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
        return SparseGraph.from_scipy(sp.diags(inv) @ m)

    return row_mean(r), row_mean(sp.csr_matrix(r.T))


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

    An all-zero row has no direction, so no cosine (the official code divides by its zero norm
    and gets NaN): its ``k`` neighbours are itself, repeated (a self-loop of weight 1 after
    :func:`knn_graph`), and other rows rank it below every real neighbour.

    Args:
        features: [n, d] raw features.
        k: neighbours per row (capped at n).
    Returns:
        int64 [n, k] neighbour indices, most similar first.
    """
    normed = torch.nn.functional.normalize(features.float(), dim=1)
    zero = ~(features != 0).any(dim=1)
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
        sims[:, zero] = -2.0  # below any cosine
        out[start : start + block_size] = torch.topk(sims, k, dim=1).indices
    rows = torch.nonzero(zero).flatten()
    out[rows] = rows[:, None].expand(-1, k)
    return out


def knn_graph(indices: torch.Tensor, n: int) -> sp.csr_matrix:
    """Binary kNN adjacency from neighbour indices [n, k], symmetric-normalised by row degree.

    A repeated index counts once per occurrence (a row of ``k`` self-indices becomes a
    self-loop of weight 1 after normalisation)."""
    idx = indices.cpu().numpy()
    rows = np.repeat(np.arange(n), idx.shape[1])
    adj = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, idx.ravel())), shape=(n, n))
    return normalise_sym(adj)

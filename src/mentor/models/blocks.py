"""Small building blocks shared by the LATTICE, SLMRec, BM3 and MMSSL ports.

Initialisers draw only from the generator they are given (no global random state); graph helpers
build scipy matrices once on the CPU and return :class:`~mentor.graph.SparseGraph` objects.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from mentor.graph import SparseGraph


def dropout(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Inverted dropout of ``x`` (any shape) with drop probability ``p``, drawn from
    ``generator`` (``F.dropout`` in training mode, but reproducible)."""
    if p <= 0.0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x * keep / (1.0 - p)


def ordered_modalities(names: list[str]) -> list[str]:
    """Modalities in role order: ``image`` first, ``text`` last, any others between them in the
    data set's order. Without those names the data set's order decides (e.g. ml-100k-mm's
    ``genre`` takes the image role and ``text`` the text role)."""
    middle = [m for m in names if m not in ("image", "text")]
    return (["image"] if "image" in names else []) + middle + (["text"] if "text" in names else [])


def interaction_matrix(train: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary user-item matrix R [n_users, n_items] of train rows int [N, 2]."""
    r = sp.csr_matrix(
        (np.ones(len(train), dtype=np.float32), (train[:, 0], train[:, 1])),
        shape=(n_users, n_items),
    )
    r.data[:] = 1.0
    return r


def random_walk_graph(train: np.ndarray, n_users: int, n_items: int) -> SparseGraph:
    """``D^-1 (A + I)`` over ``n_users + n_items`` nodes (users first), with A the bipartite
    adjacency and D its row sums after the self-loops: LATTICE's ``norm_adj``."""
    r = interaction_matrix(train, n_users, n_items)
    adj = sp.bmat([[None, r], [r.T, None]], format="csr") + sp.eye(n_users + n_items)
    degree = np.asarray(adj.sum(axis=1)).ravel()
    return SparseGraph.from_scipy(sp.diags(1.0 / degree) @ adj)


def layer_mean(graph: SparseGraph, x: torch.Tensor, layers: int) -> torch.Tensor:
    """LightGCN output ``mean(x, G x, ..., G^layers x)`` for x [n, d] over a square graph [n, n]."""
    total, h = x, x
    for _ in range(layers):
        h = graph @ h
        total = total + h
    return total / (layers + 1)


def bipartite_layer_mean(
    graph: SparseGraph, users: torch.Tensor, items: torch.Tensor, layers: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """LightGCN layer mean over a symmetric-normalised user-item block ``graph`` [U, I]:
    users [U, d], items [I, d] -> (users [U, d], items [I, d]); equal to :func:`layer_mean` over
    the full bipartite graph."""
    h_u, h_i = users, items
    total_u, total_i = users, items
    for _ in range(layers):
        h_u, h_i = graph @ h_i, graph.T @ h_u
        total_u, total_i = total_u + h_u, total_i + h_i
    return total_u / (layers + 1), total_i / (layers + 1)

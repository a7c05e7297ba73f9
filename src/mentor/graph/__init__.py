"""Shared graph operations: normalisation, sparse propagation and kNN item graphs."""

from mentor.graph.ops import (
    SparseGraph,
    bipartite_graph,
    interaction_graph,
    knn_graph,
    knn_indices,
    normalise_sym,
)

__all__ = [
    "SparseGraph",
    "bipartite_graph",
    "interaction_graph",
    "knn_graph",
    "knn_indices",
    "normalise_sym",
]

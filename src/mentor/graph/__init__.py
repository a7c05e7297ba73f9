"""Shared graph operations: normalisation, sparse propagation and kNN item graphs."""

from mentor.graph.ops import (
    SparseGraph,
    bipartite_graph,
    edge_norm,
    edge_subgraph,
    interaction_graph,
    knn_graph,
    knn_indices,
    mean_graphs,
    normalise_sym,
)

__all__ = [
    "SparseGraph",
    "bipartite_graph",
    "edge_norm",
    "edge_subgraph",
    "interaction_graph",
    "knn_graph",
    "knn_indices",
    "mean_graphs",
    "normalise_sym",
]

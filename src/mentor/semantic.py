"""Item semantic graphs (kNN over raw features), built in blocks and cached by content key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import scipy.sparse as sp
import torch

from mentor import __version__
from mentor.data.dataset import Dataset
from mentor.errors import MentorError
from mentor.fsutil import atomic_path
from mentor.graph import SparseGraph, knn_graph, knn_indices

GRAPH_VERSION = f"knn-sym-2/mentor-{__version__}"


def semantic_graph(
    features: dict[str, torch.Tensor],
    weights: dict[str, float],
    k: int,
    block_size: int | None = None,
    progress: bool = False,
) -> sp.csr_matrix:
    """``sum_m weights[m] * D^-1/2 A_m D^-1/2`` with ``A_m`` the binary top-``k`` cosine graph.

    Args:
        features: ``{modality: [n_items, dim]}`` raw item features.
        weights: mixing weight per modality (modalities absent here are skipped).
    Returns:
        float32 CSR [n_items, n_items] (directed: row i holds i's neighbours).
    """
    total: sp.csr_matrix | None = None
    for modality, weight in weights.items():
        feat = features[modality]
        part = knn_graph(knn_indices(feat, k, block_size, progress), feat.shape[0]) * weight
        total = part if total is None else total + part
    if total is None:
        raise MentorError("the item semantic graph needs at least one feature modality")
    return sp.csr_matrix(total, dtype="float32")


class SemanticGraphCache:
    """Builds semantic graphs once and keeps them under a key of everything that produced them.

    The key hashes the feature checksums, ``k``, the weights and :data:`GRAPH_VERSION`; files live
    in ``folder`` (the run's or the user's cache), never in the data folder.
    """

    def __init__(self, folder: Path, progress: bool = False) -> None:
        self.folder = folder
        self.progress = progress

    def key(self, dataset: Dataset, weights: dict[str, float], k: int) -> str:
        """Content key of one graph."""
        payload = {
            "version": GRAPH_VERSION,
            "k": k,
            "weights": {m: float(w) for m, w in sorted(weights.items())},
            "features": {m: dataset.feature_checksum(m) for m in sorted(weights)},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]

    def get(self, dataset: Dataset, weights: dict[str, float], k: int) -> SparseGraph:
        """The graph for ``weights`` and ``k`` over ``dataset``'s features (CPU)."""
        missing = [m for m in weights if m not in dataset.features]
        if missing:
            raise MentorError(
                f"semantic graph weights name modality '{missing[0]}' but the data set has "
                f"{', '.join(dataset.features) or 'no features'}"
            )
        path = self.folder / f"semantic-{self.key(dataset, weights, k)}.npz"
        if path.exists():
            return SparseGraph.from_scipy(sp.load_npz(path))
        feats = {m: torch.from_numpy(dataset.features[m]) for m in weights}
        matrix = semantic_graph(feats, weights, k, progress=self.progress)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            sp.save_npz(handle, matrix)
        return SparseGraph.from_scipy(matrix)

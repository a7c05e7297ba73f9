"""The model a run trains, evaluates, exports and serves: its context built from a data set.

:func:`build_context` turns a :class:`~mentor.data.dataset.Dataset` into the
:class:`~mentor.models.base.ModelContext` every model reads (graphs, features, the cached
semantic kNN graph) on a device; :func:`build_model` instantiates the configured model on it.
"""

from __future__ import annotations

import torch

from mentor.config import RunConfig
from mentor.data.dataset import Dataset
from mentor.errors import MentorError
from mentor.graph import SparseGraph, bipartite_graph, interaction_graph
from mentor.models.base import ModelContext, Recommender
from mentor.registry import get_model
from mentor.semantic import SemanticGraphCache


def build_context(
    dataset: Dataset, device: torch.device, cache: SemanticGraphCache
) -> ModelContext:
    """The model context of ``dataset`` on ``device``."""
    train = dataset.train
    graph = bipartite_graph(train[:, 0], train[:, 1], dataset.n_users, dataset.n_items)
    interactions = interaction_graph(train[:, 0], train[:, 1], dataset.n_users, dataset.n_items)
    features = {m: torch.from_numpy(f).to(device) for m, f in dataset.features.items()}

    def semantic(weights: dict[str, float], k: int) -> SparseGraph:
        return cache.get(dataset, weights, k).to(device)

    return ModelContext(
        n_users=dataset.n_users,
        n_items=dataset.n_items,
        train=train,
        graph=graph.to(device),
        interactions=interactions.to(device),
        features=features,
        semantic_graph=semantic,
    )


def build_model(
    config: RunConfig, dataset: Dataset, device: torch.device, cache: SemanticGraphCache
) -> Recommender:
    """Instantiate the configured model, seeded, on ``device``."""
    spec = get_model(config.model_name)
    if spec.modalities == "required" and not dataset.features:
        raise MentorError(
            f"{dataset.path}: model '{spec.name}' needs item features (<modality>_feat.npy); "
            "none were found or selected"
        )
    ctx = build_context(dataset, device, cache)
    generator = torch.Generator().manual_seed(config.train.seed)
    model = spec.model_cls(config.model, ctx, generator)
    return model.to(device)

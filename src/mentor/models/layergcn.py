"""LayerGCN (Zhou et al., "Layer-refined Graph Convolutional Networks for Recommendation",
ICDE 2023).

Checked against MMRec's ``src/models/layergcn.py`` and ``configs/model/LayerGCN.yaml`` (commit
e775373), term by term; ID embeddings only (MMRec loads item features it never reads).

Shapes: U users, I items, E unique train edges, d = ``embedding_size``.

* Layer l: ``h_l = A h_{l-1}`` over the user-item graph, then every node's row is scaled by
  ``cos(h_l, h_0)`` (the refined row is what the next layer propagates); the output is
  ``h_1 + ... + h_L`` (layer 0 left out).
* Training graph: each epoch keeps ``int(E * (1 - dropout))`` edges, renormalised by the degrees
  of the kept edges. Odd epochs sample edges with probability proportional to
  ``1 / sqrt(d_u d_i)`` (without replacement), even epochs uniformly, as MMRec alternates its
  ``pruning_random`` flag starting from degree sampling. Evaluation uses the full graph.
* Loss: BPR **summed** over the batch, plus ``reg_weight * 1/2 * sum`` of the squared layer-0
  rows of the batch's users, positives and negatives (MMRec's L2Loss, not divided by B).

Departures: degree-weighted sampling draws exponential keys (Efraimidis-Spirakis), which has the
distribution of MMRec's ``torch.multinomial`` without replacement and no 2^24 edge limit; MMRec's
degree epsilon 1e-7 is left out (every kept edge has degree >= 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.graph import SparseGraph, edge_norm, edge_subgraph
from mentor.losses import rows
from mentor.models.base import DotProductRecommender, ModelContext, xavier_uniform


@dataclass
class LayerGCNConfig:
    """LayerGCN hyper-parameters (MMRec names). ``dropout`` and ``reg_weight`` are the point of
    MMRec's grid chosen on valid on Amazon Baby (README, "LayerGCN on Amazon Baby")."""

    embedding_size: int = 64
    n_layers: int = 4
    reg_weight: float = 1e-2
    dropout: float = 0.2

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        if self.embedding_size < 1 or self.n_layers < 1:
            raise MentorError(f"{where}.embedding_size and n_layers must be at least 1")
        if not 0 <= self.dropout < 1:
            raise MentorError(f"{where}.dropout must be in [0, 1)")


def _refine(h: torch.Tensor, ego: torch.Tensor, ego_norm: torch.Tensor) -> torch.Tensor:
    """Rows of ``h`` [n, d] scaled by their cosine to ``ego`` [n, d] (``ego_norm`` [n] its row
    norms): ``F.cosine_similarity``'s value (eps 1e-8) with fewer full-size operations."""
    dot = (h * ego).sum(1)
    cos = dot / (torch.linalg.vector_norm(h, dim=1) * ego_norm).clamp_min(1e-8)
    return h * cos.unsqueeze(1)


class TrainEdges(nn.Module):
    """The unique train edges and their ``1 / sqrt(d_u d_i)`` weights, as non-persistent buffers
    (they follow ``.to()``), with per-epoch edge dropout.

    Attributes:
        users, items: int64 [E]; weights: float [E].
    """

    users: torch.Tensor
    items: torch.Tensor
    weights: torch.Tensor

    def __init__(self, train: np.ndarray, n_users: int, n_items: int) -> None:
        super().__init__()
        pairs = torch.from_numpy(np.unique(train, axis=0))
        self.n_users, self.n_items = n_users, n_items
        self.register_buffer("users", pairs[:, 0].contiguous(), persistent=False)
        self.register_buffer("items", pairs[:, 1].contiguous(), persistent=False)
        weights = edge_norm(self.users, self.items, n_users, n_items)
        self.register_buffer("weights", weights, persistent=False)

    def keep(self, dropout: float, by_degree: bool, generator: torch.Generator) -> SparseGraph:
        """The normalised user-item block [U, I] of ``int(E * (1 - dropout))`` kept edges.

        ``by_degree`` samples without replacement with probability proportional to the edge
        weights (keys ``log(u) / w``, largest kept); otherwise uniformly.
        """
        n = len(self.weights)
        count = int(n * (1.0 - dropout))
        uniform = torch.rand(n, generator=generator, device=self.weights.device)
        if by_degree:
            order = torch.argsort(uniform.log() / self.weights, descending=True)
        else:
            order = torch.argsort(uniform)
        kept = order[:count]
        return edge_subgraph(self.users[kept], self.items[kept], self.n_users, self.n_items)


class LayerGCN(DotProductRecommender):
    """ID embeddings refined layer by layer by their similarity to layer 0."""

    name = "layergcn"

    def summed_terms(self) -> frozenset[str]:
        """BPR and L2 are sums over the batch's rows (the official code's), not means."""
        return frozenset({"bpr", "reg"})

    def __init__(
        self, config: LayerGCNConfig, ctx: ModelContext, generator: torch.Generator
    ) -> None:
        super().__init__(config, ctx, generator)
        self.graph = ctx.interactions
        self.train_graph = ctx.interactions
        self.edges = TrainEdges(ctx.train, ctx.n_users, ctx.n_items)
        self.user_embeddings = xavier_uniform((ctx.n_users, config.embedding_size), generator)
        self.item_embeddings = xavier_uniform((ctx.n_items, config.embedding_size), generator)

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """Edge dropout: degree-weighted on odd epochs, uniform on even ones."""
        if self.config.dropout > 0:
            self.train_graph = self.edges.keep(self.config.dropout, epoch % 2 == 1, generator)

    def propagate(self, graph: SparseGraph) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of refined layers 1..L over ``graph`` [U, I]: users [U, d], items [I, d]."""
        e_u, e_i = self.user_embeddings, self.item_embeddings
        norm_u, norm_i = torch.linalg.vector_norm(e_u, dim=1), torch.linalg.vector_norm(e_i, dim=1)
        h_u, h_i = e_u, e_i
        total_u = total_i = None
        for _ in range(self.config.n_layers):
            h_u, h_i = graph @ h_i, graph.T @ h_u
            h_u, h_i = _refine(h_u, e_u, norm_u), _refine(h_i, e_i, norm_i)
            total_u = h_u if total_u is None else total_u + h_u
            total_i = h_i if total_i is None else total_i + h_i
        assert total_u is not None and total_i is not None
        return total_u, total_i

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Summed BPR over the epoch's graph + L2 (1/2 sum of squares) of layer-0 rows."""
        users, items = self.propagate(self.train_graph)
        u = rows(users, batch.users)
        pos = (u * rows(items, batch.positives)).sum(1)
        neg = (u * rows(items, batch.negatives)).sum(1)
        ego = (
            rows(self.user_embeddings, batch.users),
            rows(self.item_embeddings, batch.positives),
            rows(self.item_embeddings, batch.negatives),
        )
        l2 = 0.5 * sum(e.pow(2).sum() for e in ego)
        return {
            "bpr": -nn.functional.logsigmoid(pos - neg).sum(),
            "reg": self.config.reg_weight * l2,  # type: ignore[dict-item]
        }

    def full_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [U, d] and items [I, d] over the full (not edge-dropped) graph."""
        return self.propagate(self.graph)

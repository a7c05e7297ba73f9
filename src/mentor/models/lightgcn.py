"""LightGCN (He et al., SIGIR 2020) as in MMRec's ``models/lightgcn.py``.

Embeddings propagated ``n_layers`` times over the symmetric-normalised user-item graph; the final
representation is the mean of all layers (including layer 0). Regularisation is MMRec's EmbLoss
on the layer-0 embeddings of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mentor.data.sampler import Batch
from mentor.losses import bpr_loss, emb_norm_loss, rows
from mentor.models.base import DotProductRecommender, ModelContext, xavier_uniform


@dataclass
class LightGCNConfig:
    """LightGCN hyper-parameters (MMRec names and defaults)."""

    embedding_size: int = 64
    n_layers: int = 2
    reg_weight: float = 1e-4

    def validate(self, where: str) -> None:
        """At least one layer."""
        from mentor.errors import MentorError

        if self.n_layers < 0:
            raise MentorError(f"{where}.n_layers must be >= 0")


class LightGCN(DotProductRecommender):
    """Graph-propagated ID embeddings."""

    name = "lightgcn"

    def __init__(
        self, config: LightGCNConfig, ctx: ModelContext, generator: torch.Generator
    ) -> None:
        super().__init__(config, ctx, generator)
        self.graph = ctx.interactions
        self.user_embedding = xavier_uniform((ctx.n_users, config.embedding_size), generator)
        self.item_embedding = xavier_uniform((ctx.n_items, config.embedding_size), generator)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-mean representations: users [n_users, d], items [n_items, d].

        One layer is ``users <- G @ items, items <- G^T @ users`` with G the normalised user-item
        block, the same as a product with the full bipartite graph.
        """
        h_u, h_i = self.user_embedding, self.item_embedding
        total_u, total_i = h_u, h_i
        for _ in range(self.config.n_layers):
            h_u, h_i = self.graph @ h_i, self.graph.T @ h_u
            total_u, total_i = total_u + h_u, total_i + h_i
        scale = 1.0 / (self.config.n_layers + 1)
        return total_u * scale, total_i * scale

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """BPR on propagated embeddings + EmbLoss on layer-0 embeddings."""
        users, items = self.propagate()
        u, p, n = (
            rows(users, batch.users),
            rows(items, batch.positives),
            rows(items, batch.negatives),
        )
        whole = batch.all_rows()  # EmbLoss is a norm of the whole batch, not a mean of rows
        reg = emb_norm_loss(
            rows(self.user_embedding, whole.users),
            rows(self.item_embedding, whole.positives),
            rows(self.item_embedding, whole.negatives),
        )
        return {
            "bpr": bpr_loss((u * p).sum(1), (u * n).sum(1)),
            "reg": self.config.reg_weight * reg,
        }

    def full_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-mean users [U, d] and items [I, d]."""
        return self.propagate()

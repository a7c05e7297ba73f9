"""MF-BPR (Rendle et al., UAI 2009) as MMRec's ``BPR`` model: dot-product matrix factorisation.

Checked against MMRec's ``models/bpr.py``: Xavier-normal embeddings (MMRec applies its
``xavier_normal_initialization`` to both tables), BPR loss plus
``reg_weight`` times the EmbLoss (sum of norms / batch) of the batch embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mentor.data.sampler import Batch
from mentor.losses import bpr_loss, emb_norm_loss, rows
from mentor.models.base import ModelContext, Recommender, xavier_normal


@dataclass
class MFConfig:
    """MF-BPR hyper-parameters (MMRec names and defaults)."""

    embedding_size: int = 64
    reg_weight: float = 1e-4


class MFBPR(Recommender):
    """Users and items as free 64-d vectors; score = dot product."""

    name = "bpr"
    fold_in = "mean"

    def __init__(self, config: MFConfig, ctx: ModelContext, generator: torch.Generator) -> None:
        super().__init__(config, ctx, generator)
        self.user_embedding = xavier_normal((ctx.n_users, config.embedding_size), generator)
        self.item_embedding = xavier_normal((ctx.n_items, config.embedding_size), generator)

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """BPR + EmbLoss regularisation."""
        u = rows(self.user_embedding, batch.users)
        p = rows(self.item_embedding, batch.positives)
        n = rows(self.item_embedding, batch.negatives)
        reg = (u, p, n)
        if batch.whole is not None:  # EmbLoss is a norm of the whole batch, not a mean of rows
            whole = batch.whole
            reg = (
                rows(self.user_embedding, whole.users),
                rows(self.item_embedding, whole.positives),
                rows(self.item_embedding, whole.negatives),
            )
        return {
            "bpr": bpr_loss((u * p).sum(1), (u * n).sum(1)),
            "reg": self.config.reg_weight * emb_norm_loss(*reg),
        }

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """[B, n_items] dot products."""
        return self.user_embedding[users] @ self.item_embedding.T

    def serving_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding tables: users [U, d], items [I, d]."""
        return self.user_embedding.detach().clone(), self.item_embedding.detach().clone()

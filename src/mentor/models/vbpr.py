"""VBPR (He and McAuley, "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback",
AAAI 2016, arXiv 1510.01784).

Checked against MMRec's ``src/models/vbpr.py`` and ``configs/model/VBPR.yaml`` (commit e775373).

Shapes: U users, I items, d = ``embedding_size``, F = the summed width of all feature modalities.

* Item ``[e_i (d); W f_i + b (d)]`` [I, 2d] with ``f_i`` the concatenation of every modality's
  raw features (MMRec: text then image; here in the data set's modality order, which only permutes
  the input columns of W); user ``e_u`` [U, 2d]; score = dot product.
* Loss: MMRec's BPR (``-mean log(1e-10 + sigmoid(pos - neg))``) + ``reg_weight`` times EmbLoss
  (sum of the Frobenius norms of the final user, positive and negative rows, divided by B).
* Initialisation: free tables Xavier-uniform, W Xavier-normal with zero bias (MMRec's
  ``xavier_normal_initialization``).

Switch ``visual_bias`` (default false, as MMRec, which has no bias term): true adds the paper's
visual bias ``beta' . f_i`` (a learned [F] vector, zero-initialised, not regularised) to every
item's score.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.losses import emb_norm_loss, rows
from mentor.models.base import FREE_ITEM_IDS, ModelContext, Recommender, linear, xavier_uniform


@dataclass
class VBPRConfig:
    """VBPR hyper-parameters (MMRec names and defaults)."""

    embedding_size: int = 64
    reg_weight: float = 1e-3
    visual_bias: bool = False

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        if self.embedding_size < 1:
            raise MentorError(f"{where}.embedding_size must be at least 1")


def mmrec_bpr(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """MMRec's BPRLoss over [B] scores: ``-mean(log(1e-10 + sigmoid(pos - neg)))``."""
    return -torch.log(1e-10 + torch.sigmoid(pos - neg)).mean()


class VBPR(Recommender):
    """Matrix factorisation whose items also carry a linear projection of their features."""

    name = "vbpr"
    fold_in = "mean"
    cold_start_unavailable = FREE_ITEM_IDS

    def __init__(self, config: VBPRConfig, ctx: ModelContext, generator: torch.Generator) -> None:
        super().__init__(config, ctx, generator)
        if not ctx.features:
            raise MentorError("VBPR needs at least one item feature modality")
        self.features = {"all": torch.cat(list(ctx.features.values()), dim=1)}
        width = self.features["all"].shape[1]
        d = config.embedding_size
        self.u_embedding = xavier_uniform((ctx.n_users, 2 * d), generator)
        self.i_embedding = xavier_uniform((ctx.n_items, d), generator)
        self.item_linear = linear(width, d, generator, weight_init="xavier_normal", bias="zero")
        self.visual_bias = nn.Parameter(torch.zeros(width)) if config.visual_bias else None
        self._items: torch.Tensor | None = None

    def item_table(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Item vectors ``[e_i; W f_i + b]`` of ``items`` int64 [B] (all when None): [B, 2d].

        When ``items`` has at least as many rows as the catalogue, every item is projected once
        and the rows are gathered afterwards (fewer rows through the product, the same values).
        """
        feats = self.features["all"]
        free = self.i_embedding
        if items is not None and len(items) >= self.n_items:
            return rows(self.item_table(), items)
        if items is not None:
            feats, free = rows(feats, items), rows(free, items)
        return torch.cat([free, self.item_linear(feats)], dim=1)

    def bias(self, items: torch.Tensor) -> torch.Tensor:
        """Visual bias ``beta' . f_i`` of ``items`` [B] (zeros without the switch): [B]."""
        if self.visual_bias is None:
            return self.features["all"].new_zeros(len(items))
        return rows(self.features["all"], items) @ self.visual_bias

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """MMRec's BPR + EmbLoss on the final user, positive and negative vectors."""
        u = rows(self.u_embedding, batch.users)
        p, n = self.item_table(torch.cat([batch.positives, batch.negatives])).chunk(2)
        pos = (u * p).sum(1) + self.bias(batch.positives)
        neg = (u * n).sum(1) + self.bias(batch.negatives)
        reg = (u, p, n)
        if batch.whole is not None:  # EmbLoss is a norm of the whole batch, not a mean of rows
            whole = batch.whole
            reg = (
                rows(self.u_embedding, whole.users),
                *self.item_table(torch.cat([whole.positives, whole.negatives])).chunk(2),
            )
        return {
            "bpr": mmrec_bpr(pos, neg),
            "reg": self.config.reg_weight * emb_norm_loss(*reg),
        }

    def prepare_scoring(self) -> None:
        """Project all items once for a whole evaluation pass."""
        self._items = self.serving_representations()[1]

    def serving_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [U, 2d] and items [I, 2d] (with the switch: [U, 2d + 1] ``[e_u; 1]`` and
        [I, 2d + 1] ``[item; bias]``); scores are their dot products."""
        users, items = self.u_embedding, self.item_table()
        if self.visual_bias is not None:
            every = torch.arange(self.n_items, device=items.device)
            users = torch.cat([users, users.new_ones(self.n_users, 1)], dim=1)
            items = torch.cat([items, self.bias(every).unsqueeze(1)], dim=1)
        return users, items

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """[B, n_items] scores."""
        if self._items is None:
            self.prepare_scoring()
        assert self._items is not None
        user_reps = self.u_embedding[users]
        if self.visual_bias is not None:
            return user_reps @ self._items[:, :-1].T + self._items[:, -1]
        return user_reps @ self._items.T

    def train(self, mode: bool = True) -> VBPR:
        """Switching mode drops the cached item table."""
        self._items = None
        return super().train(mode)

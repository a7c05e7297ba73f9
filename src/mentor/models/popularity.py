"""Popularity: every user gets the items with the most train interactions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mentor.models.base import ModelContext, Recommender


@dataclass
class PopularityConfig:
    """Popularity has no hyper-parameters."""


class Popularity(Recommender):
    """Score = number of train interactions of the item (the same list for every user)."""

    name = "pop"
    fold_in = "popularity"
    trainable = False

    def __init__(
        self, config: PopularityConfig, ctx: ModelContext, generator: torch.Generator
    ) -> None:
        super().__init__(config, ctx, generator)
        counts = np.bincount(ctx.train[:, 1], minlength=ctx.n_items).astype(np.float32)
        self.register_buffer("counts", torch.from_numpy(counts))

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """[B, n_items] train counts."""
        return self.counts.unsqueeze(0).expand(len(users), -1).clone()

    def serving_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users all-ones [U, 1], items their train counts [I, 1]."""
        return self.counts.new_ones(self.n_users, 1), self.counts.unsqueeze(1).clone()

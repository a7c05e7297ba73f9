"""BM3 (Zhou et al., "Bootstrap Latent Representations for Multi-modal Recommendation", WWW 2023,
arXiv 2207.05969).

Checked term by term against MMRec's ``models/bm3.py`` and ``configs/model/BM3.yaml`` (commit
e775373). What it computes, with U users, I items, d = ``embedding_size``, B batch rows:

- online tables: LightGCN layer mean over the symmetric-normalised user-item graph of
  ``[user table; item table]``, ``n_layers`` layers; items also get their layer-0 row added:
  users [U, d], items [I, d].
- per modality m: ``trs_m(features_m)`` [I, d] (a linear projection of the raw features).
- target views: inverted dropout (rate ``dropout``) of the online tables, without gradient; as in
  MMRec the mask is drawn for the whole table ([U, d], [I, d], per modality [I, d]) and then the
  batch's rows are taken, so a user or item that occurs twice in a batch has one target.
- loss (no sampled negatives): ``1 - cos(p(u), target(i))`` + ``1 - cos(p(i), target(u))`` for the
  batch's (user, item) rows with p the shared ``predictor`` [d -> d]; plus ``cl_weight`` times, per
  modality, ``1 - cos(p(trs_m(f_i)), target(i))`` + ``1 - cos(p(trs_m(f_i)), dropout(trs_m(f_i)))``;
  plus ``reg_weight`` times MMRec's EmbLoss of the whole online tables,
  ``(||users||_F + ||items||_F) / I``.
- score: ``p(users) @ p(items)^T``.

As in MMRec the raw feature tables are trainable parameters (``nn.Embedding.from_pretrained(...,
freeze=False)``); ``train_features=false`` keeps them fixed, as the paper describes features.
Modalities play symmetric roles, so any set of names works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.losses import rows
from mentor.models.base import (
    FREE_ITEM_IDS,
    DotProductRecommender,
    ModelContext,
    feature_tables,
    linear,
    xavier_uniform,
)
from mentor.models.blocks import bipartite_layer_mean, dropout


@dataclass
class BM3Config:
    """BM3 hyper-parameters (MMRec names and defaults; the grid's first values)."""

    embedding_size: int = 64
    n_layers: int = 1
    reg_weight: float = 0.1
    dropout: float = 0.3
    cl_weight: float = 2.0
    train_features: bool = True

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        if self.embedding_size < 1:
            raise MentorError(f"{where}.embedding_size must be at least 1")
        if self.n_layers < 0:
            raise MentorError(f"{where}.n_layers must be >= 0")
        if not 0 <= self.dropout < 1:
            raise MentorError(f"{where}.dropout must be in [0, 1)")


def _cos_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1 - mean_b cos(a_b, b_b)`` over rows of [B, d] tensors."""
    return 1.0 - nn.functional.cosine_similarity(a, b, dim=-1).mean()


class BM3(DotProductRecommender):
    """Self-supervised bootstrap of ID and modality representations, without negatives."""

    name = "bm3"
    cold_start_unavailable = FREE_ITEM_IDS
    uses_negatives = False

    def __init__(self, config: BM3Config, ctx: ModelContext, generator: torch.Generator) -> None:
        super().__init__(config, ctx, generator)
        if not ctx.features:
            raise MentorError("BM3 needs at least one item feature modality")
        d = config.embedding_size
        self.graph = ctx.interactions
        self.user_embedding = xavier_uniform((ctx.n_users, d), generator)
        self.item_id_embedding = xavier_uniform((ctx.n_items, d), generator)
        self.predictor = linear(d, d, generator, "xavier_normal")
        self.trs = nn.ModuleDict(
            {m: linear(f.shape[1], d, generator, "xavier_normal") for m, f in ctx.features.items()}
        )
        self.raw = feature_tables(ctx.features, config.train_features)

    def online(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Online tables: users [U, d], items [I, d] (layer mean + the item's layer-0 row)."""
        users, items = bipartite_layer_mean(
            self.graph, self.user_embedding, self.item_id_embedding, self.config.n_layers
        )
        return users, items + self.item_id_embedding

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Bootstrap terms of the batch's (user, item) rows; ``batch.negatives`` is not read."""
        cfg = self.config
        users, items = self.online()
        u = rows(users, batch.users)
        i = rows(items, batch.positives)
        u_target = rows(dropout(users.detach(), cfg.dropout, generator), batch.users)
        i_target = rows(dropout(items.detach(), cfg.dropout, generator), batch.positives)
        terms = {
            "bootstrap": _cos_gap(self.predictor(u), i_target)
            + _cos_gap(self.predictor(i), u_target),
            "reg": cfg.reg_weight
            * (torch.linalg.vector_norm(users) + torch.linalg.vector_norm(items))
            / self.n_items,
        }
        modal = u.new_zeros(())
        for m in self.trs:
            feat = self.trs[m](rows(self.raw[m], batch.positives))
            mask = dropout(feat.new_ones(self.n_items, feat.shape[1]), cfg.dropout, generator)
            feat_target = feat.detach() * rows(mask, batch.positives)
            online = self.predictor(feat)
            modal = modal + _cos_gap(online, i_target) + _cos_gap(online, feat_target)
        terms["modal"] = cfg.cl_weight * modal
        return terms

    def full_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The predictor applied to the online tables: users [U, d], items [I, d]."""
        users, items = self.online()
        return self.predictor(users), self.predictor(items)

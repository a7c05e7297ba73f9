"""MGCN (Yu et al., "Multi-View Graph Convolutional Network for Multimedia Recommendation",
ACM MM 2023, arXiv 2308.03588).

Checked term by term against MMRec's ``src/models/mgcn.py``, ``configs/model/MGCN.yaml`` and the
graph helpers of ``utils/utils.py`` (commit e775373). Shapes: U users, I items, M feature
modalities, d = ``embedding_size``, F_m the feature width of modality m, B batch rows.

* Item-item graphs (fixed, from the raw features): per modality the cosine top-``knn_k`` of every
  item (itself included) weighted by the similarities, ``D^-1/2 A D^-1/2`` with D the row sums
  (the same graph as LATTICE's original one), S_m [I, I].
* Behaviour-guided purifier: ``f_m = trs_m(features_m)`` [I, d] (a Linear with bias);
  ``x_m = e_item * sigmoid(gate_m(f_m))`` [I, d].
* User-item view: LightGCN layer mean (``n_ui_layers`` layers, layer 0 included) of the free
  tables over the symmetric-normalised user-item graph G: ``c`` [U + I, d].
* Item-item view: items ``S_m^n_layers x_m`` [I, d], users ``G`` times those [U, d]: ``h_m``
  [U + I, d].
* Behaviour-aware fuser: ``a = softmax_m(q(h_m))`` with ``q`` a Linear d -> d, tanh, Linear d -> 1
  (no bias) shared by the modalities; ``common = sum_m a_m h_m``;
  ``side = (sum_m sigmoid(prefer_m(c)) * (h_m - common) + common) / (M + 1)``.
* Output: ``c + side``, users [U, d] and items [I, d]; scores are their dot products.
* Loss: BPR on the output rows of the batch; ``reg_weight * (|u|^2 + |p|^2 + |n|^2) / (2 B)`` on
  those rows; ``cl_loss`` times InfoNCE (temperature ``cl_temp``, cosine, in-batch negatives)
  between the side and user-item-view rows, once for the batch's positive items and once for
  its users (duplicates in the batch stay, as in MMRec).

As in MMRec the raw feature tables are trainable (``nn.Embedding.from_pretrained(...,
freeze=False)``, trained through ``trs_m``); ``train_features=false`` keeps them fixed, as the
paper describes features. The item-item graphs are built once from the initial features.

Departures and generalisations:

* MMRec is written for exactly two modalities (image, text) and divides the fused side view by 3;
  here any number M >= 1 of modalities works with the divisor ``M + 1`` (3 for two modalities).
* ``cl_temp`` (default 0.2) is the InfoNCE temperature that MMRec hard-codes (its ``tau = 0.5``
  is never used).
* switch ``attention_over``: ``modalities`` (default, MMRec's ``nn.Softmax(dim=-1)``: each node's
  weights over its modalities sum to 1, the fuser the paper describes); ``nodes`` is the authors'
  own repository (demonph10/MGCN at 09095cb, ``nn.Softmax(dim=0)``), which normalises each
  modality's scores over all U + I nodes, so every weight is about ``1 / (U + I)`` and the
  common part nearly vanishes. MMRec's port is otherwise the authors' code line for line (their
  YAML's ``cl_loss`` is 0.01; MMRec's grid, kept here, is 0.001, 0.01, 0.1).
* the L2 term is divided by the batch's length; MMRec divides by the configured batch size,
  which differs only on an epoch's last, shorter batch.
* an item whose feature row is all zeros has no cosine; MMRec's graph gets NaN there, here its
  graph row is empty (the item takes nothing from the item-item view of that modality).

Left out because they change nothing: ``lambda_coeff`` (read by neither MMRec's MGCN nor this
one) and ``tau``. The learning rate decays by 0.96 every 50 epochs (MMRec's
``learning_rate_scheduler`` for MGCN), set as this model's ``train.lr_scheduler`` default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.graph import SparseGraph
from mentor.losses import bpr_loss, info_nce, rows
from mentor.models.base import (
    FREE_ITEM_IDS,
    DotProductRecommender,
    ModelContext,
    linear,
    xavier_uniform,
)
from mentor.models.blocks import bipartite_layer_mean, ordered_modalities
from mentor.models.lattice import sym_normalise, weighted_knn


@dataclass
class MGCNConfig:
    """MGCN hyper-parameters (MMRec names and defaults; ``cl_loss``: its grid's first value)."""

    embedding_size: int = 64
    n_ui_layers: int = 2
    n_layers: int = 1
    knn_k: int = 10
    reg_weight: float = 1e-4
    cl_loss: float = 1e-3
    cl_temp: float = 0.2
    train_features: bool = True
    attention_over: Literal["modalities", "nodes"] = "modalities"

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        if self.embedding_size < 1 or self.knn_k < 1:
            raise MentorError(f"{where}.embedding_size and knn_k must be at least 1")
        if self.n_ui_layers < 0 or self.n_layers < 0:
            raise MentorError(f"{where}.n_ui_layers and n_layers must be >= 0")
        if self.cl_temp <= 0:
            raise MentorError(f"{where}.cl_temp must be positive")


def _gate(dim: int, generator: torch.Generator) -> nn.Sequential:
    """``sigmoid(W x + b)`` over d-wide rows, PyTorch's default Linear initialisation."""
    return nn.Sequential(linear(dim, dim, generator), nn.Sigmoid())


class MGCN(DotProductRecommender):
    """LightGCN user-item view plus feature-purified item-item views fused per node."""

    name = "mgcn"
    cold_start_unavailable = FREE_ITEM_IDS
    data_parallel = "replicate"  # its InfoNCE contrasts the rows of a batch with each other

    def __init__(self, config: MGCNConfig, ctx: ModelContext, generator: torch.Generator) -> None:
        super().__init__(config, ctx, generator)
        if not ctx.features:
            raise MentorError("MGCN needs at least one item feature modality")
        self.modalities = ordered_modalities(list(ctx.features))
        d = config.embedding_size
        self.graph = ctx.interactions
        self.user_embedding = xavier_uniform((ctx.n_users, d), generator)
        self.item_id_embedding = xavier_uniform((ctx.n_items, d), generator)
        self.item_graphs: dict[str, SparseGraph] = {
            m: sym_normalise(weighted_knn(ctx.features[m], config.knn_k), ctx.n_items).sparse(
                ctx.n_items, ctx.n_items
            )
            for m in self.modalities
        }
        self.features: dict[str, torch.Tensor] = {}
        self.raw = nn.ParameterDict()
        for m in self.modalities:
            if config.train_features:
                self.raw[m] = nn.Parameter(ctx.features[m].detach().clone().float())
            else:
                self.features[m] = ctx.features[m]
        self.trs = nn.ModuleDict(
            {m: linear(ctx.features[m].shape[1], d, generator) for m in self.modalities}
        )
        self.query_common = nn.Sequential(
            linear(d, d, generator), nn.Tanh(), linear(d, 1, generator, bias="none")
        )
        self.gate = nn.ModuleDict({m: _gate(d, generator) for m in self.modalities})
        self.gate_prefer = nn.ModuleDict({m: _gate(d, generator) for m in self.modalities})

    def _raw(self, modality: str) -> torch.Tensor:
        """Raw feature table [I, F_m] of ``modality`` (a parameter unless frozen)."""
        return self.raw[modality] if self.config.train_features else self.features[modality]

    def views(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The user-item view ``c`` and the fused side view, both [U + I, d] (users first)."""
        cfg = self.config
        users, items = bipartite_layer_mean(
            self.graph, self.user_embedding, self.item_id_embedding, cfg.n_ui_layers
        )
        content = torch.cat([users, items])
        modal = []
        for m in self.modalities:
            h = self.item_id_embedding * self.gate[m](self.trs[m](self._raw(m)))
            for _ in range(cfg.n_layers):
                h = self.item_graphs[m] @ h
            modal.append(torch.cat([self.graph @ h, h]))
        scores = torch.cat([self.query_common(h) for h in modal], dim=1)  # [U + I, M]
        attention = torch.softmax(scores, dim=0 if cfg.attention_over == "nodes" else 1)
        common = sum(attention[:, k : k + 1] * h for k, h in enumerate(modal))
        assert isinstance(common, torch.Tensor)
        side = common
        for m, h in zip(self.modalities, modal, strict=True):
            side = side + self.gate_prefer[m](content) * (h - common)
        return content, side / (len(self.modalities) + 1)

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """BPR + L2 on the batch's output rows + ``cl_loss`` times the two InfoNCE terms."""
        cfg = self.config
        content, side = self.views()
        final = content + side
        n = self.n_users
        u = rows(final, batch.users)
        p, q = rows(final, batch.positives + n), rows(final, batch.negatives + n)
        l2 = (u.square().sum() + p.square().sum() + q.square().sum()) / (2 * len(batch.users))
        cl = info_nce(
            rows(side, batch.positives + n), rows(content, batch.positives + n), cfg.cl_temp
        ) + info_nce(rows(side, batch.users), rows(content, batch.users), cfg.cl_temp)
        return {
            "bpr": bpr_loss((u * p).sum(1), (u * q).sum(1)),
            "reg": cfg.reg_weight * l2,
            "cl": cfg.cl_loss * cl,
        }

    def full_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [U, d] and items [I, d]: the user-item view plus the side view."""
        content, side = self.views()
        final = content + side
        return final[: self.n_users], final[self.n_users :]

"""FREEDOM (Zhou and Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for
Multimodal Recommendation", ACM MM 2023, arXiv 2211.06924).

Checked against MMRec's ``src/models/freedom.py`` and ``configs/model/FREEDOM.yaml`` (commit
e775373), term by term.

Shapes: U users, I items, E unique train edges, d = ``embedding_size`` = ``feat_embed_dim``,
F_m the feature width of modality m.

* Frozen item graph S [I, I]: per modality the binary top-``knn_k`` cosine graph of the raw
  features, symmetric-normalised, mixed ``mm_image_weight`` image + ``1 - mm_image_weight`` text
  (the same cached graph as MENTOR's). Other modality names: equal shares; one modality: itself.
* ``h = S^{n_mm_layers} e_item``; users and items: LightGCN (mean of layers 0..``n_ui_layers``)
  over the epoch's graph; item output ``+ h``.
* Training graph: each epoch keeps ``int(E * (1 - dropout))`` edges sampled without replacement
  with probability proportional to ``1 / sqrt(d_u d_i)``, renormalised; evaluation uses the full
  graph.
* Loss: BPR(u, i) + ``reg_weight * sum_m BPR(u, trs_m(f_m))`` with ``trs_m`` a Linear F_m -> d over
  the raw features of the positive and negative items.

Switch ``train_features`` (default true, as MMRec: its feature tables are
``Embedding.from_pretrained(freeze=False)``, so the raw features themselves are trained through
the modality BPR terms; the paper treats features as fixed inputs): false keeps them fixed.
Left out because they change nothing: ``lambda_coeff``, ``cf_model``, ``weight_size`` (read but
unused by MMRec's FREEDOM) and the bias of each ``trs_m`` (it cancels in every BPR difference, so
it never trains and never changes a loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.graph import SparseGraph
from mentor.losses import bpr_loss, rows
from mentor.models.base import (
    FREE_ITEM_IDS,
    DotProductRecommender,
    ModelContext,
    feature_tables,
    linear,
    xavier_uniform,
)
from mentor.models.layergcn import TrainEdges


@dataclass
class FreedomConfig:
    """FREEDOM hyper-parameters (MMRec names and defaults)."""

    embedding_size: int = 64
    feat_embed_dim: int = 64
    knn_k: int = 10
    n_mm_layers: int = 1
    n_ui_layers: int = 2
    reg_weight: float = 1e-4
    mm_image_weight: float = 0.1
    dropout: float = 0.8
    train_features: bool = True

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        if self.embedding_size != self.feat_embed_dim:
            raise MentorError(
                f"{where}.feat_embed_dim ({self.feat_embed_dim}) must equal embedding_size "
                f"({self.embedding_size}): users score projected features"
            )
        if self.embedding_size < 1 or self.knn_k < 1:
            raise MentorError(f"{where}.embedding_size and knn_k must be at least 1")
        if self.n_mm_layers < 0 or self.n_ui_layers < 0:
            raise MentorError(f"{where}.n_mm_layers and n_ui_layers must be >= 0")
        if not 0 <= self.dropout < 1:
            raise MentorError(f"{where}.dropout must be in [0, 1)")
        if not 0 <= self.mm_image_weight <= 1:
            raise MentorError(f"{where}.mm_image_weight must be in [0, 1]")


def item_graph_weights(modalities: list[str], image_weight: float) -> dict[str, float]:
    """``image_weight`` image + ``1 - image_weight`` text when both exist, equal shares
    otherwise."""
    if set(modalities) == {"image", "text"}:
        return {"image": image_weight, "text": 1.0 - image_weight}
    return {m: 1.0 / len(modalities) for m in modalities}


class FREEDOM(DotProductRecommender):
    """LightGCN with a frozen feature kNN item graph and degree-sensitive edge pruning."""

    name = "freedom"
    cold_start_unavailable = FREE_ITEM_IDS

    def __init__(
        self, config: FreedomConfig, ctx: ModelContext, generator: torch.Generator
    ) -> None:
        super().__init__(config, ctx, generator)
        self.modalities = list(ctx.features)
        if not self.modalities:
            raise MentorError("FREEDOM needs at least one item feature modality")
        assert ctx.semantic_graph is not None
        weights = item_graph_weights(self.modalities, config.mm_image_weight)
        self.item_graph = ctx.semantic_graph(weights, config.knn_k)
        self.graph = ctx.interactions
        self.train_graph = ctx.interactions
        self.edges = TrainEdges(ctx.train, ctx.n_users, ctx.n_items)
        d = config.embedding_size
        self.user_embedding = xavier_uniform((ctx.n_users, d), generator)
        self.item_id_embedding = xavier_uniform((ctx.n_items, d), generator)
        self.features = feature_tables(ctx.features, config.train_features)
        dim = config.feat_embed_dim
        self.trs = nn.ModuleDict(
            {m: linear(f.shape[1], dim, generator, bias="none") for m, f in ctx.features.items()}
        )

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """Degree-sensitive edge pruning for this epoch."""
        if self.config.dropout > 0:
            self.train_graph = self.edges.keep(self.config.dropout, True, generator)

    def propagate(self, graph: SparseGraph) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [U, d] and items [I, d]: layer-mean LightGCN over ``graph`` [U, I], items plus
        ``S^{n_mm_layers} e_item``."""
        h = self.item_id_embedding
        for _ in range(self.config.n_mm_layers):
            h = self.item_graph @ h
        h_u, h_i = self.user_embedding, self.item_id_embedding
        total_u, total_i = h_u, h_i
        for _ in range(self.config.n_ui_layers):
            h_u, h_i = graph @ h_i, graph.T @ h_u
            total_u, total_i = total_u + h_u, total_i + h_i
        scale = 1.0 / (self.config.n_ui_layers + 1)
        return total_u * scale, total_i * scale + h

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """BPR on the epoch's graph + ``reg_weight`` times one BPR per modality on projected raw
        features."""
        users, items = self.propagate(self.train_graph)
        u = rows(users, batch.users)
        terms = {
            "bpr": bpr_loss(
                (u * rows(items, batch.positives)).sum(1), (u * rows(items, batch.negatives)).sum(1)
            )
        }
        feature_bpr = u.new_zeros(())
        # positives and negatives in one gather: a trained table's gradient is then one dense
        # [I, F_m] buffer per batch, not two summed
        both = torch.cat([batch.positives, batch.negatives])
        for m, table in self.features.items():
            pos, neg = self.trs[m](rows(table, both)).chunk(2)
            feature_bpr = feature_bpr + bpr_loss((u * pos).sum(1), (u * neg).sum(1))
        terms["features"] = self.config.reg_weight * feature_bpr
        return terms

    def full_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [U, d] and items [I, d] over the full (not edge-dropped) graph."""
        return self.propagate(self.graph)

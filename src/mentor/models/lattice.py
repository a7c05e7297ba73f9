"""LATTICE (Zhang et al., "Mining Latent Structures for Multimedia Recommendation", ACM MM 2021,
arXiv 2104.09036).

Checked term by term against MMRec's ``models/lattice.py``, ``utils/utils.py`` and
``configs/model/LATTICE.yaml`` (commit e775373, ``cf_model: lightgcn``). With U users, I items,
d = ``embedding_size``, M modalities, k = ``knn_k``:

- original item graph (fixed, from the raw features): per modality the cosine top-k of every item
  (itself included) weighted by the similarities, ``D^-1/2 A D^-1/2`` with D the row sums;
  ``O = sum_m w_m O_m`` with ``w = softmax(modal_weight)`` [M] (trainable).
- learned item graph: the same top-k over ``trs_m(features_m)`` [I, feat_embed_dim], mixed
  ``sum_m w_m A_m`` *before* one ``D^-1/2 . D^-1/2`` normalisation (MMRec's order).
- item graph ``S = (1 - lambda_coeff) * learned + lambda_coeff * O``;
  ``h = S^n_layers e_item`` [I, d].
- users [U, d], items [I, d]: LightGCN layer mean over ``D^-1 (A + I)`` (random-walk
  normalisation with self-loops), ``len(weight_size)`` layers; items += ``normalize(h)``.
- loss: BPR + ``reg_weight * (||u||^2 + ||p||^2 + ||n||^2) / (2 B)`` on the final batch rows.

Like MMRec, the learned graph is rebuilt with gradient on the first batch of every epoch and at
every evaluation; the other batches use it detached (so ``trs_m``, ``modal_weight`` and the raw
features get gradient only from that first batch). MMRec keeps every graph as a dense I x I
matrix; here both are sparse top-k lists (the top-k search runs in row blocks,
:func:`~mentor.graph.knn_indices`), so memory is O(I k M), never O(I^2).

Switches and departures:
- ``train_features`` (default true): MMRec trains the raw feature tables
  (``nn.Embedding.from_pretrained(..., freeze=False)``); ``false`` keeps them fixed.
- the L2 term is divided by the batch's length; MMRec divides by the configured batch size, which
  differs only on an epoch's last, shorter batch.
- ``cf_model`` ``lightgcn`` (default) or ``mf``; MMRec's ``ngcf`` variant is not ported.
Modalities play symmetric roles (initial ``modal_weight`` 1/M each), so any set of names works;
with one modality there is no ``modal_weight``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import scipy.sparse as sp
import torch
from torch import nn

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.graph import SparseGraph, knn_indices
from mentor.losses import bpr_loss, rows
from mentor.models.base import (
    FREE_ITEM_IDS,
    DotProductRecommender,
    ModelContext,
    feature_tables,
    linear,
    xavier_uniform,
)
from mentor.models.blocks import layer_mean, random_walk_graph


@dataclass
class LatticeConfig:
    """LATTICE hyper-parameters (MMRec names and defaults; grid values: their first entries)."""

    embedding_size: int = 64
    feat_embed_dim: int = 64
    weight_size: list[int] = field(default_factory=lambda: [64, 64])
    lambda_coeff: float = 0.9
    reg_weight: float = 0.0
    cf_model: Literal["lightgcn", "mf"] = "lightgcn"
    n_layers: int = 1
    knn_k: int = 10
    train_features: bool = True

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        for name in ("embedding_size", "feat_embed_dim", "knn_k"):
            if getattr(self, name) < 1:
                raise MentorError(f"{where}.{name} must be at least 1")
        if self.n_layers < 0:
            raise MentorError(f"{where}.n_layers must be >= 0")
        if not 0 <= self.lambda_coeff <= 1:
            raise MentorError(f"{where}.lambda_coeff must be in [0, 1]")


@dataclass
class KnnEdges:
    """A weighted top-k graph as edge lists: rows, cols int64 [E], values float [E]."""

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor

    def propagate(self, x: torch.Tensor) -> torch.Tensor:
        """``A @ x`` [n, d], differentiable in the values and in ``x`` (gather + index_add)."""
        return x.new_zeros(x.shape).index_add(0, self.rows, self.values[:, None] * x[self.cols])

    def sparse(self, n_rows: int, n_cols: int) -> SparseGraph:
        """The detached matrix [n_rows, n_cols] as a :class:`SparseGraph` on the values'
        device (duplicate edges summed)."""
        matrix = sp.csr_matrix(
            (
                self.values.detach().cpu().numpy(),
                (self.rows.cpu().numpy(), self.cols.cpu().numpy()),
            ),
            shape=(n_rows, n_cols),
        )
        return SparseGraph.from_scipy(matrix).to(self.values.device)


def weighted_knn(
    features: torch.Tensor,
    k: int,
    weight: torch.Tensor | float = 1.0,
    memory_bytes: int = 64 * 2**20,
) -> KnnEdges:
    """``weight`` times the cosine top-k of every row of ``features`` [n, dim], values being the
    similarities (differentiable in ``features`` and ``weight``). The search runs in blocks; the
    neighbour rows are gathered in blocks of about ``memory_bytes`` (raw features can be 4096-d)."""
    n = features.shape[0]
    index = knn_indices(features.detach(), k)  # [n, k]
    unit = nn.functional.normalize(features, dim=1)
    step = max(1, memory_bytes // (4 * index.shape[1] * unit.shape[1]))
    sims = torch.cat(
        [
            (unit[start : start + step].unsqueeze(1) * unit[index[start : start + step]]).sum(-1)
            for start in range(0, n, step)
        ]
    )  # [n, k]
    row = torch.arange(n, device=features.device).repeat_interleave(index.shape[1])
    return KnnEdges(row, index.reshape(-1), (weight * sims).reshape(-1))


def sym_normalise(edges: KnnEdges, n: int) -> KnnEdges:
    """``D^-1/2 A D^-1/2`` with D the row sums of A (summed duplicate edges count twice, as
    entries of one matrix would); rows without weight stay zero."""
    degree = edges.values.new_zeros(n).index_add(0, edges.rows, edges.values)
    inv = torch.where(degree > 0, degree.clamp_min(1e-30).pow(-0.5), torch.zeros_like(degree))
    return KnnEdges(edges.rows, edges.cols, inv[edges.rows] * edges.values * inv[edges.cols])


def _concat(parts: list[KnnEdges]) -> KnnEdges:
    return KnnEdges(
        torch.cat([p.rows for p in parts]),
        torch.cat([p.cols for p in parts]),
        torch.cat([p.values for p in parts]),
    )


class LATTICE(DotProductRecommender):
    """LightGCN whose item side adds a propagation over a learned + original item-item graph."""

    name = "lattice"
    cold_start_unavailable = FREE_ITEM_IDS

    def __init__(
        self, config: LatticeConfig, ctx: ModelContext, generator: torch.Generator
    ) -> None:
        super().__init__(config, ctx, generator)
        if not ctx.features:
            raise MentorError("LATTICE needs at least one item feature modality")
        self.modalities = list(ctx.features)
        d = config.embedding_size
        self.norm_adj = random_walk_graph(ctx.train, ctx.n_users, ctx.n_items)
        self.user_embedding = xavier_uniform((ctx.n_users, d), generator)
        self.item_id_embedding = xavier_uniform((ctx.n_items, d), generator)
        # the M original graphs stacked as one [M * I, I] matrix: one product gives every O_m x
        self.original_edges = [
            sym_normalise(weighted_knn(ctx.features[m], config.knn_k), ctx.n_items)
            for m in self.modalities
        ]
        stacked = [
            KnnEdges(edges.rows + k * ctx.n_items, edges.cols, edges.values)
            for k, edges in enumerate(self.original_edges)
        ]
        self.original = _concat(stacked).sparse(len(self.modalities) * ctx.n_items, ctx.n_items)
        self.trs = nn.ModuleDict(
            {
                m: linear(ctx.features[m].shape[1], config.feat_embed_dim, generator)
                for m in self.modalities
            }
        )
        self.raw = feature_tables(
            {m: ctx.features[m] for m in self.modalities}, config.train_features
        )
        if len(self.modalities) > 1:
            m_count = len(self.modalities)
            self.modal_weight = nn.Parameter(torch.full((m_count,), 1.0 / m_count))
        self._rebuild = True
        self._fixed: SparseGraph | None = None

    # ----------------------------------------------------------------------------------------
    def modality_weights(self) -> torch.Tensor:
        """``softmax(modal_weight)`` [M] (``[1.0]`` with one modality)."""
        if len(self.modalities) == 1:
            return self.item_id_embedding.new_ones(1)
        return torch.softmax(self.modal_weight, dim=0)

    def learned_graph(self, weights: torch.Tensor) -> KnnEdges:
        """Normalised ``sum_m w_m kNN(trs_m(features_m))`` as edges [E] (with gradient)."""
        parts = []
        for k, m in enumerate(self.modalities):
            parts.append(weighted_knn(self.trs[m](self.raw[m]), self.config.knn_k, weights[k]))
        return sym_normalise(_concat(parts), self.n_items)

    def item_graph_step(
        self, x: torch.Tensor, learned: KnnEdges, weights: torch.Tensor
    ) -> torch.Tensor:
        """``S x`` [I, d] with ``S = (1 - lambda) learned + lambda sum_m w_m O_m``,
        differentiable in the learned edges and ``weights``."""
        lam = self.config.lambda_coeff
        learned_x = learned.propagate(x)
        per_modality = (self.original @ x).view(len(self.modalities), *x.shape)  # [M, I, d]
        original_x = (weights[:, None, None] * per_modality).sum(0)
        return (1.0 - lam) * learned_x + lam * original_x

    def fixed_item_graph(self, learned: KnnEdges, weights: torch.Tensor) -> SparseGraph:
        """The detached ``S`` [I, I] as one sparse matrix: ``(1 - lambda) learned + lambda
        sum_m w_m O_m``, so a batch between two rebuilds propagates with one product per layer."""
        lam = self.config.lambda_coeff
        parts = [KnnEdges(learned.rows, learned.cols, (1.0 - lam) * learned.values.detach())]
        for k, edges in enumerate(self.original_edges):
            parts.append(KnnEdges(edges.rows, edges.cols, lam * weights[k].detach() * edges.values))
        return _concat(parts).sparse(self.n_items, self.n_items)

    def forward_tables(self, rebuild: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [U, d] and items [I, d]; ``rebuild`` recomputes the learned graph (with
        gradient when grad is enabled) and keeps the detached item graph for later calls."""
        h = self.item_id_embedding
        if rebuild or self._fixed is None:
            weights = self.modality_weights()
            edges = self.learned_graph(weights)
            self._fixed = self.fixed_item_graph(edges, weights)
            for _ in range(self.config.n_layers):
                h = self.item_graph_step(h, edges, weights)
        else:
            for _ in range(self.config.n_layers):
                h = self._fixed @ h
        if self.config.cf_model == "mf":
            users, items = self.user_embedding, self.item_id_embedding
        else:
            ego = torch.cat([self.user_embedding, self.item_id_embedding])
            out = layer_mean(self.norm_adj, ego, len(self.config.weight_size))
            users, items = out[: self.n_users], out[self.n_users :]
        return users, items + nn.functional.normalize(h, dim=1)

    # ----------------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """Rebuild the learned item graph on the epoch's first batch (MMRec's
        ``pre_epoch_processing``)."""
        self._rebuild = True

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """BPR + ``reg_weight`` * L2 of the batch's final rows."""
        users, items = self.forward_tables(self._rebuild)
        self._rebuild = False
        u = rows(users, batch.users)
        p, n = rows(items, batch.positives), rows(items, batch.negatives)
        l2 = (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / (2 * len(u))
        return {
            "bpr": bpr_loss((u * p).sum(1), (u * n).sum(1)),
            "reg": self.config.reg_weight * l2,
        }

    def full_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Rebuild the learned graph from the current parameters (as MMRec's every evaluation
        call does); users [U, d] and items [I, d]."""
        return self.forward_tables(rebuild=True)

"""COHESION (Xu et al., "COHESION: Composite Graph Convolutional Network with Dual-Stage Fusion
for Multimodal Recommendation", SIGIR 2025, arXiv 2504.04452).

Checked term by term against the authors' code (github Jinfeng-Xu/COHESION, commit 3fccdaf,
``src/models/cohesion.py`` and ``src/configs/model/COHESION.yaml``, run in MMRec's framework).
Defaults: the YAML's single values, the first value of each of its grids, and MMRec's learning
rate 1e-3, which its grid holds; the epoch is chosen on valid Recall@10, as the code's
``overall.yaml`` (and MENTOR's) does. Shapes: U users, I items, M feature modalities (the code has
image and text), d = ``embedding_size``, D = (1 + M) d, B batch rows.

* Branches: one ID branch whose "features" are a free item table ``e`` [I, d], and one branch
  per modality (MENTOR's and DualGNN's branch: a free user table ``P_b`` [U, d] and an MLP
  F_b -> 4d -> d with a leaky ReLU). Early fusion: each branch's item rows are the element-wise
  quadratic mean of its MLP output and the ID table, ``sqrt((mlp_b(f_b)^2 + e^2) / 2 + 1e-8)``.
* Composite GCN, per branch: ``x = normalize([P_b; items_b])`` [U + I, d];
  ``num_layer`` layers ``h_l = cos(A h_{l-1}, x) * A h_{l-1}`` (row-wise cosine to layer 0, as
  LayerGCN) over the symmetric-normalised user-item graph A; output ``x + h_1 + ... + h_L``.
  The ID branch's output is detached (the code takes ``.data``), so its user table and MLP never
  train and ``e`` trains only through the modality branches.
* Late fusion: users and items are the branch outputs side by side ``[id, m_1, ..., m_M]``
  [., D]; items add ``S^n_mm_layers items`` with S the frozen feature kNN item graph (FREEDOM's:
  per modality the binary top-``knn_k`` cosine graph, symmetric-normalised, mixed
  ``mm_image_weight`` for the image role and ``1 - mm_image_weight`` for the text role); users
  add ``W users`` with W DualGNN's co-interaction user graph (each user's top ``user_knn_k``
  co-users weighted by the softmax of the counts, short lists padded each epoch).
* Loss: base-2 BPR whose scores weight each branch block of ``u * i`` by the detached
  ``1 - softmax_b(s_b(u, i) - s_b(u, j))`` (adaptive optimisation; s_b the block's dot
  product), plus ``reg_weight * sum_m mean(P_m[u]^2)``.
* Scores: plain dot products of the user and item tables [., D].

Switches:

* ``eval_reps`` (default ``last_batch``, the code: ``full_sort_predict`` reads the tables the
  last training batch computed, before its optimiser step); ``fresh`` recomputes them with the
  current weights over the full graph.
* ``id_grad`` (default false, the code's ``.data``); true lets the ID branch's output carry
  gradient, so its user table and MLP train and ``e`` trains through it as well.
* ``dropout`` (default 0, the YAML's only grid value): each epoch trains on
  ``int(E * (1 - dropout))`` edges drawn by degree (FREEDOM's pruning); ``fresh`` scoring uses
  the full graph.

The port follows the code; the paper was read for the design only (its equations were not
compared one by one; it describes the late fusion as attentive, while the code concatenates the
branches and never uses its per-user modality weights, see below).

Departures: ``user_knn_k`` is the code's hard-coded 40; any number of modalities (roles ordered
image first, text last; two modalities give the code's computation, others split the item graph
evenly). Left out because they change no score: ``weight_u`` (a [U, 2, 1] table created,
softmaxed and penalised by ``reg_weight * mean(weight_u^2)``, but never used by the
representations, so the logged loss lacks that constant-rate decay), the code's ``BGCNLayer``,
``feat_embed_dim``, ``n_layers`` and ``drop_rate`` (never read). Tied co-interaction counts go
to the lower user id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.graph import SparseGraph
from mentor.losses import bpr_loss, rows
from mentor.models.base import (
    FREE_ITEM_IDS,
    ModelContext,
    Recommender,
    xavier_normal,
)
from mentor.models.blocks import ordered_modalities
from mentor.models.dualgnn import attach_user_graph, padded_user_graph
from mentor.models.layergcn import TrainEdges, _refine
from mentor.models.mentor import ModalityGCN


@dataclass
class CohesionConfig:
    """COHESION hyper-parameters: the authors' names; grids at their first values."""

    embedding_size: int = 64
    n_mm_layers: int = 1
    knn_k: int = 10
    mm_image_weight: float = 0.1
    num_layer: int = 1
    reg_weight: float = 0.1
    dropout: float = 0.0
    user_knn_k: int = 40
    id_grad: bool = False
    eval_reps: Literal["last_batch", "fresh"] = "last_batch"

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        for name in ("embedding_size", "knn_k", "user_knn_k"):
            if getattr(self, name) < 1:
                raise MentorError(f"{where}.{name} must be at least 1")
        if self.n_mm_layers < 0 or self.num_layer < 0:
            raise MentorError(f"{where}.n_mm_layers and num_layer must be >= 0")
        if not 0 <= self.dropout < 1:
            raise MentorError(f"{where}.dropout must be in [0, 1)")
        if not 0 <= self.mm_image_weight <= 1:
            raise MentorError(f"{where}.mm_image_weight must be in [0, 1]")


def role_weights(modalities: list[str], image_weight: float) -> dict[str, float]:
    """Item graph shares of ``modalities`` in role order: ``image_weight`` for the first and
    ``1 - image_weight`` for the last of two, equal shares otherwise."""
    if len(modalities) == 2:
        return {modalities[0]: image_weight, modalities[1]: 1.0 - image_weight}
    return {m: 1.0 / len(modalities) for m in modalities}


def _constants(module: nn.Module) -> None:
    """Turn every parameter of ``module`` into a buffer of the same name and value (weights the
    official computation never trains)."""
    for sub in module.modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            delattr(sub, name)
            sub.register_buffer(name, param.detach())


def sampled_user_graph(index: torch.Tensor, weights: torch.Tensor) -> SparseGraph:
    """The user-user graph [U, U] of sampled neighbours ``index`` [U, k] with ``weights``
    [U, k] (repeated neighbours' weights summed; zero weights left out)."""
    n, k = index.shape
    users = torch.arange(n, device=index.device).repeat_interleave(k)
    values = weights.flatten()
    keep = values > 0
    return SparseGraph.from_edges(users[keep], index.flatten()[keep], values[keep], (n, n))


class COHESION(Recommender):
    """Composite (user-item, user-user, item-item) graph convolution over ID-refined modality
    branches, trained with a modality-balanced BPR."""

    name = "cohesion"
    cold_start_unavailable = FREE_ITEM_IDS
    user_index: torch.Tensor
    user_weights: torch.Tensor
    result_users: torch.Tensor
    result_items: torch.Tensor

    def __init__(
        self, config: CohesionConfig, ctx: ModelContext, generator: torch.Generator
    ) -> None:
        super().__init__(config, ctx, generator)
        if not ctx.features:
            raise MentorError("COHESION needs at least one item feature modality")
        self.modalities = ordered_modalities(list(ctx.features))
        assert ctx.semantic_graph is not None
        weights = role_weights(self.modalities, config.mm_image_weight)
        self.item_graph = ctx.semantic_graph(weights, config.knn_k)
        self.graph = ctx.interactions
        self.train_graph = ctx.interactions
        self.edges = TrainEdges(ctx.train, ctx.n_users, ctx.n_items)
        self.features = ctx.features
        d = config.embedding_size
        self.id_feat = xavier_normal((ctx.n_items, d), generator)
        self.branches = nn.ModuleDict()
        self.branches["id"] = ModalityGCN(ctx.n_users, d, 4 * d, d, generator)
        if not config.id_grad:
            _constants(self.branches["id"])
        for m in self.modalities:
            dim = ctx.features[m].shape[1]
            self.branches[m] = ModalityGCN(ctx.n_users, dim, 4 * d, d, generator)
        attach_user_graph(self, ctx, config.user_knn_k, generator)
        self.user_graph = sampled_user_graph(self.user_index, self.user_weights)
        self.register_load_state_dict_post_hook(self._rebuild_user_graph)
        width = (1 + len(self.modalities)) * d
        self.register_buffer("result_users", torch.zeros(ctx.n_users, width))
        self.register_buffer("result_items", torch.zeros(ctx.n_items, width))

    @staticmethod
    def _rebuild_user_graph(module: nn.Module, incompatible: Any) -> None:
        """After ``load_state_dict``, derive the user graph from the restored sample."""
        assert isinstance(module, COHESION)
        module.user_graph = sampled_user_graph(module.user_index, module.user_weights)

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """Resample the padding of the user graph; with ``dropout``, prune edges by degree."""
        index, weights = padded_user_graph(
            self.top_index, self.top_counts, self.top_valid, generator
        )
        self.user_index.copy_(index)
        self.user_weights.copy_(weights)
        self.user_graph = sampled_user_graph(self.user_index, self.user_weights)
        if self.config.dropout > 0:
            self.train_graph = self.edges.keep(self.config.dropout, True, generator)

    # ----------------------------------------------------------------------------------------
    def layer0(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every branch's normalised layer-0 rows side by side, ``[id, m_1, ..., m_M]``:
        users [U, D], items [I, D]."""
        users, items = [], []
        for name, branch in self.branches.items():
            feats = self.id_feat if name == "id" else self.features[name]
            projected = branch.mlp_1(nn.functional.leaky_relu(branch.mlp(feats)))
            fused = torch.sqrt((projected.square() + self.id_feat.square()) / 2 + 1e-8)
            users.append(nn.functional.normalize(branch.preference, dim=1))
            items.append(nn.functional.normalize(fused, dim=1))
        return torch.cat(users, dim=1), torch.cat(items, dim=1)

    def representations(self, graph: SparseGraph) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [U, D] and items [I, D] over the user-item block ``graph`` [U, I]."""
        d = self.config.embedding_size
        x_u, x_i = self.layer0()
        norm_u = torch.linalg.vector_norm(x_u.view(-1, d), dim=1)
        norm_i = torch.linalg.vector_norm(x_i.view(-1, d), dim=1)
        total_u, total_i, h_u, h_i = x_u, x_i, x_u, x_i
        for _ in range(self.config.num_layer):
            h_u, h_i = graph @ h_i, graph.T @ h_u
            # every branch's d-wide block refined by its own cosine to layer 0
            h_u = _refine(h_u.view(-1, d), x_u.view(-1, d), norm_u).view(h_u.shape)
            h_i = _refine(h_i.view(-1, d), x_i.view(-1, d), norm_i).view(h_i.shape)
            total_u, total_i = total_u + h_u, total_i + h_i
        if not self.config.id_grad:
            total_u = torch.cat([total_u[:, :d].detach(), total_u[:, d:]], dim=1)
            total_i = torch.cat([total_i[:, :d].detach(), total_i[:, d:]], dim=1)
        extra = total_i
        for _ in range(self.config.n_mm_layers):
            extra = self.item_graph @ extra
        return total_u + self.user_graph @ total_u, total_i + extra

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Base-2 BPR with detached per-branch weights + L2 of the batch users' modality
        preference tables."""
        users, items = self.representations(self.train_graph)
        if self.config.eval_reps == "last_batch":
            self.result_users.copy_(users.detach())
            self.result_items.copy_(items.detach())
        u = rows(users, batch.users)
        blocks = (len(self.branches), self.config.embedding_size)
        pos = (u * rows(items, batch.positives)).view(-1, *blocks).sum(2)  # [B, 1 + M]
        neg = (u * rows(items, batch.negatives)).view(-1, *blocks).sum(2)
        weight = 1.0 - torch.softmax(pos - neg, dim=1).detach()
        prefs = sum(
            rows(self.branches[m].preference, batch.users).pow(2).mean() for m in self.modalities
        )
        return {
            "bpr": bpr_loss((pos * weight).sum(1), (neg * weight).sum(1), base2=True),
            "reg": self.config.reg_weight * prefs,  # type: ignore[dict-item]
        }

    # ----------------------------------------------------------------------------------------
    def prepare_scoring(self) -> None:
        """``fresh``: one forward pass over the full graph; ``last_batch``: keep the tables of
        the last training batch."""
        if self.config.eval_reps == "fresh":
            users, items = self.representations(self.graph)
            self.result_users.copy_(users)
            self.result_items.copy_(items)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """[B, n_items] dot products of the [., D] tables."""
        return self.result_users[users] @ self.result_items.T

    def serving_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The tables :meth:`score` uses: users [U, D], items [I, D]."""
        return self.result_users.clone(), self.result_items.clone()

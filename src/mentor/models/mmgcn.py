"""MMGCN (Wei et al., "MMGCN: Multi-modal Graph Convolution Network for Personalized
Recommendation of Micro-video", ACM MM 2019).

Checked against MMRec's ``src/models/mmgcn.py`` and ``configs/model/MMGCN.yaml`` (commit e775373);
torch_geometric's mean-aggregation message passing is a product with the row-normalised user-item
graph here (``D^-1 A``, users and items as two blocks).

Shapes: U users, I items, N = U + I, d = ``embedding_size``; per modality m, D_m =
``dim_latent`` for projected modalities and F_m (its raw width) for raw ones.

Per modality, ``x = normalize([P_m (U x D_m); g_m(f_m) (I x D_m)])`` with P_m a user preference
table and g_m a Linear F_m -> ``dim_latent`` (modality ``text`` is used raw, g = identity, as
MMRec's text branch; every other modality, ``image`` included, is projected, as its image
branch). Then per layer l (weights W_l, linear_l, g_l):

    h = leaky_relu(mean_agg(x W_l))
    x_hat = leaky_relu(linear_l(x)) + e_id            (e_id [N, d], shared by all modalities)
    x = leaky_relu(g_l([h; x_hat]))                    (concatenation; or g_l(h) + x_hat)

The modality outputs [N, d] are averaged; score = dot product of user and item rows. Loss:
``-mean log sigmoid(pos - neg)`` + ``reg_weight * (mean(e_id[u, i, j]^2) + mean(P_image^2))``
(MMRec's regulariser: the ID rows of the batch's users and items, with each user counted twice,
and the whole preference table of the image branch only; here of every projected branch).

What MMRec's code computes, and the switches that correct it:

* ``train_tables`` (default false): MMRec's ``id_embedding`` and both ``preference`` tables are
  plain tensors, never trained (fixed random inputs; the regulariser is then a constant). True:
  they are parameters, and the regulariser covers every modality's preferences.
* ``three_layers`` (default true): MMRec ignores ``n_layers`` and always runs 3 layers. False:
  ``n_layers`` layers.
* ``concate`` (default true): MMRec sets ``concate = 'False'``, a non-empty string, so the
  concatenation branch runs. False: ``g_l(h) + x_hat``, as the string suggests was meant.

Departure: MMRec scores with the representation left by the last training batch (one optimiser
step old); here scoring recomputes it with the current weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.graph import SparseGraph, mean_graphs
from mentor.losses import rows
from mentor.models.base import (
    FREE_ITEM_IDS,
    DotProductRecommender,
    ModelContext,
    linear,
    xavier_normal,
)

RAW_MODALITY = "text"


@dataclass
class MMGCNConfig:
    """MMGCN hyper-parameters (MMRec names and defaults) and its correction switches."""

    embedding_size: int = 64
    n_layers: int = 2
    dim_latent: int = 256
    reg_weight: float = 1e-4
    train_tables: bool = False
    three_layers: bool = True
    concate: bool = True

    def inert_keys(self) -> list[str]:
        """Settings that change no trained value with the others as they are: ``reg_weight``
        while the tables are fixed (``train_tables=false``, MMRec's), where the regulariser is a
        constant that only shifts the logged loss (searches train such combinations once)."""
        return [] if self.train_tables else ["reg_weight"]

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        if min(self.embedding_size, self.dim_latent, self.n_layers) < 1:
            raise MentorError(f"{where}.embedding_size, dim_latent and n_layers must be >= 1")


def _table(shape: tuple[int, int], generator: torch.Generator, trainable: bool) -> torch.Tensor:
    """A Xavier-normal table: a parameter, or a fixed tensor (MMRec's untrained tables)."""
    table = xavier_normal(shape, generator)
    return table if trainable else table.detach()


class ModalityBranch(nn.Module):
    """One modality's graph network: preferences, optional projection and the layer weights."""

    def __init__(
        self,
        n_users: int,
        in_dim: int,
        config: MMGCNConfig,
        project: bool,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        d = config.embedding_size
        width = config.dim_latent if project else in_dim
        self.project = linear(in_dim, width, generator) if project else None
        preference = _table((n_users, width), generator, config.train_tables)
        if config.train_tables:
            self.preference = preference
        else:
            self.register_buffer("preference", preference)
        n_layers = 3 if config.three_layers else config.n_layers
        self.conv = nn.ParameterList()
        self.linear = nn.ModuleList()
        self.gate = nn.ModuleList()
        for layer in range(n_layers):
            dim_in = width if layer == 0 else d
            self.conv.append(xavier_normal((dim_in, dim_in), generator))
            self.linear.append(linear(dim_in, d, generator, weight_init="xavier_normal"))
            gate_in = (dim_in + d) if config.concate else dim_in
            # MMRec Xavier-initialises only the first gate; the others keep PyTorch's default
            init: Literal["default", "xavier_normal"] = "xavier_normal" if layer == 0 else "default"
            self.gate.append(linear(gate_in, d, generator, weight_init=init))
        self.concate = config.concate

    def forward(
        self,
        features: torch.Tensor,
        id_users: torch.Tensor,
        id_items: torch.Tensor,
        graphs: tuple[SparseGraph, SparseGraph],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [U, d] and items [I, d] from raw features [I, F_m] and the ID tables."""
        to_users, to_items = graphs
        items = self.project(features) if self.project is not None else features
        x_u = nn.functional.normalize(self.preference, dim=1)
        x_i = nn.functional.normalize(items, dim=1)
        act = nn.functional.leaky_relu
        for weight, lin, gate in zip(self.conv, self.linear, self.gate, strict=True):
            m_u, m_i = x_u @ weight, x_i @ weight
            h_u, h_i = act(to_users @ m_i), act(to_items @ m_u)
            hat_u, hat_i = act(lin(x_u)) + id_users, act(lin(x_i)) + id_items
            if self.concate:
                x_u = act(gate(torch.cat([h_u, hat_u], dim=1)))
                x_i = act(gate(torch.cat([h_i, hat_i], dim=1)))
            else:
                x_u, x_i = act(gate(h_u) + hat_u), act(gate(h_i) + hat_i)
        return x_u, x_i


class MMGCN(DotProductRecommender):
    """One graph network per modality over the user-item graph, averaged."""

    name = "mmgcn"
    cold_start_unavailable = FREE_ITEM_IDS

    def __init__(self, config: MMGCNConfig, ctx: ModelContext, generator: torch.Generator) -> None:
        super().__init__(config, ctx, generator)
        self.modalities = list(ctx.features)
        if not self.modalities:
            raise MentorError("MMGCN needs at least one item feature modality")
        self.features = ctx.features
        self.to_users, self.to_items = mean_graphs(
            ctx.train[:, 0], ctx.train[:, 1], ctx.n_users, ctx.n_items
        )
        self.branches = nn.ModuleDict(
            {
                m: ModalityBranch(ctx.n_users, f.shape[1], config, m != RAW_MODALITY, generator)
                for m, f in ctx.features.items()
            }
        )
        id_embedding = _table(
            (ctx.n_users + ctx.n_items, config.embedding_size), generator, config.train_tables
        )
        if config.train_tables:
            self.id_embedding = id_embedding
        else:
            self.register_buffer("id_embedding", id_embedding)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over modalities of the branch outputs: users [U, d], items [I, d]."""
        id_users, id_items = self.id_embedding[: self.n_users], self.id_embedding[self.n_users :]
        graphs = (self.to_users, self.to_items)
        total_u = total_i = None
        for m, branch in self.branches.items():
            u, i = branch(self.features[m], id_users, id_items, graphs)
            total_u = u if total_u is None else total_u + u
            total_i = i if total_i is None else total_i + i
        assert total_u is not None and total_i is not None
        count = len(self.branches)
        return total_u / count, total_i / count

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """BPR (natural log, no epsilon) + MMRec's regulariser."""
        users, items = self.representations()
        u = rows(users, batch.users)
        pos = (u * rows(items, batch.positives)).sum(1)
        neg = (u * rows(items, batch.negatives)).sum(1)
        id_u = rows(self.id_embedding, batch.users)
        id_p = rows(self.id_embedding, batch.positives + self.n_users)
        id_n = rows(self.id_embedding, batch.negatives + self.n_users)
        # MMRec: mean over [2B, d] of (id[user]^2 + id[item]^2), items alternating pos/neg
        reg = (2 * id_u.pow(2).sum() + id_p.pow(2).sum() + id_n.pow(2).sum()) / (2 * id_u.numel())
        if self.config.train_tables:
            reg = reg + sum(b.preference.pow(2).mean() for b in self.branches.values())
        else:
            reg = reg + sum(
                b.preference.pow(2).mean() for m, b in self.branches.items() if m != RAW_MODALITY
            )
        return {
            "bpr": -nn.functional.logsigmoid(pos - neg).mean(),
            "reg": self.config.reg_weight * reg,
        }

    def full_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [U, d] and items [I, d] (see :meth:`representations`)."""
        return self.representations()

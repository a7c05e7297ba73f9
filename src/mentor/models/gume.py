"""GUME (Lin et al., "GUME: Graphs and User Modalities Enhancement for Long-Tail Multimodal
Recommendation", CIKM 2024, arXiv 2407.12338).

Checked term by term against the authors' code (github NanGongNingYi/GUME, commit 44a4dce,
``src/models/gume.py`` and ``src/configs/model/GUME.yaml``; the defaults are that file's, which
are its Amazon Baby settings). Shapes: U users, I items, N = U + I, M feature modalities (M = 2
in the authors' code: image and text), d = ``embedding_size``, k = ``knn_k``, B batch rows.

Graphs, built once from the raw features:

* per modality m: ``S_m`` [I, I], the cosine top-k of every item (itself included) weighted by
  the similarities, ``D^-1/2 A D^-1/2`` with D the row sums (LATTICE's original item graph);
* the enhanced user-item graph ``G`` [N, N]: ``[[0, R], [R^T, E]]`` with R the binary train
  interactions and E [I, I] binary, ``E_ij = 1`` when j (not i itself) is among i's top-k in
  every modality; normalised ``D^-1/2 A D^-1/2`` by its row sums (E is not symmetric, so neither
  is G). ``R_hat`` [U, I] is G's user-item block.

Forward (every batch and every evaluation):

* ``x_m = e_item * sigmoid(W2_m (W1_m f_m + b1_m) + b2_m)`` [I, d] (ID rows gated by the
  projected features f_m [I, F_m]);
* explicit interaction features ``c_m``: items ``S_m^n_layers x_m``, users ``R_hat`` times
  those, [N, d];
* LightGCN layer means (``n_ui_layers``, layer 0 included) over G: ``h_id`` of
  ``[e_user; e_item]`` and, per modality, the extended interest features ``h_m`` of
  ``[p_m; c_m items]`` with p_m [U, d] a free user table; ``h_it = mean_m h_m`` [N, d];
* attribute separation: ``a = softmax_m(q(c_m))`` [N, M] with the shared
  ``q = Linear(d, 1, no bias) . tanh . Linear(d, d)``; coarse ``c = sum_m a_m c_m``; fine
  ``g_m = sigmoid(V_m h_id + v_m) * (c_m - c)``; integration ``z = (sum_m g_m + c) / (M + 1)``;
* output ``h_id + z`` [N, d]; scores are dot products of its user and item rows.

Loss (u, i, j: the batch's users, positives, negatives; InfoNCE over the batch's B rows, the
L2-normalised views, every row of the other view in the denominator):

* ``bpr``: BPR on the output rows;
* ``reg``: ``reg_weight_1 * (|u|^2 + |i|^2 + |j|^2) / (2B)`` on the output rows, plus
  ``reg_weight_2 * |h_it[i]|^2 / (2B)``;
* ``vt``: ``vt_loss`` times, for each pair of modalities, ``|var(c_a) - var(c_b)| +
  |mean(c_a) - mean(c_b)|`` over all N x d entries (unbiased variance);
* ``bm``: ``bm_loss * (InfoNCE(z[u], h_id[u], bm_temp) + InfoNCE(z[i], h_id[i], bm_temp))``;
* ``um``: ``um_loss`` times ``InfoNCE(h_it[u], z[u], um_temp)`` plus, for t = z and t = h_it,
  ``InfoNCE(t'[u], t''[u], um_temp)`` between two perturbed copies
  ``t + sign(t) * normalize(U[0,1)) * noise_eps`` (one noise row per user, drawn for the whole
  table as the code does, so a user twice in a batch gets one perturbation per copy).

Each InfoNCE over the batch's rows is computed over its distinct users (items) weighted by their
counts (:func:`indexed_info_nce`): the same value and gradient as the code's [B, B] form, in a
fraction of its work when the batch repeats rows.

Switches: ``train_features`` (default true, as the code: its feature tables are
``nn.Embedding.from_pretrained(..., freeze=False)`` and train through ``W1_m``; false keeps
them fixed inputs; the graphs are built from the initial features either way). ``noise_eps`` is
the code's hard-coded 0.1. The port follows the code; the paper was read for the design only
(its equations were not compared one by one), so no paper variant is offered.

Departures from the code:

* any number of modalities (roles ordered image first, text last); with two it is the code's
  computation, with one there is no ``vt`` term and E is that modality's kNN graph;
* E is built from the top-``knn_k`` lists (the code reads them in groups of a hard-coded 10,
  which equals ``knn_k`` only at its default);
* an all-zero feature row has no neighbours in ``S_m`` (the code divides by its zero norm and
  gets NaN);
* the L2 terms divide by the batch's length; the code divides by the configured batch size,
  which differs only on an epoch's last, shorter batch;
* left out because it is never used: ``tau``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.graph import SparseGraph, normalise_sym
from mentor.losses import bpr_loss, mean_var_gap, rows, table_moments
from mentor.models.base import (
    FREE_ITEM_IDS,
    DotProductRecommender,
    ModelContext,
    feature_tables,
    linear,
    xavier_uniform,
)
from mentor.models.blocks import interaction_matrix, layer_mean, ordered_modalities
from mentor.models.lattice import KnnEdges, _concat, sym_normalise, weighted_knn


@dataclass
class GUMEConfig:
    """GUME hyper-parameters: the authors' names and their defaults (``GUME.yaml``, Baby)."""

    embedding_size: int = 64
    knn_k: int = 10
    n_layers: int = 2
    n_ui_layers: int = 3
    reg_weight_1: float = 1e-5
    reg_weight_2: float = 0.1
    bm_loss: float = 0.01
    bm_temp: float = 0.4
    um_loss: float = 0.01
    um_temp: float = 0.1
    vt_loss: float = 0.1
    noise_eps: float = 0.1
    train_features: bool = True

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        if self.embedding_size < 1 or self.knn_k < 1:
            raise MentorError(f"{where}.embedding_size and knn_k must be at least 1")
        if self.n_layers < 0 or self.n_ui_layers < 0:
            raise MentorError(f"{where}.n_layers and n_ui_layers must be >= 0")
        if self.bm_temp <= 0 or self.um_temp <= 0:
            raise MentorError(f"{where}.bm_temp and um_temp must be positive")
        if self.noise_eps < 0:
            raise MentorError(f"{where}.noise_eps must be >= 0")


def common_neighbours(neighbours: list[torch.Tensor], n: int) -> sp.csr_matrix:
    """Binary [n, n] item-item matrix: ``E_ij = 1`` when j != i is in row i of every [n, k]
    neighbour list of ``neighbours`` (one per modality)."""
    common: sp.csr_matrix | None = None
    for index in neighbours:
        idx = index.cpu().numpy()
        ones = sp.csr_matrix(
            (np.ones(idx.size), (np.repeat(np.arange(n), idx.shape[1]), idx.ravel())),
            shape=(n, n),
        )
        ones.data[:] = 1.0  # a repeated neighbour counts once
        common = ones if common is None else common.multiply(ones).tocsr()
    assert common is not None
    common.setdiag(0)
    common.eliminate_zeros()
    return common


def indexed_info_nce(
    anchors: torch.Tensor, candidates: torch.Tensor, index: torch.Tensor, temp: float
) -> torch.Tensor:
    """``info_nce(anchors[index], candidates[index], temp)`` for tables [n, d] and int64 [B]
    ``index`` with repeats, computed over the distinct rows only.

    A row repeated c times is c identical anchors and c identical candidates, so with the
    similarities ``L`` [n', n'] of the n' distinct rows: ``sum_b (log sum_j c_j exp(L_bj) - L_bb)``
    weighted by c_b, over B. The same value and gradient as the [B, B] form up to float
    rounding, in ``(n' / B)^2`` of its work (a batch of 2048 MovieLens users has about 900
    distinct ones).
    """
    unique, counts = torch.unique(index, return_counts=True)
    a = nn.functional.normalize(rows(anchors, unique), dim=1)
    b = nn.functional.normalize(rows(candidates, unique), dim=1)
    logits = (a @ b.T) / temp
    weights = counts.to(logits.dtype)
    log_sums = torch.logsumexp(logits + weights.log().unsqueeze(0), dim=1)
    return ((log_sums - logits.diagonal()) * weights).sum() / len(index)


def enhanced_graph(r: sp.csr_matrix, item_edges: sp.csr_matrix) -> sp.csr_matrix:
    """``D^-1/2 [[0, R], [R^T, E]] D^-1/2`` [N, N] with D the row sums (float32 CSR)."""
    return normalise_sym(sp.bmat([[None, r], [r.T, item_edges]], format="csr"))


class GUME(DotProductRecommender):
    """ID graph embeddings plus separated and integrated modality features of an enhanced
    user-item graph, with user modality enhancement and alignment terms."""

    name = "gume"
    cold_start_unavailable = FREE_ITEM_IDS
    data_parallel = "replicate"  # the InfoNCE terms couple the batch's rows

    def __init__(self, config: GUMEConfig, ctx: ModelContext, generator: torch.Generator) -> None:
        super().__init__(config, ctx, generator)
        if not ctx.features:
            raise MentorError("GUME needs at least one item feature modality")
        self.modalities = ordered_modalities(list(ctx.features))
        n_u, n_i, d = ctx.n_users, ctx.n_items, config.embedding_size
        knn = {
            m: sym_normalise(weighted_knn(ctx.features[m], config.knn_k), n_i)
            for m in self.modalities
        }
        # S_m side by side on the diagonal of one [M * I, M * I] matrix: one product per step
        self.item_graphs = _concat(
            [
                KnnEdges(e.rows + k * n_i, e.cols + k * n_i, e.values)
                for k, e in enumerate(knn.values())
            ]
        ).sparse(len(knn) * n_i, len(knn) * n_i)
        common = common_neighbours([e.cols.view(n_i, -1) for e in knn.values()], n_i)
        adj = enhanced_graph(interaction_matrix(ctx.train, n_u, n_i), common)
        self.graph = SparseGraph.from_scipy(adj)
        self.to_users = SparseGraph.from_scipy(adj[:n_u, n_u:])
        self.user_embedding = xavier_uniform((n_u, d), generator)
        self.item_id_embedding = xavier_uniform((n_i, d), generator)
        self.extended_user = nn.ParameterDict(
            {m: xavier_uniform((n_u, d), generator) for m in self.modalities}
        )
        self.features = feature_tables(ctx.features, config.train_features)
        self.reduce_dim = nn.ModuleDict(
            {m: linear(ctx.features[m].shape[1], d, generator) for m in self.modalities}
        )
        self.trans_dim = nn.ModuleDict({m: linear(d, d, generator) for m in self.modalities})
        self.separate_coarse = nn.Sequential(
            linear(d, d, generator), nn.Tanh(), linear(d, 1, generator, bias="none")
        )
        self.behavior = nn.ModuleDict({m: linear(d, d, generator) for m in self.modalities})

    def tables(self) -> dict[str, torch.Tensor]:
        """One forward pass over all users and items, every table [N, d] (users first):
        ``out`` (the scored rows), ``z`` (integration), ``h_id``, ``h_it`` and ``c_<m>``
        (explicit interaction features of modality m)."""
        n_u, n_i, d = self.n_users, self.n_items, self.config.embedding_size
        gated = [
            self.item_id_embedding
            * torch.sigmoid(self.trans_dim[m](self.reduce_dim[m](self.features[m])))
            for m in self.modalities
        ]
        stacked = torch.cat(gated)  # [M * I, d]
        for _ in range(self.config.n_layers):
            stacked = self.item_graphs @ stacked
        explicit_items = stacked.split(n_i)
        explicit = [torch.cat([self.to_users @ c, c]) for c in explicit_items]
        users = [self.user_embedding] + [self.extended_user[m] for m in self.modalities]
        items = [self.item_id_embedding, *explicit_items]
        ego = torch.cat([torch.cat(users, dim=1), torch.cat(items, dim=1)])  # [N, (1 + M) d]
        h_id, *extended = layer_mean(self.graph, ego, self.config.n_ui_layers).split(d, dim=1)
        h_it = torch.stack(extended).mean(0)
        attention = torch.softmax(torch.cat([self.separate_coarse(c) for c in explicit], 1), 1)
        coarse = sum(attention[:, k : k + 1] * c for k, c in enumerate(explicit))
        assert isinstance(coarse, torch.Tensor)
        fine = [
            torch.sigmoid(self.behavior[m](h_id)) * (c - coarse)
            for m, c in zip(self.modalities, explicit, strict=True)
        ]
        z = (sum(fine) + coarse) / (len(self.modalities) + 1)
        out = {"out": h_id + z, "z": z, "h_id": h_id, "h_it": h_it}
        out.update({f"c_{m}": c for m, c in zip(self.modalities, explicit, strict=True)})
        assert all(t.shape == (n_u + n_i, d) for t in out.values())
        return out

    def _perturbed(self, table: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``table + sign(table) * normalize(U[0,1)) * noise_eps`` [n, d], one noise row per
        table row."""
        noise = torch.rand(table.shape, generator=generator, device=table.device)
        step = nn.functional.normalize(noise, dim=1) * self.config.noise_eps
        return table + torch.sign(table.detach()) * step

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """BPR, L2, modality alignment (``vt``), behaviour-modality alignment (``bm``) and user
        modality enhancement (``um``); see the module documentation."""
        cfg, n_u = self.config, self.n_users
        t = self.tables()
        users, items = t["out"][:n_u], t["out"][n_u:]
        u, pos = rows(users, batch.users), rows(items, batch.positives)
        neg = rows(items, batch.negatives)
        size = len(batch.users)
        l2 = (u.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / (2 * size)
        h_it_pos = rows(t["h_it"][n_u:], batch.positives)
        reg = cfg.reg_weight_1 * l2 + cfg.reg_weight_2 * h_it_pos.pow(2).sum() / (2 * size)
        stats = [table_moments([t[f"c_{m}"]]) for m in self.modalities]
        vt = sum(
            (mean_var_gap(stats[a], stats[b]) for a in range(len(stats)) for b in range(a)),
            u.new_zeros(()),
        )
        z_u, z_i = t["z"][:n_u], t["z"][n_u:]
        h_id_u, h_id_i = t["h_id"][:n_u], t["h_id"][n_u:]
        h_it_u = t["h_it"][:n_u]
        users_b, pos_b = batch.users, batch.positives
        bm = indexed_info_nce(z_u, h_id_u, users_b, cfg.bm_temp)
        bm = bm + indexed_info_nce(z_i, h_id_i, pos_b, cfg.bm_temp)
        um = indexed_info_nce(h_it_u, z_u, users_b, cfg.um_temp)
        for table in (z_u, h_it_u):
            first = self._perturbed(table, generator)
            second = self._perturbed(table, generator)
            um = um + indexed_info_nce(first, second, users_b, cfg.um_temp)
        return {
            "bpr": bpr_loss((u * pos).sum(1), (u * neg).sum(1)),
            "reg": reg,
            "vt": cfg.vt_loss * vt,
            "bm": cfg.bm_loss * bm,
            "um": cfg.um_loss * um,
        }

    def full_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [U, d] and items [I, d]: ``h_id + z``."""
        out = self.tables()["out"]
        return out[: self.n_users], out[self.n_users :]

"""MMSSL (Wei et al., "Multi-Modal Self-Supervised Learning for Recommendation", WWW 2023,
arXiv 2302.10632).

MMSSL is not in MMRec. Checked term by term against the authors' code (github HKUDS/MMSSL, commit
f8d8955: ``MMSSL/Models.py``, ``MMSSL/main.py``, ``MMSSL/utility/parser.py``), whose default
arguments are the defaults here, under the same names. With U users, I items, d = ``embed_size``,
M modalities, B users per batch:

- graphs: ``ui = D_u^-1/2 R`` [U, I] and ``iu = D_i^-1/2 R^T`` [I, U] (each side scaled by its own
  degree only); per modality a generated graph pair ``ui_m``, ``iu_m`` of the same form, starting
  as the train graph.
- features: ``f_m = dropout(trans_m(features_m))`` [I, d] (rate ``drop_rate``);
  ``fu_m = ui f_m`` [U, d], ``fi_m = iu fu_m`` [I, d].
- modality ID views: ``xu_m = ui_m e_item`` [U, d], ``xi_m = iu_m e_user`` [I, d]; fused by the
  multi-head attention, which in the authors' code weighs every modality's values by attention
  weights that sum to one over those same values, so it reduces exactly to
  ``z = mean_m(x_m) @ sum_h W_h`` with ``W_h`` the d x d head blocks of
  ``w_self_attention_cat`` [head_num * d, d]. (Its query and key matrices therefore never change
  any output and are left out, as are the code's unused tables and layers.)
- ``u_0 = e_user + id_cat_rate * normalize(z_u)``, ``i_0`` alike; then
  ``u_1 = ui i_0, i_1 = iu u_1, u_2 = softmax(ui i_1), i_2 = softmax(iu u_2)`` (softmax over the
  d columns, on the last of ``len(weight_size)`` layers); users = ``mean(u_0, u_1, u_2) +
  model_cat_rate * sum_m normalize(fu_m)``, items alike with ``fi_m``.
- ``sim_m`` [B, I]: the batch users' rows of ``fu_m fi_m^T`` with their train items zeroed,
  L2-normalised; dense B x I rows exist only per batch.
- discriminator (its own Adam, lr ``D_lr``, betas (0.5, 0.9)): an MLP I -> I/4 -> I/8 -> 1 with
  batch norm and dropout (``G_drop1``, ``G_drop2``; the code's ``nn.LeakyReLU(True)`` has slope 1,
  the identity), sigmoid times 100; WGAN-GP loss ``-D(real) + D(fake) + gp_rate * GP`` with
  fake = ``[sim_m]`` (no gradient) and real = the batch's train rows sharpened with Gumbel noise
  (``log_log_scale``, ``real_data_tau``) plus ``ui_pre_scale`` times the fused model's own
  similarity rows, normalised; GP weighs ``(||grad|| - 1)^2`` by 0.3.
- main loss (AdamW, lr 5.5e-4, weight decay 0.01 as ``torch.optim.AdamW``'s default): BPR on
  (user, positive, negative) + ``regs[0] * (||u||^2 + ||p||^2 + ||n||^2) / (2 B)`` +
  ``feat_reg_decay * sum_m (||fu_m||^2 + ||fi_m||^2) / (2 I)`` + ``cl_rate`` times, per modality,
  the contrastive loss between ``xu_m`` and the final users over the batch (temperature ``tau``,
  both views in the denominator) + ``G_rate * -mean D(sim_m)``.
- batches: like the authors' sampler, each batch draws B distinct users uniformly among the users
  with train rows (not interactions), one positive of each uniformly and one negative uniformly
  among all items outside the user's train items. B is the loop's batch length (1024 by
  default); the loop's own user, positive and negative rows are not read.

Generated modality graphs, ``modality_graph``:
- ``official`` (default): the authors' code. After the main forward pass of batch ``idx`` (0-based
  within an epoch), if ``idx % T == 0 and idx != 0`` the graphs are rebuilt from the top-k rows
  collected since the last rebuild and the collection restarts, otherwise each batch user's top-k
  items of ``sim_m`` are collected; ``k = int(I * m_topk_rate)``. With the defaults (T = 1,
  ``m_topk_rate`` 1e-4) k is 0 for any catalogue under 10,000 items (Baby's 7,050,
  MovieLens-100K's 1,682), and even with k >= 1 only batch 0 collects rows (batch 1 rebuilds
  from them, every later batch from nothing), so from batch 3 on the graphs are empty: the
  modality ID views, and the contrastive term's gradient, vanish.
- ``persistent``: what the paper describes: ``k = max(1, int(I * m_topk_rate))`` and a rebuild
  replaces only the rows of the users collected since the last rebuild, so every user keeps its
  latest generated row (users not yet seen keep their train row).
The graphs are model state and part of every checkpoint, so ``--resume`` stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp
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
    adam,
    linear,
    xavier_uniform,
)
from mentor.models.blocks import dropout

GP_LAMBDA = 0.3  # the authors' fixed gradient-penalty factor (inside ``gradient_penalty``)


@dataclass
class MMSSLConfig:
    """MMSSL hyper-parameters: the authors' argument names and defaults."""

    embed_size: int = 64
    weight_size: list[int] = field(default_factory=lambda: [64, 64])
    head_num: int = 4
    drop_rate: float = 0.2
    model_cat_rate: float = 0.55
    id_cat_rate: float = 0.36
    regs: list[float] = field(default_factory=lambda: [1e-5, 1e-5, 1e-2])
    feat_reg_decay: float = 1e-5
    cl_rate: float = 0.03
    tau: float = 0.5
    G_rate: float = 1e-4
    G_drop1: float = 0.31
    G_drop2: float = 0.5
    gp_rate: float = 1.0
    D_lr: float = 3e-4
    real_data_tau: float = 0.005
    ui_pre_scale: float = 100.0
    log_log_scale: float = 1e-5
    T: int = 1
    m_topk_rate: float = 1e-4
    modality_graph: Literal["official", "persistent"] = "official"

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        if self.embed_size < 1 or self.head_num < 1:
            raise MentorError(f"{where}.embed_size and head_num must be at least 1")
        if self.T < 1:
            raise MentorError(f"{where}.T must be at least 1")
        if not self.regs:
            raise MentorError(f"{where}.regs needs at least one value (regs[0] weighs the L2 term)")
        for name in ("drop_rate", "G_drop1", "G_drop2"):
            if not 0 <= getattr(self, name) < 1:
                raise MentorError(f"{where}.{name} must be in [0, 1)")
        if self.tau <= 0 or self.real_data_tau <= 0:
            raise MentorError(f"{where}.tau and real_data_tau must be positive")


class Discriminator(nn.Module):
    """MLP [n, I] -> [n]: Linear(I, I/4), BN, dropout, Linear(I/4, I/8), BN, dropout,
    Linear(I/8, 1), 100 * sigmoid. Kaiming-normal weights, zero biases (the authors'
    ``weights_init``)."""

    def __init__(self, dim: int, drop1: float, drop2: float, generator: torch.Generator) -> None:
        super().__init__()
        sizes = [dim, max(1, dim // 4), max(1, dim // 8), 1]
        self.linears = nn.ModuleList()
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layer = nn.Linear(a, b)
            with torch.no_grad():
                nn.init.kaiming_normal_(layer.weight, generator=generator)
                layer.bias.zero_()
            self.linears.append(layer)
        # the authors' discriminator only ever runs in training mode (batch statistics), so the
        # running statistics, never read, are not kept
        self.norms = nn.ModuleList(
            [nn.BatchNorm1d(s, track_running_stats=False) for s in (sizes[1], sizes[2])]
        )
        self.drops = (drop1, drop2)

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:  # type: ignore[override]
        """Scores [n] of rows x [n, I]."""
        for layer, norm, rate in zip(self.linears[:2], self.norms, self.drops, strict=True):
            x = norm(layer(x))
            if self.training:
                x = dropout(x, rate, generator)
        return 100.0 * torch.sigmoid(self.linears[2](x)).view(-1)


def _side_norm(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """``diag((row sums + 1e-8)^-1/2) @ matrix`` (the authors' ``csr_norm(mean_flag=True)``)."""
    degree = np.asarray(matrix.sum(axis=1)).ravel() + 1e-8
    return sp.csr_matrix(sp.diags(degree**-0.5) @ matrix)


def _graph_pair(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
) -> tuple[SparseGraph, SparseGraph]:
    """``(D_u^-1/2 R, D_i^-1/2 R^T)`` of edges (users, items) int [E] (duplicates add up)."""
    r = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items)
    )
    return SparseGraph.from_scipy(_side_norm(r)), SparseGraph.from_scipy(_side_norm(r.T))


class MMSSL(DotProductRecommender):
    """Adversarially generated modality graphs + cross-modal contrast over an ID LightGCN."""

    name = "mmssl"
    data_parallel = "replicate"  # its graphs and discriminator are updated from each batch
    cold_start_unavailable = FREE_ITEM_IDS
    uses_negatives = False  # it draws its own users, positives and negatives

    def __init__(self, config: MMSSLConfig, ctx: ModelContext, generator: torch.Generator) -> None:
        super().__init__(config, ctx, generator)
        if not ctx.features:
            raise MentorError("MMSSL needs at least one item feature modality")
        self.modalities = list(ctx.features)
        d = config.embed_size
        train = np.unique(ctx.train, axis=0)
        self.ui, self.iu = _graph_pair(train[:, 0], train[:, 1], ctx.n_users, ctx.n_items)
        csr = sp.csr_matrix(
            (np.ones(len(train)), (train[:, 0], train[:, 1])), shape=(ctx.n_users, ctx.n_items)
        )
        full = np.flatnonzero(np.diff(csr.indptr) >= ctx.n_items)
        if len(full):
            raise MentorError(
                f"user {int(full[0])} interacted with every item: MMSSL cannot draw a negative"
            )
        self.train_index = {
            "indptr": torch.from_numpy(csr.indptr.astype(np.int64)),
            "indices": torch.from_numpy(csr.indices.astype(np.int64)),
            "keys": torch.from_numpy(train[:, 0] * ctx.n_items + train[:, 1]).sort().values,
            "users": torch.from_numpy(np.flatnonzero(np.diff(csr.indptr) > 0)),
        }
        self.features = {m: ctx.features[m].float() for m in self.modalities}
        self.trans = nn.ModuleDict(
            {
                m: linear(ctx.features[m].shape[1], d, generator, "xavier_uniform")
                for m in self.modalities
            }
        )
        self.user_id_embedding = xavier_uniform((ctx.n_users, d), generator)
        self.item_id_embedding = xavier_uniform((ctx.n_items, d), generator)
        self.w_self_attention_cat = xavier_uniform((config.head_num * d, d), generator)
        self.discriminator = Discriminator(ctx.n_items, config.G_drop1, config.G_drop2, generator)
        # generated graphs: current edges and the rows collected since the last rebuild
        self._edges = {m: (train[:, 0].copy(), train[:, 1].copy()) for m in self.modalities}
        empty = np.empty(0, dtype=np.int64)
        self._pending = {m: (empty, empty) for m in self.modalities}
        self._graphs = {
            m: _graph_pair(*self._edges[m], ctx.n_users, ctx.n_items) for m in self.modalities
        }
        self._step = 0
        self._sample: tuple[torch.Tensor, ...] | None = None

    # ----------------------------------------------------------------------------------------
    # forward pass
    # ----------------------------------------------------------------------------------------
    def forward_tables(self, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """One forward pass (feature dropout from ``generator`` in training mode).

        Returns ``users`` [U, d], ``items`` [I, d], and per modality m ``fu:m`` [U, d],
        ``fi:m`` [I, d] (feature views) and ``xu:m`` [U, d] (modality ID view of the users).
        """
        cfg = self.config
        d = cfg.embed_size
        out: dict[str, torch.Tensor] = {}
        xu, xi = [], []
        for m in self.modalities:
            f = self.trans[m](self.features[m])
            if self.training and generator is not None:
                f = dropout(f, cfg.drop_rate, generator)
            out[f"fu:{m}"] = self.ui @ f
            out[f"fi:{m}"] = self.iu @ out[f"fu:{m}"]
            ui_m, iu_m = self._graphs[m]
            out[f"xu:{m}"] = ui_m @ self.item_id_embedding
            xu.append(out[f"xu:{m}"])
            xi.append(iu_m @ self.user_id_embedding)
        heads = self.w_self_attention_cat.view(cfg.head_num, d, d).sum(0)
        z_u = torch.stack(xu).mean(0) @ heads
        z_i = torch.stack(xi).mean(0) @ heads
        normalize = nn.functional.normalize
        u = self.user_id_embedding + cfg.id_cat_rate * normalize(z_u, dim=1)
        i = self.item_id_embedding + cfg.id_cat_rate * normalize(z_i, dim=1)
        total_u, total_i = u, i
        layers = len(cfg.weight_size)
        for layer in range(layers):
            u = self.ui @ i
            if layer == layers - 1:
                u = torch.softmax(u, dim=1)
            i = self.iu @ u
            if layer == layers - 1:
                i = torch.softmax(i, dim=1)
            total_u, total_i = total_u + u, total_i + i
        users, items = total_u / (layers + 1), total_i / (layers + 1)
        for m in self.modalities:
            users = users + cfg.model_cat_rate * normalize(out[f"fu:{m}"], dim=1)
            items = items + cfg.model_cat_rate * normalize(out[f"fi:{m}"], dim=1)
        out["users"], out["items"] = users, items
        return out

    def train_rows(self, users: torch.Tensor) -> torch.Tensor:
        """Dense binary train rows [B, I] of ``users`` int64 [B]."""
        index = self.train_index
        start, stop = index["indptr"][users], index["indptr"][users + 1]
        counts = stop - start
        row = torch.repeat_interleave(torch.arange(len(users), device=users.device), counts)
        offset = torch.arange(int(counts.sum()), device=users.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        dense = torch.zeros(len(users), self.n_items, device=users.device)
        dense[row, index["indices"][start[row] + offset]] = 1.0
        return dense

    @staticmethod
    def similarity(
        users: torch.Tensor, train: torch.Tensor, user_table: torch.Tensor, item_table: torch.Tensor
    ) -> torch.Tensor:
        """L2-normalised rows [B, I] of ``user_table[users] @ item_table^T`` with the users'
        train items ``train`` [B, I] (binary) set to 0."""
        sim = rows(user_table, users) @ item_table.T
        return nn.functional.normalize(sim * (1.0 - train), dim=1)

    # ----------------------------------------------------------------------------------------
    # sampling
    # ----------------------------------------------------------------------------------------
    def draw(self, size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """The authors' batch: ``size`` distinct users with train rows (with replacement only
        when there are fewer), one train positive and one non-train negative each: int64 [B]."""
        index = self.train_index
        pool = index["users"]
        device = pool.device
        if size <= len(pool):
            users = pool[torch.randperm(len(pool), generator=generator, device=device)[:size]]
        else:
            users = pool[torch.randint(len(pool), (size,), generator=generator, device=device)]
        start, stop = index["indptr"][users], index["indptr"][users + 1]
        pick = (torch.rand(size, generator=generator, device=device) * (stop - start)).long()
        positives = index["indices"][start + pick.clamp_max(stop - start - 1)]
        negatives = torch.randint(self.n_items, (size,), generator=generator, device=device)
        todo = torch.arange(size, device=device)
        keys = index["keys"]
        while len(todo):
            key = users[todo] * self.n_items + negatives[todo]
            hit = torch.searchsorted(keys, key).clamp_max(len(keys) - 1)
            todo = todo[keys[hit] == key]
            negatives[todo] = torch.randint(
                self.n_items, todo.shape, generator=generator, device=device
            )
        return users, positives, negatives

    def _batch(self, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """This batch's users, positives, negatives int64 [B] and the users' train rows [B, I]:
        drawn by :meth:`auxiliary_loss`, reused by :meth:`loss`."""
        if self._sample is None:
            users, positives, negatives = self.draw(len(batch.users), generator)
            self._sample = (users, positives, negatives, self.train_rows(users))
        return self._sample

    # ----------------------------------------------------------------------------------------
    # training
    # ----------------------------------------------------------------------------------------
    def auxiliary_parameters(self) -> list[nn.Parameter]:
        """The discriminator's parameters."""
        return list(self.discriminator.parameters())

    def auxiliary_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """Adam, lr ``D_lr``, betas (0.5, 0.9), as the authors' ``optim_D``."""
        return adam(params, lr=self.config.D_lr, betas=(0.5, 0.9))

    def auxiliary_loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """WGAN-GP discriminator loss on this batch's users."""
        cfg = self.config
        users, _, _, train = self._batch(batch, generator)
        with torch.no_grad():
            out = self.forward_tables(generator)
            fused = self.similarity(users, train, out["users"], out["items"])
            fake = torch.cat(
                [
                    self.similarity(users, train, out[f"fu:{m}"], out[f"fi:{m}"])
                    for m in self.modalities
                ]
            )
            noise = torch.rand(fused.shape, generator=generator, device=fused.device)
            gumbel = torch.log(-torch.log(noise + 1e-8) + 1e-8)
            real = torch.softmax((train - cfg.log_log_scale * gumbel) / cfg.real_data_tau, dim=1)
            real = nn.functional.normalize(real + cfg.ui_pre_scale * fused, dim=1)
            real = real.repeat(len(self.modalities), 1)
        disc = self.discriminator
        loss_fake = disc(fake, generator).mean()
        loss_real = -disc(real, generator).mean()
        alpha = torch.rand((len(real), 1), generator=generator, device=real.device)
        mixed = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(
            disc(mixed, generator).sum(), mixed, create_graph=True, retain_graph=True
        )
        penalty = (grad.norm(2, dim=1) - 1.0).pow(2).mean() * GP_LAMBDA
        return {"real": loss_real, "fake": loss_fake, "gp": cfg.gp_rate * penalty}

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """BPR + L2 + feature L2 + contrast + adversarial terms; then the graph update."""
        cfg = self.config
        users, positives, negatives, train = self._batch(batch, generator)
        self._sample = None
        out = self.forward_tables(generator)
        u = rows(out["users"], users)
        p, n = rows(out["items"], positives), rows(out["items"], negatives)
        terms = {
            "bpr": bpr_loss((u * p).sum(1), (u * n).sum(1)),
            "reg": cfg.regs[0] * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / (2 * len(u)),
        }
        feat = sum(
            out[f"fu:{m}"].pow(2).sum() + out[f"fi:{m}"].pow(2).sum() for m in self.modalities
        )
        terms["feat_reg"] = cfg.feat_reg_decay * feat / (2 * self.n_items)
        terms["contrast"] = cfg.cl_rate * sum(
            self.contrast(rows(out[f"xu:{m}"], users), u) for m in self.modalities
        )
        sims = [
            self.similarity(users, train, out[f"fu:{m}"], out[f"fi:{m}"]) for m in self.modalities
        ]
        terms["adversarial"] = -cfg.G_rate * self.discriminator(torch.cat(sims), generator).mean()
        self.update_graphs(
            users, {m: s.detach() for m, s in zip(self.modalities, sims, strict=True)}
        )
        return terms

    def contrast(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The authors' contrastive loss of rows z1, z2 [B, d] (cosine / ``tau``):
        ``-log(b_ii / (sum_j r_ij + sum_j b_ij - r_ii) + 1e-8)`` averaged, with
        ``r = exp(cos(z1, z1) / tau)`` and ``b = exp(cos(z1, z2) / tau)``; B x B per batch."""
        a = nn.functional.normalize(z1, dim=1)
        b = nn.functional.normalize(z2, dim=1)
        refl = torch.exp(a @ a.T / self.config.tau)
        between = torch.exp(a @ b.T / self.config.tau)
        ratio = between.diagonal() / (refl.sum(1) + between.sum(1) - refl.diagonal())
        return -torch.log(ratio + 1e-8).mean()

    # ----------------------------------------------------------------------------------------
    # generated modality graphs
    # ----------------------------------------------------------------------------------------
    def topk(self) -> int:
        """Generated items per user and modality."""
        k = int(self.n_items * self.config.m_topk_rate)
        return max(1, k) if self.config.modality_graph == "persistent" else k

    def update_graphs(self, users: torch.Tensor, sims: dict[str, torch.Tensor]) -> None:
        """After batch ``self._step``: rebuild every ``T`` batches, otherwise collect this
        batch's top-k rows (see the module docstring for both modes)."""
        if self._step % self.config.T == 0 and self._step != 0:
            for m in self.modalities:
                pend_u, pend_i = self._pending[m]
                if self.config.modality_graph == "persistent":
                    old_u, old_i = self._edges[m]
                    keep = ~np.isin(old_u, pend_u)
                    pend_u = np.concatenate([old_u[keep], pend_u])
                    pend_i = np.concatenate([old_i[keep], pend_i])
                self._edges[m] = (pend_u, pend_i)
                self._graphs[m] = self._build(pend_u, pend_i)
                self._pending[m] = (pend_u[:0], pend_i[:0])
        else:
            k = self.topk()
            for m in self.modalities:
                top = torch.topk(sims[m], k, dim=1).indices.cpu().numpy()
                new_u = np.repeat(users.cpu().numpy(), k)
                old_u, old_i = self._pending[m]
                self._pending[m] = (
                    np.concatenate([old_u, new_u]),
                    np.concatenate([old_i, top.reshape(-1)]),
                )
        self._step += 1

    def _build(self, users: np.ndarray, items: np.ndarray) -> tuple[SparseGraph, SparseGraph]:
        device = self.item_id_embedding.device
        ui, iu = _graph_pair(users, items, self.n_users, self.n_items)
        return ui.to(device), iu.to(device)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """``.to()`` also moves the generated graphs."""
        module = super()._apply(fn, recurse)
        device = fn(torch.empty(0)).device
        self._graphs = {m: (ui.to(device), iu.to(device)) for m, (ui, iu) in self._graphs.items()}
        return module

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """Batch indices restart at 0 each epoch (the authors' ``idx``)."""
        self._step = 0

    def get_extra_state(self) -> torch.Tensor:
        """The generated graphs (current edges and collected rows) as one int64 tensor (the
        batch index is not kept: checkpoints fall between epochs, and it restarts at 0)."""
        parts, sizes = [], []
        for m in self.modalities:
            for pair in (self._edges[m], self._pending[m]):
                sizes.append(len(pair[0]))
                parts += [pair[0], pair[1]]
        header = np.array(sizes, dtype=np.int64)
        return torch.from_numpy(np.concatenate([header, *parts]).astype(np.int64))

    def set_extra_state(self, state: torch.Tensor) -> None:
        """Inverse of :meth:`get_extra_state`."""
        flat = state.cpu().numpy().astype(np.int64)
        count = 2 * len(self.modalities)
        sizes, pos = flat[:count], count
        pairs = []
        for size in sizes:
            pairs.append((flat[pos : pos + size].copy(), flat[pos + size : pos + 2 * size].copy()))
            pos += 2 * size
        for k, m in enumerate(self.modalities):
            self._edges[m], self._pending[m] = pairs[2 * k], pairs[2 * k + 1]
            self._graphs[m] = self._build(*self._edges[m])

    # ----------------------------------------------------------------------------------------
    # scoring
    # ----------------------------------------------------------------------------------------
    def full_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass without dropout, with the current generated graphs: users [U, d],
        items [I, d]."""
        out = self.forward_tables(None)
        return out["users"], out["items"]

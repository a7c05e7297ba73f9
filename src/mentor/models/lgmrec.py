"""LGMRec (Guo et al., "LGMRec: Local and Global Graph Learning for Multimodal Recommendation",
AAAI 2024, arXiv 2312.16400).

Checked term by term against the authors' ``models/lgmrec.py`` (github georgeguo-cn/LGMRec,
commit 457f39c; the same file is MMRec's ``src/models/lgmrec.py``) and their Baby configuration
(``configs/dataset/baby.yaml``, MMRec's ``configs/model/LGMRec.yaml``), whose values are the
defaults here. With U users, I items, d = ``embedding_size`` = ``feat_embed_dim``, F_m the width
of modality m's features, H = ``hyper_num`` hyperedges, B batch rows:

- collaborative graph embedding (CGE): LightGCN layer mean of ``[user table; item table]`` over
  the symmetric-normalised user-item graph G, ``n_ui_layers`` layers (``cf_model: mf`` takes the
  tables as they are): users [U, d], items [I, d].
- modality graph embedding (MGE), per modality m: items ``x_m = f_m W_m`` [I, d] (``W_m``
  [F_m, d], the features themselves fixed); users start as the mean of their train items' rows;
  ``n_mm_layers`` propagations over G (users <- G x_items, items <- G^T x_users) and the *last*
  layer is kept. Local embedding = CGE + ``sum_m normalize(MGE_m)`` (rows L2-normalised).
- global hypergraph embedding (GHE), per modality m: item-hyperedge logits ``f_m V_m`` [I, H]
  (``V_m`` [F_m, H]), user-hyperedge logits ``R (f_m V_m)`` [U, H] with R the binary interaction
  matrix (a sum over the user's items, not a mean); each row goes through a Gumbel-softmax at
  temperature ``tau`` (soft), then, in training, inverted dropout with keep probability
  ``keep_rate``: ``A_i`` [I, H], ``A_u`` [U, H]. ``n_hyper_layer`` times:
  ``z = A_i^T e`` [H, d], ``e <- A_i z``, ``users = A_u z``, starting from the CGE item rows
  ``e``. GHE = ``sum_m`` of the per-modality users / items.
- output: ``local + alpha * normalize(GHE)``: users [U, d], items [I, d]; scores are dot products.
- loss: BPR on the output rows of the batch; plus ``cl_weight`` times the hypergraph contrastive
  term (HCL): for the batch's users, InfoNCE at temperature ``tau`` between each user's GHE row of
  the first modality and the same user's row of the second, the candidates being *all* U rows of
  the second modality (L2-normalised, the positive among them), **summed** over the batch rows
  (not averaged); the same for the batch's positive items against all I items; plus
  ``reg_weight`` times MMRec's EmbLoss of the output rows of the batch,
  ``(||u||_F + ||p||_F + ||n||_F) / B``.

Modalities: role order ``image`` first, ``text`` last, others between
(:func:`~mentor.models.blocks.ordered_modalities`; on ml-100k-mm ``genre`` takes the image
role). The HCL term contrasts each modality with the next in that order (image -> text with two;
none with one modality, for which the published code has no path).

Departures from the published code:

- evaluation takes the hyperedge assignments without Gumbel noise, ``softmax(logits / tau)``
  (the code also draws fresh noise at every scoring call, so its scores are random; ours are
  deterministic, as a bundle's must be). Training draws the noise from the loop's generator.
- G is normalised with the exact degrees; the code adds 1e-7 to every degree before the inverse
  square root (a relative change of 1e-7).

The paper describes the same computation; where it leaves details open (the soft Gumbel-softmax,
the unnormalised user-hyperedge sum, the summed HCL, EmbLoss on the output rows) the code decides
them, and so does this port. ``tau`` is the code's fixed ``self.tau = 0.2`` made a setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import torch
from torch import nn

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.graph import SparseGraph, mean_graphs
from mentor.losses import bpr_loss, emb_norm_loss, rows
from mentor.models.base import (
    FREE_ITEM_IDS,
    DotProductRecommender,
    ModelContext,
    xavier_uniform,
)
from mentor.models.blocks import (
    bipartite_layer_mean,
    dropout,
    interaction_matrix,
    ordered_modalities,
)


@dataclass
class LGMRecConfig:
    """LGMRec hyper-parameters (the authors' names; defaults: their Baby configuration)."""

    embedding_size: int = 64
    feat_embed_dim: int = 64
    cf_model: Literal["lightgcn", "mf"] = "lightgcn"
    n_ui_layers: int = 2
    n_mm_layers: int = 2
    n_hyper_layer: int = 1
    hyper_num: int = 4
    keep_rate: float = 0.5
    alpha: float = 0.3
    cl_weight: float = 1e-4
    reg_weight: float = 1e-6
    tau: float = 0.2

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        if self.embedding_size != self.feat_embed_dim:
            raise MentorError(
                f"{where}.feat_embed_dim ({self.feat_embed_dim}) must equal embedding_size "
                f"({self.embedding_size}): modality and ID embeddings are added"
            )
        if self.embedding_size < 1 or self.hyper_num < 1:
            raise MentorError(f"{where}.embedding_size and hyper_num must be at least 1")
        if self.n_ui_layers < 0 or self.n_mm_layers < 0:
            raise MentorError(f"{where}.n_ui_layers and n_mm_layers must be >= 0")
        if self.n_hyper_layer < 1:
            raise MentorError(f"{where}.n_hyper_layer must be at least 1")
        if not 0 < self.keep_rate <= 1:
            raise MentorError(f"{where}.keep_rate must be in (0, 1]")
        if self.tau <= 0:
            raise MentorError(f"{where}.tau must be positive")


def gumbel_softmax(
    logits: torch.Tensor, tau: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Soft Gumbel-softmax over the last dimension of ``logits`` [n, H]: ``softmax((logits + g) /
    tau)`` with ``g = -log(Exp(1))`` drawn from ``generator``; without a generator, no noise."""
    if generator is not None:
        noise = torch.empty_like(logits).exponential_(generator=generator).log_().neg_()
        logits = logits + noise
    return torch.softmax(logits / tau, dim=-1)


def cross_view_nce(
    anchors: torch.Tensor, positives: torch.Tensor, candidates: torch.Tensor, tau: float
) -> torch.Tensor:
    """``sum_b -log(exp(a_b . p_b / tau) / sum_j exp(a_b . c_j / tau))`` with rows L2-normalised:
    anchors and positives [B, d], candidates [N, d] (the positives are among them)."""
    a = nn.functional.normalize(anchors, dim=1)
    p = nn.functional.normalize(positives, dim=1)
    c = nn.functional.normalize(candidates, dim=1)
    logits = (a / tau) @ c.T  # [B, N]
    return (torch.logsumexp(logits, dim=1) - (a * p).sum(1) / tau).sum()


class LGMRec(DotProductRecommender):
    """Local (collaborative + modality graph) and global (hypergraph) user and item embeddings."""

    name = "lgmrec"
    cold_start_unavailable = FREE_ITEM_IDS

    def __init__(self, config: LGMRecConfig, ctx: ModelContext, generator: torch.Generator) -> None:
        super().__init__(config, ctx, generator)
        if not ctx.features:
            raise MentorError("LGMRec needs at least one item feature modality")
        self.modalities = ordered_modalities(list(ctx.features))
        d, h = config.embedding_size, config.hyper_num
        self.graph = ctx.interactions
        self.user_mean = mean_graphs(ctx.train[:, 0], ctx.train[:, 1], ctx.n_users, ctx.n_items)[0]
        self.interactions = SparseGraph.from_scipy(
            interaction_matrix(ctx.train, ctx.n_users, ctx.n_items)
        )
        self.features: dict[str, torch.Tensor] = {m: ctx.features[m] for m in self.modalities}
        self.user_embedding = xavier_uniform((ctx.n_users, d), generator)
        self.item_id_embedding = xavier_uniform((ctx.n_items, d), generator)
        self.trs = nn.ParameterDict()
        self.hyper = nn.ParameterDict()
        for m in self.modalities:
            width = ctx.features[m].shape[1]
            self.trs[m] = xavier_uniform((width, config.feat_embed_dim), generator)
            self.hyper[m] = xavier_uniform((width, h), generator)

    def collaborative(self) -> tuple[torch.Tensor, torch.Tensor]:
        """CGE: users [U, d], items [I, d]."""
        if self.config.cf_model == "mf":
            return self.user_embedding, self.item_id_embedding
        return bipartite_layer_mean(
            self.graph, self.user_embedding, self.item_id_embedding, self.config.n_ui_layers
        )

    def modality_graph(self, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """MGE of one modality: the last of ``n_mm_layers`` propagations, users [U, d] and
        items [I, d]."""
        items = self.features[modality] @ self.trs[modality]
        users = self.user_mean @ items
        for _ in range(self.config.n_mm_layers):
            users, items = self.graph @ items, self.graph.T @ users
        return users, items

    def hypergraph(
        self, modality: str, items: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GHE of one modality from the CGE item rows ``items`` [I, d]: users [U, d], items
        [I, d]. ``generator`` draws the Gumbel noise and, in training, the hyperedge dropout."""
        cfg = self.config
        logits_i = self.features[modality] @ self.hyper[modality]  # [I, H]
        logits_u = self.interactions @ logits_i  # [U, H]
        assign_i = gumbel_softmax(logits_i, cfg.tau, generator)
        assign_u = gumbel_softmax(logits_u, cfg.tau, generator)
        if self.training and generator is not None:
            assign_i = dropout(assign_i, 1.0 - cfg.keep_rate, generator)
            assign_u = dropout(assign_u, 1.0 - cfg.keep_rate, generator)
        for _ in range(cfg.n_hyper_layer):
            latent = assign_i.T @ items  # [H, d]
            items = assign_i @ latent
        return assign_u @ latent, items  # users from the last layer's hyperedge rows

    def forward_all(
        self, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """Output users [U, d], items [I, d], and each modality's GHE (users, items)."""
        cge_u, cge_i = self.collaborative()
        local_u, local_i = cge_u, cge_i
        global_u = global_i = None
        hyper: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for m in self.modalities:
            mge_u, mge_i = self.modality_graph(m)
            local_u = local_u + nn.functional.normalize(mge_u, dim=1)
            local_i = local_i + nn.functional.normalize(mge_i, dim=1)
            hyper[m] = self.hypergraph(m, cge_i, generator)
            global_u = hyper[m][0] if global_u is None else global_u + hyper[m][0]
            global_i = hyper[m][1] if global_i is None else global_i + hyper[m][1]
        assert global_u is not None and global_i is not None
        alpha = self.config.alpha
        users = local_u + alpha * nn.functional.normalize(global_u, dim=1)
        items = local_i + alpha * nn.functional.normalize(global_i, dim=1)
        return users, items, hyper

    def summed_terms(self) -> frozenset[str]:
        """HCL is a sum over the batch's rows."""
        return frozenset({"hcl"})

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """BPR + ``cl_weight`` * HCL + ``reg_weight`` * EmbLoss of the batch's output rows."""
        cfg = self.config
        users, items, hyper = self.forward_all(generator)
        u = rows(users, batch.users)
        p, n = rows(items, batch.positives), rows(items, batch.negatives)
        hcl = u.new_zeros(())
        for first, second in pairwise(self.modalities):
            (a_u, a_i), (b_u, b_i) = hyper[first], hyper[second]
            hcl = hcl + cross_view_nce(rows(a_u, batch.users), rows(b_u, batch.users), b_u, cfg.tau)
            hcl = hcl + cross_view_nce(
                rows(a_i, batch.positives), rows(b_i, batch.positives), b_i, cfg.tau
            )
        whole = batch.all_rows()  # EmbLoss is a norm of the whole batch, not a mean of rows
        reg = emb_norm_loss(
            rows(users, whole.users), rows(items, whole.positives), rows(items, whole.negatives)
        )
        return {
            "bpr": bpr_loss((u * p).sum(1), (u * n).sum(1)),
            "hcl": cfg.cl_weight * hcl,
            "reg": cfg.reg_weight * reg,
        }

    def full_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [U, d] and items [I, d] with noise-free hyperedge assignments, no dropout."""
        users, items, _ = self.forward_all(None)
        return users, items

"""SLMRec (Tao et al., "Self-supervised Learning for Multimedia Recommendation", IEEE TMM 2022).

Checked term by term against MMRec's ``models/slmrec.py`` and ``configs/model/SLMRec.yaml``
(commit e775373, ``ssl_task: FAC``, ``mm_fusion_mode: concat``, ``adj_type: pre``) and against the
authors' code (github zltao/SLMRec). With U users, I items, d = ``recdim``, M modalities, B rows:

- branches: the ID branch propagates ``[user table; item table]``; modality m's branch propagates
  ``[user table; dense_m(normalize(f_m))]`` (the user table is shared). Each is a LightGCN layer
  mean over the symmetric-normalised user-item graph, ``layer_num`` layers: users [U, d],
  items [I, d] per branch.
- fusion: users = ``Linear_u(cat(branch users))`` and items = ``Linear_i(cat(branch items))``,
  [(M + 1) d -> d].
- main loss: in-batch InfoNCE between the L2-normalised batch users and their positive items
  (temperature ``temp``); no sampled negatives.
- FAC ("fine and coarse") loss on the batch's positive items, a chain of linear maps of the ID
  branch's item rows, each stage compared by in-batch InfoNCE over raw (unnormalised) dot
  products at temperature ``ssl_temp`` with a linear map of one modality branch's item rows:
  stage 1 (d -> d) against the first modality; one d -> d stage per middle modality; the last
  stage (d -> d/2) against the last modality. With two modalities a d -> d stage with no
  comparison sits between them (the audio stage of the original, as in MMRec).
  Role order: ``image`` first, ``text`` last, others between (see
  :func:`~mentor.models.blocks.ordered_modalities`).
- total: main + ``ssl_alpha`` * FAC; Adam's ``weight_decay`` 1e-4 is a training default.

Parity switches:
- ``use_reg`` (default false): MMRec and the authors' code never read ``reg``, so its four grid
  values train identical models. ``true`` adds the paper's L2 term,
  ``reg * (||e_u||^2 + ||e_i||^2) / (2 B)`` over the batch's layer-0 user and item rows.
- ``eval_reps``: ``last_batch`` (default, MMRec) scores with the tables of the last training
  batch; ``fresh`` recomputes them with the final parameters. (MMRec also passes scores through a
  sigmoid, which does not change any ranking and is left out.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.losses import info_nce, rows
from mentor.models.base import FREE_ITEM_IDS, ModelContext, Recommender, linear, xavier_uniform
from mentor.models.blocks import bipartite_layer_mean, ordered_modalities


@dataclass
class SLMRecConfig:
    """SLMRec hyper-parameters (MMRec names and defaults; grid values: their first entries)."""

    recdim: int = 64
    layer_num: int = 3
    temp: float = 0.2
    ssl_temp: float = 0.1
    ssl_alpha: float = 0.01
    reg: float = 1e-4
    use_reg: bool = False
    eval_reps: Literal["last_batch", "fresh"] = "last_batch"

    def inert_keys(self) -> list[str]:
        """Settings that change nothing with the others as they are: ``reg`` without
        ``use_reg`` (searches train such combinations once)."""
        return [] if self.use_reg else ["reg"]

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        if self.recdim < 2:
            raise MentorError(f"{where}.recdim must be at least 2")
        if self.layer_num < 0:
            raise MentorError(f"{where}.layer_num must be >= 0")
        if self.temp <= 0 or self.ssl_temp <= 0:
            raise MentorError(f"{where}.temp and ssl_temp must be positive")


class SLMRec(Recommender):
    """Three-or-more LightGCN branches fused by linear layers, trained by in-batch contrast."""

    name = "slmrec"
    data_parallel = "replicate"  # its InfoNCE contrasts the rows of a batch with each other
    cold_start_unavailable = FREE_ITEM_IDS
    uses_negatives = False

    def __init__(self, config: SLMRecConfig, ctx: ModelContext, generator: torch.Generator) -> None:
        super().__init__(config, ctx, generator)
        if not ctx.features:
            raise MentorError("SLMRec needs at least one item feature modality")
        d = config.recdim
        self.modalities = ordered_modalities(list(ctx.features))
        self.graph = ctx.interactions
        self.features = {
            m: nn.functional.normalize(ctx.features[m].float(), dim=1) for m in self.modalities
        }
        self.embedding_user = xavier_uniform((ctx.n_users, d), generator)
        self.embedding_item = xavier_uniform((ctx.n_items, d), generator)
        self.dense = nn.ModuleDict(
            {
                m: linear(ctx.features[m].shape[1], d, generator, "xavier_uniform")
                for m in self.modalities
            }
        )
        width = d * (len(self.modalities) + 1)
        self.item_after_gcn = linear(width, d, generator, "xavier_uniform")
        self.user_after_gcn = linear(width, d, generator, "xavier_uniform")
        # FAC chain: stage k maps the previous stage; probe k maps modality k's branch
        m_count = len(self.modalities)
        stages = max(m_count, 3) if m_count > 1 else 1
        self.chain = nn.ModuleList()
        for k in range(stages):
            out = d // 2 if (k == stages - 1 and m_count > 1) else d
            self.chain.append(linear(d, out, generator, "xavier_uniform"))
        self.compare_at = self._comparison_stages(m_count, stages)
        self.probe = nn.ModuleDict()
        for m, stage in zip(self.modalities, self.compare_at, strict=True):
            self.probe[m] = linear(d, self.chain[stage].out_features, generator, "xavier_uniform")
        self.register_buffer("result_users", torch.zeros(ctx.n_users, d))
        self.register_buffer("result_items", torch.zeros(ctx.n_items, d))

    @staticmethod
    def _comparison_stages(m_count: int, stages: int) -> list[int]:
        """Chain stage compared with each modality (in role order): first -> 0, last -> the
        last stage, middle modalities -> the stages between."""
        if m_count == 1:
            return [0]
        return [0, *range(1, m_count - 1), stages - 1]

    def branches(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per-branch ("id" and each modality) users [U, d] and items [I, d].

        All branches are propagated together as one [N, (M + 1) d] table (the user table
        repeated), which equals separate propagations.
        """
        names = ["id", *self.modalities]
        item_inputs = [self.embedding_item] + [
            self.dense[m](self.features[m]) for m in self.modalities
        ]
        users, items = bipartite_layer_mean(
            self.graph,
            self.embedding_user.repeat(1, len(names)),
            torch.cat(item_inputs, dim=1),
            self.config.layer_num,
        )
        d = self.config.recdim
        return (
            dict(zip(names, users.split(d, dim=1), strict=True)),
            dict(zip(names, items.split(d, dim=1), strict=True)),
        )

    def fuse(
        self, users: dict[str, torch.Tensor], items: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused users [U, d] and items [I, d] from the branch tables."""
        order = ["id", *self.modalities]
        return (
            self.user_after_gcn(torch.cat([users[k] for k in order], dim=1)),
            self.item_after_gcn(torch.cat([items[k] for k in order], dim=1)),
        )

    def fac(self, items: dict[str, torch.Tensor], index: torch.Tensor) -> torch.Tensor:
        """FAC loss over the items ``index`` int64 [B] (the batch's positives)."""
        x = rows(items["id"], index)
        loss = x.new_zeros(())
        probes = dict(zip(self.compare_at, self.modalities, strict=True))
        for stage, layer in enumerate(self.chain):
            x = layer(x)
            if stage in probes:
                m = probes[stage]
                y = self.probe[m](rows(items[m], index))
                loss = loss + info_nce(x, y, self.config.ssl_temp, normalize=False)
        return loss

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """In-batch InfoNCE + ``ssl_alpha`` * FAC (+ ``reg`` L2 with ``use_reg``)."""
        cfg = self.config
        b_users, b_items = self.branches()
        users, items = self.fuse(b_users, b_items)
        u, i = rows(users, batch.users), rows(items, batch.positives)
        terms = {
            "main": info_nce(u, i, cfg.temp),
            "ssl": cfg.ssl_alpha * self.fac(b_items, batch.positives),
        }
        if cfg.use_reg:
            e_u = rows(self.embedding_user, batch.users)
            e_i = rows(self.embedding_item, batch.positives)
            terms["reg"] = cfg.reg * (e_u.pow(2).sum() + e_i.pow(2).sum()) / (2 * len(e_u))
        if cfg.eval_reps == "last_batch":
            self.result_users.copy_(users.detach())
            self.result_items.copy_(items.detach())
        return terms

    def prepare_scoring(self) -> None:
        """``fresh``: one forward pass with the current parameters; ``last_batch``: keep the
        tables of the last training batch."""
        if self.config.eval_reps == "fresh":
            users, items = self.fuse(*self.branches())
            self.result_users.copy_(users)
            self.result_items.copy_(items)

    def serving_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(users [U, d], items [I, d])`` used by :meth:`score`."""
        return self.result_users, self.result_items

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """[B, I] dot products of the fused tables."""
        return self.result_users[users] @ self.result_items.T

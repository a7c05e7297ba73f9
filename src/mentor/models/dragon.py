"""DRAGON (Zhou et al., "Enhancing Dyadic Relations with Homogeneous Graphs for Multimodal
Recommendation", ECAI 2023, arXiv 2301.12097).

Checked term by term against MMRec's ``src/models/dragon.py``, ``configs/model/DRAGON.yaml`` and
``preprocessing/dualgnn-gen-u-u-matrix.py`` (the user graph file it reads; commit e775373).
DRAGON is DualGNN's heterogeneous-graph branches with two homogeneous graphs and a concatenating
fusion; the branches, the user-user graph and the loss are DualGNN's code
(:mod:`mentor.models.dualgnn`). Shapes: U users, I items, M feature modalities,
d = ``embedding_size``, k = ``knn_k``.

* Per modality m (DualGNN's branch): ``x = normalize([P_m (U x d); MLP_m(f_m) (I x d)])`` with
  MLP F_m -> 4d -> d (leaky ReLU between), then ``r_m = x + A x + A^2 x`` over the user-item graph
  (``aggr_mode`` add: symmetric normalisation; mean: row normalisation).
* Attentive concatenation: items ``concat_m r_m`` [I, M d]; users ``concat_m w_{u,m} r_m``
  [U, M d] with free per-user weights w [U, M] (initialised to a softmax; with one modality the
  branch alone, unweighted).
* Item-item graph (frozen): per modality the binary top-``knn_k`` cosine graph of the raw features,
  symmetric-normalised, mixed ``mm_image_weight`` for the image-role modality and
  ``1 - mm_image_weight`` for the text-role one (roles as
  :func:`~mentor.models.blocks.ordered_modalities` gives them: on ml-100k-mm genre takes the
  image role, as in MMRec's files); other counts of modalities: equal shares.
  ``items += S^n_mm_layers items``.
* User-user graph: each user's top-``user_knn_k`` users by co-interaction count weighted by the
  softmax of the counts, short lists padded each epoch by repeating random entries (DualGNN's);
  ``users += W users``.
* Loss: BPR with log base 2 + ``reg_weight * (sum_m mean(P_m[batch users]^2) + mean(w^2))``.

Departures: MMRec scores with ``result_embed`` left by the last training batch (computed before
that batch's optimiser step); here scoring recomputes it. MMRec hard-codes the branch width to 64
(``dim_latent``); here it is ``embedding_size`` (64 by default), and the user graph's 40
neighbours are ``user_knn_k``. Switch ``feature_dtype``: DualGNN's (``auto`` runs each branch's
first layer in bfloat16 where the device multiplies bfloat16 natively; ``float32`` computes as
MMRec does).

Left out because they change nothing in MMRec's computation: ``feat_embed_dim`` and the
``image_trs`` / ``text_trs`` projections it sizes, the trainable copies of the feature tables
(``image_embedding``, ``text_embedding``: read only to build the item graph), ``n_layers`` (the
branches always propagate twice), ``weight_i``, ``MLP_v``, ``MLP_t``, ``MLP_user`` and the
edge-dropped graphs (never used).

Cold start: a new item has no user-item edges, so its branch rows are its normalised
``MLP_m(f_m)``; it joins the frozen item graph through its kNN neighbours in the catalogue's raw
features, as MENTOR's new items do (:func:`~mentor.models.mentor.cold_start_items`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from mentor.errors import MentorError
from mentor.models.base import ModelContext
from mentor.models.blocks import ordered_modalities
from mentor.models.dualgnn import DualGNN, DualGNNConfig
from mentor.models.mentor import cold_start_items


@dataclass
class DRAGONConfig:
    """DRAGON hyper-parameters (MMRec names and defaults; ``user_knn_k`` is MMRec's hard-coded
    ``k = 40``, ``reg_weight`` a middle value of its grid, as DualGNN's)."""

    embedding_size: int = 64
    n_mm_layers: int = 1
    knn_k: int = 10
    mm_image_weight: float = 0.1
    aggr_mode: Literal["add", "mean"] = "add"
    reg_weight: float = 1e-3
    user_knn_k: int = 40
    feature_dtype: Literal["auto", "float32", "bfloat16"] = "auto"

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        for name in ("embedding_size", "knn_k", "user_knn_k"):
            if getattr(self, name) < 1:
                raise MentorError(f"{where}.{name} must be at least 1")
        if self.n_mm_layers < 0:
            raise MentorError(f"{where}.n_mm_layers must be >= 0")
        if not 0 <= self.mm_image_weight <= 1:
            raise MentorError(f"{where}.mm_image_weight must be in [0, 1]")


def role_weights(modalities: list[str], image_weight: float) -> dict[str, float]:
    """Item graph weight per modality: with two, ``image_weight`` for the image role and the
    rest for the text role (:func:`ordered_modalities`); otherwise equal shares."""
    if len(modalities) == 2:
        image, text = ordered_modalities(modalities)
        return {image: image_weight, text: 1.0 - image_weight}
    return {m: 1.0 / len(modalities) for m in modalities}


class DRAGON(DualGNN):
    """DualGNN's branches fused by concatenation, with item-item and user-user graphs."""

    name = "dragon"

    def __init__(self, config: DRAGONConfig, ctx: ModelContext, generator: torch.Generator) -> None:
        if not ctx.features:
            raise MentorError("DRAGON needs at least one item feature modality")
        branches = DualGNNConfig(
            embedding_size=config.embedding_size,
            aggr_mode=config.aggr_mode,
            reg_weight=config.reg_weight,
            knn_k=config.user_knn_k,  # DualGNN's knn_k is its user graph's neighbour count
            feature_dtype=config.feature_dtype,
        )
        super().__init__(branches, ctx, generator)
        self.config = config  # type: ignore[assignment]
        self.graph_weights = role_weights(self.modalities, config.mm_image_weight)
        assert ctx.semantic_graph is not None
        self.item_graph = ctx.semantic_graph(self.graph_weights, config.knn_k)

    def heterogeneous(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The user-item graph part: users ``concat_m w_m r_m`` [U, M d], items ``concat_m r_m``
        [I, M d]."""
        users, items = [], []
        for m in self.modalities:
            u, i = self.branches[m].rows(self.first_layer(m))
            users.append(u)
            items.append(i)
        x_u, x_i = torch.cat(users, dim=1), torch.cat(items, dim=1)
        h_u, h_i = self.to_users @ x_i, self.to_items @ x_u
        r_u = x_u + h_u + self.to_users @ h_i
        r_i = x_i + h_i + self.to_items @ h_u
        if len(self.modalities) > 1:  # weight_u [U, M, 1] scales each branch's d columns
            n, width = r_u.shape
            r_u = (r_u.view(n, len(self.modalities), -1) * self.weight_u).view(n, width)
        return r_u, r_i

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [U, M d] plus their user-graph neighbours, items [I, M d] plus
        ``S^n_mm_layers`` of themselves."""
        users, items = self.heterogeneous()
        h = items
        for _ in range(self.config.n_mm_layers):
            h = self.item_graph @ h
        return users + self.user_graph @ users, items + h

    def new_item_representations(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cold start: items [n_new, M d] from raw features ``{modality: [n_new, F_m]}``: the
        concatenated normalised branch rows, plus ``S^n_mm_layers`` over their kNN neighbours in
        the catalogue (the catalogue's rows of S unchanged)."""
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise MentorError(f"features: modality '{missing[0]}' is missing")
        parts = []
        for m in self.modalities:
            branch = self.branches[m]
            parts.append(branch.rows(branch.mlp(features[m]))[1])
        table = self.heterogeneous()[1]
        tables = []
        for _ in range(self.config.n_mm_layers):
            tables.append(table)
            table = self.item_graph @ table
        return cold_start_items(
            torch.cat(parts, dim=1),
            {m: features[m] for m in self.graph_weights},
            {m: self.features[m] for m in self.graph_weights},
            tables,
            self.graph_weights,
            self.config.knn_k,
        )

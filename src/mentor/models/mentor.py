"""MENTOR (Xu et al., "MENTOR: Multi-level Self-supervised Learning for Multimodal
Recommendation", AAAI 2025, arXiv 2402.19407).

Faithful by default to the official code (github Jinfeng-Xu/MENTOR, commit 1581d27,
``src/models/mentor.py``), term by term; the parity switches ``feature_mask_grad``,
``contrast_scope`` and ``eval_reps`` select the paper's description or cheaper variants instead.
Left out because they change nothing in the official computation: the user-graph resampling, the
edge-dropped graphs (never used by the GCN), unused embedding tables and layers.

Shapes: U users, I items, N = U + I, M feature modalities, d = ``feat_embed_dim``, D = M * d.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.hardware import native_bf16
from mentor.losses import bpr_loss, info_nce, mean_var_gap, rows, table_moments
from mentor.models.base import ModelContext, Recommender, linear, xavier_normal


@dataclass
class MentorConfig:
    """MENTOR hyper-parameters: the official defaults under MMRec's names."""

    embedding_size: int = 64
    feat_embed_dim: int = 64
    mlp_hidden_size: int = 256
    n_layers: int = 2
    n_mm_layers: int = 1
    knn_k: int = 10
    reg_weight: float = 1e-3
    dropout: float = 0.5
    mask_weight_f: float = 1.5
    mask_weight_g: float = 1e-3
    align_weight: float = 0.1
    temp: float = 0.2
    noise_eps: float = 0.1
    semantic_graph_weights: dict[str, float] | None = None
    feature_mask_grad: bool = False
    contrast_scope: Literal["all", "batch"] = "all"
    eval_reps: Literal["last_batch", "fresh"] = "last_batch"
    contrast_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    contrast_block: int = 0

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        for name in ("feat_embed_dim", "embedding_size", "mlp_hidden_size", "knn_k"):
            if getattr(self, name) < 1:
                raise MentorError(f"{where}.{name} must be at least 1")
        if not 0 <= self.dropout < 1:
            raise MentorError(f"{where}.dropout must be in [0, 1)")
        if self.temp <= 0:
            raise MentorError(f"{where}.temp must be positive")
        if self.n_layers < 0 or self.n_mm_layers < 0:
            raise MentorError(f"{where}.n_layers and n_mm_layers must be >= 0")


def default_semantic_weights(modalities: list[str]) -> dict[str, float]:
    """Image 0.1 / text 0.9 when both exist (the official mix), equal shares otherwise."""
    if set(modalities) == {"image", "text"}:
        return {"image": 0.1, "text": 0.9}
    return {m: 1.0 / len(modalities) for m in modalities}


class ModalityGCN(nn.Module):
    """One GCN branch: features -> MLP (F -> hidden -> d) and a free user preference table.

    Its rows ``[preferences; projected items]`` [N, d] are L2-normalised and then propagated.
    """

    def __init__(
        self, n_users: int, in_dim: int, hidden: int, dim: int, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.preference = xavier_normal((n_users, dim), generator)
        self.mlp = linear(in_dim, hidden, generator)
        self.mlp_1 = linear(hidden, dim, generator)

    def rows(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row-normalised inputs from the first layer's output ``mlp(features)`` [I, hidden]:
        users [U, d], items [I, d]."""
        items = self.mlp_1(nn.functional.leaky_relu(hidden))
        normalize = nn.functional.normalize
        return normalize(self.preference, dim=1), normalize(items, dim=1)


def _source(branch: str) -> str:
    """The features a branch reads: ``text_n1`` -> ``text``; ``id`` -> ``id``."""
    return branch[:-3] if branch.endswith(("_n1", "_n2")) else branch


def shared_first_layer(branches: list[ModalityGCN], features: torch.Tensor) -> list[torch.Tensor]:
    """``branch.mlp(features)`` for branches that read the same features, as one product.

    Reads the (possibly large, e.g. [I, 4096]) feature matrix once for all branches; the result
    equals the separate products. Returns one [I, hidden] tensor per branch.
    """
    weight = torch.cat([b.mlp.weight for b in branches])
    bias = torch.cat([b.mlp.bias for b in branches])
    hidden = nn.functional.linear(features, weight, bias)
    return list(hidden.split(branches[0].mlp.out_features, dim=1))


class MENTOR(Recommender):
    """Multi-level self-supervised multimodal recommender.

    Branches: for each feature modality a clean GCN and two noise-perturbed GCNs, plus one ID GCN
    whose "features" are a learnable item table. All branches are propagated together as one
    [N, 64 * branches] matrix.
    """

    name = "mentor"

    def __init__(self, config: MentorConfig, ctx: ModelContext, generator: torch.Generator) -> None:
        super().__init__(config, ctx, generator)
        self.modalities = list(ctx.features)
        if not self.modalities:
            raise MentorError("MENTOR needs at least one item feature modality")
        if "id" in self.modalities:
            raise MentorError(
                "MENTOR reserves the name 'id' for its ID branch; rename id_feat.npy "
                "(e.g. to item_feat.npy)"
            )
        views = [m for m in self.modalities if m.endswith(("_n1", "_n2"))]
        if views:
            raise MentorError(
                f"MENTOR names its perturbed branches '<modality>_n1' / '_n2', so a modality "
                f"may not be called '{views[0]}'; rename {views[0]}_feat.npy"
            )
        weights = config.semantic_graph_weights or default_semantic_weights(self.modalities)
        unknown = [m for m in weights if m not in self.modalities]
        if unknown:
            raise MentorError(
                f"model.semantic_graph_weights names '{unknown[0]}' but the data set has "
                f"{', '.join(self.modalities)}"
            )
        self.graph = ctx.interactions
        assert ctx.semantic_graph is not None
        self.item_graph = ctx.semantic_graph(weights, config.knn_k)
        self.semantic_weights = {m: float(w) for m, w in weights.items()}
        self.features = ctx.features
        d, hidden = config.feat_embed_dim, config.mlp_hidden_size
        self.branches = nn.ModuleDict()
        for m in self.modalities:
            dim = ctx.features[m].shape[1]
            self.branches[m] = ModalityGCN(ctx.n_users, dim, hidden, d, generator)
        self.id_feat = xavier_normal((ctx.n_items, config.embedding_size), generator)
        self.branches["id"] = ModalityGCN(ctx.n_users, config.embedding_size, hidden, d, generator)
        for view in ("_n1", "_n2"):
            for m in self.modalities:
                dim = ctx.features[m].shape[1]
                self.branches[m + view] = ModalityGCN(ctx.n_users, dim, hidden, d, generator)
        m_count = len(self.modalities)
        user_weights = xavier_normal((ctx.n_users, m_count, 1), generator)
        self.weight_u = nn.Parameter(torch.softmax(user_weights.data, dim=1))
        self.mlp = linear(m_count * d, m_count * d, generator)
        self.register_buffer("result_users", torch.zeros(ctx.n_users, m_count * d))
        self.register_buffer("result_items", torch.zeros(ctx.n_items, m_count * d))

    # ----------------------------------------------------------------------------------------
    def propagate(
        self, generator: torch.Generator | None, names: list[str], semantic: bool = True
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Run the GCN branches ``names`` together: ``{name: (users [U, d], items [I, d])}``.

        Each branch's output is ``x + h_1 + ... + h_L`` with ``h_l = A h_{l-1}`` over the
        user-item graph; perturbed branches (``*_n1``, ``*_n2``, after the clean ones in
        ``names``) add ``sign(h) * normalize(U[0,1)) * noise_eps`` after every layer. Items then
        get ``x + S^{n_mm_layers} x`` with S the item semantic graph (left out when not
        ``semantic``).
        """
        d = self.config.feat_embed_dim
        groups: dict[str, list[str]] = {}
        for name in names:
            groups.setdefault(_source(name), []).append(name)
        hidden = {}
        for source, members in groups.items():
            feats = self.id_feat if source == "id" else self.features[source]
            layers = shared_first_layer([self.branches[n] for n in members], feats)
            hidden.update(zip(members, layers, strict=True))
        users, items = [], []
        for name in names:
            u, i = self.branches[name].rows(hidden[name])
            users.append(u)
            items.append(i)
        x_u, x_i = torch.cat(users, dim=1), torch.cat(items, dim=1)
        clean = sum(1 for name in names if not name.endswith(("_n1", "_n2"))) * d
        total_u, total_i, h_u, h_i = x_u, x_i, x_u, x_i
        for _ in range(self.config.n_layers):
            h_u, h_i = self.graph @ h_i, self.graph.T @ h_u
            if clean < h_u.shape[1] and generator is not None:
                h_u = self._perturb(h_u, clean, generator)
                h_i = self._perturb(h_i, clean, generator)
            total_u, total_i = total_u + h_u, total_i + h_i
        extra = total_i
        for _ in range(self.config.n_mm_layers if semantic else 0):
            extra = self.item_graph @ extra
        if self.config.n_mm_layers and semantic:
            total_i = total_i + extra
        return dict(
            zip(
                names,
                zip(total_u.split(d, dim=1), total_i.split(d, dim=1), strict=True),
                strict=True,
            )
        )

    def _perturb(self, h: torch.Tensor, clean: int, generator: torch.Generator) -> torch.Tensor:
        """SimGCL noise on the columns after ``clean``, per d-wide branch:
        ``h + sign(h) * normalize(U[0,1)) * eps`` [n, k * d]."""
        n, d = h.shape[0], self.config.feat_embed_dim
        k = (h.shape[1] - clean) // d
        uniform = torch.rand((n, k, d), generator=generator, device=h.device)
        noise = h.new_zeros(h.shape)
        noise[:, clean:] = nn.functional.normalize(uniform, dim=2).view(n, -1)
        return torch.addcmul(h, torch.sign(h.detach()), noise, value=self.config.noise_eps)

    def fuse(
        self, out: dict[str, tuple[torch.Tensor, torch.Tensor]], names: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused user [U, D] (per-user modality weights) and item [I, D] tables of ``names``."""
        users = torch.cat([out[m][0] * self.weight_u[:, k] for k, m in enumerate(names)], dim=1)
        items = torch.cat([out[m][1] for m in names], dim=1)
        return users, items

    def representations(
        self, generator: torch.Generator | None, with_views: bool
    ) -> dict[str, torch.Tensor]:
        """All tables of one forward pass.

        Returns ``fused_u`` [U, D] and ``fused_i`` [I, D]; with ``with_views`` also the perturbed
        views ``n1_u``, ``n1_i``, ``n2_u``, ``n2_i`` and every branch's ``<name>_u`` [U, d] and
        ``<name>_i`` [I, d] (the guide table is ``[id, id]``, modality m's is ``[m, m]``).
        """
        names = list(self.branches) if with_views else self.modalities
        out = self.propagate(generator, names)
        fused_u, fused_i = self.fuse(out, self.modalities)
        reps = {"fused_u": fused_u, "fused_i": fused_i}
        if not with_views:
            return reps
        for view in ("n1", "n2"):
            sub = [f"{m}_{view}" for m in self.modalities]
            reps[f"{view}_u"], reps[f"{view}_i"] = self.fuse(out, sub)
        for name in ("id", *self.modalities):
            reps[f"{name}_u"], reps[f"{name}_i"] = out[name]
        return reps

    def alignment(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum over all pairs of {fused, guide, each modality} tables [N, D] of
        ``|var_a - var_b| + |mean_a - mean_b|`` (scalar mean, unbiased variance).

        The guide and modality tables repeat one [N, d] table M times; their moments come from
        that table directly (no repeated copy is built).
        """
        m_count = len(self.modalities)
        stats = [table_moments([reps["fused_u"], reps["fused_i"]])]
        for name in ("id", *self.modalities):
            stats.append(table_moments([reps[f"{name}_u"], reps[f"{name}_i"]], copies=m_count))
        return sum(
            mean_var_gap(stats[i], stats[j])
            for i in range(len(stats))
            for j in range(i + 1, len(stats))
        )

    def summed_terms(self) -> frozenset[str]:
        """With ``contrast_scope=all`` the InfoNCE over every user and item is split by anchor
        rows across data-parallel ranks."""
        return frozenset({"contrast"}) if self.config.contrast_scope == "all" else frozenset()

    # ----------------------------------------------------------------------------------------
    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """BPR (base 2) + regularisation + alignment + feature and graph enhancement."""
        cfg = self.config
        reps = self.representations(generator, with_views=True)
        users_r, items_r = reps["fused_u"], reps["fused_i"]
        u = rows(users_r, batch.users)
        pos = (u * rows(items_r, batch.positives)).sum(1)
        neg = (u * rows(items_r, batch.negatives)).sum(1)
        terms = {"bpr": bpr_loss(pos, neg, base2=True)}
        prefs = sum(
            rows(self.branches[m].preference, batch.users).pow(2).mean() for m in self.modalities
        )
        terms["reg"] = cfg.reg_weight * (prefs + self.weight_u.pow(2).mean())
        terms["align"] = cfg.align_weight * self.alignment(reps)
        if cfg.feature_mask_grad:
            terms["feature"] = cfg.mask_weight_f * self._feature_term(users_r, items_r, generator)
        terms["contrast"] = cfg.mask_weight_g * self._contrast(reps, batch)
        if cfg.eval_reps == "last_batch":
            self.result_users.copy_(users_r.detach())
            self.result_items.copy_(items_r.detach())
        return terms

    def _feature_term(
        self, users: torch.Tensor, items: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """``(1 - cos(dropout(r), mlp(r)))`` averaged over items, plus the same over users.

        Only computed with ``feature_mask_grad=true``: the official code evaluates it without
        gradient, so there it is a constant that trains nothing and is left out.
        """
        total = users.new_zeros(())
        for table in (items, users):
            keep = 1.0 - self.config.dropout
            mask = torch.rand(table.shape, generator=generator, device=table.device) < keep
            dropped = table * mask / keep
            cos = nn.functional.cosine_similarity(dropped, self.mlp(table), dim=1)
            total = total + (1.0 - cos.mean())
        return total

    def _contrast(self, reps: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        """InfoNCE between the two perturbed views, over users plus over items.

        ``contrast_dtype="auto"`` runs its three large products in bfloat16 where the device has
        native bfloat16 matrix units (float32 accumulation; gradients within ~1e-4 relative of
        float32), in float32 elsewhere.
        """
        cfg = self.config
        dtype = torch.float32
        if cfg.contrast_dtype == "bfloat16" or (
            cfg.contrast_dtype == "auto" and native_bf16(reps["n1_u"].device)
        ):
            dtype = torch.bfloat16
        n1_u, n2_u, n1_i, n2_i = reps["n1_u"], reps["n2_u"], reps["n1_i"], reps["n2_i"]
        if cfg.contrast_scope == "batch":
            users = torch.unique(batch.users)
            items = torch.unique(torch.cat([batch.positives, batch.negatives]))
            n1_u, n2_u = rows(n1_u, users), rows(n2_u, users)
            n1_i, n2_i = rows(n1_i, items), rows(n2_i, items)
        shard = batch.shard if cfg.contrast_scope == "all" else (0, 1)
        return info_nce(n1_u, n2_u, cfg.temp, cfg.contrast_block, dtype, shard=shard) + info_nce(
            n1_i, n2_i, cfg.temp, cfg.contrast_block, dtype, shard=shard
        )

    # ----------------------------------------------------------------------------------------
    def prepare_scoring(self) -> None:
        """``fresh``: one noise-free forward pass; ``last_batch``: keep the training tables."""
        if self.config.eval_reps == "fresh":
            reps = self.representations(None, with_views=False)
            self.result_users.copy_(reps["fused_u"])
            self.result_items.copy_(reps["fused_i"])

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """[B, n_items] dot products of the fused 128-d representations."""
        return self.result_users[users] @ self.result_items.T

    def serving_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused tables :meth:`score` uses: users [U, D], items [I, D]."""
        return self.result_users.clone(), self.result_items.clone()

    def item_branch_rows(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Layer-0 item rows of the clean modality branches for raw ``features``
        ``{modality: [n, dim_m]}``: ``concat_m normalize(mlp_1(leaky_relu(mlp(f_m))))`` [n, D]."""
        parts = []
        for m in self.modalities:
            branch = self.branches[m]
            parts.append(branch.rows(branch.mlp(features[m]))[1])
        return torch.cat(parts, dim=1)

    def semantic_tables(self) -> list[torch.Tensor]:
        """``[S^0 t, ..., S^(L-1) t]`` (L = ``n_mm_layers``), each [I, D], with t the noise-free
        clean item tables before the semantic step: what a new item's semantic neighbours give
        it at each of the L steps."""
        out = self.propagate(None, self.modalities, semantic=False)
        table = torch.cat([out[m][1] for m in self.modalities], dim=1)
        tables = []
        for _ in range(self.config.n_mm_layers):
            tables.append(table)
            table = self.item_graph @ table
        return tables

    def new_item_representations(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cold start: fused item representations [n_new, D] of items with no interactions.

        Such an item has no user-item edges, so every GCN layer gives it zero and its table
        before the semantic step is its layer-0 row ``x`` (:meth:`item_branch_rows`); the
        semantic step then adds ``S^L`` over its kNN neighbours in the catalogue's raw features
        (see :func:`cold_start_items`). The catalogue's own rows are left as they are.
        """
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise MentorError(f"new items need features for modality '{missing[0]}'")
        rows = self.item_branch_rows(features)
        return cold_start_items(
            rows,
            {m: features[m] for m in self.semantic_weights},
            {m: self.features[m] for m in self.semantic_weights},
            self.semantic_tables(),
            self.semantic_weights,
            self.config.knn_k,
        )


def cold_start_items(
    rows: torch.Tensor,
    features: dict[str, torch.Tensor],
    catalogue: dict[str, torch.Tensor],
    tables: list[torch.Tensor],
    weights: dict[str, float],
    k: int,
) -> torch.Tensor:
    """Representations ``x + (S^L y)_new`` [n, D] of new items, each joining the item semantic
    graph alone (with the catalogue's rows of S unchanged).

    In the semantic graph every node has k out-edges, so every entry of ``S`` is ``w_m / k``.
    A new item's neighbours in modality m are itself plus its ``k - 1`` most cosine-similar
    catalogue items (an all-zero feature row: itself k times, as :func:`knn_indices` does),
    so with ``y^0 = x``: ``y^l_new = sum_m w_m / k * (c_m y^(l-1)_new + sum_nbrs tables[l-1])``.

    Args:
        rows: the new items' layer-0 rows ``x`` [n, D].
        features: their raw features ``{modality: [n, dim_m]}`` for the modalities of ``weights``.
        catalogue: the catalogue's raw features ``{modality: [I, dim_m]}``.
        tables: ``S^l t`` of the catalogue [I, D] for l = 0 .. L-1 (empty: no semantic step).
        weights: semantic graph weight per modality; k: its neighbour count.
    """
    if not tables:
        return rows
    n_cat = next(iter(catalogue.values())).shape[0]
    k = min(k, n_cat + 1)
    plan = []  # per modality: (weight / k, self count [n], catalogue neighbours [n, k - 1])
    for m, weight in weights.items():
        new = nn.functional.normalize(features[m].float(), dim=1)
        cat = nn.functional.normalize(catalogue[m].float(), dim=1)
        sims = new @ cat.T
        sims[:, ~(catalogue[m] != 0).any(dim=1)] = -2.0
        nbrs = torch.topk(sims, k - 1, dim=1).indices
        zero = ~(features[m] != 0).any(dim=1)
        self_count = torch.where(zero, float(k), 1.0).to(rows.dtype)
        plan.append((weight / k, self_count, nbrs, zero))
    y = rows
    for table in tables:
        nxt = torch.zeros_like(rows)
        for scale, self_count, nbrs, zero in plan:
            gathered = table[nbrs].sum(dim=1) * (~zero).unsqueeze(1).to(rows.dtype)
            nxt = nxt + scale * (self_count.unsqueeze(1) * y + gathered)
        y = nxt
    return rows + y

"""DualGNN (Wang et al., "DualGNN: Dual Graph Neural Network for Multimedia Recommendation",
IEEE Transactions on Multimedia 2021).

Checked against MMRec's ``src/models/dualgnn.py``, ``configs/model/DualGNN.yaml`` and
``preprocessing/dualgnn-gen-u-u-matrix.py`` (commit e775373), term by term.

Shapes: U users, I items, M feature modalities, d = ``embedding_size``, k = ``knn_k``.

* Per modality m (the same branch as MENTOR's): ``x = normalize([P_m (U x d); MLP_m(f_m) (I x d)])``
  with MLP F_m -> 4d -> d (leaky ReLU between), then ``r_m = x + A x + A^2 x`` over the user-item
  graph (``aggr_mode`` add: symmetric normalisation; mean: row normalisation).
* Items: ``sum_m r_m``. Users: ``sum_m w_{u,m} r_m`` with free per-user weights w [U, M]
  (initialised to a softmax); with one modality, that modality alone.
* User-user graph: each user's top-k users by co-interaction count (the sparse product
  ``R R^T``, computed in row blocks; ties to the lower user id), weighted by the softmax of the
  counts; users with fewer than k co-users are padded each epoch by repeating random entries
  (each pick uniform over the list built so far, as MMRec); users without any get nothing.
  ``user += W user``.
* Loss: BPR with log base 2 + ``reg_weight * (sum_m mean(P_m[batch users]^2) + mean(w^2))``.

Switch ``mutated_first_branch`` (default true, what MMRec computes: its
``representation += t_rep`` adds in place into ``v_rep``, so the first branch's user part is the
sum of all branches, ``user = w_1 * sum_m r_m + sum_{m>1} w_m r_m``); false: the weighted sum of
the branches, as the paper describes. The first branch is ``image`` when present, else the first
modality of the data set.

Switch ``feature_dtype``: ``bfloat16`` runs each branch's first layer (features [I, F_m] ->
[I, 4d], forward and weight gradient; for 4096-d image features the largest product of an epoch)
in bfloat16 with float32 accumulation, on a bfloat16 copy of the features made once; ``auto``
(default, as MENTOR's ``contrast_dtype``) does so only where the device multiplies bfloat16
natively (CPUs with AVX512-BF16 or AMX, CUDA from Ampere) and computes in float32 elsewhere;
``float32`` always computes as MMRec does. bfloat16 is a close approximation of MMRec's
arithmetic, not that arithmetic.

Left out because they change nothing in MMRec's computation: ``weight_i`` (only ever in the
regulariser, no effect on scores), ``MLP_v``, ``MLP_t``, ``MLP_user`` and the edge-dropped graphs
(never used). Departure: MMRec scores with ``result_embed`` left by the last training batch (and
stores it in a float64 Parameter that fails outside CUDA); here scoring recomputes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.graph import SparseGraph, mean_graphs
from mentor.hardware import native_bf16
from mentor.losses import bpr_loss, rows
from mentor.models.base import DotProductRecommender, ModelContext
from mentor.models.mentor import ModalityGCN


@dataclass
class DualGNNConfig:
    """DualGNN hyper-parameters (MMRec names; ``knn_k`` is MMRec's hard-coded ``k = 40``)."""

    embedding_size: int = 64
    aggr_mode: Literal["add", "mean"] = "add"
    reg_weight: float = 1e-3
    knn_k: int = 40
    mutated_first_branch: bool = True
    feature_dtype: Literal["auto", "float32", "bfloat16"] = "auto"

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        if self.embedding_size < 1 or self.knn_k < 1:
            raise MentorError(f"{where}.embedding_size and knn_k must be at least 1")


def top_co_interactions(
    train: np.ndarray, n_users: int, n_items: int, k: int, block_rows: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's ``k`` users with the most items in common (itself excluded).

    Computes ``R R^T`` by row blocks of ``block_rows`` users as sparse products: never a dense
    U x U matrix. Ties go to the lower user id.

    Args:
        train: int64 [N, 2] (user, item) rows (duplicates count once).
    Returns:
        ``(index int64 [U, k], counts float32 [U, k], valid int64 [U])``: neighbours by
        decreasing count, their counts, and how many of the k slots are filled (zeros after).
    """
    r = sp.csr_matrix(
        (np.ones(len(train), dtype=np.float32), (train[:, 0], train[:, 1])),
        shape=(n_users, n_items),
    )
    r.data[:] = 1.0
    r_t = sp.csr_matrix(r.T)
    index = np.zeros((n_users, k), dtype=np.int64)
    counts = np.zeros((n_users, k), dtype=np.float32)
    valid = np.zeros(n_users, dtype=np.int64)
    for start in range(0, n_users, block_rows):
        stop = min(start + block_rows, n_users)
        block = (r[start:stop] @ r_t).tocoo()
        keep = block.row + start != block.col
        row, col, val = block.row[keep], block.col[keep], block.data[keep]
        order = np.lexsort((col, -val, row))
        row, col, val = row[order], col[order], val[order]
        first = np.searchsorted(row, np.arange(stop - start))
        rank = np.arange(len(row)) - first[row]
        top = rank < k
        index[row[top] + start, rank[top]] = col[top]
        counts[row[top] + start, rank[top]] = val[top]
        valid[start:stop] = np.minimum(np.bincount(row, minlength=stop - start), k)
    return index, counts, valid


def padded_user_graph(
    index: torch.Tensor, counts: torch.Tensor, valid: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill each user's empty slots by repeating random earlier entries; softmax the counts.

    Slot j of a user with ``0 < valid <= j`` copies slot ``floor(U[0,1) * j)`` (uniform over the
    j entries before it, padding included). Users with ``valid == 0`` get zero weights.

    Args:
        index, counts: [U, k] from :func:`top_co_interactions`; valid: int64 [U].
    Returns:
        ``(index int64 [U, k], weights float [U, k])``.
    """
    index, counts = index.clone(), counts.clone()
    n, k = index.shape
    for slot in range(1, k):
        pad = (valid <= slot) & (valid > 0)
        pick = (torch.rand(n, generator=generator, device=index.device) * slot).long()
        pick = pick.clamp_max(slot - 1).unsqueeze(1)
        index[:, slot] = torch.where(pad, index.gather(1, pick).squeeze(1), index[:, slot])
        counts[:, slot] = torch.where(pad, counts.gather(1, pick).squeeze(1), counts[:, slot])
    weights = torch.softmax(counts, dim=1) * (valid > 0).unsqueeze(1)
    return index, weights


def branch_order(modalities: list[str]) -> list[str]:
    """``image`` first when present, the others in data set order."""
    return sorted(modalities, key=lambda m: m != "image")


def attach_user_graph(
    module: nn.Module, ctx: ModelContext, k: int, generator: torch.Generator
) -> None:
    """Register on ``module`` each user's top-``k`` co-interacting users (``top_index``,
    ``top_counts``, ``top_valid`` [U, k], rebuilt from the train rows, not saved) and the user
    graph sampled from them (``user_index``, ``user_weights``, saved), as DualGNN, DRAGON and
    COHESION use them."""
    index, counts, valid = top_co_interactions(ctx.train, ctx.n_users, ctx.n_items, k)
    module.register_buffer("top_index", torch.from_numpy(index), persistent=False)
    module.register_buffer("top_counts", torch.from_numpy(counts), persistent=False)
    module.register_buffer("top_valid", torch.from_numpy(valid), persistent=False)
    sampled = padded_user_graph(module.top_index, module.top_counts, module.top_valid, generator)
    module.register_buffer("user_index", sampled[0])
    module.register_buffer("user_weights", sampled[1])


class DualGNN(DotProductRecommender):
    """Modality GCNs fused per user, plus a co-interaction user-user graph."""

    name = "dualgnn"
    user_index: torch.Tensor
    user_weights: torch.Tensor

    def __init__(
        self, config: DualGNNConfig, ctx: ModelContext, generator: torch.Generator
    ) -> None:
        super().__init__(config, ctx, generator)
        self.modalities = branch_order(list(ctx.features))
        if not self.modalities:
            raise MentorError("DualGNN needs at least one item feature modality")
        self.features = ctx.features
        self._bf16_features: dict[str, torch.Tensor] = {}
        if config.aggr_mode == "add":
            self.to_users, self.to_items = ctx.interactions, ctx.interactions.T
        else:
            self.to_users, self.to_items = mean_graphs(
                ctx.train[:, 0], ctx.train[:, 1], ctx.n_users, ctx.n_items
            )
        d = config.embedding_size
        self.branches = nn.ModuleDict(
            {
                m: ModalityGCN(ctx.n_users, ctx.features[m].shape[1], 4 * d, d, generator)
                for m in self.modalities
            }
        )
        weights = torch.empty(ctx.n_users, len(self.modalities), 1)
        nn.init.xavier_normal_(weights, generator=generator)
        self.weight_u = nn.Parameter(torch.softmax(weights, dim=1))
        attach_user_graph(self, ctx, config.knn_k, generator)
        self.user_graph = self._user_graph()
        self.register_load_state_dict_post_hook(self._rebuild_user_graph)

    def _user_graph(self) -> SparseGraph:
        """The sampled user-user graph [U, U] (repeated neighbours' weights summed)."""
        n, k = self.user_index.shape
        users = torch.arange(n, device=self.user_index.device).repeat_interleave(k)
        values = self.user_weights.flatten()
        keep = values > 0
        return SparseGraph.from_edges(
            users[keep], self.user_index.flatten()[keep], values[keep], (n, n)
        )

    @staticmethod
    def _rebuild_user_graph(module: nn.Module, incompatible: Any) -> None:
        """After ``load_state_dict``, derive the graph from the restored sample."""
        assert isinstance(module, DualGNN)
        module.user_graph = module._user_graph()

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """Resample the padding of users with fewer than ``knn_k`` co-users."""
        index, weights = padded_user_graph(
            self.top_index, self.top_counts, self.top_valid, generator
        )
        self.user_index.copy_(index)
        self.user_weights.copy_(weights)
        self.user_graph = self._user_graph()

    def first_layer(self, modality: str) -> torch.Tensor:
        """The branch's first layer on the catalogue's features: [I, 4d] float32, computed in
        bfloat16 when ``feature_dtype`` asks for it (see the module docstring)."""
        layer, features = self.branches[modality].mlp, self.features[modality]
        dtype = self.config.feature_dtype
        if dtype == "float32" or (dtype == "auto" and not native_bf16(features.device)):
            return layer(features)
        low = self._bf16_features.get(modality)
        if low is None or low.device != features.device:
            low = self._bf16_features[modality] = features.to(torch.bfloat16)
        weight, bias = layer.weight.to(torch.bfloat16), layer.bias.to(torch.bfloat16)
        return nn.functional.linear(low, weight, bias).float()

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [U, d] (fused, plus their user-graph neighbours) and items [I, d]."""
        users, items = [], []
        for m in self.modalities:
            branch = self.branches[m]
            u, i = branch.rows(self.first_layer(m))
            users.append(u)
            items.append(i)
        d = self.config.embedding_size
        x_u, x_i = torch.cat(users, dim=1), torch.cat(items, dim=1)
        h_u, h_i = self.to_users @ x_i, self.to_items @ x_u
        h2_u, h2_i = self.to_users @ h_i, self.to_items @ h_u
        reps_u = (x_u + h_u + h2_u).split(d, dim=1)
        reps_i = (x_i + h_i + h2_i).split(d, dim=1)
        item_rep = torch.stack(reps_i).sum(0)
        if len(reps_u) == 1:
            user_rep = reps_u[0]
        else:
            parts = list(reps_u)
            if self.config.mutated_first_branch:
                parts[0] = torch.stack(reps_u).sum(0)
            user_rep = sum(p * self.weight_u[:, m] for m, p in enumerate(parts))
        assert isinstance(user_rep, torch.Tensor)
        return user_rep + self.user_graph @ user_rep, item_rep

    def new_item_representations(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cold start: items [n_new, d] from raw features ``{modality: [n_new, F_m]}``.

        A new item has no user-item edges, so both propagation terms vanish and its
        representation is the sum over modalities of its normalised branch rows
        ``normalize(mlp_1(leaky_relu(mlp(f_m))))``.
        """
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise MentorError(f"features: modality '{missing[0]}' is missing")
        parts = []
        for m in self.modalities:
            branch = self.branches[m]
            parts.append(branch.rows(branch.mlp(features[m]))[1])
        return torch.stack(parts).sum(0)

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """BPR (log base 2) + regularisation of the batch users' preferences and the weights."""
        users, items = self.representations()
        u = rows(users, batch.users)
        pos = (u * rows(items, batch.positives)).sum(1)
        neg = (u * rows(items, batch.negatives)).sum(1)
        prefs = sum(
            rows(self.branches[m].preference, batch.users).pow(2).mean() for m in self.modalities
        )
        reg = prefs + self.weight_u.pow(2).mean()
        return {
            "bpr": bpr_loss(pos, neg, base2=True),
            "reg": self.config.reg_weight * reg,  # type: ignore[dict-item]
        }

    def full_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [U, d] and items [I, d] (see :meth:`representations`)."""
        return self.representations()

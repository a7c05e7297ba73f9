"""Batched, vectorised full-ranking evaluation with MMRec's masking."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from mentor.eval.metrics import metrics_from_hits, rank_topk


@dataclass
class GroundTruth:
    """Held-out items per evaluated user.

    Attributes:
        users: int64 [U] evaluated users (those with held-out items and train history).
        items: CSR [U, n_items] of their held-out items.
        cold_users: users of the split dropped because they have no train interaction.
    """

    users: np.ndarray
    items: sp.csr_matrix
    cold_users: int

    @classmethod
    def from_rows(cls, rows: np.ndarray, train: np.ndarray, n_items: int) -> GroundTruth:
        """Group (user, item) rows [N, 2] by user, dropping users absent from ``train``."""
        users = np.unique(rows[:, 0])
        warm = np.isin(users, np.unique(train[:, 0]))
        kept = users[warm]
        keep_rows = rows[np.isin(rows[:, 0], kept)]
        local = np.searchsorted(kept, keep_rows[:, 0])
        items = sp.csr_matrix(
            (np.ones(len(keep_rows), dtype=np.float32), (local, keep_rows[:, 1])),
            shape=(len(kept), n_items),
        )
        return cls(users=kept, items=items, cold_users=int((~warm).sum()))


def user_item_matrix(rows: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary CSR [n_users, n_items] of (user, item) rows [N, 2]."""
    m = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows[:, 0], rows[:, 1])), shape=(n_users, n_items)
    )
    m.data[:] = 1.0
    return m


def full_ranking(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    users: np.ndarray,
    exclude: sp.csr_matrix,
    k: int,
    batch_users: int,
    device: torch.device,
) -> torch.Tensor:
    """Top-``k`` items of every user over all items, excluded items masked.

    Args:
        score_fn: maps int64 users [B] (on ``device``) to scores [B, n_items].
        users: int64 [U] users to rank for.
        exclude: CSR [n_users, n_items] of items never to recommend (the user's train items).
    Returns:
        int64 [U, k] on the CPU, best first.
    """
    out = []
    for start in range(0, len(users), batch_users):
        batch = users[start : start + batch_users]
        scores = score_fn(torch.from_numpy(batch).to(device)).float()
        mask = exclude[batch].tocoo()
        scores[
            torch.from_numpy(mask.row).to(device), torch.from_numpy(mask.col).to(device)
        ] = -torch.inf
        out.append(rank_topk(scores, k).cpu())
    return torch.cat(out) if out else torch.empty((0, k), dtype=torch.long)


def evaluate_rankings(topk: torch.Tensor, truth: GroundTruth, ks: list[int]) -> dict[str, float]:
    """Metrics of ranked lists int64 [U, >=max(ks)] against ``truth`` (rows aligned)."""
    n_items = truth.items.shape[1]
    coo = truth.items.tocoo()
    known = torch.from_numpy(np.sort(coo.row.astype(np.int64) * n_items + coo.col))
    keys = torch.arange(len(truth.users), dtype=torch.int64).unsqueeze(1) * n_items + topk
    if len(known):
        pos = torch.searchsorted(known, keys).clamp_max(len(known) - 1)
        hits = known[pos] == keys
    else:
        hits = torch.zeros_like(keys, dtype=torch.bool)
    n_pos = torch.from_numpy(np.diff(truth.items.indptr))
    return metrics_from_hits(hits, n_pos, ks)

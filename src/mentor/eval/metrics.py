"""Ranking metrics as pure functions, exactly as MMRec defines them.

For a user with ``n`` held-out items and a top-K list with hit indicators ``r_1..r_K``:

* Recall@K = sum(r) / n
* Precision@K = sum(r) / K
* Hit@K = 1 if sum(r) > 0
* NDCG@K = sum_i r_i / log2(i + 1)  /  sum_{i <= min(n, K)} 1 / log2(i + 1)
* MAP@K = sum_i P@i * r_i / min(n, K)

Each is averaged over the evaluated users.
"""

from __future__ import annotations

import torch


def _exact_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Top-``k`` by (score descending, index ascending) through exact int64 sort keys.

    Args:
        scores: float [R, n], a copy this function overwrites.
    Returns:
        int64 [R, k]. Besides ``scores`` it holds about 8 bytes per score (the keys).
    """
    n = scores.shape[1]
    keys = scores.float()
    keys += 0.0  # -0.0 -> +0.0
    bits = keys.view(torch.int32)
    flip = bits >> 31  # IEEE-754 order as integers: negative values flip their magnitude bits
    flip &= 0x7FFFFFFF
    bits ^= flip
    del flip
    ordered = bits.to(torch.int64)
    del keys, bits
    ordered <<= 32
    ordered |= torch.arange(n - 1, -1, -1, device=scores.device, dtype=torch.int64)
    top = torch.topk(ordered, k, dim=1, sorted=True).values
    return (n - 1) - (top & 0xFFFFFFFF)


def rank_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` best columns per row, best first; ties go to the lower index.

    The order is exact and does not depend on ``k``: the top 20 is always the first 20 of the
    top 50, so an exported list reproduces the evaluated metrics. Rows whose k-th score is tied
    with items outside the list are re-ranked with exact sort keys, a third of the rows at a
    time, so that the re-ranking never holds more than ``scores`` itself. Each row's list
    depends on that row alone.

    Args:
        scores: float [B, n_items] (``-inf`` for masked items).
    Returns:
        int64 [B, k].
    """
    n = scores.shape[1]
    k = min(k, n)
    values, index = torch.topk(scores, min(k + 1, n), dim=1)
    if k < n:
        # a tie across the cut exists exactly when the (k+1)-th best equals the k-th
        boundary = values[:, k] == values[:, k - 1]
        values, index = values[:, :k], index[:, :k]
    else:
        boundary = torch.zeros(len(scores), dtype=torch.bool, device=scores.device)
    order = torch.argsort(index, dim=1)
    index, values = index.gather(1, order), values.gather(1, order)
    order = torch.argsort(values, dim=1, descending=True, stable=True)
    index = index.gather(1, order)
    tied = boundary.nonzero().squeeze(1)
    step = max(1, len(scores) // 3)  # 12 bytes per score (copy and keys) for a third of the rows
    for start in range(0, len(tied), step):
        rows = tied[start : start + step]
        index[rows] = _exact_topk(scores[rows], k)
    return index


def metrics_from_hits(hits: torch.Tensor, n_pos: torch.Tensor, ks: list[int]) -> dict[str, float]:
    """Average Recall/NDCG/Precision/MAP/Hit at every K.

    Args:
        hits: bool or float [U, maxK]; ``hits[u, i]`` says whether the item ranked ``i + 1`` for
            user ``u`` is held out for ``u``.
        n_pos: [U] number of held-out items per user (> 0).
        ks: cut-offs, each <= maxK.
    Returns:
        ``{"recall@20": ..., "ndcg@20": ..., ...}`` (float64 means).
    """
    hits = hits.double()
    n_pos = n_pos.double()
    max_k = hits.shape[1]
    ranks = torch.arange(1, max_k + 1, dtype=torch.float64, device=hits.device)
    discount = 1.0 / torch.log2(ranks + 1.0)
    cum_hits = hits.cumsum(dim=1)
    dcg = (hits * discount).cumsum(dim=1)
    idcg_table = discount.cumsum(dim=0)
    ap_terms = (cum_hits / ranks * hits).cumsum(dim=1)
    out: dict[str, float] = {}
    for k in sorted(ks):
        if k > max_k:
            raise ValueError(f"k={k} exceeds the ranked list length {max_k}")
        got = cum_hits[:, k - 1]
        ideal = torch.clamp(n_pos, max=k).long()
        out[f"recall@{k}"] = (got / n_pos).mean().item()
        out[f"ndcg@{k}"] = (dcg[:, k - 1] / idcg_table[ideal - 1]).mean().item()
        out[f"precision@{k}"] = (got / k).mean().item()
        out[f"map@{k}"] = (ap_terms[:, k - 1] / ideal.double()).mean().item()
        out[f"hit@{k}"] = (got > 0).double().mean().item()
    return out

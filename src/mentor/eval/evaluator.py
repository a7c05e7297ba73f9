"""Batched, vectorised full-ranking evaluation with MMRec's masking, in memory-bounded blocks.

Users are ranked in blocks sized from a budget of bytes (:func:`block_users`), so ranking ``U``
users over ``I`` items never holds ``U x I`` scores; every user's list is the one a single pass
would give, whatever the block size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from mentor.config import EvalConfig
from mentor.errors import MentorError
from mentor.eval.metrics import metrics_from_hits, rank_topk

if TYPE_CHECKING:
    from mentor.data.dataset import Dataset
    from mentor.models.base import Recommender

#: Bytes a block holds per (user, item) pair: the float32 score, and at most as much again while
#: :func:`~mentor.eval.metrics.rank_topk` re-ranks rows tied across the cut with exact sort keys.
BYTES_PER_SCORE = 8
#: Fewest users per score call. BLAS multiplies one or a few rows with other kernels than a larger
#: block (another summation order, so other last bits), which would make a user's scores, and so
#: the metrics, depend on the block the user falls in; shorter blocks are padded to this many.
MIN_BLOCK_ROWS = 16


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


def block_users(n_items: int, score_budget: int, batch_users: int) -> int:
    """Users ranked at once: as many as ``score_budget`` bytes hold at :data:`BYTES_PER_SCORE`
    bytes per item, at most ``batch_users``, and at least :data:`MIN_BLOCK_ROWS` (so a budget
    below ``MIN_BLOCK_ROWS * n_items * BYTES_PER_SCORE`` bytes is exceeded up to that)."""
    fit = score_budget // (BYTES_PER_SCORE * max(n_items, 1))
    return min(batch_users, max(MIN_BLOCK_ROWS, fit))


def _block_scores(
    score_fn: Callable[[torch.Tensor], torch.Tensor], block: np.ndarray, device: torch.device
) -> torch.Tensor:
    """float32 scores [len(block), n_items] of the users ``block`` int64 [B]; a block shorter than
    :data:`MIN_BLOCK_ROWS` is scored padded with its last user, so that BLAS computes every
    user's row with the same kernel as in a larger block."""
    padded = block
    if len(block) < MIN_BLOCK_ROWS:
        padded = np.concatenate([block, np.repeat(block[-1:], MIN_BLOCK_ROWS - len(block))])
    return score_fn(torch.from_numpy(padded).to(device)).float()[: len(block)]


def _rank_block(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    block: np.ndarray,
    exclude: sp.csr_matrix,
    k: int,
    device: torch.device,
) -> torch.Tensor:
    """Top-``k`` int64 [len(block), k] (on ``device``) of the users ``block`` int64 [B], their
    ``exclude`` items masked; the block's scores are freed on return."""
    scores = _block_scores(score_fn, block, device)
    mask = exclude[block].tocoo()
    scores[
        torch.from_numpy(mask.row).to(device), torch.from_numpy(mask.col).to(device)
    ] = -torch.inf
    return rank_topk(scores, k)


def full_ranking(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    users: np.ndarray,
    exclude: sp.csr_matrix,
    k: int,
    batch_users: int,
    device: torch.device,
    score_budget: int,
) -> torch.Tensor:
    """Top-``k`` items of every user over all items, excluded items masked.

    Users are ranked in blocks of :func:`block_users` rows: the scores [rows, n_items], their
    mask (built from the block's rows of ``exclude``) and top-k never hold more than
    ``score_budget`` bytes (or :data:`MIN_BLOCK_ROWS` rows) besides torch's per-thread top-k
    scratch. Every row is ranked on its own, so the lists do not depend on the block size.

    Args:
        score_fn: maps int64 users [B] (on ``device``) to scores [B, n_items].
        users: int64 [U] users to rank for.
        exclude: CSR [n_users, n_items] of items never to recommend (the user's train items).
        k: list length.
        batch_users: most users per block.
        device: where scores are computed.
        score_budget: bytes of scores (and their ranking's scratch) one block may hold.
    Returns:
        int64 [U, k] on the CPU, best first.
    """
    rows = block_users(exclude.shape[1], score_budget, batch_users)
    out = []
    for start in range(0, len(users), rows):
        out.append(_rank_block(score_fn, users[start : start + rows], exclude, k, device).cpu())
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


class Evaluator:
    """Ground truth and masks of one data set; ranks a model's scores and computes metrics.

    Users are ranked in blocks of at most ``batch_users`` whose scores fit in ``score_budget_mb``
    MiB (:func:`mentor.eval.evaluator.block_users`); the lists do not depend on either.
    """

    def __init__(
        self,
        dataset: Dataset,
        ks: list[int],
        batch_users: int,
        mask_valid: bool,
        score_budget_mb: float = EvalConfig.score_budget_mb,
    ):
        if max(ks) > dataset.n_items:
            raise MentorError(
                f"eval.topk asks for @{max(ks)} but {dataset.path} has only {dataset.n_items} "
                f"items; set e.g. --set 'eval.topk=[5,10]'"
            )
        self.dataset = dataset
        self.ks = sorted(ks)
        if batch_users < 1:
            raise MentorError(f"eval.batch_users must be at least 1, got {batch_users}")
        self.batch_users = batch_users
        if not score_budget_mb > 0:
            raise MentorError(f"eval.score_budget_mb must be positive, got {score_budget_mb}")
        self.score_budget = int(score_budget_mb * 2**20)
        train = dataset.train
        self.truth = {
            split: GroundTruth.from_rows(dataset.splits[split], train, dataset.n_items)
            for split in ("valid", "test")
        }
        for split, truth in self.truth.items():
            if len(truth.users) == 0:
                raise MentorError(
                    f"{dataset.path}: no {split} user has a train interaction, so {split} "
                    "cannot be evaluated; every evaluated user needs train rows"
                )
        self.exclude = {"valid": user_item_matrix(train, dataset.n_users, dataset.n_items)}
        test_exclude = train
        if mask_valid:
            test_exclude = np.concatenate([train, dataset.splits["valid"]])
        self.exclude["test"] = user_item_matrix(test_exclude, dataset.n_users, dataset.n_items)

    def rank(
        self, model: Recommender, users: np.ndarray, k: int, device: torch.device, split: str
    ) -> torch.Tensor:
        """Top-``k`` items [len(users), k] of ``model`` with ``split``'s mask."""
        model.eval()
        with torch.no_grad():
            model.prepare_scoring()
            return full_ranking(
                model.score,
                users,
                self.exclude[split],
                k,
                self.batch_users,
                device,
                self.score_budget,
            )

    def shard_topk(
        self, model: Recommender, split: str, device: torch.device, rank: int, world: int
    ) -> torch.Tensor:
        """Top-K [n_r, max(ks)] of shard ``rank`` of ``world``: a contiguous block of ``split``'s
        evaluated users (the blocks of all ranks, concatenated in rank order, are the lists of
        a single pass, bit for bit)."""
        users = self.truth[split].users
        bounds = np.linspace(0, len(users), world + 1).round().astype(np.int64)
        mine = users[bounds[rank] : bounds[rank + 1]]
        return self.rank(model, mine, max(self.ks), device, split).cpu()

    def evaluate(
        self,
        model: Recommender,
        split: str,
        device: torch.device,
        shard: tuple[int, int] = (0, 1),
        gather: Callable[[torch.Tensor], list[torch.Tensor]] | None = None,
    ) -> dict[str, float]:
        """All metrics of ``model`` on ``split`` ("valid" or "test").

        With ``shard=(rank, world)`` and ``gather`` (every rank's tensor, in rank order, e.g.
        ``torch.distributed.all_gather_object``), each of ``world`` processes ranks its block of
        users and the merged lists give every process the metrics of a single pass.
        """
        rank, world = shard
        topk = self.shard_topk(model, split, device, rank, world)
        if world > 1:
            assert gather is not None, "a sharded evaluation needs a gather"
            topk = torch.cat(gather(topk))
        return evaluate_rankings(topk, self.truth[split], self.ks)

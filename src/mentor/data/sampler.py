"""Vectorised uniform negative sampling for BPR training."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from mentor.errors import MentorError


@dataclass
class Batch:
    """One training batch of (user, positive item, negative item) triples, int64 [B] each.

    Under data-parallel training each process gets a slice of the global batch: ``shard`` is
    (rank, world size), ``fraction`` the slice's share of the global batch's rows and ``whole``
    the global batch. Batch-mean terms are computed on the slice; a term that is not a mean
    over rows (MMRec's EmbLoss: norms of the whole batch) is computed on ``whole`` on every
    rank; a term over all nodes is split by ``shard`` (see
    :meth:`mentor.models.base.Recommender.summed_terms`).
    """

    users: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor
    shard: tuple[int, int] = (0, 1)
    fraction: float = 1.0
    whole: Batch | None = None

    def to(self, device: torch.device) -> Batch:
        """Move all three index tensors to ``device``."""
        return Batch(
            self.users.to(device),
            self.positives.to(device),
            self.negatives.to(device),
            self.shard,
            self.fraction,
            None if self.whole is None else self.whole.to(device),
        )

    def all_rows(self) -> Batch:
        """The global batch this one is a slice of (itself when it is not a slice)."""
        return self if self.whole is None else self.whole

    def replicate_for(self, rank: int, world: int) -> Batch:
        """The whole batch for rank ``rank``, with ``fraction`` 1 / ``world``: every rank
        computes the same terms (for losses that couple the batch's rows)."""
        return Batch(self.users, self.positives, self.negatives, (rank, world), 1.0 / world)

    def slice_for(self, rank: int, world: int) -> Batch:
        """Rank ``rank``'s contiguous share of the rows (``n * rank // world`` on); a rank left
        without rows gets the first row with ``fraction`` 0, so its batch-mean terms count
        nothing while it still computes its part of the sharded terms."""
        n = len(self.users)
        start, stop = n * rank // world, n * (rank + 1) // world
        fraction = (stop - start) / n
        if start == stop:
            start, stop = 0, 1
        negatives = self.negatives[start:stop] if len(self.negatives) else self.negatives
        return Batch(
            self.users[start:stop],
            self.positives[start:stop],
            negatives,
            (rank, world),
            fraction,
            self,
        )


class BPRSampler:
    """Shuffles train interactions each epoch and draws one negative per positive.

    As in MMRec, a negative is drawn uniformly from the items that occur in the train split and
    redrawn while it is one of the user's train items, so it is never a train positive of that user.
    With ``negatives=False`` (models that use none) no negative is drawn and every batch carries an
    empty ``negatives`` tensor; the shuffling stream is the same either way.
    """

    def __init__(
        self, train: np.ndarray, n_items: int, batch_size: int, negatives: bool = True
    ) -> None:
        """Args: train int64 [N, 2] (user, item) rows; n_items; batch_size; whether to draw
        negatives."""
        self.users = torch.from_numpy(np.ascontiguousarray(train[:, 0]))
        self.items = torch.from_numpy(np.ascontiguousarray(train[:, 1]))
        self.n_items = n_items
        self.batch_size = batch_size
        self.draw_negatives = negatives
        self.known = torch.unique(self.users * n_items + self.items)
        self.candidates = torch.unique(self.items)
        per_user = np.bincount(np.unique(train, axis=0)[:, 0])
        if negatives and (per_user >= len(self.candidates)).any():
            user = int(np.flatnonzero(per_user >= len(self.candidates))[0])
            raise MentorError(f"user {user} interacted with every item: no negative can be drawn")

    def __len__(self) -> int:
        return (len(self.users) + self.batch_size - 1) // self.batch_size

    def negatives(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draw one negative per user: int64 [B], none of them a train item of that user."""
        n = len(self.candidates)
        neg = self.candidates[torch.randint(0, n, users.shape, generator=generator)]
        todo = torch.arange(len(users))
        while len(todo):
            keys = users[todo] * self.n_items + neg[todo]
            pos = torch.searchsorted(self.known, keys).clamp_max(len(self.known) - 1)
            todo = todo[self.known[pos] == keys]
            neg[todo] = self.candidates[torch.randint(0, n, todo.shape, generator=generator)]
        return neg

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]:
        """Yield the batches of one epoch in a fresh random order."""
        order = torch.randperm(len(self.users), generator=generator)
        users, items = self.users[order], self.items[order]
        negatives = self.negatives(users, generator) if self.draw_negatives else None
        none = torch.empty(0, dtype=torch.int64)
        for start in range(0, len(order), self.batch_size):
            stop = start + self.batch_size
            batch_negatives = none if negatives is None else negatives[start:stop]
            yield Batch(users[start:stop], items[start:stop], batch_negatives)

"""Data-parallel training on torch.distributed (processes started by ``torchrun``).

Every rank holds the whole model and the whole graph: the models of this package propagate
over the full user-item graph in every forward pass, so a rank cannot compute its part of the
loss from a slice of the graph. What is split is the work that grows with the batch: each
global batch (the same on every rank, from one shared, seeded permutation) is cut into
contiguous row slices, one per rank, and terms over all nodes that a model shards (MENTOR's
all-node InfoNCE) are cut by anchor rows. Each rank weights its batch-mean terms by its slice's
share of the rows, so the ranks' losses, and their gradients, add up to the loss and gradients
of one process; the gradients are then summed with one all-reduce and every rank takes the same
optimiser step. ``DistributedDataParallel`` is not used: it averages gradients of identical
per-rank losses and hooks ``forward``, which fits neither replicated full-graph terms nor
sharded ones; an explicit all-reduce of the correctly weighted gradients is exact for both.

Rank 0 alone writes the run folder. Every rank evaluates the same model on the same data, so
they reach the same early-stopping decision; rank 0's is broadcast all the same, so no rank can
wait on a collective the others have left.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from mentor.errors import MentorError

BACKEND_ENV = "MENTOR_DIST_BACKEND"
TIMEOUT_ENV = "MENTOR_DIST_TIMEOUT"


@dataclass(frozen=True)
class Dist:
    """This process's place in a data-parallel group.

    Attributes:
        rank: this process, 0 .. world - 1; world: the number of processes.
        backend: ``gloo`` or ``nccl``.
    """

    rank: int
    world: int
    backend: str

    @property
    def is_main(self) -> bool:
        """Whether this rank writes the run folder (rank 0)."""
        return self.rank == 0

    def sum_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """All-reduce (sum) the gradients of ``params`` in one flat buffer; a parameter
        without a gradient on this rank contributes zeros."""
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self._collective(torch.distributed.all_reduce, flat)
        offset = 0
        for p in params:
            size = p.numel()
            p.grad = flat[offset : offset + size].view_as(p).clone()
            offset += size

    def sum_values(self, values: Mapping[str, float], device: torch.device) -> dict[str, float]:
        """The sums over ranks of named numbers (the loss terms of one batch, for the log)."""
        names = list(values)  # every rank builds its terms in the same order
        tensor = torch.tensor([values[n] for n in names], dtype=torch.float64, device=device)
        self._collective(torch.distributed.all_reduce, tensor)
        return dict(zip(names, tensor.tolist(), strict=True))

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order, on every rank."""
        out: list[Any] = [None] * self.world
        self._collective(torch.distributed.all_gather_object, out, value)
        return out

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object) on every rank."""
        box = [value]
        self._collective(torch.distributed.broadcast_object_list, box, src=0)
        return box[0]

    def check_same(self, what: Mapping[str, Any]) -> None:
        """Stop, on every rank, with one line naming the first difference when the ranks were
        started with other settings or data (``what``: name -> JSON-able value)."""
        mine = {k: json.dumps(v, sort_keys=True, default=str) for k, v in what.items()}
        gathered: list[Any] = [None] * self.world
        self._collective(torch.distributed.all_gather_object, gathered, mine)
        for rank, theirs in enumerate(gathered):
            for key in sorted(set(mine) | set(theirs)):
                if mine.get(key) != theirs.get(key):
                    raise MentorError(
                        f"rank {self.rank} and rank {rank} were started with different {key} "
                        f"({_short(mine.get(key))} vs {_short(theirs.get(key))}); start every "
                        "process with the same command and data"
                    )

    def _collective(self, op: Any, *args: Any, **kwargs: Any) -> None:
        try:
            op(*args, **kwargs)
        except (RuntimeError, ValueError) as exc:  # a peer died, or timed out
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MentorError(
                f"rank {self.rank} of {self.world} lost its peers ({first[:160]}); the last "
                "finished epoch is in the run's checkpoint: continue with --resume"
            ) from None


def _short(text: str | None) -> str:
    if text is None:
        return "nothing"
    return text if len(text) <= 60 else hashlib.sha256(text.encode()).hexdigest()[:12]


def from_env(device: torch.device) -> Dist | None:
    """Join the process group that ``torchrun`` (or the ``RANK``/``WORLD_SIZE``/
    ``MASTER_ADDR``/``MASTER_PORT`` variables) describes; None for a single process.

    The backend is ``nccl`` on CUDA and ``gloo`` otherwise, or ``MENTOR_DIST_BACKEND``;
    collectives time out after ``MENTOR_DIST_TIMEOUT`` seconds (default 120).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if not torch.distributed.is_available():
        raise MentorError("this torch build has no torch.distributed; train with one process")
    backend = os.environ.get(BACKEND_ENV) or ("nccl" if device.type == "cuda" else "gloo")
    if backend not in ("gloo", "nccl", "mpi"):
        raise MentorError(f"{BACKEND_ENV}={backend!r}: use gloo, nccl or mpi")
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "120")))
    if not torch.distributed.is_initialized():
        try:
            torch.distributed.init_process_group(backend=backend, timeout=timeout)
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MentorError(
                f"cannot join the process group ({first[:160]}); start with torchrun"
            ) from None
    return Dist(torch.distributed.get_rank(), torch.distributed.get_world_size(), backend)


def rank_device(device: torch.device) -> torch.device:
    """The CUDA device of this rank (``LOCAL_RANK``) when ``device`` is CUDA, else ``device``."""
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def leave() -> None:
    """Leave the process group, if this process joined one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

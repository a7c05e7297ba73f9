"""The model contract every recommender implements, and the context it is built from."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.graph import SparseGraph


def adam(
    params: list[nn.Parameter],
    kind: type[torch.optim.Adam] | type[torch.optim.AdamW] = torch.optim.Adam,
    **settings: Any,
) -> torch.optim.Optimizer:
    """``kind`` (Adam or AdamW) over ``params`` with ``settings``, fused where PyTorch has a fused
    kernel for the parameters' device (CPU and CUDA).

    The same update as the default implementation up to float rounding; on the CPU it is several
    times faster for large tables (FREEDOM's trainable 4096-d image features: 5x per step)."""
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
    return kind(params, fused=fused or None, **settings)


@dataclass
class ModelContext:
    """Everything a model may read: sizes, the train graph and item features, on one device.

    Models never read files or pick a device; derived graphs that are costly to build come from
    ``semantic_graph``, which the caller caches.

    Attributes:
        n_users, n_items: id space sizes.
        train: int64 [N, 2] train (user, item) rows (numpy, CPU).
        graph: symmetric-normalised user-item graph [(U+I), (U+I)], users first.
        interactions: its user-item block ``D_u^-1/2 R D_i^-1/2`` [U, I].
        features: ``{modality: float32 [n_items, dim]}`` on the model's device.
        semantic_graph: ``(weights {modality: w}, k) -> SparseGraph`` item-item kNN graph
            ``sum_m w_m * sym_norm(kNN_k(features_m))`` [n_items, n_items].
    """

    n_users: int
    n_items: int
    train: np.ndarray
    graph: SparseGraph
    interactions: SparseGraph
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    semantic_graph: Callable[[dict[str, float], int], SparseGraph] | None = None


FREE_ITEM_IDS = "learns a free ID embedding for every item next to its features"
"""Why feature models with a trained per-item ID embedding cannot embed new items."""


class Recommender(nn.Module):
    """Base class of all models.

    A model is built as ``Model(config, ctx, generator)``; ``generator`` (a CPU
    :class:`torch.Generator`) is the only source of randomness for initialisation. The training
    loop moves the model to its device with ``.to()``.
    """

    name: ClassVar[str] = ""
    trainable: ClassVar[bool] = True
    uses_negatives: ClassVar[bool] = True
    """False: the loop draws no negatives (``batch.negatives`` is an empty int64 tensor)."""
    cold_start_unavailable: ClassVar[str] = "embeds items from ids only"
    """Why :meth:`new_item_representations` is unavailable (for models that do not implement it)."""
    data_parallel: ClassVar[str] = "split"
    """How data-parallel ranks share a batch: ``split`` (each takes a slice of the rows, see
    :meth:`summed_terms`) or ``replicate`` (each computes the whole batch, weighted 1/N: for
    losses that couple a batch's rows, or that update model state from the batch).
    """
    fold_in: ClassVar[str] = "graph"
    """How a served visitor's item history becomes a user vector, the way this model builds
    users (a key of ``mentor.serve.recommender.FOLD_IN_RULES``): ``graph`` for models whose
    users aggregate their items over the user-item graph, ``mean`` for free user vectors,
    ``popularity`` for the popularity ranker."""

    def __init__(self, config: Any, ctx: ModelContext, generator: torch.Generator) -> None:
        super().__init__()
        self.config = config
        self.n_users = ctx.n_users
        self.n_items = ctx.n_items

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """``.to()`` / ``.cuda()`` also move the graphs and feature tables the model keeps
        (plain attributes: they are inputs, not state)."""
        device = fn(torch.empty(0)).device
        for key, value in list(vars(self).items()):
            if key.startswith("_"):  # nn.Module's own registries (_parameters, _buffers, ...)
                continue
            if isinstance(value, SparseGraph):
                setattr(self, key, value.to(device))
            elif (
                isinstance(value, dict)
                and value
                and all(isinstance(v, torch.Tensor) for v in value.values())
            ):
                setattr(self, key, {k: v.to(device) for k, v in value.items()})
        return super()._apply(fn, recurse)

    def summed_terms(self) -> frozenset[str]:
        """Loss terms whose per-rank values add up to the term under data-parallel training:
        sums over the batch's rows, and parts of an all-node term split by ``batch.shard``.
        Every other term is a mean over the batch's rows, or the same on every rank, and is
        weighted by ``batch.fraction``."""
        return frozenset()

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Loss terms of one batch (scalars); the loop minimises their sum.

        Args:
            batch: users, positives, negatives, int64 [B] each, on the model's device.
            generator: a generator on the model's device for stochastic parts (noise, dropout).
        """
        raise NotImplementedError

    def prepare_scoring(self) -> None:
        """Compute whatever full-ranking scores need (called in eval mode, without grad)."""

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of all items for ``users`` int64 [B]: float [B, n_items]."""
        raise NotImplementedError

    def serving_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The tables :meth:`score` multiplies: users float32 [n_users, d], items [n_items, d].

        After :meth:`prepare_scoring` in eval mode, ``score(u) == users[u] @ items.T`` (up to
        float error); a bundle stores these two tables and serves from them alone.
        """
        raise NotImplementedError(f"{type(self).__name__} does not give serving representations")

    def new_item_representations(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cold start: representations [n_new, d] of items without interactions, comparable with
        the items of :meth:`serving_representations`, from raw features ``{modality:
        [n_new, dim]}``. Models that embed items from ids alone cannot do this and raise."""
        raise MentorError(
            f"model {self.name or type(self).__name__} {self.cold_start_unavailable}; "
            "it cannot add new items"
        )

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """Per-epoch work before training epoch ``epoch`` (1-based): edge dropout, resampling.

        Args:
            epoch: the epoch about to be trained, 1-based.
            generator: the loop's model generator on the model's device; its state is saved in
                every checkpoint, so a resumed run draws exactly what an uninterrupted one would.
        """

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by a second optimiser on :meth:`auxiliary_loss` (default none).

        They are left out of the main optimiser (e.g. MMSSL's discriminator).
        """
        return []

    def auxiliary_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """The second optimiser over ``params`` (default Adam, lr 1e-3)."""
        return adam(params, lr=1e-3)

    def auxiliary_loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Loss terms (scalars) of the auxiliary optimiser for one batch.

        Called before :meth:`loss` on every batch when :meth:`auxiliary_parameters` is not empty;
        the loop steps the auxiliary optimiser on their sum. Same arguments as :meth:`loss`.
        """
        raise NotImplementedError(f"{type(self).__name__} has auxiliary parameters but no loss")


class DotProductRecommender(Recommender):
    """A model that scores by dot products of user and item representations computed over the
    whole graph at once (LightGCN and most graph models).

    Subclasses implement :meth:`full_representations`; scoring computes it once per evaluation
    pass (:meth:`prepare_scoring`), serves from the cache, and drops it when the mode changes.
    """

    def __init__(self, config: Any, ctx: ModelContext, generator: torch.Generator) -> None:
        super().__init__(config, ctx, generator)
        self._reps: tuple[torch.Tensor, torch.Tensor] | None = None

    def full_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [n_users, d] and items [n_items, d] as scored at evaluation."""
        raise NotImplementedError

    def prepare_scoring(self) -> None:
        """Compute the representations once for a whole evaluation pass."""
        self._reps = self.full_representations()

    def serving_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached users [U, d] and items [I, d]; scores are their dot products."""
        if self._reps is None:
            self.prepare_scoring()
        assert self._reps is not None
        return self._reps

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """[B, n_items] dot products of the representations."""
        user_reps, item_reps = self.serving_representations()
        return user_reps[users] @ item_reps.T

    def train(self, mode: bool = True) -> DotProductRecommender:
        """Switching mode drops the cached representations."""
        self._reps = None
        return super().train(mode)


def feature_tables(
    features: dict[str, torch.Tensor], trainable: bool
) -> dict[str, torch.Tensor] | nn.ParameterDict:
    """The item feature tables a model reads, ``{modality: float32 [I, F_m]}``.

    ``trainable`` (MMRec's ``nn.Embedding.from_pretrained(freeze=False)``, which lets the loss
    train the raw features themselves) gives copies registered as parameters; otherwise the given
    tensors, fixed (moved with the model, never trained).
    """
    if not trainable:
        return dict(features)
    return nn.ParameterDict(
        {m: nn.Parameter(f.detach().clone().float()) for m, f in features.items()}
    )


def xavier_uniform(shape: tuple[int, int], generator: torch.Generator) -> nn.Parameter:
    """A new [fan_out, fan_in] parameter with Xavier-uniform values drawn from ``generator``."""
    weight = torch.empty(shape)
    nn.init.xavier_uniform_(weight, generator=generator)
    return nn.Parameter(weight)


def xavier_normal(shape: tuple[int, ...], generator: torch.Generator) -> nn.Parameter:
    """A new parameter of ``shape`` with Xavier-normal values (gain 1) drawn from ``generator``."""
    weight = torch.empty(shape)
    nn.init.xavier_normal_(weight, generator=generator)
    return nn.Parameter(weight)


def linear(
    in_features: int,
    out_features: int,
    generator: torch.Generator,
    weight_init: Literal["default", "xavier_uniform", "xavier_normal"] = "default",
    bias: Literal["default", "zero", "none"] = "default",
) -> nn.Linear:
    """An ``nn.Linear`` whose initial values come from ``generator``.

    ``"default"`` is PyTorch's own initialisation (weight and bias uniform in +-1/sqrt(in)). The
    Xavier variants replace only the weight and keep PyTorch's default bias, as MMRec's models do
    when they call ``nn.init.xavier_*_`` on ``layer.weight``; ``weight_init="xavier_normal"`` with
    ``bias="zero"`` is MMRec's xavier_normal_initialization.
    """
    layer = nn.Linear(in_features, out_features, bias=bias != "none")
    bound = 1.0 / math.sqrt(in_features)
    with torch.no_grad():
        if weight_init == "xavier_normal":
            nn.init.xavier_normal_(layer.weight, generator=generator)
        elif weight_init == "xavier_uniform":
            nn.init.xavier_uniform_(layer.weight, generator=generator)
        else:
            layer.weight.uniform_(-bound, bound, generator=generator)
        if layer.bias is not None:
            if bias == "zero":
                layer.bias.zero_()
            else:
                layer.bias.uniform_(-bound, bound, generator=generator)
    return layer

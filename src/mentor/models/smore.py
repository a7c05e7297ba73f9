"""SMORE (Ong and Khong, "Spectrum-based Modality Representation Fusion Graph Convolutional
Network for Multimodal Recommendation", WSDM 2025, arXiv 2412.14978).

Checked term by term against the authors' ``src/models/smore.py`` and
``src/configs/model/SMORE.yaml`` (github kennethorq/SMORE, commit 0148d92; the same files are in
MMRec). Defaults are the first value of each grid of that YAML, the search grid is the YAML's
grid. With U users, I items, d = ``embedding_size``, F_m the width of modality m's features, B
batch rows:

- item-item graphs (fixed, from the raw features at construction): per modality the cosine top-k
  of every item (itself included; k = ``image_knn_k`` or ``text_knn_k``) *weighted* by the
  similarities, ``D^-1/2 A D^-1/2`` with D the row sums: S_m [I, I]. The fusion graph S_f is
  their element-wise maximum over the union of their edges (not renormalised).
- spectrum fusion: ``x_m = trs_m(f_m)`` [I, d] (Linear F_m -> d); ``X_m = rfft(x_m)`` along the
  embedding dimension (orthonormal) [I, d/2 + 1]; uni-modal filters ``irfft(X_m * w_m)`` and the
  fusion ``irfft(w_f * prod_m X_m)`` [I, d], with learned complex filters ``w`` [d/2 + 1].
- item views: ``e_item * sigmoid(gate_m(conv_m))`` and ``e_item * sigmoid(gate_f(fusion))``,
  each propagated ``n_layers`` times over its item graph (S_m or S_f); users of a view are
  ``G @ items`` with G the symmetric-normalised user-item block [U, I].
- behaviour view ("content"): LightGCN layer mean of ``[user table; item table]`` over the
  symmetric-normalised user-item graph, ``n_ui_layers`` layers.
- preference module, row-wise over users and items: ``a_m = softmax(query_m(fusion view))`` over
  the d dimensions (``query_m``: Linear, tanh, Linear without bias); ``p_m =
  dropout(sigmoid(prefer_m(content)))`` and ``p_f`` likewise (rate ``dropout_rate``, training
  only); side = mean over [``p_m * a_m * view_m`` for each m, ``p_f * fusion view``];
  output = content + side: users [U, d], items [I, d]; scores are dot products.
- loss: BPR on the output rows; ``reg_weight * (||u||^2 + ||p||^2 + ||n||^2) / (2 B)`` on the
  same rows; ``cl_loss`` times in-batch InfoNCE (temperature ``temperature``) between the side
  and the content rows of the batch's positive items, plus the same for the batch's users.

Modalities: role order ``image`` first, ``text`` last, others between
(:func:`~mentor.models.blocks.ordered_modalities`; on ml-100k-mm ``genre`` takes the image role).
The last modality (or a sole modality named ``text``) uses ``text_knn_k``, every other one
``image_knn_k``; the fusion spectrum is the product of all modalities' spectra (of the two in
the published code).

Switches and departures:

- ``train_features`` (default true, as the code: its feature tables are
  ``nn.Embedding.from_pretrained(..., freeze=False)``, so the raw features are trained through
  ``trs_m``; the paper treats them as fixed inputs): false keeps them fixed. The item graphs are
  built once from the original features either way.
- the L2 term is divided by the batch's length; the code divides by the configured batch size,
  which differs only on an epoch's last, shorter batch.
- ``temperature`` is read: the code has the setting but uses a literal 0.2 (its default).
  ``lambda_coeff`` (in the YAML, never read by the code) is left out.
- an item whose feature row is all zeros has no cosine; here it is its own sole neighbour (see
  :func:`~mentor.graph.knn_indices`), where the code's graph gets NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.graph import SparseGraph
from mentor.losses import bpr_loss, info_nce, rows
from mentor.models.base import (
    FREE_ITEM_IDS,
    DotProductRecommender,
    ModelContext,
    feature_tables,
    linear,
    xavier_uniform,
)
from mentor.models.blocks import bipartite_layer_mean, dropout, ordered_modalities
from mentor.models.lattice import KnnEdges, sym_normalise, weighted_knn


@dataclass
class SMOREConfig:
    """SMORE hyper-parameters (the authors' names; defaults: the first value of each grid)."""

    embedding_size: int = 64
    n_ui_layers: int = 3
    n_layers: int = 1
    reg_weight: float = 1e-5
    cl_loss: float = 0.01
    temperature: float = 0.2
    image_knn_k: int = 10
    text_knn_k: int = 10
    dropout_rate: float = 0.0
    train_features: bool = True

    def validate(self, where: str) -> None:
        """Reject settings that cannot work."""
        for name in ("embedding_size", "image_knn_k", "text_knn_k"):
            if getattr(self, name) < 1:
                raise MentorError(f"{where}.{name} must be at least 1")
        if self.n_ui_layers < 0 or self.n_layers < 0:
            raise MentorError(f"{where}.n_ui_layers and n_layers must be >= 0")
        if not 0 <= self.dropout_rate < 1:
            raise MentorError(f"{where}.dropout_rate must be in [0, 1)")
        if self.temperature <= 0:
            raise MentorError(f"{where}.temperature must be positive")


def knn_sizes(modalities: list[str], image_k: int, text_k: int) -> dict[str, int]:
    """k of each modality's item graph: ``text_k`` for the text role (the last of several, or a
    sole modality named ``text``), ``image_k`` for the others."""
    ordered = ordered_modalities(modalities)
    text = ordered[-1] if len(ordered) > 1 or ordered[0] == "text" else None
    return {m: text_k if m == text else image_k for m in ordered}


def max_pool(graphs: list[KnnEdges], n: int) -> KnnEdges:
    """Element-wise maximum of sparse [n, n] graphs over the union of their edges (an edge
    missing from a graph does not take part; repeated edges within one graph are summed
    first, as entries of one matrix)."""
    keys, values = [], []
    for g in graphs:
        key, inverse = torch.unique(g.rows * n + g.cols, return_inverse=True)
        keys.append(key)
        values.append(g.values.new_zeros(len(key)).index_add(0, inverse, g.values))
    union, inverse = torch.unique(torch.cat(keys), return_inverse=True)
    best = torch.cat(values).new_empty(len(union))
    best = best.scatter_reduce(0, inverse, torch.cat(values), "amax", include_self=False)
    return KnnEdges(union // n, union % n, best)


class SMORE(DotProductRecommender):
    """Spectrum-filtered modality fusion, item-item and user-item views, preference gating."""

    name = "smore"
    cold_start_unavailable = FREE_ITEM_IDS
    data_parallel = "replicate"  # its InfoNCE contrasts the rows of a batch with each other

    def __init__(self, config: SMOREConfig, ctx: ModelContext, generator: torch.Generator) -> None:
        super().__init__(config, ctx, generator)
        if not ctx.features:
            raise MentorError("SMORE needs at least one item feature modality")
        self.modalities = ordered_modalities(list(ctx.features))
        d, n = config.embedding_size, ctx.n_items
        self.graph = ctx.interactions
        ks = knn_sizes(self.modalities, config.image_knn_k, config.text_knn_k)
        edges = {
            m: sym_normalise(weighted_knn(ctx.features[m].detach().float(), ks[m]), n)
            for m in self.modalities
        }
        self.item_graphs = {m: e.sparse(n, n) for m, e in edges.items()}
        self.fusion_graph = max_pool(list(edges.values()), n).sparse(n, n)
        self.user_embedding = xavier_uniform((ctx.n_users, d), generator)
        self.item_id_embedding = xavier_uniform((n, d), generator)
        self.raw = feature_tables(
            {m: ctx.features[m] for m in self.modalities}, config.train_features
        )
        self.trs = nn.ModuleDict(
            {m: linear(ctx.features[m].shape[1], d, generator) for m in self.modalities}
        )
        bins = d // 2 + 1

        def spectrum_filter() -> nn.Parameter:  # real and imaginary parts, standard normal
            return nn.Parameter(torch.randn((1, bins, 2), generator=generator))

        def gate() -> nn.Sequential:
            return nn.Sequential(linear(d, d, generator), nn.Sigmoid())

        self.filters = nn.ParameterDict({m: spectrum_filter() for m in self.modalities})
        self.fusion_filter = spectrum_filter()
        self.query = nn.ModuleDict(
            {
                m: nn.Sequential(
                    linear(d, d, generator), nn.Tanh(), linear(d, d, generator, bias="none")
                )
                for m in self.modalities
            }
        )
        self.gate = nn.ModuleDict({m: gate() for m in self.modalities})
        self.fusion_gate = gate()
        self.prefer = nn.ModuleDict({m: gate() for m in self.modalities})
        self.fusion_prefer = gate()

    def spectrum(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Filtered modality embeddings ``{m: [I, d]}`` and the fusion embedding [I, d]."""
        d = self.config.embedding_size
        spectra = {
            m: torch.fft.rfft(self.trs[m](self.raw[m]), dim=1, norm="ortho")
            for m in self.modalities
        }
        convs = {
            m: torch.fft.irfft(
                spectra[m] * torch.view_as_complex(self.filters[m]), n=d, dim=1, norm="ortho"
            )
            for m in self.modalities
        }
        product = spectra[self.modalities[0]]
        for m in self.modalities[1:]:
            product = product * spectra[m]
        fusion = torch.fft.irfft(
            product * torch.view_as_complex(self.fusion_filter), n=d, dim=1, norm="ortho"
        )
        return convs, fusion

    def item_view(self, items: torch.Tensor, graph: SparseGraph) -> torch.Tensor:
        """An item view [I, d] propagated ``n_layers`` times, with its users: [U + I, d]."""
        for _ in range(self.config.n_layers):
            items = graph @ items
        return torch.cat([self.graph @ items, items])

    def forward_all(
        self, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Output [U + I, d], side [U + I, d] and content [U + I, d] tables (users first).

        ``generator`` draws the preference dropout (training only)."""
        convs, fusion = self.spectrum()
        ids = self.item_id_embedding
        views = {
            m: self.item_view(ids * self.gate[m](convs[m]), self.item_graphs[m])
            for m in self.modalities
        }
        fusion_view = self.item_view(ids * self.fusion_gate(fusion), self.fusion_graph)
        users, items = bipartite_layer_mean(
            self.graph, self.user_embedding, ids, self.config.n_ui_layers
        )
        content = torch.cat([users, items])
        rate = self.config.dropout_rate if self.training and generator is not None else 0.0

        def preference(layer: nn.Module) -> torch.Tensor:
            return dropout(layer(content), rate, generator) if rate > 0 else layer(content)

        parts = [
            preference(self.prefer[m])
            * torch.softmax(self.query[m](fusion_view), dim=-1)
            * views[m]
            for m in self.modalities
        ]
        parts.append(preference(self.fusion_prefer) * fusion_view)
        side = torch.stack(parts).mean(0)
        return content + side, side, content

    def loss(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """BPR + L2 of the batch's output rows + ``cl_loss`` * InfoNCE(side, content)."""
        cfg = self.config
        out, side, content = self.forward_all(generator)
        shift = self.n_users
        u = rows(out, batch.users)
        p, n = rows(out, batch.positives + shift), rows(out, batch.negatives + shift)
        l2 = 0.5 * (u.square().sum() + p.square().sum() + n.square().sum()) / len(batch.users)
        items = batch.positives + shift
        cl = info_nce(rows(side, items), rows(content, items), cfg.temperature) + info_nce(
            rows(side, batch.users), rows(content, batch.users), cfg.temperature
        )
        return {
            "bpr": bpr_loss((u * p).sum(1), (u * n).sum(1)),
            "reg": cfg.reg_weight * l2,
            "cl": cfg.cl_loss * cl,
        }

    def full_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [U, d] and items [I, d] (no dropout)."""
        out, _, _ = self.forward_all(None)
        return out[: self.n_users], out[self.n_users :]

"""Cold-start item embedding at serving time, in NumPy (no training code, no graph).

Method ``mentor-semantic-knn``: a new item has no user-item edges, so its graph terms vanish.
DualGNN (``combine: sum``, no semantic step): the sum over modalities of the branch rows below.
MENTOR (``combine: concat``): its representation is

    x + y^L,   x = concat_m normalize(W2_m leaky_relu(W1_m f_m + b1_m) + b2_m)     [D]
               y^0 = x,  y^l = sum_m w_m / k * (c_m y^(l-1) + sum_{n in N_m} T_(l-1)[n])

with ``N_m`` its ``k - 1`` nearest catalogue items by cosine of the raw features of modality m
(``c_m = 1``: the item is its own first neighbour; an all-zero feature row has no neighbours
and ``c_m = k``), ``T_l`` the catalogue's item tables after l semantic steps and ``w_m`` the
semantic graph weights. It is the same formula as ``MENTOR.new_item_representations``.

Bundle tensors: ``cold.<m>.w1`` [hidden, F_m], ``cold.<m>.b1`` [hidden], ``cold.<m>.w2``
[d, hidden], ``cold.<m>.b2`` [d] per modality, ``cold.<m>.catalogue`` [I, F_m] raw features of
the semantic modalities and ``cold.table.<l>`` [I, D] for l < L.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mentor.errors import MentorError

METHOD = "mentor-semantic-knn"


def _normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), like ``F.normalize``."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


@dataclass
class ColdStartEncoder:
    """Embeds new items from raw features (method :data:`METHOD`).

    Attributes:
        modalities: branch order of the fused representation.
        dims: expected feature dimension per modality.
        layers: per modality (w1 [hidden, F], b1, w2 [d, hidden], b2).
        catalogue: unit-norm catalogue features per semantic modality [I, F].
        catalogue_zero: bool [I] per semantic modality: all-zero rows (never neighbours).
        tables: catalogue tables after 0 .. L-1 semantic steps, each [I, D].
        weights: semantic graph weight per modality; k: its neighbour count.
        negative_slope: of the leaky ReLU between the two layers.
    """

    modalities: list[str]
    dims: dict[str, int]
    layers: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    catalogue: dict[str, np.ndarray]
    catalogue_zero: dict[str, np.ndarray]
    tables: list[np.ndarray]
    weights: dict[str, float]
    k: int
    negative_slope: float
    combine: str = "concat"

    @classmethod
    def from_bundle(cls, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> ColdStartEncoder:
        """Build from ``bundle.json``'s ``cold_start`` entry and the bundle tensors."""
        if meta.get("method") != METHOD:
            raise MentorError(
                f"bundle.json: cold_start method '{meta.get('method')}' is not known to this "
                f"version of mentor; it knows '{METHOD}'"
            )
        modalities = list(meta["modalities"])
        layers = {
            m: tuple(tensors[f"cold.{m}.{p}"] for p in ("w1", "b1", "w2", "b2")) for m in modalities
        }
        catalogue, zero = {}, {}
        for m in meta["weights"]:
            raw = tensors[f"cold.{m}.catalogue"]
            zero[m] = ~(raw != 0).any(axis=1)
            catalogue[m] = _normalize(raw.astype(np.float32))
        tables = [tensors[f"cold.table.{i}"] for i in range(int(meta["layers"]))]
        return cls(
            modalities=modalities,
            dims={m: int(v) for m, v in meta["dims"].items()},
            layers=layers,  # type: ignore[arg-type]
            catalogue=catalogue,
            catalogue_zero=zero,
            tables=tables,
            weights={m: float(w) for m, w in meta["weights"].items()},
            k=int(meta["k"]),
            negative_slope=float(meta["negative_slope"]),
            combine=str(meta.get("combine", "concat")),
        )

    def check(self, features: dict[str, Any], n_new: int) -> dict[str, np.ndarray]:
        """Validate raw features ``{modality: [n_new, F_m]}``: float32 arrays, or a one-line
        :class:`MentorError` naming the modality and what is wrong."""
        out = {}
        for m in self.modalities:
            if m not in features:
                raise MentorError(
                    f"features: modality '{m}' is missing; this model needs "
                    f"{', '.join(f'{n} ({self.dims[n]})' for n in self.modalities)}"
                )
            try:
                with np.errstate(over="ignore"):  # too large for float32: inf, refused below
                    value = np.asarray(features[m], dtype=np.float32)
            except (TypeError, ValueError):
                raise MentorError(f"features['{m}']: not a numeric matrix") from None
            if value.ndim == 1 and n_new == 1:
                value = value[None, :]
            if value.ndim != 2 or value.shape[0] != n_new or value.shape[1] != self.dims[m]:
                raise MentorError(
                    f"features['{m}']: shape {tuple(value.shape)}, expected "
                    f"({n_new}, {self.dims[m]}) (one row per new item)"
                )
            if not np.isfinite(value).all():
                raise MentorError(f"features['{m}']: contains NaN or infinite values")
            out[m] = value
        extra = sorted(set(features) - set(self.modalities))
        if extra:
            raise MentorError(
                f"features: unknown modality '{extra[0]}'; this model reads "
                f"{', '.join(self.modalities)}"
            )
        return out

    def embed(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Representations float32 [n_new, D] of new items from checked ``features``."""
        parts = []
        for m in self.modalities:
            w1, b1, w2, b2 = self.layers[m]
            hidden = features[m] @ w1.T + b1
            hidden = np.where(hidden >= 0, hidden, hidden * self.negative_slope)
            parts.append(_normalize(hidden @ w2.T + b2))
        if self.combine == "sum":  # DualGNN: item = sum of its modality branches
            rows = np.sum(parts, axis=0).astype(np.float32)
        else:  # MENTOR: the branches side by side
            rows = np.concatenate(parts, axis=1).astype(np.float32)
        if not self.tables:
            return rows
        n_cat = self.tables[0].shape[0]
        k = min(self.k, n_cat + 1)
        plan = []
        for m, weight in self.weights.items():
            sims = _normalize(features[m]) @ self.catalogue[m].T
            sims[:, self.catalogue_zero[m]] = -2.0
            if k - 1 > 0:
                nbrs = np.argpartition(-sims, k - 2, axis=1)[:, : k - 1]
            else:
                nbrs = np.zeros((len(rows), 0), dtype=np.int64)
            zero = ~(features[m] != 0).any(axis=1)
            self_count = np.where(zero, float(k), 1.0).astype(np.float32)[:, None]
            plan.append((weight / k, self_count, nbrs, zero))
        y = rows
        for table in self.tables:
            nxt = np.zeros_like(rows)
            for scale, self_count, nbrs, zero in plan:
                gathered = table[nbrs].sum(axis=1) * (~zero)[:, None]
                nxt += scale * (self_count * y + gathered)
            y = nxt
        return (rows + y).astype(np.float32)

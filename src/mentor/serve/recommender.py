"""The Python API over a bundle: recommendations, similar items and cold-start items.

Loading a bundle reads NumPy arrays from safetensors and JSON files; it imports no training code
(no torch model, no sampler, no graph builder) and builds no graph.

Example::

    from mentor import Recommender

    rec = Recommender.load("bundle/")
    rec.recommend(["196", "186"], k=10)           # seen items excluded
    rec.recommend("196", k=5, exclude_seen=False, items=["50", "172", "133"])
    rec.similar_items("50", k=10)
    rec.add_items(["NEW-1"], features={"text": t, "genre": g})
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mentor.errors import MentorError
from mentor.fsutil import file_sha256
from mentor.serve.coldstart import ColdStartEncoder
from mentor.serve.errors import DuplicateIdError, UnknownIdError
from mentor.serve.format import (
    CHECKSUMS,
    CONFIG,
    FORMAT,
    HISTORY,
    IDS,
    ITEM_META,
    MANIFEST,
    METRICS,
    TENSORS,
    VERSION,
    read_json,
)

log = logging.getLogger("mentor.serve")

if TYPE_CHECKING:
    from mentor.serve.store import Change

MIN_GEMM_ROWS = 8
BATCH_RANK_ROWS = 32


SCORE_BUDGET = 64 * 1024 * 1024


def block_rows(n_items: int, budget: int = SCORE_BUDGET) -> int:
    """Users to score at once so that a block of float32 scores [rows, n_items] fits in
    ``budget`` bytes (never fewer than :data:`MIN_GEMM_ROWS` rows, which keep BLAS on its
    matrix-matrix kernel)."""
    return max(MIN_GEMM_ROWS, budget // (4 * max(n_items, 1)))


def top_k_batch(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` for many rows at once through the evaluator's own ranking
    (:func:`mentor.eval.metrics.rank_topk`, torch's multi-threaded top-k with the same exact
    tie order). torch is imported on the first large batch, never when a bundle loads.
    """
    import torch

    from mentor.eval.metrics import rank_topk

    index = rank_topk(torch.from_numpy(scores), min(k, scores.shape[1])).numpy()
    return index, np.isfinite(np.take_along_axis(scores, index, axis=1))


def gemm_scores(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Scores ``users @ items.T`` [B, I] of float32 ``users`` [B, d] and ``items`` [I, d].

    BLAS picks its kernel, and so its summation order, by the number of rows: a single row (or
    a few) goes through a matrix-vector kernel, and on some CPUs (OpenBLAS on AMD EPYC) every
    row count splits the product differently. The rows are therefore multiplied in groups of
    exactly :data:`MIN_GEMM_ROWS` (the last one padded), so a user's scores do not depend on
    how many users are scored with it, and served lists do not depend on the blocks.
    """
    rows = len(users)
    groups = -(-rows // MIN_GEMM_ROWS)
    padded = np.empty((groups * MIN_GEMM_ROWS, users.shape[1]), dtype=users.dtype)
    padded[:rows] = users
    padded[rows:] = users[-1:]
    out = np.empty((groups * MIN_GEMM_ROWS, len(items)), dtype=np.float32)
    table = items.T
    for start in range(0, len(padded), MIN_GEMM_ROWS):
        np.matmul(
            padded[start : start + MIN_GEMM_ROWS], table, out=out[start : start + MIN_GEMM_ROWS]
        )
    return out[:rows]


@dataclass
class Recommendations:
    """One user's (or one item's) ranked list.

    Attributes:
        key: the user (or query item) id asked for.
        items: external item ids, best first.
        scores: their scores (dot products; popularity counts for a fallback; cosine for
            similar items).
        fallback: True when the user is unknown and the list is the most popular items.
    """

    key: str
    items: list[str]
    scores: list[float]
    fallback: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "items": self.items,
            "scores": self.scores,
            "fallback": self.fallback,
        }


REQUIRED_TENSORS = ("users", "items", "seen_indptr", "seen_indices", "popularity")


def _frozen(array: np.ndarray) -> np.ndarray:
    """``array`` marked read-only (a snapshot is never changed in place)."""
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class Catalog:
    """One immutable snapshot of the items: every reader takes the current snapshot once and
    uses only it, and a writer builds a new snapshot and swaps it in whole (copy on write), so a
    reader never sees the item matrix of one catalogue with the id list of another.

    A removed item keeps its row (internal ids never move) but leaves ``index`` and is never
    ranked; an id removed and added again gets a new row.

    Attributes:
        items: float32 [I, d], read-only (rows of removed items included).
        ids: external id of every row (length I).
        index: external id -> row, live items only (never changed after construction).
        popularity: float32 [I] training interaction counts (0 for added items), read-only.
        removed: int64 [R] rows of removed items, ascending, read-only.
        ann: an approximate index over every row, or None.
        seq: the last change of the durable log applied (0: none).
        meta: display records (``title``, ``text``, ``image``) of items added since the bundle
            (the bundle's own are :attr:`Recommender.item_meta`).
    """

    items: np.ndarray
    ids: tuple[str, ...]
    index: Mapping[str, int]
    popularity: np.ndarray
    removed: np.ndarray
    ann: Any = None
    seq: int = 0
    meta: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        items: np.ndarray,
        ids: Sequence[str],
        popularity: np.ndarray,
        ann: Any = None,
        removed: np.ndarray | None = None,
        seq: int = 0,
        meta: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Catalog:
        """A snapshot over float32 ``items`` [I, d], ``ids`` [I], ``popularity`` [I] and the
        ``removed`` rows int64 [R]."""
        gone = np.zeros(0, np.int64) if removed is None else np.unique(removed).astype(np.int64)
        dead = set(gone.tolist())
        index = {item: i for i, item in enumerate(ids) if i not in dead}
        return cls(
            _frozen(items), tuple(ids), index, _frozen(popularity), _frozen(gone), ann, seq,
            dict(meta or {}),
        )  # fmt: skip

    @cached_property
    def unit(self) -> np.ndarray:
        """Unit-normalised items float32 [I, d] (computed on first use; two threads racing
        compute the same array)."""
        norm = np.linalg.norm(self.items, axis=1, keepdims=True)
        return _frozen(self.items / np.maximum(norm, 1e-12))

    @cached_property
    def live(self) -> np.ndarray:
        """Rows of the live items, int64 [I - R] ascending."""
        rows = np.arange(len(self.ids), dtype=np.int64)
        return _frozen(np.setdiff1d(rows, self.removed) if len(self.removed) else rows)

    def extended(
        self,
        ids: Sequence[str],
        reps: np.ndarray,
        seq: int | None = None,
        meta: Sequence[Mapping[str, str] | None] | None = None,
    ) -> Catalog:
        """A new snapshot with items ``ids`` (representations float32 [n, d], display records
        ``meta``) appended, never seen and with popularity 0; the approximate index, if any,
        is copied and extended."""
        ann = self.ann
        if ann is not None:
            import faiss

            ann = faiss.clone_index(ann)
            ann.add(np.ascontiguousarray(reps, dtype=np.float32))
        return Catalog.build(
            np.concatenate([self.items, reps.astype(np.float32)]),
            [*self.ids, *ids],
            np.concatenate([self.popularity, np.zeros(len(ids), np.float32)]),
            ann,
            self.removed,
            self.seq if seq is None else seq,
            {**self.meta, **{i: dict(m) for i, m in zip(ids, meta or (), strict=False) if m}},
        )

    def without(self, ids: Sequence[str], seq: int | None = None) -> Catalog:
        """A new snapshot in which the live items ``ids`` are removed."""
        rows = [self.index[i] for i in ids]
        return Catalog.build(
            self.items,
            self.ids,
            self.popularity,
            self.ann,
            np.concatenate([self.removed, np.asarray(rows, dtype=np.int64)]),
            self.seq if seq is None else seq,
            self.meta,
        )


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns per row of float [B, n], best first, ties to the lower index.

    The order matches ``mentor.eval.metrics.rank_topk`` (and so ``mentor export``); columns
    scored ``-inf`` (masked) are never returned, so a row may come back shorter: the result is
    (index int64 [B, k'], valid bool [B, k']) with ``valid`` False past a row's last real item.
    """
    n = scores.shape[1]
    k = min(k, n)
    if k == 0:
        empty = np.zeros((len(scores), 0), dtype=np.int64)
        return empty, empty.astype(bool)
    if len(scores) == 1:
        index = _top_k_row(scores[0], k)
        return index[None, :], np.isfinite(scores[0, index])[None, :]
    if k < n:
        part = np.argpartition(scores, n - k, axis=1)[:, n - k :]
    else:
        part = np.broadcast_to(np.arange(n), scores.shape).copy()
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=1)
    part = np.take_along_axis(part, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    if k < n:
        # a tie across the cut: more items score at least the k-th value than k
        ties = np.flatnonzero(np.count_nonzero(scores >= values[:, -1:], axis=1) > k)
        for row in ties:
            cand = np.flatnonzero(scores[row] >= values[row, -1])
            cand = cand[np.lexsort((cand, -scores[row, cand]))][:k]
            part[row], values[row] = cand, scores[row, cand]
    return part, np.isfinite(values)


def _top_k_row(row: np.ndarray, k: int) -> np.ndarray:
    """:func:`top_k` of one row float [n] (the per-request path): int64 [k], best first."""
    n = len(row)
    part = np.argpartition(row, n - k)[n - k :] if k < n else np.arange(n)
    kth = row[part].min()
    if k < n and np.count_nonzero(row >= kth) > k:  # a tie across the cut
        part = np.flatnonzero(row >= kth)
    return part[np.lexsort((part, -row[part]))][:k]


def _popular(
    catalog: Catalog, name: str, k: int, cand: np.ndarray | None, hidden: np.ndarray
) -> Recommendations:
    """The ``k`` most popular live items of ``catalog`` (among ``cand``, ascending rows, when
    given; never a ``hidden`` row) as a fallback list for ``name``; ties to the lower row."""
    pool = catalog.live if cand is None else cand
    if len(hidden):
        pool = pool[~np.isin(pool, hidden)]
    if not len(pool):
        return Recommendations(name, [], [], True)
    index, _ = top_k(catalog.popularity[pool][None, :], k)
    chosen = pool[index[0]]
    return Recommendations(
        name,
        [catalog.ids[i] for i in chosen],
        catalog.popularity[chosen].astype(np.float64).tolist(),
        True,
    )


@dataclass(frozen=True)
class Queries:
    """Rows to rank: query vectors and, per row, the items to leave out as seen.

    Attributes:
        vectors: float32 [B, d] (user representations, or folded-in histories).
        seen_indptr: int64 [B + 1] and seen_indices: int64 [nnz], the seen rows of each query
            in CSR form.
    """

    vectors: np.ndarray
    seen_indptr: np.ndarray
    seen_indices: np.ndarray

    @classmethod
    def from_lists(cls, vectors: np.ndarray, seen: Sequence[np.ndarray]) -> Queries:
        """Queries over ``vectors`` [B, d] with the seen rows ``seen`` (B int64 arrays)."""
        lengths = np.asarray([len(s) for s in seen], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        indices = np.concatenate(seen).astype(np.int64) if len(seen) else np.zeros(0, np.int64)
        return cls(vectors, indptr, indices)

    def __len__(self) -> int:
        return len(self.vectors)

    def block(self, start: int, stop: int) -> Queries:
        """Rows ``start:stop``."""
        indptr = self.seen_indptr[start : stop + 1]
        return Queries(
            self.vectors[start:stop],
            indptr - indptr[0],
            self.seen_indices[indptr[0] : indptr[-1]],
        )

    def seen(self, row: int) -> np.ndarray:
        """Seen rows int64 [n] of query ``row``."""
        return self.seen_indices[self.seen_indptr[row] : self.seen_indptr[row + 1]]


FOLD_IN_RULES = {
    "graph": "degree-weighted mean of the history's item representations, "
    "sum_i item_i / sqrt(1 + deg_i) over sum_i 1 / sqrt(1 + deg_i): the first propagation "
    "layer of a normalised user-item graph, in the served space",
    "mean": "mean of the history's item representations (the model learns users as free "
    "vectors, so no propagation rule exists to replay)",
    "popularity": "the most popular items (the model ranks by popularity alone)",
}


def _mask_seen(scores: np.ndarray, queries: Queries, cand: np.ndarray | None, n_items: int) -> None:
    """Set the scores float [B, n] of each query's seen items to ``-inf`` in place (``n`` is
    every item, or the candidates ``cand``)."""
    lengths = np.diff(queries.seen_indptr)
    rows = np.repeat(np.arange(len(queries)), lengths)
    cols = queries.seen_indices
    if cand is None:
        scores[rows, cols] = -np.inf
        return
    lookup = np.full(n_items, -1, dtype=np.int64)
    lookup[cand] = np.arange(len(cand))
    local = lookup[cols]
    hit = local >= 0
    scores[rows[hit], local[hit]] = -np.inf


def _runs_of_one_op(changes: Sequence[Change]) -> list[list[Change]]:
    """``changes`` cut into maximal runs of consecutive changes with the same ``op``."""
    runs: list[list[Change]] = []
    for change in changes:
        if runs and runs[-1][0].op == change.op:
            runs[-1].append(change)
        else:
            runs.append([change])
    return runs


def _log_skipped(changes: Sequence[Change], applied: set[str], why: str) -> None:
    for change in changes:
        if change.item_id not in applied:
            log.warning("catalogue change %d (%s %r) skipped: %s", change.seq, change.op,
                        change.item_id, why)  # fmt: skip


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise MentorError(f"k must be a whole number of at least 1, got {k!r}")
    return int(k)


@dataclass
class Recommender:
    """A loaded bundle. Build with :meth:`load`.

    Attributes:
        path: the bundle folder.
        model: the model name; config, metrics: the run's configuration and metrics.
        users: float32 [U, d]; user_ids: external user ids in internal order.
        trained: bool [U], whether each user had training interactions.
        digest: SHA-256 of the bundle's checksums.json (which covers every file): its identity.
        mentor_version: the mentor version that wrote the bundle.
        score_budget: bytes of scores one ranking call may hold (users are scored in blocks).
        fold_in: how a history becomes a query vector (a key of :data:`FOLD_IN_RULES`; the
            model's own rule, recorded in the bundle).
        item_meta: the bundle's display records per item id (``title``, ``text``, ``image``: a
            URL or a file of the bundle's ``images/``), empty when the data had none.
        catalog: the current :class:`Catalog` snapshot (replaced whole by :meth:`add_items`);
            :attr:`items`, :attr:`item_ids`, :attr:`item_index` and :attr:`popularity` read it.
    """

    path: Path
    model: str
    users: np.ndarray
    user_ids: list[str]
    seen_indptr: np.ndarray
    seen_indices: np.ndarray
    config: dict[str, Any]
    metrics: dict[str, Any]
    cold_start: ColdStartEncoder | None
    catalog: Catalog
    trained: np.ndarray
    no_cold_start: str = ""
    index_kind: str = "exact"
    digest: str = ""
    mentor_version: str = ""
    score_budget: int = SCORE_BUDGET
    fold_in: str = "mean"
    item_meta: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    user_index: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self.user_index:
            self.user_index = {u: i for i, u in enumerate(self.user_ids)}

    # ------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, index: str = "exact", verify: bool = True) -> Recommender:
        """Load the bundle folder ``path``.

        Args:
            index: ``"exact"`` (default: brute-force top-K, ``mentor export``'s lists up to
                float rounding) or ``"faiss"`` (approximate HNSW search, the ``faiss`` extra).
            verify: check every file against ``checksums.json``.
        """
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = Path(path)
        if not path.is_dir():
            raise MentorError(f"{path}: not a folder; give a folder made by `mentor bundle`")
        manifest = read_json(path / MANIFEST)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise MentorError(f"{path / MANIFEST}: not a mentor bundle manifest")
        if manifest.get("version") != VERSION:
            raise MentorError(
                f"{path / MANIFEST}: bundle format version {manifest.get('version')}, this "
                f"mentor reads version {VERSION}; re-create it with `mentor bundle`"
            )
        if verify:
            sums = read_json(path / CHECKSUMS)
            for name, digest in sums.get("files", {}).items():
                if not (path / name).exists() or file_sha256(path / name) != digest:
                    raise MentorError(
                        f"{path / name}: missing or changed since it was bundled (checksum "
                        "mismatch); re-create the bundle"
                    )
        try:
            tensors = load_file(str(path / TENSORS))
        except (SafetensorError, OSError) as exc:
            raise MentorError(f"{path / TENSORS}: cannot read ({exc})") from None
        missing = [n for n in REQUIRED_TENSORS if n not in tensors]
        if missing:
            raise MentorError(f"{path / TENSORS}: tensor '{missing[0]}' is missing; re-bundle")
        ids = read_json(path / IDS)
        if not isinstance(ids, dict) or not {"users", "items"} <= set(ids):
            raise MentorError(f"{path / IDS}: expected lists 'users' and 'items'; re-bundle")
        cold_meta = manifest.get("cold_start")  # a mapping, or why new items cannot be added
        rec = cls(
            path=path,
            model=str(manifest["model"]),
            users=tensors["users"],
            user_ids=[str(u) for u in ids["users"]],
            seen_indptr=tensors["seen_indptr"],
            seen_indices=tensors["seen_indices"],
            catalog=Catalog.build(
                tensors["items"], [str(i) for i in ids["items"]], tensors["popularity"]
            ),
            # bundles record which users had training rows; before, seen items tell it
            trained=(
                tensors["trained"].astype(bool)
                if "trained" in tensors
                else np.diff(tensors["seen_indptr"]) > 0
            ),
            config=read_json(path / CONFIG),
            metrics=read_json(path / METRICS),
            cold_start=(
                ColdStartEncoder.from_bundle(cold_meta, tensors)
                if isinstance(cold_meta, dict)
                else None
            ),
            no_cold_start=cold_meta if isinstance(cold_meta, str) else "",
            digest=(
                hashlib.sha256((path / CHECKSUMS).read_bytes()).hexdigest()
                if (path / CHECKSUMS).is_file()
                else ""
            ),
            mentor_version=str(manifest.get("mentor_version", "")),
            fold_in=str(manifest.get("fold_in", "mean")),  # bundles before the rule: the mean
            item_meta=read_json(path / ITEM_META)["items"] if (path / ITEM_META).is_file() else {},
        )
        if (
            len(rec.user_index) != len(rec.users)
            or len(rec.item_index) != len(rec.items)
            or len(rec.trained) != len(rec.users)
        ):
            raise MentorError(f"{path / IDS}: id lists do not match the tensors; re-bundle")
        if index not in ("exact", "faiss"):
            raise MentorError(f"index must be 'exact' or 'faiss', got {index!r}")
        if index == "faiss":
            rec._build_ann()
        rec.index_kind = index
        return rec

    @property
    def items(self) -> np.ndarray:
        """Item representations float32 [I, d] of the current catalogue (read-only)."""
        return self.catalog.items

    @property
    def item_ids(self) -> tuple[str, ...]:
        """External item ids of the current catalogue, in internal order."""
        return self.catalog.ids

    @property
    def item_index(self) -> Mapping[str, int]:
        """External item id -> internal id, of the current catalogue."""
        return self.catalog.index

    @property
    def popularity(self) -> np.ndarray:
        """Training interaction count per item float32 [I] (0 for added items)."""
        return self.catalog.popularity

    @property
    def n_users(self) -> int:
        """Known users."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Live items, including added ones and without removed ones."""
        return len(self.catalog.index)

    @property
    def can_add_items(self) -> bool:
        """Whether the model embeds new items from features."""
        return self.cold_start is not None

    @property
    def feature_dims(self) -> dict[str, int]:
        """Feature dimension per modality that :meth:`add_items` expects (empty: id-only)."""
        return dict(self.cold_start.dims) if self.cold_start else {}

    def seen(self, user: int) -> np.ndarray:
        """Internal ids of the items ``user`` was trained on, int64 [n]."""
        return self.seen_indices[self.seen_indptr[user] : self.seen_indptr[user + 1]]

    # ------------------------------------------------------------------------------------------
    def _item_positions(self, catalog: Catalog, items: Iterable[Any]) -> np.ndarray:
        """Rows int64 [n] of the candidate ``items``, ascending and without repeats (so that
        ties are broken by the lower internal id, as on every other path)."""
        if isinstance(items, str):
            raise MentorError("items must be a list of item ids, not one string")
        positions = []
        for item in items:
            pos = catalog.index.get(str(item))
            if pos is None:
                raise UnknownIdError(f"unknown item id '{item}'")
            positions.append(pos)
        if not positions:
            raise MentorError("items is empty; give at least one candidate item id")
        return np.unique(np.asarray(positions, dtype=np.int64))

    @staticmethod
    def _hidden(catalog: Catalog, exclude: Iterable[Any] | None) -> np.ndarray:
        """Rows int64 [n] never to rank in this request: removed items and the live ones of
        ``exclude`` (ids the catalogue does not hold are ignored)."""
        if isinstance(exclude, str):
            raise MentorError("exclude must be a list of item ids, not one string")
        rows = [catalog.index[i] for i in map(str, exclude or ()) if i in catalog.index]
        if not rows:
            return catalog.removed
        return np.union1d(catalog.removed, np.asarray(rows, dtype=np.int64))

    def trained_user(self, user: str) -> int | None:
        """The internal id of ``user`` when it was trained on at least one interaction; None
        for an unknown user and for one that exists only in valid or test (its embedding was
        never trained, so it is served like an unknown user)."""
        row = self.user_index.get(user)
        return row if row is not None and self.trained[row] else None

    def recommend(
        self,
        users: str | Sequence[str],
        k: int = 10,
        exclude_seen: bool = True,
        items: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
    ) -> list[Recommendations]:
        """Top-``k`` items of each user, best first; equal scores rank the lower internal id
        first. Removed items never appear.

        Args:
            users: one external user id or a list of them. An unknown user, or one without
                training interactions, gets the most popular items (``fallback=True``).
            k: list length (a user with fewer candidates gets a shorter list).
            exclude_seen: leave out the items the user was trained on.
            items: candidate item ids to rank (default: every item); unknown ids are an error.
            exclude: item ids to leave out of every list of this call.
        """
        k = _check_k(k)
        catalog = self.catalog  # one snapshot for the whole call
        single = isinstance(users, str)
        names = [users] if single else [str(u) for u in users]
        cand = None if items is None else self._item_positions(catalog, items)
        hidden = self._hidden(catalog, exclude)
        known = [self.trained_user(u) for u in names]
        rows = [i for i in known if i is not None]
        lists: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if rows:
            queries = self._user_queries(np.asarray(rows, dtype=np.int64))
            ids, vals = self._rank(catalog, queries, k, exclude_seen, cand, hidden)
            lists = {u: (a, b) for u, a, b in zip(rows, ids, vals, strict=True)}
        out = []
        for name, user in zip(names, known, strict=True):
            if user is None:
                out.append(_popular(catalog, name, k, cand, hidden))
            else:
                idx, vals = lists[user]
                out.append(
                    Recommendations(name, [catalog.ids[i] for i in idx], vals.tolist(), False)
                )
        return out

    def recommend_histories(
        self,
        histories: Sequence[Sequence[str]],
        k: int = 10,
        exclude_seen: bool = True,
        items: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
    ) -> list[Recommendations]:
        """Top-``k`` items for visitors known only by their item histories (fold-in).

        Each history becomes a query vector by the bundle's fold-in rule (:attr:`fold_in`, see
        :data:`FOLD_IN_RULES`) and is ranked like a trained user, its history as its seen
        items. Ids the catalogue does not hold (unknown or removed) are ignored; a history with
        none left gets the most popular items (``fallback=True``). Lists are keyed
        ``history:<n>`` in request order.
        """
        k = _check_k(k)
        if isinstance(histories, str) or any(isinstance(h, str) for h in histories):
            raise MentorError("histories must be a list of lists of item ids")
        catalog = self.catalog
        cand = None if items is None else self._item_positions(catalog, items)
        hidden = self._hidden(catalog, exclude)
        rows = [
            np.unique([catalog.index[i] for i in map(str, h) if i in catalog.index]).astype(
                np.int64
            )
            for h in histories
        ]
        folded = [n for n, r in enumerate(rows) if len(r) and self.fold_in != "popularity"]
        lists: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if folded:
            vectors = np.stack([self.fold_in_vector(catalog, rows[n]) for n in folded])
            queries = Queries.from_lists(vectors, [rows[n] for n in folded])
            ids, vals = self._rank(catalog, queries, k, exclude_seen, cand, hidden)
            lists = dict(zip(folded, zip(ids, vals, strict=True), strict=True))
        out = []
        for n in range(len(histories)):
            name = f"history:{n}"
            if n not in lists:
                out.append(_popular(catalog, name, k, cand, hidden))
                continue
            idx, vals = lists[n]
            out.append(Recommendations(name, [catalog.ids[i] for i in idx], vals.tolist()))
        return out

    def fold_in_vector(self, catalog: Catalog, rows: np.ndarray) -> np.ndarray:
        """The query vector float32 [d] of a history of live item ``rows`` int64 [n >= 1]."""
        reps = catalog.items[rows].astype(np.float64)
        if self.fold_in == "graph":
            weights = 1.0 / np.sqrt(1.0 + catalog.popularity[rows].astype(np.float64))
            return (weights @ reps / weights.sum()).astype(np.float32)
        return reps.mean(axis=0).astype(np.float32)

    def _user_queries(self, users: np.ndarray) -> Queries:
        """Queries of trained users int64 [B]: their vectors and seen items."""
        starts, ends = self.seen_indptr[users], self.seen_indptr[users + 1]
        lengths = ends - starts
        first = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        indices = self.seen_indices[first + np.arange(lengths.sum())]
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return Queries(self.users[users], indptr, indices.astype(np.int64))

    def _rank(
        self,
        catalog: Catalog,
        queries: Queries,
        k: int,
        exclude_seen: bool,
        cand: np.ndarray | None,
        hidden: np.ndarray,
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Ranked rows and scores per query, never a ``hidden`` row.

        Users are scored in blocks of :func:`block_rows` rows, so one call holds at most
        :attr:`score_budget` bytes of scores (plus one block's masks) however many users and
        items there are; the lists equal those of one unblocked pass."""
        if cand is None and catalog.ann is not None:
            return self._rank_ann(catalog, queries, k, exclude_seen, hidden)
        table = catalog.items if cand is None else catalog.items[cand]
        rows = block_rows(len(table), self.score_budget)
        ids: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        for start in range(0, len(queries), rows):
            block = queries.block(start, min(start + rows, len(queries)))
            block_ids, block_vals = self._rank_block(
                table, block, k, exclude_seen, cand, hidden, len(catalog.items)
            )
            ids += block_ids
            vals += block_vals
        return ids, vals

    @staticmethod
    def _rank_block(
        table: np.ndarray,
        queries: Queries,
        k: int,
        exclude_seen: bool,
        cand: np.ndarray | None,
        hidden: np.ndarray,
        n_items: int,
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """:meth:`_rank` of one block of queries against ``table`` float32 [n, d] (every
        item, or the candidates ``cand`` [n])."""
        scores = gemm_scores(queries.vectors, table)
        if exclude_seen:
            _mask_seen(scores, queries, cand, n_items)
        if len(hidden):
            if cand is None:
                scores[:, hidden] = -np.inf
            else:
                scores[:, np.isin(cand, hidden)] = -np.inf
        rows = len(queries)
        local, valid = top_k_batch(scores, k) if rows >= BATCH_RANK_ROWS else top_k(scores, k)
        values = np.take_along_axis(scores, local, axis=1).astype(np.float64)
        index = local if cand is None else cand[local]
        ids = [index[row][valid[row]] for row in range(rows)]
        vals = [values[row][valid[row]] for row in range(rows)]
        return ids, vals

    # ------------------------------------------------------------------------------------------
    def similar_items(
        self, item: str, k: int = 10, exclude: Sequence[str] | None = None
    ) -> Recommendations:
        """The ``k`` live items whose representations have the highest cosine with ``item``'s
        (the item itself and the ids in ``exclude`` left out)."""
        k = _check_k(k)
        catalog = self.catalog
        pos = catalog.index.get(str(item))
        if pos is None:
            raise UnknownIdError(f"unknown item id '{item}'")
        unit = catalog.unit
        sims = (unit @ unit[pos])[None, :]
        sims[0, pos] = -np.inf
        sims[0, self._hidden(catalog, exclude)] = -np.inf
        index, valid = top_k(sims, k)
        chosen = index[0][valid[0]]
        return Recommendations(
            str(item), [catalog.ids[i] for i in chosen], sims[0, chosen].astype(float).tolist()
        )

    # ------------------------------------------------------------------------------------------
    def add_items(
        self,
        ids: Sequence[str],
        features: Mapping[str, Any],
        meta: Sequence[Mapping[str, str]] | None = None,
    ) -> None:
        """Add new items from their raw features ``{modality: [len(ids), dim]}`` (cold start),
        with optional display records ``meta`` (``title``, ``text``, ``image`` URL) per item.

        They are ranked for every user from then on (never seen by anyone, no popularity). The
        check that the ids are new and the swap to the extended catalogue happen under one lock,
        so of several calls racing with the same new id exactly one succeeds.

        Raises:
            DuplicateIdError: an id exists already or is given twice.
        """
        names, _, reps = self.embed_new(ids, features)
        with self._lock:
            self.check_new(self.catalog, names)
            self.catalog = self.catalog.extended(names, reps, meta=meta)

    def embed_new(
        self, ids: Sequence[str], features: Mapping[str, Any]
    ) -> tuple[list[str], dict[str, np.ndarray], np.ndarray]:
        """Check new items and compute their representations (no change to the catalogue).

        Returns:
            The ids as strings (new to the current catalogue and distinct), the checked
            features (modality -> float32 [n, dim]) and the representations float32 [n, d].
        """
        if self.cold_start is None:
            raise MentorError(
                self.no_cold_start
                or f"model {self.model} embeds items from ids only; it cannot add new items"
            )
        if isinstance(ids, str):
            raise MentorError("ids must be a list of new item ids, not one string")
        names = [str(i) for i in ids]
        if not names:
            raise MentorError("ids is empty; give at least one new item id")
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise DuplicateIdError(f"item id '{dup}' is given twice; new items need new ids")
        self.check_new(self.catalog, names)  # fail before encoding when it is already clear
        if not isinstance(features, Mapping):
            raise MentorError("features must map modality names to matrices")
        checked = self.cold_start.check(dict(features), len(names))
        with np.errstate(over="ignore", invalid="ignore"):
            reps = self.cold_start.embed(checked)
        if not np.isfinite(reps).all():
            raise MentorError("features: values too large (representations overflow float32)")
        return names, checked, reps.astype(np.float32)

    def remove_items(self, ids: Sequence[str]) -> None:
        """Remove live items (bundle or added ones): they are never ranked again.

        Raises:
            UnknownIdError: an id is not a live item.
        """
        if isinstance(ids, str):
            raise MentorError("ids must be a list of item ids, not one string")
        names = list(dict.fromkeys(str(i) for i in ids))
        with self._lock:
            self.check_live(self.catalog, names)
            self.catalog = self.catalog.without(names)

    def apply_changes(self, changes: Sequence[Change]) -> int:
        """Apply logged catalogue changes in order (adds re-embedded from their stored
        features) and swap the result in whole; changes at or below the catalogue's ``seq``
        are skipped, so applying a log twice changes nothing. Returns how many were applied.

        An add of an id that is live already, or that this bundle cannot embed (an id-only
        model or other feature lengths), and a removal of an id that is not live, are skipped
        and logged."""
        with self._lock:
            catalog = self.catalog
            fresh = [c for c in changes if c.seq > catalog.seq]
            for group in _runs_of_one_op(fresh):
                seq = group[-1].seq
                if group[0].op == "reload":  # the service's business: here only a seq
                    catalog = dataclasses.replace(catalog, seq=seq)
                    continue
                if group[0].op == "remove":
                    names = [c.item_id for c in group if c.item_id in catalog.index]
                    _log_skipped(group, set(names), "not a live item")
                    catalog = catalog.without(names, seq)
                    continue
                keep = [c for c in group if c.item_id not in catalog.index]
                keep = list({c.item_id: c for c in keep}.values())  # one add per id
                problem = self._embeddable(keep)
                if problem:
                    _log_skipped(group, set(), problem)
                    catalog = dataclasses.replace(catalog, seq=seq)
                    continue
                _log_skipped(group, {c.item_id for c in keep}, "already live")
                if not keep:
                    catalog = dataclasses.replace(catalog, seq=seq)
                    continue
                stacked = {m: np.stack([c.features[m] for c in keep]) for m in self.feature_dims}
                reps = self.cold_start.embed(self.cold_start.check(stacked, len(keep)))
                catalog = catalog.extended(
                    [c.item_id for c in keep], reps, seq, [c.meta for c in keep]
                )
            self.catalog = catalog
            return len(fresh)

    def _embeddable(self, changes: Sequence[Change]) -> str:
        """Why the logged adds ``changes`` cannot be embedded by this bundle ('' if they can)."""
        if not changes:
            return ""
        if self.cold_start is None:
            return f"model {self.model} cannot add items"
        for change in changes:
            got = {m: len(v) for m, v in (change.features or {}).items()}
            if got != self.feature_dims:
                return f"features {got} do not fit this bundle's {self.feature_dims}"
        return ""

    @staticmethod
    def check_new(catalog: Catalog, names: Sequence[str]) -> None:
        clash = [n for n in names if n in catalog.index]
        if clash:
            raise DuplicateIdError(f"item id '{clash[0]}' already exists; new items need new ids")

    @staticmethod
    def check_live(catalog: Catalog, names: Sequence[str]) -> None:
        if not names:
            raise MentorError("ids is empty; give at least one item id")
        missing = [n for n in names if n not in catalog.index]
        if missing:
            raise UnknownIdError(f"unknown item id '{missing[0]}'")

    # ------------------------------------------------------------------------------------------
    def _build_ann(self) -> None:
        """An HNSW inner-product index over the items (faiss)."""
        try:
            import faiss
        except ImportError:
            raise MentorError(
                "index='faiss' needs faiss; install it with pip install 'mentor-rec[faiss]'"
            ) from None
        catalog = self.catalog
        ann = faiss.IndexHNSWFlat(catalog.items.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        ann.hnsw.efConstruction = 80
        ann.add(np.ascontiguousarray(catalog.items, dtype=np.float32))
        self.catalog = dataclasses.replace(catalog, ann=ann)

    @staticmethod
    def _rank_ann(
        catalog: Catalog, queries: Queries, k: int, exclude_seen: bool, hidden: np.ndarray
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Approximate top-``k`` from the HNSW index; seen and ``hidden`` rows are filtered
        from a longer candidate list (``k`` plus the most that can be filtered)."""
        import faiss

        extra = len(hidden)
        if exclude_seen:
            extra += int(np.diff(queries.seen_indptr).max())
        depth = min(k + extra, len(catalog.items))
        # search parameters per call: no shared index state that two threads could race on
        params = faiss.SearchParametersHNSW(efSearch=max(64, 2 * depth))
        vals, idx = catalog.ann.search(np.ascontiguousarray(queries.vectors), depth, params=params)
        ids, scores = [], []
        for row in range(len(queries)):
            keep = (idx[row] >= 0) & ~np.isin(idx[row], hidden)
            if exclude_seen:
                keep &= ~np.isin(idx[row], queries.seen(row))
            ids.append(idx[row][keep][:k].astype(np.int64))
            scores.append(vals[row][keep][:k].astype(np.float64))
        return ids, scores

    def describe(self, ids: Iterable[str]) -> list[dict[str, str]]:
        """Display records of the live items among ``ids`` (in that order): ``id``, ``title``,
        ``text`` and ``image`` (an http(s) URL, a path of the bundle's ``images/``, or "")."""
        catalog = self.catalog
        out = []
        for item in map(str, ids):
            if item in catalog.index:
                record = catalog.meta.get(item) or self.item_meta.get(item) or {}
                out.append(
                    {"id": item, **{f: str(record.get(f, "")) for f in ("title", "text", "image")}}
                )
        return out

    def search(self, query: str, k: int = 20) -> list[dict[str, str]]:
        """Up to ``k`` live items whose title (or id) contains ``query`` (case-insensitive),
        in internal order, as :meth:`describe` records."""
        k = _check_k(k)
        catalog = self.catalog
        needle = query.casefold().strip()
        if not needle:
            return []
        found: dict[str, None] = {}  # ordered; an id re-added after removal has two rows
        for item in catalog.ids:
            if item in found or item not in catalog.index:
                continue
            record = catalog.meta.get(item) or self.item_meta.get(item) or {}
            if needle in str(record.get("title", "")).casefold() or needle in item.casefold():
                found[item] = None
                if len(found) == k:
                    break
        return self.describe(found)

    def curves(self) -> dict[str, Any]:
        """The run's training history (``history.csv`` of the bundle): ``columns`` and
        ``rows`` (numbers; None where a row has no value), empty without one."""
        path = self.path / HISTORY
        if not path.is_file():
            return {"columns": [], "rows": []}
        with open(path, newline="") as handle:
            table = list(csv.reader(handle))
        columns, rows = table[0], table[1:]

        def number(text: str) -> float | None:
            try:
                value = float(text)
            except ValueError:
                return None
            return value if np.isfinite(value) else None

        return {"columns": columns, "rows": [[number(v) for v in row] for row in rows]}

    def info(self) -> dict[str, Any]:
        """A summary for ``/health`` and logs."""
        return {
            "model": self.model,
            "users": self.n_users,
            "items": self.n_items,
            "dim": int(self.users.shape[1]),
            "index": self.index_kind,
            "can_add_items": self.can_add_items,
            "feature_dims": self.feature_dims,
            "bundle_digest": self.digest,
            "bundle_version": self.mentor_version,
            "removed_items": int(len(self.catalog.removed)),
            "catalog_seq": int(self.catalog.seq),
        }


def bundle_summary(path: str | Path) -> str:
    """One line describing a bundle folder (for the CLI)."""
    manifest = read_json(Path(path) / MANIFEST)
    cold = "adds items from features" if isinstance(manifest.get("cold_start"), dict) else ""
    cold = cold or "cannot add items"
    return (
        f"{manifest['model']} bundle: {manifest['n_users']:,} users, {manifest['n_items']:,} "
        f"items, d={manifest['dim']}, {cold}"
    )


__all__ = ["Recommendations", "Recommender", "UnknownIdError", "bundle_summary", "top_k"]

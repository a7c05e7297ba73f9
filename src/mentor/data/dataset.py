"""MMRec-layout data sets: one ``*.inter`` file, ``<modality>_feat.npy`` files, id mappings.

Every check fails with a :class:`~mentor.errors.MentorError` whose one-line message names the file,
the line or field and what to do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mentor.errors import MentorError

REQUIRED_COLUMNS = ("userID", "itemID", "x_label")
SPLITS = {"train": 0, "valid": 1, "test": 2}


@dataclass
class Dataset:
    """An MMRec-layout data set held in memory.

    Attributes:
        name: data set name (the ``.inter`` file's stem).
        path: the folder it was read from.
        n_users, n_items: id space sizes (ids are ``0..n-1``).
        splits: ``{"train"|"valid"|"test": int64 array [N, 2]}`` of (user, item) rows.
        features: ``{modality: float32 array [n_items, dim]}``.
        user_ids, item_ids: external id of every internal id (``str(i)`` without a mapping).
        warnings: what was repaired while loading (e.g. dropped duplicate rows).
    """

    name: str
    path: Path
    n_users: int
    n_items: int
    splits: dict[str, np.ndarray]
    features: dict[str, np.ndarray] = field(default_factory=dict)
    user_ids: list[str] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    has_user_mapping: bool = False
    has_item_mapping: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def train(self) -> np.ndarray:
        """Train rows, int64 [N, 2]."""
        return self.splits["train"]

    def cold_users(self, split: str) -> int:
        """Number of distinct users of ``split`` who have no train interaction."""
        users = np.unique(self.splits[split][:, 0])
        return int((~np.isin(users, np.unique(self.train[:, 0]))).sum())

    def feature_checksum(self, modality: str) -> str:
        """SHA-256 of one feature matrix (shape, dtype and bytes)."""
        feat = np.ascontiguousarray(self.features[modality])
        digest = hashlib.sha256(f"{feat.shape}{feat.dtype}".encode())
        digest.update(feat.tobytes())
        return digest.hexdigest()

    def stats(self) -> list[tuple[str, str]]:
        """Rows of (quantity, value) for ``mentor data check``."""
        total = sum(len(rows) for rows in self.splits.values())
        density = total / max(1, self.n_users * self.n_items)
        rows = [
            ("users", f"{self.n_users:,}"),
            ("items", f"{self.n_items:,}"),
            ("interactions", f"{total:,}"),
        ]
        rows += [(f"  {split}", f"{len(self.splits[split]):,}") for split in SPLITS]
        rows.append(("density", f"{density:.6f}"))
        for modality, feat in self.features.items():
            rows.append((f"feature {modality}", f"{feat.shape[0]:,} x {feat.shape[1]:,}"))
        for split in ("valid", "test"):
            rows.append((f"cold-start users in {split}", f"{self.cold_users(split):,}"))
        rows.append(("user id mapping", "yes" if self.has_user_mapping else "no"))
        rows.append(("item id mapping", "yes" if self.has_item_mapping else "no"))
        return rows


def _find_inter(folder: Path) -> Path:
    if not folder.is_dir():
        raise MentorError(f"{folder}: not a folder; give an MMRec-layout data folder")
    found = sorted(folder.glob("*.inter"))
    if not found:
        raise MentorError(f"{folder}: no *.inter file; an MMRec data folder holds <name>.inter")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise MentorError(f"{folder}: several .inter files ({names}); keep exactly one")
    return found[0]


def _read_tsv(path: Path) -> pd.DataFrame:
    """Read a tab-separated file with a header; the index holds each row's line number."""
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, skip_blank_lines=False)
    frame.index = np.arange(2, len(frame) + 2)
    blank = (frame == "").all(axis=1)
    return frame[~blank.to_numpy()]


def _integer_column(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """Parse a column as non-negative integers; report the first bad line (1 = header)."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | (values != np.floor(values)) | (values < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise MentorError(
            f"{path}: line {frame.index[row]}: column '{column}' has {frame[column].iloc[row]!r}; "
            "ids must be non-negative integers (map external ids in u_id_mapping.tsv / "
            "i_id_mapping.tsv)"
        )
    return values.to_numpy().astype(np.int64)


def read_inter(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read an ``.inter`` file: (users, items, x_label, warnings), duplicates dropped."""
    try:
        frame = _read_tsv(path)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise MentorError(f"{path}: not a tab-separated file with a header ({exc})") from None
    except pd.errors.EmptyDataError:
        raise MentorError(f"{path}: the file is empty; it needs a header and rows") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise MentorError(
            f"{path}: line 1: missing column(s) {', '.join(missing)}; the header must name "
            f"{', '.join(REQUIRED_COLUMNS)} (tab-separated)"
        )
    users = _integer_column(frame, "userID", path)
    items = _integer_column(frame, "itemID", path)
    labels = pd.to_numeric(frame["x_label"], errors="coerce")
    bad = ~labels.isin([0, 1, 2])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise MentorError(
            f"{path}: line {frame.index[row]}: x_label is {frame['x_label'].iloc[row]!r}; "
            "use 0 (train), 1 (valid) or 2 (test)"
        )
    labels_arr = labels.to_numpy().astype(np.int64)
    warnings: list[str] = []
    pairs = pd.DataFrame({"u": users, "i": items})
    dup = pairs.duplicated().to_numpy()
    if dup.any():
        warnings.append(
            f"{path}: dropped {int(dup.sum()):,} duplicate user-item row(s), keeping the first"
        )
        keep = ~dup
        users, items, labels_arr = users[keep], items[keep], labels_arr[keep]
    return users, items, labels_arr, warnings


def read_mapping(path: Path, internal_name: str) -> dict[int, str]:
    """Read ``u_id_mapping.tsv`` / ``i_id_mapping.tsv``: internal id -> external id."""
    try:
        frame = _read_tsv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise MentorError(f"{path}: not a tab-separated mapping with a header ({exc})") from None
    if frame.shape[1] != 2:
        raise MentorError(
            f"{path}: line 1: expected two columns (external id, {internal_name}), "
            f"found {frame.shape[1]}"
        )
    internal = _integer_column(frame, frame.columns[1], path)
    dup = pd.Series(internal).duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise MentorError(
            f"{path}: line {frame.index[row]}: internal id {internal[row]} appears twice"
        )
    return dict(zip(internal.tolist(), frame.iloc[:, 0].tolist(), strict=True))


def read_features(path: Path, n_items: int) -> np.ndarray:
    """Load one ``<modality>_feat.npy`` (no pickles) and check it: float32 [n_items, dim]."""
    try:
        feat = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise MentorError(
                f"{path}: the array needs pickle to load, which is refused; save a plain numeric "
                "array with np.save(path, array.astype('float32'))"
            ) from None
        raise MentorError(f"{path}: not a readable .npy file ({exc})") from None
    except OSError as exc:
        raise MentorError(f"{path}: cannot read ({exc})") from None
    if feat.ndim != 2:
        raise MentorError(f"{path}: expected a 2-d array [items, dim], got shape {feat.shape}")
    if not np.issubdtype(feat.dtype, np.number):
        raise MentorError(f"{path}: expected numbers, got dtype {feat.dtype}")
    if feat.shape[0] != n_items:
        raise MentorError(
            f"{path}: {feat.shape[0]:,} rows but the data set has {n_items:,} items; "
            "row i must hold the features of itemID i"
        )
    finite = np.isfinite(feat)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise MentorError(f"{path}: row {row} (itemID {row}) holds NaN or inf; fix or impute it")
    return np.ascontiguousarray(feat, dtype=np.float32)


def load_dataset(folder: str | Path, modalities: list[str] | None = None) -> Dataset:
    """Load and validate an MMRec-layout folder.

    Args:
        folder: holds one ``<name>.inter`` and optionally ``<modality>_feat.npy`` files and
            ``u_id_mapping.tsv`` / ``i_id_mapping.tsv``.
        modalities: feature modalities to load; ``None`` loads every ``*_feat.npy``.
    """
    folder = Path(folder)
    inter = _find_inter(folder)
    users, items, labels, warnings = read_inter(inter)
    if not (labels == 0).any():
        raise MentorError(f"{inter}: the train split is empty (no row has x_label 0)")
    user_map = item_map = None
    if (folder / "u_id_mapping.tsv").exists():
        user_map = read_mapping(folder / "u_id_mapping.tsv", "userID")
    if (folder / "i_id_mapping.tsv").exists():
        item_map = read_mapping(folder / "i_id_mapping.tsv", "itemID")
    n_users = int(max(users.max() + 1, max(user_map, default=-1) + 1 if user_map else 0))
    n_items = int(max(items.max() + 1, max(item_map, default=-1) + 1 if item_map else 0))
    splits = {
        name: np.stack([users[labels == code], items[labels == code]], axis=1)
        for name, code in SPLITS.items()
    }
    available = {p.name[: -len("_feat.npy")]: p for p in sorted(folder.glob("*_feat.npy"))}
    wanted = list(available) if modalities is None else modalities
    features = {}
    for modality in wanted:
        if modality not in available:
            have = ", ".join(available) or "none"
            raise MentorError(
                f"{folder}: no {modality}_feat.npy for modality '{modality}' (found: {have})"
            )
        features[modality] = read_features(available[modality], n_items)

    def externals(mapping: dict[int, str] | None, n: int) -> list[str]:
        if mapping is None:
            return [str(i) for i in range(n)]
        return [mapping.get(i, str(i)) for i in range(n)]

    return Dataset(
        name=inter.stem,
        path=folder,
        n_users=n_users,
        n_items=n_items,
        splits=splits,
        features=features,
        user_ids=externals(user_map, n_users),
        item_ids=externals(item_map, n_items),
        has_user_mapping=user_map is not None,
        has_item_mapping=item_map is not None,
        warnings=warnings,
    )

"""MMRec-layout data sets: one ``*.inter`` file, ``<modality>_feat.npy`` files, id mappings.

Every check fails with a :class:`~mentor.errors.MentorError` whose one-line message names the file,
the line or field and what to do.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mentor.errors import MentorError
from mentor.fsutil import file_sha256

REQUIRED_COLUMNS = ("userID", "itemID", "x_label")
MODALITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
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
        sources: file name -> path of every file the data set was read from.
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
    sources: dict[str, Path] = field(default_factory=dict)

    @property
    def train(self) -> np.ndarray:
        """Train rows, int64 [N, 2]."""
        return self.splits["train"]

    def cold_users(self, split: str) -> int:
        """Number of distinct users of ``split`` who have no train interaction."""
        users = np.unique(self.splits[split][:, 0])
        return int((~np.isin(users, np.unique(self.train[:, 0]))).sum())

    def fingerprint(self) -> dict[str, str]:
        """SHA-256 of every source file by name (``.inter``, mappings, loaded features).

        Stored in each run so that a run is never resumed, evaluated or reused on other data;
        it does not depend on where the folder lies, so a moved data folder still matches.
        """
        return {name: file_sha256(path) for name, path in sorted(self.sources.items())}

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
    found = sorted(p for p in folder.glob("*.inter") if not p.is_dir())
    if not found:
        raise MentorError(f"{folder}: no *.inter file; an MMRec data folder holds <name>.inter")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise MentorError(f"{folder}: several .inter files ({names}); keep exactly one")
    return found[0]


def _read_tsv(path: Path) -> pd.DataFrame:
    """Read a tab-separated file with a header; the index holds each row's line number.

    Quotes have no meaning (MMRec's files have none), so a stray ``"`` is an ordinary character.
    """
    if not path.is_file():
        raise MentorError(f"{path}: not a regular file; it must be a tab-separated text file")
    try:
        frame = pd.read_csv(
            path,
            sep="\t",
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            quoting=csv.QUOTE_NONE,
            encoding="utf-8-sig",
        )
    except OSError as exc:
        raise MentorError(f"{path}: cannot read ({exc.strerror or exc})") from None
    header = [str(c) for c in frame.columns]
    raw = path.read_text(encoding="utf-8-sig", errors="replace").split("\n", 1)[0].rstrip("\r")
    names = raw.split("\t")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise MentorError(f"{path}: line 1: column '{twice[0]}' appears twice; name each once")
    frame.columns = header
    frame.index = np.arange(2, len(frame) + 2)
    blank = (frame == "").all(axis=1)
    return frame[~blank.to_numpy()]


MAX_ID = 2**31 - 1  # ids index dense tables; larger ids would need that many rows


def _integer_column(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """Parse a column as non-negative integer ids below 2^31; report the first bad line."""
    text = frame[column].str.strip()
    values = pd.to_numeric(text, errors="coerce").astype("float64")
    integral = text.str.fullmatch(r"\+?\d+(\.0*)?").fillna(False).to_numpy(dtype=bool)
    bad = ~integral | values.isna().to_numpy() | (values > MAX_ID).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        shown = frame[column].iloc[row]
        if integral[row]:
            raise MentorError(
                f"{path}: line {frame.index[row]}: column '{column}' has {shown!r}, beyond the "
                f"largest supported id {MAX_ID:,}; renumber ids from 0 (put external ids in "
                "u_id_mapping.tsv / i_id_mapping.tsv)"
            )
        raise MentorError(
            f"{path}: line {frame.index[row]}: column '{column}' has {shown!r}; "
            "ids must be non-negative integers (map external ids in u_id_mapping.tsv / "
            "i_id_mapping.tsv)"
        )
    return values.to_numpy().astype(np.int64)


def read_inter(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read an ``.inter`` file: (users, items, x_label, warnings), duplicates dropped."""
    try:
        frame = _read_tsv(path)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise MentorError(
            f"{path}: not a tab-separated file with a header ({detail}); every row needs as many "
            "tab-separated fields as the header"
        ) from None
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
    labels = frame["x_label"].str.strip()
    bad = ~labels.str.fullmatch(r"[012](\.0*)?").fillna(False).to_numpy(dtype=bool)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise MentorError(
            f"{path}: line {frame.index[row]}: x_label is {frame['x_label'].iloc[row]!r}; "
            "use 0 (train), 1 (valid) or 2 (test)"
        )
    labels_arr = pd.to_numeric(labels).to_numpy().astype(np.int64)
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


def unmapped_id(internal: int) -> str:
    """The external id of an internal id that the mapping leaves out (an id in a gap of the
    id space, absent from every split): distinct per internal id."""
    return f"<unmapped {internal}>"


def check_distinct_ids(dataset: Dataset) -> None:
    """Raise a one-line MentorError unless every internal user and item id has its own external
    id (what export and bundle files need to be read back)."""
    for what, ids in (("user", dataset.user_ids), ("item", dataset.item_ids)):
        seen: dict[str, int] = {}
        for internal, external in enumerate(ids):
            if external in seen:
                raise MentorError(
                    f"{dataset.path}: internal {what} ids {seen[external]} and {internal} both "
                    f"have the external id {external!r}; give each its own id in the mapping"
                )
            seen[external] = internal


def read_mapping(path: Path, internal_name: str) -> dict[int, str]:
    """Read an id mapping (``u_id_mapping.tsv|csv`` / ``i_id_mapping.tsv|csv``, tab-separated
    with a header: external id, internal id): internal id -> external id."""
    try:
        frame = _read_tsv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "empty file"
        raise MentorError(f"{path}: not a tab-separated mapping with a header ({first})") from None
    if frame.shape[1] != 2:
        raise MentorError(
            f"{path}: line 1: expected two tab-separated columns (external id, {internal_name}), "
            f"found {frame.shape[1]}"
        )
    internal = _integer_column(frame, frame.columns[1], path)
    dup = pd.Series(internal).duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise MentorError(
            f"{path}: line {frame.index[row]}: internal id {internal[row]} appears twice"
        )
    external = frame.iloc[:, 0].str.strip()
    dup = external.duplicated().to_numpy() | (external == "").to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        what = "is empty" if external.iloc[row] == "" else f"{external.iloc[row]!r} appears twice"
        raise MentorError(
            f"{path}: line {frame.index[row]}: external id {what}; every id needs one distinct "
            "external id"
        )
    return dict(zip(internal.tolist(), external.tolist(), strict=True))


def _find_mapping(folder: Path, stem: str) -> Path | None:
    """``<stem>.tsv`` (ours) or ``<stem>.csv`` (MMRec's preprocessing; also tab-separated)."""
    found = [
        folder / f"{stem}{ext}" for ext in (".tsv", ".csv") if (folder / f"{stem}{ext}").exists()
    ]
    if len(found) > 1:
        raise MentorError(
            f"{folder}: both {stem}.tsv and {stem}.csv exist; keep exactly one id mapping"
        )
    return found[0] if found else None


def _check_coverage(mapping: dict[int, str], ids: np.ndarray, path: Path, column: str) -> None:
    """Every id of the ``.inter`` must have an external id in the mapping."""
    used = np.unique(ids)
    missing = used[~np.isin(used, np.fromiter(mapping, dtype=np.int64, count=len(mapping)))]
    if len(missing):
        raise MentorError(
            f"{path}: {column} {int(missing[0])} (and {len(missing) - 1:,} more) of the .inter "
            "file has no external id here; complete the mapping or remove the file"
        )


def _id_space_warning(ids: np.ndarray, n: int, what: str) -> str | None:
    """A warning with the count of ids in ``0..n-1`` that have no interaction at all.

    They are kept, as MMRec keeps them (they still cost a table row and, for items, are ranked).
    """
    unused = n - len(np.unique(ids))
    if unused == 0:
        return None
    advice = "; renumber ids densely to save memory" if unused > n / 2 else ""
    return (
        f"{unused:,} of {n:,} {what} ids have no interaction at all (kept, as MMRec keeps "
        f"them{advice})"
    )


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
    if feat.shape[1] == 0:
        raise MentorError(f"{path}: the features have 0 columns; give at least one dimension")
    with np.errstate(over="ignore", invalid="ignore"):
        feat32 = np.ascontiguousarray(feat, dtype=np.float32)
    finite = np.isfinite(feat32)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise MentorError(
            f"{path}: row {row} (itemID {row}) holds NaN, inf or a value beyond the float32 "
            "range (3.4e38); fix, rescale or impute it"
        )
    return feat32


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
    for code, split in ((0, "train"), (1, "valid"), (2, "test")):
        if not (labels == code).any():
            raise MentorError(
                f"{inter}: the {split} split is empty (no row has x_label {code}); every split "
                "needs rows (MMRec's split gives each user train, valid and test rows)"
            )
    user_file, item_file = (
        _find_mapping(folder, "u_id_mapping"),
        _find_mapping(folder, "i_id_mapping"),
    )
    user_map = read_mapping(user_file, "userID") if user_file else None
    item_map = read_mapping(item_file, "itemID") if item_file else None
    n_users = int(max(users.max() + 1, max(user_map, default=-1) + 1 if user_map else 0))
    n_items = int(max(items.max() + 1, max(item_map, default=-1) + 1 if item_map else 0))
    if user_map is not None and user_file is not None:
        _check_coverage(user_map, users, user_file, "userID")
    if item_map is not None and item_file is not None:
        # every item is ranked, so every id 0..n_items-1 needs its external id
        _check_coverage(item_map, np.arange(n_items), item_file, "itemID")
    for ids, n, what in ((users, n_users, "user"), (items, n_items, "item")):
        gap = _id_space_warning(ids, n, what)
        if gap:
            warnings.append(f"{inter}: {gap}")
    splits = {
        name: np.stack([users[labels == code], items[labels == code]], axis=1)
        for name, code in SPLITS.items()
    }
    available = {p.name[: -len("_feat.npy")]: p for p in sorted(folder.glob("*_feat.npy"))}
    for name, path in available.items():
        if not MODALITY_NAME.fullmatch(name):
            raise MentorError(
                f"{path}: the modality name {name!r} must start with a letter or digit and hold "
                "only letters, digits, '_' and '-'; rename the file (e.g. image_feat.npy)"
            )
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
        # only ids absent from every split lack one; each gets its own placeholder
        return [mapping.get(i, unmapped_id(i)) for i in range(n)]

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
        sources={
            p.name: p
            for p in (inter, user_file, item_file, *(available[m] for m in wanted))
            if p is not None
        },
    )

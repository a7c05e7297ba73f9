"""Preparation steps shared by every data source: reading raw lines, k-core, ids, split, output.

The recipe is MMRec's (``preprocessing/0rating2inter.ipynb`` and ``1splitting.ipynb``), made
deterministic: k-core repeated until stable, users and items numbered from 0 in order of first
appearance, a seeded per-user split, and an output folder that appears whole or not at all.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from mentor import __version__
from mentor.errors import MentorError

META_FILE = "meta.json"
USER_MAP_FILE = "u_id_mapping.tsv"
ITEM_MAP_FILE = "i_id_mapping.tsv"


# --------------------------------------------------------------------------------------------
# raw files
# --------------------------------------------------------------------------------------------


def is_gzip(path: Path) -> bool:
    """Whether ``path`` starts with the gzip magic bytes (the name is not trusted)."""
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def open_text(path: Path) -> IO[str]:
    """Open a plain or gzip text file for reading (UTF-8, undecodable bytes replaced)."""
    path = Path(path)
    if not path.is_file():
        raise MentorError(f"{path}: no such file; check the path")
    if is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line)`` of a plain or gzip text file, blank lines skipped.

    Raises:
        MentorError: the gzip stream is truncated or corrupt (names the last good line).
    """
    number = 0
    try:
        with open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise MentorError(
            f"{path}: the gzip stream is truncated or corrupt after line {number} ({exc}); "
            "download the file again"
        ) from None


def file_record(path: Path) -> dict[str, Any]:
    """Provenance of one input file: resolved path, size in bytes and SHA-256."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


class LineProblems:
    """Counts input lines that were skipped, keeping the first few line numbers per reason."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[int]] = {}

    def add(self, reason: str, line: int) -> None:
        """Count one skipped ``line`` for ``reason``."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < 3:
            examples.append(line)

    def messages(self) -> list[str]:
        """One warning line per reason."""
        return [
            f"{self.path}: skipped {n:,} line(s): {reason} (e.g. line "
            f"{', '.join(map(str, self.examples[reason]))})"
            for reason, n in self.counts.items()
        ]

    def as_dict(self) -> dict[str, int]:
        """``{reason: count}`` for meta.json."""
        return dict(self.counts)


# --------------------------------------------------------------------------------------------
# interactions: clean, k-core, ids, split
# --------------------------------------------------------------------------------------------


#: Lines read per chunk by the interaction readers: memory then grows with the compact
#: columns of :class:`RawInteractions`, not with the raw text of the file.
CHUNK_ROWS = 1_000_000


class IdCodes:
    """Raw ids -> int32 codes in order of first appearance, grown chunk by chunk."""

    def __init__(self) -> None:
        self.table: dict[Any, int] = {}

    def encode(self, values: pd.Series | np.ndarray | Sequence[Any]) -> np.ndarray:
        """Codes int32 [N] of ``values``; -1 for a missing id (NaN, None or ``""``)."""
        codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
        lookup = np.empty(len(uniques), dtype=np.int32)
        for n, value in enumerate(uniques):
            lookup[n] = -1 if value == "" else self.table.setdefault(value, len(self.table))
        out = np.full(len(codes), -1, dtype=np.int32)
        known = codes >= 0
        out[known] = lookup[codes[known]]
        return out

    def ids(self) -> np.ndarray:
        """The raw ids by code (object [n])."""
        out = np.empty(len(self.table), dtype=object)
        out[:] = list(self.table)
        return out


@dataclass
class RawInteractions:
    """Interactions as read, in file order, held as compact columns.

    Attributes:
        users, items: int32 codes [N] (-1: missing id).
        user_ids, item_ids: raw ids by code (object [n_users], [n_items]).
        rating, timestamp: float [N] (NaN when not a number), or ``None`` without the column.
    """

    users: np.ndarray
    items: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    rating: np.ndarray | None = None
    timestamp: np.ndarray | None = None

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> RawInteractions:
        """From a frame with ``user``, ``item`` and optionally ``rating``, ``timestamp``."""
        reader = InteractionColumns("rating" in frame.columns, "timestamp" in frame.columns)
        reader.add(
            frame["user"],
            frame["item"],
            frame["rating"].to_numpy() if "rating" in frame.columns else None,
            frame["timestamp"].to_numpy() if "timestamp" in frame.columns else None,
        )
        return reader.finish()


class InteractionColumns:
    """Collects chunks of raw interactions into :class:`RawInteractions`."""

    def __init__(self, rating: bool, timestamp: bool) -> None:
        self.user_codes, self.item_codes = IdCodes(), IdCodes()
        self.parts: dict[str, list[np.ndarray]] = {"users": [], "items": []}
        if rating:
            self.parts["rating"] = []
        if timestamp:
            self.parts["timestamp"] = []

    def add(
        self,
        users: pd.Series | Sequence[Any],
        items: pd.Series | Sequence[Any],
        rating: np.ndarray | None = None,
        timestamp: np.ndarray | None = None,
    ) -> None:
        """Append one chunk: raw ids [n] and, for the columns this collects, values [n]."""
        self.parts["users"].append(self.user_codes.encode(users))
        self.parts["items"].append(self.item_codes.encode(items))
        for name, values in (("rating", rating), ("timestamp", timestamp)):
            if name in self.parts:
                assert values is not None, f"the chunk lacks its {name} column"
                self.parts[name].append(np.asarray(values))

    def finish(self) -> RawInteractions:
        """The collected columns, concatenated."""
        columns = {
            name: np.concatenate(chunks) if chunks else np.empty(0)
            for name, chunks in self.parts.items()
        }
        return RawInteractions(
            users=columns["users"].astype(np.int32, copy=False),
            items=columns["items"].astype(np.int32, copy=False),
            user_ids=self.user_codes.ids(),
            item_ids=self.item_codes.ids(),
            rating=columns.get("rating"),
            timestamp=columns.get("timestamp"),
        )


def drop_incomplete_and_duplicates(raw: RawInteractions) -> tuple[np.ndarray, dict[str, int]]:
    """MMRec's cleaning: drop rows missing user, item or timestamp, then duplicate
    (user, item, timestamp) rows, keeping the first (without a timestamp column: duplicate
    (user, item) rows). Returns the kept row indices int64 [M] in file order and the drop
    counts."""
    complete = (raw.users >= 0) & (raw.items >= 0)
    if raw.timestamp is not None:
        complete &= ~pd.isna(raw.timestamp)
    rows = np.flatnonzero(complete)
    keys = {"user": raw.users[rows], "item": raw.items[rows]}
    if raw.timestamp is not None:
        keys["timestamp"] = raw.timestamp[rows]
    kept = rows[~pd.DataFrame(keys).duplicated(keep="first").to_numpy()]
    dropped = {
        "incomplete_rows": len(raw.users) - len(rows),
        "duplicate_rows": len(rows) - len(kept),
    }
    return kept, dropped


def kcore_mask(users: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Rows kept by the k-core: every kept user and item has at least ``k`` kept rows.

    Users and items below ``k`` are dropped together, then counts are recomputed, until no
    user or item is below ``k`` (MMRec's ``filter_by_k_core``). ``k <= 1`` keeps every row.

    Args:
        users, items: integer codes [N] (e.g. from :class:`IdCodes`).
        k: minimum number of rows per user and per item.

    Returns:
        (bool mask [N], number of passes that removed something).
    """
    keep = np.ones(len(users), dtype=bool)
    if k <= 1 or len(users) == 0:
        return keep, 0
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    passes = 0
    while True:
        user_count = np.bincount(users[keep], minlength=n_users)
        item_count = np.bincount(items[keep], minlength=n_items)
        bad = keep & ((user_count[users] < k) | (item_count[items] < k))
        if not bad.any():
            return keep, passes
        keep &= ~bad
        passes += 1


def first_appearance_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Number values from 0 in order of first appearance: (int64 codes [N], uniques [n])."""
    codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int64), np.asarray(uniques)


def mmrec_order(users: np.ndarray, seed: int) -> np.ndarray:
    """Row order of an MMRec ``.inter`` file: seeded shuffle, then a stable sort by user.

    All rows are permuted with ``numpy.random.default_rng(seed).permutation``; a stable sort by
    user then groups each user's rows while keeping the shuffled order within the user.

    Returns:
        int64 indices into ``users`` (``users[order]`` is sorted).
    """
    users = np.asarray(users)
    perm = np.random.default_rng(seed).permutation(len(users))
    return perm[np.argsort(users[perm], kind="stable")].astype(np.int64)


def split_mmrec(users: np.ndarray, seed: int) -> np.ndarray:
    """Seeded per-user train/valid/test split in the MMRec convention.

    Rows are taken in the order of :func:`mmrec_order`. For a user with ``n`` rows, the last
    ``k`` rows (in that order) are held out, ``v`` for validation and then ``t`` for test:

    * ``n >= 10``: ``k = n // 5`` (20 %, rounded down), ``v = k // 2``, ``t = k - v``
      (the odd row goes to test);
    * ``3 <= n < 10``: ``v = t = 1``;
    * ``n < 3``: nothing held out.

    E.g. 5 rows -> 3/1/1, 20 -> 16/2/2, 25 -> 20/2/3, 59 -> 48/5/6.

    Args:
        users: one user id per interaction row (any sortable dtype).
        seed: seed of the shuffle.

    Returns:
        int8 ``x_label`` aligned with the input rows: 0 train, 1 valid, 2 test.
    """
    users = np.asarray(users)
    n_rows = len(users)
    labels = np.zeros(n_rows, dtype=np.int8)
    if n_rows == 0:
        return labels
    order = mmrec_order(users, seed)
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    sizes = np.diff(np.r_[starts, n_rows])
    held = np.where(sizes >= 10, sizes // 5, np.where(sizes >= 3, 2, 0))
    n_valid = held // 2
    n_test = held - n_valid
    size_row = np.repeat(sizes, sizes)
    pos = np.arange(n_rows) - np.repeat(starts, sizes)
    from_end = size_row - pos  # 1 for a user's last row
    sorted_labels = np.where(
        from_end <= np.repeat(n_test, sizes),
        2,
        np.where(from_end <= np.repeat(held, sizes), 1, 0),
    ).astype(np.int8)
    labels[order] = sorted_labels
    return labels


def build_interactions(
    raw: RawInteractions | pd.DataFrame, k: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict[str, Any]]:
    """Clean, k-core, number and split raw interactions.

    Args:
        raw: the interactions as read (:class:`RawInteractions`), or a frame with columns
            ``user``, ``item`` (str) and optionally ``rating``, ``timestamp`` (numbers or
            NaN), in file order.
        k: k-core threshold (1 = no filtering).
        seed: split seed.

    Returns:
        ``(inter, user_ids, item_ids, stats)``: ``inter`` has int64 ``userID``, ``itemID``,
        ``rating`` and ``timestamp`` when given, and int8 ``x_label``, rows in
        :func:`mmrec_order`;
        ``user_ids[u]`` / ``item_ids[i]`` are the raw ids (first appearance after the k-core).
    """
    if isinstance(raw, pd.DataFrame):
        raw = RawInteractions.from_frame(raw)
    raw_rows = len(raw.users)
    rows, dropped = drop_incomplete_and_duplicates(raw)
    keep, passes = kcore_mask(raw.users[rows], raw.items[rows], k)
    kept = rows[keep]
    if len(kept) == 0:
        raise MentorError(
            f"no interaction is left after the {k}-core ({raw_rows:,} rows read); "
            "use a smaller --kcore or more data"
        )
    users, user_codes = first_appearance_codes(raw.users[kept])
    items, item_codes = first_appearance_codes(raw.items[kept])
    user_ids = raw.user_ids[user_codes.astype(np.int64)]
    item_ids = raw.item_ids[item_codes.astype(np.int64)]
    labels = split_mmrec(users, seed)
    order = mmrec_order(users, seed)
    columns = {"userID": users[order], "itemID": items[order]}
    for name in ("rating", "timestamp"):
        values = getattr(raw, name)
        if values is not None:
            columns[name] = values[kept][order]
    columns["x_label"] = labels[order]
    inter = pd.DataFrame(columns)
    stats = {
        "rows_read": raw_rows,
        **dropped,
        "kcore_dropped_rows": int(len(rows) - len(kept)),
        "kcore_passes": passes,
    }
    return inter, user_ids, item_ids, stats


def split_counts(labels: np.ndarray, n_users: int, n_items: int) -> dict[str, int]:
    """``users items interactions train valid test`` of a split (``x_label`` [N])."""
    labels = np.asarray(labels)
    return {
        "users": int(n_users),
        "items": int(n_items),
        "interactions": len(labels),
        "train": int(np.sum(labels == 0)),
        "valid": int(np.sum(labels == 1)),
        "test": int(np.sum(labels == 2)),
    }


def write_interactions(
    folder: Path,
    name: str,
    inter: pd.DataFrame,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    user_header: str = "user_id",
    item_header: str = "item_id",
) -> None:
    """Write ``<name>.inter`` and the two id mappings (tab-separated, with headers)."""
    folder = Path(folder)
    if not name or name.startswith(".") or any(c in name for c in "/\\\t\n"):
        raise MentorError(f"data set name {name!r} must be a plain file name (see --name)")
    inter.to_csv(folder / f"{name}.inter", sep="\t", index=False, lineterminator="\n")
    for path, header, internal, ids in (
        (folder / USER_MAP_FILE, user_header, "userID", user_ids),
        (folder / ITEM_MAP_FILE, item_header, "itemID", item_ids),
    ):
        ids = np.asarray(ids, dtype=object).astype(str)
        bad = [i for i in ids[:100_000] if "\t" in i or "\n" in i]
        if bad:
            raise MentorError(f"id {bad[0]!r} holds a tab or newline; ids must be one token")
        pd.DataFrame({header: ids, internal: np.arange(len(ids))}).to_csv(
            path, sep="\t", index=False, lineterminator="\n"
        )


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------


def save_feature(folder: Path, modality: str, feat: np.ndarray) -> None:
    """Save ``<modality>_feat.npy`` as float32 [n_items, dim] (no pickle)."""
    np.save(Path(folder) / f"{modality}_feat.npy", np.ascontiguousarray(feat, dtype=np.float32))


def encode_text_feature(
    folder: Path,
    meta: dict[str, Any],
    texts: Sequence[str | None],
    model: Any,
    work: Path,
    progress: bool,
    source: str,
) -> dict[str, Any]:
    """Encode ``texts`` (one per item, ``None`` for none) with the text encoder ``model`` (a name,
    a folder, an encoder object or ``None`` for MiniLM), save ``text_feat.npy`` [n_items, dim] in
    ``folder`` and record its provenance (``source``: what the texts are) in ``meta``.

    Returns the provenance entry (stored in ``meta``, so callers may add to it)."""
    from mentor.features.extract import text_encoder_from, text_features

    feat, info = text_features(texts, text_encoder_from(model, progress), work / "text", progress)
    save_feature(folder, "text", feat)
    meta["text_feat.npy"] = {**info, "input": source}
    return meta["text_feat.npy"]


def encode_image_feature(
    folder: Path,
    meta: dict[str, Any],
    paths: Sequence[Path | None],
    model: Any,
    work: Path,
    progress: bool,
    warn: Callable[[str], None],
    source: str,
) -> dict[str, Any]:
    """Encode the images at ``paths`` (one per item, ``None`` for none) with the image encoder
    ``model`` (a file, an encoder object, or ``None`` for the announced weight-free descriptor),
    save ``image_feat.npy`` [n_items, dim] and record its provenance in ``meta``.

    Returns the provenance entry (stored in ``meta``)."""
    from mentor.features.extract import image_encoder_from, image_features

    encoder = image_encoder_from(model, warn)
    feat, info = image_features(paths, encoder, work / "image", progress, warn=warn)
    save_feature(folder, "image", feat)
    meta["image_feat.npy"] = {**info, "input": source}
    return meta["image_feat.npy"]


def image_folder_paths(
    folder: Path, ids: Sequence[str], warn: Callable[[str], None]
) -> list[Path | None]:
    """The ``<id>.<ext>`` image of every id in ``folder`` (``None`` where there is none); what
    the scan notices (other files, several images for one id) goes to ``warn``."""
    from mentor.features.image import scan_image_folder

    paths, notes = scan_image_folder(Path(folder), list(ids))
    for note in notes:
        warn(note)
    return paths


# --------------------------------------------------------------------------------------------
# output folder
# --------------------------------------------------------------------------------------------


def fresh_dir(parent: Path, prefix: str) -> Path:
    """Create and return a new, uniquely named folder in ``parent`` (default permissions)."""
    while True:
        path = parent / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path


WORK_PREFIX = ".mentor-work-"


@contextmanager
def feature_work(out: Path, work_dir: Path | None) -> Iterator[Path]:
    """The folder that keeps finished feature chunks while ``out`` is prepared.

    It is always a folder this function names and owns: ``.<out>.work`` beside ``out`` by
    default, or ``.mentor-work-<out>`` inside a given ``work_dir`` (which is never removed, nor
    anything else in it). The owned folder survives a failure, so a rerun resumes from its
    chunks, and is removed once the body finishes without error.
    """
    out = Path(out)
    if work_dir is None:
        work = out.parent / f".{out.name}.work"
    else:
        work = Path(work_dir) / f"{WORK_PREFIX}{out.name}"
    yield work
    shutil.rmtree(work, ignore_errors=True)


def _replaceable(out: Path) -> bool:
    """Whether ``out`` may be replaced: missing, empty, or a folder made by ``mentor data
    prepare`` (its meta.json says so)."""
    if not out.exists():
        return True
    if not out.is_dir():
        return False
    if not any(out.iterdir()):
        return True
    try:
        meta = json.loads((out / META_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "prepared_by" in meta


@contextmanager
def staged_output(out: Path, checked: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``out``; on success it is renamed to ``out``.

    On any error the temporary folder is removed and ``out`` is left as it was. An existing
    ``out`` is replaced only when it is empty or was itself made by ``mentor data prepare``
    (``checked=True``: the caller has already decided that ``out`` may be replaced).

    Raises:
        MentorError: ``out`` holds something else.
    """
    out = Path(out)
    if not checked and not _replaceable(out):
        raise MentorError(
            f"{out}: exists and is not a folder made by 'mentor data prepare'; "
            "choose a new --out folder"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = fresh_dir(out.parent, f".{out.name}.tmp-")
    old: Path | None = None
    try:
        yield tmp
        if out.exists():
            old = fresh_dir(out.parent, f".{out.name}.old-")
            out.rename(old / out.name)
        try:
            tmp.rename(out)
        except OSError:
            if old is not None:
                (old / out.name).rename(out)
                old = None
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def base_meta(source: str, files: dict[str, Path], k: int, seed: int) -> dict[str, Any]:
    """The common head of ``meta.json``: tool version, source, input files with checksums,
    k-core and split recipe."""
    return {
        "prepared_by": f"mentor {__version__} (mentor data prepare)",
        "source": source,
        "inputs": {role: file_record(path) for role, path in files.items()},
        "kcore": {
            "k": k,
            "recipe": "drop rows missing user/item/timestamp and duplicate (user, item, "
            "timestamp) rows; drop users and items with fewer than k rows, repeated until stable",
        },
        "ids": "users and items numbered from 0 in order of first appearance after the k-core",
        "split": {
            "seed": seed,
            "recipe": "MMRec convention: shuffle (numpy default_rng(seed)), stable sort by user; "
            "per user: <10 rows -> last two are valid/test, else 20% valid+test split evenly "
            "(the odd row to test)",
        },
    }


ITEM_META_FILE = "item_meta.jsonl"


def write_item_meta(
    folder: Path,
    ids: Sequence[str],
    titles: Sequence[str | None],
    texts: Sequence[str | None] | None = None,
    images: Sequence[Path | str | None] | None = None,
) -> int:
    """Write ``item_meta.jsonl``: one display record per item, ``{"item_id", "title"?,
    "text"?, "image"?}`` (empty fields and missing image files left out; an image is an
    http(s) URL or an absolute path), which ``mentor bundle`` carries to the service's web
    page. Returns the records written."""
    lines = []
    for j, item in enumerate(ids):
        record: dict[str, str] = {"item_id": str(item)}
        fields = {
            "title": titles[j],
            "text": texts[j] if texts is not None else None,
            "image": images[j] if images is not None else None,
        }
        for name, value in fields.items():
            if value is None or not str(value).strip():
                continue
            if name == "image" and not str(value).startswith(("http://", "https://")):
                value = Path(value).resolve()
                if not value.is_file():  # a missing file shows no image
                    continue
            record[name] = " ".join(str(value).split()) if name == "text" else str(value).strip()
        lines.append(json.dumps(record, ensure_ascii=False))
    (Path(folder) / ITEM_META_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` (UTF-8, indented)."""
    text = json.dumps(meta, indent=1, ensure_ascii=False, default=str)
    (Path(folder) / META_FILE).write_text(text + "\n", "utf-8")


def read_meta(folder: Path) -> dict[str, Any] | None:
    """``meta.json`` of a data folder, or ``None`` when absent or unreadable."""
    try:
        meta = json.loads((Path(folder) / META_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None

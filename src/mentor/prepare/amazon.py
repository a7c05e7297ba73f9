"""Amazon review data (2014, 2018 and 2023 releases) -> MMRec layout, by the official recipe.

Inputs, plain or gzip (detected from the bytes, not the name):

* interactions: the 2014 ratings-only CSV (``user,item,rating,timestamp``, no header), or reviews
  as JSON lines: 2014 and 2018 (``reviewerID, asin, overall, unixReviewTime``) or 2023
  (``user_id, parent_asin, rating, timestamp`` in milliseconds);
* metadata: one record per line, JSON (2018, 2023) or a Python literal (2014), read with
  ``json.loads`` or ``ast.literal_eval`` -- never ``eval``;
* image features: the ``image_features_<Category>.b`` records (10 ASCII bytes of asin, then 4096
  little-endian float32), or a folder of ``<asin>.jpg`` images for an image encoder.

Recipe (MMRec ``preprocessing/*.ipynb``): drop incomplete and duplicate rows, 5-core until
stable, ids by first appearance, a seeded per-user split; text is
``title + ' ' + brand + ' ' + (each name of the first category path + ' ') + description``
with newlines as spaces and missing fields as ``' '``, encoded with all-MiniLM-L6-v2; items
without an image record get the mean of the found records.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mentor.errors import MentorError, Warn, warn_stderr
from mentor.features.extract import check_image_encoder, check_text_encoder, fill_missing
from mentor.prepare.steps import (
    CHUNK_ROWS,
    InteractionColumns,
    LineProblems,
    RawInteractions,
    base_meta,
    build_interactions,
    encode_image_feature,
    encode_text_feature,
    feature_work,
    image_folder_paths,
    is_gzip,
    read_lines,
    save_feature,
    split_counts,
    staged_output,
    write_interactions,
    write_item_meta,
    write_meta,
)

IMAGE_RECORD = np.dtype([("asin", "S10"), ("feat", "<f4", (4096,))])
"""One record of an Amazon ``.b`` image-feature file (16,394 bytes)."""

REVIEW_KEYS = {
    "2014/2018 reviews": ("reviewerID", "asin", "overall", "unixReviewTime"),
    "2023 reviews": ("user_id", "parent_asin", "rating", "timestamp"),
}
SENTENCE_RECIPE = (
    "title + ' ' + brand + ' ' + (each name of the first category path + ' ') + description; "
    "newlines as spaces, a missing field as ' ' (MMRec 3feat-encoder); 2018: category is the "
    "path, description list joined with ' '; 2023: store as brand, categories as the path"
)
_ID_PATTERN = re.compile(r"""["'](?:parent_asin|asin)["']\s*:\s*["']([^"']+)["']""")


# --------------------------------------------------------------------------------------------
# interactions
# --------------------------------------------------------------------------------------------


def _first_record_line(path: Path) -> str:
    for _, line in read_lines(path):
        return line.strip()
    raise MentorError(f"{path}: the file is empty")


def read_ratings_csv(path: Path, chunk_rows: int = CHUNK_ROWS) -> RawInteractions:
    """The 2014 ratings-only CSV: ``user,item,rating,timestamp`` without a header, read
    ``chunk_rows`` lines at a time into compact columns.

    Returns:
        the interactions in file order; ``rating`` and ``timestamp`` are floats (NaN when not
        a number).
    """
    path = Path(path)
    _first_record_line(path)  # missing, empty or truncated files fail here with one line
    columns = InteractionColumns(rating=True, timestamp=True)
    any_time = False
    try:
        chunks = pd.read_csv(
            path,
            header=None,
            dtype=str,
            keep_default_na=False,
            compression="gzip" if is_gzip(path) else None,
            on_bad_lines="error",
            chunksize=chunk_rows,
        )
        for chunk in chunks:
            if chunk.shape[1] != 4:
                raise MentorError(
                    f"{path}: line 1 has {chunk.shape[1]} fields; a ratings CSV has 4 columns "
                    "user,item,rating,timestamp and no header"
                )
            times = pd.to_numeric(chunk[3].replace("", np.nan), errors="coerce").to_numpy()
            any_time = any_time or not np.isnan(times).all()
            columns.add(
                chunk[0],
                chunk[1],
                pd.to_numeric(chunk[2].replace("", np.nan), errors="coerce").to_numpy(),
                times,
            )
    except (EOFError, OSError) as exc:
        raise MentorError(f"{path}: the gzip stream is truncated or corrupt ({exc})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[-1]
        raise MentorError(
            f"{path}: not a ratings CSV of 4 columns user,item,rating,timestamp ({first})"
        ) from None
    if not any_time:
        raise MentorError(
            f"{path}: column 4 (timestamp) is never a number; expected user,item,rating,"
            "timestamp without a header (for reviews in JSON lines use --reviews)"
        )
    return columns.finish()


def _parse_record(line: str) -> Any:
    """JSON, else a Python literal (2014 metadata); ``None`` when the line is neither."""
    try:
        return json.loads(line)
    except ValueError:
        pass
    try:
        return ast.literal_eval(line.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def read_reviews(
    path: Path, warn: Warn = warn_stderr, chunk_rows: int = CHUNK_ROWS
) -> tuple[RawInteractions, dict[str, Any]]:
    """Reviews as JSON lines (2014, 2018 or 2023 release; the keys tell which).

    Lines that are not a record, or lack a key, are skipped, counted and reported through
    ``warn``.

    Returns:
        (the interactions in file order, collected ``chunk_rows`` records at a time, with float
        ``rating`` and ``timestamp`` (NaN when not a number),
        {"format": ..., "skipped_lines": {reason: count}}).
    """
    path = Path(path)
    problems = LineProblems(path)
    keys: tuple[str, ...] | None = None
    fmt = ""
    columns = InteractionColumns(rating=True, timestamp=True)
    chunk: tuple[list[Any], list[Any], list[Any], list[Any]] = ([], [], [], [])

    def flush() -> None:
        users, items, ratings, times = chunk
        columns.add(
            users,
            items,
            pd.to_numeric(pd.Series(ratings, dtype=object), errors="coerce").to_numpy(),
            pd.to_numeric(pd.Series(times, dtype=object), errors="coerce").to_numpy(),
        )
        for values in chunk:
            values.clear()

    for number, line in read_lines(path):
        record = _parse_record(line)
        if not isinstance(record, dict):
            problems.add("not a JSON record", number)
            continue
        if keys is None:
            for name, candidate in REVIEW_KEYS.items():
                if candidate[0] in record and candidate[1] in record:
                    keys, fmt = candidate, name
                    break
            else:
                raise MentorError(
                    f"{path}: line {number}: a review needs reviewerID and asin (2014/2018) or "
                    f"user_id and parent_asin (2023); found keys {sorted(record)[:8]}"
                )
        user, item = record.get(keys[0]), record.get(keys[1])
        if user is None or item is None:
            problems.add(f"no {keys[0]} or {keys[1]}", number)
            continue
        chunk[0].append(str(user))
        chunk[1].append(str(item))
        chunk[2].append(record.get(keys[2]))
        chunk[3].append(record.get(keys[3]))
        if len(chunk[0]) >= chunk_rows:
            flush()
    if keys is None:
        raise MentorError(f"{path}: no review record in the file")
    flush()
    for message in problems.messages():
        warn(message)
    info = {"format": fmt, "skipped_lines": problems.as_dict()}
    if fmt == "2023 reviews":
        info["timestamp_unit"] = "milliseconds"
    return columns.finish(), info


# --------------------------------------------------------------------------------------------
# metadata and sentences
# --------------------------------------------------------------------------------------------


def read_metadata(
    path: Path, wanted: set[str], warn: Warn = warn_stderr
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Metadata records of the ``wanted`` asins (first record wins).

    Each line is parsed with ``json.loads``, or ``ast.literal_eval`` for the 2014 Python-literal
    format; a line whose asin is not wanted is not parsed at all. The id is ``parent_asin``
    (2023) or ``asin``.

    Returns:
        ({asin: record}, {"duplicates": n, "skipped_lines": {reason: count}}).
    """
    path = Path(path)
    problems = LineProblems(path)
    records: dict[str, dict[str, Any]] = {}
    duplicates = 0
    for number, line in read_lines(path):
        ids = _ID_PATTERN.findall(line[:4096]) or _ID_PATTERN.findall(line)
        if ids and not any(i in wanted for i in ids):
            continue
        record = _parse_record(line)
        if not isinstance(record, dict):
            problems.add("not a record (neither JSON nor a Python literal)", number)
            continue
        asin = record.get("parent_asin", record.get("asin"))
        if asin is None:
            problems.add("no asin or parent_asin", number)
            continue
        asin = str(asin)
        if asin not in wanted:
            continue
        if asin in records:
            duplicates += 1
            continue
        records[asin] = record
    for message in problems.messages():
        warn(message)
    if duplicates:
        warn(f"{path}: {duplicates:,} duplicate metadata record(s); the first one was kept")
    return records, {"duplicates": duplicates, "skipped_lines": problems.as_dict()}


def image_url(record: dict[str, Any]) -> str | None:
    """The product image URL of a metadata record (2014 ``imUrl``; 2018 ``imageURLHighRes`` or
    ``imageURL``, the first of the list), or None."""
    for key in ("imUrl", "imageURLHighRes", "imageURL"):
        value = record.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return value
    return None


def _field(value: Any) -> str:
    """A text field as the official recipe reads it: missing or empty -> ``' '``."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return " "
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value)
    text = str(value)
    return text if text else " "


def category_path(record: dict[str, Any]) -> list[str]:
    """The first category path: 2014 ``categories[0]``; 2018 ``category`` and 2023
    ``categories`` are already one flat path."""
    cats = record.get("categories", record.get("category"))
    if not isinstance(cats, (list, tuple)) or not cats:
        return []
    first = cats[0] if isinstance(cats[0], (list, tuple)) else cats
    return [str(c) for c in first]


def amazon_sentence(record: dict[str, Any]) -> str:
    """MMRec's item sentence (see :data:`SENTENCE_RECIPE`)."""
    brand = record.get("brand", record.get("store"))
    sentence = _field(record.get("title")) + " " + _field(brand) + " "
    for name in category_path(record):
        sentence += name + " "
    sentence += _field(record.get("description"))
    return sentence.replace("\n", " ")


# --------------------------------------------------------------------------------------------
# image records
# --------------------------------------------------------------------------------------------


def read_image_records(
    path: Path, item_ids: np.ndarray, warn: Warn = warn_stderr, block: int = 1024
) -> tuple[np.ndarray, dict[str, Any]]:
    """Rows of a ``.b`` image-feature file for ``item_ids``; the mean vector for the others.

    Args:
        path: plain or gzip ``.b`` file of :data:`IMAGE_RECORD` records.
        item_ids: [n_items] asins, row i of the result is item i.
        block: records read at a time.

    Returns:
        (float32 [n_items, 4096], meta.json entry with found / missing / duplicate counts).
    """
    path = Path(path)
    if not path.is_file():
        raise MentorError(f"{path}: no such file; check --image-features")
    index = {str(a): i for i, a in enumerate(item_ids)}
    feat = np.zeros((len(item_ids), IMAGE_RECORD["feat"].shape[0]), dtype=np.float32)
    found = np.zeros(len(item_ids), dtype=bool)
    duplicates = records = 0
    size = IMAGE_RECORD.itemsize
    opener = gzip.open if is_gzip(path) else open
    try:
        with opener(path, "rb") as handle:
            while True:
                data = handle.read(size * block)
                if not data:
                    break
                if len(data) % size:
                    raise MentorError(
                        f"{path}: ends inside record {records + len(data) // size + 1} "
                        f"({len(data) % size} stray bytes); each record is 10 bytes of asin + "
                        "4096 float32 -- the file is truncated, download it again"
                    )
                chunk = np.frombuffer(data, dtype=IMAGE_RECORD)
                for asin, vector in zip(chunk["asin"], chunk["feat"], strict=True):
                    row = index.get(asin.decode("ascii", "replace"))
                    if row is None:
                        continue
                    if found[row]:
                        duplicates += 1
                        continue
                    feat[row] = vector
                    found[row] = True
                records += len(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise MentorError(f"{path}: the gzip stream is truncated or corrupt ({exc})") from None
    if not np.isfinite(feat[found]).all():
        raise MentorError(f"{path}: a record holds NaN or inf; the file is damaged")
    missing = int((~found).sum())
    if missing:
        warn(f"{missing:,} of {len(item_ids):,} item(s) have no image record; mean vector used")
    if duplicates:
        warn(f"{path}: {duplicates:,} duplicate record(s) for an item; the first was kept")
    info = {
        "encoder": "Amazon's precomputed image features (.b records, 4096-d CNN fc7 layer)",
        "dim": int(feat.shape[1]),
        "records_in_file": records,
        "missing": missing,
        "duplicates": duplicates,
        "missing_filled_with": "mean of the found image vectors (MMRec recipe)"
        if found.any()
        else "zeros (no item has a record)",
    }
    return fill_missing(feat, found, "mean"), info


# --------------------------------------------------------------------------------------------
# the whole preparation
# --------------------------------------------------------------------------------------------


def prepare_amazon(
    out: Path,
    meta: Path,
    ratings: Path | None = None,
    reviews: Path | None = None,
    image_features: Path | None = None,
    images: Path | None = None,
    *,
    kcore: int = 5,
    seed: int = 2026,
    name: str | None = None,
    text_model: Any = None,
    image_model: Any = None,
    work_dir: Path | None = None,
    progress: bool = True,
    warn: Warn = warn_stderr,
) -> dict[str, Any]:
    """Build an MMRec-layout folder from Amazon review data (see the module docstring).

    Args:
        out: destination folder (written atomically).
        meta: metadata file.
        ratings, reviews: exactly one interactions file (ratings CSV or reviews JSON lines).
        image_features: ``.b`` image records -> ``image_feat.npy`` [n_items, 4096].
        images: or a folder of ``<asin>.<ext>`` files, encoded with ``image_model``.
        kcore: k of the k-core.
        seed: split seed.
        name: data set name (``<name>.inter``); the folder name by default.
        text_model: a text encoder callable with ``describe``/``identity`` (e.g.
            :class:`mentor.features.text.TextEncoder`), or a model name/folder for one.
        image_model: an image encoder, or a model file, or ``None``/"descriptor" for the
            weight-free descriptor (announced through ``warn``).
        work_dir: where finished feature chunks are kept; ``.<out>.work`` beside ``out``.
        progress: show progress bars.
        warn: receives one line per counted problem.

    Returns:
        The content of ``meta.json``.
    """
    out = Path(out)
    if (ratings is None) == (reviews is None):
        raise MentorError("give exactly one of --ratings FILE (2014 CSV) or --reviews FILE")
    if image_features is not None and images is not None:
        raise MentorError("give --image-features FILE.b or --images DIR, not both")
    check_text_encoder(text_model)
    if images is not None:
        check_image_encoder(image_model, "the image encoder of --images")
    inter_path = Path(ratings) if ratings is not None else Path(str(reviews))
    if ratings is not None:
        raw = read_ratings_csv(inter_path)
        inter_info: dict[str, Any] = {"format": "2014 ratings CSV"}
    else:
        raw, inter_info = read_reviews(inter_path, warn)
    inter, user_ids, item_ids, stats = build_interactions(raw, kcore, seed)
    records, meta_info = read_metadata(Path(meta), {str(a) for a in item_ids}, warn)

    texts = [amazon_sentence(records[a]) if a in records else None for a in map(str, item_ids)]
    no_record = sum(t is None for t in texts)
    if no_record:
        warn(f"{no_record:,} item(s) have no metadata record; their text features are zeros")

    files = {"interactions": inter_path, "meta": Path(meta)}
    if image_features is not None:
        files["image_features"] = Path(image_features)
    result = base_meta("Amazon review data (McAuley et al.)", files, kcore, seed)
    result["inputs"]["interactions"].update(inter_info)
    result["inputs"]["meta"].update(meta_info)
    result["interactions"] = stats
    with feature_work(out, work_dir) as work, staged_output(out) as tmp:
        write_interactions(tmp, name or out.name, inter, user_ids, item_ids, "user_id", "asin")
        text_info = encode_text_feature(
            tmp, result, texts, text_model, work, progress, SENTENCE_RECIPE
        )
        text_info["no_metadata_record"] = text_info.pop("missing")
        if image_features is not None:
            image_feat, image_info = read_image_records(Path(image_features), item_ids, warn)
            save_feature(tmp, "image", image_feat)
            result["image_feat.npy"] = image_info
        elif images is not None:
            paths = image_folder_paths(Path(images), [str(a) for a in item_ids], warn)
            source = f"{Path(images).resolve()}/<asin>.<ext>"
            encode_image_feature(tmp, result, paths, image_model, work, progress, warn, source)
        asins = [str(a) for a in item_ids]
        shown = [records.get(a, {}) for a in asins]
        write_item_meta(
            tmp,
            asins,
            [_field(r.get("title")) for r in shown],
            [_field(r.get("description")) for r in shown],
            paths if images is not None else [image_url(r) for r in shown],
        )
        result["counts"] = split_counts(inter["x_label"], len(user_ids), len(item_ids))
        write_meta(tmp, result)
    return result

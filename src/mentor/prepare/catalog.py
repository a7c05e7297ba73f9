"""Any catalogue as CSV files -> MMRec layout with text and image features.

Two files: interactions (one row per user-item event) and items (one row per item, with text
columns and optionally an image path column). Comma-separated, or tab-separated when the name
ends in ``.tsv``/``.tab`` (optionally ``.gz``); the first line is the header.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mentor.errors import MentorError, Warn, warn_stderr
from mentor.features.extract import check_image_encoder, check_text_encoder
from mentor.prepare.steps import (
    CHUNK_ROWS,
    InteractionColumns,
    RawInteractions,
    base_meta,
    build_interactions,
    encode_image_feature,
    encode_text_feature,
    feature_work,
    image_folder_paths,
    is_gzip,
    split_counts,
    staged_output,
    write_interactions,
    write_item_meta,
    write_meta,
)

TEXT_RECIPE = "the non-empty values of {cols}, in that order, joined with ' '"


def _csv_reader(path: Path, role: str, **options: Any) -> Any:
    """``pandas.read_csv`` of a CSV/TSV file (plain or gzip) as strings, with one-line errors
    for what fails before the first row is parsed."""
    if not path.is_file():
        raise MentorError(f"{path}: no such file; check --{role}")
    name = path.name.lower().removesuffix(".gz")
    try:
        return pd.read_csv(
            path,
            sep="\t" if name.endswith((".tsv", ".tab")) else ",",
            dtype=str,
            keep_default_na=False,
            compression="gzip" if is_gzip(path) else None,
            **options,
        )
    except pd.errors.EmptyDataError:
        raise MentorError(f"{path}: the file is empty; it needs a header line and rows") from None
    except (EOFError, OSError) as exc:
        raise MentorError(f"{path}: the gzip stream is truncated or corrupt ({exc})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[-1]
        raise MentorError(f"{path}: not a readable CSV file ({first})") from None


def _check_columns(path: Path, found: Sequence[str], columns: Sequence[str], role: str) -> None:
    missing = [c for c in columns if c not in found]
    if missing:
        raise MentorError(
            f"{path}: line 1: no column {missing[0]!r} (columns: {', '.join(found)}); "
            f"check the --{role} column options"
        )


def read_table(path: Path, columns: Sequence[str], role: str) -> pd.DataFrame:
    """Read a CSV/TSV file (plain or gzip) as strings and check that ``columns`` exist.

    Raises:
        MentorError: unreadable file or a missing column (named, with the columns found).
    """
    path = Path(path)
    frame = _csv_reader(path, role)
    frame.columns = [str(c).strip() for c in frame.columns]
    _check_columns(path, list(frame.columns), columns, role)
    return frame


def read_interactions(
    path: Path,
    user_col: str,
    item_col: str,
    time_col: str | None = None,
    rating_col: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> RawInteractions:
    """The interactions file read ``chunk_rows`` lines at a time into compact columns.

    Only the named columns are parsed; ids are stripped (an empty id is missing), ratings are
    numbers (NaN otherwise), times numbers or dates (see :func:`_time_values`, decided per
    chunk). Memory grows with the interactions' int32/float64 columns, not the file's text.

    Raises:
        MentorError: unreadable file or a missing column (named, with the columns found).
    """
    path = Path(path)
    header = [str(c).strip() for c in _csv_reader(path, "interactions", nrows=0).columns]
    wanted = [c for c in (user_col, item_col, time_col, rating_col) if c]
    _check_columns(path, header, wanted, "interactions")
    positions = sorted({header.index(c) for c in wanted})
    names = {n: header[n] for n in positions}
    columns = InteractionColumns(rating_col is not None, time_col is not None)
    for chunk in _csv_reader(path, "interactions", usecols=positions, chunksize=chunk_rows):
        chunk.columns = [names[n] for n in positions]
        columns.add(
            chunk[user_col].str.strip(),
            chunk[item_col].str.strip(),
            pd.to_numeric(chunk[rating_col].str.strip(), errors="coerce").to_numpy()
            if rating_col
            else None,
            _time_values(chunk[time_col]).to_numpy() if time_col else None,
        )
    return columns.finish()


def dedupe_catalogue(
    items: pd.DataFrame, item_col: str, path: Path, warn: Warn
) -> tuple[pd.DataFrame, int]:
    """One row per item id: the first row wins; the others are counted and reported."""
    ids = items[item_col].str.strip()
    dup = ids.duplicated(keep="first").to_numpy()
    if dup.any():
        first = int(np.flatnonzero(dup)[0])
        warn(
            f"{path}: {int(dup.sum()):,} row(s) repeat an item id already seen (e.g. "
            f"{ids.iloc[first]!r} on line {first + 2}); the first row of each id was kept"
        )
    kept = items[~dup].copy()
    kept.index = ids[~dup].to_numpy()
    return kept, int(dup.sum())


def join_text(row: pd.Series, columns: Sequence[str]) -> str | None:
    """The non-empty values of ``columns`` joined with ``' '``; None when all are empty."""
    parts = [str(row[c]).strip() for c in columns if str(row[c]).strip()]
    return " ".join(parts).replace("\n", " ") if parts else None


def image_paths_from_column(
    catalogue: pd.DataFrame, item_ids: Sequence[str], column: str, base: Path
) -> list[Path | None]:
    """Image file per item from ``column`` (relative paths are relative to ``base``)."""
    out: list[Path | None] = []
    for item in item_ids:
        value = str(catalogue.at[item, column]).strip() if item in catalogue.index else ""
        if not value:
            out.append(None)
            continue
        path = Path(value).expanduser()
        out.append(path if path.is_absolute() else base / path)
    return out


def _time_values(values: pd.Series) -> pd.Series:
    """Numbers as they are; otherwise dates parsed to Unix seconds (NaN when unparseable)."""
    values = values.str.strip()
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == values.ne("").sum():
        return numeric
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return seconds.where(parsed.notna())


def prepare_csv(
    out: Path,
    interactions: Path,
    items: Path,
    user_col: str,
    item_col: str,
    *,
    time_col: str | None = None,
    rating_col: str | None = None,
    text_cols: Sequence[str] = (),
    image_col: str | None = None,
    images: Path | None = None,
    kcore: int = 5,
    seed: int = 2026,
    name: str | None = None,
    text_model: Any = None,
    image_model: Any = None,
    work_dir: Path | None = None,
    progress: bool = True,
    warn: Warn = warn_stderr,
) -> dict[str, Any]:
    """Build an MMRec-layout folder from a CSV catalogue.

    Args:
        out: destination folder (written atomically).
        interactions: CSV with ``user_col``, ``item_col`` (and ``time_col``, ``rating_col``).
        items: CSV with ``item_col``, ``text_cols`` and ``image_col``; duplicate ids: the first
            row wins (counted).
        text_cols: columns joined into one text per item -> ``text_feat.npy`` (zeros for
            items with no text, counted).
        image_col: image file paths, relative to the items file's folder; or
        images: a folder of ``<item id>.<ext>`` files. Either gives ``image_feat.npy`` (the
            mean vector for items without a readable image, counted).
        kcore, seed, name, text_model, image_model, work_dir, progress, warn: as for
            :func:`mentor.prepare.amazon.prepare_amazon`.

    Returns:
        The content of ``meta.json``.
    """
    out = Path(out)
    if image_col is not None and images is not None:
        raise MentorError("give --image-col or --images, not both")
    if text_cols:
        check_text_encoder(text_model)
    if image_col is not None or images is not None:
        option = "--images" if images is not None else "--image-col"
        check_image_encoder(image_model, f"the image encoder of {option}")
    raw = read_interactions(Path(interactions), user_col, item_col, time_col, rating_col)
    inter, user_ids, item_ids, stats = build_interactions(raw, kcore, seed)
    ids = [str(i) for i in item_ids]

    catalogue_cols = [item_col, *text_cols, *([image_col] if image_col else [])]
    catalogue, duplicates = dedupe_catalogue(
        read_table(Path(items), catalogue_cols, "items"), item_col, Path(items), warn
    )
    not_listed = sum(i not in catalogue.index for i in ids)
    if not_listed:
        warn(f"{not_listed:,} item(s) with interactions have no row in {items}")

    files = {"interactions": Path(interactions), "items": Path(items)}
    result = base_meta("CSV catalogue", files, kcore, seed)
    result["inputs"]["items"]["duplicate_ids"] = duplicates
    result["inputs"]["items"]["items_without_row"] = not_listed
    result["columns"] = {
        "user": user_col,
        "item": item_col,
        "time": time_col,
        "rating": rating_col,
        "text": list(text_cols),
        "image": image_col,
    }
    result["interactions"] = stats
    with feature_work(out, work_dir) as work, staged_output(out) as tmp:
        write_interactions(tmp, name or out.name, inter, user_ids, item_ids)
        if text_cols:
            texts = [
                join_text(catalogue.loc[i], text_cols) if i in catalogue.index else None
                for i in ids
            ]
            if any(t is None for t in texts):
                warn(f"{sum(t is None for t in texts):,} item(s) have no text; zeros used")
            recipe = TEXT_RECIPE.format(cols=", ".join(text_cols))
            encode_text_feature(tmp, result, texts, text_model, work, progress, recipe)
        has_images = image_col is not None or images is not None
        paths: list[Path | None] = []
        if has_images:
            if images is not None:
                paths = image_folder_paths(Path(images), ids, warn)
                source = f"{Path(images).resolve()}/<item id>.<ext>"
            else:
                base = Path(items).resolve().parent
                paths = image_paths_from_column(catalogue, ids, str(image_col), base)
                source = f"column {image_col!r} of the items file (relative to {base})"
            encode_image_feature(tmp, result, paths, image_model, work, progress, warn, source)
        rows = [catalogue.loc[i] if i in catalogue.index else None for i in ids]
        titles = [None if r is None or not text_cols else str(r[text_cols[0]]) for r in rows]
        rest = [None if r is None else join_text(r, text_cols[1:]) for r in rows]
        write_item_meta(
            tmp, ids, titles, rest if len(text_cols) > 1 else None, paths if has_images else None
        )
        result["counts"] = split_counts(inter["x_label"], len(user_ids), len(item_ids))
        write_meta(tmp, result)
    return result

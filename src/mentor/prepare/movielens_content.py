"""MovieLens-100K with real content: text from title + plot overview, posters as images.

``mentor data prepare movielens --content DIR`` (e.g. ml-100k-posters): the interactions, ids,
split and genres of :func:`mentor.prepare.movielens.prepare_movielens`, with ``text_feat.npy``
encoding :data:`CONTENT_TEXT` and ``image_feat.npy`` encoding the posters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mentor.errors import warn_stderr
from mentor.features.extract import check_image_encoder, check_text_encoder
from mentor.fsutil import files_digest
from mentor.prepare.catalog import dedupe_catalogue, read_table
from mentor.prepare.movielens import (
    DATASET,
    GENRE_FILE,
    INTER_FILE,
    build_meta,
    fetch_movielens_raw,
    genre_multi_hot,
    load_raw,
    write_interaction_files,
)
from mentor.prepare.steps import (
    base_meta,
    encode_image_feature,
    encode_text_feature,
    feature_work,
    image_folder_paths,
    split_counts,
    staged_output,
    write_item_meta,
    write_meta,
)

CONTENT_ITEMS = "items.csv"
CONTENT_POSTERS = "posters"
CONTENT_TEXT = '"{title}. {overview}" from the content items.csv ("{title}." without overview)'


def content_texts(
    item_rows: pd.DataFrame, content: pd.DataFrame
) -> tuple[list[str], dict[str, int]]:
    """One text per item (rows of ``item_rows``, indexed by MovieLens item id).

    The content catalogue (indexed by ``movie_id``, one row per id) gives
    ``"{title}. {overview}"``; without an overview ``"{title}."``; an item absent from it
    falls back to the MovieLens title.

    Returns:
        (texts, {"without_overview": n, "not_in_content": n}).
    """
    texts = []
    without_overview = not_in_content = 0
    for item_id, raw_title in zip(item_rows.index, item_rows["title"], strict=True):
        key = str(item_id)
        if key in content.index:
            title = str(content.at[key, "title"]).strip() or str(raw_title)
            overview = str(content.at[key, "overview"]).strip().replace("\n", " ")
        else:
            not_in_content += 1
            title, overview = str(raw_title), ""
        if not overview:
            without_overview += 1
        texts.append(f"{title}. {overview}" if overview else f"{title}.")
    return texts, {"without_overview": without_overview, "not_in_content": not_in_content}


def prepare_movielens_content(
    out: Path,
    content: Path,
    seed: int = 2026,
    cache: Path | None = None,
    progress: bool = True,
    *,
    raw: Path | None = None,
    text_model: Any = None,
    image_model: Any = None,
    work_dir: Path | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """MovieLens-100K with text from title + plot overview and image features from posters.

    ``content`` holds ``items.csv`` (``movie_id``, ``title``, ``overview``; a repeated id: the
    first row wins, counted) and ``posters/<movie_id>.<ext>``. Interactions, ids, split and
    ``genre_feat.npy`` are those of :func:`prepare_movielens`; ``text_feat.npy`` encodes
    :data:`CONTENT_TEXT`; ``image_feat.npy`` encodes the posters (the mean vector for movies
    without a readable poster). ``out`` is written atomically.

    Args:
        text_model, image_model, work_dir, warn: as for
            :func:`mentor.prepare.amazon.prepare_amazon`.

    Returns:
        The content of ``meta.json``.
    """
    check_text_encoder(text_model)
    check_image_encoder(image_model, "the poster encoder of --content")
    warn = warn or warn_stderr
    out = Path(out)
    content = Path(content)
    items_path = content / CONTENT_ITEMS
    catalogue, duplicates = dedupe_catalogue(
        read_table(items_path, ("movie_id", "title", "overview"), "content"),
        "movie_id",
        items_path,
        warn,
    )
    raw_dir = Path(raw) if raw is not None else fetch_movielens_raw(cache)
    inter_df, item_df = load_raw(raw_dir)

    meta = base_meta(
        "MovieLens 100K (GroupLens) with plot overviews and posters",
        {
            "interactions": raw_dir / INTER_FILE,
            "items": raw_dir / f"{DATASET}.item",
            "content_items": items_path,
        },
        1,
        seed,
    )
    meta["kcore"] = {"k": 1, "recipe": "none: every MovieLens-100K rating is kept"}
    meta["ids"] = "raw ids sorted numerically (as ml-100k-mm)"
    meta["inputs"]["content_items"]["duplicate_ids"] = duplicates
    with feature_work(out, work_dir) as work, staged_output(out) as tmp:
        item_rows, labels, n_users = write_interaction_files(inter_df, item_df, tmp, seed)
        np.save(tmp / GENRE_FILE, genre_multi_hot(item_rows["genres"].tolist()))
        meta["genre_feat.npy"] = build_meta(seed)["genre_feat.npy"]

        texts, text_counts = content_texts(item_rows, catalogue)
        if text_counts["without_overview"]:
            warn(f"{text_counts['without_overview']:,} movie(s) have no overview; title only")
        text_info = encode_text_feature(tmp, meta, texts, text_model, work, progress, CONTENT_TEXT)
        text_info.update(text_counts)

        ids = [str(i) for i in item_rows.index]
        paths = image_folder_paths(content / CONTENT_POSTERS, ids, warn)
        titles = [
            str(catalogue.at[i, "title"]) if i in catalogue.index else str(raw)
            for i, raw in zip(ids, item_rows["title"], strict=True)
        ]
        overviews = [
            str(catalogue.at[i, "overview"]) if i in catalogue.index else None for i in ids
        ]
        write_item_meta(tmp, ids, titles, overviews, paths)
        missing = sum(p is None for p in paths)
        if missing:
            warn(f"{missing:,} movie(s) have no poster; the mean poster vector is used")
        source = f"{content.resolve()}/posters/<movie_id>.jpg"
        encode_image_feature(tmp, meta, paths, image_model, work, progress, warn, source)
        found = [p for p in paths if p is not None]
        meta["inputs"]["posters"] = {
            "path": str((content / CONTENT_POSTERS).resolve()),
            "files": len(found),
            "sha256": files_digest(found),
        }
        meta["counts"] = split_counts(labels, n_users, len(item_rows))
        write_meta(tmp, meta)
    return meta

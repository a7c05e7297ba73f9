"""Bundles: round trip (bundle answers == model answers), the Python API, errors, no pickle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_dataset

import mentor
from mentor.bundle import write_bundle
from mentor.errors import MentorError
from mentor.runs import export_topk, load_run
from mentor.serve import Recommender
from mentor.serve.recommender import top_k


def _train(root: Path, model: str, **settings: object) -> Path:
    data = make_dataset(root, n_users=30, n_items=40, features={"image": 8, "text": 6})
    run = root / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MENTOR_CACHE", str(root / "cache"))
        mentor.train(
            model,
            data,
            run,
            epochs=2,
            topk=[5, 10],
            valid_metric="recall@10",
            progress=False,
            log=lambda _: None,
            **settings,
        )
    return run


@pytest.fixture(scope="module")
def lgcn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("lgcn"), "lightgcn", n_layers=1)


@pytest.fixture(scope="module")
def mentor_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("mentor"), "mentor", knn_k=4)


@pytest.fixture(scope="module")
def lgcn_bundle(lgcn_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(lgcn_run, tmp_path_factory.mktemp("b") / "bundle")


@pytest.fixture(scope="module")
def mentor_bundle(mentor_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(mentor_run, tmp_path_factory.mktemp("b") / "bundle")


def _export_lists(run: Path, k: int, out: Path) -> dict[str, list[str]]:
    export_topk(load_run(run), k, out)
    lists: dict[str, list[str]] = {}
    for line in out.read_text().splitlines()[1:]:
        user, _, item = line.split("\t")
        lists.setdefault(user, []).append(item)
    return lists


@pytest.mark.parametrize("which", ["lgcn", "mentor"])
def test_bundle_answers_equal_export_and_model_scores(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    run = request.getfixturevalue(f"{which}_run")
    rec = Recommender.load(request.getfixturevalue(f"{which}_bundle"))
    expected = _export_lists(run, 7, tmp_path / "top.tsv")
    got = rec.recommend(list(expected), k=7)
    assert {r.key: r.items for r in got} == expected
    assert not any(r.fallback for r in got)
    # the scores are the model's own scores
    loaded = load_run(run)
    loaded.model.eval()
    with torch.no_grad():
        loaded.model.prepare_scoring()
        scores = loaded.model.score(torch.arange(loaded.dataset.n_users)).numpy()
    item_pos = {i: n for n, i in enumerate(loaded.dataset.item_ids)}
    for r in got:
        u = loaded.dataset.user_ids.index(r.key)
        np.testing.assert_allclose(r.scores, scores[u, [item_pos[i] for i in r.items]], rtol=1e-5)


def test_mentor_bundle_adds_items_like_the_model(mentor_run: Path, mentor_bundle: Path) -> None:
    rec = Recommender.load(mentor_bundle)
    assert rec.can_add_items and rec.feature_dims == {"image": 8, "text": 6}
    rng = np.random.default_rng(0)
    feats = {"image": rng.standard_normal((3, 8)), "text": rng.standard_normal((3, 6))}
    feats["text"][2] = 0.0  # an all-zero row: only itself as semantic neighbour
    loaded = load_run(mentor_run)
    with torch.no_grad():
        expected = loaded.model.new_item_representations(
            {m: torch.from_numpy(v).float() for m, v in feats.items()}
        ).numpy()
    n_before = rec.n_items
    rec.add_items(["new-a", "new-b", "new-c"], feats)
    assert rec.n_items == n_before + 3
    np.testing.assert_allclose(rec.items[n_before:], expected, rtol=1e-4, atol=1e-5)
    # new items are ranked for users: with the candidates limited to them, they come back
    user = rec.user_ids[0]
    out = rec.recommend(user, k=3, items=["new-a", "new-b", "new-c"])[0]
    assert sorted(out.items) == ["new-a", "new-b", "new-c"]
    manual = rec.users[0] @ rec.items[n_before:].T
    assert out.scores == pytest.approx(sorted(manual.tolist(), reverse=True), rel=1e-6)
    assert "new-a" in rec.similar_items("new-b", k=rec.n_items).items


def test_add_items_errors(mentor_bundle: Path, lgcn_bundle: Path) -> None:
    rec = Recommender.load(mentor_bundle)
    good = {"image": np.ones((1, 8)), "text": np.ones((1, 6))}
    with pytest.raises(MentorError, match="modality 'text' is missing"):
        rec.add_items(["x"], {"image": np.ones((1, 8))})
    with pytest.raises(
        MentorError, match=r"features\['image'\]: shape \(1, 7\), expected \(1, 8\)"
    ):
        rec.add_items(["x"], {**good, "image": np.ones((1, 7))})
    with pytest.raises(MentorError, match="NaN or infinite"):
        rec.add_items(["x"], {**good, "text": np.full((1, 6), np.nan)})
    with pytest.raises(MentorError, match="already exists"):
        rec.add_items([rec.item_ids[0]], good)
    with pytest.raises(MentorError, match="given twice"):
        rec.add_items(["x", "x"], {m: np.ones((2, v.shape[1])) for m, v in good.items()})
    with pytest.raises(MentorError, match="unknown modality 'audio'"):
        rec.add_items(["x"], {**good, "audio": np.ones((1, 2))})
    with pytest.raises(MentorError, match="not a numeric matrix"):
        rec.add_items(["x"], {**good, "text": [["a"] * 6]})
    with pytest.raises(MentorError, match="list of new item ids"):
        rec.add_items("x", good)
    assert rec.n_items == 40  # nothing was added by a failed call
    with pytest.raises(MentorError, match="ids only; it cannot add new items"):
        Recommender.load(lgcn_bundle).add_items(["x"], good)


def test_recommend_options_and_errors(lgcn_bundle: Path) -> None:
    rec = Recommender.load(lgcn_bundle)
    user = rec.user_ids[4]
    seen = {rec.item_ids[i] for i in rec.seen(4)}
    default = rec.recommend(user, k=rec.n_items)[0]
    assert len(default.items) == rec.n_items - len(seen) and not seen & set(default.items)
    everything = rec.recommend(user, k=rec.n_items, exclude_seen=False)[0]
    assert set(everything.items) == set(rec.item_ids)
    assert everything.scores == sorted(everything.scores, reverse=True)
    cands = [rec.item_ids[i] for i in (3, 5, 9, 3)]
    limited = rec.recommend([user], k=10, exclude_seen=False, items=cands)[0]
    assert sorted(limited.items) == sorted(set(cands))
    # unknown user: most popular items, flagged
    fallback = rec.recommend(["nobody", user], k=3)
    assert fallback[0].fallback and not fallback[1].fallback
    order = np.lexsort((np.arange(rec.n_items), -rec.popularity))[:3]
    assert fallback[0].items == [rec.item_ids[i] for i in order]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(MentorError, match="k must be a whole number"):
            rec.recommend(user, k=bad)  # type: ignore[arg-type]
    with pytest.raises(MentorError, match="unknown item id 'zzz'"):
        rec.recommend(user, items=["zzz"])
    with pytest.raises(MentorError, match="unknown item id 'zzz'"):
        rec.similar_items("zzz")
    with pytest.raises(MentorError, match="items is empty"):
        rec.recommend(user, items=[])
    sim = rec.similar_items(rec.item_ids[0], k=5)
    assert rec.item_ids[0] not in sim.items and len(sim.items) == 5


def test_top_k_ties_go_to_lower_index_and_skip_masked() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [-np.inf, 1.0, -np.inf, 0.5, 2.0]])
    index, valid = top_k(scores, 2)
    assert index[0].tolist() == [1, 2] and valid[0].all()
    index, valid = top_k(scores, 4)
    assert index[0].tolist() == [1, 2, 4, 3]
    assert index[1][valid[1]].tolist() == [4, 1, 3]


def test_top_k_matches_the_evaluator_ranking_with_many_ties() -> None:
    from mentor.eval.metrics import rank_topk

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, size=(40, 30)).astype(np.float32)
    for k in (1, 4, 10, 30):
        index, valid = top_k(scores, k)
        assert valid.all()
        assert index.tolist() == rank_topk(torch.from_numpy(scores), k).tolist()
        single = [top_k(scores[r : r + 1], k)[0][0].tolist() for r in range(len(scores))]
        assert single == index.tolist()


def test_bundle_files_no_pickle_and_checksums(lgcn_bundle: Path, tmp_path: Path) -> None:
    names = sorted(p.name for p in lgcn_bundle.iterdir())
    assert names == [
        "bundle.json",
        "checksums.json",
        "config.json",
        "history.csv",
        "ids.json",
        "metrics.json",
        "tensors.safetensors",
    ]
    for path in lgcn_bundle.iterdir():
        data = path.read_bytes()
        if path.suffix == ".json":
            json.loads(data)
        elif path.suffix == ".csv":
            assert data.decode().startswith("epoch,")  # the training history, as text
        else:
            header_len = int.from_bytes(data[:8], "little")
            header = json.loads(data[8 : 8 + header_len])
            assert {"users", "items", "seen_indptr"} <= set(header)
        assert b"\x80\x04\x95" not in data[:64] and not data.startswith(b"PK")
    sums = json.loads((lgcn_bundle / "checksums.json").read_text())
    assert set(sums["training_data"]) >= {"tiny.inter"}
    # a changed file is refused
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in lgcn_bundle.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    (copy / "ids.json").write_text((copy / "ids.json").read_text().replace('"u', '"v', 1))
    with pytest.raises(MentorError, match="changed since it was bundled"):
        Recommender.load(copy)


def test_bundle_refuses_existing_out_and_leaves_nothing_on_error(
    lgcn_run: Path, lgcn_bundle: Path, tmp_path: Path
) -> None:
    with pytest.raises(MentorError, match="already exists"):
        write_bundle(lgcn_run, lgcn_bundle)
    with pytest.raises(MentorError, match="not a run folder"):
        write_bundle(tmp_path / "nope", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(MentorError, match="not a folder"):
        Recommender.load(tmp_path / "missing")
    with pytest.raises(MentorError, match="bundle.json: missing"):
        Recommender.load(tmp_path)


def test_loading_a_bundle_imports_no_training_code(mentor_bundle: Path) -> None:
    script = f"""
import sys
from mentor import Recommender
rec = Recommender.load({str(mentor_bundle)!r})
rec.recommend([rec.user_ids[0], "unknown"], k=3)
rec.similar_items(rec.item_ids[0])
rec.add_items(["n"], {{"image": [[1.0] * 8], "text": [[0.5] * 6]}})
banned = ("mentor.training", "mentor.train", "mentor.models", "mentor.data", "mentor.graph",
          "mentor.runs", "mentor.semantic", "mentor.bundle", "torch")
print(sorted(m for m in sys.modules if m.startswith(banned)))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_cli_bundle(lgcn_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mentor.cli import main

    assert main(["bundle", "--run", str(lgcn_run), "--out", str(tmp_path / "b")]) == 0
    assert "lightgcn bundle: 30 users, 40 items, d=64, cannot add items" in capsys.readouterr().out
    assert main(["bundle", "--run", str(lgcn_run), "--out", str(tmp_path / "b")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_batch_ranking_equals_row_ranking_with_ties_and_masks() -> None:
    import numpy as np

    from mentor.serve.recommender import top_k, top_k_batch

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, size=(40, 30)).astype(np.float32)  # many exact ties
    scores[3, :] = 1.0
    scores[4, 5:] = -np.inf  # fewer candidates than k
    for k in (1, 7, 30):
        (i1, v1), (i2, v2) = top_k(scores, k), top_k_batch(scores, k)
        assert (i1[v1] == i2[v2]).all() and (v1 == v2).all()


def test_dualgnn_bundle_adds_items_like_the_model(tmp_path: Path) -> None:
    """DualGNN embeds items from features alone: a new item is the sum of its branch rows, the
    same in the model and in the bundle; and an item without train edges gets exactly the row a
    full forward pass gives it (in float32: ``feature_dtype=auto`` may round the forward pass's
    first layer to bfloat16)."""
    run = _train(tmp_path, "dualgnn", knn_k=3, feature_dtype="float32")
    rec = Recommender.load(write_bundle(run, tmp_path / "bundle"))
    assert rec.can_add_items
    rng = np.random.default_rng(1)
    feats = {"image": rng.standard_normal((2, 8)), "text": rng.standard_normal((2, 6))}
    loaded = load_run(run)
    model = loaded.model
    with torch.no_grad():
        expected = model.new_item_representations(
            {m: torch.from_numpy(v).float() for m, v in feats.items()}
        ).numpy()
        # an item no user trained on: its full-forward row equals the cold-start formula
        untrained = sorted(set(range(loaded.dataset.n_items)) - set(loaded.dataset.train[:, 1]))
        assert untrained  # the seeded tiny data set has items without train rows
        item = untrained[0]
        row = model.representations()[1][item].numpy()
        own = {m: model.features[m][item : item + 1] for m in model.modalities}
        np.testing.assert_allclose(
            model.new_item_representations(own).numpy()[0], row, rtol=1e-5, atol=1e-6
        )
    n_before = rec.n_items
    rec.add_items(["new-a", "new-b"], feats)
    np.testing.assert_allclose(rec.items[n_before:], expected, rtol=1e-4, atol=1e-5)

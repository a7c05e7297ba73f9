"""The main job end to end on a tiny stand-in for MovieLens (no network, no encoder)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import make_dataset

import mentor.prepare.movielens as movielens
from mentor.errors import MentorError
from mentor.quickstart import run_quickstart
from mentor.training import runinfo
from mentor.training.runinfo import read_run_info


def test_quickstart_trains_tables_and_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_dataset(tmp_path, n_items=80, features={"genre": 5, "text": 8})
    monkeypatch.setattr(movielens, "prepare_movielens", lambda out, progress=True: data)
    monkeypatch.setattr(
        "mentor.quickstart.SETTINGS",
        {
            "pop": {},
            "lightgcn": {"train": {"epochs": 2}},
            "mentor": {
                "model": {"semantic_graph_weights": {"genre": 0.1, "text": 0.9}},
                "train": {"epochs": 2},
            },
        },
    )
    out = tmp_path / "qs"
    results = run_quickstart(out, ["lightgcn", "mentor"], quiet=True)
    printed = capsys.readouterr().out
    assert list(results) == ["pop", "lightgcn", "mentor"]
    for name in results:
        assert (out / name / "metrics.json").exists()
        assert name in printed
    assert "recall@20" in printed
    with (out / "top20-mentor.tsv").open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert rows and set(rows[0]) == {"user", "rank", "item"}
    assert rows[0]["user"].startswith("u") and rows[0]["item"].startswith("i")  # external ids
    # a second call reuses the finished runs
    again = run_quickstart(out, ["lightgcn", "mentor"], quiet=True)
    assert again == results
    assert "reusing finished run" in capsys.readouterr().out


def test_quickstart_never_reuses_a_run_of_other_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_dataset(tmp_path, n_items=80, features={"text": 8})
    monkeypatch.setattr(movielens, "prepare_movielens", lambda out, progress=True: data)
    monkeypatch.setattr("mentor.quickstart.SETTINGS", {"bpr": {"train": {"epochs": 1}}})
    out = tmp_path / "qs"
    run_quickstart(out, ["bpr"], quiet=True)
    monkeypatch.setattr("mentor.quickstart.SETTINGS", {"bpr": {"train": {"epochs": 2}}})
    with pytest.raises(MentorError, match="other settings or data"):
        run_quickstart(out, ["bpr"], quiet=True)


def test_quickstart_retrains_a_run_made_by_other_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run is reused only when its run.json records the identity this code computes: the same
    settings and data trained by other model or training code are trained again."""
    data = make_dataset(tmp_path, n_items=80, features={"text": 8})
    monkeypatch.setattr(movielens, "prepare_movielens", lambda out, progress=True: data)
    monkeypatch.setattr("mentor.quickstart.SETTINGS", {"bpr": {"train": {"epochs": 1}}})
    out = tmp_path / "qs"
    run_quickstart(out, ["bpr"], quiet=True)
    metrics = out / "bpr" / "metrics.json"
    first = metrics.read_text()
    capsys.readouterr()
    run_quickstart(out, ["bpr"], quiet=True)
    assert "bpr: reusing finished run" in capsys.readouterr().out
    assert metrics.read_text() == first
    monkeypatch.setattr(runinfo, "code_digest", lambda: "0" * 64)  # other model code
    run_quickstart(out, ["bpr"], quiet=True)
    printed = capsys.readouterr().out
    assert "bpr: reusing" not in printed and "trained by other mentor code" in printed
    info = read_run_info(out / "bpr")  # trained anew, not resumed: run.json of that code
    assert info is not None and info["code_digest"] == "0" * 64 and "resumes" not in info
    run_quickstart(out, ["bpr"], quiet=True)  # and that run is reused by that code
    assert "bpr: reusing finished run" in capsys.readouterr().out

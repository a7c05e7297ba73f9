"""Run identity: a search reuses a run only when it was trained as the search would train it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_dataset

import mentor
from mentor.cli import main
from mentor.search import grid_search
from mentor.training import runinfo
from mentor.training.runinfo import read_run_info


def quiet(_: str) -> None:
    """A log that prints nothing."""


def test_search_does_not_reuse_a_run_extended_by_resume(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, n_items=60)
    base = {"data": {"path": str(data)}, "train": {"epochs": 1}}
    grid = {"model.reg_weight": [1e-3]}
    out = tmp_path / "search"
    first = grid_search("bpr", base, grid, out, log=quiet)
    run = out / first["runs"][0]["run"]
    assert first["runs"][0]["epochs_run"] == 1
    # extended by hand: two more epochs, in the search's folder
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 3
    again = grid_search("bpr", base, grid, out, log=quiet)
    # the grid point (1 epoch) is trained anew, not answered by the 3-epoch run
    assert again["runs"][0]["run"] != run.name
    assert again["runs"][0]["epochs_run"] == 1
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 3  # left alone
    info = read_run_info(run)
    assert [r["epochs"] for r in info["resumes"]] == [3]
    assert info["identity"] != run.name.rsplit("-", 1)[1]
    # the new run records the identity its folder is named with; it is found again, and a
    # resume with its own settings keeps its identity
    fresh = out / again["runs"][0]["run"]
    assert read_run_info(fresh)["identity"] == fresh.name.rsplit("-", 1)[1]
    mentor.resume(fresh, progress=False, log=quiet)
    assert "resumes" not in read_run_info(fresh)
    third = grid_search("bpr", base, grid, out, log=quiet)
    assert third["runs"][0]["run"] == fresh.name
    assert len([p for p in out.iterdir() if p.is_dir()]) == 2


def test_runs_of_other_code_are_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_dataset(tmp_path, n_items=60)
    base = {"data": {"path": str(data)}, "train": {"epochs": 1}}
    grid = {"model.reg_weight": [1e-3]}
    out = tmp_path / "search"
    run = out / grid_search("bpr", base, grid, out, log=quiet)["runs"][0]["run"]
    assert grid_search("bpr", base, grid, out, log=quiet)["runs"][0]["run"] == run.name
    # the same settings and data under other model or training code: a new identity, a new run
    monkeypatch.setattr(runinfo, "code_digest", lambda: "0" * 64)
    other = grid_search("bpr", base, grid, out, log=quiet)["runs"][0]["run"]
    assert other != run.name
    assert other.rsplit("-", 1)[1] != run.name.rsplit("-", 1)[1]
    assert len([p for p in out.iterdir() if p.is_dir()]) == 2
    monkeypatch.undo()
    info = read_run_info(run)
    assert info["code_digest"] == runinfo.code_digest()
    assert info["mentor_version"] == mentor.__version__


def test_code_digest_is_computed_once_over_the_result_code() -> None:
    digest = runinfo.code_digest()
    assert len(digest) == 64 and int(digest, 16) >= 0
    calls = runinfo.code_digest.cache_info().hits
    assert runinfo.code_digest() == digest
    assert runinfo.code_digest.cache_info().hits == calls + 1
    package = Path(mentor.__file__).parent
    assert all((package / part).exists() for part in runinfo.RESULT_CODE)


def test_the_changelog_has_an_entry_for_this_version() -> None:
    changelog = Path(__file__).resolve().parents[1] / "CHANGELOG.md"
    assert f"## [{mentor.__version__}] - " in changelog.read_text()

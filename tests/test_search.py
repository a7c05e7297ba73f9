"""Grid search: every combination trained, the best chosen on valid, finished runs reused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import make_dataset

from mentor.cli import main
from mentor.errors import MentorError
from mentor.search import combinations, grid_search, parse_grid


def test_parse_grid_and_combinations() -> None:
    grid = parse_grid(["model.n_layers=[1,2]", "model.reg_weight=1e-4"])
    assert grid == {"model.n_layers": [1, 2], "model.reg_weight": [1e-4]}
    assert combinations(grid) == [
        {"model.n_layers": 1, "model.reg_weight": 1e-4},
        {"model.n_layers": 2, "model.reg_weight": 1e-4},
    ]
    with pytest.raises(MentorError):
        parse_grid(["model.n_layers"])
    with pytest.raises(MentorError):
        parse_grid(["model.n_layers=[]"])


def test_grid_search_selects_on_valid_and_reuses_runs(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, n_items=80)
    base = {"data": {"path": str(data)}, "train": {"epochs": 2}}
    out = tmp_path / "search"
    summary = grid_search("bpr", base, {"model.reg_weight": [1e-4, 1.0]}, out, log=lambda _: None)
    assert len(summary["runs"]) == 2
    best = max(summary["runs"], key=lambda r: r["valid"]["recall@20"])
    assert summary["best"]["run"] == best["run"]
    assert json.loads((out / "search.json").read_text())["best"]["run"] == best["run"]
    first = {r["run"]: (out / r["run"] / "metrics.json").stat().st_mtime for r in summary["runs"]}
    # a wider grid later: the finished combinations are found again, not retrained
    wider = grid_search(
        "bpr", base, {"model.reg_weight": [1e-2, 1e-4, 1.0]}, out, log=lambda _: None
    )
    assert len(wider["runs"]) == 3
    for run in wider["runs"]:
        if run["run"] in first:
            assert (out / run["run"] / "metrics.json").stat().st_mtime == first[run["run"]]
    assert len(list(out.glob("*reg_weight=0.0001-*"))) == 1


def test_search_cli_rejects_bad_keys_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_dataset(tmp_path, n_items=80)
    argv = [
        "search",
        "--model",
        "bpr",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "s"),
        "--grid",
        "model.reg_weigth=[1e-4]",
    ]
    assert main(argv) == 2
    assert "did you mean 'reg_weight'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_sampled_search_trains_the_budget_and_resumes(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    data = make_dataset(tmp_path, n_items=60)
    base = {"data": {"path": str(data)}, "train": {"epochs": 1}}
    grid = {"model.reg_weight": [1e-5, 1e-3, 1e-1, 1.0, 2.0], "model.embedding_size": [8, 16]}
    out = tmp_path / "sampled"
    summary = grid_search("bpr", base, grid, out, workers=2, log=lambda _: None, trials=3)
    assert summary["grid_size"] == 10
    params = [json.dumps(r["params"], sort_keys=True) for r in summary["runs"]]
    assert len(params) == 3 and len(set(params)) == 3
    assert len([p for p in out.iterdir() if p.is_dir()]) == 3  # nothing else trained
    best = max(summary["runs"], key=lambda r: r["valid"]["recall@20"])
    assert summary["best"]["run"] == best["run"]
    # the same call proposes the same combinations again and retrains nothing
    again = grid_search("bpr", base, grid, out, workers=2, log=lambda _: None, trials=3)
    assert [r["run"] for r in again["runs"]] == [r["run"] for r in summary["runs"]]
    # a budget at least the grid's size trains the whole grid
    small = {"model.reg_weight": [1e-3, 1.0]}
    whole = grid_search("bpr", base, small, tmp_path / "whole", log=lambda _: None, trials=5)
    assert len(whole["runs"]) == 2 and whole["grid_size"] == 2
    with pytest.raises(MentorError, match="--trials"):
        grid_search("bpr", base, small, tmp_path / "bad", log=lambda _: None, trials=-1)


def test_settings_a_model_does_not_read_train_once(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, n_items=60, features={"image": 6, "text": 5})
    base = {"data": {"path": str(data)}, "train": {"epochs": 1}}
    grid = {"model.reg": [1e-4, 1e-2]}
    out = tmp_path / "slmrec"
    summary = grid_search("slmrec", base, grid, out, log=lambda _: None)
    # without use_reg SLMRec never reads reg: one run stands for both values
    assert summary["grid_size"] == 1 and len(summary["runs"]) == 1
    assert len([p for p in out.iterdir() if p.is_dir()]) == 1
    base["model"] = {"use_reg": True}
    read = grid_search("slmrec", base, grid, tmp_path / "read", log=lambda _: None)
    assert read["grid_size"] == 2 and len(read["runs"]) == 2
    # MMGCN with MMRec's fixed tables: reg_weight only shifts the loss by a constant
    base = {"data": {"path": str(data)}, "train": {"epochs": 1}}
    grid = {"model.reg_weight": [0.0, 1e-2]}
    fixed = grid_search("mmgcn", base, grid, tmp_path / "mmgcn", log=lambda _: None)
    assert fixed["grid_size"] == 1 and len(fixed["runs"]) == 1
    base["model"] = {"train_tables": True}
    trained = grid_search("mmgcn", base, grid, tmp_path / "mmgcn-t", log=lambda _: None)
    assert trained["grid_size"] == 2 and len(trained["runs"]) == 2


def test_a_value_listed_twice_counts_once(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    data = make_dataset(tmp_path, n_items=60)
    out = tmp_path / "twice"
    argv = ["search", "--model", "bpr", "--data", str(data), "--out", str(out), "--epochs", "1"]
    argv += ["--grid", "model.reg_weight=[0.1,0.1,0.01]", "--trials", "1"]
    assert main(argv) == 0
    summary = json.loads((out / "search.json").read_text())
    assert summary["grid_size"] == 2 and len(summary["runs"]) == 1
    # the Python function, with repeats in two keys: each distinct combination once
    base = {"data": {"path": str(data)}, "train": {"epochs": 1}}
    grid = {"model.reg_weight": [1.0, 0.01, 1.0, 0.1], "model.embedding_size": [8, 8, 16]}
    sampled = grid_search("bpr", base, grid, out, log=lambda _: None, trials=4)
    params = [json.dumps(r["params"], sort_keys=True) for r in sampled["runs"]]
    assert sampled["grid_size"] == 6 and len(params) == 4 and len(set(params)) == 4


def test_trials_without_optuna_fail_before_the_data_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mentor.search

    data = make_dataset(tmp_path, n_items=60)
    read: list[object] = []
    monkeypatch.setattr(mentor.search, "load_dataset", lambda *a, **k: read.append(a))
    monkeypatch.setitem(sys.modules, "optuna", None)  # what an uninstalled Optuna looks like
    out = tmp_path / "s"
    argv = ["search", "--model", "bpr", "--data", str(data), "--out", str(out), "--epochs", "1"]
    argv += ["--grid", "model.reg_weight=[0.1,0.1,0.01]", "--trials", "1"]
    assert main(argv) == 2
    assert read == [] and not out.exists()
    err = capsys.readouterr().err
    assert "--trials needs the search extra (optuna is not installed)" in err
    assert "pip install 'mentor-rec[search]'" in err and err.count("\n") == 1

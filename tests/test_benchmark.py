"""``mentor benchmark``: search on valid, several seeds, tables and a plot, resumable."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import pytest
from conftest import make_dataset

from mentor.benchmark import grids_for, parse_models
from mentor.cli import main
from mentor.errors import MentorError
from mentor.registry import model_names
from mentor.training.runinfo import read_run_info


def test_benchmark_end_to_end_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_dataset(tmp_path, n_items=60)
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"bpr": {"model.reg_weight": [1e-3, 1.0]}}))
    out = tmp_path / "bench"
    argv = ["benchmark", "--data", str(data), "--models", "pop,bpr", "--seeds", "2"]
    argv += ["--out", str(out), "--grid", str(grid), "--epochs", "2"]
    assert main(argv) == 0
    payload = json.loads((out / "results.json").read_text())
    rows = {row["model"]: row for row in payload["rows"]}
    assert list(rows) == ["pop", "bpr"]
    bpr = rows["bpr"]
    assert bpr["grid_runs"] == 2 and bpr["seeds"] == [999, 1]
    search = json.loads((out / "runs" / "bpr" / "search.json").read_text())
    # search.json keeps the grid (seed 999), seeds.json the chosen configuration's seeds
    assert [r["params"]["model.reg_weight"] for r in search["runs"]] == [1e-3, 1.0]
    best = max(search["runs"], key=lambda r: r["valid"]["recall@20"])
    assert bpr["chosen"] == {"model.reg_weight": best["params"]["model.reg_weight"]}
    seeded = json.loads((out / "runs" / "bpr" / "seeds.json").read_text())
    assert [r["params"] for r in seeded["runs"]] == [{"train.seed": 999}, {"train.seed": 1}]
    runs = [
        json.loads((out / "runs" / "bpr" / r / "metrics.json").read_text()) for r in bpr["runs"]
    ]
    values = [r["test"]["recall@20"] for r in runs]
    assert bpr["test_recall@20"] == pytest.approx(statistics.mean(values))
    assert bpr["test_recall@20_sd"] == pytest.approx(statistics.stdev(values))
    assert len({r["train_seconds"] for r in runs}) == 2  # two distinct trainings
    assert bpr["peak_rss_mb"] > 0
    md = (out / "results.md").read_text()
    assert "| bpr |" in md and "±" in md and "reg_weight=" in md
    with open(out / "results.csv") as handle:
        assert [r["model"] for r in csv.DictReader(handle)] == ["pop", "bpr"]
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stamps = {p: p.stat().st_mtime for p in (out / "runs").rglob("metrics.json")}
    capsys.readouterr()
    assert main(argv) == 0  # resumed: every run reused
    assert {p: p.stat().st_mtime for p in (out / "runs").rglob("metrics.json")} == stamps


def test_benchmark_on_a_shared_study_writes_the_same_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """--storage: every search and seeds' training is a study (here two worker processes on
    one SQLite file); the rows equal those of a benchmark run alone, timings aside."""
    optuna = pytest.importorskip("optuna")
    data = make_dataset(tmp_path, n_items=60)
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"bpr": {"model.reg_weight": [1e-3, 1.0]}}))
    argv = ["benchmark", "--data", str(data), "--models", "pop,bpr", "--seeds", "2"]
    argv += ["--grid", str(grid), "--epochs", "2"]
    assert main([*argv, "--out", str(tmp_path / "alone")]) == 0
    db = f"sqlite:///{tmp_path}/study.db"
    out = tmp_path / "shared"
    assert main([*argv, "--out", str(out), "--storage", db, "--workers", "2"]) == 0

    def rows(folder: Path) -> list[dict[str, object]]:
        payload = json.loads((folder / "results.json").read_text())["rows"]
        timings = ("seconds_per_epoch", "peak_rss_mb")
        return [{k: v for k, v in row.items() if k not in timings} for row in payload]

    assert rows(out) == rows(tmp_path / "alone")
    assert len(optuna.study.get_all_study_names(db)) == 4  # each model's grid and seeds
    search = json.loads((out / "runs" / "bpr" / "search.json").read_text())
    assert search["study"] in optuna.study.get_all_study_names(db)
    assert len([p for p in (out / "runs" / "bpr").iterdir() if p.is_dir()]) == 3


def test_benchmark_keeps_rows_of_earlier_calls_and_samples_large_grids(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("optuna")
    data = make_dataset(tmp_path, n_items=60)
    out = tmp_path / "bench"
    common = ["--data", str(data), "--seeds", "1", "--out", str(out), "--epochs", "1"]
    assert main(["benchmark", "--models", "pop", *common]) == 0
    grid = tmp_path / "grid.json"
    grid.write_text(
        json.dumps(
            {"bpr": {"model.reg_weight": [1e-5, 1e-3, 1e-1, 1.0], "model.embedding_size": 8}}
        )
    )
    assert (
        main(["benchmark", "--models", "bpr", "--grid", str(grid), "--trials", "2", *common]) == 0
    )
    rows = {row["model"]: row for row in json.loads((out / "results.json").read_text())["rows"]}
    assert list(rows) == ["pop", "bpr"]  # the first call's row is kept
    assert rows["bpr"]["grid_runs"] == 2 and rows["bpr"]["grid_size"] == 4
    # the one-valued key is a fixed setting, not part of the choice
    assert rows["bpr"]["fixed"] == {"model.embedding_size": 8}
    assert list(rows["bpr"]["chosen"]) == ["model.reg_weight"]
    assert "(2 of 4)" in (out / "results.md").read_text()
    other = make_dataset(tmp_path / "other", n_items=50)
    capsys.readouterr()
    assert main(["benchmark", "--models", "pop", "--data", str(other), "--out", str(out)]) != 0
    assert "use another --out" in capsys.readouterr().err


def test_benchmark_marks_settings_the_chosen_model_does_not_read(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, n_items=60, features={"image": 6, "text": 5})
    grid = tmp_path / "grid.json"
    grid.write_text(
        json.dumps({"mmgcn": {"model.reg_weight": [0.0, 0.1], "train.learning_rate": [1e-3, 1e-2]}})
    )
    out = tmp_path / "bench"
    argv = ["benchmark", "--data", str(data), "--models", "mmgcn", "--seeds", "1"]
    assert main([*argv, "--out", str(out), "--grid", str(grid), "--epochs", "1"]) == 0
    row = json.loads((out / "results.json").read_text())["rows"][0]
    # with MMRec's fixed tables reg_weight changes nothing: 2 runs for 4 points, "any" value
    assert row["grid_runs"] == 2 and row["grid_size"] == 2
    assert list(row["chosen"]) == ["train.learning_rate"] and row["inert"] == ["model.reg_weight"]
    assert "reg_weight=any" in (out / "results.md").read_text()
    with open(out / "results.csv") as handle:
        assert json.loads(next(csv.DictReader(handle))["inert"]) == ["model.reg_weight"]


def test_benchmark_selects_every_model_on_one_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = make_dataset(tmp_path, n_items=60, features={"image": 6, "text": 5})
    out = tmp_path / "bench"
    common = ["benchmark", "--data", str(data), "--out", str(out), "--seeds", "1"]
    common += ["--grid", "none", "--epochs", "2"]
    # MENTOR's own default selects on Recall@10, BPR's on Recall@20: one metric for the table
    assert main([*common, "--models", "mentor,bpr"]) == 0
    payload = json.loads((out / "results.json").read_text())
    assert [row["valid_metric"] for row in payload["rows"]] == ["recall@20", "recall@20"]
    assert payload["select_metric"] == "recall@20"
    mentor = payload["rows"][0]
    config = json.loads((out / "runs" / "mentor" / mentor["runs"][0] / "config.json").read_text())
    assert config["eval"]["valid_metric"] == "recall@20"  # early stopping and best epoch too
    assert "chosen on valid recall@20 only" in (out / "results.md").read_text()
    with open(out / "results.csv") as handle:
        assert {r["valid_metric"] for r in csv.DictReader(handle)} == {"recall@20"}
    # another metric: the rows selected on Recall@20 leave the table
    capsys.readouterr()
    assert main([*common, "--models", "pop", "--select-metric", "NDCG@10"]) == 0
    assert "were made with another selection metric" in capsys.readouterr().out
    payload = json.loads((out / "results.json").read_text())
    assert payload["select_metric"] == "ndcg@10"
    assert [row["model"] for row in payload["rows"]] == ["pop"]
    # the metric is the benchmark's setting, not a model's
    assert main([*common, "--models", "pop", "--set", "eval.valid_metric=recall@10"]) == 2
    assert "give it with --select-metric" in capsys.readouterr().err
    assert main([*common, "--models", "pop", "--select-metric", "recall@7"]) == 2
    assert "--select-metric recall@7: eval.valid_metric uses @7" in capsys.readouterr().err


def test_benchmark_records_the_settings_given_to_every_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = make_dataset(tmp_path, n_items=60)
    out = tmp_path / "bench"
    common = ["benchmark", "--data", str(data), "--out", str(out), "--seeds", "1"]
    common += ["--grid", "none"]
    argv = [*common, "--models", "bpr", "--epochs", "2", "--set", "model.reg_weight=0.5"]
    assert main(argv) == 0
    given = {"model.reg_weight": 0.5, "train.epochs": 2}
    payload = json.loads((out / "results.json").read_text())
    assert payload["overrides"] == given
    md = (out / "results.md").read_text()
    assert "Settings given to every run (over each model's defaults): " in md
    assert "model.reg_weight=0.5" in md and "train.epochs=2" in md
    with open(out / "results.csv") as handle:
        assert [json.loads(r["overrides"]) for r in csv.DictReader(handle)] == [given]
    # none given: said so; the rows made with other overrides leave the table
    capsys.readouterr()
    assert main([*common, "--models", "pop"]) == 0
    assert "were made with other overrides" in capsys.readouterr().out
    payload = json.loads((out / "results.json").read_text())
    assert payload["overrides"] == {} and [r["model"] for r in payload["rows"]] == ["pop"]
    assert "(over each model's defaults): none." in (out / "results.md").read_text()


def test_benchmark_keys_earlier_rows_by_the_data_not_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = make_dataset(tmp_path, n_items=60)
    out = tmp_path / "bench"
    common = ["benchmark", "--out", str(out), "--seeds", "1", "--grid", "none", "--epochs", "1"]
    assert main([*common, "--data", str(data), "--models", "pop"]) == 0
    first = json.loads((out / "results.json").read_text())
    # the same path, other files: the pop row made on the old files is not kept
    other = make_dataset(tmp_path / "other", n_items=60, seed=1)
    (data / "tiny.inter").write_bytes((other / "tiny.inter").read_bytes())
    capsys.readouterr()
    assert main([*common, "--data", str(data), "--models", "bpr"]) == 0
    payload = json.loads((out / "results.json").read_text())
    assert [row["model"] for row in payload["rows"]] == ["bpr"]
    assert "the rows of pop were made with other data files" in capsys.readouterr().out
    assert payload["data_fingerprint"] != first["data_fingerprint"]
    run = out / "runs" / "bpr" / payload["rows"][0]["runs"][0]
    assert payload["data_fingerprint"] == read_run_info(run)["data_fingerprint"]
    # the same files in another folder: the same data, its rows are kept
    moved = tmp_path / "moved" / "tiny"
    shutil.copytree(data, moved)
    assert main([*common, "--data", str(moved), "--models", "pop"]) == 0
    payload = json.loads((out / "results.json").read_text())
    assert [row["model"] for row in payload["rows"]] == ["bpr", "pop"]
    assert payload["data"] == str(moved)
    # other files in another folder: another data set, refused
    third = make_dataset(tmp_path / "third", n_items=60, seed=2)
    assert main([*common, "--data", str(third), "--models", "pop"]) == 2
    assert "use another --out" in capsys.readouterr().err


def test_benchmark_without_matplotlib_writes_the_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """No matplotlib: the tables are written, one line names the plot extra, exit 0; a chart
    of an earlier call is removed (it would show other numbers)."""
    data = make_dataset(tmp_path, n_items=60)
    out = tmp_path / "bench"
    out.mkdir()
    (out / "results.png").write_bytes(b"an earlier chart")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    argv = ["benchmark", "--data", str(data), "--models", "pop", "--seeds", "1"]
    assert main([*argv, "--out", str(out), "--grid", "none", "--epochs", "1"]) == 0
    for name in ("results.md", "results.csv", "results.json"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "results.png").exists()
    captured = capsys.readouterr()
    said = [line for line in (captured.out + captured.err).splitlines() if "[plot]" in line]
    assert len(said) == 1 and "matplotlib is not installed" in said[0]
    assert "pip install 'mentor-rec[plot]'" in said[0]
    assert "results.png" not in captured.out.splitlines()[-1]  # not listed as written


def test_benchmark_trials_without_optuna_fails_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """--trials with a grid larger than the budget needs Optuna: refused before the first
    model is trained (it used to fail at the first model with a larger grid)."""
    data = make_dataset(tmp_path, n_items=60)
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"pop": {}, "bpr": {"model.reg_weight": [1e-4, 1e-3, 1e-2]}}))
    out = tmp_path / "bench"
    monkeypatch.setitem(sys.modules, "optuna", None)
    argv = ["benchmark", "--data", str(data), "--models", "pop,bpr", "--seeds", "1"]
    argv += ["--out", str(out), "--grid", str(grid), "--epochs", "1", "--trials", "2"]
    start = time.perf_counter()
    assert main(argv) == 2
    assert not (out / "runs").exists()
    assert time.perf_counter() - start < 2
    err = capsys.readouterr().err
    assert "--trials needs the search extra (optuna is not installed)" in err
    assert "pip install 'mentor-rec[search]'" in err and err.count("\n") == 1
    # a shared study needs Optuna whatever the grid: refused before the first run too
    argv = ["benchmark", "--data", str(data), "--models", "pop", "--seeds", "1", "--out", str(out)]
    assert main([*argv, "--storage", f"sqlite:///{tmp_path}/s.db"]) == 2
    assert "--storage needs the search extra" in capsys.readouterr().err
    assert main([*argv, "--prune", "median"]) == 2
    assert "--prune needs the search extra" in capsys.readouterr().err
    assert not (out / "runs").exists() and not (tmp_path / "s.db").exists()


def test_parse_models_and_grids(tmp_path: Path) -> None:
    assert parse_models("all") == model_names()
    assert parse_models("BPR, lightgcn,bpr") == ["bpr", "lightgcn"]
    with pytest.raises(MentorError, match="did you mean"):
        parse_models("lightgnc")
    assert grids_for(["lightgcn"], "default")["lightgcn"]["model.n_layers"] == [1, 2, 3, 4]
    assert grids_for(["bpr"], "none") == {"bpr": {}}
    bad = tmp_path / "g.json"
    bad.write_text('{"bpr": {"model.reg_weight": []}}')
    with pytest.raises(MentorError, match="empty list"):
        grids_for(["bpr"], str(bad))
    with pytest.raises(MentorError, match="'default', 'none' or a JSON"):
        grids_for(["bpr"], "nonsense")
    twice = tmp_path / "twice.json"
    twice.write_text(
        '{"bpr": {"model.reg_weight": [0.1, 0.1, 0.01], "model.embedding_size": [8, 8]}}'
    )
    # a value listed twice counts once: embedding_size is a one-valued (fixed) key
    assert grids_for(["bpr"], str(twice)) == {
        "bpr": {"model.reg_weight": [0.1, 0.01], "model.embedding_size": [8]}
    }


def test_every_model_has_a_grid_of_valid_keys(tmp_path: Path) -> None:
    from mentor.config import resolve_config
    from mentor.registry import get_model
    from mentor.search import combinations

    for name in model_names():
        grid = get_model(name).grid
        for combo in combinations(grid)[:1] + combinations(grid)[-1:]:
            tree: dict = {"data": {"path": "x"}}
            for key, value in combo.items():
                section, field = key.split(".", 1)
                tree.setdefault(section, {})[field] = value
            resolve_config(name, tree)  # raises on a key the model does not have

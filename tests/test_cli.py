"""End-to-end tests of the ``mentor`` command line on tiny synthetic data."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    BAD_CASES,
    brute_force_metrics,
    item_ext,
    make_bad_dataset,
    make_dataset,
    read_rows,
    user_ext,
)

from mentor.cli import main
from mentor.registry import model_names

KS = (5, 10, 20, 50)
METRIC_KEYS = {f"{m}@{k}" for k in KS for m in ("recall", "ndcg", "precision", "map", "hit")}
COMMON = ["--seed", "7", "--quiet", "--set", "train.batch_size=64"]


def train(data: Path, out: Path, model: str, epochs: int, *extra: str) -> int:
    argv = ["train", "--model", model, "--data", str(data), "--out", str(out)]
    return main([*argv, "--epochs", str(epochs), *COMMON, *extra])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def read_history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 users, 80 items, 7-9 interactions per user (2 test, 1 valid), mappings, 8-d text."""
    root = tmp_path_factory.mktemp("data")
    return make_dataset(root, n_users=30, n_items=80, per_user=8, features={"text": 8}, n_test=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    """3-epoch runs of lightgcn and bpr."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for model in ("lightgcn", "bpr"):
        out[model] = root / model
        assert train(data_dir, out[model], model, 3) == 0
    return out


def test_train_writes_run_folder(runs: dict[str, Path]) -> None:
    for model, run in runs.items():
        for name in (
            "config.json",
            "history.csv",
            "best.safetensors",
            "checkpoint.safetensors",
            "metrics.json",
        ):
            assert (run / name).is_file(), (model, name)
        config = read_json(run / "config.json")
        assert config["model_name"] == model
        assert config["train"]["epochs"] == 3
        assert config["train"]["seed"] == 7
        assert config["train"]["batch_size"] == 64
        history = read_history(run)
        assert [row["epoch"] for row in history] == ["1", "2", "3"]
        for column in ("epoch", "loss", "seconds", "valid_recall@20", "valid_ndcg@10"):
            assert column in history[0], column
        assert all(float(row["loss"]) > 0 for row in history)
        metrics = read_json(run / "metrics.json")
        for key in (
            "model",
            "dataset",
            "best_epoch",
            "epochs_run",
            "seconds_per_epoch",
            "train_seconds",
            "valid",
            "test",
        ):
            assert key in metrics, key
        assert metrics["model"] == model
        assert metrics["dataset"] == "tiny"
        assert metrics["epochs_run"] == 3
        assert 1 <= metrics["best_epoch"] <= 3
        assert metrics["train_seconds"] > 0
        assert set(metrics["test"]) == METRIC_KEYS
        assert set(metrics["valid"]) == METRIC_KEYS
        assert all(0.0 <= v <= 1.0 for v in metrics["test"].values())
        # the stored valid metrics are those of the best epoch's history row
        best = history[metrics["best_epoch"] - 1]
        for key, value in metrics["valid"].items():
            assert float(best[f"valid_{key}"]) == pytest.approx(value, rel=1e-12), key


def test_train_output(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert train(data_dir, tmp_path / "r", "bpr", 2) == 0
    out = capsys.readouterr().out
    assert "epoch 1: loss" in out and "epoch 2: loss" in out
    assert "best valid epoch" in out
    assert "recall@20" in out and "bpr (test)" in out
    assert f"run folder: {tmp_path / 'r'}" in out


def test_train_is_deterministic(data_dir: Path, runs: dict[str, Path], tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert train(data_dir, again, "bpr", 3) == 0
    first, second = read_json(runs["bpr"] / "metrics.json"), read_json(again / "metrics.json")
    assert second["valid"] == first["valid"]
    assert second["test"] == first["test"]
    assert second["best_epoch"] == first["best_epoch"]
    losses = [row["loss"] for row in read_history(runs["bpr"])]
    assert [row["loss"] for row in read_history(again)] == losses
    # a different seed gives different numbers (so the comparison above can fail)
    other = tmp_path / "other"
    assert train(data_dir, other, "bpr", 3, "--seed", "8") == 0
    assert [row["loss"] for row in read_history(other)] != losses


@pytest.mark.parametrize("model", ["lightgcn", "bpr"])
def test_resume_equals_straight_run(
    data_dir: Path, tmp_path: Path, model: str, capsys: pytest.CaptureFixture
) -> None:
    part = tmp_path / "part"
    assert train(data_dir, part, model, 2) == 0
    assert read_json(part / "metrics.json")["epochs_run"] == 2
    capsys.readouterr()
    argv = ["train", "--resume", str(part), "--epochs", "4", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "resumed" in out and "after epoch 2" in out
    assert "epoch 3: loss" in out and "epoch 1: loss" not in out
    straight = tmp_path / "straight"
    assert train(data_dir, straight, model, 4) == 0
    resumed, full = read_json(part / "metrics.json"), read_json(straight / "metrics.json")
    assert resumed["epochs_run"] == full["epochs_run"] == 4
    assert resumed["best_epoch"] == full["best_epoch"]
    assert resumed["valid"] == full["valid"]
    assert resumed["test"] == full["test"]
    hist_resumed, hist_full = read_history(part), read_history(straight)
    assert [r["epoch"] for r in hist_resumed] == ["1", "2", "3", "4"]
    for a, b in zip(hist_resumed, hist_full, strict=True):
        assert a["loss"] == b["loss"]
        assert a["valid_recall@20"] == b["valid_recall@20"]
    assert read_json(part / "config.json")["train"]["epochs"] == 4


def test_resume_without_out(data_dir: Path, tmp_path: Path) -> None:
    part = tmp_path / "part"
    assert train(data_dir, part, "bpr", 1) == 0
    assert main(["train", "--resume", str(part), "--epochs", "2", "--quiet"]) == 0
    assert read_json(part / "metrics.json")["epochs_run"] == 2


def test_evaluate_json_matches_metrics(runs: dict[str, Path], capsys) -> None:  # type: ignore[no-untyped-def]
    for run in runs.values():
        metrics = read_json(run / "metrics.json")
        capsys.readouterr()
        assert main(["evaluate", "--run", str(run), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == metrics["test"]
        assert main(["evaluate", "--run", str(run), "--json", "--split", "valid"]) == 0
        assert json.loads(capsys.readouterr().out) == metrics["valid"]
    assert main(["evaluate", "--run", str(runs["bpr"])]) == 0
    table = capsys.readouterr().out
    assert "bpr (test)" in table and "ndcg@50" in table


def test_evaluate_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mentor: error: ") and "no config.json" in err
    assert len(err.strip().splitlines()) == 1


def _read_export(path: Path) -> tuple[str, dict[int, list[tuple[int, int]]]]:
    users = {user_ext(u): u for u in range(30)}
    items = {item_ext(i): i for i in range(80)}
    lines = path.read_text().splitlines()
    by_user: dict[int, list[tuple[int, int]]] = {}
    for line in lines[1:]:
        user, rank, item = line.split("\t")
        by_user.setdefault(users[user], []).append((int(rank), items[item]))
    return lines[0], by_user


@pytest.mark.parametrize("model", ["lightgcn", "bpr"])
def test_export_reproduces_test_metrics(
    data_dir: Path, runs: dict[str, Path], tmp_path: Path, model: str, capsys
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "sub" / "top.tsv"
    assert main(["export", "--run", str(runs[model]), "--k", "50", "--out", str(out)]) == 0
    assert "wrote top-50 for 30 users" in capsys.readouterr().out
    header, by_user = _read_export(out)
    assert header == "user\trank\titem"
    rows = read_rows(data_dir)
    train_items: dict[int, set[int]] = {}
    for u, i in rows["train"]:
        train_items.setdefault(u, set()).add(i)
    assert set(by_user) == set(train_items)
    ranked = {}
    for user, pairs in by_user.items():
        assert [r for r, _ in pairs] == list(range(1, 51))
        items = [i for _, i in pairs]
        assert len(set(items)) == 50
        assert not set(items) & train_items[user]
        ranked[user] = items
    truth: dict[int, set[int]] = {}
    for u, i in rows["test"]:
        if u in train_items:
            truth.setdefault(u, set()).add(i)
    expected = read_json(runs[model] / "metrics.json")["test"]
    got = brute_force_metrics(ranked, truth, KS)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    assert expected["recall@50"] > 0
    assert not list(out.parent.glob(".*.tmp"))


def test_export_bad_k(runs: dict[str, Path], tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "top.tsv"
    assert main(["export", "--run", str(runs["bpr"]), "--k", "0", "--out", str(out)]) == 2
    assert "--k must be at least 1" in capsys.readouterr().err
    assert not out.exists()


def test_existing_run_refused(
    data_dir: Path, runs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    run = runs["lightgcn"]
    before = (run / "metrics.json").read_text()
    assert train(data_dir, run, "lightgcn", 3) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and f"--resume {run}" in err
    assert len(err.strip().splitlines()) == 1
    assert (run / "metrics.json").read_text() == before


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_data_in_process(tmp_path: Path, case: str, capsys: pytest.CaptureFixture) -> None:
    bad = make_bad_dataset(tmp_path / "data", case)
    run = tmp_path / "RUN"
    rc = main(["train", "--model", "bpr", "--data", str(bad), "--out", str(run), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("mentor: error: ")
    for fragment in BAD_CASES[case]:
        assert fragment in lines[0], (fragment, lines[0])
    assert captured.out == ""
    assert not run.exists()


@pytest.mark.parametrize("case", ["non_integer_id", "pickle_npy"])
def test_bad_data_subprocess(tmp_path: Path, case: str) -> None:
    bad = make_bad_dataset(tmp_path / "data", case)
    run = tmp_path / "RUN"
    proc = subprocess.run(
        [sys.executable, "-m", "mentor.cli", "train", "--model", "bpr"]
        + ["--data", str(bad), "--out", str(run), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mentor: error: ")
    for fragment in BAD_CASES[case]:
        assert fragment in lines[0]
    assert not run.exists()


def _one_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_unknown_model(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert train(data_dir, tmp_path / "r", "lightgc", 1) == 2
    line = _one_error(capsys)
    assert "unknown model 'lightgc'" in line and "did you mean 'lightgcn'" in line
    assert not (tmp_path / "r").exists()


def test_set_unknown_model_key(data_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert train(data_dir, tmp_path / "r", "lightgcn", 1, "--set", "model.n_layer=3") == 2
    line = _one_error(capsys)
    assert "unknown key 'model.n_layer'" in line and "did you mean 'n_layers'" in line
    assert not (tmp_path / "r").exists()


def test_set_unknown_section(data_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert train(data_dir, tmp_path / "r", "bpr", 1, "--set", "foo.x=1") == 2
    line = _one_error(capsys)
    assert "--set foo.x" in line and "data, model, train, eval" in line
    assert not (tmp_path / "r").exists()


def test_set_values_applied(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "r"
    extra = ["--set", "train.learning_rate=1e-2", "--set", "model.n_layers=1"]
    extra += ["--set", "eval.topk=[5, 10, 20, 50]", "--set", "eval.valid_metric=ndcg@10"]
    assert train(data_dir, run, "lightgcn", 1, *extra) == 0
    config = read_json(run / "config.json")
    assert config["train"]["learning_rate"] == 0.01
    assert config["model"]["n_layers"] == 1
    assert config["eval"]["valid_metric"] == "ndcg@10"
    assert config["data"]["path"] == str(data_dir)


def test_config_file(data_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"model_name": "bpr", "model": {"embedding_size": 8}}))
    run = tmp_path / "r"
    argv = ["train", "--config", str(cfg), "--data", str(data_dir), "--out", str(run)]
    assert main([*argv, "--epochs", "1", "--quiet"]) == 0
    config = read_json(run / "config.json")
    assert config["model_name"] == "bpr"
    assert config["model"]["embedding_size"] == 8


def test_train_needs_out() -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "--model", "bpr", "--data", "x"])
    assert info.value.code == 2


def test_models_lists_all(capsys: pytest.CaptureFixture) -> None:
    assert main(["models"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == model_names()
    assert {"pop", "bpr", "lightgcn", "mentor"} <= set(names)


def test_data_check_prints_table(data_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "check", str(data_dir)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["data", "set", "'tiny'", "value"]
    table = {line.rsplit(None, 1)[0].strip(): line.rsplit(None, 1)[1] for line in lines[2:]}
    n_rows = sum(len(v) for v in read_rows(data_dir).values())
    assert table["users"] == "30"
    assert table["items"] == "80"
    assert table["interactions"] == str(n_rows)
    assert table["test"] == "60"
    assert table["valid"] == "30"
    assert table["cold-start users in test"] == "0"
    assert table["item id mapping"] == "yes"
    assert "feature text" in out and "80 x 8" in out


def test_data_check_bad_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = make_bad_dataset(tmp_path, "bad_label")
    assert main(["data", "check", str(bad)]) == 2
    assert "line 4" in _one_error(capsys)


def test_data_check_warns_on_duplicates(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = make_dataset(tmp_path, mapping=False)
    inter = folder / "tiny.inter"
    lines = inter.read_text().splitlines()
    inter.write_text("\n".join([*lines, lines[1], lines[2]]) + "\n")
    assert main(["data", "check", str(folder)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "dropped 2 duplicate" in err


def test_popularity_matches_brute_force(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "pop"
    assert main(["train", "--model", "pop", "--data", str(data_dir), "--out", str(run)]) == 0
    metrics = read_json(run / "metrics.json")
    assert metrics["epochs_run"] == 0
    rows = read_rows(data_dir)
    counts = np.bincount([i for _, i in rows["train"]], minlength=80)
    train_items: dict[int, set[int]] = {}
    for u, i in rows["train"]:
        train_items.setdefault(u, set()).add(i)
    # most train interactions first, ties to the lower item id, the user's train items skipped
    order = sorted(range(80), key=lambda i: (-counts[i], i))
    ranked = {u: [i for i in order if i not in seen][:50] for u, seen in train_items.items()}
    for split in ("valid", "test"):
        truth: dict[int, set[int]] = {}
        for u, i in rows[split]:
            truth.setdefault(u, set()).add(i)
        expected = brute_force_metrics(ranked, truth, KS)
        for key, value in expected.items():
            assert metrics[split][key] == pytest.approx(value, abs=1e-12), (split, key)


def test_fewer_items_than_largest_k(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_dataset(tmp_path, n_users=30, n_items=40)  # default eval.topk has 50
    rc = main(["train", "--model", "pop", "--data", str(data), "--out", str(tmp_path / "r")])
    assert rc in (0, 2)
    if rc == 2:
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_plot_draws_the_curves_of_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    from conftest import make_dataset

    import mentor

    data = make_dataset(tmp_path)
    mentor.train(
        "bpr", data, tmp_path / "run", epochs=3, topk=[5, 10], valid_metric="recall@10",
        progress=False, log=lambda _: None,
    )  # fmt: skip
    assert main(["plot", str(tmp_path / "run")]) == 0
    png = tmp_path / "run" / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(png) in capsys.readouterr().out
    assert main(["plot", str(tmp_path / "run"), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert main(["plot", str(tmp_path)]) == 2
    assert "history.csv: missing" in capsys.readouterr().err


def test_tensorboard_gets_every_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tensorboard")
    from conftest import hide, make_dataset
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = make_dataset(tmp_path)
    argv = ["train", "--model", "bpr", "--data", str(data), "--out", str(tmp_path / "run")]
    argv += ["--epochs", "3", "--set", "eval.topk=[5,10]", "--set", "eval.valid_metric=recall@10"]
    assert main([*argv, "--quiet", "--tensorboard", str(tmp_path / "tb")]) == 0
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert {"loss", "loss_bpr", "valid_recall@10"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]
    with pytest.MonkeyPatch.context() as mp:
        hide(mp, "tensorboard")
        argv[argv.index("--out") + 1] = str(tmp_path / "other")
        assert main([*argv, "--tensorboard", str(tmp_path / "tb2")]) == 2
    assert "pip install 'mentor-rec[tensorboard]'" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()

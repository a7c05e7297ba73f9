"""Shared searches: one Optuna study in SQLite or PostgreSQL, several workers (one of them
killed), trials pruned on the validation curve, and one-line errors for bad storages.

The PostgreSQL tests run against the server at ``MENTOR_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``) and skip, saying why, only where none answers.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import PG_URL, postgres_or_skip

from mentor.cli import main
from mentor.errors import MentorError
from mentor.search import grid_search

optuna = pytest.importorskip("optuna", reason="optuna is not installed (search extra)")

TIMINGS = ("train_seconds", "seconds_per_epoch", "peak_memory_mb")
CHECKPOINT = "checkpoint.safetensors"
WORKER = "import sys; from mentor.cli import main; sys.exit(main(sys.argv[1:]))"


def quiet(_: str) -> None:
    """A log that prints nothing."""


def clustered(root: Path, seed: int = 0) -> Path:
    """A data folder where 40 users fall in 4 groups, each with its own 12 items (8 a user: 6
    train, 1 valid, 1 test): a trained model ranks far above an untrained one."""
    rng = np.random.default_rng(seed)
    folder = root / "clustered"
    folder.mkdir(parents=True)
    lines = ["userID\titemID\tx_label"]
    for user in range(40):
        items = (user % 4) * 12 + rng.choice(12, size=8, replace=False)
        labels = [0] * 6 + [1, 2]
        lines += [f"{user}\t{item}\t{label}" for item, label in zip(items, labels, strict=True)]
    (folder / "clustered.inter").write_text("\n".join(lines) + "\n")
    return folder


def settings(data: Path, epochs: int) -> dict[str, Any]:
    """Shared settings of the tests' searches: many short epochs, no early stop."""
    return {
        "data": {"path": str(data)},
        "train": {"epochs": epochs, "batch_size": 32, "patience": 100},
        "eval": {"topk": [5, 10], "valid_metric": "recall@10"},
    }


def table(summary: dict[str, Any]) -> dict[str, Any]:
    """What a search decides, without the timings (which differ from one training to the next)."""
    runs = [{k: v for k, v in run.items() if k not in TIMINGS} for run in summary["runs"]]
    return {
        "runs": runs,
        "best": summary["best"]["run"],
        "grid_size": summary["grid_size"],
        "valid_metric": summary["valid_metric"],
    }


def sqlalchemy_url(url: str) -> str:
    """The storage as Optuna opens it."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A storage URL and a list the test adds its studies to (deleted from PostgreSQL after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}", []
        return
    postgres_or_skip()
    studies: list[str] = []
    yield PG_URL, studies
    names = optuna.study.get_all_study_names(sqlalchemy_url(PG_URL))
    for name in set(studies) & set(names):
        optuna.delete_study(study_name=name, storage=sqlalchemy_url(PG_URL))


def start_worker(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """``mentor`` with ``argv`` in a new process, its output (unbuffered) in ``log``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as handle:
        return subprocess.Popen(
            [sys.executable, "-c", WORKER, *argv], stdout=handle, stderr=subprocess.STDOUT, env=env
        )


def study_of(log: Path, deadline: float) -> str:
    """The study name a worker logs when it starts."""
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if ": study mentor-" in line:
                return line.split(": study ", 1)[1].split()[0]
        time.sleep(0.1)
    raise AssertionError(f"no study line in {log}: {log.read_text()[-2000:]}")


def test_two_workers_one_killed_finish_with_the_table_of_one(
    storage: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, studies = storage
    # fresh data on PostgreSQL: another test run's study (same identities) is never found
    data = clustered(tmp_path, seed=random.randrange(1 << 30) if url == PG_URL else 0)
    base = settings(data, epochs=8)
    grid = {"model.reg_weight": [1e-4, 1e-2], "model.embedding_size": [8, 16]}
    one = grid_search(
        "bpr", base, grid, tmp_path / "one", log=quiet, storage=f"sqlite:///{tmp_path}/one.db"
    )
    out = tmp_path / "two"
    argv = ["search", "--model", "bpr", "--data", str(data), "--out", str(out), "--epochs", "8"]
    argv += ["--set", "train.batch_size=32", "--set", "train.patience=100"]
    argv += ["--set", "eval.topk=[5,10]", "--set", "eval.valid_metric=recall@10"]
    argv += ["--grid", "model.reg_weight=[1e-4,1e-2]", "--grid", "model.embedding_size=[8,16]"]
    argv += ["--storage", url, "--heartbeat", "1"]
    deadline = time.monotonic() + 240
    victim = start_worker(argv, tmp_path / "victim.log")
    survivor = None
    try:
        name = study_of(tmp_path / "victim.log", deadline)
        studies.append(name)
        survivor = start_worker(argv, tmp_path / "survivor.log")
        assert study_of(tmp_path / "survivor.log", deadline) == name
        tag = f"{socket.gethostname()}:{victim.pid}"
        killed, first_epoch = None, []
        while killed is None and time.monotonic() < deadline and victim.poll() is None:
            study = optuna.load_study(study_name=name, storage=sqlalchemy_url(url))
            for trial in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
                run = out / trial.user_attrs.get("run", "?")
                if trial.user_attrs.get("worker") == tag and (run / CHECKPOINT).exists():
                    os.kill(victim.pid, signal.SIGKILL)  # mid-trial: a checkpoint, no metrics
                    killed = trial
                    victim.wait(timeout=30)
                    first_epoch = (run / "history.csv").read_text().splitlines()[:2]
                    break
            time.sleep(0.05)
        assert killed is not None, (tmp_path / "victim.log").read_text()[-2000:]
        assert victim.returncode == -signal.SIGKILL
        finished = {p: p.stat().st_mtime_ns for p in out.glob("*/metrics.json")}
        assert survivor.wait(timeout=180) == 0, (tmp_path / "survivor.log").read_text()[-3000:]
    finally:
        for process in (victim, survivor):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    summary = json.loads((out / "search.json").read_text())
    assert table(summary) == table(one)
    assert summary["study"] == name
    # every combination completed once; the killed trial failed and was trained again, in the
    # same folder, resumed; what had finished before the kill was not trained again
    study = optuna.load_study(study_name=name, storage=sqlalchemy_url(url))
    trials = study.get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.user_attrs["run"] for t in complete) == sorted(r["run"] for r in one["runs"])
    [failed] = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed.number == killed.number
    assert failed.user_attrs["run"] in [t.user_attrs["run"] for t in complete]
    # resumed from its checkpoint: its first epoch is the victim's (the same seconds)
    assert (out / failed.user_attrs["run"] / "history.csv").read_text().splitlines()[:2] == (
        first_epoch
    )
    assert len(trials) == 5
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    assert len([p for p in out.iterdir() if p.is_dir()]) == 4
    # one more worker later: nothing to train, the same table from the study alone
    again = grid_search("bpr", base, grid, tmp_path / "three", log=quiet, storage=url)
    assert table(again) == table(one) and not list((tmp_path / "three").glob("0*"))
    assert len(study.get_trials()) == 5


def test_prune_none_gives_the_results_of_an_unshared_search(tmp_path: Path) -> None:
    data = clustered(tmp_path)
    base = settings(data, epochs=3)
    grid = {"model.reg_weight": [1e-4, 1e-2]}
    unshared = grid_search("bpr", base, grid, tmp_path / "unshared", log=quiet)
    assert "study" not in unshared and not (tmp_path / "unshared" / "study.db").exists()
    db = tmp_path / "sub" / "s.db"  # its folder is made
    shared = grid_search("bpr", base, grid, tmp_path / "shared", log=quiet, storage=str(db))
    assert table(shared) == table(unshared)
    assert "pruned" not in shared and db.exists()


def test_median_and_halving_prune_bad_trials_which_resume_later(tmp_path: Path) -> None:
    data = clustered(tmp_path)
    base = settings(data, epochs=8)
    # four good combinations first, then four that cannot learn (a learning rate of 1e-7)
    grid = {"train.learning_rate": [0.01, 1e-7], "model.reg_weight": [1e-5, 1e-4, 1e-3, 1e-2]}
    out = tmp_path / "median"
    median = grid_search("bpr", base, grid, out, log=quiet, prune="median")
    assert (out / "study.db").exists()  # without --storage: the study beside the runs
    # the median rule waits for 5 finished trials: the last three bad ones stop early
    assert [p["params"]["model.reg_weight"] for p in median["pruned"]] == [1e-4, 1e-3, 1e-2]
    assert all(p["params"]["train.learning_rate"] == 1e-7 for p in median["pruned"])
    assert all(p["epoch"] < 8 for p in median["pruned"])
    assert len(median["runs"]) == 5 and median["grid_size"] == 8
    for pruned in median["pruned"]:
        run = out / pruned["run"]
        assert (run / "checkpoint.safetensors").exists() and not (run / "metrics.json").exists()
    assert median["best"]["params"]["train.learning_rate"] == 0.01
    halving = grid_search("bpr", base, grid, tmp_path / "halving", log=quiet, prune="halving")
    assert {p["params"]["train.learning_rate"] for p in halving["pruned"]} == {1e-7}
    assert len(halving["pruned"]) >= 3
    assert halving["best"]["run"] == median["best"]["run"]
    # without pruning (another study), the pruned runs resume to their end: the full table
    full = grid_search("bpr", base, grid, out, log=quiet, storage=str(out / "study.db"))
    assert len(full["runs"]) == 8 and "pruned" not in full
    assert len([p for p in out.iterdir() if p.is_dir()]) == 8
    assert {r["run"] for r in full["runs"]} >= {p["run"] for p in median["pruned"]}
    assert all(r["epochs_run"] == 8 for r in full["runs"])


def test_a_shared_budget_trains_that_many_and_resumes(tmp_path: Path) -> None:
    data = clustered(tmp_path)
    base = settings(data, epochs=1)
    grid = {"model.reg_weight": [1e-5, 1e-3, 1e-1, 1.0, 2.0], "model.embedding_size": [8, 16]}
    out = tmp_path / "sampled"
    db = f"sqlite:///{tmp_path}/s.db"
    summary = grid_search("bpr", base, grid, out, log=quiet, trials=3, storage=db)
    params = [json.dumps(r["params"], sort_keys=True) for r in summary["runs"]]
    assert summary["grid_size"] == 10 and len(params) == 3 and len(set(params)) == 3
    assert len([p for p in out.iterdir() if p.is_dir()]) == 3
    assert summary["best"] == max(summary["runs"], key=lambda r: r["valid"]["recall@10"])
    again = grid_search("bpr", base, grid, out, log=quiet, trials=3, storage=db)
    assert again == summary
    # two worker processes of this machine: the whole grid, each combination trained once
    whole = grid_search("bpr", base, grid, tmp_path / "whole", log=quiet, workers=2, storage=db)
    assert len(whole["runs"]) == 10
    assert len([p for p in (tmp_path / "whole").iterdir() if p.is_dir()]) == 10
    study = optuna.load_study(study_name=whole["study"], storage=db)
    assert len(study.get_trials()) == 10


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("ftp://host/x", "--storage 'ftp://host/x': use sqlite:///FILE, a file path or postgresql"),
        ("postgresql://nobody@127.0.0.1:1/none", "cannot connect"),
        ("NOTADB", "file is not a database"),
        ("FOLDER", "is a folder; give a file"),
    ],
)
def test_bad_storages_are_one_line_errors(
    storage: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if storage.startswith("postgresql"):
        pytest.importorskip("psycopg", reason="psycopg is not installed (store extra)")
    data = clustered(tmp_path)
    (tmp_path / "NOTADB").write_text("not a database\n" * 100)
    (tmp_path / "FOLDER").mkdir()
    if storage in ("NOTADB", "FOLDER"):
        storage = str(tmp_path / storage)
    out = tmp_path / "s"
    argv = ["search", "--model", "bpr", "--data", str(data), "--out", str(out)]
    argv += ["--grid", "model.reg_weight=[1e-4]", "--epochs", "1", "--storage", storage]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not list(out.glob("0*"))  # nothing trained


def test_prune_and_heartbeat_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = clustered(tmp_path)
    argv = ["search", "--model", "bpr", "--data", str(data), "--out", str(tmp_path / "s")]
    argv += ["--grid", "model.reg_weight=[1e-4]"]
    for bad in (["--prune", "mean"], ["--heartbeat", "0"]):
        with pytest.raises(SystemExit):
            main([*argv, *bad])
        assert bad[0] in capsys.readouterr().err
    with pytest.raises(MentorError, match="--prune mean: use one of none, median, halving"):
        grid_search("bpr", settings(data, 1), {}, tmp_path / "p", log=quiet, prune="mean")

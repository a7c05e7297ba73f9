"""Data-parallel training on torch.distributed (gloo, processes on localhost started by the
tests): 2 processes compute what 1 does; a killed rank stops the others with one line; ranks
with other settings stop at start."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import free_port, make_dataset

import mentor
from mentor.data.sampler import Batch
from mentor.losses import info_nce
from mentor.training.checkpoint import load_tensors

SETTINGS = ["--set", "eval.topk=[5,10]", "--set", "eval.valid_metric=recall@10", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MENTOR_DIST_TIMEOUT": "30"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    return make_dataset(root, n_users=30, n_items=40, features={"image": 8, "text": 6})


def test_info_nce_shards_add_up_to_the_whole() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(23, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(23, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    whole = info_nce(a, b, 0.3, block=4, dtype=torch.float64)
    grads = torch.autograd.grad(whole, (a, b))
    parts = [info_nce(a, b, 0.3, block=4, dtype=torch.float64, shard=(r, 3)) for r in range(3)]
    part_grads = [torch.autograd.grad(p, (a, b)) for p in parts]
    torch.testing.assert_close(sum(parts), whole)
    for k in range(2):
        torch.testing.assert_close(sum(g[k] for g in part_grads), grads[k])


def test_batch_slices_cover_the_rows() -> None:
    batch = Batch(torch.arange(7), torch.arange(7) + 10, torch.arange(7) + 20)
    parts = [batch.slice_for(r, 3) for r in range(3)]
    assert torch.cat([p.users for p in parts]).tolist() == list(range(7))
    assert sum(p.fraction for p in parts) == pytest.approx(1.0)
    assert [p.shard for p in parts] == [(0, 3), (1, 3), (2, 3)]
    tiny = Batch(torch.tensor([4]), torch.tensor([5]), torch.empty(0, dtype=torch.int64))
    empty = tiny.slice_for(0, 2)  # one row, two ranks: rank 0's slice is empty
    assert empty.fraction == 0.0 and empty.users.tolist() == [4] and len(empty.negatives) == 0
    assert tiny.slice_for(1, 2).fraction == 1.0


def _torchrun(argv: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mentor", "train", "--nproc", str(nproc), *argv]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "SIGABRT" in done.stderr:
        # gloo has aborted a rank on an overloaded machine (seen once in ~20 suite runs on 2
        # shared cores); a second start, in an empty run folder, tells that apart from a real
        # failure
        if "--out" in argv:
            shutil.rmtree(argv[argv.index("--out") + 1], ignore_errors=True)
        done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    return done


def _history(run: Path) -> list[dict[str, float]]:
    with open(run / "history.csv") as handle:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(handle)]


@pytest.mark.parametrize("model", ["lightgcn", "freedom", "mentor", "layergcn", "slmrec"])
def test_two_processes_train_what_one_does(data: Path, tmp_path: Path, model: str) -> None:
    """One optimisation step (one batch of every row): the same loss and parameters to float32
    rounding; three epochs of several batches (the last one uneven): the same validation.
    LayerGCN's terms are sums over rows, SLMRec's batch is replicated on every rank."""
    # bfloat16 products round differently for other block shapes: compare in float32
    exact = ["--set", "model.contrast_dtype=float32"] if model == "mentor" else []
    for name, batch, epochs in (("step", 4096, 1), ("epochs", 64, 3)):
        sets = ["--epochs", str(epochs), "--set", f"train.batch_size={batch}", *exact, *SETTINGS]
        one, two = tmp_path / f"{name}-1", tmp_path / f"{name}-2"
        overrides = [v for f, v in zip(sets, sets[1:], strict=False) if f == "--set"]
        mentor.train(
            model, data, one, overrides=overrides, epochs=epochs, progress=False,
            log=lambda _: None,
        )  # fmt: skip
        done = _torchrun(["--model", model, "--data", str(data), "--out", str(two), *sets])
        assert done.returncode == 0, done.stderr[-3000:]
        if name == "step":
            first, second = _history(one)[0], _history(two)[0]
            assert second["loss"] == pytest.approx(first["loss"], rel=1e-5)
            weights = [load_tensors(run / "checkpoint.safetensors")[0] for run in (one, two)]
            for key, value in weights[0].items():
                if key.startswith("model."):
                    torch.testing.assert_close(weights[1][key], value, rtol=1e-5, atol=1e-7)
        else:
            for a, b in zip(_history(one), _history(two), strict=True):
                for key in (k for k in a if k.startswith("valid_")):
                    assert abs(a[key] - b[key]) <= 1e-4, (key, a[key], b[key])
    metrics = json.loads((tmp_path / "epochs-2" / "metrics.json").read_text())
    assert metrics["world_size"] == 2  # and only rank 0 wrote the folder:
    assert not [p for p in (tmp_path / "epochs-2").iterdir() if ".tmp" in p.name]


def _ranks(argvs: list[list[str]]) -> list[subprocess.Popen]:
    """Start one `mentor train` per argv as ranks 0, 1, ... of one group (no torchrun)."""
    port = str(free_port())
    procs = []
    for rank, argv in enumerate(argvs):
        env = {**ENV, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(len(argvs))}
        env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "mentor", "train", *argv],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    return procs


def test_a_killed_rank_stops_the_others_and_resume_finishes(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = ["--model", "lightgcn", "--data", str(data), "--out", str(run), "--epochs", "120"]
    argv += ["--set", "train.batch_size=32", "--set", "train.patience=1000", *SETTINGS]
    main, other = _ranks([argv, argv])
    deadline = time.monotonic() + 120
    while not (run / "history.csv").exists() or len(_history(run)) < 3:
        assert time.monotonic() < deadline and main.poll() is None, main.stderr.read()
        time.sleep(0.05)
    other.send_signal(signal.SIGKILL)
    other.wait()
    began = time.monotonic()
    _, err = main.communicate(timeout=60)
    assert main.returncode == 2 and time.monotonic() - began < 45
    lines = [line for line in err.splitlines() if line.startswith("mentor: error")]
    assert len(lines) == 1 and "lost its peers" in lines[0] and "--resume" in lines[0]
    assert not [p for p in run.iterdir() if ".tmp" in p.name]  # no half-written file
    stopped = load_tensors(run / "checkpoint.safetensors")[1]["epoch"]  # a whole checkpoint
    assert 1 <= stopped < 120
    done = mentor.resume(run, progress=False, log=lambda _: None)
    assert done["epochs_run"] == 120


def test_ranks_with_other_settings_stop_at_start(data: Path, tmp_path: Path) -> None:
    argv = ["--model", "lightgcn", "--data", str(data), "--out", str(tmp_path / "r"), *SETTINGS]
    procs = _ranks([argv, [*argv, "--set", "train.learning_rate=0.5"]])
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err
        lines = [line for line in err.splitlines() if line.startswith("mentor: error")]
        assert len(lines) == 1 and "different settings" in lines[0]
    assert not (tmp_path / "r" / "checkpoint.safetensors").exists()

"""The Python twins of the CLI verbs: mentor.train / resume / evaluate / export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_dataset

import mentor
from mentor.errors import MentorError


def test_import_mentor_is_light() -> None:
    code = "import sys, mentor; print('torch' in sys.modules, 'mentor.api' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_train_evaluate_export_resume(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, n_items=60)
    run = tmp_path / "run"
    metrics = mentor.train(
        "lightgcn", data, run, n_layers=1, epochs=2, progress=False, log=lambda _: None
    )
    stored = json.loads((run / "metrics.json").read_text())
    assert metrics == stored and metrics["epochs_run"] == 2
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["n_layers"] == 1 and config["train"]["epochs"] == 2
    assert mentor.evaluate(run, split="valid") == stored["valid"]
    assert mentor.evaluate(run) == stored["test"]
    assert mentor.export(run, tmp_path / "top.tsv", k=5) == len(
        {line.split("\t")[0] for line in (tmp_path / "top.tsv").read_text().splitlines()[1:]}
    )
    more = mentor.resume(run, epochs=3, progress=False, log=lambda _: None)
    assert more["epochs_run"] == 3


def test_settings_are_routed_and_checked(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, n_items=60)
    with pytest.raises(MentorError, match="did you mean 'n_layers'"):
        mentor.train("lightgcn", data, tmp_path / "r", n_layer=2)
    with pytest.raises(MentorError, match="train.seed"):
        mentor.train("bpr", data, tmp_path / "r", epochs=1, progress=False, log=print)
        mentor.resume(tmp_path / "r", seed=5)
    assert not (tmp_path / "r2").exists()
    with pytest.raises(MentorError, match="split must be"):
        mentor.evaluate(tmp_path / "r", split="train")


def test_numpy_scalars_are_accepted(tmp_path: Path) -> None:
    """Settings and k from NumPy (a grid built with np.arange, a pandas row) work as Python
    numbers; a value JSON cannot hold is a TypeError naming the setting."""
    import numpy as np

    data = make_dataset(tmp_path, n_items=60)
    run = tmp_path / "run"
    mentor.train(
        "lightgcn", data, run, n_layers=np.int64(1), epochs=np.int32(2),
        learning_rate=np.float32(0.01), topk=np.array([10, 20]), progress=False,
        log=lambda _: None,
    )  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and config["model"]["n_layers"] == 1
    assert config["eval"]["topk"] == [10, 20]
    assert (
        mentor.resume(run, epochs=np.int64(3), progress=False, log=lambda _: None)["epochs_run"]
        == 3
    )
    assert mentor.evaluate(run, split=np.str_("valid"))["recall@10"] >= 0
    assert mentor.export(run, tmp_path / "top.tsv", k=np.int64(4)) > 0
    assert len((tmp_path / "top.tsv").read_text().splitlines()) > 4
    with pytest.raises(TypeError, match="setting 'epochs'"):
        mentor.train("bpr", data, tmp_path / "r", epochs=object())

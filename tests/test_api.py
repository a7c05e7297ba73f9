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

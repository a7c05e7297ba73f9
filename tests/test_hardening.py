"""The twelve defects of the hardening review, each with a test that failed before its fix."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import item_ext, make_dataset, user_ext

from mentor.cli import main
from mentor.errors import MentorError
from mentor.fsutil import RunLock
from mentor.search import grid_search, parse_grid


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The single stderr line of a refused command (warnings aside)."""
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("warning:")]
    assert len(err) == 1, err
    assert err[0].startswith("mentor: error: "), err[0]
    return err[0]


def train(data: Path, out: Path, *extra: str, model: str = "bpr", epochs: int = 2) -> int:
    argv = ["train", "--model", model, "--data", str(data), "--out", str(out), "--quiet"]
    return main([*argv, "--epochs", str(epochs), *extra])


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path, n_items=60)


# 1. search reuses by folder name alone ------------------------------------------------------
def test_search_does_not_reuse_runs_of_other_settings_or_data(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "search"
    grid = {"model.reg_weight": [1e-4]}
    first = grid_search("bpr", {"data": {"path": str(data)}, "train": {"epochs": 1}}, grid, out)
    again = grid_search("bpr", {"data": {"path": str(data)}, "train": {"epochs": 1}}, grid, out)
    assert again["runs"][0]["run"] == first["runs"][0]["run"]  # same everything: reused
    more = grid_search("bpr", {"data": {"path": str(data)}, "train": {"epochs": 3}}, grid, out)
    assert more["runs"][0]["run"] != first["runs"][0]["run"]
    assert more["runs"][0]["epochs_run"] == 3
    other = make_dataset(tmp_path / "other", n_items=60, seed=5)
    moved = grid_search("bpr", {"data": {"path": str(other)}, "train": {"epochs": 1}}, grid, out)
    assert moved["runs"][0]["run"] not in {first["runs"][0]["run"], more["runs"][0]["run"]}
    assert moved["runs"][0]["valid"] != first["runs"][0]["valid"]


def test_search_resumes_half_trained_run_with_its_own_config(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "search"
    base = {"data": {"path": str(data)}, "train": {"epochs": 2}}
    done = grid_search("bpr", base, {"model.reg_weight": [1e-3]}, out)
    run = out / done["runs"][0]["run"]
    (run / "metrics.json").unlink()  # looks interrupted: a checkpoint but no metrics
    config = json.loads((run / "config.json").read_text())
    again = grid_search("bpr", base, {"model.reg_weight": [1e-3]}, out)
    assert again["runs"][0]["run"] == run.name
    assert json.loads((run / "config.json").read_text()) == config
    assert again["runs"][0]["test"] == done["runs"][0]["test"]


# 2. MMRec's .csv mappings ------------------------------------------------------------------
def test_mmrec_csv_mappings_are_read(tmp_path: Path) -> None:
    from mentor.data.dataset import load_dataset

    folder = make_dataset(tmp_path)
    for kind in ("u", "i"):
        (folder / f"{kind}_id_mapping.tsv").rename(folder / f"{kind}_id_mapping.csv")
    ds = load_dataset(folder)
    assert ds.user_ids[3] == user_ext(3) and ds.item_ids[7] == item_ext(7)
    (folder / "u_id_mapping.tsv").write_text("user_id\tuserID\nx\t0\n")
    with pytest.raises(MentorError, match="both u_id_mapping.tsv and u_id_mapping.csv"):
        load_dataset(folder)


# 3. partial mappings -----------------------------------------------------------------------
def test_partial_mapping_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_dataset(tmp_path)
    lines = (folder / "i_id_mapping.tsv").read_text().splitlines()
    (folder / "i_id_mapping.tsv").write_text("\n".join(lines[:11]) + "\n")  # items 0..9 only
    assert main(["data", "check", str(folder)]) == 2
    msg = one_line_error(capsys)
    assert "i_id_mapping.tsv" in msg and "itemID 10 " in msg


def test_mapping_with_duplicate_external_ids_is_refused(tmp_path: Path) -> None:
    from mentor.data.dataset import load_dataset

    folder = make_dataset(tmp_path)
    lines = (folder / "u_id_mapping.tsv").read_text().splitlines()
    lines[3] = lines[2].split("\t")[0] + "\t2"
    (folder / "u_id_mapping.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(MentorError, match="line 4: external id .* appears twice"):
        load_dataset(folder)


# 4. eval.topk without 10 or 20 ---------------------------------------------------------------
def test_topk_without_10_or_20(tmp_path: Path, data: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    assert train(data, run, "--set", "eval.topk=[3,5]", "--set", "eval.valid_metric=recall@5") == 0
    out = capsys.readouterr().out
    assert "recall@5" in out and "recall@3" in out
    assert main(["evaluate", "--run", str(run)]) == 0
    assert "ndcg@3" in capsys.readouterr().out


# 5. resume --epochs 0 ------------------------------------------------------------------------
def test_resume_with_invalid_override_writes_nothing(tmp_path: Path, data: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    assert train(data, run) == 0
    before = (run / "config.json").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "0", "--quiet"]) == 2
    assert "train.epochs must be at least 1" in one_line_error(capsys)
    assert (run / "config.json").read_bytes() == before
    assert main(["evaluate", "--run", str(run), "--json"]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 3


# 6. resume ignored --set/--seed/--device/--data ----------------------------------------------
def test_resume_refuses_model_changes_and_accepts_moved_data(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert train(data, run) == 0
    stored = json.loads((run / "config.json").read_text())
    assert Path(stored["data"]["path"]).is_absolute()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--set", "model.reg_weight=0.5"]) == 2
    assert "model.reg_weight" in one_line_error(capsys)
    assert main(["train", "--resume", str(run), "--seed", "7"]) == 2
    assert "train.seed" in one_line_error(capsys)
    moved = tmp_path / "moved"
    data.rename(moved)
    assert main(["evaluate", "--run", str(run), "--json"]) == 2
    capsys.readouterr()
    argv = ["train", "--resume", str(run), "--data", str(moved), "--device", "cpu"]
    assert main([*argv, "--epochs", "3", "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["path"] == str(moved.absolute())


# 7. huge ids, inf --------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["inf", "1e30", "9223372036854775807", "99999999999999999999"])
def test_huge_or_infinite_ids(tmp_path: Path, bad: str, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = make_dataset(tmp_path, mapping=False)
    inter = folder / "tiny.inter"
    lines = inter.read_text().splitlines()
    lines[5] = "\t".join([bad, *lines[5].split("\t")[1:]])
    inter.write_text("\n".join(lines) + "\n")
    assert main(["data", "check", str(folder)]) == 2
    msg = one_line_error(capsys)
    assert "line 6" in msg and "userID" in msg


def test_sparse_id_space_warns(tmp_path: Path) -> None:
    from mentor.data.dataset import load_dataset

    folder = make_dataset(tmp_path, mapping=False)
    inter = folder / "tiny.inter"
    lines = inter.read_text().splitlines()
    lines[1] = "\t".join(["5000", *lines[1].split("\t")[1:]])
    inter.write_text("\n".join(lines) + "\n")
    ds = load_dataset(folder)
    assert any("of 5,001 user ids have no interaction at all" in w for w in ds.warnings)
    assert any("renumber ids densely" in w for w in ds.warnings)


# 8. empty valid/test split; eval_every > epochs ----------------------------------------------
@pytest.mark.parametrize(("label", "split"), [("1", "valid"), ("2", "test")])
def test_empty_split_refused(tmp_path: Path, label: str, split: str, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = make_dataset(tmp_path, mapping=False)
    inter = folder / "tiny.inter"
    rows = [ln for ln in inter.read_text().splitlines() if not ln.endswith("\t" + label)]
    inter.write_text("\n".join(rows) + "\n")
    assert train(folder, tmp_path / "run") == 2
    assert f"the {split} split is empty" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_eval_every_beyond_epochs_refused(tmp_path: Path, data: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert train(data, tmp_path / "run", "--set", "train.eval_every=5", epochs=2) == 2
    assert "eval_every" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_no_warm_valid_user_refused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "cold"
    folder.mkdir()
    rows = ["userID\titemID\tx_label", "0\t0\t0", "0\t1\t0", "1\t2\t1", "0\t3\t2"]
    (folder / "cold.inter").write_text("\n".join(rows) + "\n")
    argv = ["--set", "eval.topk=[1,2]", "--set", "eval.valid_metric=recall@2"]
    assert train(folder, tmp_path / "run", *argv) == 2
    assert "no valid user has a train interaction" in one_line_error(capsys)


# 9. changed data -----------------------------------------------------------------------------
def test_changed_data_is_refused(tmp_path: Path, data: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    assert train(data, run) == 0
    assert json.loads((run / "run.json").read_text())["data_fingerprint"]
    inter = data / "tiny.inter"
    lines = inter.read_text().splitlines()
    inter.write_text("\n".join(lines[:-1]) + "\n")  # same shapes, one row fewer
    capsys.readouterr()
    for argv in (
        ["evaluate", "--run", str(run)],
        ["export", "--run", str(run), "--out", str(tmp_path / "t.tsv")],
        ["train", "--resume", str(run), "--epochs", "3"],
    ):
        assert main(argv) == 2
        assert "tiny.inter changed since" in one_line_error(capsys)
    assert not (tmp_path / "t.tsv").exists()


# 10. tracebacks ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tree", "fragment"),
    [
        ({"train": 5}, "section 'train' must be a mapping"),
        ({"model": [1]}, "section 'model' must be a mapping"),
        ({"model_name": 5}, "model_name must be a string"),
    ],
)
def test_config_file_with_wrong_section_types(
    tmp_path: Path, data: Path, tree: dict, fragment: str, capsys
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(tree))
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--config", str(path)]
    assert main([*argv, "--model", "bpr"]) == 2
    assert fragment in one_line_error(capsys)


@pytest.mark.parametrize(
    ("assignment", "fragment"),
    [
        ("eval.batch_users=0", "batch_users must be at least 1"),
        ("train.seed=18446744073709551616", "train.seed must be between"),
        ("train.patience=-1", "patience must be at least 0"),
        ("train.learning_rate=NaN", "finite"),
    ],
)
def test_bad_settings_refused(
    tmp_path: Path, data: Path, assignment: str, fragment: str, capsys
) -> None:  # type: ignore[no-untyped-def]
    assert train(data, tmp_path / "r", "--set", assignment) == 2
    assert fragment in one_line_error(capsys)
    assert not (tmp_path / "r").exists()


def test_export_out_naming_a_folder(tmp_path: Path, data: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    assert train(data, run) == 0
    folder = tmp_path / "exports"
    folder.mkdir()
    capsys.readouterr()
    assert main(["export", "--run", str(run), "--out", str(folder)]) == 2
    assert "is a folder" in one_line_error(capsys)
    assert list(folder.iterdir()) == []


def test_truncated_checkpoint(tmp_path: Path, data: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    assert train(data, run) == 0
    for name in ("best.safetensors", "checkpoint.safetensors"):
        raw = (run / name).read_bytes()
        (run / name).write_bytes(raw[: len(raw) // 2])
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run)]) == 2
    assert "best.safetensors: unreadable checkpoint" in one_line_error(capsys)
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    assert "checkpoint.safetensors: unreadable checkpoint" in one_line_error(capsys)


def test_out_naming_an_existing_file(tmp_path: Path, data: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    assert train(data, target) == 2
    assert "is not a folder" in one_line_error(capsys)
    assert target.read_text() == "keep me"
    argv = ["search", "--model", "bpr", "--data", str(data), "--out", str(target)]
    assert main([*argv, "--grid", "model.reg_weight=[1e-3]"]) == 2
    assert "is not a folder" in one_line_error(capsys)


def test_grid_value_with_slash(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "s"
    grid = {"model.semantic_graph_weights": [{"a/b": 1.0}], "model.reg_weight": [1e-3]}
    with pytest.raises(MentorError):  # not a bpr setting: refused before any folder is made
        grid_search("bpr", {"data": {"path": str(data)}}, grid, out)
    assert not out.exists()
    summary = grid_search(
        "bpr",
        {"data": {"path": str(data)}, "train": {"epochs": 1}},
        {"data.path": [str(data)]},
        out,
    )
    run = summary["runs"][0]["run"]
    assert "/" not in run and (out / run / "metrics.json").exists()


def test_search_worker_killed_is_reported(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mentor.search as search

    def killed(cmd, **kwargs):  # type: ignore[no-untyped-def]
        return subprocess.CompletedProcess(cmd, -9, "", "")

    monkeypatch.setattr(search.subprocess, "run", killed)
    with pytest.raises(MentorError, match="killed by signal 9"):
        grid_search("bpr", {"data": {"path": str(data)}}, {"model.reg_weight": [1e-3]}, tmp_path)


def test_repeated_grid_key_refused() -> None:
    with pytest.raises(MentorError, match="given twice"):
        parse_grid(["model.reg_weight=[1e-3]", "model.reg_weight=[1e-4]"])


# 11. float32 range; reserved modality names ---------------------------------------------------
def test_float64_beyond_float32_range(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = make_dataset(tmp_path)
    feat = np.ones((40, 3))
    feat[4, 1] = 1e300
    np.save(folder / "text_feat.npy", feat)
    assert main(["data", "check", str(folder)]) == 2
    assert "row 4" in one_line_error(capsys)


@pytest.mark.parametrize("names", [["clip_n1"], ["text", "text_n1"]])
def test_mentor_view_like_modality_names(tmp_path: Path, names: list[str], capsys) -> None:  # type: ignore[no-untyped-def]
    folder = make_dataset(tmp_path, n_items=60, features=dict.fromkeys(names, 4))
    assert train(folder, tmp_path / "r", model="mentor", epochs=1) == 2
    assert "_n1" in one_line_error(capsys)


def test_modality_name_with_dot_refused(tmp_path: Path) -> None:
    from mentor.data.dataset import load_dataset

    folder = make_dataset(tmp_path, features={"clip.v2": 4})
    with pytest.raises(MentorError, match="modality name 'clip.v2'"):
        load_dataset(folder)


# 12. permissions; locks ----------------------------------------------------------------------
def test_outputs_respect_the_umask(tmp_path: Path, data: Path) -> None:
    old = os.umask(0o022)
    try:
        run = tmp_path / "run"
        assert train(data, run) == 0
        assert main(["export", "--run", str(run), "--out", str(tmp_path / "top.tsv")]) == 0
    finally:
        os.umask(old)
    files = [*run.glob("*.json"), *run.glob("*.safetensors"), tmp_path / "top.tsv"]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_second_process_on_a_run_folder_is_refused(tmp_path: Path, data: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    assert train(data, run) == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
        assert "another mentor process is using this folder" in one_line_error(capsys)
    finally:
        holder.kill()
        holder.wait()
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0


_HOLD_LOCK = """
import sys, time
from pathlib import Path
from mentor.fsutil import RunLock
with RunLock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_is_exclusive_within_a_process(tmp_path: Path) -> None:
    with RunLock(tmp_path), pytest.raises(MentorError, match="another mentor process"):
        RunLock(tmp_path).__enter__()


# an unforeseen exception -----------------------------------------------------------------------
def test_internal_error_is_one_line_with_traceback_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mentor.cli as cli

    def boom(args):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("division by zero")

    monkeypatch.delenv("MENTOR_DEBUG", raising=False)
    monkeypatch.setattr(cli, "cmd_models", boom)
    assert main(["models"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error (ZeroDivisionError" in err[0]
    path = Path(err[0].split("traceback is in ")[1].split(";")[0])
    assert "ZeroDivisionError" in path.read_text()


# found by fuzzing and by hand after the review ----------------------------------------------
@pytest.mark.parametrize(
    ("inter", "fragment"),
    [
        ('userID\titemID\tx_label\n0\t0\t0\n0\t1\t1\n0\t2\t2\n"\t1\t0\n', "line 5"),
        ("userID\tuserID\titemID\tx_label\n0\t0\t0\t0\n", "column 'userID' appears twice"),
    ],
)
def test_quotes_and_repeated_columns(tmp_path: Path, inter: str, fragment: str, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.inter").write_text(inter)
    assert main(["data", "check", str(tmp_path / "d")]) == 2
    assert fragment in one_line_error(capsys)


def test_folders_where_files_belong(tmp_path: Path, data: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "d" / "x.inter").mkdir(parents=True)
    assert main(["data", "check", str(tmp_path / "d")]) == 2
    assert "no *.inter file" in one_line_error(capsys)
    (data / "u_id_mapping.tsv").unlink()
    (data / "u_id_mapping.tsv").mkdir()
    assert main(["data", "check", str(data)]) == 2
    assert "not a regular file" in one_line_error(capsys)


def test_out_below_a_file(tmp_path: Path, data: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "afile").write_text("x")
    assert train(data, tmp_path / "afile" / "run") == 2
    assert "cannot create the folder" in one_line_error(capsys)


def test_invalid_yaml_config(tmp_path: Path, data: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("yaml")
    path = tmp_path / "c.yaml"
    path.write_text("model: [1\n")
    assert train(data, tmp_path / "r", "--config", str(path)) == 2
    assert "invalid YAML" in one_line_error(capsys)


def test_unwritable_export(tmp_path: Path, data: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    assert train(data, run) == 0
    capsys.readouterr()
    assert main(["export", "--run", str(run), "--out", "/proc/top.tsv"]) == 2
    assert "cannot write" in one_line_error(capsys)


def test_resume_across_device_kinds(tmp_path: Path, data: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A checkpoint whose model generator state comes from another device kind (CUDA's state is
    a different size) resumes with a warning instead of failing."""
    import torch
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    assert train(data, run, model="lightgcn") == 0
    path = run / "checkpoint.safetensors"
    from mentor.training.checkpoint import load_tensors

    _, meta = load_tensors(path)
    tensors = load_file(str(path))
    tensors["rng.model"] = torch.zeros(16, dtype=torch.uint8)  # the size of a CUDA state
    save_file(tensors, str(path), metadata={"meta": json.dumps(meta)})
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert "checkpointed on another kind of device" in capsys.readouterr().err

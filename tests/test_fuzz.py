"""Property-based fuzzing: malformed data folders, configuration trees and command lines either
work or end in our one-line error. Any other exception (or exit code 1, an internal error) fails.

The examples are derandomised so CI sees the same cases every run; set
``HYPOTHESIS_PROFILE=explore`` for fresh random cases and more of them.
"""

from __future__ import annotations

import json
import os
import string
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mentor.cli import main
from mentor.config import load_config_file, resolve_config
from mentor.data.dataset import load_dataset
from mentor.errors import MentorError

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "explore",
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# --------------------------------------------------------------------------------------------
# data folders
# --------------------------------------------------------------------------------------------
IDS = st.one_of(
    st.integers(0, 12).map(str),
    st.sampled_from(
        ["-1", "1.0", "2.5", "inf", "-inf", "nan", "1e30", "", " 3", "9223372036854775807"]
    ),
    st.sampled_from(["18446744073709551616", "0x1F", "1_000", "٣", "+4", "007", "u7"]),
    st.text(string.printable.replace("\t", "").replace("\n", ""), max_size=4),
)
LABELS = st.one_of(st.sampled_from(["0", "0", "0", "1", "2"]), IDS)
COLUMNS = st.lists(
    st.sampled_from(["userID", "itemID", "x_label", "rating", "timestamp", "other"]),
    min_size=0,
    max_size=6,
)


@st.composite
def inter_files(draw: st.DrawFn) -> str:
    header = draw(st.one_of(st.just(["userID", "itemID", "x_label"]), COLUMNS))
    n_rows = draw(st.integers(0, 25))
    lines = ["\t".join(header)] if draw(st.booleans()) or header else []
    for _ in range(n_rows):
        width = len(header) + draw(st.sampled_from([0, 0, 0, -1, 1]))
        fields = []
        for column in header[: max(0, width)]:
            fields.append(draw(LABELS if column == "x_label" else IDS))
        fields += [draw(IDS) for _ in range(max(0, width - len(header)))]
        lines.append("\t".join(fields))
    ending = draw(st.sampled_from(["\n", "\r\n", ""]))
    return ending.join(lines) + ending


@st.composite
def mapping_files(draw: st.DrawFn) -> str:
    rows = draw(st.lists(st.tuples(IDS, IDS), max_size=15))
    header = draw(st.sampled_from(["user_id\tuserID", "asin\titemID", "a\tb\tc", "", "x"]))
    return "\n".join([header, *(f"{a}\t{b}" for a, b in rows)]) + "\n"


FEATURES = st.one_of(
    st.tuples(st.integers(0, 16), st.integers(0, 5), st.sampled_from(["f4", "f8", "i4", "?"])),
    st.sampled_from(["nan", "inf", "huge", "1d", "3d", "object", "garbage", "empty"]),
)


def write_feature(path: Path, spec: Any, n_items: int) -> None:
    rng = np.random.default_rng(0)
    if isinstance(spec, tuple):
        rows, dim, dtype = spec
        np.save(path, (rng.standard_normal((rows, dim)) * 3).astype(dtype))
    elif spec in ("nan", "inf", "huge"):
        feat = rng.standard_normal((n_items, 3))
        feat[min(2, n_items - 1), 1] = {"nan": np.nan, "inf": np.inf, "huge": 1e300}[spec]
        np.save(path, feat)
    elif spec == "1d":
        np.save(path, np.ones(n_items, dtype="f4"))
    elif spec == "3d":
        np.save(path, np.ones((n_items, 2, 2), dtype="f4"))
    elif spec == "object":
        np.save(path, np.array([{"a": 1}] * n_items, dtype=object), allow_pickle=True)
    elif spec == "garbage":
        path.write_bytes(b"\x93NUMPY\x01\x00garbage")
    else:
        path.write_bytes(b"")


@given(
    inter=inter_files(),
    user_map=st.one_of(st.none(), mapping_files()),
    item_map=st.one_of(st.none(), mapping_files()),
    map_ext=st.sampled_from([".tsv", ".csv"]),
    features=st.dictionaries(
        st.sampled_from(["image", "text", "a.b", "_x", "text_n1"]), FEATURES, max_size=2
    ),
)
def test_fuzz_data_folder_loads_or_one_line_error(
    inter: str, user_map: str | None, item_map: str | None, map_ext: str, features: dict
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "fuzz.inter").write_text(inter)
        if user_map is not None:
            (folder / f"u_id_mapping{map_ext}").write_text(user_map)
        if item_map is not None:
            (folder / f"i_id_mapping{map_ext}").write_text(item_map)
        for name, spec in features.items():
            write_feature(folder / f"{name}_feat.npy", spec, 13)
        try:
            ds = load_dataset(folder)
        except MentorError as exc:
            assert "\n" not in str(exc) and str(exc)
            return
        for rows in ds.splits.values():
            assert rows.dtype == np.int64 and (rows >= 0).all()
            assert (rows[:, 0] < ds.n_users).all() and (rows[:, 1] < ds.n_items).all()
        for feat in ds.features.values():
            assert feat.dtype == np.float32 and feat.shape[0] == ds.n_items
            assert np.isfinite(feat).all()
        assert len(ds.item_ids) == ds.n_items and all(ds.item_ids)


# --------------------------------------------------------------------------------------------
# configuration trees
# --------------------------------------------------------------------------------------------
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
)
KEYS = st.sampled_from(
    [
        "data", "model", "train", "eval", "model_name", "path", "modalities", "epochs",
        "learning_rate", "seed", "device", "patience", "eval_every", "batch_size", "threads",
        "topk", "valid_metric", "batch_users", "n_layers", "reg_weight", "embedding_size",
        "knn_k", "temp", "semantic_graph_weights", "weight_decay", "optimizer", "lr_scheduler",
        "mask_valid_at_test", "bogus",
    ]
)  # fmt: skip
TREES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=12,
)


@given(
    model=st.sampled_from(["bpr", "lightgcn", "mentor", "pop", "nope", "LightGCN"]),
    tree=st.dictionaries(KEYS, TREES, max_size=4),
)
def test_fuzz_config_resolves_or_one_line_error(model: str, tree: dict) -> None:
    try:
        config = resolve_config(model, tree)
    except MentorError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    json.dumps(config.to_dict(), allow_nan=False)  # a resolved config is always valid JSON
    assert config.train.epochs >= 1 and config.eval.batch_users >= 1


@given(text=st.one_of(st.text(max_size=200), st.builds(json.dumps, TREES)))
def test_fuzz_config_file_reads_or_one_line_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.json"
        path.write_text(text)
        try:
            tree = load_config_file(path)
        except MentorError as exc:
            assert "\n" not in str(exc)
            return
        assert isinstance(tree, dict)


# --------------------------------------------------------------------------------------------
# command lines
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("fuzzcli"), n_items=60, features={"text": 4})


SET_VALUES = st.sampled_from(
    [
        "model.n_layers=2", "model.n_layers=-1", "model.n_layers=1e9", "train.epochs=0",
        "train.eval_every=9", "eval.topk=[]", "eval.topk=[0]", "eval.topk=[5,5]",
        "eval.valid_metric=recall@7", "eval.valid_metric=foo", "train.seed=-3",
        "train.learning_rate=Infinity", "train=3", "model.x.y=1", "eval.batch_users=0",
        "data.modalities=[\"nope\"]", "data.modalities=[]", "train.device=tpu", "model=[1]",
        "=", "train.batch_size=1", "eval.topk=[1,2]",
    ]
)  # fmt: skip


@given(
    verb=st.sampled_from(
        ["train", "search", "evaluate", "export", "data check", "bundle", "benchmark"]
    ),
    model=st.sampled_from(["bpr", "pop", "lightgcn", "mentor", "zzz"]),
    sets=st.lists(SET_VALUES, max_size=2),
    epochs=st.sampled_from(["1", "0", "-2", "x"]),
    extra=st.lists(
        st.sampled_from(["--k", "0", "--k", "3", "--seed", "99999999999999999999", "--grid"]),
        max_size=2,
    ),
)
def test_fuzz_cli_exit_codes(
    cli_data: Path,
    verb: str,
    model: str,
    sets: list[str],
    epochs: str,
    extra: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()  # the fixture spans every example: start each one empty
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        if verb == "train":
            argv = ["train", "--model", model, "--data", str(cli_data), "--out", str(out)]
            argv += ["--epochs", epochs, "--quiet"]
        elif verb == "search":
            argv = ["search", "--model", model, "--data", str(cli_data), "--out", str(out)]
            argv += ["--epochs", epochs, "--grid", "model.reg_weight=[1e-3]"]
        elif verb == "benchmark":
            argv = ["benchmark", "--data", str(cli_data), "--out", str(out), "--seeds", "1"]
            argv += ["--models", f"pop,{model}", "--grid", "none", "--epochs", epochs]
        elif verb == "bundle":
            argv = ["bundle", "--run", str(cli_data), "--out", str(out)]
        elif verb in ("evaluate", "export"):
            argv = [verb, "--run", str(cli_data)]
            argv += ["--out", str(out / "t.tsv")] if verb == "export" else []
        else:
            argv = ["data", "check", str(cli_data)]
        for assignment in sets:
            argv += ["--set", assignment] if verb in ("train", "search", "benchmark") else []
        argv += [a for a in extra if verb in ("train", "export") or a != "--grid"]
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            assert exc.code == 2
            return
        err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("warning")]
        assert code in (0, 2), err
        if code == 2:
            assert len(err) == 1 and err[0].startswith("mentor: error: "), err

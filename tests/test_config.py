"""Typed run configuration: validation, overrides, config files and per-model defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentor.config import (
    DataConfig,
    EvalConfig,
    TrainConfig,
    apply_override,
    from_dict,
    load_config_file,
    parse_value,
    resolve_config,
)
from mentor.errors import MentorError
from mentor.models.lightgcn import LightGCNConfig
from mentor.registry import get_model, model_names


def test_from_dict_defaults_and_values() -> None:
    cfg = from_dict(TrainConfig, {"batch_size": 64, "device": "cpu"}, "train")
    assert cfg.batch_size == 64
    assert cfg.device == "cpu"
    assert cfg.learning_rate == 1e-3
    assert cfg.seed == 999


def test_from_dict_unknown_key_did_you_mean() -> None:
    with pytest.raises(MentorError) as info:
        from_dict(TrainConfig, {"learnin_rate": 0.1}, "train")
    assert str(info.value) == "unknown key 'train.learnin_rate' (did you mean 'learning_rate'?)"
    with pytest.raises(MentorError, match=r"unknown key 'train\.zzz'$"):
        from_dict(TrainConfig, {"zzz": 1}, "train")


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"batch_size": "64"}, "train.batch_size: expected an integer, got '64'"),
        ({"batch_size": True}, "train.batch_size: expected an integer, got True"),
        ({"batch_size": 64.0}, "train.batch_size: expected an integer, got 64.0"),
        ({"learning_rate": "fast"}, "train.learning_rate: expected a number"),
        ({"learning_rate": False}, "train.learning_rate: expected a number"),
        ({"device": 0}, "train.device: expected a string"),
        ({"batch_size": 0}, "train.batch_size must be at least 1"),
        ({"learning_rate": 0}, "train.learning_rate must be positive"),
        ({"device": "tpu"}, "train.device must be auto, cpu, cuda or mps"),
    ],
)
def test_from_dict_wrong_types(values: dict, fragment: str) -> None:
    with pytest.raises(MentorError) as info:
        from_dict(TrainConfig, values, "train")
    assert fragment in str(info.value)


def test_from_dict_int_for_float_and_lists() -> None:
    cfg = from_dict(TrainConfig, {"learning_rate": 1, "weight_decay": 0}, "train")
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)
    assert isinstance(cfg.weight_decay, float)
    ev = from_dict(EvalConfig, {"topk": [1, 2], "valid_metric": "hit@2"}, "eval")
    assert ev.topk == [1, 2]
    with pytest.raises(MentorError, match=r"eval\.topk\[1\]: expected an integer"):
        from_dict(EvalConfig, {"topk": [1, "2"]}, "eval")
    with pytest.raises(MentorError, match="expected a list"):
        from_dict(EvalConfig, {"topk": 10}, "eval")
    data = from_dict(DataConfig, {"path": "x", "modalities": None}, "data")
    assert data.modalities is None
    data = from_dict(DataConfig, {"modalities": ["text"]}, "data")
    assert data.modalities == ["text"]
    with pytest.raises(MentorError, match="data.modalities"):
        from_dict(DataConfig, {"modalities": "text"}, "data")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-2", 0.01),
        ("3", 3),
        ("true", True),
        ("null", None),
        ("[5, 10]", [5, 10]),
        ('"123"', "123"),
        ("cpu", "cpu"),
        ("/data/ml 100k", "/data/ml 100k"),
        ("", ""),
    ],
)
def test_parse_value(text: str, value: object) -> None:
    got = parse_value(text)
    assert got == value
    assert type(got) is type(value)


def test_apply_override() -> None:
    tree: dict = {}
    apply_override(tree, "train.learning_rate=1e-2")
    apply_override(tree, "model.n_layers=3")
    apply_override(tree, "data.path=/tmp/x=y")  # only the first '=' splits
    apply_override(tree, "eval.topk=[5, 10]")
    apply_override(tree, "model.weights.text=0.5")
    assert tree == {
        "train": {"learning_rate": 0.01},
        "model": {"n_layers": 3, "weights": {"text": 0.5}},
        "data": {"path": "/tmp/x=y"},
        "eval": {"topk": [5, 10]},
    }


@pytest.mark.parametrize(
    ("assignment", "fragment"),
    [
        ("foo.x=1", "--set foo.x: keys start with one of data, model, train, eval"),
        ("trian.seed=1", "(did you mean 'train'?)"),
        ("train=1", "keys start with one of"),
        ("train.seed", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
    ],
)
def test_apply_override_errors(assignment: str, fragment: str) -> None:
    with pytest.raises(MentorError) as info:
        apply_override({}, assignment)
    assert fragment in str(info.value)


def test_apply_override_through_a_value() -> None:
    tree = {"train": {"seed": 1}}
    with pytest.raises(MentorError, match="'seed' is a value, not a section"):
        apply_override(tree, "train.seed.x=2")


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        (
            {"valid_metric": "recall@7"},
            "eval.valid_metric uses @7 but eval.topk is [5, 10, 20, 50]",
        ),
        ({"valid_metric": "foo@10"}, "'foo@10' is not a metric"),
        ({"valid_metric": "recall"}, "'recall' is not a metric"),
        ({"valid_metric": "recall@0"}, "'recall@0' is not a metric"),
        ({"valid_metric": "recall@x"}, "is not a metric"),
        ({"topk": [0, 5], "valid_metric": "recall@5"}, "topk values must be at least 1"),
    ],
)
def test_valid_metric_validation(values: dict, fragment: str) -> None:
    with pytest.raises(MentorError) as info:
        from_dict(EvalConfig, values, "eval")
    assert fragment in str(info.value)


def test_valid_metric_normalised() -> None:
    ev = from_dict(EvalConfig, {"valid_metric": "NDCG@10"}, "eval")
    assert ev.valid_metric == "ndcg@10"
    ev = from_dict(EvalConfig, {"topk": [7], "valid_metric": "map@7"}, "eval")
    assert ev.valid_metric == "map@7"


def test_resolve_config_model_defaults() -> None:
    mentor = resolve_config("mentor", {})
    assert mentor.model_name == "mentor"
    assert mentor.train.learning_rate == 1e-4
    assert mentor.eval.valid_metric == "recall@10"
    bpr = resolve_config("bpr", {})
    assert bpr.train.learning_rate == 1e-3
    assert bpr.eval.valid_metric == "recall@20"
    assert bpr.eval.topk == [5, 10, 20, 50]
    # a user value beats the model's default
    tuned = resolve_config("mentor", {"train": {"learning_rate": 5e-4}})
    assert tuned.train.learning_rate == 5e-4
    # aliases resolve to the registered name
    assert resolve_config("MF", {}).model_name == "bpr"


def test_resolve_config_model_section() -> None:
    cfg = resolve_config("lightgcn", {"model": {"n_layers": 3}, "data": {"path": "d"}})
    assert isinstance(cfg.model, LightGCNConfig)
    assert cfg.model.n_layers == 3
    assert cfg.data.path == "d"
    with pytest.raises(MentorError) as info:
        resolve_config("lightgcn", {"model": {"n_layer": 3}})
    assert "unknown key 'model.n_layer'" in str(info.value)
    assert "did you mean 'n_layers'" in str(info.value)
    with pytest.raises(MentorError, match="model.n_layers must be >= 0"):
        resolve_config("lightgcn", {"model": {"n_layers": -1}})
    with pytest.raises(MentorError, match=r"unknown section 'evl' \(did you mean 'eval'\?\)"):
        resolve_config("bpr", {"evl": {}})


def test_to_dict_round_trip() -> None:
    cfg = resolve_config("lightgcn", {"train": {"epochs": 7}, "eval": {"topk": [10, 20]}})
    tree = json.loads(json.dumps(cfg.to_dict()))
    name = tree.pop("model_name")
    again = resolve_config(name, tree)
    assert again == cfg
    assert tree["train"]["epochs"] == 7


def test_registry() -> None:
    names = ["pop", "bpr", "lightgcn", "mentor", "layergcn", "vbpr", "mmgcn", "dualgnn"]
    names += ["freedom", "lattice", "slmrec", "bm3", "mmssl"]
    names += ["mgcn", "dragon"]
    names += ["gume", "cohesion"]
    names += ["lgmrec", "smore"]
    assert sorted(model_names()) == sorted(names)
    assert get_model("LightGCN").name == "lightgcn"
    assert get_model("most-pop").name == "pop"
    with pytest.raises(MentorError, match=r"unknown model 'lightgc' \(did you mean 'lightgcn'\?\)"):
        get_model("lightgc")


def test_config_file(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"model_name": "bpr", "train": {"epochs": 3}}))
    assert load_config_file(good) == {"model_name": "bpr", "train": {"epochs": 3}}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": {}, "optimiser": {"lr": 1}}))
    with pytest.raises(MentorError) as info:
        load_config_file(bad)
    assert str(info.value) == f"{bad}: unknown section 'optimiser'"
    bad.write_text(json.dumps({"trian": {}}))
    with pytest.raises(MentorError, match=r"unknown section 'trian' \(did you mean 'train'\?\)"):
        load_config_file(bad)
    bad.write_text('{"train": {\n  "epochs": 3,\n}}')
    with pytest.raises(MentorError, match=r"bad\.json: line 3: invalid JSON"):
        load_config_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(MentorError, match="top level must be a mapping"):
        load_config_file(bad)
    with pytest.raises(MentorError, match="cannot read the config file"):
        load_config_file(tmp_path / "absent.json")

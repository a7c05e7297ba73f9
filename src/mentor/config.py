"""Typed, validated run configuration.

A run configuration has four sections: ``data``, ``model``, ``train`` and ``eval``. Every section is
a dataclass; building one from a mapping rejects unknown keys (with a "did you mean") and values of
the wrong type. The ``model`` section's class is chosen by the model name through the registry.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from mentor.errors import MentorError, did_you_mean

T = TypeVar("T")

METRICS = ("recall", "ndcg", "precision", "map", "hit")
MAX_SEED = 2**63 - 1  # the loop seeds a second generator with seed + 1


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a simple type annotation; ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_type(value, arg, where)
            except MentorError:
                continue
        raise MentorError(f"{where}: {value!r} does not fit {annotation}")
    if origin is typing.Literal:
        if value not in typing.get_args(annotation):
            allowed = ", ".join(repr(a) for a in typing.get_args(annotation))
            raise MentorError(f"{where}: {value!r} is not one of {allowed}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise MentorError(f"{where}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(annotation) or (Any,)
        items = [_check_type(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise MentorError(f"{where}: expected a mapping, got {value!r}")
        _, vtype = typing.get_args(annotation) or (Any, Any)
        return {str(k): _check_type(v, vtype, f"{where}.{k}") for k, v in value.items()}
    if annotation is bool:
        if not isinstance(value, bool):
            raise MentorError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MentorError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MentorError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise MentorError(f"{where}: expected a finite number, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise MentorError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``values``; unknown keys and wrong types raise MentorError."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise MentorError(f"unknown key '{where}.{key}'{did_you_mean(key, names)}")
        kwargs[key] = _check_type(value, hints[key], f"{where}.{key}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(where)
    return obj


def _parse_metric(name: str, where: str) -> tuple[str, int]:
    metric, _, k = name.lower().partition("@")
    if metric not in METRICS or not k.isdigit() or int(k) < 1:
        raise MentorError(
            f"{where}: '{name}' is not a metric; use one of {', '.join(METRICS)} with @K, "
            "e.g. recall@20"
        )
    return metric, int(k)


@dataclass
class DataConfig:
    """Where the data set lives and which modalities to use.

    Attributes:
        path: an MMRec-layout folder.
        modalities: feature modalities to load (``None`` = every ``*_feat.npy``, ``[]`` = none).
    """

    path: str = ""
    modalities: list[str] | None = None


@dataclass
class TrainConfig:
    """The shared training loop's settings (MMRec defaults and names).

    ``lr_scheduler = [factor, step]``: the learning rate of epoch ``e`` (1-based) is
    ``learning_rate * factor ** ((e - 1) / step)``, MMRec's LambdaLR (the default keeps it fixed).
    """

    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    optimizer: Literal["adam", "adamw"] = "adam"
    lr_scheduler: list[float] = field(default_factory=lambda: [1.0, 50.0])
    batch_size: int = 2048
    epochs: int = 1000
    patience: int = 20
    seed: int = 999
    device: str = "auto"
    eval_every: int = 1
    threads: int = 0

    def validate(self, where: str) -> None:
        """Reject values that cannot work."""
        for name in ("batch_size", "epochs", "eval_every"):
            if getattr(self, name) < 1:
                raise MentorError(f"{where}.{name} must be at least 1")
        if self.eval_every > self.epochs:
            raise MentorError(
                f"{where}.eval_every ({self.eval_every}) is larger than {where}.epochs "
                f"({self.epochs}): no epoch would be validated; lower eval_every"
            )
        for name in ("patience", "threads"):
            if getattr(self, name) < 0:
                raise MentorError(f"{where}.{name} must be at least 0")
        if not 0 <= self.seed < MAX_SEED:
            raise MentorError(f"{where}.seed must be between 0 and {MAX_SEED - 1}")
        if not math.isfinite(self.learning_rate) or not math.isfinite(self.weight_decay):
            raise MentorError(f"{where}.learning_rate and weight_decay must be finite numbers")
        if self.weight_decay < 0:
            raise MentorError(f"{where}.weight_decay must be at least 0")
        if self.learning_rate <= 0:
            raise MentorError(f"{where}.learning_rate must be positive")
        if len(self.lr_scheduler) != 2 or min(self.lr_scheduler) <= 0:
            raise MentorError(
                f"{where}.lr_scheduler must be [factor, step] with both positive, e.g. [0.96, 50]; "
                f"got {self.lr_scheduler}"
            )
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith(
            "cuda:"
        ):
            raise MentorError(f"{where}.device must be auto, cpu, cuda or mps, got {self.device!r}")


@dataclass
class EvalConfig:
    """Evaluation settings: MMRec's protocol by default.

    ``batch_users`` and ``score_budget_mb`` bound how many users are ranked at once (at most
    ``batch_users``, whose scores and their ranking's scratch fit in ``score_budget_mb`` MiB);
    neither changes a result.
    """

    topk: list[int] = field(default_factory=lambda: [5, 10, 20, 50])
    valid_metric: str = "recall@20"
    batch_users: int = 4096
    mask_valid_at_test: bool = False
    score_budget_mb: float = 256.0

    def validate(self, where: str) -> None:
        """Check that the valid metric is one that is computed."""
        metric, k = _parse_metric(self.valid_metric, f"{where}.valid_metric")
        if k not in self.topk:
            raise MentorError(f"{where}.valid_metric uses @{k} but eval.topk is {self.topk}")
        if any(k < 1 for k in self.topk):
            raise MentorError(f"{where}.topk values must be at least 1")
        if len(set(self.topk)) != len(self.topk):
            raise MentorError(f"{where}.topk lists a value twice: {self.topk}")
        if self.batch_users < 1:
            raise MentorError(f"{where}.batch_users must be at least 1")
        if not self.score_budget_mb > 0:
            raise MentorError(f"{where}.score_budget_mb must be positive (MiB of scores)")
        self.valid_metric = f"{metric}@{k}"


@dataclass
class RunConfig:
    """The resolved configuration of one run."""

    model_name: str
    data: DataConfig
    model: Any
    train: TrainConfig
    eval: EvalConfig

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as written to ``config.json``."""
        return {
            "model_name": self.model_name,
            "data": dataclasses.asdict(self.data),
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
            "eval": dataclasses.asdict(self.eval),
        }


SECTIONS = ("data", "model", "train", "eval")


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value: JSON when it parses, else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Apply one ``section.key[.sub]=value`` assignment to a nested dict in place."""
    path, sep, raw = assignment.partition("=")
    if not sep or not path:
        raise MentorError(f"--set {assignment!r}: expected KEY=VALUE, e.g. model.n_layers=3")
    parts = path.strip().split(".")
    if parts[0] not in SECTIONS or len(parts) < 2:
        raise MentorError(
            f"--set {path}: keys start with one of {', '.join(SECTIONS)}"
            f"{did_you_mean(parts[0], SECTIONS)}, e.g. model.n_layers=3"
        )
    node = tree.setdefault(parts[0], {})
    for depth, part in enumerate(parts[1:], start=1):
        if not isinstance(node, dict):
            raise MentorError(f"--set {path}: '{parts[depth - 1]}' is a value, not a section")
        if depth < len(parts) - 1:
            node = node.setdefault(part, {})
    node[parts[-1]] = parse_value(raw)


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a JSON (or, when PyYAML is installed, YAML) configuration file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise MentorError(f"{path}: cannot read the config file ({exc.strerror})") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError:
            raise MentorError(
                f"{path}: YAML needs PyYAML (pip install pyyaml); or use JSON"
            ) from None
        try:
            tree = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark is not None else ""
            raise MentorError(f"{path}: {where}invalid YAML ({exc})") from None
    else:
        try:
            tree = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MentorError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(tree, dict):
        raise MentorError(f"{path}: the top level must be a mapping of sections")
    for key, value in tree.items():
        if key == "model_name":
            if not isinstance(value, str):
                raise MentorError(f"{path}: model_name must be a string, got {value!r}")
        elif key not in SECTIONS:
            raise MentorError(f"{path}: unknown section '{key}'{did_you_mean(key, SECTIONS)}")
        elif not isinstance(value, dict):
            raise MentorError(
                f"{path}: section '{key}' must be a mapping of settings, got {value!r}"
            )
    return tree


def resolve_config(model_name: str, tree: dict[str, Any]) -> RunConfig:
    """Build the typed configuration for ``model_name`` from nested section values."""
    from mentor.registry import get_model

    if not isinstance(model_name, str):
        raise MentorError(f"model_name: expected a model name string, got {model_name!r}")
    spec = get_model(model_name)
    for key, value in tree.items():
        if key not in SECTIONS:
            raise MentorError(f"unknown section '{key}'{did_you_mean(key, SECTIONS)}")
        if not isinstance(value, dict):
            raise MentorError(
                f"section '{key}': expected a mapping of settings, got {value!r}; e.g. "
                '{"train": {"epochs": 10}}'
            )
    train_values = dict(spec.train_defaults)
    train_values.update(tree.get("train", {}))
    eval_values = dict(spec.eval_defaults)
    eval_values.update(tree.get("eval", {}))
    return RunConfig(
        model_name=spec.name,
        data=from_dict(DataConfig, tree.get("data", {}), "data"),
        model=from_dict(spec.config_cls, tree.get("model", {}), "model"),
        train=from_dict(TrainConfig, train_values, "train"),
        eval=from_dict(EvalConfig, eval_values, "eval"),
    )

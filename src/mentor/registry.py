"""Explicit model registry: name -> model class, its config class and its training defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mentor.config import did_you_mean
from mentor.errors import MentorError


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes:
        name: the CLI name.
        model_cls: the :class:`~mentor.models.base.Recommender` subclass.
        config_cls: its hyper-parameter dataclass.
        summary: one line for ``mentor models``.
        train_defaults, eval_defaults: overrides of the shared defaults (e.g. MENTOR's lr 1e-4).
        modalities: "none" (id-only), "optional" or "required" item features.
    """

    name: str
    model_cls: Any
    config_cls: Any
    summary: str
    train_defaults: dict[str, Any] = field(default_factory=dict)
    eval_defaults: dict[str, Any] = field(default_factory=dict)
    modalities: str = "none"


def _specs() -> dict[str, ModelSpec]:
    from mentor.models.lightgcn import LightGCN, LightGCNConfig
    from mentor.models.mentor import MENTOR, MentorConfig
    from mentor.models.mf import MFBPR, MFConfig
    from mentor.models.popularity import Popularity, PopularityConfig

    specs = [
        ModelSpec("pop", Popularity, PopularityConfig, "most-interacted train items (baseline)"),
        ModelSpec("bpr", MFBPR, MFConfig, "MF-BPR matrix factorisation (Rendle et al., 2009)"),
        ModelSpec("lightgcn", LightGCN, LightGCNConfig, "LightGCN (He et al., SIGIR 2020)"),
        ModelSpec(
            "mentor",
            MENTOR,
            MentorConfig,
            "MENTOR multi-level self-supervised multimodal model (Xu et al., AAAI 2025)",
            train_defaults={"learning_rate": 1e-4},
            eval_defaults={"valid_metric": "recall@10"},
            modalities="required",
        ),
    ]
    return {spec.name: spec for spec in specs}


ALIASES = {"mf": "bpr", "mf-bpr": "bpr", "popularity": "pop", "most-pop": "pop"}


def model_names() -> list[str]:
    """Registered names in registration order."""
    return list(_specs())


def all_models() -> list[ModelSpec]:
    """Every registered model, in registration order."""
    return list(_specs().values())


def get_model(name: str) -> ModelSpec:
    """Look a model up by name (case-insensitive); unknown names get a "did you mean"."""
    specs = _specs()
    key = ALIASES.get(name.lower(), name.lower())
    if key not in specs:
        raise MentorError(
            f"unknown model '{name}'{did_you_mean(key, list(specs) + list(ALIASES))}; "
            "`mentor models` lists them"
        )
    return specs[key]

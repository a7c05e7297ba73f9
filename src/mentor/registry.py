"""Explicit model registry: name -> model class, its config class and its training defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mentor.errors import MentorError, did_you_mean


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
        grid: the default search space, MMRec's YAML grid with dotted keys, e.g.
            ``{"model.reg_weight": [1e-2, 1e-3], "train.learning_rate": [1e-3, 1e-4]}``.
    """

    name: str
    model_cls: Any
    config_cls: Any
    summary: str
    train_defaults: dict[str, Any] = field(default_factory=dict)
    eval_defaults: dict[str, Any] = field(default_factory=dict)
    modalities: str = "none"
    grid: dict[str, list[Any]] = field(default_factory=dict)


def _specs() -> dict[str, ModelSpec]:
    from mentor.models.lightgcn import LightGCN, LightGCNConfig
    from mentor.models.mentor import MENTOR, MentorConfig
    from mentor.models.mf import MFBPR, MFConfig
    from mentor.models.popularity import Popularity, PopularityConfig

    specs = [
        ModelSpec("pop", Popularity, PopularityConfig, "most-interacted train items (baseline)"),
        ModelSpec(
            "bpr",
            MFBPR,
            MFConfig,
            "MF-BPR matrix factorisation (Rendle et al., 2009)",
            grid={"model.reg_weight": [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]},
        ),
        ModelSpec(
            "lightgcn",
            LightGCN,
            LightGCNConfig,
            "LightGCN (He et al., SIGIR 2020)",
            grid={
                "model.n_layers": [1, 2, 3, 4],
                "model.reg_weight": [1e-2, 1e-3, 1e-4, 1e-5, 1e-6],
            },
        ),
        ModelSpec(
            "mentor",
            MENTOR,
            MentorConfig,
            "MENTOR multi-level self-supervised multimodal model (Xu et al., AAAI 2025)",
            train_defaults={"learning_rate": 1e-4},
            eval_defaults={"valid_metric": "recall@10"},
            modalities="required",
            grid={"model.mask_weight_g": [1e-4, 1e-3], "model.temp": [0.2, 0.4, 0.6]},
        ),
    ]
    specs += _graph_baseline_specs()
    specs += _self_supervised_specs()
    specs += _newer_model_specs()
    return {spec.name: spec for spec in specs}


def _graph_baseline_specs() -> list[ModelSpec]:
    """LayerGCN, VBPR, MMGCN, DualGNN and FREEDOM, with MMRec's grids."""
    from mentor.models.dualgnn import DualGNN, DualGNNConfig
    from mentor.models.freedom import FREEDOM, FreedomConfig
    from mentor.models.layergcn import LayerGCN, LayerGCNConfig
    from mentor.models.mmgcn import MMGCN, MMGCNConfig
    from mentor.models.vbpr import VBPR, VBPRConfig

    return [
        ModelSpec(
            "layergcn",
            LayerGCN,
            LayerGCNConfig,
            "LayerGCN layer-refined graph convolution (Zhou et al., ICDE 2023)",
            grid={
                "model.n_layers": [4],
                "model.dropout": [0.0, 0.1, 0.2],
                "model.reg_weight": [1e-2, 1e-3, 1e-4, 1e-5],
            },
        ),
        ModelSpec(
            "vbpr",
            VBPR,
            VBPRConfig,
            "VBPR matrix factorisation with item features (He and McAuley, AAAI 2016)",
            modalities="required",
            grid={"model.reg_weight": [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]},
        ),
        ModelSpec(
            "mmgcn",
            MMGCN,
            MMGCNConfig,
            "MMGCN per-modality graph convolution (Wei et al., ACM MM 2019)",
            modalities="required",
            grid={
                "model.reg_weight": [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
                "train.learning_rate": [1e-4, 5e-4, 1e-3, 5e-3, 1e-2],
            },
        ),
        ModelSpec(
            "dualgnn",
            DualGNN,
            DualGNNConfig,
            "DualGNN modality fusion with a user co-occurrence graph (Wang et al., IEEE TMM 2021)",
            modalities="required",
            grid={
                "model.aggr_mode": ["add"],
                "train.learning_rate": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5],
                "model.reg_weight": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5],
            },
        ),
        ModelSpec(
            "freedom",
            FREEDOM,
            FreedomConfig,
            "FREEDOM frozen item graph with degree-sensitive edge pruning (Zhou and Shen, MM 2023)",
            modalities="required",
            grid={
                "model.dropout": [0.8, 0.9],
                "model.reg_weight": [0.0, 1e-5, 1e-4, 1e-3],
            },
        ),
    ]


def _self_supervised_specs() -> list[ModelSpec]:
    """LATTICE, SLMRec, BM3 and MMSSL, with MMRec's grids (MMSSL has none in its code)."""
    from mentor.models.bm3 import BM3, BM3Config
    from mentor.models.lattice import LATTICE, LatticeConfig
    from mentor.models.mmssl import MMSSL, MMSSLConfig
    from mentor.models.slmrec import SLMRec, SLMRecConfig

    return [
        ModelSpec(
            "lattice",
            LATTICE,
            LatticeConfig,
            "LATTICE learned item-item graphs (Zhang et al., ACM MM 2021)",
            train_defaults={"lr_scheduler": [0.96, 50.0]},
            modalities="required",
            grid={
                "model.reg_weight": [0.0, 1e-5, 1e-4, 1e-3],
                "train.learning_rate": [1e-4, 5e-4, 1e-3, 5e-3],
            },
        ),
        ModelSpec(
            "slmrec",
            SLMRec,
            SLMRecConfig,
            "SLMRec self-supervised multimedia recommendation (Tao et al., IEEE TMM 2022)",
            train_defaults={"weight_decay": 1e-4},
            modalities="required",
            grid={
                "train.learning_rate": [1e-4, 1e-3, 1e-2, 1e-1],
                "model.ssl_temp": [0.1, 0.2, 0.5, 1.0],
                "model.ssl_alpha": [0.01, 0.05, 0.1, 0.5, 1.0],
                "model.reg": [1e-4, 1e-3, 1e-2, 1e-1],
            },
        ),
        ModelSpec(
            "bm3",
            BM3,
            BM3Config,
            "BM3 bootstrapped multimodal representations (Zhou et al., WWW 2023)",
            modalities="required",
            grid={
                "model.n_layers": [1, 2],
                "model.reg_weight": [0.1, 0.01],
                "model.dropout": [0.3, 0.5],
            },
        ),
        ModelSpec(
            "mmssl",
            MMSSL,
            MMSSLConfig,
            "MMSSL adversarial multimodal self-supervision (Wei et al., WWW 2023)",
            train_defaults={
                "optimizer": "adamw",
                "learning_rate": 5.5e-4,
                "batch_size": 1024,
                "patience": 7,
                "weight_decay": 0.01,
            },
            modalities="required",
        ),
    ]


def _newer_model_specs() -> list[ModelSpec]:
    """MGCN, DRAGON, LGMRec, SMORE, GUME and COHESION (published after MENTOR or beside it), with
    their reference code's grids."""
    from mentor.models.cohesion import COHESION, CohesionConfig
    from mentor.models.dragon import DRAGON, DRAGONConfig
    from mentor.models.gume import GUME, GUMEConfig
    from mentor.models.lgmrec import LGMRec, LGMRecConfig
    from mentor.models.mgcn import MGCN, MGCNConfig
    from mentor.models.smore import SMORE, SMOREConfig

    return [
        ModelSpec(
            "mgcn",
            MGCN,
            MGCNConfig,
            "MGCN multi-view graph convolution with purified modality views (Yu et al., MM 2023)",
            train_defaults={"lr_scheduler": [0.96, 50.0]},
            modalities="required",
            grid={"model.cl_loss": [1e-3, 1e-2, 1e-1]},
        ),
        ModelSpec(
            "dragon",
            DRAGON,
            DRAGONConfig,
            "DRAGON dual representations over homogeneous graphs (Zhou et al., ECAI 2023)",
            modalities="required",
            grid={
                "model.aggr_mode": ["add"],
                "model.reg_weight": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5],
                "train.learning_rate": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5],
            },
        ),
        ModelSpec(
            "gume",
            GUME,
            GUMEConfig,
            "GUME graph and user modality enhancement for long-tail items (Lin et al., CIKM 2024)",
            train_defaults={"lr_scheduler": [0.96, 50.0]},
            modalities="required",
        ),
        ModelSpec(
            "cohesion",
            COHESION,
            CohesionConfig,
            "COHESION composite graph convolution with dual-stage fusion (Xu et al., SIGIR 2025)",
            eval_defaults={"valid_metric": "recall@10"},
            modalities="required",
            grid={
                "model.reg_weight": [1e-1, 1e-2, 1e-3, 1e-4],
                "train.learning_rate": [1e-1, 1e-2, 1e-3, 1e-4],
                "model.dropout": [0.0],
                "model.num_layer": [1, 2, 3, 4],
            },
        ),
        ModelSpec(
            "lgmrec",
            LGMRec,
            LGMRecConfig,
            "LGMRec local and global (hypergraph) graph learning (Guo et al., AAAI 2024)",
            modalities="required",
            # the values of the authors' three published configurations (Baby, Sports, Clothing)
            grid={
                "model.n_ui_layers": [2, 4],
                "model.n_hyper_layer": [1, 2],
                "model.hyper_num": [4, 64],
                "model.keep_rate": [0.5, 0.4, 0.2],
                "model.alpha": [0.3, 0.6, 0.2],
            },
        ),
        ModelSpec(
            "smore",
            SMORE,
            SMOREConfig,
            "SMORE spectrum-based modality fusion graph network (Ong and Khong, WSDM 2025)",
            train_defaults={"lr_scheduler": [0.96, 50.0]},
            modalities="required",
            grid={
                "model.n_ui_layers": [3, 4],
                "model.image_knn_k": [10, 15, 20, 40],
                "model.text_knn_k": [10, 15, 20, 40],
                "model.reg_weight": [1e-5, 1e-4],
                "model.dropout_rate": [0.0, 0.1],
            },
        ),
    ]


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

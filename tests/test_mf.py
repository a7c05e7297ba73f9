"""MF-BPR initialises as MMRec does (xavier_normal on both tables)."""

from __future__ import annotations

import math

import torch

from mentor.models.base import ModelContext
from mentor.models.mf import MFBPR, MFConfig


def test_mf_tables_are_xavier_normal() -> None:
    n_users, n_items, d = 300, 200, 64
    ctx = ModelContext(n_users, n_items, train=None, graph=None, interactions=None)  # type: ignore[arg-type]
    model = MFBPR(MFConfig(embedding_size=d), ctx, torch.Generator().manual_seed(0))
    for table, fan_out in ((model.user_embedding, n_users), (model.item_embedding, n_items)):
        std = math.sqrt(2.0 / (d + fan_out))
        values = table.detach().flatten()
        assert abs(values.std().item() - std) < 0.05 * std
        # a uniform init never leaves [-sqrt(3) std, sqrt(3) std]; a normal one does (~8%)
        outside = (values.abs() > math.sqrt(3) * std).float().mean().item()
        assert 0.05 < outside < 0.12

"""MGCN against a dense transcription of MMRec's forward pass and loss on a tiny data set, its
item-item graphs, its switches and its generalisation to other numbers of modalities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build as make
from conftest import dense_r, make_dataset, sym_block
from conftest import first_batch as a_batch

from mentor.config import resolve_config
from mentor.models.mgcn import MGCN

F64 = torch.float64
nnf = torch.nn.functional


def weighted_knn_dense(features: np.ndarray, k: int) -> torch.Tensor:
    """MMRec's ``build_knn_normalized_graph(build_sim(f), k, sparse, 'sym')`` as a dense [I, I]:
    top-k cosine values kept, ``D^-1/2 A D^-1/2`` with D the row sums."""
    f = nnf.normalize(torch.from_numpy(features).double(), dim=1)
    values, index = (f @ f.T).topk(k, dim=1)
    adj = torch.zeros(len(f), len(f), dtype=F64).scatter_(1, index, values)
    d = adj.sum(1).pow(-0.5)
    return d[:, None] * adj * d[None, :]


def lin(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` in float64."""
    out = x @ layer.weight.detach().double().T
    return out if layer.bias is None else out + layer.bias.detach().double()


def info_nce_dense(a: torch.Tensor, b: torch.Tensor, temp: float) -> torch.Tensor:
    """MMRec's ``InfoNCE(view1, view2, temperature)``."""
    a, b = nnf.normalize(a, dim=1), nnf.normalize(b, dim=1)
    logits = a @ b.T / temp
    return (logits.logsumexp(1) - logits.diagonal()).mean()


def reference(model: MGCN, dataset, k: int, n_ui: int, n_mm: int, dim: int = 1) -> tuple:  # type: ignore[no-untyped-def]
    """MMRec's MGCN forward (``train=True``) in float64: (users, items, side, content)."""
    g = sym_block(dense_r(dataset))
    n = dataset.n_users
    adj = torch.zeros(n + dataset.n_items, n + dataset.n_items, dtype=F64)
    adj[:n, n:], adj[n:, :n] = g, g.T
    e_u = model.user_embedding.detach().double()
    e_i = model.item_id_embedding.detach().double()
    ego = torch.cat([e_u, e_i])
    layers = [ego]
    for _ in range(n_ui):
        ego = adj @ ego
        layers.append(ego)
    content = torch.stack(layers).mean(0)
    modal = []
    for m in model.modalities:
        feats = lin(model.trs[m], torch.from_numpy(dataset.features[m]).double())
        h = e_i * torch.sigmoid(lin(model.gate[m][0], feats))
        s = weighted_knn_dense(dataset.features[m], k)
        for _ in range(n_mm):
            h = s @ h
        modal.append(torch.cat([g @ h, h]))
    q = model.query_common
    att = torch.softmax(
        torch.cat([lin(q[2], torch.tanh(lin(q[0], h))) for h in modal], dim=1), dim=dim
    )
    common = sum(att[:, j : j + 1] * h for j, h in enumerate(modal))
    side = common
    for m, h in zip(model.modalities, modal, strict=True):
        side = side + torch.sigmoid(lin(model.gate_prefer[m][0], content)) * (h - common)
    side = side / (len(modal) + 1)
    final = content + side
    return final[:n], final[n:], side, content


@pytest.mark.parametrize(("n_ui", "n_mm"), [(2, 1), (1, 2)])
def test_mgcn_forward_and_loss_match_dense(data: Path, tmp_path: Path, n_ui: int, n_mm: int):
    model, dataset = make(
        "mgcn",
        data,
        tmp_path,
        knn_k=4,
        n_ui_layers=n_ui,
        n_layers=n_mm,
        cl_loss=0.3,
        reg_weight=0.2,
    )
    assert isinstance(model, MGCN) and model.modalities == ["image", "text"]
    users, items, side, content = reference(model, dataset, 4, n_ui, n_mm)
    with torch.no_grad():
        ours_u, ours_i = model.full_representations()
    assert torch.allclose(ours_u.double(), users, atol=1e-5)
    assert torch.allclose(ours_i.double(), items, atol=1e-5)

    batch = a_batch(dataset)
    terms = {k: float(v.detach()) for k, v in model.loss(batch, torch.Generator()).items()}
    assert set(terms) == {"bpr", "reg", "cl"}
    u, p, q = users[batch.users], items[batch.positives], items[batch.negatives]
    bpr = -nnf.logsigmoid((u * p).sum(1) - (u * q).sum(1)).mean()
    l2 = 0.5 * (u.square().sum() + p.square().sum() + q.square().sum()) / len(batch.users)
    n = dataset.n_users
    cl = info_nce_dense(side[n + batch.positives], content[n + batch.positives], 0.2)
    cl = cl + info_nce_dense(side[batch.users], content[batch.users], 0.2)
    assert terms["bpr"] == pytest.approx(float(bpr), rel=1e-5)
    assert terms["reg"] == pytest.approx(0.2 * float(l2), rel=1e-5)
    assert terms["cl"] == pytest.approx(0.3 * float(cl), rel=1e-5)


def test_mgcn_item_graph_keeps_similarities(data: Path, tmp_path: Path) -> None:
    """The item-item graphs are weighted by the cosines (not binary) and sym-normalised."""
    model, dataset = make("mgcn", data, tmp_path, knn_k=5)
    for m in model.modalities:
        ours = torch.from_numpy(model.item_graphs[m].to_scipy().toarray()).double()
        assert torch.allclose(ours, weighted_knn_dense(dataset.features[m], 5), atol=1e-6)
        assert ours.count_nonzero(dim=1).max() == 5
        assert len(torch.unique(ours[ours > 0].round(decimals=4))) > 5  # not a binary graph


def test_mgcn_cl_temp_and_train_features_switches(data: Path, tmp_path: Path) -> None:
    model, _ = make("mgcn", data, tmp_path)
    assert {"raw.image", "raw.text"} <= set(dict(model.named_parameters()))
    fixed, dataset = make("mgcn", data, tmp_path, train_features=False, cl_temp=0.7)
    assert not any(n.startswith("raw") for n, _ in fixed.named_parameters())
    _, _, side, content = reference(fixed, dataset, 10, 2, 1)
    batch = a_batch(dataset)
    n = dataset.n_users
    cl = info_nce_dense(side[n + batch.positives], content[n + batch.positives], 0.7)
    cl = cl + info_nce_dense(side[batch.users], content[batch.users], 0.7)
    terms = fixed.loss(batch, torch.Generator())
    assert float(terms["cl"].detach()) == pytest.approx(1e-3 * float(cl), rel=1e-5)
    # the raw features get gradient through trs (MMRec trains them) only when trainable
    sum(model.loss(batch, torch.Generator()).values()).backward()  # type: ignore[union-attr]
    assert model.raw["image"].grad is not None and model.raw["image"].grad.abs().sum() > 0


def test_mgcn_one_modality_fuses_with_divisor_two(tmp_path: Path) -> None:
    """With one modality the attention is 1, nothing is modality-specific, side = h / 2."""
    folder = make_dataset(tmp_path, n_users=10, n_items=12, per_user=5, features={"text": 6})
    model, dataset = make("mgcn", folder, tmp_path, knn_k=3)
    assert model.modalities == ["text"]
    _, _, side, _ = reference(model, dataset, 3, 2, 1)
    with torch.no_grad():
        _, ours = model.views()
    assert torch.allclose(ours.double(), side, atol=1e-6)


def test_mgcn_attention_over_nodes_is_the_authors_softmax(data: Path, tmp_path: Path) -> None:
    """``attention_over=nodes``: each modality's attention sums to 1 over all U + I nodes."""
    model, dataset = make("mgcn", data, tmp_path, attention_over="nodes")
    users, items, _, _ = reference(model, dataset, 10, 2, 1, dim=0)
    with torch.no_grad():
        ours_u, ours_i = model.full_representations()
    assert torch.allclose(ours_u.double(), users, atol=1e-5)
    assert torch.allclose(ours_i.double(), items, atol=1e-5)
    other, _, _, _ = reference(model, dataset, 10, 2, 1, dim=1)
    assert not torch.allclose(ours_u.double(), other, atol=1e-4)


def test_mgcn_defaults_follow_mmrec() -> None:
    config = resolve_config("mgcn", {})
    assert config.train.lr_scheduler == [0.96, 50.0]
    assert (config.model.n_ui_layers, config.model.n_layers, config.model.knn_k) == (2, 1, 10)
    assert (config.model.reg_weight, config.model.cl_loss, config.model.cl_temp) == (
        1e-4,
        1e-3,
        0.2,
    )

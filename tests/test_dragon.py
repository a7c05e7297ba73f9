"""DRAGON against a dense transcription of MMRec's forward pass and loss on a tiny data set, its
item graph weights by modality role, its one-modality form and its cold-start items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build as make
from conftest import dense_r, make_dataset, sym_block
from conftest import first_batch as a_batch

from mentor.models.dragon import DRAGON, role_weights

F64 = torch.float64
nnf = torch.nn.functional


def binary_knn_dense(features: np.ndarray, k: int) -> torch.Tensor:
    """MMRec DRAGON's ``get_knn_adj_mat``: binary top-k cosine graph, ``D^-1/2 A D^-1/2``."""
    f = nnf.normalize(torch.from_numpy(features).double(), dim=1)
    index = (f @ f.T).topk(k, dim=1).indices
    adj = torch.zeros(len(f), len(f), dtype=F64).scatter_(1, index, 1.0)
    d = adj.sum(1).pow(-0.5)
    return d[:, None] * adj * d[None, :]


def branch(model: DRAGON, m: str, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MMRec's GCN input ``normalize([preference; MLP_1(leaky_relu(MLP(f)))])`` (float64)."""
    b = model.branches[m]
    hidden = nnf.leaky_relu(features @ b.mlp.weight.double().T + b.mlp.bias.double())
    items = hidden @ b.mlp_1.weight.double().T + b.mlp_1.bias.double()
    return nnf.normalize(b.preference.double(), dim=1), nnf.normalize(items, dim=1)


def reference(model: DRAGON, dataset, k: int, n_mm: int, weights: dict[str, float]):  # type: ignore[no-untyped-def]
    """MMRec's DRAGON forward with ``construction = 'cat'``: users [U, M d], items [I, M d]."""
    g = sym_block(dense_r(dataset))
    users, items = [], []
    with torch.no_grad():
        for j, m in enumerate(model.modalities):
            x_u, x_i = branch(model, m, torch.from_numpy(dataset.features[m]).double())
            h_u, h_i = g @ x_i, g.T @ x_u
            r_u, r_i = x_u + h_u + g @ h_i, x_i + h_i + g.T @ h_u
            if len(model.modalities) > 1:
                r_u = r_u * model.weight_u[:, j].double()
            users.append(r_u)
            items.append(r_i)
        user, item = torch.cat(users, dim=1), torch.cat(items, dim=1)
        s = sum(w * binary_knn_dense(dataset.features[m], k) for m, w in weights.items())
        h = item
        for _ in range(n_mm):
            h = s @ h
        n = dataset.n_users
        graph = torch.zeros(n, n, dtype=F64).index_put_(
            (
                torch.arange(n).repeat_interleave(model.user_index.shape[1]),
                model.user_index.flatten(),
            ),
            model.user_weights.double().flatten(),
            accumulate=True,
        )
    return user + graph @ user, item + h


@pytest.mark.parametrize("n_mm", [1, 2])
def test_dragon_forward_and_loss_match_dense(data: Path, tmp_path: Path, n_mm: int) -> None:
    model, dataset = make(
        "dragon",
        data,
        tmp_path,
        knn_k=4,
        n_mm_layers=n_mm,
        user_knn_k=5,
        reg_weight=0.3,
        feature_dtype="float32",
    )
    assert isinstance(model, DRAGON) and model.modalities == ["image", "text"]
    users, items = reference(model, dataset, 4, n_mm, {"image": 0.1, "text": 0.9})
    with torch.no_grad():
        ours_u, ours_i = model.full_representations()
    assert ours_u.shape == (dataset.n_users, 128) and ours_i.shape == (dataset.n_items, 128)
    assert torch.allclose(ours_u.double(), users, atol=1e-5)
    assert torch.allclose(ours_i.double(), items, atol=1e-5)

    batch = a_batch(dataset)
    terms = {k: float(v.detach()) for k, v in model.loss(batch, torch.Generator()).items()}
    u, p, q = users[batch.users], items[batch.positives], items[batch.negatives]
    bpr = -torch.log2(torch.sigmoid((u * p).sum(1) - (u * q).sum(1))).mean()
    prefs = sum(
        model.branches[m].preference.detach().double()[batch.users].square().mean()
        for m in model.modalities
    )
    reg = 0.3 * (prefs + model.weight_u.detach().double().square().mean())
    assert terms["bpr"] == pytest.approx(float(bpr), rel=1e-5)
    assert terms["reg"] == pytest.approx(float(reg), rel=1e-5)


def test_dragon_mean_aggregation_averages_neighbours(data: Path, tmp_path: Path) -> None:
    model, dataset = make("dragon", data, tmp_path, aggr_mode="mean", feature_dtype="float32")
    r = dense_r(dataset)
    to_users = r / r.sum(1, keepdim=True).clamp_min(1)
    to_items = r.T / r.T.sum(1, keepdim=True).clamp_min(1)
    m = model.modalities[0]
    x_u, x_i = branch(model, m, torch.from_numpy(dataset.features[m]).double())
    h_u, h_i = to_users @ x_i, to_items @ x_u
    with torch.no_grad():
        users, items = model.heterogeneous()
    d = model.config.embedding_size
    assert torch.allclose(items[:, :d].double(), x_i + h_i + to_items @ h_u, atol=1e-5)
    expected_u = (x_u + h_u + to_users @ h_i) * model.weight_u[:, 0].double()
    assert torch.allclose(users[:, :d].double(), expected_u.detach(), atol=1e-5)


def test_dragon_item_graph_weights_follow_roles() -> None:
    assert role_weights(["image", "text"], 0.1) == {"image": 0.1, "text": 0.9}
    assert role_weights(["text", "image"], 0.3) == {"image": 0.3, "text": pytest.approx(0.7)}
    # ml-100k-mm: genre is MMRec's image file, text its text file
    assert role_weights(["genre", "text"], 0.1) == {"genre": 0.1, "text": 0.9}
    assert role_weights(["a", "b", "c"], 0.1) == {m: pytest.approx(1 / 3) for m in "abc"}


def test_dragon_one_modality_is_unweighted(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path, n_users=10, n_items=12, per_user=5, features={"text": 6})
    model, dataset = make("dragon", folder, tmp_path, knn_k=3, feature_dtype="float32")
    users, items = reference(model, dataset, 3, 1, {"text": 1.0})
    with torch.no_grad():
        ours_u, ours_i = model.full_representations()
    assert ours_u.shape[1] == model.config.embedding_size
    assert torch.allclose(ours_u.double(), users, atol=1e-5)
    assert torch.allclose(ours_i.double(), items, atol=1e-5)


def test_dragon_new_item_joins_the_item_graph(data: Path, tmp_path: Path) -> None:
    """A new item's representation: its branch rows x plus ``sum_m w_m / k`` times (x + the
    pre-graph rows of its k - 1 nearest catalogue items by raw features)."""
    k = 4
    model, dataset = make("dragon", data, tmp_path, knn_k=k, feature_dtype="float32")
    model.eval()
    gen = np.random.default_rng(5)
    new = {
        m: torch.from_numpy(gen.normal(size=(3, f.shape[1])).astype(np.float32))
        for m, f in dataset.features.items()
    }
    with torch.no_grad():
        ours = model.new_item_representations(new)
        table = model.heterogeneous()[1].double()
        x = torch.cat([branch(model, m, new[m].double())[1] for m in model.modalities], dim=1)
    expected = x.clone()
    for m, w in {"image": 0.1, "text": 0.9}.items():
        cat = nnf.normalize(torch.from_numpy(dataset.features[m]).double(), dim=1)
        nbrs = (nnf.normalize(new[m].double(), dim=1) @ cat.T).topk(k - 1, dim=1).indices
        expected += w / k * (x + table[nbrs].sum(1))
    assert ours.shape == (3, 2 * model.config.embedding_size)
    assert torch.allclose(ours.double(), expected, atol=1e-5)

"""GUME against dense float64 references on a tiny graph: its graphs, forward tables, every loss
term, the perturbed views and the ``train_features`` switch."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import build as make
from conftest import dense_r, make_dataset
from conftest import first_batch as a_batch

from mentor.data.sampler import Batch
from mentor.errors import MentorError
from mentor.losses import info_nce
from mentor.models.gume import GUME, common_neighbours, indexed_info_nce

F64 = torch.float64
nnf = torch.nn.functional


def weighted_knn_dense(features, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(``D^-1/2 A D^-1/2`` of the similarity-weighted top-k cosine graph, its binary
    pattern), both [I, I]."""
    f = nnf.normalize(torch.from_numpy(features).double(), dim=1)
    sim = f @ f.T
    top = sim.topk(k, dim=1).indices
    a = torch.zeros_like(sim).scatter_(1, top, sim.gather(1, top))
    inv = a.sum(1).pow(-0.5)
    return inv[:, None] * a * inv[None, :], torch.zeros_like(sim).scatter_(1, top, 1.0)


def dense_graphs(dataset, k: int) -> dict[str, torch.Tensor]:
    """The authors' graphs: S_m per modality, the common-neighbour block E, G [N, N]."""
    n_u, n_i = dataset.n_users, dataset.n_items
    out, common = {}, torch.ones(n_i, n_i, dtype=F64)
    for m in ("image", "text"):
        out[m], binary = weighted_knn_dense(dataset.features[m], k)
        common = common * binary
    common = common * (1 - torch.eye(n_i, dtype=F64))
    r = dense_r(dataset)
    adj = torch.zeros(n_u + n_i, n_u + n_i, dtype=F64)
    adj[:n_u, n_u:], adj[n_u:, :n_u], adj[n_u:, n_u:] = r, r.T, common
    deg = adj.sum(1)
    inv = torch.where(deg > 0, deg.clamp_min(1e-30).pow(-0.5), torch.zeros_like(deg))
    out["E"], out["G"] = common, inv[:, None] * adj * inv[None, :]
    return out


def dense_forward(model: GUME, dataset, k: int) -> dict[str, torch.Tensor]:
    """The authors' forward pass written with dense float64 matrices."""
    g = dense_graphs(dataset, k)
    n_u = dataset.n_users
    p = {name: t.detach().double() for name, t in model.state_dict().items()}

    def lin(x: torch.Tensor, name: str) -> torch.Tensor:
        bias = p.get(f"{name}.bias")
        y = x @ p[f"{name}.weight"].T
        return y if bias is None else y + bias

    def conv_ui(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        h = torch.cat([users, items])
        layers = [h]
        for _ in range(model.config.n_ui_layers):
            h = g["G"] @ h
            layers.append(h)
        return torch.stack(layers).mean(0)

    h_id = conv_ui(p["user_embedding"], p["item_id_embedding"])
    explicit, extended = {}, {}
    for m in ("image", "text"):
        feat = p[f"features.{m}"]
        x = p["item_id_embedding"] * torch.sigmoid(
            lin(lin(feat, f"reduce_dim.{m}"), f"trans_dim.{m}")
        )
        for _ in range(model.config.n_layers):
            x = g[m] @ x
        explicit[m] = torch.cat([g["G"][:n_u, n_u:] @ x, x])
        extended[m] = conv_ui(p[f"extended_user.{m}"], x)

    def coarse_score(x: torch.Tensor) -> torch.Tensor:
        return lin(torch.tanh(lin(x, "separate_coarse.0")), "separate_coarse.2")

    w = torch.softmax(torch.cat([coarse_score(explicit[m]) for m in ("image", "text")], 1), 1)
    coarse = w[:, :1] * explicit["image"] + w[:, 1:] * explicit["text"]
    fine = [
        torch.sigmoid(lin(h_id, f"behavior.{m}")) * (explicit[m] - coarse)
        for m in ("image", "text")
    ]
    z = (fine[0] + fine[1] + coarse) / 3
    return {
        "out": h_id + z,
        "z": z,
        "h_id": h_id,
        "h_it": (extended["image"] + extended["text"]) / 2,
        "c_image": explicit["image"],
        "c_text": explicit["text"],
    }


def info_nce_loops(a: torch.Tensor, b: torch.Tensor, temp: float) -> float:
    """``mean_i -log(exp(a_i.b_i / t) / sum_j exp(a_i.b_j / t))`` of L2-normalised rows, with
    Python loops."""
    a, b = nnf.normalize(a.double(), dim=1).tolist(), nnf.normalize(b.double(), dim=1).tolist()
    total = 0.0
    for i, row in enumerate(a):
        logits = [sum(x * y for x, y in zip(row, other, strict=True)) / temp for other in b]
        total += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    return total / len(a)


def test_graphs_match_dense(data: Path, tmp_path: Path) -> None:
    model, dataset = make("gume", data, tmp_path, knn_k=4)
    ref = dense_graphs(dataset, 4)
    assert ref["E"].sum() > 0  # some items share neighbours in both modalities
    assert not torch.equal(ref["E"], ref["E"].T)  # the block is directed, as the authors'
    assert torch.allclose(model.graph.matrix.to_dense().double(), ref["G"], atol=1e-6)
    n_u = dataset.n_users
    assert torch.allclose(model.to_users.matrix.to_dense().double(), ref["G"][:n_u, n_u:])
    blocks = model.item_graphs.matrix.to_dense().double()
    n_i = dataset.n_items
    assert torch.allclose(blocks[:n_i, :n_i], ref["image"], atol=1e-6)
    assert torch.allclose(blocks[n_i:, n_i:], ref["text"], atol=1e-6)
    assert blocks[:n_i, n_i:].abs().sum() == 0


def test_common_neighbours_rules() -> None:
    first = torch.tensor([[0, 1, 2], [1, 0, 3], [2, 3, 3], [3, 2, 1]])
    second = torch.tensor([[0, 2, 3], [1, 3, 0], [2, 0, 3], [3, 3, 3]])
    common = common_neighbours([first, second], 4).toarray()
    expected = [[0, 0, 1, 0], [1, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert common.tolist() == expected  # self left out, repeats count once


def test_forward_matches_dense(data: Path, tmp_path: Path) -> None:
    model, dataset = make("gume", data, tmp_path, knn_k=4)
    ref = dense_forward(model, dataset, 4)
    with torch.no_grad():
        got = model.tables()
    for key, expected in ref.items():
        assert torch.allclose(got[key].double(), expected, atol=1e-5), key
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        scores = model.score(torch.arange(3))
    n_u = dataset.n_users
    assert torch.allclose(scores.double(), ref["out"][:3] @ ref["out"][n_u:].T, atol=1e-5)


def test_loss_terms_by_hand(data: Path, tmp_path: Path) -> None:
    settings = dict(knn_k=4, noise_eps=0.0, reg_weight_1=0.3, vt_loss=0.7, bm_loss=0.2)
    model, dataset = make("gume", data, tmp_path, um_loss=0.4, **settings)
    batch = a_batch(dataset, batch_size=16)
    terms = model.loss(batch, torch.Generator().manual_seed(0))
    ref = {k: v.detach() for k, v in dense_forward(model, dataset, 4).items()}
    n_u, size = dataset.n_users, len(batch.users)
    users, items = ref["out"][:n_u], ref["out"][n_u:]
    u, p, n = users[batch.users], items[batch.positives], items[batch.negatives]
    bpr = -nnf.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
    assert float(terms["bpr"].detach()) == pytest.approx(float(bpr), rel=1e-5)
    l2 = (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / (2 * size)
    h_it_pos = ref["h_it"][n_u:][batch.positives]
    reg = 0.3 * l2 + 0.1 * h_it_pos.pow(2).sum() / (2 * size)
    assert float(terms["reg"].detach()) == pytest.approx(float(reg), rel=1e-5)
    a, b = ref["c_image"], ref["c_text"]
    vt = abs(float(a.var() - b.var())) + abs(float(a.mean() - b.mean()))
    assert float(terms["vt"].detach()) == pytest.approx(0.7 * vt, rel=1e-5)
    z_u, h_u = ref["z"][:n_u][batch.users], ref["h_id"][:n_u][batch.users]
    z_i, h_i = ref["z"][n_u:][batch.positives], ref["h_id"][n_u:][batch.positives]
    bm = info_nce_loops(z_u, h_u, 0.4) + info_nce_loops(z_i, h_i, 0.4)
    assert float(terms["bm"].detach()) == pytest.approx(0.2 * bm, rel=1e-5)
    it_u = ref["h_it"][:n_u][batch.users]
    # without noise the two perturbed views are the table itself
    um = info_nce_loops(it_u, z_u, 0.1) + info_nce_loops(z_u, z_u, 0.1)
    um += info_nce_loops(it_u, it_u, 0.1)
    assert float(terms["um"].detach()) == pytest.approx(0.4 * um, rel=1e-5)


def test_perturbed_views(data: Path, tmp_path: Path) -> None:
    model, _ = make("gume", data, tmp_path, noise_eps=0.3)
    table = torch.randn(6, 64, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    first = model._perturbed(table, gen)
    second = model._perturbed(table, gen)
    for view in (first, second):
        step = view - table
        # every entry moves away from zero, and each row's move has length noise_eps
        assert (step * torch.sign(table) >= 0).all()
        assert torch.allclose(step.norm(dim=1), torch.full((6,), 0.3), atol=1e-5)
    assert not torch.equal(first, second)


def test_indexed_info_nce_equals_the_gathered_rows() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(9, 16, generator=gen, dtype=F64, requires_grad=True)
    b = torch.randn(9, 16, generator=gen, dtype=F64, requires_grad=True)
    index = torch.tensor([3, 0, 3, 7, 3, 1, 0, 8])
    fast = indexed_info_nce(a, b, index, 0.2)
    expected = info_nce_loops(a[index].detach(), b[index].detach(), 0.2)
    assert float(fast.detach()) == pytest.approx(expected, rel=1e-10)
    grads = torch.autograd.grad(fast, (a, b))
    slow = info_nce(a[index], b[index], 0.2)
    for got, expected in zip(grads, torch.autograd.grad(slow, (a, b)), strict=True):
        assert torch.allclose(got, expected, atol=1e-10)


def test_train_features_switch_and_gradients(data: Path, tmp_path: Path) -> None:
    model, dataset = make("gume", data, tmp_path)
    assert "features.image" in dict(model.named_parameters())
    fixed, _ = make("gume", data, tmp_path, train_features=False)
    assert not any(n.startswith("features") for n, _ in fixed.named_parameters())
    terms = fixed.loss(a_batch(dataset), torch.Generator().manual_seed(0))
    sum(terms.values()).backward()
    assert fixed.extended_user["text"].grad.abs().sum() > 0
    assert fixed.reduce_dim["image"].weight.grad.abs().sum() > 0


def test_one_modality_has_no_alignment_term(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path, n_users=10, n_items=12, per_user=6, features={"text": 5})
    model, dataset = make("gume", folder, tmp_path / "cache")
    batch = Batch(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5]))
    terms = model.loss(batch, torch.Generator().manual_seed(0))
    assert float(terms["vt"]) == 0.0 and all(torch.isfinite(t) for t in terms.values())
    n_i = dataset.n_items
    # one modality: E is its kNN graph without the self-loops
    _, binary = weighted_knn_dense(dataset.features["text"], 10)
    expected = binary * (1 - torch.eye(n_i, dtype=F64))
    n_u = dataset.n_users
    block = model.graph.matrix.to_dense()[n_u:, n_u:]
    assert torch.equal(block > 0, expected > 0)


def test_validate_rejects_bad_settings(data: Path, tmp_path: Path) -> None:
    with pytest.raises(MentorError, match="um_temp"):
        make("gume", data, tmp_path, um_temp=0.0)

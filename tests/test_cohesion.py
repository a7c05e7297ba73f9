"""COHESION against dense float64 references on a tiny graph: the composite forward pass, the
detached ID branch and its ``id_grad`` switch, the modality-weighted BPR, ``eval_reps``, the
per-epoch user graph and edge pruning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build as make
from conftest import dense_r, make_dataset
from conftest import first_batch as a_batch

from mentor.errors import MentorError
from mentor.models.cohesion import COHESION, role_weights

F64 = torch.float64
nnf = torch.nn.functional


def dense_knn(features: np.ndarray, k: int) -> torch.Tensor:
    """Symmetric-normalised binary top-k cosine graph [I, I] (row degrees)."""
    f = nnf.normalize(torch.from_numpy(features).double(), dim=1)
    top = (f @ f.T).topk(k, dim=1).indices
    knn = torch.zeros(len(f), len(f), dtype=F64).scatter_(1, top, 1.0)
    r = knn.sum(1).pow(-0.5)
    return r[:, None] * knn * r[None, :]


def dense_forward(
    model: COHESION, dataset, id_feat: torch.Tensor, detach_id: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' forward pass with dense float64 matrices: users [U, 3d], items [I, 3d];
    ``id_feat`` may require gradient."""
    n_u, n_i = dataset.n_users, dataset.n_items
    r = dense_r(dataset)
    adj = torch.zeros(n_u + n_i, n_u + n_i, dtype=F64)
    adj[:n_u, n_u:], adj[n_u:, :n_u] = r, r.T
    deg = adj.sum(1)
    inv = torch.where(deg > 0, deg.clamp_min(1e-30).pow(-0.5), torch.zeros_like(deg))
    adj = inv[:, None] * adj * inv[None, :]
    p = {k: v.detach().double() for k, v in model.state_dict().items()}
    outs = []
    for name in ("id", "image", "text"):
        feats = id_feat if name == "id" else torch.from_numpy(dataset.features[name]).double()
        ident = id_feat.detach() if (detach_id and name == "id") else id_feat
        if detach_id and name == "id":
            feats = feats.detach()
        w = {k.split(".", 2)[2]: v for k, v in p.items() if k.startswith(f"branches.{name}.")}
        hidden = nnf.leaky_relu(feats @ w["mlp.weight"].T + w["mlp.bias"])
        proj = hidden @ w["mlp_1.weight"].T + w["mlp_1.bias"]
        fused = torch.sqrt(torch.abs((ident * ident + proj * proj) / 2 + 1e-8))
        x = nnf.normalize(torch.cat([w["preference"], fused]), dim=1)
        h, total = x, x
        for _ in range(model.config.num_layer):
            h = adj @ h
            h = nnf.cosine_similarity(h, x, dim=-1)[:, None] * h
            total = total + h
        outs.append(total)
    rep = torch.cat(outs, dim=1)
    users, items = rep[:n_u], rep[n_u:]
    s = 0.1 * dense_knn(dataset.features["image"], 10) + 0.9 * dense_knn(
        dataset.features["text"], 10
    )
    k = model.user_index.shape[1]
    graph = torch.zeros(n_u, n_u, dtype=F64).index_put_(
        (torch.arange(n_u).repeat_interleave(k), model.user_index.flatten()),
        model.user_weights.double().flatten(),
        accumulate=True,
    )
    return users + graph @ users, items + s @ items


def adaptive_bpr(users: torch.Tensor, items: torch.Tensor, batch, d: int) -> torch.Tensor:
    """The authors' modality-weighted base-2 BPR, row by row."""
    total = users.new_zeros(())
    for u, i, j in zip(batch.users, batch.positives, batch.negatives, strict=True):
        s_pos = (users[u] * items[i]).view(-1, d).sum(1)
        s_neg = (users[u] * items[j]).view(-1, d).sum(1)
        weight = 1 - torch.softmax(s_pos - s_neg, 0).detach()
        total = total - torch.log2(torch.sigmoid((weight * s_pos).sum() - (weight * s_neg).sum()))
    return total / len(batch.users)


@pytest.mark.parametrize("id_grad", [False, True])
def test_forward_loss_and_id_gradient_match_dense(data: Path, tmp_path: Path, id_grad: bool):
    model, dataset = make("cohesion", data, tmp_path, num_layer=2, id_grad=id_grad)
    assert model.modalities == ["image", "text"]
    id_feat = model.id_feat.detach().double().requires_grad_(True)
    ref_u, ref_i = dense_forward(model, dataset, id_feat, detach_id=not id_grad)
    batch = a_batch(dataset, batch_size=16)
    terms = model.loss(batch, torch.Generator().manual_seed(0))
    # the stored tables are this batch's representations
    assert torch.allclose(model.result_users.double(), ref_u.detach(), atol=1e-5)
    assert torch.allclose(model.result_items.double(), ref_i.detach(), atol=1e-5)
    bpr = adaptive_bpr(ref_u, ref_i, batch, 64)
    assert float(terms["bpr"].detach()) == pytest.approx(float(bpr.detach()), rel=1e-5)
    prefs = sum(model.branches[m].preference[batch.users].pow(2).mean() for m in ("image", "text"))
    assert float(terms["reg"].detach()) == pytest.approx(0.1 * float(prefs.detach()), rel=1e-6)
    terms["bpr"].backward()
    bpr.backward()
    assert torch.allclose(model.id_feat.grad.double(), id_feat.grad, atol=1e-6)
    id_params = [n for n, _ in model.named_parameters() if n.startswith("branches.id.")]
    if id_grad:
        assert model.branches["id"].preference.grad.abs().sum() > 0
    else:  # the code's .data: the ID branch is constant, still in the state
        assert id_params == []
        assert "branches.id.mlp.weight" in model.state_dict()


def test_detached_id_branch_changes_the_gradient(data: Path, tmp_path: Path) -> None:
    grads = []
    for id_grad in (False, True):
        model, dataset = make("cohesion", data, tmp_path, id_grad=id_grad)
        model.loss(a_batch(dataset), torch.Generator())["bpr"].backward()
        grads.append(model.id_feat.grad)
    assert not torch.allclose(grads[0], grads[1])


def test_eval_reps(data: Path, tmp_path: Path) -> None:
    model, dataset = make("cohesion", data, tmp_path)
    batch = a_batch(dataset)
    model.loss(batch, torch.Generator())
    with torch.no_grad():
        model.id_feat.add_(1.0)  # an optimiser step after the last batch
    model.eval()
    users = torch.arange(4)
    with torch.no_grad():
        model.prepare_scoring()
        last = model.score(users)
        assert torch.equal(last, model.result_users[users] @ model.result_items.T)
        fresh, _ = make("cohesion", data, tmp_path, eval_reps="fresh")
        fresh.load_state_dict(model.state_dict())
        fresh.eval()
        fresh.prepare_scoring()
        u, i = fresh.representations(fresh.graph)
        assert torch.allclose(fresh.score(users), u[users] @ i.T)
        assert not torch.allclose(fresh.score(users), last)
        rep_u, rep_i = fresh.serving_representations()
        assert torch.allclose(rep_u[users] @ rep_i.T, fresh.score(users))


def test_user_graph_resampled_each_epoch_and_restored(data: Path, tmp_path: Path) -> None:
    model, dataset = make("cohesion", data, tmp_path, user_knn_k=8)
    co = (dense_r(dataset) @ dense_r(dataset).T).fill_diagonal_(0)
    short = int(((co > 0).sum(1) < 8).nonzero()[0])  # a user padded to 8 co-users
    seen = set()
    for epoch in range(1, 6):
        model.on_epoch_start(epoch, torch.Generator().manual_seed(epoch))
        seen.add(tuple(model.user_index[short].tolist()))
        dense = model.user_graph.matrix.to_dense()
        assert torch.allclose(dense.sum(1)[co.sum(1) > 0], torch.ones(int((co.sum(1) > 0).sum())))
    assert len(seen) > 1
    fresh, _ = make("cohesion", data, tmp_path, user_knn_k=8)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.user_graph.matrix.to_dense(), model.user_graph.matrix.to_dense())


def test_dropout_prunes_training_edges_only(data: Path, tmp_path: Path) -> None:
    model, dataset = make("cohesion", data, tmp_path, dropout=0.5, eval_reps="fresh")
    model.on_epoch_start(1, torch.Generator().manual_seed(0))
    n_edges = len(np.unique(dataset.train, axis=0))
    assert model.train_graph.matrix.values().numel() == int(n_edges * 0.5)
    assert model.graph.matrix.values().numel() == n_edges
    none, _ = make("cohesion", data, tmp_path)
    none.on_epoch_start(1, torch.Generator().manual_seed(0))
    assert none.train_graph.matrix.values().numel() == n_edges


def test_role_weights_and_validation(data: Path, tmp_path: Path) -> None:
    assert role_weights(["genre", "text"], 0.1) == {"genre": 0.1, "text": 0.9}
    assert role_weights(["a", "b", "c"], 0.1) == {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    with pytest.raises(MentorError, match="dropout"):
        make("cohesion", data, tmp_path, dropout=1.0)


def test_one_modality(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path, n_users=10, n_items=12, per_user=6, features={"text": 5})
    model, dataset = make("cohesion", folder, tmp_path / "cache")
    terms = model.loss(a_batch(dataset), torch.Generator())
    assert all(torch.isfinite(t) for t in terms.values())
    assert model.result_items.shape == (dataset.n_items, 128)

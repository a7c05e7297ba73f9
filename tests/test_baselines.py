"""LayerGCN, VBPR, MMGCN, DualGNN and FREEDOM against dense/hand references on tiny graphs, their
MMRec-correction switches, and the loop contract they need (per-epoch generator and resume, lr
schedule, auxiliary optimiser, models without negatives)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build as make
from conftest import dense_r, sym_block
from conftest import first_batch as a_batch

from mentor.config import resolve_config
from mentor.data.dataset import load_dataset
from mentor.data.sampler import Batch, BPRSampler
from mentor.models.dualgnn import DualGNN, padded_user_graph, top_co_interactions
from mentor.models.layergcn import LayerGCN, TrainEdges
from mentor.models.lightgcn import LightGCN
from mentor.registry import get_model
from mentor.training.checkpoint import load_tensors
from mentor.training.loop import fit, scheduled_lr

F64 = torch.float64


def dense_knn(features: np.ndarray, k: int) -> torch.Tensor:
    """Symmetric-normalised binary top-k cosine graph [I, I] (row degrees)."""
    f = torch.nn.functional.normalize(torch.from_numpy(features).double(), dim=1)
    top = (f @ f.T).topk(k, dim=1).indices
    knn = torch.zeros(len(f), len(f), dtype=F64).scatter_(1, top, 1.0)
    r = knn.sum(1).pow(-0.5)
    return r[:, None] * knn * r[None, :]


# ---------------------------------------------------------------------------------------------
# LayerGCN
# ---------------------------------------------------------------------------------------------
def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine [n]; rows of zeros (nodes without edges) give 0."""
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-8)


def test_layergcn_forward_and_loss_match_dense(data: Path, tmp_path: Path) -> None:
    model, dataset = make("layergcn", data, tmp_path, n_layers=3)
    g = sym_block(dense_r(dataset))
    e_u, e_i = model.user_embeddings.detach().double(), model.item_embeddings.detach().double()
    h_u, h_i, tot_u, tot_i = e_u, e_i, 0.0, 0.0
    for _ in range(3):
        h_u, h_i = g @ h_i, g.T @ h_u
        h_u = h_u * cosine(h_u, e_u)[:, None]
        h_i = h_i * cosine(h_i, e_i)[:, None]
        tot_u, tot_i = tot_u + h_u, tot_i + h_i
    users, items = model.propagate(model.graph)
    assert torch.allclose(users.double(), tot_u, atol=1e-5)
    assert torch.allclose(items.double(), tot_i, atol=1e-5)
    batch = a_batch(dataset)
    terms = model.loss(batch, torch.Generator().manual_seed(0))
    u, p, n = tot_u[batch.users], tot_i[batch.positives], tot_i[batch.negatives]
    bpr = -torch.nn.functional.logsigmoid((u * p).sum(1) - (u * n).sum(1)).sum()
    l2 = 0.5 * sum(
        t.pow(2).sum() for t in (e_u[batch.users], e_i[batch.positives], e_i[batch.negatives])
    )
    assert float(terms["bpr"].detach()) == pytest.approx(float(bpr), rel=1e-5)
    reg = model.config.reg_weight
    assert float(terms["reg"].detach()) == pytest.approx(reg * float(l2), rel=1e-5)


def test_edge_dropout_keeps_count_renormalises_and_follows_degree() -> None:
    train = np.array([[0, 0], [0, 1], [1, 1], [2, 2], [2, 0], [1, 2]])
    edges = TrainEdges(train, 3, 3)
    gen = torch.Generator().manual_seed(0)
    graph = edges.keep(0.5, True, gen)
    kept = graph.to_scipy().toarray()
    assert (kept > 0).sum() == 3
    binary = torch.from_numpy((kept > 0).astype("f8"))
    assert torch.allclose(torch.from_numpy(kept).double(), sym_block(binary), atol=1e-6)
    # one edge kept of three whose weights are 1/sqrt(2), 1/2, 1/sqrt(2): P ~ weight
    small = TrainEdges(np.array([[0, 0], [0, 1], [1, 1]]), 2, 2)
    weights = np.array([2**-0.5, 0.5, 2**-0.5])
    counts = np.zeros((2, 2))
    for _ in range(3000):
        counts += small.keep(0.5, True, gen).to_scipy().toarray() > 0
    freq = np.array([counts[0, 0], counts[0, 1], counts[1, 1]]) / 3000
    assert np.allclose(freq, weights / weights.sum(), atol=0.03)
    uniform = np.zeros((2, 2))
    for _ in range(3000):
        uniform += small.keep(0.5, False, gen).to_scipy().toarray() > 0
    assert np.allclose(uniform[[0, 0, 1], [0, 1, 1]] / 3000, 1 / 3, atol=0.03)


def test_layergcn_epochs_alternate_degree_and_uniform(data: Path, tmp_path: Path, monkeypatch):
    model, _ = make("layergcn", data, tmp_path, dropout=0.2)
    calls = []
    original = model.edges.keep

    def spy(dropout: float, by_degree: bool, generator: torch.Generator):
        calls.append(by_degree)
        return original(dropout, by_degree, generator)

    monkeypatch.setattr(model.edges, "keep", spy)
    for epoch in range(1, 5):
        model.on_epoch_start(epoch, torch.Generator().manual_seed(epoch))
    assert calls == [True, False, True, False]
    assert isinstance(model, LayerGCN) and model.train_graph is not model.graph


# ---------------------------------------------------------------------------------------------
# VBPR
# ---------------------------------------------------------------------------------------------
def test_vbpr_scores_loss_and_visual_bias(data: Path, tmp_path: Path) -> None:
    model, dataset = make("vbpr", data, tmp_path)
    feats = torch.cat([torch.from_numpy(dataset.features[m]) for m in ("image", "text")], dim=1)
    w, b = model.item_linear.weight.detach(), model.item_linear.bias.detach()
    items = torch.cat([model.i_embedding.detach(), feats @ w.T + b], dim=1)
    users = model.u_embedding.detach()
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        assert torch.allclose(model.score(torch.arange(3)), users[:3] @ items.T, atol=1e-5)
    batch = a_batch(dataset)
    terms = model.loss(batch, torch.Generator())
    u, p, n = users[batch.users], items[batch.positives], items[batch.negatives]
    diff = (u * p).sum(1) - (u * n).sum(1)
    bpr = -torch.log(1e-10 + torch.sigmoid(diff)).mean()
    reg = (u.norm() + p.norm() + n.norm()) / len(batch.users)
    assert float(terms["bpr"].detach()) == pytest.approx(float(bpr), rel=1e-5)
    assert float(terms["reg"].detach()) == pytest.approx(1e-3 * float(reg), rel=1e-5)
    # the switch adds beta' . f_i to every item's score and trains beta'
    biased, _ = make("vbpr", data, tmp_path, visual_bias=True)
    with torch.no_grad():
        biased.visual_bias.copy_(torch.linspace(-1, 1, feats.shape[1]))
    biased.train()
    terms = biased.loss(batch, torch.Generator())
    sum(terms.values()).backward()
    assert biased.visual_bias.grad is not None and biased.visual_bias.grad.abs().sum() > 0
    biased.eval()
    with torch.no_grad():
        biased.prepare_scoring()
        bias = feats @ biased.visual_bias
        assert torch.allclose(biased.score(torch.arange(3)), users[:3] @ items.T + bias, atol=1e-5)
        u_rep, i_rep = biased.serving_representations()
        assert torch.allclose(u_rep[:3] @ i_rep.T, biased.score(torch.arange(3)), atol=1e-5)
    assert "visual_bias" not in dict(model.named_parameters())


def test_vbpr_item_rows_equal_whether_gathered_or_projected_all(data: Path, tmp_path: Path):
    """Few rows go through the product alone; as many rows as items project the whole table."""
    model, dataset = make("vbpr", data, tmp_path)
    feats = torch.cat([torch.from_numpy(dataset.features[m]) for m in ("image", "text")], dim=1)
    w, b = model.item_linear.weight.detach(), model.item_linear.bias.detach()
    table = torch.cat([model.i_embedding.detach(), feats @ w.T + b], dim=1)
    gen = torch.Generator().manual_seed(0)
    few = torch.randint(0, dataset.n_items, (3,), generator=gen)
    many = torch.randint(0, dataset.n_items, (2 * dataset.n_items,), generator=gen)
    for index in (few, many):
        out = model.item_table(index)
        assert out.shape == (len(index), table.shape[1])
        assert torch.allclose(out, table[index], atol=1e-6)
        out.sum().backward()
        assert model.item_linear.weight.grad is not None
        model.zero_grad()


# ---------------------------------------------------------------------------------------------
# MMGCN
# ---------------------------------------------------------------------------------------------
def mmgcn_dense(model, dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """MMRec's MMGCN forward with a dense mean-aggregation matrix over all N nodes."""
    n_u = dataset.n_users
    r = dense_r(dataset).float()
    adj = torch.zeros(n_u + dataset.n_items, n_u + dataset.n_items)
    adj[:n_u, n_u:], adj[n_u:, :n_u] = r, r.T
    mean = adj / adj.sum(1, keepdim=True).clamp_min(1)
    act = torch.nn.functional.leaky_relu
    outs = []
    for m, branch in model.branches.items():
        f = model.features[m]
        items = branch.project(f) if branch.project is not None else f
        x = torch.nn.functional.normalize(torch.cat([branch.preference, items]), dim=1)
        for weight, lin, gate in zip(branch.conv, branch.linear, branch.gate, strict=True):
            h = act(mean @ (x @ weight))
            x_hat = act(lin(x)) + model.id_embedding
            x = act(gate(torch.cat([h, x_hat], 1))) if branch.concate else act(gate(h) + x_hat)
        outs.append(x)
    total = sum(outs) / len(outs)
    return total[:n_u], total[n_u:]


@pytest.mark.parametrize("switches", [{}, {"three_layers": False, "n_layers": 1}])
def test_mmgcn_matches_dense(data: Path, tmp_path: Path, switches: dict) -> None:
    model, dataset = make("mmgcn", data, tmp_path, **switches)
    assert len(model.branches["image"].conv) == (3 if not switches else 1)
    assert model.branches["text"].project is None  # text is used raw, as MMRec's text branch
    assert model.branches["image"].preference.shape == (dataset.n_users, 256)
    with torch.no_grad():
        users, items = model.representations()
        ref_u, ref_i = mmgcn_dense(model, dataset)
    assert torch.allclose(users, ref_u, atol=1e-5) and torch.allclose(items, ref_i, atol=1e-5)


def test_mmgcn_tables_fixed_by_default_trained_with_switch(data: Path, tmp_path: Path) -> None:
    model, dataset = make("mmgcn", data, tmp_path)
    names = dict(model.named_parameters())
    assert "id_embedding" not in names and "branches.image.preference" not in names
    before = model.id_embedding.clone()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.1)
    batch = a_batch(dataset)
    terms = model.loss(batch, torch.Generator())
    # MMRec's regulariser: mean over [2B, d] of id[u]^2 + id[item]^2, plus mean(P_image^2)
    ids = model.id_embedding
    shift = dataset.n_users
    u, p, n = ids[batch.users], ids[batch.positives + shift], ids[batch.negatives + shift]
    items = torch.stack([p, n], 1).reshape(-1, p.shape[1])
    reg = (u.repeat_interleave(2, 0).pow(2) + items.pow(2)).mean()
    reg = reg + model.branches["image"].preference.pow(2).mean()
    assert float(terms["reg"].detach()) == pytest.approx(1e-4 * float(reg), rel=1e-5)
    sum(terms.values()).backward()
    optimiser.step()
    assert torch.equal(model.id_embedding, before)
    trained, _ = make("mmgcn", data, tmp_path, train_tables=True, concate=False)
    names = dict(trained.named_parameters())
    assert {"id_embedding", "branches.image.preference", "branches.text.preference"} <= set(names)
    sum(trained.loss(batch, torch.Generator()).values()).backward()
    assert names["id_embedding"].grad is not None and names["id_embedding"].grad.abs().sum() > 0
    assert trained.branches["image"].gate[0].in_features == 256  # g(h) + x_hat: h only
    with torch.no_grad():
        ref_u, _ = mmgcn_dense(trained, dataset)
        assert torch.allclose(trained.representations()[0], ref_u, atol=1e-5)


@pytest.mark.parametrize("train_tables", [False, True])
def test_mmgcn_reg_weight_is_inert_only_with_fixed_tables(
    data: Path, tmp_path: Path, train_tables: bool
) -> None:
    batch = None
    grads = []
    for reg_weight in (0.0, 0.1):
        model, dataset = make(
            "mmgcn", data, tmp_path, reg_weight=reg_weight, train_tables=train_tables
        )
        batch = batch or a_batch(dataset)
        terms = model.loss(batch, torch.Generator())
        sum(terms.values()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        assert model.config.inert_keys() == ([] if train_tables else ["reg_weight"])
    same = all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])
    # fixed tables: the regulariser is a constant, so every gradient is the same
    assert same is not train_tables


# ---------------------------------------------------------------------------------------------
# DualGNN
# ---------------------------------------------------------------------------------------------
def test_co_interaction_topk_matches_dense() -> None:
    rng = np.random.default_rng(0)
    train = np.array([(u, i) for u in range(9) for i in rng.choice(7, 3, replace=False)])
    train = np.concatenate([train, train[:4]])  # duplicates count once
    index, counts, valid = top_co_interactions(train, 10, 7, k=4, block_rows=4)
    r = np.zeros((10, 7))
    r[train[:, 0], train[:, 1]] = 1
    co = r @ r.T
    np.fill_diagonal(co, 0)
    for u in range(10):
        ranked = sorted((v for v in range(10) if co[u, v] > 0), key=lambda v: (-co[u, v], v))
        top = ranked[:4]
        assert valid[u] == len(top)
        assert list(index[u, : len(top)]) == top
        assert list(counts[u, : len(top)]) == [co[u, v] for v in top]
    assert valid[9] == 0  # user 9 has no items


def test_padded_user_graph_rules() -> None:
    index = torch.tensor([[5, 6, 7, 8], [3, 4, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0]])
    counts = torch.tensor([[4.0, 3, 2, 1], [2, 1, 0, 0], [7, 0, 0, 0], [0, 0, 0, 0]])
    valid = torch.tensor([4, 2, 1, 0])
    seen = set()
    for seed in range(30):
        idx, w = padded_user_graph(index, counts, valid, torch.Generator().manual_seed(seed))
        assert torch.equal(idx[0], index[0])
        assert torch.allclose(w[0], torch.softmax(counts[0], 0))
        assert set(idx[1].tolist()) <= {3, 4} and idx[1, :2].tolist() == [3, 4]
        expected = torch.softmax(torch.where(idx[1] == 3, 2.0, 1.0), 0)
        assert torch.allclose(w[1], expected)
        assert idx[2].tolist() == [2, 2, 2, 2] and torch.allclose(w[2], torch.full((4,), 0.25))
        assert w[3].abs().sum() == 0
        seen.add(tuple(idx[1].tolist()))
    assert len(seen) > 1  # the padding is random


@pytest.mark.parametrize("mutated", [True, False])
def test_dualgnn_matches_dense(data: Path, tmp_path: Path, mutated: bool) -> None:
    model, dataset = make(
        "dualgnn", data, tmp_path, mutated_first_branch=mutated, feature_dtype="float32"
    )
    assert isinstance(model, DualGNN) and model.modalities == ["image", "text"]
    g = sym_block(dense_r(dataset)).float()
    reps_u, reps_i = [], []
    for m in model.modalities:
        branch = model.branches[m]
        hidden = torch.nn.functional.leaky_relu(branch.mlp(model.features[m]))
        x_u = torch.nn.functional.normalize(branch.preference, dim=1)
        x_i = torch.nn.functional.normalize(branch.mlp_1(hidden), dim=1)
        h_u, h_i = g @ x_i, g.T @ x_u
        reps_u.append(x_u + h_u + g @ h_i)
        reps_i.append(x_i + h_i + g.T @ h_u)
    w = model.weight_u
    first = reps_u[0] + reps_u[1] if mutated else reps_u[0]
    user = first * w[:, 0] + reps_u[1] * w[:, 1]
    n = dataset.n_users
    graph = torch.zeros(n, n).index_put_(
        (torch.arange(n).repeat_interleave(model.config.knn_k), model.user_index.flatten()),
        model.user_weights.flatten(),
        accumulate=True,
    )
    with torch.no_grad():
        users, items = model.representations()
        assert torch.allclose(items, reps_i[0] + reps_i[1], atol=1e-5)
        assert torch.allclose(users, user + graph @ user, atol=1e-5)


def test_dualgnn_bfloat16_first_layer_approximates_float32(data: Path, tmp_path: Path) -> None:
    exact, _ = make("dualgnn", data, tmp_path, feature_dtype="float32")
    low, _ = make("dualgnn", data, tmp_path, feature_dtype="bfloat16")
    for m in exact.modalities:
        full = exact.first_layer(m)
        half = low.first_layer(m)
        assert half.dtype == torch.float32 and half.shape == full.shape
        assert not torch.equal(half, full)  # it did run in bfloat16
        assert torch.allclose(half, full, rtol=2e-2, atol=2e-2)
        half.sum().backward()  # the weight gradient reaches the float32 parameters
        assert low.branches[m].mlp.weight.grad is not None
        assert low.branches[m].mlp.weight.grad.dtype == torch.float32
    with torch.no_grad():
        users, items = low.representations()
        ref_u, ref_i = exact.representations()
    assert torch.allclose(items, ref_i, atol=5e-2) and torch.allclose(users, ref_u, atol=5e-2)


def test_dualgnn_user_graph_survives_state_dict(data: Path, tmp_path: Path) -> None:
    model, _ = make("dualgnn", data, tmp_path)
    model.on_epoch_start(1, torch.Generator().manual_seed(11))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fresh, _ = make("dualgnn", data, tmp_path)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.user_index, model.user_index)
    model.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.allclose(fresh.representations()[0], model.representations()[0])


# ---------------------------------------------------------------------------------------------
# FREEDOM
# ---------------------------------------------------------------------------------------------
def test_freedom_forward_and_loss_match_dense(data: Path, tmp_path: Path) -> None:
    model, dataset = make("freedom", data, tmp_path, knn_k=3, reg_weight=0.5)
    s = sum(w * dense_knn(dataset.features[m], 3) for m, w in {"image": 0.1, "text": 0.9}.items())
    g = sym_block(dense_r(dataset))
    e_u, e_i = model.user_embedding.detach().double(), model.item_id_embedding.detach().double()
    h_u, h_i, tot_u, tot_i = e_u, e_i, e_u, e_i
    for _ in range(2):
        h_u, h_i = g @ h_i, g.T @ h_u
        tot_u, tot_i = tot_u + h_u, tot_i + h_i
    ref_u, ref_i = tot_u / 3, tot_i / 3 + s @ e_i
    users, items = model.propagate(model.graph)
    assert torch.allclose(users.double(), ref_u, atol=1e-5)
    assert torch.allclose(items.double(), ref_i, atol=1e-5)
    batch = a_batch(dataset)
    terms = model.loss(batch, torch.Generator())
    u = ref_u[batch.users]
    feature_bpr = 0.0
    for m in ("image", "text"):
        proj = (
            torch.from_numpy(dataset.features[m]).double() @ model.trs[m].weight.detach().double().T
        )
        diff = (u * proj[batch.positives]).sum(1) - (u * proj[batch.negatives]).sum(1)
        feature_bpr += float(-torch.nn.functional.logsigmoid(diff).mean())
    assert float(terms["features"].detach()) == pytest.approx(0.5 * feature_bpr, rel=1e-5)


def test_freedom_features_trained_by_default_fixed_with_switch(data: Path, tmp_path: Path):
    model, dataset = make("freedom", data, tmp_path)
    assert "features.image" in dict(model.named_parameters())
    fixed, _ = make("freedom", data, tmp_path, train_features=False)
    assert not any(n.startswith("features") for n, _ in fixed.named_parameters())
    assert not any(k.startswith("features") for k in fixed.state_dict())
    # dropout 0.8 keeps int(E * (1 - 0.8)) edges each epoch (MMRec's float rounding: 55 -> 10)
    fixed.on_epoch_start(1, torch.Generator().manual_seed(0))
    n_edges = len(np.unique(dataset.train, axis=0))
    assert fixed.train_graph.matrix.values().numel() == int(n_edges * (1.0 - 0.8))


# ---------------------------------------------------------------------------------------------
# loop contract: per-epoch generator and resume, lr schedule, auxiliary optimiser, negatives
# ---------------------------------------------------------------------------------------------
def run(name: str, folder: Path, out: Path, epochs: int, resume: bool = False, **train):
    tree = {
        "data": {"path": str(folder)},
        "train": {"epochs": epochs, **train},
        "eval": {"topk": [5, 10], "valid_metric": "recall@10"},
    }
    config = resolve_config(name, tree)
    return fit(config, load_dataset(folder), out, resume=resume, progress=False, log=lambda _: None)


@pytest.mark.parametrize("name", ["layergcn", "dualgnn", "freedom"])
def test_resume_is_identical_with_per_epoch_randomness(data: Path, tmp_path: Path, name: str):
    straight = run(name, data, tmp_path / "straight", 4)
    run(name, data, tmp_path / "part", 2)
    resumed = run(name, data, tmp_path / "part", 4, resume=True)
    assert resumed["valid"] == straight["valid"] and resumed["test"] == straight["test"]
    a, _ = load_tensors(tmp_path / "straight" / "checkpoint.safetensors")
    b, meta = load_tensors(tmp_path / "part" / "checkpoint.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [row["loss"] for row in meta["history"]] == [
        row["loss"]
        for row in load_tensors(tmp_path / "straight" / "checkpoint.safetensors")[1]["history"]
    ]


def test_lr_schedule(data: Path, tmp_path: Path) -> None:
    config = resolve_config("bpr", {"train": {"lr_scheduler": [0.96, 50]}})
    assert config.train.lr_scheduler == [0.96, 50.0]
    assert scheduled_lr(config.train, 1) == config.train.learning_rate
    assert scheduled_lr(config.train, 51) == pytest.approx(config.train.learning_rate * 0.96)
    run("bpr", data, tmp_path / "r", 3, lr_scheduler=[0.5, 1.0], learning_rate=0.01)
    _, meta = load_tensors(tmp_path / "r" / "checkpoint.safetensors")
    assert meta["param_groups"][0]["lr"] == pytest.approx(0.01 * 0.5**2)  # epoch 3's rate
    from mentor.errors import MentorError

    with pytest.raises(MentorError, match="lr_scheduler"):
        resolve_config("bpr", {"train": {"lr_scheduler": [0.9]}})


class AuxLightGCN(LightGCN):
    """LightGCN with a scalar trained by the auxiliary optimiser only (loop test)."""

    name = "aux-lightgcn"

    def __init__(self, config, ctx, generator) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, ctx, generator)
        self.critic = torch.nn.Parameter(torch.ones(1))

    def auxiliary_parameters(self) -> list[torch.nn.Parameter]:
        return [self.critic]

    def auxiliary_loss(self, batch: Batch, generator: torch.Generator):  # type: ignore[no-untyped-def]
        noise = torch.rand(1, generator=generator)
        return {"critic": ((self.critic - 3.0) ** 2).sum() + 0 * noise.sum()}

    def loss(self, batch: Batch, generator: torch.Generator):  # type: ignore[no-untyped-def]
        terms = super().loss(batch, generator)
        terms["uses_critic"] = 1e-3 * self.critic.sum() ** 2
        return terms


def test_auxiliary_optimiser_trains_its_parameters_and_resumes(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = replace(get_model("lightgcn"), name="lightgcn", model_cls=AuxLightGCN)
    monkeypatch.setattr("mentor.eval.context.get_model", lambda name: spec)
    run("lightgcn", data, tmp_path / "straight", 4)
    tensors, meta = load_tensors(tmp_path / "straight" / "checkpoint.safetensors")
    assert any(k.startswith("aux_optim.") for k in tensors) and meta["aux_param_groups"]
    # the main optimiser holds the two tables only; the critic moved towards 3 under Adam 1e-3
    assert len(meta["param_groups"][0]["params"]) == 2
    assert 1.0 < float(tensors["model.critic"]) < 3.0
    assert "aux_loss_critic" in meta["history"][0]
    run("lightgcn", data, tmp_path / "part", 2)
    run("lightgcn", data, tmp_path / "part", 4, resume=True)
    resumed, _ = load_tensors(tmp_path / "part" / "checkpoint.safetensors")
    assert all(torch.equal(tensors[k], resumed[k]) for k in tensors)


def test_sampler_without_negatives_keeps_the_order_stream(data: Path) -> None:
    dataset = load_dataset(data)
    with_neg = BPRSampler(dataset.train, dataset.n_items, batch_size=8)
    without = BPRSampler(dataset.train, dataset.n_items, batch_size=8, negatives=False)
    a = list(with_neg.epoch(torch.Generator().manual_seed(4)))
    b = list(without.epoch(torch.Generator().manual_seed(4)))
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.users, y.users) and torch.equal(x.positives, y.positives)
        assert y.negatives.dtype == torch.int64 and y.negatives.numel() == 0
        assert x.negatives.numel() == x.users.numel()

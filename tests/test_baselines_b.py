"""LATTICE, SLMRec, BM3 and MMSSL against dense/hand references on tiny graphs, and their
correction switches (SLMRec's ``use_reg``, MMSSL's ``modality_graph``, ``train_features``,
``eval_reps``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build as make
from conftest import dense_r, inv_sqrt, make_dataset, sym_block
from conftest import first_batch as a_batch

from mentor.config import resolve_config
from mentor.data.dataset import load_dataset
from mentor.data.sampler import Batch
from mentor.models.blocks import ordered_modalities
from mentor.training.checkpoint import load_tensors
from mentor.training.loop import fit

F64 = torch.float64
nnf = torch.nn.functional


def layer_mean_dense(a: torch.Tensor, users: torch.Tensor, items: torch.Tensor, layers: int):
    """LightGCN layer mean over the bipartite graph with user-item block ``a``."""
    hu, hi, tu, ti = users, items, users, items
    for _ in range(layers):
        hu, hi = a @ hi, a.T @ hu
        tu, ti = tu + hu, ti + hi
    return tu / (layers + 1), ti / (layers + 1)


def cross_entropy_diag(logits: torch.Tensor) -> float:
    """Mean of ``-log softmax(row)[i]`` with Python loops (reference)."""
    total = 0.0
    for i, row in enumerate(logits.tolist()):
        total += -row[i] + math.log(sum(math.exp(v) for v in row))
    return total / len(logits)


def test_role_order() -> None:
    assert ordered_modalities(["text", "genre"]) == ["genre", "text"]
    assert ordered_modalities(["text", "a", "image", "b"]) == ["image", "a", "b", "text"]
    assert ordered_modalities(["audio"]) == ["audio"]


# ---------------------------------------------------------------------------------------------
# BM3
# ---------------------------------------------------------------------------------------------
def test_bm3_forward_and_loss_by_hand(data: Path, tmp_path: Path) -> None:
    model, dataset = make("bm3", data, tmp_path, dropout=0.0, n_layers=2)
    a = sym_block(dense_r(dataset))
    e_u, e_i = model.user_embedding.double(), model.item_id_embedding.double()
    ref_u, ref_i = layer_mean_dense(a, e_u, e_i, 2)
    ref_i = ref_i + e_i
    users, items = model.online()
    assert torch.allclose(users.double(), ref_u, atol=1e-6)
    assert torch.allclose(items.double(), ref_i, atol=1e-6)

    batch = a_batch(dataset, negatives=False)
    assert batch.negatives.numel() == 0
    terms = model.loss(batch, torch.Generator().manual_seed(0))
    pred = model.predictor
    u, i = ref_u[batch.users].float(), ref_i[batch.positives].float()

    def gap(x, y):
        return 1.0 - nnf.cosine_similarity(x, y, dim=-1).mean()

    with torch.no_grad():
        assert terms["bootstrap"].item() == pytest.approx(
            float(gap(pred(u), i) + gap(pred(i), u)), rel=1e-5
        )
        reg = 0.1 * (ref_u.norm() + ref_i.norm()) / dataset.n_items
        assert terms["reg"].item() == pytest.approx(reg.item(), rel=1e-5)
        modal = 0.0
        for m in ("image", "text"):
            t = model.trs[m](torch.from_numpy(dataset.features[m])[batch.positives])
            modal += float(gap(pred(t), i) + gap(pred(t), t))
        assert terms["modal"].item() == pytest.approx(2.0 * modal, rel=1e-5)
        model.eval()
        model.prepare_scoring()
        scores = model.score(torch.tensor([0, 2]))
        assert torch.allclose(
            scores, pred(ref_u[[0, 2]].float()) @ pred(ref_i.float()).T, atol=1e-5
        )


def test_bm3_dropout_targets_and_feature_switch(data: Path, tmp_path: Path) -> None:
    model, dataset = make("bm3", data, tmp_path)
    batch = a_batch(dataset, negatives=False)
    sum(model.loss(batch, torch.Generator().manual_seed(0)).values()).backward()
    assert model.raw["image"].grad is not None  # MMRec: raw features are trained
    frozen, _ = make("bm3", data, tmp_path, train_features=False)
    assert not any(isinstance(t, torch.nn.Parameter) for t in frozen.raw.values())
    names = {n for n, _ in frozen.named_parameters()}
    assert not any(n.startswith("raw.") for n in names)
    one = frozen.loss(batch, torch.Generator().manual_seed(0))
    two = frozen.loss(batch, torch.Generator().manual_seed(1))
    assert one["bootstrap"].item() != two["bootstrap"].item()  # new targets


def test_bm3_target_mask_is_per_table_row(data: Path, tmp_path: Path) -> None:
    """MMRec drops out whole tables, then takes the batch's rows: an item twice in a batch gets
    one mask, so with its user twice too both (user, item) rows have the same loss terms."""
    model, dataset = make("bm3", data, tmp_path, dropout=0.5, cl_weight=0.0, reg_weight=0.0)
    user, item = (int(x) for x in dataset.train[0])
    twice = Batch(
        users=torch.tensor([user, user]),
        positives=torch.tensor([item, item]),
        negatives=torch.tensor([0, 0]),
    )
    once = Batch(
        users=torch.tensor([user]), positives=torch.tensor([item]), negatives=torch.tensor([0])
    )
    for seed in range(5):  # the mean over two identical rows equals the single row's value
        two = model.loss(twice, torch.Generator().manual_seed(seed))["bootstrap"]
        one = model.loss(once, torch.Generator().manual_seed(seed))["bootstrap"]
        assert two.item() == pytest.approx(one.item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# SLMRec
# ---------------------------------------------------------------------------------------------
def slmrec_reference(model, dataset) -> tuple[dict, torch.Tensor, torch.Tensor]:
    a = sym_block(dense_r(dataset))
    e_u = model.embedding_user.double()
    branch_i = {}
    branch_u = {}
    branch_u["id"], branch_i["id"] = layer_mean_dense(a, e_u, model.embedding_item.double(), 3)
    for m in ("image", "text"):
        feat = nnf.normalize(torch.from_numpy(dataset.features[m]), dim=1)
        dense = model.dense[m](feat).double()
        branch_u[m], branch_i[m] = layer_mean_dense(a, e_u, dense, 3)
    order = ["id", "image", "text"]
    users = model.user_after_gcn.double()(torch.cat([branch_u[k] for k in order], 1))
    items = model.item_after_gcn.double()(torch.cat([branch_i[k] for k in order], 1))
    model.float()
    return branch_i, users, items


def test_slmrec_forward_and_loss_by_hand(data: Path, tmp_path: Path) -> None:
    model, dataset = make("slmrec", data, tmp_path, eval_reps="fresh", ssl_alpha=0.5)
    branch_i, ref_u, ref_i = slmrec_reference(model, dataset)
    batch = a_batch(dataset, negatives=False)
    terms = model.loss(batch, torch.Generator().manual_seed(0))
    assert set(terms) == {"main", "ssl"}
    u = nnf.normalize(ref_u[batch.users], dim=1)
    p = nnf.normalize(ref_i[batch.positives], dim=1)
    assert terms["main"].item() == pytest.approx(cross_entropy_diag(u @ p.T / 0.2), rel=1e-4)
    with torch.no_grad():
        chain = [layer.double() for layer in model.chain]
        assert [layer.out_features for layer in chain] == [64, 64, 32]
        idx = batch.positives
        x1 = chain[0](branch_i["id"][idx])
        y1 = model.probe["image"].double()(branch_i["image"][idx])
        x3 = chain[2](chain[1](x1))
        y3 = model.probe["text"].double()(branch_i["text"][idx])
        fac = cross_entropy_diag(x1 @ y1.T / 0.1) + cross_entropy_diag(x3 @ y3.T / 0.1)
    model.float()
    assert terms["ssl"].item() == pytest.approx(0.5 * fac, rel=1e-4)
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
    assert torch.allclose(model.result_items.double(), ref_i, atol=1e-5)


def test_slmrec_reg_switch(data: Path, tmp_path: Path) -> None:
    batch = a_batch(load_dataset(data), negatives=False)
    plain = {}
    for reg in (1e-4, 1e-1):
        model, _ = make("slmrec", data, tmp_path, reg=reg)
        plain[reg] = {k: v.item() for k, v in model.loss(batch, torch.Generator()).items()}
    assert plain[1e-4] == plain[1e-1]  # MMRec: `reg` is never read
    model, _ = make("slmrec", data, tmp_path, reg=0.1, use_reg=True)
    terms = model.loss(batch, torch.Generator())
    e_u = model.embedding_user[batch.users]
    e_i = model.embedding_item[batch.positives]
    expected = 0.1 * (e_u.pow(2).sum() + e_i.pow(2).sum()) / (2 * len(batch.users))
    assert terms["reg"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_slmrec_eval_reps_and_one_modality(data: Path, tmp_path: Path) -> None:
    model, dataset = make("slmrec", data, tmp_path)
    batch = a_batch(dataset, negatives=False)
    model.loss(batch, torch.Generator())
    last = model.result_users.clone()
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
    assert torch.equal(model.result_users, last)  # MMRec: the last batch's tables
    one = make_dataset(tmp_path / "one", n_users=10, n_items=12, per_user=5, features={"genre": 4})
    single, ds = make("slmrec", one, tmp_path)
    assert len(single.chain) == 1 and single.compare_at == [0]
    terms = single.loss(a_batch(ds, negatives=False), torch.Generator())
    assert all(torch.isfinite(t) for t in terms.values())
    three = make_dataset(
        tmp_path / "three", n_users=10, n_items=12, per_user=5, features={"a": 3, "text": 4, "b": 2}
    )
    triple, _ = make("slmrec", three, tmp_path)
    assert triple.modalities == ["a", "b", "text"] and triple.compare_at == [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# LATTICE
# ---------------------------------------------------------------------------------------------
def dense_knn(features: torch.Tensor, k: int) -> torch.Tensor:
    """Similarity-weighted top-k matrix [n, n] of the cosine similarities (MMRec's)."""
    unit = nnf.normalize(features, dim=1)
    sim = unit @ unit.T
    top = sim.topk(k, dim=1)
    return torch.zeros_like(sim).scatter_(1, top.indices, top.values)


def dense_laplacian(adj: torch.Tensor) -> torch.Tensor:
    d = inv_sqrt(adj.sum(1))
    return d[:, None] * adj * d[None, :]


def test_lattice_forward_matches_dense_reference(data: Path, tmp_path: Path) -> None:
    model, dataset = make("lattice", data, tmp_path, knn_k=4)
    with torch.no_grad():
        model.modal_weight.copy_(torch.tensor([0.7, -0.4]))
    w = torch.softmax(model.modal_weight.detach().double(), 0)
    raw = {m: torch.from_numpy(dataset.features[m]).double() for m in ("image", "text")}
    original = sum(w[k] * dense_laplacian(dense_knn(raw[m], 4)) for k, m in enumerate(raw))
    with torch.no_grad():
        proj = {m: model.trs[m].double()(raw[m]) for m in raw}
    model.float()
    learned = dense_laplacian(sum(w[k] * dense_knn(proj[m], 4) for k, m in enumerate(raw)))
    s = 0.1 * learned + 0.9 * original
    h = s @ model.item_id_embedding.detach().double()
    n_u, n = dataset.n_users, dataset.n_users + dataset.n_items
    adj = torch.zeros(n, n, dtype=F64)
    r = dense_r(dataset)
    adj[:n_u, n_u:], adj[n_u:, :n_u] = r, r.T
    adj = adj + torch.eye(n, dtype=F64)
    adj = adj / adj.sum(1, keepdim=True)
    ego = torch.cat([model.user_embedding, model.item_id_embedding]).detach().double()
    out = (ego + adj @ ego + adj @ adj @ ego) / 3
    ref_u, ref_i = out[:n_u], out[n_u:] + nnf.normalize(h, dim=1)
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        users, items = model.serving_representations()
    assert torch.allclose(users.double(), ref_u, atol=1e-5)
    assert torch.allclose(items.double(), ref_i, atol=1e-5)


def test_lattice_batches_between_rebuilds_use_the_same_item_graph(data: Path, tmp_path: Path):
    """The one-matrix item graph of later batches equals the rebuilt (learned + original) one."""
    model, _ = make("lattice", data, tmp_path, knn_k=4, n_layers=2)
    with torch.no_grad():
        model.modal_weight.copy_(torch.tensor([0.3, -0.2]))
        rebuilt = model.forward_tables(True)
        later = model.forward_tables(False)
        model.item_id_embedding.mul_(2.0)
        rebuilt_2 = model.forward_tables(True)
        model.forward_tables(True)
        later_2 = model.forward_tables(False)
    for a, b in zip((*rebuilt, *rebuilt_2), (*later, *later_2), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(rebuilt[1], rebuilt_2[1], atol=1e-3)


def test_lattice_learned_graph_gets_gradient_on_first_batch_only(data: Path, tmp_path: Path):
    model, dataset = make("lattice", data, tmp_path, reg_weight=1e-3)
    batch = a_batch(dataset)
    model.train()
    for epoch in (1, 2):
        model.on_epoch_start(epoch, torch.Generator())
        for first in (True, False):
            model.zero_grad(set_to_none=True)
            terms = model.loss(batch, torch.Generator())
            sum(terms.values()).backward()
            for name in ("trs.image.weight", "modal_weight", "raw.text"):
                grad = dict(model.named_parameters())[name].grad
                assert (grad is not None) == first, (epoch, first, name)
            assert model.item_id_embedding.grad is not None
    terms = model.loss(batch, torch.Generator())
    with torch.no_grad():
        users, items = model.forward_tables(False)
    rows_u, p, n = users[batch.users], items[batch.positives], items[batch.negatives]
    l2 = (rows_u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / (2 * len(rows_u))
    assert terms["reg"].item() == pytest.approx(1e-3 * l2.item(), rel=1e-5)


def test_lattice_fixed_features_and_one_modality(data: Path, tmp_path: Path) -> None:
    frozen, dataset = make("lattice", data, tmp_path, train_features=False)
    assert not any(n.startswith("raw.") for n, _ in frozen.named_parameters())
    one = make_dataset(tmp_path / "one", n_users=10, n_items=12, per_user=5, features={"genre": 4})
    single, ds = make("lattice", one, tmp_path)
    assert not hasattr(single, "modal_weight")
    terms = single.loss(a_batch(ds), torch.Generator())
    sum(terms.values()).backward()
    assert single.trs["genre"].weight.grad is not None


# ---------------------------------------------------------------------------------------------
# MMSSL
# ---------------------------------------------------------------------------------------------
def authors_attention(w_q: torch.Tensor, w_cat: torch.Tensor, views: list[torch.Tensor], heads):
    """The authors' ``multi_head_self_attention`` written as in their code, then averaged."""
    q = torch.stack(views)
    beh, n, d = q.shape
    dh = d // heads
    big_q = (q @ w_q).reshape(beh, n, heads, dh).permute(2, 0, 1, 3)
    big_k = big_q
    att = (big_q.unsqueeze(2) * big_k.unsqueeze(1)).sum(-1) / math.sqrt(dh)
    att = torch.softmax(att.unsqueeze(-1), dim=2)
    z = (att * q.unsqueeze(1)).sum(2)
    z = torch.cat(list(z), -1) @ w_cat
    return z.mean(0)


def test_mmssl_forward_matches_the_authors_computation(data: Path, tmp_path: Path) -> None:
    model, dataset = make("mmssl", data, tmp_path)
    model.eval()
    r = dense_r(dataset)
    ui = (r.sum(1) + 1e-8).pow(-0.5)[:, None] * r
    iu = (r.sum(0) + 1e-8).pow(-0.5)[:, None] * r.T
    e_u = model.user_id_embedding.detach().double()
    e_i = model.item_id_embedding.detach().double()
    w_cat = model.w_self_attention_cat.detach().double()
    w_q = torch.randn(64, 64, generator=torch.Generator().manual_seed(0), dtype=F64)
    z_u = authors_attention(w_q, w_cat, [ui @ e_i, ui @ e_i], 4)
    z_i = authors_attention(w_q, w_cat, [iu @ e_u, iu @ e_u], 4)
    u0 = e_u + 0.36 * nnf.normalize(z_u, dim=1)
    i0 = e_i + 0.36 * nnf.normalize(z_i, dim=1)
    u1 = ui @ i0
    i1 = iu @ u1
    u2 = torch.softmax(ui @ i1, dim=-1)
    i2 = torch.softmax(iu @ u2, dim=-1)
    users, items = (u0 + u1 + u2) / 3, (i0 + i1 + i2) / 3
    with torch.no_grad():
        for m in ("image", "text"):
            f = model.trans[m](torch.from_numpy(dataset.features[m])).double()
            fu = ui @ f
            users = users + 0.55 * nnf.normalize(fu, dim=1)
            items = items + 0.55 * nnf.normalize(iu @ fu, dim=1)
        out = model.forward_tables(None)
    assert torch.allclose(out["users"].double(), users, atol=1e-5)
    assert torch.allclose(out["items"].double(), items, atol=1e-5)


def test_mmssl_contrast_by_hand(data: Path, tmp_path: Path) -> None:
    model, _ = make("mmssl", data, tmp_path)
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[3.0, 0.0], [1.0, 0.0]])
    e = math.exp
    # tau 0.5: cos(z1, z1) = I, cos(z1, z2) = [[1, 1], [0, 0]]
    row0 = e(2) / (e(2) + e(0) + e(2) + e(2) - e(2))
    row1 = e(0) / (e(0) + e(2) + e(0) + e(0) - e(2))
    expected = -(math.log(row0 + 1e-8) + math.log(row1 + 1e-8)) / 2
    assert model.contrast(z1, z2).item() == pytest.approx(expected, rel=1e-6)


def test_mmssl_draws_like_the_authors_sampler(data: Path, tmp_path: Path) -> None:
    model, dataset = make("mmssl", data, tmp_path)
    users, pos, neg = model.draw(10, torch.Generator().manual_seed(0))
    assert len(set(users.tolist())) == 10  # distinct users while there are enough
    train = {(int(u), int(i)) for u, i in dataset.train}
    assert all((int(u), int(i)) in train for u, i in zip(users, pos, strict=True))
    assert not any((int(u), int(i)) in train for u, i in zip(users, neg, strict=True))
    many, _, _ = model.draw(30, torch.Generator().manual_seed(0))
    assert len(many) == 30
    rows = model.train_rows(users)
    assert torch.equal(rows, dense_r(dataset)[users].float())


def step(model, dataset, seed: int) -> None:
    batch = Batch(torch.arange(5), torch.zeros(5, dtype=torch.long), torch.empty(0))
    model.train()
    g = torch.Generator().manual_seed(seed)
    sum(model.auxiliary_loss(batch, g).values())
    model.loss(batch, g)


def test_mmssl_official_graphs_empty_out(data: Path, tmp_path: Path) -> None:
    model, dataset = make("mmssl", data, tmp_path)
    assert model.topk() == 0  # int(18 * 1e-4)
    assert len(model._edges["image"][0]) == len(dataset.train)  # starts as the train graph
    for seed in range(3):
        step(model, dataset, seed)
    assert len(model._edges["image"][0]) == 0 and len(model._edges["text"][0]) == 0
    users = model.forward_tables(None)["xu:image"]
    assert users.abs().sum() == 0  # the modality ID view is gone
    k1, _ = make("mmssl", data, tmp_path, m_topk_rate=0.1)  # k = 1
    step(k1, dataset, 0)
    assert len(k1._pending["image"][0]) == 5
    step(k1, dataset, 1)  # batch 1 rebuilds from batch 0's rows alone
    assert len(k1._edges["image"][0]) == 5 and len(k1._pending["image"][0]) == 0
    step(k1, dataset, 2)  # batch 2 rebuilds from nothing
    assert len(k1._edges["image"][0]) == 0


def test_mmssl_persistent_graphs_keep_rows(data: Path, tmp_path: Path) -> None:
    model, dataset = make("mmssl", data, tmp_path, modality_graph="persistent")
    assert model.topk() == 1
    for seed in range(3):
        step(model, dataset, seed)
    edges_u = model._edges["image"][0]
    counts = np.bincount(edges_u, minlength=dataset.n_users)
    train_counts = np.bincount(dataset.train[:, 0], minlength=dataset.n_users)
    replaced = counts != train_counts
    assert replaced.any() and (counts[replaced] == 1).all()  # generated rows: one item each
    assert (counts > 0).sum() == (train_counts > 0).sum()  # no user lost its row
    # checkpoint round trip restores the generated graphs
    again, _ = make("mmssl", data, tmp_path, modality_graph="persistent")
    again.load_state_dict(model.state_dict())
    for m in ("image", "text"):
        assert np.array_equal(again._edges[m][0], model._edges[m][0])
        assert np.array_equal(again._edges[m][1], model._edges[m][1])
    model.eval()
    again.eval()
    with torch.no_grad():
        assert torch.allclose(again.score(torch.arange(3)), model.score(torch.arange(3)))


def test_mmssl_auxiliary_loss_trains_only_the_discriminator(data: Path, tmp_path: Path) -> None:
    model, dataset = make("mmssl", data, tmp_path)
    batch = Batch(torch.arange(6), torch.zeros(6, dtype=torch.long), torch.empty(0))
    terms = model.auxiliary_loss(batch, torch.Generator().manual_seed(0))
    assert set(terms) == {"real", "fake", "gp"} and terms["gp"].item() > 0
    sum(terms.values()).backward()
    aux = {id(p) for p in model.auxiliary_parameters()}
    for name, param in model.named_parameters():
        assert (param.grad is not None) == (id(param) in aux), name
    opt = model.auxiliary_optimizer(model.auxiliary_parameters())
    assert opt.defaults["betas"] == (0.5, 0.9) and opt.defaults["lr"] == 3e-4


def run(name: str, folder: Path, out: Path, epochs: int, resume: bool = False, **model):
    tree = {
        "data": {"path": str(folder)},
        "model": model,
        "train": {"epochs": epochs, "batch_size": 16, "threads": 1},
        "eval": {"topk": [5, 10], "valid_metric": "recall@10"},
    }
    config = resolve_config(name, tree)
    return fit(config, load_dataset(folder), out, resume=resume, progress=False, log=lambda _: None)


@pytest.mark.parametrize(
    ("name", "model"), [("mmssl", {"modality_graph": "persistent"}), ("lattice", {})]
)
def test_resume_is_identical(data: Path, tmp_path: Path, name: str, model: dict) -> None:
    straight = run(name, data, tmp_path / "straight", 2, **model)
    run(name, data, tmp_path / "part", 1, **model)
    resumed = run(name, data, tmp_path / "part", 2, resume=True, **model)
    assert resumed["valid"] == straight["valid"] and resumed["test"] == straight["test"]
    a, _ = load_tensors(tmp_path / "straight" / "checkpoint.safetensors")
    b, _ = load_tensors(tmp_path / "part" / "checkpoint.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_defaults() -> None:
    mmssl = resolve_config("mmssl", {})
    assert mmssl.train.optimizer == "adamw" and mmssl.train.learning_rate == 5.5e-4
    assert (mmssl.train.batch_size, mmssl.train.patience) == (1024, 7)
    assert mmssl.train.weight_decay == 0.01  # torch.optim.AdamW's default, as the authors'
    assert resolve_config("lattice", {}).train.lr_scheduler == [0.96, 50.0]
    assert resolve_config("slmrec", {}).train.weight_decay == 1e-4


@pytest.mark.parametrize("name", ["lattice", "slmrec", "bm3", "mmssl"])
def test_new_items_are_refused_with_a_clear_error(data: Path, tmp_path: Path, name: str) -> None:
    from mentor.errors import MentorError

    model, _ = make(name, data, tmp_path)
    with pytest.raises(MentorError, match=f"model {name} learns a free ID embedding"):
        model.new_item_representations({"image": torch.zeros(1, 7), "text": torch.zeros(1, 5)})


def test_lattice_knn_values_in_blocks_equal_one_block() -> None:
    from mentor.models.lattice import weighted_knn

    feats = torch.randn(30, 9, generator=torch.Generator().manual_seed(0))
    whole = weighted_knn(feats, 4)
    blocks = weighted_knn(feats, 4, memory_bytes=4 * 4 * 9 * 7)  # 7 rows per block
    assert torch.equal(whole.cols, blocks.cols)
    assert torch.allclose(whole.values, blocks.values)
    unit = nnf.normalize(feats, dim=1)
    assert torch.allclose(whole.values, (unit[whole.rows] * unit[whole.cols]).sum(1))


@pytest.mark.parametrize("name", ["lattice", "slmrec", "bm3", "mmssl"])
def test_same_seed_same_loss(data: Path, tmp_path: Path, name: str) -> None:
    values = []
    for _ in range(2):
        model, dataset = make(name, data, tmp_path)
        batch = a_batch(dataset)
        g = torch.Generator().manual_seed(5)
        if model.auxiliary_parameters():
            model.auxiliary_loss(batch, g)
        values.append({k: v.item() for k, v in model.loss(batch, g).items()})
    assert values[0] == values[1]


@pytest.mark.parametrize("name", ["bm3", "mmssl"])
def test_one_modality_with_any_name(tmp_path: Path, name: str) -> None:
    one = make_dataset(tmp_path, n_users=10, n_items=12, per_user=5, features={"genre": 4})
    model, dataset = make(name, one, tmp_path)
    batch = a_batch(dataset, negatives=False)
    g = torch.Generator().manual_seed(0)
    if model.auxiliary_parameters():
        assert all(torch.isfinite(t) for t in model.auxiliary_loss(batch, g).values())
    terms = model.loss(batch, g)
    assert all(torch.isfinite(t) for t in terms.values())
    sum(terms.values()).backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "discriminator" not in n)


def test_bm3_targets_carry_no_gradient(data: Path, tmp_path: Path) -> None:
    model, dataset = make("bm3", data, tmp_path, dropout=0.0)
    batch = a_batch(dataset, negatives=False)
    sum(model.loss(batch, torch.Generator()).values()).backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    users, items = model.online()
    u, i = users[batch.users], items[batch.positives]
    pred = model.predictor

    def gap(x, y):
        return 1.0 - nnf.cosine_similarity(x, y.detach(), dim=-1).mean()

    total = gap(pred(u), i) + gap(pred(i), u)
    total = total + 0.1 * (users.norm() + items.norm()) / dataset.n_items
    for m in ("image", "text"):
        t = model.trs[m](model.raw[m][batch.positives])
        total = total + 2.0 * (gap(pred(t), i) + gap(pred(t), t))
    total.backward()
    for name, param in model.named_parameters():
        assert torch.allclose(got[name], param.grad, atol=1e-7), name

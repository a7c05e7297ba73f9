"""Model contract shared by every registered model, and MENTOR's terms against hand/dense math."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build as make
from conftest import first_batch

from mentor.data.sampler import Batch
from mentor.losses import info_nce, mean_var_gap, table_moments
from mentor.models.mentor import MENTOR
from mentor.registry import get_model, model_names


def write_tiny(folder: Path, modalities: dict[str, int], seed: int = 0) -> Path:
    """An MMRec folder: 12 users, 15 items, 6 rows per user (4 train, 1 valid, 1 test)."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 12, 15
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=6, replace=False)
        rows += [(u, int(i), 0) for i in items[:4]] + [(u, int(items[4]), 1), (u, int(items[5]), 2)]
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["userID\titemID\tx_label"] + [f"{u}\t{i}\t{x}" for u, i, x in rows]
    (folder / "tiny.inter").write_text("\n".join(lines) + "\n")
    for name, dim in modalities.items():
        np.save(folder / f"{name}_feat.npy", rng.standard_normal((n_items, dim)).astype("f4"))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("tiny"), {"image": 10, "text": 6})


def a_batch(dataset, seed: int = 0):  # type: ignore[no-untyped-def]
    """The first batch (32 rows) of a seeded epoch."""
    return first_batch(dataset, seed, batch_size=32)


# ---------------------------------------------------------------------------------------------
# the contract every model passes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", model_names())
def test_contract(name: str, tiny: Path, tmp_path: Path) -> None:
    model, dataset = make(name, tiny, tmp_path)
    spec = get_model(name)
    assert spec.model_cls is type(model)
    users = torch.tensor([0, 3, 5])
    if model.trainable:
        model.train()
        terms = model.loss(a_batch(dataset), torch.Generator().manual_seed(1))
        assert all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
        sum(terms.values()).backward()
        constant = {"mlp.weight", "mlp.bias"} if name == "mentor" else set()
        for pname, param in model.named_parameters():
            if pname in constant:
                assert param.grad is None, f"{pname} should be constant in the official mode"
                continue
            assert param.grad is not None, f"{name}: {pname} gets no gradient"
            assert param.grad.abs().sum() > 0, f"{name}: {pname} has an all-zero gradient"
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        scores = model.score(users)
    assert scores.shape == (3, dataset.n_items)
    assert scores.dtype == torch.float32
    # seed determinism: a second build with the same seed gives the same state and scores
    again, _ = make(name, tiny, tmp_path)
    for (k1, v1), (k2, v2) in zip(
        model.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert k1 == k2
        if not model.trainable or k1 not in ("result_users", "result_items"):
            assert torch.equal(v1, v2) or k1.startswith("result_"), k1
    if model.trainable:
        other, _ = make(name, tiny, tmp_path, seed=4)
        assert any(
            not torch.equal(a, b)
            for (ka, a), (_, b) in zip(
                model.state_dict().items(), other.state_dict().items(), strict=True
            )
            if not ka.startswith("result_")
        )


@pytest.mark.parametrize("name", ["bpr", "lightgcn", "mentor"])
def test_same_seed_same_loss(name: str, tiny: Path, tmp_path: Path) -> None:
    values = []
    for _ in range(2):
        model, dataset = make(name, tiny, tmp_path)
        terms = model.loss(a_batch(dataset), torch.Generator().manual_seed(5))
        values.append({k: float(v.detach()) for k, v in terms.items()})
    assert values[0] == values[1]


# ---------------------------------------------------------------------------------------------
# MENTOR
# ---------------------------------------------------------------------------------------------
def test_mentor_feature_mask_grad_trains_mlp(tiny: Path, tmp_path: Path) -> None:
    model, dataset = make("mentor", tiny, tmp_path, feature_mask_grad=True)
    terms = model.loss(a_batch(dataset), torch.Generator().manual_seed(1))
    assert "feature" in terms and float(terms["feature"].detach()) > 0
    sum(terms.values()).backward()
    assert model.mlp.weight.grad is not None and model.mlp.weight.grad.abs().sum() > 0


def dense_reference(model: MENTOR, dataset) -> dict[str, torch.Tensor]:
    """The official forward pass written with dense matrices, no noise (noise_eps = 0)."""
    n_u, n_i = dataset.n_users, dataset.n_items
    n = n_u + n_i
    adj = torch.zeros(n, n, dtype=torch.float64)
    tr = torch.from_numpy(dataset.train)
    adj[tr[:, 0], n_u + tr[:, 1]] = 1.0
    adj[n_u + tr[:, 1], tr[:, 0]] = 1.0
    deg = adj.sum(1)
    inv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    a_hat = inv[:, None] * adj * inv[None, :]
    k = model.config.knn_k
    item_graph = torch.zeros(n_i, n_i, dtype=torch.float64)
    for m, w in {"image": 0.1, "text": 0.9}.items():
        f = torch.nn.functional.normalize(torch.from_numpy(dataset.features[m]).double(), dim=1)
        top = (f @ f.T).topk(k, dim=1).indices
        knn = torch.zeros(n_i, n_i, dtype=torch.float64)
        knn.scatter_(1, top, 1.0)
        r = knn.sum(1).pow(-0.5)
        item_graph += w * (r[:, None] * knn * r[None, :])
    out = {}
    for name, branch in model.branches.items():
        feats = model.id_feat if name == "id" else model.features[name.split("_n")[0]]
        hidden = torch.nn.functional.leaky_relu(branch.mlp(feats))
        items = branch.mlp_1(hidden).double()
        x = torch.nn.functional.normalize(torch.cat([branch.preference.double(), items]), dim=1)
        h1 = a_hat @ x
        h2 = a_hat @ h1
        total = x + h1 + h2
        total[n_u:] = total[n_u:] + item_graph @ total[n_u:]
        out[name] = total
    w = model.weight_u.double()
    user = torch.cat([w[:, 0] * out["image"][:n_u], w[:, 1] * out["text"][:n_u]], dim=1)
    item = torch.cat([out["image"][n_u:], out["text"][n_u:]], dim=1)
    return {
        "fused": torch.cat([user, item]),
        "guide": torch.cat([out["id"], out["id"]], dim=1),
        "mod:image": torch.cat([out["image"], out["image"]], dim=1),
        "n1_u": torch.cat([w[:, 0] * out["image_n1"][:n_u], w[:, 1] * out["text_n1"][:n_u]], 1),
    }


def test_mentor_forward_matches_dense_reference(tiny: Path, tmp_path: Path) -> None:
    model, dataset = make("mentor", tiny, tmp_path, noise_eps=0.0, knn_k=3)
    reps = model.representations(torch.Generator().manual_seed(0), with_views=True)
    ref = dense_reference(model, dataset)
    got = {
        "fused": torch.cat([reps["fused_u"], reps["fused_i"]]),
        "guide": torch.cat([reps["id_u"], reps["id_i"]]).repeat(1, 2),
        "mod:image": torch.cat([reps["image_u"], reps["image_i"]]).repeat(1, 2),
        "n1_u": reps["n1_u"],
    }
    for key, expected in ref.items():
        assert torch.allclose(got[key].double(), expected, atol=1e-5), key


def test_mentor_loss_terms_by_hand(tiny: Path, tmp_path: Path) -> None:
    model, dataset = make("mentor", tiny, tmp_path, noise_eps=0.0, knn_k=3)
    batch = a_batch(dataset)
    terms = model.loss(batch, torch.Generator().manual_seed(0))
    ref = dense_reference(model, dataset)
    n_u = dataset.n_users
    fused = ref["fused"].detach()
    u = fused[batch.users]
    pos = (u * fused[n_u + batch.positives]).sum(1)
    neg = (u * fused[n_u + batch.negatives]).sum(1)
    bpr = -torch.log2(torch.sigmoid(pos - neg)).mean()
    assert float(terms["bpr"].detach()) == pytest.approx(float(bpr), rel=1e-5)
    prefs = sum(model.branches[m].preference[batch.users].pow(2).mean() for m in ("image", "text"))
    reg = 1e-3 * (prefs + model.weight_u.pow(2).mean())
    assert float(terms["reg"].detach()) == pytest.approx(float(reg.detach()), rel=1e-6)
    reps = model.representations(torch.Generator().manual_seed(0), with_views=True)
    tables = [torch.cat([reps["fused_u"], reps["fused_i"]])] + [
        torch.cat([reps[f"{name}_u"], reps[f"{name}_i"]]).repeat(1, 2)
        for name in ("id", "image", "text")
    ]
    align = 0.0
    for i in range(4):
        for j in range(i + 1, 4):
            a, b = tables[i].double(), tables[j].double()
            align += abs(a.var().item() - b.var().item()) + abs(a.mean().item() - b.mean().item())
    assert float(terms["align"].detach()) == pytest.approx(0.1 * align, rel=1e-4)
    assert "feature" not in terms  # official: a constant, left out
    assert float(terms["contrast"].detach()) > 0


def test_mean_var_gap_by_hand() -> None:
    # var([1,2,3]) (unbiased) = 1, mean = 2; against zeros: |1 - 0| + |2 - 0| = 3
    ones = table_moments([torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0]])])
    zeros = table_moments([torch.zeros(3, 1)])
    assert float(mean_var_gap(ones, zeros)) == pytest.approx(3.0)
    # [x, x] of x = [1, 2, 3]: elements 1,2,3,1,2,3 -> mean 2, unbiased var 4 / 5 = 0.8
    mean, var = table_moments([torch.tensor([[1.0], [2.0], [3.0]])], copies=2)
    assert float(mean) == pytest.approx(2.0) and float(var) == pytest.approx(0.8)


def test_info_nce_by_hand() -> None:
    # a = b = I_2, t = 1: each row -log(e / (e + 1)) = log(1 + e^-1) = 0.3132616875
    eye = torch.eye(2)
    assert float(info_nce(eye, eye, temp=1.0)) == pytest.approx(math.log1p(math.exp(-1)), 1e-6)


def test_mentor_noise_has_fixed_norm(tiny: Path, tmp_path: Path) -> None:
    model, _ = make("mentor", tiny, tmp_path)
    h = torch.randn(5, 64 * 3)
    out = model._perturb(h, 64, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :64], h[:, :64])
    noise = (out - h)[:, 64:].view(5, 2, 64)
    assert torch.allclose(noise.norm(dim=2), torch.full((5, 2), 0.1), atol=1e-6)
    assert torch.all(torch.sign(noise) * torch.sign(h[:, 64:].view(5, 2, 64)) >= 0)


def test_mentor_eval_reps(tiny: Path, tmp_path: Path) -> None:
    model, dataset = make("mentor", tiny, tmp_path)
    model.loss(a_batch(dataset), torch.Generator().manual_seed(0))
    last = model.result_items.clone()
    assert last.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
    assert torch.equal(model.result_items, last)  # official: the last batch's tables
    fresh, dataset = make("mentor", tiny, tmp_path, eval_reps="fresh")
    fresh.eval()
    with torch.no_grad():
        fresh.prepare_scoring()
        reps = fresh.representations(None, with_views=False)
    assert torch.equal(fresh.result_items, reps["fused_i"])


def test_mentor_contrast_scope_batch_differs(tiny: Path, tmp_path: Path) -> None:
    values = {}
    for scope in ("all", "batch"):
        model, dataset = make("mentor", tiny, tmp_path, contrast_scope=scope)
        batch = Batch(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5]))
        terms = model.loss(batch, torch.Generator().manual_seed(0))
        values[scope] = float(terms["contrast"].detach())
    assert values["all"] != values["batch"]


def test_mentor_single_modality_and_other_names(tmp_path: Path) -> None:
    data = write_tiny(tmp_path / "one", {"genre": 5})
    model, dataset = make("mentor", data, tmp_path)
    assert model.weight_u.shape == (dataset.n_users, 1, 1)
    terms = model.loss(a_batch(dataset), torch.Generator().manual_seed(0))
    assert all(torch.isfinite(t) for t in terms.values())
    assert model.result_users.shape[1] == 64
    data = write_tiny(tmp_path / "two", {"genre": 5, "text": 7})
    model, dataset = make(
        "mentor", data, tmp_path, semantic_graph_weights={"genre": 0.1, "text": 0.9}
    )
    assert model.result_users.shape[1] == 128


def test_mentor_modality_names_with_suffix_like_parts(tmp_path: Path) -> None:
    from mentor.errors import MentorError

    data = write_tiny(tmp_path / "norm", {"text_norm": 6})
    model, dataset = make("mentor", data, tmp_path)
    assert set(model.branches) == {"text_norm", "id", "text_norm_n1", "text_norm_n2"}
    terms = model.loss(a_batch(dataset), torch.Generator().manual_seed(0))
    assert all(torch.isfinite(t) for t in terms.values())
    with pytest.raises(MentorError, match="reserves the name 'id'"):
        make("mentor", write_tiny(tmp_path / "idm", {"id": 4}), tmp_path)


def test_mentor_rejects_unknown_semantic_modality(tiny: Path, tmp_path: Path) -> None:
    from mentor.errors import MentorError

    with pytest.raises(MentorError, match="genre"):
        make("mentor", tiny, tmp_path, semantic_graph_weights={"genre": 1.0})


def test_mentor_bf16_contrast_close_to_float32(tiny: Path, tmp_path: Path) -> None:
    out = {}
    for dtype in ("float32", "bfloat16"):
        model, dataset = make("mentor", tiny, tmp_path, contrast_dtype=dtype)
        terms = model.loss(a_batch(dataset), torch.Generator().manual_seed(0))
        out[dtype] = float(terms["contrast"].detach())
    assert out["bfloat16"] == pytest.approx(out["float32"], rel=1e-2)


@pytest.mark.parametrize("name", ["lightgcn", "mentor"])
def test_to_moves_inputs_and_keeps_parameters(name: str, tiny: Path, tmp_path: Path) -> None:
    model, _ = make(name, tiny, tmp_path)
    before = dict(model.named_parameters())
    moved = model.to(torch.float64)
    after = dict(moved.named_parameters())
    assert before.keys() == after.keys()
    assert all(
        isinstance(p, torch.nn.Parameter) and p.dtype == torch.float64 for p in after.values()
    )
    assert moved.graph.matrix.device.type == "cpu"


# ---------------------------------------------------------------------------------------------
# serving: the tables a bundle stores, and new items from their features
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", model_names())
def test_serving_representations_give_the_scores(name: str, tiny: Path, tmp_path: Path) -> None:
    model, dataset = make(name, tiny, tmp_path)
    if model.trainable:
        model.train()
        model.loss(a_batch(dataset), torch.Generator().manual_seed(1))  # fills cached tables
    model.eval()
    users = torch.arange(dataset.n_users)
    with torch.no_grad():
        model.prepare_scoring()
        scores = model.score(users)
        user_reps, item_reps = model.serving_representations()
    assert user_reps.dtype == item_reps.dtype == torch.float32
    assert user_reps.shape[0] == dataset.n_users and item_reps.shape[0] == dataset.n_items
    assert user_reps.shape[1] == item_reps.shape[1]
    torch.testing.assert_close(user_reps @ item_reps.T, scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["pop", "bpr", "lightgcn"])
def test_id_only_models_cannot_add_items(name: str, tiny: Path, tmp_path: Path) -> None:
    from mentor.errors import MentorError

    model, _ = make(name, tiny, tmp_path)
    with pytest.raises(MentorError, match="ids only; it cannot add new items"):
        model.new_item_representations({"text": torch.zeros(1, 6)})


def test_mentor_cold_start_equals_forward_for_an_item_without_edges(tmp_path: Path) -> None:
    """Item 14 is only in a test row, so it has no train edge: its fused row in a full forward
    pass must be what the cold-start formula gives from its features over the other 14 items."""
    from mentor.models.mentor import cold_start_items

    rng = np.random.default_rng(5)
    folder = tmp_path / "cold"
    folder.mkdir()
    rows = []
    for u in range(12):
        items = rng.choice(14, size=6, replace=False)
        rows += [(u, int(i), 0) for i in items[:4]] + [(u, int(items[4]), 1)]
        rows.append((u, 14 if u < 3 else int(items[5]), 2))
    lines = ["userID\titemID\tx_label"] + [f"{u}\t{i}\t{x}" for u, i, x in rows]
    (folder / "cold.inter").write_text("\n".join(lines) + "\n")
    for name, dim in {"image": 10, "text": 6}.items():
        np.save(folder / f"{name}_feat.npy", rng.standard_normal((15, dim)).astype("f4"))
    model, dataset = make("mentor", folder, tmp_path)
    assert dataset.n_items == 15 and 14 not in dataset.train[:, 1]
    model.eval()
    with torch.no_grad():
        full = model.representations(None, with_views=False)["fused_i"][14]
        feats = {m: model.features[m][14:] for m in model.modalities}
        formula = cold_start_items(
            model.item_branch_rows(feats),
            feats,
            {m: model.features[m][:14] for m in model.modalities},
            [t[:14] for t in model.semantic_tables()],
            model.semantic_weights,
            model.config.knn_k,
        )
        # without the semantic step the formula is the branch rows alone
        bare = model.propagate(None, model.modalities, semantic=False)
        assert torch.allclose(
            torch.cat([bare[m][1][14] for m in model.modalities]),
            model.item_branch_rows(feats)[0],
            atol=1e-6,
        )
    torch.testing.assert_close(formula[0], full, rtol=1e-5, atol=1e-6)
    # the method itself: shape, and one modality missing is a clear error
    with torch.no_grad():
        out = model.new_item_representations(feats)
    assert out.shape == (1, model.result_items.shape[1])
    from mentor.errors import MentorError

    with pytest.raises(MentorError, match="modality 'text'"):
        model.new_item_representations({"image": feats["image"]})


def test_cold_start_items_by_hand() -> None:
    """One modality, k = 2, catalogue of 2 items: the new item's neighbours are itself and its
    closer catalogue item, each with weight w / k."""
    from mentor.models.mentor import cold_start_items

    catalogue = {"text": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}
    table = torch.tensor([[10.0, 0.0], [0.0, 20.0]])
    new_feat = {"text": torch.tensor([[0.9, 0.1], [0.0, 0.0]])}
    rows = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    out = cold_start_items(rows, new_feat, catalogue, [table], {"text": 0.5}, 2)
    # item 0: x + 0.25 * (x + table[0]); item 1 (zero features): x + 0.5 * x (self-loop)
    expected = torch.tensor([[1.0 + 0.25 * 11.0, 1.0 + 0.25 * 1.0], [3.0, 3.0]])
    torch.testing.assert_close(out, expected)
    assert torch.equal(cold_start_items(rows, new_feat, catalogue, [], {"text": 0.5}, 2), rows)


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_fused_optimizer_matches_the_default_update(kind: str) -> None:
    """The loop's fused Adam/AdamW takes the same steps as PyTorch's default implementation."""
    import torch

    from mentor.config import TrainConfig
    from mentor.training.loop import make_optimizer

    train = TrainConfig(learning_rate=0.01, weight_decay=0.1, optimizer=kind)
    start = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    fused_param = torch.nn.Parameter(start.clone())
    plain_param = torch.nn.Parameter(start.clone())
    fused = make_optimizer(train, [fused_param])
    plain_kind = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    plain = plain_kind([plain_param], lr=0.01, weight_decay=0.1, foreach=False)
    assert fused.defaults["fused"] is True
    for step in range(5):
        for param, optimizer in ((fused_param, fused), (plain_param, plain)):
            optimizer.zero_grad()
            (param.pow(2).sum() * (step + 1) + param[::3].sum()).backward()
            optimizer.step()
    assert not torch.equal(fused_param, start)
    assert torch.allclose(fused_param, plain_param, atol=1e-6)

"""LGMRec against a dense float64 reference on a tiny graph: local (collaborative + modality
graph) and global (hypergraph) embeddings, the BPR, hypergraph-contrastive and EmbLoss terms, the
Gumbel-softmax and the hyperedge dropout."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import build as make
from conftest import dense_r, make_dataset, sym_block
from conftest import first_batch as a_batch

from mentor.errors import MentorError
from mentor.models.lgmrec import gumbel_softmax

F64 = torch.float64
nnf = torch.nn.functional


def dense_forward(model, dataset, layers_ui: int, layers_mm: int, hyper_layers: int):  # type: ignore[no-untyped-def]
    """The published forward in float64 with dense matrices and noise-free hyperedges:
    (users, items, {modality: (hyper users, hyper items)})."""
    r = dense_r(dataset)
    g = sym_block(r)
    mean = r / r.sum(1, keepdim=True)
    e_u, e_i = model.user_embedding.detach().double(), model.item_id_embedding.detach().double()
    hu, hi, tu, ti = e_u, e_i, e_u, e_i
    for _ in range(layers_ui):
        hu, hi = g @ hi, g.T @ hu
        tu, ti = tu + hu, ti + hi
    cge_u, cge_i = tu / (layers_ui + 1), ti / (layers_ui + 1)
    local_u, local_i, glob_u, glob_i, hyper = cge_u, cge_i, 0.0, 0.0, {}
    tau = model.config.tau
    for m in ("image", "text"):
        f = torch.from_numpy(dataset.features[m]).double()
        x_i = f @ model.trs[m].detach().double()
        x_u = mean @ x_i
        for _ in range(layers_mm):
            x_u, x_i = g @ x_i, g.T @ x_u
        local_u = local_u + nnf.normalize(x_u, dim=1)
        local_i = local_i + nnf.normalize(x_i, dim=1)
        logits_i = f @ model.hyper[m].detach().double()
        a_i = torch.softmax(logits_i / tau, 1)
        a_u = torch.softmax((r @ logits_i) / tau, 1)
        e = cge_i
        for _ in range(hyper_layers):
            lat = a_i.T @ e
            e = a_i @ lat
        hyper[m] = (a_u @ lat, e)
        glob_u, glob_i = glob_u + hyper[m][0], glob_i + hyper[m][1]
    alpha = model.config.alpha
    users = local_u + alpha * nnf.normalize(glob_u, dim=1)
    items = local_i + alpha * nnf.normalize(glob_i, dim=1)
    return users, items, hyper


def nce_sum_loops(anchors: torch.Tensor, positives: torch.Tensor, all_rows: torch.Tensor, tau):
    """``sum_b -log(exp(cos(a_b, p_b)/tau) / sum_j exp(cos(a_b, c_j)/tau))`` with loops."""
    total = 0.0
    for a, p in zip(anchors.tolist(), positives.tolist(), strict=True):
        a_t, p_t = torch.tensor(a, dtype=F64), torch.tensor(p, dtype=F64)
        pos = math.exp(float(nnf.cosine_similarity(a_t, p_t, dim=0)) / tau)
        den = sum(
            math.exp(float(nnf.cosine_similarity(a_t, c, dim=0)) / tau) for c in all_rows.double()
        )
        total += -math.log(pos / den)
    return total


@pytest.mark.parametrize("layers", [(2, 2, 1), (1, 3, 2)])
def test_lgmrec_representations_match_dense(data: Path, tmp_path: Path, layers) -> None:
    ui, mm, hy = layers
    model, dataset = make(
        "lgmrec", data, tmp_path, n_ui_layers=ui, n_mm_layers=mm, n_hyper_layer=hy, alpha=0.7
    )
    assert model.modalities == ["image", "text"]
    ref_u, ref_i, _ = dense_forward(model, dataset, ui, mm, hy)
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        users, items = model.serving_representations()
        assert torch.allclose(users.double(), ref_u, atol=1e-5)
        assert torch.allclose(items.double(), ref_i, atol=1e-5)
        again = model.full_representations()  # no noise at evaluation: deterministic
        assert torch.equal(again[0], users)


def test_lgmrec_loss_terms_match_hand_math(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # noise-free assignments and no dropout make the training forward the dense one
    monkeypatch.setattr(
        "mentor.models.lgmrec.gumbel_softmax",
        lambda logits, tau, generator: torch.softmax(logits / tau, -1),
    )
    model, dataset = make("lgmrec", data, tmp_path, keep_rate=1.0, cl_weight=0.3, reg_weight=0.2)
    model.train()
    ref_u, ref_i, hyper = dense_forward(model, dataset, 2, 2, 1)
    batch = a_batch(dataset)
    terms = model.loss(batch, torch.Generator().manual_seed(0))
    assert set(terms) == {"bpr", "hcl", "reg"}
    u, p, n = ref_u[batch.users], ref_i[batch.positives], ref_i[batch.negatives]
    bpr = -nnf.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
    assert terms["bpr"].item() == pytest.approx(float(bpr), rel=1e-5)
    (vu, vi), (tu, ti) = hyper["image"], hyper["text"]
    hcl = nce_sum_loops(vu[batch.users], tu[batch.users], tu, 0.2)
    hcl += nce_sum_loops(vi[batch.positives], ti[batch.positives], ti, 0.2)
    assert terms["hcl"].item() == pytest.approx(0.3 * hcl, rel=1e-5)
    reg = (u.norm() + p.norm() + n.norm()) / len(batch.users)
    assert terms["reg"].item() == pytest.approx(0.2 * float(reg), rel=1e-5)


def test_gumbel_softmax_is_torchs_with_the_generator() -> None:
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(7)
    expected = nnf.gumbel_softmax(logits, tau=0.2, dim=1)  # the published code's call
    ours = gumbel_softmax(logits, 0.2, torch.Generator().manual_seed(7))
    assert torch.allclose(ours, expected, atol=1e-6)
    assert torch.allclose(gumbel_softmax(logits, 0.2, None), torch.softmax(logits / 0.2, 1))
    # Gumbel-max: the argmax of the noisy logits follows softmax(logits)
    gen = torch.Generator().manual_seed(0)
    wide = logits[:1].expand(20000, -1)
    picks = gumbel_softmax(wide, 0.2, gen).argmax(1)
    freq = torch.bincount(picks, minlength=5).double() / len(picks)
    assert torch.allclose(freq, torch.softmax(logits[0].double(), 0), atol=0.02)


def test_lgmrec_training_draws_noise_and_dropout_from_the_generator(
    data: Path, tmp_path: Path
) -> None:
    model, dataset = make("lgmrec", data, tmp_path, keep_rate=0.5)
    model.train()
    batch = a_batch(dataset)
    one = model.loss(batch, torch.Generator().manual_seed(3))
    same = model.loss(batch, torch.Generator().manual_seed(3))
    other = model.loss(batch, torch.Generator().manual_seed(4))
    assert all(torch.equal(one[k], same[k]) for k in one)
    assert one["bpr"].item() != other["bpr"].item()
    # the hyperedge assignments: noisy softmax, then inverted dropout (keep 0.5) of every entry
    with torch.no_grad():
        cge_i = model.collaborative()[1]
        users, items = model.hypergraph("image", cge_i, torch.Generator().manual_seed(5))
        gen = torch.Generator().manual_seed(5)
        f = model.features["image"]
        logits = f @ model.hyper["image"]
        r = dense_r(dataset).float()
        a_i = gumbel_softmax(logits, 0.2, gen)
        a_u = gumbel_softmax(r @ logits, 0.2, gen)
        a_i = a_i * (torch.rand(a_i.shape, generator=gen) >= 0.5) / 0.5
        a_u = a_u * (torch.rand(a_u.shape, generator=gen) >= 0.5) / 0.5
        assert (a_i == 0).any() and (a_u == 0).any()
        lat = a_i.T @ cge_i
        assert torch.allclose(items, a_i @ lat, atol=1e-5)
        assert torch.allclose(users, a_u @ lat, atol=1e-5)


def test_lgmrec_features_are_fixed_and_mf_switch(data: Path, tmp_path: Path) -> None:
    model, dataset = make("lgmrec", data, tmp_path)
    names = {n for n, _ in model.named_parameters()}
    assert names == {
        "user_embedding",
        "item_id_embedding",
        "trs.image",
        "trs.text",
        "hyper.image",
        "hyper.text",
    }
    assert model.trs["image"].shape == (7, 64) and model.hyper["text"].shape == (5, 4)
    mf, _ = make("lgmrec", data, tmp_path, cf_model="mf")
    cge_u, cge_i = mf.collaborative()
    assert cge_u is mf.user_embedding and cge_i is mf.item_id_embedding
    with pytest.raises(MentorError, match="feat_embed_dim"):
        make("lgmrec", data, tmp_path, feat_embed_dim=32)
    with pytest.raises(MentorError, match="keep_rate"):
        make("lgmrec", data, tmp_path, keep_rate=0.0)


def test_lgmrec_one_modality_has_no_contrastive_term(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "one", n_users=10, n_items=12, features={"text": 6})
    model, dataset = make("lgmrec", folder, tmp_path)
    terms = model.loss(a_batch(dataset), torch.Generator().manual_seed(0))
    assert terms["hcl"].item() == 0.0
    sum(terms.values()).backward()
    assert model.hyper["text"].grad is not None and model.hyper["text"].grad.abs().sum() > 0

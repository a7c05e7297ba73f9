"""SMORE against dense float64 references on a tiny graph: the weighted kNN item graphs and their
max-pooled fusion, the spectrum filters (numpy's FFT and a circular convolution by hand), the
views and preference module, the BPR, L2 and InfoNCE terms, dropout and the feature switch."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build as make
from conftest import dense_r, inv_sqrt, make_dataset, sym_block
from conftest import first_batch as a_batch

from mentor.models.lattice import KnnEdges
from mentor.models.smore import knn_sizes, max_pool

F64 = torch.float64
nnf = torch.nn.functional


def weighted_knn_dense(features: np.ndarray, k: int) -> torch.Tensor:
    """Cosine top-k (itself included) weighted by the similarities, ``D^-1/2 A D^-1/2`` with D
    the row sums: [I, I]."""
    f = nnf.normalize(torch.from_numpy(features).double(), dim=1)
    sims = f @ f.T
    top = sims.topk(k, dim=1)
    a = torch.zeros_like(sims).scatter_(1, top.indices, top.values)
    d = inv_sqrt(a.sum(1))
    return d[:, None] * a * d[None, :]


def fusion_dense(graphs: list[torch.Tensor]) -> torch.Tensor:
    """Element-wise maximum over the union of the edges (absent edges take no part)."""
    stacked = torch.stack([torch.where(g != 0, g, torch.full_like(g, -math.inf)) for g in graphs])
    best = stacked.max(0).values
    return torch.where(torch.isinf(best), torch.zeros_like(best), best)


def spectrum_dense(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``irfft(rfft(x) * w)`` along rows with numpy's orthonormal FFT."""
    spec = np.fft.rfft(x, axis=1, norm="ortho") * w
    return np.fft.irfft(spec, n=x.shape[1], axis=1, norm="ortho")


def complex_filter(param: torch.Tensor) -> np.ndarray:
    p = param.detach().double().numpy()[0]
    return p[:, 0] + 1j * p[:, 1]


def dense_forward(model, dataset, ks: dict[str, int]):  # type: ignore[no-untyped-def]
    """The published forward in float64 with dense matrices, no dropout: (out, side, content),
    each [U + I, d], users first."""
    r = dense_r(dataset)
    g = sym_block(r)
    graphs = {m: weighted_knn_dense(dataset.features[m], ks[m]) for m in ("image", "text")}
    fused = fusion_dense(list(graphs.values()))
    e_u, e_i = model.user_embedding.detach().double(), model.item_id_embedding.detach().double()

    def lin(layer, x):  # type: ignore[no-untyped-def]
        out = x @ layer.weight.detach().double().T
        return out + layer.bias.detach().double() if layer.bias is not None else out

    proj = {
        m: lin(model.trs[m], torch.from_numpy(dataset.features[m]).double()).numpy()
        for m in ("image", "text")
    }
    conv = {
        m: torch.from_numpy(spectrum_dense(proj[m], complex_filter(model.filters[m]))) for m in proj
    }
    spec = np.fft.rfft(proj["image"], axis=1, norm="ortho") * np.fft.rfft(
        proj["text"], axis=1, norm="ortho"
    )
    fusion = np.fft.irfft(
        spec * complex_filter(model.fusion_filter), n=proj["image"].shape[1], axis=1, norm="ortho"
    )
    fusion = torch.from_numpy(fusion)

    def gate(seq, x):  # type: ignore[no-untyped-def]
        return torch.sigmoid(lin(seq[0], x))

    def view(items, s):  # type: ignore[no-untyped-def]
        for _ in range(model.config.n_layers):
            items = s @ items
        return torch.cat([g @ items, items])

    views = {m: view(e_i * gate(model.gate[m], conv[m]), graphs[m]) for m in conv}
    fusion_view = view(e_i * gate(model.fusion_gate, fusion), fused)
    hu, hi, tu, ti = e_u, e_i, e_u, e_i
    layers = model.config.n_ui_layers
    for _ in range(layers):
        hu, hi = g @ hi, g.T @ hu
        tu, ti = tu + hu, ti + hi
    content = torch.cat([tu, ti]) / (layers + 1)
    parts = []
    for m in ("image", "text"):
        q = model.query[m]
        att = torch.softmax(lin(q[2], torch.tanh(lin(q[0], fusion_view))), dim=1)
        parts.append(gate(model.prefer[m], content) * att * views[m])
    parts.append(gate(model.fusion_prefer, content) * fusion_view)
    side = sum(parts) / len(parts)
    return content + side, side, content


def info_nce_loops(a: torch.Tensor, b: torch.Tensor, tau: float) -> float:
    """Mean over rows of ``-log softmax_j(cos(a_i, b_j) / tau)[i]`` with loops."""
    total = 0.0
    for i in range(len(a)):
        logits = [float(nnf.cosine_similarity(a[i], b[j], dim=0)) / tau for j in range(len(b))]
        total += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    return total / len(a)


def test_knn_sizes_follow_the_roles() -> None:
    assert knn_sizes(["text", "image"], 40, 15) == {"image": 40, "text": 15}
    assert knn_sizes(["text", "genre"], 40, 15) == {"genre": 40, "text": 15}
    assert knn_sizes(["text"], 40, 15) == {"text": 15}
    assert knn_sizes(["audio"], 40, 15) == {"audio": 40}


def test_max_pool_keeps_the_union_with_the_larger_value() -> None:
    a = KnnEdges(
        torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]), torch.tensor([0.5, -0.2, 0.1, 0.3])
    )
    b = KnnEdges(torch.tensor([0, 2]), torch.tensor([1, 0]), torch.tensor([-0.4, 0.7]))
    out = max_pool([a, b], 3).sparse(3, 3).to_scipy().toarray()
    # (1, 1) repeats within a: summed first; (0, 1): max(-0.2, -0.4) keeps a negative value
    expected = np.array([[0.5, -0.2, 0.0], [0.0, 0.4, 0.0], [0.7, 0.0, 0.0]])
    assert np.allclose(out, expected)


def test_smore_item_graphs_match_dense(data: Path, tmp_path: Path) -> None:
    model, dataset = make("smore", data, tmp_path, image_knn_k=4, text_knn_k=3)
    graphs = {m: weighted_knn_dense(dataset.features[m], k) for m, k in (("image", 4), ("text", 3))}
    for m, dense in graphs.items():
        assert np.allclose(model.item_graphs[m].to_scipy().toarray(), dense.numpy(), atol=1e-6)
    fused = fusion_dense(list(graphs.values()))
    assert np.allclose(model.fusion_graph.to_scipy().toarray(), fused.numpy(), atol=1e-6)
    assert (fused != 0).sum() > (graphs["image"] != 0).sum()  # a true union


def test_spectrum_filters_are_ffts_and_fusion_a_circular_convolution(
    data: Path, tmp_path: Path
) -> None:
    model, dataset = make("smore", data, tmp_path, embedding_size=8)
    with torch.no_grad():
        convs, fusion = model.spectrum()
        proj = {m: model.trs[m](model.raw[m]).double() for m in ("image", "text")}
        for m in proj:
            ref = spectrum_dense(proj[m].numpy(), complex_filter(model.filters[m]))
            assert np.allclose(convs[m].double().numpy(), ref, atol=1e-5)
        # an all-ones fusion filter: the product of orthonormal spectra is the circular
        # convolution of the two rows divided by sqrt(d)
        model.fusion_filter.copy_(torch.tensor([1.0, 0.0]).expand_as(model.fusion_filter))
        _, fusion = model.spectrum()
    x, y, d = proj["image"], proj["text"], 8
    conv = torch.zeros_like(x)
    for k in range(d):
        for j in range(d):
            conv[:, k] += x[:, j] * y[:, (k - j) % d]
    assert torch.allclose(fusion.double(), conv / math.sqrt(d), atol=1e-5)


def test_smore_forward_and_loss_match_dense(data: Path, tmp_path: Path) -> None:
    model, dataset = make(
        "smore", data, tmp_path, image_knn_k=4, text_knn_k=3, n_layers=2, reg_weight=0.3
    )
    out, side, content = dense_forward(model, dataset, {"image": 4, "text": 3})
    n_u = dataset.n_users
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        users, items = model.serving_representations()
    assert torch.allclose(users.double(), out[:n_u], atol=1e-5)
    assert torch.allclose(items.double(), out[n_u:], atol=1e-5)
    model.train()  # dropout_rate 0: the training forward is the same
    batch = a_batch(dataset)
    terms = model.loss(batch, torch.Generator().manual_seed(0))
    assert set(terms) == {"bpr", "reg", "cl"}
    u, p, n = out[batch.users], out[n_u + batch.positives], out[n_u + batch.negatives]
    bpr = -nnf.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
    assert terms["bpr"].item() == pytest.approx(float(bpr), rel=1e-5)
    l2 = 0.5 * (u.square().sum() + p.square().sum() + n.square().sum()) / len(batch.users)
    assert terms["reg"].item() == pytest.approx(0.3 * float(l2), rel=1e-5)
    items_idx = n_u + batch.positives
    cl = info_nce_loops(side[items_idx], content[items_idx], 0.2)
    cl += info_nce_loops(side[batch.users], content[batch.users], 0.2)
    assert terms["cl"].item() == pytest.approx(0.01 * cl, rel=1e-5)


def test_smore_preference_dropout_only_in_training(data: Path, tmp_path: Path) -> None:
    model, dataset = make("smore", data, tmp_path, dropout_rate=0.5)
    batch = a_batch(dataset)
    model.train()
    one = model.loss(batch, torch.Generator().manual_seed(1))
    same = model.loss(batch, torch.Generator().manual_seed(1))
    other = model.loss(batch, torch.Generator().manual_seed(2))
    assert all(torch.equal(one[k], same[k]) for k in one)
    assert one["cl"].item() != other["cl"].item()
    with torch.no_grad():
        _, side_train, _ = model.forward_all(torch.Generator().manual_seed(3))
        model.eval()
        _, side_eval, _ = model.forward_all(None)
        plain, _ = make("smore", data, tmp_path)  # same seed, same parameters, no dropout
        plain.eval()
        assert torch.allclose(side_eval, plain.forward_all(None)[1])
    assert not torch.allclose(side_train, side_eval)


def test_smore_trains_raw_features_unless_switched_off(data: Path, tmp_path: Path) -> None:
    model, dataset = make("smore", data, tmp_path)
    batch = a_batch(dataset)
    sum(model.loss(batch, torch.Generator()).values()).backward()
    assert model.raw["image"].grad is not None and model.raw["image"].grad.abs().sum() > 0
    frozen, _ = make("smore", data, tmp_path, train_features=False)
    names = {n for n, _ in frozen.named_parameters()}
    assert not any(n.startswith("raw.") for n in names)
    assert {"filters.image", "filters.text", "fusion_filter"} <= names
    # the item graphs come from the original features either way
    for m in ("image", "text"):
        assert np.allclose(
            frozen.item_graphs[m].to_scipy().toarray(), model.item_graphs[m].to_scipy().toarray()
        )


def test_smore_one_modality(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "one", n_users=10, n_items=12, features={"text": 6})
    model, dataset = make("smore", folder, tmp_path, text_knn_k=3)
    assert model.modalities == ["text"]
    assert (model.item_graphs["text"].to_scipy() != model.fusion_graph.to_scipy()).nnz == 0
    terms = model.loss(a_batch(dataset), torch.Generator().manual_seed(0))
    sum(terms.values()).backward()
    assert model.fusion_filter.grad is not None and model.fusion_filter.grad.abs().sum() > 0

"""Negative sampling, graph operations, semantic graphs and their cache, and the losses."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import make_dataset

from mentor.data.dataset import load_dataset
from mentor.data.sampler import BPRSampler
from mentor.errors import MentorError
from mentor.graph import (
    SparseGraph,
    bipartite_graph,
    interaction_graph,
    knn_graph,
    knn_indices,
    normalise_sym,
)
from mentor.losses import (
    bpr_loss,
    emb_norm_loss,
    info_nce,
    mean_var_gap,
    table_moments,
)
from mentor.semantic import SemanticGraphCache, semantic_graph

# ------------------------------------------------------------------ sampler


def _dense_train(seed: int = 0) -> np.ndarray:
    """12 users over items 0..13, items 5 and 11 never in train; users hold 3..9 of 12 items."""
    rng = np.random.default_rng(seed)
    pool = np.array([i for i in range(14) if i not in (5, 11)])
    rows = []
    for u in range(12):
        for i in rng.choice(pool, size=3 + u % 7, replace=False):
            rows.append((u, int(i)))
    return np.array(rows, dtype=np.int64)


def test_sampler_negatives_never_train_items() -> None:
    train = _dense_train()
    known = {(int(u), int(i)) for u, i in train}
    train_items = set(train[:, 1].tolist())
    sampler = BPRSampler(train, n_items=14, batch_size=7)
    gen = torch.Generator().manual_seed(3)
    seen_negatives: Counter = Counter()
    for _ in range(30):
        for batch in sampler.epoch(gen):
            for u, n in zip(batch.users.tolist(), batch.negatives.tolist(), strict=True):
                assert (u, n) not in known
                seen_negatives[n] += 1
    # drawn only from items that occur in train (5, 11 and the ids >= 14 never)
    assert set(seen_negatives) <= train_items
    assert 5 not in seen_negatives and 11 not in seen_negatives
    # uniform enough that every train item is drawn for someone
    assert set(seen_negatives) == train_items


def test_sampler_covers_train_once_per_epoch() -> None:
    train = _dense_train(1)
    sampler = BPRSampler(train, n_items=14, batch_size=8)
    assert len(sampler) == math.ceil(len(train) / 8)
    gen = torch.Generator().manual_seed(0)
    orders = []
    for _ in range(3):
        batches = list(sampler.epoch(gen))
        assert len(batches) == len(sampler)
        assert all(len(b.users) == 8 for b in batches[:-1])
        assert 1 <= len(batches[-1].users) <= 8
        pairs = [
            (u, p)
            for b in batches
            for u, p in zip(b.users.tolist(), b.positives.tolist(), strict=True)
        ]
        assert sorted(pairs) == sorted(map(tuple, train.tolist()))
        for b in batches:
            assert b.users.dtype == b.positives.dtype == b.negatives.dtype == torch.int64
        orders.append(pairs)
    assert orders[0] != orders[1]  # reshuffled every epoch


def test_sampler_same_seed_same_batches() -> None:
    train = _dense_train(2)

    def run(seed: int) -> list[list[int]]:
        sampler = BPRSampler(train, n_items=14, batch_size=10)
        gen = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(2):
            for b in sampler.epoch(gen):
                out.append(b.users.tolist() + b.positives.tolist() + b.negatives.tolist())
        return out

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_sampler_user_with_every_item() -> None:
    train = np.array([[0, 0], [0, 1], [0, 2], [1, 0], [2, 1], [0, 1]])  # duplicate counts once
    with pytest.raises(MentorError, match="user 0 interacted with every item"):
        BPRSampler(train, n_items=5, batch_size=4)  # items 3, 4 are not in train
    fine = np.array([[0, 0], [0, 1], [1, 0], [2, 1], [2, 2]])  # user 0 lacks item 2
    assert len(BPRSampler(fine, n_items=5, batch_size=4)) == 2


# ------------------------------------------------------------------ graphs


def test_bipartite_graph_matches_dense() -> None:
    users = np.array([0, 0, 1, 2, 0])
    items = np.array([0, 1, 1, 0, 0])  # (0, 0) twice: counts once
    n_users, n_items = 4, 3  # user 3 and item 2 are isolated
    graph = bipartite_graph(users, items, n_users, n_items)
    n = n_users + n_items
    adj = np.zeros((n, n))
    for u, i in zip(users, items, strict=True):
        adj[u, n_users + i] = adj[n_users + i, u] = 1.0
    deg = adj.sum(axis=1)
    inv = np.array([d**-0.5 if d > 0 else 0.0 for d in deg])
    expected = inv[:, None] * adj * inv[None, :]
    dense = graph.to_scipy().toarray()
    assert dense.shape == (7, 7)
    assert np.allclose(dense, expected, atol=1e-7)
    # by hand: user 0 (degree 2) - item 1 (degree 2: users 0, 1) -> 1/sqrt(2*2) = 0.5
    assert dense[0, 4 + 1] == pytest.approx(0.5)
    # user 2 (degree 1) - item 0 (degree 2: users 0, 2) -> 1/sqrt(2)
    assert dense[2, 4 + 0] == pytest.approx(1 / math.sqrt(2))
    assert not dense[3].any() and not dense[:, 6].any()
    assert graph.transpose is graph.matrix
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(graph @ x, torch.from_numpy(expected).float() @ x, atol=1e-6)


def test_interaction_graph_is_user_item_block() -> None:
    rng = np.random.default_rng(4)
    n_users, n_items = 9, 11  # item 10 never interacted with
    users = rng.integers(0, n_users, 40)
    items = rng.integers(0, n_items - 1, 40)
    full = bipartite_graph(users, items, n_users, n_items)
    block = interaction_graph(users, items, n_users, n_items)
    assert block.shape == (n_users, n_items)
    dense_full = full.to_scipy().toarray()
    dense = block.to_scipy().toarray()
    assert np.allclose(dense, dense_full[:n_users, n_users:], atol=1e-7)
    assert np.allclose(block.T.to_scipy().toarray(), dense.T, atol=1e-7)
    assert block.T.shape == (n_items, n_users)
    # separate propagation == one product with the full graph, values and gradients
    gen = torch.Generator().manual_seed(0)
    u0, i0 = torch.randn(n_users, 5, generator=gen), torch.randn(n_items, 5, generator=gen)
    w = torch.randn(n_users + n_items, 5, generator=gen)
    u, i = u0.clone().requires_grad_(True), i0.clone().requires_grad_(True)
    out = torch.cat([block @ i, block.T @ u])
    (out * w).sum().backward()
    x = torch.cat([u0, i0]).requires_grad_(True)
    ref = full @ x
    (ref * w).sum().backward()
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(torch.cat([u.grad, i.grad]), x.grad, atol=1e-6)


def test_normalise_sym_zero_rows() -> None:
    adj = sp.csr_matrix(np.array([[0, 2.0, 0], [1.0, 1.0, 0], [0, 0, 0]]))
    got = normalise_sym(adj).toarray()
    # row sums d = [2, 2, 0]: entry (i, j) = a_ij / sqrt(d_i d_j)
    assert got == pytest.approx(np.array([[0, 1.0, 0], [0.5, 0.5, 0], [0, 0, 0]]))
    assert got.dtype == np.float32


def _features(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _brute_knn(feat: torch.Tensor, k: int) -> np.ndarray:
    x = feat.double().numpy()
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("block_size", [1, 7, 2048])
def test_knn_indices_match_brute_force(block_size: int) -> None:
    feat = _features(37, 6, seed=1) * 5  # un-normalised on purpose
    got = knn_indices(feat, k=5, block_size=block_size)
    assert got.shape == (37, 5)
    assert np.array_equal(got.numpy(), _brute_knn(feat, 5))
    assert got[:, 0].tolist() == list(range(37))  # itself first
    assert knn_indices(feat[:3], k=10).shape == (3, 3)  # k capped at n


def test_knn_graph_values() -> None:
    feat = _features(20, 4, seed=2)
    idx = knn_indices(feat, k=4)
    graph = knn_graph(idx, 20)
    dense = graph.toarray()
    expected = np.zeros((20, 20))
    for i, row in enumerate(_brute_knn(feat, 4)):
        expected[i, row] = 1 / 4  # every row has degree k: D^-1/2 A D^-1/2 = A / k
    assert np.allclose(dense, expected, atol=1e-7)
    assert not np.allclose(dense, dense.T)  # a directed kNN graph


def test_sparse_graph_gradient_non_symmetric() -> None:
    feat = _features(15, 5, seed=3)
    matrix = knn_graph(knn_indices(feat, k=3), 15) * 2.0
    matrix = sp.csr_matrix(matrix + sp.random(15, 15, density=0.1, random_state=0))
    graph = SparseGraph.from_scipy(matrix)
    dense = torch.from_numpy(matrix.toarray()).float()
    assert not torch.allclose(dense, dense.T)
    assert graph.transpose is not graph.matrix
    x0 = _features(15, 70, seed=4)
    weights = _features(15, 70, seed=5)
    x = x0.clone().requires_grad_(True)
    y = graph @ x
    (y * weights).sum().backward()
    xd = x0.clone().requires_grad_(True)
    yd = dense @ xd
    (yd * weights).sum().backward()
    assert torch.allclose(y, yd, atol=1e-5)
    assert torch.allclose(x.grad, xd.grad, atol=1e-5)
    assert torch.allclose(x.grad, dense.T @ weights, atol=1e-5)
    # no grad: same values through the plain path
    assert torch.allclose(graph @ x0, dense @ x0, atol=1e-5)
    assert graph.shape == (15, 15)
    assert np.allclose(graph.to_scipy().toarray(), matrix.toarray())


def test_semantic_graph_mixes_weights() -> None:
    feats = {"text": _features(25, 6, seed=6), "image": _features(25, 9, seed=7)}
    got = semantic_graph(feats, {"text": 0.3, "image": 0.7}, k=4, block_size=5).toarray()
    expected = np.zeros((25, 25))
    for modality, weight in (("text", 0.3), ("image", 0.7)):
        for i, row in enumerate(_brute_knn(feats[modality], 4)):
            expected[i, row] += weight / 4
    assert np.allclose(got, expected, atol=1e-6)
    only_text = semantic_graph(feats, {"text": 1.0}, k=4).toarray()
    assert np.allclose(only_text, _one_modality(feats["text"], 4), atol=1e-6)
    with pytest.raises(MentorError, match="at least one feature modality"):
        semantic_graph(feats, {}, k=4)


def _one_modality(feat: torch.Tensor, k: int) -> np.ndarray:
    out = np.zeros((feat.shape[0], feat.shape[0]))
    for i, row in enumerate(_brute_knn(feat, k)):
        out[i, row] = 1 / k
    return out


def test_semantic_graph_cache(tmp_path: Path) -> None:
    ds = load_dataset(make_dataset(tmp_path / "data", features={"text": 6, "image": 4}))
    folder = tmp_path / "cache"
    cache = SemanticGraphCache(folder)
    first = cache.get(ds, {"text": 0.5, "image": 0.5}, k=3)
    files = list(folder.iterdir())
    assert len(files) == 1
    assert files[0].name.startswith("semantic-") and files[0].suffix == ".npz"
    expected = semantic_graph(
        {m: torch.from_numpy(f) for m, f in ds.features.items()}, {"text": 0.5, "image": 0.5}, 3
    ).toarray()
    assert np.allclose(first.to_scipy().toarray(), expected)
    stamp = files[0].stat().st_mtime_ns
    second = SemanticGraphCache(folder).get(ds, {"image": 0.5, "text": 0.5}, k=3)
    assert list(folder.iterdir()) == files and files[0].stat().st_mtime_ns == stamp
    assert np.array_equal(second.to_scipy().toarray(), first.to_scipy().toarray())
    weights = {"text": 0.5, "image": 0.5}
    key = cache.key(ds, weights, 3)
    assert files[0].name == f"semantic-{key}.npz"
    assert cache.key(ds, weights, 4) != key
    assert cache.key(ds, {"text": 0.6, "image": 0.4}, 3) != key
    assert cache.key(ds, {"text": 1.0}, 3) != key
    cache.get(ds, weights, k=4)
    assert len(list(folder.iterdir())) == 2
    with pytest.raises(MentorError, match="modality 'audio'"):
        cache.get(ds, {"audio": 1.0}, k=3)


def test_semantic_graph_cache_key_follows_features(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "data", features={"text": 6})
    ds = load_dataset(folder)
    cache = SemanticGraphCache(tmp_path / "cache")
    key = cache.key(ds, {"text": 1.0}, 3)
    feat = np.load(folder / "text_feat.npy")
    feat[0] *= 2
    np.save(folder / "text_feat.npy", feat)
    assert cache.key(load_dataset(folder), {"text": 1.0}, 3) != key


# ------------------------------------------------------------------ losses


def test_bpr_loss_golden() -> None:
    # -log(sigmoid(2 - 0)) = log(1 + e^-2) = log(1.1353352832) = 0.1269280110
    got = bpr_loss(torch.tensor([2.0]), torch.tensor([0.0]))
    assert got.item() == pytest.approx(0.1269280110429725, rel=1e-6)
    # base 2: 0.1269280110 / ln 2 = 0.1269280110 / 0.6931471806 = 0.1831184121
    got2 = bpr_loss(torch.tensor([2.0]), torch.tensor([0.0]), base2=True)
    assert got2.item() == pytest.approx(0.18311841208159602, rel=1e-6)
    # mean over the batch: diffs 0 and -1 -> (log 2 + log(1 + e)) / 2
    #   = (0.6931471806 + 1.3132616875) / 2 = 1.0032044340
    got = bpr_loss(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))
    assert got.item() == pytest.approx(1.0032044340, rel=1e-6)


def test_emb_norm_loss_golden() -> None:
    u = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # Frobenius norm 5
    p = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # 1
    n = torch.tensor([[0.0, 0.0], [0.0, 2.0]])  # 2
    # (5 + 1 + 2) / batch 2 = 4
    assert emb_norm_loss(u, p, n).item() == pytest.approx(4.0)
    # a whole-matrix norm, not a sum of row norms: sqrt(9 + 16 + 4) / 2
    assert emb_norm_loss(torch.tensor([[3.0, 4.0], [2.0, 0.0]])).item() == pytest.approx(
        math.sqrt(29) / 2
    )


def test_mean_var_gap_golden() -> None:
    x = torch.tensor([1.0, 2.0, 3.0])  # mean 2, unbiased var 1
    y = torch.tensor([0.0, 0.0, 0.0, 4.0])  # mean 1, unbiased var (1+1+1+9)/3 = 4
    gap = mean_var_gap(table_moments([x[:, None]]), table_moments([y[:, None]]))
    assert gap.item() == pytest.approx(3.0 + 1.0)


def _dense_info_nce(anchors: torch.Tensor, candidates: torch.Tensor, temp: float) -> torch.Tensor:
    a = torch.nn.functional.normalize(anchors, dim=1)
    b = torch.nn.functional.normalize(candidates, dim=1)
    logits = a @ b.T / temp
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()


def _grads(fn, anchors: torch.Tensor, candidates: torch.Tensor):  # type: ignore[no-untyped-def]
    a = anchors.clone().requires_grad_(True)
    b = candidates.clone().requires_grad_(True)
    value = fn(a, b)
    (value * 1.7).backward()  # a non-unit upstream gradient
    return value.detach(), a.grad, b.grad


@pytest.mark.parametrize("block", [1, 3, 8, 19, 1024])
def test_info_nce_matches_dense_float64(block: int) -> None:
    gen = torch.Generator().manual_seed(block)
    anchors = torch.randn(19, 6, generator=gen, dtype=torch.float64)
    candidates = anchors + 0.5 * torch.randn(19, 6, generator=gen, dtype=torch.float64)
    temp = 0.2
    ref = _grads(lambda a, b: _dense_info_nce(a, b, temp), anchors, candidates)
    got = _grads(
        lambda a, b: info_nce(a, b, temp, block=block, dtype=torch.float64), anchors, candidates
    )
    assert got[0].dtype == torch.float64
    for g, r in zip(got, ref, strict=True):
        assert torch.allclose(g, r, rtol=1e-10, atol=1e-12)
    # float32 inputs, default float32 products
    got32 = _grads(
        lambda a, b: info_nce(a, b, temp, block=block), anchors.float(), candidates.float()
    )
    for g, r in zip(got32, ref, strict=True):
        assert torch.allclose(g.double(), r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("block", [1, 4, 1024])
def test_raw_info_nce_matches_cross_entropy(block: int) -> None:
    # raw rows of norm ~30 at t = 0.1: logits up to ~9000, far past exp()'s float range, so a
    # constant shift could not work; the row maximum must
    gen = torch.Generator().manual_seed(block)
    anchors = 12.0 * torch.randn(11, 7, generator=gen, dtype=torch.float64)
    candidates = anchors + 6.0 * torch.randn(11, 7, generator=gen, dtype=torch.float64)
    temp = 0.1

    def dense(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(a @ b.T / temp, torch.arange(len(a)))

    ref = _grads(dense, anchors, candidates)
    got = _grads(
        lambda a, b: info_nce(a, b, temp, block=block, dtype=torch.float64, normalize=False),
        anchors,
        candidates,
    )
    assert torch.isfinite(got[0])
    for g, r in zip(got, ref, strict=True):
        assert torch.allclose(g, r, rtol=1e-10, atol=1e-10)


def test_raw_info_nce_by_hand() -> None:
    # a = [[1, 0], [0, 2]], b = [[1, 0], [0, 1]], t = 1: logits [[1, 0], [0, 2]];
    # row 0: log(e + 1) - 1 = 0.3132617, row 1: log(1 + e^2) - 2 = 0.1269280; mean 0.2200948
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    value = float(info_nce(a, torch.eye(2), temp=1.0, normalize=False))
    expected = (math.log1p(math.e) - 1 + math.log1p(math.exp(2)) - 2) / 2
    assert value == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        info_nce(a, torch.eye(3), temp=1.0, normalize=False)


def test_info_nce_one_side_grad() -> None:
    gen = torch.Generator().manual_seed(0)
    anchors = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    candidates = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    a = anchors.clone().requires_grad_(True)
    info_nce(a, candidates, 0.5, block=4, dtype=torch.float64).backward()
    a_ref = anchors.clone().requires_grad_(True)
    _dense_info_nce(a_ref, candidates, 0.5).backward()
    assert torch.allclose(a.grad, a_ref.grad, rtol=1e-10, atol=1e-12)
    b = candidates.clone().requires_grad_(True)
    info_nce(anchors, b, 0.5, block=2, dtype=torch.float64).backward()
    b_ref = candidates.clone().requires_grad_(True)
    _dense_info_nce(anchors, b_ref, 0.5).backward()
    assert torch.allclose(b.grad, b_ref.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("block", [5, 64])
def test_info_nce_bfloat16_products(block: int) -> None:
    gen = torch.Generator().manual_seed(11)
    anchors = torch.randn(40, 16, generator=gen)
    candidates = anchors + 0.7 * torch.randn(40, 16, generator=gen)
    temp = 0.2
    ref = _grads(lambda a, b: _dense_info_nce(a, b, temp), anchors.double(), candidates.double())
    got = _grads(
        lambda a, b: info_nce(a, b, temp, block=block, dtype=torch.bfloat16), anchors, candidates
    )
    assert got[0].dtype == torch.float32
    assert got[1].dtype == got[2].dtype == torch.float32
    assert abs(got[0].item() - ref[0].item()) <= 1e-2 * abs(ref[0].item())
    for g, r in zip(got[1:], ref[1:], strict=True):
        assert (g.double() - r).norm() <= 1e-2 * r.norm()


def test_info_nce_small_temperature_is_finite() -> None:
    gen = torch.Generator().manual_seed(0)
    anchors = torch.randn(8, 4, generator=gen)
    candidates = anchors + 0.01 * torch.randn(8, 4, generator=gen)
    ref = _dense_info_nce(anchors.double(), candidates.double(), 0.01)
    got = info_nce(anchors, candidates, 0.01)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(ref.item(), abs=1e-4)

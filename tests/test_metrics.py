"""Ranking metrics: hand-computed goldens, tie-breaking, masking and a brute-force cross-check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import brute_force_metrics

from mentor.eval.evaluator import MIN_BLOCK_ROWS, GroundTruth, evaluate_rankings, full_ranking
from mentor.eval.metrics import metrics_from_hits, rank_topk

L3 = math.log2(3)  # 1.5849625007; 1/log2(3) = 0.6309297536 is the discount of rank 2

# Three users, lists of length 4 (1 = the item at that rank is held out for the user):
#   A: hits [1, 0, 1, 0], |T| = 2
#   B: hits [0, 1, 0, 0], |T| = 3
#   C: hits [0, 0, 0, 0], |T| = 1
HITS = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
N_POS = torch.tensor([2, 3, 1])

GOLDEN = {
    # K = 1: only A hits (rank 1).
    #   recall: A 1/2, B 0, C 0 -> (1/2)/3 = 1/6
    "recall@1": 1 / 6,
    #   precision: A 1/1 -> 1/3
    "precision@1": 1 / 3,
    "hit@1": 1 / 3,
    #   ndcg: A dcg 1/log2(2) = 1, idcg over min(2,1) = 1 rank = 1 -> 1; mean 1/3
    "ndcg@1": 1 / 3,
    #   map: A P@1 * r1 = 1, / min(2, 1) = 1 -> 1; mean 1/3
    "map@1": 1 / 3,
    # K = 2: A hits rank 1, B hits rank 2.
    #   recall: A 1/2, B 1/3, C 0 -> (1/2 + 1/3)/3 = 5/18 = 0.2777...
    "recall@2": 5 / 18,
    #   precision: A 1/2, B 1/2 -> 1/3
    "precision@2": 1 / 3,
    "hit@2": 2 / 3,
    #   ndcg: idcg (A: min(2,2)=2, B: min(3,2)=2) = 1 + 1/log2(3) = 1.6309297536
    #         A: 1 / 1.6309297536 = 0.6131471928
    #         B: 0.6309297536 / 1.6309297536 = 0.3868528072
    #         sum = 1.0 exactly -> mean 1/3
    "ndcg@2": 1 / 3,
    #   map: A P@1*1 = 1, / min(2,2) = 2 -> 0.5 ; B P@2*1 = 1/2, / min(3,2) = 2 -> 0.25
    #        mean (0.5 + 0.25 + 0)/3 = 0.25
    "map@2": 0.25,
    # K = 4: A hits ranks 1 and 3, B hits rank 2.
    #   recall: A 2/2 = 1, B 1/3 -> (4/3)/3 = 4/9
    "recall@4": 4 / 9,
    #   precision: A 2/4, B 1/4 -> (3/4)/3 = 0.25
    "precision@4": 0.25,
    "hit@4": 2 / 3,
    #   ndcg: A dcg 1 + 1/log2(4) = 1.5, idcg(min(2,4)=2) = 1.6309297536 -> 0.9197207891
    #         B dcg 0.6309297536, idcg(min(3,4)=3) = 1 + 0.6309297536 + 0.5 = 2.1309297536
    #           -> 0.2960819110
    #         mean (0.9197207891 + 0.2960819110)/3 = 0.4052675667
    "ndcg@4": 0.4052675667046843,
    #   map: A (P@1 + P@3) / min(2,4) = (1 + 2/3)/2 = 0.8333...
    #        B P@2 / min(3,4) = (1/2)/3 = 0.1666...
    #        mean (0.8333 + 0.1667)/3 = 1/3
    "map@4": 1 / 3,
}


def test_metrics_from_hits_golden() -> None:
    got = metrics_from_hits(HITS, N_POS, [4, 1, 2])
    assert set(got) == set(GOLDEN)
    for key, value in GOLDEN.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    # the arithmetic of the comments, once more from the formulas
    assert got["ndcg@4"] == pytest.approx(
        (1.5 / (1 + 1 / L3) + (1 / L3) / (1 + 1 / L3 + 0.5)) / 3, abs=1e-12
    )


def test_metrics_from_hits_float_hits_and_k_too_large() -> None:
    got = metrics_from_hits(HITS.float(), N_POS, [2])
    assert got["recall@2"] == pytest.approx(5 / 18, abs=1e-12)
    with pytest.raises(ValueError, match="k=5"):
        metrics_from_hits(HITS, N_POS, [5])


def test_metrics_from_hits_more_held_out_than_k() -> None:
    # one user, |T| = 10, all of the top 3 are hits: recall 3/10, ndcg 1, map (1+1+1)/3 = 1
    got = metrics_from_hits(torch.ones(1, 3, dtype=torch.bool), torch.tensor([10]), [3])
    assert got["recall@3"] == pytest.approx(0.3, abs=1e-12)
    assert got["ndcg@3"] == pytest.approx(1.0, abs=1e-12)
    assert got["map@3"] == pytest.approx(1.0, abs=1e-12)
    assert got["precision@3"] == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------ rank_topk


def test_rank_topk_ties_go_to_lower_index() -> None:
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0, 0.0], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0]])
    assert rank_topk(scores, 4).tolist() == [[1, 2, 4, 3], [0, 1, 2, 3]]
    # the tie of the three 3.0 crosses the cut at k = 2: lower indices win
    assert rank_topk(scores, 2).tolist() == [[1, 2], [0, 1]]
    assert rank_topk(scores, 6).tolist() == [[1, 2, 4, 3, 0, 5], [0, 1, 2, 3, 4, 5]]
    # k larger than the number of items is capped
    assert rank_topk(scores, 10).shape == (2, 6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_topk_is_independent_of_k(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    # few distinct values: many ties, also across every cut
    scores = torch.randint(0, 4, (16, 30), generator=gen).float()
    scores[:, ::7] = -torch.inf
    full = rank_topk(scores, 30)
    for row in range(scores.shape[0]):
        expected = sorted(range(30), key=lambda i, r=row: (-scores[r, i].item(), i))
        assert full[row].tolist() == expected
    for k in range(1, 31):
        assert torch.equal(rank_topk(scores, k), full[:, :k]), k
    assert torch.equal(rank_topk(scores, 2), rank_topk(scores, 4)[:, :2])


@pytest.mark.parametrize("seed", [0, 1])
def test_rank_topk_rows_are_independent(seed: int) -> None:
    # many ties across the cut: tied rows are re-ranked in chunks, each row as on its own
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 3, (23, 40), generator=gen).float()
    scores[::4, ::3] = -torch.inf
    scores[5] = -0.0
    for k in (1, 7, 40):
        alone = torch.cat([rank_topk(scores[r : r + 1], k) for r in range(len(scores))])
        assert torch.equal(rank_topk(scores, k), alone), k
        assert torch.equal(rank_topk(scores.double(), k), alone), k


def test_rank_topk_masked_items_last() -> None:
    scores = torch.tensor([[0.5, -torch.inf, 0.1, -torch.inf, -2.0]])
    assert rank_topk(scores, 5).tolist() == [[0, 2, 4, 1, 3]]
    assert rank_topk(scores, 3).tolist() == [[0, 2, 4]]
    assert rank_topk(scores, 4).tolist() == [[0, 2, 4, 1]]


def test_rank_topk_float64_and_negative_scores() -> None:
    scores = torch.tensor([[-1.0, -0.5, -3.0, -0.5]], dtype=torch.float64)
    assert rank_topk(scores, 3).tolist() == [[1, 3, 0]]


def test_rank_topk_signed_zero_is_independent_of_k() -> None:
    scores = torch.tensor([[-0.0, 0.0, 1.0]])
    # with ties to the lower index: [2, 0, 1]; top-2 must be its first two
    assert rank_topk(scores, 3).tolist() == [[2, 0, 1]]
    assert rank_topk(scores, 2).tolist() == [[2, 0]]


# ------------------------------------------------------------------ ground truth and evaluation


def test_ground_truth_drops_cold_users() -> None:
    train = np.array([[0, 1], [0, 2], [2, 0], [3, 4]])
    rows = np.array([[3, 0], [0, 3], [1, 2], [0, 4], [5, 1], [3, 2]])  # users 1 and 5 are cold
    truth = GroundTruth.from_rows(rows, train, n_items=6)
    assert truth.users.tolist() == [0, 3]
    assert truth.cold_users == 2
    assert truth.items.shape == (2, 6)
    assert truth.items[0].indices.tolist() == [3, 4]
    assert sorted(truth.items[1].indices.tolist()) == [0, 2]


def test_evaluate_rankings_small_example() -> None:
    train = np.array([[0, 5], [1, 5], [2, 5]])
    rows = np.array([[0, 1], [0, 3], [1, 0], [2, 4], [7, 2]])  # user 7 is cold
    truth = GroundTruth.from_rows(rows, train, n_items=6)
    assert truth.cold_users == 1
    topk = torch.tensor([[1, 2, 3], [4, 2, 1], [4, 0, 1]])  # rows for users 0, 1, 2
    got = evaluate_rankings(topk, truth, [1, 3])
    # user 0: T={1,3}, hits [1,0,1]; user 1: T={0}, hits [0,0,0]; user 2: T={4}, hits [1,0,0]
    # recall@3 = (2/2 + 0 + 1/1)/3 = 2/3 ; precision@3 = (2/3 + 0 + 1/3)/3 = 1/3
    # map@3: user 0 (1 + 2/3)/2 = 5/6, user 2: 1/1 -> (5/6 + 1)/3 = 11/18
    # ndcg@3: user 0 (1 + 1/2)/(1 + 1/log2 3), user 2: 1/1
    # recall@1: (1/2 + 0 + 1)/3 = 1/2 ; hit@1 = 2/3
    assert got["recall@3"] == pytest.approx(2 / 3, abs=1e-12)
    assert got["precision@3"] == pytest.approx(1 / 3, abs=1e-12)
    assert got["map@3"] == pytest.approx(11 / 18, abs=1e-12)
    assert got["ndcg@3"] == pytest.approx((1.5 / (1 + 1 / L3) + 1) / 3, abs=1e-12)
    assert got["recall@1"] == pytest.approx(0.5, abs=1e-12)
    assert got["hit@1"] == pytest.approx(2 / 3, abs=1e-12)
    assert got["hit@3"] == pytest.approx(2 / 3, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_evaluate_rankings_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items, ks = 40, 35, [1, 3, 5, 10, 20]
    train_rows, held_rows = [], []
    for u in range(n_users):
        items = rng.permutation(n_items)
        n_train = int(rng.integers(0, 6)) if u % 9 else 0  # some cold users
        n_held = int(rng.integers(1, 8))
        train_rows += [(u, int(i)) for i in items[:n_train]]
        held_rows += [(u, int(i)) for i in items[n_train : n_train + n_held]]
    train, held = np.array(train_rows), np.array(held_rows)
    truth = GroundTruth.from_rows(held, train, n_items)
    warm = set(train[:, 0].tolist())
    assert truth.cold_users == len({u for u, _ in held_rows} - warm)
    # random rankings of 20 of the 35 items: hits are frequent
    ranked = {}
    for u in truth.users.tolist():
        ranked[u] = rng.permutation(n_items)[:20].tolist()
    topk = torch.tensor([ranked[u] for u in truth.users.tolist()])
    got = evaluate_rankings(topk, truth, ks)
    held_by_user: dict[int, set[int]] = {}
    for u, i in held_rows:
        if u in warm:
            held_by_user.setdefault(u, set()).add(i)
    expected = brute_force_metrics(ranked, held_by_user, ks)
    assert set(got) == set(expected)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key
    assert any(got[f"recall@{k}"] > 0 for k in ks)


# ------------------------------------------------------------------ full ranking


def test_full_ranking_masks_train_items_in_batches() -> None:
    n_users, n_items = 5, 7
    # every user prefers high item ids; the train items are the best-scored ones
    table = torch.arange(n_items, dtype=torch.float32).repeat(n_users, 1)
    table[2] = torch.tensor([6.0, 5, 4, 3, 2, 1, 0])  # user 2 prefers low ids
    exclude = sp.csr_matrix(
        (np.ones(4, dtype=np.float32), ([0, 0, 2, 4], [6, 5, 0, 3])), shape=(n_users, n_items)
    )
    calls = []

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        calls.append(users.tolist())
        return table[users]

    users = np.array([0, 1, 2, 4])
    cpu, budget = torch.device("cpu"), 1 << 30
    top = full_ranking(score_fn, users, exclude, 3, 3, cpu, budget)
    # short blocks are scored padded with their last user (BLAS then uses one kernel for all)
    pad = MIN_BLOCK_ROWS
    assert calls == [[0, 1, 2] + [2] * (pad - 3), [4] * pad]
    assert top.tolist() == [[4, 3, 2], [6, 5, 4], [1, 2, 3], [6, 5, 4]]
    # with k = n_items the masked items come last, lower index first among them
    top = full_ranking(score_fn, users, exclude, 7, 10, cpu, budget)
    assert top[0].tolist() == [4, 3, 2, 1, 0, 5, 6]
    assert top[3].tolist() == [6, 5, 4, 2, 1, 0, 3]
    # the caller's scores are not modified
    assert table[0, 6].item() == 6.0


def test_full_ranking_no_users() -> None:
    exclude = sp.csr_matrix((2, 4), dtype=np.float32)
    top = full_ranking(
        lambda u: torch.zeros(len(u), 4),
        np.array([], dtype=np.int64),
        exclude,
        k=3,
        batch_users=8,
        device=torch.device("cpu"),
        score_budget=1 << 20,
    )
    assert top.shape == (0, 3)

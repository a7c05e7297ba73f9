"""Visitors without a trained id: an item history folded into a user vector by each model's
rule, ranked like a trained user."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_dataset

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

import mentor  # noqa: E402
from mentor.bundle import write_bundle  # noqa: E402
from mentor.registry import all_models  # noqa: E402
from mentor.serve import Recommender  # noqa: E402
from mentor.serve.app import create_app  # noqa: E402
from mentor.serve.recommender import FOLD_IN_RULES  # noqa: E402


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("foldin")
    data = make_dataset(root, n_users=20, n_items=30, features={"image": 4, "text": 3})
    out = {}
    for model in ("lightgcn", "bpr", "pop"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MENTOR_CACHE", str(root / "cache"))
            mentor.train(
                model, data, root / model, epochs=1, topk=[5, 10], valid_metric="recall@10",
                progress=False, log=lambda _: None,
            )  # fmt: skip
        out[model] = write_bundle(root / model, root / f"{model}-bundle")
    return out


def test_every_model_declares_a_known_rule() -> None:
    rules = {spec.name: spec.model_cls.fold_in for spec in all_models()}
    assert set(rules.values()) <= set(FOLD_IN_RULES)
    assert rules["lightgcn"] == rules["mentor"] == rules["freedom"] == "graph"
    assert rules["bpr"] == rules["vbpr"] == "mean" and rules["pop"] == "popularity"


def _by_hand(rec: Recommender, history: list[str], k: int) -> list[str]:
    rows = np.array(sorted(rec.item_index[i] for i in history))
    reps = rec.items[rows].astype(np.float64)
    if rec.fold_in == "graph":
        weights = 1 / np.sqrt(1 + rec.popularity[rows].astype(np.float64))
        vector = (weights[:, None] * reps).sum(0) / weights.sum()
    else:
        vector = reps.mean(0)
    scores = rec.items.astype(np.float64) @ vector
    scores[rows] = -np.inf
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [rec.item_ids[i] for i in order[:k]]


@pytest.mark.parametrize(("model", "rule"), [("lightgcn", "graph"), ("bpr", "mean")])
def test_a_history_ranks_like_its_folded_vector(
    bundles: dict[str, Path], model: str, rule: str
) -> None:
    rec = Recommender.load(bundles[model])
    assert rec.fold_in == rule
    history = [rec.item_ids[i] for i in rec.seen(3)]
    result = rec.recommend_histories([history, history[:2]], k=6)
    assert [r.key for r in result] == ["history:0", "history:1"]
    assert result[0].items == _by_hand(rec, history, 6) and not result[0].fallback
    assert result[1].items == _by_hand(rec, history[:2], 6)
    assert not set(result[0].items) & set(history)  # the history counts as seen
    everything = rec.recommend_histories([history], k=100, exclude_seen=False)[0]
    assert set(history) <= set(everything.items)


def test_unknown_ids_are_ignored_and_empty_histories_fall_back(bundles: dict[str, Path]) -> None:
    rec = Recommender.load(bundles["lightgcn"])
    known = [rec.item_ids[4], rec.item_ids[9]]
    mixed, empty = rec.recommend_histories([[*known, "not-an-item"], ["nope"]], k=5)
    assert mixed.items == rec.recommend_histories([known], k=5)[0].items
    assert empty.fallback and empty.items == rec.recommend("stranger", k=5)[0].items
    rec.remove_items([known[0]])
    assert rec.recommend_histories([known], k=5)[0].items == _by_hand(rec, known[1:], 5)
    popular = Recommender.load(bundles["pop"])
    assert popular.recommend_histories([known], k=3)[0].fallback is True


def test_http_histories(bundles: dict[str, Path]) -> None:
    rec = Recommender.load(bundles["lightgcn"])
    client = TestClient(create_app(rec))
    history = [rec.item_ids[i] for i in rec.seen(2)]
    body = client.post("/recommend", json={"histories": [history], "k": 4}).json()
    assert body["results"][0] == {
        "user": "history:0",
        **rec.recommend_histories([history], k=4)[0].to_dict(),
    }
    both = client.post("/recommend", json={"users": ["u3"], "histories": [history]})
    assert both.status_code == 422
    too_long = client.post("/recommend", json={"histories": [["x"] * 1001]})
    assert too_long.status_code == 422

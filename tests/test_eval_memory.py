"""Evaluation in memory-bounded blocks (``eval.score_budget_mb``): block sizes from the budget,
score blocks within it, and lists and metrics identical to one unbounded pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import brute_force_metrics, make_dataset

import mentor
from mentor.api import resume_config
from mentor.config import resolve_config
from mentor.data.dataset import Dataset, load_dataset
from mentor.errors import MentorError
from mentor.eval.context import build_model
from mentor.eval.evaluator import BYTES_PER_SCORE, MIN_BLOCK_ROWS, Evaluator, block_users
from mentor.models.base import Recommender
from mentor.semantic import SemanticGraphCache

MIB = 2**20
CPU = torch.device("cpu")


def _model(tmp_path: Path, name: str, **data: int) -> tuple[Dataset, Recommender]:
    """A tiny data set and ``name`` with its seeded initial weights (distinct scores)."""
    folder = make_dataset(tmp_path, **data)
    config = resolve_config(name, {"data": {"path": str(folder)}})
    dataset = load_dataset(folder)
    return dataset, build_model(config, dataset, CPU, SemanticGraphCache(tmp_path / "graphs"))


def _record_rows(model: Recommender, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make ``model.score`` record the number of rows of every call."""
    rows: list[int] = []
    score = model.score

    def recording(users: torch.Tensor) -> torch.Tensor:
        rows.append(len(users))
        return score(users)

    monkeypatch.setattr(model, "score", recording)
    return rows


def test_block_users_from_budget() -> None:
    row = 1000 * BYTES_PER_SCORE  # bytes per user of a 1,000-item catalogue
    assert block_users(1000, 100 * row, 4096) == 100
    assert block_users(1000, 101 * row - 1, 4096) == 100
    assert block_users(1000, 100 * row, 64) == 64  # batch_users stays an upper bound
    assert block_users(1000, 1, 4096) == MIN_BLOCK_ROWS  # never fewer rows than that
    assert block_users(1000, 1, 3) == 3
    # the default budget: 33 users at 1e6 items; ml-100k-mm and Baby keep blocks of 4096
    assert block_users(10**6, 256 * MIB, 4096) == 33
    assert block_users(1682, 256 * MIB, 4096) == 4096
    assert block_users(7050, 256 * MIB, 4096) == 4096


def test_score_budget_setting(tmp_path: Path) -> None:
    assert resolve_config("lightgcn", {}).eval.score_budget_mb == 256
    assert (
        resolve_config("lightgcn", {"eval": {"score_budget_mb": 0.5}}).eval.score_budget_mb == 0.5
    )
    for bad in (0, -1.0):
        with pytest.raises(MentorError, match=r"^eval.score_budget_mb must be positive"):
            resolve_config("lightgcn", {"eval": {"score_budget_mb": bad}})
    with pytest.raises(MentorError, match="eval.score_budget_mb: expected a number"):
        resolve_config("lightgcn", {"eval": {"score_budget_mb": "big"}})
    # it changes no result, so a resume may change it
    run = tmp_path / "run"
    run.mkdir()
    config = resolve_config("lightgcn", {"data": {"path": str(tmp_path)}})
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    assert resume_config(run, ["eval.score_budget_mb=8"]).eval.score_budget_mb == 8
    with pytest.raises(MentorError, match="eval.score_budget_mb must be positive"):
        Evaluator(load_dataset(make_dataset(tmp_path)), [5], 8, False, 0.0)


def test_score_blocks_stay_within_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, model = _model(tmp_path, "lightgcn", n_users=90, n_items=50)
    budget = 20 * dataset.n_items * BYTES_PER_SCORE  # 20 users' scores and their ranking
    evaluator = Evaluator(dataset, [5, 10], 4096, False, budget / MIB)
    rows = _record_rows(model, monkeypatch)
    evaluator.evaluate(model, "test", CPU)
    assert len(rows) == -(-len(evaluator.truth["test"].users) // 20) > 1
    assert max(rows) == 20
    assert all(r * dataset.n_items * 4 <= budget for r in rows)


@pytest.mark.parametrize("name", ["lightgcn", "popularity"])
def test_metrics_identical_for_every_block_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """LightGCN scores are distinct; popularity ties everywhere (the exact tie re-ranking)."""
    dataset, model = _model(tmp_path, name, n_users=70, n_items=50, per_user=10)
    rows = _record_rows(model, monkeypatch)
    ks = [1, 5, 10, 20]
    one_pass = Evaluator(dataset, ks, 4096, False, 1e6)
    reference = {
        s: one_pass.rank(model, one_pass.truth[s].users, 20, CPU, s) for s in one_pass.truth
    }
    assert rows == [70, 70]  # one block per split
    for batch_users, budget_mb in [
        (4096, 1e-9),
        (4096, 20 * 50 * BYTES_PER_SCORE / MIB),
        (7, 1e6),
        (1, 1e6),
    ]:
        evaluator = Evaluator(dataset, ks, batch_users, False, budget_mb)
        rows.clear()
        for split, truth in evaluator.truth.items():
            topk = evaluator.rank(model, truth.users, 20, CPU, split)
            assert torch.equal(topk, reference[split]), (batch_users, budget_mb, split)
            assert evaluator.evaluate(model, split, CPU) == one_pass.evaluate(model, split, CPU)
        assert len(rows) > 2 and min(rows) >= MIN_BLOCK_ROWS
    # and the lists are MMRec's metrics as a plain loop computes them
    truth = one_pass.truth["test"]
    ranked = dict(zip(truth.users.tolist(), reference["test"].tolist(), strict=True))
    held = {int(u): set(truth.items[row].indices.tolist()) for row, u in enumerate(truth.users)}
    expected = brute_force_metrics(ranked, held, ks)
    got = one_pass.evaluate(model, "test", CPU)
    assert got == pytest.approx(expected, abs=1e-12)


def test_train_and_export_do_not_depend_on_the_budget(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, n_users=40, n_items=60)
    quiet = {"n_layers": 1, "epochs": 2, "progress": False, "log": lambda _: None}
    small = mentor.train("lightgcn", data, tmp_path / "small", score_budget_mb=1e-9, **quiet)
    large = mentor.train("lightgcn", data, tmp_path / "large", **quiet)
    for key in ("valid", "test", "best_epoch"):
        assert small[key] == large[key], key
    stored = json.loads((tmp_path / "small" / "config.json").read_text())
    assert stored["eval"]["score_budget_mb"] == 1e-9
    assert mentor.export(tmp_path / "small", tmp_path / "small.tsv", k=7) == 40
    assert mentor.export(tmp_path / "large", tmp_path / "large.tsv", k=7) == 40
    assert (tmp_path / "small.tsv").read_text() == (tmp_path / "large.tsv").read_text()


@pytest.mark.parametrize("world", [2, 3, 80])
def test_sharded_evaluation_equals_one_pass(tmp_path: Path, world: int) -> None:
    """Each of ``world`` ranks ranks its block of users (80 ranks: some hold none); the lists
    gathered in rank order are the single pass's, bit for bit, and so are the metrics."""
    dataset, model = _model(tmp_path, "lightgcn", n_users=70, n_items=50, per_user=10)
    evaluator = Evaluator(dataset, [5, 20], 4096, False, 1e6)
    for split, truth in evaluator.truth.items():
        one = evaluator.rank(model, truth.users, 20, CPU, split)
        parts = [evaluator.shard_topk(model, split, CPU, r, world) for r in range(world)]
        assert sum(len(p) for p in parts) == len(truth.users)
        assert torch.equal(torch.cat(parts), one)

        def gather(_: torch.Tensor, parts: list[torch.Tensor] = parts) -> list[torch.Tensor]:
            return parts

        for rank in range(world):
            sharded = evaluator.evaluate(model, split, CPU, (rank, world), gather)
            assert sharded == evaluator.evaluate(model, split, CPU)

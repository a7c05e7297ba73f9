"""Peak memory of a full-ranking test evaluation of 1e5 users over 1e6 items in score blocks.

Synthetic power-law interactions: every user belongs to one of 1,000 communities and has
10 + Zipf(2) items (at most 1,010; duplicates dropped), 80% of them drawn from its community's
items and 20% from the whole catalogue, both with Zipf-like popularity (weight of the r-th most
popular item ~ (r + 10) ** -0.8); per user one random item is test, one valid, the rest train.
The model is a LightGCN built through the registry (d=64, two layers) with its seeded initial
weights: propagation alone gives it a collaborative signal, and the evaluator's cost does not
depend on the weights.

Each evaluation runs in a fresh process (its peak resident memory, ``ru_maxrss``, covers the
data, the graphs, the model, the propagation and the evaluation), and a thread samples the
resident memory during the evaluation itself. The big size runs with the default score budget
(``eval.score_budget_mb``); a smaller size is run with the default budget and with an unbounded
one (blocks of ``eval.batch_users`` = 4,096 users, today's evaluator), and their ranked lists and
metrics must be identical. With ``../shared`` present, ml-100k-mm and Baby are also ranked with a
1 MiB, the default and an unbounded budget, which must give identical lists and metrics.
Writes benchmarks/results/eval_memory.json and .md.

Usage: python benchmarks/eval_memory.py [--users 100000 --items 1000000] [--threads 1]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from common import RESULTS, SHARED, machine

from mentor.data.dataset import Dataset

COMMUNITIES, DIM = 1_000, 64
UNBOUNDED_MB = 1e9  # beyond any block: blocks of eval.batch_users users, as before budgets


def rss() -> int:
    """Resident set size of this process in bytes (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def popularity_ranks(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """int64 [size] draws of ranks in ``[0, n)`` with weight ``(r + 10) ** -0.8``."""
    cdf = np.cumsum((np.arange(n) + 10.0) ** -0.8)
    return np.minimum(np.searchsorted(cdf, rng.random(size) * cdf[-1]), n - 1)


def synthetic(users: int, items: int, seed: int = 0) -> Dataset:
    """The synthetic data set described in the module docstring."""
    rng = np.random.default_rng(seed)
    counts = 10 + np.minimum(rng.zipf(2.0, users), 1000)
    user = np.repeat(np.arange(users, dtype=np.int64), counts)
    own = rng.random(len(user)) < 0.8
    item = popularity_ranks(rng, items, len(user))
    per_community = items // COMMUNITIES
    community = user[own] % COMMUNITIES
    item[own] = popularity_ranks(rng, per_community, int(own.sum())) * COMMUNITIES + community
    keys = np.unique(user * items + item)
    user, item = keys // items, keys % items
    order = np.lexsort((rng.random(len(keys)), user))  # per user, a random order
    user, item = user[order], item[order]
    first = np.searchsorted(user, np.arange(users))
    position = np.arange(len(user)) - first[user]
    rows = np.stack([user, item], axis=1)
    splits = {
        "train": rows[position >= 2],
        "valid": rows[position == 1],
        "test": rows[position == 0],
    }
    return Dataset(
        name="synthetic", path=Path("synthetic"), n_users=users, n_items=items, splits=splits
    )


def measure(users: int, items: int, budget_mb: float, threads: int) -> dict:
    """Build the data and the model, evaluate the test split once; return the figures."""
    import torch

    from mentor.config import resolve_config
    from mentor.eval.context import build_model
    from mentor.eval.evaluator import Evaluator, block_users, evaluate_rankings
    from mentor.semantic import SemanticGraphCache

    torch.set_num_threads(threads)
    began = time.perf_counter()
    dataset = synthetic(users, items)
    config = resolve_config("lightgcn", {"eval": {"score_budget_mb": budget_mb}})
    device = torch.device("cpu")
    model = build_model(config, dataset, device, SemanticGraphCache(Path("/nonexistent")))
    ev = config.eval
    evaluator = Evaluator(dataset, ev.topk, ev.batch_users, False, ev.score_budget_mb)
    truth = evaluator.truth["test"]
    setup = time.perf_counter() - began
    before = rss()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    began = time.perf_counter()
    topk = evaluator.rank(model, truth.users, max(ev.topk), device, "test")
    metrics = evaluate_rankings(topk, truth, ev.topk)
    seconds = time.perf_counter() - began
    done.set()
    sampler.join()
    return {
        "users": users,
        "items": items,
        "train_interactions": len(dataset.train),
        "test_users": len(truth.users),
        "score_budget_mb": budget_mb,
        "block_users": block_users(items, evaluator.score_budget, ev.batch_users),
        "setup_seconds": setup,
        "eval_seconds": seconds,
        "rss_before_eval_mb": before / 2**20,
        "peak_rss_during_eval_mb": max(peak[0], rss()) / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "metrics": metrics,
        "lists_sha256": hashlib.sha256(topk.numpy().tobytes()).hexdigest(),
    }


def child(users: int, items: int, budget_mb: float, threads: int) -> dict:
    """:func:`measure` in a fresh process."""
    args = ["--child", str(users), str(items), str(budget_mb), str(threads)]
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({k: v for k, v in row.items() if k != "metrics"}), flush=True)
    return row


def real_data(threads: int) -> list[dict]:
    """ml-100k-mm and Baby (when ``../shared`` has them), test split of a seeded LightGCN ranked
    with a 1 MiB, the default and an unbounded budget: are the lists and metrics identical?"""
    import torch

    from mentor.config import EvalConfig, resolve_config
    from mentor.data.dataset import load_dataset
    from mentor.eval.context import build_model
    from mentor.eval.evaluator import Evaluator, block_users, evaluate_rankings
    from mentor.semantic import SemanticGraphCache

    torch.set_num_threads(threads)
    rows = []
    for name in ("ml-100k-mm", "amazon-baby"):
        folder = SHARED / "data" / name
        if not folder.exists():
            continue
        config = resolve_config("lightgcn", {"data": {"path": str(folder)}})
        dataset = load_dataset(folder, [])
        device = torch.device("cpu")
        model = build_model(config, dataset, device, SemanticGraphCache(Path("/nonexistent")))
        ev = config.eval
        found = {}
        budgets = {"1 MiB": 1.0, "default": EvalConfig.score_budget_mb, "unbounded": UNBOUNDED_MB}
        for label, budget in budgets.items():
            evaluator = Evaluator(dataset, ev.topk, ev.batch_users, False, budget)
            truth = evaluator.truth["test"]
            topk = evaluator.rank(model, truth.users, max(ev.topk), device, "test")
            blocks = block_users(dataset.n_items, evaluator.score_budget, ev.batch_users)
            found[label] = (blocks, topk, evaluate_rankings(topk, truth, ev.topk))
        _, reference, expected = found["unbounded"]
        rows.append(
            {
                "data": name,
                "test_users": len(reference),
                "block_users": {label: blocks for label, (blocks, _, _) in found.items()},
                "identical_lists": all(torch.equal(t, reference) for _, t, _ in found.values()),
                "identical_metrics": all(m == expected for _, _, m in found.values()),
                "recall@20": expected["recall@20"],
                "ndcg@20": expected["ndcg@20"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--small-users", type=int, default=20_000)
    parser.add_argument("--small-items", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--reuse-big",
        action="store_true",
        help="take the big size's row from the existing results file instead of measuring it "
        "again (it takes about 20 minutes on 2 cores); the smaller sizes are measured",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        users, items, budget, threads = args.child
        print(json.dumps(measure(int(users), int(items), float(budget), int(threads))))
        return
    from mentor import __version__
    from mentor.config import EvalConfig

    default = EvalConfig.score_budget_mb
    if args.reuse_big:
        big = json.loads((RESULTS / "eval_memory.json").read_text())["big"]
        big["reused_from_a_previous_run"] = True
    else:
        big = child(args.users, args.items, default, args.threads)
    small = {
        "budgeted": child(args.small_users, args.small_items, default, args.threads),
        "unbounded": child(args.small_users, args.small_items, UNBOUNDED_MB, args.threads),
    }
    same = (
        small["budgeted"]["metrics"] == small["unbounded"]["metrics"]
        and small["budgeted"]["lists_sha256"] == small["unbounded"]["lists_sha256"]
    )
    real = real_data(args.threads)
    command = (
        f"python benchmarks/eval_memory.py --users {args.users} --items {args.items} "
        f"--small-users {args.small_users} --small-items {args.small_items} "
        f"--threads {args.threads}" + (" --reuse-big" if args.reuse_big else "")
    )
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "version": __version__,
        "command": command,
        "torch_threads": args.threads,
        "big": big,
        "small": small,
        "small_identical": same,
        "real_data": real,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "eval_memory.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"Full-ranking test evaluation (LightGCN d={DIM}, seeded weights, k up to 50) in score "
        f"blocks; {result['date']}, {result['machine']}, mentor {__version__}, "
        f"{args.threads} torch thread(s). `{command}`",
        "",
        "| users x items | train rows | budget (MiB) | users per block | peak RSS (MB) | "
        "RSS before eval (MB) | peak RSS during eval (MB) | eval s | recall@20 | ndcg@20 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in (big, small["budgeted"], small["unbounded"]):
        budget = "unbounded" if row["score_budget_mb"] == UNBOUNDED_MB else row["score_budget_mb"]
        reused = " (previous run)" if row.get("reused_from_a_previous_run") else ""
        lines.append(
            f"| {row['users']:,} x {row['items']:,}{reused} | {row['train_interactions']:,} | "
            f"{budget} | "
            f"{row['block_users']:,} | {row['peak_rss_mb']:,.0f} | "
            f"{row['rss_before_eval_mb']:,.0f} | {row['peak_rss_during_eval_mb']:,.0f} | "
            f"{row['eval_seconds']:.1f} | {row['metrics']['recall@20']:.6f} | "
            f"{row['metrics']['ndcg@20']:.6f} |"
        )
    lines += [
        "",
        f"Budgeted and unbounded at {args.small_users:,} x {args.small_items:,}: identical "
        f"ranked lists and metrics (every metric at every K): {same}.",
    ]
    for row in real:
        lines.append(
            f"{row['data']} ({row['test_users']:,} test users), users per block by budget "
            f"{row['block_users']}: identical lists "
            f"{row['identical_lists']}, identical metrics {row['identical_metrics']} "
            f"(recall@20 {row['recall@20']:.4f}, ndcg@20 {row['ndcg@20']:.4f})."
        )
    (RESULTS / "eval_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

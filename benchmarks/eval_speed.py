"""One full-ranking valid pass over Amazon Baby's 19,445 users (MMRec protocol), median of runs.

Scores come from a LightGCN with its seeded initial weights (the evaluator's cost does not depend
on the weights). MMRec's own evaluator needs 3.8 s here (../shared/docs/mentor-reference.md).
Writes ``benchmarks/results/eval_speed.json``.

Usage: python benchmarks/eval_speed.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from common import RESULTS, SHARED, machine

from mentor.config import resolve_config
from mentor.data.dataset import load_dataset
from mentor.eval.context import build_model
from mentor.eval.evaluator import Evaluator
from mentor.semantic import SemanticGraphCache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "amazon-baby")
    args = parser.parse_args()
    config = resolve_config("lightgcn", {"data": {"path": str(args.data)}})
    dataset = load_dataset(args.data)
    device = torch.device("cpu")
    model = build_model(config, dataset, device, SemanticGraphCache(Path("/tmp")))
    evaluator = Evaluator(dataset, config.eval.topk, config.eval.batch_users, False)
    evaluator.evaluate(model, "valid", device)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        evaluator.evaluate(model, "valid", device)
        times.append(time.perf_counter() - start)
    users = len(evaluator.truth["valid"].users)
    result = {
        "machine": machine(),
        "users": users,
        "median_seconds": statistics.median(times),
        "seconds": times,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "eval_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"valid pass over {users:,} users: {result['median_seconds']:.3f} s "
        f"(median of {args.repeats}; MMRec: 3.8 s) on {result['machine']}"
    )


if __name__ == "__main__":
    main()

"""Peak memory of MENTOR's official behaviour at Amazon Clothing scale (synthetic interactions).

Clothing has 39,387 users, 23,033 items and 278,677 interactions; the all-users InfoNCE alone
would need a 39,387^2 float matrix (6.2 GB) per product if it were materialised. This builds a
seeded random data set of exactly those sizes (every user >= 5 items; image 4096-d and text
384-d random features), trains a few batches of the official configuration and reports the
process's peak resident memory and seconds per batch. Writes
``benchmarks/results/mentor_memory_clothing.json``.

Usage: python benchmarks/mentor_memory_clothing.py [--batches 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, machine

from mentor.config import resolve_config
from mentor.data.dataset import load_dataset
from mentor.data.sampler import BPRSampler
from mentor.eval.context import build_model
from mentor.semantic import SemanticGraphCache

USERS, ITEMS, INTERACTIONS = 39_387, 23_033, 278_677


def synthetic_clothing(folder: Path, seed: int = 2026) -> Path:
    """Random interactions of Clothing's sizes (80/10/10 per user) plus random features."""
    rng = np.random.default_rng(seed)
    extra = INTERACTIONS - 5 * USERS
    counts = 5 + np.bincount(rng.integers(0, USERS, extra), minlength=USERS)
    lines = ["userID\titemID\tx_label"]
    for user, count in enumerate(counts):
        items = rng.choice(ITEMS, size=count, replace=False)
        held = max(2, count // 5)
        labels = [0] * (count - held) + [1] * (held // 2) + [2] * (held - held // 2)
        lines += [f"{user}\t{i}\t{x}" for i, x in zip(items, labels, strict=True)]
    (folder / "clothing.inter").write_text("\n".join(lines) + "\n")
    np.save(folder / "image_feat.npy", rng.random((ITEMS, 4096), dtype=np.float32))
    np.save(folder / "text_feat.npy", rng.standard_normal((ITEMS, 384), dtype=np.float32))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic_clothing(Path(tmp))
        dataset = load_dataset(data)
        config = resolve_config("mentor", {"data": {"path": str(data)}})
        device = torch.device("cpu")
        model = build_model(config, dataset, device, SemanticGraphCache(Path(tmp) / "cache"))
        optimizer = torch.optim.Adam(model.parameters(), lr=config.train.learning_rate)
        sampler = BPRSampler(dataset.train, dataset.n_items, config.train.batch_size)
        generator = torch.Generator().manual_seed(0)
        times = []
        for index, batch in enumerate(sampler.epoch(generator)):
            if index == args.batches:
                break
            start = time.perf_counter()
            loss = sum(model.loss(batch, generator).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    result = {
        "machine": machine(),
        "users": USERS,
        "items": ITEMS,
        "batches": args.batches,
        "seconds_per_batch": statistics.median(times),
        "batches_per_epoch": len(sampler),
        "peak_rss_gb": peak,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mentor_memory_clothing.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

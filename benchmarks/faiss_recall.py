"""Approximate top-K (``index="faiss"``, HNSW) against exact on a synthetic 10^6-item catalogue.

Writes a synthetic bundle (clustered 64-d item vectors: 2,000 Gaussian clusters, users near
random clusters, no seen items), loads it with ``Recommender.load(index="exact")`` and
``index="faiss"`` and reports recall@10 of faiss against exact over the query users, the index
build time and the per-user query time of both (one user per call, and batches).

Writes benchmarks/results/faiss_recall.json. Usage:
python benchmarks/faiss_recall.py [--items 1000000] [--queries 500]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS, machine


def write_synthetic_bundle(folder: Path, n_items: int, n_users: int, dim: int, seed: int) -> None:
    """A bundle folder with clustered random representations (no checksums file)."""
    from safetensors.numpy import save_file

    from mentor.serve.format import FORMAT, VERSION

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((2000, dim)).astype(np.float32)
    items = centers[rng.integers(0, len(centers), n_items)]
    items += 0.6 * rng.standard_normal((n_items, dim)).astype(np.float32)
    users = centers[rng.integers(0, len(centers), n_users)]
    users += 0.6 * rng.standard_normal((n_users, dim)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "users": users,
            "items": items,
            "seen_indptr": np.zeros(n_users + 1, dtype=np.int64),
            "seen_indices": np.zeros(0, dtype=np.int64),
            "popularity": np.zeros(n_items, dtype=np.float32),
        },
        str(folder / "tensors.safetensors"),
    )
    manifest = {"format": FORMAT, "version": VERSION, "model": "synthetic", "cold_start": None}
    (folder / "bundle.json").write_text(json.dumps(manifest))
    ids = {"users": [f"u{i}" for i in range(n_users)], "items": [f"i{i}" for i in range(n_items)]}
    (folder / "ids.json").write_text(json.dumps(ids))
    (folder / "config.json").write_text("{}")
    (folder / "metrics.json").write_text("{}")


def per_user_ms(rec, users: list[str], k: int) -> float:
    """Mean milliseconds of one ``recommend`` call for one user."""
    start = time.perf_counter()
    for user in users:
        rec.recommend(user, k=k)
    return (time.perf_counter() - start) / len(users) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mentor-faiss")
    args = parser.parse_args()
    from mentor.serve import Recommender

    folder = args.work / f"synthetic-{args.items}"
    if not (folder / "bundle.json").exists():
        write_synthetic_bundle(folder, args.items, args.queries, args.dim, seed=0)
    exact = Recommender.load(folder, verify=False)
    start = time.perf_counter()
    approx = Recommender.load(folder, index="faiss", verify=False)
    build = time.perf_counter() - start
    users = exact.user_ids
    truth = exact.recommend(users, k=args.k)
    got = approx.recommend(users, k=args.k)
    recall = float(
        np.mean(
            [len(set(a.items) & set(t.items)) / args.k for a, t in zip(got, truth, strict=True)]
        )
    )
    sample = users[: min(100, len(users))]
    batch = users[: min(100, len(users))]
    timings = {}
    for name, rec in (("exact", exact), ("faiss", approx)):
        start = time.perf_counter()
        rec.recommend(batch, k=args.k)
        timings[name] = {
            "ms_per_single_user_call": round(per_user_ms(rec, sample, args.k), 3),
            "ms_per_user_in_batch_of_100": round(
                (time.perf_counter() - start) / len(batch) * 1e3, 3
            ),
        }
    result = {
        "machine": machine(),
        "items": args.items,
        "dim": args.dim,
        "queries": len(users),
        "k": args.k,
        "index": "faiss IndexHNSWFlat M=32 efConstruction=80, inner product, efSearch=max(64, 2k)",
        "build_seconds": round(build, 1),
        f"recall@{args.k}_vs_exact": round(recall, 4),
        "timings": timings,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "faiss_recall.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Memory of one batch request: 1,000 users ranked over a 1e6-item catalogue.

Each measurement runs in a fresh process holding a synthetic recommender (1e6 items and 10,000
users with 64-d float32 representations, 20 seen items per user). After a warm-up request of 10
users, a thread samples the process's resident memory every millisecond while one
``recommend`` of 1,000 users (k=20, seen items excluded) runs; the figure is the peak above the
memory just before the request. Scored in blocks within the default 64 MiB budget, and in one
pass (the budget set beyond the whole score matrix), side by side; and through HTTP: the same
recommender served by ``mentor serve``'s app (uvicorn, one process), one ``POST /recommend`` of
the same 1,000 users after a warm-up request of 10, the server process's resident memory sampled
from outside every millisecond (request parsing and the JSON answer included). The lists of all
three are checked to be equal. Writes benchmarks/results/serve_memory.json and .md.

Usage: python benchmarks/serve_memory.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, stamp

ITEMS, USERS, DIM, BATCH, K = 1_000_000, 10_000, 64, 1_000, 20
HTTP_ROW = "POST /recommend to the server, blocks (64 MiB budget)"


def rss(pid: int | str = "self") -> int:
    """Resident set size of a process (this one by default) in bytes (Linux)."""
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def synthetic(budget: int) -> tuple:
    """The synthetic recommender scoring within ``budget`` bytes, and the batch's user ids."""
    import numpy as np

    from mentor.serve.recommender import Catalog, Recommender

    rng = np.random.default_rng(0)
    seen = rng.integers(0, ITEMS, (USERS, 20)).astype(np.int64)
    seen.sort(axis=1)
    rec = Recommender(
        path=Path("synthetic"), model="synthetic",
        users=rng.standard_normal((USERS, DIM), dtype=np.float32),
        user_ids=[f"u{i}" for i in range(USERS)],
        seen_indptr=np.arange(0, 20 * USERS + 1, 20, dtype=np.int64),
        seen_indices=seen.ravel(), config={}, metrics={}, cold_start=None,
        catalog=Catalog.build(
            rng.standard_normal((ITEMS, DIM), dtype=np.float32),
            [f"i{i}" for i in range(ITEMS)],
            rng.integers(0, 100, ITEMS).astype(np.float32),
        ),
        trained=np.ones(USERS, dtype=bool), score_budget=budget,
    )  # fmt: skip
    return rec, [f"u{i}" for i in rng.choice(USERS, BATCH, replace=False)]


def measure(budget: int) -> dict:
    """Build the synthetic recommender, run one batch request, return its figures."""
    import threading

    rec, users = synthetic(budget)
    rec.recommend(users[:10], k=K)  # warm-up: imports, BLAS buffers
    idle = rss()
    peak = [idle]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    began = time.perf_counter()
    lists = rec.recommend(users, k=K)
    seconds = time.perf_counter() - began
    done.set()
    sampler.join()
    peak[0] = max(peak[0], rss())
    assert not any(r.fallback for r in lists)
    digest = hashlib.sha256(json.dumps([r.items for r in lists]).encode()).hexdigest()
    return {"above_idle_mb": (peak[0] - idle) / 2**20, "seconds": seconds, "lists": digest}


def serve_child(budget: int, port: int) -> None:
    """Serve the synthetic recommender with ``mentor serve``'s app (uvicorn, one process)."""
    import uvicorn

    from mentor.serve.app import create_app

    rec, _ = synthetic(budget)
    uvicorn.run(create_app(rec, api_key=""), host="127.0.0.1", port=port, log_level="warning")


def post(port: int, users: list[str]) -> dict:
    """``POST /recommend`` of ``users`` (k = K); the decoded answer."""
    import urllib.request

    body = json.dumps({"users": users, "k": K}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/recommend",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=600) as answer:
        return json.loads(answer.read())


def measure_http(budget: int) -> dict:
    """The same batch as :func:`measure`, sent over loopback to a server process; that
    process's resident memory is sampled from outside every millisecond."""
    import socket
    import threading
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, users = synthetic(1 << 26)  # the batch's ids, drawn as the server draws them
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve-child", str(budget), "--port", str(port)]
    )
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.5)
        post(port, users[:10])  # warm-up: the request and response paths, BLAS buffers
        time.sleep(0.5)
        idle = rss(server.pid)
        peak = [idle]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss(server.pid))
                time.sleep(0.001)

        sampler = threading.Thread(target=sample)
        sampler.start()
        began = time.perf_counter()
        answer = post(port, users)
        seconds = time.perf_counter() - began
        done.set()
        sampler.join()
    finally:
        server.terminate()
        server.wait(timeout=60)
    items = [r["items"] for r in answer["results"]]
    digest = hashlib.sha256(json.dumps(items).encode()).hexdigest()
    return {"above_idle_mb": (peak[0] - idle) / 2**20, "seconds": seconds, "lists": digest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child)))
        return
    if args.serve_child is not None:
        serve_child(args.serve_child, args.port)
        return
    from mentor import __version__
    from mentor.serve.recommender import SCORE_BUDGET

    modes = {"blocks (64 MiB budget)": SCORE_BUDGET, "one pass": 1 << 40}
    runs: dict[str, list[dict]] = {name: [] for name in [*modes, HTTP_ROW]}
    for _ in range(args.repeats):
        for name, budget in modes.items():  # interleaved, each in a fresh process
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(budget)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
        runs[HTTP_ROW].append(measure_http(SCORE_BUDGET))
    digests = {r["lists"] for rows in runs.values() for r in rows}
    rows = {
        name: {
            "above_idle_mb_median": statistics.median(r["above_idle_mb"] for r in rows),
            "seconds_median": statistics.median(r["seconds"] for r in rows),
            "runs": rows,
        }
        for name, rows in runs.items()
    }
    result = {
        **stamp(),
        "shape": {"items": ITEMS, "users": USERS, "dim": DIM, "batch": BATCH, "k": K},
        "same_lists": len(digests) == 1,
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_memory.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"1,000-user request over 1e6 items (d={DIM}, k={K}); {result['date']}, "
        f"{result['machine']}, mentor {__version__}; median of {args.repeats} fresh processes; "
        f"same lists in every run: {result['same_lists']}",
        "",
        "| scoring | peak memory above idle (MB) | seconds |",
        "|---|---:|---:|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['above_idle_mb_median']:.0f} | {row['seconds_median']:.2f} |"
        )
    (RESULTS / "serve_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

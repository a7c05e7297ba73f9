"""Hot reload under load: no failed request, every answer wholly from one bundle.

Trains two short LightGCN runs on Amazon Baby (seeds 1 and 2: two bundle versions with other
representations), serves the first through a symlink, and runs 16 client threads sending
``POST /recommend`` (20 fixed users, k=10) for ``--seconds``. Halfway, the symlink is pointed at
the second bundle and ``POST /admin/reload`` is called. Every answer is checked: status 200, and
its lists equal to what the bundle named by its ``X-Mentor-Bundle`` header gives. With several
workers the uvicorn supervisor replaces them one by one. Writes
benchmarks/results/serve_reload.{json,md}. Usage:
python benchmarks/serve_reload.py [--seconds 10] [--workers 1 2] [--threads 16]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import RESULTS, SHARED, stamp
from serve_common import make_bundle, server, train_run

KEY = "reload-benchmark"


def load(url: str, seconds: float, threads: int, users: list[str], expected: dict) -> dict:
    """Requests from ``threads`` threads for ``seconds``; counts and checks every answer."""
    stop = time.monotonic() + seconds
    counts = {"requests": 0, "failed": 0, "mixed": 0}
    versions: dict[str, int] = {}
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop:
                outcome, digest = "ok", ""
                try:
                    response = http.post(f"{url}/recommend", json={"users": users, "k": 10})
                    digest = response.headers.get("x-mentor-bundle", "")
                    if response.status_code != 200:
                        outcome = "failed"
                    elif [r["items"] for r in response.json()["results"]] != expected.get(digest):
                        outcome = "mixed"
                except httpx.HTTPError:
                    outcome = "failed"
                with lock:
                    counts["requests"] += 1
                    if outcome != "ok":
                        counts[outcome] += 1
                    versions[digest[:12]] = versions.get(digest[:12], 0) + 1

    pool = [threading.Thread(target=client) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return {**counts, "answers_per_bundle": versions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "amazon-baby")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mentor-reload")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    from mentor import __version__
    from mentor.serve import Recommender

    bundles = []
    for seed in (1, 2):
        run = train_run("lightgcn", args.data, args.work / f"run{seed}", 3, seed=seed)
        bundles.append(make_bundle(run, args.work / f"bundle{seed}"))
    recs = [Recommender.load(b) for b in bundles]
    users = list(recs[0].user_ids[:20])
    expected = {r.digest: [x.items for x in r.recommend(users, k=10)] for r in recs}
    rows = []
    for workers in args.workers:
        served = args.work / "served"
        served.unlink(missing_ok=True)
        served.symlink_to(bundles[0])
        with server(served, workers=workers, env={"MENTOR_API_KEY": KEY}) as url:
            outcome: dict = {}
            runner = threading.Thread(
                target=lambda out=outcome, u=url: out.update(
                    load(u, args.seconds, args.threads, users, expected)
                )
            )
            runner.start()
            time.sleep(args.seconds / 2)
            served.unlink()
            served.symlink_to(bundles[1])
            began = time.monotonic()
            reply = httpx.post(f"{url}/admin/reload", headers={"x-api-key": KEY}, timeout=120)
            runner.join()
            final = httpx.get(f"{url}/health").json()["bundle_digest"]
        rows.append(
            {
                "workers": workers,
                "reload_status": reply.status_code,
                "reload_seconds": round(time.monotonic() - began, 2),
                "ends_on_new_bundle": final == recs[1].digest,
                **outcome,
            }
        )
        print(rows[-1], flush=True)
    result = {
        **stamp(),
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_reload.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"Reload under load ({result['date']}, {result['machine']}, mentor {__version__}; "
        f"`{result['command']}`): {args.threads} threads of POST /recommend (20 users) for "
        f"{args.seconds:g} s, the bundle replaced halfway.",
        "",
        "| workers | requests | failed | answers not equal to their bundle's | answers per bundle "
        "| serving the new bundle at the end |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        per = ", ".join(f"{k}: {v}" for k, v in row["answers_per_bundle"].items())
        lines.append(
            f"| {row['workers']} | {row['requests']} | {row['failed']} | {row['mixed']} | {per} "
            f"| {row['ends_on_new_bundle']} |"
        )
    (RESULTS / "serve_reload.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

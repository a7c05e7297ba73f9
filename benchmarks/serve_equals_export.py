"""Done-when check: ``mentor serve`` answers ``/recommend`` with exactly ``mentor export``'s lists.

Trains a short run on ml-100k-mm (LightGCN by default; few epochs: only equality matters),
exports every user's top-K with ``mentor export``, bundles the run, starts ``mentor serve`` and
asks ``GET /recommend?user=U&k=K`` for every exported user over HTTP. Both exclude the items the
user was trained on. Writes benchmarks/results/serve_equals_export.json.

Usage: python benchmarks/serve_equals_export.py [--model lightgcn] [--epochs 5] [--k 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.parse
from pathlib import Path

from common import RESULTS, SHARED, machine
from serve_common import get_json, make_bundle, server, train_run


def read_export(path: Path) -> dict[str, list[str]]:
    """user -> items in rank order from a ``mentor export`` TSV."""
    lists: dict[str, list[str]] = {}
    for line in path.read_text().splitlines()[1:]:
        user, _, item = line.split("\t")
        lists.setdefault(user, []).append(item)
    return lists


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "ml-100k-mm")
    parser.add_argument("--model", default="lightgcn")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mentor-eq")
    args = parser.parse_args()
    import mentor

    work = args.work / args.model
    run = train_run(args.model, args.data, work / "run", args.epochs)
    export = work / f"top{args.k}.tsv"
    mentor.export(run, export, k=args.k)
    expected = read_export(export)
    bundle = make_bundle(run, work / "bundle")
    mismatched = []
    start = time.perf_counter()
    with server(bundle) as url:
        for user, items in expected.items():
            query = urllib.parse.urlencode({"user": user, "k": args.k})
            got = get_json(f"{url}/recommend?{query}")
            if got["items"] != items or got["fallback"]:
                mismatched.append({"user": user, "export": items, "serve": got["items"]})
    seconds = time.perf_counter() - start
    result = {
        "machine": machine(),
        "data": str(args.data),
        "model": args.model,
        "epochs": args.epochs,
        "k": args.k,
        "users_compared": len(expected),
        "identical_lists": len(expected) - len(mismatched),
        "mismatched": mismatched[:20],
        "http_seconds": round(seconds, 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"serve_equals_export_{args.model}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{args.model}: {result['identical_lists']} of {len(expected)} users get identical "
        f"top-{args.k} lists from serve and export"
    )


if __name__ == "__main__":
    main()

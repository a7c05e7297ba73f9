"""Data preparation at 1e7+ interactions: wall time and peak memory of ``prepare csv``.

Generates a ratings file of ``--lines`` lines (``user,item,rating,timestamp`` with a header;
Zipf-like user activity and item popularity, about 1 % repeated lines and 0.1 % lines without a
user) and an items file listing every item, then runs ``mentor data prepare csv`` (5-core,
interactions only, no feature encoders) in a fresh process per size and records the wall time,
the peak resident memory of that process (``ru_maxrss`` from ``wait4``) and what the 5-core kept.

``--compare REV`` runs the same command with the package as it was at git revision ``REV`` too
(a temporary worktree on ``PYTHONPATH``), side by side in one invocation, so that the memory of
the chunked reader is compared with reading the whole file at once, and the two output
folders' interaction and id files are compared byte for byte (``same_files``).

Writes ``benchmarks/results/prepare_scale.json``.
Usage: python benchmarks/prepare_scale.py [--lines 2000000 20000000] [--compare REV]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS, ROOT, stamp


def write_ratings(path: Path, lines: int, seed: int = 7) -> dict[str, int]:
    """A ratings CSV of ``lines`` rows, written in blocks of a million; returns its shape."""
    rng = np.random.default_rng(seed)
    n_users, n_items = max(lines // 20, 10), max(lines // 40, 10)
    user_weights = 1.0 / np.arange(1, n_users + 1) ** 0.6
    item_weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    user_p, item_p = user_weights / user_weights.sum(), item_weights / item_weights.sum()
    block = 1_000_000
    with path.open("w") as out:
        out.write("user,item,rating,timestamp\n")
        for start in range(0, lines, block):
            n = min(block, lines - start)
            users = rng.choice(n_users, size=n, p=user_p)
            items = rng.choice(n_items, size=n, p=item_p)
            ratings = rng.integers(1, 6, size=n)
            times = 1_500_000_000 + rng.integers(0, 10**8, size=n)
            repeat = rng.random(n) < 0.01  # a repeated (user, item, time) line
            users[1:][repeat[1:]] = users[:-1][repeat[1:]]
            items[1:][repeat[1:]] = items[:-1][repeat[1:]]
            times[1:][repeat[1:]] = times[:-1][repeat[1:]]
            user_text = np.char.add("u", users.astype(str)).astype(object)
            user_text[rng.random(n) < 0.001] = ""
            rows = zip(user_text, items, ratings, times, strict=True)
            out.write("".join(f"{u},i{i},{r},{t}\n" for u, i, r, t in rows))
    items_path = path.with_name("items.csv")
    items_path.write_text("item\n" + "".join(f"i{i}\n" for i in range(n_items)))
    return {"users": n_users, "items": n_items}


def run_prepare(ratings: Path, out: Path, pythonpath: str | None) -> dict[str, float]:
    """``mentor data prepare csv`` in a fresh process: wall seconds, peak RSS, kept rows."""
    cmd = [sys.executable, "-m", "mentor", "data", "prepare", "csv"]
    cmd += ["--interactions", str(ratings), "--items", str(ratings.with_name("items.csv"))]
    cmd += ["--user-col", "user", "--item-col", "item", "--time-col", "timestamp"]
    cmd += ["--rating-col", "rating", "--kcore", "5", "--out", str(out), "--quiet"]
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    error = proc.stderr.read() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"prepare failed: {error.strip().splitlines()[-1:]}")
    meta = json.loads((out / "meta.json").read_text())
    return {
        "seconds": round(wall, 1),
        "peak_rss_gb": round(usage.ru_maxrss / 1024**2, 3),
        "rows_read": meta["interactions"]["rows_read"],
        "kept_interactions": sum(meta["counts"][k] for k in ("train", "valid", "test")),
    }


def layout_digest(folder: Path) -> str:
    """SHA-256 over the ``.inter`` file and the two id mappings of a prepared folder."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.inter")) + sorted(folder.glob("*_id_mapping.tsv")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[2_000_000, 20_000_000])
    parser.add_argument("--compare", help="also run the package of this git revision")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="prepare-scale-") as tmp:
        work = Path(tmp)
        old_src = None
        if args.compare:
            tree = work / "old"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.compare],
                check=True,
                capture_output=True,
            )
            old_src = str(tree / "src")
        try:
            for lines in args.lines:
                folder = work / f"raw-{lines}"
                folder.mkdir()
                start = time.perf_counter()
                shape = write_ratings(folder / "ratings.csv", lines)
                generated = time.perf_counter() - start
                size = (folder / "ratings.csv").stat().st_size
                print(f"{lines:,} lines ({size / 1e9:.2f} GB) in {generated:.0f} s", flush=True)
                versions = [("chunked", None)] + ([(args.compare, old_src)] if old_src else [])
                for label, path in versions:
                    out = work / f"out-{lines}-{label}"
                    result = run_prepare(folder / "ratings.csv", out, path)
                    result["layout_sha256"] = layout_digest(out)
                    if label != "chunked":
                        result["same_files"] = result["layout_sha256"] == rows[-1]["layout_sha256"]
                    row = {"lines": lines, "file_gb": round(size / 1e9, 2), **shape}
                    rows.append({**row, "code": label, **result})
                    print(json.dumps(rows[-1]), flush=True)
                    payload = {**stamp(), "rows": rows}
                    (args.out / "prepare_scale.json").write_text(json.dumps(payload, indent=2))
        finally:
            if old_src:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "old")],
                    capture_output=True,
                )


if __name__ == "__main__":
    main()

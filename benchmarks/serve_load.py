"""Load test of ``mentor serve`` on loopback with wrk: one and two server processes, a Baby-size
LightGCN.

Trains LightGCN for a few epochs on Amazon Baby (quality does not matter here), bundles it,
starts the server with each worker count of ``--workers`` and measures with wrk (a C client,
one thread):

- ``GET /recommend?user=U&k=10`` (a random known user per request) at 1, 16 and 64 connections:
  requests/s and p50/p99 latency;
- ``POST /recommend`` with batches of 1,000 random users (k=10): users/s.

Writes benchmarks/results/serve_load.json and .md. Usage:
python benchmarks/serve_load.py [--data DIR] [--work DIR] [--seconds 10] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from common import RESULTS, SHARED, stamp
from serve_common import make_bundle, server, train_run

GET_LUA = """
local users = {%s}
math.randomseed(7)
request = function()
  return wrk.format("GET", "/recommend?k=10&user=" .. users[math.random(#users)])
end
"""
POST_LUA = """
local bodies = {%s}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
"""


def lua_string(text: str) -> str:
    """A Lua long-bracket string literal."""
    return "[==[" + text + "]==]"


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s and latency percentiles (ms) from ``wrk --latency`` output."""
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    out: dict[str, float] = {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])
    }
    for pct in ("50", "99"):
        match = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)", output)
        out[f"p{pct}_ms"] = float(match[1]) * units[match[2]]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    out["non_2xx"] = int(errors[1]) if errors else 0
    sock = re.search(r"Socket errors: (.*)", output)
    out["socket_errors"] = sock[1].strip() if sock else ""
    return out


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run (one thread) and its parsed numbers."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    output = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {"connections": connections, **parse_wrk(output)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "amazon-baby")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mentor-load")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    run = train_run("lightgcn", args.data, args.work / "run", args.epochs)
    bundle = make_bundle(run, args.work / "bundle")
    ids = json.loads((bundle / "ids.json").read_text())
    users = ids["users"]
    rng = random.Random(0)
    get_lua = args.work / "get.lua"
    sample = rng.sample(users, min(5000, len(users)))
    get_lua.write_text(GET_LUA % ",".join(lua_string(u) for u in sample))
    bodies = [json.dumps({"users": rng.sample(users, args.batch), "k": 10}) for _ in range(20)]
    post_lua = args.work / "post.lua"
    post_lua.write_text(POST_LUA % ",".join(lua_string(b) for b in bodies))

    from mentor import __version__

    results: dict = {
        **stamp(),
        "data": str(args.data),
        "users": len(users),
        "items": len(ids["items"]),
        "server": "mentor serve (uvicorn + uvloop + httptools), exact top-K, SQLite log",
        "client": "wrk, 1 thread, loopback, same machine",
        "seconds": args.seconds,
    }
    results["rows"] = []
    for workers in args.workers:
        with server(bundle, workers=workers) as url:
            wrk(url, get_lua, 4, 2)  # warm-up (and the first batch imports torch's top-k)
            wrk(f"{url}/recommend", post_lua, 2, 2)
            for c in (1, 16, 64):
                row = wrk(url, get_lua, c, args.seconds)
                results["rows"].append({"request": "GET", "workers": workers, **row})
            for c in (1, 2):
                row = wrk(f"{url}/recommend", post_lua, c, args.seconds)
                row["users_per_s"] = row["requests_per_s"] * args.batch
                results["rows"].append({"request": "POST", "workers": workers, **row})
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_load.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"# mentor serve load test ({results['date']}, {results['machine']}, mentor {__version__})",
        "",
        f"LightGCN bundle of {args.data.name}: {results['users']:,} users, "
        f"{results['items']:,} items; {results['server']}; {results['client']}, "
        f"{args.seconds} s per row; `{results['command']}`.",
        "",
        "| request | workers | connections | requests/s | users/s | p50 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        if row["request"] == "GET":
            name, rate = "GET /recommend k=10", f"{row['requests_per_s']:,.0f}"
            users = rate
        else:
            name, rate = f"POST /recommend {args.batch} users", f"{row['requests_per_s']:,.1f}"
            users = f"{row['users_per_s']:,.0f}"
        lines.append(
            f"| {name} | {row['workers']} | {row['connections']} | {rate} | {users} | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['non_2xx']} |"
        )
    (RESULTS / "serve_load.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

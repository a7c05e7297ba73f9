"""MF-BPR and LightGCN with MMRec's grids, chosen on valid Recall@20 only, next to popularity.

BPR: reg_weight in MMRec's grid. LightGCN: n_layers x reg_weight from MMRec's LightGCN grid
(a subset with --lightgcn-layers / --lightgcn-regs; runs accumulate across invocations).
Writes ``benchmarks/results/baselines_<name>.{json,md}``; runs live in ``runs/<name>``
(resumable).

Usage: python benchmarks/baselines.py [--name baby|ml-100k-mm] [--models bpr lightgcn]
                                      [--workers 2] [--lightgcn-layers 1 2] [--lightgcn-regs ...]
"""

from __future__ import annotations

import argparse
import json

from common import RESULTS, ROOT, SHARED, machine

from mentor.search import grid_search

BPR_REGS = [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]  # MMRec configs/model/BPR.yaml
LIGHTGCN_LAYERS = [1, 2, 3, 4]  # MMRec configs/model/LightGCN*.yaml
LIGHTGCN_REGS = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
PAPER = {"bpr": (0.0575, 0.0249), "lightgcn": (0.0754, 0.0328)}  # MENTOR paper, Table 2 (Baby)
DATA = {"baby": "amazon-baby", "ml-100k-mm": "ml-100k-mm"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", choices=list(DATA), default="baby")
    parser.add_argument("--models", nargs="+", default=["pop", "bpr", "lightgcn"])
    parser.add_argument("--bpr-regs", nargs="+", type=float, default=BPR_REGS)
    parser.add_argument("--lightgcn-layers", nargs="+", type=int, default=LIGHTGCN_LAYERS)
    parser.add_argument("--lightgcn-regs", nargs="+", type=float, default=LIGHTGCN_REGS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    data = SHARED / "data" / DATA[args.name]
    work = ROOT / "runs" / args.name
    grids = {
        "pop": {"train.seed": [999]},
        "bpr": {"model.reg_weight": args.bpr_regs},
        "lightgcn": {
            "model.n_layers": args.lightgcn_layers,
            "model.reg_weight": args.lightgcn_regs,
        },
    }
    out = {}
    for model in args.models:
        summary = grid_search(
            model,
            {"data": {"path": str(data)}},
            grids[model],
            work / model,
            workers=args.workers,
            threads=args.threads,
        )
        out[model] = summary
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"baselines_{args.name}.json"
    previous = json.loads(path.read_text())["models"] if path.exists() else {}
    for model, summary in out.items():
        runs = {
            json.dumps(r["params"], sort_keys=True): r
            for r in previous.get(model, {}).get("runs", [])
        }
        runs.update({json.dumps(r["params"], sort_keys=True): r for r in summary["runs"]})
        merged = list(runs.values())
        best = max(merged, key=lambda r: r["valid"]["recall@20"])  # valid only
        previous[model] = {**summary, "runs": merged, "best": best}
    path.write_text(json.dumps({"machine": machine(), "models": previous}, indent=2) + "\n")
    lines = [
        f"Machine: {machine()}",
        "",
        "| model | grid size | best on valid | valid R@20 | test R@20 | test N@20 | "
        "paper R@20 / N@20 | epochs (best) | s/epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, s in previous.items():
        b = s["best"]
        params = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in b["params"].items())
        paper = f"{PAPER[model][0]} / {PAPER[model][1]}" if model in PAPER else "-"
        if args.name != "baby":
            paper = "-"
        lines.append(
            f"| {model} | {len(s['runs'])} | {params} | {b['valid']['recall@20']:.4f} | "
            f"{b['test']['recall@20']:.4f} | {b['test']['ndcg@20']:.4f} | "
            f"{paper} | {b['epochs_run']} ({b['best_epoch']}) | "
            f"{b['seconds_per_epoch']:.2f} |"
        )
    lines += ["", "All runs (valid R@20 -> test R@20 / N@20):", ""]
    for model, s in previous.items():
        for r in s["runs"]:
            params = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in r["params"].items())
            lines.append(
                f"- {model} {params}: {r['valid']['recall@20']:.4f} -> "
                f"{r['test']['recall@20']:.4f} / {r['test']['ndcg@20']:.4f}"
            )
    (RESULTS / f"baselines_{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

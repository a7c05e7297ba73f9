"""Test quality of our models next to MMRec's own code: same data, split, settings and seeds.

For each model and seed, trains MMRec's implementation to its own early stop (``quick_start``
with one configuration, run from a checkout given by ``--mmrec``, outside this repository;
nothing of MMRec is imported here) and ours (``mentor train``) with the same hyper-parameters,
and reads both best-valid-epoch test Recall/NDCG@20. Reports the mean and sample sd over seeds
of each, and whether ours is within 2 sd (or 3 %, whichever is wider) of MMRec's mean. Both
choose the epoch on valid Recall@20 with patience 20. ``--epochs N`` caps both at N epochs (the
best valid epoch among them is reported), for models whose MMRec code is too slow on a CPU to run
to its early stop three times. Data: ``../shared/data/ml-100k-mm`` (genre features as MMRec's
image file, text as its text file).

A model whose reference code is its authors' repository (built on MMRec's framework) runs from
``--code MODEL=DIR`` (see ``speed_vs_mmrec.py``); each row records the repository and commit.
Settings the command does not give take the first value of the reference configuration's grid.

Writes ``benchmarks/results/quality_vs_mmrec.{json,md}``; rows of models not rerun are kept; each
row carries the date, machine, version and command that measured it (``stamp``).

Usage: python benchmarks/quality_vs_mmrec.py --mmrec ../mmrec --models layergcn
       [--code MODEL=DIR ...] [--set model=KEY=VALUE ...] [--seeds 999 1 2] [--threads 1]
       [--epochs N] [--reuse-mmrec] [--parallel]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import RESULTS, SHARED, machine, stamp
from speed_vs_mmrec import (
    MMREC_MODELS,
    framework_env,
    mmrec_data_config,
    mmrec_folder,
    reference_code,
    reference_label,
    thread_env,
)

from mentor.registry import model_names

MMREC_FULL = """
import json, os, sys
sys.path.insert(0, os.getcwd())
import torch
import yaml
torch.set_num_threads(int(sys.argv[4]))
import importlib
utils = os.environ.get("MMREC_UTILS", "utils")
Config = importlib.import_module(f"{utils}.configurator").Config
quick_start = importlib.import_module(f"{utils}.quick_start").quick_start
config = json.loads(sys.argv[3])
with open(f"configs/model/{sys.argv[1]}.yaml", encoding="utf-8") as f:
    grid = yaml.load(f.read(), Loader=Config._build_yaml_loader(None))
for name in grid.get("hyper_parameters", []):
    if name not in config:
        config[name] = grid[name][0] if isinstance(grid[name], list) else grid[name]
config["hyper_parameters"] = ["seed"]
quick_start(model=sys.argv[1], dataset=sys.argv[2], config_dict=config, save_model=False)
"""
BEST_TEST = re.compile(r"^Test: .*?recall@20: ([0-9.]+).*?ndcg@20: ([0-9.]+)", re.M)


def run_mmrec(
    framework: Path, root: Path, model: str, settings: dict, seed: int, threads: int, epochs: int
):
    """The reference code's best-valid-epoch test (Recall@20, NDCG@20) of one training, run in
    ``framework`` (the folder with ``utils/``; ``epochs`` > 0 caps it)."""
    name = MMREC_MODELS[model][0]
    config = {**mmrec_data_config(root, root / "ml-100k-mm"), "seed": [seed], **settings}
    if epochs > 0:
        config["epochs"] = epochs
    for cached in (root / "ml-100k-mm").glob("*.pt"):
        cached.unlink()
    cmd = [sys.executable, "-c", MMREC_FULL, name, "ml-100k-mm", json.dumps(config), str(threads)]
    proc = subprocess.run(
        cmd, cwd=framework, env=framework_env(framework, threads), capture_output=True, text=True
    )
    found = BEST_TEST.findall(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        raise SystemExit(f"MMRec {name} seed {seed} failed: {tail}")
    recall, ndcg = found[-1]
    return float(recall), float(ndcg)


def run_ours(
    data: Path, model: str, settings: dict, seed: int, threads: int, epochs: int, work: Path
):
    """Our best-valid-epoch test (Recall@20, NDCG@20) of one training (``epochs`` > 0 caps it)."""
    out = work / f"ours-{model}-{seed}"
    cmd = [sys.executable, "-m", "mentor.cli", "train", "--model", model, "--data", str(data)]
    cmd += ["--out", str(out), "--seed", str(seed), "--quiet", "--device", "cpu"]
    cmd += ["--set", f"train.threads={threads}"]
    if epochs > 0:
        cmd += ["--set", f"train.epochs={epochs}"]
    for key, value in settings.items():
        section = "train" if key == "learning_rate" else "model"
        cmd += ["--set", f"{section}.{key}={json.dumps(value)}"]
    subprocess.run(cmd, check=True, env=thread_env(threads), capture_output=True)
    test = json.loads((out / "metrics.json").read_text())["test"]
    return test["recall@20"], test["ndcg@20"]


def reusable(row: dict | None, settings: dict, args: argparse.Namespace) -> dict[int, tuple]:
    """MMRec's (Recall@20, NDCG@20) per seed from an earlier row trained the same way (same
    settings and epoch cap); seeds that row lacks are trained anew."""
    if not row or "mmrec_per_seed" not in row:
        return {}
    if (row["settings"], row.get("max_epochs")) != (settings, args.epochs or None):
        return {}
    return {seed: tuple(r) for seed, r in zip(row["seeds"], row["mmrec_per_seed"], strict=True)}


def summary(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmrec", type=Path, required=True, help="MMRec checkout (has src/)")
    parser.add_argument("--models", required=True, help="our names, comma-separated")
    parser.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="MODEL=DIR",
        help="run MODEL's reference code from this MMRec-style checkout (its authors' code)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="MODEL=KEY=VALUE", help="override a setting"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[999, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=0, help="cap both trainings (0: none)")
    parser.add_argument(
        "--reuse-mmrec",
        action="store_true",
        help="take MMRec's figures for seeds an earlier row with the same settings and epoch cap "
        "has (MMRec's code does not change; ours is always retrained)",
    )
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="run the reference seeds and ours side by side (two processes; figures of quality "
        "only, no timing is taken)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    data = SHARED / "data" / "ml-100k-mm"
    references = reference_code(args.mmrec, args.code, model_names())
    overrides: dict[str, dict] = {}
    for item in args.set:
        model, key, value = item.split("=", 2)
        overrides.setdefault(model, {})[key] = json.loads(value)
    path = args.out / "quality_vs_mmrec.json"
    new_rows = []
    earlier = {r["model"]: r for r in json.loads(path.read_text())["rows"]} if path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mmrec_folder(data, "genre_feat.npy", "text_feat.npy", work / "mmrec" / "ml-100k-mm")
        for model in args.models.split(","):
            settings = {**MMREC_MODELS[model][1], **overrides.get(model, {})}
            known = reusable(earlier.get(model), settings, args) if args.reuse_mmrec else {}

            def reference_lane(model=model, settings=settings, known=known) -> list[tuple]:
                return [
                    known.get(seed)
                    or run_mmrec(
                        references[model],
                        work / "mmrec",
                        model,
                        settings,
                        seed,
                        args.threads,
                        args.epochs,
                    )
                    for seed in args.seeds
                ]

            def our_lane(model=model, settings=settings) -> list[tuple]:
                return [
                    run_ours(data, model, settings, seed, args.threads, args.epochs, work)
                    for seed in args.seeds
                ]

            # the reference runs share one data folder (and its cache), so they stay in one lane
            with ThreadPoolExecutor(max_workers=2 if args.parallel else 1) as pool:
                lanes = pool.submit(reference_lane), pool.submit(our_lane)
                theirs, ours = lanes[0].result(), lanes[1].result()
            for seed, mine, ref in zip(args.seeds, ours, theirs, strict=True):
                print(model, seed, "MMRec", ref, "ours", mine, flush=True)
            row = {"model": model, "settings": settings, "seeds": args.seeds, "stamp": stamp()}
            row["reference"] = reference_label(model, references[model])
            row["max_epochs"] = args.epochs or None
            row["mmrec_per_seed"], row["ours_per_seed"] = theirs, ours
            for k, metric in enumerate(("recall@20", "ndcg@20")):
                row[f"ours_{metric}"] = summary([r[k] for r in ours])
                row[f"mmrec_{metric}"] = summary([r[k] for r in theirs])
                mean, sd = row[f"mmrec_{metric}"]
                row[f"within_{metric}"] = abs(row[f"ours_{metric}"][0] - mean) <= max(
                    2 * sd, 0.03 * mean
                )
            new_rows.append(row)
    # read the earlier rows only now: another call may have written some while this one ran
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    done = {r["model"] for r in new_rows}
    rows = [r for r in rows if r["model"] not in done] + new_rows
    payload = {"machine": machine(), "data": str(data), "rows": rows}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        f"Machine: {payload['machine']}; {args.threads} thread(s); ml-100k-mm.",
        "",
        "| model | settings | seeds | epochs | ours R@20 | MMRec R@20 | ours N@20 | MMRec N@20 "
        "| within |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            f"{r[f'{side}_{m}'][0]:.4f} ± {r[f'{side}_{m}'][1]:.4f}"
            for m in ("recall@20", "ndcg@20")
            for side in ("ours", "mmrec")
        ]
        within = "yes" if r["within_recall@20"] and r["within_ndcg@20"] else "no"
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        lines.append(
            f"| {r['model']} | {settings} | {len(r['seeds'])} | "
            f"{'at most ' + str(r['max_epochs']) if r.get('max_epochs') else 'to early stop'} | "
            + " | ".join(cells)
            + f" | {within} |"
        )
    (args.out / "quality_vs_mmrec.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Seconds per training epoch, peak memory and test figures of BPR and LightGCN next to RecBole's.

RecBole (``recbole`` on PyPI) is the general recommendation library most users would otherwise
pick; it has BPR and LightGCN but no multimodal model. Both codes train on the same data: the
ml-100k-mm interactions with their train/valid/test split, given to RecBole as atomic files
(``NAME.train.inter``, ``NAME.valid.inter``, ``NAME.test.inter`` through ``benchmark_filename``,
which keeps a split as given and skips RecBole's filtering), with the same settings: 64-d
embeddings, batch 2048, Adam at learning rate 1e-3, one uniform negative per positive, and per
model the same layers and regularisation (:data:`MODELS`). Each run is a fresh subprocess with
one BLAS/OpenMP thread and ``torch.set_num_threads``; ours is ``mentor train``, RecBole's a
driver (:data:`RECBOLE_DRIVER`) run by the Python of a separate environment that has RecBole
(``--recbole-python``; nothing of RecBole is imported here). For each run it records:

- seconds per training epoch: the median over the epochs after the first, the epoch's training
  only (ours from ``history.csv``; RecBole's around its trainer's ``_train_epoch``);
- peak resident memory of the whole process (``ru_maxrss`` from ``wait4``);
- test Recall@20 and NDCG@20 after exactly ``--epochs`` epochs (no early stop; full ranking,
  the user's train and valid items masked, as RecBole does for test; ours with
  ``eval.mask_valid_at_test=true``).

The runs of a seed go ours then RecBole's, model by model. Writes
``benchmarks/results/speed_vs_recbole.{json,md}``.

RecBole 1.2.1 predates numpy 2 and scipy 1.12, and the driver adds two shims in its own process
before importing RecBole (RecBole itself is not modified): its configuration maps the removed
aliases ``np.float``, ``np.int``, ... to ``np.float_``, ``np.complex_`` and ``np.unicode_``,
which numpy 2 removed as well, so the driver defines those three (as ``np.float64``,
``np.complex128``, ``np.str_``); and its LightGCN fills its graph with
``dok_matrix._update``, which scipy removed, so the driver defines it as an update of the
matrix's entry dictionary.

Setup: python -m venv /tmp/recbole-venv && /tmp/recbole-venv/bin/pip install torch==2.13.0
       recbole==1.2.1
Usage: python benchmarks/speed_vs_recbole.py [--recbole-python /tmp/recbole-venv/bin/python]
       [--models bpr,lightgcn] [--epochs 100] [--seeds 999 1 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import RESULTS, SHARED, mean_sd, stamp
from speed_vs_mmrec import last_error, run_process, thread_env

# Each model: RecBole's class name, its settings, and ours (``--set``), equal to each other.
# RecBole's BPR has no regularisation term, so ours runs with reg_weight 0; both LightGCNs add
# reg_weight times the batch's ego-embedding norms (EmbLoss without the power, RecBole's
# default) to the BPR loss.
MODELS: dict[str, tuple[str, dict[str, object], list[str]]] = {
    "bpr": ("BPR", {"embedding_size": 64}, ["model.embedding_size=64", "model.reg_weight=0"]),
    "lightgcn": (
        "LightGCN",
        {"embedding_size": 64, "n_layers": 2, "reg_weight": 1e-4, "require_pow": False},
        ["model.embedding_size=64", "model.n_layers=2", "model.reg_weight=1e-4"],
    ),
}
# Training settings both codes share (ours are also its defaults).
OURS_COMMON = ["train.batch_size=2048", "train.learning_rate=1e-3", "eval.mask_valid_at_test=true"]
RECBOLE_COMMON: dict[str, object] = {
    "train_batch_size": 2048,
    "learning_rate": 1e-3,
    "learner": "adam",
    "weight_decay": 0.0,
    "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
    "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
    "metrics": ["Recall", "NDCG"],
    "topk": [20],
    "metric_decimal_place": 6,
    "valid_metric": "Recall@20",
    "use_gpu": False,
    "show_progress": False,
    "worker": 0,
    "benchmark_filename": ["train", "valid", "test"],
    "USER_ID_FIELD": "user_id",
    "ITEM_ID_FIELD": "item_id",
    "load_col": {"inter": ["user_id", "item_id"]},
}
# Trains one RecBole model for a fixed number of epochs in the current folder, prints
# "RECBOLE_EPOCH <index> <seconds>" per epoch (its trainer's _train_epoch only) and
# "RECBOLE_TEST <json>" with the test metrics of the last epoch's model.
RECBOLE_DRIVER = """
import json, sys, time
import numpy as np
for old, new in (("float_", "float64"), ("complex_", "complex128"), ("unicode_", "str_")):
    if not hasattr(np, old):  # removed in numpy 2; RecBole's configuration maps to them
        setattr(np, old, getattr(np, new))
import scipy.sparse as sp
if not hasattr(sp.dok_matrix, "_update"):  # removed in scipy 1.12; RecBole's LightGCN calls it
    sp.dok_matrix._update = lambda self, values: self._dict.update(values)
import torch
torch.set_num_threads(int(sys.argv[4]))
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

name, dataset, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
epochs = int(sys.argv[5])
config = Config(model=name, dataset=dataset, config_dict=settings)
init_seed(config["seed"], config["reproducibility"])
data = create_dataset(config)
train, valid, test = data_preparation(config, data)
init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
model = get_model(name)(config, train._dataset).to(config["device"])
trainer = get_trainer(config["MODEL_TYPE"], name)(config, model)
trainer.eval_collector.data_collect(train)
for epoch in range(epochs):
    start = time.perf_counter()
    trainer._train_epoch(train, epoch, show_progress=False)
    print(f"RECBOLE_EPOCH {epoch} {time.perf_counter() - start:.6f}", flush=True)
result = trainer.evaluate(test, load_best_model=False, show_progress=False)
print("RECBOLE_TEST " + json.dumps({k: float(v) for k, v in result.items()}), flush=True)
"""
METRICS = ("recall@20", "ndcg@20")


def recbole_atomic(data: Path, folder: Path, name: str) -> dict[str, int]:
    """``data``'s interactions as RecBole atomic files ``folder/name.{train,valid,test}.inter``
    (user and item ids as tokens), split by its ``x_label`` (0 train, 1 valid, 2 test); returns
    the interaction count of each part."""
    inter = next(data.glob("*.inter"))
    with inter.open() as f:
        header = f.readline().rstrip("\n").split("\t")
    columns = [header.index(c) for c in ("userID", "itemID", "x_label")]
    table = np.loadtxt(inter, delimiter="\t", skiprows=1, usecols=columns, dtype=np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for label, part in enumerate(("train", "valid", "test")):
        rows = table[table[:, 2] == label]
        with (folder / f"{name}.{part}.inter").open("w") as out:
            out.write("user_id:token\titem_id:token\n")
            out.writelines(f"{u}\t{i}\n" for u, i in rows[:, :2])
        counts[part] = len(rows)
    return counts


def run_ours(
    data: Path, model: str, epochs: int, seed: int, threads: int, limit: float, work: Path
) -> dict:
    """``mentor train`` for ``epochs`` epochs, then test on the last epoch's model."""
    out = work / f"ours-{model}-{seed}"
    cmd = [sys.executable, "-m", "mentor.cli", "train", "--model", model, "--data", str(data)]
    cmd += ["--out", str(out), "--epochs", str(epochs), "--quiet", "--device", "cpu"]
    settings = ["train.patience=1000", f"train.threads={threads}", f"train.eval_every={epochs}"]
    settings += [f"train.seed={seed}", *OURS_COMMON, *MODELS[model][2]]
    for item in settings:
        cmd += ["--set", item]
    log = work / f"ours-{model}-{seed}.log"
    code, peak, wall = run_process(cmd, None, thread_env(threads), log, limit)
    row = {"model": model, "impl": "mentor", "seed": seed, "peak_rss_gb": peak, "wall": wall}
    history = out / "history.csv"
    if history.exists():
        with history.open() as f:
            row["epoch_seconds"] = [float(r["seconds"]) for r in csv.DictReader(f) if r["seconds"]]
    if (out / "metrics.json").exists():
        test = json.loads((out / "metrics.json").read_text())["test"]
        row["test"] = {k: test[k] for k in METRICS}
    row["status"] = status(code, log)
    return row


def run_recbole(
    python: str,
    folder: Path,
    name: str,
    model: str,
    epochs: int,
    seed: int,
    threads: int,
    limit: float,
    work: Path,
) -> dict:
    """RecBole's ``model`` for ``epochs`` epochs on the atomic files in ``folder/name``."""
    cls, settings, _ = MODELS[model]
    run_dir = work / f"recbole-{model}-{seed}"
    run_dir.mkdir()
    config = {
        **RECBOLE_COMMON,
        **settings,
        "data_path": str(folder),
        "checkpoint_dir": str(run_dir / "saved"),
        "seed": seed,
        "epochs": epochs,
    }
    cmd = [python, "-c", RECBOLE_DRIVER, cls, name, json.dumps(config), str(threads), str(epochs)]
    log = work / f"recbole-{model}-{seed}.log"
    code, peak, wall = run_process(cmd, run_dir, thread_env(threads), log, limit)
    row = {"model": model, "impl": "RecBole", "seed": seed, "peak_rss_gb": peak, "wall": wall}
    lines = log.read_text(errors="replace").splitlines()
    row["epoch_seconds"] = [float(ln.split()[2]) for ln in lines if ln.startswith("RECBOLE_EPOCH")]
    for line in lines:
        if line.startswith("RECBOLE_TEST "):
            test = json.loads(line.split(" ", 1)[1])
            row["test"] = {k: test[k] for k in METRICS}
    row["status"] = status(code, log)
    return row


def status(code: int | None, log: Path) -> str:
    """``ok``, ``time limit`` or ``failed: <last error line>``."""
    if code is None:
        return "time limit"
    return "ok" if code == 0 else f"failed: {last_error(log)}"


def seconds_per_epoch(row: dict) -> float | None:
    """The median over the epochs after the first (the first alone if it is the only one)."""
    seconds = row.get("epoch_seconds", [])
    timed = seconds[1:] or seconds
    return statistics.median(timed) if timed else None


def summary(runs: list[dict]) -> list[dict]:
    """Per model and code: s/epoch (median over runs), peak GB (largest), test figures (each
    seed's)."""
    out = []
    for model in dict.fromkeys(r["model"] for r in runs):
        for impl in ("mentor", "RecBole"):
            mine = [r for r in runs if r["model"] == model and r["impl"] == impl]
            if not mine:
                continue
            speeds = [s for s in map(seconds_per_epoch, mine) if s is not None]
            out.append(
                {
                    "model": model,
                    "impl": impl,
                    "seeds": [r["seed"] for r in mine],
                    "seconds_per_epoch": statistics.median(speeds) if speeds else None,
                    "peak_rss_gb": max(r["peak_rss_gb"] for r in mine),
                    **{m: [r["test"][m] for r in mine if "test" in r] for m in METRICS},
                    "status": sorted({r["status"] for r in mine}),
                }
            )
    return out


def write_results(runs: list[dict], args: argparse.Namespace, facts: dict) -> str:
    """``speed_vs_recbole.{json,md}``; returns the md."""
    rows = summary(runs)
    result = {**stamp(), **facts, "summary": rows, "runs": runs}
    lines = [
        f"{facts['data']} ({facts['interactions']}); {args.threads} thread(s) for both codes; "
        f"{args.epochs} epochs per run; RecBole {facts['recbole_version']}.",
        "",
        "| model | code | s/epoch | peak GB | test R@20 | test N@20 | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        spe = "-" if r["seconds_per_epoch"] is None else f"{r['seconds_per_epoch']:.2f}"
        lines.append(
            f"| {r['model']} | {r['impl']} | {spe} | {r['peak_rss_gb']:.2f} | "
            f"{mean_sd(r['recall@20'])} | {mean_sd(r['ndcg@20'])} | {len(r['seeds'])} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("speed_vs_recbole.json", json.dumps(result, indent=2) + "\n"),
        ("speed_vs_recbole.md", "\n".join(lines) + "\n"),
    ):
        tmp = args.out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(args.out / name)
    return "\n".join(lines)


def recbole_version(python: str) -> str:
    """The version of the recbole package that ``python`` imports."""
    code = "from importlib.metadata import version; print(version('recbole'))"
    found = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return found.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recbole-python",
        default="/tmp/recbole-venv/bin/python",
        help="a Python whose environment has recbole (and torch)",
    )
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "ml-100k-mm")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--epochs", type=int, default=100, help="epochs per run, both codes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[999, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=float, default=1800.0, help="seconds per run at most")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, help="keep runs and logs here (default: a temp dir)")
    args = parser.parse_args()
    models = args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown models {unknown}; this compares {list(MODELS)}")
    facts: dict = {"data": args.data.name, "recbole_version": recbole_version(args.recbole_python)}
    facts |= {"epochs": args.epochs, "threads": args.threads, "models": MODELS}
    runs: list[dict] = []
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tempfile.mkdtemp(prefix="recbole-", dir=args.work)) if args.work else Path(tmp)
        name = args.data.name.replace("-", "_")
        counts = recbole_atomic(args.data, work / "atomic" / name, name)
        facts["interactions"] = ", ".join(f"{v:,} {k}" for k, v in counts.items())
        for seed in args.seeds:
            for model in models:
                found = [
                    run_ours(args.data, model, args.epochs, seed, args.threads, args.limit, work),
                    run_recbole(
                        args.recbole_python,
                        work / "atomic",
                        name,
                        model,
                        args.epochs,
                        seed,
                        args.threads,
                        args.limit,
                        work,
                    ),
                ]
                for run in found:
                    spe = seconds_per_epoch(run)
                    test = run.get("test", {})
                    print(
                        f"{model:<9} {run['impl']:<8} seed {seed:<4} "
                        f"{'-' if spe is None else f'{spe:.3f}':>7} s/epoch "
                        f"{run['peak_rss_gb']:5.2f} GB  R@20 {test.get('recall@20', '-')}  "
                        f"N@20 {test.get('ndcg@20', '-')}  {run['status']}",
                        flush=True,
                    )
                runs += found
                write_results(runs, args, facts)  # after every pair: an interruption keeps them
    print(write_results(runs, args, facts))


if __name__ == "__main__":
    main()

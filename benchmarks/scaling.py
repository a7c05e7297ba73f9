"""Scaling study: seconds per epoch, evaluation seconds and peak memory of LightGCN, FREEDOM and
MENTOR on synthetic power-law data of 1e5, 1e6 and 1e7 interactions, with a memory model.

Data (deterministic from ``--seed``, written to a temporary folder, never into the repository):
for N interactions, N // 100 items and about N / 15 users. Each user has 10 + Zipf(2) - 1
interactions (at most a quarter of the catalogue; mean about 14.6), users are drawn until the
counts add up to N exactly; items are drawn with Zipf-like popularity (weight of the r-th most
popular item ~ (r + 10) ** -0.8, ranks shuffled over the ids), without repeats per user. Per user
the rows are put in a random order and split 8:1:1 (at least one valid and one test row: x_label
2 for the last round(N_u / 10) rows, 1 for the round(N_u / 10) before, 0 for the rest). The
folder holds ``scale.inter`` (userID, itemID, x_label), ``text_feat.npy`` (384-d) and
``image_feat.npy`` (``--image-dim``, 64 by default; 0 leaves it out): per item its cluster's
centre plus noise (one cluster per 100 items), so the kNN item graph has structure.

Every measurement runs in a fresh process with one torch thread (``OMP_NUM_THREADS=1``):

* ``load``: ``load_dataset`` of the folder (the ``.inter`` parser), seconds and peak RSS;
* ``knn``: the item semantic graph FREEDOM and MENTOR share (image 0.1, text 0.9, k = 10),
  built once per size into the run's cache, seconds and peak RSS;
* per model: the data set, the evaluator, the model (``build_model``), the sampler and the
  optimiser as ``mentor train`` builds them, then the batches of epoch 1 exactly as the
  training loop runs them. The whole epoch runs when it fits ``--batches`` batches and
  ``--train-limit`` seconds; otherwise the first batches (at least two: the second runs with the
  Adam moments the first step allocates) are timed and the epoch extrapolated: epoch set-up
  (edge dropout, shuffling, negatives) + the mean of the timed batches after the first x the
  epoch's batches. Then one full-sort valid pass: ``prepare_scoring`` and the
  ranking of at most ``--eval-users`` users (all of them when they are fewer), the ranking time
  scaled to every valid user otherwise. The peak RSS is the process's high-water mark from the
  start to the end of the evaluation (``/proc/self/status`` VmHWM); the resident memory and the
  high-water mark of every phase are recorded as well (the mark is reset between phases).

A run is stopped at ``--run-limit`` seconds or ``--memory-limit-gb`` resident and marked so; a
model whose batch at the previous size times the size ratio exceeds ``--run-limit`` is not
started (a lower bound: every batch propagates the whole graph). Results are written after
every run, so an interrupted run keeps what finished; ``--keep`` measures the given sizes and
models again and keeps the other rows, each row with the stamp of the invocation that measured
it. The data are generated in a child process, so that the processes this one starts do not
inherit a large ``ru_maxrss`` (Linux carries it across fork and exec).

1 vs 2 processes: ``mentor train --nproc 1`` and ``--nproc 2`` (torchrun, gloo, one torch
thread per process) of ``--ddp-models`` at ``--ddp-size`` interactions for ``--ddp-epochs``
epochs (validation after the last); the median seconds per epoch and each rank's peak RSS
(``peak_memory_mb_per_rank``).

The memory model (:func:`memory_model`) counts the tensors each model holds, as bytes per user,
per item, per train edge and per held-out (valid or test) row plus constants; its prediction is
compared with the measured peaks, and gives the largest size that fits in 24 GB at this
data's proportions, as counted and scaled by measured / predicted at the largest size
measured. Exponents: least squares of log(time) and log(peak) against log(interactions) over
the sizes measured.

Writes benchmarks/results/scaling.json (``benchmarks/render.py`` draws docs/img/scaling.png
from it). About 30 minutes on 2 cores. Usage:
python benchmarks/scaling.py [--sizes 100000 1000000 10000000] [--models lightgcn freedom mentor]
python benchmarks/scaling.py --analyse-only   # the exponents and memory model again
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS, stamp

SIZES = [100_000, 1_000_000, 10_000_000]
MODELS = ["lightgcn", "freedom", "mentor"]
INTERACTIONS_PER_ITEM = 100
MIN_ACTIVITY = 10
TEXT_DIM = 384
IMAGE_DIM = 64
ITEMS_PER_CLUSTER = 100
#: the item kNN graph of FREEDOM's and MENTOR's defaults with an image and a text modality
SEMANTIC_WEIGHTS = {"image": 0.1, "text": 0.9}
KNN_K = 10
#: batches timed at least: the second one runs with the Adam moments allocated by the first
MIN_BATCHES = 2
MEMORY_BUDGET_GB = 24
OUT = RESULTS / "scaling.json"
QUIET = ("phases", "stamp", "batch_seconds_each")


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def generate(folder: Path, interactions: int, seed: int, image_dim: int) -> dict[str, int]:
    """Write the synthetic data set of the module docstring into ``folder``; its sizes."""
    import pandas as pd

    rng = np.random.default_rng([seed, interactions])
    n_items = interactions // INTERACTIONS_PER_ITEM
    cap = max(MIN_ACTIVITY, n_items // 4)
    draw = MIN_ACTIVITY - 1 + np.minimum(rng.zipf(2.0, interactions // 4), cap - MIN_ACTIVITY + 1)
    total = np.cumsum(draw)
    n_users = int(np.searchsorted(total, interactions, side="right"))
    counts = draw[:n_users].copy()
    counts[-1] += interactions - int(counts.sum())  # the last user takes the remainder
    user = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    cdf = np.cumsum((np.arange(n_items) + 10.0) ** -0.8)
    ids = rng.permutation(n_items)

    def items(size: int) -> np.ndarray:
        ranks = np.minimum(np.searchsorted(cdf, rng.random(size) * cdf[-1]), n_items - 1)
        return ids[ranks]

    item = items(interactions)
    while True:  # redraw repeats of a (user, item) pair until there are none
        keys = user * n_items + item
        order = np.argsort(keys, kind="stable")
        repeat = order[1:][keys[order][1:] == keys[order][:-1]]
        if not len(repeat):
            break
        item[repeat] = items(len(repeat))
    order = np.lexsort((rng.random(interactions), user))  # per user, a random order
    item = item[order]
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(interactions) - np.repeat(first, counts)
    held = np.maximum(1, np.rint(counts / 10).astype(np.int64))
    from_end = np.repeat(counts, counts) - position  # 1 for a user's last row
    label = np.where(from_end <= np.repeat(held, counts), 2, 0)
    label = np.where((label == 0) & (from_end <= 2 * np.repeat(held, counts)), 1, label)
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"userID": user, "itemID": item, "x_label": label})
    frame.to_csv(folder / "scale.inter", sep="\t", index=False)
    clusters = rng.integers(0, max(1, n_items // ITEMS_PER_CLUSTER), n_items)
    for name, dim in (("text", TEXT_DIM), ("image", image_dim)):
        if dim:
            centres = rng.standard_normal((clusters.max() + 1, dim), dtype=np.float32)
            noise = rng.standard_normal((n_items, dim), dtype=np.float32)
            np.save(folder / f"{name}_feat.npy", centres[clusters] + noise)
    return {
        "users": n_users,
        "items": n_items,
        "interactions": interactions,
        "train": int((label == 0).sum()),
        "valid": int((label == 1).sum()),
        "test": int((label == 2).sum()),
    }


# ---------------------------------------------------------------------------------------------
# measuring, in a child process
# ---------------------------------------------------------------------------------------------
def rss_mb() -> float:
    """Resident and high-water resident memory of this process, MiB."""
    return _status("VmRSS")


def hwm_mb() -> float:
    return _status("VmHWM")


def _status(key: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def reset_hwm() -> None:
    """Start a new high-water mark at the current resident size (Linux: clear_refs 5)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


class Recorder:
    """Appends one JSON line per phase to a file the parent reads, even after a kill."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.peak = 0.0
        self.clock = time.perf_counter()

    def phase(self, name: str, **fields: object) -> None:
        """Close a phase: its seconds, resident and peak MiB and ``fields``; start the next."""
        now = time.perf_counter()
        peak = hwm_mb()
        self.peak = max(self.peak, peak)
        row = {"phase": name, "seconds": now - self.clock, "rss_mb": rss_mb(), "peak_mb": peak}
        row.update(fields)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        reset_hwm()
        self.clock = time.perf_counter()


def child_load(folder: Path, arrays: Path, log: Path) -> None:
    """Parse the folder with ``load_dataset``; save its arrays for the model runs."""
    rec = Recorder(log)
    from mentor.data.dataset import load_dataset

    rec.phase("imports")
    dataset = load_dataset(folder)
    rec.phase("load", users=dataset.n_users, items=dataset.n_items)
    arrays.mkdir(parents=True, exist_ok=True)
    for split, rows in dataset.splits.items():
        np.save(arrays / f"{split}.npy", rows)
    (arrays / "sizes.json").write_text(
        json.dumps({"users": dataset.n_users, "items": dataset.n_items})
    )


def _dataset(folder: Path, arrays: Path):  # noqa: ANN202
    from mentor.data.dataset import Dataset, read_features

    sizes = json.loads((arrays / "sizes.json").read_text())
    splits = {s: np.load(arrays / f"{s}.npy") for s in ("train", "valid", "test")}
    features = {
        p.name[: -len("_feat.npy")]: read_features(p, sizes["items"])
        for p in sorted(folder.glob("*_feat.npy"))
    }
    return Dataset(
        name=folder.name,
        path=folder,
        n_users=sizes["users"],
        n_items=sizes["items"],
        splits=splits,
        features=features,
    )


def child_knn(folder: Path, arrays: Path, cache: Path, log: Path) -> None:
    """Build the shared item kNN graph into ``cache``."""
    rec = Recorder(log)
    from mentor.semantic import SemanticGraphCache

    rec.phase("imports")
    dataset = _dataset(folder, arrays)
    weights = {m: w for m, w in SEMANTIC_WEIGHTS.items() if m in dataset.features}
    if len(weights) == 1:
        weights = {m: 1.0 for m in weights}
    rec.phase("data")
    graph = SemanticGraphCache(cache).get(dataset, weights, KNN_K)
    rec.phase("knn", nnz=int(graph.matrix.values().numel()))


def child_model(
    model_name: str,
    folder: Path,
    arrays: Path,
    cache: Path,
    log: Path,
    batches: int,
    train_limit: float,
    eval_users: int,
) -> None:
    """One model: build it as ``mentor train`` does, train (part of) epoch 1, evaluate."""
    rec = Recorder(log)
    import torch

    from mentor.config import resolve_config
    from mentor.data.sampler import BPRSampler
    from mentor.eval.context import build_model
    from mentor.eval.evaluator import Evaluator, full_ranking
    from mentor.semantic import SemanticGraphCache
    from mentor.training.loop import make_optimizer, scheduled_lr

    torch.set_num_threads(1)
    device = torch.device("cpu")
    rec.phase("imports")
    dataset = _dataset(folder, arrays)
    rec.phase("data")
    config = resolve_config(model_name, {})
    ev = config.eval
    evaluator = Evaluator(
        dataset, ev.topk, ev.batch_users, ev.mask_valid_at_test, ev.score_budget_mb
    )
    rec.phase("evaluator")
    model = build_model(config, dataset, device, SemanticGraphCache(cache))
    n_params = sum(p.numel() for p in model.parameters())
    rec.phase("model", parameters=n_params)
    sample_gen = torch.Generator().manual_seed(config.train.seed)
    model_gen = torch.Generator().manual_seed(config.train.seed + 1)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(config.train, params)
    sampler = BPRSampler(
        dataset.train, dataset.n_items, config.train.batch_size, model.uses_negatives
    )
    rec.phase("sampler", batches_per_epoch=len(sampler))
    # the body of the training loop (mentor.training.loop._train) for one process
    model.train()
    for group in optimizer.param_groups:
        group["lr"] = scheduled_lr(config.train, 1)
    start = time.perf_counter()
    model.on_epoch_start(1, model_gen)
    epoch = sampler.epoch(sample_gen)
    first = next(epoch)
    setup = time.perf_counter() - start
    times: list[float] = []
    began = time.perf_counter()
    for batch in itertools.chain([first], epoch):
        tick = time.perf_counter()
        batch = batch.to(device)
        terms = model.loss(batch, model_gen)
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        optimizer.step()
        for value in terms.values():
            float(value.detach())
        times.append(time.perf_counter() - tick)
        with open(log, "a") as handle:
            handle.write(json.dumps({"phase": "batch", "seconds": times[-1]}) + "\n")
        over = time.perf_counter() - began > train_limit
        if len(times) >= batches or (over and len(times) >= MIN_BATCHES):
            break
    full = len(times) == len(sampler)
    epoch_seconds = time.perf_counter() - start
    timed = times[1:] if len(times) > 1 else times
    per_batch = sum(timed) / len(timed)
    rec.phase(
        "train",
        batches_timed=len(times),
        batches_per_epoch=len(sampler),
        full_epoch=full,
        epoch_setup_seconds=setup,
        batch_seconds=per_batch,
        epoch_seconds=epoch_seconds if full else setup + per_batch * len(sampler),
    )
    truth = evaluator.truth["valid"]
    users = truth.users[:eval_users] if eval_users else truth.users
    began = time.perf_counter()
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        prepare = time.perf_counter() - began
        full_ranking(
            model.score,
            users,
            evaluator.exclude["valid"],
            max(evaluator.ks),
            evaluator.batch_users,
            device,
            evaluator.score_budget,
        )
    ranking = time.perf_counter() - began - prepare
    rec.phase(
        "eval",
        valid_users=len(truth.users),
        ranked_users=len(users),
        prepare_seconds=prepare,
        rank_seconds=ranking,
        eval_seconds=prepare + ranking * len(truth.users) / len(users),
    )


# ---------------------------------------------------------------------------------------------
# running the children
# ---------------------------------------------------------------------------------------------
def spawn(
    argv: list[str], log: Path, env: dict[str, str], run_limit: float, memory_limit_mb: float
) -> tuple[list[dict], str]:
    """Run this script as a child with ``argv``, stopping it past ``run_limit`` seconds or
    ``memory_limit_mb`` resident; its phase records and ``ok``, ``time limit``, ``memory
    limit`` or ``failed: ...``."""
    log.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *argv]
    began = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    status = "ok"
    while proc.poll() is None:
        time.sleep(0.2)
        try:
            with open(f"/proc/{proc.pid}/status") as handle:
                rss = next(int(x.split()[1]) for x in handle if x.startswith("VmRSS:")) / 1024
        except (OSError, StopIteration):
            rss = 0.0
        if rss > memory_limit_mb or time.monotonic() - began > run_limit:
            status = "memory limit" if rss > memory_limit_mb else "time limit"
            proc.kill()
            proc.wait()
            break
    errors = proc.stderr.read() if proc.stderr else ""
    if status == "ok" and proc.returncode != 0:
        status = f"failed: {errors.strip().splitlines()[-1] if errors.strip() else proc.returncode}"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return records, status


def summarise(records: list[dict]) -> dict:
    """The figures of a model run from its phase records."""
    phases = {r["phase"]: r for r in records if r["phase"] != "batch"}
    out: dict = {
        "phases": [
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
            for r in records
            if r["phase"] != "batch"
        ],
        "batch_seconds_each": [round(r["seconds"], 4) for r in records if r["phase"] == "batch"],
    }
    if phases:
        out["peak_rss_mb"] = round(max(r["peak_mb"] for r in phases.values()), 1)
        out["base_rss_mb"] = round(phases["imports"]["rss_mb"], 1)
    if "train" in phases:
        t = phases["train"]
        for key in ("full_epoch", "batches_timed", "batches_per_epoch"):
            out[key] = t[key]
        out["epoch_seconds"] = round(t["epoch_seconds"], 3)
        out["batch_seconds"] = round(t["batch_seconds"], 4)
        out["epoch_setup_seconds"] = round(t["epoch_setup_seconds"], 3)
        out["train_peak_rss_mb"] = round(t["peak_mb"], 1)
    if "eval" in phases:
        e = phases["eval"]
        out["eval_seconds"] = round(e["eval_seconds"], 3)
        out["eval_ranked_users"] = e["ranked_users"]
        out["valid_users"] = e["valid_users"]
    return out


def save(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=RESULTS,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def cpu_flags() -> str:
    """The vector extensions of this CPU that matter to torch's kernels."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return " ".join(f for f in line.split(":", 1)[-1].split() if f in wanted)


# ---------------------------------------------------------------------------------------------
# 1 vs 2 processes
# ---------------------------------------------------------------------------------------------
def ddp_run(model: str, data: Path, out: Path, nproc: int, epochs: int, env: dict) -> dict:
    """``mentor train --nproc N`` of ``model``; seconds per epoch and peak RSS per rank."""
    cmd = [sys.executable, "-m", "mentor", "train", "--model", model, "--data", str(data)]
    cmd += ["--out", str(out), "--epochs", str(epochs), "--quiet", "--nproc", str(nproc)]
    cmd += ["--set", "train.threads=1", "--set", f"train.eval_every={epochs}"]
    cmd += ["--set", "train.patience=1000"]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "metrics.json").read_text())
    peaks = metrics.get("peak_memory_mb_per_rank") or [metrics["peak_memory_mb"]]
    return {
        "model": model,
        "processes": nproc,
        "epochs": epochs,
        "seconds_per_epoch": round(metrics["seconds_per_epoch"], 3),
        "peak_rss_mb_per_rank": [round(p["rss"]) for p in peaks],
    }


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def too_slow(runs: list[dict], model: str, size: int, limit: float) -> str:
    """Why ``model`` is not started at ``size``: its batch at the largest smaller size measured
    times the size ratio (a lower bound: every batch propagates the whole graph) is over
    ``limit`` seconds; empty when it is not."""
    previous = [
        r for r in runs if r["model"] == model and r["interactions"] < size and "batch_seconds" in r
    ]
    if not previous:
        return ""
    slow = max(previous, key=lambda r: r["interactions"])
    bound = slow["batch_seconds"] * size / slow["interactions"]
    if bound <= limit:
        return ""
    return (
        f"one batch would take at least {bound:,.0f} s "
        f"({size // slow['interactions']}x the {slow['interactions']:,} batch)"
    )


def generate_in_child(folder: Path, size: int, args: argparse.Namespace, out: Path) -> dict:
    """:func:`generate` in a child process: this one stays small, so the processes it starts
    do not inherit a large peak (Linux carries ``ru_maxrss`` across fork and exec, and
    ``mentor train`` reports ``ru_maxrss``)."""
    argv = [str(folder), str(size), str(args.seed), str(args.image_dim), str(out)]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "generate", *argv]
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def child_main(argv: list[str]) -> None:
    kind, rest = argv[0], argv[1:]
    if kind == "generate":
        sizes = generate(Path(rest[0]), int(rest[1]), int(rest[2]), int(rest[3]))
        Path(rest[4]).write_text(json.dumps(sizes))
    elif kind == "load":
        child_load(Path(rest[0]), Path(rest[1]), Path(rest[2]))
    elif kind == "knn":
        child_knn(Path(rest[0]), Path(rest[1]), Path(rest[2]), Path(rest[3]))
    else:
        folder, arrays, cache, log = map(Path, rest[:4])
        child_model(kind, folder, arrays, cache, log, int(rest[4]), float(rest[5]), int(rest[6]))


def phase_figures(records: list[dict], status: str, phase: str) -> dict:
    """Status, seconds and peak RSS (MB) of one phase of a child's records."""
    found = {r["phase"]: r for r in records}.get(phase, {})
    return {
        "status": status,
        "seconds": round(found.get("seconds", math.nan), 2),
        "peak_rss_mb": round(found.get("peak_mb", math.nan), 1),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=SIZES)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-dim", type=int, default=IMAGE_DIM)
    parser.add_argument("--batches", type=int, default=1000, help="most batches timed per run")
    parser.add_argument("--train-limit", type=float, default=60.0, help="seconds of batches")
    parser.add_argument("--run-limit", type=float, default=420.0, help="seconds per process")
    parser.add_argument("--memory-limit-gb", type=float, default=14.0)
    parser.add_argument("--eval-users", type=int, default=20_000)
    parser.add_argument("--ddp-size", type=int, default=100_000)
    parser.add_argument("--ddp-models", nargs="*", default=["lightgcn", "mentor"])
    parser.add_argument("--ddp-epochs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="temporary folder's parent")
    parser.add_argument(
        "--keep", action="store_true", help="keep the rows of the existing results file"
    )
    parser.add_argument("--out", type=Path, default=OUT, help="the results file")
    parser.add_argument(
        "--analyse-only",
        action="store_true",
        help="recompute the exponents and the memory model of the existing results file",
    )
    args = parser.parse_args()
    if args.analyse_only:
        result = json.loads(args.out.read_text())
        analyse(result)
        save(result, args.out)
        return

    old = json.loads(args.out.read_text()) if args.keep and args.out.exists() else {}
    result = {
        **stamp(),
        "settings": {
            "seed": args.seed,
            "image_dim": args.image_dim,
            "text_dim": TEXT_DIM,
            "batches": args.batches,
            "train_limit_s": args.train_limit,
            "run_limit_s": args.run_limit,
            "memory_limit_gb": args.memory_limit_gb,
            "eval_users": args.eval_users,
            "torch_threads": 1,
        },
        "sizes": old.get("sizes", []),
        "runs": old.get("runs", []),
        "ddp": old.get("ddp", {}),
    }
    result.setdefault("commit", commit())
    result.setdefault("cpu_flags", cpu_flags())
    work = Path(tempfile.mkdtemp(prefix="mentor-scaling-", dir=args.work))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MENTOR_CACHE": str(work / "cache")}
    limit_mb = args.memory_limit_gb * 1024
    try:
        for size in sorted(args.sizes):
            folder, arrays = work / f"n{size}" / "scale", work / f"n{size}" / "arrays"
            began = time.perf_counter()
            sizes = generate_in_child(folder, size, args, work / "sizes.json")
            sizes["stamp"] = stamp()
            sizes["generate_seconds"] = round(time.perf_counter() - began, 2)
            records, status = spawn(
                ["load", str(folder), str(arrays), str(work / "log")],
                work / "log",
                env,
                args.run_limit,
                limit_mb,
            )
            sizes["load"] = phase_figures(records, status, "load")
            if status != "ok":
                raise SystemExit(f"loading {size:,} interactions: {status}")
            if any(m in ("freedom", "mentor") for m in args.models):
                records, status = spawn(
                    [
                        "knn",
                        str(folder),
                        str(arrays),
                        str(work / "cache" / "graphs"),
                        str(work / "log"),
                    ],
                    work / "log",
                    env,
                    args.run_limit * 3,
                    limit_mb,
                )
                sizes["knn"] = phase_figures(records, status, "knn")
                sizes["knn"]["nnz"] = {r["phase"]: r for r in records}.get("knn", {}).get("nnz")
            result["sizes"] = [s for s in result["sizes"] if s["interactions"] != size]
            result["sizes"].append(sizes)
            save(result, args.out)
            print(json.dumps(sizes), flush=True)
            for model in args.models:
                row = {"model": model, "interactions": size, "stamp": stamp()}
                reason = too_slow(result["runs"], model, size, args.run_limit)
                if reason:
                    row["status"], row["reason"] = "not run", reason
                else:
                    argv = [model, str(folder), str(arrays), str(work / "cache" / "graphs")]
                    argv += [str(work / "log"), str(args.batches), str(args.train_limit)]
                    argv += [str(args.eval_users)]
                    records, status = spawn(argv, work / "log", env, args.run_limit, limit_mb)
                    row["status"] = status
                    row.update(summarise(records))
                result["runs"] = [
                    r
                    for r in result["runs"]
                    if not (r["model"] == model and r["interactions"] == size)
                ]
                result["runs"].append(row)
                save(result, args.out)
                print(
                    json.dumps({k: v for k, v in row.items() if k not in QUIET}),
                    flush=True,
                )
            if size != args.ddp_size:  # the 1-vs-2-process runs read the folder of their size
                shutil.rmtree(work / f"n{size}", ignore_errors=True)
        if args.ddp_models:
            folder = work / f"n{args.ddp_size}" / "scale"
            if not folder.exists():
                generate_in_child(folder, args.ddp_size, args, work / "sizes.json")
            rows = []
            for model in args.ddp_models:
                for nproc in (1, 2):
                    rows.append(
                        ddp_run(
                            model,
                            folder,
                            work / f"ddp-{model}-{nproc}",
                            nproc,
                            args.ddp_epochs,
                            env,
                        )
                    )
                    print(json.dumps(rows[-1]), flush=True)
            result["ddp"] = {"interactions": args.ddp_size, "stamp": stamp(), "rows": rows}
            save(result, args.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    analyse(result)
    save(result, args.out)


# ---------------------------------------------------------------------------------------------
# the memory model and the fits
# ---------------------------------------------------------------------------------------------
UNITS = ("user", "item", "edge", "held_out", "constant")


def part(name: str, kind: str, **per: float) -> dict:
    """One component: bytes per user, item, train edge, held-out row and constant bytes."""
    return {"name": name, "kind": kind, **{u: float(per.get(u, 0.0)) for u in UNITS}}


def memory_model(model: str, feature_dim: int, modalities: int, knn_per_item: float) -> list[dict]:
    """What ``model`` (registry defaults) holds at its peak, counted from the code, in bytes
    per user, per item, per train edge and per held-out row, and constant bytes.

    ``kind`` says when a component is held: ``data``, ``graph`` and ``state`` throughout,
    ``batch`` at the peak of a training batch, ``eval`` at the peak of an evaluation pass; the
    predicted peak is the base, the held components and the larger of ``batch`` and ``eval``.
    ``feature_dim``: the summed width of the ``modalities`` item features; ``knn_per_item``:
    stored entries per item of the item kNN graph (k per modality, fewer where the modalities'
    neighbours coincide). float32 values (4 B), int64 indices (8 B) in torch, int32 in scipy.
    """
    from mentor.config import EvalConfig, resolve_config

    cfg = resolve_config(model, {}).model
    f = 4
    # a block of evaluation scores: float32 of the budget's 8 bytes per (user, item) pair
    scores = EvalConfig.score_budget_mb * 2**20 / 2
    parts = [
        part("interaction rows of the data set (int64 pairs)", "data", edge=16, held_out=16),
        part("item features (float32, as loaded)", "data", item=f * feature_dim),
        part(
            "evaluation masks (train CSR for valid and for test) and held-out truth",
            "data",
            edge=2 * 8,
            held_out=8,
            user=2 * (4 + 4 + 8),
        ),
        part("user-item graph, CSR and its transpose", "graph", edge=2 * 12, user=8, item=8),
        part(
            "sampler: user and item columns, known pairs, the epoch's shuffled rows and negatives",
            "data",
            edge=16 + 8 + 32,
            item=8,
        ),
    ]
    knn = part("item kNN graph, CSR and its transpose", "graph", item=2 * (12 * knn_per_item + 8))
    if model in ("lightgcn", "freedom"):
        d = cfg.embedding_size
        parts.append(
            part(
                "ID embeddings: values, gradients, Adam moments",
                "state",
                user=4 * f * d,
                item=4 * f * d,
            )
        )
        if model == "freedom":
            parts.append(
                part(
                    "trained feature tables: copy, gradient, Adam moments",
                    "state",
                    item=4 * f * feature_dim if cfg.train_features else 0,
                )
            )
            parts.append(knn)
            kept = 1 - cfg.dropout
            parts.append(
                part(
                    "train edges and weights; the epoch's edge-dropped graph (CSR, transpose)",
                    "graph",
                    edge=8 + 8 + 4 + kept * 2 * 12,
                    user=8,
                    item=8,
                )
            )
        tables = GRAPH_TABLES
        parts.append(
            part(
                f"propagation and its backward: {tables} [nodes, {d}] tables (previous and new "
                "layer, running and new layer sum; as many gradients going back)",
                "batch",
                user=tables * f * d,
                item=tables * f * d,
            )
        )
        parts.append(
            part(
                f"evaluation: propagated [nodes, {d}] tables and a block of scores",
                "eval",
                user=f * d,
                item=f * d,
                constant=scores,
            )
        )
    elif model == "mentor":
        d, hidden = cfg.feat_embed_dim, cfg.mlp_hidden_size
        m = modalities
        branches = 1 + 3 * m
        width = branches * d
        parts.append(
            part(
                f"{branches} user preference tables, user modality weights, item ID table: "
                "values, gradients, Adam moments",
                "state",
                user=4 * f * (branches * d + m),
                item=4 * f * cfg.embedding_size,
            )
        )
        parts.append(part("fused result tables (buffers)", "state", user=f * m * d, item=f * m * d))
        parts.append(knn)
        parts.append(
            part(
                f"first MLP layers of the {branches} branches, kept for the backward pass: "
                f"hidden and activated [items, {hidden}] and output [items, {d}] each",
                "batch",
                item=branches * f * (2 * hidden + d),
            )
        )
        tables = MENTOR_TABLES
        parts.append(
            part(
                f"propagation of all branches at once: {tables} [nodes, {width}] tables (input, "
                "running sum, previous and new layer, noise, its sign, perturbed layer)",
                "batch",
                user=tables * f * width,
                item=tables * f * width,
            )
        )
        parts.append(part("evaluation: a block of scores", "eval", constant=scores))
    return parts


#: live [nodes, d] float32 tables at the peak of a LightGCN or FREEDOM batch, besides the
#: parameters, gradients and Adam moments
GRAPH_TABLES = 4
#: live [nodes, branches * d] tables at the peak of a MENTOR batch
MENTOR_TABLES = 7


def predict(parts: list[dict], counts: dict[str, float], base_bytes: float) -> float:
    """Predicted peak bytes: the base, the components held throughout, and the larger of the
    batch's and the evaluation's transient ones, at ``counts`` users, items, edges, rows."""

    def total(kinds: tuple[str, ...]) -> float:
        return sum(p[u] * counts.get(u, 1.0) for p in parts if p["kind"] in kinds for u in UNITS)

    return base_bytes + total(("data", "graph", "state")) + max(total(("batch",)), total(("eval",)))


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(ys) on log(xs)."""
    if len(xs) < 2:
        return None
    lx, ly = np.log(xs), np.log(ys)
    return float(np.polyfit(lx, ly, 1)[0])


def analyse(result: dict) -> None:
    """Exponents per model, the memory model with its predictions and the largest sizes."""
    sizes = {s["interactions"]: s for s in result["sizes"]}
    feature_dim = TEXT_DIM + result["settings"]["image_dim"]
    modalities = 2 if result["settings"]["image_dim"] else 1
    knn = [s["knn"]["nnz"] / s["items"] for s in sizes.values() if s.get("knn", {}).get("nnz")]
    knn_per_item = float(np.mean(knn)) if knn else 2.0 * KNN_K
    bases = [r["base_rss_mb"] for r in result["runs"] if r.get("base_rss_mb")]
    base = float(np.median(bases)) * 2**20 if bases else 0.0
    largest = max(sizes.values(), key=lambda s: s["interactions"])
    per_interaction = {
        "user": largest["users"] / largest["interactions"],
        "item": largest["items"] / largest["interactions"],
        "edge": largest["train"] / largest["interactions"],
        "held_out": (largest["valid"] + largest["test"]) / largest["interactions"],
    }
    budget = MEMORY_BUDGET_GB * 1e9
    fits, model_out = {}, {}
    for row in result["runs"]:  # the bound from the smaller size's batch as measured now
        if row["status"] == "not run":
            row["reason"] = too_slow(result["runs"], row["model"], row["interactions"], 0.0)
    for model in sorted({r["model"] for r in result["runs"]}, key=MODELS.index):
        parts = memory_model(model, feature_dim, modalities, knn_per_item)
        for row in result["runs"]:
            if row["model"] != model:
                continue
            s = sizes[row["interactions"]]
            counts = {
                "user": s["users"],
                "item": s["items"],
                "edge": s["train"],
                "held_out": s["valid"] + s["test"],
            }
            row["predicted_peak_mb"] = round(predict(parts, counts, base) / 2**20, 1)
        ok = sorted(
            (r for r in result["runs"] if r["model"] == model and "eval_seconds" in r),
            key=lambda r: r["interactions"],
        )
        xs = [r["interactions"] for r in ok]
        fits[model] = {
            "sizes": xs,
            "epoch_seconds": slope(xs, [r["epoch_seconds"] for r in ok]),
            "eval_seconds": slope(xs, [r["eval_seconds"] for r in ok]),
            "peak_rss": slope(xs, [r["peak_rss_mb"] for r in ok]),
            "peak_rss_above_base": slope(xs, [r["peak_rss_mb"] - r["base_rss_mb"] for r in ok]),
        }
        # at large sizes the batch outweighs the evaluation: the peak is linear in N
        held = [p for p in parts if p["kind"] != "eval"]
        per_n = sum(p[u] * per_interaction[u] for p in held for u in UNITS[:-1])
        constant = base + sum(p["constant"] for p in held)
        # the model against the measured peak at the largest size measured, and the largest
        # size again with the prediction scaled by that ratio
        ratio = ok[-1]["peak_rss_mb"] / ok[-1]["predicted_peak_mb"] if ok else 1.0
        model_out[model] = {
            "components": parts,
            "bytes_per_interaction": round(per_n, 1),
            "constant_bytes": round(constant),
            "largest_interactions_in_budget": int((budget - constant) / per_n),
            "measured_over_predicted": round(ratio, 3),
            "measured_at": ok[-1]["interactions"] if ok else None,
            "largest_interactions_scaled": int((budget / ratio - constant) / per_n),
        }
    result["fits"] = fits
    result["memory_model"] = {
        "budget_gb": MEMORY_BUDGET_GB,
        "base_rss_mb": round(base / 2**20, 1),
        "knn_entries_per_item": round(knn_per_item, 2),
        "per_interaction": {k: round(v, 5) for k, v in per_interaction.items()},
        "models": model_out,
    }


if __name__ == "__main__":
    main()

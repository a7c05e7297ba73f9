"""Seconds per training epoch and peak memory of every model, next to MMRec's own code.

For each data set (MovieLens-100K in MMRec layout with its genre and text features, and Amazon
Baby interactions with seeded random image 4096-d and text 384-d features) and each model, this
trains our implementation (``mentor train``) and MMRec's (its ``quick_start`` with one
configuration, from a checkout given by ``--mmrec``; nothing of MMRec is imported here) for a few
epochs, each in a fresh subprocess with the same thread count, and records:

- seconds per training epoch: the median over the epochs after the first (the first is reported
  too but left out, since it can include one-off set-up); the epoch's training only, without
  evaluation. Ours comes from ``history.csv``; MMRec's from the start and end times its trainer
  passes to its epoch log line (read by a wrapper around that method in the subprocess);
- peak resident memory of the whole process (``ru_maxrss`` from ``wait4``);
- wall time of the process: data loading, set-up and training, and for ours one evaluation
  (MMRec's process is ended right after its last epoch's training, before its evaluation).

A run over ``--limit`` seconds is stopped; its row says so and keeps the epochs it finished.
MMRec's DualGNN reads a precomputed user graph (``user_graph_dict.npy``) that MMRec builds with a
separate O(U^2) Python script; this script builds the same top-200 co-occurrence lists with a
sparse product instead, before the run (not timed). Writes
``benchmarks/results/speed_vs_mmrec.{json,md}``; rows of an earlier run that this one did not
repeat are kept.

The reference code of a model that is not in MMRec (its authors' repository, built on MMRec's
framework) is given with ``--code MODEL=DIR``: DIR holds ``src/utils/quick_start.py`` or
``utils/quick_start.py`` (``utils_package/`` in the official MENTOR code);
:data:`REFERENCE_REPOS` names the repository, recorded with its commit in every row.

Usage: python benchmarks/speed_vs_mmrec.py --mmrec ../mmrec [--data ml-100k-mm baby-random]
       [--models all|NAME,...] [--code MODEL=DIR ...] [--epochs 4] [--baby-epochs 3]
       [--threads 2] [--limit 600]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from common import RESULTS, ROOT, SHARED, stamp
from mentor_speed import baby_with_random_features

from mentor.registry import model_names

# MMRec class name for each of our registry names it implements, and the one configuration it
# runs (its YAML grids list several values; these are our defaults, but SLMRec's learning rate is
# 1e-3, not its grid's first 1e-4, so that the quality comparison converges in tens of epochs).
MMREC_MODELS: dict[str, tuple[str, dict[str, object]]] = {
    "bpr": ("BPR", {"reg_weight": 1e-5}),
    "lightgcn": ("LightGCN", {"n_layers": 2, "reg_weight": 1e-4}),
    "layergcn": ("LayerGCN", {"n_layers": 4, "dropout": 0.1, "reg_weight": 1e-3}),
    "vbpr": ("VBPR", {"reg_weight": 1e-4}),
    "mmgcn": ("MMGCN", {"reg_weight": 1e-4, "learning_rate": 1e-3}),
    "dualgnn": ("DualGNN", {"aggr_mode": "add", "reg_weight": 1e-3, "learning_rate": 1e-3}),
    "freedom": ("FREEDOM", {"dropout": 0.8, "reg_weight": 1e-4}),
    "lattice": ("LATTICE", {"reg_weight": 0.0, "learning_rate": 1e-3}),
    "bm3": ("BM3", {"n_layers": 1, "reg_weight": 0.1, "dropout": 0.3}),
    "slmrec": ("SLMRec", {"learning_rate": 1e-3, "ssl_temp": 0.1, "ssl_alpha": 0.01, "reg": 1e-4}),
    # the official code's settings, which are our defaults (its grid's second mask_weight_g, the
    # one the quality comparison uses); mm_image_weight is the image file's share of the item graph
    "mentor": (
        "MENTOR",
        {
            "learning_rate": 1e-4,
            "reg_weight": 1e-3,
            "dropout": 0.5,
            "mask_weight_f": 1.5,
            "mask_weight_g": 1e-3,
            "align_weight": 0.1,
            "temp": 0.2,
            "mm_image_weight": 0.1,
            "knn_k": 10,
        },
    ),
    "mgcn": ("MGCN", {"cl_loss": 1e-3}),
    "dragon": ("DRAGON", {"aggr_mode": "add", "reg_weight": 1e-3, "learning_rate": 1e-3}),
    # the authors' Baby configurations (LGMRec: their dataset YAML; SMORE: their README's table)
    "lgmrec": (
        "LGMRec",
        {
            "n_ui_layers": 2,
            "n_mm_layers": 2,
            "n_hyper_layer": 1,
            "hyper_num": 4,
            "keep_rate": 0.5,
            "alpha": 0.3,
            "cl_weight": 1e-4,
            "reg_weight": 1e-6,
        },
    ),
    "smore": (
        "SMORE",
        {
            "n_ui_layers": 4,
            "image_knn_k": 40,
            "text_knn_k": 15,
            "cl_loss": 0.01,
            "reg_weight": 1e-4,
            "dropout_rate": 0.1,
        },
    ),
    # GUME: its YAML (the Baby settings, our defaults); COHESION: its grids' first values but
    # MMRec's learning rate 1e-3 (its grid starts at 0.1)
    "gume": (
        "GUME",
        {"n_layers": 2, "bm_temp": 0.4, "um_loss": 0.01, "um_temp": 0.1, "vt_loss": 0.1},
    ),
    "cohesion": (
        "COHESION",
        {"learning_rate": 1e-3, "reg_weight": 0.1, "dropout": 0.0, "num_layer": 1},
    ),
}
# The public repository of each model's reference code when it is not MMRec (enoche/MMRec).
REFERENCE_REPOS: dict[str, str] = {
    "mentor": "Jinfeng-Xu/MENTOR",
    "lgmrec": "georgeguo-cn/LGMRec",
    "smore": "kennethorq/SMORE",
    "gume": "NanGongNingYi/GUME",
    "cohesion": "Jinfeng-Xu/COHESION",
}
# Our optional settings timed as rows of their own ("variant": (model, settings)), next to the
# MMRec row of their model.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "dualgnn-fp32": ("dualgnn", ["model.feature_dtype=float32"]),
}
# Settings our models need on a data set (MENTOR's semantic graph weights for genre + text).
OUR_EXTRA = {
    "ml-100k-mm": {"mentor": ['model.semantic_graph_weights={"genre": 0.1, "text": 0.9}']},
}
# Runs MMRec's quick_start in its src folder with one configuration, prints one
# "MMREC_EPOCH <index> <seconds>" line per trained epoch, and ends the process after the last
# epoch's training (before MMRec's evaluation, which is not measured).
MMREC_DRIVER = """
import json, os, sys, time
import torch
import yaml
torch.set_num_threads(int(sys.argv[4]))
from common.trainer import Trainer
import importlib
utils = os.environ.get("MMREC_UTILS", "utils")
Config = importlib.import_module(f"{utils}.configurator").Config
quick_start = importlib.import_module(f"{utils}.quick_start").quick_start

original = Trainer._generate_train_loss_output

def timed(self, epoch_idx, s_time, e_time, losses):
    print(f"MMREC_EPOCH {epoch_idx} {e_time - s_time:.6f}", flush=True)
    if epoch_idx + 1 == self.epochs:
        os._exit(0)
    return original(self, epoch_idx, s_time, e_time, losses)

Trainer._generate_train_loss_output = timed
fit = Trainer.fit

def announced_fit(self, *args, **kwargs):
    print(f"MMREC_FIT_START {time.time():.3f}", flush=True)
    return fit(self, *args, **kwargs)

Trainer.fit = announced_fit
model, dataset = sys.argv[1], sys.argv[2]
config_dict = json.loads(sys.argv[3])
with open(f"configs/model/{model}.yaml", encoding="utf-8") as f:
    grid = yaml.load(f.read(), Loader=Config._build_yaml_loader(None))
for name in grid.get("hyper_parameters", []):
    if name not in config_dict:
        config_dict[name] = grid[name][0] if isinstance(grid[name], list) else grid[name]
config_dict["hyper_parameters"] = ["seed"]
quick_start(model=model, dataset=dataset, config_dict=config_dict, save_model=False)
"""


@dataclass
class Run:
    """One measured training run.

    Attributes:
        data: data set name.
        model: our registry name.
        impl: ``mentor``, or ``MMRec`` for the reference code (MMRec or the authors' repository).
        reference: the reference code's repository and commit (``MMRec`` rows only).
        status: ``ok``, ``time limit`` or ``failed: <last error line>``.
        epoch_seconds: training seconds of each finished epoch, in order.
        peak_rss_gb: peak resident memory of the process (GiB).
        wall_seconds: the whole process, set-up and evaluation included.
        threads: the BLAS/OpenMP thread count it ran with.
        unfinished_epoch_seconds: for a run stopped at the limit, the seconds its unfinished
            epoch had run (MMRec: from the start of training or the last finished epoch).
    """

    data: str
    model: str
    impl: str
    status: str = "ok"
    epoch_seconds: list[float] = field(default_factory=list)
    peak_rss_gb: float = 0.0
    wall_seconds: float = 0.0
    unfinished_epoch_seconds: float | None = None
    threads: int = 1
    reference: str = ""

    @property
    def seconds_per_epoch(self) -> float | None:
        """Median over the epochs after the first; the first alone if it is the only one."""
        timed = self.epoch_seconds[1:] or self.epoch_seconds
        return statistics.median(timed) if timed else None


def run_process(
    cmd: list[str], cwd: Path | None, env: dict[str, str], log: Path, limit: float
) -> tuple[int | None, float, float]:
    """Run ``cmd`` with output to ``log``; stop it after ``limit`` seconds.

    Returns (exit status or ``None`` when stopped, peak RSS in GiB, wall seconds).
    """
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > limit:
                os.kill(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                status = None
                break
            time.sleep(0.2)
    wall = time.perf_counter() - start
    code = None if status is None else os.waitstatus_to_exitcode(status)
    return code, usage.ru_maxrss / 1024**2, wall


def last_error(log: Path) -> str:
    """The last non-empty line of a log, for a failed run's row."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def thread_env(threads: int) -> dict[str, str]:
    """The environment with every BLAS/OpenMP pool fixed to ``threads``."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    return env


def run_ours(
    data_name: str, data: Path, model: str, epochs: int, threads: int, limit: float, work: Path
) -> Run:
    """``mentor train`` for ``epochs`` epochs, evaluating once after the last."""
    out = work / f"ours-{data_name}-{model}"
    base, variant = VARIANTS.get(model, (model, []))
    cmd = [sys.executable, "-m", "mentor.cli", "train", "--model", base, "--data", str(data)]
    cmd += ["--out", str(out), "--epochs", str(epochs), "--quiet", "--device", "cpu"]
    settings = ["train.patience=1000", f"train.threads={threads}", f"train.eval_every={epochs}"]
    for item in settings + OUR_EXTRA.get(data_name, {}).get(base, []) + variant:
        cmd += ["--set", item]
    log = work / f"ours-{data_name}-{model}.log"
    code, peak, wall = run_process(cmd, None, thread_env(threads), log, limit)
    run = Run(data_name, model, "mentor", peak_rss_gb=peak, wall_seconds=wall, threads=threads)
    history = out / "history.csv"
    if history.exists():
        with history.open() as f:
            run.epoch_seconds = [float(r["seconds"]) for r in csv.DictReader(f) if r["seconds"]]
    if code is None:
        run.status = "time limit"
    elif code != 0:
        run.status = f"failed: {last_error(log)}"
    return run


def mmrec_data_config(data_root: Path, folder: Path) -> dict[str, object]:
    """MMRec settings that run on a CPU and read the layout :func:`mmrec_folder` wrote in
    ``folder`` (under ``data_root``)."""
    return {
        "use_gpu": False,
        "gpu_id": 0,
        "data_path": f"{data_root}/",
        "inter_file_name": next(folder.glob("*.inter")).name,
        "USER_ID_FIELD": "userID",
        "ITEM_ID_FIELD": "itemID",
        "TIME_FIELD": "timestamp",
        "field_separator": "\t",
        "vision_feature_file": "image_feat.npy",
        "text_feature_file": "text_feat.npy",
        "user_graph_dict_file": "user_graph_dict.npy",
    }


UTILS_PACKAGES = ("utils", "utils_package")  # MMRec's name, and the official MENTOR code's


def framework_folder(root: Path) -> Path:
    """The folder of an MMRec-style checkout that holds ``utils/quick_start.py`` (or
    ``utils_package/``): its ``src/``, or the checkout itself when its framework lives at the
    top."""
    for folder in (root / "src", root):
        if any((folder / name / "quick_start.py").exists() for name in UTILS_PACKAGES):
            return folder
    raise SystemExit(f"{root}: no src/utils/quick_start.py or utils/quick_start.py found")


def framework_env(framework: Path, threads: int) -> dict[str, str]:
    """:func:`thread_env` plus ``MMREC_UTILS``, the framework's utilities package, for the
    drivers."""
    name = next(n for n in UTILS_PACKAGES if (framework / n / "quick_start.py").exists())
    return {**thread_env(threads), "MMREC_UTILS": name}


def reference_code(mmrec: Path, code: list[str], known: list[str]) -> dict[str, Path]:
    """``--code MODEL=DIR`` items as {model: framework folder}; every other model of
    :data:`MMREC_MODELS` runs from the MMRec checkout."""
    folders = {model: mmrec for model in MMREC_MODELS}
    for item in code:
        model, sep, folder = item.partition("=")
        if not sep or model not in known:
            raise SystemExit(f"--code {item}: give MODEL=DIR with MODEL one of {known}")
        folders[model] = Path(folder)
    return {model: framework_folder(folder) for model, folder in folders.items()}


def reference_label(model: str, folder: Path) -> str:
    """``owner/name@commit`` of a model's reference code (``+patched`` for local changes)."""
    return f"{REFERENCE_REPOS.get(model, 'enoche/MMRec')}@{mmrec_commit(folder)}"


def run_mmrec(
    framework: Path,
    data_name: str,
    data_root: Path,
    model: str,
    epochs: int,
    threads: int,
    limit: float,
    work: Path,
) -> Run:
    """The reference code's quick_start (run in ``framework``, the folder with ``utils/``) for
    ``model`` (our name) on ``data_root/data_name``."""
    name, settings = MMREC_MODELS[model]
    folder = data_root / data_name
    for cached in folder.glob("*.pt"):  # LATTICE/FREEDOM cache their item graphs: rebuild each
        cached.unlink()
    config = {
        **mmrec_data_config(data_root, folder),
        "epochs": epochs,
        "eval_step": epochs,
        "stopping_step": 1000,
        **settings,
    }
    cmd = [sys.executable, "-c", MMREC_DRIVER, name, data_name, json.dumps(config), str(threads)]
    log = work / f"mmrec-{data_name}-{model}.log"
    code, peak, wall = run_process(cmd, framework, framework_env(framework, threads), log, limit)
    stopped = time.time()
    run = Run(data_name, model, "MMRec", peak_rss_gb=peak, wall_seconds=wall, threads=threads)
    run.reference = reference_label(model, framework)
    lines = log.read_text(errors="replace").splitlines()
    run.epoch_seconds = [float(ln.split()[2]) for ln in lines if ln.startswith("MMREC_EPOCH ")]
    if code is None:
        run.status = "time limit"
        starts = [float(ln.split()[1]) for ln in lines if ln.startswith("MMREC_FIT_START ")]
        if starts:  # the epochs' own seconds leave out evaluation: a lower bound
            run.unfinished_epoch_seconds = stopped - starts[0] - sum(run.epoch_seconds)
    elif code != 0:
        run.status = f"failed: {last_error(log)}"
    return run


def user_graph_dict(inter: Path, top: int = 200) -> dict[int, list[list[float]]]:
    """MMRec's DualGNN user graph: each user's ``top`` co-occurring users by shared items.

    ``{user: [neighbour ids, shared-item counts]}`` in decreasing count, from the training
    interactions (``x_label == 0``), as MMRec's preprocessing script
    (``preprocessing/dualgnn-gen-u-u-matrix.py``) writes it: users with no shared item get empty
    lists, and each user's list is ``torch.topk`` of their dense float32 row of counts, so that
    users with equal counts come in the order that ``torch.topk`` gives them (neither by id nor
    by the sparse product's order). The counts come from a sparse product ``R R^T`` instead of
    the script's Python loop over all user pairs.
    """
    import torch

    table = np.loadtxt(inter, delimiter="\t", skiprows=1, usecols=(0, 1), dtype=np.int64)
    with inter.open() as f:
        header = f.readline().rstrip("\n").split("\t")
    label = np.loadtxt(inter, delimiter="\t", skiprows=1, usecols=header.index("x_label"))
    n_users = int(table[:, 0].max()) + 1
    train = table[label == 0]
    ones = np.ones(len(train), dtype=np.float32)
    shape = (n_users, int(table[:, 1].max()) + 1)
    rows = sp.csr_matrix((ones, (train[:, 0], train[:, 1])), shape=shape)
    rows.data[:] = 1.0  # duplicates count once, as in MMRec's item sets
    shared = (rows @ rows.T).tocsr()
    shared.setdiag(0)
    shared.eliminate_zeros()
    graph = {}
    dense = torch.zeros(n_users)
    for user in range(n_users):
        start, end = shared.indptr[user], shared.indptr[user + 1]
        columns = torch.from_numpy(shared.indices[start:end].astype(np.int64))
        dense.zero_()
        dense[columns] = torch.from_numpy(shared.data[start:end].astype(np.float32))
        found = torch.topk(dense, min(end - start, top))
        graph[user] = [found.indices.tolist(), found.values.double().tolist()]
    return graph


def mmrec_folder(data: Path, image: str, text: str, folder: Path) -> None:
    """MMRec's layout of ``data`` in ``folder``: links to its files and DualGNN's user graph."""
    folder.mkdir(parents=True)
    inter = next(data.glob("*.inter"))
    (folder / inter.name).symlink_to(inter.resolve())
    (folder / "image_feat.npy").symlink_to((data / image).resolve())
    (folder / "text_feat.npy").symlink_to((data / text).resolve())
    np.save(folder / "user_graph_dict.npy", user_graph_dict(inter), allow_pickle=True)


def earlier_stamp(path: Path, data: dict) -> dict[str, str]:
    """The provenance of rows that an earlier result file holds without their own: that file's
    date, machine, version and command, where it records them; date and version from
    ``benchmarks/provenance.json`` (the commit that last changed the file) otherwise, while the
    file is the one described there."""
    found = {k: str(data[k]) for k in ("date", "machine", "version", "command") if data.get(k)}
    recorded = ROOT / "benchmarks" / "provenance.json"
    entry = json.loads(recorded.read_text()).get(path.name, {}) if recorded.exists() else {}
    if entry.get("sha256") == hashlib.sha256(path.read_bytes()).hexdigest():
        for key in ("date", "version"):
            if key not in found and entry.get(key):
                found[key] = entry[key]
                found["from_commit"] = entry.get("commit", "")[:7]
        if "command" not in found and entry.get("script"):
            found["script"] = entry["script"]
    return found


def earlier_rows(path: Path) -> list[dict]:
    """The rows of an earlier result file, each with its provenance (``stamp``), its time limit
    (``limit_seconds``: the file's where the row lacks one) and, for a reference row, its code
    (``reference``: rows without one ran enoche/MMRec at the file's ``mmrec_commit``)."""
    data = json.loads(path.read_text())
    stamp_of_file = earlier_stamp(path, data)
    rows = []
    for row in data["rows"]:
        row = dict(row)
        row.setdefault("stamp", stamp_of_file)
        row.setdefault("limit_seconds", data.get("limit_seconds"))
        if row["impl"] == "MMRec" and not row.get("reference"):
            row["reference"] = f"enoche/MMRec@{data.get('mmrec_commit', 'unknown')}"
        rows.append(row)
    return rows


def stamp_text(found: dict[str, str]) -> str:
    """``mentor VERSION, DATE, MACHINE, `COMMAND` ``: a row's provenance in words."""
    bits = [f"mentor {found.get('version', '?')}", found.get("date", "?")]
    if found.get("from_commit"):
        bits[-1] += f" (version and date of commit {found['from_commit']})"
    bits.append(found.get("machine", "?"))
    how = found.get("command") or found.get("script")
    return ", ".join(bits + ([f"`{how}`"] if how else []))


def write_results(runs: list[Run], args: argparse.Namespace) -> str:
    """Merge with an earlier result file, write ``speed_vs_mmrec.{json,md}``; return the md.

    Every row carries the provenance of the invocation that measured it (``stamp``: date,
    machine, mentor version, command), so a file can hold rows of several invocations."""
    path = args.out / "speed_vs_mmrec.json"
    now = stamp()
    fresh = [
        {**asdict(r), "seconds_per_epoch": r.seconds_per_epoch, "limit_seconds": args.limit}
        | {"stamp": now}
        for r in runs
    ]
    done = {(r["data"], r["model"], r["impl"]) for r in fresh}
    kept = []
    for earlier_file in [path, *args.merge]:  # the newest row of each key wins
        if not earlier_file.exists():
            continue
        for row in earlier_rows(earlier_file):
            key = (row["data"], row["model"], row["impl"])
            if key not in done:
                kept.append(row)
                done.add(key)
    rows = kept + fresh
    threads = sorted({r.get("threads", args.threads) for r in rows})
    result = {**now, "threads": threads, "limit_seconds": args.limit, "rows": rows}
    text = markdown(result)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, content in (
        ("speed_vs_mmrec.json", json.dumps(result, indent=2) + "\n"),
        ("speed_vs_mmrec.md", text),
    ):
        tmp = args.out / f".{name}.tmp"
        tmp.write_text(content)
        tmp.replace(args.out / name)
    return text


def markdown(result: dict) -> str:
    """``speed_vs_mmrec.md``: the tables of a result file's rows and who measured them."""
    rows, threads = result["rows"], result["threads"]
    lines = [
        f"{'/'.join(map(str, threads))} thread(s) for both codes.",
        "",
        "s/epoch: median training seconds of the epochs after the first (no evaluation). "
        "Peak: maximum resident memory of the whole process. Speed-up: the reference code's "
        "s/epoch / ours. Reference: the repository and commit of the code each row compares "
        "with (+patched: run with the CPU patches of docs/reproducibility.md).",
    ]
    for data in dict.fromkeys(r["data"] for r in rows):
        lines += [
            "",
            f"**{data}**",
            "",
            "| model | ours s/epoch | reference s/epoch | speed-up | ours peak GB "
            "| reference peak GB | reference |",
            "|---|---|---|---|---|---|---|",
        ]
        by_key = {(r["model"], r["impl"]): r for r in rows if r["data"] == data}
        order = model_names() + list(VARIANTS)
        for model in sorted(dict.fromkeys(m for m, _ in by_key), key=order.index):
            base = VARIANTS.get(model, (model, []))[0]
            ours, theirs = by_key.get((model, "mentor")), by_key.get((base, "MMRec"))
            ratio = "-"
            if ours and theirs and ours["seconds_per_epoch"]:
                if theirs["seconds_per_epoch"]:
                    ratio = f"{theirs['seconds_per_epoch'] / ours['seconds_per_epoch']:.1f}x"
                elif theirs.get("unfinished_epoch_seconds"):
                    bound = theirs["unfinished_epoch_seconds"] / ours["seconds_per_epoch"]
                    ratio = f">= {bound:.1f}x"
            reference = theirs["reference"] if theirs else "-"
            lines.append(
                f"| {model} | {cell_seconds(ours)} | {cell_seconds(theirs)} | {ratio} | "
                f"{cell_peak(ours)} | {cell_peak(theirs)} | {reference} |"
            )
    by_stamp: dict[str, list[str]] = {}
    for row in rows:
        by_stamp.setdefault(stamp_text(row["stamp"]), []).append(f"{row['data']} {row['model']}")
    lines += ["", "Measured by:", ""]
    for text, keys in by_stamp.items():
        lines.append(f"- {text}: {', '.join(dict.fromkeys(keys))}")
    return "\n".join(lines) + "\n"


def cell_seconds(row: dict | None) -> str:
    """A table cell for a run's s/epoch, marking time limits and failures."""
    if row is None:
        return "-"
    value = row["seconds_per_epoch"]
    if row["status"].startswith("failed"):
        return "failed"
    if row["status"] == "time limit" and value is None:
        bound = row.get("unfinished_epoch_seconds")
        if bound is None:
            return f"no epoch in {row['wall_seconds']:.0f} s"
        return f">= {bound:.0f} (no epoch finished)"
    if value is None:
        return "no training epochs"
    count = len(row["epoch_seconds"])
    suffix = f" ({count} epoch{'s' * (count > 1)}, stopped)" if row["status"] != "ok" else ""
    return f"{value:.2f}{suffix}"


def cell_peak(row: dict | None) -> str:
    """A table cell for a run's peak memory."""
    if row is None:
        return "-"
    return f"{row['peak_rss_gb']:.2f}"


def mmrec_commit(mmrec: Path) -> str:
    """The commit of the checkout holding ``mmrec`` (and ``+patched`` when its tree has local
    changes)."""
    head = subprocess.run(
        ["git", "-C", str(mmrec), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(mmrec), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{head or 'unknown'}{'+patched' if dirty else ''}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmrec", type=Path, required=True, help="MMRec checkout (has src/)")
    parser.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="MODEL=DIR",
        help="run MODEL's reference code from this MMRec-style checkout (its authors' code)",
    )
    parser.add_argument(
        "--data",
        nargs="+",
        choices=["ml-100k-mm", "baby-random"],
        default=["ml-100k-mm", "baby-random"],
        help="data sets, run in this order",
    )
    parser.add_argument(
        "--models",
        default="all",
        help="our names (or variants: " + ", ".join(VARIANTS) + "), comma-separated, all, "
        "or none (only rewrite the results from --merge)",
    )
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run on ml-100k-mm")
    parser.add_argument("--baby-epochs", type=int, default=3, help="epochs per run on Baby")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=float, default=600.0, help="seconds per run at most")
    parser.add_argument("--impl", choices=["both", "mentor", "MMRec"], default="both")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="*",
        default=[],
        help="earlier result files whose rows fill in what this run and the results lack",
    )
    parser.add_argument("--work", type=Path, help="keep runs and logs here (default: a temp dir)")
    args = parser.parse_args()
    references = reference_code(args.mmrec, args.code, model_names())
    known = model_names() + list(VARIANTS)
    models = {"all": known, "none": []}.get(args.models, args.models.split(","))
    unknown = sorted(set(models) - set(known))
    if unknown:
        raise SystemExit(f"unknown models {unknown}; `mentor models` lists them")
    runs = []
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tempfile.mkdtemp(prefix="speed-", dir=args.work)) if args.work else Path(tmp)
        mmrec_root = work / "mmrec-data"
        for data_name in args.data:
            if data_name == "ml-100k-mm":
                data, epochs = args.shared / "data" / "ml-100k-mm", args.epochs
                mmrec_folder(data, "genre_feat.npy", "text_feat.npy", mmrec_root / data_name)
            else:
                (work / data_name).mkdir()
                data = baby_with_random_features(args.shared, work / data_name)
                epochs = args.baby_epochs
                mmrec_folder(data, "image_feat.npy", "text_feat.npy", mmrec_root / data_name)
            for model in models:
                found = []
                if args.impl != "MMRec":
                    found.append(
                        run_ours(data_name, data, model, epochs, args.threads, args.limit, work)
                    )
                if args.impl != "mentor" and model in MMREC_MODELS:
                    found.append(
                        run_mmrec(
                            references[model],
                            data_name,
                            mmrec_root,
                            model,
                            epochs,
                            args.threads,
                            args.limit,
                            work,
                        )
                    )
                for run in found:
                    spe = run.seconds_per_epoch
                    shown = "-" if spe is None else f"{spe:.2f}"
                    print(
                        f"{data_name:<12} {model:<9} {run.impl:<6} {shown:>8} s/epoch "
                        f"{run.peak_rss_gb:5.2f} GB  {run.wall_seconds:6.1f} s wall  {run.status}",
                        flush=True,
                    )
                runs += found
                write_results(runs, args)  # after every model: an interruption keeps them
    print(write_results(runs, args))


if __name__ == "__main__":
    main()

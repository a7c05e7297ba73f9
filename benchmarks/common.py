"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> str:
    """CPU model and cores (or the GPU) and the torch version."""
    from mentor.hardware import describe_machine

    return describe_machine()


def stamp() -> dict[str, str]:
    """Date, machine, mentor version and the command line of this benchmark run: the
    provenance every result file carries."""
    import datetime

    from mentor import __version__

    script = f"benchmarks/{Path(sys.argv[0]).name}"
    return {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "version": __version__,
        "command": " ".join(["python", script, *sys.argv[1:]]),
    }


def mean_sd(values: list[float]) -> str:
    """``0.1234 (0.0012)``: mean and sample standard deviation."""
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "-"
    return f"{statistics.mean(values):.4f} ({statistics.stdev(values):.4f})"


#: MENTOR on ml-100k-mm as the quick start and the equivalence benchmark run it: both
#: modalities, genre in the image role of the semantic graph (0.1) and text 0.9
ML100K_MENTOR_SETS = [
    'data.modalities=["genre", "text"]',
    'model.semantic_graph_weights={"genre": 0.1, "text": 0.9}',
]
#: where those runs live: the official grid (mentor_tuned.py) and the official defaults with 3
#: seeds (mentor_tuned.py and poster_modality.py share them)
ML100K_MENTOR_RUNS = ROOT / "runs" / "bench" / "ml100k-mentor-grid"
ML100K_MENTOR_DEFAULTS_RUNS = ROOT / "runs" / "bench" / "ml100k-mentor-defaults"
#: LightGCN as chosen on valid on ml-100k-mm (README), the id-only reference, and its runs
ML100K_LIGHTGCN_SETS = ["model.n_layers=3", "model.reg_weight=1e-4"]
ML100K_LIGHTGCN_RUNS = ROOT / "runs" / "bench" / "ml100k-lightgcn-chosen"


def mentor_benchmark(
    data: Path,
    out: Path,
    model: str,
    grid: str,
    sets: list[str],
    seeds: int,
    workers: int,
    threads: int,
) -> dict:
    """Run (or reuse) one ``mentor benchmark`` of ``model`` on ``data`` into ``out`` with the
    ``--set`` assignments ``sets``; return the model's row of ``results.json``."""
    cmd = [sys.executable, "-m", "mentor.cli", "benchmark", "--data", str(data)]
    cmd += ["--models", model, "--grid", grid, "--seeds", str(seeds), "--out", str(out)]
    cmd += ["--workers", str(workers), "--threads", str(threads)]
    for assignment in sets:
        cmd += ["--set", assignment]
    subprocess.run(cmd, check=True)
    rows = json.loads((out / "results.json").read_text())["rows"]
    return next(row for row in rows if row["model"] == model)

"""Training curves of a run: ``mentor plot RUN`` draws its ``history.csv`` to a PNG.

One panel shows the validation Recall and NDCG at the largest cut-off per epoch (and marks the
best epoch of ``metrics.json``), the other every loss term. Needs the ``plot`` extra.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from mentor.errors import MentorError
from mentor.extras import require
from mentor.fsutil import atomic_path

HISTORY = "history.csv"


def read_history(run: Path) -> dict[str, list[float]]:
    """Columns of ``run/history.csv`` as floats (NaN where a row has no value).

    Raises:
        MentorError: the run has no history, or it is not a table of numbers.
    """
    path = Path(run) / HISTORY
    if not path.is_file():
        raise MentorError(f"{path}: missing; give a run folder made by `mentor train`")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "epoch" not in rows[0]:
        raise MentorError(f"{path}: no 'epoch' column; not a mentor training history")

    def number(text: str | None) -> float:
        try:
            return float(text) if text not in (None, "") else math.nan
        except ValueError:
            return math.nan

    return {name: [number(row.get(name)) for row in rows] for name in rows[0]}


def plot_run(run: Path, out: Path | None = None) -> Path:
    """Draw the curves of ``run`` into ``out`` (default ``run/curves.png``); returns the path.

    Raises:
        MentorError: no history, or matplotlib (the ``plot`` extra) is missing.
    """
    run = Path(run)
    require("matplotlib", "plot", "mentor plot")
    history = read_history(run)
    out = Path(out) if out is not None else run / "curves.png"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cuts = [int(c.split("@")[1]) for c in history if c.startswith("valid_recall@")]
    top = max(cuts) if cuts else None
    valid = [c for c in (f"valid_recall@{top}", f"valid_ndcg@{top}") if c in history]
    losses = [c for c in history if c == "loss" or c.startswith("loss_")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = history["epoch"]
    for ax, names, label in ((axes[0], valid, "validation"), (axes[1], losses, "training loss")):
        for name in names:
            points = [(e, v) for e, v in zip(epochs, history[name], strict=True) if v == v]
            if points:
                ax.plot(*zip(*points, strict=True), label=name, linewidth=1.4)
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
        if names:
            ax.legend(fontsize=8)
    metrics = run / "metrics.json"
    if metrics.is_file():
        best = json.loads(metrics.read_text()).get("best_epoch")
        if best is not None:
            axes[0].axvline(best, color="#999", linestyle="--", linewidth=1)
    fig.suptitle(run.name, fontsize=10)
    fig.tight_layout()
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
    return out

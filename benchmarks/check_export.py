"""Recompute test metrics from an exported top-K file with an independent evaluator.

The evaluator here shares no code with ``mentor.eval``: plain Python over the export file (external
ids), the data folder's ``.inter`` and mapping files, with MMRec's metric definitions. It compares
every metric at every K <= the export's K with ``metrics.json`` of the run.

Usage: python benchmarks/check_export.py --run RUN --export FILE [--data DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections import defaultdict
from pathlib import Path


def read_mapping(path: Path) -> dict[str, str]:
    """internal id (as text) -> external id; identity when the file is absent."""
    if not path.exists():
        return {}
    with path.open() as handle:
        rows = list(csv.reader(handle, delimiter="\t"))[1:]
    return {internal: external for external, internal in rows if external or internal}


def held_out(data: Path, split_label: str) -> tuple[dict[str, set[str]], set[str]]:
    """External user -> held-out external items of the split; and users with train rows."""
    inter = next(data.glob("*.inter"))
    users = read_mapping(data / "u_id_mapping.tsv")
    items = read_mapping(data / "i_id_mapping.tsv")
    truth: dict[str, set[str]] = defaultdict(set)
    warm: set[str] = set()
    with inter.open() as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            user = users.get(row["userID"], row["userID"])
            item = items.get(row["itemID"], row["itemID"])
            if row["x_label"] == "0":
                warm.add(user)
            elif row["x_label"] == split_label:
                truth[user].add(item)
    return {u: t for u, t in truth.items() if u in warm}, warm


def metrics(ranked: dict[str, list[str]], truth: dict[str, set[str]], k: int) -> dict[str, float]:
    """MMRec's Recall/NDCG/Precision/MAP/Hit at ``k``, averaged over the users of ``truth``."""
    sums = defaultdict(float)
    for user, relevant in truth.items():
        top = ranked[user][:k]
        hits = [1.0 if item in relevant else 0.0 for item in top]
        n_hit = sum(hits)
        ideal = min(len(relevant), k)
        dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits))
        idcg = sum(1.0 / math.log2(i + 2) for i in range(ideal))
        running, ap = 0.0, 0.0
        for i, h in enumerate(hits):
            running += h
            ap += h * running / (i + 1)
        sums["recall"] += n_hit / len(relevant)
        sums["precision"] += n_hit / k
        sums["hit"] += 1.0 if n_hit else 0.0
        sums["ndcg"] += dcg / idcg
        sums["map"] += ap / ideal
    return {f"{name}@{k}": value / len(truth) for name, value in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--data", type=Path, help="data folder (default: from config.json)")
    args = parser.parse_args()
    config = json.loads((args.run / "config.json").read_text())
    data = args.data or Path(config["data"]["path"])
    expected = json.loads((args.run / "metrics.json").read_text())["test"]
    ranked: dict[str, list[str]] = defaultdict(list)
    with args.export.open() as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            ranked[row["user"]].append(row["item"])
    truth, warm = held_out(data, "2")
    missing = warm - set(ranked)
    if missing:
        raise SystemExit(f"the export lacks {len(missing)} users with train interactions")
    k_max = min(len(v) for v in ranked.values())
    worst = 0.0
    for k in sorted(config["eval"]["topk"]):
        if k > k_max:
            continue
        for name, value in metrics(ranked, truth, k).items():
            diff = abs(value - expected[name])
            worst = max(worst, diff)
            print(f"{name:<13} export {value:.10f}  metrics.json {expected[name]:.10f}")
    print(f"largest difference: {worst:.3g}")
    if worst > 1e-9:
        raise SystemExit("the export does not reproduce metrics.json")


if __name__ == "__main__":
    main()

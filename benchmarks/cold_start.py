"""Cold-start quality of MENTOR on ml-100k-mm: items hidden from training, added from features.

Protocol (seeded):

1. Hide 10% of the items (numpy default_rng(seed)): every interaction of a hidden item, in every
   split, is removed from the data MENTOR trains on, and the items leave the catalogue (their
   feature rows too).
2. Train MENTOR on the rest (a bounded number of epochs on this CPU), bundle the run and add the
   hidden items through ``Recommender.add_items`` from their text and genre features.
3. For every user with a hidden item in the original test split, rank all hidden items (leaving
   out hidden items the user rated in the original train/valid splits) and score the top 20
   against the user's hidden test items: Recall@20 and NDCG@20 (MMRec definitions).
4. Baselines on the same users and candidates: a random ordering (mean over 20 seeds); the
   popularity ordering of the training data (every hidden item has 0 interactions there, so it
   is the id order); and an oracle popularity ordering that counts each hidden item's
   interactions in the original train/valid splits, data that no cold-start system has.

Writes benchmarks/results/cold_start_seed<S>.{json,md} per seed and cold_start.{json,md} (mean
and sample sd over seeds). Usage:
python benchmarks/cold_start.py [--epochs 40] [--seeds 0 1 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np
from common import RESULTS, SHARED, machine
from serve_common import make_bundle, train_run


def hide_items(data: Path, out: Path, fraction: float, seed: int) -> dict:
    """Write ``out``: ``data`` without a seeded ``fraction`` of its items. Returns what the
    evaluation needs (hidden item ids, their features, the original splits)."""
    from mentor.data.dataset import load_dataset

    ds = load_dataset(data)
    rng = np.random.default_rng(seed)
    n_hidden = round(fraction * ds.n_items)
    hidden = np.sort(rng.choice(ds.n_items, size=n_hidden, replace=False))
    keep = np.setdiff1d(np.arange(ds.n_items), hidden)
    new_id = np.full(ds.n_items, -1)
    new_id[keep] = np.arange(len(keep))
    out.mkdir(parents=True, exist_ok=True)
    lines = ["userID\titemID\tx_label"]
    for label, split in enumerate(("train", "valid", "test")):
        rows = ds.splits[split]
        rows = rows[new_id[rows[:, 1]] >= 0]
        lines += [f"{u}\t{new_id[i]}\t{label}" for u, i in rows]
    (out / f"{ds.name}.inter").write_text("\n".join(lines) + "\n")
    user_lines = ["user_id\tuserID", *(f"{e}\t{i}" for i, e in enumerate(ds.user_ids))]
    item_lines = ["item_id\titemID", *(f"{ds.item_ids[o]}\t{n}" for n, o in enumerate(keep))]
    (out / "u_id_mapping.tsv").write_text("\n".join(user_lines) + "\n")
    (out / "i_id_mapping.tsv").write_text("\n".join(item_lines) + "\n")
    for modality, feat in ds.features.items():
        np.save(out / f"{modality}_feat.npy", feat[keep])
    return {"dataset": ds, "hidden": hidden}


def ranking_metrics(ranked: list[list[int]], truth: list[set[int]], k: int) -> dict[str, float]:
    """Mean Recall@k and NDCG@k (MMRec definitions) of ranked lists against truth sets."""
    recall, ndcg = 0.0, 0.0
    for items, relevant in zip(ranked, truth, strict=True):
        hits = [1.0 if i in relevant else 0.0 for i in items[:k]]
        recall += sum(hits) / len(relevant)
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(relevant), k)))
        ndcg += dcg / idcg
    n = len(truth)
    return {f"recall@{k}": recall / n, f"ndcg@{k}": ndcg / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "ml-100k-mm")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mentor-cold")
    args = parser.parse_args()
    results = [run_seed(args, seed) for seed in args.seeds]
    write_summary(args, results)


def write_summary(args: argparse.Namespace, results: list[dict]) -> None:
    """``cold_start.{json,md}``: each ordering's metrics as mean and sample sd over seeds."""
    names = list(results[0]["orderings"])
    rows = {}
    for name in names:
        rows[name] = {}
        for key in (f"recall@{args.k}", f"ndcg@{args.k}"):
            values = [r["orderings"][name][key] for r in results]
            sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            rows[name][key] = (float(np.mean(values)), sd)
    summary = {"machine": results[0]["machine"], "seeds": args.seeds, "rows": rows}
    summary["epochs"] = [r["mentor_epochs"] for r in results]
    (RESULTS / "cold_start.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"Cold start on {args.data.name}: {args.fraction:.0%} of the items hidden, seeds "
        f"{args.seeds} (each seed hides other items and seeds MENTOR), MENTOR trained "
        f"{args.epochs} epochs at most; mean ± sample sd over seeds ({summary['machine']}).",
        "",
        f"| ordering of the hidden items | Recall@{args.k} | NDCG@{args.k} |",
        "|---|---|---|",
    ]
    for name, values in rows.items():
        cells = [f"{m:.4f} ± {sd:.4f}" for m, sd in values.values()]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    (RESULTS / "cold_start.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    """Hide items with ``seed``, train, add them back, score every ordering (one seed)."""
    from mentor.serve import Recommender

    args.seed = seed
    work = args.work / f"seed{args.seed}"
    info = hide_items(args.data, work / "data", args.fraction, args.seed)
    ds, hidden = info["dataset"], info["hidden"]
    run = train_run(
        "mentor", work / "data", work / "run", args.epochs, seed=args.seed, threads=args.threads
    )
    rec = Recommender.load(make_bundle(run, work / "bundle"))
    hidden_ids = [ds.item_ids[i] for i in hidden]
    rec.add_items(hidden_ids, {m: ds.features[m][hidden] for m in rec.feature_dims})

    is_hidden = np.zeros(ds.n_items, dtype=bool)
    is_hidden[hidden] = True
    known = {}
    for split in ("train", "valid"):
        for u, i in ds.splits[split]:
            if is_hidden[i]:
                known.setdefault(int(u), set()).add(int(i))
    truth: dict[int, set[int]] = {}
    for u, i in ds.splits["test"]:
        if is_hidden[i]:
            truth.setdefault(int(u), set()).add(int(i))
    users = sorted(u for u in truth if ds.user_ids[u] in rec.user_index)
    truths = [truth[u] for u in users]
    pos = {ext: i for i, ext in enumerate(ds.item_ids)}

    def candidates(u: int) -> list[int]:
        return [int(i) for i in hidden if int(i) not in known.get(u, set())]

    mentor_lists = []
    for u in users:
        cands = [ds.item_ids[i] for i in candidates(u)]
        out = rec.recommend(ds.user_ids[u], k=args.k, exclude_seen=False, items=cands)[0]
        mentor_lists.append([pos[i] for i in out.items])
    popularity = np.zeros(ds.n_items)
    for split in ("train", "valid"):
        np.add.at(popularity, ds.splits[split][:, 1], 1.0)
    pop_lists = [sorted(candidates(u), key=lambda i: (-popularity[i], i)) for u in users]
    random_runs = []
    for s in range(20):
        rng = np.random.default_rng(1000 + s)
        lists = [list(rng.permutation(candidates(u))) for u in users]
        random_runs.append(ranking_metrics(lists, truths, args.k))
    random_mean = {key: float(np.mean([r[key] for r in random_runs])) for key in random_runs[0]}
    metrics = json.loads((run / "metrics.json").read_text())
    result = {
        "machine": machine(),
        "data": str(args.data),
        "seed": args.seed,
        "hidden_items": len(hidden),
        "catalogue_items": ds.n_items - len(hidden),
        "users_evaluated": len(users),
        "hidden_test_interactions": sum(len(t) for t in truths),
        "mentor_epochs": metrics.get("epochs_run"),
        "mentor_best_epoch": metrics.get("best_epoch"),
        "mentor_warm_test": {k: v for k, v in metrics["test"].items() if k.endswith("@20")},
        "orderings": {
            "MENTOR add_items": ranking_metrics(mentor_lists, truths, args.k),
            "popularity in the training data (all hidden items 0: id order)": ranking_metrics(
                [sorted(candidates(u)) for u in users], truths, args.k
            ),
            "oracle popularity (hidden items' own train/valid counts)": ranking_metrics(
                pop_lists, truths, args.k
            ),
            "random (mean of 20)": random_mean,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"cold_start_seed{args.seed}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"Cold start on {args.data.name}, seed {args.seed}: {len(hidden)} hidden items, "
        f"{len(users)} users, {result['hidden_test_interactions']} hidden test interactions; "
        f"MENTOR trained {result['mentor_epochs']} epochs ({result['machine']}).",
        "",
        f"| ordering of the hidden items | Recall@{args.k} | NDCG@{args.k} |",
        "|---|---|---|",
    ]
    for name, values in result["orderings"].items():
        lines.append(
            f"| {name} | {values[f'recall@{args.k}']:.4f} | {values[f'ndcg@{args.k}']:.4f} |"
        )
    (RESULTS / f"cold_start_seed{args.seed}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()

"""Fold-in quality on ml-100k-mm: users held out of training, served from their item histories.

Protocol (per model and seed):

1. Hold out 10% of the users (numpy default_rng(seed)): every row of theirs, in every split, is
   removed from the data the model trains on ("held-out data"); the other users keep theirs.
2. Train the model on the held-out data and bundle it; serve each held-out user by fold-in
   (``Recommender.recommend_histories``) from their original training items, which are left
   out of the list as seen items.
3. The same users when trained: the model trained on the full data (same seed and settings)
   and bundled, ``Recommender.recommend`` for each held-out user (their training items left out).
4. Popularity: the training items of the held-out data ranked by count (the training items of
   the user left out).

Recall@20 and NDCG@20 (MMRec definitions) against each held-out user's test items; mean and
sample sd over seeds. Each model trains with early stopping on valid Recall@20 (at most
``--epochs`` epochs). Writes benchmarks/results/fold_in.{json,md}. Usage:
python benchmarks/fold_in.py [--models lightgcn bpr mentor] [--seeds 0 1 2] [--epochs 200]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from cold_start import ranking_metrics
from common import ML100K_LIGHTGCN_SETS, ML100K_MENTOR_SETS, RESULTS, SHARED, stamp
from serve_common import make_bundle

#: settings per model: the ones README's benchmark chose on valid for ml-100k-mm
SETTINGS = {
    "lightgcn": ML100K_LIGHTGCN_SETS,
    "mentor": ML100K_MENTOR_SETS,
    "bpr": [],
}


def hold_out_users(data: Path, out: Path, fraction: float, seed: int) -> np.ndarray:
    """Write ``out``: ``data`` without every row of a seeded ``fraction`` of its users (ids and
    features unchanged). Returns the held-out internal user ids."""
    from mentor.data.dataset import load_dataset

    ds = load_dataset(data)
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(ds.n_users, size=round(fraction * ds.n_users), replace=False))
    out.mkdir(parents=True, exist_ok=True)
    lines = ["userID\titemID\tx_label"]
    for label, split in enumerate(("train", "valid", "test")):
        rows = ds.splits[split]
        rows = rows[~np.isin(rows[:, 0], held)]
        lines += [f"{u}\t{i}\t{label}" for u, i in rows]
    (out / f"{ds.name}.inter").write_text("\n".join(lines) + "\n")
    for name in ("u_id_mapping.tsv", "i_id_mapping.tsv", *(f"{m}_feat.npy" for m in ds.features)):
        shutil.copy(data / name, out / name)
    return held


def train(model: str, data: Path, out: Path, seed: int, epochs: int, threads: int) -> Path:
    """Train (or reuse) ``model`` on ``data`` into ``out``."""
    import mentor

    if not (out / "metrics.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        mentor.train(
            model, data, out, overrides=SETTINGS[model], seed=seed, epochs=epochs,
            threads=threads, progress=False, log=lambda _: None,
        )  # fmt: skip
    return out


def run(args: argparse.Namespace, model: str, seed: int, epochs: int) -> dict:
    """The three orderings' metrics for the held-out users of one model and seed."""
    from mentor.data.dataset import load_dataset
    from mentor.serve import Recommender

    work = args.work / f"{model}-seed{seed}"
    held = hold_out_users(args.data, work / "held-out-data", args.fraction, seed)
    full = load_dataset(args.data)
    train_items = {int(u): [] for u in held}
    for u, i in full.train:
        if u in train_items:
            train_items[int(u)].append(int(i))
    truth_rows = {int(u): set() for u in held}
    for u, i in full.splits["test"]:
        if u in truth_rows:
            truth_rows[int(u)].add(int(i))
    users = [u for u in held.tolist() if truth_rows[u] and train_items[u]]
    truth = [{full.item_ids[i] for i in truth_rows[u]} for u in users]

    run_full = train(model, args.data, work / "run-full", seed, epochs, args.threads)
    run_held = train(model, work / "held-out-data", work / "run-held", seed, epochs, args.threads)
    trained = Recommender.load(make_bundle(run_full, work / "bundle-full"))
    folded = Recommender.load(make_bundle(run_held, work / "bundle-held"))

    names = [full.user_ids[u] for u in users]
    histories = [[full.item_ids[i] for i in train_items[u]] for u in users]
    k = args.k
    ranked = {
        "trained on the full data": [r.items for r in trained.recommend(names, k=k)],
        "fold-in (held out of training)": [
            r.items for r in folded.recommend_histories(histories, k=k)
        ],
    }
    counts = np.bincount(
        load_dataset(work / "held-out-data").train[:, 1], minlength=full.n_items
    ).astype(float)
    order = np.lexsort((np.arange(full.n_items), -counts))
    popular = []
    for u in users:
        seen = set(train_items[u])
        popular.append([full.item_ids[i] for i in order if i not in seen][:k])
    ranked["popularity of the held-out data"] = popular
    metrics = {name: ranking_metrics(lists, truth, k) for name, lists in ranked.items()}
    best = {
        "full": json.loads((run_full / "metrics.json").read_text())["best_epoch"],
        "held": json.loads((run_held / "metrics.json").read_text())["best_epoch"],
    }
    print(model, seed, len(users), json.dumps(metrics), flush=True)
    return {"users": len(users), "orderings": metrics, "epochs": epochs, "best_epoch": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "ml-100k-mm")
    parser.add_argument("--models", nargs="+", default=["lightgcn", "bpr", "mentor"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument(
        "--epochs-of", nargs="*", default=["mentor=60"], metavar="MODEL=N",
        help="a lower epoch cap for slow models (default mentor=60)",
    )  # fmt: skip
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mentor-fold")
    args = parser.parse_args()
    from mentor import __version__
    from mentor.registry import get_model
    from mentor.serve.recommender import FOLD_IN_RULES

    caps = {m: int(n) for m, n in (a.split("=") for a in args.epochs_of)}
    table: dict[str, dict] = {}
    for model in args.models:
        runs = [run(args, model, seed, caps.get(model, args.epochs)) for seed in args.seeds]
        rows = {}
        for name in runs[0]["orderings"]:
            rows[name] = {}
            for key in (f"recall@{args.k}", f"ndcg@{args.k}"):
                values = [r["orderings"][name][key] for r in runs]
                sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                rows[name][key] = [float(np.mean(values)), sd]
        rule = get_model(model).model_cls.fold_in
        table[model] = {
            "fold_in": rule,
            "max_epochs": runs[0]["epochs"],
            "rows": rows,
            "runs": runs,
        }
    result = {
        **stamp(),
        "data": args.data.name,
        "fraction": args.fraction,
        "models": table,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fold_in.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"Fold-in on {args.data.name}: {args.fraction:.0%} of the users held out of training, "
        f"seeds {args.seeds}; mean ± sample sd over seeds; {result['date']}, "
        f"{result['machine']}, mentor {__version__}; `{result['command']}`",
        "",
        f"| model (fold-in rule, max epochs) | ordering | Recall@{args.k} | NDCG@{args.k} |",
        "|---|---|---|---|",
    ]
    for model, entry in table.items():
        for name, row in entry["rows"].items():
            cells = [f"{m:.4f} ± {s:.4f}" for m, s in row.values()]
            label = f"{model} ({entry['fold_in']}, {entry['max_epochs']})"
            lines.append(f"| {label} | {name} | {' | '.join(cells)} |")
    lines += ["", *(f"- `{rule}`: {text}" for rule, text in FOLD_IN_RULES.items())]
    (RESULTS / "fold_in.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

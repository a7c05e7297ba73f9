"""The ``mentor`` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mentor.argtypes import int_range
from mentor.errors import MentorError, warn_stderr


def _settings(args: argparse.Namespace) -> dict[str, object]:
    """``--epochs``, ``--seed`` and ``--device`` as train settings (only those given)."""
    given = {"epochs": args.epochs, "seed": args.seed, "device": args.device}
    return {f"train.{k}": v for k, v in given.items() if v is not None}


def _torchrun(argv: list[str], nproc: int) -> int:
    """Run ``mentor`` with ``argv`` (``--nproc`` left out) as ``nproc`` data-parallel processes
    on this machine under torchrun; its exit code."""
    import subprocess

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise MentorError("--nproc starts torchrun itself; leave it out under torchrun")
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={nproc}", "-m", "mentor", *rest]
    return subprocess.call(cmd)


def cmd_train(args: argparse.Namespace) -> int:
    from mentor import api
    from mentor.table import metrics_table

    if args.nproc > 1:
        return _torchrun(args.argv, args.nproc)
    if args.resume:
        if args.model or args.config or args.out:
            raise MentorError(
                "--resume RUN continues a run with its stored settings; drop --model, --config "
                "and --out (only --epochs, --device, --data and --set train.threads=... or "
                "eval.batch_users=... may change)"
            )
        overrides = list(args.set or [])
        if args.data:
            overrides.append(f"data.path={json.dumps(str(Path(args.data).absolute()))}")
        metrics = api.resume(
            args.resume,
            overrides=overrides,
            progress=not args.quiet,
            tensorboard=args.tensorboard,
            **_settings(args),
        )
        out = Path(args.resume)
    else:
        out = Path(args.out)
        metrics = api.train(
            args.model,
            args.data,
            out,
            config=args.config,
            overrides=args.set or [],
            progress=not args.quiet,
            tensorboard=args.tensorboard,
            **_settings(args),
        )
    if os.environ.get("RANK", "0") != "0":  # data-parallel: rank 0 reports
        return 0
    print(
        f"best valid epoch {metrics['best_epoch']} of {metrics['epochs_run']}; "
        f"{metrics['seconds_per_epoch']:.2f} s/epoch"
    )
    print(metrics_table({f"{metrics['model']} (test)": metrics["test"]}))
    print(f"run folder: {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mentor import api
    from mentor.runs import read_run_config
    from mentor.table import metric_ks, metrics_table

    metrics = api.evaluate(args.run, args.split, args.device, args.data)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        name = read_run_config(Path(args.run)).model_name
        print(metrics_table({f"{name} ({args.split})": metrics}, metric_ks(metrics)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mentor import api

    count = api.export(args.run, args.out, args.k, args.device, args.data)
    print(f"wrote top-{args.k} for {count:,} users to {args.out}")
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from mentor.bundle import write_bundle
    from mentor.serve.recommender import bundle_summary

    out = write_bundle(
        Path(args.run), Path(args.out), args.device, Path(args.data) if args.data else None
    )
    print(f"wrote {bundle_summary(out)} to {out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # one BLAS thread per request: lower latency under load
    try:
        from mentor.serve.app import serve
    except ImportError as exc:
        raise MentorError(
            f"mentor serve needs the serve extra ({exc.name} is missing); "
            "pip install 'mentor-rec[serve]'"
        ) from None
    print(f"serving {args.bundle} on http://{args.host}:{args.port} (docs at /docs)")
    serve(
        args.bundle,
        args.host,
        args.port,
        args.workers,
        args.index,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        store=args.store,
        poll_seconds=args.poll_seconds,
        score_budget=int(args.score_budget_mb * 1024 * 1024),
    )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from mentor.curves import plot_run

    out = plot_run(Path(args.run), Path(args.out) if args.out else None)
    print(f"wrote {out}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from mentor.registry import all_models

    for spec in all_models():
        print(f"{spec.name:<10} {spec.summary}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from mentor.data.dataset import load_dataset
    from mentor.table import format_table

    dataset = load_dataset(args.dir)
    for warning in dataset.warnings:
        warn_stderr(warning)
    print(format_table([f"data set '{dataset.name}'", "value"], dataset.stats()))
    from mentor.prepare.command import provenance_lines
    from mentor.prepare.steps import read_meta

    meta = read_meta(Path(args.dir))
    if meta is not None:
        print(format_table(["provenance (meta.json)", "value"], provenance_lines(meta)))
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from mentor.prepare.command import run

    return run(args)


def cmd_search(args: argparse.Namespace) -> int:
    from mentor.config import apply_override, load_config_file
    from mentor.search import grid_search, parse_grid
    from mentor.table import format_table

    tree = load_config_file(Path(args.config)) if args.config else {}
    tree.pop("model_name", None)
    for assignment in args.set or []:
        apply_override(tree, assignment)
    tree.setdefault("data", {})["path"] = str(args.data)
    if args.epochs is not None:
        tree.setdefault("train", {})["epochs"] = args.epochs
    grid = parse_grid(args.grid)
    summary = grid_search(
        args.model,
        tree,
        grid,
        Path(args.out),
        workers=args.workers,
        threads=args.threads,
        trials=args.trials,
        storage=args.storage,
        prune=args.prune,
        heartbeat=args.heartbeat,
    )
    metric = summary["valid_metric"]
    k = metric.split("@")[1]
    rows = [
        [
            r["run"],
            r["valid"][metric],
            r["test"][f"recall@{k}"],
            r["test"][f"ndcg@{k}"],
            "best" if r is summary["best"] or r["run"] == summary["best"]["run"] else "",
        ]
        for r in summary["runs"]
    ]
    print(format_table(["run", f"valid {metric}", f"test recall@{k}", f"test ndcg@{k}", ""], rows))
    if "pruned" in summary:
        print(f"pruned early: {len(summary['pruned'])} run(s), not in the table")
    print(f"best on valid: {summary['best']['run']} (selection never looks at test)")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from mentor.benchmark import parse_models, run_benchmark
    from mentor.config import apply_override, load_config_file

    tree = load_config_file(Path(args.config)) if args.config else {}
    tree.pop("model_name", None)
    for assignment in args.set or []:
        apply_override(tree, assignment)
    if args.epochs is not None:
        apply_override(tree, f"train.epochs={args.epochs}")
    out = Path(args.out)
    run_benchmark(
        Path(args.data).absolute(),
        parse_models(args.models),
        args.seeds,
        out,
        grid=args.grid,
        workers=args.workers,
        threads=args.threads,
        base=tree,
        trials=args.trials,
        select_metric=args.select_metric,
        storage=args.storage,
        prune=args.prune,
        heartbeat=args.heartbeat,
    )
    print((out / "results.md").read_text())
    chart = ", results.png" if (out / "results.png").exists() else ""
    print(f"results: {out / 'results.md'}, results.csv, results.json{chart}")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from mentor.quickstart import run_quickstart

    run_quickstart(Path(args.out) if args.out else None, models=args.models, quiet=args.quiet)
    return 0


TRIALS_HELP = (
    "train at most N combinations of a larger grid, proposed by Optuna's TPE on valid "
    "(needs the 'search' extra); 0 = the whole grid"
)

WORKERS_HELP = "runs in parallel (with --storage or --prune: worker processes on this machine)"


def _add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """``--storage``, ``--prune`` and ``--heartbeat`` of search and benchmark."""
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="share the search through an Optuna study (search extra): sqlite:///FILE or "
        "postgresql://USER@HOST:PORT/DB (store extra); start the same command on each machine. "
        "Default: this process alone (with --prune: an SQLite study in the output folder)",
    )
    parser.add_argument(
        "--prune",
        choices=["none", "median", "halving"],
        default="none",
        help="stop trials early on the valid metric: median rule or successive halving "
        "(default none: every run trains to its end)",
    )
    parser.add_argument(
        "--heartbeat",
        type=int_range(1),
        default=30,
        metavar="SECONDS",
        help="a shared worker's heartbeat; a trial whose worker missed two is trained again "
        "by another, from its last checkpoint (default 30)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="mentor", description="Multimodal recommendation: MENTOR and its baselines."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model on an MMRec-layout data set")
    train.add_argument("--model", help="model name (see `mentor models`)")
    train.add_argument("--data", help="MMRec-layout data folder")
    train.add_argument("--out", help="run folder to create")
    train.add_argument("--config", help="JSON/YAML file with data/model/train/eval sections")
    train.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override, e.g. model.n_layers=3 or train.learning_rate=1e-4",
    )
    train.add_argument("--epochs", type=int, help="maximum number of epochs")
    train.add_argument("--seed", type=int)
    train.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    train.add_argument("--resume", metavar="RUN", help="continue an interrupted run")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument(
        "--tensorboard", metavar="DIR", help="TensorBoard event files (tensorboard extra)"
    )
    train.add_argument(
        "--nproc",
        type=int_range(1),
        default=1,
        help="data-parallel processes on this machine (starts torchrun; see README)",
    )
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a trained run")
    evaluate.add_argument("--run", required=True)
    evaluate.add_argument("--split", choices=["valid", "test"], default="test")
    evaluate.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    evaluate.add_argument("--data", help="data folder, if it moved since training")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(func=cmd_evaluate)

    export = sub.add_parser("export", help="write top-K recommendations as TSV")
    export.add_argument("--run", required=True)
    export.add_argument("--k", type=int, default=20)
    export.add_argument("--out", required=True)
    export.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    export.add_argument("--data", help="data folder, if it moved since training")
    export.set_defaults(func=cmd_export)

    bundle = sub.add_parser("bundle", help="pack a trained run for serving (no pickle)")
    bundle.add_argument("--run", required=True)
    bundle.add_argument("--out", required=True, help="bundle folder to create")
    bundle.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    bundle.add_argument("--data", help="data folder, if it moved since training")
    bundle.set_defaults(func=cmd_bundle)

    serve = sub.add_parser("serve", help="HTTP recommendations from a bundle (serve extra)")
    serve.add_argument("--bundle", required=True, help="folder made by `mentor bundle`")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int_range(1, 65535), default=8000, help="TCP port, 1-65535")
    serve.add_argument("--workers", type=int, default=1, help="server processes")
    serve.add_argument(
        "--max-body-mb",
        type=float,
        default=4.0,
        help="largest request body in MiB; bigger requests get 413 (default 4)",
    )
    serve.add_argument(
        "--store",
        help="log of catalogue changes: sqlite:///FILE or a path (default: "
        "BUNDLE.changes.sqlite beside the bundle), postgresql://... (several machines), memory",
    )
    serve.add_argument(
        "--poll-seconds",
        type=float,
        default=0.5,
        help="most time before a change made by another process shows (default 0.5)",
    )
    serve.add_argument(
        "--score-budget-mb",
        type=float,
        default=64.0,
        help="MiB of scores one request may hold; users are scored in blocks (default 64)",
    )
    serve.add_argument(
        "--index", default="exact", choices=["exact", "faiss"], help="faiss: approximate top-K"
    )
    serve.set_defaults(func=cmd_serve)

    plot = sub.add_parser("plot", help="training curves of a run to PNG (plot extra)")
    plot.add_argument("run", help="run folder made by `mentor train`")
    plot.add_argument("--out", help="PNG file (default RUN/curves.png)")
    plot.set_defaults(func=cmd_plot)

    models = sub.add_parser("models", help="list registered models")
    models.set_defaults(func=cmd_models)

    data = sub.add_parser("data", help="inspect or prepare data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", help="validate a data folder and print its statistics")
    check.add_argument("dir")
    check.set_defaults(func=cmd_data_check)
    prepare = data_sub.add_parser(
        "prepare", help="raw data (MovieLens-100K, Amazon, any CSV catalogue) -> MMRec layout"
    )
    from mentor.prepare.command import add_arguments as add_prepare_arguments

    add_prepare_arguments(prepare)
    prepare.set_defaults(func=cmd_data_prepare)

    search = sub.add_parser("search", help="grid search, selected on the valid split only")
    search.add_argument("--model", required=True)
    search.add_argument("--data", required=True)
    search.add_argument("--out", required=True, help="search folder (resumable)")
    search.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=[V1,V2]",
        help="e.g. model.n_layers=[1,2,3,4]; repeat for a product",
    )
    search.add_argument("--config", help="JSON/YAML file with shared settings")
    search.add_argument("--set", action="append", metavar="KEY=VALUE")
    search.add_argument("--epochs", type=int)
    search.add_argument("--workers", type=int, default=1, help=WORKERS_HELP)
    search.add_argument("--threads", type=int, default=0, help="torch threads per run")
    search.add_argument("--trials", type=int, default=0, metavar="N", help=TRIALS_HELP)
    _add_study_arguments(search)
    search.set_defaults(func=cmd_search)

    bench = sub.add_parser(
        "benchmark", help="rerun a comparison: each model's grid chosen on valid, then N seeds"
    )
    bench.add_argument("--data", required=True, help="MMRec-layout data folder")
    bench.add_argument("--models", required=True, help="NAME[,NAME...] or all")
    bench.add_argument("--seeds", type=int, default=3, help="seeds per chosen configuration")
    bench.add_argument("--out", required=True, help="benchmark folder (resumable)")
    bench.add_argument(
        "--grid",
        default="default",
        help="default (MMRec's grid of each model), none (fixed defaults) or a JSON/YAML file "
        "{model: {dotted.key: [values]}}",
    )
    bench.add_argument("--config", help="JSON/YAML file with settings shared by every run")
    bench.add_argument("--set", action="append", metavar="KEY=VALUE")
    bench.add_argument("--epochs", type=int, help="maximum epochs of every run")
    bench.add_argument("--workers", type=int, default=1, help=WORKERS_HELP)
    bench.add_argument("--threads", type=int, default=0, help="torch threads per run")
    bench.add_argument("--trials", type=int, default=0, metavar="N", help=TRIALS_HELP)
    bench.add_argument(
        "--select-metric",
        default="recall@20",
        metavar="METRIC@K",
        help="valid metric every model's epoch and configuration are chosen on (default "
        "recall@20, whatever a model's own default)",
    )
    _add_study_arguments(bench)
    bench.set_defaults(func=cmd_benchmark)

    quick = sub.add_parser(
        "quickstart", help="the main job: MovieLens-100K -> features -> train -> table -> export"
    )
    quick.add_argument("--out", help="output folder (default: ./mentor-quickstart)")
    quick.add_argument("--models", nargs="+", default=["lightgcn", "mentor"])
    quick.add_argument("--quiet", action="store_true")
    quick.set_defaults(func=cmd_quickstart)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command == "train" and not args.resume and not args.out:
        parser.error("train needs --out RUN (or --resume RUN)")
    try:
        return int(args.func(args))
    except MentorError as exc:
        print(f"mentor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mentor: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line for the user, the traceback in a file
        if os.environ.get("MENTOR_DEBUG"):
            raise
        where = _write_traceback()
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"mentor: internal error ({type(exc).__name__}: {first}); "
            f"this is a bug in mentor: the full traceback is in {where}; please report it",
            file=sys.stderr,
        )
        return 1
    finally:
        # a process of a torchrun group leaves it before the interpreter ends: gloo's threads
        # still running at exit abort the process (SIGABRT) instead of the exit code above
        if "torch.distributed" in sys.modules:
            from mentor.training.distributed import leave

            leave()


def _write_traceback() -> str:
    """Write the current exception's traceback to a file in the cache folder; return its path."""
    import tempfile
    import time
    import traceback

    from mentor.paths import cache_dir

    text = traceback.format_exc()
    try:
        folder = cache_dir() / "crashes"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
        path.write_text(text)
    except OSError:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
            handle.write(text)
            path = Path(handle.name)
    return str(path)


if __name__ == "__main__":
    sys.exit(main())

"""Render every results table of README.md and docs/ from the JSON files in benchmarks/results/.

A table lives between two comments in a Markdown page:

    <!-- table:NAME -->
    ...generated, never edited by hand...
    <!-- /table -->

NAME is one of the renderers below (``--list`` prints them), optionally with an argument after a
colon (``model-results:lightgcn``). Results come only from ``benchmarks/results/*.json``; model
settings come from the registry (``mentor.registry``) and the HTTP reference from the OpenAPI
schema of ``mentor serve`` on a tiny bundle trained on the spot. Every table ends with its
source: the JSON file, the mentor version, date, machine and command recorded in it. Files that
record no date or version fall back to ``benchmarks/provenance.json`` (the commit that last
changed the file), but only while the file's SHA-256 is the one recorded there.

Usage:
    python benchmarks/render.py           # rewrite every region; also the charts in docs/img/
    python benchmarks/render.py --check   # exit 1 naming every region that differs
    python benchmarks/render.py --list    # the renderers
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROVENANCE = ROOT / "benchmarks" / "provenance.json"
DOCS = ROOT / "docs"
IMG = DOCS / "img"

REGION = re.compile(
    r"(?P<open><!-- table:(?P<name>[\w.@-]+)(?::(?P<arg>[\w.@-]+))? -->\n)"
    r"(?P<body>.*?)"
    r"(?P<close><!-- /table -->)",
    re.S,
)

Renderer = Callable[[str | None, Path], str]
RENDERERS: dict[str, Renderer] = {}


def table(name: str) -> Callable[[Renderer], Renderer]:
    """Register a renderer: ``fn(arg, page) -> markdown`` (page: the file, relative to ROOT)."""

    def register(fn: Renderer) -> Renderer:
        RENDERERS[name] = fn
        return fn

    return register


# ---------------------------------------------------------------------------------------------
# reading results and their provenance
# ---------------------------------------------------------------------------------------------
@functools.cache
def load(name: str) -> Any:
    """``benchmarks/results/<name>`` parsed."""
    return json.loads((RESULTS / name).read_text())


def exists(name: str) -> bool:
    return (RESULTS / name).is_file()


@functools.cache
def _backfill() -> dict[str, dict[str, str]]:
    if not PROVENANCE.is_file():
        return {}
    return {k: v for k, v in json.loads(PROVENANCE.read_text()).items() if not k.startswith("_")}


def meta(name: str) -> dict[str, str]:
    """Version, date, machine and command of a result file: its own fields, else the backfill
    entry of ``benchmarks/provenance.json`` when the file is still the one described there."""
    data = load(name)
    data = data if isinstance(data, dict) else {}
    out = {k: str(data[k]) for k in ("version", "date", "machine", "command") if data.get(k)}
    entry = _backfill().get(name)
    digest = hashlib.sha256((RESULTS / name).read_bytes()).hexdigest()
    if entry and entry.get("sha256") == digest:
        backfilled = []
        for key in ("version", "date", "command", "script"):
            if key not in out and entry.get(key):
                out[key] = entry[key]
                backfilled += [key] if key in ("version", "date") else []
        if backfilled:
            out["from_commit"] = entry.get("commit", "")[:7]
            out["backfilled"] = " and ".join(backfilled)
            out["where"] = ", not in the file"
    return out


def _part(name: str, m: dict[str, str]) -> str:
    """One file's provenance line from its fields (see :func:`meta`)."""
    bits = []
    if "version" in m:
        bits.append(f"mentor {m['version']}")
    if "date" in m:
        bits.append(m["date"])
    if m.get("from_commit"):
        bits[-1] += f" ({m['backfilled']} of commit {m['from_commit']}{m.get('where', '')})"
    if "machine" in m:
        bits.append(m["machine"])
    if "command" in m:
        bits.append(f"`{m['command']}`")
    elif "script" in m:
        bits.append(f"script `{m['script']}`")
    return f"`benchmarks/results/{name}`: " + ", ".join(bits or ["no provenance"])


def _assemble(parts: Sequence[str]) -> str:
    if len(parts) == 1:
        return f"Source: {parts[0]}."
    return "Sources:\n\n" + "\n".join(f"- {p}" for p in parts)


def source(*names: str) -> str:
    """The provenance paragraph that ends every table."""
    return _assemble([_part(name, meta(name)) for name in names])


def row_parts(name: str, rows: Sequence[dict], label: Callable[[dict], str]) -> list[str]:
    """Provenance lines of the ``rows`` of a file whose rows carry their own (``stamp``: date,
    machine, version, command of the invocation that measured them; ``from_commit`` where date
    and version are those of the commit that last changed the file before rows had one), one
    line per invocation, naming its rows (``label``) when there are several. Rows without a
    stamp have the file's provenance."""
    groups: dict[str, tuple[dict[str, str], list[str]]] = {}
    for row in rows:
        found = row.get("stamp")
        if found is None:
            m = meta(name)
        else:
            m = {k: str(v) for k, v in found.items()}
            if m.get("from_commit"):
                m["backfilled"], m["where"] = "version and date", ""
        key = json.dumps(m, sort_keys=True)
        groups.setdefault(key, (m, []))[1].append(label(row))
    if len(groups) <= 1:
        return [_part(name, m) for m, _ in groups.values()] or [_part(name, meta(name))]
    return [
        f"{_part(name, m)} (rows: {', '.join(dict.fromkeys(labels))})"
        for m, labels in groups.values()
    ]


# ---------------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------------
def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def f4(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def msd(mean: float, sd: float) -> str:
    return f"{mean:.4f} ± {sd:.4f}"


def mean_sd(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return msd(statistics.mean(values), statistics.stdev(values))


def cell_of(row: dict, metric: str) -> str:
    """``mean ± sd`` of a ``mentor benchmark`` row (``test_<metric>`` and ``_sd``)."""
    if f"test_{metric}" not in row:
        return "-"
    return msd(row[f"test_{metric}"], row.get(f"test_{metric}_sd", 0.0))


def params(values: dict[str, Any]) -> str:
    """``n_layers=3, reg_weight=0.01`` from ``{"model.n_layers": 3, ...}``."""
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in values.items())


def chosen(row: dict) -> str:
    """The chosen cell of a ``mentor benchmark`` row: searched keys, then inert ones as ``any``."""
    cells = [f"{k.split('.')[-1]}={v}" for k, v in row["chosen"].items()]
    cells += [f"{k.split('.')[-1]}=any" for k in row.get("inert", [])]
    text = ", ".join(cells) or ("a one-point grid" if row.get("fixed") else "defaults")
    size = row.get("grid_size", row["grid_runs"])
    searched = (
        str(row["grid_runs"]) if size == row["grid_runs"] else f"{row['grid_runs']} of {size}"
    )
    return f"{text} ({searched})"


def gb(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} GB"


def num(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def rel(page: Path, target: str) -> str:
    """A link from ``page`` (relative to ROOT) to ``target`` (relative to ROOT)."""
    return os.path.relpath(ROOT / target, (ROOT / page).parent).replace(os.sep, "/")


def model_page(page: Path, model: str) -> str:
    return rel(page, f"docs/models/{model}.md")


def script_constant(script: str, name: str) -> Any:
    """A literal constant of a benchmark script, read without importing it."""
    tree = ast.parse((ROOT / "benchmarks" / script).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise KeyError(f"{script} has no constant {name}")


# ---------------------------------------------------------------------------------------------
# the benchmark of every model (mentor benchmark) and the baselines' grids
# ---------------------------------------------------------------------------------------------
BENCH = "benchmark_ml100k_all.json"


@table("benchmark-ml100k")
def benchmark_ml100k(arg: str | None, page: Path) -> str:
    data = load(BENCH)
    rows = [
        [
            f"[{r['model']}]({model_page(page, r['model'])})",
            cell_of(r, "recall@10"),
            cell_of(r, "recall@20"),
            cell_of(r, "ndcg@10"),
            cell_of(r, "ndcg@20"),
            chosen(r),
            r["valid_metric"],
            f"{r['best_epoch']:.0f}",
            f"{r['seconds_per_epoch']:.2f}",
            gb(r["peak_rss_mb"] / 1024 if r.get("peak_rss_mb") else None),
        ]
        for r in data["rows"]
    ]
    head = ["model", "test R@10", "test R@20", "test N@10", "test N@20"]
    head += ["chosen on valid (grid runs)", "selected on", "best epoch", "s/epoch", "peak RSS"]
    seeds = sorted({tuple(r["seeds"]) for r in data["rows"]})
    note = (
        f"Test metrics: mean ± sample sd over seeds {', '.join(map(str, seeds[0]))} on "
        f"{Path(data['data']).name}."
    )
    return f"{note}\n\n{md_table(head, rows)}\n\n{source(BENCH)}"


@table("readme-ml100k")
def readme_ml100k(arg: str | None, page: Path) -> str:
    data = load(BENCH)
    rows = sorted(data["rows"], key=lambda r: -r.get("test_recall@20", 0.0))
    body = md_table(
        ["model", "test Recall@20", "test NDCG@20", "chosen on valid (grid runs)"],
        [
            [
                f"[{r['model']}]({model_page(page, r['model'])})",
                cell_of(r, "recall@20"),
                cell_of(r, "ndcg@20"),
                chosen(r),
            ]
            for r in rows
        ],
    )
    metrics = {r["valid_metric"] for r in data["rows"]}
    note = ""
    if len(metrics) > 1:
        common = max(metrics, key=lambda m: sum(r["valid_metric"] == m for r in data["rows"]))
        others = [
            f"{r['model']} ({r['valid_metric']})" for r in rows if r["valid_metric"] != common
        ]
        note = f"Selected on valid {common}, except {', '.join(others)}.\n\n"
    return f"{body}\n\n{note}{source(BENCH)}"


@table("chart-benchmark-ml100k")
def chart_benchmark_ml100k(arg: str | None, page: Path) -> str:
    link = rel(page, "docs/img/benchmark_ml100k_all.png")
    alt = "Test Recall@20 of every model on ml-100k-mm, mean and sample sd over seeds"
    return f"![{alt}]({link})\n\n{source(BENCH)}"


def draw_benchmark_ml100k(path: Path) -> None:
    from mentor.benchmark import plot

    data = load(BENCH)
    title = f"{Path(data['data']).name}: test Recall@20, mean ± sd over {data['seeds']} seeds"
    plot(data["rows"], path, title)


CHARTS: dict[str, Callable[[Path], None]] = {
    "benchmark_ml100k_all.png": draw_benchmark_ml100k,
}


@table("benchmark-ml100k-defaults")
def benchmark_ml100k_defaults(arg: str | None, page: Path) -> str:
    name = "benchmark_ml100k_defaults_partial.json"
    data = load(name)
    rows = [
        [r["model"], cell_of(r, "recall@20"), cell_of(r, "ndcg@20"), f"{r['best_epoch']:.0f}"]
        for r in data["rows"]
    ]
    body = md_table(["model", "test R@20", "test N@20", "best epoch"], rows)
    return f"{body}\n\n{source(name)}"


def _baselines(name: str) -> tuple[list[list[Any]], str]:
    data = load(name)
    paper = script_constant("baselines.py", "PAPER")
    out = []
    for model, entry in data["models"].items():
        best = entry["best"]
        ref = paper.get(model)
        out.append(
            [
                model,
                len(entry["runs"]),
                params({k: v for k, v in best["params"].items() if k != "train.seed"}) or "-",
                f4(best["valid"][entry["valid_metric"]]),
                f4(best["test"]["recall@20"]),
                f4(best["test"]["ndcg@20"]),
                f"{ref[0]:.4f} / {ref[1]:.4f}" if ref else "-",
                f"{best['best_epoch']} / {best['epochs_run']}",
            ]
        )
    return out, name


@table("baselines")
def baselines(arg: str | None, page: Path) -> str:
    rows, name = _baselines(f"baselines_{arg}.json")
    metric = next(iter(load(name)["models"].values()))["valid_metric"]
    head = ["model", "grid runs", "best on valid", f"valid {metric}", "test R@20", "test N@20"]
    head += ["paper R@20 / N@20", "best epoch / run"]
    return f"{md_table(head, rows)}\n\n{source(name)}"


@table("readme-baby")
def readme_baby(arg: str | None, page: Path) -> str:
    rows, name = _baselines("baselines_baby.json")
    out = [[f"[{r[0]}]({model_page(page, r[0])})", r[4], r[5], r[6], "999", r[2]] for r in rows]
    lg = load("layergcn_baby.json")
    c = lg["chosen"]
    out.append(
        [
            f"[layergcn]({model_page(page, 'layergcn')})",
            cell_of(c, "recall@20"),
            cell_of(c, "ndcg@20"),
            f"{lg['paper']['recall@20']:.4f} / {lg['paper']['ndcg@20']:.4f}",
            ", ".join(map(str, c["seeds"])),
            params(c["chosen"]),
        ]
    )
    head = ["model", "test Recall@20", "test NDCG@20", "paper R@20 / N@20", "seeds"]
    head.append("chosen on valid")
    return f"{md_table(head, out)}\n\n{source(name, 'layergcn_baby.json')}"


@table("layergcn-baby-grid")
def layergcn_baby_grid(arg: str | None, page: Path) -> str:
    data = load("layergcn_baby.json")
    pick = {k.split(".")[-1]: v for k, v in data["chosen"]["chosen"].items()}
    rows = []
    for g in data["grid"]:
        mark = " (chosen)" if all(g["params"].get(k) == v for k, v in pick.items()) else ""
        rows.append(
            [
                g["params"]["n_layers"],
                g["params"]["dropout"],
                f"{g['params']['reg_weight']}{mark}",
                f4(g["valid_recall@20"]),
                f4(g["test_recall@20"]),
                f4(g["test_ndcg@20"]),
                g["best_epoch"],
            ]
        )
    head = ["n_layers", "dropout", "reg_weight", "valid R@20", "test R@20", "test N@20"]
    head.append("best epoch")
    return f"{md_table(head, rows)}\n\n{source('layergcn_baby.json')}"


@table("layergcn-baby-summary")
def layergcn_baby_summary(arg: str | None, page: Path) -> str:
    data = load("layergcn_baby.json")
    rows = []
    for label, key in (("chosen on valid", "chosen"), ("registered defaults", "defaults")):
        r = data[key]
        rows.append(
            [
                f"{label}: {params(r['chosen']) or 'defaults'}",
                cell_of(r, "recall@20"),
                cell_of(r, "ndcg@20"),
                len(r["seeds"]),
            ]
        )
    for label, key in (("paper", "paper"), ("floor (paper less 7 %)", "floor")):
        rows.append([label, f4(data[key]["recall@20"]), f4(data[key]["ndcg@20"]), "-"])
    body = md_table(["configuration", "test R@20", "test N@20", "seeds"], rows)
    return f"{body}\n\n{source('layergcn_baby.json')}"


# ---------------------------------------------------------------------------------------------
# MENTOR
# ---------------------------------------------------------------------------------------------
@table("mentor-tuned-grid")
def mentor_tuned_grid(arg: str | None, page: Path) -> str:
    data = load("mentor_tuned.json")
    official = {"model.mask_weight_g": 1e-3, "model.temp": 0.2}
    rows = []
    for g in data["grid"]:
        mark = " (official)" if g["params"] == official else ""
        rows.append(
            [
                g["params"]["model.mask_weight_g"],
                f"{g['params']['model.temp']}{mark}",
                f4(g["valid"]),
                f4(g["test_recall@20"]),
                g["best_epoch"],
            ]
        )
    metric = data["grid"][0]["valid_metric"]
    head = ["mask_weight_g", "temp", f"valid {metric}", "test R@20", "best epoch"]
    return f"{md_table(head, rows)}\n\n{source('mentor_tuned.json')}"


@table("mentor-tuned-summary")
def mentor_tuned_summary(arg: str | None, page: Path) -> str:
    data = load("mentor_tuned.json")
    rows = [
        [
            label + (f": {params(r['chosen'])}" if r["chosen"] else ""),
            cell_of(r, "recall@20"),
            cell_of(r, "ndcg@20"),
            f"{r['best_epoch']:.0f}",
            ", ".join(map(str, r["seeds"])),
        ]
        for label, r in data["rows"].items()
    ]
    head = ["model", "test R@20", "test N@20", "best epoch (mean)", "seeds"]
    return f"{md_table(head, rows)}\n\n{source('mentor_tuned.json')}"


@table("mentor-equivalence")
def mentor_equivalence(arg: str | None, page: Path) -> str:
    data = load("mentor_quality.json")
    keys = ["recall@10", "recall@20", "ndcg@10", "ndcg@20"]
    official = script_constant("mentor_quality.py", "OFFICIAL_CODE")
    rows = [["official code (`OFFICIAL_CODE` in `mentor_quality.py`)", "999, 1, 2", "-"]]
    rows[0] += [mean_sd(official[k]) for k in keys]
    for variant, runs in data["variants"].items():
        rows.append(
            [
                f"mentor, {variant}",
                ", ".join(str(r["seed"]) for r in runs),
                ", ".join(f"{r['best_epoch']}/{r['epochs_run']}" for r in runs),
                *(mean_sd([r[k] for r in runs]) for k in keys),
            ]
        )
    head = ["variant", "seeds", "best epoch / run", "test R@10", "test R@20", "test N@10"]
    head.append("test N@20")
    return f"{md_table(head, rows)}\n\n{source('mentor_quality.json')}"


@table("mentor-speed")
def mentor_speed(arg: str | None, page: Path) -> str:
    data = load("mentor_speed.json")
    rows = [
        [
            r["data"],
            r["variant"],
            r["epochs"],
            f"{r['seconds_per_epoch']:.2f}",
            gb(r["peak_rss_gb"]),
        ]
        for r in data["rows"]
    ]
    body = md_table(["data", "variant", "epochs", "s/epoch (median)", "peak RSS"], rows)
    return f"{body}\n\n{source('mentor_speed.json')}"


@table("mentor-memory-clothing")
def mentor_memory_clothing(arg: str | None, page: Path) -> str:
    d = load("mentor_memory_clothing.json")
    rows = [
        [
            num(d["users"]),
            num(d["items"]),
            d["batches"],
            f"{d['seconds_per_batch']:.1f}",
            d["batches_per_epoch"],
            gb(d["peak_rss_gb"]),
        ]
    ]
    head = ["users", "items", "batches timed", "s/batch", "batches/epoch", "peak RSS"]
    return f"{md_table(head, rows)}\n\n{source('mentor_memory_clothing.json')}"


@table("poster-modality")
def poster_modality(arg: str | None, page: Path) -> str:
    data = load("poster_modality.json")
    rows = [
        [
            r["variant"],
            r["model"],
            " + ".join(r["modalities"]),
            cell_of(r, "recall@20"),
            cell_of(r, "ndcg@20"),
            f"{r['best_epoch']:.0f}",
        ]
        for r in data["rows"]
    ]
    head = ["data", "model", "modalities", "test R@20", "test N@20", "best epoch (mean)"]
    return f"{md_table(head, rows)}\n\n{source('poster_modality.json')}"


# ---------------------------------------------------------------------------------------------
# against the published code
# ---------------------------------------------------------------------------------------------
def _within(row: dict, metric: str) -> bool:
    ours, (mean, sd) = row[f"ours_{metric}"][0], row[f"mmrec_{metric}"]
    return abs(ours - mean) <= 2 * sd


def _quality_row(r: dict) -> list[Any]:
    within = r["within_recall@20"] and r["within_ndcg@20"]
    two_sd = _within(r, "recall@20") and _within(r, "ndcg@20")
    verdict = ("yes" if two_sd else "yes (3 %)") if within else "no"
    cap = r.get("max_epochs")
    return [
        r["model"],
        ", ".join(f"{k}={v}" for k, v in r["settings"].items()),
        len(r["seeds"]),
        f"at most {cap}" if cap else "to early stop",
        msd(*r["ours_recall@20"]),
        msd(*r["mmrec_recall@20"]),
        msd(*r["ours_ndcg@20"]),
        msd(*r["mmrec_ndcg@20"]),
        verdict,
        _reference(r, {}),
    ]


QUALITY_HEAD = ["model", "settings", "seeds", "epochs", "ours R@20", "reference R@20"]
QUALITY_HEAD += ["ours N@20", "reference N@20", "within 2 sd (or 3 %)", "reference code"]


@table("quality-vs-mmrec")
def quality_vs_mmrec(arg: str | None, page: Path) -> str:
    data = load("quality_vs_mmrec.json")
    body = md_table(QUALITY_HEAD, [_quality_row(r) for r in data["rows"]])
    return f"{body}\n\n{_quality_source(data['rows'])}"


@table("quality-vs-mmrec-seeds")
def quality_vs_mmrec_seeds(arg: str | None, page: Path) -> str:
    data = load("quality_vs_mmrec.json")
    rows = []
    for r in data["rows"]:
        if "ours_per_seed" not in r:
            continue
        per_seed = zip(r["seeds"], r["ours_per_seed"], r["mmrec_per_seed"], strict=True)
        for seed, ours, theirs in per_seed:
            values = [f4(ours[0]), f4(theirs[0]), f4(ours[1]), f4(theirs[1])]
            rows.append([r["model"], seed, *values, _reference(r, {})])
    head = ["model", "seed", "ours R@20", "reference R@20", "ours N@20", "reference N@20"]
    head += ["reference code"]
    shown = [r for r in data["rows"] if "ours_per_seed" in r]
    return f"{md_table(head, rows)}\n\n{_quality_source(shown)}"


def _quality_source(rows: Sequence[dict]) -> str:
    """The provenance paragraph of quality rows, one line per invocation that measured them."""
    return _assemble(row_parts("quality_vs_mmrec.json", rows, lambda r: r["model"]))


@table("equivalence-b")
def equivalence_b(arg: str | None, page: Path) -> str:
    data = load("equivalence_b.json")
    rows = []
    for c in data["checks"]:
        if "max_abs_diff" in c:
            rows.append([c["check"], f"{c['max_abs_diff']:.2g}", f"{c['scale']:.3g}"])
        else:
            rows.append([c["check"], f"both {c.get('both', '-')}", "-"])
    body = md_table(["check", "largest absolute difference", "largest absolute value"], rows)
    return f"{body}\n\n{source('equivalence_b.json')}"


def _reference(row: dict | None, data: dict) -> str:
    """The reference code of a reference row: its ``reference`` (``owner/name@commit``); rows
    without one ran enoche/MMRec (at the file's ``mmrec_commit`` where it records one)."""
    if row is None:
        return "-"
    if row.get("reference"):
        return row["reference"]
    commit = data.get("mmrec_commit")
    return f"enoche/MMRec@{commit}" if commit else "enoche/MMRec"


def _speed_rows(
    data: dict, dataset: str, models: Sequence[str] | None = None
) -> tuple[list[list], list[dict]]:
    """The table rows of ``dataset`` (ours next to the reference code), and the result rows
    they show."""
    by_model: dict[str, dict[str, dict]] = {}
    for r in data["rows"]:
        if r["data"] == dataset and (models is None or r["model"] in models):
            by_model.setdefault(r["model"], {})[r["impl"]] = r
    out, shown = [], []
    order = {name: i for i, name in enumerate(_registered())}
    ranked = sorted(by_model.items(), key=lambda kv: (order.get(kv[0].split("-")[0], 99), kv[0]))
    for model, impls in ranked:
        ours, theirs = impls.get("mentor"), impls.get("MMRec")
        if ours is None and theirs is not None:
            ours = by_model.get(model.rsplit("-", 1)[0], {}).get("mentor")
        if theirs is None:
            theirs = by_model.get(model.rsplit("-", 1)[0], {}).get("MMRec")

        def speed(r: dict | None) -> str:
            if r is None:
                return "-"
            if r.get("seconds_per_epoch") is not None:
                return f"{r['seconds_per_epoch']:.2f}"
            if r["status"] == "ok":
                return "no training epochs"
            return f"no epoch in {r.get('limit_seconds') or data.get('limit_seconds', 0):.0f} s"

        ratio = "-"
        if ours and theirs and ours.get("seconds_per_epoch") and theirs.get("seconds_per_epoch"):
            ratio = f"{theirs['seconds_per_epoch'] / ours['seconds_per_epoch']:.1f}x"
        out.append(
            [
                model,
                speed(ours),
                speed(theirs),
                ratio,
                gb(ours["peak_rss_gb"] if ours else None),
                gb(theirs["peak_rss_gb"] if theirs else None),
                _reference(theirs, data),
            ]
        )
        shown += [r for r in (ours, theirs) if r is not None]
    return out, shown


SPEED_HEAD = ["model", "ours s/epoch", "reference s/epoch", "speed-up", "ours peak"]
SPEED_HEAD += ["reference peak", "reference code"]


def _speed_labels(shown: Sequence[dict], with_data: bool = False) -> Callable[[dict], str]:
    """How a provenance line names a speed row: its model (and data set), with ``(ours)`` or
    ``(reference)`` where the two rows of a model come from different invocations."""
    stamps: dict[tuple[str, str], set[str]] = {}
    for r in shown:
        stamps.setdefault((r["data"], r["model"]), set()).add(json.dumps(r.get("stamp")))

    def label(row: dict) -> str:
        text = f"{row['data']} {row['model']}" if with_data else row["model"]
        if len(stamps[(row["data"], row["model"])]) > 1:
            text += " (ours)" if row["impl"] == "mentor" else " (reference)"
        return text

    return label


@table("speed-vs-mmrec")
def speed_vs_mmrec(arg: str | None, page: Path) -> str:
    data = load("speed_vs_mmrec.json")
    rows, shown = _speed_rows(data, arg or "ml-100k-mm")
    threads = ", ".join(map(str, data.get("threads", [])))
    note = f"{arg}; {threads} thread(s) for both codes."
    provenance = _assemble(row_parts("speed_vs_mmrec.json", shown, _speed_labels(shown)))
    return f"{note}\n\n{md_table(SPEED_HEAD, rows)}\n\n{provenance}"


@table("speed-vs-recbole")
def speed_vs_recbole(arg: str | None, page: Path) -> str:
    if not exists("speed_vs_recbole.json"):
        return "Not measured yet: `python benchmarks/speed_vs_recbole.py` writes the table."
    d = load("speed_vs_recbole.json")
    by_key = {(r["model"], r["impl"]): r for r in d["summary"]}
    rows = []
    for model in dict.fromkeys(r["model"] for r in d["summary"]):
        ours, theirs = by_key.get((model, "mentor")), by_key.get((model, "RecBole"))
        ratio = "-"
        if ours and theirs and ours["seconds_per_epoch"] and theirs["seconds_per_epoch"]:
            ratio = f"{theirs['seconds_per_epoch'] / ours['seconds_per_epoch']:.1f}x"
        settings = [s.split(".", 1)[1] for s in d["models"][model][2]]

        def cell(r: dict | None, key: str) -> str:
            if r is None:
                return "-"
            failed = [x for x in r.get("status", []) if x.startswith("failed")]
            if key == "seconds_per_epoch":
                if failed and r[key] is None:
                    return "failed (" + failed[0].removeprefix("failed: ").split(":")[0] + ")"
                return "-" if r[key] is None else f"{r[key]:.2f}"
            if key == "peak_rss_gb":
                return gb(r[key])
            return mean_sd(r[key]) if r[key] else "-"

        rows.append(
            [
                model,
                ", ".join(settings),
                cell(ours, "seconds_per_epoch"),
                cell(theirs, "seconds_per_epoch"),
                ratio,
                cell(ours, "peak_rss_gb"),
                cell(theirs, "peak_rss_gb"),
                cell(ours, "recall@20"),
                cell(theirs, "recall@20"),
                cell(ours, "ndcg@20"),
                cell(theirs, "ndcg@20"),
            ]
        )
    head = ["model", "settings (both)", "ours s/epoch", "RecBole s/epoch", "speed-up"]
    head += ["ours peak", "RecBole peak", "ours R@20", "RecBole R@20", "ours N@20"]
    head += ["RecBole N@20"]
    seeds = max((len(r["seeds"]) for r in d["summary"]), default=0)
    note = (
        f"{d['data']} ({d['interactions']}); RecBole {d['recbole_version']}; "
        f"{d['threads']} thread(s) for both codes; test figures after {d['epochs']} epochs, "
        f"mean ± sd over {seeds} seed(s)."
    )
    return f"{note}\n\n{md_table(head, rows)}\n\n{source('speed_vs_recbole.json')}"


@table("mmssl-baby-epoch")
def mmssl_baby_epoch(arg: str | None, page: Path) -> str:
    d = load("mmssl_baby_epoch.json")
    rows = [
        [
            f"{d['seconds_per_epoch']:.1f}",
            f"{d['wall_seconds']:.1f}",
            gb(d["peak_rss_gb"]),
            f4(d["test_recall@20_after_one_epoch"]),
        ]
    ]
    head = ["s/epoch", "wall s", "peak RSS", "test R@20 after one epoch"]
    return f"{d['what']}.\n\n{md_table(head, rows)}\n\n{source('mmssl_baby_epoch.json')}"


# ---------------------------------------------------------------------------------------------
# data preparation, evaluation
# ---------------------------------------------------------------------------------------------
@table("prepare-throughput")
def prepare_throughput(arg: str | None, page: Path) -> str:
    d = load("prepare_throughput.json")
    t = d["text"]
    rows = [
        [
            f"text, {t['encoder']}, {t['input']} ({t['mean_chars']:.0f} characters on average)",
            t["items"],
            f"{t['items_per_second']:,.1f}",
            f"{t['items_per_cpu_second']:,.1f}",
        ]
    ]
    for name, r in d["images"].items():
        if isinstance(r, dict):
            rows.append(
                [
                    f"images, {name}, {d['images']['input']}",
                    r["items"],
                    f"{r['items_per_second']:,.1f}",
                    f"{r['items_per_cpu_second']:,.1f}",
                ]
            )
    head = ["step", "items", "items/s (wall)", "items per CPU second"]
    load_note = (
        f"torch threads: {d['torch_threads']}; 1-minute load average "
        f"{d['load_average_1min_at_start']} at the start (the wall-clock rates are lower bounds "
        "when other jobs share the machine; items per CPU second are less disturbed by them)."
    )
    return f"{md_table(head, rows)}\n\n{load_note}\n\n{source('prepare_throughput.json')}"


@table("prepare-amazon")
def prepare_amazon(arg: str | None, page: Path) -> str:
    a = load("prepare_throughput.json")["amazon"]
    c, i = a["counts"], a["interactions"]
    rows = [
        ["input", a["input"]],
        ["rows read", num(i["rows_read"])],
        ["k-core passes, rows dropped", f"{i['kcore_passes']}, {num(i['kcore_dropped_rows'])}"],
        [
            "kept",
            f"{num(c['interactions'])} interactions, {num(c['users'])} users, "
            f"{num(c['items'])} items",
        ],  # fmt: skip
        ["train / valid / test", f"{num(c['train'])} / {num(c['valid'])} / {num(c['test'])}"],
        [
            "read, clean, k-core, ids, split, write",
            f"{a['prepare_seconds_without_text_model']} s "
            f"({a['prepare_cpu_seconds_without_text_model']} CPU s)",
        ],
        [
            "whole run with MiniLM text features",
            f"{a['prepare_seconds_whole_with_minilm']} s "
            f"({a['prepare_cpu_seconds_whole_with_minilm']} CPU s)",
        ],
        [
            "MiniLM on the short synthetic sentences",
            f"{a['minilm_on_short_synthetic_sentences']['items_per_second']} items/s",
        ],
    ]
    return f"{md_table(['', 'figure'], rows)}\n\n{source('prepare_throughput.json')}"


@table("prepare-scale")
def prepare_scale(arg: str | None, page: Path) -> str:
    d = load("prepare_scale.json")
    rows = []
    for r in d["rows"]:
        code = "chunked" if r["code"] == "chunked" else f"whole file at once ({r['code']})"
        same = {True: "identical", False: "DIFFERENT"}.get(r.get("same_files"), "-")
        rows.append(
            [
                num(r["lines"]),
                f"{r['file_gb']:.2f} GB",
                code,
                num(r["kept_interactions"]),
                f"{r['seconds']:.0f}",
                f"{r['peak_rss_gb']:.2f} GB",
                same,
            ]
        )
    head = ["lines", "file", "reader", "kept (5-core)", "seconds", "peak RSS", "output files"]
    return f"{md_table(head, rows)}\n\n{source('prepare_scale.json')}"


@table("eval-speed")
def eval_speed(arg: str | None, page: Path) -> str:
    d = load("eval_speed.json")
    rows = [[num(d["users"]), f"{d['median_seconds']:.2f}", len(d["seconds"])]]
    body = md_table(["users ranked", "seconds (median)", "repeats"], rows)
    return f"{body}\n\n{source('eval_speed.json')}"


# ---------------------------------------------------------------------------------------------
# serving
# ---------------------------------------------------------------------------------------------
@table("serve-equals-export")
def serve_equals_export(arg: str | None, page: Path) -> str:
    name = "serve_equals_export_lightgcn.json"
    d = load(name)
    rows = [
        [
            d["model"],
            Path(d["data"]).name,
            d["epochs"],
            d["k"],
            num(d["users_compared"]),
            num(d["identical_lists"]),
            len(d["mismatched"]),
        ]
    ]
    head = ["model", "data", "epochs", "k", "users compared", "identical lists", "different"]
    return f"{md_table(head, rows)}\n\n{source(name)}"


@table("serve-schemathesis")
def serve_schemathesis(arg: str | None, page: Path) -> str:
    d = load("serve_schemathesis.json")
    rows = []
    for b in d["bundles"]:
        bundle = "/".join(Path(b["bundle"]).parts[-2:])
        for op, r in b["operations"].items():
            if "skipped" in r:
                rows.append([bundle, op, f"skipped: {r['skipped']}", "-"])
                continue
            statuses = ", ".join(f"{k}: {v}" for k, v in r["responses_by_status"].items())
            rows.append([bundle, op, statuses, len(r["failures"])])
    summary = (
        f"{d['examples_per_operation']} examples per operation and mode; server errors: "
        f"{d['server_errors']}; failed checks: {d['check_failures']}."
    )
    head = ["bundle", "operation", "responses by status", "failures"]
    return f"{summary}\n\n{md_table(head, rows)}\n\n{source('serve_schemathesis.json')}"


@table("faiss-recall")
def faiss_recall(arg: str | None, page: Path) -> str:
    d = load("faiss_recall.json")
    rows = [
        [name, f"{t['ms_per_single_user_call']:.3f}", f"{t['ms_per_user_in_batch_of_100']:.3f}"]
        for name, t in d["timings"].items()
    ]
    note = (
        f"{num(d['items'])} items of {d['dim']} dimensions, {d['queries']} users, k = {d['k']}; "
        f"{d['index']}. Recall@{d['k']} against the exact top-{d['k']}: "
        f"{d['recall@10_vs_exact']}; building the index took {d['build_seconds']} s."
    )
    head = ["index", "ms per single-user call", "ms per user in batches of 100"]
    return f"{note}\n\n{md_table(head, rows)}\n\n{source('faiss_recall.json')}"


@table("serve-memory")
def serve_memory(arg: str | None, page: Path) -> str:
    d = load("serve_memory.json")
    s = d["shape"]
    rows = [
        [name, f"{r['above_idle_mb_median']:,.0f} MB", f"{r['seconds_median']:.1f}"]
        for name, r in d["rows"].items()
    ]
    note = (
        f"One batch of {num(s['batch'])} users (k = {s['k']}) over {num(s['items'])} items "
        f"and {num(s['users'])} users with {s['dim']}-d representations, each in a fresh process "
        "(`recommend` called in that process, or the same recommender served over loopback); "
        f"median over repeats; the same lists in every run: {str(d['same_lists']).lower()}."
    )
    head = ["scoring", "peak memory above idle", "seconds"]
    return f"{note}\n\n{md_table(head, rows)}\n\n{source('serve_memory.json')}"


@table("serve-load")
def serve_load(arg: str | None, page: Path) -> str:
    d = load("serve_load.json")
    described = [
        f"{Path(d['data']).name} ({num(d['users'])} users, {num(d['items'])} items)"
        if "data" in d
        else None,
        f"server: {d['server']}" if "server" in d else None,
        f"client: {d['client']}" if "client" in d else None,
        f"{d['seconds']} s per row" if "seconds" in d else None,
    ]
    rows = []
    for r in d["rows"]:
        users = r.get("users_per_s")
        rows.append(
            [
                r["request"],
                r.get("workers", 1),
                r["connections"],
                f"{r['requests_per_s']:,.1f}",
                f"{users:,.0f}" if users else f"{r['requests_per_s']:,.0f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                r.get("non_2xx", 0),
                r.get("socket_errors") or "-",
            ]
        )
    head = ["request", "workers", "connections", "requests/s", "users/s", "p50 ms", "p99 ms"]
    head += ["non-2xx", "socket errors"]
    note = "; ".join(x for x in described if x) + "."
    return f"{note}\n\n{md_table(head, rows)}\n\n{source('serve_load.json')}"


@table("serve-reload")
def serve_reload(arg: str | None, page: Path) -> str:
    d = load("serve_reload.json")
    rows = []
    for r in d["rows"]:
        per_bundle = ", ".join(f"{k}: {v:,}" for k, v in r.get("answers_per_bundle", {}).items())
        rows.append(
            [
                r["workers"],
                r.get("reload_status", "-"),
                f"{r['reload_seconds']:.2f}" if r.get("reload_seconds") is not None else "-",
                "yes" if r.get("ends_on_new_bundle") else "no",
                f"{r['requests']:,}",
                r.get("failed", 0),
                r.get("mixed", 0),
                per_bundle or "-",
            ]
        )
    head = ["workers", "reload status", "reload s", "ends on the new bundle", "requests"]
    head += ["failed", "mixed", "answers per bundle digest"]
    return f"{md_table(head, rows)}\n\n{source('serve_reload.json')}"


@table("ddp-memory")
def ddp_memory(arg: str | None, page: Path) -> str:
    name = "ddp_memory.json"
    if not exists(name):
        return (
            "No result file yet: `python benchmarks/ddp_memory.py` writes "
            "`benchmarks/results/ddp_memory.json`, and `python benchmarks/render.py` puts it here."
        )
    d = load(name)
    rows = [
        [
            r["processes"],
            f"{r['seconds_per_epoch']:.1f}",
            ", ".join(f"{mb:,}" for mb in r["peak_rss_mb_per_rank"]),
            ", ".join(f"{s:.0%}" for s in r["peak_share_of_one_process"]),
        ]
        for r in d["rows"]
    ]
    note = (
        "MENTOR on Amazon Baby's interactions with seeded random 4096-d image and 384-d text "
        "features, contrastive products in float32, one torch thread per process."
    )
    head = ["processes", "s/epoch", "peak RSS per process (MB)", "share of one process"]
    return f"{note}\n\n{md_table(head, rows)}\n\n{source(name)}"


@table("ddp-quality")
def ddp_quality(arg: str | None, page: Path) -> str:
    """``ddp-quality`` (LightGCN) or ``ddp-quality:MODEL``."""
    name = f"ddp_quality_{arg}.json" if arg else "ddp_quality.json"
    if not exists(name):
        return (
            f"No result file yet: `python benchmarks/ddp_quality.py --model {arg or 'lightgcn'}` "
            f"writes `benchmarks/results/{name}`, and `python benchmarks/render.py` puts it here."
        )
    d = load(name)
    rows = [
        [
            r["processes"],
            msd(*r["summary"]["recall@20"]),
            msd(*r["summary"]["ndcg@20"]),
            ", ".join(str(run["best_epoch"]) for run in r["runs"]),
            ", ".join(str(run["seed"]) for run in r["runs"]),
        ]
        for r in d["rows"]
    ]
    note = (
        f"{d['model']} on {d['data']}, the settings chosen on valid, trained to early stopping; "
        "mean ± sample sd over seeds."
    )
    head = ["processes", "test Recall@20", "test NDCG@20", "best epochs", "seeds"]
    return f"{note}\n\n{md_table(head, rows)}\n\n{source(name)}"


@table("readme-serving")
def readme_serving(arg: str | None, page: Path) -> str:
    """The service's operational checks in a few lines: reload under load, memory of a batch
    request, tail latency at 64 connections."""
    reload, memory, load_ = (load(f"serve_{n}.json") for n in ("reload", "memory", "load"))
    rows = []
    for r in reload["rows"]:
        rows.append(
            [
                f"reload during {r['requests']:,} requests (16 threads, 10 s)",
                r["workers"],
                f"{r['failed']} failed, {r['mixed']} from two bundles",
            ]
        )
    shape = memory["shape"]
    served = [v for k, v in memory["rows"].items() if k.startswith("POST")]
    blocks = (served or [next(v for k, v in memory["rows"].items() if k.startswith("blocks"))])[0]
    rows.append(
        [
            f"memory of a {shape['batch']:,}-user request, {shape['items']:,} items"
            + (" (server process)" if served else " (in process)"),
            "-",
            f"{blocks['above_idle_mb_median']:,.0f} MB above idle "
            f"(one pass: {memory['rows']['one pass']['above_idle_mb_median']:,.0f} MB)",
        ]
    )
    for r in load_["rows"]:
        if r["request"] == "GET" and r["connections"] == 64:
            rows.append(
                [
                    "GET /recommend at 64 connections (Baby, loopback)",
                    r["workers"],
                    f"p99 {r['p99_ms']:,.0f} ms, {r['requests_per_s']:,.0f} requests/s",
                ]
            )
    head = ["check", "workers", "result"]
    sources = source("serve_reload.json", "serve_memory.json", "serve_load.json")
    return f"{md_table(head, rows)}\n\n{sources}"


@table("ddp-models")
def ddp_models(arg: str | None, page: Path) -> str:
    name = "ddp_models.json"
    if not exists(name):
        return (
            "No result file yet: `python benchmarks/ddp_models.py` writes "
            "`benchmarks/results/ddp_models.json`, and `python benchmarks/render.py` puts it here."
        )
    d = load(name)
    rows = []
    for r in d["rows"]:
        if "error" in r:
            failed = "; ".join(f"{n} process(es): {e}" for n, e in r["error"].items() if e)
            rows.append([r["model"], r["epochs"], "failed: " + failed, "-", "-", "-"])
            continue
        curves = r["valid_recall@20"]
        rows.append(
            [
                r["model"],
                r["epochs"],
                " / ".join(f"{v:.4f}" for v in curves["1"]),
                "none" if r["max_valid_difference"] == 0 else f"{r['max_valid_difference']:.4f}",
                f"{r['test_recall@20_1']:.4f} / {r['test_recall@20_2']:.4f}",
                f"{r['seconds_per_epoch_1']:.2f} / {r['seconds_per_epoch_2']:.2f}",
            ]
        )
    note = (
        f"{d['data']}, every trainable model's defaults, one torch thread per process, the same "
        "seed; valid Recall@20 after each epoch with one process, the largest difference from "
        "two processes over those epochs, test Recall@20 and seconds per epoch with one / two "
        "processes (the two share this machine's cores)."
    )
    head = [
        "model",
        "epochs",
        "valid R@20 per epoch (1 process)",
        "largest difference, 2 processes",
        "test R@20, 1 / 2",
        "s/epoch, 1 / 2",
    ]
    provenance = _assemble(row_parts(name, d["rows"], lambda r: r["model"]))
    return f"{note}\n\n{md_table(head, rows)}\n\n{provenance}"


@table("cold-start")
def cold_start(arg: str | None, page: Path) -> str:
    d = load("cold_start.json")
    rows = [[name, msd(*r["recall@20"]), msd(*r["ndcg@20"])] for name, r in d["rows"].items()]
    note = (
        f"Seeds {', '.join(map(str, d['seeds']))}; MENTOR trained for at most "
        f"{', '.join(map(str, sorted(set(d['epochs']))))} epochs; mean ± sample sd over seeds."
    )
    head = ["ordering of the hidden items", "Recall@20", "NDCG@20"]
    return f"{note}\n\n{md_table(head, rows)}\n\n{source('cold_start.json')}"


@table("fold-in")
def fold_in(arg: str | None, page: Path) -> str:
    name = "fold_in.json"
    if not exists(name):
        return (
            "No result file yet: `python benchmarks/fold_in.py` writes "
            "`benchmarks/results/fold_in.json`, and `python benchmarks/render.py` puts it here."
        )
    d = load(name)
    rows = []
    for model, entry in d["models"].items():
        for ordering, r in entry["rows"].items():
            cells = [msd(*v) for v in r.values()]
            label = f"{model} ({entry['fold_in']}, at most {entry['max_epochs']} epochs)"
            rows.append([label, ordering, *cells])
    metrics = list(next(iter(next(iter(d["models"].values()))["rows"].values())))
    note = f"{d['data']}: {d['fraction']:.0%} of the users held out of training."
    head = ["model (fold-in rule, epochs)", "ordering", *metrics]
    return f"{note}\n\n{md_table(head, rows)}\n\n{source(name)}"


# ---------------------------------------------------------------------------------------------
# the scaling study (benchmarks/scaling.py)
# ---------------------------------------------------------------------------------------------
SCALING = "scaling.json"


def _scaling_missing() -> str:
    return (
        "No result file yet: `python benchmarks/scaling.py` writes "
        "`benchmarks/results/scaling.json`, and `python benchmarks/render.py` puts it here."
    )


def _power(n: int) -> str:
    """``1e5`` for 100,000; the plain number otherwise."""
    exp = round(math.log10(n)) if n > 0 else 0
    return f"1e{exp}" if 10**exp == n else f"{n:,}"


def _seconds(x: float) -> str:
    if x >= 3600:
        return f"{x / 3600:,.1f} h"
    return f"{x:,.1f}" if x >= 1 else f"{x:.3f}"


def _exponent(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _scaling_source(d: dict, rows: list[dict]) -> str:
    """The file's provenance, and the invocations of ``rows`` measured by an earlier one."""
    own = {d.get("command"), None}
    others: dict[str, list[str]] = {}
    for r in rows:
        stamp = r.get("stamp") or {}
        if stamp.get("command") not in own:
            label = f"{r['model']} {_power(r['interactions'])}" if "model" in r else ""
            label = label or _power(r["interactions"])
            others.setdefault(f"`{stamp['command']}` ({stamp['date']})", []).append(label)
    extra = "".join(f" Rows {', '.join(v)}: {k}." for k, v in others.items())
    return source(SCALING) + extra


@table("scaling")
def scaling(arg: str | None, page: Path) -> str:
    if not exists(SCALING):
        return _scaling_missing()
    d = load(SCALING)
    sizes = {s["interactions"]: s for s in d["sizes"]}
    if arg == "data":
        rows = []
        for n, s in sorted(sizes.items()):
            knn = s.get("knn")
            rows.append(
                [
                    _power(n),
                    num(s["users"]),
                    num(s["items"]),
                    num(s["train"]),
                    num(s["valid"] + s["test"]),
                    f"{s['load']['seconds']:.1f}",
                    num(s["load"]["peak_rss_mb"]),
                    f"{knn['seconds']:.1f}" if knn else "-",
                    num(knn["peak_rss_mb"]) if knn else "-",
                ]
            )
        head = ["interactions", "users", "items", "train rows", "valid + test rows"]
        head += ["load s", "load peak MB", "kNN graph s", "kNN peak MB"]
        return f"{md_table(head, rows)}\n\n{_scaling_source(d, d['sizes'])}"
    if arg == "ddp":
        ddp = d.get("ddp") or {}
        if not ddp.get("rows"):
            return "No 1-vs-2-process rows in the result file."
        one = {r["model"]: r for r in ddp["rows"] if r["processes"] == 1}
        rows = [
            [
                r["model"],
                r["processes"],
                f"{r['seconds_per_epoch']:.2f}",
                f"{r['seconds_per_epoch'] / one[r['model']]['seconds_per_epoch']:.2f}",
                ", ".join(num(mb) for mb in r["peak_rss_mb_per_rank"]),
            ]
            for r in ddp["rows"]
        ]
        note = (
            f"{_power(ddp['interactions'])} interactions, {ddp['rows'][0]['epochs']} epochs each "
            "(`mentor train --nproc N`, one torch thread per process), on the 2 cores of the "
            "machine below; s/epoch is the median training time of an epoch."
        )
        head = ["model", "processes", "s/epoch", "time vs 1 process", "peak RSS per rank (MB)"]
        stamp = ddp.get("stamp") or {}
        extra = (
            f" These rows: `{stamp['command']}` ({stamp['date']})."
            if stamp.get("command") not in (None, d.get("command"))
            else ""
        )
        return f"{note}\n\n{md_table(head, rows)}\n\n{source(SCALING)}{extra}"
    rows = []
    for r in sorted(d["runs"], key=lambda r: (_scaling_order(r["model"]), r["interactions"])):
        if r["status"] != "ok":
            not_run = r["status"] == "not run"
            why = f"not run: {r['reason']}" if not_run else f"did not fit: {r['status']}"
            cells = [why, "-", "-", "-"]
            if r.get("peak_rss_mb"):
                cells[2] = f"{num(r['peak_rss_mb'])} (before stopping)"
            rows.append(
                [r["model"], _power(r["interactions"]), *cells, num(r["predicted_peak_mb"])]
            )
            continue
        if r["full_epoch"]:
            how = f"full epoch ({r['batches_per_epoch']:,} batches)"
        else:
            how = f"{r['batches_timed']:,} of {r['batches_per_epoch']:,} batches, extrapolated"
        evaluated = (
            ""
            if r["eval_ranked_users"] == r["valid_users"]
            else f" ({r['eval_ranked_users']:,} of {r['valid_users']:,} users, extrapolated)"
        )
        rows.append(
            [
                r["model"],
                _power(r["interactions"]),
                _seconds(r["epoch_seconds"]),
                how,
                num(r["peak_rss_mb"]),
                _seconds(r["eval_seconds"]) + evaluated,
                num(r["predicted_peak_mb"]),
            ]
        )
    head = ["model", "interactions", "s/epoch", "measured", "peak RSS (MB)"]
    head += ["valid eval s", "predicted peak (MB)"]
    fits = d.get("fits", {})
    exp_rows = [
        [
            model,
            ", ".join(_power(n) for n in f["sizes"]),
            _exponent(f["epoch_seconds"]),
            _exponent(f["eval_seconds"]),
            _exponent(f["peak_rss"]),
            _exponent(f["peak_rss_above_base"]),
        ]
        for model, f in fits.items()
    ]
    exp_head = ["model", "sizes fitted", "s/epoch", "eval s", "peak RSS", "peak RSS above base"]
    return (
        f"{md_table(head, rows)}\n\nExponents b of a log-log least-squares fit "
        f"(figure ~ interactions^b):\n\n{md_table(exp_head, exp_rows)}\n\n"
        f"{_scaling_source(d, d['runs'])}"
    )


def _scaling_order(model: str) -> int:
    order = ["lightgcn", "freedom", "mentor"]
    return order.index(model) if model in order else len(order)


@table("scaling-model")
def scaling_model(arg: str | None, page: Path) -> str:
    if not exists(SCALING):
        return _scaling_missing()
    d = load(SCALING)
    mm = d["memory_model"]
    if arg == "fit":
        per = mm["per_interaction"]
        rows = []
        for model, m in mm["models"].items():
            largest, scaled = m["largest_interactions_in_budget"], m["largest_interactions_scaled"]
            rows.append(
                [
                    model,
                    f"{m['bytes_per_interaction']:,.0f}",
                    f"{m['constant_bytes'] / 2**20:,.0f}",
                    f"{m['measured_over_predicted']:.2f} at {_power(m['measured_at'])}",
                    f"{largest / 1e6:,.0f}M ({largest * per['user'] / 1e6:,.1f}M users, "
                    f"{largest * per['item'] / 1e6:,.2f}M items)",
                    f"{scaled / 1e6:,.0f}M",
                ]
            )
        budget = f"{mm['budget_gb']} GB"
        head = ["model", "bytes per interaction", "constant (MB)", "measured / predicted"]
        head += [f"largest in {budget} (interactions)", "scaled by measured / predicted"]
        note = (
            "At this data's proportions (per interaction: "
            f"{per['user']:.4f} users, {per['item']:.4f} items, {per['edge']:.3f} train edges, "
            f"{per['held_out']:.3f} held-out rows); M = million."
        )
        return f"{note}\n\n{md_table(head, rows)}\n\n{source(SCALING)}"
    rows = []
    for model, m in mm["models"].items():
        for p in m["components"]:
            rows.append(
                [
                    model,
                    p["name"],
                    *(f"{p[u]:,.0f}" if p[u] else "" for u in ("user", "item", "edge", "held_out")),
                    f"{p['constant'] / 2**20:,.0f}" if p["constant"] else "",
                ]
            )
    head = ["model", "component", "B/user", "B/item", "B/train edge", "B/held-out row"]
    head += ["constant (MB)"]
    note = (
        f"Plus the interpreter with torch and mentor imported ({num(mm['base_rss_mb'])} MB "
        f"resident); kNN graph: {mm['knn_entries_per_item']:.1f} stored entries per item."
    )
    return f"{md_table(head, rows)}\n\n{note}\n\n{source(SCALING)}"


@table("chart-scaling")
def chart_scaling(arg: str | None, page: Path) -> str:
    link = rel(page, "docs/img/scaling.png")
    alt = "Seconds per epoch, valid evaluation seconds and peak RSS against interactions, log-log"
    return f"![{alt}]({link})\n\n{source(SCALING)}"


def draw_scaling(path: Path) -> None:
    if not exists(SCALING):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = load(SCALING)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"lightgcn": "tab:blue", "freedom": "tab:orange", "mentor": "tab:green"}
    for model in sorted({r["model"] for r in d["runs"]}, key=_scaling_order):
        runs = sorted(
            (r for r in d["runs"] if r["model"] == model), key=lambda r: r["interactions"]
        )
        ok = [r for r in runs if r["status"] == "ok"]
        colour = colours.get(model)
        xs = [r["interactions"] for r in ok]
        left.plot(xs, [r["epoch_seconds"] for r in ok], "o-", color=colour, label=f"{model} epoch")
        guessed = [r for r in ok if not r["full_epoch"]]
        left.plot(
            [r["interactions"] for r in guessed],
            [r["epoch_seconds"] for r in guessed],
            "o",
            color="white",
            markeredgecolor=colour,
        )
        left.plot(xs, [r["eval_seconds"] for r in ok], "s--", color=colour, label=f"{model} eval")
        right.plot(
            xs, [r["peak_rss_mb"] / 1024 for r in ok], "o-", color=colour, label=f"{model} measured"
        )
        right.plot(
            [r["interactions"] for r in runs],
            [r["predicted_peak_mb"] / 1024 for r in runs],
            "x:",
            color=colour,
            label=f"{model} model",
        )
    budget = d["memory_model"]["budget_gb"] * 1e9 / 2**30
    right.axhline(budget, color="grey", lw=0.8)
    right.text(
        0.02,
        budget,
        f"{d['memory_model']['budget_gb']} GB",
        va="bottom",
        transform=right.get_yaxis_transform(),
    )
    for ax, label in ((left, "seconds"), (right, "peak RSS (GiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactions")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    left.set_title("epoch (hollow: extrapolated) and valid evaluation (dashed)")
    right.set_title("peak resident memory: measured and memory model")
    fig.suptitle(f"{d['machine']}, 1 torch thread", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


CHARTS["scaling.png"] = draw_scaling


# ---------------------------------------------------------------------------------------------
# models: the registry, per-model settings and results
# ---------------------------------------------------------------------------------------------
def _registered() -> list[str]:
    from mentor.registry import model_names

    return model_names()


def _spec(name: str) -> Any:
    from mentor.registry import get_model

    return get_model(name)


def _adds_items(spec: Any) -> bool:
    from mentor.models.base import Recommender

    return spec.model_cls.new_item_representations is not Recommender.new_item_representations


def _grid_points(grid: dict[str, list]) -> int:
    return math.prod(len(set(map(json.dumps, v))) for v in grid.values()) if grid else 1


@table("models-overview")
def models_overview(arg: str | None, page: Path) -> str:
    from mentor.registry import all_models

    rows = [
        [
            f"[`{s.name}`]({model_page(page, s.name)})",
            s.summary,
            s.modalities,
            s.model_cls.fold_in,
            "yes" if _adds_items(s) else "no",
            _grid_points(s.grid) if s.grid else "-",
        ]
        for s in all_models()
    ]
    head = ["name", "model", "item features", "fold-in", "adds new items", "grid points"]
    return md_table(head, rows) + "\n\nGenerated from the registry (`mentor.registry`)."


def _value(v: Any) -> str:
    return f"`{json.dumps(v)}`"


@table("model-settings")
def model_settings(arg: str | None, page: Path) -> str:
    from mentor.config import EvalConfig, TrainConfig

    spec = _spec(arg or "")
    grid = {k: v for k, v in spec.grid.items()}
    rows = []
    for f in dataclasses.fields(spec.config_cls):
        default = (
            f.default_factory()  # type: ignore[misc]
            if f.default_factory is not dataclasses.MISSING
            else f.default
        )
        key = f"model.{f.name}"
        values = grid.pop(key, None)
        rows.append([f"`{key}`", _value(default), ", ".join(map(str, values)) if values else ""])
    for section, cls, overrides in (
        ("train", TrainConfig, spec.train_defaults),
        ("eval", EvalConfig, spec.eval_defaults),
    ):
        shared = {f.name for f in dataclasses.fields(cls)}
        for key in sorted(
            set(overrides) | {k.split(".", 1)[1] for k in grid if k.startswith(f"{section}.")}
        ):
            if key not in shared:
                continue
            values = grid.pop(f"{section}.{key}", None)
            default = overrides.get(key, _shared_default(cls, key))
            note = " (this model's default)" if key in overrides else ""
            rows.append(
                [f"`{section}.{key}`", _value(default) + note, ", ".join(map(str, values or []))]
            )
    head = ["setting", "default", "search grid (`mentor benchmark --grid default`)"]
    points = _grid_points(spec.grid) if spec.grid else 0
    facts = (
        f"Item features: {spec.modalities}; fold-in rule: `{spec.model_cls.fold_in}`; adds new "
        f"items from features: {'yes' if _adds_items(spec) else 'no'}; grid: "
        + (f"{points} points." if points else "none (the defaults alone).")
    )
    return f"{facts}\n\n{md_table(head, rows)}\n\nGenerated from the registry (`mentor.registry`)."


def _shared_default(cls: Any, key: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == key)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@table("config-reference")
def config_reference(arg: str | None, page: Path) -> str:
    from mentor.config import DataConfig, EvalConfig, TrainConfig

    rows = []
    for section, cls in (("data", DataConfig), ("train", TrainConfig), ("eval", EvalConfig)):
        for f in dataclasses.fields(cls):
            rows.append([f"`{section}.{f.name}`", _value(_shared_default(cls, f.name))])
    body = md_table(["setting", "default"], rows)
    return body + "\n\nGenerated from `mentor.config` (models may override a default)."


@table("model-results")
def model_results(arg: str | None, page: Path) -> str:
    model = arg or ""
    parts: list[str] = []
    files: list[str] = []
    quality = []
    bench = next((r for r in load(BENCH)["rows"] if r["model"] == model), None)
    if bench:
        quality.append(
            [
                "ml-100k-mm, `mentor benchmark`",
                chosen(bench),
                len(bench["seeds"]),
                cell_of(bench, "recall@20"),
                cell_of(bench, "ndcg@20"),
                f"{bench['best_epoch']:.0f}",
            ]
        )
        files.append(BENCH)
    quality_rows: list[dict] = []
    for r in load("quality_vs_mmrec.json")["rows"]:
        if r["model"] == model:
            settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
            for impl in ("ours", "mmrec"):
                code = "mentor" if impl == "ours" else f"reference code ({_reference(r, {})})"
                quality.append(
                    [
                        f"ml-100k-mm, {code}",
                        settings,
                        len(r["seeds"]),
                        msd(*r[f"{impl}_recall@20"]),
                        msd(*r[f"{impl}_ndcg@20"]),
                        "-",
                    ]
                )
            quality_rows.append(r)
    baby = load("baselines_baby.json")["models"].get(model)
    if baby:
        best = baby["best"]
        quality.append(
            [
                "Amazon Baby, grid chosen on valid",
                params({k: v for k, v in best["params"].items() if k != "train.seed"}) or "-",
                1,
                f4(best["test"]["recall@20"]),
                f4(best["test"]["ndcg@20"]),
                best["best_epoch"],
            ]
        )
        files.append("baselines_baby.json")
    if model == "layergcn":
        c = load("layergcn_baby.json")["chosen"]
        quality.append(
            [
                "Amazon Baby, grid chosen on valid",
                params(c["chosen"]),
                len(c["seeds"]),
                cell_of(c, "recall@20"),
                cell_of(c, "ndcg@20"),
                f"{c['best_epoch']:.0f}",
            ]
        )
        files.append("layergcn_baby.json")
    if quality:
        head = ["data, code", "settings", "seeds", "test R@20", "test N@20", "best epoch"]
        parts.append(md_table(head, quality))
    speed_data = load("speed_vs_mmrec.json")
    speed, shown = [], []
    for dataset in ("ml-100k-mm", "baby-random"):
        names = [m for m in {r["model"] for r in speed_data["rows"]} if m.split("-")[0] == model]
        table_rows, used = _speed_rows(speed_data, dataset, sorted(names))
        speed += [[dataset, *row] for row in table_rows]
        shown += used
    provenance = [_part(name, meta(name)) for name in dict.fromkeys(files)]
    if quality_rows:
        provenance += row_parts("quality_vs_mmrec.json", quality_rows, lambda r: r["model"])
    if speed:
        parts.append(md_table(["data", *SPEED_HEAD], speed))
        labels = _speed_labels(shown, with_data=True)
        provenance += row_parts("speed_vs_mmrec.json", shown, labels)
    if not parts:
        return "No measured results for this model yet."
    return "\n\n".join(parts) + "\n\n" + _assemble(provenance)


# ---------------------------------------------------------------------------------------------
# every result file and its provenance
# ---------------------------------------------------------------------------------------------
@table("result-files")
def result_files(arg: str | None, page: Path) -> str:
    rows = []
    for path in sorted(RESULTS.glob("*.json")):
        m = meta(path.name)
        mark = {k: " (commit)" if k in m.get("backfilled", "") else "" for k in ("version", "date")}
        date = m.get("date", "-") + mark["date"]
        how = (
            f"`{m['command']}`"
            if "command" in m
            else (f"`{m['script']}`" if "script" in m else "-")
        )
        version = m.get("version", "-") + mark["version"]
        rows.append([f"`{path.name}`", version, date, m.get("machine", "-"), how])
    head = ["file", "mentor", "date", "machine", "command (or script)"]
    note = (
        "A version or date marked (commit) is that of the commit that last changed the file, "
        "which does not record it; `benchmarks/provenance.json` holds it with the file's SHA-256."
    )
    return f"{md_table(head, rows)}\n\n{note}"


# ---------------------------------------------------------------------------------------------
# the HTTP reference, from the OpenAPI schema of a tiny bundle
# ---------------------------------------------------------------------------------------------
@functools.cache
def openapi() -> dict[str, Any]:
    """The OpenAPI schema of ``mentor serve`` over a MENTOR bundle trained for one epoch on 12
    users and 15 items with two modalities (``image`` 8-d, ``text`` 4-d)."""
    import numpy as np

    import mentor
    from mentor.bundle import write_bundle
    from mentor.serve import Recommender
    from mentor.serve.app import create_app

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        old_cache = os.environ.get("MENTOR_CACHE")
        os.environ["MENTOR_CACHE"] = str(tmp / "cache")
        try:
            rng = np.random.default_rng(0)
            data = tmp / "data"
            data.mkdir()
            lines = ["userID\titemID\tx_label"]
            for u in range(12):
                items = rng.choice(15, size=6, replace=False)
                labels = [0, 0, 0, 0, 1, 2]
                lines += [f"{u}\t{i}\t{x}" for i, x in zip(items, labels, strict=True)]
            (data / "tiny.inter").write_text("\n".join(lines) + "\n")
            np.save(data / "image_feat.npy", rng.standard_normal((15, 8)).astype("f4"))
            np.save(data / "text_feat.npy", rng.standard_normal((15, 4)).astype("f4"))
            mentor.train(
                "mentor", data, tmp / "run", epochs=1, knn_k=3, topk=[5, 10],
                valid_metric="recall@10", progress=False, log=lambda _: None,
            )  # fmt: skip
            write_bundle(tmp / "run", tmp / "bundle")
            app = create_app(Recommender.load(tmp / "bundle"), api_key="documentation")
            return json.loads(json.dumps(app.openapi()))
        finally:
            if old_cache is None:
                os.environ.pop("MENTOR_CACHE", None)
            else:
                os.environ["MENTOR_CACHE"] = old_cache


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _type(spec: dict, schema: dict) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type(spec, s) for s in schema["anyOf"])
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _type(spec, schema["allOf"][0])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(spec, schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        return f"object of {_type(spec, extra) if isinstance(extra, dict) else 'any'}"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    return str(kind)


def _span(low: Any, high: Any, unit: str = "") -> str:
    if low is not None and high is not None:
        return f"{low}{unit}" if low == high else f"{low}-{high}{unit}"
    if low is not None:
        return f">= {low}{unit}"
    return f"<= {high}{unit}" if high is not None else ""


def _limits(schema: dict) -> str:
    """``1-1000 items, each 1-512 characters`` from JSON-schema bounds."""
    out = []
    values = _span(schema.get("minimum"), schema.get("maximum"))
    if values:
        out.append(values)
    for key, label in (("exclusiveMinimum", ">"), ("exclusiveMaximum", "<")):
        if key in schema:
            out.append(f"{label} {schema[key]}")
    chars = _span(schema.get("minLength"), schema.get("maxLength"), " characters")
    if chars:
        out.append(chars)
    items = _span(schema.get("minItems"), schema.get("maxItems"), " items")
    if items:
        out.append(items)
    for sub in schema.get("anyOf", []):
        inner = _limits(sub)
        if inner:
            out.append(inner)
    if schema.get("type") == "array":
        inner = _limits(schema.get("items", {}))
        if inner:
            out.append(f"each {inner}")
    return ", ".join(out)


def _describe(text: str | None) -> str:
    """One line of text, reST double backticks as Markdown code."""
    return " ".join((text or "").split()).replace("``", "`")


def _linked(spec: dict, text: str) -> str:
    """Schema names in ``text`` as links to their section below."""
    names = spec.get("components", {}).get("schemas", {})
    return re.sub(
        r"\b([A-Z]\w+)\b", lambda m: f"[{m[1]}](#{m[1].lower()})" if m[1] in names else m[1], text
    )


def _schema_rows(spec: dict, schema: dict) -> list[list[str]]:
    schema = _resolve(spec, schema)
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        rows.append(
            [
                f"`{name}`",
                _linked(spec, _type(spec, prop)),
                "yes" if name in required else "no",
                _value(prop["default"]) if "default" in prop else "",
                _limits(prop),
                _describe(prop.get("description")),
            ]
        )
    return rows


FIELD_HEAD = ["field", "type", "required", "default", "limits", "description"]


@table("http-reference")
def http_reference(arg: str | None, page: Path) -> str:
    spec = openapi()
    schemas = spec.get("components", {}).get("schemas", {})
    out = [
        f"Generated from the OpenAPI schema of `mentor serve` (API version "
        f"{spec['info']['version']}) over a MENTOR bundle with two modalities, `image` (8-d) and "
        "`text` (4-d); a bundle's own modalities and dimensions replace them in `POST /items`. "
        "The live schema of a running server is at `/openapi.json`, with an interactive page at "
        "`/docs`."
    ]
    used: list[str] = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            out.append(f"### `{method.upper()} {path}`")
            summary = _describe(op.get("description") or op.get("summary"))
            if summary:
                out.append(summary)
            params = op.get("parameters", [])
            if params:
                rows = []
                for p in params:
                    schema = p.get("schema", {})
                    kind = _type(spec, schema)
                    used.append(kind)
                    rows.append(
                        [
                            f"`{p['name']}`",
                            p["in"],
                            _linked(spec, kind),
                            "yes" if p.get("required") else "no",
                            _value(schema["default"]) if "default" in schema else "",
                            _limits(schema),
                            _describe(p.get("description")),
                        ]
                    )
                head = ["parameter", "in", "type", "required", "default", "limits", "description"]
                out.append(md_table(head, rows))
            body = op.get("requestBody", {})
            for media, content in body.get("content", {}).items():
                kind = _type(spec, content.get("schema", {}))
                used.append(kind)
                needed = "required" if body.get("required") else "optional"
                out.append(f"Request body (`{media}`, {needed}): {_linked(spec, kind)}.")
            responses = []
            for status, r in op.get("responses", {}).items():
                kinds = [_type(spec, c.get("schema", {})) for c in r.get("content", {}).values()]
                used += kinds
                responses.append(
                    [status, _describe(r.get("description")), _linked(spec, ", ".join(kinds))]
                )
            out.append(md_table(["status", "meaning", "body"], responses))
    seen: set[str] = set()
    queue = [n for kind in used for n in re.findall(r"\b([A-Z]\w+)\b", kind) if n in schemas]
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        for prop in _resolve(spec, schemas[name]).get("properties", {}).values():
            queue += [n for n in re.findall(r"\b([A-Z]\w+)\b", _type(spec, prop)) if n in schemas]
    out.append("### Schemas")
    for name in sorted(seen):
        out.append(f"#### {name}")
        if schemas[name].get("description"):
            out.append(_describe(schemas[name]["description"]))
        rows = _schema_rows(spec, schemas[name])
        out.append(md_table(FIELD_HEAD, rows) if rows else f"{_type(spec, schemas[name])}.")
    return "\n\n".join(out)


# ---------------------------------------------------------------------------------------------
# pages
# ---------------------------------------------------------------------------------------------
def pages() -> list[Path]:
    """README.md and every Markdown page of docs/, relative to ROOT."""
    found = [Path("README.md")] if (ROOT / "README.md").is_file() else []
    found += sorted(p.relative_to(ROOT) for p in DOCS.rglob("*.md"))
    return found


def render_page(page: Path) -> tuple[str, list[str]]:
    """The page with every region rendered, and the names of the regions that changed."""
    text = (ROOT / page).read_text()
    changed: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name, arg = match["name"], match["arg"]
        if name not in RENDERERS:
            raise SystemExit(f"{page}: unknown table '{name}' (python benchmarks/render.py --list)")
        body = RENDERERS[name](arg, page).rstrip("\n") + "\n"
        if body != match["body"]:
            changed.append(name + (f":{arg}" if arg else ""))
        return match["open"] + body + match["close"]

    return REGION.sub(replace, text), changed


def check() -> list[str]:
    """``page: region`` for every region whose text differs from what the JSON gives."""
    out = []
    for page in pages():
        _, changed = render_page(page)
        out += [f"{page}: {name}" for name in changed]
    return out


def write() -> list[str]:
    """Rewrite every region (and the charts); the regions that changed."""
    out = []
    for page in pages():
        text, changed = render_page(page)
        if changed:
            (ROOT / page).write_text(text)
            out += [f"{page}: {name}" for name in changed]
    IMG.mkdir(parents=True, exist_ok=True)
    for filename, draw in CHARTS.items():
        draw(IMG / filename)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a region differs")
    parser.add_argument("--list", action="store_true", help="print the renderers")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(sorted(RENDERERS)))
        return 0
    if args.check:
        stale = check()
        for line in stale:
            print(f"stale: {line}")
        if stale:
            print("run: python benchmarks/render.py", file=sys.stderr)
        return 1 if stale else 0
    for line in write():
        print(f"rendered: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

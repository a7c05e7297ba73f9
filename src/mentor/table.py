"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned first column, right-aligned others; floats with four decimals."""

    def cell(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), rule, *(line(r) for r in text)])


def metric_ks(metrics: dict[str, float]) -> list[int]:
    """The cut-offs K present in a metrics dict (keys like ``recall@20``), ascending."""
    return sorted({int(key.split("@")[1]) for key in metrics if key.startswith("recall@")})


def metrics_table(results: dict[str, dict[str, float]], ks: Sequence[int] | None = None) -> str:
    """One row per named result with Recall/NDCG/Precision/MAP/Hit at each K.

    ``ks`` defaults to 10 and 20 where the results have them, else to every K they have, so a run
    evaluated at other cut-offs (``eval.topk``) still gets a table.
    """
    if ks is None:
        present = set.intersection(*(set(metric_ks(m)) for m in results.values()))
        ks = sorted(present & {10, 20}) or sorted(present)
    names = ["recall", "ndcg", "precision", "map", "hit"]
    headers = ["model", *(f"{n}@{k}" for k in ks for n in names)]
    rows = [[label, *(m[f"{n}@{k}"] for k in ks for n in names)] for label, m in results.items()]
    return format_table(headers, rows)

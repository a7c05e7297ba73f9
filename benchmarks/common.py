"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> str:
    """CPU model and cores (or the GPU) and the torch version."""
    from mentor.hardware import describe_machine

    return describe_machine()


def mean_sd(values: list[float]) -> str:
    """``0.1234 (0.0012)``: mean and sample standard deviation."""
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "-"
    return f"{statistics.mean(values):.4f} ({statistics.stdev(values):.4f})"

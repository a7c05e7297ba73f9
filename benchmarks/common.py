"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> str:
    """CPU model and cores (or the GPU) and the torch version."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} (CPU)"


def mean_sd(values: list[float]) -> str:
    """``0.1234 (0.0012)``: mean and sample standard deviation."""
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "-"
    return f"{statistics.mean(values):.4f} ({statistics.stdev(values):.4f})"

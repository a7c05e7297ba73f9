"""benchmarks/gpu.sh, the prepared GPU measurement, checked on CPU with --dry-run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from mentor.registry import all_models

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_script_dry_run_on_cpu(tmp_path: Path) -> None:
    out = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--device", "cpu", "--dry-run",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert {"date", "machine", "device", "version", "command", "rows"} <= set(result)
    rows = result["rows"]
    assert not [r for r in rows if "error" in r or "skipped" in r], rows
    models = {r["model"] for r in rows}
    assert models == {spec.name for spec in all_models()}
    variants = {r["variant"] for r in rows if r["model"] == "mentor"}
    assert variants == {"float32", "bfloat16"}
    trainable = {spec.name for spec in all_models() if spec.model_cls.trainable}
    assert all(r["seconds_per_epoch"] > 0 for r in rows if r["model"] in trainable)
    assert all(r["peak_rss_mb"] > 0 for r in rows)

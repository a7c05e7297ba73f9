"""What the device can do, asked in one place so that models stay device-agnostic."""

from __future__ import annotations

import torch

from mentor.errors import MentorError


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively (fast, float32 accumulation).

    CUDA from compute capability 8 (Ampere); CPUs whose oneDNN has bfloat16 kernels (AVX512-BF16
    or AMX); never MPS.
    """
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak memory of this process so far, in MiB: ``rss`` (resident, from the OS) and, on
    CUDA, ``device`` (the most torch has held allocated on the GPU)."""
    import resource
    import sys

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = {"rss": maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)}
    if device.type == "cuda":
        peak["device"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak


def describe_machine() -> str:
    """The CPU model and core count (or the GPU) and the torch version, for result files."""
    import os
    import platform
    from pathlib import Path

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


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; an unavailable device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MentorError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise MentorError("--device mps: MPS is not available here; use --device cpu or auto")
    return torch.device(name)

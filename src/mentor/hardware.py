"""What the device can do, asked in one place so that models stay device-agnostic."""

from __future__ import annotations

import torch


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

"""Where and in what precision to run: the one resolver of `--device` and `--dtype`."""

from __future__ import annotations

import os

import torch


class DeviceError(ValueError):
    """The device asked for is not here; one line for the user."""


def resolve_device(name: str = "auto") -> torch.device:
    """auto|cpu|cuda|mps -> a torch device; auto prefers CUDA (this rank's GPU under torchrun)."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda: no CUDA GPU is available")
        return torch.device(
            "cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count()
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("--device mps: MPS is not available")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """auto|float32|bfloat16|float16 -> a dtype; auto is bf16 on CUDA, float32 elsewhere."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in dtypes:
        raise ValueError(f"unknown dtype {name!r}; use one of auto, {', '.join(dtypes)}")
    return dtypes[name]

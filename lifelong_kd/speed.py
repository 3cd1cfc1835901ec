"""Fast by default: which numerics and compilation a run uses when asked for ``auto``.

- ``amp auto``: bf16 autocast on CUDA devices that support bf16 and on CPUs
  with AMX-bf16 or AVX-512 BF16 (``/proc/cpuinfo`` flags); float32 elsewhere.
- ``compile auto``: ``torch.compile`` on CUDA; on CPU only when the run trains
  at least ``CPU_COMPILE_MIN_IMAGES`` images, the point where the measured
  speed-up repays the cold compilation (README, "Fast by default").
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import UsageError

AMP_CHOICES = ("auto", "bf16", "off")
COMPILE_CHOICES = ("auto", "on", "off")
EVAL_PRECISIONS = ("train", "fp32")
FAST_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
# Measured on this repo's 2-core AMD EPYC (AVX-512 BF16), reduced ResNet-18, batch 32, bf16:
# a cold compile costs COLD_COMPILE_SECONDS and saves about 1/eager - 1/compiled seconds per image.
CPU_COMPILE_MIN_IMAGES = 150_000


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def resolve_amp(requested: str, device: torch.device) -> tuple[str, str]:
    """(``bf16`` or ``off``, the reason) for ``--amp requested`` on ``device``."""
    if requested not in AMP_CHOICES:
        raise UsageError(f"unknown --amp '{requested}': choose from {', '.join(AMP_CHOICES)}")
    if requested != "auto":
        return requested, "asked for"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "CUDA device with bf16"
        return "off", "CUDA device without bf16"
    found = sorted(FAST_BF16_CPU_FLAGS & cpu_flags())
    if found:
        return "bf16", f"CPU with {', '.join(found)}"
    return "off", "CPU without AMX-bf16 or AVX-512 BF16"


def resolve_compile(requested: str, device: torch.device, train_images: int) -> tuple[bool, str]:
    """(compile or not, the reason) for ``--compile requested`` when the run trains ``train_images`` images."""
    if requested not in COMPILE_CHOICES:
        raise UsageError(f"unknown --compile '{requested}': choose from {', '.join(COMPILE_CHOICES)}")
    if requested != "auto":
        return requested == "on", "asked for"
    if device.type == "cuda":
        return True, "CUDA device"
    if train_images >= CPU_COMPILE_MIN_IMAGES:
        return True, f"CPU run of {train_images} training images >= {CPU_COMPILE_MIN_IMAGES}"
    return False, f"CPU run of {train_images} training images < {CPU_COMPILE_MIN_IMAGES}: compiling would not pay"

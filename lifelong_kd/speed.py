"""Fast by default: which numerics and compilation a run uses when asked for ``auto``.

- ``amp auto``: bf16 autocast on CUDA devices with bf16 units (Ampere and later) and on CPUs
  with AMX-bf16 or AVX-512 BF16 (``/proc/cpuinfo`` flags); float32 elsewhere.
- ``compile auto``: ``torch.compile`` on CUDA; on CPU only when the run trains
  at least ``CPU_COMPILE_MIN_IMAGES`` images, the point where the measured
  speed-up repays the cold compilation (benchmarks/README.md, "Fast by default"; design: DESIGN.md).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import UsageError

AMP_CHOICES = ("auto", "bf16", "off")
COMPILE_CHOICES = ("auto", "on", "off")
EVAL_PRECISIONS = ("train", "bf16", "fp32")
FAST_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
# The larger of the two break-even points measured (benchmarks/compile_cost.py; benchmarks/README.md):
# ~127,000 training images on an Intel Xeon with AMX (1.38x faster compiled), ~440,000 on an AMD EPYC
# with AVX-512 BF16 (1.07x), each against a cold compile of about a minute.
CPU_COMPILE_MIN_IMAGES = 450_000


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
        capability = torch.cuda.get_device_capability(device)
        if capability >= (8, 0):
            return "bf16", f"CUDA device with bf16 units (compute capability {capability[0]}.{capability[1]})"
        return "off", "CUDA device without bf16 units (compute capability < 8.0: bf16 would be emulated)"
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

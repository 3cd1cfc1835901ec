"""Provenance shared by the benchmark scripts: command, commit, machine."""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from lifelong_kd.data import make_stream
from lifelong_kd.models import build_model
from lifelong_kd.runner import Runner
from lifelong_kd.strategies import build_strategy
from lifelong_kd.training import TrainConfig, seed_everything

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
SHARED_DATA = REPO.parent / "shared" / "data"


def provenance() -> dict[str, Any]:
    """Where and how a benchmark ran."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                    capture_output=True, text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    cpu = platform.processor() or platform.machine()
    try:
        model_lines = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        cpu = model_lines[0].split(":", 1)[1].strip() if model_lines else cpu
    except OSError:
        pass
    return {
        "command": " ".join(["python", *sys.argv]),
        "commit": commit + ("+dirty" if dirty else ""),
        "machine": {
            "cpu": cpu,
            "cpu_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def derpp_first_tasks(data_root: Path, per_class: int, tasks: int, seed: int, config: TrainConfig,
                      dist: Any = None) -> Runner:
    """The Runner after DER++ on the first ``tasks`` tasks of Split-CIFAR-10 (``per_class`` images per
    class, reduced ResNet-18, fixed head, seeded with ``seed``) under ``config`` (a ``TrainConfig``)."""
    stream = make_stream("split-cifar10", data_root=data_root, n_tasks=5, max_train_per_class=per_class)
    seed_everything(seed)
    runner = Runner(build_model("reduced-resnet18", 3, 10, "fixed"), build_strategy("derpp"),
                    dataclasses.replace(stream, tasks=stream.tasks[:tasks]), config, progress=False, dist=dist)
    runner.run()
    return runner

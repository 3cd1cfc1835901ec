"""How far 2 processes drift from 1 on the real model, step by step, against float noise.

DER++ on the first task of Split-CIFAR-10 (reduced ResNet-18, float32, batch 32, seed 0), trained
for k steps (``2 * per_class / 32``) by
- 1 process with 2 threads (the reference),
- 1 process with 1 thread (other kernels' blocking: float rounding alone), and
- 2 gloo processes with 1 thread each (forked, as torchrun would start them),
and the largest difference of any weight from the reference after k steps. If the 2 processes
drift no faster than 1 thread does, splitting the batch changes nothing but float rounding.

    python benchmarks/processes_drift.py          # ~4 min on 2 EPYC cores; writes processes_drift.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from common import SHARED_DATA, derpp_first_tasks, provenance, save

from lifelong_kd.distributed import Distributed, run_forked
from lifelong_kd.training import TrainConfig


def weights(per_class: int, data_root: Path, group: Distributed) -> dict[str, torch.Tensor]:
    config = TrainConfig(amp="off", compile="off", channels_last=False, eval_batch_size=1000)
    model = derpp_first_tasks(data_root, per_class, 1, 0, config, group).model
    return {name: value.clone() for name, value in model.state_dict().items() if value.is_floating_point()}


def in_processes(world: int, threads: int, per_class: int, data_root: Path) -> dict[str, torch.Tensor]:
    """``weights`` on rank 0 of ``world`` forked processes of ``threads`` threads each."""
    return run_forked(world, lambda group: weights(per_class, data_root, group), Path(tempfile.mkdtemp()),
                      threads, limit_seconds=3600)[0]


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[name] - b[name]).abs().max().item() for name in a if "running" not in name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA)
    parser.add_argument("--per-class", type=int, nargs="+", default=[16, 80, 320, 1000])
    parser.add_argument("--output", default="processes_drift.json")
    args = parser.parse_args()
    origin = provenance()
    torch.set_num_threads(1)  # no thread pool in this process: its forked children start their own
    rows = []
    for per_class in args.per_class:
        reference = in_processes(1, 2, per_class, args.data_root)
        one_thread = in_processes(1, 1, per_class, args.data_root)
        two = in_processes(2, 1, per_class, args.data_root)
        row = {"steps": 2 * per_class // 32, "one_thread": largest_difference(one_thread, reference),
               "two_processes": largest_difference(two, reference)}
        rows.append(row)
        print(f"{row['steps']:>4} steps: 1 thread {row['one_thread']:.2e}, 2 processes {row['two_processes']:.2e}")
    path = save(args.output, {**origin, "rows": rows})
    print(f"-> {path} ({origin['machine']['cpu']})")


if __name__ == "__main__":
    main()

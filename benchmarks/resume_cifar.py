"""Kill -9 and resume on the real data, and the cost of checkpointing.

1. ``reference``: a Split-CIFAR-10 DER++ run (1,000 images per class, bf16, seed 0, a mid-task
   checkpoint every ``--every`` steps), never interrupted.
2. ``killed``: the same command, sent SIGKILL from outside during training: each time once
   its checkpoint shows it has passed step ``--every`` of the next task in ``--kill-tasks``, plus
   ``--kill-delay`` seconds (mid-epoch, between two checkpoints); then resumed with
   ``lifelong-kd run --resume OUT`` until it finishes. Its matrices must equal the reference's.
3. ``full``: DER++ on the whole of Split-CIFAR-10 at the default interval (``10m``); its
   results.json records how long each checkpoint took (``timing.checkpoint_seconds``), so the
   overhead is their sum over the run's wall time.

    python benchmarks/resume_cifar.py            # ~12 min on a 2-core EPYC; writes resume_cifar.json
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import torch
from common import REPO, SHARED_DATA, provenance, save


def command(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "lifelong_kd.cli", "run", *argv]


def run_to_end(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command(argv), cwd=REPO, check=True)
    return time.perf_counter() - start


def run_and_kill(argv: list[str], out: Path, task: int, step: int, delay: float) -> dict:
    """Start ``lifelong-kd run ARGV``; SIGKILL it ``delay`` seconds after its checkpoint in OUT shows it
    training task ``task`` (from 0) at step ``step`` or later."""
    process = subprocess.Popen(command(argv), cwd=REPO)
    start = time.perf_counter()
    seen = None
    while process.poll() is None:
        stamp = (out / "checkpoint.pt").stat().st_mtime_ns if (out / "checkpoint.pt").is_file() else None
        position = checkpoint_position(out) if stamp not in (None, seen) else None
        seen = stamp
        if position and position["task"] == task and position["stage"] == "train" and position["step"] >= step:
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.wait()
            return {"killed": True, "exit": process.returncode, "after_seconds": time.perf_counter() - start,
                    "checkpoint_seen": position}
        time.sleep(0.2)
    return {"killed": False, "exit": process.returncode}


def checkpoint_position(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=True)["position"]


def summary(out: Path, wall: float) -> dict:
    doc = json.loads((out / "results.json").read_text())
    seconds = doc["timing"]["checkpoint_seconds"]
    return {
        "status": doc["status"],
        "matrices": doc["matrices"],
        "wall_seconds": wall,
        "checkpoints": len(seconds),
        "checkpoint_seconds_median": median(seconds),
        "checkpoint_seconds_total": sum(seconds),
        "checkpoint_overhead": sum(seconds) / wall,
        "checkpoint_mib": (out / "checkpoint.pt").stat().st_size / 2**20,
        "class_il_final_accuracy": doc["metrics"]["class_il"]["final_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--every", default="25", help="--checkpoint-every of the reference and killed runs")
    parser.add_argument("--kill-tasks", type=int, nargs="+", default=[1, 3], help="tasks (from 0) to kill in")
    parser.add_argument("--kill-delay", type=float, default=3.0, help="seconds after the checkpoint is seen")
    parser.add_argument("--skip-full", action="store_true", help="leave out the full-data run")
    parser.add_argument("--output", default="resume_cifar.json")
    args = parser.parse_args()
    origin = provenance()
    base = ["--benchmark", "split-cifar10", "--data-root", str(args.data_root), "--strategy", "derpp",
            "--amp", "bf16", "--seed", "0", "--quiet"]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        small = [*base, "--max-train-per-class", str(args.per_class), "--checkpoint-every", args.every]
        wall = run_to_end([*small, "--out", str(root / "reference")])
        results = {"reference": summary(root / "reference", wall)}
        print(f"reference: {wall:.1f} s, class-IL {results['reference']['class_il_final_accuracy']:.2f}")
        kills = []
        argv = [*small, "--out", str(root / "killed")]
        for task in args.kill_tasks:
            kill = run_and_kill(argv, root / "killed", task, int(args.every), args.kill_delay)
            kill["resumes_from"] = checkpoint_position(root / "killed")
            kills.append(kill)
            print(f"kill: {kill}")
            argv = ["--resume", str(root / "killed"), "--quiet"]
        resumed_wall = run_to_end(argv)
        results["killed"] = {**summary(root / "killed", resumed_wall), "kills": kills}
        results["same_matrices"] = results["killed"]["matrices"] == results["reference"]["matrices"]
        print(f"killed {sum(k['killed'] for k in kills)} times; same matrices: {results['same_matrices']}")
        if not args.skip_full:
            full_wall = run_to_end([*base, "--out", str(root / "full")])
            results["full"] = summary(root / "full", full_wall)
            print(f"full run: {full_wall:.1f} s, {results['full']['checkpoints']} checkpoints, "
                  f"{100 * results['full']['checkpoint_overhead']:.2f} % of the wall time")
    protocol = {"base": base, "per_class": args.per_class, "every": args.every, "kill_tasks": args.kill_tasks,
                "kill_delay": args.kill_delay}
    path = save(args.output, {**origin, "protocol": protocol, "results": results})
    print(f"-> {path} ({origin['machine']['cpu']})")


if __name__ == "__main__":
    main()

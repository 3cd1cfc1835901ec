"""One process against several (torchrun), at equal total threads: accuracy and images/s.

Split-CIFAR-10 with DER++ (1,000 images per class, 1 epoch per task, seed 0), run
- on 1 process with all ``--threads`` threads, and
- under ``torchrun --standalone --nproc-per-node N`` with ``threads / N`` threads each (gloo on CPU,
  one GPU each with ``--device cuda``), the global batch still 32.
Each run's results.json gives the final accuracies and the training images/s (global images over
rank 0's training time).

    python benchmarks/processes.py                       # ~6 min on 2 EPYC cores; writes processes.json
    python benchmarks/processes.py --device cuda --processes 1 8 --threads 16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

from common import REPO, SHARED_DATA, provenance, save


def run(argv: list[str], processes: int, threads: int, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    launcher = [sys.executable, "-m", "lifelong_kd"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
        "-m", "lifelong_kd"]
    start = time.perf_counter()
    subprocess.run([*launcher, "run", *argv, "--out", str(out)], env=env, cwd=REPO, check=True)
    wall = time.perf_counter() - start
    doc = json.loads((out / "results.json").read_text())
    return {
        "processes": processes, "threads_per_process": threads, "wall_seconds": wall,
        "train_seconds": sum(doc["timing"]["train_seconds"]),
        "images_per_second": mean(doc["timing"]["images_per_second"]),
        "class_il_final_accuracy": doc["metrics"]["class_il"]["final_accuracy"],
        "task_il_final_accuracy": doc["metrics"]["task_il"]["final_accuracy"],
        "matrices": doc["matrices"], "environment": doc["environment"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads in all, split among processes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="auto", help="--amp of the runs (auto: bf16 where the CPU has it)")
    parser.add_argument("--flags", nargs="*", default=[], help="more flags for every run (e.g. --no-sync-bn)")
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="processes.json")
    args = parser.parse_args()
    origin = provenance()
    argv = ["--benchmark", "split-cifar10", "--data-root", str(args.data_root), "--strategy", "derpp",
            "--max-train-per-class", str(args.per_class), "--epochs", "1", "--seed", str(args.seed),
            "--device", args.device, "--amp", args.amp, "--quiet", *args.flags]
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for processes in args.processes:
            threads = max(1, args.threads // processes)
            result = run(argv, processes, threads, Path(scratch) / f"p{processes}")
            results.append(result)
            print(f"{processes} process(es) x {threads} thread(s): {result['images_per_second']:.1f} img/s, "
                  f"class-IL {result['class_il_final_accuracy']:.2f}, wall {result['wall_seconds']:.1f} s")
    base = results[0]["images_per_second"]
    for result in results:
        result["speed_up"] = result["images_per_second"] / base
        result["scaling_efficiency"] = result["speed_up"] * results[0]["processes"] / result["processes"]
    path = save(args.output, {**origin, "protocol": {"argv": argv, "threads": args.threads}, "results": results})
    print(f"-> {path} ({origin['machine']['cpu']}, {origin['machine']['gpu']})")


if __name__ == "__main__":
    main()

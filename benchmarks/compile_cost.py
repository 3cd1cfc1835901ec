"""What `torch.compile` costs and saves on this machine: the data behind `--compile auto`.

Trains the same short Split-CIFAR-10 run (a class-balanced subset) three
times in one process order: eager, compiled with an empty inductor cache
(cold), compiled again with that cache (warm). From them:

- steady speed-up = compiled img/s / eager img/s on the last task (no
  compilation left in it);
- cold (warm) compile cost = the compiled run's training seconds minus the
  seconds its images take at the compiled steady rate;
- break-even = cost / (1/eager rate - 1/compiled rate), in training images:
  a run that trains more images than this is faster compiled.

    python benchmarks/compile_cost.py      # ~6 min here; writes benchmarks/results/compile_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, SHARED_DATA, provenance, save


def timed_run(argv: list[str], out: Path, cache: Path) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    command = [sys.executable, "-m", "lifelong_kd.cli", "run", *argv, "--out", str(out)]
    subprocess.run(command, env=env, cwd=REPO, check=True)
    doc = json.loads((out / "results.json").read_text())
    timing = doc["timing"]
    images = sum(rate * seconds for rate, seconds in zip(timing["images_per_second"], timing["train_seconds"]))
    return {"train_seconds": sum(timing["train_seconds"]), "images": images,
            "last_task_images_per_second": timing["images_per_second"][-1],
            "images_per_second": timing["images_per_second"], "compile": doc["config"]["train"]["compile"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategy", default="lwf")
    parser.add_argument("--per-class", type=int, default=500, help="training images per class")
    parser.add_argument("--amp", default="bf16")
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA / "cifar10-jpeg.zip")
    parser.add_argument("--output", default="compile_cost.json")
    args = parser.parse_args()
    origin = provenance()
    argv = ["--benchmark", "split-cifar10", "--data-root", str(args.data_root), "--strategy", args.strategy,
            "--max-train-per-class", str(args.per_class), "--amp", args.amp, "--quiet", "--overwrite"]
    runs = {}
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "inductor"
        for name, compile_ in (("eager", "off"), ("cold", "on"), ("warm", "on")):
            runs[name] = timed_run([*argv, "--compile", compile_], Path(scratch) / name, cache)
            print(f"{name}: train {runs[name]['train_seconds']:.1f} s, last task "
                  f"{runs[name]['last_task_images_per_second']:.0f} img/s", flush=True)
    eager_rate = runs["eager"]["last_task_images_per_second"]
    compiled_rate = runs["warm"]["last_task_images_per_second"]
    saving = 1 / eager_rate - 1 / compiled_rate
    summary = {"speed_up": compiled_rate / eager_rate}
    for name in ("cold", "warm"):
        cost = runs[name]["train_seconds"] - runs[name]["images"] / compiled_rate
        summary[f"{name}_compile_seconds"] = cost
        summary[f"{name}_break_even_images"] = cost / saving if saving > 0 else float("inf")
    for key, value in summary.items():
        print(f"{key}: {value:.3f}")
    payload = {**origin, "command_args": ["lifelong-kd", "run", *argv], "runs": runs, "summary": summary}
    print(f"saved {save(args.output, payload)}")


if __name__ == "__main__":
    main()

"""The time of a plain `lifelong-kd run` (no speed flags), before and after a change, in one run.

Runs the same plain command twice, one after the other on this machine: with
the code of ``--before`` (a commit, checked out into a temporary git worktree)
and with the working tree's code. Records train, evaluation and wall seconds
of each, and what each run chose (results.json's ``config.train`` and
``environment.speed_choices``, where the code records them).

    python benchmarks/plain_run.py --before 2f142cf      # ~8 min here; writes plain_run.json
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

from common import REPO, SHARED_DATA, provenance, save


def plain_run(code: Path, argv: list[str], out: Path) -> dict:
    """``python -m lifelong_kd.cli run ARGV --out OUT`` with the package imported from ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    start = time.perf_counter()
    command = [sys.executable, "-m", "lifelong_kd.cli", "run", *argv, "--out", str(out)]
    subprocess.run(command, env=env, cwd=code, check=True)  # `-m` puts the working folder first on sys.path
    wall = time.perf_counter() - start
    doc = json.loads((out / "results.json").read_text())
    timing = doc["timing"]
    return {
        "wall_seconds": wall,
        "train_seconds": sum(timing["train_seconds"]),
        "eval_seconds": sum(timing["eval_seconds"]),
        "images_per_second": timing["images_per_second"],
        "class_il_final_accuracy": doc["metrics"]["class_il"]["final_accuracy"],
        "train": doc["config"]["train"],
        "speed_choices": doc["environment"].get("speed_choices"),
        "head": doc["config"].get("head"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the commit whose code is timed first")
    parser.add_argument("--strategy", default="lwf", help="the run's strategy (lwf: the CLI's default)")
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA / "cifar10-jpeg.zip")
    parser.add_argument("--output", default="plain_run.json")
    args = parser.parse_args()
    origin = provenance()
    argv = ["--benchmark", "split-cifar10", "--data-root", str(args.data_root), "--strategy", args.strategy,
            "--quiet", "--overwrite"]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        before = Path(scratch) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(before), args.before], cwd=REPO, check=True)
        try:
            for name, code in (("before", before), ("after", REPO)):
                results[name] = plain_run(code, argv, Path(scratch) / f"out_{name}")
                row = results[name]
                print(f"{name}: train {row['train_seconds']:.1f} s, eval {row['eval_seconds']:.1f} s, "
                      f"wall {row['wall_seconds']:.1f} s, class-IL {row['class_il_final_accuracy']:.2f}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=REPO, check=True)
    ratios = {
        f"{key} before / after": results["before"][key] / results["after"][key]
        for key in ("train_seconds", "eval_seconds", "wall_seconds")
    }
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}")
    payload = {**origin, "before_commit": args.before, "command_args": ["lifelong-kd", "run", *argv],
               "runs": results, "ratios": ratios}
    print(f"saved {save(args.output, payload)}")


if __name__ == "__main__":
    main()

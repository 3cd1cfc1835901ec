"""Is the accuracy gap between 1 process and 2 (and between 1 thread and 2) more than seed noise?

Reads the per-seed results of ``processes.py`` (1 process x 2 threads and 2 processes x 1 thread,
``PREFIX[_seedN].json``) and of its 1-thread runs (``PREFIX_1thread[_seedN].json``) and gives,
for each pair of settings, the per-seed differences of the final class-IL and task-IL accuracy, their
mean and standard deviation, a paired t statistic and a two-sided sign-test p-value. Each run is
deterministic for its seed and setting (the same run twice gives the same matrices), so the seeds
are the only repetitions.

    for s in 3 4 5 6 7; do python benchmarks/processes.py --seed $s --output processes_seed$s.json
        python benchmarks/processes.py --seed $s --processes 1 --threads 1 --output processes_1thread_seed$s.json; done
    python benchmarks/processes_seeds.py          # writes processes_seeds.json
    python benchmarks/processes_seeds.py --prefix processes_fp32   # the --amp off runs: processes_fp32_seeds.json
"""

from __future__ import annotations

import argparse
import json
import math
import re
from statistics import mean, stdev

from common import RESULTS, provenance, save

SETTINGS = {"1 process x 2 threads": (1, 2), "1 process x 1 thread": (1, 1), "2 processes x 1 thread": (2, 1)}


def runs_by_seed(prefix: str) -> dict[int, dict[str, dict]]:
    found: dict[int, dict[str, dict]] = {}
    for path in sorted(RESULTS.glob(f"{prefix}*.json")):
        match = re.fullmatch(rf"{prefix}(_1thread)?(?:_seed(\d+))?", path.stem)
        if match is None:
            continue  # another study (processes_fp32, processes_no_sync_bn, ...)
        seed = int(match.group(2) or 0)
        for run in json.loads(path.read_text())["results"]:
            key = next(name for name, shape in SETTINGS.items()
                       if shape == (run["processes"], run["threads_per_process"]))
            found.setdefault(seed, {})[key] = run
    return found


def sign_test(differences: list[float]) -> float:
    """Two-sided p-value of as many or more differences of one sign, if each sign had chance 1/2."""
    n, k = len(differences), max(sum(d > 0 for d in differences), sum(d < 0 for d in differences))
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n)


def compare(runs: dict[int, dict[str, dict]], a: str, b: str, metric: str) -> dict:
    seeds = sorted(seed for seed, by in runs.items() if a in by and b in by)
    differences = [runs[s][b][metric] - runs[s][a][metric] for s in seeds]
    spread = stdev(differences) if len(differences) > 1 else float("nan")
    return {"minus": a, "from": b, "metric": metric, "seeds": seeds, "differences": differences,
            "mean": mean(differences), "stdev": spread,
            "t": mean(differences) / (spread / math.sqrt(len(differences))) if spread else float("nan"),
            "sign_test_p": sign_test(differences)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", default="processes", help="the studies' file names (processes_fp32: --amp off)")
    args = parser.parse_args()
    runs = runs_by_seed(args.prefix)
    table = {seed: {name: run["class_il_final_accuracy"] for name, run in by.items()}
             for seed, by in sorted(runs.items())}
    for seed, row in table.items():
        print(f"seed {seed}: " + ", ".join(f"{name} {value:.2f}" for name, value in row.items()))
    pairs = [("1 process x 2 threads", "1 process x 1 thread"), ("1 process x 1 thread", "2 processes x 1 thread"),
             ("1 process x 2 threads", "2 processes x 1 thread")]
    comparisons = [compare(runs, a, b, metric) for a, b in pairs
                   for metric in ("class_il_final_accuracy", "task_il_final_accuracy")
                   if any(a in by and b in by for by in runs.values())]
    for c in comparisons:
        print(f"{c['from']} - {c['minus']} ({c['metric']}, {len(c['seeds'])} seeds): mean {c['mean']:+.2f}, "
              f"sd {c['stdev']:.2f}, t {c['t']:.2f}, sign test p {c['sign_test_p']:.3f}")
    origin = provenance()
    path = save(f"{args.prefix}_seeds.json", {**origin, "class_il_final_accuracy": table, "comparisons": comparisons})
    print(f"-> {path} ({origin['machine']['cpu']})")


if __name__ == "__main__":
    main()

"""Regenerate every figure in plots/ from the committed benchmark results.

    python plots/make_plots.py
"""

from __future__ import annotations

import json
from pathlib import Path

from lifelong_kd.plots import plot_forgetting_curves

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "benchmarks" / "results"


def split_cifar10_curves() -> list[Path]:
    payload = json.loads((RESULTS / "split_cifar10.json").read_text())
    docs = [
        {"config": {"strategy": run["strategy"], "seed": run["seed"], "benchmark": "split-cifar10"},
         "matrices": run["matrices"]}
        for run in payload["runs"]
    ]
    path = HERE / "split_cifar10_forgetting_curves.png"
    plot_forgetting_curves(docs, path)
    return [path]


if __name__ == "__main__":
    for figure in split_cifar10_curves():
        print(f"wrote {figure}")

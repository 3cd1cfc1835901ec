"""The budget benchmark's table: Split-CIFAR-10 at equal training FLOPs per task, from the
``split_cifar10.py --extra "--budget-flops B"`` result files, grouped by strategy and budget, as
mean ± standard deviation over seeds; beside it each strategy's class-IL at equal epochs (the
1-epoch protocol's family table, ``split_cifar10_family.json``, M = 500) and both orders.

    python benchmarks/budget_table.py      # split_cifar10_budget_*_seed*.json -> split_cifar10_budget.json

The merged file keeps every run (with its ``cost``), so ``plots/make_plots.py`` draws the cost
figures from it.
"""

from __future__ import annotations

import argparse
import json

from common import RESULTS, provenance, save
from report import pm as text
from report import spread

from lifelong_kd.cost_report import TFLOP


def budget_of(run: dict) -> float:
    return float(run["cost"]["budget"]["per_task"])


def summarise(runs: list[dict]) -> dict:
    """Accuracy and what the runs spent: class-IL and task-IL final accuracy, the training TFLOPs
    (train + task-end), optimiser steps per task (the main phase's, which the budget limits, and all),
    images trained per task and training seconds."""
    def totals(key: str) -> list[float]:
        return [run["cost"]["total"][key] for run in runs]
    tasks = len(runs[0]["cost"]["per_task"])
    return {
        "seeds": sorted(run["seed"] for run in runs),
        "class_il": spread([run["metrics"]["class_il"]["final_accuracy"] for run in runs]),
        "task_il": spread([run["metrics"]["task_il"]["final_accuracy"] for run in runs]),
        "forgetting": spread([run["metrics"]["class_il"]["forgetting"] for run in runs]),
        "training_tflops": spread([(a + b) / TFLOP for a, b in zip(totals("train_flops"), totals("task_end_flops"))]),
        "main_steps_per_task": spread([steps / tasks for steps in totals("main_steps")]),
        "steps_per_task": spread([steps / tasks for steps in totals("steps")]),
        "images_per_task": spread([(a + b) / tasks for a, b in zip(totals("current_images"),
                                                                    totals("replayed_images"))]),
        "train_seconds": spread(totals("train_seconds")),
    }


def equal_epoch_accuracy(name: str) -> dict[str, float]:
    """Each strategy's class-IL at the 1-epoch protocol, M = 500, its default settings (the family table)."""
    path = RESULTS / name
    if not path.exists():
        return {}
    groups = json.loads(path.read_text())["groups"]
    return {g["strategy"]: g["class_il"]["mean"] for g in groups
            if g["memory"] == 500 and g["epochs"] == 1 and g["max_train_per_class"] is None and len(g["seeds"]) == 3}


def plain_step_flops(runs: list[dict]) -> float:
    """The FLOPs of one of fine-tuning's steps on the first task (a full batch, no replay, no teacher)."""
    finetune = next(run for run in runs if run["strategy"] == "finetune")
    return float(max(flops for kind, flops in finetune["cost"]["flops_per_step"].items() if kind.startswith("main/")
                     and kind.endswith("/2 units")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pattern", default="split_cifar10_budget_*_seed*.json")
    parser.add_argument("--equal-epochs", default="split_cifar10_family.json")
    parser.add_argument("--output", default="split_cifar10_budget.json")
    args = parser.parse_args()
    inputs = sorted(path.name for path in RESULTS.glob(args.pattern))
    runs, protocol, commits = [], None, set()
    for name in inputs:
        payload = json.loads((RESULTS / name).read_text())
        protocol = protocol or {k: v for k, v in payload["protocol"].items() if k != "extra"}
        commits.add(payload["commit"])
        runs += payload["runs"]
    groups: dict[tuple[str, float], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["strategy"], budget_of(run)), []).append(run)
    epochs = equal_epoch_accuracy(args.equal_epochs)
    plain = plain_step_flops(runs)
    table = []
    for budget in sorted({b for _, b in groups}):
        rows = sorted(((s, summarise(g)) for (s, b), g in groups.items() if b == budget),
                      key=lambda row: -row[1]["class_il"]["mean"])
        print(f"\nbudget {budget:.3g} FLOPs per task ({budget / plain:.1f} fine-tuning steps of {plain:.3g})")
        print("| strategy | seeds | class-IL | task-IL | forgetting | TFLOPs | main steps/task | steps/task | "
              "images/task | train s | class-IL, 1 epoch, all data |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for strategy, summary in rows:
            at_epoch = epochs.get(strategy)
            table.append({"strategy": strategy, "budget_flops_per_task": budget, **summary,
                          "class_il_equal_epochs": at_epoch})
            print(f"| {strategy} | {','.join(map(str, summary['seeds']))} | {text(summary['class_il'])} | "
                  f"{text(summary['task_il'])} | {text(summary['forgetting'])} | {text(summary['training_tflops'])} | "
                  f"{text(summary['main_steps_per_task'], 1)} | {text(summary['steps_per_task'], 1)} | "
                  f"{text(summary['images_per_task'], 0)} | "
                  f"{text(summary['train_seconds'], 1)} | {'—' if at_epoch is None else f'{at_epoch:.2f}'} |")
    payload = {**provenance(), "inputs": inputs, "runs_commits": sorted(commits), "protocol": protocol,
               "plain_step_flops": plain,
               "table": table, "runs": runs}
    print(f"saved {save(args.output, payload)}")


if __name__ == "__main__":
    main()

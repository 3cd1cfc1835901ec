"""Hand-built results documents (the runner's own format) for the report, plot and compare tests."""

from pathlib import Path
from typing import Any

from lifelong_kd.results import results_document, write_results

# finetune: 2 seeds, class-IL and task-IL; er M=200: 1 seed, class-IL only. Their metrics by hand:
# finetune class-IL final 45 / 35, avg inc (80 + 45) / 2 = 62.5 / 47.5, forgetting 80 / 60, BWT -80 / -60;
# task-IL final 70 / 55, avg inc 75 / 57.5, forgetting 30 / 20, BWT -30 / -20;
# er class-IL final 65, avg inc 77.5, forgetting 45, BWT -45.
FINETUNE = {
    0: {"class_il": [[80.0, 0.0], [0.0, 90.0]], "task_il": [[80.0, None], [50.0, 90.0]]},
    1: {"class_il": [[60.0, 0.0], [0.0, 70.0]], "task_il": [[60.0, None], [40.0, 70.0]]},
}
ER = {3: {"class_il": [[90.0, 0.0], [45.0, 85.0]]}}
ER_HPARAMS = {"lr": 0.1, "memory": 200}


def fake_run(
    strategy: str, seed: int, matrices: dict[str, list], benchmark: str = "tiny", status: str = "completed",
    **config: Any,
) -> dict[str, Any]:
    """A results document as the runner writes it, for the given matrices (one row per completed task;
    ``n_tasks=...`` sets the stream's length, by default the number of rows)."""
    run_config = {"benchmark": benchmark, "n_tasks": len(matrices["class_il"]), "strategy": strategy, "seed": seed,
                  "hparams": {"lr": 0.1}, "train": {"epochs": 1, "seed": seed},
                  "command": f"lifelong-kd run --seed {seed} --out runs/{strategy}-{seed}", **config}
    timing = {"train_seconds": [1.0] * len(matrices["class_il"])}
    return results_document(run_config, {"device": "cpu"}, matrices, timing, status)


def fake_docs() -> list[dict[str, Any]]:
    """finetune seeds 0 and 1, er M=200 seed 3."""
    finetune = [fake_run("finetune", seed, matrices) for seed, matrices in FINETUNE.items()]
    return finetune + [fake_run("er", seed, matrices, hparams=ER_HPARAMS) for seed, matrices in ER.items()]


def write_fake_runs(root: Path, docs: list[dict[str, Any]] | None = None) -> Path:
    """root/finetune/seed_N/results.json (a multi-seed run's layout) and root/er/results.json, holding
    ``docs`` (``fake_docs()`` by default)."""
    finetune, finetune_1, er = docs or fake_docs()
    write_results(root / "finetune" / "seed_0" / "results.json", finetune)
    write_results(root / "finetune" / "seed_1" / "results.json", finetune_1)
    write_results(root / "er" / "results.json", er)
    return root


def with_cost(doc: dict[str, Any], steps: list[int], flops_per_step: float, task_end_flops: float,
              seconds_per_step: float) -> dict[str, Any]:
    """``doc`` with a ``cost`` entry (results.json's shape): each task trains ``steps[i]`` optimiser steps
    of ``flops_per_step`` FLOPs and ``seconds_per_step`` seconds, and spends ``task_end_flops`` at its end."""
    per_task = [{"current_images": 32 * n, "replayed_images": 0, "teacher_images": 0, "steps": n,
                 "train_flops": int(n * flops_per_step), "task_end_flops": int(task_end_flops),
                 "train_seconds": n * seconds_per_step, "eval_seconds": 0.5, "peak_memory_bytes": 1000,
                 "memory_bytes": 0} for n in steps]
    total = {key: sum(task[key] for task in per_task) for key in per_task[0]}
    total["peak_memory_bytes"], total["memory_bytes"] = 1000, 0
    cost = {"per_task": per_task, "total": total, "peak_memory_source": "process peak RSS (getrusage ru_maxrss)",
            "flops_per_step": {"train/32+0": int(flops_per_step)}, "budget": None}
    return {**doc, "cost": cost}


def with_anytime(doc: dict[str, Any], every: int, class_il: list[float], task_steps: list[int]) -> dict[str, Any]:
    """``doc`` with an ``anytime`` entry, evaluated at steps every, 2 * every, ... (class-IL accuracy
    ``class_il[n]``), and its ``average_anytime_accuracy`` (the mean of ``class_il``) in its metrics."""
    ends = [sum(task_steps[: i + 1]) for i in range(len(task_steps))]
    steps = [every * (n + 1) for n in range(len(class_il))]
    points = [{"step": step, "task": next(i for i, end in enumerate(ends) if step <= end), "class_il": accuracy,
               "task_il": None} for step, accuracy in zip(steps, class_il)]
    class_il_metrics = {**doc["metrics"]["class_il"], "average_anytime_accuracy": sum(class_il) / len(class_il)}
    return {**doc, "anytime": {"every": every, "points": points},
            "metrics": {**doc["metrics"], "class_il": class_il_metrics}}


# The fake runs with costs (all 2 tasks). Training TFLOPs (train + task end), by hand:
# finetune seed 0: 2 x 10 steps x 1 TFLOP = 20, 10 s; seed 1: 2 x 10 x 1.2 + 2 x 0.5 = 25, 12 s;
# er seed 3: 2 x 5 x 4 + 2 x 1 = 42, 10 s. Anytime (finetune only, every 5 steps): seed 0 60, 80, 30, 45
# (mean 53.75), seed 1 50, 60, 30, 35 (mean 43.75).
ANYTIME = {0: [60.0, 80.0, 30.0, 45.0], 1: [50.0, 60.0, 30.0, 35.0]}


def fake_cost_docs() -> list[dict[str, Any]]:
    """``fake_docs`` with the costs and anytime evaluations above."""
    finetune_0, finetune_1, er = fake_docs()
    finetune_0 = with_anytime(with_cost(finetune_0, [10, 10], 1e12, 0, 0.5), 5, ANYTIME[0], [10, 10])
    finetune_1 = with_anytime(with_cost(finetune_1, [10, 10], 1.2e12, 0.5e12, 0.6), 5, ANYTIME[1], [10, 10])
    return [finetune_0, finetune_1, with_cost(er, [5, 5], 4e12, 1e12, 1.0)]


# A joint run's class-IL matrix: 95 on task 0 after task 0, 92 on task 1 after task 1. Intransigence by hand:
# finetune seed 0 (diagonal 80, 90): 15, 2, mean 8.5; seed 1 (60, 70): 35, 22, mean 28.5; er (90, 85): 5, 7, mean 6.
JOINT = {"class_il": [[95.0, 0.0], [90.0, 92.0]]}


MEASURED_COST = {"train_seconds", "eval_seconds", "peak_memory_bytes"}


def counted_per_task(cost: dict[str, Any]) -> list[dict[str, Any]]:
    """A run's per-task cost without what is measured (seconds, peak memory): what was counted, which two runs
    of the same settings share."""
    return [{k: v for k, v in task.items() if k not in MEASURED_COST} for task in cost["per_task"]]


def error_line(capsys: Any) -> str:
    """The one line a command printed on stderr (and no traceback)."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err

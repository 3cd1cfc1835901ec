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


def write_fake_runs(root: Path) -> Path:
    """root/finetune/seed_N/results.json (a multi-seed run's layout) and root/er/results.json."""
    finetune, finetune_1, er = fake_docs()
    write_results(root / "finetune" / "seed_0" / "results.json", finetune)
    write_results(root / "finetune" / "seed_1" / "results.json", finetune_1)
    write_results(root / "er" / "results.json", er)
    return root

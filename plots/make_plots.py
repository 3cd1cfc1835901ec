"""Regenerate every figure in plots/ from the committed benchmark results (matplotlib only, seconds).

    python plots/make_plots.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lifelong_kd import cost_plots, plots

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "benchmarks" / "results"
BENCHMARK = "split-cifar10"


def benchmark_documents(name: str) -> list[dict[str, Any]]:
    """The runs of ``benchmarks/results/<name>`` in the results-document shape the plots read.

    A benchmark file holds a ``protocol`` shared by its runs and a ``runs`` list (strategy,
    seed, memory, head, hparams, matrices, metrics); a run's config is the protocol plus its
    own strategy, seed, head and hparams, so runs of the same setting in two files group
    together. The oldest files keep the metrics as ``class_il`` / ``task_il`` beside the run.
    A run's ``cost`` and ``anytime`` entries (results.json's, in the budget benchmarks) pass
    through, and its cost's ``budget`` joins its config: runs under other budgets do not group.
    """
    payload = json.loads((RESULTS / name).read_text())
    return [
        {
            "config": {
                "benchmark": BENCHMARK, "protocol": _protocol(payload["protocol"]), "strategy": run["strategy"],
                "seed": run["seed"], "head": run.get("head", "incremental"), "hparams": run["hparams"],
                "command": " ".join(run["argv"]), "n_tasks": len(run["matrices"]["class_il"][0]),
                **({"budget": run["cost"].get("budget")} if "cost" in run else {}),
            },
            "status": "completed",
            "completed_tasks": len(run["matrices"]["class_il"]),
            "matrices": run["matrices"],
            "metrics": run["metrics"] if "metrics" in run else {"class_il": run["class_il"], "task_il": run["task_il"]},
            **{entry: run[entry] for entry in ("cost", "anytime") if entry in run},
        }
        for run in payload["runs"]
    ]


def _protocol(protocol: dict[str, Any]) -> dict[str, Any]:
    """The protocol without where the data were read from: runs of one protocol group together."""
    return {key: value for key, value in protocol.items() if key != "data_root"}


def _memory(doc: dict[str, Any]) -> int | None:
    return doc["config"]["hparams"].get("memory")


def _runs(name: str, strategies: tuple[str, ...], memory: int | None = None) -> list[dict[str, Any]]:
    """The runs of ``name`` whose strategy is one of ``strategies``, at replay budget ``memory``."""
    return [doc for doc in benchmark_documents(name)
            if doc["config"]["strategy"] in strategies and _memory(doc) in (None, memory)]


def split_cifar10_curves() -> list[Path]:
    """Each strategy's defaults, seed 0: the strategies without replay."""
    docs = _runs("split_cifar10_headline_seed0.json", ("finetune",))
    docs += _runs("split_cifar10_new_defaults.json", ("lwf", "kd-mse"))
    path = HERE / "split_cifar10_forgetting_curves.png"
    plots.plot_forgetting_curves(docs, path)
    return [path]


def split_cifar10_matrices() -> list[Path]:
    """Each strategy's defaults, seed 0: fine-tuning and LwF (no replay), ER and DER++ (M = 500)."""
    docs = _runs("split_cifar10_headline_seed0.json", ("finetune",))
    docs += _runs("split_cifar10_new_defaults.json", ("lwf",))
    docs += _runs("split_cifar10_headline_seed0.json", ("er", "derpp"), 500)
    path = HERE / "split_cifar10_accuracy_matrices.png"
    plots.plot_accuracy_matrices(docs, path, title="Accuracy matrices R[i, j] (%), Split-CIFAR-10, default heads")
    return [path]


def split_cifar10_headline() -> list[Path]:
    """The headline rows, each strategy's defaults, M = 500, seeds 0-2 (seed 0 from three files)."""
    docs = _runs("split_cifar10_headline_seed0.json", ("finetune", "er", "derpp"), 500)
    docs += _runs("split_cifar10_new_defaults.json", ("lwf",))
    docs += _runs("split_cifar10_der_icarl_default_head.json", ("der",), 500)
    docs += benchmark_documents("split_cifar10_headline_seeds.json")
    setting = "Split-CIFAR-10, each strategy's defaults, M = 500, seeds 0-2 (mean ± std)"
    comparison = HERE / "split_cifar10_headline_comparison.png"
    plots.plot_strategy_comparison(docs, comparison, title=f"Average accuracy on the tasks seen: {setting}")
    final = HERE / "split_cifar10_headline_final.png"
    plots.plot_final_metrics(docs, final, title=f"After the last task: {setting}")
    return [comparison, final]


def cost_figures(name: str) -> list[Path]:
    """The runs of ``benchmarks/results/<name>`` (a budget benchmark: every run with its ``cost``), one
    set of figures per budget: final class-IL accuracy against training FLOPs and against training
    seconds, one point per strategy (mean ± std over seeds) with the Pareto front, and, when every run
    has one, the anytime accuracy curves; into ``plots/<name without .json>_<budget>_cost_flops.png``
    and so on (no budget in the name for runs without one)."""
    docs = benchmark_documents(name)
    budgets = sorted({_budget(doc) for doc in docs}, key=lambda budget: (budget is not None, budget or 0))
    written = []
    for budget in budgets:
        runs = [doc for doc in docs if _budget(doc) == budget]
        stem = Path(name).stem + ("" if budget is None else f"_{budget:.3g}")
        title = None if budget is None else (
            f"Split-CIFAR-10, {budget:.3g} training FLOPs per task\n(M = 500, mean ± std over seeds)")
        for axis in ("flops", "seconds"):
            written.append(HERE / f"{stem}_cost_{axis}.png")
            cost_plots.plot_cost(runs, written[-1], axis, title=title)
        if all("anytime" in doc for doc in runs):
            written.append(HERE / f"{stem}_anytime.png")
            cost_plots.plot_anytime(runs, written[-1])
    return written


def _budget(doc: dict[str, Any]) -> float | None:
    """The run's training budget per task, or None."""
    return (doc["cost"].get("budget") or {}).get("per_task")


def anytime_figure(name: str) -> list[Path]:
    """The anytime accuracy curves of the runs of ``benchmarks/results/<name>`` (run with ``--eval-every``)."""
    path = HERE / f"{Path(name).stem}.png"
    cost_plots.plot_anytime(benchmark_documents(name), path)
    return [path]


BUDGET_RESULTS = "split_cifar10_budget.json"
ANYTIME_RESULTS = "split_cifar10_anytime.json"


if __name__ == "__main__":
    makers = [split_cifar10_curves, split_cifar10_matrices, split_cifar10_headline]
    if (RESULTS / BUDGET_RESULTS).exists():
        makers.append(lambda: cost_figures(BUDGET_RESULTS))
    if (RESULTS / ANYTIME_RESULTS).exists():
        makers.append(lambda: anytime_figure(ANYTIME_RESULTS))
    for make in makers:
        for figure in make():
            print(f"wrote {figure}")

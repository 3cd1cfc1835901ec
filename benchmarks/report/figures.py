"""Figures: every PNG in ``plots/``, the function of ``plots/make_plots.py`` that draws it and what it
shows. The list is the folder's (sorted), so a new figure appears here; one no rule below names is listed
as such. Reads no result file: the figures' numbers are the tables' of the sections that cite them."""

from __future__ import annotations

import re
from pathlib import Path

from . import Results, link, table
from .headline import TITLE as HEADLINE

TITLE = "Figures"

PLOTS = Path(__file__).resolve().parents[2] / "plots"
MAKER = PLOTS / "make_plots.py"

# (file-name pattern, the drawing function's call in make_plots.py, what the figure shows)
FIGURES = (
    (r"split_cifar10_forgetting_curves\.png", "split_cifar10_curves()",
     "Each strategy's defaults without replay (fine-tuning, LwF, kd-mse), seed 0: the accuracy on each task "
     "after each task, the average over the tasks seen as a bold black line."),
    (r"split_cifar10_accuracy_matrices\.png", "split_cifar10_matrices()",
     "Accuracy matrices R[i, j], each strategy's defaults (fine-tuning, LwF and ER on a growing head, DER++ on "
     "its paper's fixed head), seed 0. In class-IL, fine-tuning and LwF only ever predict the latest task's "
     "classes (one bright cell per row); ER and DER++ keep part of every old task. Task-IL on a task not yet "
     "trained is n/a on a growing head (no units for it); the fixed head evaluates the next task (FWT)."),
    (r"split_cifar10_headline_comparison\.png", "split_cifar10_headline()",
     "The three-seed rows at M = 500 (fine-tuning, LwF, ER, DER, DER++; seeds 0, 1, 2): the average accuracy "
     "on the tasks seen after each task, mean ± sd band over the seeds."),
    (r"split_cifar10_headline_final\.png", "split_cifar10_headline()",
     "The same runs: final accuracy and forgetting, bars with ± sd error bars (the numbers of the three-seed "
     f"table of {link(HEADLINE)})."),
    (r"split_cifar10_budget_(?P<budget>.+)_cost_flops\.png", 'cost_figures("split_cifar10_budget.json")',
     "Every method under a training budget of {budget} FLOPs per task (M = 500): final class-IL accuracy "
     "against the training FLOPs, a point per method with ± sd on both axes, the Pareto front dashed."),
    (r"split_cifar10_budget_(?P<budget>.+)_cost_seconds\.png", 'cost_figures("split_cifar10_budget.json")',
     "The same runs ({budget} FLOPs per task) against the training seconds."),
    (r"split_cifar10_budget_(?P<budget>.+)_anytime\.png", 'cost_figures("split_cifar10_budget.json")',
     "The anytime accuracy of the runs under {budget} FLOPs per task."),
    (r"split_cifar10_anytime\.png", 'anytime_figure("split_cifar10_anytime.json")',
     "Anytime accuracy: fine-tuning, LwF, ER and DER++ under a FLOPs budget, seed 0, the class-IL accuracy on "
     "the tasks seen at every evaluation point during training, the task boundaries dashed. Each task's "
     "accuracy peaks inside the task and falls at the next boundary."),
)


def describe(name: str, maker: str) -> tuple[str, str]:
    """The drawing call and the description of a figure file (checked against ``make_plots.py``)."""
    for pattern, call, text in FIGURES:
        match = re.fullmatch(pattern, name)
        if match:
            function = call.split("(")[0]
            if f"def {function}(" not in maker:
                raise ValueError(f"plots/make_plots.py has no function {function} (for {name})")
            return f"`{call}`", text.format(**match.groupdict())
    return "—", "Not described here: no rule of `benchmarks/report/figures.py` names this file."


def render(results: Results) -> str:
    maker = MAKER.read_text()
    figures = sorted(path.name for path in PLOTS.glob("*.png"))
    rows, images = [], []
    for name in figures:
        call, text = describe(name, maker)
        rows.append([f"[`{name}`](../plots/{name})", call])
        images.append(f"**`{name}`** ({call}). {text}\n\n![{name}](../plots/{name})\n")
    return "\n".join([
        "The figures in [`plots/`](../plots) are drawn from the committed results in [`results/`](results) by "
        "one script, never by hand; `python plots/make_plots.py` redraws them all (seconds, matplotlib only). "
        "Its `benchmark_documents` turns each run of a benchmark file into the results-document shape "
        "(`config`, `matrices`, `metrics`) that `lifelong_kd/plots.py`, `lifelong_kd/cost_plots.py` and "
        "`lifelong_kd/report.py` read, so the figures of the library's own `lifelong-kd plot` and these are "
        f"drawn by the same code. The {len(figures)} figures and the function of `plots/make_plots.py` that "
        "draws each:\n",
        table(["figure", "drawn by"], rows, "ll"),
        *images,
    ])

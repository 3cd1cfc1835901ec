"""The results document of one run, written atomically after every task."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from . import __version__, metrics
from .cost import CostMeter
from .cost_report import intransigence_metrics
from .errors import UsageError

FORMAT = "lifelong_kd.results/1"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would create it; mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def environment(device: torch.device) -> dict[str, str]:
    """Versions and the device, so a result says where it came from."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return {
        "lifelong_kd": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": f"{device.type} ({name})",
        "cpu_threads": str(torch.get_num_threads()),
    }


def results_document(
    config: dict[str, Any],
    env: dict[str, str],
    matrices: dict[str, list[list[float | None]]],
    timing: dict[str, list[float]],
    status: str,
    baseline: list[float | None] | None = None,
    cost: dict[str, Any] | None = None,
    anytime: dict[str, Any] | None = None,
    reference: dict[str, list[list[float | None]]] | None = None,
) -> dict[str, Any]:
    """Assemble the results: config, environment, matrices (percent), metrics, timing.

    ``matrices`` holds ``class_il`` and ``task_il`` (the linear head) and any
    extra classifier's (``nme_class_il``, ...). Row i of each matrix is the
    evaluation after task i over all T tasks, ``null`` where a task was not
    evaluated or cannot be (class-IL of a task whose classes are not seen yet;
    task-IL where the head has no units). ``baseline`` is the untrained
    model's task-IL accuracy per task (fixed head), for FWT on task-IL. ``cost``: what the run
    spent (``CostMeter.document``). ``anytime``: the evaluations every ``every`` steps (``points``),
    averaged into class-IL's ``average_anytime_accuracy``. ``reference``: a joint run's matrices, for
    each setting's ``intransigence`` against it.
    """
    metrics_by_setting = {name: metrics.summary(matrix) for name, matrix in matrices.items()}
    if baseline is not None and "task_il" in matrices:
        metrics_by_setting["task_il"]["fwt"] = metrics.fwt(matrices["task_il"], baseline)
    if anytime is not None and anytime["points"] and "class_il" in metrics_by_setting:
        metrics_by_setting["class_il"]["average_anytime_accuracy"] = metrics.average_anytime_accuracy(
            anytime["points"])
    for name, values in intransigence_metrics(matrices, reference or {}).items():
        metrics_by_setting[name].update(values)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "status": status,
        "completed_tasks": len(matrices.get("class_il", [])),
        "config": config,
        "environment": env,
        "matrices": matrices,
        "metrics": metrics_by_setting,
        "curves": {f"{name}_average": metrics.average_accuracy_curve(m) for name, m in matrices.items()},
        "timing": timing,
    }
    if baseline is not None:
        doc["baseline_task_il"] = baseline
    if cost is not None:
        doc["cost"] = cost
    if anytime is not None:
        doc["anytime"] = anytime
    return doc


class RunRecord:
    """The results of a run as they accumulate: one row of every accuracy matrix and the timing per task.

    ``baseline`` is the untrained model's task-IL accuracy per task (fixed head, for FWT).
    ``timing`` holds per task ``train_seconds``, ``images_per_second`` and ``eval_seconds``, and
    ``checkpoint_seconds``, the time each checkpoint written took, in order. ``cost`` meters what the
    run spends (``lifelong_kd.cost``); ``anytime`` holds the evaluations every ``eval_every`` steps
    (none when 0); ``reference`` a joint run's matrices (for intransigence).
    ``state_dict`` / ``load_state_dict`` carry it through a checkpoint.
    """

    def __init__(self, n_tasks: int, baseline: list[float | None] | None = None, cost: CostMeter | None = None,
                 eval_every: int = 0, reference: dict[str, list[list[float | None]]] | None = None) -> None:
        self.n_tasks = n_tasks
        self.baseline = baseline
        self.cost = cost or CostMeter()
        self.eval_every = eval_every
        self.anytime: list[dict[str, Any]] = []
        self.reference = reference
        self.matrices: dict[str, list[list[float | None]]] = {}
        self.timing: dict[str, list[float]] = {"train_seconds": [], "images_per_second": [], "eval_seconds": [],
                                               "checkpoint_seconds": []}

    @property
    def completed_tasks(self) -> int:
        return len(self.timing["eval_seconds"])

    def add_task(self, rows: dict[str, list[float | None]], train_seconds: float, images_per_second: float,
                 eval_seconds: float) -> None:
        """Record the next task: its evaluation rows (one per matrix) and its timing."""
        for name, row in rows.items():
            earlier = [[None] * self.n_tasks for _ in range(self.completed_tasks)]
            self.matrices.setdefault(name, earlier).append(row)
        self.timing["train_seconds"].append(train_seconds)
        self.timing["images_per_second"].append(images_per_second)
        self.timing["eval_seconds"].append(eval_seconds)

    def add_anytime(self, step: int, task: int, rows: dict[str, list[float | None]]) -> None:
        """Record an evaluation during task ``task``'s training, after ``step`` optimiser steps of the run:
        the mean accuracy over the seen tasks (``rows`` holds tasks 0 to ``task``)."""
        def mean(name: str) -> float | None:
            values = [v for v in rows.get(name, [])[: task + 1] if v is not None]
            return sum(values) / len(values) if values else None
        self.anytime.append({"step": step, "task": task, "class_il": mean("class_il"), "task_il": mean("task_il")})

    def document(self, config: dict[str, Any], env: dict[str, str], status: str) -> dict[str, Any]:
        anytime = {"every": self.eval_every, "points": self.anytime} if self.eval_every else None
        return results_document(config, env, self.matrices, self.timing, status, self.baseline,
                                self.cost.document(self.timing), anytime, self.reference)

    def state_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "matrices": self.matrices, "timing": self.timing,
                "cost": self.cost.state_dict(), "anytime": self.anytime}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.baseline, self.matrices, self.timing = state["baseline"], state["matrices"], state["timing"]
        self.cost.load_state_dict(state["cost"])
        self.anytime = state["anytime"]


def write_results(path: Path, doc: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")


def load_results(path: Path) -> dict[str, Any]:
    """Read a results file (or ``DIR/results.json``), with a clear error when it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise UsageError(f"no results file at '{path}': pass a run directory or its results.json")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"'{path}' is not valid JSON ({error}): re-run the experiment to rewrite it") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UsageError(f"'{path}' is not a lifelong_kd results file (format {FORMAT!r} expected)")
    return doc

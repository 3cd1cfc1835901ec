"""Results of several runs: found on disk, grouped by configuration, aggregated over seeds, compared.

A *group* is the runs whose configs are equal once the seed-dependent entries
(``SEED_DEPENDENT_KEYS``, at any depth: the seed, the command line, the class
order that ``--class-order random`` draws from the seed) are left out; its runs
differ only in their seed, and ``aggregate`` reduces them to mean and sample
standard deviation.

A run is *complete* when its status is ``completed`` after all ``config.n_tasks``
tasks (``is_complete``). ``load_runs`` leaves the others (failed, running,
interrupted) out unless asked to include them, and says which it left out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .cost_report import COST_TOTALS, cost_totals, extra_columns, mean_std_cell, with_intransigence
from .errors import UsageError
from .results import load_results

AGGREGATE_FORMAT = "lifelong_kd.aggregate/1"
SEED_DEPENDENT_KEYS = frozenset({"seed", "command", "class_order", "class_names", "reference"})
SETTING_LABELS = {"class_il": "class-IL", "task_il": "task-IL", "nme_class_il": "NME class-IL",
                  "nme_task_il": "NME task-IL"}
TABLE_SETTINGS = ("class_il", "task_il")
TABLE_METRICS = {"final_accuracy": "final acc", "average_incremental_accuracy": "avg inc acc",
                 "forgetting": "forgetting", "bwt": "BWT"}

Document = dict[str, Any]


def find_results(paths: Sequence[Path]) -> list[Path]:
    """The results files named by ``paths``: a file is itself, a folder is searched recursively
    for ``results.json`` (a single run's OUT, or a multi-seed OUT with ``seed_*/results.json``)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            inside = sorted(path.rglob("results.json"))
            if not inside:
                raise UsageError(f"no results.json under '{path}': pass a run folder (the --out of a run) or a file")
            found.extend(inside)
        else:
            raise UsageError(f"'{path}' does not exist: pass a run folder or a results.json file")
    if not found:
        raise UsageError("no runs given: pass run folders or results.json files")
    return found


def check_document(doc: Document, source: str) -> None:
    """Raise ``UsageError`` unless ``doc`` has a config (strategy, seed, benchmark), matrices and metrics."""
    config = doc.get("config")
    if not isinstance(config, dict) or not {"strategy", "seed", "benchmark"} <= config.keys():
        raise UsageError(f"'{source}' has no config with strategy, seed and benchmark: re-run the experiment")
    matrices = doc.get("matrices")
    if not isinstance(matrices, dict) or not matrices.get("class_il"):
        raise UsageError(f"'{source}' has no accuracy matrices (matrices.class_il): no task finished in that run")
    if not isinstance(doc.get("metrics"), dict) or not all(setting in doc["metrics"] for setting in matrices):
        raise UsageError(f"'{source}' has matrices without metrics: re-run the experiment to rewrite it")
    n_tasks = config.get("n_tasks")
    for name, matrix in matrices.items():
        _check_matrix(matrix, f"'{source}': matrices.{name}", n_tasks)
        _check_metrics(doc["metrics"][name], metrics.summary(matrix), f"'{source}': metrics.{name}")


def _check_matrix(matrix: Any, where: str, n_tasks: Any) -> None:
    """A T' x T matrix (T' tasks done of ``n_tasks``) of percentages: a number in [0, 100] at every
    task evaluated after its training (j <= i), a number or null elsewhere."""
    damaged = "the file is damaged; re-run the experiment to rewrite it"
    if not isinstance(matrix, list) or not matrix or not isinstance(n_tasks, int) or len(matrix) > n_tasks:
        raise UsageError(f"{where} is not a list of at most config.n_tasks rows: {damaged}")
    for i, row in enumerate(matrix):
        if not isinstance(row, list) or len(row) != n_tasks:
            raise UsageError(f"{where} row {i + 1} is not a list of {n_tasks} values, one per task: {damaged}")
        for j, value in enumerate(row):
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if value is None and j > i:
                continue
            if not number or not 0.0 <= value <= 100.0:  # NaN fails both comparisons
                shown = "null" if value is None else json.dumps(value)
                raise UsageError(f"{where}[{i}][{j}] is {shown}, not a percentage: {damaged}")


def _check_metrics(stored: Any, computed: dict[str, float], where: str) -> None:
    """The stored headline metrics must be the ones the matrix gives (``metrics.summary``)."""
    for name, value in computed.items():
        saved = stored.get(name) if isinstance(stored, dict) else None
        if not isinstance(saved, int | float) or not abs(saved - value) <= 1e-6:
            raise UsageError(f"{where}.{name} is {saved}, but the matrix gives {value:.6g}: the file is damaged or "
                             "was edited; re-run the experiment to rewrite it")


def check_same_benchmark(docs: Sequence[Document], sources: Sequence[str]) -> None:
    """Raise ``UsageError`` when the runs come from different benchmarks, naming one file of each."""
    first_of: dict[str, str] = {}
    for doc, source in zip(docs, sources):
        first_of.setdefault(doc["config"]["benchmark"], source)
    if len(first_of) > 1:
        listed = ", ".join(f"{name} ('{source}')" for name, source in first_of.items())
        raise UsageError(f"runs of different benchmarks cannot be compared: {listed}; pass one benchmark's runs")


def is_complete(doc: Document) -> bool:
    """Whether a run finished: status ``completed`` and ``completed_tasks == config.n_tasks``. For an
    ``aggregate``, whose status is ``completed`` only when all its runs are, whether all its runs finished."""
    return doc.get("status") == "completed" and doc.get("completed_tasks") == doc["config"].get("n_tasks")


def split_complete(docs: Sequence[Document]) -> tuple[list[Document], list[Document]]:
    """The complete runs of ``docs`` (``is_complete``) and the others (failed, running, interrupted), in order."""
    complete = [doc for doc in docs if is_complete(doc)]
    return complete, [doc for doc in docs if not is_complete(doc)]


def _tasks(doc: Document) -> str:
    return f"{doc.get('completed_tasks', '?')}/{doc['config'].get('n_tasks', '?')}"


def progress(doc: Document) -> str:
    """A run's status (on one line) and its completed / total tasks: ``failed: loss is nan, 2/5 tasks``."""
    return f"{' '.join(str(doc.get('status', 'no status')).split())}, {_tasks(doc)} tasks"


def _status_kind(doc: Document) -> str:
    """``completed`` for a complete run, else the first word of its status (``failed``, ``running``,
    ``interrupted``), or ``partial`` for a run that says completed short of its tasks."""
    kind = str(doc.get("status", "unknown")).split(":", 1)[0]
    return "partial" if kind == "completed" and not is_complete(doc) else kind


def status_text(doc: Document) -> str:
    """Status and completed / total tasks, short: ``completed 5/5``, ``failed 2/5`` for a run; for an
    aggregate of unfinished runs, its runs per status and their tasks: ``2 running, 1 failed (3/5)``."""
    if "statuses" not in doc or is_complete(doc):
        return f"{_status_kind(doc)} {_tasks(doc)}"
    return ", ".join(f"{count} {kind}" for kind, count in doc["statuses"].items()) + f" ({_tasks(doc)})"


def status_note(doc: Document) -> str:
    """Nothing for a complete run or aggregate, else ``; `` and its ``status_text``, to add to a label."""
    return "" if is_complete(doc) else f"; {status_text(doc)}"


def load_runs(paths: Sequence[Path], include_incomplete: bool = False) -> tuple[list[Document], list[str]]:
    """Find, read and check the results files under ``paths`` (all of one benchmark); return the runs
    to use and the warnings to show (one line each, at most one).

    Incomplete runs (``split_complete``) are left out, with a warning that names their files, status
    and completed / total tasks, unless ``include_incomplete``: then they are used, and the warning says
    so. A ``UsageError`` when every run is incomplete and ``include_incomplete`` is false.
    """
    files = find_results(paths)
    docs = [load_results(path) for path in files]
    for doc, path in zip(docs, files):
        check_document(doc, str(path))
    check_same_benchmark(docs, [str(path) for path in files])
    complete, incomplete = split_complete(docs)
    if not incomplete:
        return docs, []
    listed = ", ".join(f"{path} ({progress(doc)})" for path, doc in zip(files, docs) if not is_complete(doc))
    runs = f"{len(incomplete)} unfinished run{'s' if len(incomplete) > 1 else ''}"
    if include_incomplete:
        return docs, [f"included {runs} (--include-incomplete): {listed}"]
    if not complete:
        raise UsageError(f"none of the runs finished ({runs}; pass --include-incomplete to use them anyway): {listed}")
    return complete, [f"left out {runs} (pass --include-incomplete to use them): {listed}"]


def load_reference(path: Path, docs: Sequence[Document]) -> Document:
    """The reference run of ``--reference`` (a run folder or its results.json: a joint run), checked
    (``check_document``), complete, and of the benchmark, number of tasks and class order of every
    run of ``docs`` (results documents, or configs wrapped as ``{"config": ...}``)."""
    files = find_results([path])
    if len(files) != 1:
        raise UsageError(f"--reference '{path}' holds {len(files)} results files: pass one run's folder or file")
    reference = load_results(files[0])
    check_document(reference, str(files[0]))
    check_same_benchmark([docs[0], reference], ["the runs", str(files[0])])
    if reference["config"].get("n_tasks") != docs[0]["config"].get("n_tasks"):
        raise UsageError(f"--reference '{files[0]}' has {reference['config'].get('n_tasks')} tasks, the runs "
                         f"{docs[0]['config'].get('n_tasks')}: pass a joint run of the same task stream")
    if not is_complete(reference):
        raise UsageError(f"--reference '{files[0]}' is not a finished run ({status_text(reference)}): pass a "
                         "finished joint run")
    orders = {tuple(doc["config"].get("class_order") or ()) for doc in docs} - {()}
    if any(order != tuple(reference["config"].get("class_order") or order) for order in orders):
        raise UsageError(f"--reference '{files[0]}' learnt the classes in another order than the runs: its "
                         "tasks are other tasks; pass a joint run with the runs' class order")
    return reference


def without_seed(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without its seed-dependent entries, at any depth."""
    return {
        key: without_seed(value) if isinstance(value, dict) else value
        for key, value in config.items()
        if key not in SEED_DEPENDENT_KEYS
    }


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def group_runs(docs: Sequence[Document]) -> list[list[Document]]:
    """Runs of equal config but for the seed, in order of first appearance; each group sorted by seed."""
    groups: dict[str, list[Document]] = {}
    for doc in docs:
        key = json.dumps(without_seed(doc["config"]), sort_keys=True, default=str)
        groups.setdefault(key, []).append(doc)
    return [sorted(group, key=lambda doc: doc["config"]["seed"]) for group in groups.values()]


def config_labels(configs: Sequence[dict[str, Any]]) -> list[str]:
    """Short names: the strategy, its memory (``er M=500``), and, where two configs would get the
    same name, the config entries in which they differ (``lwf head=fixed``)."""
    names = []
    for config in configs:
        memory = config.get("hparams", {}).get("memory")
        names.append(config["strategy"] + (f" M={memory}" if memory else ""))
    flats = [_flat(without_seed(config)) for config in configs]
    labels = []
    for name, flat in zip(names, flats):
        namesakes = [other for other_name, other in zip(names, flats) if other_name == name and other != flat]
        differing = sorted(key for key in flat if any(other.get(key) != flat[key] for other in namesakes))
        labels.append(" ".join([name, *(f"{key.rsplit('.', 1)[-1]}={flat[key]}" for key in differing)]))
    return labels


def seeds_text(doc: Document) -> str:
    """``seed 3`` for a run, ``mean of seeds 0, 1, 2`` for an aggregate, with the ``status_note`` of an
    unfinished one: ``seed 3; failed 2/5``."""
    if "seeds" in doc:
        return "mean of seeds " + ", ".join(map(str, doc["seeds"])) + status_note(doc)
    return f"seed {doc['config']['seed']}{status_note(doc)}"


def run_labels(docs: Sequence[Document]) -> list[str]:
    """``config_labels`` of the runs (or aggregates) with their seeds: ``er M=500 (seed 0)``."""
    names = config_labels([doc["config"] for doc in docs])
    return [f"{name} ({seeds_text(doc)})" for name, doc in zip(names, docs)]


def mean_and_std(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation over the first axis (the seeds), n = len(values):

        mean = (1/n) sum_i x_i,   std = sqrt((1/(n-1)) sum_i (x_i - mean)^2)   (ddof=1)

    with std = 0 for a single value. ``None`` entries count as nan.
    """
    array = np.array(values, dtype=float)
    std = array.std(axis=0, ddof=1) if len(array) > 1 else np.zeros_like(array[0])
    return array.mean(axis=0), std


def _statistics(values: list[Any]) -> dict[str, Any]:
    """Mean, sample std and the values of a number per seed, or cell-wise of a list per seed
    (``intransigence_per_task``)."""
    mean, std = mean_and_std(values)
    return {"mean": mean.tolist(), "std": std.tolist(), "values": values}


def aggregate(docs: Sequence[Document]) -> Document:
    """Reduce the runs of one group (same config, different seeds) to one document.

    - ``metrics[setting][name]``: ``mean``, ``std`` (sample std, ddof=1; 0 for one seed, see
      ``mean_and_std``) and the per-seed ``values`` of each run's own metric (the mean of the
      seeds' forgetting, not the forgetting of the mean matrix);
    - ``curves[setting]``: mean and std of the average accuracy A_i after each task i;
    - ``matrices[setting]``: the cell-wise mean matrix (``None`` where a run has no value);
    - ``seeds`` (sorted) and the shared ``config`` (``without_seed``);
    - ``status``: ``completed`` when every run is complete (``is_complete``), else ``incomplete``;
      ``completed_tasks``, the tasks each run finished; ``statuses``, the number of runs per status
      (``{"completed": 2, "failed": 1}``), for ``status_text``;
    - ``cost``, where every run has one: ``training_flops`` and ``train_seconds`` (``cost_totals``)
      as ``metrics``' statistics.

    The runs must have distinct seeds and matrices of one shape, so the same number of finished
    tasks: unfinished runs (included with ``--include-incomplete``) that stopped after another task
    than the rest of their group are not cut to the tasks all runs share, but refused with a
    ``UsageError`` that names each run of the group with its status and tasks.
    """
    runs = sorted(docs, key=lambda doc: doc["config"]["seed"])
    seeds = [doc["config"]["seed"] for doc in runs]
    label = config_labels([runs[0]["config"]])[0]
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"a seed appears twice among the runs of {label} (seeds {seeds}): pass each run once")
    settings = [name for name in runs[0]["matrices"] if all(name in doc["matrices"] for doc in runs)]
    shapes = {np.shape(doc["matrices"]["class_il"]) for doc in runs}
    if len(shapes) > 1:
        listed = ", ".join(f"seed {doc['config']['seed']} ({progress(doc)})" for doc in runs)
        raise UsageError(
            f"the runs of {label} have accuracy matrices of different shapes {sorted(shapes)}, so they stopped "
            f"after different tasks and cannot be averaged: {listed}; leave the unfinished ones out "
            "(without --include-incomplete) or re-run them"
        )
    matrices, statistics, curves = {}, {}, {}
    for setting in settings:
        mean_matrix, _ = mean_and_std([doc["matrices"][setting] for doc in runs])
        matrices[setting] = [[None if np.isnan(v) else float(v) for v in row] for row in mean_matrix]
        names = [name for name in runs[0]["metrics"][setting] if all(name in doc["metrics"][setting] for doc in runs)]
        statistics[setting] = {name: _statistics([doc["metrics"][setting][name] for doc in runs]) for name in names}
        mean_curve, std_curve = mean_and_std([metrics.average_accuracy_curve(doc["matrices"][setting]) for doc in runs])
        curves[setting] = {"mean": mean_curve.tolist(), "std": std_curve.tolist()}
    aggregated = {
        "format": AGGREGATE_FORMAT,
        "config": without_seed(runs[0]["config"]),
        "seeds": seeds,
        "status": "completed" if all(map(is_complete, runs)) else "incomplete",
        "completed_tasks": len(runs[0]["matrices"]["class_il"]),
        "statuses": dict(sorted(Counter(map(_status_kind, runs)).items(), key=lambda item: item[0] != "completed")),
        "matrices": matrices,
        "metrics": statistics,
        "curves": curves,
    }
    if all("cost" in doc for doc in runs):
        totals = [cost_totals(doc) for doc in runs]
        aggregated["cost"] = {name: _statistics([total[name] for total in totals]) for name in COST_TOTALS}
    return aggregated


def labelled_aggregates(docs: Sequence[Document]) -> tuple[list[str], list[Document]]:
    """The ``aggregate`` of every group of ``docs`` (``group_runs``) and its ``config_labels`` name."""
    aggregates = [aggregate(group) for group in group_runs(docs)]
    return config_labels([agg["config"] for agg in aggregates]), aggregates


def compare_table(docs: Sequence[Document], reference: Document | None = None) -> str:
    """A markdown table, one row per group of runs: seeds, status (``status_text``: ``completed 5/5``,
    or for a group with unfinished runs ``2 completed, 1 failed (5/5)``), then mean ± sample std of
    the final accuracy, average incremental accuracy, forgetting and BWT, class-IL and (where any
    run has it) task-IL; a group without a setting shows a dash. Then, where any group has them
    (``cost_report.extra_columns``): training TFLOPs, train seconds, class-IL average anytime
    accuracy and class-IL intransigence, the last against ``reference`` (a joint run) when given."""
    if reference is not None:
        docs = with_intransigence(docs, reference)
    labels, aggregates = labelled_aggregates(docs)
    settings = [s for s in TABLE_SETTINGS if any(s in agg["metrics"] for agg in aggregates)]
    extra = extra_columns(aggregates)
    header = ["strategy", "seeds", "status"]
    header += [f"{SETTING_LABELS[setting]} {label}" for setting in settings for label in TABLE_METRICS.values()]
    header += [name for name, _ in extra]
    lines = [
        f"{docs[0]['config']['benchmark']}: mean ± sample std (ddof=1) over seeds",
        "",
        "| " + " | ".join(header) + " |",
        "|---|---|---|" + "---:|" * (len(header) - 3),
    ]
    for row, (label, agg) in enumerate(zip(labels, aggregates)):
        cells = [label, f"{len(agg['seeds'])} ({', '.join(map(str, agg['seeds']))})", status_text(agg)]
        for setting in settings:
            for name in TABLE_METRICS:
                stats = agg["metrics"].get(setting, {}).get(name)
                cells.append(mean_std_cell(stats))
        cells += [column[row] for _, column in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(doc: dict[str, Any], results_path: Path | None = None) -> str:
    """A plain-text table of the headline metrics of one run."""
    config, timing = doc["config"], doc["timing"]
    lines = [
        f"{config['benchmark']} | {config['strategy']} | {config['model']} | seed {config['seed']} | "
        f"{doc['completed_tasks']}/{config['n_tasks']} tasks | {doc['environment']['device']}",
        f"{'setting':<11}{'final acc':>9}{'avg inc acc':>13}{'forgetting':>12}{'BWT':>9}",
    ]
    for setting, m in doc["metrics"].items():
        label = setting.replace("class_il", "class-IL").replace("task_il", "task-IL").replace("_", " ")
        lines.append(
            f"{label:<13}{m['final_accuracy']:>7.2f}{m['average_incremental_accuracy']:>13.2f}"
            f"{m['forgetting']:>12.2f}{m['bwt']:>9.2f}"
        )
    seconds = sum(timing["train_seconds"])
    speed = sum(timing["images_per_second"]) / len(timing["images_per_second"])
    where = f" -> {results_path}" if results_path else ""
    lines.append(f"train {seconds:.1f} s, {speed:.0f} img/s (mean over tasks){where}")
    return "\n".join(lines)

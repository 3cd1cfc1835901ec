"""Many processes: one process against several (torchrun, gloo) at equal total threads on a 2-core CPU, the
per-seed study that separates splitting the batch from the thread count, the weights' drift, and why the
thread count cannot be explained by the arithmetic (``benchmarks/processes*.py``, ``thread_numerics.py``)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

from report import MINUS, Results, code, command, fmt, machine, option, pm, source, table

TITLE = "Many processes"
SETTINGS = ("1 process x 2 threads", "1 process x 1 thread", "2 processes x 1 thread")
SPEED_FILES = ("processes.json", "processes_no_sync_bn.json", "processes_fp32.json", "processes_1thread.json",
               "processes_fp32_1thread.json")
SUMMARIES = {"bf16": "processes_seeds.json", "fp32": "processes_fp32_seeds.json"}


def _label(run: dict[str, Any]) -> str:
    """``1 process x 2 threads``: the spelling of the seeds summaries."""
    p, t = run["processes"], run["threads_per_process"]
    return f"{p} process{'es' if p > 1 else ''} x {t} thread{'s' if t > 1 else ''}"


def _precision(doc: dict[str, Any]) -> str:
    return "fp32" if option(doc["protocol"]["argv"], "--amp") == "off" else "bf16"


def _seed(doc: dict[str, Any]) -> str:
    return option(doc["protocol"]["argv"], "--seed")


def _grouped_source(results: Results, names: list[str], label: str = "Source") -> str:
    """``source`` for many files, one entry per commit and machine."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name in names:
        doc = results(name)
        groups[(doc.get("commit", "unknown"), machine(doc))].append(name)
    parts = [", ".join(f"`results/{n}`" for n in files) + f": commit `{commit}`, {where}"
             for (commit, where), files in sorted(groups.items(), key=lambda item: item[1][0])]
    return f"{label}: " + "; ".join(parts) + ".\n"


def _checked_runs(results: Results) -> list[str]:
    """Every per-run file of the prefix ``processes``, after checking the seeds summaries against them."""
    names = [n for n in results.names() if n.startswith("processes")]
    run_files = [n for n in names if "results" in results(n)]
    rebuilt: dict[str, dict[str, dict[str, float]]] = {p: defaultdict(dict) for p in SUMMARIES}
    for name in run_files:
        doc = results(name)
        if "--no-sync-bn" in doc["protocol"]["argv"]:
            continue
        for run in doc["results"]:
            rebuilt[_precision(doc)][_seed(doc)][_label(run)] = run["class_il_final_accuracy"]
    for precision, summary in SUMMARIES.items():
        if results(summary)["class_il_final_accuracy"] != rebuilt[precision]:
            raise ValueError(f"{summary} does not summarise the per-seed files of {precision}")
    return run_files


def _sign_p(above: int, n: int) -> float:
    """Two-sided sign-test p-value of ``above`` positive differences out of ``n``."""
    tail = sum(math.comb(n, k) for k in range(max(above, n - above), n + 1)) / 2**n
    return min(1.0, 2 * tail)


def _sci(value: float) -> str:
    """A small float in scientific notation, with one decimal and the U+2212 minus."""
    return f"{value:.1e}".replace("-", MINUS)


def _speed(results: Results, run_files: list[str]) -> list[str]:
    rows = []
    for name in SPEED_FILES:
        doc = results(name)
        for run in doc["results"]:
            sync = "off" if "--no-sync-bn" in doc["protocol"]["argv"] else "on"
            speed_up = fmt(run["speed_up"]) + "x" if len(doc["results"]) > 1 else "—"
            rows.append([f"[{name[:-5]}](results/{name})", _precision(doc), _label(run),
                         sync if run["processes"] > 1 else "—", fmt(run["images_per_second"], 1), speed_up,
                         fmt(run["class_il_final_accuracy"]), fmt(run["task_il_final_accuracy"])])
    per_class = int(option(results("processes.json")["protocol"]["argv"], "--max-train-per-class"))
    bf16 = [results(n) for n in run_files if len(results(n)["results"]) > 1 and _precision(results(n)) == "bf16"
            and "--no-sync-bn" not in results(n)["protocol"]["argv"]]
    ups = [doc["results"][-1]["speed_up"] for doc in bf16]
    ones = [doc["results"][0]["images_per_second"] for doc in bf16]
    speed_ups = {name: results(name)["results"][-1]["speed_up"] for name in SPEED_FILES[:3]}
    return [
        "### Speed at equal total threads\n",
        f"DER++ on Split-CIFAR-10, {per_class:,} training images per class,"
        " reduced ResNet-18, 1 epoch per task, global batch 32 (split over the processes), M = 500, "
        "seed 0, on the 2-core CPU with gloo; each invocation runs 1 process with both threads, then 2 processes "
        "of 1 thread (a `_1thread` file: 1 process of 1 thread alone), and its speed-up is against its own "
        "1-process run (images/s of training, rank 0's clock):\n",
        table(["file", "precision", "run", "sync BN", "img/s", "speed-up", "class-IL final", "task-IL final"], rows,
              "lllrrrrr"),
        f"Two processes on two cores trained at {fmt(speed_ups['processes.json'])}x (bf16) and "
        f"{fmt(speed_ups['processes_fp32.json'])}x (fp32) the speed of one process using both cores. Global "
        "BatchNorm synchronises the processes twice per BatchNorm layer and step (one all-reduce forward, one "
        "backward), besides the gradients and the gathered logits, and each process augments the whole global "
        "batch. Without it (`--no-sync-bn`, which changes the method: each process normalises with its own "
        f"shard) the 2 processes ran at {fmt(speed_ups['processes_no_sync_bn.json'])}x. On two cores, threads "
        "inside one process use them about as well; many processes are for many GPUs and nodes, where NCCL's "
        "collectives are cheap. There is no GPU measurement yet.\n",
        f"Each line is one invocation, and this machine's speed varies between invocations: over the "
        f"{len(bf16)} bf16 seed invocations of the next table, the 1-process run trained at {fmt(min(ones), 1)} "
        f"to {fmt(max(ones), 1)} img/s, and 2 processes were slower than 1 in {sum(up < 1 for up in ups)} of "
        f"{len(ups)} (speed-up {fmt(min(ups))}x to {fmt(max(ups))}x, median {fmt(statistics.median(ups))}x).\n",
        code("\n".join(command(results(name)) for name in SPEED_FILES)),
        source(results, *SPEED_FILES),
    ]


def _seeds(results: Results, run_files: list[str]) -> list[str]:
    out = ["### Splitting the batch against the thread count\n"]
    seeds = {p: sorted(results(n)["class_il_final_accuracy"], key=int) for p, n in SUMMARIES.items()}
    fp32_split = [s for s in seeds["fp32"] if SETTINGS[2] in results(SUMMARIES["fp32"])["class_il_final_accuracy"][s]]
    out.append(
        "The speed table compares 2 processes of 1 thread with 1 process of 2 threads, which differ in two ways. "
        f"The seeds separate them: the same protocol with seeds {seeds['bf16'][0]} to {seeds['bf16'][-1]} in bf16 "
        "(`processes.py --seed N`, and `--processes 1 --threads 1` for the 1-thread column) and seeds "
        f"{seeds['fp32'][0]} to {seeds['fp32'][-1]} in fp32 (`--amp off`; 2 processes for seed "
        f"{', '.join(fp32_split)} only), final class-IL accuracy:\n"
    )
    for precision, name in SUMMARIES.items():
        per_seed = results(name)["class_il_final_accuracy"]
        seeds = sorted(per_seed, key=int)
        rows = [[seed, *(fmt(per_seed[seed].get(s, math.nan)) for s in SETTINGS)] for seed in seeds]
        full = [s for s in SETTINGS if all(s in per_seed[seed] for seed in seeds)]
        rows.append(["mean", *(fmt(statistics.mean(per_seed[seed][s] for seed in seeds)) if s in full else "—"
                               for s in SETTINGS)])
        out.append(f"{precision}:\n")
        out.append(table(["seed", *SETTINGS], rows))
    rows, threads_class = [], []
    for precision, name in SUMMARIES.items():
        for c in results(name)["comparisons"]:
            above = sum(d > 0 for d in c["differences"])
            n = len(c["differences"])
            rows.append([precision, f"{c['from']} − {c['minus']}", c["metric"].split("_final")[0].replace("_il", "-IL"),
                         pm(c["differences"]), fmt(c["t"], 2, sign=True), f"{above} of {n}",
                         fmt(c["sign_test_p"], 3)])
            if c["from"] == SETTINGS[1] and c["minus"] == SETTINGS[0] and c["metric"] == "class_il_final_accuracy":
                threads_class.append((precision, above, n, c))
    out.append("Paired differences over the seeds (mean ± sd, paired t, two-sided sign test):\n")
    out.append(table(["precision", "difference", "accuracy", "mean ± sd", "t", "seeds above 0", "sign-test p"],
                     rows, "lllrrrr"))
    out.extend(_seed_reading(results, threads_class))
    out.append(code("\n".join(command(results(name)) for name in SUMMARIES.values())))
    out.append(source(results, *SUMMARIES.values()))
    out.append(_grouped_source(results, [n for n in run_files if n not in SPEED_FILES],
                               "Per-seed runs, checked against the summaries"))
    return out


def _comparison(results: Results, name: str, first: str, second: str, metric: str) -> dict[str, Any]:
    return next(c for c in results(name)["comparisons"]
                if c["from"] == first and c["minus"] == second and c["metric"] == metric)


def _consistent(c: dict[str, Any]) -> str:
    return "a consistent difference" if abs(c["t"]) >= 2 else "no consistent difference"


def _seed_reading(results: Results, threads_class: list[tuple[str, int, int, dict[str, Any]]]) -> list[str]:
    split = _comparison(results, SUMMARIES["bf16"], SETTINGS[2], SETTINGS[1], "class_il_final_accuracy")
    split_task = _comparison(results, SUMMARIES["bf16"], SETTINGS[2], SETTINGS[1], "task_il_final_accuracy")
    fp32_task = _comparison(results, SUMMARIES["fp32"], SETTINGS[1], SETTINGS[0], "task_il_final_accuracy")
    bf16_task = _comparison(results, SUMMARIES["bf16"], SETTINGS[1], SETTINGS[0], "task_il_final_accuracy")
    above, n = sum(t[1] for t in threads_class), sum(t[2] for t in threads_class)
    per_precision = ", ".join(f"{a} of {m} seeds in {p} ({pm(c['differences'])})" for p, a, m, c in threads_class)
    return [
        f"- **The split is the single-process run.** At the same threads per process, 2 processes against 1 "
        f"show {_consistent(split)} in bf16: class-IL {pm(split['differences'])} points "
        f"({sum(d > 0 for d in split['differences'])} seeds up, {sum(d < 0 for d in split['differences'])} down), "
        f"task-IL {pm(split_task['differences'])}. The gap between the speed table's rows comes from the thread "
        "count, not from the split.\n"
        f"- **A 1-thread process scored higher than a 2-thread one** in class-IL on {per_precision}: "
        f"{above} of {n} seed pairs, which a fair coin gives with probability {fmt(_sign_p(above, n), 3)}. "
        f"In task-IL the difference is {pm(bf16_task['differences'])} in bf16 (t {fmt(bf16_task['t'])}) and "
        f"{pm(fp32_task['differences'])} in fp32 (t {fmt(fp32_task['t'])}). The effect is within one process, "
        "without torchrun, and clearest in class-IL, the measure most sensitive to how "
        "strongly the last steps favour the newest classes. Its cause is not known (below), so compare "
        "accuracies only between runs with the same threads per process; results.json records it "
        "(`environment.cpu_threads`, `environment.processes`).\n",
    ]


def _drift(results: Results) -> list[str]:
    doc = results("processes_drift.json")
    rows = [[str(r["steps"]), _sci(r["one_thread"]), _sci(r["two_processes"])] for r in doc["rows"]]
    later = [r for r in doc["rows"] if r["one_thread"] > 0 and r["steps"] > 1]
    first = doc["rows"][0]
    start = ("After the first step both differ from the reference in the last bits only; later, the 2 processes "
             "drift from it" if max(first["one_thread"], first["two_processes"]) < 1e-6
             else "The 2 processes drift from the reference")
    factor = max(max(r["two_processes"] / r["one_thread"], r["one_thread"] / r["two_processes"]) for r in later)
    return [
        "### Drift of the weights\n",
        "DER++ on the first task of Split-CIFAR-10 (reduced ResNet-18, fp32, batch 32, M = 500, seed 0), trained "
        "for the given number of steps by 1 process of 2 threads (the reference), 1 process of 1 thread (float "
        "rounding alone) and 2 gloo processes of 1 thread; the largest absolute difference of any weight from the "
        "reference:\n",
        table(["steps", "1 process x 1 thread", "2 processes x 1 thread"], rows),
        f"{start} within a factor of {fmt(factor, 1)} of what another thread count does: the mechanics of the "
        "split are exact up to float rounding.\n",
        code(command(doc)),
        source(results, "processes_drift.json"),
    ]


def _numerics(results: Results) -> list[str]:
    doc = results("thread_numerics.json")
    grads = doc["gradients"]
    rows = [[threads, str(len(grads[threads]["relative_error"])),
             f"{fmt(min(grads[threads]['relative_error']), 3)} to {fmt(max(grads[threads]['relative_error']), 3)}",
             f"{fmt(min(grads[threads]['scale']), 3)} to {fmt(max(grads[threads]['scale']), 3)}"]
            for threads in sorted(grads, key=int)]
    one, two = doc["losses"]["1"], doc["losses"]["2"]
    apart = next(i for i, (a, b) in enumerate(zip(one, two, strict=True)) if abs(a - b) > abs(a) / 100)
    same = "the same images and labels" if doc["same_inputs"] else "different images or labels"
    return [
        "### Threads and the arithmetic\n",
        "`thread_numerics.py` looks for a difference in the arithmetic of bf16 runs at 1 and 2 threads (Split-"
        "CIFAR-10, 1,000 images per class, reduced ResNet-18, bf16 autocast, M = 500, one child process per thread "
        "count): "
        f"in the first two tasks of DER++ (seed 1) every one of the {doc['steps_compared']} steps sees {same} at "
        "both thread counts (hashed), and on DER++ after one task the bf16 gradient against the float64 one has "
        "the same relative error ||g − g64|| / ||g64|| and the same scale <g, g64> / <g64, g64> (below 1: "
        "shrunk) at both:\n",
        table(["threads", "batches", "relative error", "scale"], rows),
        f"The two runs' losses differ from step {doc['first_loss_difference']} in the last bits, and bf16 rounding "
        f"spreads that: by step {apart} the loss is {fmt(one[apart], 3)} at 1 thread against {fmt(two[apart], 3)} "
        "at 2. Step by step, each thread count looks like one more draw of the run's noise; the seeded generators' "
        "draws are the same at both too, so the runs differ only in the order of float sums. How that order could "
        "favour 1 thread in class-IL over the seeds, in fp32 as in bf16, has not been found.\n",
        code(command(doc)),
        source(results, "thread_numerics.json"),
    ]


def render(results: Results) -> str:
    run_files = _checked_runs(results)
    parts = [*_speed(results, run_files), *_seeds(results, run_files), *_drift(results), *_numerics(results)]
    return "\n".join(parts)

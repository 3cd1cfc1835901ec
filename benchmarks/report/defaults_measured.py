"""Defaults, measured: the two defaults that had no source, LwF's head warm-up and kd-mse's weight, each
run over seeds 0, 1, 2 both ways (``benchmarks/results/study_*.json``)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from . import Results, code, command, final, fmt, joined, pm, source, spread, table, versus
from .headline import protocol_sentence

TITLE = "Defaults, measured"

LWF_OFF, LWF_ON = "study_lwf_warmup0.json", "study_lwf_warmup1.json"
KD_ONE, KD_PRIMER = "study_kdmse_a1.json", "study_kdmse_a015.json"
METRICS = (("class_il", "final_accuracy", "class-IL final"), ("task_il", "final_accuracy", "task-IL final"),
           ("class_il", "forgetting", "class-IL forgetting"), ("task_il", "forgetting", "task-IL forgetting"))
HEADER = ["class-IL final", "task-IL final", "class-IL forgetting", "task-IL forgetting"]


def values(doc: dict[str, Any], key: str, metric: str) -> list[float]:
    """One metric of every run of a study file, in seed order."""
    return [final(r, key, metric) for r in sorted(doc["runs"], key=lambda r: r["seed"])]


def row(name: str, doc: dict[str, Any]) -> list[str]:
    return [name, *(pm(values(doc, key, metric)) for key, metric, _ in METRICS)]


def comparison(new: dict[str, Any], old: dict[str, Any]) -> tuple[str, list[str]]:
    """The differences ``new`` minus ``old`` of each metric in words, and the metrics whose difference is
    larger than the larger standard deviation of the two rows."""
    parts, outside = [], []
    for key, metric, name in METRICS:
        a, b = values(new, key, metric), values(old, key, metric)
        diff = statistics.mean(a) - statistics.mean(b)
        parts.append(f"{name} by {fmt(diff, sign=True)}")
        if versus(spread(a), spread(b)) != "level with":
            outside.append(f"{name} ({fmt(diff, sign=True)})")
    return joined(parts), outside


def inside_the_spread(outside: Sequence[str]) -> str:
    """Which differences the seeds' spread covers, in words, given those it does not (``outside``)."""
    if not outside:
        return "every difference is smaller than the larger standard deviation of the two rows"
    return ("every difference but " + joined(list(outside)) + " is smaller than the larger standard deviation "
            "of the two rows")


def render(results: Results) -> str:
    off, on, one, primer = (results(name) for name in (LWF_OFF, LWF_ON, KD_ONE, KD_PRIMER))
    warmup = on["runs"][0]["hparams"]["warmup_epochs"]
    alpha_one, alpha_primer = one["runs"][0]["hparams"]["alpha"], primer["runs"][0]["hparams"]["alpha"]
    lwf_diffs, lwf_outside = comparison(on, off)
    kd_diffs, kd_outside = comparison(primer, one)
    kd_class = statistics.mean(values(primer, "class_il", "final_accuracy")) - statistics.mean(
        values(one, "class_il", "final_accuracy"))
    return "\n".join([
        "Each default either follows the source it cites or says why it departs, and where the choice was open "
        f"we measured it: {protocol_sentence(on)}, the {on['protocol']['head']} head; seeds 0, 1, 2; mean ± "
        "sample sd. Both studies ran at the commit named below; compare their rows with each other, not with the "
        "other tables.\n",
        "### LwF's head warm-up\n",
        "The DER paper's grid, which our LwF defaults cite, was run with Mammoth's LwF, which first trains the "
        "new head units alone (backbone frozen, in eval mode) for as many epochs as the task:\n",
        code(command(off) + "\n" + command(on)),
        table(["lwf", *HEADER], [row("no warm-up (the old default)", off),
                                 row(f"warm-up, {warmup} epoch (Mammoth's)", on)]),
        f"Against no warm-up, the warm-up moves {lwf_diffs} points; {inside_the_spread(lwf_outside)}. "
        + ("The data do not argue against the source, " if not lwf_outside else
           "The data differ beyond the seeds' spread, and the source is followed; ")
        + "and the default is now Mammoth's: `--warmup-epochs -1`, the task's epoch count, resolved once and "
        "recorded as a number; `--warmup-epochs 0` turns the warm-up off. The warm-up runs the frozen backbone "
        "without autograd, so it costs a forward pass per image.\n",
        "### kd-mse's weight\n",
        "`kd-mse` is the teacher-student loss of the knowledge-distillation primer this library started from, "
        f"CE + α·MSE(teacher logits, student logits) with α = {alpha_primer:g}; the library's default was "
        f"α = {alpha_one:g}, with no source. Measured both ways:\n",
        code(command(one) + "\n" + command(primer)),
        table(["kd-mse", *HEADER], [row(f"α = {alpha_one:g} (the old default)", one),
                                    row(f"α = {alpha_primer:g} (the primer's)", primer)]),
        f"Against α = {alpha_one:g}, α = {alpha_primer:g} moves {kd_diffs} points; {inside_the_spread(kd_outside)}. "
        + (f"The final accuracies do not separate the two weights over three seeds (class-IL "
           f"{fmt(kd_class, sign=True)}), " if not any(o.startswith(("class-IL final", "task-IL final"))
                                                       for o in kd_outside)
           else "The final accuracies differ beyond the seeds' spread, ")
        + f"so the default is the primer's {alpha_primer:g}, and `lifelong-kd list` names it as the source.\n",
        source(results, LWF_OFF, LWF_ON, KD_ONE, KD_PRIMER),
    ])

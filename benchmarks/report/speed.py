"""Fast by default: a plain ``lifelong-kd run`` before and after the speed defaults, the cost of
``torch.compile`` on CPU, and the bare model's limit at batch 32 on the AMD EPYC.

Reads ``plain_run.json``, ``plain_run_finetune.json``, ``plain_run_eval_fp32.json``, ``compile_cost.json``
and ``throughput_cpu_b32_epyc.json``.
"""

from __future__ import annotations

import re
from typing import Any

from . import ENTRIES, Results, code, command, fmt, source, table

TITLE = "Fast by default"


def _numerics(train: dict[str, Any]) -> str:
    """The numerics a run's ``config.train`` records, in words."""
    parts = ["bf16 autocast" if train["amp"] == "bf16" else "fp32",
             "channels_last" if train["channels_last"] else "contiguous"]
    if train.get("compile") in (True, "on"):
        parts.append("compiled")
    if "eval_precision" in train:
        parts.append(f"{train['eval_precision']} evaluation of the seen tasks")
    else:
        parts.append("every task evaluated after every task")
    return ", ".join(parts)


def _plain_table(doc: dict[str, Any]) -> str:
    """Before and after rows of a ``plain_run.py`` file, with its before / after ratios."""
    rows = []
    for side in ("before", "after"):
        run = doc["runs"][side]
        commit = doc["before_commit"] if side == "before" else doc["commit"]
        rows.append([f"{side} (`{commit}`: {_numerics(run['train'])})", fmt(run["train_seconds"], 1),
                     fmt(run["eval_seconds"], 1), fmt(run["wall_seconds"], 1), fmt(run["class_il_final_accuracy"])])
    ratios = doc["ratios"]
    cells = [fmt(ratios[f"{k}_seconds before / after"]) + "x" for k in ("train", "eval", "wall")]
    rows.append(["before / after", *cells, ""])
    return table(["plain `lifelong-kd run`", "train s", "eval s", "wall s", "class-IL %"], rows)


def _rules(results: Results) -> str:
    choice = results("plain_run_finetune.json")["runs"]["after"]["speed_choices"]["compile"]
    images, threshold = (int(x) for x in re.search(r"of (\d+) training images < (\d+)", choice).groups())
    epochs = 10
    assert images < threshold <= epochs * images
    return f"""A plain `lifelong-kd run` picks the fastest numerics the device runs well and records each choice
(`config.train`, with the reasons in `environment.speed_choices`); a flag turns each off. The full rules are in
the [design doc](../lifelong_kd/DESIGN.md#speed-fast-by-default).

- `--amp auto`: bf16 autocast on CUDA GPUs with bf16 units (Ampere and later) and on CPUs with `amx_bf16` or
  `avx512_bf16`; float32 elsewhere.
- `--channels-last` (on): channels_last memory for the convolutions.
- `--compile auto`: `torch.compile` on CUDA; on CPU only for a run of at least {threshold:,} training images
  (epochs x the stream's training images), so a 1-epoch Split-CIFAR-10 run ({images:,} images) stays eager and a
  {epochs}-epoch one compiles.
- Evaluation does only what a metric needs: the seen tasks, plus the next task with a fixed head (FWT).
- `--eval-precision fp32` (the default) evaluates in float32; `train` evaluates the backbone at the training
  precision, faster ([Evaluation precision](#evaluation-precision)).
"""


def _plain(results: Results) -> str:
    lwf, ft, fp32 = (results(n) for n in ("plain_run.json", "plain_run_finetune.json", "plain_run_eval_fp32.json"))
    threads = lwf["machine"]["cpu_threads"]
    for doc in (lwf, ft):
        runs = doc["runs"]
        assert runs["after"]["class_il_final_accuracy"] >= runs["before"]["class_il_final_accuracy"]
    bf16_evals = {doc["runs"]["after"]["train"]["eval_precision"] for doc in (lwf, ft)}
    assert bf16_evals == {"bf16"}
    before, after = fp32["runs"]["before"], fp32["runs"]["after"]
    assert (before["train"]["eval_precision"], after["train"]["eval_precision"]) == ("bf16", "fp32")
    eval_rows = [[f"`{r['train']['eval_precision']}` (`{c}`)", fmt(r["train_seconds"], 1), fmt(r["eval_seconds"], 1),
                  fmt(r["wall_seconds"], 1), fmt(r["class_il_final_accuracy"])]
                 for r, c in ((before, fp32["before_commit"]), (after, fp32["commit"]))]
    eval_ratio = after["eval_seconds"] / before["eval_seconds"]
    train_gap = 100 * (max(before["train_seconds"], after["train_seconds"])
                       / min(before["train_seconds"], after["train_seconds"]) - 1)
    return f"""### A plain run, before and after

`benchmarks/plain_run.py` times the same plain command with an older commit's code, then with this one's, one
after the other in one process tree: full Split-CIFAR-10 (5 tasks), reduced ResNet-18, 1 epoch, batch 32, seed 0,
on {threads} CPU threads, no speed flag given. Each run's numerics are what its code chose. LwF, timed as
`{command(lwf["command_args"])}`:

{code(command(lwf))}
{_plain_table(lwf)}
The "after" run also trains LwF's warm-up (the new head alone first, on the frozen backbone: one more forward pass
of the backbone per image and task), which the older code did not have, so its training does more work than the
"before" run's. Fine-tuning has no such phase, so its plain run isolates the speed defaults:

{code(command(ft))}
{_plain_table(ft)}
Class-IL is shown to check that the defaults cost no accuracy: it did not fall in either run. The two commits also
differ in code other than the speed defaults, so the rise is not credited to them.

Both "after" runs evaluated in bf16. Evaluation now defaults to float32; on the fine-tuning command that costs
{fmt(eval_ratio, 1)}x the evaluation time, timed in a separate run (same machine, same training numerics):

{code(command(fp32))}
{table(["evaluation precision", "train s", "eval s", "wall s", "class-IL %"], eval_rows)}
The two rows train with the same numerics, yet their training times differ by {train_gap:.0f} %: run-to-run
variation on this machine is of that order, one reason to compare only ratios measured in one file.

{source(results, "plain_run.json", "plain_run_finetune.json", "plain_run_eval_fp32.json")}"""


def _compile(results: Results) -> str:
    doc = results("compile_cost.json")
    s = doc["summary"]
    rows = [[name, f"`{run['compile']}`", fmt(run["train_seconds"], 1), fmt(run["last_task_images_per_second"], 0)]
            for name, run in ((n, doc["runs"][n]) for n in ("eager", "cold", "warm"))]
    return f"""### The cost of compiling on CPU

`benchmarks/compile_cost.py` trains LwF in bf16 three times (500 training images per class, seed 0): eager, compiled
with an empty inductor cache (cold), and compiled again with the cache filled (warm). The speed-up is the last
task's images/s compiled over eager; the compile cost is the extra training time before it; the break-even point is
the number of training images at which the faster steps repay it. Timed as `{command(doc["command_args"])}`:

{code(command(doc))}
{table(["run", "compile", "train s", "last task img/s"], rows, "llrr")}
Compiled training ran {fmt(s["speed_up"])}x faster than eager. A cold compile cost {fmt(s["cold_compile_seconds"], 1)}
s, so it pays from about {round(s["cold_break_even_images"], -3):,.0f} training images; a warm one cost
{fmt(s["warm_compile_seconds"], 1)} s and pays from about {round(s["warm_break_even_images"], -3):,.0f}. On the Intel
Xeon with AMX compiling gains more
([Throughput](#throughput)) and would pay sooner; the CPU rule takes the larger break-even point, this one, rounded
up, since the cache is cold on a fresh machine.

{source(results, "compile_cost.json")}"""


def _limit(results: Results) -> str:
    doc = results("throughput_cpu_b32_epyc.json")
    med, ratios, samples = doc["median_images_per_second"], doc["ratios"], doc["samples_images_per_second"]
    rows = []
    for key, label in ENTRIES:
        rows.append([label, fmt(med[f"{key}/off"], 0), fmt(med[f"{key}/bf16"], 0),
                     fmt(ratios[f"speed bf16/fp32 ({key})"]),
                     *(fmt(med[f"{key}/{p}"] / med[f"bare/{p}"]) for p in ("off", "bf16"))])
    jumps = [samples[f"{key}/bf16"][2] / max(samples[f"{key}/bf16"][:2]) for key, _ in ENTRIES]
    assert min(jumps) > 1
    assert all(med[f"{key}/bf16"] == max(samples[f"{key}/bf16"][:2]) for key, _ in ENTRIES)
    # "runs at the bare model's speed": within 5 % of it at both precisions
    assert min(med[f"finetune/{p}"] / med[f"bare/{p}"] for p in ("off", "bf16")) * 20 > 19
    setup = doc["setup"]
    return f"""### The limit of a step at batch 32

The bare model (forward and backward on ready-made tensors, plain CE) bounds a training step.
`benchmarks/throughput.py` times it beside the full fine-tuning and LwF steps: synthetic stream, {setup["model"]},
batch {setup["batch_size"]}, {setup["images_per_task"]} images per task, the last task timed,
channels_last, eager, medians of {setup["repeats"]} interleaved repeats, on the same AMD EPYC:

{code(command(doc))}
{table(["batch 32, AMD EPYC", "fp32 img/s", "bf16 img/s", "bf16 / fp32", "step / bare (fp32)", "step / bare (bf16)"],
       rows)}
The full fine-tuning step runs at the bare model's speed (augmentation and the runner cost little); LwF's is slower
by its teacher's forward pass. The third bf16 repeat ran {fmt(min(jumps))}x to {fmt(max(jumps))}x faster than
the faster of the first two for every entry, so the machine's speed changed during the run; each bf16 median is the
faster of the first two repeats.

{source(results, "throughput_cpu_b32_epyc.json")}"""


def render(results: Results) -> str:
    """The section's Markdown."""
    return "\n".join([_rules(results), _plain(results), _compile(results), _limit(results)])

"""Accuracy per unit of compute: every method of the family table at equal training FLOPs per task
(``split_cifar10.py --extra "--budget-flops B"``, merged by ``budget_table.py``), the stored-logits
check of DER and DER++, and the anytime-accuracy runs."""

from __future__ import annotations

import statistics
from typing import Any

from lifelong_kd.cost_report import TFLOP, pareto_front

from . import NAMES, ORDINALS, Results, code, command, final, fmt, joined, pm, source, table, versus

TITLE = "Accuracy per unit of compute"
REPLAY = ("er", "er-ace", "der", "derpp", "xder")
JOINT_BATCH = ("bic", "wa", "icarl", "lucir")


def label(budget: float) -> str:
    """A FLOP budget as the result files write it in their names (``split_cifar10_budget_<B>_seed0.json``)."""
    return f"{budget:.3g}".replace("e+", "e")


def front(rows: list[dict[str, Any]]) -> list[str]:
    """The strategies on the Pareto front of training TFLOPs and class-IL (the plots' dashed line), cheapest first."""
    return [rows[i]["strategy"] for i in pareto_front([(r["training_tflops"]["mean"], r["class_il"]["mean"])
                                                       for r in rows])]


def listing(strategies: list[str]) -> str:
    return joined([NAMES[s] for s in strategies])


def render(results: Results) -> str:
    merged = results("split_cifar10_budget.json")
    budgets = sorted({row["budget_flops_per_task"] for row in merged["table"]})
    small, large = budgets[0], budgets[-1]
    rows = {b: sorted((r for r in merged["table"] if r["budget_flops_per_task"] == b),
                      key=lambda r: -r["class_il"]["mean"]) for b in budgets}
    by = {(r["strategy"], b): r for b in budgets for r in rows[b]}
    order = {b: [r["strategy"] for r in rows[b]] for b in budgets}
    epochs = sorted((r for r in rows[large] if r["class_il_equal_epochs"] is not None),
                    key=lambda r: -r["class_il_equal_epochs"])
    epoch_order = [r["strategy"] for r in epochs]
    runs: dict[tuple[str, float], list[dict[str, Any]]] = {}
    inputs = merged["inputs"]
    for name in inputs:
        for run in results(name)["runs"]:
            runs.setdefault((run["strategy"], run["cost"]["budget"]["per_task"]), []).append(run)
    protocol, plain = merged["protocol"], merged["plain_step_flops"]
    seeds = sorted({run["seed"] for group in runs.values() for run in group})
    memory = sorted({run["memory"] for group in runs.values() for run in group if run["memory"]})
    task_images = 2 * protocol["max_train_per_class"]
    steps = [r["main_steps_per_task"]["mean"] for b in budgets for r in rows[b]]
    evaluated = " (evaluated at the training precision)" if protocol["eval_precision"] == "train" else ""

    def cil(s: str, b: float = large) -> str:
        return pm(by[(s, b)]["class_il"])

    def nme(s: str, b: float) -> list[float]:
        return [final(run, "nme_class_il") for run in runs[(s, b)]]

    def tflops(s: str, b: float = large) -> str:
        return fmt(by[(s, b)]["training_tflops"]["mean"])

    def main_steps(s: str, b: float = large) -> str:
        return fmt(by[(s, b)]["main_steps_per_task"]["mean"], 1)

    def task_end(s: str) -> str:
        spent = statistics.mean(run["cost"]["total"]["task_end_flops"] for run in runs[(s, large)]) / TFLOP
        return fmt(spent) if spent else "none"

    out = [
        f"Every method of the family table at **equal training FLOPs per task** instead of equal epochs: "
        f"{protocol['benchmark']} on {protocol['max_train_per_class']:,} images per class, {protocol['model']}, "
        f"batch {protocol['batch_size']}, {protocol['amp']}{evaluated}, plain SGD "
        f"(momentum {protocol['momentum']:g}), M = {', '.join(map(str, memory))}, seeds "
        f"{joined([str(seed) for seed in seeds])}, {merged['machine']['cpu']} "
        f"({merged['machine']['cpu_threads']} threads), torch {merged['machine']['torch']}. Each task's main phase "
        f"trains until it has spent B FLOPs (`--budget-flops B`), counted by the run (`cost` in results.json). "
        f"One of fine-tuning's steps costs {label(plain)} FLOPs, so B = {label(small)} is {fmt(small / plain, 1)} of "
        f"them and B = {label(large)} {fmt(large / plain, 1)}, about one fine-tuning epoch over a task's "
        f"{task_images:,} images; the phase stops at the step that reaches B, so fine-tuning takes "
        f"{by[('finetune', small)]['main_steps_per_task']['mean']:.0f} and "
        f"{by[('finetune', large)]['main_steps_per_task']['mean']:.0f} steps a task. A replay step of 32 + 32 "
        f"images costs twice a plain one, DER++'s 32 + 64 three times, a teacher forward a third more, so the "
        f"methods take {fmt(min(steps), 1)} to {fmt(max(steps), 1)} main steps a task. The TFLOPs column is "
        f"everything the run spent: the budgeted main phases plus the other phases (LwF's warm-up, PODNet's "
        f"fine-tuning) and the task-end work (herding, class means, BiC's bias fit).\n",
        code("\n".join(command(doc) for doc in [*map(results, inputs), merged])
             + "\npython plots/make_plots.py"),
    ]
    best = {b: rows[b][0]["strategy"] for b in budgets}
    best_epochs = epoch_order[0]

    def bold(text: str, win: bool) -> str:
        return f"**{text}**" if win else text

    cells = []
    for row in rows[large]:
        s = row["strategy"]
        cells.append([s, bold(cil(s), s == best[large]), tflops(s), main_steps(s),
                      bold(cil(s, small), s == best[small]), tflops(s, small),
                      bold(fmt(row["class_il_equal_epochs"]), s == best_epochs)])
    out.append(table(["strategy", f"class-IL, {label(large)}", "TFLOPs", "main steps/task",
                      f"class-IL, {label(small)}", "TFLOPs", "class-IL at equal epochs (1 epoch, all data, mean)"],
                     cells))
    out.append(
        "Final class-IL accuracy (the linear head's), mean ± sd over the seeds; the full tables (task-IL, "
        "forgetting, all steps, images, seconds) are printed by `budget_table.py` and kept in "
        "[split_cifar10_budget.json](results/split_cifar10_budget.json). The last column is the family table's "
        "mean (all the images, 1 epoch): another stream, given for the order only.\n")
    out.append(source(results, "split_cifar10_budget.json", *inputs))
    ran_from = sorted({results(name).get("ran_from", "") for name in inputs} - {""})
    if ran_from:
        out.append(f"The runs ran from {'; '.join(ran_from)}.\n")
    out.append("\n".join(
        f"![Split-CIFAR-10 at {label(b)} FLOPs per task: class-IL against training {what}, each method ± sd, "
        f"the Pareto front dashed](../plots/split_cifar10_budget_{b:.3g}_cost_{what}.png)"
        for b in budgets for what in ("flops", "seconds")) + "\n")

    # The reading.
    bic, derpp = by[("bic", large)]["class_il"], by[("derpp", large)]["class_il"]
    bic_gap, bic_sd = bic["mean"] - derpp["mean"], max(bic["sd"], derpp["sd"])
    tie = {"level with": "within one sd of DER++", "above": "ahead of DER++", "below": "behind DER++"}[
        versus(bic, derpp)]
    bullets = [
        f"**The methods that train on the exemplars and the new data in one batch move up.** "
        f"{listing(list(JOINT_BATCH))} spend 32 images a step and take {main_steps('bic')} main steps a task at "
        f"{label(large)}, where ER and DER take {main_steps('er')} and DER++ and X-DER {main_steps('derpp')}. BiC "
        f"goes from {ORDINALS[epoch_order.index('bic')]} at equal epochs to {ORDINALS[order[large].index('bic')]} "
        f"({tie}: {fmt(bic_gap)} points apart, sd up to {fmt(bic_sd)}), WA from "
        f"{ORDINALS[epoch_order.index('wa')]} to {ORDINALS[order[large].index('wa')]}. But they pay outside the "
        f"budget: the task-end work costs BiC {task_end('bic')} TFLOPs over the run, WA {task_end('wa')}, iCaRL "
        f"{task_end('icarl')} and LUCIR {task_end('lucir')}, against ER's {task_end('er')}, so BiC's "
        f"{cil('bic')} costs {tflops('bic')} TFLOPs against DER++'s {cil('derpp')} at {tflops('derpp')}.",
    ]
    nme_text, above, tops = [], True, []
    for b in (large, small):
        means = {s: statistics.mean(nme(s, b)) for s in ("icarl", "bic", "wa")}
        linear = max(r["class_il"]["mean"] for r in rows[b])
        above = above and min(means["icarl"], means["bic"]) > linear
        tops.append(f"{NAMES[max(means, key=lambda s: means[s])]}'s at {label(b)}")
        nme_text.append(f"at {label(b)} iCaRL's {pm(nme('icarl', b))}, BiC's {pm(nme('bic', b))} and WA's "
                        f"{pm(nme('wa', b))}, against the best linear head's {fmt(linear)}")
    spread = max(rows[large], key=lambda r: r["class_il"]["sd"])["strategy"]
    both = "iCaRL's and BiC's NME are above every linear head at both budgets; "
    bullets.append(
        f"**{'A nearest-mean classifier beats every linear head' if above else 'Nearest-mean classifiers'} at equal "
        f"FLOPs.** The table gives every method's linear head; iCaRL classifies by the nearest mean of exemplars "
        f"(NME), and BiC and WA record one too: {'; '.join(nme_text)}. "
        f"{both if above else ''}"
        f"the highest is {' and '.join(tops)}. iCaRL's linear head ({cil('icarl')}) is "
        f"{'the most spread of the table' if spread == 'icarl' else 'widely spread'}: the class means, from "
        f"herding on the features, need fewer steps than a classifier trained on imbalanced batches.")
    logits = results("stored_logits_budget.json")["runs"]

    def stored(prefix: str) -> str:
        picked = [r for r in logits if f"/{prefix}-" in r["run"] and "budget" in r["run"]]
        share = [r["label_first_percent"] for r in picked]
        top = [r["mean_top_probability"] for r in picked]
        return (f"{fmt(min(share), 1)} to {fmt(max(share), 1)} % of {NAMES[prefix]}'s memory (mean top "
                f"probability {fmt(min(top))} to {fmt(max(top))})")


    reference = next(r for r in logits if "budget" not in r["run"])
    bullets.append(
        f"**DER falls from {ORDINALS[epoch_order.index('der')]} to {ORDINALS[order[large].index('der')]}, DER++ "
        f"only from {ORDINALS[epoch_order.index('derpp')]} to {ORDINALS[order[large].index('derpp')]}.** Both "
        f"replay the logits stored when a sample entered the memory; after {main_steps('derpp')} to "
        f"{main_steps('der')} steps a task at {label(large)} those logits put the label first for {stored('der')} "
        f"and {stored('derpp')}, against {fmt(reference['label_first_percent'], 1)} % "
        f"({fmt(reference['mean_top_probability'])}) in a DER++ run of the equal-epochs protocol (seed 0): "
        f"[stored_logits_budget.json](results/stored_logits_budget.json). DER learns the old classes from those "
        f"targets alone; DER++ adds the labels' cross-entropy and keeps {cil('derpp')}.")
    replay_spread = max(REPLAY, key=lambda s: by[(s, large)]["class_il"]["sd"])
    ace = "above" if by[("er-ace", large)]["class_il"]["mean"] > by[("er", large)]["class_il"]["mean"] else "below"
    bullets.append(
        f"**Plain replay does not win here**, unlike Prabhu et al.'s finding at ImageNet scale: ER is "
        f"{ORDINALS[order[large].index('er')]} at {label(large)} ({cil('er')}"
        f"{', the widest spread of the replay methods' if replay_spread == 'er' else ''}) and "
        f"{ORDINALS[order[small].index('er')]} at {label(small)}, and ER-ACE, at the same cost, is {ace} it at "
        f"{label(large)} ({cil('er-ace')}). At these budgets the best method reaches "
        f"{fmt(rows[large][0]['class_il']['mean'])} % where equal epochs on all the data give up to "
        f"{fmt(epochs[0]['class_il_equal_epochs'])} %: this ranks the methods early in their training, and a larger "
        f"budget is the next measurement.")
    podnet = by[("podnet", large)]
    bullets.append(
        f"**The Pareto front** (`_cost_flops.png`) is {listing(front(rows[large]))} at {label(large)} and "
        f"{listing(front(rows[small]))} at {label(small)}; PODNet spends {tflops('podnet')} TFLOPs (its "
        f"{runs[('podnet', large)][0]['hparams']['finetune_epochs']} epochs of class-balanced fine-tuning, "
        f"{fmt(podnet['steps_per_task']['mean'], 1)} steps a task in all) for {cil('podnet')}.")
    ratios = {}
    for b in budgets:
        ratios[b] = sorted(
            next(r["train_seconds"] for r in group if r["seed"] == 0)
            / statistics.mean(r["train_seconds"] for r in group if r["seed"] != 0)
            for (s, bb), group in runs.items() if bb == b)
    bullets.append(
        "The seconds figures measure the same runs. Seed 0's runs shared the machine with the test suite: their "
        "training seconds are, over the methods, a median of " + " and ".join(
            f"{fmt(statistics.median(ratios[b]), 1)} times those of seeds 1 and 2 at {label(b)} "
            f"({fmt(ratios[b][0], 1)} to {fmt(ratios[b][-1], 1)})" for b in budgets)
        + ". The accuracies do not depend on it.")
    out.append("What changes against equal epochs:\n\n" + "".join(f"- {b}\n" for b in bullets))

    anytime = results("split_cifar10_anytime.json")
    alone = {r["strategy"]: r for r in results(f"split_cifar10_budget_{label(large)}_seed0.json")["runs"]}
    same = all(r["matrices"] == alone[r["strategy"]]["matrices"] for r in anytime["runs"])
    falls = all(points[i]["class_il"] < points[i - 1]["class_il"]
                for r in anytime["runs"] for points in [r["anytime"]["points"]]
                for i in range(1, len(points)) if points[i]["task"] != points[i - 1]["task"])
    them = sorted(anytime["runs"], key=lambda r: -r["class_il"]["average_anytime_accuracy"])
    out.append(
        f"### Anytime accuracy\n\nRuns of {listing([r['strategy'] for r in anytime['runs']])} at {label(large)}, "
        f"seed 0, evaluated every {anytime['runs'][0]['anytime']['every']} steps. "
        f"Their accuracy matrices {'equal' if same else 'differ from'} those of the same runs without the "
        f"evaluations ([split_cifar10_budget_{label(large)}_seed0.json](results/split_cifar10_budget_{label(large)}_"
        f"seed0.json)){': evaluating during training changes nothing' if same else ''}. Average anytime class-IL "
        f"accuracy: " + ", ".join(f"{NAMES[r['strategy']]} {fmt(r['class_il']['average_anytime_accuracy'])}"
                                  for r in them)
        + ", against final class-IL " + ", ".join(fmt(r["class_il"]["final_accuracy"]) for r in them) + ". "
        + ("The accuracy falls at every task boundary, when two new classes enter the evaluation; " if falls else "")
        + "the average is over each method's own points (" + ", ".join(str(len(r["anytime"]["points"])) for r in them)
        + " of them: the steps differ at equal FLOPs), so it rewards the methods whose points fall early in a "
        "task.\n")
    out.append(code(command(anytime)))
    out.append(source(results, "split_cifar10_anytime.json", "stored_logits_budget.json"))
    out.append("![Anytime class-IL accuracy at equal FLOPs, seed 0](../plots/split_cifar10_anytime.png)\n")
    return "\n".join(out)

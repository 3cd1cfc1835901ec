"""Evaluation precision: how far the final accuracies move when the backbone is evaluated in float32
instead of bf16 (the runs of ``split_cifar10.py --eval-both``, which record ``fp32_eval`` beside their own
bf16 matrices), and what float32 evaluation costs (``plain_run.py``, ``plain_run_eval_fp32.json``)."""

from __future__ import annotations

from typing import Any

from . import NAMES, Results, code, command, fmt, joined, source, table

TITLE = "Evaluation precision"
TENTH = 1 / 10  # the rule set before the study: float32 by default if a final accuracy moves by more than this
HEADS = {"class_il": "class-IL", "task_il": "task-IL", "nme_class_il": "NME class-IL", "nme_task_il": "NME task-IL"}


def studied(results: Results) -> list[str]:
    """The Split-CIFAR-10 result files whose runs carry an ``fp32_eval`` (peeked at, so that only these are
    cited by this section)."""
    return [name for name in results.names() if name.startswith("split_cifar10_")
            and any("fp32_eval" in run for run in results.peek(name).get("runs", []))]


def who(run: dict[str, Any], name: str) -> str:
    memory = f"M = {run['memory']}" if run["memory"] else "no memory"
    return f"{NAMES.get(run['strategy'], run['strategy'])}, {memory}, seed {run['seed']}, [{name}](results/{name})"


def render(results: Results) -> str:
    names = studied(results)
    runs = [(name, run) for name in names for run in results(name)["runs"] if "fp32_eval" in run]
    seeds = sorted({run["seed"] for _, run in runs})

    def each(pick: Any) -> str:
        return " / ".join(sorted({str(pick(run)) for _, run in runs}))

    memories = sorted({run["memory"] for _, run in runs if run["memory"]})
    memory = " or ".join(map(str, memories)) + (" or none" if any(not run["memory"] for _, run in runs) else "")
    data = "all the data" if all(run["config"].get("max_train_per_class") is None for _, run in runs) else ""
    moves: dict[tuple[str, str], list[tuple[float, str, dict[str, Any]]]] = {}
    for name, run in runs:
        own, fp32 = run["metrics"], run["fp32_eval"]["metrics"]
        for head in sorted(set(own) & set(fp32)):
            for what in ("final_accuracy", "forgetting"):
                moves.setdefault((head, what), []).append((fp32[head][what] - own[head][what], name, run))

    def largest(head: str, what: str) -> tuple[float, str, dict[str, Any]]:
        return max(moves[(head, what)], key=lambda m: (abs(m[0]), m[1], m[2]["seed"]))

    rows = []
    for head in HEADS:
        for what, label in (("final_accuracy", "final accuracy"), ("forgetting", "forgetting")):
            if (head, what) in moves:
                delta, name, run = largest(head, what)
                rows.append([f"{HEADS[head]} {label}", str(len(moves[(head, what)])), fmt(delta, sign=True),
                             who(run, name)])
    finals = [largest(head, "final_accuracy") for head in HEADS if (head, "final_accuracy") in moves]
    worst = max(finals, key=lambda m: abs(m[0]))
    linear = [largest(head, "final_accuracy") for head in ("class_il", "task_il")]
    nme = largest("nme_class_il", "final_accuracy")
    forgetting = max((largest(head, "forgetting") for head in HEADS if (head, "forgetting") in moves),
                     key=lambda m: abs(m[0]))
    out = [
        f"{len(runs)} runs of Split-CIFAR-10 ({each(lambda r: r['config']['model'])}, "
        f"{each(lambda r: r['config']['train']['epochs'])} epoch, "
        f"batch {each(lambda r: r['config']['train']['batch_size'])}, "
        f"trained in {each(lambda r: r['config']['train']['amp'])}, seeds {joined([str(s) for s in seeds])}, "
        f"M = {memory}{', ' + data if data else ''}) evaluated each "
        f"row twice, with the backbone in bf16 and in float32 (the head is float32 in both): `--eval-both`, which "
        f"keeps the float32 matrices and metrics as `fp32_eval` beside the run's own bf16 ones. The largest move "
        f"of each quantity (float32 minus bf16, points), over the runs that record it:\n",
        table(["quantity", "runs", "largest move", "run"], rows, "lrrl"),
        f"The linear head's final class-IL accuracy moved by at most {fmt(abs(linear[0][0]))} points and its "
        f"task-IL accuracy by at most {fmt(abs(linear[1][0]))}. NME's final class-IL accuracy moved by "
        f"{fmt(abs(nme[0]))} points at most ({who(nme[2], nme[1])}); its class means were computed in bf16 in both "
        f"evaluations. Forgetting, a difference of two accuracies, moved by up to {fmt(abs(forgetting[0]))}.",
    ]
    if round(abs(worst[0]), 2) > TENTH:
        out[-1] += (
            " The rule set before the study was float32 by default if any final accuracy moved by more than a "
            "tenth of a point, so **evaluation now runs in float32 by default** (`--eval-precision fp32`, "
            "recorded in results.json's `config.train`); `--eval-precision train` evaluates at the training "
            "precision (bf16 here), faster. The tables of these runs show the bf16 evaluation, which every run "
            "recorded as its own; the float32 matrices are in the same files (`fp32_eval`).")
    out[-1] += "\n"
    out.append(code("\n".join(command(results(name)) for name in names)))
    out.append(source(results, *names))
    plain = results("plain_run_eval_fp32.json")
    before, after = plain["runs"]["before"], plain["runs"]["after"]
    same = before["class_il_final_accuracy"] == after["class_il_final_accuracy"]
    accuracy = (f"the same final class-IL accuracy, {fmt(after['class_il_final_accuracy'])} %" if same else
                f"final class-IL accuracy {fmt(after['class_il_final_accuracy'])} % instead of "
                f"{fmt(before['class_il_final_accuracy'])} %")
    out.append(
        f"Its cost, timed on the plain fine-tuning command in one run each way: `{plain['before_commit']}`, the code "
        f"just before float32 became the default, evaluates as `{before['speed_choices']['eval_precision']}`, "
        f"`{plain['commit']}` as `{after['speed_choices']['eval_precision']}`. Evaluation took "
        f"{fmt(after['eval_seconds'], 1)} s instead of {fmt(before['eval_seconds'], 1)} s and the whole run "
        f"{fmt(after['wall_seconds'], 1)} s instead of {fmt(before['wall_seconds'], 1)} s "
        f"({fmt(100 * (after['wall_seconds'] / before['wall_seconds'] - 1), 0, sign=True)} %), with {accuracy}.\n")
    out.append(code(command(plain)))
    out.append(source(results, "plain_run_eval_fp32.json"))
    return "\n".join(out)

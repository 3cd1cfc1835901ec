"""The tables measured before the fixes: older code and, for most, another CPU than the sections above.

Reads ``split_cifar10.json`` (no replay), ``split_cifar10_replay.json`` (growing head),
``split_cifar10_fixed_head.json`` and ``split_cifar10_fixed_head_seeds.json`` (Mammoth's fixed head),
``split_cifar10_der_lr.json`` (DER at ER's learning rate) and ``split_cifar10_podnet_nca.json`` (PODNet with
the NCA margin inside the learnt scale). Published columns come from each file's ``published_reference``.
"""

from __future__ import annotations

import statistics
from typing import Any

from . import Results, code, command, fmt, pm, published, reference_key, source, spread, table, versus

TITLE = "Archive: before the fixes"

FILES = ("split_cifar10.json", "split_cifar10_replay.json", "split_cifar10_fixed_head.json",
         "split_cifar10_fixed_head_seeds.json", "split_cifar10_der_lr.json", "split_cifar10_podnet_nca.json")


def _key(run: dict[str, Any]) -> str:
    return reference_key(run["strategy"], run.get("memory"))


def _published(doc: dict[str, Any], run: dict[str, Any]) -> str:
    return published(doc, run["strategy"], run.get("memory"))


def _by_key(*docs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {_key(r): r for doc in docs for r in doc["runs"] if r["seed"] == 0}


def _replay_table(doc: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    """The table of replay runs, with the published numbers of ``doc``."""
    rows = []
    for r in runs:
        c, t = r["class_il"], r["task_il"]
        nme = r.get("metrics", {}).get("nme_class_il")
        cls = fmt(c["final_accuracy"]) + (f" (NME {fmt(nme['final_accuracy'])})" if nme else "")
        rows.append([r["strategy"], "—" if r.get("memory") is None else str(r["memory"]), cls,
                     fmt(t["final_accuracy"]), fmt(c["forgetting"]), fmt(c["bwt"]), f"{r['train_seconds']:.0f}",
                     _published(doc, r)])
    header = ["strategy", "M", "class-IL", "task-IL", "class-IL forgetting", "class-IL BWT", "train s",
              f"published class-IL / task-IL ({doc['published_reference']['source']})"]
    return table(header, rows, "lrrrrrrl")


def _intro(results: Results) -> str:
    docs = {name: results(name) for name in FILES}
    commits = ", ".join(f"`{c}`" for c in dict.fromkeys(doc["commit"] for doc in docs.values()))
    cpus: dict[str, list[str]] = {}
    for name, doc in docs.items():
        cpus.setdefault(doc["machine"]["cpu"], []).append(f"`{name}`")
    where = " and ".join(f"on {cpu} ({', '.join(names)})"
                         for cpu, names in sorted(cpus.items(), key=lambda kv: (-len(kv[1]), kv[0])))
    proto = docs["split_cifar10.json"]["protocol"]
    return (
        f"**These tables were measured on older code (commits {commits}), {where}, so they are not comparable "
        f"to the tables above.** At the commits of the five tables before PODNet's the head was `incremental` for "
        f"every strategy unless `--head` said otherwise, logits were bf16, and class-IL took the arg-max over all "
        f"of a fixed head's units; the rows measured again with the fixed defaults are in the sections above.\n\n"
        f"Protocol of every table: {proto['benchmark']}, {proto['model']}, batch {proto['batch_size']}, "
        f"{proto['epochs_per_task']} epoch per task, {proto['amp']} autocast + channels_last, each strategy's "
        f"default hyperparameters at that commit, seed 0 unless said.\n"
    )


def _no_replay(results: Results, doc: dict[str, Any]) -> str:
    runs = {r["strategy"]: r for r in doc["runs"]}
    header = ["strategy", "class-IL final acc", "task-IL final acc", "class-IL avg inc acc", "class-IL forgetting",
              "class-IL BWT", "task-IL forgetting", "task-IL BWT", "train s",
              f"published class-IL / task-IL ({doc['published_reference']['source']})"]
    rows = [[r["strategy"], fmt(r["class_il"]["final_accuracy"]), fmt(r["task_il"]["final_accuracy"]),
             fmt(r["class_il"]["average_incremental_accuracy"]), fmt(r["class_il"]["forgetting"]),
             fmt(r["class_il"]["bwt"]), fmt(r["task_il"]["forgetting"]), fmt(r["task_il"]["bwt"]),
             f"{r['train_seconds']:.0f}", _published(doc, r)] for r in doc["runs"]]
    ft, lwf, joint = runs["finetune"], runs["lwf"], runs["joint"]
    last = ft["matrices"]["class_il"][-1][-1]
    return (
        "### No replay\n\n" + table(header, rows, "lrrrrrrrrl") + "\n"
        f"Fine-tuning predicts only the last task's two classes, so its class-IL is that task's accuracy / 5 "
        f"({fmt(last)} / 5 = {fmt(last / 5)}), while joint training, the upper bound, reaches "
        f"{fmt(joint['class_il']['final_accuracy'])}. LwF keeps the old tasks' heads (task-IL "
        f"{fmt(lwf['task_il']['final_accuracy'])} against {fmt(ft['task_il']['final_accuracy'])}) but without "
        f"replay cannot separate old classes from new ones, so its class-IL stays near fine-tuning's.\n\n"
    )


def _growing(results: Results, doc: dict[str, Any]) -> str:
    base = results("split_cifar10.json")
    runs = [r for r in base["runs"] if r["strategy"] in ("finetune", "lwf", "joint")] + doc["runs"]
    k = _by_key(base, doc)
    ft = k["finetune"]["class_il"]["final_accuracy"]
    der = [k[f"der/{m}"]["class_il"]["final_accuracy"] for m in (200, 500)]
    derpp = [k[f"derpp/{m}"]["class_il"]["final_accuracy"] for m in (200, 500)]
    icarl = k["icarl/200"]["metrics"]
    return (
        "### Replay, growing head\n\n"
        + _replay_table(doc, runs) + "\n"
        f"DER stays near fine-tuning ({fmt(der[0])} / {fmt(der[1])} at M = 200 / 500 against {fmt(ft)}): comparing "
        f"only the units that existed at storage time cannot stop new units from firing on old samples, which "
        f"DER++'s label CE on replayed samples repairs ({fmt(derpp[0])} / {fmt(derpp[1])}). iCaRL's "
        f"nearest-mean-of-exemplars classifier beats its own linear head "
        f"({fmt(icarl['nme_class_il']['final_accuracy'])} against {fmt(icarl['class_il']['final_accuracy'])} at "
        f"M = 200), as in its paper.\n\n"
    )


def _fixed(results: Results, doc: dict[str, Any]) -> str:
    k, grown = _by_key(doc), _by_key(results("split_cifar10_replay.json"))
    ft = k["finetune"]["class_il"]["final_accuracy"]
    der = " and ".join(f"from {fmt(grown[f'der/{m}']['class_il']['final_accuracy'])} to "
                       f"{fmt(k[f'der/{m}']['class_il']['final_accuracy'])} at M = {m}" for m in (200, 500))
    replay = [r["class_il"]["final_accuracy"] for r in doc["runs"] if r.get("memory") is not None]
    at200 = sorted((r for r in doc["runs"] if r.get("memory") in (None, 200)),
                   key=lambda r: -r["class_il"]["final_accuracy"])
    order = " > ".join(f"{r['strategy']} {fmt(r['class_il']['final_accuracy'])}" for r in at200)
    return (
        "### Replay, Mammoth's fixed head\n\n"
        f"`--head {doc['protocol']['head']}`: 10 units from the start, CE over all of them.\n\n"
        + _replay_table(doc, doc["runs"]) + "\n"
        f"Every replay method is far above fine-tuning in class-IL ({fmt(min(replay))} to {fmt(max(replay))} "
        f"against {fmt(ft)}); compared with the growing head, DER's goes {der}. "
        f"At M = 200 the order is {order}.\n\n"
    )


def _seeds(results: Results, more: dict[str, Any]) -> str:
    first = results("split_cifar10_fixed_head.json")
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(first["runs"] + more["runs"], key=lambda r: r["seed"]):
        if r.get("memory") in (None, 500):
            groups.setdefault(_key(r), []).append(r)
    rows = []
    for key, runs in groups.items():
        rows.append([key.replace("/", " M = "), ", ".join(str(r["seed"]) for r in runs),
                     *(pm([r[part][metric] for r in runs]) for part, metric in
                       (("class_il", "final_accuracy"), ("task_il", "final_accuracy"),
                        ("class_il", "forgetting"), ("class_il", "bwt")))])
    acc = {key: [r["class_il"]["final_accuracy"] for r in runs] for key, runs in groups.items()}
    best = max(acc, key=lambda key: statistics.mean(acc[key]))
    der, er = spread(acc["der/500"]), spread(acc["er/500"])
    gap, larger_sd = der["mean"] - er["mean"], max(der["sd"], er["sd"])
    return (
        "### Fixed head, M = 500, seeds 0, 1, 2\n\n"
        "Mean ± sample sd; seed 0 is the run of the table above.\n\n"
        + table(["strategy (fixed head)", "seeds", "class-IL", "task-IL", "class-IL forgetting", "class-IL BWT"],
                rows, "llrrrr") + "\n"
        f"{best.replace('/', ' M = ')} is first ({pm(acc[best])}); DER's mean minus ER's is {fmt(gap, sign=True)} "
        f"points, {'less' if versus(der, er) == 'level with' else 'more'} than the larger of their sds "
        f"({fmt(larger_sd)}).\n\n"
    )


def _der_lr(results: Results, doc: dict[str, Any]) -> str:
    base = results("split_cifar10_fixed_head.json")
    runs = [_by_key(base)["der/500"], doc["runs"][0]]
    rows = [[r["strategy"], str(r["memory"]), fmt(r["hparams"]["lr"]), fmt(r["class_il"]["final_accuracy"]),
             fmt(r["task_il"]["final_accuracy"]), fmt(r["class_il"]["forgetting"])] for r in runs]
    before, after = (r["class_il"]["final_accuracy"] for r in runs)
    return (
        "### DER at ER's learning rate (fixed head)\n\n"
        + table(["strategy", "M", "lr", "class-IL", "task-IL", "class-IL forgetting"], rows) + "\n"
        f"At ER's lr DER's class-IL goes from {fmt(before)} to {fmt(after)}, so the lr "
        f"{'is not' if after <= before else 'may be part of'} why DER does not beat ER here. "
        f"What remains is likely the one-epoch budget, in which every stored logit comes from a model "
        f"still learning its task (untested; it needs multi-epoch runs).\n\n"
    )


def _podnet(results: Results, doc: dict[str, Any]) -> str:
    r = doc["runs"][0]
    m, hp = r["metrics"], r["hparams"]
    rows = [[r["strategy"], str(r["memory"]), fmt(hp["momentum"], 1), fmt(hp["nca_margin"], 1),
             fmt(m["class_il"]["final_accuracy"]), fmt(m["nme_class_il"]["final_accuracy"]),
             fmt(m["task_il"]["final_accuracy"])]]
    return (
        "### PODNet with the NCA margin inside the learnt scale\n\n"
        + table(["strategy", "M", "momentum", "NCA margin δ", "class-IL", "NME class-IL", "task-IL"], rows) + "\n"
        f"With Eq. 9's δ inside the learnt scale, η(s_y − δ), η turned negative in the first task, a mirrored "
        f"solution that each later task's imprinted proxies contradict, and class-IL ended at "
        f"{fmt(m['class_il']['final_accuracy'])}. The authors' code subtracts a scalar margin that cancels in the "
        f"softmax, so `--nca-margin` now defaults to 0.\n\n"
    )


# Each table with its file, which the table's function is given and whose command and source close it.
TABLES = ((_no_replay, "split_cifar10.json"), (_growing, "split_cifar10_replay.json"),
          (_fixed, "split_cifar10_fixed_head.json"), (_seeds, "split_cifar10_fixed_head_seeds.json"),
          (_der_lr, "split_cifar10_der_lr.json"), (_podnet, "split_cifar10_podnet_nca.json"))


def render(results: Results) -> str:
    parts = [part(results, doc) + code(command(doc)) + source(results, name)
             for part, name in TABLES for doc in [results(name)]]
    return "\n".join([_intro(results), *parts])

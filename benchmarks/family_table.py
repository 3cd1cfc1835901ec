"""The distillation family's table: the replay rows of ``split_cifar10.py`` result files, grouped by strategy,
memory, protocol (epochs, images per class, momentum) and tag, as mean ± standard deviation over seeds.

    python benchmarks/family_table.py      # the committed files below; writes split_cifar10_family.json
    python benchmarks/family_table.py --inputs split_cifar10_replay.json --output replay_table.json

Each group gives the final class-IL accuracy (the NME classifier's in brackets where the strategy has
one), the final task-IL accuracy and the class-IL forgetting, and the class-IL accuracy of each task
right after it was learnt (the matrix's diagonal, averaged over tasks 2 to 5): a method that cannot
place its newest classes above the old ones shows there first.
"""

from __future__ import annotations

import argparse
import json
from statistics import mean

from common import RESULTS, provenance, save
from report import pm as text
from report import spread

# Files whose rows the current code reproduces (a file listed earlier wins for the same run: the
# iCaRL M = 500 rows of split_cifar10_der_icarl_default_head.json predate the tiny-batch fix), but for
# the rows of OBSOLETE, whose code has changed since.
FAMILY = [
    "split_cifar10_bic_fit_m500.json", "split_cifar10_bic_fit_m200.json", "split_cifar10_bic_fit_epochs5.json",
    "split_cifar10_wa_icarl_m200_seeds.json",
    "split_cifar10_family_m500.json", "split_cifar10_family_momentum0.json", "split_cifar10_lucir_momentum0.json",
    "split_cifar10_family_podnet_seeds.json", "split_cifar10_family_m500_seeds.json",
    "split_cifar10_family_m200.json", "split_cifar10_family_epochs5.json",
    "split_cifar10_xder_eta01.json", "split_cifar10_xder_eta1.json", "split_cifar10_podnet_momentum0_margin06.json",
    "split_cifar10_bic_bias_lr.json", "split_cifar10_lucir_cbf.json",
    "split_cifar10_headline_seed0.json", "split_cifar10_headline_seeds.json", "split_cifar10_derpp_m200.json",
    "split_cifar10_icarl_m500_no_tiny_batch.json", "split_cifar10_der_icarl_default_head.json",
]

# Rows whose code has changed since: podnet's before its NCA took its authors' form; bic's before its bias
# stage solved Eq. 5 to its minimum (Mammoth's 250 Adam epochs at lr 1e-3, and the --bias-lr 0.01 study)
OBSOLETE = {("split_cifar10_family_m500.json", "podnet")} | {
    (name, "bic") for name in ("split_cifar10_family_m500.json", "split_cifar10_family_momentum0.json",
                               "split_cifar10_family_m500_seeds.json", "split_cifar10_family_m200.json",
                               "split_cifar10_family_epochs5.json", "split_cifar10_bic_bias_lr.json")}


def group_key(row: dict, protocol: dict) -> tuple:
    """The runs of one configuration: strategy, protocol and every setting but the seed."""
    settings = tuple(sorted((name, value) for name, value in row["hparams"].items() if name != "memory"))
    return row["strategy"], row["memory"], protocol["epochs_per_task"], protocol.get("max_train_per_class"), settings


def varied_settings(keys: list[tuple]) -> dict[tuple, str]:
    """For each configuration, the settings whose values differ among its strategy's at the same memory."""
    alike: dict[tuple, list[dict]] = {}
    for key in keys:
        alike.setdefault(key[:2], []).append(dict(key[4]))
    shown = {}
    for key in keys:
        others = alike[key[:2]]
        names = sorted(name for name in dict(key[4]) if len({str(o.get(name)) for o in others}) > 1)
        shown[key] = ", ".join(f"{name} {dict(key[4])[name]}" for name in names)
    return shown


def newest_task_accuracy(matrix: list[list[float | None]]) -> float:
    """Mean class-IL accuracy of tasks 2..T right after each was learnt (the diagonal past the first)."""
    return mean(matrix[t][t] for t in range(1, len(matrix)))


def summarise(rows: list[dict]) -> dict:
    metrics = rows[0]["metrics"]
    summary = {
        "seeds": sorted(row["seed"] for row in rows),
        "class_il": spread([row["metrics"]["class_il"]["final_accuracy"] for row in rows]),
        "task_il": spread([row["metrics"]["task_il"]["final_accuracy"] for row in rows]),
        "forgetting": spread([row["metrics"]["class_il"]["forgetting"] for row in rows]),
        "newest_task": spread([newest_task_accuracy(row["matrices"]["class_il"]) for row in rows]),
    }
    if "nme_class_il" in metrics:
        summary["nme_class_il"] = spread([row["metrics"]["nme_class_il"]["final_accuracy"] for row in rows])
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", nargs="+", default=FAMILY, help="result files of split_cifar10.py in results/")
    parser.add_argument("--output", default="split_cifar10_family.json")
    args = parser.parse_args()
    groups: dict[tuple, dict[int, dict]] = {}
    sources: dict[tuple, set[str]] = {}
    for name in args.inputs:
        path = RESULTS / name
        if not path.exists():
            print(f"missing {name}: skipped")
            continue
        payload = json.loads(path.read_text())
        for row in payload["runs"]:
            if row["memory"] is None or (name, row["strategy"]) in OBSOLETE:
                continue  # the family table compares replay methods
            key = group_key(row, payload["protocol"])
            if row["seed"] in groups.get(key, {}):
                continue  # the same run in two files: the first listed wins
            groups.setdefault(key, {})[row["seed"]] = row
            sources.setdefault(key, set()).add(f"{name} @ {payload['commit']}")
    table = []
    shown = varied_settings(list(groups))
    print("| strategy | M | epochs | per class | settings | seeds | class-IL (NME) | task-IL | forgetting | "
          "newest task |")
    print("|---|---:|---:|---:|---|---|---:|---:|---:|---:|")
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], str(k[3]), shown[k])):
        strategy, memory, epochs, per_class, settings = key
        summary = summarise(list(groups[key].values()))
        table.append({"strategy": strategy, "memory": memory, "epochs": epochs, "max_train_per_class": per_class,
                      "settings": dict(settings), "sources": sorted(sources[key]), **summary})
        nme = f" ({text(summary['nme_class_il'])})" if "nme_class_il" in summary else ""
        print(f"| {strategy} | {memory} | {epochs} | {per_class or 'all'} | {shown[key]} | "
              f"{','.join(map(str, summary['seeds']))} | {text(summary['class_il'])}{nme} | {text(summary['task_il'])} "
              f"| {text(summary['forgetting'])} | {text(summary['newest_task'])} |")
    print(f"saved {save(args.output, {**provenance(), 'inputs': args.inputs, 'groups': table})}")


if __name__ == "__main__":
    main()

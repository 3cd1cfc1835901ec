"""Split-CIFAR-10 class-IL benchmark.

Protocol (CPU): reduced ResNet-18, 5 tasks x 2 classes, batch 32, 1 epoch per
task, plain SGD (momentum 0, ``--momentum``), each strategy's other default
hyperparameters and its head (`lifelong-kd list`), bf16 autocast, channels_last,
no compile. The momentum is the protocol's, not each paper's: BiC, WA, LUCIR and
PODNet train with 0.9 at batch 128 for 160 to 250 epochs (their defaults in
the library), and at batch 32 for 1 epoch that momentum cost BiC, WA and
LUCIR 3 to 17 points of class-IL (benchmarks/README.md, the distillation family). Every run goes through the same code
path as `lifelong-kd run`; replay strategies run once per memory size.
``--eval-both`` also evaluates every row in float32 (the run itself evaluates
at its ``--eval-precision``) and records those matrices beside the run's.

    # the committed tables (benchmarks/results/):
    python benchmarks/split_cifar10.py                                          # split_cifar10.json
    python benchmarks/split_cifar10.py --strategies er er-kd icarl der derpp \
        --memories 200 500 --output split_cifar10_replay.json
    python benchmarks/split_cifar10.py --strategies finetune lwf er der derpp \
        --memories 500 --seeds 1 2 --output split_cifar10_seeds.json
    python benchmarks/split_cifar10.py --strategies er-ace lucir bic wa xder --memories 500 --seeds 1 2 \
        --output split_cifar10_family_m500_seeds.json               # and benchmarks/family_table.py
    python benchmarks/split_cifar10.py --strategies er-ace lucir podnet bic wa xder --memories 200 \
        --output split_cifar10_family_m200.json
    python benchmarks/split_cifar10.py --strategies er-ace derpp lucir podnet bic wa xder --memories 500 \
        --max-train-per-class 1000 --epochs 5 --output split_cifar10_family_epochs5.json
    # the budget benchmark (equal training FLOPs per task; benchmarks/budget_table.py), per budget B:
    python benchmarks/split_cifar10.py --strategies finetune lwf er der derpp icarl er-ace wa lucir bic \
        podnet xder --memories 500 --seeds 0 1 2 --max-train-per-class 1000 --extra "--budget-flops B" \
        --tag budgetB --output split_cifar10_budget_B.json
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from common import SHARED_DATA, provenance, save

from lifelong_kd import metrics
from lifelong_kd.cli import build_parser
from lifelong_kd.run_command import prepare_run
from lifelong_kd.runner import Runner

REPLAY = {"er", "er-kd", "er-ace", "icarl", "bic", "wa", "lucir", "podnet", "der", "derpp", "xder"}
PUBLISHED = {
    # DER paper (Buzzega et al. 2020), Table 2, Seq-CIFAR-10, ResNet-18, 50 epochs per task:
    # class-IL / task-IL accuracy, keyed "strategy" or "strategy/M". Reference only: not our protocol.
    "finetune": (19.62, 61.02),
    "lwf": (19.61, 63.29),
    "joint": (92.20, 98.31),
    "er/200": (44.79, 91.19),
    "er/500": (57.74, 93.61),
    "icarl/200": (49.02, 88.99),
    "icarl/500": (47.55, 88.22),
    "der/200": (61.93, 91.40),
    "der/500": (70.51, 93.40),
    "derpp/200": (64.88, 91.92),
    "derpp/500": (72.70, 93.88),
}

# The distillation family has no published Seq-CIFAR-10 class-IL number (ER-ACE's are online, M per class).
# Split CIFAR-100, 10 tasks, ResNet-18, 50 epochs: X-DER paper (Boschini et al. 2022), Table I, final
# average accuracy (class-IL), keyed "strategy/M"; "xder" is the paper's "X-DER w/ CE future heads" row,
# our form (the full X-DER: 49.93 / 59.14). Numbers from a transcription of the table: to be checked
# against the paper. Reference only: another dataset and protocol.
PUBLISHED_CIFAR100 = {
    "xder/500": 47.67, "xder/2000": 55.61, "er-ace/500": 38.75, "er-ace/2000": 49.72,
    "bic/500": 36.02, "bic/2000": 46.39, "lucir/500": 40.59, "lucir/2000": 41.73,
    "icarl/500": 46.52, "icarl/2000": 49.82, "der/500": 36.60, "der/2000": 51.89,
    "derpp/500": 38.25, "derpp/2000": 53.63,
}
# CIFAR-100, 50 base classes then 5 steps of 10, 2,000 exemplars, average incremental accuracy: PODNet
# paper, Table 1 (CNN; LUCIR's "UCIR (CNN)" row there, re-run by PODNet's authors). WA: its Table 4,
# 5 steps of 20 classes, the average over the steps after the first. Same caveat.
PUBLISHED_CIFAR100_AVERAGE = {"podnet": 64.83, "lucir": 64.01, "wa": 66.6, "bic": 65.1}


def record_fp32_evaluation(runner: Runner) -> dict[str, list]:
    """Make ``runner`` evaluate each row twice: at its own precision (what the run records) and in
    float32 (returned, filled as the run goes). Training is untouched: evaluation has no side effects."""
    rows: dict[str, list] = {}
    evaluate, own = runner.evaluate, runner.config

    def both(n_seen: int, evaluated):
        row = evaluate(n_seen, evaluated)
        if n_seen:
            runner.config = replace(own, eval_precision="fp32")
            for name, values in evaluate(n_seen, evaluated).items():
                rows.setdefault(name, []).append(values)
            runner.config = own
        return row

    runner.evaluate = both
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA / "cifar10-jpeg.zip")
    parser.add_argument("--strategies", nargs="+", default=["finetune", "lwf", "kd-mse", "joint"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--memories", nargs="+", type=int, default=[500], help="replay budgets M")
    parser.add_argument("--head", choices=["incremental", "fixed"], help="default: each strategy's")
    parser.add_argument("--lr", type=float, help="override every strategy's default lr")
    parser.add_argument("--momentum", type=float, default=0.0,
                        help="every run's SGD momentum (the protocol's plain SGD; the strategies' own defaults differ)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--amp", default="bf16", choices=["off", "bf16"])
    parser.add_argument("--compile", default="off", choices=["auto", "on", "off"])
    parser.add_argument("--eval-precision", default="train", choices=["train", "fp32"])
    parser.add_argument("--eval-both", action="store_true", help="also record float32-evaluation matrices")
    parser.add_argument("--max-train-per-class", type=int)
    parser.add_argument("--extra", default="", help="more `lifelong-kd run` flags for every run, e.g. '--alpha 0.15'")
    parser.add_argument("--tag", default="", help="appended to each run's name (to tell --extra studies apart)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/split_cifar10"))
    parser.add_argument("--output", default="split_cifar10.json")
    args = parser.parse_args()
    origin = provenance()  # taken before the runs: the code they ran

    runs = []
    plan = [
        (strategy, memory, seed)
        for strategy in args.strategies
        for memory in (args.memories if strategy in REPLAY else [None])
        for seed in args.seeds
    ]
    for strategy, memory, seed in plan:
        name = (strategy if memory is None else f"{strategy}-m{memory}") + (f"-{args.head}" if args.head else "")
        name += f"-{args.tag}" if args.tag else ""
        argv = [
            "run", "--benchmark", "split-cifar10", "--data-root", str(args.data_root),
            "--strategy", strategy, "--model", "reduced-resnet18", "--epochs", str(args.epochs),
            "--batch-size", str(args.batch_size), "--seed", str(seed), "--amp", args.amp, "--channels-last",
            "--compile", args.compile, "--eval-precision", args.eval_precision, "--momentum", str(args.momentum),
            "--out", str(args.runs_dir / f"{name}-seed{seed}"), "--overwrite", "--quiet",
        ]
        if args.head:
            argv += ["--head", args.head]
        if memory is not None:
            argv += ["--memory", str(memory)]
        if args.lr is not None:
            argv += ["--lr", str(args.lr)]
            name += f"-lr{args.lr}"
        if args.max_train_per_class:
            argv += ["--max-train-per-class", str(args.max_train_per_class)]
        argv += args.extra.split()
        start = time.perf_counter()
        runner = prepare_run(build_parser().parse_args(argv))
        fp32_rows = record_fp32_evaluation(runner) if args.eval_both else None
        doc = runner.run()
        wall = time.perf_counter() - start
        row = {
            "strategy": strategy, "memory": memory, "head": doc["config"]["head"], "seed": seed, "tag": args.tag,
            "argv": ["lifelong-kd", *argv],
            "class_il": doc["metrics"]["class_il"], "task_il": doc["metrics"]["task_il"],
            "metrics": doc["metrics"],
            "matrices": doc["matrices"], "hparams": doc["config"]["hparams"],
            "config": doc["config"],
            "train_seconds": sum(doc["timing"]["train_seconds"]),
            "eval_seconds": sum(doc["timing"]["eval_seconds"]),
            "images_per_second": doc["timing"]["images_per_second"],
            "wall_seconds": wall,
            "cost": doc["cost"],
        }
        if "anytime" in doc:
            row["anytime"] = doc["anytime"]
        if fp32_rows is not None:
            row["fp32_eval"] = {
                "matrices": fp32_rows, "metrics": {name: metrics.summary(m) for name, m in fp32_rows.items()},
            }
        runs.append(row)
        print(
            f"{name:<11} seed {seed}: class-IL {row['class_il']['final_accuracy']:6.2f}  "
            f"task-IL {row['task_il']['final_accuracy']:6.2f}  forgetting {row['class_il']['forgetting']:6.2f}  "
            f"BWT {row['class_il']['bwt']:7.2f}  train {row['train_seconds']:6.1f} s", flush=True,
        )
    payload = {
        **origin,
        "protocol": {
            "benchmark": "split-cifar10 (5 tasks x 2 classes, class order 0..9)", "model": "reduced-resnet18",
            "epochs_per_task": args.epochs, "head": args.head or "each strategy's", "lr_override": args.lr,
            "momentum": args.momentum,
            "batch_size": args.batch_size, "amp": args.amp, "compile": args.compile,
            "eval_precision": args.eval_precision,
            "channels_last": True, "data_root": str(args.data_root),
            "max_train_per_class": args.max_train_per_class, "extra": args.extra,
        },
        "published_reference": {
            "source": "Buzzega et al. 2020 (DER), Table 2, Seq-CIFAR-10, ResNet-18, 50 epochs; not our protocol",
            "class_il_task_il": PUBLISHED,
            "cifar100_final_class_il": {
                "source": "X-DER paper, Table I: Split CIFAR-100, 10 tasks, ResNet-18, 50 epochs (transcribed; "
                          "to check against the paper); not our dataset or protocol", "values": PUBLISHED_CIFAR100},
            "cifar100_average_incremental": {
                "source": "PODNet paper Table 1 (B50, 5 steps, CNN; UCIR row) and WA paper Table 4 (5 steps of 20; "
                          "WA and BiC rows), transcribed; not our dataset or protocol",
                "values": PUBLISHED_CIFAR100_AVERAGE},
        },
        "runs": runs,
    }
    print(f"saved {save(args.output, payload)}")


if __name__ == "__main__":
    main()

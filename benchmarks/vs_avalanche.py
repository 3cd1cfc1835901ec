"""Side by side with Avalanche 0.6 on Split-CIFAR-10 (class-IL), from one run.

Every entry trains the same reduced ResNet-18 (ours, a fixed 10-way head,
initialised from the same seed) on the same data (CIFAR-10 from
../shared/data, 5 tasks x 2 classes), with the same batch size, epochs,
optimizer (SGD, one lr for all) and seed:

- Avalanche's Naive, LwF, Replay and DER (beta = 0), its own data pipeline
  (per-sample torchvision transforms);
- our runner: finetune, lwf, er, der (`--head fixed`), and er with a
  class-balanced memory (closer to Avalanche's experience-balanced one than
  our default reservoir), at its fast settings
  (bf16 autocast, channels_last, torch.compile: `--amp`, `--no-channels-last`,
  `--no-compile`), and finetune and lwf again in fp32 without compile, the
  precision Avalanche trains in (the "fp32" rows);
- our plugins inside Avalanche's Naive: LwFDistillationPlugin, and DERPlugin
  twice: on the per-sample augmented benchmark, replaying each sample as the
  one augmented view it was stored with ("stored augmented view"), and on the
  un-augmented uint8 benchmark with `augment=` our BatchAugment, which
  augments current and replayed rows afresh on the device at every step
  ("fresh augmentation"; same crop / flip distribution).

Our entries evaluate in float32 (`eval_precision="fp32"`), as Avalanche does.
Their class-IL takes the arg-max over the classes seen so far, Avalanche's
over all 10 units: after the last task the two coincide (every class is
seen), so final accuracies compare exactly, while the earlier rows, and so
forgetting, may differ slightly by that definition.

Reports class-IL final accuracy, forgetting (Chaudhry et al., from each
entry's accuracy matrix) and training images/s (stream images / seconds in
training, compilation included; also over tasks 2..T only, which leaves
one-time costs out for every entry alike). With several `--seeds`, every entry runs
once per seed and the summary gives mean and sample std. Results:
benchmarks/results/vs_avalanche.json.

    python benchmarks/vs_avalanche.py
    python benchmarks/vs_avalanche.py --entries "avalanche Naive" "avalanche LwF" "ours finetune" "ours lwf" \
        "Naive + our LwFDistillationPlugin" --seeds 1 2 --output vs_avalanche_seeds.json
    python benchmarks/vs_avalanche.py --entries "ours er class-balanced" --output vs_avalanche_er_balanced.json
    python benchmarks/vs_avalanche.py --entries "avalanche DER" "ours der" \
        "Naive + our DERPlugin (stored augmented view)" "Naive + our DERPlugin (fresh augmentation)" \
        --output vs_avalanche_der_plugin.json
    python benchmarks/vs_avalanche.py --benchmark split-digits --output vs_avalanche_digits.json  # ~1 min check
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import torch
from common import SHARED_DATA, provenance, save

from lifelong_kd import metrics
from lifelong_kd.augment import BatchAugment
from lifelong_kd.avalanche import (
    DERPlugin,
    LwFDistillationPlugin,
    accuracy_matrix_from_avalanche,
    to_avalanche_benchmark,
)
from lifelong_kd.data import TaskStream, make_stream
from lifelong_kd.models import build_model
from lifelong_kd.report import mean_and_std
from lifelong_kd.runner import Runner
from lifelong_kd.strategies import build_strategy
from lifelong_kd.training import TrainConfig, seed_everything


def run_ours(name: str, stream: TaskStream, args: argparse.Namespace, fast: bool = True, **extra: str) -> dict:
    options = {"lr": args.lr, "momentum": 0.0, "weight_decay": 0.0, **extra}
    if name == "lwf":
        options.update(alpha=args.alpha, temperature=2.0)
    if name in ("er", "der"):
        options.update(memory=args.memory)
    if name == "der":
        options.update(alpha=args.der_alpha)
    seed_everything(args.seed)
    model = build_model("reduced-resnet18", stream.image_shape[0], stream.num_classes, head="fixed")
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, eval_batch_size=256, eval_precision="fp32",
        amp=args.amp if fast else "off", channels_last=args.channels_last and fast,
        compile="on" if args.compile and fast else "off",
    )
    doc = Runner(model, build_strategy(name, **options), stream, config, progress=False).run()
    return {"matrix": doc["matrices"]["class_il"], "task_seconds": doc["timing"]["train_seconds"]}


def run_avalanche(make: Callable, stream: TaskStream, args: argparse.Namespace, raw_train: bool = False) -> dict:
    """``make(common options)`` trained experience by experience on the stream's Avalanche benchmark:
    per-sample augmentation and normalisation in the train transform, or (``raw_train``) none, uint8
    images for a plugin that augments on the device."""
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training.determinism.rng_manager import RNGManager
    from avalanche.training.plugins import EvaluationPlugin

    seed_everything(args.seed)
    RNGManager.set_random_seeds(args.seed)
    model = build_model("reduced-resnet18", stream.image_shape[0], stream.num_classes, head="fixed")
    common = {
        "model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=args.lr),
        "criterion": torch.nn.CrossEntropyLoss(), "train_mb_size": args.batch_size, "train_epochs": args.epochs,
        "eval_mb_size": 256, "device": "cpu",
        "evaluator": EvaluationPlugin(accuracy_metrics(experience=True), loggers=[]),
    }
    strategy = make(common)
    benchmark = to_avalanche_benchmark(stream, augment=not raw_train, normalise_train=not raw_train)
    results, task_seconds = [], []
    for experience in benchmark.train_stream:
        start = time.perf_counter()
        strategy.train(experience)
        task_seconds.append(time.perf_counter() - start)
        results.append(strategy.eval(benchmark.test_stream))
    return {"matrix": accuracy_matrix_from_avalanche(results, len(stream)), "task_seconds": task_seconds}


def der_plugin(stream: TaskStream, args: argparse.Namespace, device: str, fresh: bool) -> DERPlugin:
    """Our DERPlugin at the run's M and alpha; ``fresh``: it also augments (``BatchAugment``: the stream's
    crop, flip and normalisation, seeded by the run) the current and replayed rows on ``device`` at every
    step, for a benchmark built with ``raw_train``."""
    augment = None
    if fresh:
        batch_augment = BatchAugment(stream.mean, stream.std, stream.crop_padding, stream.hflip, device=device)
        generator = torch.Generator(device=device).manual_seed(args.seed)
        augment = functools.partial(batch_augment.train, generator=generator)
    return DERPlugin(mem_size=args.memory, alpha=args.der_alpha, seed=args.seed, augment=augment)


def main() -> None:
    from avalanche.training.supervised import DER, LwF, Naive, Replay

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="split-cifar10", help="split-digits: a one-minute check")
    parser.add_argument("--data-root", default=str(SHARED_DATA / "cifar10-jpeg.zip"))
    parser.add_argument("--max-train-per-class", type=int)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--alpha", type=float, default=1.0, help="LwF weight (Avalanche's default)")
    parser.add_argument("--der-alpha", type=float, default=0.3)
    parser.add_argument("--memory", type=int, default=500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--amp", choices=["off", "bf16"], default="bf16", help="our runner's fast entries")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--entries", nargs="+", help="run only these entries (names as printed)")
    parser.add_argument("--output", default="vs_avalanche.json")
    args = parser.parse_args()
    origin = provenance()
    stream = make_stream(args.benchmark, data_root=args.data_root, max_train_per_class=args.max_train_per_class)
    entries: list[tuple[str, Callable[[], dict]]] = [
        ("avalanche Naive", lambda: run_avalanche(lambda c: Naive(**c), stream, args)),
        ("avalanche LwF", lambda: run_avalanche(lambda c: LwF(alpha=args.alpha, temperature=2.0, **c), stream, args)),
        ("avalanche Replay", lambda: run_avalanche(lambda c: Replay(mem_size=args.memory, **c), stream, args)),
        ("avalanche DER", lambda: run_avalanche(
            lambda c: DER(mem_size=args.memory, alpha=args.der_alpha, beta=0.0, **c), stream, args)),
        ("ours finetune", lambda: run_ours("finetune", stream, args)),
        ("ours lwf", lambda: run_ours("lwf", stream, args)),
        ("ours finetune fp32", lambda: run_ours("finetune", stream, args, fast=False)),
        ("ours lwf fp32", lambda: run_ours("lwf", stream, args, fast=False)),
        ("ours er", lambda: run_ours("er", stream, args)),
        ("ours der", lambda: run_ours("der", stream, args)),
        ("ours er class-balanced", lambda: run_ours("er", stream, args, memory_policy="class-balanced")),
        ("Naive + our LwFDistillationPlugin", lambda: run_avalanche(
            lambda c: Naive(plugins=[LwFDistillationPlugin(alpha=args.alpha, temperature=2.0)], **c), stream, args)),
        ("Naive + our DERPlugin (stored augmented view)", lambda: run_avalanche(
            lambda c: Naive(plugins=[der_plugin(stream, args, c["device"], fresh=False)], **c), stream, args)),
        ("Naive + our DERPlugin (fresh augmentation)", lambda: run_avalanche(
            lambda c: Naive(plugins=[der_plugin(stream, args, c["device"], fresh=True)], **c), stream, args,
            raw_train=True)),
    ]
    unknown = set(args.entries or []) - {name for name, _ in entries}
    if unknown:
        parser.error(f"unknown entries {sorted(unknown)}: choose from {[name for name, _ in entries]}")
    rows = []
    for seed in args.seeds:
        args.seed = seed
        for name, run in entries:
            if args.entries and name not in args.entries:
                continue
            result = run()
            seconds = result["task_seconds"]
            images = [len(task.train) * args.epochs for task in stream]
            row = {
                "entry": name, "seed": seed, **metrics.summary(result["matrix"]), "matrix": result["matrix"],
                "train_seconds": sum(seconds), "task_train_seconds": seconds,
                "images_per_second": sum(images) / sum(seconds),
                "images_per_second_after_task_1": sum(images[1:]) / sum(seconds[1:]),
            }
            rows.append(row)
            print(f"seed {seed}  {name:<36} class-IL {row['final_accuracy']:6.2f}  "
                  f"forgetting {row['forgetting']:6.2f}  {row['images_per_second']:7.1f} img/s", flush=True)
    protocol = {k: v for k, v in vars(args).items() if k not in ("output", "seed")}
    payload = {**origin, "protocol": protocol, "summary": summarise(rows), "entries": rows}
    print(f"saved {save(args.output, payload)}")


def summarise(rows: list[dict]) -> list[dict]:
    """Per entry, over its seeds: mean and sample standard deviation (``report.mean_and_std``)
    of class-IL final accuracy, forgetting and training images/s (all tasks, and tasks 2..T: the
    latter leaves out each library's one-time costs, our compilation among them)."""
    summary = []
    for name in dict.fromkeys(row["entry"] for row in rows):
        runs = [row for row in rows if row["entry"] == name]
        entry: dict = {"entry": name, "seeds": [row["seed"] for row in runs]}
        for key in ("final_accuracy", "forgetting", "images_per_second", "images_per_second_after_task_1"):
            mean, std = mean_and_std([row[key] for row in runs])
            entry[key] = {"mean": float(mean), "std": float(std)}
        summary.append(entry)
    return summary


if __name__ == "__main__":
    main()

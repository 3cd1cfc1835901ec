"""The ``lifelong-kd`` command: run, demo, plot, compare, list."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import report
from .buffer import POLICIES
from .data import make_stream
from .datasets import BENCHMARKS
from .errors import UsageError
from .models import HEADS, MODELS, build_model
from .options import FeatureDistillation, Option, WeightAligning
from .plots import FIGURE_KINDS, FORMATS, plot_forgetting_curves, write_figures
from .results import atomic_write_text
from .runner import NonFiniteLossError, Runner, TrainConfig, seed_everything
from .strategies import STRATEGIES, build_strategy

PROG = "lifelong-kd"


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error that points at --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _at_least(minimum: float, kind: type = int, strict: bool = False):
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a{'n integer' if kind is int else ' number'}") from None
        if value < minimum or (strict and value == minimum):
            bound = f"> {minimum}" if strict else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: use a value {bound}")
        return value

    return parse


def _class_order(text: str) -> str | list[int]:
    if text in ("fixed", "random"):
        return text
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        message = "use 'fixed', 'random' or a comma-separated permutation like 3,1,0,2"
        raise argparse.ArgumentTypeError(message) from None


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--benchmark", default="split-cifar10", choices=list(BENCHMARKS))
    data.add_argument("--data-root", type=Path, help="folder or .zip holding the data (see README)")
    data.add_argument("--n-tasks", type=_at_least(1), help="number of tasks (default: the benchmark's)")
    data.add_argument("--class-order", type=_class_order, default="fixed", help="fixed | random | 3,1,0,...")
    data.add_argument("--max-train-per-class", type=_at_least(1), help="class-balanced training subset")
    data.add_argument("--cache-dir", type=Path, help="where decoded uint8 arrays are cached")
    data.add_argument("--download", action="store_true", help="download CIFAR with torchvision (needs a network)")
    model = parser.add_argument_group("model and strategy")
    model.add_argument("--strategy", default="lwf", choices=list(STRATEGIES))
    model.add_argument("--model", default="reduced-resnet18", choices=list(MODELS))
    model.add_argument("--head", default="incremental", choices=list(HEADS))
    model.add_argument("--alpha", type=_at_least(0.0, float), help="distillation weight (lwf, kd-mse, er-kd, der)")
    model.add_argument("--temperature", type=_at_least(0.0, float, strict=True), help="distillation temperature")
    model.add_argument("--t2", action=argparse.BooleanOptionalAction, default=None, help="multiply KL by T^2")
    model.add_argument("--warmup-epochs", type=_at_least(0), help="lwf: epochs training only the new head first")
    model.add_argument("--beta", type=_at_least(0.0, float), help="derpp: weight of the replayed labels' CE")
    replay = parser.add_argument_group("replay and options")
    replay.add_argument("--memory", type=_at_least(1), help="replay memory budget M in samples (default 500)")
    replay.add_argument("--memory-policy", choices=list(POLICIES), help="er, er-kd: how the memory is filled")
    replay.add_argument("--replay-batch-size", type=_at_least(1), help="replayed samples per step (default: batch)")
    replay.add_argument("--wa", action="store_true", help="weight aligning after each task (Zhao et al. 2020)")
    replay.add_argument("--feature-kd", choices=["none", "lucir"], default="none",
                        help="feature distillation term: LUCIR's cosine on normalised features")
    replay.add_argument("--feature-kd-weight", type=_at_least(0.0, float), default=5.0,
                        help="LUCIR's lambda_base (default 5)")
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=_at_least(1), default=1)
    train.add_argument("--batch-size", type=_at_least(2), default=32)
    train.add_argument("--lr", type=_at_least(0.0, float, strict=True), help="default: the strategy's")
    train.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    train.add_argument("--momentum", type=_at_least(0.0, float), help="default: the strategy's")
    train.add_argument("--weight-decay", type=_at_least(0.0, float), help="default: the strategy's")
    train.add_argument("--schedule", choices=["none", "cosine", "multistep"], default="none")
    train.add_argument("--milestones", type=_at_least(1), nargs="*", default=[], help="multistep epochs (x0.1 each)")
    train.add_argument("--eval-batch-size", type=_at_least(1), default=512)
    seeds = train.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, help="one run into OUT/results.json (default 0)")
    seeds.add_argument("--seeds", type=int, nargs="+",
                       help="one run per seed into OUT/seed_N/results.json, and OUT/aggregate.json")
    system = parser.add_argument_group("system")
    system.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    system.add_argument("--amp", choices=["off", "bf16"], default="off", help="bf16 autocast (CPU with AMX, GPUs)")
    system.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    system.add_argument("--compile", action="store_true",
                        help="torch.compile the backbone for training and the teacher (first use compiles for ~45 s)")
    system.add_argument("--out", type=Path, required=True, help="output folder for results.json")
    system.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    system.add_argument("--quiet", action="store_true", help="no progress bars")


def _resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA device is visible: use --device cpu or auto")
    return name


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty output folder unless ``--overwrite``; refuse a file."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out '{out}' is a file: pass a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(
            f"output folder '{out}' is not empty: pass another --out, or --overwrite to replace its results"
        )


def execute_run(args: argparse.Namespace) -> dict[str, Any]:
    """Validate everything, then build the stream, model and runner, and train."""
    check_output_dir(args.out, args.overwrite)
    if args.schedule == "multistep" and not args.milestones:
        raise UsageError("--schedule multistep needs --milestones, e.g. --milestones 35 45")
    strategy = build_strategy(
        args.strategy, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        alpha=args.alpha, temperature=args.temperature, t2=args.t2, warmup_epochs=args.warmup_epochs,
        beta=args.beta, memory=args.memory, memory_policy=args.memory_policy,
        replay_batch_size=args.replay_batch_size,
    )
    options: list[Option] = [WeightAligning()] if args.wa else []
    if args.feature_kd == "lucir":
        options.append(FeatureDistillation(args.feature_kd_weight))
    device = _resolve_device(args.device)
    seed = 0 if args.seed is None else args.seed
    stream = make_stream(
        args.benchmark, data_root=args.data_root, n_tasks=args.n_tasks, class_order=args.class_order,
        seed=seed, max_train_per_class=args.max_train_per_class, cache_dir=args.cache_dir,
        download=args.download,
    )
    seed_everything(seed)
    model = build_model(args.model, stream.image_shape[0], stream.num_classes, args.head)
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=strategy.hparams["lr"], optimizer=args.optimizer,
        momentum=strategy.hparams["momentum"], weight_decay=strategy.hparams["weight_decay"],
        schedule=args.schedule, milestones=tuple(args.milestones), eval_batch_size=args.eval_batch_size,
        device=device, amp=args.amp, channels_last=args.channels_last, compile=args.compile,
        seed=seed,
    )
    run_config = {
        "benchmark": stream.name, "n_tasks": len(stream), "model": args.model, "head": args.head,
        "data_root": str(args.data_root) if args.data_root else None,
        "max_train_per_class": args.max_train_per_class, "class_order_option": args.class_order,
        "command": " ".join([PROG, *sys.argv[1:]]) if sys.argv else PROG,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    runner = Runner(
        model, strategy, stream, config, options=options, out_dir=args.out, run_config=run_config,
        progress=not args.quiet,
    )
    return runner.run()


def run_seeds(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``execute_run`` once per seed of ``--seeds`` into OUT/seed_N/; OUT/aggregate.json
    (``report.aggregate``) is rewritten after each seed, so it covers the seeds finished."""
    if len(set(args.seeds)) != len(args.seeds):
        raise UsageError(f"--seeds {' '.join(map(str, args.seeds))} repeats a seed: give each seed once")
    check_output_dir(args.out, args.overwrite)
    docs = []
    for seed in args.seeds:
        seed_out = args.out / f"seed_{seed}"
        docs.append(execute_run(argparse.Namespace(**{**vars(args), "seed": seed, "seeds": None, "out": seed_out})))
        print(report.summary_table(docs[-1], seed_out / "results.json"), end="\n\n")
        atomic_write_text(args.out / "aggregate.json", json.dumps(report.aggregate(docs), indent=2) + "\n")
    return docs


def cmd_run(args: argparse.Namespace) -> int:
    if args.seeds:
        print(report.compare_table(run_seeds(args)))
        print(f"aggregate -> {args.out / 'aggregate.json'}")
        return 0
    doc = execute_run(args)
    print(report.summary_table(doc, args.out / "results.json"))
    return 0


DEMO_STRATEGIES = ("finetune", "lwf")


def cmd_demo(args: argparse.Namespace) -> int:
    """Split-digits (scikit-learn's bundled 8x8 digits, 5 tasks): finetune vs LwF."""
    check_output_dir(args.out, args.overwrite)
    docs = []
    for strategy in DEMO_STRATEGIES:
        run_args = build_parser().parse_args([
            "run", "--benchmark", "split-digits", "--model", "small-cnn", "--strategy", strategy,
            "--epochs", str(args.epochs), "--lr", str(args.lr), "--batch-size", "32", "--seed", str(args.seed),
            "--device", args.device, "--out", str(args.out / strategy), "--overwrite",
            *(["--quiet"] if args.quiet else []),
        ])
        doc = execute_run(run_args)
        print(report.summary_table(doc, run_args.out / "results.json"), end="\n\n")
        docs.append(doc)
    figure = args.out / "forgetting_curves.png"
    plot_forgetting_curves(docs, figure)
    print(f"forgetting curves -> {figure}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    for path in write_figures(report.load_runs(args.runs), args.out, args.kind, args.format):
        print(f"wrote {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    print(report.compare_table(report.load_runs(args.runs)))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print("benchmarks:")
    for spec in BENCHMARKS.values():
        print(f"  {spec.name:<18}{spec.help}")
    print("strategies (defaults):")
    for cls in STRATEGIES.values():
        defaults = ", ".join(f"{k}={v}" for k, v in cls.defaults.items())
        print(f"  {cls.name:<18}{cls.help}\n  {'':<18}paper: {cls.paper}\n  {'':<18}defaults: {defaults}")
    print("models:")
    for spec in MODELS.values():
        print(f"  {spec.name:<18}{spec.help}")
    print("heads:")
    for name, text in HEADS.items():
        print(f"  {name:<18}{text}")
    return 0


def build_parser() -> Parser:
    parser = Parser(prog=PROG, description="Continual learning with knowledge distillation.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train a strategy on a task stream")
    _add_run_options(run)
    run.set_defaults(func=cmd_run)
    demo = commands.add_parser("demo", help="offline demo: finetune vs LwF on split digits, < 1 minute")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.add_argument("--overwrite", action="store_true")
    demo.add_argument("--epochs", type=_at_least(1), default=10)
    demo.add_argument("--lr", type=_at_least(0.0, float, strict=True), default=0.05)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=cmd_demo)
    runs_help = "run folders (searched for results.json, e.g. seed_*/results.json) or results.json files"
    plot = commands.add_parser("plot", help="forgetting curves, accuracy matrices, strategy comparisons")
    plot.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR_OR_JSON", help=runs_help)
    plot.add_argument("-o", "--out", type=Path, required=True, help="folder for the figures")
    plot.add_argument("--kind", choices=[*FIGURE_KINDS, "all"], default="all")
    plot.add_argument("--format", choices=FORMATS, default="png")
    plot.set_defaults(func=cmd_plot)
    compare = commands.add_parser("compare", help="markdown table: mean ± std per strategy over seeds")
    compare.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR_OR_JSON", help=runs_help)
    compare.set_defaults(func=cmd_compare)
    listing = commands.add_parser("list", help="benchmarks, strategies, models and heads")
    listing.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:
        print(f"{PROG}: stopped: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

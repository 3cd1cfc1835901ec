"""The ``lifelong-kd`` command: run, demo, plot, compare, list."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import report
from .checkpoint import CHECKPOINT, PREVIOUS, CheckpointWarning, load_checkpoint
from .data import make_stream
from .datasets import BENCHMARKS
from .errors import UsageError
from .loop_state import RunInterrupted
from .models import HEADS, MODELS, build_model
from .options import FeatureDistillation, Option, WeightAligning
from .plots import FIGURE_KINDS, FORMATS, plot_forgetting_curves, write_figures
from .results import atomic_write_text
from .resume import plain_arguments, resumed_arguments
from .runner import HeadLayoutWarning, NonFiniteLossError, Runner
from .settings import add_strategy_flags
from .speed import AMP_CHOICES, COMPILE_CHOICES, CPU_COMPILE_MIN_IMAGES, EVAL_PRECISIONS
from .strategies import STRATEGIES, Strategy
from .training import TrainConfig, seed_everything

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


def _seed(text: str) -> int:
    """A seed numpy and torch both accept: a whole number in [0, 2**32 - 1]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{value} is out of range: use a seed from 0 to {2**32 - 1}")
    return value


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
    model.add_argument("--head", choices=list(HEADS),
                       help="head layout (default: the strategy's paper's; see `lifelong-kd list`)")
    add_strategy_flags(parser.add_argument_group("strategy settings (declared by each strategy)"), STRATEGIES.values())
    options = parser.add_argument_group("options for any strategy")
    options.add_argument("--wa", action="store_true", help="weight aligning after each task (Zhao et al. 2020)")
    options.add_argument("--feature-kd", choices=["none", "lucir"], default="none",
                         help="feature distillation term: LUCIR's cosine on normalised features")
    options.add_argument("--feature-kd-weight", type=_at_least(0.0, float), default=5.0,
                         help="LUCIR's lambda_base (default 5)")
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=_at_least(1), default=TrainConfig.epochs)
    train.add_argument("--batch-size", type=_at_least(2), default=TrainConfig.batch_size)
    train.add_argument("--optimizer", choices=["sgd", "adam"], default=TrainConfig.optimizer)
    train.add_argument("--schedule", choices=["none", "cosine", "multistep"], default=TrainConfig.schedule)
    train.add_argument("--milestones", type=_at_least(1), nargs="*", default=[], help="multistep epochs (x0.1 each)")
    seeds = train.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=_seed, help="one run into OUT/results.json (default 0)")
    seeds.add_argument("--seeds", type=_seed, nargs="+",
                       help="one run per seed into OUT/seed_N/results.json, and OUT/aggregate.json")
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--eval-batch-size", type=_at_least(1), default=TrainConfig.eval_batch_size)
    evaluation.add_argument("--eval-precision", choices=list(EVAL_PRECISIONS), default=TrainConfig.eval_precision,
                            help="the backbone's precision in evaluation (train: the training one); "
                            "the head is float32 always. fp32 by default: bf16 moved a final accuracy "
                            "by 0.11 points (README)")
    evaluation.add_argument("--eval-future", action="store_true",
                            help="also evaluate the tasks not trained yet (task-IL, where the head has units)")
    system = parser.add_argument_group("speed and system (results.json records what was chosen)")
    system.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    system.add_argument("--amp", choices=list(AMP_CHOICES), default=TrainConfig.amp,
                        help="bf16 autocast; auto: on CUDA with bf16 and CPUs with AMX-bf16 or AVX-512 BF16")
    system.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=TrainConfig.channels_last,
                        help="channels_last memory format for the convolutions")
    system.add_argument("--compile", choices=list(COMPILE_CHOICES), default=TrainConfig.compile,
                        help="torch.compile the backbone for training and the teacher; auto: on CUDA, and on CPU "
                        f"for runs of at least {CPU_COMPILE_MIN_IMAGES} training images")
    system.add_argument("--out", type=Path, help="output folder for results.json and checkpoint.pt")
    system.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    system.add_argument("--resume", type=Path, metavar="OUT",
                        help="continue the run in OUT from its last checkpoint, with its settings")
    system.add_argument("--checkpoint-every", default="10m", metavar="STEPS|MINUTESm",
                        help="mid-task checkpoints every N steps or N minutes (10m); 0: at task ends only")
    system.add_argument("--quiet", action="store_true", help="no progress bars")


def _resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA device is visible: use --device cpu or auto")
    return name


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse an empty name, a file, a non-empty folder without ``--overwrite``, or a folder that
    cannot be written, before anything is loaded."""
    if str(out).strip() in ("", "."):
        raise UsageError("--out needs a folder name (an empty --out would write into the current folder)")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out '{out}' is a file: pass a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(
            f"output folder '{out}' is not empty: pass another --out, or --overwrite to replace its results"
        )
    existing = next(folder for folder in (out.absolute(), *out.absolute().parents) if folder.exists())
    if not existing.is_dir():
        raise UsageError(f"cannot write to --out '{out}': '{existing}' is a file; pass a folder path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to --out '{out}': '{existing}' is not writable; pass a writable folder")


def strategy_from_args(args: argparse.Namespace) -> Strategy:
    """The ``--strategy`` with the values of its declared settings' flags."""
    cls = STRATEGIES[args.strategy]
    given = {setting.name: getattr(args, setting.name) for cls_ in STRATEGIES.values() for setting in cls_.settings}
    return cls(**given)


def _show_warning(message: Warning | str, *_: Any, **__: Any) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def prepare_run(args: argparse.Namespace, resuming: bool = False) -> Runner:
    """Validate everything, then build the stream, model and runner (nothing trained yet).

    ``resuming``: ``args.out`` holds the run's checkpoint, which the caller loads next."""
    if not resuming:
        check_output_dir(args.out, args.overwrite)
    if args.schedule == "multistep" and not args.milestones:
        raise UsageError("--schedule multistep needs --milestones, e.g. --milestones 35 45")
    if args.milestones and args.schedule != "multistep":
        raise UsageError(f"--milestones takes effect only with --schedule multistep (not {args.schedule}): "
                         "add --schedule multistep or drop --milestones")
    if args.data_root is not None and args.benchmark == "split-digits":
        raise UsageError("split-digits reads scikit-learn's bundled digits: drop --data-root")
    strategy = strategy_from_args(args)
    head = args.head or strategy.head  # the runner warns when the layout breaks the method
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
    model = build_model(args.model, stream.image_shape[0], stream.num_classes, head)
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
        schedule=args.schedule, milestones=tuple(args.milestones), eval_batch_size=args.eval_batch_size,
        device=device, amp=args.amp, channels_last=args.channels_last, compile=args.compile,
        eval_precision=args.eval_precision, eval_future=args.eval_future, seed=seed,
        checkpoint_every=args.checkpoint_every,
    )
    run_config = {
        "benchmark": stream.name, "n_tasks": len(stream), "model": args.model,
        "data_root": str(args.data_root) if args.data_root else None,
        "max_train_per_class": args.max_train_per_class, "class_order_option": args.class_order,
        "command": " ".join([PROG, *sys.argv[1:]]) if sys.argv else PROG,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    return Runner(
        model, strategy, stream, config, options=options, out_dir=args.out, run_config=run_config,
        progress=not args.quiet, extra_state={"cli_args": plain_arguments(args)},
    )


def execute_run(args: argparse.Namespace) -> dict[str, Any]:
    """``prepare_run``, then train; returns the results document. With ``args.resume`` it continues
    the run in that folder from its checkpoint instead."""
    if args.resume is None:
        return prepare_run(args).run()
    state, notes = load_checkpoint(args.out)
    for note in notes:
        warnings.warn(note, CheckpointWarning, stacklevel=2)
    runner = prepare_run(args, resuming=True)
    runner.resume_from(state)
    return runner.run()


def run_seeds(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``execute_run`` once per seed of ``--seeds`` into OUT/seed_N/; OUT/aggregate.json
    (``report.aggregate``) is rewritten after each seed, so it covers the seeds finished. Resuming,
    a finished seed is read back, an interrupted one resumed and the others started."""
    if len(set(args.seeds)) != len(args.seeds):
        raise UsageError(f"--seeds {' '.join(map(str, args.seeds))} repeats a seed: give each seed once")
    if args.resume is None:
        check_output_dir(args.out, args.overwrite)
    docs = []
    for seed in args.seeds:
        seed_out = args.out / f"seed_{seed}"
        seed_args = argparse.Namespace(**{**vars(args), "seed": seed, "seeds": None, "out": seed_out,
                                          "seed_group": list(args.seeds), "resume": None})
        if args.resume is not None and _has_checkpoint(seed_out):
            seed_args.resume = seed_out
        docs.append(execute_run(seed_args))
        print(report.summary_table(docs[-1], seed_out / "results.json"), end="\n\n")
        atomic_write_text(args.out / "aggregate.json", json.dumps(report.aggregate(docs), indent=2) + "\n")
    return docs


def _has_checkpoint(folder: Path) -> bool:
    return (folder / CHECKPOINT).is_file() or (folder / PREVIOUS).is_file()


def resume_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """The settings of the run in ``args.resume`` (single run or ``--seeds`` group), checked against the
    flags given with ``--resume``."""
    out = args.resume
    if args.out is not None and args.out != out:
        raise UsageError(f"--resume {out} with --out {args.out}: a run resumes in its own folder; drop --out")
    if _has_checkpoint(out):
        saved = load_checkpoint(out)[0]["extra"]["cli_args"]
    else:
        seeds = sorted(out.glob("seed_*/" + CHECKPOINT)) + sorted(out.glob("seed_*/" + PREVIOUS))
        if not seeds:
            raise UsageError(f"--resume {out}: no checkpoint.pt there or in its seed_N folders; "
                             "start the run with --out instead")
        saved = {**load_checkpoint(seeds[0].parent)[0]["extra"]["cli_args"]}
        saved = {**saved, "seeds": saved.pop("seed_group"), "seed": None, "out": str(out)}
    defaults = vars(build_parser().parse_args(["run"]))
    resumed = resumed_arguments(args, defaults, saved)
    resumed.out = out
    return resumed


def cmd_run(args: argparse.Namespace) -> int:
    if args.resume is not None:
        args = resume_arguments(args)
    elif args.out is None:
        raise UsageError("run needs --out OUT (a new run) or --resume OUT (continue one)")
    try:
        if args.seeds:
            print(report.compare_table(run_seeds(args)))
            print(f"aggregate -> {args.out / 'aggregate.json'}")
            return 0
        doc = execute_run(args)
    except RunInterrupted as error:
        print(f"{PROG}: {error}: resume with `{PROG} run --resume {args.out}`", file=sys.stderr)
        return 128 + error.signal_number
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


def _load_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The runs ``plot`` and ``compare`` use (``report.load_runs``), after one warning line per note."""
    docs, notes = report.load_runs(args.runs, args.include_incomplete)
    for note in notes:
        _show_warning(note)
    return docs


def cmd_plot(args: argparse.Namespace) -> int:
    docs = _load_runs(args)
    for path in write_figures(docs, args.out, args.kind, args.format):
        print(f"wrote {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    docs = _load_runs(args)
    print(report.compare_table(docs))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print("benchmarks:")
    for spec in BENCHMARKS.values():
        print(f"  {spec.name:<18}{spec.help}")
    print("strategies (settings: default [range] (source)):")
    for cls in STRATEGIES.values():
        print(f"  {cls.name:<18}{cls.help}\n  {'':<18}paper: {cls.paper}\n  {'':<18}head: {cls.head}")
        for head, why in cls.broken_heads.items():
            print(f"  {'':<18}  (--head {head} breaks it: {why})")
        for setting in cls.settings:
            source = f" ({setting.source})" if setting.source else ""
            print(f"  {'':<18}  {setting.flag} {setting.default} [{setting.range_text()}]{source}")
        for memory, changes in cls.memory_defaults.items():
            print(f"  {'':<18}  with --memory {memory}: {', '.join(f'{k}={v}' for k, v in changes.items())}")
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
    incomplete_help = ("also use runs that failed or did not finish all their tasks (left out by default, "
                       "with a warning naming them)")
    plot = commands.add_parser("plot", help="forgetting curves, accuracy matrices, strategy comparisons")
    plot.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR_OR_JSON", help=runs_help)
    plot.add_argument("-o", "--out", type=Path, required=True, help="folder for the figures")
    plot.add_argument("--kind", choices=[*FIGURE_KINDS, "all"], default="all")
    plot.add_argument("--format", choices=FORMATS, default="png")
    plot.add_argument("--include-incomplete", action="store_true", help=incomplete_help)
    plot.set_defaults(func=cmd_plot)
    compare = commands.add_parser("compare", help="markdown table: mean ± std per strategy over seeds")
    compare.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR_OR_JSON", help=runs_help)
    compare.add_argument("--include-incomplete", action="store_true", help=incomplete_help)
    compare.set_defaults(func=cmd_compare)
    listing = commands.add_parser("list", help="benchmarks, strategies, models and heads")
    listing.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", HeadLayoutWarning)
            warnings.simplefilter("always", CheckpointWarning)
            warnings.showwarning = _show_warning
            return args.func(args)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:
        print(f"{PROG}: stopped: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

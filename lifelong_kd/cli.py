"""The ``lifelong-kd`` command: run, demo, plot, compare, list."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist

from . import report
from .checkpoint import CheckpointWarning
from .datasets import BENCHMARKS
from .distributed import Distributed
from .errors import UsageError
from .heads import HEADS
from .loop_state import RunInterrupted, clear_stop_requests
from .models import MODELS
from .outdir import check_output_dir
from .plots import FIGURE_KINDS, FORMATS, plot_forgetting_curves, write_figures
from .run_command import PROG, execute_run, run_arguments, run_device, run_seeds
from .runner import HeadLayoutWarning
from .settings import Group, add_strategy_flags
from .speed import AMP_CHOICES, COMPILE_CHOICES, CPU_COMPILE_MIN_IMAGES, EVAL_PRECISIONS
from .strategies import STRATEGIES
from .training import NonFiniteLossError, TrainConfig


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error that points at --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class RaisingParser(Parser):
    """The same parser for the Python API (``lifelong_kd.api``): an error raises ``UsageError`` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


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
    data.add_argument("--data-root", type=Path, help="folder or .zip holding the data (lifelong_kd/GUIDE.md)")
    data.add_argument("--n-tasks", type=_at_least(1), help="number of tasks (default: the benchmark's)")
    data.add_argument("--first-task-classes", type=_at_least(1), metavar="N",
                      help="a first task of N classes, the rest in --n-tasks - 1 equal tasks (LUCIR's and "
                      "PODNet's B50: --first-task-classes 50)")
    data.add_argument("--class-order", type=_class_order, default="fixed", help="fixed | random | 3,1,0,...")
    data.add_argument("--max-train-per-class", type=_at_least(1), help="class-balanced training subset")
    data.add_argument("--cache-dir", type=Path, help="where decoded uint8 arrays are cached")
    data.add_argument("--download", action="store_true", help="download CIFAR with torchvision (needs a network)")
    model = parser.add_argument_group("model")
    model.add_argument("--strategy", default="lwf", choices=list(STRATEGIES))
    model.add_argument("--model", default="reduced-resnet18", choices=list(MODELS))
    model.add_argument("--head", choices=list(HEADS),
                       help="head layout (default: the strategy's paper's; see `lifelong-kd list`)")
    train = parser.add_argument_group("training (the strategy settings' defaults are each strategy's)")
    train.add_argument("--epochs", type=_at_least(1), default=TrainConfig.epochs)
    train.add_argument("--batch-size", type=_at_least(2), default=TrainConfig.batch_size)
    train.add_argument("--optimizer", choices=["sgd", "adam"], default=TrainConfig.optimizer)
    train.add_argument("--schedule", choices=["none", "cosine", "multistep"], default=TrainConfig.schedule)
    train.add_argument("--milestones", type=_at_least(1), nargs="*", default=[], help="multistep epochs (x0.1 each)")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument("--budget-flops", type=_at_least(0.0, float, strict=True), metavar="FLOPS",
                        help="train each task until it has spent FLOPS training FLOPs (e.g. 2e14), whatever the "
                        "epochs: methods compared at equal compute (needs --schedule none)")
    budget.add_argument("--budget-steps", type=_at_least(1), metavar="N",
                        help="train each task for N optimiser steps, whatever the epochs (needs --schedule none)")
    seeds = train.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=_seed, help="one run into OUT/results.json (default 0)")
    seeds.add_argument("--seeds", type=_seed, nargs="+",
                       help="one run per seed into OUT/seed_N/results.json, and OUT/aggregate.json")
    train.add_argument("--wa", action="store_true",
                       help="weight aligning alone after each task (WA's last step; the whole method: --strategy wa)")
    distillation = parser.add_argument_group("distillation")
    distillation.add_argument("--feature-kd", choices=["none", "lucir"], default="none",
                              help="feature distillation term for any strategy: LUCIR's cosine on normalised features")
    distillation.add_argument("--feature-kd-weight", type=_at_least(0.0, float), default=5.0,
                              help="LUCIR's lambda_base for --feature-kd")
    replay = parser.add_argument_group("replay")
    add_strategy_flags({Group.TRAINING: train, Group.DISTILLATION: distillation, Group.REPLAY: replay},
                       STRATEGIES.values())
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--eval-batch-size", type=_at_least(1), default=TrainConfig.eval_batch_size)
    evaluation.add_argument("--eval-precision", choices=list(EVAL_PRECISIONS), default=TrainConfig.eval_precision,
                            help="the backbone's precision in evaluation (train: the training one); "
                            "the head is float32 always. fp32 by default: bf16 moved a final accuracy "
                            "by 0.11 points (benchmarks/README.md)")
    evaluation.add_argument("--eval-future", action="store_true",
                            help="also evaluate the tasks not trained yet (task-IL, where the head has units)")
    evaluation.add_argument("--eval-every", type=_at_least(0), default=TrainConfig.eval_every, metavar="STEPS",
                            help="also evaluate the seen tasks every STEPS optimiser steps: the anytime accuracy "
                            "curve and its average (0: at task ends only)")
    evaluation.add_argument("--reference", type=Path, metavar="RUN",
                            help="a joint run (its folder or results.json) to measure intransigence against")
    speed = parser.add_argument_group("speed (results.json records what was chosen)")
    speed.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    speed.add_argument("--amp", choices=list(AMP_CHOICES), default=TrainConfig.amp,
                       help="bf16 autocast; auto: on CUDA with bf16 and CPUs with AMX-bf16 or AVX-512 BF16")
    speed.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=TrainConfig.channels_last,
                       help="channels_last memory format for the convolutions")
    speed.add_argument("--compile", choices=list(COMPILE_CHOICES), default=TrainConfig.compile,
                       help="torch.compile the backbone for training and the teacher; auto: on CUDA, and on CPU "
                       f"for runs of at least {CPU_COMPILE_MIN_IMAGES} training images")
    speed.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=TrainConfig.sync_bn,
                       help="under torchrun: BatchNorm statistics over the global batch of all processes, "
                       "so that N processes train as one (lifelong_kd/DESIGN.md)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, help="output folder for results.json and checkpoint.pt")
    output.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    output.add_argument("--resume", type=Path, metavar="OUT",
                        help="continue the run in OUT from its last checkpoint, with its settings")
    output.add_argument("--checkpoint-every", default="10m", metavar="STEPS|MINUTESm",
                        help="mid-task checkpoints every N steps or N minutes (10m); 0: at task ends only")
    output.add_argument("--tensorboard", action="store_true",
                        help="write loss, lr, images/s and each task's accuracies to OUT/tb (needs --out and "
                        "the tensorboard extra)")
    output.add_argument("--quiet", action="store_true", help="no progress bars")
    _show_defaults(parser)


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option's help ends with its default, unless it already names it (the strategy settings name
    each strategy's)."""
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or not action.option_strings or action.dest == "help":
            continue
        text = action.help or ""
        if "default" in text:
            continue
        default = action.default
        if isinstance(default, list):
            shown = " ".join(map(str, default)) or "none"
        else:  # identity, not equality: 1 == True
            shown = "none" if default is None else "off" if default is False else "on" if default is True else default
        action.help = (f"{text} " if text else "") + f"(default: {str(shown).replace('%', '%%')})"


def _show_warning(message: Warning | str, *_: Any, **__: Any) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def cmd_run(args: argparse.Namespace, group: Distributed) -> int:
    """Train (``run_command``); rank 0 alone prints, on many processes."""
    clear_stop_requests()
    if args.out is None:
        raise UsageError("run needs --out OUT (a new run) or --resume OUT (continue one)")
    show = print if group.main else _silent
    try:
        if args.seeds:
            show(report.compare_table(run_seeds(args, group)))
            show(f"aggregate -> {args.out / 'aggregate.json'}")
            return 0
        doc = execute_run(args, group=group)
    except RunInterrupted as error:
        show(f"{PROG}: {error}: resume with `{PROG} run --resume {args.out}`", file=sys.stderr)
        return 128 + error.signal_number
    except NonFiniteLossError as error:
        show(f"{PROG}: stopped: {error} (`{PROG} run --resume {args.out} --lr ...`)", file=sys.stderr)
        return 1
    except (dist.DistError, RuntimeError) as error:
        if not (group.active and _collective_failed(error)):
            raise
        first_line = (str(error).splitlines() or [type(error).__name__])[0][:160]
        print(f"{PROG} [rank {group.rank}]: error: the run's process group failed ({first_line}): "
              f"resume with `{PROG} run --resume {args.out}` (torchrun --max-restarts does it)", file=sys.stderr)
        return 1
    show(report.summary_table(doc, args.out / "results.json"))
    return 0


def _collective_failed(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another process of the group stopped."""
    text = str(error)
    return isinstance(error, dist.DistError) or any(
        mark in text for mark in ("gloo", "NCCL", "Connection closed by peer", "Connection reset by peer"))


def _silent(*_: Any, **__: Any) -> None:
    """``print`` on every process of a group but rank 0."""


# fine-tuning forgets; LwF distils from the old model alone; DER++ distils the logits it replays from a memory
DEMO_STRATEGIES = (("finetune", ()), ("lwf", ()), ("derpp", ("--memory", "200")))


def cmd_demo(args: argparse.Namespace) -> int:
    """Split-digits (scikit-learn's bundled 8x8 digits, 5 tasks): fine-tuning, LwF and DER++."""
    check_output_dir(args.out, args.overwrite)
    docs = []
    for strategy, flags in DEMO_STRATEGIES:
        run_args = build_parser().parse_args([
            "run", "--benchmark", "split-digits", "--model", "small-cnn", "--strategy", strategy, *flags,
            "--epochs", str(args.epochs), "--lr", str(args.lr), "--batch-size", "32", "--seed", str(args.seed),
            "--device", args.device, "--out", str(args.out / strategy), "--overwrite",
            *(["--quiet"] if args.quiet else []),
        ])
        doc = execute_run(run_args)
        print(report.summary_table(doc, run_args.out / "results.json"), end="\n\n")
        docs.append(doc)
    print(report.compare_table(docs), end="\n\n")
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
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"-o '{args.out}' is a file: pass a folder for the figures")
    docs = _load_runs(args)
    for path in write_figures(docs, args.out, args.kind, args.format):
        print(f"wrote {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    docs = _load_runs(args)
    reference = report.load_reference(args.reference, docs) if args.reference else None
    print(report.compare_table(docs, reference))
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
    for name, head in HEADS.items():
        print(f"  {name:<18}{head.help}")
    return 0


def build_parser(parser_class: type[Parser] = Parser) -> Parser:
    """The command line's parser (``RaisingParser``: the API's, whose errors raise)."""
    parser = parser_class(prog=PROG, description="Continual learning with knowledge distillation.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train a strategy on a task stream")
    _add_run_options(run)
    run.set_defaults(func=cmd_run)
    demo = commands.add_parser("demo", help="offline demo: fine-tuning, LwF and DER++ on split digits, < 1 minute")
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
    plot = commands.add_parser("plot", help="forgetting curves, accuracy matrices, strategy comparisons, "
                               "accuracy against training cost, anytime accuracy")
    plot.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR_OR_JSON", help=runs_help)
    plot.add_argument("-o", "--out", type=Path, required=True, help="folder for the figures")
    plot.add_argument("--kind", choices=[*FIGURE_KINDS, "all"], default="all")
    plot.add_argument("--format", choices=FORMATS, default="png")
    plot.add_argument("--include-incomplete", action="store_true", help=incomplete_help)
    plot.set_defaults(func=cmd_plot)
    compare = commands.add_parser("compare", help="markdown table: mean ± std per strategy over seeds")
    compare.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR_OR_JSON", help=runs_help)
    compare.add_argument("--include-incomplete", action="store_true", help=incomplete_help)
    compare.add_argument("--reference", type=Path, metavar="RUN",
                         help="a joint run (its folder or results.json) of the same task stream: adds each "
                         "run's class-IL intransigence against it (Chaudhry et al. 2018)")
    compare.set_defaults(func=cmd_compare)
    listing = commands.add_parser("list", help="benchmarks, strategies, models and heads")
    listing.set_defaults(func=cmd_list)
    return parser


def run_subparser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``run`` command's parser inside ``build_parser``'s."""
    return next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction)).choices["run"]


def given_options(argv: Sequence[str]) -> set[str]:
    """The settings ``argv`` (a ``run`` command) gives explicitly, whatever their values."""
    parser = build_parser()
    run = run_subparser(parser)
    for action in run._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv))) - {"command", "func"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    group = Distributed()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", HeadLayoutWarning)
            warnings.simplefilter("always", CheckpointWarning)
            warnings.showwarning = _show_warning
            if args.command != "run":
                return args.func(args)
            group = Distributed.from_environment(run_device(args))  # torchrun's group, if any
            if not group.main:
                warnings.simplefilter("ignore")  # rank 0 shows them
            return cmd_run(run_arguments(args, given_options(argv), group), group)
    except KeyboardInterrupt:  # before the run's own handler is set (loading data) or after it
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except UsageError as error:
        print(f"{PROG}{'' if group.main else f' [rank {group.rank}]'}: error: {error}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:
        print(f"{PROG}: stopped: {error}", file=sys.stderr)
        return 1
    finally:
        group.leave()


if __name__ == "__main__":
    sys.exit(main())

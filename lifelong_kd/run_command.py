"""The ``run`` command: from parsed arguments to finished runs, started, resumed or one per seed.

``prepare_run`` validates everything and loads the data before the output folder is touched;
``execute_run`` then replaces an old run only once the new one has written its first checkpoint
(``outdir.replacing``), or resumes the run in the folder from its checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from . import report
from .checkpoint import CHECKPOINT, PREVIOUS, CheckpointWarning, load_checkpoint
from .data import make_stream
from .distributed import Distributed
from .errors import UsageError
from .loop_state import RunInterrupted, pending_stop
from .models import build_model
from .options import FeatureDistillation, Option, WeightAligning
from .outdir import check_output_dir, recover_replacement, replacing
from .results import atomic_write_text
from .resume import plain_arguments, resumed_arguments
from .runner import Runner
from .strategies import STRATEGIES, Strategy
from .training import TrainConfig, seed_everything

PROG = "lifelong-kd"


def resolve_device(name: str) -> str:
    """``--device``: ``auto`` is ``cuda`` where a GPU is visible; ``cuda`` without one is refused."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA device is visible: use --device cpu or auto")
    return name


def strategy_from_args(args: argparse.Namespace) -> Strategy:
    """The ``--strategy`` with the values of its declared settings' flags."""
    cls = STRATEGIES[args.strategy]
    given = {setting.name: getattr(args, setting.name) for cls_ in STRATEGIES.values() for setting in cls_.settings}
    return cls(**given)


def prepare_run(args: argparse.Namespace, resuming: bool = False, group: Distributed | None = None) -> Runner:
    """Validate everything, then build the stream, model and runner (nothing trained yet).

    ``resuming``: ``args.out`` holds the run's checkpoint, which the caller loads next. ``group``:
    this process's place among the run's processes (``torchrun``)."""
    group = group or Distributed()
    if not resuming and args.out is not None:  # the API runs without a folder
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
    device = group.device(resolve_device(args.device))
    seed = 0 if args.seed is None else args.seed
    stream = make_stream(
        args.benchmark, data_root=args.data_root, n_tasks=args.n_tasks, class_order=args.class_order,
        seed=seed, max_train_per_class=args.max_train_per_class, cache_dir=args.cache_dir,
        download=args.download, first_task_classes=args.first_task_classes,
    )
    seed_everything(seed)
    model = build_model(args.model, stream.image_shape[0], stream.num_classes, head,
                        last_relu=not strategy.features_before_relu)
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
        schedule=args.schedule, milestones=tuple(args.milestones), eval_batch_size=args.eval_batch_size,
        device=device, amp=args.amp, channels_last=args.channels_last, compile=args.compile,
        eval_precision=args.eval_precision, eval_future=args.eval_future, seed=seed,
        checkpoint_every=args.checkpoint_every, sync_bn=args.sync_bn, budget_flops=args.budget_flops,
        budget_steps=args.budget_steps, eval_every=args.eval_every,
    )
    stream_config = {"benchmark": stream.name, "n_tasks": len(stream), "class_order": list(stream.class_order)}
    reference = None if args.reference is None else report.load_reference(args.reference, [{"config": stream_config}])
    run_config = {
        "benchmark": stream.name, "n_tasks": len(stream), "model": args.model,
        "data_root": str(args.data_root) if args.data_root else None,
        "max_train_per_class": args.max_train_per_class, "class_order_option": args.class_order,
        "first_task_classes": args.first_task_classes,
        "reference": None if args.reference is None else str(args.reference.resolve()),
        "command": " ".join([PROG, *sys.argv[1:]]) if sys.argv else PROG,
    }
    return Runner(
        model, strategy, stream, config, options=options, out_dir=args.out, run_config=run_config,
        progress=not args.quiet, extra_state={"cli_args": plain_arguments(args)}, dist=group,
        reference=None if reference is None else reference["matrices"], tensorboard=args.tensorboard,
    )


def execute_run(args: argparse.Namespace, replace: Path | None = None, group: Distributed | None = None,
                ) -> dict[str, Any]:
    """``prepare_run``, then train; returns the results document. With ``args.resume`` it continues
    the run in that folder from its checkpoint instead.

    A new run replaces the old one in ``replace`` (default ``args.out``; a ``--seeds`` group's
    folder for its first seed) only once it has written its first checkpoint (``outdir.replacing``).
    On many processes (``group``) rank 0 alone writes, once every process has checked the folder.
    """
    group = group or Distributed()
    if args.resume is None:
        runner = prepare_run(args, group=group)
        group.barrier()
        with replacing(replace or args.out) if group.main else nullcontext():
            runner.begin()
        return runner.run()
    state, notes = load_checkpoint(args.out)
    for note in notes:
        warnings.warn(note, CheckpointWarning, stacklevel=2)
    runner = prepare_run(args, resuming=True, group=group)
    runner.resume_from(state)
    return runner.run()


def run_seeds(args: argparse.Namespace, group: Distributed | None = None) -> list[dict[str, Any]]:
    """``execute_run`` once per seed of ``--seeds`` into OUT/seed_N/; OUT/aggregate.json
    (``report.aggregate``) is rewritten after each seed, so it covers the seeds finished. Resuming,
    a finished seed is read back, an interrupted one resumed and the others started."""
    if len(set(args.seeds)) != len(args.seeds):
        raise UsageError(f"--seeds {' '.join(map(str, args.seeds))} repeats a seed: give each seed once")
    if args.resume is None:
        check_output_dir(args.out, args.overwrite)
    docs: list[dict[str, Any]] = []
    for seed in args.seeds:
        signal_number = pending_stop()
        if signal_number is not None and docs:  # caught in the last seed's final moments, after its last step
            raise RunInterrupted(signal_number, f"after seed {docs[-1]['config']['seed']}")
        seed_out = args.out / f"seed_{seed}"
        seed_args = argparse.Namespace(**{**vars(args), "seed": seed, "seeds": None, "out": seed_out,
                                          "seed_group": list(args.seeds), "resume": None})
        if args.resume is not None and _has_checkpoint(seed_out):
            seed_args.resume = seed_out
        first = args.resume is None and not docs  # it replaces the whole old group, stale seeds included
        docs.append(execute_run(seed_args, args.out if first else None, group))
        if group is None or group.main:
            print(report.summary_table(docs[-1], seed_out / "results.json"), end="\n\n")
            atomic_write_text(args.out / "aggregate.json", json.dumps(report.aggregate(docs), indent=2) + "\n")
    return docs


def _has_checkpoint(folder: Path) -> bool:
    return (folder / CHECKPOINT).is_file() or (folder / PREVIOUS).is_file()


def _failed(folder: Path) -> bool:
    """Whether the run in ``folder`` stopped on a failure (its results.json status says ``failed``)."""
    try:
        return str(json.loads((folder / "results.json").read_text()).get("status", "")).startswith("failed")
    except (OSError, ValueError, AttributeError):
        return False


def run_arguments(args: argparse.Namespace, given: set[str], group: Distributed) -> argparse.Namespace:
    """The settings of a ``run`` command: ``args``; with ``--resume``, or in a group torchrun restarted
    after a failure (``TORCHELASTIC_RESTART_COUNT``), the checkpoint's (``resume_arguments``). First,
    rank 0 finishes a replacement (``--overwrite``) a kill cut short."""
    folder, note = args.resume or args.out, None
    if folder is not None and group.main:
        note = recover_replacement(folder)
        if note is not None:
            warnings.warn(note, UserWarning, stacklevel=2)
    group.barrier()
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    put_back = group.any(folder is not None and group.main and note is not None, torch.device("cpu"))
    if args.resume is None and restarts and not put_back and args.out is not None and _settings_folder(args.out):
        if group.main:
            print(f"{PROG}: restarted by torchrun (restart {restarts}): resuming {args.out}", file=sys.stderr)
        args.resume = args.out
    return args if args.resume is None else resume_arguments(args, given)


def run_device(args: argparse.Namespace) -> str:
    """The device a ``run`` command trains on, known before its settings are resolved (the process group's
    backend depends on it): ``--device``, or with ``--resume`` the device the run was started with."""
    folder = None if args.resume is None else _settings_folder(args.resume)
    if folder is not None:
        return resolve_device(_saved_arguments(folder).get("device", args.device))
    return resolve_device(args.device)


def _settings_folder(out: Path) -> Path | None:
    """The folder whose checkpoint holds the settings of the run in ``out``: ``out`` itself, or for a
    ``--seeds`` group its first seed folder with a checkpoint; None when there is none."""
    if _has_checkpoint(out):
        return out
    return next((folder for folder in sorted(out.glob("seed_*")) if _has_checkpoint(folder)), None)


def resume_arguments(args: argparse.Namespace, given: set[str]) -> argparse.Namespace:
    """The settings of the run in ``args.resume`` (single run or ``--seeds`` group), checked against the
    flags ``given`` with ``--resume`` (``resume.resumed_arguments``)."""
    out = args.resume
    if args.out is not None and args.out != out:
        raise UsageError(f"--resume {out} with --out {args.out}: a run resumes in its own folder; drop --out")
    folder = _settings_folder(out)
    if folder is None:
        raise UsageError(f"--resume {out}: no checkpoint.pt there or in its seed_N folders; "
                         "start the run with --out instead")
    saved = _saved_arguments(folder)
    if folder == out:
        failed = _failed(out)
    else:
        if "seed_group" not in saved:
            raise UsageError(f"--resume {out}: {folder} is not part of a --seeds run; resume that folder")
        saved = {**saved, "seeds": saved.pop("seed_group"), "seed": None, "out": str(out)}
        failed = False  # a group resumes as it was; a failed seed resumes on its own with a lower --lr
    resumed = resumed_arguments(args, given, saved, failed)
    resumed.out = out
    return resumed


def _saved_arguments(folder: Path) -> dict[str, Any]:
    """The command-line settings a run's checkpoint was started with."""
    state, _ = load_checkpoint(folder)
    if "cli_args" not in state["extra"]:
        raise UsageError(f"the checkpoint in '{folder}' was written through the Python API, not by `{PROG} run`: "
                         "resume it with Runner.resume_from")
    return dict(state["extra"]["cli_args"])



"""The Python API: ``lifelong_kd.run(...)`` trains like ``lifelong-kd run``, for notebooks and scripts.

Its keywords are the ``run`` command's options with ``_`` for ``-`` (``strategy="derpp", memory=200,
max_train_per_class=100``): they become that command's arguments and go through the same parser,
the same validation and the same code (``run_command``), so a call and the command it spells give
the same results document. Without ``out`` nothing is written; ``seeds`` (several runs and their
aggregate) and ``resume`` need an ``out``, as on the command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cli import RaisingParser, build_parser, given_options, run_subparser
from .distributed import Distributed
from .errors import UsageError
from .loop_state import clear_stop_requests
from .report import aggregate
from .run_command import execute_run, prepare_run, run_arguments, run_seeds


def negatable(parser: argparse.ArgumentParser) -> set[str]:
    """The ``run`` options with a ``--no-`` form (``--channels-last``, a strategy's ``--t2``), as keywords."""
    return {action.dest for action in run_subparser(parser)._actions
            if isinstance(action, argparse.BooleanOptionalAction)}


def run_argv(settings: dict[str, Any], negatable: set[str]) -> list[str]:
    """The ``lifelong-kd run`` arguments that spell ``settings``: ``key=value`` is ``--key value``, a list
    one flag with its items, ``True`` the flag alone, ``False`` the ``--no-`` form of a key in
    ``negatable`` (else nothing: a store-true flag's default), ``None`` nothing (the default)."""
    argv = ["run"]
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            argv += [flag] if value else ([f"--no-{flag[2:]}"] if key in negatable else [])
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def run(*, out: str | Path | None = None, seeds: Sequence[int] | None = None, progress: bool = True,
        **settings: Any) -> dict[str, Any]:
    """Train a strategy on a task stream as ``lifelong-kd run`` would; return its results document
    (with ``seeds``, the aggregate over them, also written to ``out/aggregate.json``).

    >>> doc = lifelong_kd.run(benchmark="split-digits", model="small-cnn", strategy="derpp", memory=200)
    >>> doc["metrics"]["class_il"]["final_accuracy"]

    Raises ``UsageError`` (one line, as the command prints) for a setting the command would refuse.
    """
    parser = build_parser(RaisingParser)
    argv = run_argv({**settings, "out": out, "seeds": seeds, "quiet": not progress}, negatable(parser))
    args = parser.parse_args(argv)
    clear_stop_requests()
    if args.out is None:
        if args.seeds or args.resume is not None:
            raise UsageError("seeds and resume write their runs into a folder: give out=...")
        return prepare_run(args).run()
    args = run_arguments(args, given_options(argv), Distributed())
    if args.seeds:
        return aggregate(run_seeds(args))
    return execute_run(args)

"""``lifelong-kd run --resume OUT``: the settings a run started with, kept in its checkpoint, and the
check that the resuming command agrees with them.

A checkpoint stores the run's command-line settings (``plain_arguments``). ``--resume OUT`` alone
takes all of them from the checkpoint; a flag given beside it must equal the checkpoint's value,
otherwise the command is refused (exit 2) with one line naming each differing setting: any
setting given, even at its default value. ``--quiet`` and ``--overwrite`` are free; after a
run stopped on a NaN, ``--lr`` and ``--amp`` may change too: it resumes from the start of the task
it failed in with them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .errors import UsageError

PATH_ARGUMENTS = ("data_root", "cache_dir", "out", "reference")
FREE_ON_RESUME = ("resume", "out", "overwrite", "quiet", "func", "command")
CHANGEABLE_AFTER_FAILURE = ("lr", "amp")


def plain_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """``args`` as plain values a checkpoint can hold (paths as strings, tuples as lists)."""
    return {key: _plain(value) for key, value in vars(args).items() if key != "func"}


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def resumed_arguments(
    args: argparse.Namespace, given_names: set[str], saved: dict[str, Any], failed: bool = False
) -> argparse.Namespace:
    """The checkpoint's settings, after checking that every flag given with ``--resume`` agrees with them.

    ``given_names``: the settings given on the command line (their values are in ``args``).
    ``failed``: the run stopped on a NaN, so ``CHANGEABLE_AFTER_FAILURE`` (``--lr``, ``--amp``) may
    take new values; the runner records the change in results.json (``config.changes``).
    """
    given = {key: getattr(args, key) for key in sorted(given_names) if key not in FREE_ON_RESUME}
    changed = {key: value for key, value in given.items() if _plain(value) != saved.get(key)}
    differing = [key for key in changed if not (failed and key in CHANGEABLE_AFTER_FAILURE)]
    if differing:
        listed = ", ".join(
            f"--{key.replace('_', '-')} {_shown(given[key])} (checkpoint: {_shown(saved.get(key))})"
            for key in differing
        )
        allowed = " (after a failure only --lr and --amp may change)" if failed else ""
        raise UsageError(
            f"--resume {args.resume}: {listed} differ from the run's settings{allowed}; "
            "drop them to resume the run as it was started"
        )
    restored = {key: Path(value) if key in PATH_ARGUMENTS and value is not None else value
                for key, value in saved.items()}
    return argparse.Namespace(**{**restored, **changed, "resume": args.resume, "quiet": args.quiet,
                                 "func": args.func})


def _shown(value: Any) -> str:
    value = _plain(value)
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)

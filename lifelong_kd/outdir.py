"""The output folder of a run: checked before anything is loaded, and replaced safely with ``--overwrite``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .checkpoint import CHECKPOINT
from .errors import UsageError


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse an empty name, a file, a non-empty folder without ``--overwrite``, or a folder that
    cannot be written (or, to replace, moved aside), before anything is loaded or written."""
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
    if overwrite and out.is_dir() and any(out.iterdir()) and not os.access(out.absolute().parent, os.W_OK | os.X_OK):
        raise UsageError(f"--overwrite cannot move the old run in '{out}' aside: its parent folder is not writable")


def recover_replacement(out: Path) -> str | None:
    """Finish a replacement (``replacing``) that a kill cut short; a note to show when the old run
    was put back. If the new run wrote its first checkpoint, the old one goes, as it was to; if not,
    the old run is put back as it was."""
    aside = set_aside_path(out)
    if not aside.is_dir():
        return None
    if (out / CHECKPOINT).is_file():
        shutil.rmtree(aside)
        return None
    if out.exists():
        shutil.rmtree(out)
    os.replace(aside, out)
    return f"put back the run in '{out}' that an interrupted --overwrite had moved aside"


def set_aside_path(out: Path) -> Path:
    """Where ``replacing`` keeps the old run while the new one starts: ``.OUT.replaced`` beside ``OUT``."""
    return out.parent / f".{out.name}.replaced"


@contextmanager
def replacing(out: Path) -> Iterator[None]:
    """Replace the run in ``out`` by the one the block starts, losing nothing.

    The old contents are moved aside (``set_aside_path``) and ``out`` is made empty; the block
    writes the new run's first files. If the block fails, the old run is put back as it was;
    once it succeeds, the old run is deleted. So nothing of the old run remains to pass for the
    new one, and a new run that fails to start leaves the old one whole. Nothing to replace
    (``out`` missing or empty): the block just runs.
    """
    if not (out.is_dir() and any(out.iterdir())):
        yield
        return
    aside = set_aside_path(out)
    if aside.exists():
        raise UsageError(f"'{aside}' is in the way of --overwrite: move or delete it")
    os.replace(out, aside)
    try:
        yield
    except BaseException:
        if out.exists():
            shutil.rmtree(out)
        os.replace(aside, out)
        raise
    shutil.rmtree(aside)

"""The official CIFAR-10/100 pickles, read with an unpickler that builds only what those files hold."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .raw import Dataset

PICKLE_DIR = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _field(batch: dict[Any, Any], key: str, file: Path) -> Any:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise UsageError(f"'{file}' has no '{key}' entry: it is not an official CIFAR pickle; re-fetch it with --download")


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only what the official CIFAR pickles hold.

    Those files are dicts of bytes, strings, numbers, lists and numpy arrays; the arrays are
    the only objects a pickle must import code for (``numpy``'s ``_reconstruct``, ``ndarray``
    and ``dtype``). Any other global, such as ``os.system`` or ``builtins.eval``, which a
    planted file would call while loading, is refused before it is imported.
    """

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),  # the official files (numpy 1, Python 2 pickles)
        ("numpy._core.multiarray", "_reconstruct"),  # numpy 2's name for it
        ("numpy._core.numeric", "_frombuffer"),  # arrays pickled with protocol 5
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which no CIFAR pickle holds")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _unpickle(file: Path) -> dict[Any, Any]:
    if not file.is_file():
        raise UsageError(f"missing CIFAR file '{file}': point --data-root at a complete copy or add --download")
    try:
        with file.open("rb") as f:
            batch = CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise UsageError(
            f"'{file}' is not a readable CIFAR pickle ({error or type(error).__name__}): "
            "replace it with the official file (--download)"
        ) from None
    if not isinstance(batch, dict):
        raise UsageError(f"'{file}' holds a {type(batch).__name__}, not a CIFAR batch: replace it (--download)")
    return batch


def _read_batches(files: Sequence[Path], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for file in files:
        batch = _unpickle(file)
        xs.append(np.asarray(_field(batch, "data", file), dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(_field(batch, label_key, file), dtype=np.int64))
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)


def load_cifar_pickles(root: Path, kind: str) -> Dataset:
    """Load the official CIFAR pickles under ``root`` (``kind`` is "cifar10" or "cifar100")."""
    if kind not in PICKLE_DIR:
        raise UsageError(f"unknown CIFAR kind '{kind}': use 'cifar10' or 'cifar100'")
    folder = Path(root) / PICKLE_DIR[kind]
    if kind == "cifar10":
        train = [folder / f"data_batch_{i}" for i in range(1, 6)]
        test, meta, label_key, names_key = [folder / "test_batch"], folder / "batches.meta", "labels", "label_names"
    else:
        train, test, meta = [folder / "train"], [folder / "test"], folder / "meta"
        label_key, names_key = "fine_labels", "fine_label_names"
    train_x, train_y = _read_batches(train, label_key)
    test_x, test_y = _read_batches(test, label_key)
    names = _field(_unpickle(meta), names_key, meta)
    class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return Dataset(train_x, train_y, test_x, test_y, class_names)

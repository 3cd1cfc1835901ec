"""The benchmarks' raw data: where it lies (``--data-root``), how it is read and how it is cached.

The readers are ``cifar_pickles`` and ``image_folder``, plus scikit-learn's digits here.
Everything is decoded once into uint8 arrays of shape (N, C, H, W) and, for file sources,
cached as an uncompressed ``.npz`` so that later runs skip decoding. PIL is used only to decode
images while building the cache; no training path touches it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cifar_pickles import PICKLE_DIR, load_cifar_pickles
from .errors import UsageError
from .image_folder import SPLITS, decode_listing, list_image_folder
from .raw import Dataset

CACHE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class BenchmarkSpec:
    """A named benchmark: where its data comes from and how to split it by default."""

    name: str
    num_classes: int | None  # None: any number of classes (image-folder)
    default_tasks: int | None  # None: --n-tasks is required
    help: str
    hflip: bool = True
    crop_padding: int = 4


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec("split-cifar10", 10, 5, "CIFAR-10, 10 classes in 5 tasks of 2 (pickles, folder or zip)"),
        BenchmarkSpec("split-cifar100", 100, 10, "CIFAR-100, 100 classes in 10 (or 20) tasks (pickles, folder or zip)"),
        BenchmarkSpec(
            "split-digits",
            10,
            5,
            "scikit-learn's bundled 8x8 digits, 10 classes in 5 tasks (no download)",
            hflip=False,
            crop_padding=1,
        ),
        BenchmarkSpec("image-folder", None, None, "any train/<class>/ + test/<class>/ folder or zip (needs --n-tasks)"),
    )
}

# benchmark -> pickle kind; the kind is also the name prefix of a matching zip ("cifar10*.zip")
_CIFAR = {"split-cifar10": "cifar10", "split-cifar100": "cifar100"}


@dataclass(frozen=True)
class _Source:
    kind: str  # "cifar10", "cifar100" (pickles under path) or "image-folder" (directory or zip at path)
    path: Path


def benchmark_spec(benchmark: str) -> BenchmarkSpec:
    """Return the registered spec for ``benchmark`` or raise UsageError listing the known ones."""
    if benchmark not in BENCHMARKS:
        known = ", ".join(BENCHMARKS)
        raise UsageError(f"unknown benchmark '{benchmark}': choose one of {known} (run `lifelong-kd list`)")
    return BENCHMARKS[benchmark]


# ---------------------------------------------------------------- scikit-learn digits


def load_digits_dataset(seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits as uint8 (N, 1, 8, 8), split 80/20 per class with a seeded shuffle."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise UsageError("split-digits needs scikit-learn: run `pip install scikit-learn`") from e
    digits = load_digits()
    x = (digits.images.astype(np.int64) * 255 // 16).astype(np.uint8)[:, None]
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        test_idx.append(idx[: round(0.2 * len(idx))])
    is_test = np.zeros(len(y), dtype=bool)
    is_test[np.concatenate(test_idx)] = True
    return Dataset(x[~is_test], y[~is_test], x[is_test], y[is_test], tuple(str(c) for c in range(10)))


# ---------------------------------------------------------------- layout resolution


def _layout_help(benchmark: str) -> str:
    kind = _CIFAR.get(benchmark)
    parts = [f"{PICKLE_DIR[kind]}/ (official pickles)"] if kind else []
    parts += [
        "train/<class>/ + test/<class>/ image folders (maybe one folder down)",
        f"a single {kind or ''}*.zip of them",
    ]
    return "a folder holding " + " or ".join(parts) + ", or at such a .zip"


def _find_zip(root: Path, benchmark: str) -> Path | None:
    kind = _CIFAR.get(benchmark)
    pattern = re.compile(rf"{kind}(?!\d).*\.zip$" if kind else r".*\.zip$", re.IGNORECASE)
    zips = sorted(p for p in root.iterdir() if p.is_file() and pattern.match(p.name))
    if len(zips) > 1:
        names = ", ".join(z.name for z in zips)
        raise UsageError(f"'{root}' holds several matching zips ({names}): pass --data-root FILE.zip")
    return zips[0] if zips else None


def _resolve_source(benchmark: str, root: Path) -> _Source:
    """Work out which layout ``root`` holds for ``benchmark``."""
    layouts = _layout_help(benchmark)
    if not root.exists():
        raise UsageError(
            f"data root '{root}' does not exist: pass --data-root pointing at {layouts}, or add --download"
        )
    if root.is_file():
        if root.suffix.lower() == ".zip":
            return _Source("image-folder", root)
        raise UsageError(f"data root '{root}' is a file but not a .zip: pass --data-root pointing at {layouts}")
    kind = _CIFAR.get(benchmark)
    if kind and (root / PICKLE_DIR[kind]).is_dir():
        return _Source(kind, root)
    if kind and root.name == PICKLE_DIR[kind]:
        return _Source(kind, root.parent)
    if all((root / s).is_dir() for s in SPLITS):
        return _Source("image-folder", root)
    nested = [d for d in root.iterdir() if d.is_dir() and all((d / s).is_dir() for s in SPLITS)]
    if len(nested) == 1:
        return _Source("image-folder", nested[0])
    found_zip = _find_zip(root, benchmark)
    if found_zip is not None:
        return _Source("image-folder", found_zip)
    raise UsageError(f"data root '{root}' has no recognised layout: pass --data-root pointing at {layouts}")


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lifelong_kd"


def _download(benchmark: str, root: Path) -> None:
    """Fetch the official CIFAR pickles into ``root`` with torchvision, unless already there."""
    kind = _CIFAR[benchmark]
    if (root / PICKLE_DIR[kind]).is_dir():
        return
    from torchvision import datasets

    cls = datasets.CIFAR10 if kind == "cifar10" else datasets.CIFAR100
    try:
        cls(str(root), train=True, download=True)
    except (OSError, RuntimeError) as e:
        raise UsageError(
            f"downloading {kind} into '{root}' failed ({e}): check the network, or pass --data-root with a local copy"
        ) from e


# ---------------------------------------------------------------- cache


def _fingerprint(source: _Source) -> str:
    """Hash of the format version, kind, resolved path, and size + mtime_ns of every source file."""
    path = source.path.resolve()
    top = path / PICKLE_DIR[source.kind] if source.kind in PICKLE_DIR else path
    files = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
    stats = [(p.relative_to(top).as_posix() if p != top else "", p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    blob = json.dumps([CACHE_FORMAT_VERSION, source.kind, str(path), stats])
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _read_cache(file: Path) -> Dataset | None:
    """Load a cached dataset, or None when missing or unreadable (a corrupt file is rebuilt)."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("train_x", "train_y", "test_x", "test_y", "class_names")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    x_ok = all(arrays[k].dtype == np.uint8 and arrays[k].ndim == 4 for k in ("train_x", "test_x"))
    y_ok = all(arrays[k].dtype == np.int64 and arrays[k].ndim == 1 for k in ("train_y", "test_y"))
    if not (x_ok and y_ok):
        return None
    names = tuple(str(n) for n in arrays.pop("class_names"))
    return Dataset(**arrays, class_names=names)


def _write_cache(file: Path, dataset: Dataset) -> None:
    """Save atomically: write a temp file in the cache dir, then os.replace it into place."""
    tmp: Path | None = None
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=file.parent, prefix=file.stem, suffix=".tmp", delete=False) as f:
            tmp = Path(f.name)
            np.savez(
                f,
                train_x=dataset.train_x,
                train_y=dataset.train_y,
                test_x=dataset.test_x,
                test_y=dataset.test_y,
                class_names=np.array(dataset.class_names, dtype=str),
            )
        tmp.chmod(0o644)  # NamedTemporaryFile creates 0600
        os.replace(tmp, file)
    except OSError as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        warnings.warn(
            f"could not write dataset cache '{file}' ({e}); data will be decoded again next time", stacklevel=3
        )


def _check_class_count(benchmark: str, classes: Sequence[str], source: Path) -> None:
    expected = BENCHMARKS[benchmark].num_classes
    if expected is not None and len(classes) != expected:
        raise UsageError(
            f"'{source}' has {len(classes)} classes but {benchmark} needs {expected}: "
            "pass --data-root with the right data, or use benchmark image-folder with --n-tasks"
        )


def _decode_source(benchmark: str, source: _Source) -> Dataset:
    if source.kind == "image-folder":
        listing = list_image_folder(source.path)
        _check_class_count(benchmark, listing.classes, source.path)
        return decode_listing(listing)
    return load_cifar_pickles(source.path, source.kind)


def load_dataset(
    benchmark: str, data_root: Path | None, cache_dir: Path | None = None, download: bool = False
) -> Dataset:
    """Load ``benchmark``'s data from ``data_root`` (decoded once, then cached as .npz in ``cache_dir``).

    ``benchmark`` is split-cifar10, split-cifar100 or image-folder. With ``download`` the CIFAR pickles
    are fetched by torchvision into ``data_root`` (default: ``<cache_dir>/downloads``).
    """
    if benchmark_spec(benchmark).name not in (*_CIFAR, "image-folder"):
        raise UsageError(f"benchmark {benchmark} has no data files: use make_stream('{benchmark}') instead")
    cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    if download:
        if benchmark not in _CIFAR:
            raise UsageError(
                "--download only fetches CIFAR-10/100: drop --download and pass --data-root for image-folder"
            )
        data_root = Path(data_root) if data_root is not None else cache_dir / "downloads"
        _download(benchmark, data_root)
    if data_root is None:
        raise UsageError(
            f"{benchmark} needs data: pass --data-root pointing at {_layout_help(benchmark)}, or add --download"
        )
    source = _resolve_source(benchmark, Path(data_root))
    cache_file = cache_dir / f"{source.kind}-{source.path.stem}-{_fingerprint(source)}.npz"
    dataset = _read_cache(cache_file)
    if dataset is None:
        dataset = _decode_source(benchmark, source)
        _write_cache(cache_file, dataset)
    _check_class_count(benchmark, dataset.class_names, source.path)
    return dataset

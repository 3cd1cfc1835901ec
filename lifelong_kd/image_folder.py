"""Image folders: ``train/<class>/*.png`` and ``test/<class>/...``, in a directory or a .zip.

Listing reads names and sizes only; decoding reads each file once. What a damaged or hostile
folder could do is refused with a ``UsageError`` naming the file: a class folder without images,
a zip member whose declared size no image has (``MAX_IMAGE_BYTES``, checked before it is read),
a damaged member (bad CRC), and an image whose header claims more than ``MAX_IMAGE_PIXELS``
(checked before its pixels are decoded: a decompression bomb).
"""

from __future__ import annotations

import io
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UsageError
from .raw import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test")
MAX_IMAGE_BYTES = 64 * 2**20
MAX_IMAGE_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class ImageFolderListing:
    """The classes and files of an image folder (a directory or a .zip), found without decoding.

    File names are zip entry names or paths relative to ``source``; labels index ``classes``.
    """

    source: Path
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...]


def _hidden(parts: Sequence[str]) -> bool:
    return any(p.startswith((".", "__MACOSX")) for p in parts)


def _split_prefixes(names: Sequence[str]) -> dict[tuple[str, ...], list[tuple[str, ...]]]:
    """Group image paths shaped [top/]split/class/file by their top folder (or none)."""
    groups: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for name in names:
        parts = tuple(name.split("/"))
        if len(parts) in (3, 4) and parts[-3] in SPLITS and parts[-1].lower().endswith(IMAGE_SUFFIXES):
            if not _hidden(parts):
                groups.setdefault(parts[:-3], []).append(parts)
    return groups


def _entries(path: Path) -> tuple[dict[str, int], list[str]]:
    """The files (name: size in bytes, as declared by a zip) and the folders of a directory or zip."""
    if path.is_dir():
        found = [p for p in path.rglob("*") if len(p.relative_to(path).parts) <= 4]
        files = {p.relative_to(path).as_posix(): p.stat().st_size for p in found if p.is_file()}
        return files, [p.relative_to(path).as_posix() for p in found if p.is_dir()]
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (OSError, zipfile.BadZipFile) as e:
        raise UsageError(f"cannot read zip '{path}' ({e}): pass --data-root with a valid .zip or folder") from e
    files = {info.filename: info.file_size for info in infos if not info.is_dir()}
    return files, [info.filename.rstrip("/") for info in infos if info.is_dir()]


def list_image_folder(path: Path) -> ImageFolderListing:
    """List classes and image files of ``path`` (a directory or .zip) without decoding anything.

    Layout: ``train/<class>/*.{png,jpg,jpeg}`` and ``test/<class>/...``, possibly inside one top-level
    folder. Classes are the sorted folder names of train/; files are sorted by name within a class.
    """
    path = Path(path)
    files, folders = _entries(path)
    groups = _split_prefixes(list(files))
    if len(groups) != 1:
        found = "none" if not groups else ", ".join(sorted("/".join(g) or "." for g in groups))
        raise UsageError(
            f"'{path}' must hold train/<class>/ and test/<class>/ image folders under one top folder "
            f"(found: {found}): pass --data-root pointing at such a folder or .zip"
        )
    top, parts = next(iter(groups.items()))
    by_split: dict[str, dict[str, list[str]]] = {s: {} for s in SPLITS}
    for p in parts:
        by_split[p[-3]].setdefault(p[-2], []).append("/".join(p))
    _refuse_empty_class_folders(path, top, folders, by_split)
    _refuse_huge_files(path, files, [name for split in by_split.values() for names in split.values() for name in names])
    classes = tuple(sorted(by_split["train"]))
    if not classes or tuple(sorted(by_split["test"])) != classes:
        raise UsageError(
            f"'{path}': test/ classes {sorted(by_split['test'])} must match train/ classes {list(classes)}: "
            "give both splits the same class folders"
        )

    def listed(split: str) -> tuple[tuple[str, int], ...]:
        return tuple((n, label) for label, c in enumerate(classes) for n in sorted(by_split[split][c]))

    return ImageFolderListing(path, classes, listed("train"), listed("test"))


def _refuse_empty_class_folders(
    path: Path, top: tuple[str, ...], folders: list[str], by_split: dict[str, dict[str, list[str]]]
) -> None:
    for folder in folders:
        parts = tuple(folder.split("/"))
        if len(parts) == len(top) + 2 and parts[: len(top)] == top and parts[-2] in SPLITS and not _hidden(parts):
            if parts[-1] not in by_split[parts[-2]]:
                raise UsageError(
                    f"'{path}': class folder '{folder}' holds no images ({', '.join(IMAGE_SUFFIXES)}): "
                    "add its images or remove the folder"
                )


def _refuse_huge_files(path: Path, files: dict[str, int], names: list[str]) -> None:
    for name in names:
        if files[name] > MAX_IMAGE_BYTES:
            raise UsageError(
                f"'{path}': '{name}' declares {files[name]:,} bytes, more than an image here may hold "
                f"({MAX_IMAGE_BYTES // 2**20} MiB): the file is damaged or not an image; remove it"
            )


def _decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode one image file's bytes to a uint8 (3, H, W) array, refusing a header that claims more
    than ``MAX_IMAGE_PIXELS`` before the pixels are decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise Image.DecompressionBombError(f"its header claims {img.width}x{img.height} pixels")
                return np.asarray(img.convert("RGB")).transpose(2, 0, 1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UsageError(
            f"refusing image '{name}' ({e}; at most {MAX_IMAGE_PIXELS:,} pixels are read): remove or resize it"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:  # PIL's SyntaxError: a broken file
        raise UsageError(f"cannot decode image '{name}' ({e}): remove or replace the file") from None


def _decode_files(files: Sequence[tuple[str, int]], read: Callable[[str], bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``files`` (non-empty: the listing gives every class a file) into one (N, 3, H, W) array."""
    first = _decode_image(read(files[0][0]), files[0][0])
    x = np.empty((len(files), *first.shape), dtype=np.uint8)
    for i, (name, _) in enumerate(files):
        img = first if i == 0 else _decode_image(read(name), name)
        if img.shape != x.shape[1:]:
            raise UsageError(
                f"image '{name}' is {img.shape[2]}x{img.shape[1]} but others are {x.shape[3]}x{x.shape[2]}: "
                "resize all images to one size"
            )
        x[i] = img
    return x, np.array([label for _, label in files], dtype=np.int64)


def decode_listing(listing: ImageFolderListing) -> Dataset:
    """Decode the images of ``listing`` to RGB uint8 arrays."""
    if listing.source.is_dir():
        return _decode_with(listing, lambda name: (listing.source / name).read_bytes())
    with zipfile.ZipFile(listing.source) as zf:

        def read(name: str) -> bytes:
            try:
                return zf.read(name)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                raise UsageError(
                    f"cannot read '{name}' from '{listing.source}' ({e}): the zip is damaged; re-create it"
                ) from None

        return _decode_with(listing, read)


def _decode_with(listing: ImageFolderListing, read: Callable[[str], bytes]) -> Dataset:
    train_x, train_y = _decode_files(listing.train, read)
    test_x, test_y = _decode_files(listing.test, read)
    if test_x.shape[1:] != train_x.shape[1:]:
        raise UsageError(
            f"'{listing.source}': test images differ in size from train images: resize all images to one size"
        )
    return Dataset(train_x, train_y, test_x, test_y, listing.classes)


def load_image_folder(path: Path) -> Dataset:
    """Decode an image folder (directory or .zip, layout as in :func:`list_image_folder`) to RGB uint8 arrays."""
    return decode_listing(list_image_folder(path))

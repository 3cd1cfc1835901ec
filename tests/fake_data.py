"""Small data files in the official layouts (CIFAR pickles, image folders, zips), written by the tests."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...] = (3, 32, 32)) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def dump_pickle(path: Path, obj: dict, str_keys: bool = False) -> None:
    if not str_keys:
        obj = {k.encode(): v for k, v in obj.items()}
    with path.open("wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, per_class: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Official-format CIFAR-10 pickles: 5 train batches + test batch, ``per_class`` images per class per batch."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        y = np.tile(np.arange(10), per_class)
        x = _images(rng, len(y))
        dump_pickle(folder / name, {"data": x.reshape(len(y), -1), "labels": y.tolist(), "batch_label": name})
        xs.append(x)
        ys.append(y)
    dump_pickle(folder / "batches.meta", {"label_names": [n.encode() for n in CIFAR10_NAMES], "num_vis": 3072})
    return {"train_x": np.concatenate(xs[:5]), "train_y": np.concatenate(ys[:5]), "test_x": xs[5], "test_y": ys[5]}


def write_cifar100(root: Path, per_class: int = 2, seed: int = 0, str_keys: bool = False) -> dict[str, np.ndarray]:
    """Official-format CIFAR-100 pickles (train, test, meta) with fine and coarse labels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, reps in (("train", per_class), ("test", 1)):
        y = np.tile(np.arange(100), reps)
        x = _images(rng, len(y))
        record = {"data": x.reshape(len(y), -1), "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist()}
        dump_pickle(folder / split, record, str_keys)
        out[f"{split}_x"], out[f"{split}_y"] = x, y
    names = [f"class{i:03d}" for i in range(100)]
    dump_pickle(
        folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"super{i}" for i in range(20)]}, str_keys
    )
    return out


CLASSES = ("cat", "ant", "bee")  # sorted: ant, bee, cat


def write_image_tree(root: Path, size: tuple[int, int] = (6, 5), seed: int = 0) -> dict[str, dict[str, list]]:
    """train/<class>/*.png (3 per class) and test/<class>/*.png (1 per class); returns the HWC arrays written."""
    rng = np.random.default_rng(seed)
    written: dict[str, dict[str, list]] = {}
    for split, n in (("train", 3), ("test", 1)):
        for cls in CLASSES:
            folder = root / split / cls
            folder.mkdir(parents=True)
            # write in reverse name order so that the reader's sorting is exercised
            imgs = [rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8) for _ in range(n)]
            for i in reversed(range(n)):
                Image.fromarray(imgs[i]).save(folder / f"{i:04d}.png")
            written.setdefault(split, {})[cls] = imgs
    return written


def zip_tree(tree: Path, zip_path: Path, top: str = "cifar10") -> Path:
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr(f"{top}/", "")
        for file in sorted(tree.rglob("*.png")):
            zf.write(file, f"{top}/{file.relative_to(tree).as_posix()}")
    return zip_path

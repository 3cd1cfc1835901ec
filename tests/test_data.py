"""Tests for lifelong_kd.data / lifelong_kd.datasets on tiny generated data (and the real zip, if present)."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_data import CIFAR10_NAMES, dump_pickle, write_cifar10, write_cifar100, write_image_tree, zip_tree
from PIL import Image

from lifelong_kd import datasets, image_folder
from lifelong_kd.cifar_pickles import load_cifar_pickles
from lifelong_kd.cli import main
from lifelong_kd.data import class_order_for, make_stream, split_into_tasks, tensor_stream
from lifelong_kd.datasets import BENCHMARKS, load_dataset, load_digits_dataset
from lifelong_kd.errors import UsageError
from lifelong_kd.image_folder import list_image_folder, load_image_folder
from lifelong_kd.raw import Dataset

REAL_ZIP = Path(__file__).parents[1].parent / "shared/data/cifar10-jpeg.zip"


def labelled_tensors(num_classes: int = 6, per_class: int = 4, seed: int = 0):
    """uint8 images whose every pixel is the sample index, so an image identifies its source row."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(num_classes), per_class))
    x = np.broadcast_to(np.arange(len(y), dtype=np.uint8)[:, None, None, None], (len(y), 1, 2, 2)).copy()
    test_y = np.arange(num_classes)
    test_x = np.full((num_classes, 1, 2, 2), 200, dtype=np.uint8)
    return x, y, test_x, test_y


# ---------------------------------------------------------------- CIFAR pickles


def test_cifar10_pickles_round_trip(tmp_path):
    ref = write_cifar10(tmp_path, per_class=2)
    ds = load_cifar_pickles(tmp_path, "cifar10")
    assert ds.train_x.shape == (100, 3, 32, 32) and ds.train_x.dtype == np.uint8
    assert ds.test_x.shape == (20, 3, 32, 32)
    assert ds.train_y.dtype == np.int64
    np.testing.assert_array_equal(ds.train_y, ref["train_y"])
    np.testing.assert_array_equal(ds.test_y, ref["test_y"])
    assert ds.class_names == CIFAR10_NAMES
    np.testing.assert_array_equal(ds.train_x[57], ref["train_x"][57])  # a known image, channel-first
    np.testing.assert_array_equal(ds.test_x, ref["test_x"])


class _CreatesAFile:
    """A harmless stand-in for a malicious payload: unpickling it would create ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_planted_cifar_pickle_is_refused_before_it_runs_anything(tmp_path, capsys):
    write_cifar10(tmp_path / "data")
    planted = tmp_path / "created-by-the-pickle"
    batch = tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1"
    dump_pickle(batch, {"data": _CreatesAFile(planted), "labels": [0]})
    with pytest.raises(UsageError, match="it asks for io.open, which no CIFAR pickle holds"):
        load_cifar_pickles(tmp_path / "data", "cifar10")
    assert not planted.exists()
    assert main(["run", "--benchmark", "split-cifar10", "--data-root", str(tmp_path / "data"),
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data_batch_1" in err and "Traceback" not in err and not planted.exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "not a dict"])
def test_a_damaged_cifar_pickle_is_one_usage_error(tmp_path, damage):
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    if damage == "truncated":
        batch.write_bytes(batch.read_bytes()[:1000])
    elif damage == "empty":
        batch.write_bytes(b"")
    else:
        batch.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(UsageError, match="test_batch"):
        load_cifar_pickles(tmp_path, "cifar10")


def test_arrays_pickled_with_protocol_5_load(tmp_path):
    ref = write_cifar10(tmp_path)
    for name in ["test_batch"]:
        path = tmp_path / "cifar-10-batches-py" / name
        batch = pickle.loads(path.read_bytes())
        path.write_bytes(pickle.dumps(batch, protocol=5))
    np.testing.assert_array_equal(load_cifar_pickles(tmp_path, "cifar10").test_x, ref["test_x"])


@pytest.mark.parametrize("str_keys", [False, True])
def test_cifar100_pickles_round_trip(tmp_path, str_keys):
    ref = write_cifar100(tmp_path, per_class=2, str_keys=str_keys)
    ds = load_cifar_pickles(tmp_path, "cifar100")
    assert ds.train_x.shape == (200, 3, 32, 32) and ds.test_x.shape == (100, 3, 32, 32)
    np.testing.assert_array_equal(ds.train_y, ref["train_y"])  # fine labels, not coarse
    np.testing.assert_array_equal(ds.train_x[123], ref["train_x"][123])
    assert ds.class_names[7] == "class007" and len(ds.class_names) == 100


@pytest.mark.parametrize("n_tasks", [10, 20])
def test_split_cifar100_stream(tmp_path, n_tasks):
    write_cifar100(tmp_path / "data", per_class=2)
    stream = make_stream("split-cifar100", data_root=tmp_path / "data", n_tasks=n_tasks, cache_dir=tmp_path / "c")
    k = 100 // n_tasks
    assert len(stream) == n_tasks and stream.num_classes == 100
    assert stream.task_of_class == tuple(i // k for i in range(100))
    assert stream.image_shape == (3, 32, 32)
    for i, task in enumerate(stream):
        assert task.index == i and task.classes == tuple(range(i * k, (i + 1) * k))
        assert len(task.train) == 2 * k and len(task.test) == k
        assert set(task.train.y.tolist()) == set(task.classes)
        assert task.train.x.dtype == torch.uint8 and task.train.x.is_contiguous()


@pytest.mark.parametrize(("n_tasks", "step"), [(6, 10), (11, 5), (26, 2)])
def test_split_cifar100_b50_protocols(tmp_path, n_tasks, step):
    """LUCIR's and PODNet's B50: 50 classes first, then 5, 10 or 25 tasks of 10, 5 or 2 classes."""
    write_cifar100(tmp_path / "data", per_class=1)
    stream = make_stream("split-cifar100", data_root=tmp_path / "data", n_tasks=n_tasks, cache_dir=tmp_path / "c",
                         first_task_classes=50)
    assert [len(task.classes) for task in stream] == [50] + [step] * (n_tasks - 1)
    assert stream.tasks[1].classes == tuple(range(50, 50 + step)) and stream.task_of_class[49:51] == (0, 1)
    assert len(stream.tasks[0].test.y) == 50 and set(stream.tasks[-1].train.y.tolist()) == set(range(100 - step, 100))


@pytest.mark.parametrize(("first", "n_tasks", "message"), [
    (50, 4, "the 50 classes after a first task of 50 do not split into 3 equal tasks: choose --n-tasks from 2, 3,"),
    (100, 2, "--first-task-classes 100: use 1 to 99"),
    (50, 1, "do not split into 0 equal tasks"),
])
def test_first_task_classes_that_do_not_fit_name_the_fix(tmp_path, first, n_tasks, message):
    write_cifar100(tmp_path / "data", per_class=1)
    with pytest.raises(UsageError, match=re.escape(message)):
        make_stream("split-cifar100", data_root=tmp_path / "data", n_tasks=n_tasks, cache_dir=tmp_path / "c",
                    first_task_classes=first)


def test_split_cifar100_default_tasks(tmp_path):
    write_cifar100(tmp_path, per_class=1)
    stream = make_stream("split-cifar100", data_root=tmp_path, cache_dir=tmp_path / "c")
    assert len(stream) == BENCHMARKS["split-cifar100"].default_tasks == 10


# ---------------------------------------------------------------- image folders


def test_image_folder_dir_and_zip_are_identical(tmp_path):
    written = write_image_tree(tmp_path / "tree")
    zip_path = zip_tree(tmp_path / "tree", tmp_path / "tiny.zip")
    from_dir = load_image_folder(tmp_path / "tree")
    from_zip = load_image_folder(zip_path)
    assert from_dir.class_names == from_zip.class_names == ("ant", "bee", "cat")
    for a, b in ((from_dir.train_x, from_zip.train_x), (from_dir.test_x, from_zip.test_x)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(from_dir.train_y, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(from_zip.test_y, [0, 1, 2])
    assert from_dir.train_x.shape == (9, 3, 5, 6)  # (N, C, H, W) for 6 wide x 5 high
    # files sorted by name: train row 7 is cat/0001.png
    np.testing.assert_array_equal(from_zip.train_x[7], written["train"]["cat"][1].transpose(2, 0, 1))


def test_list_image_folder_does_not_decode(tmp_path, monkeypatch):
    write_image_tree(tmp_path / "tree")
    monkeypatch.setattr(image_folder, "_decode_image", _fail)
    listing = list_image_folder(zip_tree(tmp_path / "tree", tmp_path / "t.zip"))
    assert listing.classes == ("ant", "bee", "cat")
    assert listing.train[:2] == (("cifar10/train/ant/0000.png", 0), ("cifar10/train/ant/0001.png", 0))
    assert len(listing.test) == 3


def test_image_folder_mixed_sizes(tmp_path):
    write_image_tree(tmp_path)
    Image.new("RGB", (7, 7)).save(tmp_path / "train" / "bee" / "0009.png")
    with pytest.raises(UsageError, match=r"bee/0009\.png.*resize"):
        load_image_folder(tmp_path)


def test_image_folder_test_classes_must_match(tmp_path):
    write_image_tree(tmp_path)
    (tmp_path / "test" / "dog").mkdir()
    Image.new("RGB", (6, 5)).save(tmp_path / "test" / "dog" / "0.png")
    with pytest.raises(UsageError, match="must match train/ classes"):
        list_image_folder(tmp_path)


def test_image_folder_stream_from_nested_dir_and_zip_dir(tmp_path):
    write_image_tree(tmp_path / "outer" / "inner")
    stream = make_stream("image-folder", data_root=tmp_path / "outer", n_tasks=3, cache_dir=tmp_path / "c")
    assert [t.classes for t in stream] == [(0,), (1,), (2,)]
    assert stream.class_names == ("ant", "bee", "cat") and stream.image_shape == (3, 5, 6)
    zdir = tmp_path / "zips"
    zdir.mkdir()
    zip_tree(tmp_path / "outer" / "inner", zdir / "mine.zip")
    from_zip = make_stream("image-folder", data_root=zdir, n_tasks=1, cache_dir=tmp_path / "c")
    assert torch.equal(from_zip[0].train.x, torch.cat([t.train.x for t in stream]))


def test_cifar10_zip_found_in_folder(tmp_path):
    tree = tmp_path / "tree"
    for split in ("train", "test"):
        for name in CIFAR10_NAMES:
            (tree / split / name).mkdir(parents=True)
            Image.new("RGB", (4, 4), color=(CIFAR10_NAMES.index(name), 0, 0)).save(tree / split / name / "0.png")
    data = tmp_path / "data"
    data.mkdir()
    zip_tree(tree, data / "cifar10-jpeg.zip")
    zip_tree(tree, data / "cifar100-other.zip")  # must not be taken for split-cifar10
    ds = load_dataset("split-cifar10", data, cache_dir=tmp_path / "c")
    assert ds.class_names == CIFAR10_NAMES
    np.testing.assert_array_equal(ds.train_x[:, 0, 0, 0], np.arange(10))


# ---------------------------------------------------------------- class order and remapping


def test_class_order_fixed_random_explicit():
    assert class_order_for(5, "fixed", seed=3) == (0, 1, 2, 3, 4)
    a, b = class_order_for(10, "random", seed=1), class_order_for(10, "random", seed=1)
    assert a == b and sorted(a) == list(range(10)) and a != tuple(range(10))
    assert class_order_for(10, "random", seed=2) != a
    assert class_order_for(4, [2, 0, 3, 1], seed=0) == (2, 0, 3, 1)
    assert class_order_for(4, "2,0,3,1", seed=0) == (2, 0, 3, 1)


@pytest.mark.parametrize("order", [[0, 1, 2], [0, 0, 1, 2], [0, 1, 2, 4], "banana", "0,1,x,3"])
def test_class_order_invalid(order):
    with pytest.raises(UsageError, match="--class-order"):
        class_order_for(4, order, seed=0)


def test_remapping_follows_class_order():
    x, y, test_x, test_y = labelled_tensors(num_classes=6, per_class=4)
    stream = tensor_stream(x, y, test_x, test_y, n_tasks=3, class_order="random", seed=5)
    order = stream.class_order
    assert order == class_order_for(6, "random", seed=5)
    seen = []
    for task in stream:
        rows = task.train.x[:, 0, 0, 0].tolist()
        assert rows == sorted(rows)  # dataset order kept within the task
        for row, label in zip(rows, task.train.y.tolist(), strict=True):
            assert label == order.index(int(y[row]))  # original class c -> position order.index(c)
            assert label in task.classes
        seen += rows
        assert sorted(order[c] for c in task.test.y.tolist()) == sorted(order[c] for c in task.classes)
    assert sorted(seen) == list(range(len(y)))


def test_max_train_per_class_balanced_and_test_untouched():
    y = np.random.default_rng(0).permutation(np.repeat([0, 1, 2, 3], [5, 4, 10, 1]))
    x = np.arange(len(y), dtype=np.uint8).reshape(-1, 1, 1, 1)
    test_x = np.zeros((4, 1, 1, 1), dtype=np.uint8)
    ds = Dataset(x, y, test_x, np.arange(4), ("a", "b", "c", "d"))
    stream = split_into_tasks(ds, "t", 2, [0, 1, 2, 3], max_train_per_class=3, seed=7)
    counts = np.bincount(torch.cat([t.train.y for t in stream]).numpy(), minlength=4)
    np.testing.assert_array_equal(counts, [3, 3, 3, 1])  # min(3, available)
    assert sum(len(t.test) for t in stream) == 4
    again = split_into_tasks(ds, "t", 2, [0, 1, 2, 3], max_train_per_class=3, seed=7)
    assert all(torch.equal(a.train.x, b.train.x) for a, b in zip(stream, again, strict=True))
    # mean/std come from the full training set
    assert stream.mean[0] == pytest.approx(x.mean() / 255) and stream.std[0] == pytest.approx((x / 255).std())


def test_stream_stats_and_flags():
    x, y, test_x, test_y = labelled_tensors()
    stream = tensor_stream(x, y, test_x, test_y, n_tasks=2, hflip=False, crop_padding=2, name="toy")
    assert stream.name == "toy" and not stream.hflip and stream.crop_padding == 2
    assert stream[1] is stream.tasks[1] and len(list(stream)) == 2
    assert stream.class_names == tuple("012345") and stream.image_shape == (1, 2, 2)


# ---------------------------------------------------------------- cache


def _fail(*args, **kwargs):
    raise AssertionError("decoded although a cache exists")


def test_cache_skips_decoding_and_rebuilds_when_corrupt(tmp_path, monkeypatch):
    write_image_tree(tmp_path / "tree")
    zip_path = zip_tree(tmp_path / "tree", tmp_path / "data.zip")
    cache = tmp_path / "cache"
    first = load_dataset("image-folder", zip_path, cache_dir=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temp file left behind
    with monkeypatch.context() as m:
        m.setattr(image_folder, "_decode_image", _fail)
        second = load_dataset("image-folder", zip_path, cache_dir=cache)
    for name in ("train_x", "train_y", "test_x", "test_y", "class_names"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    files[0].write_bytes(b"not an npz")
    rebuilt = load_dataset("image-folder", zip_path, cache_dir=cache)
    np.testing.assert_array_equal(rebuilt.train_x, first.train_x)
    assert np.load(files[0])["train_x"].shape == first.train_x.shape  # valid again


def test_cache_pickles_and_invalidation(tmp_path, monkeypatch):
    write_cifar10(tmp_path, per_class=1)
    cache = tmp_path / "cache"
    first = load_dataset("split-cifar10", tmp_path, cache_dir=cache)
    with monkeypatch.context() as m:
        m.setattr(datasets, "load_cifar_pickles", _fail)
        np.testing.assert_array_equal(load_dataset("split-cifar10", tmp_path, cache_dir=cache).test_x, first.test_x)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    os.utime(batch, ns=(0, batch.stat().st_mtime_ns + 10**9))  # source changed -> new key, decoded again
    monkeypatch.setattr(datasets, "load_cifar_pickles", _fail)
    with pytest.raises(AssertionError, match="decoded"):
        load_dataset("split-cifar10", tmp_path, cache_dir=cache)


def test_download_uses_torchvision_then_reads_pickles(tmp_path, monkeypatch):
    calls = []

    def fake_cifar10(root, train, download):
        calls.append((root, download))
        write_cifar10(Path(root), per_class=1)

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    ds = load_dataset("split-cifar10", tmp_path / "dl", cache_dir=tmp_path / "c", download=True)
    assert calls == [(str(tmp_path / "dl"), True)] and len(ds.train_y) == 50
    load_dataset("split-cifar10", tmp_path / "dl", cache_dir=tmp_path / "c", download=True)
    assert len(calls) == 1  # already there: not fetched again


# ---------------------------------------------------------------- bad input


def _seven_class_folder(root: Path) -> Path:
    for split in ("train", "test"):
        for c in range(7):
            (root / split / f"c{c}").mkdir(parents=True)
            Image.new("RGB", (4, 4)).save(root / split / f"c{c}" / "0.png")
    return root


@pytest.mark.parametrize(
    ("call", "flags"),
    [
        (lambda p: load_dataset("split-cifar10", p / "nope", cache_dir=p), ["--data-root", "--download"]),
        (lambda p: load_dataset("split-cifar10", p, cache_dir=p / "c"), ["--data-root", "cifar-10-batches-py"]),
        (lambda p: load_dataset("split-cifar10", None, cache_dir=p), ["--data-root"]),
        (lambda p: load_dataset("split-cifar10", _seven_class_folder(p / "s"), cache_dir=p / "c"), ["--data-root"]),
        (lambda p: make_stream("split-digits", n_tasks=3), ["--n-tasks from 1, 2, 5, 10"]),
        (lambda p: make_stream("split-digits", n_tasks=0), ["--n-tasks"]),
        (lambda p: make_stream("split-cifar1000"), ["lifelong-kd list", "split-cifar10"]),
        (lambda p: make_stream("image-folder", data_root=p), ["--n-tasks"]),
        (lambda p: make_stream("split-digits", max_train_per_class=0), ["--max-train-per-class"]),
        (lambda p: make_stream("image-folder", data_root=p, n_tasks=1, download=True), ["--download"]),
    ],
    ids=[
        "missing-root",
        "unrecognised-root",
        "no-root",
        "wrong-class-count",
        "tasks-not-dividing",
        "zero-tasks",
        "unknown-benchmark",
        "image-folder-needs-n-tasks",
        "max-train-zero",
        "download-image-folder",
    ],
)
def test_bad_input_names_the_fix(tmp_path, call, flags):
    with pytest.raises(UsageError) as info:
        call(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    for flag in flags:
        assert flag in message


def test_tasks_not_dividing_message_exact():
    x, y, tx, ty = labelled_tensors(num_classes=10, per_class=1)
    with pytest.raises(UsageError, match=r"^10 classes do not split into 3 tasks: choose --n-tasks from 1, 2, 5, 10$"):
        tensor_stream(x, y, tx, ty, n_tasks=3)


@pytest.mark.parametrize(
    "bad",
    [
        {"train_x": np.zeros((4, 1, 2, 2), dtype=np.float32)},
        {"train_x": np.zeros((4, 2, 2), dtype=np.uint8)},
        {"test_x": np.zeros((2, 3, 2, 2), dtype=np.uint8)},
        {"train_y": np.array([0, 1, 3, 3])},
        {"train_y": np.array([0.0, 1.0, 0.0, 1.0])},
        {"test_y": np.array([0, 2])},
    ],
)
def test_tensor_stream_validation(bad):
    args = {
        "train_x": torch.zeros(4, 1, 2, 2, dtype=torch.uint8),
        "train_y": torch.tensor([0, 1, 0, 1]),
        "test_x": np.zeros((2, 1, 2, 2), dtype=np.uint8),
        "test_y": np.array([0, 1]),
    }
    args.update(bad)
    with pytest.raises(UsageError):
        tensor_stream(**args, n_tasks=1)


# ---------------------------------------------------------------- digits


def test_split_digits_stream():
    stream = make_stream("split-digits", data_root=Path("/ignored"))
    assert len(stream) == 5 and stream.num_classes == 10 and stream.image_shape == (1, 8, 8)
    assert not stream.hflip and stream.crop_padding == 1
    ds = load_digits_dataset()
    assert len(ds.train_y) + len(ds.test_y) == 1797 and ds.train_x.max() == 255
    train_counts, test_counts = np.bincount(ds.train_y), np.bincount(ds.test_y)
    np.testing.assert_allclose(test_counts / (train_counts + test_counts), 0.2, atol=0.01)  # stratified
    rows = {r.tobytes() for r in ds.train_x.reshape(len(ds.train_x), -1)}
    test_rows = {r.tobytes() for r in ds.test_x.reshape(len(ds.test_x), -1)}
    assert not rows & test_rows  # disjoint split
    assert sum(len(t.train) for t in stream) == len(ds.train_y)


def test_digits_split_is_seeded():
    a, b, c = load_digits_dataset(0), load_digits_dataset(0), load_digits_dataset(1)
    np.testing.assert_array_equal(a.test_x, b.test_x)
    assert not np.array_equal(a.test_x, c.test_x)


# ---------------------------------------------------------------- the real data, if present


@pytest.mark.skipif(not REAL_ZIP.is_file(), reason="shared/data/cifar10-jpeg.zip not present")
def test_real_cifar10_zip_listing():
    source = datasets._resolve_source("split-cifar10", REAL_ZIP.parent)
    assert source.kind == "image-folder" and source.path == REAL_ZIP
    listing = list_image_folder(REAL_ZIP)
    assert listing.classes == CIFAR10_NAMES
    assert len(listing.train) == 50_000 and len(listing.test) == 10_000
    assert listing.train[0] == ("cifar10/train/airplane/0000.jpg", 0) and listing.test[-1][1] == 9

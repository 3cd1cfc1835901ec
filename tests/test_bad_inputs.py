"""The bad-input sweep: every input below gets exit 2 and one line naming the fix, with no traceback,
before anything is trained, and leaves every file as it was (the output folder, the data, the cache).

Each case writes what it needs under the test's folder and returns the command; the test compares a
snapshot of that folder (every path, its bytes and mode) before and after the command.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from fake_data import dump_pickle, write_cifar10, write_image_tree, zip_tree
from fake_runs import fake_run
from PIL import Image

from lifelong_kd.cli import main
from lifelong_kd.results import write_results

DIGITS = ["run", "--benchmark", "split-digits", "--model", "small-cnn", "--epochs", "1", "--quiet",
          "--max-train-per-class", "8"]
Case = Callable[[Path], list[str]]


def digits(*flags: str) -> Case:
    return lambda root: [*DIGITS, *flags, "--out", str(root / "out")]


def files_run(benchmark: str, data: Callable[[Path], Path], *flags: str) -> Case:
    """A run on the data ``data(root)`` writes, with its cache inside ``root``."""
    return lambda root: ["run", "--benchmark", benchmark, "--data-root", str(data(root)), *flags,
                         "--model", "small-cnn", "--epochs", "1", "--quiet", "--cache-dir", str(root / "cache"),
                         "--out", str(root / "out")]


def image_run(data: Callable[[Path], Path]) -> Case:
    return files_run("image-folder", data, "--n-tasks", "1")


# ---------------------------------------------------------------- data a user may hold


def cifar10(damage: Callable[[Path], None]) -> Callable[[Path], Path]:
    """CIFAR-10 pickles with ``damage`` done to their first training batch."""
    def make(root: Path) -> Path:
        write_cifar10(root / "data", per_class=1)
        damage(root / "data" / "cifar-10-batches-py" / "data_batch_1")
        return root / "data"
    return make


def image_tree(change: Callable[[Path], None] = lambda tree: None) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        write_image_tree(root / "tree")
        change(root / "tree")
        return root / "tree"
    return make


def zipped(change: Callable[[Path], None] = lambda tree: None, patch: Callable[[bytes], bytes] = bytes,
           empty_folder: bool = False) -> Callable[[Path], Path]:
    """The image tree, ``change``d, zipped (stored, uncompressed), with its bytes ``patch``ed."""
    def make(root: Path) -> Path:
        path = zip_tree(image_tree(change)(root), root / "data.zip")
        if empty_folder:
            with zipfile.ZipFile(path, "a") as zf:
                zf.writestr("cifar10/train/dog/", "")
        path.write_bytes(patch(path.read_bytes()))
        return path
    return make


def flip_a_byte_of_the_last_member(data: bytes) -> bytes:
    """Corrupt the stored bytes of the zip's last member: its CRC no longer matches."""
    at = data.rindex(b"IEND") - 8
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def declare_a_huge_member(data: bytes) -> bytes:
    """The central directory says the first image member unpacks to 2**31 bytes."""
    at = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)  # the first member after the top folder
    return data[: at + 24] + struct.pack("<I", 2**31) + data[at + 28 :]


def png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header (with a correct CRC) claims ``width`` x ``height`` pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def write_bomb(tree: Path) -> None:
    (tree / "train" / "cat" / "0001.png").write_bytes(png_claiming(20000, 20000))


def write_large(tree: Path) -> None:
    (tree / "train" / "cat" / "0001.png").write_bytes(png_claiming(5000, 5000))


def resize_one(tree: Path) -> None:
    Image.new("RGB", (9, 9)).save(tree / "train" / "cat" / "0001.png")


def drop_a_test_class(tree: Path) -> None:
    for file in (tree / "test" / "cat").iterdir():
        file.unlink()
    (tree / "test" / "cat").rmdir()


# ---------------------------------------------------------------- runs to compare or plot


def results_with(change: Callable[[dict], None]) -> Callable[[Path], list[str]]:
    """``compare`` on a valid 2-task results.json after ``change``."""
    def make(root: Path) -> list[str]:
        doc = fake_run("lwf", 0, {"class_il": [[90.0, None], [40.0, 80.0]]})
        change(doc)
        write_results(root / "run" / "results.json", doc)
        return ["compare", str(root / "run")]
    return make


def set_cell(value: object) -> Callable[[dict], None]:
    return lambda doc: doc["matrices"]["class_il"][1].__setitem__(0, value)


def old_run(root: Path) -> Path:
    write_results(root / "out" / "results.json", fake_run("lwf", 0, {"class_il": [[90.0]]}))
    return root / "out"


def overwrite_with_missing_data(root: Path) -> list[str]:
    old_run(root)
    return [*files_run("split-cifar10", lambda r: r / "missing")(root), "--overwrite"]


def text_file(root: Path) -> Path:
    (root / "notes.txt").write_text("x")
    return root / "notes.txt"


def not_a_zip(root: Path) -> Path:
    (root / "x.zip").write_bytes(b"PK junk")
    return root / "x.zip"


def blocked_out(root: Path) -> list[str]:
    (root / "file").write_text("x")
    return [*DIGITS, "--out", str(root / "file" / "run")]


def locked_out(root: Path) -> list[str]:
    (root / "locked").mkdir(mode=0o500)
    return [*DIGITS, "--out", str(root / "locked" / "run")]


def compare_two_benchmarks(root: Path) -> list[str]:
    write_results(root / "a" / "results.json", fake_run("lwf", 0, {"class_il": [[90.0]]}, benchmark="one"))
    write_results(root / "b" / "results.json", fake_run("lwf", 0, {"class_il": [[90.0]]}, benchmark="two"))
    return ["compare", str(root / "a"), str(root / "b")]


def plot_into_a_file(root: Path) -> list[str]:
    write_results(root / "run" / "results.json", fake_run("lwf", 0, {"class_il": [[90.0]]}))
    (root / "figures.png").write_text("x")
    return ["plot", str(root / "run"), "-o", str(root / "figures.png")]


def not_json(root: Path) -> list[str]:
    (root / "results.json").write_text("{ not json")
    return ["compare", str(root / "results.json")]


BAD: dict[str, tuple[Case, str]] = {
    # flags
    "negative seed": (digits("--seed", "-1"), "argument --seed: -1 is out of range"),
    "seed over 2**32": (digits("--seed", "4294967296"), "use a seed from 0 to 4294967295"),
    "negative seed in --seeds": (digits("--seeds", "-1", "0"), "argument --seeds: -1 is out of range"),
    "repeated seed": (digits("--seeds", "0", "0"), "repeats a seed: give each seed once"),
    "lr nan": (digits("--lr", "nan"), "--lr takes a finite number"),
    "lr inf": (digits("--lr", "inf"), "--lr takes a finite number"),
    "negative lr": (digits("--lr", "-0.1"), "--lr"),
    "momentum inf": (digits("--momentum", "inf"), "--momentum takes a finite number"),
    "milestones without multistep": (digits("--milestones", "3"),
                                     "--milestones takes effect only with --schedule multistep"),
    "multistep without milestones": (digits("--schedule", "multistep"), "--schedule multistep needs --milestones"),
    "data root with digits": (digits("--data-root", "somewhere"), "split-digits reads scikit-learn's bundled digits"),
    "zero epochs": (digits("--epochs", "0"), "argument --epochs: 0 is out of range"),
    "batch of one": (digits("--batch-size", "1"), "argument --batch-size: 1 is out of range"),
    "class order not a permutation": (digits("--class-order", "0,0,1,2,3,4,5,6,7,8"), "--class-order"),
    "tasks not dividing the classes": (digits("--n-tasks", "3"), "choose --n-tasks from 1, 2, 5, 10"),
    "checkpoint interval not a number": (digits("--checkpoint-every", "often"), "give steps (500), minutes (10m)"),
    "negative checkpoint interval": (digits("--checkpoint-every=-5m"), "give steps (500), minutes (10m)"),
    "unknown strategy": (digits("--strategy", "ewc"), "argument --strategy: invalid choice: 'ewc'"),
    "zero memory": (digits("--strategy", "er", "--memory", "0"), "--memory"),
    "icarl memory below the classes": (digits("--strategy", "icarl", "--memory", "5"),
                                       "--memory 5 is smaller than the stream's 10 classes"),
    "balanced memory below the classes": (digits("--strategy", "er", "--memory-policy", "class-balanced",
                                                 "--memory", "3"), "use --memory 10 or more"),
    # the output folder
    "empty out": (lambda root: [*DIGITS, "--out", ""], "--out needs a folder name"),
    "no out": (lambda root: DIGITS, "run needs --out OUT"),
    "out below a file": (blocked_out, "cannot write to --out"),
    "out is a file": (lambda root: [*DIGITS, "--out", str(old_run(root) / "results.json")], "is a file"),
    "out holds a run": (lambda root: [*DIGITS, "--out", str(old_run(root))], "pass another --out, or --overwrite"),
    "overwrite with bad data keeps the old run": (overwrite_with_missing_data, "does not exist"),
    "resume without a checkpoint": (lambda root: ["run", "--resume", str(root)], "no checkpoint.pt there"),
    "resume into another out": (lambda root: ["run", "--resume", str(root / "a"), "--out", str(root / "b")],
                                "a run resumes in its own folder; drop --out"),
    # data files
    "missing data root": (files_run("split-cifar10", lambda root: root / "missing"), "does not exist"),
    "data root a text file": (files_run("split-cifar10", text_file), "is a file but not a .zip"),
    "truncated cifar pickle": (files_run("split-cifar10", cifar10(lambda f: f.write_bytes(f.read_bytes()[:500]))),
                               "is not a readable CIFAR pickle"),
    "0-byte cifar pickle": (files_run("split-cifar10", cifar10(lambda f: f.write_bytes(b""))),
                            "is not a readable CIFAR pickle"),
    "cifar pickle of a list": (files_run("split-cifar10", cifar10(lambda f: f.write_bytes(b"\x80\x04]\x94."))),
                               "not a CIFAR batch"),
    "cifar pickle without data": (files_run("split-cifar10", cifar10(lambda f: dump_pickle(f, {"labels": [0]}))),
                                  "has no 'data' entry"),
    "zip member with a bad CRC": (image_run(zipped(patch=flip_a_byte_of_the_last_member)), "the zip is damaged"),
    "zip member with a huge declared size": (image_run(zipped(patch=declare_a_huge_member)),
                                             "more than an image here may hold"),
    "not a zip": (image_run(not_a_zip), "cannot read zip"),
    "png decompression bomb": (image_run(image_tree(write_bomb)), "at most 16,777,216 pixels are read"),
    "png bomb in a zip": (image_run(zipped(write_bomb)), "at most 16,777,216 pixels are read"),
    "png claiming 5000x5000": (image_run(image_tree(write_large)), "its header claims 5000x5000 pixels"),
    "image not decodable": (image_run(image_tree(lambda t: (t / "train" / "cat" / "0001.png").write_bytes(b"x"))),
                            "cannot decode image"),
    "empty class folder": (image_run(image_tree(lambda t: (t / "train" / "dog").mkdir())),
                           "class folder 'train/dog' holds no images"),
    "empty class folder in a zip": (image_run(zipped(empty_folder=True)),
                                    "class folder 'cifar10/train/dog' holds no images"),
    "images of two sizes": (image_run(image_tree(resize_one)), "resize all images to one size"),
    "test classes differ": (image_run(image_tree(drop_a_test_class)), "give both splits the same class folders"),
    "three classes for cifar-10": (files_run("split-cifar10", image_tree()),
                                   "has 3 classes but split-cifar10 needs 10"),
    "image folder without n-tasks": (lambda root: files_run("image-folder", image_tree())(root)[:-2]
                                     + ["--out", str(root / "out")], "--n-tasks"),
    # results for compare and plot
    "matrix of strings": (results_with(lambda doc: doc["matrices"].__setitem__("class_il", [["90", None],
                                                                                             ["40", "80"]])),
                          "matrices.class_il[0][0] is \"90\", not a percentage"),
    "ragged matrix": (results_with(lambda doc: doc["matrices"]["class_il"][1].pop()),
                      "matrices.class_il row 2 is not a list of 2 values"),
    "NaN in a matrix": (results_with(set_cell(float("nan"))), "matrices.class_il[1][0] is NaN, not a percentage"),
    "null where a task was evaluated": (results_with(set_cell(None)), "[1][0] is null, not a percentage"),
    "accuracy over 100": (results_with(set_cell(140.0)), "[1][0] is 140.0, not a percentage"),
    "metric that the matrix does not give": (
        results_with(lambda doc: doc["metrics"]["class_il"].__setitem__("final_accuracy", 99.0)),
        "metrics.class_il.final_accuracy is 99.0, but the matrix gives 60"),
    "NaN metric": (results_with(lambda doc: doc["metrics"]["class_il"].__setitem__("forgetting", float("nan"))),
                   "metrics.class_il.forgetting is nan"),
    "not json": (not_json, "is not valid JSON"),
    "missing results": (lambda root: ["compare", str(root / "nothing")], "does not exist"),
    "two benchmarks": (compare_two_benchmarks, "runs of different benchmarks cannot be compared"),
    "plot -o names a file": (plot_into_a_file, "-o '"),
}
if os.geteuid() != 0:  # root writes anywhere
    BAD["unwritable out"] = (locked_out, "is not writable")
if not torch.cuda.is_available():
    BAD["cuda without a GPU"] = (digits("--device", "cuda"), "no CUDA device is visible")


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every path under ``root``: its mode and its bytes' hash (folders: their mode alone)."""
    return {
        path.relative_to(root).as_posix(): (
            path.stat().st_mode, hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        )
        for path in sorted(root.rglob("*"))
    }


def exit_code(argv: list[str]) -> int:
    """``lifelong-kd argv``'s exit status, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as done:
        return int(done.code)


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_input_is_one_line_exit_2_and_changes_nothing(case, tmp_path, capsys, monkeypatch):
    make, message = BAD[case]
    root = tmp_path / "case"
    root.mkdir()
    argv = make(root)
    monkeypatch.chdir(root)
    before = snapshot(root)
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert snapshot(root) == before


def test_the_sweep_has_40_cases():
    assert len(BAD) >= 40


def test_results_json_is_readable_by_others_as_open_would_create_it(tmp_path):
    assert main([*DIGITS, "--out", str(tmp_path / "run")]) == 0
    mode = stat.S_IMODE((tmp_path / "run" / "results.json").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "completed"

"""Bad inputs: each gets exit 2 and one line naming the fix, with no traceback, before anything is
trained, and leaves the output folder as it was."""

from __future__ import annotations

import json
import os
import stat

import pytest

from lifelong_kd.cli import main

DIGITS = ["run", "--benchmark", "split-digits", "--model", "small-cnn", "--epochs", "1", "--quiet",
          "--max-train-per-class", "8"]

BAD = {
    "negative seed": (["--seed", "-1"], "argument --seed: -1 is out of range"),
    "seed over 2**32": (["--seed", "4294967296"], "use a seed from 0 to 4294967295"),
    "negative seed in --seeds": (["--seeds", "-1", "0"], "argument --seeds: -1 is out of range"),
    "lr nan": (["--lr", "nan"], "--lr takes a finite number"),
    "lr inf": (["--lr", "inf"], "--lr takes a finite number"),
    "momentum inf": (["--momentum", "inf"], "--momentum takes a finite number"),
    "milestones without multistep": (["--milestones", "3"], "--milestones takes effect only with --schedule multistep"),
    "data root with digits": (["--data-root", "somewhere"], "split-digits reads scikit-learn's bundled digits"),
    "multistep without milestones": (["--schedule", "multistep"], "--schedule multistep needs --milestones"),
}


def exit_code(argv: list[str]) -> int:
    """``lifelong-kd argv``'s exit status, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as done:
        return int(done.code)


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys):
    flags, message = BAD[case]
    out = tmp_path / "out"
    assert exit_code([*DIGITS, *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (out / "results.json").exists()


def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*DIGITS, "--out", ""]) == 2
    assert "--out needs a folder name" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_an_out_below_a_file_or_unwritable_is_refused_before_loading(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([*DIGITS, "--out", str(blocker / "run")]) == 2
    assert "cannot write to --out" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main([*DIGITS, "--out", str(locked / "run")]) == 2


def test_results_json_is_readable_by_others_as_open_would_create_it(tmp_path):
    assert main([*DIGITS, "--out", str(tmp_path / "run")]) == 0
    mode = stat.S_IMODE((tmp_path / "run" / "results.json").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "completed"

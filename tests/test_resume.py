"""Kill and resume: a run killed (SIGKILL) anywhere and resumed ends with the matrices of a run never
interrupted, bit for bit; SIGINT and SIGTERM checkpoint and stop; --resume checks its flags.

Each run is a forked child of the test process (no interpreter start-up or imports per run), single-threaded
so that every run, reference included, computes with the same kernels; the child dies at a kill
point of ``lifelong_kd.faults``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import tiny_config, tiny_model
from fake_runs import counted_per_task

from lifelong_kd import faults
from lifelong_kd.checkpoint import CHECKPOINT
from lifelong_kd.cli import main
from lifelong_kd.runner import Runner
from lifelong_kd.strategies import STRATEGIES as STRATEGIES_BY_NAME
from lifelong_kd.strategies.finetune import Finetune

pytest.importorskip("sklearn.datasets")  # imported once here, so forked children do not import it again

RUN = ["run", "--benchmark", "split-digits", "--model", "small-cnn", "--epochs", "2", "--batch-size", "16",
       "--max-train-per-class", "12", "--n-tasks", "5", "--checkpoint-every", "3", "--quiet"]
STRATEGIES = {
    "finetune": [],
    "lwf": [],
    "derpp": ["--memory", "30"],
    "icarl": ["--memory", "30"],
    "lucir": ["--memory", "30"],
    "bic": ["--memory", "30"],
    "xder": ["--memory", "30"],
    "podnet": ["--memory", "30"],
}
KILL_POINTS = ["step:1", "step:5", "step:9", "memory:2", "evaluate:2", "checkpoint:3", "step:15"]


def in_child(argv: list[str], kill_at: str | None = None) -> int:
    """Run ``lifelong-kd argv`` in a forked child; its exit status, or minus the signal that ended it."""
    pid = os.fork()
    if pid == 0:  # the child
        code = 99
        try:
            torch.set_num_threads(1)
            os.environ.pop(faults.ENV, None)
            if kill_at is not None:
                os.environ[faults.ENV] = kill_at
            faults._passed.clear()
            code = main(argv)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def matrices(out: Path) -> dict:
    doc = json.loads((out / "results.json").read_text())
    assert doc["status"] == "completed"
    return doc["matrices"]


def assert_equal(a, b, where: str = "") -> None:
    """``a`` and ``b`` (tensors in plain containers) are equal, every tensor bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def counted_cost(out: Path) -> dict:
    """The run's cost but the measured times and peak memory: what was counted (images, steps, FLOPs)."""
    cost = json.loads((out / "results.json").read_text())["cost"]
    return {"per_task": counted_per_task(cost), "flops_per_step": cost["flops_per_step"]}


def assert_same_end(out: Path, reference: Path) -> None:
    """The two runs ended with the same matrices, the same counted cost and the same final state: model,
    teacher, the strategy's memory and class means, every random generator."""
    assert matrices(out) == matrices(reference)
    assert counted_cost(out) == counted_cost(reference)
    final, expected = (torch.load(path / CHECKPOINT, weights_only=True) for path in (out, reference))
    for key in ("position", "task_sizes", "model", "teacher", "strategy", "generator", "random"):
        assert_equal(final[key], expected[key], key)


@pytest.fixture(scope="module", autouse=True)
def warm_kernels(tmp_path_factory) -> None:
    """One run in this process first: the children inherit its loaded data and compiled CPU kernels."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, flags in STRATEGIES.items():
            assert main([*RUN, "--strategy", name, *flags, "--out", str(tmp_path_factory.mktemp("warm") / name)]) == 0
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, Path]:
    """Each strategy's run, never interrupted: its folder."""
    root = tmp_path_factory.mktemp("reference")
    for name, flags in STRATEGIES.items():
        assert in_child([*RUN, "--strategy", name, *flags, "--out", str(root / name)]) == 0
    return {name: root / name for name in STRATEGIES}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_a_run_killed_anywhere_resumes_to_the_same_matrices(strategy, references, tmp_path):
    killed = 0
    for point in KILL_POINTS:
        out = tmp_path / point.replace(":", "-")
        status = in_child([*RUN, "--strategy", strategy, *STRATEGIES[strategy], "--out", str(out)], point)
        if status == 0:  # this strategy never passes that point (finetune has no memory)
            continue
        assert status == -9, point
        killed += 1
        assert in_child(["run", "--resume", str(out), "--quiet"]) == 0, point
        assert_same_end(out, references[strategy])
    assert killed >= 6


def test_killed_twice_resumes_to_the_same_matrices(references, tmp_path):
    out = tmp_path / "twice"
    assert in_child([*RUN, "--strategy", "derpp", "--memory", "30", "--out", str(out)], "step:7") == -9
    assert in_child(["run", "--resume", str(out), "--quiet"], "step:8") == -9
    assert in_child(["run", "--resume", str(out), "--quiet"]) == 0
    assert_same_end(out, references["derpp"])


@pytest.mark.parametrize(("sent", "code"), [("INT", 130), ("TERM", 143)])
def test_sigint_and_sigterm_checkpoint_and_stop(references, tmp_path, capfd, sent, code):
    out = tmp_path / "run"
    assert in_child([*RUN, "--strategy", "lwf", "--out", str(out)], f"step:12:{sent}") == code
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lifelong-kd: interrupted in task ")
    assert err[0].endswith(f"resume with `lifelong-kd run --resume {out}`")
    assert json.loads((out / "results.json").read_text())["status"] == "interrupted"
    assert in_child(["run", "--resume", str(out), "--quiet"]) == 0
    assert_same_end(out, references["lwf"])


def test_resume_refuses_other_settings_and_takes_its_own(references, tmp_path, capsys):
    out = tmp_path / "run"
    assert in_child([*RUN, "--strategy", "lwf", "--out", str(out)], "step:5") == -9
    assert main(["run", "--resume", str(out), "--lr", "0.5", "--epochs", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--lr 0.5 (checkpoint: None)" in err and "--epochs 3 (checkpoint: 2)" in err
    assert main(["run", "--resume", str(out), "--epochs", "1"]) == 2  # given at its default value: still refused
    assert "--epochs 1 (checkpoint: 2)" in capsys.readouterr().err
    assert in_child(["run", "--resume", str(out), "--strategy", "lwf", "--epochs", "2"]) == 0  # agreeing flags
    assert_same_end(out, references["lwf"])


def test_resume_without_a_checkpoint_is_one_usage_error(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "no checkpoint.pt there" in capsys.readouterr().err


def test_a_checkpoint_of_the_python_api_is_not_resumed_by_the_command(tiny_stream, tmp_path, capsys):
    Runner(tiny_model(tiny_stream), Finetune(), tiny_stream, tiny_config(), out_dir=tmp_path, progress=False).run()
    assert main(["run", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "written through the Python API" in err and "Runner.resume_from" in err


def test_an_overwrite_killed_before_its_first_checkpoint_puts_the_old_run_back(references, tmp_path, capsys):
    out = tmp_path / "run"
    old = (references["finetune"] / "results.json").read_text()
    for name in ("results.json", CHECKPOINT):
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_bytes((references["finetune"] / name).read_bytes())
    argv = [*RUN, "--strategy", "finetune", "--out", str(out)]
    assert in_child([*argv, "--overwrite"], "checkpoint:1") == -9  # killed writing the new run's first checkpoint
    assert not (out / CHECKPOINT).exists()
    assert main(argv) == 2  # without --overwrite: the old run, put back, is not replaced
    err = capsys.readouterr().err.splitlines()
    note = f"put back the run in '{out}' that an interrupted --overwrite had moved aside"
    assert err[0] == f"lifelong-kd: warning: {note}"
    assert "is not empty" in err[1] and (out / "results.json").read_text() == old


def test_multi_seed_runs_resume_seed_by_seed(tmp_path):
    out = tmp_path / "seeds"
    argv = [*RUN, "--strategy", "finetune", "--seeds", "0", "1"]
    assert in_child([*argv, "--out", str(tmp_path / "reference")]) == 0
    assert in_child([*argv, "--out", str(out)], "step:30") == -9  # in seed 1: seed 0 finished
    assert json.loads((out / "seed_0" / "results.json").read_text())["status"] == "completed"
    assert in_child(["run", "--resume", str(out), "--quiet"]) == 0
    for seed in (0, 1):
        assert matrices(out / f"seed_{seed}") == matrices(tmp_path / "reference" / f"seed_{seed}")


class ExplodesAboveLr(Finetune):
    """Finetune whose loss is NaN in task 2 when lr > 0.1: a run that a lower lr rescues."""

    name = "explodes"

    def loss(self, ctx, step):
        value = super().loss(ctx, step)
        return value * float("nan") if ctx.task.index == 1 and self.hparams["lr"] > 0.1 else value


def test_a_nan_keeps_the_last_good_checkpoint_and_a_lower_lr_resumes_from_the_last_task(tmp_path, capsys,
                                                                                        monkeypatch):
    monkeypatch.setitem(STRATEGIES_BY_NAME, "explodes", ExplodesAboveLr)
    out = tmp_path / "run"
    assert main([*RUN, "--strategy", "explodes", "--lr", "0.5", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the loss became nan in task 2" in err and f"--resume {out} --lr" in err
    failed = json.loads((out / "results.json").read_text())
    assert failed["status"].startswith("failed: the loss became nan") and failed["completed_tasks"] == 1
    assert torch.load(out / CHECKPOINT, weights_only=True)["position"]["task"] == 1  # the end of task 1
    assert main(["run", "--resume", str(out), "--epochs", "3", "--lr", "0.05"]) == 2  # only lr and amp may change
    assert "--epochs 3 (checkpoint: 2) differ" in capsys.readouterr().err
    assert main(["run", "--resume", str(out), "--lr", "0.05", "--quiet"]) == 0
    done = json.loads((out / "results.json").read_text())
    assert done["status"] == "completed" and done["config"]["hparams"]["lr"] == 0.05
    assert done["config"]["changes"] == [{"from_task": 2, "setting": "lr", "was": 0.5, "now": 0.05}]
    assert done["matrices"]["class_il"][0] == failed["matrices"]["class_il"][0]
    assert all(value is not None for value in done["matrices"]["class_il"][-1])


def test_a_budgeted_run_with_anytime_points_resumes_to_the_same_record(tmp_path):
    """Killed inside LwF's warm-up and inside its budgeted main phase: the resumed run spends the same budget,
    takes the same anytime points (none twice, none lost) and ends as the uninterrupted run."""
    flags = ["--strategy", "lwf", "--budget-steps", "7", "--eval-every", "3"]
    assert in_child([*RUN, *flags, "--out", str(tmp_path / "whole")]) == 0
    for point in ("step:9", "step:16"):
        out = tmp_path / point.replace(":", "-")
        assert in_child([*RUN, *flags, "--out", str(out)], point) == -9
        assert in_child(["run", "--resume", str(out), "--quiet"]) == 0
        assert_same_end(out, tmp_path / "whole")
        anytime = json.loads((out / "results.json").read_text())["anytime"]
        assert anytime == json.loads((tmp_path / "whole" / "results.json").read_text())["anytime"]
    cost = json.loads((tmp_path / "whole" / "results.json").read_text())["cost"]
    assert [task["main_steps"] for task in cost["per_task"]] == [7] * 5

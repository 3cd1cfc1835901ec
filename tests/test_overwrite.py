"""``--overwrite`` replaces the old run only once the new one has written its first files, and leaves
nothing of the old run to pass for the new one."""

from __future__ import annotations

import json

from fake_runs import fake_run

from lifelong_kd.cli import main
from lifelong_kd.outdir import set_aside_path
from lifelong_kd.results import write_results
from lifelong_kd.strategies import STRATEGIES
from lifelong_kd.strategies.finetune import Finetune

DIGITS = ["run", "--benchmark", "split-digits", "--model", "small-cnn", "--epochs", "1", "--quiet",
          "--max-train-per-class", "8", "--strategy", "finetune"]


class ExplodesInTaskOne(Finetune):
    name = "explodes"

    def loss(self, ctx, step):
        return super().loss(ctx, step) * float("nan")


def test_a_new_run_that_fails_in_task_1_replaces_the_old_completed_run(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert main([*DIGITS, "--out", str(out)]) == 0
    (out / "notes.txt").write_text("from the old run")
    monkeypatch.setitem(STRATEGIES, "explodes", ExplodesInTaskOne)
    assert main([*DIGITS, "--strategy", "explodes", "--out", str(out), "--overwrite"]) == 1
    doc = json.loads((out / "results.json").read_text())
    assert doc["status"].startswith("failed: the loss became nan in task 1") and doc["completed_tasks"] == 0
    assert doc["config"]["strategy"] == "explodes"
    assert not (out / "notes.txt").exists() and not set_aside_path(out).exists()


def test_overwriting_a_seed_group_removes_its_stale_seeds(tmp_path, capsys):
    out = tmp_path / "group"
    for seed in (0, 7):
        write_results(out / f"seed_{seed}" / "results.json", fake_run("finetune", seed, {"class_il": [[90.0]]}))
    assert main([*DIGITS, "--seeds", "0", "--out", str(out), "--overwrite"]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["aggregate.json", "seed_0"]
    capsys.readouterr()
    assert main(["compare", str(out)]) == 0
    assert "| finetune | 1 (0) |" in capsys.readouterr().out
    assert not set_aside_path(out).exists()

"""``lifelong_kd.run``: the same settings, validation and results as ``lifelong-kd run``; no files without ``out``."""

import json
from pathlib import Path

import pytest
from fake_runs import counted_per_task

import lifelong_kd
from lifelong_kd.api import negatable, run_argv
from lifelong_kd.cli import build_parser, main
from lifelong_kd.errors import UsageError

pytest.importorskip("sklearn.datasets")

DIGITS = {"benchmark": "split-digits", "model": "small-cnn", "epochs": 1, "batch_size": 16,
          "max_train_per_class": 20, "n_tasks": 2, "seed": 0}


def comparable(doc: dict) -> dict:
    """What two runs of the same settings share: everything but times, the machine and the command line (as
    results.json holds it: tuples are lists there)."""
    doc = json.loads(json.dumps(doc))
    return {"matrices": doc["matrices"], "metrics": doc["metrics"], "curves": doc["curves"], "status": doc["status"],
            "config": {k: v for k, v in doc["config"].items() if k != "command"},
            "cost": counted_per_task(doc["cost"])}


def test_run_argv_spells_the_command():
    flags = negatable(build_parser())
    assert {"channels_last", "sync_bn", "t2"} <= flags and "eval_future" not in flags
    assert run_argv({"strategy": "derpp", "memory": 200, "max_train_per_class": 20, "seeds": [0, 1],
                     "channels_last": False, "quiet": True, "head": None, "eval_future": False, "t2": False},
                    flags) == [
        "run", "--strategy", "derpp", "--memory", "200", "--max-train-per-class", "20", "--seeds", "0", "1",
        "--no-channels-last", "--quiet", "--no-t2"]


@pytest.mark.parametrize("strategy", ["lwf", "derpp"])
def test_the_api_and_the_cli_give_the_same_results(tmp_path, strategy):
    settings = {**DIGITS, "strategy": strategy, **({"memory": 40} if strategy == "derpp" else {})}
    api = lifelong_kd.run(**settings, out=tmp_path / "api", progress=False)
    argv = [flag for key, value in settings.items() for flag in (f"--{key.replace('_', '-')}", str(value))]
    assert main(["run", *argv, "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    cli = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert comparable(api) == comparable(cli)
    assert comparable(json.loads((tmp_path / "api" / "results.json").read_text())) == comparable(cli)


def test_without_out_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    doc = lifelong_kd.run(**DIGITS, strategy="finetune", progress=False)
    assert doc["status"] == "completed" and doc["completed_tasks"] == 2
    assert list(tmp_path.iterdir()) == []


def test_the_api_refuses_what_the_command_refuses(tmp_path):
    with pytest.raises(UsageError, match="invalid choice: 'nope'"):
        lifelong_kd.run(**DIGITS, strategy="nope")
    with pytest.raises(UsageError, match="unrecognized arguments: --colour"):
        lifelong_kd.run(**DIGITS, colour="blue")
    with pytest.raises(UsageError, match="give out="):
        lifelong_kd.run(**{**DIGITS, "seed": None}, seeds=[0, 1])
    aggregate = lifelong_kd.run(**{**DIGITS, "seed": None}, strategy="finetune", seeds=[0, 1], out=tmp_path / "s",
                                progress=False)
    assert aggregate["seeds"] == [0, 1] and (tmp_path / "s" / "aggregate.json").is_file()


def test_the_design_example_method_runs_as_written(tmp_path, monkeypatch, capsys):
    """The 30-line method of DESIGN.md's "Add a method": trained on the digits with its replay and its feature
    term, it keeps the old classes (class-IL far above fine-tuning's ~18 %)."""
    design = (Path(__file__).resolve().parents[1] / "lifelong_kd" / "DESIGN.md").read_text()
    block = design.split("### Add a method", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert len(block.strip().splitlines()) <= 40
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "DESIGN.md", "exec"), {"__name__": "design_example"})
    assert float(capsys.readouterr().out.strip().splitlines()[-1]) > 50

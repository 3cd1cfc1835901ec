"""The README's commands, run exactly as written, in its order, by a new user in an empty folder.

Every ``bash`` line of README.md must be one this file runs (a new command without a test fails
``test_every_readme_command_is_run``). The Split-CIFAR-10 commands read ``data/``, which holds
generated CIFAR-10 pickles in the official layout; where ``../shared/data`` holds the real CIFAR-10,
``test_the_benchmark_command_on_the_real_data`` also runs the benchmark command on it. The install
and test-suite lines are what ``.ci/run`` runs. The Python block runs here too; the Avalanche block
runs in ``tests/test_avalanche.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from fake_data import write_cifar10

from lifelong_kd.cli import main

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
REAL_DATA = REPO.parent / "shared" / "data"


def readme_commands() -> list[str]:
    """Each command of the README's bash blocks, continuations joined, ``&&`` chains split."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            commands += [" ".join(part.split()) for part in line.split("&&") if part.strip()]
    return commands


def run_command(command: str, cwd: Path) -> tuple[int, str]:
    """Run one README command as written; its exit status and standard output."""
    argv = shlex.split(command)
    if argv[0] != "lifelong-kd":
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        return done.returncode, done.stdout + done.stderr
    printed, previous = io.StringIO(), Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(printed):
            try:
                code = main(argv[1:])
            except SystemExit as stop:  # --help
                code = stop.code
    finally:
        os.chdir(previous)
    return code, printed.getvalue()


CI_COMMANDS = {'python -m pip install -e ".[demo]"', 'python -m pip install -e ".[dev]"', "python -m pytest -q"}
REPO_COMMANDS = {"ruff check ."}  # run in the repository, not in the new user's folder


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[int, str]]]:
    """A fresh folder with CIFAR-10 in ``data/``; every README command run there in order."""
    folder = tmp_path_factory.mktemp("new_user")
    write_cifar10(folder / "data", per_class=2)
    ran = {}
    for command in readme_commands():
        if command in CI_COMMANDS:
            continue
        ran[command] = run_command(command, REPO if command in REPO_COMMANDS else folder)
    return folder, ran


def test_every_readme_command_is_run(walkthrough):
    _, ran = walkthrough
    checked = {"lifelong-kd demo", "lifelong-kd list", "lifelong-kd run --help", "ruff check ."}
    checked |= {command for command in ran if command.startswith(("lifelong-kd run --", "lifelong-kd compare",
                                                                   "lifelong-kd plot", "torchrun "))}
    assert set(ran) == checked and len(ran) == 10
    assert all(code == 0 for code, _ in ran.values()), {c: out[-500:] for c, (code, out) in ran.items() if code}
    ci = (REPO / ".ci" / "run").read_text()
    assert 'python -m pip install -q -e ".[dev]" && python -m pytest -q' in ci  # the README's line, quiet


def test_the_demo_shows_distillation_prevent_forgetting(walkthrough):
    """``lifelong-kd demo``, at its defaults (about 10 s here): LwF keeps task-IL where fine-tuning forgets it,
    and DER++, distilling the logits it replays, keeps class-IL too (seeds 0-2 here: 88.9, 83.9, 85.3 against
    fine-tuning's 18.0, 19.7, 18.6)."""
    folder, ran = walkthrough
    demo = folder / "runs" / "demo"
    final = {strategy: json.loads((demo / strategy / "results.json").read_text())["metrics"]
             for strategy in ("finetune", "lwf", "derpp")}
    assert final["lwf"]["task_il"]["forgetting"] < final["finetune"]["task_il"]["forgetting"] - 5
    assert final["derpp"]["class_il"]["final_accuracy"] > final["finetune"]["class_il"]["final_accuracy"] + 50
    assert (demo / "forgetting_curves.png").stat().st_size > 10_000
    assert "| derpp M=200 |" in ran["lifelong-kd demo"][1]


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def test_the_benchmark_commands(walkthrough):
    folder, ran = walkthrough
    derpp = _results(folder / "runs" / "derpp")
    assert derpp["status"] == "completed" and derpp["config"]["strategy"] == "derpp"
    assert derpp["config"]["benchmark"] == "split-cifar10" and derpp["config"]["class_names"][0] == "airplane"
    aggregate = json.loads((folder / "runs" / "er" / "aggregate.json").read_text())
    assert sorted(path.name for path in (folder / "runs" / "er").glob("seed_*")) == ["seed_0", "seed_1", "seed_2"]
    assert aggregate["seeds"] == [0, 1, 2]
    compared = ran["lifelong-kd compare runs/er runs/derpp"][1]
    assert "er M=500" in compared and "derpp M=500" in compared
    assert sorted(path.stem for path in (folder / "figures").glob("*.png")) == [
        "accuracy_matrices", "cost_flops", "cost_seconds", "final_accuracy_forgetting", "forgetting_curves",
        "strategy_comparison"]


def test_help_and_list(walkthrough):
    _, ran = walkthrough
    helped = ran["lifelong-kd run --help"][1]
    groups = re.findall(r"^(\w+)[ :]", helped, re.M)
    assert groups == ["usage", "options", "data", "model", "training", "distillation", "replay", "evaluation",
                      "speed", "output"]
    assert all(name in ran["lifelong-kd list"][1] for name in ("derpp", "podnet", "split-cifar10"))


def test_resume_and_torchrun(walkthrough):
    """``--resume`` on the finished run changes nothing; two processes finish the same command's run."""
    folder, ran = walkthrough
    assert _results(folder / "runs" / "derpp")["completed_tasks"] == 5
    two = _results(folder / "runs" / "derpp-2")
    assert two["status"] == "completed" and two["environment"]["processes"] == "2"


def test_the_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    block = README.split("## From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    assert float(capsys.readouterr().out.strip().splitlines()[-1]) > 50  # DER++'s class-IL on the digits
    assert list(tmp_path.iterdir()) == []  # nothing written without out


def test_the_readme_is_short_and_its_links_resolve():
    assert len(README.splitlines()) <= 200
    for doc in (REPO / "README.md", REPO / "lifelong_kd" / "GUIDE.md", REPO / "lifelong_kd" / "DESIGN.md",
                REPO / "benchmarks" / "README.md"):
        text = doc.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith("http"):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            assert file.exists(), f"{doc.name}: {target}"
            if anchor and file.suffix == ".md":
                assert anchor in markdown_anchors(file.read_text()), f"{doc.name}: {target}"


def markdown_anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="the real CIFAR-10 (../shared/data) is not here")
def test_the_benchmark_command_on_the_real_data(tmp_path):
    """The README's Split-CIFAR-10 command as written, with ``data`` holding the real CIFAR-10 (CI; ~6 min)."""
    command = next(c for c in readme_commands() if c.startswith("lifelong-kd run --benchmark split-cifar10"))
    (tmp_path / "data").symlink_to(REAL_DATA)
    code, printed = run_command(command + " --quiet", tmp_path)
    doc = _results(tmp_path / "runs" / "derpp")
    assert code == 0 and doc["status"] == "completed"
    assert doc["config"]["max_train_per_class"] is None  # all 50,000 images
    assert doc["metrics"]["class_il"]["final_accuracy"] > 35  # DER++ at M = 500, 1 epoch (benchmarks: about 49)

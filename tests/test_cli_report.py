import json

import numpy as np
import pytest
from fake_runs import FINETUNE, error_line, fake_docs, fake_run, write_fake_runs

from lifelong_kd import metrics
from lifelong_kd.cli import main
from lifelong_kd.report import compare_table
from lifelong_kd.results import write_results

MAGIC = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}
FILES = {
    "curves": ["forgetting_curves"],
    "matrix": ["accuracy_matrices"],
    "compare": ["strategy_comparison", "final_accuracy_forgetting"],
}


@pytest.fixture
def runs(tmp_path):
    return write_fake_runs(tmp_path / "runs")


@pytest.mark.parametrize("kind,fmt", [("curves", "png"), ("matrix", "svg"), ("compare", "pdf"), ("all", "png")])
def test_plot_writes_the_figures_of_each_kind(kind, fmt, runs, tmp_path, capsys):
    out = tmp_path / "figures"
    assert main(["plot", str(runs), "-o", str(out), "--kind", kind, "--format", fmt]) == 0
    names = [name for k, files in FILES.items() if kind in (k, "all") for name in files]
    expected = sorted(out / f"{name}.{fmt}" for name in names)
    assert sorted(out.iterdir()) == expected
    for path in expected:
        assert path.read_bytes().startswith(MAGIC[fmt]) and path.stat().st_size > 5_000
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"wrote {path}" for path in sorted(expected, key=names_order(names))]


def names_order(names):
    return lambda path: names.index(path.stem)


def test_compare_prints_the_markdown_table(runs, capsys):
    assert main(["compare", str(runs / "finetune"), str(runs / "er" / "results.json")]) == 0
    printed = capsys.readouterr().out
    assert printed == compare_table(fake_docs()) + "\n"
    assert "| finetune | 2 (0, 1) | completed 2/2 | 40.00 ± 7.07 | 55.00 ± 10.61 |" in printed


@pytest.mark.parametrize("command", ["plot", "compare"])
def test_bad_runs_exit_2_with_one_line(command, runs, tmp_path, capsys):
    out = ["-o", str(tmp_path / "figures")] if command == "plot" else []
    (tmp_path / "empty").mkdir()
    assert main([command, str(tmp_path / "empty"), *out]) == 2
    assert "no results.json under" in error_line(capsys)
    corrupt = runs / "er" / "results.json"
    corrupt.write_text(corrupt.read_text()[:50])
    assert main([command, str(runs), *out]) == 2
    assert str(corrupt) in error_line(capsys)
    other = {**fake_docs()[0], "config": {**fake_docs()[0]["config"], "benchmark": "split-digits"}}
    write_results(corrupt, other)
    assert main([command, str(runs), *out]) == 2
    assert "different benchmarks" in error_line(capsys)
    write_results(corrupt, {**other, "matrices": {}})
    assert main([command, str(runs), *out]) == 2
    assert "no accuracy matrices" in error_line(capsys)
    assert not (tmp_path / "figures").exists()


FAILED = {"class_il": [[50.0, 0.0], [20.0, 30.0]], "task_il": [[50.0, None], [40.0, 50.0]]}


def _add_failed_run(runs):
    """finetune seed 2, failed after 2/2 tasks (class-IL final accuracy 25); returns its file."""
    failed = runs / "finetune" / "seed_2" / "results.json"
    write_results(failed, fake_run("finetune", 2, FAILED, status="failed: loss is nan"))
    return failed


def test_compare_leaves_a_failed_run_out_of_the_mean(runs, capsys):
    failed = _add_failed_run(runs)
    assert main(["compare", str(runs)]) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"lifelong-kd: warning: left out 1 unfinished run (pass --include-incomplete to use "
                            f"them): {failed} (failed: loss is nan, 2/2 tasks)\n")
    completed_only = np.mean([metrics.final_accuracy(m["class_il"]) for m in FINETUNE.values()])
    assert f"| finetune | 2 (0, 1) | completed 2/2 | {completed_only:.2f} ± 7.07 |" in captured.out
    assert main(["compare", str(runs), "--include-incomplete"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("lifelong-kd: warning: included 1 unfinished run (--include-incomplete): ")
    all_three = [metrics.final_accuracy(m["class_il"]) for m in [*FINETUNE.values(), FAILED]]
    row = f"| finetune | 3 (0, 1, 2) | 2 completed, 1 failed (2/2) | {np.mean(all_three):.2f} ± "
    assert row + f"{np.std(all_three, ddof=1):.2f} |" in captured.out


def test_plot_leaves_a_failed_run_out_unless_included(runs, tmp_path, capsys):
    failed = _add_failed_run(runs)
    out = tmp_path / "figures"
    assert main(["plot", str(runs), "-o", str(out), "--kind", "compare"]) == 0
    err = error_line(capsys)
    assert err.startswith("lifelong-kd: warning: left out 1 unfinished run") and str(failed) in err
    assert main(["plot", str(runs), "-o", str(out), "--kind", "compare", "--include-incomplete"]) == 0
    assert "included 1 unfinished run" in error_line(capsys)


@pytest.mark.parametrize("command", ["plot", "compare"])
def test_only_unfinished_runs_exit_2_naming_the_flag(command, runs, tmp_path, capsys):
    out = ["-o", str(tmp_path / "figures")] if command == "plot" else []
    failed = _add_failed_run(runs)
    assert main([command, str(failed), *out]) == 2
    err = error_line(capsys)
    assert err.startswith("lifelong-kd: error: none of the runs finished (1 unfinished run; pass --include-incomplete")
    assert f"{failed} (failed: loss is nan, 2/2 tasks)" in err
    assert not (tmp_path / "figures").exists()
    assert main([command, str(failed), *out, "--include-incomplete"]) == 0


TINY_RUN = ["run", "--benchmark", "split-digits", "--n-tasks", "2", "--max-train-per-class", "8", "--model",
            "small-cnn", "--strategy", "finetune", "--epochs", "1", "--batch-size", "16", "--quiet"]


def test_run_with_seeds_writes_each_seed_and_the_aggregate(tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main([*TINY_RUN, "--seeds", "0", "1", "--out", str(out)]) == 0
    assert sorted(path.relative_to(out).as_posix() for path in out.rglob("*.json")) == [
        "aggregate.json", "seed_0/results.json", "seed_1/results.json"]
    runs = [json.loads((out / f"seed_{seed}" / "results.json").read_text()) for seed in (0, 1)]
    assert [run["config"]["seed"] for run in runs] == [0, 1] and all(run["status"] == "completed" for run in runs)
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["seeds"] == [0, 1] and agg["config"]["strategy"] == "finetune"
    for setting in ("class_il", "task_il"):
        for name, stats in agg["metrics"][setting].items():
            values = [run["metrics"][setting][name] for run in runs]
            assert stats["values"] == values
            assert stats["mean"] == pytest.approx(np.mean(values))
            assert stats["std"] == pytest.approx(np.std(values, ddof=1))
        mean_matrix = np.mean([np.array(run["matrices"][setting], dtype=float) for run in runs], axis=0)
        assert np.array(agg["matrices"][setting], dtype=float) == pytest.approx(mean_matrix, nan_ok=True)
    printed = capsys.readouterr().out
    assert "| finetune | 2 (0, 1) |" in printed and f"aggregate -> {out / 'aggregate.json'}" in printed


def test_seeds_must_be_distinct_and_exclude_seed(tmp_path, capsys):
    assert main([*TINY_RUN, "--seeds", "1", "1", "--out", str(tmp_path / "x")]) == 2
    assert "repeats a seed" in error_line(capsys)
    with pytest.raises(SystemExit) as stop:
        main([*TINY_RUN, "--seed", "0", "--seeds", "1", "2", "--out", str(tmp_path / "x")])
    assert stop.value.code == 2 and "not allowed with argument" in error_line(capsys)
    assert not (tmp_path / "x").exists()

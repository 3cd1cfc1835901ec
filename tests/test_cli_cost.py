import pytest
from fake_runs import JOINT, error_line, fake_cost_docs, fake_run, with_anytime, write_fake_runs

from lifelong_kd.cli import build_parser, main
from lifelong_kd.report import compare_table
from lifelong_kd.results import write_results

OLD_FIGURES = ["forgetting_curves", "accuracy_matrices", "strategy_comparison", "final_accuracy_forgetting"]


def test_compare_with_a_reference_adds_intransigence(tmp_path, capsys):
    runs = write_fake_runs(tmp_path / "runs", fake_cost_docs())
    write_results(tmp_path / "joint" / "results.json", fake_run("joint", 0, JOINT))
    assert main(["compare", str(runs), "--reference", str(tmp_path / "joint")]) == 0
    printed = capsys.readouterr().out
    docs = [fake_cost_docs()[i] for i in (2, 0, 1)]  # the order find_results reads them: er, finetune 0, 1
    assert printed == compare_table(docs, fake_run("joint", 0, JOINT)) + "\n"
    assert "| 42.00 ± 0.00 | 10.0 ± 0.0 | — | 6.00 ± 0.00 |" in printed  # er: intransigence (95-90 + 92-85) / 2
    assert "| 22.50 ± 3.54 | 11.0 ± 1.4 | 48.75 ± 7.07 | 18.50 ± 14.14 |" in printed
    write_results(tmp_path / "short" / "results.json", fake_run("joint", 0, {"class_il": [[95.0, 0.0]]}, n_tasks=2))
    assert main(["compare", str(runs), "--reference", str(tmp_path / "short")]) == 2
    assert "is not a finished run (partial 1/2)" in error_line(capsys)


def test_plot_kinds_cost_and_anytime(tmp_path, capsys):
    docs = fake_cost_docs()
    docs[2] = with_anytime(docs[2], 5, [70.0, 65.0], [5, 5])
    runs = write_fake_runs(tmp_path / "runs", docs)
    out = tmp_path / "cost"
    assert main(["plot", str(runs), "-o", str(out), "--kind", "cost", "--format", "svg"]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["cost_flops.svg", "cost_seconds.svg"]
    assert main(["plot", str(runs), "-o", str(tmp_path / "anytime"), "--kind", "anytime"]) == 0
    assert [path.name for path in (tmp_path / "anytime").iterdir()] == ["anytime.png"]
    out = tmp_path / "all"
    assert main(["plot", str(runs), "-o", str(out)]) == 0
    names = [*OLD_FIGURES, "cost_flops", "cost_seconds", "anytime"]
    assert sorted(path.name for path in out.iterdir()) == sorted(f"{name}.png" for name in names)
    assert all(path.stat().st_size > 5_000 for path in out.iterdir())


def test_all_leaves_out_what_some_run_lacks_and_an_explicit_kind_says_so(tmp_path, capsys):
    runs = write_fake_runs(tmp_path / "runs", fake_cost_docs())  # er has no anytime evaluations
    out = tmp_path / "all"
    assert main(["plot", str(runs), "-o", str(out)]) == 0
    names = [*OLD_FIGURES, "cost_flops", "cost_seconds"]
    assert sorted(path.name for path in out.iterdir()) == sorted(f"{name}.png" for name in names)
    capsys.readouterr()
    assert main(["plot", str(runs), "-o", str(tmp_path / "anytime"), "--kind", "anytime"]) == 2
    assert "--kind anytime: 1 of the 3 runs have no 'anytime' entry" in error_line(capsys)
    assert not (tmp_path / "anytime").exists()


@pytest.mark.parametrize("kind", ["cost", "anytime"])
def test_kinds_are_choices_of_plot(kind):
    assert build_parser().parse_args(["plot", "runs", "-o", "figures", "--kind", kind]).kind == kind

import json

import numpy as np
import pytest
from fake_runs import ER_HPARAMS, FINETUNE, JOINT, fake_cost_docs, fake_docs, fake_run, write_fake_runs

from lifelong_kd import metrics
from lifelong_kd.cost_report import with_intransigence
from lifelong_kd.errors import UsageError
from lifelong_kd.report import (
    aggregate,
    compare_table,
    config_labels,
    find_results,
    group_runs,
    is_complete,
    load_reference,
    load_runs,
    mean_and_std,
    run_labels,
    split_complete,
)
from lifelong_kd.results import write_results


def _random_runs(n_seeds: int, n_tasks: int = 4) -> list[dict]:
    rng = np.random.default_rng(7)
    docs = []
    for seed in range(n_seeds):
        class_il = rng.uniform(0, 100, size=(n_tasks, n_tasks)).round(2).tolist()
        task_il = [[value if j <= i else None for j, value in enumerate(row)] for i, row in enumerate(class_il)]
        docs.append(fake_run("lwf", seed, {"class_il": class_il, "task_il": task_il}))
    return docs


def test_aggregate_is_numpy_mean_and_sample_std():
    docs = _random_runs(3)
    agg = aggregate(docs[::-1])  # the order of the runs does not matter
    assert agg["seeds"] == [0, 1, 2] and "seed" not in agg["config"] and "command" not in agg["config"]
    for setting in ("class_il", "task_il"):
        matrices = [doc["matrices"][setting] for doc in docs]
        for name, function in [("final_accuracy", metrics.final_accuracy), ("forgetting", metrics.forgetting),
                               ("average_incremental_accuracy", metrics.average_incremental_accuracy),
                               ("bwt", metrics.bwt)]:
            values = [function(matrix) for matrix in matrices]
            stats = agg["metrics"][setting][name]
            assert stats["values"] == pytest.approx(values)
            assert stats["mean"] == pytest.approx(np.mean(values))
            assert stats["std"] == pytest.approx(np.std(values, ddof=1))
        curves = np.array([metrics.average_accuracy_curve(matrix) for matrix in matrices])
        assert agg["curves"][setting]["mean"] == pytest.approx(curves.mean(axis=0))
        assert agg["curves"][setting]["std"] == pytest.approx(curves.std(axis=0, ddof=1))
    mean_class_il = np.mean([doc["matrices"]["class_il"] for doc in docs], axis=0)
    assert np.array(agg["matrices"]["class_il"]) == pytest.approx(mean_class_il)
    task_il = agg["matrices"]["task_il"]
    assert task_il[0][1] is None and task_il[1][0] == pytest.approx(np.mean([d["matrices"]["task_il"][1][0]
                                                                            for d in docs]))


def test_one_seed_has_std_zero():
    agg = aggregate(_random_runs(1))
    stats = agg["metrics"]["class_il"]["final_accuracy"]
    assert stats["std"] == 0.0 and stats["mean"] == stats["values"][0]
    assert agg["curves"]["class_il"]["std"] == [0.0] * 4
    mean, std = mean_and_std([[1.0, None]])
    assert mean[0] == 1.0 and np.isnan(mean[1]) and list(std) == [0.0, 0.0]


def test_runs_group_by_config_but_seed_command_and_class_order():
    a = fake_run("er", 0, {"class_il": [[50.0]]}, hparams=ER_HPARAMS, class_order=[1, 0])
    b = fake_run("er", 1, {"class_il": [[70.0]]}, hparams=ER_HPARAMS, class_order=[0, 1])
    other_memory = fake_run("er", 0, {"class_il": [[60.0]]}, hparams={"lr": 0.1, "memory": 500})
    fixed_head = fake_run("er", 0, {"class_il": [[60.0]]}, hparams=ER_HPARAMS, head="fixed")
    groups = group_runs([b, other_memory, a, fixed_head])
    assert [[doc["config"]["seed"] for doc in group] for group in groups] == [[0, 1], [0], [0]]
    assert groups[0] == [a, b]
    configs = [group[0]["config"] for group in groups]
    assert config_labels(configs) == ["er M=200", "er M=500", "er M=200 head=fixed"]
    assert run_labels([a, aggregate([a, b])]) == ["er M=200 (seed 0)", "er M=200 (mean of seeds 0, 1)"]


def test_compare_table_is_mean_and_sample_std_per_strategy():
    expected = "\n".join([
        "tiny: mean ± sample std (ddof=1) over seeds",
        "",
        "| strategy | seeds | status | class-IL final acc | class-IL avg inc acc | class-IL forgetting "
        "| class-IL BWT | task-IL final acc | task-IL avg inc acc | task-IL forgetting | task-IL BWT |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| finetune | 2 (0, 1) | completed 2/2 | 40.00 ± 7.07 | 55.00 ± 10.61 | 70.00 ± 14.14 | -70.00 ± 14.14 "
        "| 62.50 ± 10.61 | 66.25 ± 12.37 | 25.00 ± 7.07 | -25.00 ± 7.07 |",
        "| er M=200 | 1 (3) | completed 2/2 | 65.00 ± 0.00 | 77.50 ± 0.00 | 45.00 ± 0.00 | -45.00 ± 0.00 "
        "| — | — | — | — |",
    ])
    assert compare_table(fake_docs()) == expected


def test_find_results_searches_folders_recursively(tmp_path):
    root = write_fake_runs(tmp_path / "runs")
    (root / "finetune" / "aggregate.json").write_text("{}")
    expected = [root / "er" / "results.json", root / "finetune" / "seed_0" / "results.json",
                root / "finetune" / "seed_1" / "results.json"]
    assert find_results([root]) == expected
    assert find_results([root / "er" / "results.json", root / "finetune"]) == expected
    docs, warnings = load_runs([root])
    assert [doc["config"]["seed"] for doc in docs] == [3, 0, 1] and warnings == []


def _error(function, *args) -> str:
    with pytest.raises(UsageError) as caught:
        function(*args)
    return str(caught.value)


def test_bad_inputs_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no results.json under" in _error(load_runs, [tmp_path / "empty"])
    assert "does not exist" in _error(load_runs, [tmp_path / "nowhere"])
    assert "no runs given" in _error(load_runs, [])
    corrupt = tmp_path / "corrupt" / "results.json"
    corrupt.parent.mkdir()
    corrupt.write_text('{"format": "lifelong_kd.results/1", "config": ')
    assert str(corrupt) in _error(load_runs, [corrupt]) and "not valid JSON" in _error(load_runs, [corrupt])
    no_matrices = {**fake_docs()[0], "matrices": {}}
    write_results(tmp_path / "no_matrices" / "results.json", no_matrices)
    message = _error(load_runs, [tmp_path / "no_matrices"])
    assert "no accuracy matrices" in message and "no_matrices" in message
    write_results(tmp_path / "tiny" / "results.json", fake_docs()[0])
    write_results(tmp_path / "other" / "results.json", fake_run("lwf", 0, {"class_il": [[1.0]]}, benchmark="other"))
    message = _error(load_runs, [tmp_path / "tiny", tmp_path / "other"])
    assert "different benchmarks" in message and "tiny" in message and "other" in message


def test_aggregate_refuses_repeated_seeds_and_unequal_runs():
    run = fake_run("lwf", 0, {"class_il": [[50.0, 0.0], [20.0, 60.0]]})
    assert "seed appears twice" in _error(aggregate, [run, run])
    stopped_early = fake_run("lwf", 1, {"class_il": [[50.0, 0.0]]}, status="failed: loss is nan", n_tasks=2)
    message = _error(aggregate, [run, stopped_early])
    assert "different shapes" in message and "cannot be averaged" in message
    assert "seed 0 (completed, 2/2 tasks), seed 1 (failed: loss is nan, 1/2 tasks)" in message


def test_aggregate_document_is_json(tmp_path):
    agg = aggregate(fake_docs()[:2])
    assert json.loads(json.dumps(agg)) == agg


# finetune seed 2 failed after its last task's evaluation (so its matrix has the group's shape): class-IL
# final accuracy (20 + 30) / 2 = 25, task-IL (40 + 50) / 2 = 45.
FAILED = {"class_il": [[50.0, 0.0], [20.0, 30.0]], "task_il": [[50.0, None], [40.0, 50.0]]}


def _with_unfinished(root):
    """The fake runs plus finetune seed 2, failed after 2/2 tasks; returns the failed run's file."""
    write_fake_runs(root)
    failed = root / "finetune" / "seed_2" / "results.json"
    write_results(failed, fake_run("finetune", 2, FAILED, status="failed: loss is nan"))
    return failed


def test_complete_means_status_completed_after_all_tasks():
    done, failed = fake_docs()[0], fake_run("finetune", 2, FAILED, status="failed: loss is nan")
    running = fake_run("lwf", 0, {"class_il": [[50.0, 0.0]]}, status="running", n_tasks=2)
    short = fake_run("lwf", 1, {"class_il": [[50.0, 0.0]]}, n_tasks=2)  # says completed, 1/2 tasks
    assert [is_complete(doc) for doc in (done, failed, running, short)] == [True, False, False, False]
    assert split_complete([failed, done, running, short]) == ([done], [failed, running, short])


def test_unfinished_runs_are_left_out_of_the_mean_with_one_warning(tmp_path):
    failed = _with_unfinished(tmp_path / "runs")
    docs, warnings = load_runs([tmp_path / "runs"])
    assert [doc["config"]["seed"] for doc in docs] == [3, 0, 1]
    assert warnings == [f"left out 1 unfinished run (pass --include-incomplete to use them): "
                        f"{failed} (failed: loss is nan, 2/2 tasks)"]
    finetune = aggregate([doc for doc in docs if doc["config"]["strategy"] == "finetune"])
    completed_only = [metrics.final_accuracy(m["class_il"]) for m in FINETUNE.values()]
    assert finetune["metrics"]["class_il"]["final_accuracy"]["mean"] == pytest.approx(np.mean(completed_only))
    assert finetune["metrics"]["class_il"]["final_accuracy"]["mean"] == pytest.approx(40.0)
    assert "| finetune | 2 (0, 1) | completed 2/2 | 40.00 ± 7.07 |" in compare_table(docs)


def test_include_incomplete_uses_them_and_says_so(tmp_path):
    failed = _with_unfinished(tmp_path / "runs")
    docs, warnings = load_runs([tmp_path / "runs"], include_incomplete=True)
    assert [doc["config"]["seed"] for doc in docs] == [3, 0, 1, 2]
    assert warnings == [f"included 1 unfinished run (--include-incomplete): {failed} (failed: loss is nan, 2/2 tasks)"]
    finetune = aggregate([doc for doc in docs if doc["config"]["strategy"] == "finetune"])
    all_three = [metrics.final_accuracy(m["class_il"]) for m in [*FINETUNE.values(), FAILED]]
    stats = finetune["metrics"]["class_il"]["final_accuracy"]
    assert stats["mean"] == pytest.approx(np.mean(all_three)) and stats["mean"] == pytest.approx(35.0)
    assert stats["std"] == pytest.approx(np.std(all_three, ddof=1))
    assert (finetune["status"], finetune["completed_tasks"], finetune["statuses"]) == (
        "incomplete", 2, {"completed": 2, "failed": 1})
    assert "| finetune | 3 (0, 1, 2) | 2 completed, 1 failed (2/2) | 35.00 ± 10.00 |" in compare_table(docs)
    assert "| er M=200 | 1 (3) | completed 2/2 |" in compare_table(docs)


def test_status_column_of_unfinished_groups():
    running = [fake_run("lwf", seed, {"class_il": [[50.0 + seed, 0.0]]}, status="running", n_tasks=2)
               for seed in (0, 1)]
    interrupted = fake_run("lwf", 2, {"class_il": [[40.0, 0.0]]}, status="interrupted", n_tasks=2)
    lone = fake_run("er", 0, {"class_il": [[60.0, 0.0]]}, status="failed: loss is nan", n_tasks=2, hparams=ER_HPARAMS)
    table = compare_table([*running, interrupted, lone])
    assert "| lwf | 3 (0, 1, 2) | 2 running, 1 interrupted (1/2) | 47.00 ± 6.08 |" in table  # 50, 51, 40
    assert "| er M=200 | 1 (0) | 1 failed (1/2) | 60.00 ± 0.00 |" in table
    assert run_labels([running[0], aggregate(running)]) == ["lwf (seed 0; running 1/2)",
                                                           "lwf (mean of seeds 0, 1; 2 running (1/2))"]


def test_include_incomplete_with_runs_stopped_at_other_tasks_names_them(tmp_path):
    root = write_fake_runs(tmp_path / "runs")
    stopped = fake_run("finetune", 2, {"class_il": [[50.0, 0.0]]}, status="running", n_tasks=2)
    write_results(root / "finetune" / "seed_2" / "results.json", stopped)
    docs, _ = load_runs([root], include_incomplete=True)
    message = _error(compare_table, docs)
    assert "the runs of finetune have accuracy matrices of different shapes" in message
    assert "seed 0 (completed, 2/2 tasks), seed 1 (completed, 2/2 tasks), seed 2 (running, 1/2 tasks)" in message
    assert "--include-incomplete" in message


def test_all_runs_unfinished_is_an_error_naming_the_flag(tmp_path):
    failed = _with_unfinished(tmp_path / "runs")
    running = tmp_path / "runs" / "lwf" / "results.json"
    write_results(running, fake_run("lwf", 0, {"class_il": [[50.0, 0.0]]}, status="running", n_tasks=2))
    message = _error(load_runs, [failed, running])
    assert message == (f"none of the runs finished (2 unfinished runs; pass --include-incomplete to use them "
                       f"anyway): {failed} (failed: loss is nan, 2/2 tasks), {running} (running, 1/2 tasks)")
    docs, warnings = load_runs([failed, running], include_incomplete=True)
    assert len(docs) == 2 and warnings[0].startswith("included 2 unfinished runs (--include-incomplete): ")


def test_compare_table_adds_cost_anytime_and_intransigence_columns():
    reference = fake_run("joint", 0, JOINT)
    table = compare_table(fake_cost_docs(), reference).splitlines()
    assert table[2].endswith("| task-IL BWT | training TFLOPs | train s | anytime acc | intransigence |")
    assert table[3] == "|---|---|---|" + "---:|" * 12
    # finetune: TFLOPs 20, 25 (sd sqrt(12.5) = 3.54), seconds 10, 12, anytime 53.75, 43.75, intransigence 8.5, 28.5
    assert table[4].endswith("| -25.00 ± 7.07 | 22.50 ± 3.54 | 11.0 ± 1.4 | 48.75 ± 7.07 | 18.50 ± 14.14 |")
    assert table[5].endswith("| — | — | — | — | 42.00 ± 0.00 | 10.0 ± 0.0 | — | 6.00 ± 0.00 |")
    without_reference = compare_table(fake_cost_docs()).splitlines()
    assert without_reference[2].endswith("| training TFLOPs | train s | anytime acc |")
    assert without_reference[5].endswith("| 42.00 ± 0.00 | 10.0 ± 0.0 | — |")
    assert "TFLOPs" not in compare_table(fake_docs())  # old results: the columns of before


def test_aggregate_carries_cost_anytime_and_intransigence_over_seeds():
    finetune = aggregate(fake_cost_docs()[:2])
    flops, seconds = finetune["cost"]["training_flops"], finetune["cost"]["train_seconds"]
    assert flops["values"] == [20e12, 25e12] and flops["mean"] == 22.5e12
    assert flops["std"] == pytest.approx(np.sqrt(2 * 2.5e12**2))
    assert seconds["values"] == pytest.approx([10.0, 12.0]) and seconds["std"] == pytest.approx(np.sqrt(2))
    anytime = finetune["metrics"]["class_il"]["average_anytime_accuracy"]
    assert anytime["values"] == [53.75, 43.75] and anytime["mean"] == 48.75
    reference = fake_run("joint", 0, JOINT)
    with_reference = aggregate(with_intransigence(fake_cost_docs()[:2], reference))
    per_task = with_reference["metrics"]["class_il"]["intransigence_per_task"]
    assert per_task["values"] == [[15.0, 2.0], [35.0, 22.0]] and per_task["mean"] == [25.0, 12.0]
    assert per_task["std"] == pytest.approx([np.sqrt(200)] * 2)
    assert with_reference["metrics"]["class_il"]["intransigence"]["values"] == [8.5, 28.5]
    assert "intransigence" not in with_reference["metrics"]["task_il"]  # the reference has no task-IL
    assert json.loads(json.dumps(with_reference)) == with_reference
    assert "cost" not in aggregate([fake_cost_docs()[0], fake_docs()[1]])  # a run without one: none


def test_bad_references_are_clear_errors(tmp_path):
    docs = fake_cost_docs()
    short = fake_run("joint", 0, {"class_il": [[95.0, 0.0]]}, n_tasks=2)
    assert "reference run completed 1 tasks, fewer than the 2 of the run" in _error(compare_table, docs, short)
    write_results(tmp_path / "joint" / "results.json", fake_run("joint", 0, JOINT))
    assert load_reference(tmp_path / "joint", docs)["config"]["strategy"] == "joint"
    write_results(tmp_path / "three" / "results.json", fake_run("joint", 0, {"class_il": [[95.0, 0.0, 0.0]]},
                                                                n_tasks=3))
    assert "has 3 tasks, the runs 2" in _error(load_reference, tmp_path / "three", docs)
    assert "holds 2 results files" in _error(load_reference, tmp_path, docs)
    write_results(tmp_path / "other" / "results.json", fake_run("joint", 0, JOINT, benchmark="other"))
    assert "different benchmarks" in _error(load_reference, tmp_path / "other", docs)

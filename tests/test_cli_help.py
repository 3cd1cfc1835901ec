"""`lifelong-kd run --help`: options grouped as a user looks for them, every default shown."""

import argparse

from lifelong_kd.cli import build_parser, run_subparser

GROUPS = ["data", "model", "training", "distillation", "replay", "evaluation", "speed", "output"]


def run_parser() -> argparse.ArgumentParser:
    return run_subparser(build_parser())


def test_the_groups_come_in_order_and_hold_the_strategy_settings_by_kind():
    groups = {group.title.split(" (")[0]: group for group in run_parser()._action_groups if group._group_actions}
    assert [title for title in groups if title != "options"] == GROUPS
    flags = {title: {flag for action in group._group_actions for flag in action.option_strings}
             for title, group in groups.items()}
    assert {"--lr", "--momentum", "--epochs", "--finetune-epochs", "--bias-prior"} <= flags["training"]
    assert {"--alpha", "--temperature", "--lambda-base", "--pod-spatial", "--eta", "--feature-kd"} <= flags[
        "distillation"]
    assert {"--memory", "--memory-policy", "--beta", "--validation-fraction"} <= flags["replay"]
    assert {"--out", "--resume", "--tensorboard", "--quiet"} <= flags["output"]


def test_every_option_shows_its_default_and_the_memory_dependent_ones():
    parser = run_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert "default" in (action.help or ""), action.option_strings
    text = parser.format_help()
    assert "derpp 0.2 (0.1 at --memory 200) (0.2 at --memory 500)" in " ".join(text.split())
    assert "--epochs EPOCHS       (default: 1)" in text  # 1, not True


def test_grouping_changes_no_parsed_value():
    args = build_parser().parse_args(["run", "--strategy", "derpp", "--memory", "200", "--alpha", "0.3", "--quiet"])
    assert (args.strategy, args.memory, args.alpha, args.lr, args.epochs, args.quiet) == ("derpp", 200, 0.3, None, 1,
                                                                                         True)

"""One home per setting: declarations, the flags made from them, resolution and what results.json records."""

import json

import pytest
import torch
from conftest import tiny_config, tiny_model
from fake_runs import fake_run

from lifelong_kd import report, speed
from lifelong_kd.cli import build_parser, main
from lifelong_kd.errors import UsageError
from lifelong_kd.options import FeatureDistillation
from lifelong_kd.run_command import strategy_from_args
from lifelong_kd.runner import HeadLayoutWarning, Runner
from lifelong_kd.settings import Setting
from lifelong_kd.strategies import STRATEGIES, build_strategy
from lifelong_kd.training import TrainConfig

DIGITS_RUN = ["run", "--benchmark", "split-digits", "--model", "small-cnn", "--epochs", "1", "--quiet"]


def test_setting_checks_type_range_and_choices():
    rate = Setting("lr", 0.1, "learning rate", low=0.0, low_open=True, high=10.0)
    assert rate.check(1) == 1.0 and isinstance(rate.check(1), float)
    for bad, message in ((0.0, "out of range: use a value > 0 and <= 10"), (11, "out of range"), ("x", "a number")):
        with pytest.raises(UsageError, match=message):
            rate.check(bad)
    with pytest.raises(UsageError, match="whole number"):
        Setting("memory", 500, "budget", low=1).check(2.5)
    with pytest.raises(UsageError, match="choose from a, b"):
        Setting("policy", "a", "how", choices=("a", "b")).check("c")
    assert Setting("t2", False, "T^2").check(True) is True


def test_every_declared_setting_is_a_flag_that_reaches_the_strategy():
    """The CLI's flags are made from the declarations: each setting of each strategy parses into the
    value its strategy then holds, and with no flags a strategy holds its declared defaults."""
    parser = build_parser()
    for name, cls in STRATEGIES.items():
        plain = strategy_from_args(parser.parse_args(["run", "--strategy", name, "--out", "x"]))
        assert plain.hparams == {**cls.defaults(), **cls.memory_defaults.get(cls.defaults().get("memory"), {})}
        for setting in cls.settings:
            if isinstance(setting.default, bool):
                value, argv = not setting.default, [f"--{'no-' if setting.default else ''}{setting.flag[2:]}"]
            elif setting.choices:
                value = setting.choices[-1]
                argv = [setting.flag, value]
            else:
                value = type(setting.default)(setting.default * 2 + 1)
                if setting.high is not None and value > setting.high:  # below the default instead
                    value = type(setting.default)((setting.default + (setting.low or 0)) / 2)
                argv = [setting.flag, str(value)]
            args = parser.parse_args(["run", "--strategy", name, "--out", "x", *argv])
            assert strategy_from_args(args).hparams[setting.name] == value, (name, setting.name)


def test_a_flag_the_strategy_does_not_declare_is_refused(capsys):
    assert main([*DIGITS_RUN, "--strategy", "lwf", "--beta", "0.5", "--out", "unused"]) == 2
    assert "takes no option --beta" in capsys.readouterr().err


def test_runner_trains_with_the_strategys_optimiser_settings(tiny_stream, monkeypatch):
    """``Runner(model, build_strategy("lwf"), stream, TrainConfig())`` uses LwF's lr 0.01 and weight
    decay 5e-4 (one home: the strategy), and records them once, in ``hparams``."""
    made = []
    real_sgd = torch.optim.SGD

    def spy(params, **kwargs):
        made.append(kwargs)
        return real_sgd(params, **kwargs)

    monkeypatch.setattr(torch.optim, "SGD", spy)
    config = TrainConfig(epochs=1, batch_size=16, amp="off", compile="off", eval_batch_size=64)
    doc = Runner(tiny_model(tiny_stream), build_strategy("lwf"), tiny_stream, config, progress=False).run()
    main_phase = [kw for kw in made if kw["weight_decay"]]  # the head warm-up trains without decay
    assert len(main_phase) == 3 and len(made) == 5  # one optimiser per task, one per warm-up (tasks 2, 3)
    assert all(kw["lr"] == 0.01 and kw["weight_decay"] == 5e-4 and kw["momentum"] == 0.0 for kw in main_phase)
    assert all(kw["lr"] == 0.01 for kw in made)
    assert doc["config"]["hparams"]["lr"] == 0.01 and "lr" not in doc["config"]["train"]


def test_options_record_their_parameters_and_compare_keeps_them_apart(tiny_stream):
    runner = Runner(tiny_model(tiny_stream), build_strategy("finetune"), tiny_stream, tiny_config(),
                    options=[FeatureDistillation(2.5)], progress=False)
    assert runner.run_config["options"] == [{"name": "feature-kd", "weight": 2.5}]
    matrices = {"class_il": [[80.0, None], [40.0, 90.0]]}
    docs = [fake_run("finetune", 0, matrices, options=[{"name": "feature-kd", "weight": weight}])
            for weight in (5.0, 2.5)]
    assert len(report.group_runs(docs)) == 2  # not two seeds of one group


def test_amp_auto_follows_the_cpu_flags(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert speed.resolve_amp("auto", cpu) == ("bf16", "CPU with avx512_bf16")
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx2", "amx_bf16", "amx_tile"})
    assert speed.resolve_amp("auto", cpu)[0] == "bf16"
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert speed.resolve_amp("auto", cpu)[0] == "off"
    assert speed.resolve_amp("bf16", cpu) == ("bf16", "asked for")


def test_compile_auto_compiles_cpu_runs_long_enough_to_repay_it():
    cpu, limit = torch.device("cpu"), speed.CPU_COMPILE_MIN_IMAGES
    assert speed.resolve_compile("auto", cpu, limit - 1)[0] is False
    assert speed.resolve_compile("auto", cpu, limit)[0] is True
    assert speed.resolve_compile("auto", torch.device("cuda"), 10)[0] is True
    assert speed.resolve_compile("off", cpu, 10 * limit)[0] is False


def test_results_record_what_auto_became(tiny_stream, monkeypatch):
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx512_bf16"})
    config = TrainConfig(epochs=1, batch_size=16, eval_batch_size=64)
    runner = Runner(tiny_model(tiny_stream), build_strategy("finetune"), tiny_stream, config, progress=False)
    train = runner.run_config["train"]
    assert (train["amp"], train["channels_last"], train["compile"], train["eval_precision"]) == (
        "bf16", True, "off", "fp32")
    assert runner.env["speed_choices"]["amp"] == "auto -> bf16 (CPU with avx512_bf16)"
    assert runner.env["speed_choices"]["compile"].startswith("auto -> off (CPU run of 144 training images")
    assert TrainConfig(eval_precision="train").resolved(10)[0].eval_precision == "bf16"  # the training one
    assert TrainConfig(amp="off", eval_precision="train").resolved(10)[0].eval_precision == "fp32"
    with pytest.raises(UsageError, match="--amp"):
        TrainConfig(amp="fp16").resolved(10)


def test_der_defaults_to_its_papers_fixed_head_and_warns_on_a_growing_one(tmp_path, capsys):
    assert main([*DIGITS_RUN, "--strategy", "der", "--memory", "20", "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "results.json").read_text())["config"]["head"] == "fixed"
    assert "warning" not in capsys.readouterr().err
    assert main([*DIGITS_RUN, "--strategy", "der", "--memory", "20", "--head", "incremental",
                 "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lifelong-kd: warning: head 'incremental' with der: ")
    assert err[0].endswith("(its paper uses 'fixed')")
    config = json.loads((tmp_path / "b" / "results.json").read_text())["config"]
    assert config["head"] == "incremental" and config["warnings"] == [err[0].removeprefix("lifelong-kd: warning: ")]


def test_the_python_api_warns_on_a_head_that_breaks_the_method(tiny_stream):
    config = TrainConfig(epochs=1, batch_size=16, amp="off", compile="off")
    with pytest.warns(HeadLayoutWarning, match="head 'incremental' with der: "):
        runner = Runner(tiny_model(tiny_stream), build_strategy("der", memory=8), tiny_stream, config, progress=False)
    assert len(runner.run_config["warnings"]) == 1
    quiet = Runner(tiny_model(tiny_stream, "fixed"), build_strategy("der", memory=8), tiny_stream, config,
                   progress=False)
    assert quiet.run_config["warnings"] == []
    assert build_strategy("derpp").head_warning("incremental") is None  # its label CE trains new units down


def test_list_shows_heads_settings_and_their_sources(capsys):
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "head: fixed" in listed and "--head incremental breaks it" in listed
    assert "--alpha 0.15 [>= 0] (the knowledge-distillation primer" in listed


def test_speed_flags_off_give_the_plain_float32_eager_path(tiny_stream):
    """``--amp off --no-channels-last --compile off``: no autocast anywhere, contiguous weights, the
    backbone itself (not a compiled wrapper) trains, and evaluation is float32."""
    config = TrainConfig(amp="off", channels_last=False, compile="off", eval_batch_size=64)
    runner = Runner(tiny_model(tiny_stream), build_strategy("finetune"), tiny_stream, config, progress=False)
    assert runner.train_backbone is runner.model.backbone
    assert (runner.config.amp, runner.config.eval_precision) == ("off", "fp32")
    with runner.autocast(), runner.eval_autocast():
        assert not torch.is_autocast_enabled("cpu")
    conv = next(m for m in runner.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()


@pytest.mark.parametrize("epochs, given, recorded", [(2, None, 2), (3, None, 3), (2, 0, 0), (2, 5, 5)])
def test_lwf_warm_up_follows_the_epochs_by_default_and_is_recorded_resolved(tiny_stream, epochs, given, recorded):
    """Mammoth's LwF warms the new head up for n_epochs: ``warmup_epochs -1`` (the default) becomes
    the run's epochs per task, and results.json records the number, not the rule."""
    strategy = build_strategy("lwf", warmup_epochs=given)
    runner = Runner(tiny_model(tiny_stream), strategy, tiny_stream, tiny_config(epochs=epochs), progress=False)
    assert runner.run_config["hparams"]["warmup_epochs"] == recorded == strategy.hparams["warmup_epochs"]

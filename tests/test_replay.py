import types

import pytest
import torch
from conftest import make_tiny_stream, tiny_config, tiny_model
from torch import nn

from lifelong_kd.buffer import ReplayBuffer, balanced_quotas, herding_order, rebuild_balanced
from lifelong_kd.context import Step, TaskContext
from lifelong_kd.errors import UsageError
from lifelong_kd.heads import IncrementalClassifier
from lifelong_kd.models import ContinualModel
from lifelong_kd.options import WeightAligning
from lifelong_kd.runner import Runner
from lifelong_kd.strategies import build_strategy


def _images(n, value=0):
    return torch.full((n, 3, 2, 2), value, dtype=torch.uint8)


@pytest.mark.parametrize("capacity", [1, 7, 50])
def test_reservoir_never_exceeds_budget(capacity):
    buffer = ReplayBuffer(capacity, seed=1)
    generator = torch.Generator().manual_seed(0)
    total = 0
    for batch in torch.randint(1, 40, (60,), generator=generator).tolist():
        buffer.add_reservoir(_images(batch), torch.arange(total, total + batch), task=0)
        total += batch
        assert len(buffer) == min(total, capacity)
        assert len(buffer.contents()[1]) <= capacity
    assert len(set(buffer.contents()[1].tolist())) == capacity  # distinct stream items


def test_reservoir_is_uniform_chi_square():
    capacity, stream = 1000, 20000
    buffer = ReplayBuffer(capacity, seed=3)
    for begin in range(0, stream, 32):
        labels = torch.arange(begin, min(begin + 32, stream))
        buffer.add_reservoir(_images(len(labels)), labels, task=0)
    kept = buffer.contents()[1]
    bins = torch.bincount(kept // (stream // 10), minlength=10).double()
    expected = capacity / 10
    chi2 = float(((bins - expected) ** 2 / expected).sum())
    assert chi2 < 21.666, (chi2, bins.tolist())  # chi-square 99% quantile, 9 degrees of freedom


def test_class_balanced_rebuild_counts_differ_by_at_most_one():
    buffer = ReplayBuffer(23, seed=0)
    for task, classes in enumerate([(0, 1), (2, 3), (4, 5, 6)]):
        y = torch.tensor([c for c in classes for _ in range(40)])
        rebuild_balanced(buffer, _images(len(y), task), y, task)
        counts = buffer.class_counts()
        assert sum(counts.values()) == len(buffer) <= 23
        assert set(counts) == set(range(classes[-1] + 1))
        assert max(counts.values()) - min(counts.values()) <= 1
    assert balanced_quotas([0, 1, 2], 10) == {0: 4, 1: 3, 2: 3}


def test_old_classes_shrink_by_keeping_their_first_samples():
    buffer = ReplayBuffer(8, seed=0)
    y = torch.tensor([0] * 10 + [1] * 10)
    x = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 3, 2, 2).contiguous()
    rebuild_balanced(buffer, x, y, 0)
    first = buffer.contents()[0][:, 0, 0, 0].tolist()
    rebuild_balanced(buffer, _images(20, 200), torch.tensor([2] * 10 + [3] * 10), 1)
    kept = buffer.contents()[0][:, 0, 0, 0].tolist()
    assert kept[:2] == first[:2] and kept[2:4] == first[4:6]


def test_herding_picks_the_sample_nearest_the_mean_first_and_converges_faster_than_random():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(300, 16, generator=generator) + 0.5
    normalised = nn.functional.normalize(features, dim=1)
    mean = normalised.mean(0)
    order = herding_order(features, 20)
    assert int(order[0]) == int((normalised - mean).norm(dim=1).argmin())
    assert len(set(order.tolist())) == 20
    herded_error = (normalised[order].mean(0) - mean).norm()
    random_errors = torch.stack([
        (normalised[torch.randperm(300, generator=generator)[:20]].mean(0) - mean).norm() for _ in range(50)
    ])
    assert herded_error < random_errors.min()


def _context(stream, model, task_index, n_old, n_seen, teacher=None):
    return TaskContext(stream.tasks[task_index], stream, model, teacher, n_old, n_seen, torch.device("cpu"), 0, 4,
                       lambda: torch.autocast("cpu", enabled=False), lambda x: x.float() / 255)


def test_der_stores_logits_at_insertion_and_compares_only_their_units(tiny_stream):
    der = build_strategy("der", alpha=0.5, memory=10)
    model = tiny_model(tiny_stream)
    model.grow(2)
    ctx = _context(tiny_stream, model, 0, 0, 2)
    der.before_task(ctx)
    raw = tiny_stream.tasks[0].train.x[:4]
    y = tiny_stream.tasks[0].train.y[:4]
    logits = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    der.after_step(ctx, Step(raw, raw.float(), y, 4, torch.zeros(4, 8), logits))
    assert torch.equal(der.buffer.logits[:4], logits) and der.buffer.logit_units[:4].tolist() == [2] * 4
    # task 2: the head has 4 units, the stored logits cover 2
    model.grow(4)
    ctx = _context(tiny_stream, model, 1, 2, 4)
    replay = der.buffer.sample(2, torch.Generator().manual_seed(0))
    current_y = tiny_stream.tasks[1].train.y[:2]
    step_logits = torch.tensor([[0.0, 0.0, 5.0, 1.0], [0.0, 0.0, 1.0, 5.0],
                                [0.0, 0.0, 9.0, 9.0], [1.0, 1.0, -9.0, 9.0]])
    step = Step(torch.cat([raw[:2], replay.x]), torch.zeros(4, 3, 8, 8), torch.cat([current_y, replay.y]), 2,
                torch.zeros(4, 8), step_logits, replay)
    stored = logits[replay.index]
    expected_mse = ((step_logits[2:, :2] - stored) ** 2).mean()
    ce = nn.functional.cross_entropy(step_logits[:2], current_y)
    assert der.loss(ctx, step).item() == pytest.approx((ce + 0.5 * expected_mse).item(), rel=1e-6)


def test_nme_classifier_on_a_hand_built_example(tiny_stream):
    class ChannelMeans(nn.Module):
        out_features = 3

        def forward(self, x):
            return x.mean(dim=(2, 3))

    model = ContinualModel(ChannelMeans(), IncrementalClassifier(3, 2))
    icarl = build_strategy("icarl", memory=4)
    ctx = _context(tiny_stream, model, 0, 0, 2)
    icarl.before_task(ctx)
    red = torch.zeros(2, 3, 2, 2, dtype=torch.uint8)
    red[:, 0] = 200
    blue = torch.zeros(2, 3, 2, 2, dtype=torch.uint8)
    blue[:, 2] = 100
    icarl.buffer.replace(torch.cat([red, blue]), torch.tensor([0, 0, 1, 1]), 0)
    means = icarl.exemplar_means(ctx)
    assert torch.allclose(means, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    icarl.class_means = means
    scores = icarl.eval_scores(torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.0, 0.3], [5.0, 0.0, 4.0]]))["nme"]
    assert scores.argmax(1).tolist() == [0, 1, 0]
    unit = [0.9 / 0.82**0.5, 0.1 / 0.82**0.5, 0.0]
    assert scores[0, 0].item() == pytest.approx(-(((unit[0] - 1) ** 2 + unit[1] ** 2) ** 0.5), rel=1e-5)


def test_weight_aligning_matches_new_norms_to_old_mean_norm():
    head = IncrementalClassifier(4, 2)
    head.grow(4)
    with torch.no_grad():
        head.blocks[0].weight.copy_(torch.tensor([[3.0, 4.0, 0, 0], [0, 0, 1.0, 0]]))  # norms 5, 1
        head.blocks[1].weight.copy_(torch.tensor([[6.0, 8.0, 0, 0], [0, 0, 0, 2.0]]))  # norms 10, 2
        head.blocks[1].bias.copy_(torch.tensor([1.0, -1.0]))
    ctx = types.SimpleNamespace(model=types.SimpleNamespace(head=head), n_old=2, n_seen=4)
    WeightAligning().after_task(ctx)
    norms = head.weight.norm(dim=1)
    assert norms[2:].mean().item() == pytest.approx(norms[:2].mean().item())
    assert norms[:2].tolist() == pytest.approx([5.0, 1.0])
    assert head.blocks[1].bias.tolist() == pytest.approx([0.5, -0.5])  # gamma = 3 / 6


def test_memory_seed_follows_the_run_seed(tiny_stream):
    contents = []
    for seed in (0, 0, 1):
        er = build_strategy("er", memory=5)
        model = tiny_model(tiny_stream)
        ctx = TaskContext(tiny_stream.tasks[0], tiny_stream, model, None, 0, 2, torch.device("cpu"), seed, 4,
                          lambda: torch.autocast("cpu", enabled=False), lambda x: x.float())
        er.before_task(ctx)
        er.buffer.add_reservoir(_images(40), torch.arange(40), task=0)
        contents.append(er.buffer.contents()[1].tolist())
    assert contents[0] == contents[1] != contents[2]


def test_fixed_head_with_nme_evaluates_every_task():
    stream = make_tiny_stream()
    model = tiny_model(stream, head="fixed")
    config = tiny_config(eval_future=True)
    doc = Runner(model, build_strategy("icarl", lr=0.05, memory=12), stream, config, progress=False).run()
    assert doc["matrices"]["nme_task_il"][0][1:] == [None, None]
    assert all(v is not None for v in doc["matrices"]["task_il"][0])


def test_replay_beats_finetuning_in_class_il():
    stream = make_tiny_stream()
    results = {}
    for name, options in (("finetune", {}), ("er", {"memory": 30}), ("derpp", {"memory": 30}),
                          ("icarl", {"memory": 30})):
        model = tiny_model(stream)
        runner = Runner(model, build_strategy(name, lr=0.05, **options), stream, tiny_config(), progress=False)
        results[name] = runner.run()
    finetune = results["finetune"]["metrics"]["class_il"]["final_accuracy"]
    assert finetune < 40.0
    for name in ("er", "derpp"):
        assert results[name]["metrics"]["class_il"]["final_accuracy"] > finetune + 25
    assert results["icarl"]["metrics"]["nme_class_il"]["final_accuracy"] > finetune + 25
    assert "nme_task_il" in results["icarl"]["matrices"]


def test_replay_options_are_validated():
    with pytest.raises(UsageError, match="--memory-policy"):
        build_strategy("er", memory_policy="fifo")
    with pytest.raises(UsageError, match="reservoir"):
        build_strategy("der", memory_policy="class-balanced")
    with pytest.raises(UsageError, match="choose from herding, class-balanced"):
        build_strategy("icarl", memory_policy="reservoir")
    with pytest.raises(UsageError, match="choose from reservoir, class-balanced"):
        build_strategy("er", memory_policy="herding")
    assert build_strategy("derpp", memory=200).hparams["alpha"] == 0.1
    assert build_strategy("derpp", memory=500).hparams["alpha"] == 0.2
    assert build_strategy("derpp", memory=200, alpha=0.7).hparams["alpha"] == 0.7

"""X-DER: its loss terms by hand, and which stored logits its updates change."""


import pytest
import torch
from conftest import tiny_config, tiny_model
from test_loss_terms import context, fill_memory, hand_ce
from torch import nn

from lifelong_kd.context import Step
from lifelong_kd.errors import UsageError
from lifelong_kd.heads import (
    FixedClassifier,
)
from lifelong_kd.models import ContinualModel
from lifelong_kd.runner import Runner
from lifelong_kd.strategies import build_strategy
from lifelong_kd.strategies.xder import damped_transplant

# ---------------------------------------------------------------- X-DER


def test_damped_transplant_changes_only_the_given_units_and_keeps_the_true_class_on_top():
    """Units [1, 3) replaced; row 0's transplant peaks at 4 > z_y = 2, so it is scaled by 0.5 * 2 / 4."""
    stored = torch.tensor([[2.0, 0.0, 0.0, 9.0], [1.0, 5.0, 0.0, -1.0]])
    outputs = torch.tensor([[7.0, 4.0, -2.0, 7.0], [7.0, 0.5, 0.8, 7.0]])
    labels = torch.tensor([0, 1])
    result = damped_transplant(stored, outputs, labels, 1, 3, gamma=0.5)
    assert torch.equal(result, torch.tensor([[2.0, 1.0, -0.5, 9.0], [1.0, 0.5, 0.8, -1.0]]))
    assert torch.equal(stored, torch.tensor([[2.0, 0.0, 0.0, 9.0], [1.0, 5.0, 0.0, -1.0]]))  # not in place
    assert torch.equal(damped_transplant(stored, outputs, labels, 2, 2, 0.5), stored)


def xder_context(tiny_stream, task_index):
    """A fixed head over the stream's 6 classes (3 tasks of 2) on a flatten backbone."""
    model = ContinualModel(nn.Flatten(), FixedClassifier(3, 6))
    return context(tiny_stream, task_index, model)


def test_xder_loss_by_hand(tiny_stream):
    """Task 1 (2 past, 2 current, 2 future units): CE over units 2.. of the current rows + alpha * MSE on
    the first replay half + beta * CE over the past units on the second + eta * (past + future hinges)."""
    xder = build_strategy("xder", memory=6, replay_batch_size=1, alpha=0.3, beta=0.5, eta=0.1,
                          constraint_margin=0.3)
    fill_memory(xder, tiny_stream, torch.tensor([[1.0, -1.0, 0.0, 0.5, 0.0, 0.0]] * 6))
    ctx = xder_context(tiny_stream, 1)
    xder.before_task(ctx)
    replay = xder.replay_batch(ctx, torch.Generator().manual_seed(3))
    assert len(replay) == 2
    logits = torch.tensor([
        [0.2, 2.5, 1.5, 0.3, -0.4, 0.1],  # current, class 2: the past unit 1 beats the current ones
        [0.0, 0.4, -0.2, 3.0, 3.5, 0.0],  # current, class 3: the future unit 4 beats its own task's
        [1.3, -0.6, 0.2, 0.0, 0.1, 0.9],  # replay (first half): MSE on the stored logits
        [0.1, 1.7, -0.4, 0.9, 2.0, -1.0],  # replay (second half): CE over units 0, 1
    ])
    y = torch.cat([torch.tensor([2, 3]), replay.y])
    x = torch.zeros(4, 3, 1, 1)
    step = Step(x, x, y, 2, torch.zeros(4, 3), logits, replay)
    ce = hand_ce(logits[:2, 2:], y[:2] - 2)
    mse = ((logits[2] - torch.tensor([1.0, -1.0, 0.0, 0.5, 0.0, 0.0])) ** 2).mean()
    ce_past = hand_ce(logits[3:, :2], y[3:])
    p = torch.softmax(logits[:2, :4], dim=1)
    past_gap = p[:, :2].max(1).values + 0.3 - p[:, 2:].max(1).values
    past = past_gap[past_gap > 0].mean()
    own_task = y // 2  # 2 classes per task: row i's own units are [2 t, 2 t + 2)
    own = torch.stack([logits[i, 2 * t : 2 * t + 2].max() for i, t in enumerate(own_task.tolist())])
    future_gap = logits[:, 4:].max(1).values + 0.3 - own
    future = future_gap[future_gap > 0].mean()
    assert (past_gap > 0).sum() == 1 and 0 < (future_gap > 0).sum() < 4  # the hinges select rows
    expected = ce + 0.3 * mse + 0.5 * ce_past + 0.1 * (past + future)
    assert xder.loss(ctx, step).item() == pytest.approx(expected.item(), rel=1e-5)


def test_xder_updates_only_drawn_past_samples_current_and_future_units(tiny_stream):
    """During task 1, a replayed past sample's units 2.. take the step's (damped) logits, on its first draw
    (probability 1); its units 0, 1 and the samples not drawn keep their stored logits."""
    xder = build_strategy("xder", memory=6, replay_batch_size=1, gamma=0.85)
    stored = torch.tensor([[3.0, -1.0, 0.0, 0.0, 0.0, 0.0]] * 6)
    raw, y0 = fill_memory(xder, tiny_stream, stored)
    ctx = xder_context(tiny_stream, 1)
    xder.before_task(ctx)
    replay = xder.replay_batch(ctx, torch.Generator().manual_seed(3))
    before = xder.buffer.logits.clone()
    logits = torch.tensor([[0.0] * 6, [0.0] * 6, [9.0, 9.0, 1.0, 6.0, -2.0, 0.5], [9.0, 9.0, 2.0, 0.5, 1.0, 0.0]])
    y = torch.cat([torch.tensor([2, 3]), replay.y])
    xder.after_step(ctx, Step(raw[:4], raw[:4].float(), y, 2, None, logits, replay))
    after = xder.buffer.logits
    drawn = replay.index.tolist()
    for slot in range(6):
        if slot not in drawn:
            assert torch.equal(after[slot], before[slot])
    first, second = drawn
    truth = [before[s, xder.buffer.y[s]] for s in drawn]
    assert torch.equal(after[first, :2], before[first, :2]) and torch.equal(after[second, :2], before[second, :2])
    # row 2 peaks at 6 above its true logit: scaled by 0.85 * z_y / 6; row 3 peaks at 2
    for slot, row, t in ((first, 2, truth[0]), (second, 3, truth[1])):
        units = logits[row, 2:]
        scale = 0.85 * t / units.max() if units.max() > t else 1.0
        assert torch.allclose(after[slot, 2:], units * scale)
    assert xder.draws[first] == 1 and xder.draws[second] == 1


def test_xder_task_end_memory_is_balanced_and_updates_only_the_units_the_paper_says(tiny_stream):
    """At the end of task 1 of a real run: 2 samples of each of 4 classes; an old sample keeps its stored
    logits except the just-learnt task's units (2, 3); a new sample's past units (0, 1) never exceed
    its true logit."""
    model = tiny_model(tiny_stream, head="fixed")
    stages = []

    class Recorder(type(build_strategy("xder"))):
        def after_task(self, ctx):
            before = (self.buffer.logits.clone(), self.buffer.x[: len(self.buffer)].clone())
            super().after_task(ctx)
            stages.append((before, self.buffer.logits.clone(), self.buffer.y[: len(self.buffer)].clone(),
                           self.buffer.x[: len(self.buffer)].clone(), self.buffer.logit_units.clone()))

    Runner(model, Recorder(memory=12, lr=0.05), tiny_stream, tiny_config(), progress=False).run()
    assert torch.bincount(stages[0][2]).tolist() == [6, 6]
    (before_logits, before_x), logits, y, x, units = stages[1]
    assert torch.bincount(y).tolist() == [3, 3, 3, 3] and (units[:12] == 6).all()
    for row in torch.nonzero(y < 2).flatten():
        slot = next(s for s in range(len(before_x)) if torch.equal(before_x[s], x[row]))  # where it was
        assert torch.equal(logits[row, :2], before_logits[slot, :2])
        assert torch.equal(logits[row, 4:], before_logits[slot, 4:])
        assert not torch.equal(logits[row, 2:4], before_logits[slot, 2:4])
    for row in torch.nonzero(y >= 2).flatten():
        truth = logits[row, y[row]]
        assert truth > 0 and logits[row, :2].max() <= truth + 1e-6


def test_xder_refuses_a_memory_without_room_for_every_class(tiny_stream):
    with pytest.raises(UsageError, match="--memory 5 is smaller than the stream's 6 classes"):
        Runner(tiny_model(tiny_stream, head="fixed"), build_strategy("xder", memory=5), tiny_stream, tiny_config(),
               progress=False)
    with pytest.raises(UsageError, match="future classes"):
        Runner(tiny_model(tiny_stream), build_strategy("xder", memory=12), tiny_stream, tiny_config(), progress=False)


def test_constraint_hinges_over_shards_are_the_global_mean(tiny_stream):
    """Two shards with 3 and 1 violating rows: each divides by half the global count, so their average is
    the mean over the whole batch's violations (what one process computes)."""
    from types import SimpleNamespace

    from lifelong_kd.strategies.xder import _violations_mean

    gap = torch.tensor([0.5, -0.2, 0.1, 0.3, -1.0, 0.7, -0.1, -0.3])
    whole = _violations_mean(gap, SimpleNamespace(dist=SimpleNamespace(mean=lambda t: t)))
    assert whole.item() == pytest.approx((0.5 + 0.1 + 0.3 + 0.7) / 4)
    half_of_global = SimpleNamespace(dist=SimpleNamespace(mean=lambda t: torch.tensor(4.0) / 2))
    shards = [_violations_mean(gap[:4], half_of_global), _violations_mean(gap[4:], half_of_global)]
    assert (sum(shards) / 2).item() == pytest.approx(whole.item())

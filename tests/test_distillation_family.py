"""WA and LUCIR, and the heads they train on: every term against a hand computation.

The expected values spell out softmax, KL, cosines and hinges with plain torch ops; they never call
``lifelong_kd.losses``.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config, tiny_model, tiny_model_for
from test_loss_terms import context, fill_memory, flatten_model, hand_ce, hand_kl, teacher_with_logits, unit
from torch import nn

from lifelong_kd.context import Step
from lifelong_kd.errors import UsageError
from lifelong_kd.heads import (
    HEADS,
    BiasCorrectedClassifier,
    CosineClassifier,
    FixedClassifier,
    IncrementalClassifier,
    LocalSimilarityClassifier,
    MultiHeadClassifier,
)
from lifelong_kd.losses import margin_ranking, nca_loss, pod_spatial
from lifelong_kd.models import ContinualModel, build_model, frozen_copy
from lifelong_kd.runner import Runner
from lifelong_kd.strategies import build_strategy
from lifelong_kd.strategies.xder import damped_transplant

# ---------------------------------------------------------------- heads as types


def test_each_head_layout_trains_its_own_units():
    """trained_logits: seen units (incremental), every unit (fixed), the sample's own task (multi)."""
    logits = torch.arange(12.0).view(2, 6)
    y = torch.tensor([0, 3])
    task_of_class = (0, 0, 1, 1, 2, 2)
    assert torch.equal(IncrementalClassifier(3, 6).trained_logits(logits, y, 4, task_of_class), logits[:, :4])
    assert torch.equal(FixedClassifier(3, 6).trained_logits(logits, y, 4, task_of_class), logits)
    masked = MultiHeadClassifier(3).trained_logits(logits, y, 4, task_of_class)
    inf = float("-inf")
    assert torch.equal(masked, torch.tensor([[0.0, 1.0, inf, inf], [inf, inf, 8.0, 9.0]]))


def test_distillation_groups_one_softmax_or_one_per_old_task():
    task_of_class = (0, 0, 0, 1, 1, 2, 2)
    assert IncrementalClassifier(3).distillation_groups(5, task_of_class) == [slice(0, 5)]
    assert MultiHeadClassifier(3).distillation_groups(5, task_of_class) == [slice(0, 3), slice(3, 5)]


def test_head_registry_builds_the_layouts_with_their_widths():
    assert {name: HEADS[name].build(4, 10).num_classes for name in HEADS} == {
        "incremental": 0, "multi": 0, "fixed": 10, "cosine": 0, "local-similarity": 0,
        "bias-corrected": 0}
    assert FixedClassifier.future_units and not CosineClassifier.future_units


def test_cosine_head_is_sigma_times_the_cosine_and_grows_without_changing_old_logits():
    torch.manual_seed(0)
    head = CosineClassifier(3, 2)
    with torch.no_grad():
        head.blocks[0].weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
        head.sigma.fill_(4.0)
    features = torch.tensor([[3.0, 0.0, 4.0], [0.0, 2.0, 0.0]])
    # cos(w0, f0) = 3/5, cos(w1, f0) = 3/(5 sqrt 2); cos(w0, f1) = 0, cos(w1, f1) = 1/sqrt 2
    expected = 4.0 * torch.tensor([[0.6, 0.6 / math.sqrt(2)], [0.0, 1 / math.sqrt(2)]])
    assert torch.allclose(head(features), expected, atol=1e-6)
    assert torch.allclose(head.cosines(features), expected / 4.0, atol=1e-6)
    before = head(features).detach().clone()
    head.grow(5)
    assert head.num_classes == 5 and head(features).shape == (2, 5)
    assert torch.equal(head(features)[:, :2].detach(), before)
    assert head.blocks[1].bias is None
    with pytest.raises(TypeError, match="cosine head"):
        head.scale_rows(2, 5, 2.0)


def test_cosine_head_imprints_new_rows_from_normalised_class_means_at_the_old_rows_norm():
    """LUCIR's imprinting: row c = normalise(mean_i normalise(f_i)) * mean ||w_old||, for the new classes only."""
    head = CosineClassifier(3, 2)
    with torch.no_grad():
        head.blocks[0].weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [0.0, 4.0, 0.0]]))  # mean norm 3
    old = head.blocks[0].weight.detach().clone()
    head.grow(4)
    features = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 7.0], [0.0, 5.0, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([2, 2, 3, 3])
    head.imprint(features, labels)
    # class 2: (0.6, 0.8, 0) + (0, 0, 1) = (0.6, 0.8, 1); class 3: (0, 1, 0) + (0, 0, 1)
    expected = torch.stack([unit([0.6, 0.8, 1.0]), unit([0.0, 1.0, 1.0])]) * 3.0
    assert torch.allclose(head.blocks[1].weight, expected, atol=1e-6)
    assert torch.equal(head.blocks[0].weight, old)


def test_features_before_the_last_relu_can_be_negative_and_after_it_cannot():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 16, 16)
    for name in ("reduced-resnet18", "small-cnn"):
        plain = build_model(name, 3, 4).eval()
        torch.manual_seed(1)
        before = build_model(name, 3, 4, last_relu=False).eval()
        assert plain.features(x).min() >= 0
        assert before.features(x).min() < 0


# ---------------------------------------------------------------- WA


def test_wa_loss_weighs_ce_and_kd_by_the_old_classes_share(tiny_stream):
    """WA, task 2 (4 old of 6 seen classes): (1 - 4/6) * CE + 4/6 * KL(t/2 || s/2) on the 4 old units."""
    wa = build_strategy("wa", memory=6)
    teacher_logits = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.0, 1.5, -0.5, 1.0]])
    logits = torch.tensor([[0.3, 0.1, -0.2, 1.0, 0.5, 2.0], [1.0, -1.0, 0.0, 0.4, 1.2, -0.3]])
    ctx = context(tiny_stream, 2, flatten_model(4, 6), teacher_with_logits(4, 4))
    x = teacher_logits.view(2, 4, 1, 1)
    y = torch.tensor([4, 5])
    step = Step(x, x, y, 2, torch.zeros(2, 4), logits)
    expected = (1 - 4 / 6) * hand_ce(logits, y) + 4 / 6 * hand_kl(logits[:, :4], teacher_logits, 2.0)
    assert wa.loss(ctx, step).item() == pytest.approx(expected.item(), rel=1e-6)
    first = context(tiny_stream, 0, flatten_model(4, 2))
    assert wa.loss(first, Step(x, x, torch.tensor([0, 1]), 2, None, logits[:, :2])).item() == pytest.approx(
        hand_ce(logits[:, :2], torch.tensor([0, 1])).item(), rel=1e-6)


def test_wa_clips_the_head_weights_after_every_step_and_leaves_the_biases(tiny_stream):
    wa = build_strategy("wa", memory=6)
    model = flatten_model(3, 4)
    with torch.no_grad():
        model.head.blocks[0].weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-0.1, 0.0, 3.0],
                                                         [-1.0, -1.0, -1.0], [2.0, 2.0, -0.5]]))
        model.head.blocks[0].bias.copy_(torch.tensor([-1.0, 0.5, -0.2, 0.0]))
    wa.after_step(context(tiny_stream, 1, model), None)
    assert torch.equal(model.head.weight, torch.tensor([[1.0, 0.0, 0.5], [0.0, 0.0, 3.0],
                                                         [0.0, 0.0, 0.0], [2.0, 2.0, 0.0]]))
    assert torch.equal(model.head.blocks[0].bias, torch.tensor([-1.0, 0.5, -0.2, 0.0]))


def test_wa_run_keeps_weights_non_negative_and_aligns_the_new_rows(tiny_stream):
    """A whole WA run: after every task the head's weights are >= 0 and, after the second and third,
    the new rows' mean norm equals the old rows' (weight aligning)."""
    norms = []

    class Recorder(type(build_strategy("wa"))):
        def after_task(self, ctx):
            super().after_task(ctx)
            weight = ctx.model.head.weight.detach()
            assert weight.min() >= 0
            row_norms = weight.norm(dim=1)
            norms.append((row_norms[: ctx.n_old].mean().item() if ctx.n_old else None,
                          row_norms[ctx.n_old : ctx.n_seen].mean().item()))

    Runner(tiny_model(tiny_stream), Recorder(memory=12, lr=0.05), tiny_stream, tiny_config(), progress=False).run()
    assert norms[0][0] is None
    for old, new in norms[1:]:
        assert new == pytest.approx(old, rel=1e-5)


# ---------------------------------------------------------------- LUCIR


def test_margin_ranking_by_hand():
    """mean over old samples and K hardest new classes of max(m - cos_true + cos_k, 0)."""
    cosines = torch.tensor([
        [0.9, 0.1, 0.5, 0.95, 0.2],  # class 0: true 0.9, hardest new 0.95, 0.5 -> 0.55, 0.1
        [0.2, 0.8, 0.1, 0.0, 0.3],  # class 1: true 0.8, hardest new 0.3, 0.1 -> 0, 0
        [0.3, 0.2, 0.9, 0.1, 0.0],  # class 2 (new): no term
    ])
    labels = torch.tensor([0, 1, 2])
    expected = (0.55 + 0.1 + 0.0 + 0.0) / 4
    assert margin_ranking(cosines, labels, n_old=2, hard=2, margin=0.5).item() == pytest.approx(expected)
    # K = 1: only the hardest: (0.55 + 0) / 2
    assert margin_ranking(cosines, labels, n_old=2, hard=1, margin=0.5).item() == pytest.approx(0.275)
    assert margin_ranking(cosines[2:], labels[2:], n_old=2).item() == 0.0


def lucir_context(tiny_stream):
    """Task 1 (2 old, 2 new classes) of a flatten backbone with a 4-unit cosine head, sigma 2."""
    head = CosineClassifier(3, 2)
    head.grow(4)
    with torch.no_grad():
        head.blocks[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        head.blocks[1].weight.copy_(torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]))
        head.sigma.fill_(2.0)
    model = ContinualModel(nn.Flatten(), head)
    return context(tiny_stream, 1, model, teacher_with_logits(3, 2)), model


def test_lucir_loss_is_ce_plus_less_forget_plus_margin_ranking(tiny_stream):
    ctx, model = lucir_context(tiny_stream)
    lucir = build_strategy("lucir", memory=6)
    student = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 4.0], [1.0, 1.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])  # the teacher's features
    x = teacher.view(3, 3, 1, 1)
    y = torch.tensor([0, 1, 3])  # two exemplars, one new sample
    logits = model.head(student)
    loss = lucir.loss(ctx, Step(x, x, y, 3, student, logits))

    cos = torch.stack([unit(s.tolist()) for s in student]) @ torch.stack(
        [unit([1, 0, 0]), unit([0, 1, 0]), unit([0, 0, 1]), unit([1, 1, 0])]).T
    ce = hand_ce(2.0 * cos, y)
    feature_cos = torch.tensor([(unit(s.tolist()) * unit(t.tolist())).sum().item() for s, t in zip(student, teacher)])
    less_forget = 5.0 * math.sqrt(2 / 2) * (1 - feature_cos).mean()
    hinge = torch.stack([(0.5 - cos[i, y[i]] + cos[i, 2:]).clamp(min=0) for i in (0, 1)])  # K = 2 = all new
    assert loss.item() == pytest.approx((ce + less_forget + hinge.mean()).item(), rel=1e-5)


def test_lucir_freezes_the_old_rows_and_trains_sigma_and_the_new_rows(tiny_stream):
    ctx, model = lucir_context(tiny_stream)
    (main,) = build_strategy("lucir").phases(ctx, 1)
    trained = {id(p) for p in main.parameters(model)}
    assert id(model.head.blocks[0].weight) not in trained
    assert {id(model.head.blocks[1].weight), id(model.head.sigma)} <= trained


def test_lucir_refuses_a_head_that_is_not_cosine(tiny_stream):
    with pytest.raises(UsageError, match="cosine head"):
        Runner(tiny_model(tiny_stream), build_strategy("lucir", memory=12), tiny_stream, tiny_config(),
               progress=False)


def test_lucir_run_keeps_old_rows_imprints_new_ones_and_reports_nme(tiny_stream):
    """A whole LUCIR run: the old rows stay bit-identical through later tasks, and NME is reported."""
    model = build_model("small-cnn", 3, tiny_stream.num_classes, "cosine", last_relu=False)
    rows = []

    class Recorder(type(build_strategy("lucir"))):
        def after_task(self, ctx):
            super().after_task(ctx)
            rows.append([block.weight.detach().clone() for block in ctx.model.head.blocks])

    doc = Runner(model, Recorder(memory=12, lr=0.05), tiny_stream, tiny_config(), progress=False).run()
    assert torch.equal(rows[1][0], rows[0][0]) and torch.equal(rows[2][0], rows[0][0])
    assert torch.equal(rows[2][1], rows[1][1])
    assert [len(r) for r in rows] == [1, 2, 3]  # a new block each task
    assert doc["matrices"]["nme_class_il"][-1][0] is not None and doc["matrices"]["class_il"][-1][0] is not None


# ---------------------------------------------------------------- BiC


def test_bias_layer_touches_only_its_own_tasks_logits():
    """q = alpha * o + beta on the newest task's units; the older units keep their linear logits."""
    torch.manual_seed(0)
    head = BiasCorrectedClassifier(3, 2)
    linear = IncrementalClassifier(3, 2)
    head.grow(5)
    linear.grow(5)
    linear.load_state_dict({k: v for k, v in head.state_dict().items() if not k.startswith("corrections")})
    features = torch.randn(4, 3)
    assert torch.equal(head(features), linear(features))  # (1, 0) at the start
    with torch.no_grad():
        head.corrections[-1].copy_(torch.tensor([0.5, -2.0]))
    out, plain = head(features).detach(), linear(features).detach()
    assert torch.equal(out[:, :2], plain[:, :2])
    assert torch.allclose(out[:, 2:], 0.5 * plain[:, 2:] - 2.0)


def test_bic_loss_by_hand_with_its_old_share(tiny_stream):
    """BiC, task 1 (n = 2 old, m = 2 new): 0.5 * CE + 0.5 * KL(t/2 || s/2) on the old units."""
    bic = build_strategy("bic", memory=6)
    teacher_logits = torch.tensor([[2.0, -1.0], [0.0, 1.5]])
    logits = torch.tensor([[0.3, 0.1, -0.2, 1.0], [1.0, -1.0, 0.0, 0.4]])
    ctx = context(tiny_stream, 1, flatten_model(2, 4), teacher_with_logits(2, 2))
    x = teacher_logits.view(2, 2, 1, 1)
    y = torch.tensor([2, 0])
    expected = 0.5 * hand_ce(logits, y) + 0.5 * hand_kl(logits[:, :2], teacher_logits, 2.0)
    assert bic.loss(ctx, Step(x, x, y, 2, None, logits)).item() == pytest.approx(expected.item(), rel=1e-6)


class StageRecorder:
    """A BiC whose bias stage records the parameters when it starts (``validation_split`` is its data)."""

    def __init__(self):
        self.at_bias_start, self.at_task_end, self.validation = [], [], []

    def strategy(self, **settings):
        recorder = self

        class Recording(type(build_strategy("bic"))):
            def validation_split(self, ctx):
                split = super().validation_split(ctx)
                recorder.validation.append((split, self.training_split(ctx), ctx.task.index))
                recorder.at_bias_start.append({k: v.clone() for k, v in ctx.model.state_dict().items()})
                return split

            def after_task(self, ctx):
                recorder.at_task_end.append({k: v.clone() for k, v in ctx.model.state_dict().items()})
                super().after_task(ctx)

        return Recording(**settings)


def test_bic_holds_out_a_balanced_validation_set_and_its_bias_stage_trains_only_the_newest_pair(tiny_stream):
    recorder = StageRecorder()
    model = tiny_model(tiny_stream, head="bias-corrected")
    Runner(model, recorder.strategy(memory=12, lr=0.05, bias_epochs=3, validation_fraction=0.5), tiny_stream,
           tiny_config(), progress=False).run()
    assert [index for *_, index in recorder.validation] == [1, 2]
    for (validation, training, index), start, end in zip(recorder.validation, recorder.at_bias_start,
                                                         recorder.at_task_end[1:]):
        counts = torch.bincount(validation.y)
        seen = 2 * (index + 1)
        assert len(counts) == seen and (counts == counts[0]).all()  # as many of every class
        exemplars_per_class = 12 // (2 * index)
        assert counts[0] == round(0.5 * exemplars_per_class)
        # no held-out image is trained on in stage 1 (the synthetic images are all distinct)
        train_rows = {tuple(x.flatten().tolist()) for x in training.x}
        assert not any(tuple(x.flatten().tolist()) in train_rows for x in validation.x)
        newest = f"head.corrections.{index}"
        changed = {k for k in start if not torch.equal(start[k], end[k])}
        assert changed == {newest}
        assert not torch.equal(end[newest], torch.tensor([1.0, 0.0]))
    assert torch.equal(recorder.at_task_end[-1]["head.corrections.0"], torch.tensor([1.0, 0.0]))
    assert torch.equal(recorder.at_task_end[-1]["head.corrections.1"], recorder.at_task_end[1]["head.corrections.1"])


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


# ---------------------------------------------------------------- PODNet


def hand_pod(student_maps, teacher_maps):
    """(1/L) sum_l mean_i || unit(width- and height-pooled h^2) - the teacher's ||, spelt out per sample."""
    total = 0.0
    for s, t in zip(student_maps, teacher_maps):
        per_sample = []
        for a, b in zip(s, t):  # (C, H, W) each
            pa = torch.cat([(a * a).sum(2).flatten(), (a * a).sum(1).flatten()])
            pb = torch.cat([(b * b).sum(2).flatten(), (b * b).sum(1).flatten()])
            d = pa / (pa * pa).sum().sqrt() - pb / (pb * pb).sum().sqrt()
            per_sample.append((d * d).sum().sqrt())
        total += torch.stack(per_sample).mean()
    return total / len(student_maps)


def test_pod_spatial_by_hand():
    """One 1x2x2 map: student [[1, 2], [3, 4]] pools (sum over width of h^2) to (5, 25) and (over height)
    to (10, 20); the teacher's [[1, 0], [0, 1]] to (1, 1) and (1, 1)."""
    student = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    teacher = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    a = torch.tensor([5.0, 25.0, 10.0, 20.0])
    expected = (a / a.norm() - torch.full((4,), 0.5)).norm()
    assert pod_spatial([student], [teacher]).item() == pytest.approx(expected.item(), rel=1e-6)
    torch.manual_seed(0)
    maps = [torch.randn(3, 4, 6, 5), torch.randn(3, 2, 3, 3)]
    others = [m + 0.3 * torch.randn_like(m) for m in maps]
    assert pod_spatial(maps, others).item() == pytest.approx(hand_pod(maps, others).item(), rel=1e-5)
    assert pod_spatial(maps, [2.0 * m for m in maps]).item() == pytest.approx(0.0, abs=1e-6)  # scale-free


def hand_nca(z, y, margin):
    """mean_i max(0, log sum_{c != y_i} exp(z_ic) - (z_iy - margin))."""
    losses = []
    for row, label in zip(z, y):
        others = torch.cat([row[:label], row[label + 1 :]])
        losses.append(torch.clamp(others.exp().sum().log() - (row[label] - margin), min=0))
    return torch.stack(losses).mean()


def test_nca_loss_by_hand_and_its_hinge():
    z = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [5.0, -3.0, -3.0]])
    y = torch.tensor([0, 2, 0])
    assert nca_loss(z, y, 0.6).item() == pytest.approx(hand_nca(z, y, 0.6).item(), rel=1e-6)
    assert hand_nca(z[2:], y[2:], 0.6) == 0  # a confident row is hinged to zero


class TwoProxies(LocalSimilarityClassifier):
    proxies = 2


def test_local_similarity_head_by_hand_and_its_growth():
    """logit_c = eta * sum_k softmax_k(s_c) s_ck over the class's 2 proxies' cosines."""
    head = TwoProxies(2, 1)
    with torch.no_grad():
        head.blocks[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))  # class 0's proxies
        head.scale.fill_(2.0)
    features = torch.tensor([[3.0, 4.0]])  # cosines 0.6 and 0.8
    weights = torch.tensor([0.6, 0.8]).exp() / torch.tensor([0.6, 0.8]).exp().sum()
    assert head(features).item() == pytest.approx(2.0 * (weights * torch.tensor([0.6, 0.8])).sum().item(), rel=1e-6)
    before = head(features).detach().clone()
    head.grow(3)
    assert head.num_classes == 3 and head.blocks[1].weight.shape == (4, 2)
    assert torch.equal(head(features)[:, :1].detach(), before)


def test_local_similarity_imprinting_uses_kmeans_centres_of_each_class():
    """Class 1's normalised features form two tight groups: its two proxies point at them."""
    head = TwoProxies(2, 1)
    head.grow(2)
    features = torch.tensor([[1.0, 0.01], [1.0, -0.01], [0.01, 1.0], [-0.01, 1.0]])
    head.imprint(features, torch.tensor([1, 1, 1, 1]), torch.Generator().manual_seed(0))
    proxies = F.normalize(head.blocks[1].weight.detach(), dim=1)
    assert sorted(proxies[:, 0].round(decimals=3).tolist()) == [0.0, 1.0]


def test_stage_outputs_come_with_the_same_features():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    for name, count in (("reduced-resnet18", 4), ("resnet32", 3), ("small-cnn", 2)):
        backbone = build_model(name, 3, 4).backbone.eval()
        features, maps = backbone(x, stages=True)
        assert torch.equal(features, backbone(x)) and len(maps) == count


def test_podnet_loss_is_nca_plus_adaptive_pod_spatial_and_flat(tiny_stream):
    """Task 1 (2 old of 4 seen): NCA + sqrt(4/2) * (3 * POD-spatial + 1 * (1 - cos)) on a real model pair."""
    torch.manual_seed(0)
    model = build_model("small-cnn", 3, 6, "local-similarity", last_relu=False)
    model.grow(2)
    teacher = frozen_copy(model)
    model.grow(4)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ctx = context(tiny_stream, 1, model, teacher)
    x = torch.randn(3, 3, 8, 8)
    features, maps = model.backbone(x, stages=True)
    logits = model.head(features)
    y = torch.tensor([0, 2, 3])
    step = Step(x, x, y, 3, features, logits, stages=maps)
    podnet = build_strategy("podnet", memory=6)
    teacher_features, teacher_maps = teacher.backbone(x, stages=True)
    cos = (features * teacher_features).sum(1) / (features.norm(dim=1) * teacher_features.norm(dim=1))
    expected = hand_nca(logits, y, 0.6) + math.sqrt(2) * (3 * hand_pod(maps, teacher_maps) + (1 - cos).mean())
    assert podnet.loss(ctx, step).item() == pytest.approx(expected.item(), rel=1e-5)


def test_podnet_run_reports_cnn_and_nme(tiny_stream):
    doc = Runner(tiny_model_for(tiny_stream, "podnet"), build_strategy("podnet", memory=12, lr=0.05), tiny_stream,
                 tiny_config(), progress=False).run()
    assert doc["matrices"]["nme_class_il"][-1][0] is not None and doc["matrices"]["class_il"][-1][2] > 0


def test_podnet_balanced_finetuning_tunes_only_the_head_on_the_updated_balanced_memory(tiny_stream):
    starts, ends = [], []

    class Recorder(type(build_strategy("podnet"))):
        def balanced_split(self, ctx):
            split = super().balanced_split(ctx)
            starts.append((split, {k: v.clone() for k, v in ctx.model.state_dict().items()}))
            return split

        def after_task(self, ctx):
            super().after_task(ctx)
            assert self.memory_task == ctx.task.index
            ends.append({k: v.clone() for k, v in ctx.model.state_dict().items()})

    Runner(tiny_model_for(tiny_stream, "podnet"), Recorder(memory=12, lr=0.05, finetune_epochs=2), tiny_stream,
           tiny_config(), progress=False).run()
    assert len(starts) == 2  # tasks 1 and 2
    for (split, start), end, seen in zip(starts, ends[1:], (4, 6)):
        assert torch.bincount(split.y).tolist() == [12 // seen] * seen
        changed = {k for k in start if not torch.equal(start[k], end[k])}
        assert changed and all(k.startswith("head.") for k in changed)


def test_podnet_freezes_the_old_proxies_in_its_main_phase(tiny_stream):
    model = tiny_model_for(tiny_stream, "podnet")
    model.grow(2)
    model.grow(4)
    ctx = context(tiny_stream, 1, model)
    main, finetuning = build_strategy("podnet").phases(ctx, 1)
    trained = {id(p) for p in main.parameters(model)}
    assert id(model.head.blocks[0].weight) not in trained and id(model.head.blocks[1].weight) in trained
    assert {id(p) for p in finetuning.parameters(model)} == {id(p) for p in model.head.parameters()}


def test_lucir_finetuning_loss_is_ce_plus_margin_ranking(tiny_stream):
    ctx, model = lucir_context(tiny_stream)
    lucir = build_strategy("lucir", finetune_epochs=3)
    main, finetuning = lucir.phases(ctx, 1)
    assert finetuning.epochs == 3 and finetuning.optimizer == ("sgd", 0.01) and finetuning.freeze_backbone
    features = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 4.0]])
    y = torch.tensor([0, 3])
    logits = model.head(features)
    cos = torch.stack([unit(f.tolist()) for f in features]) @ torch.stack(
        [unit([1, 0, 0]), unit([0, 1, 0]), unit([0, 0, 1]), unit([1, 1, 0])]).T
    hinge = (0.5 - cos[0, 0] + cos[0, 2:]).clamp(min=0).mean()
    expected = hand_ce(2.0 * cos, y) + hinge
    x = torch.zeros(2, 3, 1, 1)
    assert finetuning.loss(ctx, Step(x, x, y, 2, features, logits)).item() == pytest.approx(expected.item(), rel=1e-5)

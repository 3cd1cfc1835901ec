"""WA, LUCIR, BiC and PODNet: every loss term against a hand computation, and what each phase trains.

The expected values spell out softmax, KL, cosines and hinges with plain torch ops; they never call
``lifelong_kd.losses``."""

import math

import pytest
import torch
from conftest import tiny_config, tiny_model, tiny_model_for
from test_loss_terms import context, flatten_model, hand_ce, hand_kl, teacher_with_logits, unit
from torch import nn

from lifelong_kd.context import Step
from lifelong_kd.errors import UsageError
from lifelong_kd.heads import (
    BiasCorrectedClassifier,
    CosineClassifier,
    IncrementalClassifier,
)
from lifelong_kd.losses import margin_ranking, nca_loss, pod_spatial
from lifelong_kd.models import ContinualModel, build_model, frozen_copy
from lifelong_kd.runner import Runner
from lifelong_kd.strategies import build_strategy
from lifelong_kd.strategies.bic import bias_corrected_ce, fit_bias_correction

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


def test_weight_aligning_refuses_heads_whose_logits_do_not_scale_with_their_rows(tiny_stream):
    from lifelong_kd.options import WeightAligning

    for head in ("cosine", "local-similarity", "bias-corrected"):
        with pytest.raises(UsageError, match="rows"):
            Runner(tiny_model(tiny_stream, head), build_strategy("wa", memory=12), tiny_stream, tiny_config(),
                   progress=False)
        with pytest.raises(UsageError, match="--wa"):
            Runner(tiny_model(tiny_stream, head), build_strategy("finetune"), tiny_stream, tiny_config(),
                   progress=False, options=[WeightAligning()])


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


def test_margin_ranking_over_shards_is_the_global_mean():
    """Two shards with 2 and 0 old rows: with the global denominator, their average is the whole batch's."""
    torch.manual_seed(0)
    cosines = torch.rand(4, 5) * 2 - 1
    labels = torch.tensor([0, 1, 3, 4])  # 2 old rows (n_old 2), 2 new
    whole = margin_ranking(cosines, labels, 2, hard=2, margin=0.5)
    assert whole.item() > 0
    compared = torch.tensor(2 * 2 / 2)  # the global K * #old, divided by the 2 processes
    shards = [margin_ranking(cosines[:2], labels[:2], 2, 2, 0.5, compared),
              margin_ranking(cosines[2:], labels[2:], 2, 2, 0.5, compared)]
    assert (sum(shards) / 2).item() == pytest.approx(whole.item(), rel=1e-6)


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


def test_bic_never_holds_out_an_old_classs_last_exemplar(tiny_stream):
    """With 2 exemplars per old class, 1 is held out (not both); with 1, none, and no bias stage."""
    for memory, held in ((4, 1), (2, 0)):
        bic = build_strategy("bic", memory=memory)
        model = tiny_model(tiny_stream, head="bias-corrected")
        model.grow(2)
        first = context(tiny_stream, 0, model)
        bic.before_task(first)
        bic.update_memory(first)
        model.grow(4)
        second = context(tiny_stream, 1, model)
        bic.before_task(second)
        if held:
            assert torch.bincount(bic.validation_split(second).y).tolist() == [held] * 4
        else:
            assert bic.held_out is None


def test_bias_correction_fit_reaches_the_ce_minimum():
    """Eq. 5 on 40 samples of 2 old and 2 new classes whose new logits are inflated (2 o + 1.5): the fit's
    gradient vanishes, no point of a grid around it scores lower, and it is found from any held-out size
    (the fixed-step Adam stage it replaces stopped near (1, 0) on small sets). On a separable set, where
    the CE alone has no minimum, the prior's penalty gives one."""
    torch.manual_seed(0)
    labels = torch.arange(4).repeat(10)
    clean = torch.randn(40, 4) + 3.0 * nn.functional.one_hot(labels, 4)
    old, new = clean[:, :2], (clean[:, 2:] - 1.5) / 2.0  # the inflated logits o = (q - 1.5) / 2
    pair = fit_bias_correction(old, new, labels, prior=0.0)
    at = pair.double().requires_grad_()
    bias_corrected_ce(old.double(), new.double(), labels, at).backward()
    assert at.grad.abs().max() < 1e-6
    best = bias_corrected_ce(old, new, labels, pair).item()
    alphas, betas = torch.linspace(pair[0] - 0.5, pair[0] + 0.5, 21), torch.linspace(pair[1] - 1, pair[1] + 1, 21)
    grid = [bias_corrected_ce(old, new, labels, torch.tensor([a, b])).item() for a in alphas for b in betas]
    assert best <= min(grid) + 1e-7
    assert best < bias_corrected_ce(old, new, labels, torch.tensor([1.0, 0.0])).item() - 0.1
    hand = bias_corrected_ce(old, new, labels, torch.tensor([2.0, 1.5])).item()  # the clean logits
    assert best <= hand
    # [2, 0, b, b] for class 0 and [0, 0, a + b, b] for class 2: the CE falls on as a and -b grow
    old, new = torch.tensor([[2.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    labels = torch.tensor([0, 2])
    pair = fit_bias_correction(old, new, labels, prior=0.01).double().requires_grad_()
    penalty = 0.005 * (pair - torch.tensor([1.0, 0.0], dtype=torch.float64)).square().sum()
    (bias_corrected_ce(old.double(), new.double(), labels, pair) + penalty).backward()
    assert pair.grad.abs().max() < 1e-6 and 1.0 < pair[0].item() < 20.0


def test_bic_holds_out_a_balanced_validation_set_and_its_bias_stage_fits_only_the_newest_pair(tiny_stream):
    seen = []

    class Recording(type(build_strategy("bic"))):
        def after_task(self, ctx):
            before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
            validation = self.validation_split(ctx) if self.held_out is not None else None
            training, expected = self.training_split(ctx), None
            if validation is not None:  # the CE minimum on the held-out samples' features, by the test
                features, head = ctx.features_of(validation.x), ctx.model.head
                expected = fit_bias_correction(head(features)[:, : ctx.n_old], head.blocks[-1](features),
                                               validation.y, self.hparams["bias_prior"])
            super().after_task(ctx)
            seen.append((ctx.task.index, before, {k: v.clone() for k, v in ctx.model.state_dict().items()},
                         validation, training, expected))

    model = tiny_model(tiny_stream, head="bias-corrected")
    Runner(model, Recording(memory=12, lr=0.05, validation_fraction=0.5), tiny_stream, tiny_config(),
           progress=False).run()
    assert [index for index, _, _, validation, *_ in seen if validation is not None] == [1, 2]
    for index, before, after, validation, training, expected in seen[1:]:
        counts = torch.bincount(validation.y)
        assert len(counts) == 2 * (index + 1) and (counts == counts[0]).all()  # as many of every class
        assert counts[0] == round(0.5 * (12 // (2 * index)))
        # no held-out image is trained on in stage 1 (the synthetic images are all distinct)
        train_rows = {tuple(x.flatten().tolist()) for x in training.x}
        assert not any(tuple(x.flatten().tolist()) in train_rows for x in validation.x)
        newest = f"head.corrections.{index}"
        assert {k for k in before if not torch.equal(before[k], after[k])} == {newest}
        assert torch.equal(before[newest], torch.tensor([1.0, 0.0]))
        assert torch.equal(after[newest], expected) and not torch.equal(expected, before[newest])
    final = seen[-1][2]
    assert torch.equal(final["head.corrections.0"], torch.tensor([1.0, 0.0]))
    assert torch.equal(final["head.corrections.1"], seen[1][2]["head.corrections.1"])


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


def hand_nca(s, y, delta, eta=1.0):
    """mean_i [log(sum_{c != y_i} exp(z_ic) + exp(max_c z_ic)) - z_iy], z = eta (s - delta onehot(y)):
    PODNet's NCA as its authors' code computes it."""
    losses = []
    for row, label in zip(s, y):
        z = eta * row.clone()
        z[label] = eta * (row[label] - delta)
        others = torch.cat([z[:label], z[label + 1 :]])
        losses.append(torch.log(others.exp().sum() + z.max().exp()) - z[label])
    return torch.stack(losses).mean()


def test_nca_loss_by_hand_and_its_cost_of_a_negative_scale():
    z = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [5.0, -3.0, -3.0]])
    y = torch.tensor([0, 2, 0])
    assert nca_loss(z, y, 0.6).item() == pytest.approx(hand_nca(z, y, 0.6).item(), rel=1e-6)
    # a confident row costs little, about exp(z_c - z_y) summed, never below zero
    assert 0 < nca_loss(z[2:], y[2:], 0.6).item() < 1e-2
    # a negative scale is costly: the same similarities scaled by -1 lose more
    assert nca_loss(-z[2:], y[2:], -0.6).item() > 5
    # a shift of whole rows changes nothing: the authors' code subtracts its margin from every entry
    assert nca_loss(z - 0.6, y, 0.0).item() == pytest.approx(nca_loss(z, y, 0.0).item(), rel=1e-6)
    assert nca_loss(z, y, 0.0).item() < nca_loss(z, y, 0.6).item()


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
    with torch.no_grad():
        model.head.scale.fill_(3.0)  # the margin sits inside the learnt scale: eta (s_y - delta)
    features, maps = model.backbone(x, stages=True)
    logits = model.head(features)
    similarities = model.head.similarities(features)
    assert torch.allclose(logits, 3.0 * similarities)
    y = torch.tensor([0, 2, 3])
    step = Step(x, x, y, 3, features, logits, stages=maps)
    podnet = build_strategy("podnet", memory=6, nca_margin=0.6)
    teacher_features, teacher_maps = teacher.backbone(x, stages=True)
    cos = (features * teacher_features).sum(1) / (features.norm(dim=1) * teacher_features.norm(dim=1))
    nca = hand_nca(similarities[:, :4], y, 0.6, eta=3.0)
    assert abs(nca - hand_nca(logits[:, :4], y, 0.6)) > 1e-3  # the margin outside the scale would differ
    expected = nca + math.sqrt(2) * (3 * hand_pod(maps, teacher_maps) + (1 - cos).mean())
    assert podnet.loss(ctx, step).item() == pytest.approx(expected.item(), rel=1e-5)


def test_podnet_run_keeps_the_old_proxies_learns_each_task_and_reports_nme(tiny_stream):
    proxies = []

    class Recorder(type(build_strategy("podnet"))):
        def after_task(self, ctx):
            super().after_task(ctx)
            proxies.append(ctx.model.head.blocks[0].weight.detach().clone())

    # without the class-balanced fine-tuning (which tunes the whole classifier), the main phases leave
    # the old proxies as task 0 left them
    runner = Runner(tiny_model_for(tiny_stream, "podnet"), Recorder(memory=12, lr=0.05, finetune_epochs=0),
                    tiny_stream, tiny_config(), progress=False)
    doc = runner.run()
    first = proxies[0]
    assert torch.equal(proxies[1], first) and torch.equal(proxies[2], first)
    assert all(row[i] >= 90 for i, row in enumerate(doc["matrices"]["class_il"]))  # each task learnt
    assert runner.model.head.scale.item() > 0
    assert doc["matrices"]["nme_class_il"][-1][0] is not None


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

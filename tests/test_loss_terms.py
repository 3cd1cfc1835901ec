"""Every loss term checked against a hand computation written with plain torch ops.

The expected values never call ``lifelong_kd.losses``: softmax, cross-entropy,
KL, squared differences, the sigmoid BCE and cosines are spelt out below.
Teachers are a flatten "backbone" with an identity head, so their features
and logits are the input numbers themselves.
"""

import dataclasses
import math

import pytest
import torch
from torch import nn

from lifelong_kd.buffer import ReplaySample
from lifelong_kd.context import Step, TaskContext
from lifelong_kd.heads import IncrementalClassifier
from lifelong_kd.models import ContinualModel, frozen_copy
from lifelong_kd.options import FeatureDistillation
from lifelong_kd.strategies import build_strategy

# ---------------------------------------------------------------- hand formulas


def hand_log_softmax(z):
    """log softmax(z)_k = z_k - log sum_j exp(z_j), row-wise."""
    return z - z.exp().sum(dim=1, keepdim=True).log()


def hand_ce(logits, y):
    """mean_i -log softmax(s_i)[y_i]: one mean over all the rows given."""
    return -hand_log_softmax(logits)[torch.arange(len(y)), y].mean()


def hand_kl(student, teacher, temperature):
    """mean_i sum_k p_ik (log p_ik - log q_ik), p = softmax(t / T), q = softmax(s / T)."""
    log_p = hand_log_softmax(teacher / temperature)
    log_q = hand_log_softmax(student / temperature)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


def hand_sigmoid(z):
    return 1.0 / (1.0 + torch.exp(-z))


def hand_bce(logits, targets):
    """-mean_{i,k} [t log sigma(s) + (1 - t) log(1 - sigma(s))]."""
    p = hand_sigmoid(logits)
    return -(targets * p.log() + (1.0 - targets) * (1.0 - p).log()).mean()


def unit(values):
    """v / ||v||, by hand."""
    v = torch.tensor(values, dtype=torch.float32)
    return v / (v * v).sum().sqrt()


# ---------------------------------------------------------------- tiny models and contexts


def flatten_model(in_features, units, identity=False):
    """Backbone = flatten (features are the input numbers); head with ``units`` units.

    With ``identity`` the head's weight is eye(units, in_features) and its bias
    zero, so the logits are the first ``units`` input numbers.
    """
    head = IncrementalClassifier(in_features, units)
    if identity:
        with torch.no_grad():
            head.blocks[0].weight.copy_(torch.eye(units, in_features))
            head.blocks[0].bias.zero_()
    return ContinualModel(nn.Flatten(), head)


def teacher_with_logits(in_features, units):
    """A frozen teacher whose features are x.flatten(1) and whose logits are its first ``units`` numbers."""
    return frozen_copy(flatten_model(in_features, units, identity=True))


def context(stream, task_index, model, teacher=None):
    n_old = sum(len(t.classes) for t in stream.tasks[:task_index])
    n_seen = n_old + len(stream.tasks[task_index].classes)
    return TaskContext(
        stream.tasks[task_index], stream, model, teacher, n_old, n_seen, torch.device("cpu"), 0, 4,
        lambda: torch.autocast("cpu", enabled=False), lambda x: x.float(),
    )


def fill_memory(strategy, stream, logits=None):
    """Task 0: create the memory and offer it task 0's first len(logits) (or 6) samples."""
    ctx = context(stream, 0, flatten_model(3 * 8 * 8, 2))
    strategy.before_task(ctx)
    count = 6 if logits is None else len(logits)
    raw, y = stream.tasks[0].train.x[:count], stream.tasks[0].train.y[:count]
    step_logits = torch.zeros(count, 2) if logits is None else logits
    strategy.after_step(ctx, Step(raw, raw.float(), y, count, torch.zeros(count, 4), step_logits))
    return raw, y


# ---------------------------------------------------------------- DER++


STORED = torch.tensor([[1.0, -1.0], [0.5, 2.0], [-2.0, 0.0], [3.0, 1.0], [0.0, 0.5], [-1.0, -3.0]])
DERPP_LOGITS = torch.tensor([
    [0.2, -0.1, 1.5, 0.3],  # current
    [0.0, 0.4, -0.2, 1.1],  # current
    [1.3, -0.6, 0.2, 0.0],  # replay, first half: MSE on the stored 2 units
    [0.1, 1.7, -0.4, 0.9],  # replay, first half
    [2.0, 0.3, -1.0, 0.5],  # replay, second half: CE on its labels
    [-0.5, 0.8, 0.6, -0.2],  # replay, second half
])


def derpp_setup(tiny_stream, **hparams):
    """DER++ with 6 stored (x, logits over 2 units); at task 1 a step of 2 current + 4 replayed rows."""
    derpp = build_strategy("derpp", memory=6, replay_batch_size=2, **hparams)
    fill_memory(derpp, tiny_stream, STORED)
    ctx = context(tiny_stream, 1, flatten_model(3 * 8 * 8, 4))
    replay = derpp.replay_batch(ctx, torch.Generator().manual_seed(3))
    current_y = torch.tensor([2, 3])
    return derpp, ctx, replay, current_y


def derpp_step(replay, current_y, logits):
    x = torch.zeros(len(logits), 3, 8, 8)
    return Step(x, x, torch.cat([current_y, replay.y]), len(current_y), torch.zeros(len(logits), 4), logits, replay)


def test_derpp_loss_by_hand_and_its_beta_term(tiny_stream):
    """DER++: CE(current) + alpha * mean_{i<half,k<2} (s_ik - z_ik)^2 + beta * CE(second half, y_buf)."""
    derpp, ctx, replay, current_y = derpp_setup(tiny_stream, alpha=0.3, beta=0.5)
    assert len(replay) == 4 and len(set(replay.index.tolist())) == 4  # two batches of 2, without replacement
    step = derpp_step(replay, current_y, DERPP_LOGITS)
    first, second = replay.index[:2], replay.index[2:]
    assert torch.equal(replay.y[2:], tiny_stream.tasks[0].train.y[second])  # the beta CE's labels: the stored ones
    ce_current = hand_ce(DERPP_LOGITS[:2], current_y)
    mse = ((DERPP_LOGITS[2:4, :2] - STORED[first]) ** 2).sum() / 4
    ce_beta = hand_ce(DERPP_LOGITS[4:6], replay.y[2:])
    assert derpp.loss(ctx, step).item() == pytest.approx((ce_current + 0.3 * mse + 0.5 * ce_beta).item(), rel=1e-6)

    # the beta term alone: loss(beta=2) - loss(beta=0.5) = 1.5 * hand CE of the second half
    other = build_strategy("derpp", memory=6, replay_batch_size=2, alpha=0.3, beta=2.0)
    other.buffer = derpp.buffer
    difference = other.loss(ctx, step) - derpp.loss(ctx, step)
    assert difference.item() == pytest.approx(1.5 * ce_beta.item(), rel=1e-5)
    assert ce_beta.item() > 0.1  # the check above is not 0 == 0


def test_derpp_halves_are_disjoint_rows(tiny_stream):
    """DER++: the first half's rows enter only the MSE term, the second half's only the beta CE term."""
    derpp, ctx, replay, current_y = derpp_setup(tiny_stream, alpha=0.3, beta=0.5)
    other = build_strategy("derpp", memory=6, replay_batch_size=2, alpha=0.3, beta=2.0)
    other.buffer = derpp.buffer

    def beta_term(logits):
        step = derpp_step(replay, current_y, logits)
        return (other.loss(ctx, step) - derpp.loss(ctx, step)).item() / 1.5

    def mse_term(logits):
        step = derpp_step(replay, current_y, logits)
        return (derpp.loss(ctx, step) - hand_ce(logits[:2], current_y) - 0.5 * beta_term(logits)).item() / 0.3

    moved_first, moved_second = DERPP_LOGITS.clone(), DERPP_LOGITS.clone()
    moved_first[2:4] += torch.tensor([1.0, -2.0, 0.5, 3.0])
    moved_second[4:6] += torch.tensor([-1.0, 2.5, 0.0, 1.0])
    assert beta_term(moved_first) == pytest.approx(beta_term(DERPP_LOGITS), abs=1e-5)
    assert mse_term(moved_second) == pytest.approx(mse_term(DERPP_LOGITS), abs=1e-4)
    # and each term does see its own half
    assert beta_term(moved_second) == pytest.approx(hand_ce(moved_second[4:6], replay.y[2:]).item(), rel=1e-4)
    expected_mse = ((moved_first[2:4, :2] - STORED[replay.index[:2]]) ** 2).mean()
    assert mse_term(moved_first) == pytest.approx(expected_mse.item(), rel=1e-4)


# ---------------------------------------------------------------- ER and ER+KD


def test_er_loss_is_one_ce_mean_over_current_and_replayed_rows(tiny_stream):
    """ER: mean over the 3 current + 1 replayed rows of -log softmax(s_i)[y_i] over the 4 seen units."""
    er = build_strategy("er", memory=6, replay_batch_size=1)
    fill_memory(er, tiny_stream)
    ctx = context(tiny_stream, 1, flatten_model(3 * 8 * 8, 4))
    replay = er.replay_batch(ctx, torch.Generator().manual_seed(0))
    assert len(replay) == 1 and int(replay.y) in (0, 1)
    y = torch.cat([torch.tensor([2, 3, 2]), replay.y])
    logits = torch.tensor([[0.1, 0.2, 1.0, -0.5], [0.3, -0.2, 0.0, 2.0],
                           [1.5, 0.0, 0.4, 0.1], [-1.0, 2.0, 0.5, 0.0]])
    x = torch.zeros(4, 3, 8, 8)
    step = Step(x, x, y, 3, torch.zeros(4, 4), logits, replay)
    expected = hand_ce(logits, y)
    assert er.loss(ctx, step).item() == pytest.approx(expected.item(), rel=1e-6)
    # one batch mean, not the mean of the current and the replay means
    mean_of_means = (hand_ce(logits[:3], y[:3]) + hand_ce(logits[3:], y[3:])) / 2
    assert abs(mean_of_means.item() - expected.item()) > 0.05


def er_ace_step(tiny_stream, current_y, logits):
    """ER-ACE at task 1 (4 seen units): rows [current_y ; 1 replayed row of task 0]."""
    er_ace = build_strategy("er-ace", memory=6, replay_batch_size=1)
    fill_memory(er_ace, tiny_stream)
    ctx = context(tiny_stream, 1, flatten_model(3 * 8 * 8, 4))
    replay = er_ace.replay_batch(ctx, torch.Generator().manual_seed(0))
    y = torch.cat([current_y, replay.y])
    x = torch.zeros(len(y), 3, 8, 8)
    return er_ace, ctx, Step(x, x, y, len(current_y), torch.zeros(len(y), 4), logits, replay, current_y)


ER_ACE_LOGITS = torch.tensor([[0.1, 0.2, 1.0, -0.5], [0.3, -0.2, 0.0, 2.0], [1.5, 0.0, 0.4, 0.1],
                              [-1.0, 2.0, 0.5, 0.0]])


def test_er_ace_incoming_ce_is_over_the_present_classes_and_replay_ce_over_all(tiny_stream):
    """Incoming rows of classes {2, 3}: CE over units 2, 3 only; the replayed row: CE over the 4 units;
    the two means are summed (Caccia et al. 2022; Mammoth's er_ace)."""
    er_ace, ctx, step = er_ace_step(tiny_stream, torch.tensor([2, 3, 2]), ER_ACE_LOGITS)
    incoming = hand_ce(ER_ACE_LOGITS[:3, 2:], torch.tensor([0, 1, 0]))  # classes 2, 3 are units 0, 1 of the slice
    expected = incoming + hand_ce(ER_ACE_LOGITS[3:], step.y[3:])
    assert er_ace.loss(ctx, step).item() == pytest.approx(expected.item(), rel=1e-6)


def test_er_ace_replays_nothing_during_the_first_task(tiny_stream):
    """As the authors' code and Mammoth's: the memory fills during task 0 and replay starts at task 1."""
    er_ace = build_strategy("er-ace", memory=6, replay_batch_size=2)
    fill_memory(er_ace, tiny_stream)
    generator = torch.Generator().manual_seed(0)
    assert er_ace.replay_batch(context(tiny_stream, 0, flatten_model(3 * 8 * 8, 2)), generator) is None
    assert len(er_ace.replay_batch(context(tiny_stream, 1, flatten_model(3 * 8 * 8, 4)), generator)) == 2


def test_er_ace_masks_exactly_the_absent_classes(tiny_stream):
    """Classes 2 and 3 arrive: the incoming rows' gradient is zero on the old units 0, 1 (absent) and not on
    2, 3; the replayed row's gradient reaches every unit. In the first task nothing is masked."""
    logits = ER_ACE_LOGITS.clone().requires_grad_(True)
    er_ace, ctx, step = er_ace_step(tiny_stream, torch.tensor([3, 2, 3]), logits)
    er_ace.loss(ctx, step).backward()
    assert torch.equal(logits.grad[:3, :2], torch.zeros(3, 2)) and (logits.grad[:3, 2:] != 0).all()
    assert (logits.grad[3] != 0).all()
    first = context(tiny_stream, 0, flatten_model(3 * 8 * 8, 2))
    x = torch.zeros(2, 3, 8, 8)
    two = ER_ACE_LOGITS[:2, :2].clone().requires_grad_(True)
    only_one = torch.tensor([1, 1])
    er_ace.loss(first, Step(x, x, only_one, 2, torch.zeros(2, 4), two, None, only_one)).backward()
    assert (two.grad[:, 0] != 0).all()  # class 0 is absent but the first task is not masked


ERKD_LOGITS = torch.tensor([[0.5, -0.3, 1.2, 0.0], [1.0, 0.2, -0.4, 0.8],
                            [-0.7, 1.4, 0.1, 0.3], [0.2, 0.9, 0.0, -1.1]])
ERKD_TEACHER = torch.tensor([[1.5, -1.0], [0.0, 0.5], [2.0, -0.5], [-1.0, 1.0]])
ERKD_Y = torch.tensor([2, 3, 0, 1])  # 2 current rows, then 2 replayed rows of task 0


def erkd_step():
    x = ERKD_TEACHER.view(4, 2, 1, 1)  # the identity teacher's logits are these numbers
    replay = ReplaySample(x[2:], ERKD_Y[2:], torch.tensor([0, 1]))
    return Step(x, x, ERKD_Y, 2, torch.zeros(4, 4), ERKD_LOGITS, replay)


def test_er_kd_default_loss_is_ce_plus_alpha_kl_on_old_units_of_every_row_without_t2(tiny_stream):
    """ER+KD (defaults): CE(all rows) + alpha * mean_i KL(softmax(t_i/T) || softmax(s_i[:2]/T)), no T^2."""
    erkd = build_strategy("er-kd")
    alpha, temperature = erkd.hparams["alpha"], erkd.hparams["temperature"]
    assert temperature != 1.0  # so that a T^2 factor would show
    ctx = context(tiny_stream, 1, flatten_model(2, 4), teacher_with_logits(2, 2))
    expected = hand_ce(ERKD_LOGITS, ERKD_Y) + alpha * hand_kl(ERKD_LOGITS[:, :2], ERKD_TEACHER, temperature)
    loss = erkd.loss(ctx, erkd_step())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # the replayed rows are distilled too: a KD term on the current rows alone is another number
    current_only = hand_ce(ERKD_LOGITS, ERKD_Y) + alpha * hand_kl(ERKD_LOGITS[:2, :2], ERKD_TEACHER[:2], temperature)
    assert abs(current_only.item() - loss.item()) > 1e-3


def test_er_kd_alpha_temperature_and_t2_by_hand(tiny_stream):
    """ER+KD with alpha 0.5, T 3, t2: CE + 0.5 * 9 * mean_i KL(softmax(t_i/3) || softmax(s_i[:2]/3))."""
    erkd = build_strategy("er-kd", alpha=0.5, temperature=3.0, t2=True)
    ctx = context(tiny_stream, 1, flatten_model(2, 4), teacher_with_logits(2, 2))
    expected = hand_ce(ERKD_LOGITS, ERKD_Y) + 0.5 * 9.0 * hand_kl(ERKD_LOGITS[:, :2], ERKD_TEACHER, 3.0)
    assert erkd.loss(ctx, erkd_step()).item() == pytest.approx(expected.item(), rel=1e-6)
    # first task: no teacher, plain CE
    ctx0 = context(tiny_stream, 0, flatten_model(2, 2))
    logits, y = ERKD_LOGITS[:, :2], torch.tensor([0, 1, 1, 0])
    x = torch.zeros(4, 2, 1, 1)
    step = Step(x, x, y, 4, torch.zeros(4, 4), logits)
    assert erkd.loss(ctx0, step).item() == pytest.approx(hand_ce(logits, y).item(), rel=1e-6)


# ---------------------------------------------------------------- iCaRL


ICARL_LOGITS = torch.tensor([[0.5, -1.0, 2.0, 0.1], [-0.3, 0.8, -0.5, 1.5], [1.2, 0.4, 0.0, -0.6]])
ICARL_Y = torch.tensor([2, 3, 0])  # two current samples, one exemplar of old class 0
ICARL_TEACHER = torch.tensor([[1.0, -2.0, 9.0, 9.0], [0.5, 0.0, -9.0, 9.0], [3.0, -1.0, 9.0, -9.0]])


def icarl_loss(ctx, logits, teacher):
    """iCaRL's loss on a step whose teacher logits are ``teacher`` (the teacher has 4 units, n_old is 2)."""
    x = teacher.view(len(teacher), 4, 1, 1)
    return build_strategy("icarl", memory=4).loss(ctx, Step(x, x, ICARL_Y, 3, torch.zeros(3, 4), logits))


def test_icarl_bce_targets_are_teacher_sigmoids_on_old_units_one_hot_on_new(tiny_stream):
    """iCaRL: BCE(sigma(s_ik), target_ik), target = sigma(t_ik) for k < n_old, one-hot(y_i)_k otherwise."""
    ctx = context(tiny_stream, 1, flatten_model(4, 4), teacher_with_logits(4, 4))
    targets = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    targets[:, :2] = hand_sigmoid(ICARL_TEACHER[:, :2])  # the exemplar's unit 0 target is sigma(3), not 1
    logits = ICARL_LOGITS.clone().requires_grad_(True)
    loss = icarl_loss(ctx, logits, ICARL_TEACHER)
    assert loss.item() == pytest.approx(hand_bce(ICARL_LOGITS, targets).item(), rel=1e-6)
    # d loss / d s_ik = (sigma(s_ik) - target_ik) / (N K): the gradient reads the targets back
    loss.backward()
    assert torch.allclose(logits.grad, (hand_sigmoid(ICARL_LOGITS) - targets) / 12, atol=1e-7)


def test_icarl_teacher_enters_only_through_old_units(tiny_stream):
    """iCaRL: the teacher's units >= n_old never matter; its old units move the loss by the hand BCE change."""
    ctx = context(tiny_stream, 1, flatten_model(4, 4), teacher_with_logits(4, 4))
    base = icarl_loss(ctx, ICARL_LOGITS, ICARL_TEACHER)
    other_new = ICARL_TEACHER.clone()
    other_new[:, 2:] = torch.tensor([[-5.0, 1.0], [2.0, 2.0], [0.0, -3.0]])
    assert icarl_loss(ctx, ICARL_LOGITS, other_new).item() == pytest.approx(base.item(), rel=1e-7)
    other_old = ICARL_TEACHER.clone()
    other_old[:, :2] = torch.tensor([[-1.0, 2.0], [0.0, 0.0], [-3.0, 1.0]])
    targets = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    targets[:, :2] = hand_sigmoid(other_old[:, :2])
    moved = icarl_loss(ctx, ICARL_LOGITS, other_old)
    assert moved.item() == pytest.approx(hand_bce(ICARL_LOGITS, targets).item(), rel=1e-6)
    assert abs(moved.item() - base.item()) > 1e-3
    # first task: no teacher, every target is the one-hot label
    ctx0 = context(tiny_stream, 0, flatten_model(4, 2))
    logits, y = ICARL_LOGITS[:, :2], torch.tensor([0, 1, 1])
    x = torch.zeros(3, 4, 1, 1)
    loss0 = build_strategy("icarl", memory=4).loss(ctx0, Step(x, x, y, 3, torch.zeros(3, 4), logits))
    one_hot = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert loss0.item() == pytest.approx(hand_bce(logits, one_hot).item(), rel=1e-6)


# ---------------------------------------------------------------- LUCIR feature distillation


STUDENT_FEATURES = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
TEACHER_FEATURES = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
# cosines 0, 1/sqrt(2), 1
MEAN_ONE_MINUS_COS = (1.0 + (1.0 - 1.0 / math.sqrt(2.0)) + 0.0) / 3


@pytest.mark.parametrize(
    ("task_index", "weight", "adaptive"),
    [
        (1, 5.0, 5.0 * math.sqrt(2 / 2)),  # n_old 2, n_new 2
        (2, 5.0, 5.0 * math.sqrt(4 / 2)),  # n_old 4, n_new 2
        (2, 2.0, 2.0 * math.sqrt(4 / 2)),
    ],
)
def test_lucir_feature_distillation_with_its_adaptive_weight(tiny_stream, task_index, weight, adaptive):
    """LUCIR: weight * sqrt(n_old / n_new) * mean_i (1 - <f_i, g_i> / (|f_i| |g_i|))."""
    ctx = context(tiny_stream, task_index, flatten_model(3, 6), teacher_with_logits(3, 2 * task_index))
    assert (ctx.n_old, ctx.n_seen - ctx.n_old) == (2 * task_index, 2)
    x = TEACHER_FEATURES.view(3, 3, 1, 1)  # the teacher's features are these numbers
    step = Step(x, x, torch.tensor([4, 5, 4]), 3, STUDENT_FEATURES, torch.zeros(3, 6))
    f, g = STUDENT_FEATURES, TEACHER_FEATURES
    cosine = (f * g).sum(1) / ((f * f).sum(1).sqrt() * (g * g).sum(1).sqrt())
    assert (1.0 - cosine).mean().item() == pytest.approx(MEAN_ONE_MINUS_COS)
    loss = FeatureDistillation(weight).loss(ctx, step)
    assert loss.item() == pytest.approx(adaptive * MEAN_ONE_MINUS_COS, rel=1e-6)


def test_lucir_term_is_absent_during_the_first_task(tiny_stream):
    """LUCIR: no teacher, no term (None)."""
    ctx = context(tiny_stream, 0, flatten_model(3, 2))
    x = TEACHER_FEATURES.view(3, 3, 1, 1)
    assert FeatureDistillation().loss(ctx, Step(x, x, torch.tensor([0, 1, 0]), 3, STUDENT_FEATURES,
                                                torch.zeros(3, 2))) is None


# ---------------------------------------------------------------- NME with flipped exemplars


def test_nme_class_means_include_the_flipped_exemplars(tiny_stream):
    """NME: mu_c = normalise(sum_{x in c} normalise(f(x)) + normalise(f(flip(x)))), f not flip-invariant.

    Images are 1x1x3 and f flattens them, so a horizontal flip reverses the
    feature vector: the means with and without flips point different ways.
    """
    exemplars = torch.tensor([[3, 0, 4], [0, 1, 0], [1, 2, 2], [0, 0, 5]], dtype=torch.uint8).view(4, 1, 1, 3)
    labels = torch.tensor([0, 0, 1, 1])
    # class 0: (0.6, 0, 0.8) + (0.8, 0, 0.6) + 2 * (0, 1, 0); class 1: (1, 2, 2)/3 + (2, 2, 1)/3 + (0, 0, 1) + (1, 0, 0)
    with_flips = torch.stack([unit([1.4, 2.0, 1.4]), unit([2.0, 4 / 3, 2.0])])
    without_flips = torch.stack([unit([0.6, 1.0, 0.8]), unit([1 / 3, 2 / 3, 5 / 3])])
    assert not torch.allclose(with_flips, without_flips, atol=1e-2)

    def means(stream):
        icarl = build_strategy("icarl", memory=4)
        ctx = context(stream, 0, flatten_model(3, 2))
        icarl.before_task(ctx)
        icarl.buffer.replace(exemplars, labels, 0)
        return icarl.exemplar_means(ctx)

    assert tiny_stream.hflip
    assert torch.allclose(means(tiny_stream), with_flips, atol=1e-6)
    assert torch.allclose(means(dataclasses.replace(tiny_stream, hflip=False)), without_flips, atol=1e-6)

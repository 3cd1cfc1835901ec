"""Heads as types with behaviour, and the backbones' features before the last ReLU and stage
outputs: checked against hand computations."""

import math

import pytest
import torch
import torch.nn.functional as F
from test_loss_terms import unit

from lifelong_kd.heads import (
    HEADS,
    CosineClassifier,
    FixedClassifier,
    IncrementalClassifier,
    LocalSimilarityClassifier,
    MultiHeadClassifier,
)
from lifelong_kd.models import build_model

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


class TwoProxies(LocalSimilarityClassifier):
    proxies = 2


def test_local_similarity_head_by_hand_and_its_growth():
    """logit_c = eta * sum_k softmax_k(s_c) s_ck over the class's 2 proxies, s = 2 cos - 2."""
    head = TwoProxies(2, 1)
    with torch.no_grad():
        head.blocks[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))  # class 0's proxies
        head.scale.fill_(2.0)
    features = torch.tensor([[3.0, 4.0]])  # cosines 0.6 and 0.8: s = -0.8 and -0.4
    s = torch.tensor([-0.8, -0.4])
    weights = s.exp() / s.exp().sum()
    assert head(features).item() == pytest.approx(2.0 * (weights * s).sum().item(), rel=1e-6)
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
    shapes = {"reduced-resnet18": [(20, 16, 16), (40, 8, 8), (80, 4, 4), (160, 2, 2)],
              "resnet32": [(16, 16, 16), (32, 8, 8), (64, 4, 4)], "small-cnn": [(16, 16, 16), (32, 8, 8)]}
    for name, expected in shapes.items():
        backbone = build_model(name, 3, 4).backbone.eval()
        features, maps = backbone(x, stages=True)
        assert torch.equal(features, backbone(x))
        assert [tuple(m.shape[1:]) for m in maps] == expected
        pooled = F.adaptive_avg_pool2d(maps[-1], 1 if name != "small-cnn" else 2).flatten(1)
        assert torch.equal(pooled, features)  # the last map is the one the features pool

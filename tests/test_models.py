import pytest
import torch

from lifelong_kd.errors import UsageError
from lifelong_kd.heads import IncrementalClassifier, MultiHeadClassifier
from lifelong_kd.models import MODELS, build_model


@pytest.mark.parametrize("head_cls", [IncrementalClassifier, MultiHeadClassifier])
def test_growing_keeps_old_logits_bit_identical(head_cls):
    torch.manual_seed(0)
    head = head_cls(16)
    head.grow(2)
    features = torch.randn(8, 16)
    before = head(features).detach().clone()
    head.grow(5)
    after = head(features).detach()
    assert after.shape == (8, 5)
    assert torch.equal(after[:, :2], before)
    head.grow(5)
    assert head.num_classes == 5


def test_incremental_head_keeps_rows_and_adds_fresh_ones():
    head = IncrementalClassifier(4, 2)
    old_weight = head.weight.detach().clone()
    head.grow(3)
    assert torch.equal(head.weight[:2], old_weight)
    assert head.weight.shape == (3, 4) and head.num_classes == 3
    assert len(list(head.parameters())) == 4  # two blocks of (weight, bias)


def test_multi_head_has_one_head_per_task():
    head = MultiHeadClassifier(4)
    head.grow(2)
    head.grow(5)
    assert [block.out_features for block in head.blocks] == [2, 3]


@pytest.mark.parametrize("name,features", [
    ("reduced-resnet18", 160), ("resnet18", 512), ("resnet32", 64), ("small-cnn", 128),
])
def test_backbones_return_features(name, features):
    model = build_model(name, in_channels=3, num_classes=10, head="fixed")
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    assert model.features(x).shape == (2, features)
    assert model(x).shape == (2, 10)


def test_parameter_counts_match_the_literature():
    counts = {name: sum(p.numel() for p in spec.build(3).parameters()) for name, spec in MODELS.items()}
    assert 1.0e6 < counts["reduced-resnet18"] < 1.2e6  # GEM's reduced ResNet-18: ~1.1M
    assert 11.0e6 < counts["resnet18"] < 11.3e6
    assert 0.45e6 < counts["resnet32"] < 0.48e6  # ResNet-32: 0.46M


def test_unknown_model_and_head():
    with pytest.raises(UsageError, match="--model"):
        build_model("vgg", 3, 10)
    with pytest.raises(UsageError, match="--head"):
        build_model("small-cnn", 3, 10, head="shared")

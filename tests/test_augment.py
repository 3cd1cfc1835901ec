import torch

from lifelong_kd.augment import BatchAugment


def _images(n=6, size=8):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)


def test_eval_normalises_per_channel():
    aug = BatchAugment(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = aug.eval(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([1.0, 3.0, 1.0]))


def test_crop_is_a_window_of_the_zero_padded_image():
    x = _images()
    aug = BatchAugment(mean=(0, 0, 0), std=(1 / 255,) * 3, crop_padding=2, hflip=False)
    out = aug.train(x, torch.Generator().manual_seed(0)).round().to(torch.uint8)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifted = 0
    for i in range(len(x)):
        windows = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(padded[i, :, dy:dy + 8, dx:dx + 8], out[i])]
        assert windows, f"image {i} is not a crop of its padded original"
        shifted += windows[0] != (2, 2)
    assert shifted > 0


def test_flip_mirrors_about_half_the_batch():
    x = _images(n=400)
    aug = BatchAugment(mean=(0, 0, 0), std=(1 / 255,) * 3, crop_padding=0, hflip=True)
    out = aug.train(x, torch.Generator().manual_seed(1)).round().to(torch.uint8)
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((flipped | kept).all())
    assert 150 < int(flipped.sum()) < 250


def test_same_generator_seed_same_batch_and_channels_last():
    x = _images()
    aug = BatchAugment(mean=(0.5,) * 3, std=(0.5,) * 3, channels_last=True)
    a = aug.train(x, torch.Generator().manual_seed(5))
    b = aug.train(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert a.is_contiguous(memory_format=torch.channels_last)

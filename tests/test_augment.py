"""Batched augmentation: what it does to pixels, and that the seed fixes it."""

import pytest
import torch

from cifarlab.engine.augment import CIFAR10_COMMON_MEAN, CIFAR10_COMMON_STD, BatchPipeline, crop_flip, normalization


def images(b=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, 32, 32), generator=g, dtype=torch.uint8)


def reference_crop_flip(x, oy, ox, flip, pad=4, padding="zeros"):
    """Per-image crop/flip the obvious way (numpy's padding, independent of torch's), to check the
    batched gather against."""
    import numpy as np

    padded = torch.from_numpy(
        np.pad(x.numpy(), ((0, 0), (pad, pad), (pad, pad)), mode="reflect" if padding == "reflect" else "constant")
    )
    out = padded[:, oy : oy + 32, ox : ox + 32]
    return out.flip(-1) if flip else out


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_crop_flip_matches_per_image_reference(padding):
    x = images()
    g = torch.Generator().manual_seed(5)
    y = crop_flip(x, g, padding=padding) if padding != "zeros" else crop_flip(x, g)
    # replay the same draws the function made, in the same order
    g = torch.Generator().manual_seed(5)
    oy = torch.randint(0, 9, (16, 1), generator=g)
    ox = torch.randint(0, 9, (16, 1), generator=g)
    flip = torch.rand((16, 1), generator=g) < 0.5
    for i in range(16):
        ref = reference_crop_flip(x[i], oy[i].item(), ox[i].item(), flip[i].item(), padding=padding)
        assert torch.equal(y[i], ref), i
    assert y.dtype == torch.uint8 and y.shape == x.shape
    assert 0 < flip.sum() < 16  # both branches exercised


def test_same_seed_same_batch_other_seed_differs():
    x = images(64)
    a = crop_flip(x, torch.Generator().manual_seed(1))
    b = crop_flip(x, torch.Generator().manual_seed(1))
    c = crop_flip(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_normalize_uses_stats():
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 1.0)
    pipe = BatchPipeline("none", mean, std, torch.device("cpu"))
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    y = pipe(x, None, train=False)
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([1.0, 3.0, 1.0]))


def test_no_normalization_scales_to_unit_range():
    pipe = BatchPipeline("none", None, None, torch.device("cpu"))
    y = pipe(torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 1, 1), None)
    assert torch.allclose(y.flatten(), torch.tensor([0.0, 0.2, 1.0]))


def test_eval_mode_is_deterministic_and_unaugmented():
    pipe = BatchPipeline("crop_flip_blur_color", (0.5,) * 3, (0.5,) * 3, torch.device("cpu"))
    x = images(4)
    y = pipe(x, None, train=False)
    assert torch.equal(y, pipe(x, None, train=False))
    assert torch.allclose(y, (x.float() / 255 - 0.5) / 0.5, atol=1e-6)


def test_blur_color_keeps_shape_range_and_changes_pixels():
    pipe = BatchPipeline("crop_flip_blur_color", None, None, torch.device("cpu"))
    x = images(32)
    y = pipe(x, torch.Generator().manual_seed(0), train=True)
    assert y.shape == (32, 3, 32, 32) and y.dtype == torch.float32
    assert y.min() >= 0 and y.max() <= 1
    plain = BatchPipeline("crop_flip", None, None, torch.device("cpu"))(x, torch.Generator().manual_seed(0))
    assert not torch.allclose(y, plain)  # blur + jitter did something beyond crop/flip

    # blur smooths: neighbouring-pixel differences shrink on random-noise images
    def tv(t):
        return (t[..., 1:] - t[..., :-1]).abs().mean()

    assert tv(y) < tv(plain)


def test_reflect_padding_mirrors_the_image_where_zeros_padding_leaves_black():
    """A crop that reaches past the edge: zeros padding brings in black pixels, reflect brings in
    the image's own (an image with no 0 pixel keeps none)."""
    x = torch.randint(1, 256, (256, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    zeros = crop_flip(x, torch.Generator().manual_seed(3))
    reflect = crop_flip(x, torch.Generator().manual_seed(3), padding="reflect")
    assert (zeros == 0).any() and not (reflect == 0).any()
    pipe = BatchPipeline("crop_flip", None, None, torch.device("cpu"), padding="reflect")
    assert not (pipe(x, torch.Generator().manual_seed(3)) == 0).any()


def test_common_normalisation_is_the_hard_coded_constants_not_the_data():
    assert normalization("cifar10_common", (0.1,) * 3, (0.9,) * 3) == (CIFAR10_COMMON_MEAN, CIFAR10_COMMON_STD)
    assert normalization("dataset", (0.1,) * 3, (0.9,) * 3) == ((0.1,) * 3, (0.9,) * 3)

"""Input transformations: invariants over every transform, known answers and reference implementations."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from scipy import ndimage

from bastion.defenses import (
    JPEG,
    BitDepth,
    DefenseError,
    MedianSmoothing,
    RandomResizePad,
    Transform,
    available_transforms,
    parse_defense,
)
from bastion.defenses.transforms.jpeg import quantization_table
from bastion.errors import DataError

ALL = [
    JPEG(75),
    JPEG(20),
    BitDepth(4),
    BitDepth(1),
    MedianSmoothing(2),
    MedianSmoothing(3),
    RandomResizePad(),
]
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def _images(n: int = 4, c: int = 1, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    """Smooth images in [0, 1] (upsampled noise), like natural images at small scale."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, c, 4, 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("t", ALL, ids=repr)
@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_contract(t, bounds, dtype, device):
    low, high = bounds
    x = (_images(c=3) * (high - low) + low).to(device, dtype)
    before = x.clone()
    g = torch.Generator(device=device).manual_seed(1)
    out = t(x, bounds=bounds, generator=g)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert float(out.min()) >= low and float(out.max()) <= high
    assert torch.equal(x, before), "the caller's tensor was modified"
    again = t(x, bounds=bounds, generator=torch.Generator(device=device).manual_seed(1))
    assert torch.equal(out, again), "same seed, different output"
    # a transform is a defense only if it changes something, but must keep the image recognisable
    assert 0 < float((out - x).abs().mean()) < 0.4 * (high - low)


@pytest.mark.parametrize("t", ALL, ids=repr)
def test_bounds_are_respected_not_assumed(t):
    """The same image in (-1, 1) gives the same result as in (0, 1), mapped affinely."""
    x = _images(c=3)
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    unit = t(x, generator=g())
    signed = t(2 * x - 1, bounds=(-1.0, 1.0), generator=g())
    assert torch.allclose(signed, 2 * unit - 1, atol=1e-5)


def test_randomized_flags_and_draws():
    assert [t.randomized for t in (JPEG(), BitDepth(), MedianSmoothing())] == [False] * 3
    t = RandomResizePad(max_size_ratio=2.0)
    assert t.randomized
    x = torch.ones(64, 1, 16, 16)
    out = t(x, generator=torch.Generator().manual_seed(0))
    padded = (out < 0.5).flatten(1).float().mean(1)
    assert float((padded > 0).float().mean()) > 0.8, "most samples show padding (the lower bound)"
    assert bool((padded <= 0.8).all()), "the image keeps about 1/ratio**2 of the output or more"
    assert torch.unique(out.flatten(1), dim=0).shape[0] == 64, "each sample gets its own random draw"
    other = t(x, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(out, other), "another seed must give other draws"
    assert torch.equal(t(x), t(x)), "no generator: a default seed, not the clock"


def test_bit_depth_known_values():
    x = torch.tensor([0.0, 0.1, 0.2, 0.49, 0.51, 0.9, 1.0])
    assert BitDepth(1)(x).tolist() == [0, 0, 0, 0, 1, 1, 1]
    expected = torch.round(x * 7) / 7
    assert torch.allclose(BitDepth(3)(x), expected)
    # in (-1, 1) the 2 levels of 1 bit are the two bounds
    assert BitDepth(1)(torch.tensor([-0.9, -0.1, 0.1, 0.8]), bounds=(-1.0, 1.0)).tolist() == [-1, -1, 1, 1]
    assert torch.equal(BitDepth(8)(torch.arange(256) / 255.0), torch.arange(256) / 255.0)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_median_matches_scipy(size):
    """Xu et al.'s reference is scipy.ndimage.median_filter(mode='reflect'), even sizes included."""
    x = torch.rand(3, 2, 9, 7, generator=torch.Generator().manual_seed(size))
    ref = ndimage.median_filter(x.numpy(), size=(1, 1, size, size), mode="reflect")
    assert np.array_equal(MedianSmoothing(size)(x).numpy(), ref)


def test_median_size_2_window_is_up_and_left():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1.0  # a 2x2 window covers rows i-1..i: the spike spreads down and right
    x[0, 0, 1, 2] = 1.0
    out = MedianSmoothing(2)(x)[0, 0]
    assert out[1, 2] == 1 and out[2, 2] == 1 and out[1, 1] == 0 and out[0, 1] == 0


def test_jpeg_quality_tables_follow_libjpeg():
    assert torch.equal(quantization_table(50)[0, :3], torch.tensor([16.0, 11, 10], dtype=torch.float64))
    assert bool((quantization_table(100) == 1).all())
    assert quantization_table(75)[0, 0] == 8 and quantization_table(10)[7, 7] == 255
    assert quantization_table(90, chroma=True)[0, 0] == 3


def test_jpeg_error_shrinks_with_quality():
    x = torch.round(_images(n=6, c=3, h=24, w=24) * 255) / 255
    errors = [float((JPEG(q)(x) - x).abs().mean()) for q in (5, 25, 50, 75, 95, 100)]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 1 / 255, "quality 100 is near the identity"
    assert errors[0] > 4 / 255


def _pillow_roundtrip(image: np.ndarray, quality: int, mode: str) -> np.ndarray:
    pil = pytest.importorskip("PIL.Image")
    buf = io.BytesIO()
    pil.fromarray(image, mode=mode).save(buf, format="JPEG", quality=quality, subsampling=0)
    buf.seek(0)
    return np.asarray(pil.open(buf)).astype(np.float64)


@pytest.mark.parametrize("quality", [10, 50, 75, 95])
def test_jpeg_agrees_with_pillow(quality):
    x = torch.round(_images(n=3, c=3, h=37, w=45, seed=quality) * 255) / 255  # not multiples of 8
    gray = JPEG(quality)(x[:, :1])
    colour = JPEG(quality)(x)
    for i in range(x.shape[0]):
        g = (x[i, 0].numpy() * 255).round().astype(np.uint8)
        ref = _pillow_roundtrip(g, quality, "L")
        assert np.abs(gray[i, 0].numpy() * 255 - ref).mean() < 0.5
        rgb = (x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        ref = _pillow_roundtrip(rgb, quality, "RGB")
        assert np.abs(colour[i].permute(1, 2, 0).numpy() * 255 - ref).mean() < 1.5


@pytest.mark.parametrize("t", [JPEG(50), BitDepth(3)], ids=repr)
def test_bpda_is_exact_forward_identity_backward(t):
    x = _images().requires_grad_(True)
    out = t.bpda(x)
    assert torch.equal(out.detach(), t(x.detach()))
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    assert torch.equal(grad, weights), "identity surrogate: the gradient passes straight through"
    (naive,) = torch.autograd.grad((t(x) * weights).sum(), x)
    assert float(naive.abs().max()) == 0, "rounding kills the gradient of the transform as written"


def test_bpda_of_differentiable_transforms_is_their_own_gradient():
    x = _images().requires_grad_(True)
    for t in (MedianSmoothing(3), RandomResizePad()):
        out = t.bpda(x, generator=torch.Generator().manual_seed(0))
        ref = t(x, generator=torch.Generator().manual_seed(0))
        (g1,) = torch.autograd.grad(out.sum(), x)
        (g2,) = torch.autograd.grad(ref.sum(), x)
        assert torch.equal(g1, g2) and float(g1.abs().sum()) > 0


def test_parse_defense():
    chain = parse_defense("jpeg:60, bits:3,median,resize-pad:1.5")
    assert chain == [JPEG(60), BitDepth(3), MedianSmoothing(2), RandomResizePad(1.5)]
    assert [t.spec() for t in chain] == ["jpeg:60", "bits:3", "median:2", "resize-pad:1.5"]
    assert parse_defense(",".join(t.spec() for t in chain)) == chain
    assert set(available_transforms()) == {"jpeg", "bits", "median", "resize-pad"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gauss:1", "valid transforms: bits[:BITS], jpeg[:QUALITY], median[:SIZE], resize-pad[:RATIO]"),
        ("", "valid transforms"),
        ("jpeg:high", "jpeg takes an integer QUALITY"),
        ("jpeg:0", "from 1 to 100"),
        ("bits:2.5", "bits takes an integer BITS"),
        ("bits:17", "from 1 to 16"),
        ("median:0", "from 1 to 15"),
        ("resize-pad:0.9", "must be in (1, 4]"),
    ],
)
def test_parse_errors_say_what_to_do(spec, message):
    with pytest.raises(DefenseError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_defense(spec)


def test_bad_inputs():
    with pytest.raises(DefenseError, match="bilinear"):
        RandomResizePad(mode="bicubic")
    with pytest.raises(DataError, match="floating-point"):
        BitDepth()(torch.zeros(2, 3, dtype=torch.uint8))
    with pytest.raises(DataError, match="low < high"):
        BitDepth()(torch.zeros(2, 3), bounds=(1.0, 0.0))
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        JPEG()(torch.zeros(2, 64))
    with pytest.raises(DataError, match="too large"):
        MedianSmoothing(9)(torch.zeros(1, 1, 4, 4))
    assert BitDepth()(torch.rand(5, 64)).shape == (5, 64), "bit depth works element-wise on any shape"


@dataclass(frozen=True)
class _RandomGain(Transform):
    """Toy randomised, non-differentiable transform whose surrogate's gradient depends on the draw."""

    name: ClassVar[str] = "gain"
    randomized: ClassVar[bool] = True

    def _apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self._gain(x, generator) * x.detach()  # the graph is cut, like a numpy round trip

    def surrogate(self, x, *, bounds=(0.0, 1.0), generator=None):
        return self._gain(x, self._generator(x, generator)) * x

    @staticmethod
    def _gain(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        return 0.5 + 0.5 * torch.rand(shape, generator=generator, device=x.device)


def test_bpda_replays_the_random_draw_for_the_surrogate():
    x = _images(n=16).clamp(0.01, 1).requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    out = _RandomGain().bpda(x, generator=g)
    (grad,) = torch.autograd.grad(out.sum(), x)
    gain = (out / x).detach()  # the exact transform's draw, per sample
    assert torch.allclose(grad, gain), "the gradient must belong to the draw that made the output"
    assert gain.flatten(1).std(1).max() < 1e-5 and gain.flatten(1)[:, 0].unique().numel() == 16
    assert not torch.equal(_RandomGain().bpda(x, generator=g), out), "the generator moves on"

"""Triggers: pixels exactly where configured, nothing else touched, bounds, devices, errors."""

from __future__ import annotations

import pytest
import torch

from bastion.attacks.poisoning import BlendTrigger, PatchTrigger
from bastion.errors import AttackError, DataError


def images(n: int = 6, c: int = 1, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    """Values in [0.2, 0.8]: every pixel differs from the pattern's 0 and 1, so changes are visible."""
    g = torch.Generator().manual_seed(seed)
    return 0.2 + 0.6 * torch.rand(n, c, h, w, generator=g)


def box(shape: tuple[int, ...], row: int, col: int, size: int) -> torch.Tensor:
    m = torch.zeros(shape, dtype=torch.bool)
    m[..., row : row + size, col : col + size] = True
    return m


@pytest.mark.parametrize(("hw", "size"), [(8, 2), (28, 3), (32, 4), (9, 2), (64, 7)])
def test_default_size_scales_with_the_image(hw, size):
    assert PatchTrigger().region((1, hw, hw))[2] == size


@pytest.mark.parametrize(
    ("position", "row", "col"),
    [("bottom-right", 5, 5), ("bottom-left", 5, 0), ("top-right", 0, 5), ("top-left", 0, 0), ("center", 2, 2),
     ((1, 4), 1, 4)],
)  # fmt: skip
def test_patch_lands_exactly_where_configured(position, row, col):
    x = images()
    before = x.clone()
    out = PatchTrigger(size=3, position=position, pattern="checkerboard").apply(x)
    inside = box(x.shape, row, col, 3)
    assert torch.equal(x, before)  # the caller's tensor is never modified
    assert torch.equal((out != x), inside)  # changed exactly inside the patch
    assert torch.equal(out[~inside], x[~inside])  # bit for bit outside
    patch = out[:, 0, row : row + 3, col : col + 3]
    expected = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    assert torch.equal(patch, expected.expand_as(patch))


def test_patch_fills_every_channel_and_respects_bounds():
    x = images(3, c=3, h=32, w=32) * 2 - 1  # data in [-1, 1]
    white = PatchTrigger(pattern="white").apply(x, bounds=(-1.0, 1.0))
    black = PatchTrigger(pattern="black", position="top-left").apply(x, bounds=(-1.0, 1.0))
    assert torch.equal(white[:, :, 28:, 28:], torch.ones(3, 3, 4, 4))
    assert torch.equal(black[:, :, :4, :4], -torch.ones(3, 3, 4, 4))
    checker = PatchTrigger().pattern((3, 32, 32), bounds=(-1.0, 1.0))[:, 28:, 28:]
    assert set(checker.unique().tolist()) == {-1.0, 1.0}


def test_reduced_amplitude_interpolates_towards_the_pattern():
    x = images()
    out = PatchTrigger(size=2, pattern="white", amplitude=0.25).apply(x)
    assert torch.allclose(out[:, :, 6:, 6:], 0.75 * x[:, :, 6:, 6:] + 0.25)
    assert torch.equal(out[:, :, :6], x[:, :, :6])


def test_tensor_patterns_set_the_size():
    x = images(c=2)
    pattern = torch.tensor([[0.1, 0.9], [0.9, 0.1]])
    trig = PatchTrigger(pattern=pattern, position=(0, 0))
    out = trig.apply(x)
    assert trig.size == 2 and torch.equal(out[:, :, :2, :2], pattern.expand(6, 2, 2, 2))
    per_channel = torch.stack([pattern, 1 - pattern])
    out = PatchTrigger(pattern=per_channel, position=(0, 0)).apply(x)
    assert torch.equal(out[:, 1, :2, :2], (1 - pattern).expand(6, 2, 2))


def test_apply_keeps_dtype_and_device():
    x = images().double()
    out = PatchTrigger().apply(x)
    assert out.dtype == torch.float64 and out.device == x.device


def test_mask_and_pattern_describe_what_apply_does():
    x = images(c=3)
    for trig in (PatchTrigger(size=3, position=(2, 1), amplitude=0.5), BlendTrigger(alpha=0.3)):
        m, p = trig.mask((3, 8, 8)), trig.pattern((3, 8, 8))
        assert m.shape == p.shape == (3, 8, 8)
        assert torch.allclose(trig.apply(x), (1 - m) * x + m * p)


def test_blend_is_chen_et_al_formula_and_seeded():
    x = images(c=3)
    trig = BlendTrigger(alpha=0.2, seed=5)
    p = trig.pattern((3, 8, 8))
    assert torch.allclose(trig.apply(x), 0.8 * x + 0.2 * p, atol=1e-7)
    assert torch.equal(p, BlendTrigger(seed=5).pattern((3, 8, 8)))  # same seed, same noise image
    assert not torch.equal(p, BlendTrigger(seed=6).pattern((3, 8, 8)))
    wide = BlendTrigger(seed=5).pattern((3, 8, 8), bounds=(-2.0, 3.0))
    assert float(wide.min()) >= -2.0 and float(wide.max()) <= 3.0 and float(wide.max()) > 1.0


def test_blend_takes_tensor_patterns_and_tabular_data():
    x = images(c=3)
    hw = torch.full((8, 8), 0.5)
    assert torch.allclose(BlendTrigger(hw, alpha=1.0).apply(x), torch.full_like(x, 0.5))
    tab = torch.rand(4, 10)
    assert BlendTrigger(alpha=0.5).apply(tab).shape == (4, 10)
    with pytest.raises(AttackError, match="does not match"):
        BlendTrigger(torch.zeros(4, 4)).apply(x)


def test_params_are_json_ready():
    assert PatchTrigger(position=(1, 2)).params() == {
        "kind": "patch", "size": None, "position": [1, 2], "pattern": "checkerboard", "amplitude": 1.0,
    }  # fmt: skip
    assert PatchTrigger(pattern=torch.ones(2, 2)).params()["pattern"] == "custom"
    assert BlendTrigger(alpha=0.2).params() == {"kind": "blend", "pattern": "noise", "alpha": 0.2, "seed": 0}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PatchTrigger(size=0), "positive integer"),
        (lambda: PatchTrigger(position="middle"), "unknown position"),
        (lambda: PatchTrigger(position=(1, -1)), ">= 0"),
        (lambda: PatchTrigger(pattern="stripes"), "unknown patch pattern"),
        (lambda: PatchTrigger(pattern=torch.ones(2, 3)), "square"),
        (lambda: PatchTrigger(size=3, pattern=torch.ones(2, 2)), "contradicts"),
        (lambda: PatchTrigger(amplitude=0.0), "amplitude"),
        (lambda: PatchTrigger(amplitude="1"), "amplitude"),
        (lambda: BlendTrigger(alpha=1.5), "alpha"),
        (lambda: BlendTrigger(pattern="kitty"), "unknown blend pattern"),
    ],
)
def test_bad_hyperparameters_raise_attack_errors(make, message):
    with pytest.raises(AttackError, match=message):
        make()


def test_triggers_that_do_not_fit_raise():
    x = images()
    with pytest.raises(AttackError, match="does not fit"):
        PatchTrigger(size=9).apply(x)
    with pytest.raises(AttackError, match="overflows"):
        PatchTrigger(size=3, position=(6, 0)).apply(x)
    with pytest.raises(AttackError, match="outside the data's bounds"):
        PatchTrigger(pattern=torch.full((2, 2), 2.0)).apply(x)
    with pytest.raises(AttackError, match="channels"):
        PatchTrigger(pattern=torch.ones(2, 2, 2)).apply(images(c=3))
    with pytest.raises(DataError, match="BlendTrigger"):
        PatchTrigger().apply(torch.rand(4, 64))
    with pytest.raises(DataError, match="floating-point"):
        PatchTrigger().apply(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))

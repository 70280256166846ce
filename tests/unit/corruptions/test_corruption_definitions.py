"""Known answers for the common corruptions (Hendrycks & Dietterich, ICLR 2019) on known inputs."""

from __future__ import annotations

import colorsys
import itertools
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from bastion.corruptions import (
    CORRUPTIONS,
    CorruptionThreat,
    brightness,
    contrast,
    defocus_blur,
    elastic_transform,
    gaussian_blur,
    gaussian_noise,
    get_corruption,
    glass_blur,
    impulse_noise,
    pixelate,
    saturate,
    shot_noise,
    snow,
    spatter,
    speckle_noise,
    zoom_blur,
)
from bastion.corruptions.blur import clipped_zoom, disk_kernel, line_blur, local_pixel_swaps
from bastion.corruptions.weather import canny, chamfer_distance
from bastion.errors import BastionError, DataError, ThreatModelError

RANDOM = sorted(name for name, c in CORRUPTIONS.items() if c.random)
# saturate: the reference's severities 1-2 desaturate and 3-5 oversaturate, so it is not monotone;
# glass_blur alternates sigma (0.05, 0.25, 0.4, 0.25, 0.4) and elastic_transform's affine part shrinks
# with severity (2.56 -> 0.96 px): neither is monotone in distance (their own orderings are tested below);
# spatter switches from liquid (1-3) to mud (4-5), each monotone on its own (tested below)
MONOTONE = sorted(set(CORRUPTIONS) - {"saturate", "glass_blur", "elastic_transform", "spatter"})


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _smooth_image(n: int = 4, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Natural-ish images in [0.15, 0.85]: upsampled coarse noise, so blur and pixelate have work to do."""
    coarse = torch.rand(n, c, size // 4, size // 4, generator=_gen(seed))
    fine = torch.rand(n, c, size, size, generator=_gen(seed + 1))
    up = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return 0.15 + 0.7 * (0.7 * up + 0.3 * fine)


def _call(name: str, x: torch.Tensor, severity: int, seed: int = 0, bounds=(0.0, 1.0)) -> torch.Tensor:
    return get_corruption(name)(x, severity, _gen(seed), bounds=bounds)


def test_registry_lists_the_implemented_corruptions_and_typos_name_them() -> None:
    assert {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur"} <= set(
        CORRUPTIONS
    )
    assert {"defocus_blur", "brightness", "contrast", "pixelate", "jpeg_compression"} <= set(CORRUPTIONS)
    assert get_corruption("Gaussian-Noise") is gaussian_noise
    with pytest.raises(ThreatModelError, match=r"use one of: .*gaussian_noise") as info:
        get_corruption("gausian_noise")
    assert isinstance(info.value, BastionError) and "\n" not in str(info.value)


@pytest.mark.parametrize("severity", [0, 6, 2.5, True, "3"])
def test_bad_severity_is_a_one_line_error(severity) -> None:
    x = torch.full((1, 1, 4, 4), 0.5)
    with pytest.raises(ThreatModelError, match=r"severity must be an integer in 1\.\.5") as info:
        contrast(x, severity)
    assert "\n" not in str(info.value)
    with pytest.raises(ThreatModelError, match=r"1\.\.5"):
        CorruptionThreat("contrast", (1, severity))


def test_corruption_threat_validates_and_defaults_to_all_severities() -> None:
    assert CorruptionThreat("fog").severities == (1, 2, 3, 4, 5)
    assert CorruptionThreat("fog", (5, 1)).corruption is get_corruption("fog")
    with pytest.raises(ThreatModelError, match="unknown corruption 'frog'"):
        CorruptionThreat("frog")
    with pytest.raises(ThreatModelError, match="non-empty"):
        CorruptionThreat("fog", ())
    with pytest.raises(ThreatModelError, match="repeat"):
        CorruptionThreat("fog", (2, 2))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        contrast(torch.rand(3, 8, 8), 1)
    with pytest.raises(DataError, match="inside bounds"):
        contrast(torch.full((1, 1, 4, 4), 2.0), 1)
    with pytest.raises(DataError, match="needs at least 3 channels"):
        saturate(torch.rand(2, 1, 8, 8), 3)
    with pytest.raises(ThreatModelError, match="is random: pass generator"):
        gaussian_noise(torch.rand(1, 1, 4, 4), 1)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_brightness_and_contrast_closed_forms(severity: int) -> None:
    c_bright = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    x = torch.full((2, 1, 6, 6), 0.6)
    assert torch.allclose(brightness(x, severity), torch.full_like(x, min(0.6 + c_bright, 1.0)))
    assert torch.allclose(brightness(torch.full_like(x, 0.95), severity), torch.full_like(x, 1.0))
    # two values 0.2 / 0.8 in equal numbers: mean 0.5, contrast scales the deviation 0.3 by c
    c_con = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    two = torch.full((1, 3, 4, 4), 0.2)
    two[..., :2, :] = 0.8
    out = contrast(two, severity)
    assert torch.allclose(out[..., :2, :], torch.full_like(out[..., :2, :], 0.5 + 0.3 * c_con))
    assert torch.allclose(out[..., 2:, :], torch.full_like(out[..., 2:, :], 0.5 - 0.3 * c_con))


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_brightness_and_saturate_equal_hsv_definitions(severity: int) -> None:
    x = torch.rand(1, 3, 5, 5, generator=_gen(3), dtype=torch.float64)
    x[0, :, 0, 0] = 0.4  # grey: hue 0
    x[0, :, 0, 1] = 0.0  # black
    c_b = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    a, b = ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2))[severity - 1]
    pixels = x[0].permute(1, 2, 0).reshape(-1, 3).tolist()
    hsv = [colorsys.rgb_to_hsv(*p) for p in pixels]
    want_b = [colorsys.hsv_to_rgb(h, s, min(v + c_b, 1.0)) for h, s, v in hsv]
    want_s = [colorsys.hsv_to_rgb(h, min(max(s * a + b, 0.0), 1.0), v) for h, s, v in hsv]
    for fn, want in ((brightness, want_b), (saturate, want_s)):
        got = fn(x, severity)[0].permute(1, 2, 0).reshape(-1, 3)
        assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_pixelate_of_a_blockwise_constant_image_is_the_identity(severity: int) -> None:
    # 8x8 images go down to 7, 7, 6, 6, 5 pixels and back: an image constant on the one block it has
    # (per sample and channel) is unchanged; blocks that tile both grids are below
    x = torch.rand(3, 2, 1, 1, generator=_gen(1)).expand(3, 2, 8, 8).contiguous()
    assert torch.allclose(pixelate(x, severity), x, atol=1e-6)
    # and it changes a checkerboard (so the identity above is not vacuous)
    board = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2).float().view(1, 1, 8, 8)
    assert (pixelate(board, severity) - board).abs().max() > 0.1


@pytest.mark.parametrize(("size", "block", "severity"), [(20, 4, 4), (40, 10, 2), (40, 20, 3)])
def test_pixelate_of_an_image_constant_on_aligned_blocks_is_the_identity(size, block, severity) -> None:
    # 20 px at c = 0.75 -> 15 px: every 4x4 block maps onto 3x3 pixels and back; 40 -> 36 at c = 0.9
    # (10 -> 9) and 40 -> 34 at c = 0.85 (20 -> 17)
    k = size // block
    values = torch.rand(2, 3, k, k, generator=_gen(2))
    x = values.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)
    assert torch.allclose(pixelate(x, severity), x, atol=1e-6)
    noisy = x + 0.01 * torch.rand(x.shape, generator=_gen(3))
    assert not torch.allclose(pixelate(noisy.clamp(0, 1), severity), noisy.clamp(0, 1), atol=1e-4)


def test_gaussian_noise_residual_has_std_c_and_mean_zero() -> None:
    x = torch.full((4, 3, 64, 64), 0.5)
    for severity, c in enumerate((0.04, 0.06, 0.08, 0.09, 0.10), start=1):
        r = gaussian_noise(x, severity, _gen(severity)) - x
        assert abs(float(r.std()) - c) < 0.03 * c
        assert abs(float(r.mean())) < 0.003


def test_shot_and_speckle_noise_have_their_variances() -> None:
    x = torch.full((4, 3, 64, 64), 0.5)
    for severity, c in enumerate((500, 250, 100, 75, 50), start=1):
        r = shot_noise(x, severity, _gen(severity)) - x  # Poisson(c x)/c: variance x / c
        assert abs(float(r.std()) - math.sqrt(0.5 / c)) < 0.03 * math.sqrt(0.5 / c)
        assert abs(float(r.mean())) < 0.003
    for severity, c in enumerate((0.06, 0.10, 0.12, 0.16, 0.20), start=1):
        r = speckle_noise(x, severity, _gen(severity)) - x  # x * c * z: std 0.5 c
        assert abs(float(r.std()) - 0.5 * c) < 0.03 * 0.5 * c


def test_impulse_noise_hits_the_stated_fraction_with_low_and_high() -> None:
    x = torch.full((4, 3, 64, 64), 0.3)
    for severity, c in enumerate((0.01, 0.02, 0.03, 0.05, 0.07), start=1):
        out = impulse_noise(x, severity, _gen(severity), bounds=(0.0, 1.0))
        changed = out != x
        assert torch.all((out[changed] == 0.0) | (out[changed] == 1.0))
        assert abs(float(changed.float().mean()) - c) < 0.1 * c
        salt = float((out == 1.0).float().sum() / changed.float().sum())
        assert abs(salt - 0.5) < 0.06
    # in other bounds, the impulses are exactly low and high
    out = impulse_noise(torch.zeros(2, 1, 32, 32), 5, _gen(), bounds=(-1.0, 1.0))
    assert set(out.unique().tolist()) == {-1.0, 0.0, 1.0}


def test_blurs_keep_constants_and_the_mean() -> None:
    const = torch.full((2, 3, 8, 8), 0.37)
    x = _smooth_image(2, 3, 16)
    for name in ("gaussian_blur", "defocus_blur", "motion_blur"):
        for severity in (1, 3, 5):
            assert torch.allclose(_call(name, const, severity), const, atol=1e-6)
    for severity in (1, 5):
        # periodic-free check of the mean: interior mass is preserved, borders move it only slightly
        assert abs(float(gaussian_blur(x, severity).mean() - x.mean())) < 2e-3


def test_gaussian_blur_spreads_an_impulse_by_its_kernel() -> None:
    x = torch.zeros(1, 1, 15, 15)
    x[0, 0, 7, 7] = 1.0
    for severity, sigma in enumerate((0.4, 0.6, 0.7, 0.8, 1.0), start=1):
        out = gaussian_blur(x, severity)
        radius = int(4 * sigma + 0.5)
        taps = torch.exp(-(torch.arange(-radius, radius + 1.0) ** 2) / (2 * sigma**2))
        taps = taps / taps.sum()
        want = torch.zeros(15, 15)
        want[7 - radius : 8 + radius, 7 - radius : 8 + radius] = torch.outer(taps, taps)
        assert torch.allclose(out[0, 0], want, atol=1e-6)
        assert abs(float(out.sum()) - 1.0) < 1e-5
        # borders are replicated (SciPy's "nearest"): a lit first column keeps w_0 + the left half
        edge = torch.zeros(1, 1, 9, 9)
        edge[..., 0] = 1.0
        expected = float(taps[radius:].sum())
        got = gaussian_blur(edge, severity)[..., 0]
        assert torch.allclose(got, torch.full((1, 1, 9), expected), atol=1e-6)


def test_defocus_disk_kernel() -> None:
    for radius, alias in ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)):
        k = disk_kernel(radius, alias, dtype=torch.float64)
        assert abs(float(k.sum()) - 1.0) < 1e-12
        assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0))
    # radius 1.5 at nearly no anti-aliasing: the 3x3 disk (|i|, |j| <= 1) with equal weights
    k = disk_kernel(1.5, 0.01, dtype=torch.float64)
    centre = k[k.shape[0] // 2 - 1 : k.shape[0] // 2 + 2, k.shape[1] // 2 - 1 : k.shape[1] // 2 + 2]
    assert torch.allclose(centre, torch.full((3, 3), 1 / 9, dtype=torch.float64), atol=1e-9)
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    assert torch.count_nonzero(defocus_blur(x, 1)) > 1


@pytest.mark.parametrize("name", MONOTONE)
def test_severity_increases_the_distance_to_the_clean_image(name: str) -> None:
    x = _smooth_image(4, 3, 32)
    distances = [float((_call(name, x, s, seed=7) - x).norm()) for s in (1, 2, 3, 4, 5)]
    # motion blur's CIFAR-10-C severities 3 and 4 share sigma = 2 (only the negligible tail differs)
    tolerance = 0.02 if name == "motion_blur" else 0.0
    for lo, hi in itertools.pairwise(distances):
        assert hi >= lo * (1 - tolerance), distances
    assert distances[-1] > distances[0] > 0


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)])
def test_outputs_keep_shape_dtype_bounds_and_inputs_unchanged(name: str, bounds) -> None:
    low, high = bounds
    x01 = _smooth_image(2, 3, 16)
    x01[0, :, :2] = 0.0  # touch both bounds so clipping matters
    x01[1, :, :2] = 1.0
    x = (x01 * (high - low) + low).to(torch.float64)
    before = x.clone()
    out = _call(name, x, 5, bounds=bounds)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert float(out.min()) >= low and float(out.max()) <= high
    assert torch.equal(x, before)
    # rescaling: the same corruption in other bounds is the [0, 1] one mapped affinely
    ref = _call(name, x01.to(torch.float64), 5)
    tol = 2e-2 if name == "jpeg_compression" else 1e-6
    assert torch.allclose((out - low) / (high - low), ref, atol=tol)


@pytest.mark.parametrize("name", RANDOM)
def test_same_seed_same_output_other_seed_differs(name: str) -> None:
    x = _smooth_image(2, 3, 16)
    a, b, other = _call(name, x, 3, seed=5), _call(name, x, 3, seed=5), _call(name, x, 3, seed=6)
    assert torch.equal(a, b)
    assert not torch.equal(a, other)


def test_deterministic_corruptions_ignore_the_generator() -> None:
    x = _smooth_image(2, 3, 16)
    for name, c in CORRUPTIONS.items():
        if not c.random:
            assert torch.equal(c(x, 4), c(x, 4, _gen(1))), name


def test_single_channel_inputs_work_except_for_saturate() -> None:
    x = _smooth_image(2, 1, 8)
    for name in sorted(set(CORRUPTIONS) - {"saturate"}):
        out = _call(name, x, 5)
        assert out.shape == x.shape and not torch.equal(out, x), name


def test_zoom_blur_factors_are_the_reference_aranges() -> None:
    for stop, factors in zip((1.06, 1.11, 1.16, 1.21, 1.26), zoom_blur.constants, strict=True):
        assert factors == tuple(float(z) for z in np.arange(1, stop, 0.01))
    assert [len(f) for f in zoom_blur.constants] == [7, 12, 16, 21, 26]


def test_clipped_zoom_by_two_on_a_4x4_image_by_hand() -> None:
    # ceil(4 / 2) = 2 rows/cols from index 1, stretched to 4 with aligned ends: a, 2a/3 + b/3, a/3 + 2b/3, b
    x = torch.arange(16, dtype=torch.float64).view(1, 1, 4, 4) / 16
    crop = x[0, 0, 1:3, 1:3]
    w = torch.tensor([[1, 0], [2 / 3, 1 / 3], [1 / 3, 2 / 3], [0, 1]], dtype=torch.float64)
    want = w @ crop @ w.T
    assert torch.allclose(clipped_zoom(x, 2.0)[0, 0], want, atol=1e-12)
    # zoom_blur's definition: (x + sum of zooms) / (count + 1); factor 1 is the identity
    got = zoom_blur.kernel(x, (1.0, 2.0), None)
    assert torch.allclose(got[0, 0], (2 * x[0, 0] + want) / 3, atol=1e-12)
    assert torch.allclose(clipped_zoom(x, 1.0), x)


@pytest.mark.parametrize("size", [12, 17, 32])
def test_clipped_zoom_equals_scipy_zoom_as_the_reference_calls_it(size: int) -> None:
    x = torch.rand(1, 2, size, size, generator=_gen(4), dtype=torch.float64)
    img = x[0].permute(1, 2, 0).numpy()
    for factor in sorted(set(itertools.chain(*zoom_blur.constants))):
        ch = int(np.ceil(size / factor))
        top = (size - ch) // 2
        zoomed = ndimage.zoom(img[top : top + ch, top : top + ch], (factor, factor, 1), order=1)
        trim = (zoomed.shape[0] - size) // 2
        want = zoomed[trim : trim + size, trim : trim + size]
        got = clipped_zoom(x, factor)[0].permute(1, 2, 0).numpy()
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-12, factor


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_zoom_and_glass_blur_and_elastic_keep_a_constant_image(severity: int) -> None:
    const = torch.full((2, 3, 16, 16), 0.37, dtype=torch.float64)
    for name in ("zoom_blur", "glass_blur", "elastic_transform"):
        assert torch.allclose(_call(name, const, severity), const, atol=1e-12), name


def _reference_swaps(img: np.ndarray, d: int, iterations: int, offsets: np.ndarray) -> np.ndarray:
    """The reference's loop on one (H, W, C) image, with its randint draws replaced by ``offsets``."""
    img = img.copy()
    h, w = img.shape[:2]
    for it in range(iterations):
        for a, row in enumerate(range(h - d, d, -1)):
            for b, col in enumerate(range(w - d, d, -1)):
                dx, dy = offsets[it, a, b]
                rp, cp = row + dy, col + dx
                img[row, col], img[rp, cp] = img[rp, cp].copy(), img[row, col].copy()
    return img


@pytest.mark.parametrize(("d", "iterations", "size"), [(1, 1, 8), (1, 2, 9), (2, 1, 10)])
def test_local_pixel_swaps_follow_the_reference_loop_and_permute_pixels(d, iterations, size) -> None:
    x = torch.rand(3, 2, size, size, generator=_gen(5), dtype=torch.float64)
    out = local_pixel_swaps(x, d, iterations, _gen(9))
    n_side = len(range(size - d, d, -1))
    offsets = torch.randint(-d, d, (iterations, n_side, n_side, 3, 2), generator=_gen(9)).numpy()
    assert offsets.min() == -d and offsets.max() == d - 1
    for k in range(3):
        want = _reference_swaps(x[k].permute(1, 2, 0).numpy(), d, iterations, offsets[:, :, :, k])
        assert np.array_equal(out[k].permute(1, 2, 0).numpy(), want)
        # a permutation of whole pixels: the multiset of (channel 0, channel 1) pairs is unchanged
        pixels = lambda t: sorted(map(tuple, t.permute(1, 2, 0).reshape(-1, 2).tolist()))  # noqa: E731
        assert pixels(out[k]) == pixels(x[k])
    assert not torch.equal(out, x)


def test_glass_blur_is_blur_swap_blur_with_the_same_draws() -> None:
    x = _smooth_image(2, 3, 16).double()
    for severity, (sigma, d, iterations) in enumerate(glass_blur.constants, start=1):
        blurred = gaussian_blur.kernel(x, sigma, None)
        want = gaussian_blur.kernel(local_pixel_swaps(blurred, d, iterations, _gen(3)), sigma, None)
        assert torch.allclose(glass_blur(x, severity, _gen(3)), want.clamp(0, 1), atol=1e-12)
        assert sigma == (0.05, 0.25, 0.4, 0.25, 0.4)[severity - 1] and d == 1
    # a 2x2 image has no pixel to swap (rows 1 down to 2): two blurs
    tiny = torch.rand(1, 1, 2, 2, generator=_gen(1), dtype=torch.float64)
    twice = gaussian_blur.kernel(gaussian_blur.kernel(tiny, 0.4, None), 0.4, None)
    assert torch.allclose(glass_blur(tiny, 3, _gen(0)), twice, atol=1e-12)


def test_glass_blur_two_sweeps_move_further_than_one_at_the_same_sigma() -> None:
    x = _smooth_image(4, 3, 32)
    dist = {
        s: np.mean([float((glass_blur(x, s, _gen(k)) - x).abs().mean()) for k in range(3)])
        for s in (2, 3, 4, 5)
    }
    assert dist[4] > dist[2] and dist[5] > dist[3], dist


def _reference_elastic(img: np.ndarray, c, shift: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """The reference's elastic_transform on one (H, W, C) image with its two random draws given:
    ``getAffineTransform`` solved forward and inverted as ``warpAffine`` does, SciPy for the rest."""
    alpha, sigma, _ = c
    h, w = img.shape[:2]
    cx, cy, s = w // 2, h // 2, min(h, w) // 3
    pts1 = np.array([[cx + s, cy + s], [cx + s, cy - s], [cx - s, cy - s]], dtype=np.float64)
    pts2 = pts1 + shift
    forward = np.linalg.solve(np.c_[pts1, np.ones(3)], pts2).T  # (2, 3): pts1 -> pts2
    full = np.vstack([forward, [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    sx = inverse[0, 0] * xx + inverse[0, 1] * yy + inverse[0, 2]
    sy = inverse[1, 0] * xx + inverse[1, 1] * yy + inverse[1, 2]
    warped = np.stack(
        [ndimage.map_coordinates(img[..., k], [sy, sx], order=1, mode="mirror") for k in range(img.shape[2])],
        -1,
    )
    smooth = (
        (lambda f: ndimage.gaussian_filter(f, sigma, mode="reflect", truncate=3))
        if sigma > 0
        else (lambda f: f)
    )
    dx, dy = smooth(noise[0]) * alpha, smooth(noise[1]) * alpha
    return np.stack(
        [
            ndimage.map_coordinates(warped[..., k], [yy + dy, xx + dx], order=1, mode="reflect")
            for k in range(img.shape[2])
        ],
        -1,
    )


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("size", [32, 16])
def test_elastic_transform_equals_the_reference_steps_with_the_same_draws(severity: int, size: int) -> None:
    x = _smooth_image(2, 3, size).double()
    c = tuple(size * f for f in elastic_transform.constants[severity - 1])  # the reference's IMSIZE * f
    g = _gen(11)
    shift = torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * (2 * c[2]) - c[2]
    noise = torch.rand(2, 2, size, size, generator=g, dtype=torch.float64) * 2 - 1
    got = elastic_transform(x, severity, _gen(11))
    for k in range(2):
        want = _reference_elastic(x[k].permute(1, 2, 0).numpy(), c, shift[k].numpy(), noise[k].numpy())
        assert np.abs(got[k].permute(1, 2, 0).numpy() - np.clip(want, 0, 1)).max() < 1e-10
    assert (got - x).abs().mean() > 0.01


def test_elastic_transform_constants_and_identity_at_zero() -> None:
    want = [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)]
    assert elastic_transform.constants == tuple(want)
    x = _smooth_image(2, 3, 16).double()
    assert torch.allclose(elastic_transform.kernel(x, (0.0, 0.0, 0.0), _gen(0)), x, atol=1e-12)
    # only the displacement (no affine): a field of size alpha moves the image, alpha 0 does not
    assert torch.allclose(elastic_transform.kernel(x, (0.0, 2.0, 0.0), _gen(0)), x, atol=1e-12)
    assert not torch.allclose(elastic_transform.kernel(x, (0.2, 0.1, 0.0), _gen(0)), x, atol=1e-3)
    # images under 3 pixels a side: no affine part, only the displacement
    tiny = torch.rand(1, 1, 2, 2, generator=_gen(2), dtype=torch.float64)
    assert torch.allclose(elastic_transform.kernel(tiny, (0.0, 0.0, 0.5), _gen(0)), tiny, atol=1e-12)


def test_elastic_affine_part_maps_a_linear_ramp_to_a_linear_ramp() -> None:
    # bilinear interpolation reproduces affine functions and affine maps compose: with alpha = 0 the
    # interior (where no border folding happens) is again affine in (row, col): zero second differences
    axis = torch.arange(32, dtype=torch.float64)
    ii, jj = torch.meshgrid(axis, axis, indexing="ij")
    ramp = (0.2 + 0.01 * ii + 0.015 * jj).view(1, 1, 32, 32).expand(3, 1, 32, 32)
    out = elastic_transform.kernel(ramp, (0.0, 0.0, 0.08), _gen(2))[:, 0, 8:24, 8:24]
    assert torch.allclose(out[:, 2:] - 2 * out[:, 1:-1] + out[:, :-2], torch.zeros(1).double(), atol=1e-12)
    assert torch.allclose(
        out[:, :, 2:] - 2 * out[:, :, 1:-1] + out[:, :, :-2], torch.zeros(1).double(), atol=1e-12
    )
    assert not torch.allclose(out, ramp[:, 0, 8:24, 8:24], atol=1e-3)


def _reference_motion_blur(layer: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's MotionBlurImage on one (H, W) layer: ``2 radius + 1`` one-sided Gaussian taps, offsets
    ``ceil(i cos a - 0.5)``, ``ceil(i sin a - 0.5)`` (columns, rows), edge virtual pixels."""
    h, w = layer.shape
    width = 2 * radius + 1
    kernel = np.exp(-(np.arange(width, dtype=np.float64) ** 2) / (2 * sigma**2))
    kernel /= kernel.sum()
    a = np.deg2rad(angle)
    px, py = width * np.sin(a), width * np.cos(a)
    rows, cols = np.mgrid[0:h, 0:w]
    out = np.zeros_like(layer)
    for i in range(width):
        ox = int(np.ceil(i * py / np.hypot(px, py) - 0.5))
        oy = int(np.ceil(i * px / np.hypot(px, py) - 0.5))
        out += kernel[i] * layer[np.clip(rows + oy, 0, h - 1), np.clip(cols + ox, 0, w - 1)]
    return out


def _reference_snow(img: np.ndarray, c, noise: np.ndarray, angle: float) -> np.ndarray:
    """The reference's snow on one (H, W, C) square image, its normal draw (standard, before loc/scale) and
    angle given; SciPy's zoom for clipped_zoom, no uint8 round trip."""
    loc, scale, zoom, threshold, radius, sigma, keep = c
    size = img.shape[0]
    layer = (noise * scale + loc)[..., np.newaxis]
    ch = int(np.ceil(size / zoom))
    top = (size - ch) // 2
    layer = ndimage.zoom(layer[top : top + ch, top : top + ch], (zoom, zoom, 1), order=1)
    trim = (layer.shape[0] - size) // 2
    layer = layer[trim : trim + size, trim : trim + size]
    layer[layer < threshold] = 0
    layer = _reference_motion_blur(np.clip(layer[..., 0], 0, 1), radius, sigma, angle)[..., np.newaxis]
    gray = img @ np.array([0.299, 0.587, 0.114]) if img.shape[2] == 3 else img[..., 0]
    img = keep * img + (1 - keep) * np.maximum(img, gray[..., np.newaxis] * 1.5 + 0.5)
    return np.clip(img + layer + np.rot90(layer, k=2), 0, 1)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
@pytest.mark.parametrize(("size", "channels"), [(32, 3), (16, 1)])
def test_snow_equals_the_reference_steps_with_the_same_draws(severity: int, size: int, channels: int) -> None:
    x = (_smooth_image(3, channels, size) - 0.1).clamp(0, 1).double()
    g = _gen(13)
    noise = torch.randn(3, 1, size, size, generator=g, dtype=torch.float64)
    angle = torch.rand(3, generator=g, dtype=torch.float64) * 90.0 - 135.0
    got = snow(x, severity, _gen(13))
    c = snow.constants[severity - 1]
    for k in range(3):
        want = _reference_snow(x[k].permute(1, 2, 0).numpy(), c, noise[k, 0].numpy(), float(angle[k]))
        assert np.abs(got[k].permute(1, 2, 0).numpy() - want).max() < 1e-6, k
    assert float(angle.min()) >= -135 and float(angle.max()) <= -45
    assert (got - x).abs().mean() > 0.01


def test_snow_constants_never_darken_and_a_flakeless_constant_image() -> None:
    want = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ]
    assert snow.constants == tuple(tuple(float(v) for v in row) for row in want)
    x = _smooth_image(2, 3, 16).double()
    for severity in (1, 2, 3, 4, 5):
        assert bool((snow(x, severity, _gen(severity)) >= x - 1e-12).all())
    # no flake passes the threshold (loc far below it): a constant colour v with grey level g becomes
    # keep v + (1 - keep) max(v, 1.5 g + 0.5), the same everywhere
    colour = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64).view(1, 3, 1, 1).expand(2, 3, 8, 8)
    g = 0.299 * 0.2 + 0.587 * 0.5 + 0.114 * 0.3
    out = snow.kernel(colour, (-10.0, 0.1, 1.0, 0.5, 4, 2.0, 0.8), _gen(0))
    want_px = 0.8 * colour + 0.2 * torch.clamp(torch.full_like(colour, 1.5 * g + 0.5), min=colour)
    assert torch.allclose(out, want_px, atol=1e-12)
    with pytest.raises(DataError, match="1 \\(grey\\) or 3 \\(RGB\\) channels"):
        snow(torch.rand(1, 2, 8, 8), 1, _gen(0))


def test_line_blur_of_an_impulse_is_its_tap_weights_along_the_line() -> None:
    # angle -90: the taps sample the pixels above, so an impulse streaks downwards over 2 radius + 1 rows
    x = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    x[0, 0, 2, 4] = 1.0
    out = line_blur(x, 3, 1.5, torch.tensor([-90.0]))
    taps = torch.exp(-(torch.arange(7.0, dtype=torch.float64) ** 2) / (2 * 1.5**2))
    taps = taps / taps.sum()
    want = torch.zeros(9, 9, dtype=torch.float64)
    want[2:9, 4] = taps
    assert torch.allclose(out[0, 0], want, atol=1e-12)


def _reference_canny(u: np.ndarray, low: int, high: int) -> np.ndarray:
    """OpenCV's Canny (aperture 3, L1) written as its per-pixel loop: Sobel with replicated borders,
    fixed-point sectors, zero magnitude outside, stack-based hysteresis."""
    h, w = u.shape
    p = np.pad(u.astype(np.int64), 1, mode="edge")
    dx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    dy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    mag = np.abs(dx) + np.abs(dy)

    def m_at(i: int, j: int) -> int:
        return int(mag[i, j]) if 0 <= i < h and 0 <= j < w else 0

    state = np.zeros((h, w), dtype=np.int64)  # 0 not an edge, 1 candidate, 2 edge
    stack = []
    for i in range(h):
        for j in range(w):
            m = int(mag[i, j])
            if m <= low:
                continue
            xs, ys = int(dx[i, j]), int(dy[i, j])
            x, y = abs(xs), abs(ys) << 15
            tg22x = x * int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)
            if y < tg22x:
                keep = m > m_at(i, j - 1) and m >= m_at(i, j + 1)
            elif y > tg22x + (x << 16):
                keep = m > m_at(i - 1, j) and m >= m_at(i + 1, j)
            else:
                s = -1 if (xs ^ ys) < 0 else 1
                keep = m > m_at(i - 1, j - s) and m > m_at(i + 1, j + s)
            if keep:
                state[i, j] = 2 if m > high else 1
                if m > high:
                    stack.append((i, j))
    while stack:
        i, j = stack.pop()
        for a in (i - 1, i, i + 1):
            for b in (j - 1, j, j + 1):
                if 0 <= a < h and 0 <= b < w and state[a, b] == 1:
                    state[a, b] = 2
                    stack.append((a, b))
    return state == 2


def _reference_distance(nonzero: np.ndarray) -> np.ndarray:
    """OpenCV's distanceTransform_5x5 (DIST_L2 metrics 1, 1.4, 2.1969 in 16-bit fixed point): a forward
    and a backward scan, pixels outside the image at "infinity"."""
    h, w = nonzero.shape
    a, b, c = 65536, round(1.4 * 65536), round(2.1969 * 65536)
    inf = 1 << 40
    d = np.full((h + 4, w + 4), inf, dtype=np.int64)
    fwd = [(-2, -1, c), (-2, 1, c), (-1, -2, c), (-1, -1, b), (-1, 0, a), (-1, 1, b), (-1, 2, c), (0, -1, a)]
    for i in range(h):
        for j in range(w):
            if not nonzero[i, j]:
                d[i + 2, j + 2] = 0
            else:
                d[i + 2, j + 2] = min(d[i + 2 + r, j + 2 + q] + cost for r, q, cost in fwd)
    for i in range(h - 1, -1, -1):
        for j in range(w - 1, -1, -1):
            best = min(d[i + 2 - r, j + 2 - q] + cost for r, q, cost in fwd)
            d[i + 2, j + 2] = min(d[i + 2, j + 2], best)
    return d[2:-2, 2:-2] / 65536.0


def _reference_equalize(u: np.ndarray) -> np.ndarray:
    hist = np.bincount(u.ravel().astype(np.int64), minlength=256)
    i = int(np.nonzero(hist)[0][0])
    if hist[i] == u.size:
        return np.full_like(u, i)
    scale = np.float32(255.0 / (u.size - hist[i]))
    lut = np.zeros(256)
    total = 0
    for j in range(i + 1, 256):
        total += int(hist[j])
        lut[j] = min(max(np.round(np.float32(total) * scale), 0), 255)
    return lut[u.astype(np.int64)]


def _reference_spatter(img: np.ndarray, c, noise: np.ndarray) -> np.ndarray:
    """The reference's spatter on one (H, W, C) image with its normal draw given; OpenCV's steps replayed
    above, SciPy for the blurs (scikit-image's gaussian: "nearest", truncate 4)."""
    loc, scale, sigma, threshold, intensity, mud = c
    layer = ndimage.gaussian_filter(noise * scale + loc, sigma, mode="nearest", truncate=4.0)
    layer[layer < threshold] = 0
    box = np.ones((3, 3))
    if mud == 0:
        u = np.floor(layer * 255).astype(np.int64) % 256
        dist = np.minimum(_reference_distance(~_reference_canny(u, 50, 150)), 20.0)
        dist = np.floor(ndimage.correlate(dist, box, mode="mirror") * (1 / 9))
        dist = _reference_equalize(dist)
        ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
        dist = np.clip(np.round(ndimage.correlate(dist, ker, mode="mirror")), 0, 255)
        dist = np.round(ndimage.correlate(dist, box, mode="mirror") * (1 / 9))
        m = u * dist
        m = m / m.max() * intensity if m.max() > 0 else m
        colour = np.array([175, 238, 238]) / 255.0
        if img.shape[2] == 1:
            colour = np.array([colour @ np.array([0.299, 0.587, 0.114])])
        return np.clip(img + m[..., np.newaxis] * colour, 0, 1)
    m = ndimage.gaussian_filter(
        (layer > threshold).astype(np.float64), intensity, mode="nearest", truncate=4.0
    )
    m[m < 0.8] = 0
    colour = np.array([63, 42, 20]) / 255.0
    if img.shape[2] == 1:
        colour = np.array([colour @ np.array([0.299, 0.587, 0.114])])
    return np.clip(img * (1 - m[..., np.newaxis]) + colour * m[..., np.newaxis], 0, 1)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
@pytest.mark.parametrize(("size", "channels"), [(32, 3), (16, 1)])
def test_spatter_equals_the_reference_steps_with_the_same_draws(
    severity: int, size: int, channels: int
) -> None:
    x = _smooth_image(3, channels, size).double()
    noise = torch.randn(3, 1, size, size, generator=_gen(17), dtype=torch.float64)
    got = spatter(x, severity, _gen(17))
    c = spatter.constants[severity - 1]
    for k in range(3):
        want = _reference_spatter(x[k].permute(1, 2, 0).numpy(), c, noise[k, 0].numpy())
        assert np.abs(got[k].permute(1, 2, 0).numpy() - want).max() < 1e-6, k
    assert (got - x).abs().max() > 0.05


def test_canny_and_chamfer_distance_known_answers() -> None:
    # a vertical step 0 | 200 between columns 3 and 4: Sobel gives 800 on both columns; OpenCV's tie rule
    # (strictly above the left neighbour, at least the right one) keeps column 3 only
    u = torch.zeros(1, 8, 8, dtype=torch.float64)
    u[..., 4:] = 200
    edges = canny(u, 50, 150)
    want = torch.zeros(1, 8, 8, dtype=torch.bool)
    want[..., 3] = True
    assert torch.equal(edges, want)
    assert not canny(torch.full((1, 8, 8), 90.0, dtype=torch.float64), 50, 150).any()
    # one zero pixel: 1 along an axis, 1.4 diagonally, 2.1969 for a knight's move, 2.8 = two diagonals
    zero = torch.zeros(1, 7, 7, dtype=torch.bool)
    zero[0, 3, 3] = True
    d = chamfer_distance(zero, 20.0)[0]
    one = 65536
    assert d[3, 3] == 0 and d[3, 4] == 1 and d[2, 2] == round(1.4 * one) / one
    assert d[2, 5] == round(2.1969 * one) / one and d[1, 1] == 2 * round(1.4 * one) / one
    assert torch.equal(
        chamfer_distance(torch.zeros(1, 4, 4, dtype=torch.bool), 20.0), torch.full((1, 4, 4), 20.0).double()
    )


def test_spatter_constants_liquid_brightens_mud_pulls_towards_brown() -> None:
    want = [
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ]
    assert spatter.constants == tuple(tuple(row) for row in want)
    x = _smooth_image(2, 3, 32).double()
    brown = torch.tensor([63, 42, 20], dtype=torch.float64).view(1, 3, 1, 1) / 255
    for severity in (1, 2, 3):
        assert bool((spatter(x, severity, _gen(severity)) >= x - 1e-12).all())
    for severity in (4, 5):
        out = spatter(x, severity, _gen(severity))
        hit = (out != x).any(dim=1, keepdim=True)
        assert bool(hit.any()) and bool((~hit).any())
        # mud pixels: x (1 - m) + brown m with m in [0.8, 1]
        assert bool(((out - brown).abs() <= 0.2 * (x - brown).abs() + 1e-12)[hit.expand_as(x)].all())
    with pytest.raises(DataError, match="1 \\(grey\\) or 3 \\(RGB\\) channels"):
        spatter(torch.rand(1, 2, 8, 8), 4, _gen(0))


def test_spatter_liquid_and_mud_each_grow_with_severity() -> None:
    x = _smooth_image(4, 3, 32)
    dist = [np.mean([float((spatter(x, s, _gen(k)) - x).norm()) for k in range(3)]) for s in (1, 2, 3, 4, 5)]
    assert dist[0] < dist[1] < dist[2] and dist[3] < dist[4], dist

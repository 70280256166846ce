"""SSIM known answers (Wang et al. 2004) and the evaluator-accuracy / class-mean metrics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bastion.attacks.inference.inversion_metrics import (
    class_means,
    evaluator_accuracy,
    gaussian_window,
    inversion_quality,
    ssim,
)
from bastion.data.dataset import Dataset
from bastion.errors import DataError
from bastion.model import TorchClassifier

C1, C2 = 0.01**2, 0.03**2


def test_ssim_of_an_image_with_itself_is_one_and_falls_with_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 16, 16, generator=g)
    torch.testing.assert_close(ssim(x, x), torch.ones(3, dtype=torch.float64))
    scores = [
        float(ssim(x, (x + s * torch.randn(x.shape, generator=g)).clamp(0, 1)).mean())
        for s in (0.05, 0.2, 0.5)
    ]
    assert 1.0 > scores[0] > scores[1] > scores[2]
    # symmetric
    y = torch.rand(3, 2, 16, 16, generator=g)
    torch.testing.assert_close(ssim(x, y), ssim(y, x))


def test_ssim_one_pixel_window_is_the_luminance_term():
    # a 1x1 window has zero local variance: SSIM per pixel = (2xy + C1) / (x^2 + y^2 + C1)
    x = torch.tensor([[[[1.0, 0.2]]]])
    y = torch.tensor([[[[0.5, 0.2]]]])
    expected = ((2 * 0.5 + C1) / (1.25 + C1) + 1.0) / 2
    assert math.isclose(float(ssim(x, y, window_size=1)), expected, rel_tol=1e-12)


def test_ssim_hand_computed_2x2_uniform_window():
    # sigma huge: the 2x2 window weighs each pixel 1/4; one window position
    x = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    y = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])
    mx, my = 0.5, 0.25
    vx, vy, cxy = 0.5 - mx**2, 0.25 - my**2, 0.25 - mx * my
    expected = ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
    assert math.isclose(float(ssim(x, y, window_size=2, sigma=1e6)), expected, rel_tol=1e-9)
    # data range scales the constants: images in [0, 255] give the same SSIM
    assert math.isclose(
        float(ssim(255 * x, 255 * y, window_size=2, sigma=1e6, data_range=255.0)), expected, rel_tol=1e-9
    )


def test_gaussian_window_known_values():
    w = gaussian_window(3, 1.0)
    e = math.exp(-0.5)
    edge = torch.tensor([e, 1.0, e], dtype=torch.float64)
    torch.testing.assert_close(w, edge[:, None] * edge[None, :] / (1 + 2 * e) ** 2)
    assert math.isclose(float(gaussian_window().sum()), 1.0) and gaussian_window().shape == (11, 11)
    with pytest.raises(DataError):
        gaussian_window(0)


def test_evaluator_accuracy_and_quality():
    x = torch.zeros(4, 1, 4, 4)
    x[0:2, :, :2] = 1.0  # class 0: bright top
    x[2:4, :, 2:] = 1.0  # class 1: bright bottom
    data = Dataset(x, torch.tensor([0, 0, 1, 1]), num_classes=2)
    means = class_means(data, torch.tensor([1, 0]))
    torch.testing.assert_close(means, torch.stack([x[2], x[0]]))

    class TopBottom(nn.Module):
        def forward(self, t):
            top, bottom = t[:, :, :2].flatten(1).mean(1), t[:, :, 2:].flatten(1).mean(1)
            return torch.stack([top - bottom, bottom - top], 1)

    evaluator = TorchClassifier(TopBottom())
    acc, recognised = evaluator_accuracy(evaluator, torch.stack([x[0], x[0]]), torch.tensor([0, 1]))
    assert acc == 0.5 and recognised.tolist() == [True, False]
    q = inversion_quality(torch.stack([x[0], x[3]]), torch.tensor([0, 1]), evaluator, data)
    assert q.evaluator_accuracy == 1.0 and q.mean_ssim == pytest.approx(1.0)
    with pytest.raises(DataError, match="no samples of class 1"):
        class_means(data.subset(slice(0, 2)), torch.tensor([1]))

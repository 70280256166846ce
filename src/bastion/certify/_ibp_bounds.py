"""IBP's arithmetic: a box (centre, radius) through each checked layer, and the margin specification.

Affine layers map the centre exactly and the radius through |W| (|scale| for BatchNorm and
normalisation); non-negative linear maps (average pooling) and reshapes take the radius as it is;
monotone activations map the box's corners to the corners. Each layer runs the forward of the class
the rules checked (``Step.base``), never whatever the instance's call would resolve to.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from bastion.certify._ibp_rules import Step
from bastion.errors import CertificationError

__all__ = ["Box", "input_box", "margins", "propagate", "through"]

Box = tuple[torch.Tensor, torch.Tensor]
"""(centre, radius), radius >= 0, both shaped like the activations."""


def through(step: Step, box: Box) -> Box:
    mid, rad = box
    # Any: torch types a module's attributes as Tensor | Module; steps() checked each layer's class.
    layer: Any = step.layer
    kind, base = step.kind, cast(Any, step.base)
    if kind == "normalize":
        mean, std = step.stats if layer is None else (layer.mean, layer.std)
        if mean is not None:  # a mean may broadcast the activations to a larger shape: the radius too
            mid = mid - mean.to(mid.device, mid.dtype)
            rad = torch.broadcast_to(rad, mid.shape)
        if std is not None:
            mid, rad = mid / std.to(mid.device, mid.dtype), rad / std.to(rad.device, rad.dtype).abs()
        return mid, rad
    if step.graph is not None:
        return step.graph.through(box)
    if kind == "linear":
        return F.linear(mid, layer.weight, layer.bias), F.linear(rad, layer.weight.abs())
    if kind == "conv":
        conv = base._conv_forward
        return conv(layer, mid, layer.weight, layer.bias), conv(layer, rad, layer.weight.abs(), None)
    if kind == "batchnorm":
        return _batchnorm(step, mid, rad)
    if kind in ("positive", "reshape"):
        return base.forward(layer, mid), base.forward(layer, rad)
    if kind == "dropout":
        if layer.training and layer.p > 0:
            raise CertificationError(f"IBP needs dropout off: {step.where} is in training mode (call eval())")
        return box
    lower, upper = base.forward(layer, mid - rad), base.forward(layer, mid + rad)
    if kind == "softplus":
        # Above beta·x > threshold torch returns x itself, which undercuts the smooth curve by at most
        # log(1 + e^-threshold)/|beta| (at the switch): widen by twice that to stay sound.
        t, beta = float(layer.threshold), float(layer.beta)
        jump = 2 * (max(-t, 0.0) + math.log1p(math.exp(-abs(t)))) / abs(beta)
        lower, upper = lower - jump, upper + jump
    return (upper + lower) / 2, (upper - lower) / 2


def _batchnorm(step: Step, mid: torch.Tensor, rad: torch.Tensor) -> Box:
    layer = cast(nn.modules.batchnorm._BatchNorm, step.layer)  # steps() typed it by its class
    if layer.training or layer.running_mean is None or layer.running_var is None:
        raise CertificationError(
            f"IBP bounds BatchNorm with its running statistics only; {step.where} is in training "
            "mode or tracks none (call model.eval(), or train without BatchNorm)"
        )
    scale = layer.running_var.add(layer.eps).rsqrt()
    shift = -layer.running_mean * scale
    if layer.affine:
        scale, shift = scale * layer.weight, shift * layer.weight + layer.bias
    shape = (1, -1) + (1,) * (mid.dim() - 2)
    return mid * scale.view(shape) + shift.view(shape), rad * scale.abs().view(shape)


def input_box(lower: torch.Tensor, upper: torch.Tensor) -> Box:
    return (upper + lower) / 2, (upper - lower) / 2


def propagate(network: list[Step], box: Box) -> Box:
    for step in network:
        box = through(step, box)
    return box


def margins(network: list[Step], box: Box, labels: torch.Tensor) -> tuple[torch.Tensor, Box]:
    """Margin lower bounds (N, K) and the logits' box (the last Linear layer applied plainly)."""
    last = network[-1] if network and network[-1].kind == "linear" else None
    mid, rad = propagate(network[:-1] if last else network, box)
    if last is not None and isinstance(last.layer, nn.Linear):
        w, b = last.layer.weight, last.layer.bias
        # Rows w_label - w_j of the specification matrix, one per class j: (N, K, H).
        diff = w[labels][:, None, :] - w[None, :, :]
        bias = torch.zeros(w.shape[0], dtype=mid.dtype, device=mid.device) if b is None else b
        centre = torch.einsum("nkh,nh->nk", diff, mid) + (bias[labels][:, None] - bias[None, :])
        margins = centre - torch.einsum("nkh,nh->nk", diff.abs(), rad)
        return margins, through(last, (mid, rad))
    lo, up = mid - rad, mid + rad
    own = lo.gather(1, labels[:, None])
    return own - up.scatter(1, labels[:, None], own), (mid, rad)

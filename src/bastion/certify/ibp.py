"""Interval bound propagation: sound linf certificates for feed-forward networks.

Gowal et al., "On the Effectiveness of Interval Bound Propagation for Training Verifiably Robust
Models", 2018. An axis-aligned box around the input is pushed through the network layer by layer
(centre/radius form: an affine layer maps the centre exactly and the radius through |W|; a monotone
activation maps the two corners). The last linear layer is folded into the margin specification
z_c - z_j, which is tighter than bounding the logits separately. If every margin's lower bound is
positive, no input in the box changes the prediction.

Supported layers: Linear, Conv1d/2d, BatchNorm1d/2d (running statistics), Avg/Max pooling, Flatten,
Unflatten, Identity, Dropout (eval), and monotone activations (ReLU, LeakyReLU, ELU, ReLU6, Hardtanh,
Sigmoid, Tanh, Softplus), nested in ``nn.Sequential``; the classifier's own normalisation is
bounded too. Anything else is refused by name.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from bastion.attacks.base import check_batch, check_positive
from bastion.errors import CertificationError
from bastion.model import TorchClassifier
from bastion.results import CertificationResult
from bastion.threat import Norm, ThreatModel

__all__ = ["IntervalBoundPropagation", "interval_bounds", "margin_lower_bounds", "supported_layers"]

Box = tuple[torch.Tensor, torch.Tensor]
"""(centre, radius), radius >= 0, both shaped like the activations."""

_AFFINE_POSITIVE = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
_MONOTONE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)
_RESHAPE = (nn.Flatten, nn.Unflatten, nn.Identity)
_CONV = (nn.Conv1d, nn.Conv2d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d)
_SUPPORTED = (nn.Linear, *_CONV, *_NORM, *_AFFINE_POSITIVE, *_MONOTONE, *_RESHAPE, nn.Dropout)


def supported_layers() -> list[str]:
    """Names of the layer types IBP can bound."""
    return sorted(k.__name__ for k in _SUPPORTED)


def _layers(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The leaf layers of ``module`` in execution order; refuses what IBP cannot follow."""
    if isinstance(module, nn.Sequential):
        out: list[tuple[str, nn.Module]] = []
        for name, child in module.named_children():
            out += _layers(child, f"{prefix}.{name}" if prefix else name)
        return out
    where = f"layer {prefix!r} ({type(module).__name__})" if prefix else type(module).__name__
    if isinstance(module, nn.LeakyReLU) and module.negative_slope < 0:
        raise CertificationError(f"IBP cannot bound {where}: a negative slope is not monotone")
    if type(module) not in _SUPPORTED:
        hint = (
            "write the network as nn.Sequential of supported layers"
            if list(module.children())
            else f"IBP bounds only: {', '.join(supported_layers())}"
        )
        raise CertificationError(f"IBP cannot bound {where}; {hint}")
    return [(prefix, module)]


def _through(layer: nn.Module, name: str, box: Box) -> Box:
    mid, rad = box
    if isinstance(layer, nn.Linear):
        return F.linear(mid, layer.weight, layer.bias), F.linear(rad, layer.weight.abs())
    if isinstance(layer, _CONV):
        return layer(mid), layer._conv_forward(rad, layer.weight.abs(), None)
    if isinstance(layer, _NORM):
        if layer.training or layer.running_mean is None or layer.running_var is None:
            raise CertificationError(
                f"IBP bounds BatchNorm with its running statistics only; layer {name!r} is in training "
                "mode or tracks none (call model.eval(), or train without BatchNorm)"
            )
        scale = layer.running_var.add(layer.eps).rsqrt()
        shift = -layer.running_mean * scale
        if layer.affine:
            scale, shift = scale * layer.weight, shift * layer.weight + layer.bias
        shape = (1, -1) + (1,) * (mid.dim() - 2)
        return mid * scale.view(shape) + shift.view(shape), rad * scale.abs().view(shape)
    if isinstance(layer, (*_AFFINE_POSITIVE, *_RESHAPE)):
        return layer(mid), layer(rad)
    if isinstance(layer, nn.Dropout):
        if layer.training and layer.p > 0:
            raise CertificationError(f"IBP needs dropout off: layer {name!r} is in training mode")
        return box
    lower, upper = layer(mid - rad), layer(mid + rad)  # monotone: the corners map to the corners
    return (upper + lower) / 2, (upper - lower) / 2


Normalise = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _parts(
    model: TorchClassifier | nn.Module, normalise: Normalise | None = None
) -> tuple[nn.Module, Normalise]:
    """The network and its input normalisation; the module itself, not a copy (training needs that)."""
    if isinstance(model, TorchClassifier):
        return model.module, model.normalise
    if isinstance(model, nn.Module):
        return model, normalise or _identity
    raise CertificationError(
        f"IBP needs the network itself (a TorchClassifier or nn.Module), got {type(model).__name__}; "
        "a model behind input transformations or a remote API cannot be bounded layer by layer"
    )


def _input_box(normalise: Normalise, lower: torch.Tensor, upper: torch.Tensor) -> Box:
    # Per-channel (x - mean) / std with std > 0 is increasing, so it maps the corners to the corners.
    lo, up = normalise(lower), normalise(upper)
    return (up + lo) / 2, (up - lo) / 2


def interval_bounds(
    model: TorchClassifier | nn.Module,
    lower: torch.Tensor,
    upper: torch.Tensor,
    *,
    normalise: Normalise | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logit bounds (N, K) each, valid for every input between ``lower`` and ``upper`` (N, ...).

    Differentiable (IBP training back-propagates through it); runs in the dtype of the inputs and
    parameters. A bare ``nn.Module`` sees ``normalise(x)`` (default: ``x`` itself).
    """
    module, normalise = _parts(model, normalise)
    box = _input_box(normalise, lower, upper)
    for name, layer in _layers(module):
        box = _through(layer, name, box)
    mid, rad = box
    return mid - rad, mid + rad


def margin_lower_bounds(
    model: TorchClassifier | nn.Module,
    lower: torch.Tensor,
    upper: torch.Tensor,
    labels: torch.Tensor,
    *,
    normalise: Normalise | None = None,
) -> torch.Tensor:
    """(N, K): lower bounds on z_label - z_j over the box, 0 in the label's own column.

    A final Linear layer is folded into the specification (Gowal et al.'s elision), which is
    exact for that layer. All columns positive except the label's → the box is certified.
    """
    module, normalise = _parts(model, normalise)
    layers = _layers(module)
    box = _input_box(normalise, lower, upper)
    last = layers[-1][1] if layers else None
    body = layers[:-1] if isinstance(last, nn.Linear) else layers
    for name, layer in body:
        box = _through(layer, name, box)
    mid, rad = box
    if isinstance(last, nn.Linear):
        # Rows w_label - w_j of the specification matrix, one per class j: (N, K, H).
        diff = last.weight[labels][:, None, :] - last.weight[None, :, :]
        bias = torch.zeros(last.out_features, dtype=mid.dtype, device=mid.device)
        if last.bias is not None:
            bias = last.bias
        centre = torch.einsum("nkh,nh->nk", diff, mid) + (bias[labels][:, None] - bias[None, :])
        return centre - torch.einsum("nkh,nh->nk", diff.abs(), rad)
    lo, up = mid - rad, mid + rad
    return lo.gather(1, labels[:, None]) - up.scatter(1, labels[:, None], lo.gather(1, labels[:, None]))


class IntervalBoundPropagation:
    """A sound linf certifier: which inputs keep their prediction everywhere in the epsilon ball.

    Bounds are computed on a float64 copy of the network, and an input counts as certified only
    when every margin's lower bound exceeds ``tolerance`` × (1 + largest |logit|), which covers the
    rounding of the float32 network the certificate is about.
    """

    def __init__(self, tolerance: float = 1e-5, batch_size: int = 256) -> None:
        check_positive("tolerance", tolerance, allow_zero=True, error=CertificationError)
        check_positive("batch_size", batch_size, integer=True, error=CertificationError)
        self.tolerance = float(tolerance)
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def certify(
        self, model: TorchClassifier | nn.Module, x: torch.Tensor, threat: ThreatModel
    ) -> CertificationResult:
        """Certify ``x`` (N, ...) at ``threat`` (linf): the model's prediction with ``radius`` = epsilon
        where certified, 0 elsewhere. IBP never abstains."""
        if not isinstance(threat, ThreatModel) or threat.norm is not Norm.LINF:
            raise CertificationError(f"IBP certifies linf balls; got {threat!r}")
        module, _ = _parts(model)  # refuses what is not a network
        clf = model if isinstance(model, TorchClassifier) else TorchClassifier(module, copy=False)
        check_batch(clf, x, doing="certifying")
        _layers(clf.module)  # refuse unsupported layers before any work
        start = time.perf_counter()
        exact = TorchClassifier(
            copy.deepcopy(clf.module).double().eval(),
            bounds=clf.bounds,
            mean=None if clf.mean is None else clf.mean.double(),
            std=None if clf.std is None else clf.std.double(),
            copy=False,
        )
        predictions, certified = [], []
        lo_bound, hi_bound = clf.bounds
        for i in range(0, x.shape[0], self.batch_size):
            xb = x[i : i + self.batch_size].double()
            logits = exact(xb)
            pred = logits.argmax(1)
            lower = (xb - threat.epsilon).clamp(min=lo_bound)
            upper = (xb + threat.epsilon).clamp(max=hi_bound)
            margins = margin_lower_bounds(exact, lower, upper, pred)
            margins = margins.scatter(1, pred[:, None], torch.inf)
            slack = self.tolerance * (1 + logits.abs().amax(1))
            predictions.append(pred)
            certified.append((margins > slack[:, None]).all(1))
        ok = torch.cat(certified)
        return CertificationResult(
            prediction=torch.cat(predictions),
            radius=ok.to(torch.float64) * threat.epsilon,
            abstained=torch.zeros_like(ok),
            norm="linf",
            method="ibp",
            seconds=time.perf_counter() - start,
            params={"epsilon": threat.epsilon, "tolerance": self.tolerance},
        )

    def params(self) -> dict[str, float | int]:
        return {"tolerance": self.tolerance, "batch_size": self.batch_size}

    def __repr__(self) -> str:
        return f"IntervalBoundPropagation(tolerance={self.tolerance})"

"""Interval bound propagation: sound linf certificates for feed-forward networks.

Gowal et al., "On the Effectiveness of Interval Bound Propagation for Training Verifiably Robust
Models", 2018. An axis-aligned box around the input is pushed through the network layer by layer
(centre/radius form: an affine layer maps the centre exactly and the radius through |W|; a monotone
activation maps the two corners). The last linear layer is folded into the margin specification
z_c - z_j, which is tighter than bounding the logits separately. If every margin's lower bound is
positive, no input in the box changes the prediction.

Supported layers: Linear, Conv1d/2d, BatchNorm1d/2d (running statistics), Avg/Max pooling, Flatten,
Unflatten, Identity, Dropout (eval), :class:`~bastion.certify.Normalize` and monotone activations
(ReLU, LeakyReLU, ELU, ReLU6, Hardtanh, Sigmoid, Tanh, Softplus), nested in ``nn.Sequential``; the
classifier's own normalisation, and a hand-written elementwise affine layer (a normalisation of your
own), are bounded too. IBP bounds the composition of these layers, so anything that makes the
forward pass differ from it (an overridden ``forward``, a hook, a parametrization, a patched method)
is refused by name (:mod:`bastion.certify._ibp_rules`), and the certifier checks at run time that
the network's outputs lie inside the bounds (:mod:`bastion.certify._ibp_check`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bastion.attacks.base import check_batch, check_positive
from bastion.certify._ibp_bounds import input_box, margins, propagate
from bastion.certify._ibp_check import self_check
from bastion.certify._ibp_rules import Step, check_global_hooks, check_object, steps, supported_layers
from bastion.certify.normalize import Normalize
from bastion.errors import CertificationError
from bastion.model import TorchClassifier
from bastion.results import CertificationResult
from bastion.threat import Norm, ThreatModel

__all__ = [
    "IntervalBoundPropagation",
    "check_network",
    "interval_bounds",
    "margin_lower_bounds",
    "supported_layers",
]

Normalise = Callable[[torch.Tensor], torch.Tensor]


def _network(model: TorchClassifier | nn.Module, normalise: Normalise | None = None) -> list[Step]:
    """Every step from input space to the logits, checked (the module itself, never a copy: training
    back-propagates through it)."""
    check_global_hooks()
    if isinstance(model, TorchClassifier):
        if normalise is not None:
            raise CertificationError("pass normalise with a bare nn.Module only; a TorchClassifier has one")
        return _classifier_step(model) + steps(model.module)
    if isinstance(model, nn.Module):
        if normalise is None:
            return steps(model)
        if isinstance(normalise, Normalize):
            return steps(normalise, "normalise") + steps(model)
        owner = getattr(normalise, "__self__", None)
        bound = getattr(normalise, "__func__", None) is TorchClassifier.normalise
        if bound and isinstance(owner, TorchClassifier):
            return _classifier_step(owner) + steps(model)
        raise CertificationError(
            f"IBP cannot follow normalise={normalise!r}: pass a TorchClassifier's .normalise or a "
            "bastion.certify.Normalize(mean, std), or put the normalisation first in the network"
        )
    raise CertificationError(
        f"IBP needs the network itself (a TorchClassifier or nn.Module), got {type(model).__name__}; "
        "a model behind input transformations or a remote API cannot be bounded layer by layer"
    )


def check_network(
    model: TorchClassifier | nn.Module, normalise: Normalise | None = None, *, training: bool = False
) -> None:
    """Raise :class:`CertificationError`, naming the layer and why, unless IBP can follow the network
    exactly; ``training``: also refuse what cannot be bounded in training mode (BatchNorm's batch
    statistics, active dropout), so IBP training fails before its first step rather than at it."""
    for step in _network(model, normalise):
        layer: Any = step.layer
        if training and (step.kind == "batchnorm" or (step.kind == "dropout" and layer.p > 0)):
            raise CertificationError(
                f"IBP training cannot bound {step.where}: in training mode it uses batch statistics or "
                "random masks; train without it (BatchNorm, Dropout) or with another method"
            )


def _classifier_step(clf: TorchClassifier) -> list[Step]:
    check_object(clf, type(clf).__name__, (TorchClassifier,))
    if clf.mean is None and clf.std is None:
        return []
    return [Step("normalisation", None, "normalize", TorchClassifier, stats=(clf.mean, clf.std))]


def interval_bounds(
    model: TorchClassifier | nn.Module,
    lower: torch.Tensor,
    upper: torch.Tensor,
    *,
    normalise: Normalise | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logit bounds (N, K) each, valid for every input between ``lower`` and ``upper`` (N, ...).

    Differentiable (IBP training back-propagates through it); runs in the dtype of the inputs and
    parameters. A bare ``nn.Module`` sees ``normalise(x)`` (default: ``x`` itself), where
    ``normalise`` is a TorchClassifier's ``.normalise`` or a :class:`~bastion.certify.Normalize`.
    """
    mid, rad = propagate(_network(model, normalise), input_box(lower, upper))
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
    return margins(_network(model, normalise), input_box(lower, upper), labels)[0]


class IntervalBoundPropagation:
    """A sound linf certifier: which inputs keep their prediction everywhere in the epsilon ball.

    Bounds are computed on a float64 copy of the network. Before anything is certified, the network
    itself is evaluated at each box's centre and ``check_points`` seeded points in it (half inside,
    half on vertices); every logit must lie inside its bounds and every margin above its lower bound,
    within ``tolerance`` × (1 + largest |logit|), or :class:`CertificationError` is raised (the network
    computes something IBP did not bound). An input counts as certified only when every margin's
    lower bound exceeds that same slack, which covers the rounding of the float32 network.
    """

    def __init__(
        self, tolerance: float = 1e-5, batch_size: int = 256, check_points: int = 4, seed: int = 0
    ) -> None:
        check_positive("tolerance", tolerance, allow_zero=True, error=CertificationError)
        check_positive("batch_size", batch_size, integer=True, error=CertificationError)
        check_positive("check_points", check_points, integer=True, allow_zero=True, error=CertificationError)
        self.tolerance = float(tolerance)
        self.batch_size = int(batch_size)
        self.check_points = int(check_points)
        self.seed = int(seed)

    @torch.no_grad()
    def certify(
        self, model: TorchClassifier | nn.Module, x: torch.Tensor, threat: ThreatModel
    ) -> CertificationResult:
        """Certify ``x`` (N, ...) at ``threat`` (linf): the model's prediction with ``radius`` = epsilon
        where certified, 0 elsewhere. IBP never abstains."""
        if not isinstance(threat, ThreatModel) or threat.norm is not Norm.LINF:
            raise CertificationError(f"IBP certifies linf balls; got {threat!r}")
        _network(model)  # refuse what IBP cannot follow (anything but a network, too) before any work
        clf = model if isinstance(model, TorchClassifier) else TorchClassifier(model, copy=False)
        check_batch(clf, x, doing="certifying")
        start = time.perf_counter()
        exact = TorchClassifier(
            copy.deepcopy(clf.module).double().eval(),
            bounds=clf.bounds,
            mean=None if clf.mean is None else clf.mean.double(),
            std=None if clf.std is None else clf.std.double(),
            copy=False,
        )
        network = _network(exact)
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        predictions, certified = [], []
        for i in range(0, x.shape[0], self.batch_size):
            xb = x[i : i + self.batch_size]
            logits = clf(xb)  # the network the certificate is about, in its own dtype
            pred = logits.argmax(1)
            lower = (xb.double() - threat.epsilon).clamp(min=clf.bounds[0])
            upper = (xb.double() + threat.epsilon).clamp(max=clf.bounds[1])
            bound, (mid, rad) = margins(network, input_box(lower, upper), pred)
            slack = self_check(
                clf, xb, (lower, upper), logits, (mid - rad, mid + rad, bound), self.tolerance,
                self.check_points, generator, first=i,
            )  # fmt: skip
            bound = bound.scatter(1, pred[:, None], torch.inf)
            predictions.append(pred)
            certified.append((bound > slack[:, None]).all(1))
        ok = torch.cat(certified)
        return CertificationResult(
            prediction=torch.cat(predictions),
            radius=ok.to(torch.float64) * threat.epsilon,
            abstained=torch.zeros_like(ok),
            norm="linf",
            method="ibp",
            seconds=time.perf_counter() - start,
            params={"epsilon": threat.epsilon, **self.params()},
        )

    def params(self) -> dict[str, float | int]:
        return {
            "tolerance": self.tolerance,
            "batch_size": self.batch_size,
            "check_points": self.check_points,
            "seed": self.seed,
        }

    def __repr__(self) -> str:
        return f"IntervalBoundPropagation(tolerance={self.tolerance}, check_points={self.check_points})"

"""Carlini-Wagner L2: bastion vs foolbox, ART, CleverHans and torchattacks, on linear models whose minimal
l2 distance is known in closed form and on the zoo's CNNs.

For logits ``W x + b`` and an input of class ``y`` the smallest adversarial perturbation has length
``min_{j != y} (f_y - f_j)(x) / ||w_y - w_j||``; the inputs kept are those whose projection onto that
hyperplane stays inside the bounds, so the bounds do not change the answer. Each library runs at its own
defaults and, where they differ, at bastion's default budget (6 searches x 100 Adam steps). The columns:
success (the model's prediction recomputed on the returned input), the median distance over successes,
the median excess over the minimum and the share of samples more than 5% above it (a failure counts as
above), seconds, and the nominal budget (binary-search steps x iterations).

    OMP_NUM_THREADS=1 benchmarks/.bench-venv/bin/python benchmarks/bench_cw.py [--n 50] \\
        [--models digits-cnn] [--skip-slow] [--no-linear]

``--skip-slow`` leaves out foolbox's default (9 x 10,000 steps with early abort) and CleverHans' default
(5 x 1,000 steps, a Python loop over samples per step) on the CNNs.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from _common import Normalised, environment, load, markdown
from bastion import ThreatModel
from bastion.attacks import CarliniWagner
from bastion.model import TorchClassifier

Run = Callable[[nn.Module, torch.Tensor, torch.Tensor, tuple[float, float], int], torch.Tensor | None]


class Linear(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def linear_case(
    classes: int, dim: int, seed: int, bounds: tuple[float, float], n: int
) -> tuple[TorchClassifier, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A seeded linear model, ``n`` inputs whose minimal perturbation stays in the box, and those minima."""
    g = torch.Generator().manual_seed(seed)
    weight, bias = torch.randn(classes, dim, generator=g), 0.1 * torch.randn(classes, generator=g)
    lo, hi = bounds
    x = lo + (hi - lo) * (0.3 + 0.4 * torch.rand(4 * n, dim, generator=g))
    clf = TorchClassifier(Linear(weight, bias), bounds=bounds, num_classes=classes, name="linear")
    with torch.no_grad():
        logits = clf(x)
    y = logits.argmax(1)
    normal = weight[y][:, None, :] - weight[None, :, :]
    gap = logits.gather(1, y[:, None]) - logits
    dist = (gap / normal.norm(dim=2).clamp_min(1e-12)).masked_fill(
        torch.arange(classes) == y[:, None], math.inf
    )
    d_min, j = dist.min(dim=1)
    step = normal[torch.arange(x.shape[0]), j]
    projection = x - (d_min / step.norm(dim=1))[:, None] * step
    keep = ((projection > lo) & (projection < hi)).all(dim=1).nonzero().flatten()[:n]
    return clf, x[keep], y[keep], d_min[keep]


def runners(slow: bool) -> dict[str, tuple[str, Run | None]]:
    """label -> (nominal budget, run(model, x, y, bounds, classes) -> x_adv)."""
    import foolbox as fb
    import torchattacks
    from art.attacks.evasion import CarliniL2Method
    from art.estimators.classification import PyTorchClassifier
    from cleverhans.torch.attacks.carlini_wagner_l2 import carlini_wagner_l2

    def bastion_cw(model, x, y, bounds, classes):  # type: ignore[no-untyped-def]
        clf = TorchClassifier(model, bounds=bounds, num_classes=classes)
        return CarliniWagner()(clf, x, y, ThreatModel("l2", math.inf, bounds=bounds), seed=0).x_adv

    def foolbox_cw(steps: int, searches: int, **kw: float) -> Run:
        def run(model, x, y, bounds, classes):  # type: ignore[no-untyped-def]
            attack = fb.attacks.L2CarliniWagnerAttack(binary_search_steps=searches, steps=steps, **kw)
            _, adv, _ = attack(fb.PyTorchModel(model, bounds=bounds), x, y, epsilons=None)
            return adv

        return run

    def art_cw(steps: int, searches: int) -> Run:
        def run(model, x, y, bounds, classes):  # type: ignore[no-untyped-def]
            est = PyTorchClassifier(
                model=model,
                loss=nn.CrossEntropyLoss(),
                input_shape=tuple(x.shape[1:]),
                nb_classes=classes,
                clip_values=bounds,
            )
            # batch_size: ART's default of 1 only makes it slower, not different.
            attack = CarliniL2Method(
                est, max_iter=steps, binary_search_steps=searches, batch_size=x.shape[0], verbose=False
            )
            return torch.from_numpy(attack.generate(x.numpy(), np.eye(classes)[y.numpy()]))

        return run

    def cleverhans_cw(steps: int, searches: int, **kw: float) -> Run:
        def run(model, x, y, bounds, classes):  # type: ignore[no-untyped-def]
            return carlini_wagner_l2(
                model, x, classes, y=y, clip_min=bounds[0], clip_max=bounds[1],
                binary_search_steps=searches, max_iterations=steps, **kw,
            )  # fmt: skip

        return run

    def torchattacks_cw(model, x, y, bounds, classes):  # type: ignore[no-untyped-def]
        if bounds != (0.0, 1.0):
            return None  # torchattacks assumes inputs in [0, 1]
        return torchattacks.CW(model)(x, y)

    return {
        "bastion (default)": ("6 x 100", bastion_cw),
        "foolbox (default)": ("9 x 10,000", foolbox_cw(10_000, 9) if slow else None),
        "foolbox (6 x 100, step 0.01)": ("6 x 100", foolbox_cw(100, 6)),
        "ART (default)": ("10 x 10", art_cw(10, 10)),
        "ART (6 x 100)": ("6 x 100", art_cw(100, 6)),
        "CleverHans (default)": ("5 x 1,000", cleverhans_cw(1000, 5) if slow else None),
        "CleverHans (6 x 100, lr 0.01)": ("6 x 100", cleverhans_cw(100, 6, lr=0.01)),
        "torchattacks (default, c = 1)": ("1 x 50", torchattacks_cw),
    }


def measure(
    label: str, budget: str, run: Run, clf: TorchClassifier, x: torch.Tensor, y: torch.Tensor,
    d_min: torch.Tensor | None,
) -> list[object]:  # fmt: skip
    model = Normalised(clf).eval()
    start = time.perf_counter()
    adv = run(model, x, y, clf.bounds, clf.num_classes or 10)
    seconds = time.perf_counter() - start
    if adv is None:
        return [label, "n/a (needs bounds [0, 1])", "", "", "", "", budget]
    adv = adv.detach()
    with torch.no_grad():
        success = clf(adv).argmax(1) != y
    inside = (adv >= clf.bounds[0]).flatten(1).all(1) & (adv <= clf.bounds[1]).flatten(1).all(1)
    success &= inside
    dist = (adv - x).flatten(1).norm(dim=1)
    median = float(dist[success].median()) if bool(success.any()) else math.nan
    excess, far = "", ""
    if d_min is not None:
        ratio = torch.where(success, dist / d_min, torch.full_like(dist, math.inf))
        excess = f"{float(ratio.median()) - 1:.2%}"
        far = f"{float((ratio > 1.05).float().mean()):.0%}"
    return [label, f"{float(success.float().mean()):.0%}", median, excess, far, seconds, budget]


def main() -> None:
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--models", nargs="*", default=["digits-cnn"])
    p.add_argument("--skip-slow", action="store_true")
    p.add_argument("--linear", action=argparse.BooleanOptionalAction, default=True, help="the linear models")
    args = p.parse_args()
    headers = ["library", "success", "median l2", "median excess", "> 5% above", "seconds", "budget"]
    cases: list[tuple[str, TorchClassifier, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
    linear = [(10, 784, 2, (0.0, 1.0)), (10, 64, 1, (-10.0, 10.0))] if args.linear else []
    for classes, dim, seed, bounds in linear:
        clf, x, y, d_min = linear_case(classes, dim, seed, bounds, args.n)
        cases.append(
            (f"linear, {classes} classes, {dim}-d, bounds [{bounds[0]:g}, {bounds[1]:g}]", clf, x, y, d_min)
        )
    for name in args.models:
        clf, x, y = load(name, args.n)
        cases.append((name, clf, x, y, None))
    print(f"### C&W L2, {args.n} samples per model ({environment()})\n")
    for title, clf, x, y, d_min in cases:
        slow = not args.skip_slow or d_min is not None
        rows = [
            measure(label, budget, run, clf, x, y, d_min)
            for label, (budget, run) in runners(slow).items()
            if run is not None
        ]
        print(f"#### {title}\n")
        print(markdown(headers, rows) + "\n", flush=True)


if __name__ == "__main__":
    main()

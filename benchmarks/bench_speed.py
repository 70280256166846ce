"""PGD-40 speed: bastion vs torchattacks, ART, foolbox and CleverHans, against the bare model's cost.

The floor is 40 x one forward+backward (input gradient) of the bare model on the same batch. The
issue's target is bastion <= 1.15 x that floor. Early exit (samples leave once fooled) makes an attack
cheaper than the floor when epsilon is large, so the check uses a small epsilon where (almost) every
sample survives all 40 steps; a second row per model uses a realistic epsilon.

    benchmarks/.bench-venv/bin/python benchmarks/bench_speed.py [--models digits-cnn mnist-cnn] [--n 256]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from _common import Normalised, environment, load, markdown, median_time
from bastion import ThreatModel
from bastion.attacks import PGD

STEPS = 40


def floor_seconds(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> float:
    def one() -> None:
        xr = x.clone().requires_grad_(True)
        loss = F.cross_entropy(module(xr), y)
        torch.autograd.grad(loss, xr)

    for _ in range(3):
        one()
    return STEPS * median_time(one, repeats * 10)[0]


def run(model_name: str, n: int, eps: float, repeats: int) -> list[list[object]]:
    clf, x, y = load(model_name, n)
    peer_model = Normalised(clf).eval()
    threat = ThreatModel("linf", eps, bounds=clf.bounds)
    alpha = 2.5 * eps / STEPS
    base = floor_seconds(peer_model, x, y, repeats)
    rows: dict[str, tuple[float, float]] = {}

    def bastion_pgd() -> float:
        return PGD(steps=STEPS)(clf, x, y, threat, seed=0).success.float().mean().item()

    rows["bastion"] = median_time(bastion_pgd, repeats)

    import torchattacks

    ta = torchattacks.PGD(peer_model, eps=eps, alpha=alpha, steps=STEPS, random_start=True)

    def ta_pgd() -> float:
        adv = ta(x, y)
        with torch.no_grad():
            return (clf(adv).argmax(1) != y).float().mean().item()

    rows["torchattacks"] = median_time(ta_pgd, repeats)

    import foolbox as fb

    fmodel = fb.PyTorchModel(peer_model, bounds=clf.bounds)
    fb_attack = fb.attacks.LinfPGD(abs_stepsize=alpha, steps=STEPS, random_start=True)

    def fb_pgd() -> float:
        _, _, success = fb_attack(fmodel, x, y, epsilons=eps)
        return success.float().mean().item()

    rows["foolbox"] = median_time(fb_pgd, repeats)

    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    est = PyTorchClassifier(
        model=peer_model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=clf.num_classes or 10,
        clip_values=clf.bounds,
    )
    art_attack = ProjectedGradientDescent(
        est,
        norm=np.inf,
        eps=eps,
        eps_step=alpha,
        max_iter=STEPS,
        num_random_init=1,
        batch_size=x.shape[0],
        verbose=False,
    )
    xn, yn = x.numpy(), y.numpy()

    def art_pgd() -> float:
        adv = torch.from_numpy(art_attack.generate(xn, yn))
        with torch.no_grad():
            return (clf(adv).argmax(1) != y).float().mean().item()

    rows["ART"] = median_time(art_pgd, max(1, repeats // 2))

    from cleverhans.torch.attacks.projected_gradient_descent import projected_gradient_descent

    def ch_pgd() -> float:
        # sanity_checks=False: CleverHans' own asserts on the result cost time and are optional.
        adv = projected_gradient_descent(
            peer_model, x, eps, alpha, STEPS, np.inf, *clf.bounds, y=y, rand_init=True, sanity_checks=False
        )
        with torch.no_grad():
            return (clf(adv).argmax(1) != y).float().mean().item()

    rows["CleverHans"] = median_time(ch_pgd, repeats)
    ours = rows["bastion"][0]
    return [
        [model_name, eps, lib, sec, sec / base, sec / ours, f"{succ:.1%}"]
        for lib, (sec, succ) in rows.items()
    ]


def main() -> None:
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["digits-cnn", "mnist-cnn"])
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    eps_sets = {
        "digits-cnn": (0.01, 0.1),
        "digits-mlp": (0.01, 0.1),
        "mnist-cnn": (0.03, 0.3),
        "cifar10-cnn": (0.5 / 255, 8 / 255),
    }
    rows = []
    for name in args.models:
        for eps in eps_sets[name]:
            rows += run(name, args.n, eps, args.repeats)
    print(f"### PGD-{STEPS} speed, linf, batch {args.n}, median of {args.repeats} ({environment()})\n")
    print(markdown(["model", "epsilon", "library", "seconds", "× 40 fwd+bwd", "× bastion", "success"], rows))


if __name__ == "__main__":
    main()

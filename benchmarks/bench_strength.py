"""Strength and wall time: bastion's ``standard`` cascade vs AutoAttack, and bastion's Square vs
torchattacks' Square at the same query budget, on the same models and samples.

Two AutoAttacks run: torchattacks' ``AutoAttack(version="standard")`` as shipped, whose APGD, APGD-T and
FAB run 10 steps each, and the published standard version (Croce & Hein 2020: 100 steps, 9 target
classes, Square 5,000 queries) assembled from the same torchattacks components.

Targets (issue 2): standard's robust accuracy at most 0.5 points above AutoAttack's in at most half its
wall time; Square within 2 points of torchattacks' Square.

    benchmarks/.bench-venv/bin/python benchmarks/bench_strength.py [--n 500] [--cases digits-cnn:0.1 ...]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

import bastion
from _common import Normalised, environment, load, markdown
from bastion import ThreatModel
from bastion.attacks import Square

DEFAULT_CASES = ["digits-cnn:0.1", "digits-cnn:0.2", "mnist-cnn:0.1", "mnist-cnn:0.2", "mnist-cnn:0.3"]


def robust_accuracy(clf: bastion.TorchClassifier, adv: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((clf(adv).argmax(1) == y).float().mean())


def run_case(
    model_name: str, eps: float, n: int, square_queries: int
) -> tuple[list[list[object]], list[object]]:
    import torchattacks

    clf, x, y = load(model_name, n)
    peer = Normalised(clf).eval()
    threat = ThreatModel("linf", eps, bounds=clf.bounds)

    t = time.perf_counter()
    ours = bastion.evaluate(clf, x, y, threat, preset="standard", seed=0)
    ours_s = time.perf_counter() - t

    k = clf.num_classes or 10
    shipped = torchattacks.AutoAttack(peer, norm="Linf", eps=eps, version="standard", n_classes=k, seed=0)
    published = torchattacks.MultiAttack(
        [
            torchattacks.APGD(peer, eps=eps, steps=100, loss="ce", n_restarts=1, seed=0),
            torchattacks.APGDT(peer, eps=eps, steps=100, n_classes=k, n_restarts=1, seed=0),
            torchattacks.FAB(
                peer, eps=eps, steps=100, multi_targeted=True, n_classes=k, n_restarts=1, seed=0
            ),
            torchattacks.Square(peer, eps=eps, n_queries=5000, n_restarts=1, seed=0),
        ]
    )
    strength = []
    for label, aa in (("torchattacks AA (10 steps)", shipped), ("AA as published (100 steps)", published)):
        t = time.perf_counter()
        adv = aa(x, y)
        aa_s = time.perf_counter() - t
        aa_acc = robust_accuracy(clf, adv, y)
        strength.append(
            [
                model_name,
                eps,
                n,
                label,
                f"{ours.robust_accuracy:.2%}",
                f"{aa_acc:.2%}",
                f"{100 * (ours.robust_accuracy - aa_acc):+.2f}",
                ours_s,
                aa_s,
                ours_s / aa_s,
            ]
        )

    t = time.perf_counter()
    sq = Square(n_queries=square_queries)(clf, x, y, threat, seed=0)
    sq_s = time.perf_counter() - t
    ta_sq = torchattacks.Square(peer, norm="Linf", eps=eps, n_queries=square_queries, n_restarts=1, seed=0)
    t = time.perf_counter()
    ta_adv = ta_sq(x, y)
    ta_sq_s = time.perf_counter() - t
    ta_sq_acc = robust_accuracy(clf, ta_adv, y)
    sq_acc = 1 - sq.success_rate
    square = [
        model_name,
        eps,
        n,
        f"{sq_acc:.2%}",
        f"{ta_sq_acc:.2%}",
        f"{100 * (sq_acc - ta_sq_acc):+.2f}",
        sq_s,
        ta_sq_s,
    ]
    return strength, square


def main() -> None:
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="MODEL:EPS pairs (linf)")
    p.add_argument("--n", type=int, default=500, help="correctly classified test samples per case")
    p.add_argument("--square-queries", type=int, default=5000)
    args = p.parse_args()
    strength, square = [], []
    for case in args.cases:
        name, eps = case.split(":")
        s, q = run_case(name, float(eps), args.n, args.square_queries)
        strength.extend(s)
        square.append(q)
        print(f"done {case}: {s} {q}", flush=True)
    print(f"\n### `standard` vs AutoAttack, linf ({environment()})\n")
    print(
        markdown(
            [
                "model",
                "epsilon",
                "n",
                "reference",
                "bastion robust acc",
                "AutoAttack robust acc",
                "Δ points",
                "bastion s",
                "AutoAttack s",
                "time ratio",
            ],
            strength,
        )
    )
    print(f"\n### Square, {args.square_queries} queries, linf: bastion vs torchattacks\n")
    print(
        markdown(
            [
                "model",
                "epsilon",
                "n",
                "bastion robust acc",
                "torchattacks robust acc",
                "Δ points",
                "bastion s",
                "torchattacks s",
            ],
            square,
        )
    )


if __name__ == "__main__":
    main()

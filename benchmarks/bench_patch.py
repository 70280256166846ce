"""Targeted adversarial patch against patch area on the CIFAR-10 zoo model (issue 18), beside ART's.

Per area (share of the 32x32 image at scale 1): a patch fitted with EOT (scale 0.8-1.2, rotation ±20°,
brightness 0.9-1.1, anywhere) on ``--fit`` training images for ``--steps`` steps of ``--batch-size``,
then judged on ``--test`` held-out test images: targeted success at placements drawn from the EOT
distribution and at unseen ones (outside its ranges), and a random patch at the same placements. ART's
``AdversarialPatchNumpy`` (its PyTorch variant imports torchvision, which does not import beside this
torch; a circular patch, the same scale range relative to the image side, same rotation, steps,
batch and target) is fitted on the same images and judged by ART's own ``apply_patch`` at its training
scales (its API applies one scale per call: the mean of 4 scales across the range).

    OMP_NUM_THREADS=1 benchmarks/.bench-venv/bin/python benchmarks/bench_patch.py
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
import torch

from _common import DATA_ROOT, Normalised, environment, markdown
from bastion import zoo
from bastion.attacks.physical import AdversarialPatch, PatchThreat
from bastion.data import load_dataset
from bastion.model import predict


def art_cells(clf: Any, fit: Any, test: Any, area: float, target: int, args: argparse.Namespace) -> list[str]:
    try:
        from art.attacks.evasion import AdversarialPatchNumpy  # the PyTorch variant needs torchvision
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        return ["not installed", ""]
    side = math.sqrt(area)
    est = PyTorchClassifier(
        Normalised(clf).eval(),
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(3, 32, 32),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        channels_first=True,
    )

    class Patch(AdversarialPatchNumpy):  # type: ignore[misc]
        """ART 1.20 resets its patch only from a Python float; float32 clip values give a numpy one."""

        def reset_patch(self, initial_patch_value: Any) -> None:
            if isinstance(initial_patch_value, np.floating):
                initial_patch_value = float(initial_patch_value)
            super().reset_patch(initial_patch_value)

    attack = Patch(
        est,
        target=target,
        rotation_max=20.0,
        scale_min=0.8 * side,
        scale_max=min(1.0, 1.2 * side),
        learning_rate=args.art_lr,
        max_iter=args.steps,
        batch_size=args.batch_size,
        verbose=False,
    )
    x = fit.x.numpy()
    onehot = np.eye(10, dtype=np.float32)[np.full(len(x), target)]
    t0 = time.perf_counter()
    patch, _ = attack.generate(x=x, y=onehot)
    seconds = time.perf_counter() - t0
    keep = (test.y != target) & (predict(clf, test.x).argmax(1) != target)
    xs = test.x[keep].numpy()
    rates = []
    for scale in np.linspace(0.8 * side, min(1.0, 1.2 * side), 4):
        patched = torch.as_tensor(attack.apply_patch(xs, scale=float(scale), patch_external=patch)).float()
        rates.append(float((predict(clf, patched).argmax(1) == target).float().mean()))
    return [f"{np.mean(rates):.1%}", f"{seconds:.0f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--areas", default="0.01,0.02,0.05,0.10")
    ap.add_argument("--target", type=int, default=0, help="CIFAR-10 class (0: airplane)")
    ap.add_argument("--fit", type=int, default=500)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--art-lr", type=float, default=0.01, help="ART Adam learning rate (~ our signed step)")
    ap.add_argument("--skip-art", action="store_true")
    args = ap.parse_args()
    print(environment())
    clf = zoo.load("cifar10-cnn")
    fit = load_dataset(f"cifar10:{DATA_ROOT}/cifar10", split="train").take(args.fit, seed=0)
    test = load_dataset(f"cifar10:{DATA_ROOT}/cifar10", split="test").take(args.test, seed=0)
    rows = []
    for area in (float(a) for a in args.areas.split(",")):
        threat = PatchThreat(area=area)
        t0 = time.perf_counter()
        res = AdversarialPatch(steps=args.steps, batch_size=args.batch_size).fit(
            clf, fit.x, threat, target=args.target, seed=0
        )
        seconds = time.perf_counter() - t0
        seen = res.evaluate(clf, test.x, test.y, placements="train", seed=1)
        unseen = res.evaluate(clf, test.x, test.y, placements="unseen", seed=1)
        art = ["skipped", ""] if args.skip_art else art_cells(clf, fit, test, area, args.target, args)
        rows.append(
            [
                f"{area:.0%}",
                "x".join(map(str, threat.patch_shape((32, 32)))),
                f"{seen.success_rate:.1%}",
                f"{unseen.success_rate:.1%}",
                f"{seen.baseline_rate:.1%}",
                f"{seconds:.0f}",
                *art,
            ]
        )
    print(
        f"\n### Targeted patch (class {args.target}) on cifar10-cnn: fit on {args.fit} training images, "
        f"{args.steps} steps of {args.batch_size}; held-out: {args.test} test images\n"
    )
    print(
        markdown(
            [
                "area",
                "patch px",
                "bastion: EOT placements",
                "unseen placements",
                "random patch",
                "bastion s",
                "ART AdversarialPatchNumpy",
                "ART s",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
